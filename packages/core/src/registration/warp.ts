/**
 * Warping frames onto the reference grid where they are used (the fused path, `registration.write_registered:
 * false`): a stacker given a {@link WarpPlan} reads each band of rows it needs from the *calibrated* frames
 * and warps it on the fly, with the same kernels registration uses to write registered frames — so nothing
 * is written and read back. One-shot-colour mosaics are demosaicked on the band (with a margin of rows, so
 * every output row sees the same neighbourhood as a whole-frame demosaic) before they are resampled.
 */
import { loadRecon, type Interpolation, type ReconBackend } from "@tile-compile/recon-native";
import type { FitsHeader, FitsImage } from "@tile-compile/fits";
import type { FrameRef } from "../kernel/contracts.js";
import type { TaskContext } from "../executor/contracts.js";
import { cachedFile, scratch, OPEN_FILES_MAX } from "../executor/cache.js";
import { FitsFile } from "@tile-compile/fits";
import { invert } from "./geometry.js";
import { mapLimit } from "../util/pool.js";
import { TileCompileError } from "../errors/index.js";
import { bayerOf, readFrame } from "./stars.js";

/** What a stacker needs to warp unregistered frames onto the reference grid itself. */
export interface WarpPlan {
  /** The reference grid (the reference frame's size). */
  width: number;
  height: number;
  interpolation: Interpolation;
  /** Demosaic of one-shot-colour frames before they are resampled. */
  debayer: "rcd" | "bilinear";
  /** Per frame, in the stack's frame order: the row-major 3×3 matrix taking the frame's pixels onto the reference grid. */
  matrices: number[][];
  /**
   * `debayer: rcd`: per frame, the finite minimum and maximum of its whole mosaic (RCD scales its constants
   * to them; a band demosaicked with the frame's range gives the frame's values). Measured by the frame
   * statistics units (FrameStats.mosaicRange).
   */
  ranges?: [number, number][];
}

/** Rows a kernel reads on each side of a sample (interpolation support) — and a demosaic around a photosite. */
const WARP_SUPPORT: Record<Interpolation, number> = { bilinear: 1, bicubic: 2, lanczos3: 3 };
/**
 * Rows of mosaic on each side of a band that a band demosaic needs to give the whole-frame values: RCD's
 * passes chain neighbourhoods of up to 4 px each (direction, low-pass, ratios, then the colour differences),
 * inside its 5-px bilinear border, and its flux step adds a 9×9 box: 24 (even: the band keeps the mosaic's
 * phase) covers the chain with room; bilinear reads 1.
 */
const DEBAYER_MARGIN = { rcd: 24, bilinear: 2 } as const;

/** Rows of mosaic a band demosaic needs on each side to give the whole frame's values (even). */
export function demosaicMargin(debayer: WarpPlan["debayer"]): number {
  return DEBAYER_MARGIN[debayer];
}

/**
 * The source rows [s0, s1) of a `srcHeight`-row frame that the output rows [y0, y0 + rows) of a `width`-px
 * wide grid sample through `inverse` (grid → frame), widened by `margin`; s0 even with `even`. Null when
 * the band maps wholly outside the frame. (The band's extreme source rows are at its corners for any
 * transform registration accepts: affine, or a homography whose w stays positive over the frame.)
 */
export function sourceRows(
  inverse: readonly number[],
  width: number,
  y0: number,
  rows: number,
  srcHeight: number,
  margin: number,
  even: boolean,
): [number, number] | null {
  let lo = Infinity,
    hi = -Infinity;
  for (const x of [-0.5, width - 0.5])
    for (const y of [y0 - 0.5, y0 + rows - 0.5]) {
      const w = inverse[6]! * x + inverse[7]! * y + inverse[8]!;
      const sy = (inverse[3]! * x + inverse[4]! * y + inverse[5]!) / w;
      lo = Math.min(lo, sy);
      hi = Math.max(hi, sy);
    }
  let s0 = Math.max(0, Math.floor(lo) - margin);
  const s1 = Math.min(srcHeight, Math.ceil(hi) + margin + 1);
  if (even) s0 -= s0 & 1;
  return s0 < s1 && Number.isFinite(lo) && Number.isFinite(hi) ? [s0, s1] : null;
}

