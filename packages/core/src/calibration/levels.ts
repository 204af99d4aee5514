/**
 * Levels of raw calibration sets, measured cheaply for planning: the 5σ-clipped mean of a central box
 * (256² or the whole frame when smaller) of the first frames, and the temporal noise from the difference
 * of two frames (σ(a − b)/√2, clipped the same way — fixed-pattern structure cancels, so for a bias or a
 * short dark it is the read noise). From the levels of a bias and darks, or of darks of several exposures, the dark current
 * (ADU/s) follows; the plan uses it to say how much dark signal an offset-only calibration leaves in.
 *
 * Only the box is read (a few hundred KB per frame), so `validate` stays fast on large libraries.
 */
import { FitsFile } from "@tile-compile/fits";
import { MAD_TO_SIGMA, median } from "../util/stats.js";

export interface SetLevel {
  /** Median level of the central box (ADU), averaged over the frames read. */
  level: number;
  /** Temporal noise per frame (ADU) from two frames' difference; undefined with one frame. */
  noise?: number;
  /** Mean EXPTIME of the frames read (s), when given. */
  exposureSeconds?: number;
  framesRead: number;
}

const BOX = 256;

/**
 * Mean and σ of the values within 5 robust σ of the median: unlike the median and the MAD, exact on
 * quantised data (a 12-bit camera writing multiples of 16 has medians only on that grid).
 */
function clippedMoments(a: Float32Array): { mean: number; sigma: number } {
  const m = median(a);
  const dev = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) dev[i] = Math.abs(a[i]! - m);
  const limit = 5 * Math.max(MAD_TO_SIGMA * median(dev), 1e-6) + 1e-9;
  let n = 0,
    s = 0,
    s2 = 0;
  for (const v of a)
    if (Math.abs(v - m) <= Math.max(limit, 8)) {
      n++;
      s += v;
      s2 += v * v;
    }
  const mean = s / n;
  return { mean, sigma: Math.sqrt(Math.max(0, s2 / n - mean * mean)) };
}

/** The central box of a frame's first channel. */
async function centralBox(path: string): Promise<{ data: Float32Array; exposure?: number }> {
  const f = await FitsFile.open(path);
  try {
    const r = await f.image();
    const w = Math.min(BOX, r.width),
      h = Math.min(BOX, r.height);
    const data = await r.readTile((r.width - w) >> 1, (r.height - h) >> 1, w, h, 0);
    const exposure = r.header.getNumber("EXPTIME") ?? r.header.getNumber("EXPOSURE");
    return { data, ...(exposure !== undefined ? { exposure } : {}) };
  } finally {
    await f.close();
  }
}

/** Level and temporal noise of a raw set (or of one master file) from up to `frames` files. */
export async function measureSetLevel(files: readonly string[], frames = 2): Promise<SetLevel> {
  const boxes = [];
  for (const p of files.slice(0, frames)) boxes.push(await centralBox(p));
  const levels = boxes.map((b) => clippedMoments(b.data).mean);
  const out: SetLevel = { level: levels.reduce((a, b) => a + b, 0) / levels.length, framesRead: boxes.length };
  if (boxes.length >= 2) {
    const [a, b] = [boxes[0]!.data, boxes[1]!.data];
    const d = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) d[i] = a[i]! - b[i]!;
    out.noise = clippedMoments(d).sigma / Math.SQRT2;
  }
  const exps = boxes.map((b) => b.exposure).filter((e): e is number => e !== undefined);
  if (exps.length) out.exposureSeconds = exps.reduce((a, b) => a + b, 0) / exps.length;
  return out;
}

/**
 * Dark current (ADU/s) from levels at several exposures: the least-squares slope of level against
 * exposure (a bias counts as exposure 0). Undefined when fewer than two distinct exposures.
 */
export function darkCurrent(
  points: readonly { exposureSeconds: number; level: number }[],
): { rate: number; intercept: number } | undefined {
  const xs = points.map((p) => p.exposureSeconds),
    ys = points.map((p) => p.level);
  if (new Set(xs).size < 2) return undefined;
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n,
    my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0,
    sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const rate = sxy / sxx;
  return { rate, intercept: my - rate * mx };
}
