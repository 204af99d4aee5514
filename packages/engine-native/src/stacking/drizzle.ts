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

/** Bayer pattern codes of the drizzle kernel. */
const BAYER_CODES: Record<string, number> = { RGGB: 0, GRBG: 1, GBRG: 2, BGGR: 3 };

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
        rejected += await recon.drizzleDeposit(
          { data: src.data, width: img.width },
          {
            matrix: H,
            scale: s,
            half,
            srcY0: src.rows[0],
            rowFrom: core[0],
            rowTo: core[1],
            bandY0: i.y0,
            bandRows: i.rows,
            outWidth: Wo,
            a: ch.scale[k]!,
            b: ch.offset[k]!,
            weight: ch.weights[k]!,
            ...(plan.cfa
              ? {
                  cfa: {
                    pattern: BAYER_CODES[plan.cfa.pattern]!,
                    offsetX: plan.cfa.offsetX & 1,
                    offsetY: plan.cfa.offsetY & 1,
                    channel: i.c,
                  },
                }
              : {}),
            ...(ref && plan.blot
              ? { blot: { data: ref, y0: b0, width: W, rows: bN, sigma: ch.sigma[k]!, low: plan.blot.low, high: plan.blot.high } }
              : {}),
          },
          num,
          den,
          { signal: ctx.signal },
        );
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