/** `inverse` (grid → frame) for output rows starting at y0 and a source plane starting at row s0: T(0, −s0)·inverse·T(0, y0). */
export function bandInverse(inverse: readonly number[], y0: number, s0: number): number[] {
  const m = [...inverse];
  // ·T(0, y0): the third column gains y0 × the second.
  for (let r = 0; r < 3; r++) m[3 * r + 2] = m[3 * r + 2]! + m[3 * r + 1]! * y0;
  // T(0, −s0)·: the second row loses s0 × the third.
  for (let k = 0; k < 3; k++) m[3 + k] = m[3 + k]! - s0 * m[6 + k]!;
  return m;
}

/**
 * For stacking providers that read registered frames only (TBQR, Siril, ...): refuse a fused-path input
 * instead of stacking unregistered frames as if they were registered.
 */
export function refuseWarp(input: { warp?: WarpPlan }, who: string): void {
  if (input.warp)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "stacking",
      reason: `${who} stacks registered frames; it cannot warp calibrated frames as it reads them (registration.write_registered: false / --transforms)`,
      hint: "Set registration.write_registered: true (the default), or use the built-in mean, median or rejection stacking.",
    });
}

/** The Bayer layout of a frame from its header (a one-channel frame with a known BAYERPAT), else undefined. */
export function cfaOf(h: { channels: number; header: FitsHeader }): ReturnType<typeof bayerOf> {
  return bayerOf(h as FitsImage);
}

/**
 * Output rows [y0, y0 + rows) of channel c of every frame, warped onto the plan's grid (NaN outside a
 * frame's footprint), into per-unit scratch buffers as readBand gives registered frames' rows.
 */
export async function readWarpedBand(
  ctx: TaskContext,
  key: string,
  frames: readonly { path: string; hdu?: number }[],
  plan: WarpPlan,
  y0: number,
  rows: number,
  c: number,
): Promise<Float32Array[]> {
  const recon = loadRecon();
  const W = plan.width;
  const views = frames.map((_, k) => scratch(ctx, `${key}:${k}`, rows * W));
  const keepOpen = frames.length <= OPEN_FILES_MAX;
  // Two frames at a time (one's rows decode in JavaScript while the other's warp runs in the kernel), each
  // lane reading its frames' source rows into one reused buffer (fresh ones per frame and band — 700 of
  // 2.7 MB for 100 × 2048² — cost page faults and garbage collection: ~15 % of the fused stack).
  await mapLimit(frames, 2, async (f, k, lane) => {
    ctx.signal.throwIfAborted();
    const inverse = invert(plan.matrices[k]!);
    if (!inverse) throw new Error(`${f.path}: the registration transform is singular`);
    const h = keepOpen ? await cachedFile(ctx, f.path) : undefined;
    const file = h?.file ?? (await FitsFile.open(f.path));
    try {
      const src = (n: number) => scratch(ctx, `${key}:source:${lane}`, n);
      await warpRows(recon, await file.image(f.hdu), plan, inverse, y0, rows, c, views[k]!, ctx.signal, plan.ranges?.[k], src);
    } finally {
      if (h) await h.release();
      else await file.close();
    }
  });
  return views;
}

/**
 * Rows [y0, y0 + rows) of channel c of one frame (an open image) warped onto the grid through `inverse`
 * (grid → frame) into `out` (NaN outside the frame): only the source rows the band samples are read (and,
 * for a one-shot-colour mosaic, demosaicked with a margin — with the frame's `range` for RCD).
 */
