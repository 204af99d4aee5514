/** RCD debayering — twin of native/src/rcd.rs (see there for the method): the same f64 operations in the same order, f32 planes. */
import { debayer, PATTERNS } from "./debayer.js";

const EPS = 1e-5;
const EPSSQ = 1e-10;
export const RCD_BORDER = 5;

const floorSq = (t: number) => (t > EPSSQ ? t : EPSSQ);
const limit = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
function hpf(c: Float32Array, i: number, s: number): number {
  const h = c[i - 3 * s]! - c[i - s]! - c[i + s]! + c[i + 3 * s]! - 3 * (c[i - 2 * s]! + c[i + 2 * s]!) + 6 * c[i]!;
  return h * h;
}
function refine(d: Float32Array, i: number, w: number): number {
  const c = d[i]!;
  const n = 0.25 * (d[i - w - 1]! + d[i - w + 1]! + d[i + w - 1]! + d[i + w + 1]!);
  return Math.abs(0.5 - c) < Math.abs(0.5 - n) ? n : c;
}

/** The direction statistic along strides sa and sb at the sites `at` selects (rcd.rs `direction`). */
function direction(c: Float32Array, w: number, h: number, sa: number, sb: number, at: (x: number, y: number) => boolean): Float32Array {
  const n = w * h;
  const asq = new Float32Array(n),
    bsq = new Float32Array(n);
  for (let y = 3; y < h - 3; y++)
    for (let x = 3; x < w - 3; x++) {
      if (!at(x, y)) continue;
      const i = y * w + x;
      asq[i] = hpf(c, i, sa);
      bsq[i] = hpf(c, i, sb);
    }
  const dir = new Float32Array(n).fill(0.5);
  for (let y = 4; y < h - 4; y++)
    for (let x = 4; x < w - 4; x++) {
      if (!at(x, y)) continue;
      const i = y * w + x;
      const a = floorSq(asq[i - sa]! + asq[i]! + asq[i + sa]!);
      const b = floorSq(bsq[i - sb]! + bsq[i]! + bsq[i + sb]!);
      dir[i] = a / (a + b);
    }
  return dir;
}

export function rcd(
  src: Float32Array,
  w: number,
  h: number,
  pattern: number,
  offX: number,
  offY: number,
  out: [Float32Array, Float32Array, Float32Array],
  range: [number, number] = [NaN, NaN],
): void {
  debayer(src, w, h, pattern, offX, offY, false, out);
  const b = RCD_BORDER;
  if (w < 2 * b + 1 || h < 2 * b + 1) return;
  const pat = PATTERNS[pattern]!;
  const color = (x: number, y: number) => pat[((y + offY) & 1) * 2 + ((x + offX) & 1)]!;
  let lo = Infinity,
    hi = -Infinity;
  if (Number.isFinite(range[0]) && Number.isFinite(range[1])) [lo, hi] = range;
  else
    for (let i = 0; i < src.length; i++) {
      const v = src[i]!;
      if (v - v === 0) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  if (!(hi > lo)) return;
  const p = lo < 1e-3 * (hi - lo) ? 1e-3 * (hi - lo) - lo : 0;
  const s = hi + p;
  const n = w * h;
  const c = new Float32Array(n);
  for (let i = 0; i < n; i++) c[i] = (src[i]! + p) / s;
  const col = out.map((o) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (o[i]! + p) / s;
    return a;
  }) as [Float32Array, Float32Array, Float32Array];
  const vh = direction(c, w, h, w, 1, () => true);
  const lpf = new Float32Array(n);
  for (let y = 1; y < h - 1; y++)
    for (let x = 1; x < w - 1; x++) {
      if (color(x, y) === 1) continue;
      const i = y * w + x;
      lpf[i] =
        c[i]! +
        0.5 * (c[i - w]! + c[i + w]! + c[i - 1]! + c[i + 1]!) +
        0.25 * (c[i - w - 1]! + c[i - w + 1]! + c[i + w - 1]! + c[i + w + 1]!);
    }
  const G = col[1];
  for (let y = b; y < h - b; y++)
    for (let x = b; x < w - b; x++) {
      if (color(x, y) === 1) continue;
      const i = y * w + x;
      const grad = (st: number) =>
        EPS +
        Math.abs(c[i + st]! - c[i - st]!) +
        Math.abs(c[i]! - c[i + 2 * st]!) +
        Math.abs(c[i + st]! - c[i + 3 * st]!) +
        Math.abs(c[i + 2 * st]! - c[i + 4 * st]!);
      const est = (st: number) => (c[i + st]! * 2 * lpf[i]!) / (EPS + lpf[i]! + lpf[i + 2 * st]!);
      const gn = grad(-w),
        gs = grad(w),
        gw = grad(-1),
        ge = grad(1);
      const en = est(-w),
        es = est(w),
        ew = est(-1),
        ee = est(1);
      const v = (gs * en + gn * es) / (gn + gs);
      const hh = (ge * ew + gw * ee) / (ge + gw);
      const d = refine(vh, i, w);
      G[i] = limit(d * hh + (1 - d) * v);
    }
  const pq = direction(c, w, h, w + 1, w - 1, (x, y) => color(x, y) !== 1);
  for (let y = b; y < h - b; y++)
    for (let x = b; x < w - b; x++) {
      const here = color(x, y);
      if (here === 1) continue;
      const i = y * w + x;
      const t = here === 0 ? col[2] : col[0];
      const diag = (st: number): [number, number] => [
        EPS + Math.abs(t[i + st]! - t[i - st]!) + Math.abs(t[i + st]! - t[i + 3 * st]!) + Math.abs(G[i]! - G[i + 2 * st]!),
        t[i + st]! - G[i + st]!,
      ];
      const nw = diag(-w - 1),
        se = diag(w + 1),
        ne = diag(-w + 1),
        sw = diag(w - 1);
      const pe = (nw[0] * se[1] + se[0] * nw[1]) / (nw[0] + se[0]);
      const qe = (ne[0] * sw[1] + sw[0] * ne[1]) / (ne[0] + sw[0]);
      const d = refine(pq, i, w);
      t[i] = limit(G[i]! + (1 - d) * pe + d * qe);
    }
  for (let y = b; y < h - b; y++)
    for (let x = b; x < w - b; x++) {
      if (color(x, y) !== 1) continue;
      const i = y * w + x;
      const d = refine(vh, i, w);
      for (const t of [col[0], col[2]]) {
        const card = (st: number): [number, number] => [
          EPS + Math.abs(G[i]! - G[i + 2 * st]!) + Math.abs(t[i + st]! - t[i - st]!) + Math.abs(t[i + st]! - t[i + 3 * st]!),
          t[i + st]! - G[i + st]!,
        ];
        const nn = card(-w),
          ss = card(w),
          ww = card(-1),
          ee = card(1);
        const v = (nn[0] * ss[1] + ss[0] * nn[1]) / (nn[0] + ss[0]);
        const hh = (ee[0] * ww[1] + ww[0] * ee[1]) / (ee[0] + ww[0]);
        t[i] = limit(G[i]! + d * hh + (1 - d) * v);
      }
    }
  for (let k = 0; k < 3; k++) {
    const dst = out[k]!,
      sp = col[k]!;
    for (let y = b; y < h - b; y++) for (let x = b; x < w - b; x++) if (color(x, y) !== k) dst[y * w + x] = sp[y * w + x]! * s - p;
  }
  fluxCorrect(src, w, h, pattern, offX, offY, s, out);
}

