/**
 * Drizzle (Fruchter & Hook 2002, variable-pixel linear reconstruction) in the built-in stacker:
 * `stacking.drizzle: { scale, pixfrac, kernel }`. Each input pixel of each calibrated frame is shrunk to a
 * drop of `pixfrac` × its side, mapped through the frame's registration transform onto the output grid
 * (the reference grid × `scale`), and its normalised value is added to every output pixel the drop
 * overlaps, weighted by the overlap area and the frame's weight:
 *
 *   out(j) = Σ_f Σ_i w_f·a_ij·x'_fi / Σ_f Σ_i w_f·a_ij,   coverage(j) = Σ_f Σ_i w_f·a_ij
 *
 * (x' = the frame's normalisation applied). `square`: the drop is an axis-aligned square of side
 * pixfrac·scale·J output pixels (J the transform's linear scale) centred on the mapped pixel centre — the
 * footprint DrizzlePac calls `turbo`, exact for shifts and within a few percent of the rotated square's
 * overlaps for the rotations of one night; `point`: the whole drop in the output pixel its centre falls in.
 * The output keeps the input's surface brightness (ADU per input pixel: the sky stays at its level; a
 * star's summed flux is scale² × the input's).
 *
 * Rejection (any method) is DrizzlePac's `driz_cr`: the 1× stack of the same frames with the configured
 * rejection is "blotted" back (bilinear at the pixel's mapped centre) and an input pixel whose normalised
 * value is off it by more than the rejection's σ thresholds — σ from the frame's own noise, plus half the
 * local range of the 1× stack around the sample (interpolation error on a star's flank) — is left out.
 *
 * Work units: one per band of output rows and channel; each reads, for every frame, only the source rows
 * whose drops can land in the band. Memory: a band's accumulators and one frame's source rows.
 */
import { loadRecon } from "@tile-compile/recon-native";
import {
  cachedFile,
  cfaOf,
  defineTask,
  demosaicMargin,
  FitsFile,
  invertTransform as invert,
  OPEN_FILES_MAX,
  sourceRows,
  warpRowsSource,
  type SharedRef,
} from "@tile-compile/core";

export interface DrizzleOptions {
  scale: number;
  pixfrac: number;
  kernel: "square" | "point";
  /** One-shot-colour frames: each photosite into its own colour plane (Bayer drizzle), no demosaic. Default true. */
  cfa?: boolean;
}

/** What every drizzle band unit shares. */
export interface DrizzleBandPlan {
  frames: { path: string; hdu?: number }[];
  /** Per frame: input → reference matrix. */
  matrices: number[][];
  /** Reference grid and output grid sizes. */
  width: number;
  height: number;
  outWidth: number;
  outHeight: number;
  drizzle: DrizzleOptions;
  debayer: "rcd" | "bilinear";
  ranges?: [number, number][];
  /** Bayer drizzle: the frames' mosaic layout; each channel takes only its own photosites. */
  cfa?: { pattern: string; offsetX: number; offsetY: number };
  /** Per channel: normalisation x' = scale·x + offset and weights per frame; σ' per frame (normalised noise). */
  channels: { scale: number[]; offset: number[]; weights: number[]; sigma: number[] }[];
  /** Rejection by blotting the 1× stack: its path and the thresholds (σ units), or null for none. */
  blot: { path: string; low: number; high: number } | null;
}

export interface DrizzleBandResult {
  data: Float32Array;
  coverage: Float32Array;
  rejected: number;
}

/** The linear scale of a transform at the frame centre: √|det| of its 2×2 part (≈ 1 for frames of one camera). */
function linearScale(m: readonly number[]): number {
  return Math.sqrt(Math.abs(m[0]! * m[4]! - m[1]! * m[3]!));
}

/**
 * One drop of value v and weight w centred at (U, V) on the output grid, of half-side `half` (0: a point),
 * into the band's accumulators (rows [y0, y0 + rows) of a Wo-wide grid): each overlapped output pixel gains
 * w·area·v and w·area.
 */
