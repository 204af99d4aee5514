/**
 * Per-tile TBQR metrics at frame level — twin of native/src/tiles.rs (see there for the definitions).
 * The same f64 operations in the same order, and the same f32 roundings where the kernel stores into its
 * f32 planes, so both backends give the same bits.
 */
import { isPeak, measure, type Signal } from "./stars.js";
import { median } from "./stats.js";
import { TILE_FIELDS } from "../contract.js";

const MAD_TO_SIGMA = 1.482602218505602;
const STAR_R = 5;
const MAX_TILE_STARS = 50;
export const CELL = 64;

const BIN = 2;
const BOX_RB = 7;
/** Column offset (mod 4, frame coordinates) of the tile samples in frame row y: every 2×2 pixel phase equally (see native/src/tiles.rs). */
const PHASE_COL = [0, 2, 1, 3] as const;
/** Tile stars' shape convergence (tiles.rs: TILE_SHAPE_TOL). */
const TILE_SHAPE_TOL = 1e-3;

/** Sums and counts of the finite pixels of each 2×2 bin; f32 accumulation. */
function binSums(data: Float32Array, w: number, h: number, bw: number, sb: Float32Array, cb: Float32Array): void {
  sb.fill(0);
  cb.fill(0);
  for (let y = 0; y < h; y++) {
    const brow = Math.floor(y / BIN) * bw;
    for (let x = 0; x < w; x++) {
      const v = data[y * w + x]!;
      const b = brow + Math.floor(x / BIN);
      if (!Number.isFinite(v)) continue;
      sb[b] = sb[b]! + v;
      cb[b] = cb[b]! + 1;
    }
  }
}

/** Box mean of radius r (bins) of binned sums / counts into `out` (NaN or, with `keepOld`, unchanged where empty). */
function boxMean(
  sb: Float32Array,
  cb: Float32Array,
  w: number,
  h: number,
  r: number,
  hs: Float32Array,
  hc: Float32Array,
  out: Float32Array,
  keepOld: boolean,
): void {
  for (let y = 0; y < h; y++) {
    const o = y * w;
    let s = 0,
      c = 0;
    for (let x = 0; x < Math.min(r, w); x++) {
      s += sb[o + x]!;
      c += cb[o + x]!;
    }
    for (let x = 0; x < w; x++) {
      if (x + r < w) {
        s += sb[o + x + r]!;
        c += cb[o + x + r]!;
      }
      if (x > r) {
        s -= sb[o + x - r - 1]!;
        c -= cb[o + x - r - 1]!;
      }
      hs[o + x] = s;
      hc[o + x] = c;
    }
  }
  for (let x = 0; x < w; x++) {
    let s = 0,
      c = 0;
    for (let y = 0; y < Math.min(r, h); y++) {
      s += hs[y * w + x]!;
      c += hc[y * w + x]!;
    }
    for (let y = 0; y < h; y++) {
      if (y + r < h) {
        s += hs[(y + r) * w + x]!;
        c += hc[(y + r) * w + x]!;
      }
      if (y > r) {
        s -= hs[(y - r - 1) * w + x]!;
        c -= hc[(y - r - 1) * w + x]!;
      }
      if (c > 0) out[y * w + x] = s / c;
      else if (!keepOld) out[y * w + x] = NaN;
    }
  }
}

/**
 * Clip level (median + 3σ0) of each cell, and with `withNoise` its sky noise, from the values `val(x, y)` of a
 * gw × gh grid with cells `side` points wide: every `colStep`-th point of every `rowStep`-th row.
 */
