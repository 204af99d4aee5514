/** TBQR pass B for one band — twin of native/src/tbqr_band.rs (same f64 operations, frames in order). */
export interface TbqrBandArgs {
  frames: Float32Array[];
  width: number;
  rows: number;
  inv: Float64Array;
  scale: Float64Array;
  sky: Float64Array;
  skyMean: Float64Array;
  restore: number;
  u: Float64Array;
  clipLow: number;
  clipHigh: number;
  /** The sd scale without the extremes per count of finite values (N + 1), and of a sample cut at ±3σ. */
  trimScale: Float64Array;
  truncScale: number;
  fractions: Float64Array;
  xs0: Int32Array;
  tw: number;
  wx: Float64Array;
  sx: Float64Array;
  covStart: Int32Array;
  covIy: Int32Array;
  covWy: Float64Array;
}

export function tbqrBand(b: TbqrBandArgs, out: Float32Array, plain: Float32Array): void {
  const W = b.width,
    N = b.frames.length,
    tx = b.xs0.length,
    tiles = b.fractions.length / N;
  const s1 = new Float64Array(W),
    s2 = new Float64Array(W),
    sn = new Uint32Array(W),
    lo = new Float32Array(W),
    hi = new Float32Array(W);
  const dmax = new Float64Array(W),
    dmin = new Float64Array(W);
  const acc = new Float64Array(W),
    wsum = new Float64Array(W),
    macc = new Float64Array(W),
    mcnt = new Float64Array(W),
    racc = new Float64Array(W),
    rcnt = new Float64Array(W),
    aacc = new Float64Array(W),
    acnt = new Float64Array(W);
  const rowA = new Float64Array(tx),
    wrow = new Float64Array(W);
  for (let r = 0; r < b.rows; r++) {
    s1.fill(0);
    s2.fill(0);
    sn.fill(0);
    dmax.fill(-Infinity);
    dmin.fill(Infinity);
    for (let f = 0; f < N; f++) {
      const v = b.frames[f]!,
        inv = b.inv[f]!,
        k = 3 * (f * b.rows + r);
      const a0 = b.sky[k]!,
        a1 = b.sky[k + 1]!,
        a2 = b.sky[k + 2]!;
      for (let x = 0, p = r * W; x < W; x++, p++) {
        const u = b.u[x]!;
        const d = Math.fround(v[p]! * inv) - (a0 + a1 * u + a2 * u * u);
        if (d - d === 0) {
          s1[x] = s1[x]! + d;
          s2[x] = s2[x]! + d * d;
          sn[x] = sn[x]! + 1;
          if (d > dmax[x]!) dmax[x] = d;
          if (d < dmin[x]!) dmin[x] = d;
        }
      }
    }
    clipBounds(b, r, sn, s1, s2, dmax, dmin, lo, hi);
    acc.fill(0);
    wsum.fill(0);
    macc.fill(0);
    mcnt.fill(0);
    racc.fill(0);
    rcnt.fill(0);
    aacc.fill(0);
    acnt.fill(0);
    const c0 = b.covStart[r]!,
      c1 = b.covStart[r + 1]!;
    for (let f = 0; f < N; f++) {
      const plane = b.frames[f]!,
        af = b.fractions.subarray(f * tiles, (f + 1) * tiles),
        sc = b.scale[f]!,
        invB = b.inv[f]!;
      rowA.fill(0);
      let sy = 0;
      for (let c = c0; c < c1; c++) {
        const iy = b.covIy[c]!,
          wy = b.covWy[c]!;
        sy += wy;
        for (let ix = 0; ix < tx; ix++) rowA[ix] = rowA[ix]! + wy * af[iy * tx + ix]!;
      }
      wrow.fill(0);
      for (let ix = 0; ix < tx; ix++) {
        const a = rowA[ix]!,
          x0 = b.xs0[ix]!;
        if (a !== 0) for (let k = 0; k < b.tw; k++) wrow[x0 + k] = wrow[x0 + k]! + b.wx[k]! * a;
      }
      const inv = 1 / sy;
      for (let xx = 0; xx < W; xx++) wrow[xx] = wrow[xx]! * (inv / b.sx[xx]!);
      const k = 3 * (f * b.rows + r);
      const a0 = b.sky[k]!,
        a1 = b.sky[k + 1]!,
        a2 = b.sky[k + 2]!;
      for (let xx = 0, p = r * W; xx < W; xx++, p++) {
        const raw = plane[p]!;
        if (raw !== raw) continue;
        aacc[xx] = aacc[xx]! + raw;
        acnt[xx] = acnt[xx]! + 1;
        const u = b.u[xx]!;
        const d = raw * invB - (a0 + a1 * u + a2 * u * u);
        const v = d * sc;
        macc[xx] = macc[xx]! + v;
        mcnt[xx] = mcnt[xx]! + 1;
        if (d < lo[xx]! || d > hi[xx]!) continue;
        racc[xx] = racc[xx]! + (raw - (a0 + a1 * u + a2 * u * u) / invB);
        rcnt[xx] = rcnt[xx]! + 1;
        const w = wrow[xx]!;
        acc[xx] = acc[xx]! + w * v;
        wsum[xx] = wsum[xx]! + w;
      }
    }
    const a0 = b.skyMean[3 * r]!,
      a1 = b.skyMean[3 * r + 1]!,
      a2 = b.skyMean[3 * r + 2]!;
    for (let xx = 0, p = r * W; xx < W; xx++, p++) {
      const u = b.u[xx]!,
        sky = a0 + a1 * u + a2 * u * u;
      const m = mcnt[xx]! > 0 ? macc[xx]! / mcnt[xx]! : NaN;
      out[p] = sky + (wsum[xx]! > 0 ? acc[xx]! / wsum[xx]! : m) * b.restore;
      plain[p] = rcnt[xx]! > 0 ? sky + racc[xx]! / rcnt[xx]! : acnt[xx]! > 0 ? aacc[xx]! / acnt[xx]! : NaN;
    }
  }
}

