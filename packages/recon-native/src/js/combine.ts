/** Pixel-wise combination with rejection — twin of native/src/combine.rs (see there for the rules). */
export const MEAN = 0,
  MEDIAN = 1;
/** Relaxation of the winsorizing iteration (see RELAX in combine.rs). */
const RELAX = 1.63;
/** Closed-form rounds before the iteration (see ROUNDS in combine.rs). */
const ROUNDS = 6;
const K2 = 1.134 * 1.134;
export const R_NONE = 0,
  R_SIGMA = 1,
  R_WINSORIZED = 2,
  R_LINEAR = 3,
  R_PERCENTILE = 4,
  R_MAD = 5;

export interface Params {
  method: number;
  rejection: number;
  low: number;
  high: number;
  iterations: number;
}

function sort(v: Float64Array, n: number): void {
  if (n > 24) {
    v.subarray(0, n).sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const x = v[i]!;
    let j = i;
    while (j > 0 && v[j - 1]! > x) {
      v[j] = v[j - 1]!;
      j--;
    }
    v[j] = x;
  }
}
const medianSorted = (s: Float64Array, n: number) => (n % 2 === 1 ? s[n >> 1]! : (s[(n >> 1) - 1]! + s[n >> 1]!) / 2);
/** First index in [a, b) with s[i] >= v. */
function lowerBound(s: Float64Array, a: number, b: number, v: number): number {
  let lo = a,
    hi = b;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (s[m]! < v) lo = m + 1;
    else hi = m;
  }
  return lo;
}
/** First index in [a, b) with s[i] > v. */
function upperBound(s: Float64Array, a: number, b: number, v: number): number {
  let lo = a,
    hi = b;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (s[m]! <= v) lo = m + 1;
    else hi = m;
  }
  return lo;
}
const medianRange = (s: Float64Array, a: number, b: number) => medianSorted(s.subarray(a, b), b - a);
const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

/** Per-pixel scratch. */
export class Px {
  vals: Float64Array;
  idx: Int32Array;
  keep: Uint8Array;
  s: Float64Array;
  wz: Float64Array;
  P: Float64Array;
  Q: Float64Array;
  n = 0;
  constructor(cap: number) {
    this.vals = new Float64Array(cap);
    this.idx = new Int32Array(cap);
    this.keep = new Uint8Array(cap);
    this.s = new Float64Array(cap);
    this.wz = new Float64Array(cap);
    this.P = new Float64Array(cap + 1);
    this.Q = new Float64Array(cap + 1);
  }
  gatherKept(): number {
    let m = 0;
    for (let k = 0; k < this.n; k++) if (this.keep[k]) this.s[m++] = this.vals[k]!;
    return m;
  }
}

/** Closed-form fixed point of the winsorizing map for fixed clamp counts (see fixed_sigma in combine.rs). */
function fixedSigma(m: number, cp: number, nl: number, nh: number, d1: number, d2: number): number {
  const k = nl + nh,
    dl = nh - nl;
  const s0 = k * cp + d1;
  const c0 = k * cp * cp + d2 - (s0 * s0) / m;
  const c1 = 3.0 * dl * (cp - s0 / m);
  const c2 = 2.25 * (k - (dl * dl) / m);
  const aq = m - 1.0 - K2 * c2;
  const bq = K2 * c1;
  const cq = K2 * (c0 > 0 ? c0 : 0);
  const disc = Math.sqrt(bq * bq + 4.0 * aq * cq);
  const r = bq >= 0 ? (bq + disc) / (2.0 * aq) : (2.0 * cq) / (disc - bq);
  return aq > 0 ? r : NaN;
}

/** The winsorizing iteration, the closed form's fallback (see winsor_iterate in combine.rs). */
function winsorIterate(
  s: Float64Array,
  P: Float64Array,
  Q: Float64Array,
  a: number,
  b: number,
  shift: number,
  c: number,
  sd: number,
): [number, number] {
  const m = b - a;
  const mid = a + (m >> 1);
  let cc = c,
    ss = sd;
  for (let it = 0; it < 10; it++) {
    const wl = cc - 1.5 * ss,
      wh = cc + 1.5 * ss;
    const hl = lowerBound(s, a, b, wl),
      hu = upperBound(s, a, b, wh);
    const nl = hl - a,
      nh = b - hu;
    const i0 = hl,
      i1 = Math.max(hu, hl);
    const lw = wl - shift,
      hw = wh - shift;
    const sum = nl * lw + (P[i1]! - P[i0]!) + nh * hw;
    const sq = nl * lw * lw + (Q[i1]! - Q[i0]!) + nh * hw * hw;
    const v = (sq - (sum * sum) / m) / (m - 1);
    const s1 = 1.134 * Math.sqrt(v > 0 ? v : 0);
    cc = m % 2 === 1 ? clamp(s[mid]!, wl, wh) : (clamp(s[mid - 1]!, wl, wh) + clamp(s[mid]!, wl, wh)) / 2;
    const done = Math.abs(s1 - ss) <= 5e-4 * ss;
    const t = ss + RELAX * (s1 - ss);
    ss = done ? s1 : t > 0 ? t : 0;
    if (done) break;
  }
  return [cc, ss];
}

