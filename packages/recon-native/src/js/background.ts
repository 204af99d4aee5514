/** Background and noise maps — twin of native/src/background.rs. */
import { median } from "./stats.js";

/**
 * Sigma-clipped (median of kept, σ of kept) of `vals[0..n)` (sorted in place): the same sorted-range
 * passes and prefix sums about the cell's median as background.rs, in the same f64 operations.
 */
export function clippedMedianSd(vals: Float64Array, n: number, k: number, iterations: number, prefix: Float64Array): [number, number] {
  const v = vals.subarray(0, n).sort();
  const mid = (lo: number, hi: number) => {
    const len = hi - lo;
    return len === 0 ? NaN : len % 2 === 1 ? v[lo + (len >> 1)]! : (v[lo + (len >> 1) - 1]! + v[lo + (len >> 1)]!) / 2;
  };
  const p = mid(0, n);
  // prefix[2i], prefix[2i + 1]: Σ d and Σ d² of the first i sorted values, d = x − p.
  prefix[0] = 0;
  prefix[1] = 0;
  let s = 0,
    q = 0;
  for (let i = 0; i < n; i++) {
    const d = v[i]! - p;
    s += d;
    q += d * d;
    prefix[2 * i + 2] = s;
    prefix[2 * i + 3] = q;
  }
  const sd = (lo: number, hi: number) => {
    if (hi === lo) return NaN;
    const m = hi - lo;
    const mean = (prefix[2 * hi]! - prefix[2 * lo]!) / m;
    return Math.sqrt(Math.max((prefix[2 * hi + 1]! - prefix[2 * lo + 1]!) / m - mean * mean, 0));
  };
  let lo = 0,
    hi = n;
  for (let it = 0; it < iterations; it++) {
    if (hi - lo < 3) break;
    const c = mid(lo, hi);
    const t = k * sd(lo, hi);
    const l0 = lo,
      h0 = hi;
    while (lo < hi && !(Math.abs(v[lo]! - c) <= t)) lo++;
    while (hi > lo && !(Math.abs(v[hi - 1]! - c) <= t)) hi--;
    if (lo === l0 && hi === h0) break;
  }
  return [mid(lo, hi), sd(lo, hi)];
}

export interface Mesh {
  gx: number;
  gy: number;
  bg: Float64Array;
  noise: Float64Array;
}

export function mesh(data: Float32Array, w: number, h: number, m: number, k: number, iterations: number): Mesh {
  const gx = Math.ceil(w / m);
  const gy = Math.ceil(h / m);
  const bg = new Float64Array(gx * gy).fill(NaN);
  const noise = new Float64Array(gx * gy).fill(NaN);
  const step = Math.max(1, Math.floor(m / 32)); // cells sampled on a sub-grid of ≈ 1024 pixels (background.rs)
  const vals = new Float64Array(m * m);
  const prefix = new Float64Array(2 * m * m + 2);
  for (let j = 0; j < gy; j++) {
    for (let i = 0; i < gx; i++) {
      const x0 = i * m,
        x1 = Math.min(w, (i + 1) * m),
        y0 = j * m,
        y1 = Math.min(h, (j + 1) * m);
      let n = 0;
      for (let y = y0; y < y1; y += step) {
        for (let x = x0; x < x1; x += step) {
          const v = data[y * w + x]!;
          if (Number.isFinite(v)) vals[n++] = v;
        }
      }
      if (n * 4 < Math.ceil((x1 - x0) / step) * Math.ceil((y1 - y0) / step) || n === 0) continue;
      const [b, s] = clippedMedianSd(vals, n, k, iterations, prefix);
      bg[j * gx + i] = b;
      noise[j * gx + i] = s;
    }
  }
  fillAndFilter(bg, gx, gy);
  fillAndFilter(noise, gx, gy);
  return { gx, gy, bg, noise };
}

function fillAndFilter(g: Float64Array, gx: number, gy: number): void {
  const valid = Float64Array.from(g.filter((v) => Number.isFinite(v)));
  if (valid.length === 0) return; // nothing measurable: the maps stay NaN
  const fill = median(valid);
  for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i]!)) g[i] = fill;
  const src = Float64Array.from(g);
  // Neighbours beyond the edge are linear extrapolations (2·edge − inner), as in background.rs.
  const col = (x: number, y: number): number => {
    const at = (xx: number) => src[y * gx + xx]!;
    if (x < 0) return gx > 1 ? 2 * at(0) - at(1) : at(0);
    if (x >= gx) return gx > 1 ? 2 * at(gx - 1) - at(gx - 2) : at(gx - 1);
    return at(x);
  };
  const ext = (x: number, y: number): number => {
    if (y < 0) return gy > 1 ? 2 * col(x, 0) - col(x, 1) : col(x, 0);
    if (y >= gy) return gy > 1 ? 2 * col(x, gy - 1) - col(x, gy - 2) : col(x, gy - 1);
    return col(x, y);
  };
  const nb = new Float64Array(9);
  for (let j = 0; j < gy; j++) {
    for (let i = 0; i < gx; i++) {
      let n = 0;
      for (let y = j - 1; y < j + 2; y++) for (let x = i - 1; x < i + 2; x++) nb[n++] = ext(x, y);
      g[j * gx + i] = median(nb, n);
    }
  }
}

function axis(x: number, m: number, g: number): [number, number, number] {
  const f = (x + 0.5) / m - 0.5;
  if (f <= 0) return [0, 0, 0];
  const i0 = Math.floor(f);
  if (i0 >= g - 1) return [g - 1, g - 1, 0];
  return [i0, i0 + 1, f - i0];
}

export function interpolate(meshValues: Float64Array, gx: number, gy: number, m: number, w: number, h: number, out: Float32Array): void {
  // Separable, as the native kernel: mesh rows interpolated along x once, then each image row blends two.
  const along = new Float64Array(gy * w);
  for (let j = 0; j < gy; j++) {
    for (let x = 0; x < w; x++) {
      const [i0, i1, tx] = axis(x, m, gx);
      along[j * w + x] = (1 - tx) * meshValues[j * gx + i0]! + tx * meshValues[j * gx + i1]!;
    }
  }
  for (let y = 0; y < h; y++) {
    const [j0, j1, ty] = axis(y, m, gy);
    const sy = 1 - ty,
      o0 = j0 * w,
      o1 = j1 * w;
    for (let x = 0; x < w; x++) out[y * w + x] = sy * along[o0 + x]! + ty * along[o1 + x]!;
  }
}