function deposit(
  num: Float64Array,
  den: Float64Array,
  Wo: number,
  y0: number,
  rows: number,
  U: number,
  V: number,
  half: number,
  v: number,
  w: number,
): void {
  if (half === 0) {
    const j = Math.round(U),
      r = Math.round(V) - y0;
    if (j < 0 || j >= Wo || r < 0 || r >= rows) return;
    num[r * Wo + j] = num[r * Wo + j]! + w * v;
    den[r * Wo + j] = den[r * Wo + j]! + w;
    return;
  }
  const jx0 = Math.max(0, Math.round(U - half)),
    jx1 = Math.min(Wo - 1, Math.round(U + half)),
    jy0 = Math.max(y0, Math.round(V - half)),
    jy1 = Math.min(y0 + rows - 1, Math.round(V + half));
  for (let jy = jy0; jy <= jy1; jy++) {
    const oy = Math.min(V + half, jy + 0.5) - Math.max(V - half, jy - 0.5);
    if (oy <= 0) continue;
    const base = (jy - y0) * Wo;
    for (let jx = jx0; jx <= jx1; jx++) {
      const ox = Math.min(U + half, jx + 0.5) - Math.max(U - half, jx - 0.5);
      if (ox <= 0) continue;
      const wa = w * ox * oy;
      num[base + jx] = num[base + jx]! + wa * v;
      den[base + jx] = den[base + jx]! + wa;
    }
  }
}