export async function warpRows(
  recon: ReconBackend,
  img: {
    width: number;
    height: number;
    channels: number;
    header: FitsHeader;
    readRows(y: number, n: number, c?: number, out?: Float32Array): Promise<Float32Array>;
  },
  plan: Pick<WarpPlan, "width" | "interpolation" | "debayer">,
  inverse: readonly number[],
  y0: number,
  rows: number,
  c: number,
  out: Float32Array,
  signal: AbortSignal,
  range?: [number, number],
  source?: (n: number) => Float32Array,
): Promise<void> {
  const cfa = cfaOf(img);
  const margin = WARP_SUPPORT[plan.interpolation] + (cfa ? DEBAYER_MARGIN[plan.debayer] : 0);
  const span = sourceRows(inverse, plan.width, y0, rows, img.height, margin, !!cfa);
  if (!span) {
    out.fill(NaN);
    return;
  }
  const [s0, s1] = span;
  const { data: plane } = await warpRowsSource(recon, img, plan.debayer, span, c, signal, range, source);
  await recon.warp({ data: plane, width: img.width, height: s1 - s0 }, bandInverse(inverse, y0, s0), {
    interpolation: plan.interpolation,
    width: plan.width,
    height: rows,
    out,
    signal,
  });
}

/** The finite minimum and maximum of a plane (RCD's value range: WarpPlan.ranges). */
export function finiteRange(data: Float32Array): [number, number] {
  let lo = Infinity,
    hi = -Infinity;
  for (const v of data)
    if (v - v === 0) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  return [lo, hi];
}

/** An open image as warpRows reads it. */
type RowSource = {
  width: number;
  height: number;
  channels: number;
  header: FitsHeader;
  readRows(y: number, n: number, c?: number, out?: Float32Array): Promise<Float32Array>;
};

/**
 * Source rows [s0, s1) of channel c of a frame as registration resamples them: a one-shot-colour mosaic
 * demosaicked on the rows (s0 even — the caller widens `span` by the demosaic's margin: see warpRows), with
 * the frame's `range` for RCD; else the channel's rows.
 */
export async function warpRowsSource(
  recon: ReconBackend,
  img: RowSource,
  debayer: WarpPlan["debayer"],
  span: [number, number],
  c: number,
  signal: AbortSignal,
  range?: [number, number],
  source?: (n: number) => Float32Array,
): Promise<{ data: Float32Array; rows: [number, number] }> {
  const cfa = cfaOf(img);
  const [s0, s1] = span;
  const buf = source?.((s1 - s0) * img.width);
  if (!cfa) return { data: await img.readRows(s0, s1 - s0, c, buf), rows: span };
  const mosaic = await img.readRows(s0, s1 - s0, 0, buf);
  const rgb = await recon.debayer(
    { data: mosaic, width: img.width, height: s1 - s0 },
    { ...cfa, method: debayer, signal, ...(range ? { range } : {}) },
  );
  return { data: [rgb.red, rgb.green, rgb.blue][c]!, rows: span };
}

/**
 * A whole frame warped onto the reference grid in memory (what registration writes as a registered frame):
 * the demosaicked R, G, B of a one-shot-colour frame, else its own channels; the frame's own size.
 */
export async function warpFrame(
  recon: ReconBackend,
  frame: FrameRef,
  matrix: readonly number[],
  o: {
    interpolation: Interpolation;
    debayer: "rcd" | "bilinear";
    signal: AbortSignal;
    image?: FitsImage;
    out?: (n: number) => Float32Array;
  },
): Promise<{ data: Float32Array; width: number; height: number; channels: number; image: FitsImage; mosaicRange?: [number, number] }> {
  const inverse = invert(matrix);
  if (!inverse) throw new Error("the fitted transform is singular");
  const img = o.image ?? (await readFrame(frame, o.signal));
  const cfa = bayerOf(img);
  const n = img.width * img.height;
  const colour = cfa
    ? await recon
        .debayer({ data: img.data, width: img.width, height: img.height }, { ...cfa, method: o.debayer, signal: o.signal })
        .then((rgb) => [rgb.red, rgb.green, rgb.blue])
    : Array.from({ length: img.channels }, (_, c) => img.data.subarray(c * n, (c + 1) * n));
  const data = o.out ? o.out(n * colour.length) : new Float32Array(n * colour.length);
  for (let c = 0; c < colour.length; c++)
    await recon.warp({ data: colour[c]!, width: img.width, height: img.height }, inverse, {
      interpolation: o.interpolation,
      signal: o.signal,
      out: data.subarray(c * n, (c + 1) * n),
    });
  const mosaicRange = cfa ? finiteRange(img.data) : undefined;
  return { data, width: img.width, height: img.height, channels: colour.length, image: img, ...(mosaicRange ? { mosaicRange } : {}) };
}
