/**
 * Estimators for stacks of real frames, written here and sharing no code with the methods under test (no
 * star detector, background mesh or tile metric of recon-native): where the real data sets are, the sky
 * noise of a stack, and its isolated stars' FWHM from circular Gaussian fits (score.ts fitFwhm).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fitFwhm, median } from "./score.js";

/** The shared folder of real frames `sub` (e.g. "seestar/M94/2025_03_27"), or undefined when not present. */
export function realData(sub: string): string | undefined {
  return [
    process.env.TILE_COMPILE_DATA && join(process.env.TILE_COMPILE_DATA, sub),
    new URL(`../../../shared/data/${sub}`, import.meta.url).pathname,
    `/work/shared/data/${sub}`,
  ].find((p): p is string => Boolean(p) && existsSync(p!));
}

/** Small-scale sky noise of one plane on the pixels `sky` marks: each minus its 7×7 median, 1.4826·MAD. */
export function skyNoise(p: Float32Array, W: number, H: number, sky: Uint8Array): number {
  const res: number[] = [],
    nb: number[] = [];
  // Every 3rd column of every row: all four pixel phases of the Bayer pattern alike (a debayered frame's
  // noise differs between them).
  for (let y = 3; y < H - 3; y++)
    for (let x = 3; x < W - 3; x += 3) {
      const i = y * W + x;
      if (!sky[i]) continue;
      nb.length = 0;
      for (let dy = -3; dy <= 3; dy++) for (let dx = -3; dx <= 3; dx++) nb.push(p[i + dy * W + dx]!);
      res.push(p[i]! - median(nb));
    }
  const m = median(res);
  return 1.4826 * median(res.map((v) => Math.abs(v - m)));
}

/** Sky: pixels whose 5×5 mean lies below the plane's median + 1σ (σ from the MAD), 4 px from the edge. */
export function skyMask(p: Float32Array, W: number, H: number): Uint8Array {
  const sample = Array.from({ length: Math.floor((W * H) / 13) }, (_, k) => p[13 * k]!).filter(Number.isFinite);
  const med = median(sample),
    sd = 1.4826 * median(sample.map((v) => Math.abs(v - med)));
  const m = new Uint8Array(W * H);
  for (let y = 4; y < H - 4; y++)
    for (let x = 4; x < W - 4; x++) {
      let s = 0;
      for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) s += p[(y + dy) * W + x + dx]!;
      if (s / 25 < med + sd) m[y * W + x] = 1;
    }
  return m;
}

/**
 * Median FWHM of the isolated, unsaturated stars of a plane: local maxima (9×9) above the median + `k`σ,
 * peak below half the plane's brightest pixel, no other such maximum within 16 px, 24 px from the edges;
 * each fitted with a circular Gaussian + constant (score.ts fitFwhm, half-size 7); fits outside 0.8–12 px
 * dropped. Returns the median and the stars used (positions, FWHM).
 */
export function isolatedStarFwhm(
  p: Float32Array,
  W: number,
  H: number,
  k = 15,
): { fwhm: number; stars: { x: number; y: number; fwhm: number }[] } {
  const sample = Array.from({ length: Math.floor((W * H) / 7) }, (_, i) => p[7 * i]!).filter(Number.isFinite);
  const med = median(sample),
    sd = 1.4826 * median(sample.map((v) => Math.abs(v - med)));
  let top = -Infinity;
  for (const v of p) if (v > top) top = v;
  const peaks: { x: number; y: number; v: number }[] = [];
  const E = 24;
  for (let y = E; y < H - E; y++)
    for (let x = E; x < W - E; x++) {
      const v = p[y * W + x]!;
      if (!(v > med + k * sd)) continue;
      let isMax = true;
      for (let dy = -4; dy <= 4 && isMax; dy++)
        for (let dx = -4; dx <= 4; dx++) {
          const u = p[(y + dy) * W + x + dx]!;
          if (u > v || (u === v && (dy < 0 || (dy === 0 && dx < 0)))) {
            isMax = false;
            break;
          }
        }
      if (isMax) peaks.push({ x, y, v });
    }
  const stars: { x: number; y: number; fwhm: number }[] = [];
  for (const s of peaks) {
    if (s.v > 0.5 * top) continue;
    if (peaks.some((o) => o !== s && Math.hypot(o.x - s.x, o.y - s.y) < 16)) continue;
    const f = fitFwhm(p, W, H, s.x, s.y, 7);
    if (Number.isFinite(f) && f > 0.8 && f < 12) stars.push({ x: s.x, y: s.y, fwhm: f });
  }
  return { fwhm: median(stars.map((s) => s.fwhm)), stars };
}