export const drizzleBandTask = defineTask(
  "stack.drizzle-band",
  async (i: { plan: SharedRef; c: number; y0: number; rows: number }, ctx): Promise<DrizzleBandResult> => {
    const plan = await ctx.shared<DrizzleBandPlan>(i.plan);
    const { scale: s, pixfrac, kernel } = plan.drizzle;
    const Wo = plan.outWidth;
    const ch = plan.channels[i.c]!;
    const num = new Float64Array(i.rows * Wo),
      den = new Float64Array(i.rows * Wo);
    // The band in reference coordinates (pixel centres at integers): output V = (Y + ½)·s − ½.
    const yRef0 = Math.floor((i.y0 - 1) / s) - 1,
      yRef1 = Math.ceil((i.y0 + i.rows + 1) / s) + 1;
    // The 1× stack's rows under the band, for the blot (two rows beyond the bilinear neighbours).
    let ref: Float32Array | undefined;
    let b0 = 0,
      bN = 0;
    if (plan.blot) {
      b0 = Math.max(0, yRef0 - 3);
      bN = Math.min(plan.height, yRef1 + 4) - b0;
      const f = await FitsFile.open(plan.blot.path);
      try {
        ref = await (await f.image()).readRows(b0, bN, i.c);
      } finally {
        await f.close();
      }
    }
    const W = plan.width;
    const blotAt = (X: number, Y: number): [number, number] => {
      // Bilinear sample of the 1× stack and the range of its four neighbours.
      const x0 = Math.floor(X),
        y0 = Math.floor(Y) - b0;
      if (x0 < 0 || x0 + 1 >= W || y0 < 0 || y0 + 1 >= bN) return [NaN, 0];
      const fx = X - x0,
        fy = Y - b0 - y0;
      const a = ref![y0 * W + x0]!,
        b = ref![y0 * W + x0 + 1]!,
        c = ref![(y0 + 1) * W + x0]!,
        d = ref![(y0 + 1) * W + x0 + 1]!;
      // The range over the 4 × 4 pixels around the sample (the 2 × 2 where the frame's edge is closer): how
      // much the 1× stack changes within a pixel or two — a star's flank or core, where a sharper sample (a
      // photosite of a Bayer drizzle, a sharp frame) differs from the blurrier 1× stack by that much.
      let lo = Math.min(a, b, c, d),
        hi = Math.max(a, b, c, d);
      if (x0 >= 1 && x0 + 2 < W && y0 >= 1 && y0 + 2 < bN)
        for (let yy = y0 - 1; yy <= y0 + 2; yy++)
          for (let xx = x0 - 1; xx <= x0 + 2; xx++) {
            const v = ref![yy * W + xx]!;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          }
      return [(1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d), hi - lo];
    };
    let rejected = 0;
    const recon = loadRecon();
    const keepOpen = plan.frames.length <= OPEN_FILES_MAX;
    for (const [k, fr] of plan.frames.entries()) {
      ctx.signal.throwIfAborted();
      const H = plan.matrices[k]!;
      const inverse = invert(H);
      if (!inverse) throw new Error(`${fr.path}: the registration transform is singular`);
      const half = kernel === "point" ? 0 : (pixfrac * s * linearScale(H)) / 2;
      const h = keepOpen ? await cachedFile(ctx, fr.path) : undefined;
      const file = h?.file ?? (await FitsFile.open(fr.path));
      try {
        const img = await file.image(fr.hdu);
        // The source rows whose drops can land in the band; a mosaic is demosaicked with a margin beyond
        // them (so those rows have the whole frame's values) that is not drizzled.
        const core = sourceRows(inverse, W, yRef0, yRef1 - yRef0, img.height, 2, false);
        if (!core) continue;
        const dm = cfaOf(img) && !plan.cfa ? demosaicMargin(plan.debayer) : 0;
        let r0 = Math.max(0, core[0] - dm);
        if (dm) r0 -= r0 & 1;
        // Bayer drizzle: the raw mosaic rows, each photosite only into its own colour's plane.
        const src = plan.cfa
          ? { data: await img.readRows(core[0], core[1] - core[0], 0), rows: core }
          : await warpRowsSource(recon, img, plan.debayer, [r0, Math.min(img.height, core[1] + dm)], i.c, ctx.signal, plan.ranges?.[k]);
        const s0 = src.rows[0];
        const colour = plan.cfa ? "RGB"[i.c]! : "";
        const site = (x: number, y: number) => plan.cfa!.pattern[((y + plan.cfa!.offsetY) & 1) * 2 + ((x + plan.cfa!.offsetX) & 1)];
        const a = ch.scale[k]!,
          b = ch.offset[k]!,
          w = ch.weights[k]!,
          sig = ch.sigma[k]!;
        const lowT = plan.blot?.low ?? 0,
          highT = plan.blot?.high ?? 0;
        for (let y = core[0]; y < core[1]; y++) {
          const row = (y - s0) * img.width;
          for (let x = 0; x < img.width; x++) {
            if (colour && site(x, y) !== colour) continue;
            const v = src.data[row + x]!;
            if (!(v - v === 0)) continue;
            const q = H[6]! * x + H[7]! * y + H[8]!;
            const X = (H[0]! * x + H[1]! * y + H[2]!) / q,
              Y = (H[3]! * x + H[4]! * y + H[5]!) / q;
            const U = (X + 0.5) * s - 0.5,
              V = (Y + 0.5) * s - 0.5;
            if (V + half < i.y0 - 0.5 || V - half > i.y0 + i.rows - 0.5) continue;
            const xv = a * v + b;
            if (ref) {
              const [m, range] = blotAt(X, Y);
              if (m - m === 0) {
                const tol = Math.sqrt(sig * sig + 1.44 * range * range);
                if (xv < m - lowT * tol || xv > m + highT * tol) {
                  rejected++;
                  continue;
                }
              }
            }
            deposit(num, den, Wo, i.y0, i.rows, U, V, half, xv, w);
          }
        }
      } finally {
        if (h) await h.release();
        else await file.close();
      }
    }
    const data = new Float32Array(num.length),
      coverage = new Float32Array(num.length);
    for (let p = 0; p < num.length; p++) {
      data[p] = den[p]! > 0 ? num[p]! / den[p]! : NaN;
      coverage[p] = den[p]!;
    }
    return { data, coverage, rejected };
  },
);
