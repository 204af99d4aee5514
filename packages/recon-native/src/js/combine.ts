/** Pixel-wise combination with rejection — twin of native/src/combine.rs (see there for the rules). */
export const MEAN = 0, MEDIAN = 1;
export const R_NONE = 0, R_SIGMA = 1, R_WINSORIZED = 2, R_LINEAR = 3, R_PERCENTILE = 4, R_MAD = 5;

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
    while (j > 0 && v[j - 1]! > x) { v[j] = v[j - 1]!; j--; }
    v[j] = x;
  }
}
const medianSorted = (s: Float64Array, n: number) => (n % 2 === 1 ? s[n >> 1]! : (s[(n >> 1) - 1]! + s[n >> 1]!) / 2);
function sd(s: Float64Array, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) m += s[i]!;
  m /= n;
  let q = 0;
  for (let i = 0; i < n; i++) { const d = s[i]! - m; q += d * d; }
  return Math.sqrt(q / n);
}

/** Per-pixel scratch. */
export class Px {
  vals: Float64Array;
  idx: Int32Array;
  keep: Uint8Array;
  s: Float64Array;
  wz: Float64Array;
  n = 0;
  constructor(cap: number) {
    this.vals = new Float64Array(cap);
    this.idx = new Int32Array(cap);
    this.keep = new Uint8Array(cap);
    this.s = new Float64Array(cap);
    this.wz = new Float64Array(cap);
  }
  gatherKept(): number {
    let m = 0;
    for (let k = 0; k < this.n; k++) if (this.keep[k]) this.s[m++] = this.vals[k]!;
    return m;
  }
}

function bounds(p: Params, px: Px): [number, number] | undefined {
  const m = px.gatherKept();
  if (m < 3) return undefined;
  sort(px.s, m);
  const c = medianSorted(px.s, m);
  switch (p.rejection) {
    case R_SIGMA: {
      const s = sd(px.s, m);
      return [c - p.low * s, c + p.high * s];
    }
    case R_MAD: {
      for (let i = 0; i < m; i++) px.wz[i] = Math.abs(px.s[i]! - c);
      sort(px.wz, m);
      const s = 1.482602218505602 * medianSorted(px.wz, m);
      return [c - p.low * s, c + p.high * s];
    }
    case R_WINSORIZED: {
      let cc = c, s = sd(px.s, m);
      for (let it = 0; it < 10; it++) {
        const a = cc - 1.5 * s, b = cc + 1.5 * s;
        for (let i = 0; i < m; i++) px.wz[i] = Math.min(Math.max(px.s[i]!, a), b);
        const s1 = 1.134 * sd(px.wz, m);
        cc = medianSorted(px.wz, m);
        const done = Math.abs(s1 - s) <= 5e-4 * s;
        s = s1;
        if (done) break;
      }
      return [cc - p.low * s, cc + p.high * s];
    }
    case R_PERCENTILE:
      return [c - p.low * Math.abs(c), c + p.high * Math.abs(c)];
    default:
      return undefined;
  }
}

/** Combine one pixel from px.vals/px.idx (px.n values): [value, rejected low, rejected high]. */
export function pixel(p: Params, weights: Float64Array | null, px: Px): [number, number, number] {
  const n = px.n;
  if (n === 0) return [NaN, 0, 0];
  px.keep.fill(1, 0, n);
  let rl = 0, rh = 0;
  const passes = p.rejection === R_PERCENTILE ? 1 : p.iterations;
  if (p.rejection !== R_NONE) {
    for (let pass = 0; pass < passes; pass++) {
      let changed = false;
      if (p.rejection === R_LINEAR) {
        const m = px.gatherKept();
        if (m < 3) break;
        sort(px.s, m);
        let sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (let i = 0; i < m; i++) { const y = px.s[i]!; sx += i; sy += y; sxx += i * i; sxy += i * y; }
        const b = (m * sxy - sx * sy) / (m * sxx - sx * sx);
        const a = (sy - b * sx) / m;
        let sigma = 0;
        for (let i = 0; i < m; i++) sigma += Math.abs(px.s[i]! - (a + b * i));
        sigma /= m;
        let keptLeft = m;
        for (let k = 0; k < n; k++) {
          if (!px.keep[k]) continue;
          const v = px.vals[k]!;
          let below = 0;
          while (below < m && px.s[below]! < v) below++;
          let rank = below;
          for (let kk = 0; kk < k; kk++) if (px.keep[kk] && px.vals[kk] === v) rank++;
          const fit = a + b * rank;
          if (keptLeft <= 2) break;
          if (v < fit - p.low * sigma) { px.keep[k] = 0; rl++; keptLeft--; changed = true; }
          else if (v > fit + p.high * sigma) { px.keep[k] = 0; rh++; keptLeft--; changed = true; }
        }
      } else {
        const bd = bounds(p, px);
        if (!bd) break;
        const [lo, hi] = bd;
        let keptLeft = 0;
        for (let k = 0; k < n; k++) if (px.keep[k]) keptLeft++;
        for (let k = 0; k < n; k++) {
          if (!px.keep[k] || keptLeft <= 2) continue;
          const v = px.vals[k]!;
          if (v < lo) { px.keep[k] = 0; rl++; keptLeft--; changed = true; }
          else if (v > hi) { px.keep[k] = 0; rh++; keptLeft--; changed = true; }
        }
      }
      if (!changed) break;
    }
  }
  if (p.method === MEDIAN) {
    const m = px.gatherKept();
    sort(px.s, m);
    return [medianSorted(px.s, m), rl, rh];
  }
  let acc = 0, wsum = 0, plain = 0, cnt = 0;
  for (let k = 0; k < n; k++) {
    if (!px.keep[k]) continue;
    const w = weights ? weights[px.idx[k]!]! : 1;
    acc += w * px.vals[k]!;
    wsum += w;
    plain += px.vals[k]!;
    cnt += 1;
  }
  return [wsum > 0 ? acc / wsum : plain / cnt, rl, rh];
}

export function combine(frames: Float32Array[], weights: Float64Array | null, p: Params, out: Float32Array, rejLow: Uint16Array | null, rejHigh: Uint16Array | null): void {
  const len = out.length;
  const nf = frames.length;
  if (p.rejection === R_NONE && p.method === MEAN) {
    // Same additions in the same order as the general path, frame-major for speed.
    const acc = new Float64Array(len), wsum = new Float64Array(len);
    for (let f = 0; f < nf; f++) {
      const x = frames[f]!;
      const w = weights ? weights[f]! : 1;
      for (let i = 0; i < len; i++) {
        const v = x[i]!;
        if (v === v && v !== Infinity && v !== -Infinity) { acc[i] = acc[i]! + w * v; wsum[i] = wsum[i]! + w; }
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
      if (Number.isFinite(v)) { px.vals[n] = v; px.idx[n] = f; n++; }
    }
    px.n = n;
    const [v, rl, rh] = pixel(p, weights, px);
    out[i] = v;
    if (rejLow && rejHigh) { rejLow[i] = Math.min(rl, 65535); rejHigh[i] = Math.min(rh, 65535); }
  }
}