/** d of frame f at column x of row r: f32(raw·inv_f) − sky_f(u), as tbqr_band.rs. */
function dOf(b: TbqrBandArgs, f: number, r: number, x: number): number {
  const k = 3 * (f * b.rows + r),
    u = b.u[x]!;
  return Math.fround(b.frames[f]![r * b.width + x]! * b.inv[f]!) - (b.sky[k]! + b.sky[k + 1]! * u + b.sky[k + 2]! * u * u);
}

/** The clip bounds of one row (tbqr_band.rs, step 1): the window m₁ ± 3σ₁ without the extremes, then m₂, σ₂ inside it. */
function clipBounds(
  b: TbqrBandArgs,
  r: number,
  sn: Uint32Array,
  s1: Float64Array,
  s2: Float64Array,
  dmax: Float64Array,
  dmin: Float64Array,
  lo: Float32Array,
  hi: Float32Array,
): void {
  const W = b.width,
    N = b.frames.length;
  const wLo = new Float64Array(W).fill(-Infinity),
    wHi = new Float64Array(W).fill(Infinity);
  for (let x = 0; x < W; x++) {
    const nf = sn[x]!;
    if (nf < 4) continue;
    const a = s1[x]! - dmax[x]! - dmin[x]!,
      q = s2[x]! - dmax[x]! * dmax[x]! - dmin[x]! * dmin[x]!,
      m = nf - 2;
    const mean = a / m;
    const sd = Math.sqrt(Math.max((q - a * mean) / (m - 1), 0)) * b.trimScale[nf]!;
    wLo[x] = mean - 3 * sd;
    wHi[x] = mean + 3 * sd;
  }
  const t1 = new Float64Array(W),
    t2 = new Float64Array(W),
    tn = new Uint32Array(W);
  for (let f = 0; f < N; f++)
    for (let x = 0; x < W; x++) {
      if (sn[x]! < 4) continue;
      const d = dOf(b, f, r, x);
      if (d >= wLo[x]! && d <= wHi[x]!) {
        t1[x] = t1[x]! + d;
        t2[x] = t2[x]! + d * d;
        tn[x] = tn[x]! + 1;
      }
    }
  for (let x = 0; x < W; x++) {
    if (sn[x]! < 4) {
      lo[x] = -Infinity;
      hi[x] = Infinity;
      continue;
    }
    let mean: number, sd: number;
    if (tn[x]! >= 3) {
      const a = t1[x]!,
        q = t2[x]!,
        m = tn[x]!;
      mean = a / m;
      sd = Math.sqrt(Math.max((q - a * mean) / (m - 1), 0)) * b.truncScale;
    } else {
      mean = (wLo[x]! + wHi[x]!) / 2;
      sd = (wHi[x]! - wLo[x]!) / 6;
    }
    lo[x] = mean - b.clipLow * sd;
    hi[x] = mean + b.clipHigh * sd;
  }
}