/** Half-size of the box over which each plane's flux is restored (rcd.rs FLUX_BOX_R). */
export const FLUX_BOX_R = 4;

/** Box sums over the (2r+1)² window clamped at the edges, rows then columns (rcd.rs `box_sum`). */
function boxSum(src: Float32Array, w: number, h: number, r: number, tmp: Float32Array, out: Float32Array): void {
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const x1 = Math.min(w - 1, x + r);
      let t = 0;
      for (let xx = Math.max(0, x - r); xx <= x1; xx++) t += src[y * w + xx]!;
      tmp[y * w + x] = t;
    }
  for (let y = 0; y < h; y++) {
    const y0 = Math.max(0, y - r),
      y1 = Math.min(h - 1, y + r);
    for (let x = 0; x < w; x++) {
      let t = 0;
      for (let yy = y0; yy <= y1; yy++) t += tmp[yy * w + x]!;
      out[y * w + x] = t;
    }
  }
}

/** Pixels in the clamped window of half-size r around x on an axis of n (rcd.rs `span`). */
const span = (x: number, r: number, n: number) => Math.min(n - 1, x + r) - Math.max(0, x - r) + 1;

/** Step 6: bilinear − RCD of each plane shared out over the box in proportion to the local signal (rcd.rs `flux_correct`). */
function fluxCorrect(
  src: Float32Array,
  w: number,
  h: number,
  pattern: number,
  offX: number,
  offY: number,
  scale: number,
  out: [Float32Array, Float32Array, Float32Array],
): void {
  const n = w * h,
    r = FLUX_BOX_R;
  const bl = [0, 1, 2].map(() => new Float32Array(n)) as [Float32Array, Float32Array, Float32Array];
  debayer(src, w, h, pattern, offX, offY, false, bl);
  // Working planes stored as f32, arithmetic in f64 (rcd.rs).
  const wt = new Float32Array(n),
    a = new Float32Array(n),
    b = new Float32Array(n),
    tmp = new Float32Array(n);
  const floor = 1e-9 * scale;
  for (let k = 0; k < 3; k++) {
    const cur = out[k]!,
      bil = bl[k]!;
    for (let i = 0; i < n; i++) {
      const v = cur[i]!;
      wt[i] = Number.isFinite(v) ? v : 0;
    }
    boxSum(wt, w, h, r, tmp, b);
    for (let y = 0; y < h; y++) {
      const cr = span(y, r, h);
      for (let x = 0; x < w; x++) {
        const i = y * w + x,
          e = wt[i]! - b[i]! / (cr * span(x, r, w));
        wt[i] = e;
        a[i] = Math.abs(e);
      }
    }
    boxSum(a, w, h, r, tmp, b);
    for (let y = 0; y < h; y++) {
      const cr = span(y, r, h);
      for (let x = 0; x < w; x++) {
        const i = y * w + x,
          e = wt[i]!;
        wt[i] = (e > 0 ? e : 0) + (0.5 * b[i]!) / (cr * span(x, r, w)) + floor;
      }
    }
    boxSum(wt, w, h, r, tmp, b);
    for (let i = 0; i < n; i++) {
      const d = bil[i]! - cur[i]!;
      a[i] = Number.isFinite(d) ? d / b[i]! : 0;
    }
    boxSum(a, w, h, r, tmp, b);
    for (let i = 0; i < n; i++) cur[i] = cur[i]! + wt[i]! * b[i]!;
  }
}
