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
  /** Values set aside per side for the clip statistics; the sd scale per count of finite values (N + 1). */
  trim: number;
  trimScale: Float64Array;
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
  // Per column: its `trim` largest d (descending) and smallest d (ascending), min(sn, trim) of each.
  const kt = Math.max(1, b.trim);
  const top = new Float64Array(W * kt),
    bot = new Float64Array(W * kt);
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
          const filled = Math.min(sn[x]!, kt);
          sn[x] = sn[x]! + 1;
          keepExtremes(top, bot, x * kt, kt, filled, d);
        }
      }
    }
    clipBounds(b, sn, s1, s2, top, bot, kt, lo, hi);
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

/** The clip bounds of one row from its sums and the values set aside (tbqr_band.rs, step 1). */
function clipBounds(
  b: TbqrBandArgs,
  sn: Uint32Array,
  s1: Float64Array,
  s2: Float64Array,
  top: Float64Array,
  bot: Float64Array,
  kt: number,
  lo: Float32Array,
  hi: Float32Array,
): void {
  for (let x = 0; x < sn.length; x++) {
    const nf = sn[x]!;
    const k = nf >= 4 ? Math.min(b.trim, Math.floor((nf - 2) / 2)) : 0;
    if (k === 0) {
      lo[x] = -Infinity;
      hi[x] = Infinity;
      continue;
    }
    let a = s1[x]!,
      q = s2[x]!;
    for (let j = 0, o = x * kt; j < k; j++) {
      const t = top[o + j]!,
        l = bot[o + j]!;
      a -= t;
      q -= t * t;
      a -= l;
      q -= l * l;
    }
    const m = nf - 2 * k;
    const mean = a / m;
    const sd = Math.sqrt(Math.max((q - a * mean) / (m - 1), 0)) * b.trimScale[nf]!;
    lo[x] = mean - b.clipLow * sd;
    hi[x] = mean + b.clipHigh * sd;
  }
}

/**
 * Insert d into a column's `kt` largest (top, descending) and smallest (bot, ascending) values, `filled` of
 * each held so far; after equal values, so the earlier frame stays first (as tbqr_band.rs).
 */
function keepExtremes(top: Float64Array, bot: Float64Array, o: number, kt: number, filled: number, d: number): void {
  let i = filled < kt ? filled : d > top[o + kt - 1]! ? kt - 1 : kt;
  if (i < kt) {
    while (i > 0 && top[o + i - 1]! < d) {
      top[o + i] = top[o + i - 1]!;
      i--;
    }
    top[o + i] = d;
  }
  i = filled < kt ? filled : d < bot[o + kt - 1]! ? kt - 1 : kt;
  if (i < kt) {
    while (i > 0 && bot[o + i - 1]! > d) {
      bot[o + i] = bot[o + i - 1]!;
      i--;
    }
    bot[o + i] = d;
  }
}