function cellLevels(
  val: (x: number, y: number) => number,
  gw: number,
  gh: number,
  side: number,
  colStep: number,
  rowStep: number,
  phased: boolean,
  withNoise: boolean,
): { cut: Float64Array; noise: Float64Array } {
  const cw = Math.ceil(gw / side),
    ch = Math.ceil(gh / side);
  const cut = new Float64Array(cw * ch).fill(NaN),
    noise = new Float64Array(cw * ch).fill(NaN);
  const v: number[] = [];
  for (let cy = 0; cy < ch; cy++)
    for (let cx = 0; cx < cw; cx++) {
      v.length = 0;
      for (let y = cy * side; y < Math.min((cy + 1) * side, gh); y += rowStep)
        for (
          let x = cx * side + (phased ? (PHASE_COL[y % 4]! + 4 - ((cx * side) % 4)) % 4 : 0);
          x < Math.min((cx + 1) * side, gw);
          x += colStep
        ) {
          const r = val(x, y);
          if (Number.isFinite(r)) v.push(r);
        }
      if (v.length === 0) continue;
      const med = median(v);
      const c = med + 3 * (MAD_TO_SIGMA * median(v.map((x) => Math.abs(x - med))));
      cut[cy * cw + cx] = c;
      if (!withNoise) continue;
      const sky = v.filter((x) => x <= c);
      const ms = median(sky);
      for (let i = 0; i < sky.length; i++) sky[i] = Math.abs(sky[i]! - ms);
      noise[cy * cw + cx] = MAD_TO_SIGMA * median(sky);
    }
  return { cut, noise };
}