/** Winsorized (centre, σ) of the sorted range [a, b): closed form checked by its own clamp counts, else the iteration (see winsor in combine.rs). */
function winsor(
  s: Float64Array,
  P: Float64Array,
  Q: Float64Array,
  a: number,
  b: number,
  shift: number,
  c: number,
  sd: number,
): [number, number] {
  const m = b - a;
  const mid = a + (m >> 1);
  let sg = sd,
    nl = -1,
    nh = -1;
  for (let r = 0; r < ROUNDS; r++) {
    const hl = lowerBound(s, a, b, c - 1.5 * sg),
      hu = upperBound(s, a, b, c + 1.5 * sg);
    if (m % 2 === 0 && (hl > mid - 1 || hu <= mid)) break;
    if (hl - a === nl && b - hu === nh) return [c, sg];
    nl = hl - a;
    nh = b - hu;
    const i1 = Math.max(hu, hl);
    const x = fixedSigma(m, c - shift, nl, nh, P[i1]! - P[hl]!, Q[i1]! - Q[hl]!);
    if (!(x >= 0)) break;
    sg = x;
  }
  return winsorIterate(s, P, Q, a, b, shift, c, sd);
}

/** Sorted-range rejection (see combine.rs); px.s holds the n sorted values. */
function rejectRange(p: Params, px: Px, n: number): [number, number, number, number] {
  let a = 0,
    b = n,
    rl = 0,
    rh = 0;
  if (n < 3) return [a, b, rl, rh];
  const s = px.s,
    P = px.P,
    Q = px.Q;
  const shift = s[n >> 1]!;
  P[0] = 0;
  Q[0] = 0;
  let ps = 0,
    qs = 0;
  for (let i = 0; i < n; i++) {
    const d = s[i]! - shift;
    ps += d;
    qs += d * d;
    P[i + 1] = ps;
    Q[i + 1] = qs;
  }
  const sdRange = (a: number, b: number) => {
    const m = b - a;
    const sum = P[b]! - P[a]!;
    const sq = Q[b]! - Q[a]!;
    return Math.sqrt(Math.max((sq - (sum * sum) / m) / (m - 1), 0));
  };
  const passes = p.rejection === R_PERCENTILE ? 1 : p.iterations;
  for (let pass = 0; pass < passes; pass++) {
    const m = b - a;
    if (m < 3) break;
    const c = medianRange(s, a, b);
    let lo: number, hi: number;
    if (p.rejection === R_SIGMA) {
      const sd = sdRange(a, b);
      lo = c - p.low * sd;
      hi = c + p.high * sd;
    } else if (p.rejection === R_MAD) {
      for (let i = a; i < b; i++) px.wz[i - a] = Math.abs(s[i]! - c);
      sort(px.wz, m);
      const sd = 1.482602218505602 * medianSorted(px.wz, m);
      lo = c - p.low * sd;
      hi = c + p.high * sd;
    } else if (p.rejection === R_WINSORIZED) {
      const [cc, ss] = winsor(s, P, Q, a, b, shift, c, sdRange(a, b));
      lo = cc - p.low * ss;
      hi = cc + p.high * ss;
    } else {
      lo = c - p.low * Math.abs(c);
      hi = c + p.high * Math.abs(c);
    }
    const a2 = lowerBound(s, a, b, lo);
    const b2 = Math.max(upperBound(s, a, b, hi), a2);
    if (b2 - a2 < 2 || (a2 === a && b2 === b)) break;
    rl += a2 - a;
    rh += b - b2;
    a = a2;
    b = b2;
  }
  return [a, b, rl, rh];
}