export function frameTileMetrics(
  data: Float32Array,
  w: number,
  h: number,
  rects: Int32Array,
  out: Float64Array,
  scratch?: readonly Float32Array[] | null,
): void {
  const n = w * h;
  const bw = Math.ceil(w / BIN),
    bh = Math.ceil(h / BIN),
    nb = bw * bh;
  const [cnt, binned, rows, resid] = scratch ?? [0, 1, 2, 3].map(() => new Float32Array(Math.max(n, 3 * nb)));
  const sb = binned!.subarray(0, nb),
    cb = binned!.subarray(nb, 2 * nb),
    mb = binned!.subarray(2 * nb, 3 * nb);
  const hs = rows!.subarray(0, nb),
    hc = rows!.subarray(nb, 2 * nb);
  const msb = cnt!.subarray(0, nb),
    mcb = cnt!.subarray(nb, 2 * nb);
  const cw = Math.ceil(w / CELL);
  const cell = (x: number, y: number) => Math.floor(y / CELL) * cw + Math.floor(x / CELL);
  binSums(data, w, h, bw, sb, cb);
  let counted = 0;
  for (let b = 0; b < nb; b++) counted += cb[b]!;
  const allFinite = counted === n;
  boxMean(sb, cb, bw, bh, BOX_RB, hs, hc, mb, false);
  // Two masking passes on the bins (tiles.rs).
  const bres = (x: number, y: number) => sb[y * bw + x]! / cb[y * bw + x]! - mb[y * bw + x]!;
  const side = CELL / BIN,
    bcw = Math.ceil(bw / side);
  for (let pass = 0; pass < 2; pass++) {
    const { cut } = cellLevels(bres, bw, bh, side, 1, 2, false, false);
    for (let by = 0; by < bh; by++)
      for (let bx = 0; bx < bw; bx++) {
        const b = by * bw + bx;
        const keep = cb[b]! > 0 && bres(bx, by) <= cut[Math.floor(by / side) * bcw + Math.floor(bx / side)]!;
        msb[b] = keep ? sb[b]! : 0;
        mcb[b] = keep ? cb[b]! : 0;
      }
    boxMean(msb, mcb, bw, bh, BOX_RB, hs, hc, mb, true);
  }
  const R = resid!;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) R[y * w + x] = data[y * w + x]! - mb[Math.floor(y / BIN) * bw + Math.floor(x / BIN)]!;
  const sig: Signal = (x, y) => R[y * w + x]!;
  const { cut, noise: cnoise } = cellLevels(sig, w, h, CELL, 4, 1, true, true);
  const cands: { peak: number; x: number; y: number }[] = [];
  if (w > 2 * STAR_R && h > 2 * STAR_R) {
    for (let y = STAR_R; y < h - STAR_R; y++)
      for (let x = STAR_R; x < w - STAR_R; x++) {
        const s = cnoise[cell(x, y)]!;
        const r = sig(x, y);
        if (!(r > 5 * s) || !(s > 0) || !isPeak(sig, x, y, w, h, 2)) continue;
        let above = 0;
        for (let yy = y - 1; yy < y + 2; yy++) for (let xx = x - 1; xx < x + 2; xx++) if (sig(xx, yy) > 3 * s) above++;
        if (above >= 4) cands.push({ peak: r, x, y });
      }
  }
  cands.sort((a, b) => b.peak - a.peak); // stable: row-major among equal peaks, as the native sort
  const shapes: ([number, number] | null | undefined)[] = new Array(cands.length);
  if (!allFinite)
    for (let y = 0; y < h; y++) {
      let k = 0;
      for (let x = 0; x < w; x++) {
        if (Number.isFinite(data[y * w + x]!)) k++;
        cnt![y * w + x] = k;
      }
    }
  // Sobel |∇residual|² at every tile sample, once (tiles.rs).
  const sw = Math.ceil(w / 4);
  const energyAt = rows!.subarray(0, sw * h);
  energyAt.fill(NaN);
  for (let y = 1; y + 1 < h; y++)
    for (let x = PHASE_COL[y % 4]!, j = 0; x < w; x += 4, j++) {
      if (x < 1 || x + 1 >= w) continue;
      const p = (dx: number, dy: number) => R[(y + dy - 1) * w + x + dx - 1]!;
      const gx = p(2, 0) + 2 * p(2, 1) + p(2, 2) - (p(0, 0) + 2 * p(0, 1) + p(0, 2));
      const gy = p(0, 2) + 2 * p(1, 2) + p(2, 2) - (p(0, 0) + 2 * p(1, 0) + p(2, 0));
      energyAt[y * sw + j] = gx * gx + gy * gy;
    }
  const skyR: number[] = [],
    skyV: number[] = [],
    g2: number[] = [];
  for (let k = 0; k < rects.length / 4; k++) {
    const x0 = rects[4 * k]!,
      y0 = rects[4 * k + 1]!,
      tw = rects[4 * k + 2]!,
      th = rects[4 * k + 3]!;
    let valid = 0;
    if (allFinite) valid = tw * th;
    else for (let y = y0; y < y0 + th; y++) valid += cnt![y * w + x0 + tw - 1]! - (x0 > 0 ? cnt![y * w + x0 - 1]! : 0);
    const frac = valid / (tw * th);
    if (valid < 3) {
      out.set([NaN, NaN, NaN, NaN, 0, NaN, NaN, NaN, frac], k * TILE_FIELDS);
      continue;
    }
    skyR.length = 0;
    skyV.length = 0;
    g2.length = 0;
    for (let y = y0; y < y0 + th; y++) {
      const p = PHASE_COL[y % 4]!;
      const innerY = y > y0 && y + 1 < y0 + th;
      for (let x = x0 + ((p + 4 - (x0 % 4)) % 4), j = (x - p) / 4; x < x0 + tw; x += 4, j++) {
        const rv = sig(x, y);
        if (Number.isFinite(rv) && rv <= cut[cell(x, y)]!) {
          skyR.push(rv);
          skyV.push(data[y * w + x]!);
        }
        if (innerY && x > x0 && x + 1 < x0 + tw) {
          const e = energyAt[y * sw + j]!;
          if (Number.isFinite(e)) g2.push(e);
        }
      }
    }
    const ms = median(skyR.slice());
    for (let i = 0; i < skyR.length; i++) skyR[i] = Math.abs(skyR[i]! - ms);
    const sigma = MAD_TO_SIGMA * median(skyR);
    const bg = median(skyV);
    const energy = median(g2);
    const fw: number[] = [],
      ro: number[] = [],
      co: number[] = [];
    let taken = 0;
    for (let ci = 0; ci < cands.length && taken < MAX_TILE_STARS; ci++) {
      const c = cands[ci]!;
      if (c.x < x0 + STAR_R || c.x + STAR_R >= x0 + tw || c.y < y0 + STAR_R || c.y + STAR_R >= y0 + th) continue;
      taken++;
      let shape = shapes[ci];
      if (shape === undefined) {
        const ms2 = measure(sig, c.x - STAR_R, c.y - STAR_R, c.x + STAR_R + 1, c.y + STAR_R + 1, TILE_SHAPE_TOL);
        shape =
          ms2 && ms2.fwhmMinor > 0.2 && ms2.fwhmMajor < 50
            ? [Math.sqrt(ms2.fwhmMajor * ms2.fwhmMinor), ms2.fwhmMinor / ms2.fwhmMajor]
            : null;
        shapes[ci] = shape;
      }
      if (!shape) continue;
      fw.push(shape[0]);
      ro.push(shape[1]);
      if (bg > 0) co.push(c.peak / bg);
    }
    out.set([bg, sigma, energy, energy / sigma, fw.length, median(fw), median(ro), median(co), frac], k * TILE_FIELDS);
  }
}