/** Linear-fit rejection with per-value flags (see combine.rs). */
function rejectLinear(p: Params, px: Px): [number, number] {
  const n = px.n;
  let rl = 0,
    rh = 0;
  for (let pass = 0; pass < p.iterations; pass++) {
    let changed = false;
    const m = px.gatherKept();
    if (m < 3) break;
    sort(px.s, m);
    let sx = 0,
      sy = 0,
      sxx = 0,
      sxy = 0;
    for (let i = 0; i < m; i++) {
      const y = px.s[i]!;
      sx += i;
      sy += y;
      sxx += i * i;
      sxy += i * y;
    }
    const b = (m * sxy - sx * sy) / (m * sxx - sx * sx);
    const a = (sy - b * sx) / m;
    let sigma = 0;
    for (let i = 0; i < m; i++) sigma += Math.abs(px.s[i]! - (a + b * i));
    sigma /= m;
    let keptLeft = m;
    for (let k = 0; k < n; k++) {
      if (!px.keep[k]) continue;
      const v = px.vals[k]!;
      let rank = lowerBound(px.s, 0, m, v);
      for (let kk = 0; kk < k; kk++) if (px.keep[kk] && px.vals[kk] === v) rank++;
      const fit = a + b * rank;
      if (keptLeft <= 2) break;
      if (v < fit - p.low * sigma) {
        px.keep[k] = 0;
        rl++;
        keptLeft--;
        changed = true;
      } else if (v > fit + p.high * sigma) {
        px.keep[k] = 0;
        rh++;
        keptLeft--;
        changed = true;
      }
    }
    if (!changed) break;
  }
  return [rl, rh];
}

/** Combine one pixel from px.vals/px.idx (px.n values): [value, rejected low, rejected high]. */
export function pixel(p: Params, weights: Float64Array | null, px: Px): [number, number, number] {
  const n = px.n;
  if (n === 0) return [NaN, 0, 0];
  px.keep.fill(1, 0, n);
  let rl = 0,
    rh = 0;
  if (p.rejection === R_LINEAR) {
    [rl, rh] = rejectLinear(p, px);
    const m = px.gatherKept();
    sort(px.s, m);
    if (p.method === MEDIAN) return [medianSorted(px.s, m), rl, rh];
  } else {
    px.s.set(px.vals.subarray(0, n));
    sort(px.s, n);
    let a = 0,
      b = n;
    if (p.rejection !== R_NONE) [a, b, rl, rh] = rejectRange(p, px, n);
    if (p.method === MEDIAN) return [medianRange(px.s, a, b), rl, rh];
    const lo = px.s[a]!,
      hi = px.s[b - 1]!;
    for (let k = 0; k < n; k++) px.keep[k] = px.vals[k]! >= lo && px.vals[k]! <= hi ? 1 : 0;
  }
  let acc = 0,
    wsum = 0;
  for (let k = 0; k < n; k++) {
    if (!px.keep[k]) continue;
    const w = weights ? weights[px.idx[k]!]! : 1;
    acc += w * px.vals[k]!;
    wsum += w;
  }
  return [acc / wsum, rl, rh];
}

export function combine(
  frames: Float32Array[],
  weights: Float64Array | null,
  norm: Float64Array | null,
  p: Params,
  out: Float32Array,
  rejLow: Uint16Array | null,
  rejHigh: Uint16Array | null,
): void {
  const len = out.length;
  const nf = frames.length;
  // Normalisation: frame f's value x enters as f32(scale·x + offset), as if the frame had been stored so.
  if (norm) {
    frames = frames.map((x, f) => {
      const a = norm[2 * f]!,
        b = norm[2 * f + 1]!;
      const y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) y[i] = a * x[i]! + b;
      return y;
    });
  }
  if (p.rejection === R_NONE && p.method === MEAN) {
    // Same additions in the same order as the general path, frame-major for speed.
    const acc = new Float64Array(len),
      wsum = new Float64Array(len);
    for (let f = 0; f < nf; f++) {
      const x = frames[f]!;
      const w = weights ? weights[f]! : 1;
      for (let i = 0; i < len; i++) {
        const v = x[i]!;
        if (v === v && v !== Infinity && v !== -Infinity) {
          acc[i] = acc[i]! + w * v;
          wsum[i] = wsum[i]! + w;
        }
      }
    }
    for (let i = 0; i < len; i++) out[i] = acc[i]! / wsum[i]!;
    rejLow?.fill(0);
    rejHigh?.fill(0);
    return;
  }
  const px = new Px(nf);
  for (let i = 0; i < len; i++) {
    let n = 0;
    for (let f = 0; f < nf; f++) {
      const v = frames[f]![i]!;
      if (Number.isFinite(v)) {
        px.vals[n] = v;
        px.idx[n] = f;
        n++;
      }
    }
    px.n = n;
    const [v, rl, rh] = pixel(p, weights, px);
    out[i] = v;
    if (rejLow && rejHigh) {
      rejLow[i] = Math.min(rl, 65535);
      rejHigh[i] = Math.min(rh, 65535);
    }
  }
}
