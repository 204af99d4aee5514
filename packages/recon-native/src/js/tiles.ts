/** Per-tile TBQR metrics — twin of native/src/tiles.rs (see there for the definitions). */
import { isPeak, measure, type Signal } from "./stars.js";
import { median } from "./stats.js";

export const TILE_FIELDS = 9;
const MAD_TO_SIGMA = 1.482602218505602;
const BOX_R = 15;
const STAR_R = 5;
const MAX_TILE_STARS = 50;

export function boxMean(t: Float64Array, w: number, h: number, r: number): Float64Array {
  const hs = new Float64Array(w * h);
  const hc = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    const o = y * w;
    let s = 0, c = 0;
    for (let x = 0; x < Math.min(r, w); x++) if (Number.isFinite(t[o + x]!)) { s += t[o + x]!; c += 1; }
    for (let x = 0; x < w; x++) {
      if (x + r < w && Number.isFinite(t[o + x + r]!)) { s += t[o + x + r]!; c += 1; }
      if (x > r && Number.isFinite(t[o + x - r - 1]!)) { s -= t[o + x - r - 1]!; c -= 1; }
      hs[o + x] = s;
      hc[o + x] = c;
    }
  }
  const out = new Float64Array(w * h).fill(NaN);
  for (let x = 0; x < w; x++) {
    let s = 0, c = 0;
    for (let y = 0; y < Math.min(r, h); y++) { s += hs[y * w + x]!; c += hc[y * w + x]!; }
    for (let y = 0; y < h; y++) {
      if (y + r < h) { s += hs[(y + r) * w + x]!; c += hc[(y + r) * w + x]!; }
      if (y > r) { s -= hs[(y - r - 1) * w + x]!; c -= hc[(y - r - 1) * w + x]!; }
      out[y * w + x] = c > 0 ? s / c : NaN;
    }
  }
  return out;
}

export function tileMetrics(data: Float32Array, w: number, tx0: number, ty0: number, tw: number, th: number): number[] {
  const n = tw * th;
  const t = new Float64Array(n);
  let valid = 0;
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
    const v = data[(ty0 + y) * w + tx0 + x]!;
    t[y * tw + x] = v;
    if (Number.isFinite(v)) valid++;
  }
  const frac = valid / n;
  if (valid < 3) return [NaN, NaN, NaN, NaN, 0, NaN, NaN, NaN, frac];
  const model = boxMean(t, tw, th, BOX_R);
  const masked = new Float64Array(n);
  const v = new Float64Array(n);
  let cut = 0;
  for (let pass = 0; pass < 3; pass++) {
    let nv = 0;
    // Every 4th pixel (as the native kernel): the clip level needs the median and MAD to ~2 %, not exactly.
    for (let i = 0; i < n; i += 4) { const r = t[i]! - model[i]!; if (Number.isFinite(r)) v[nv++] = r; }
    const medR = median(v, nv);
    for (let i = 0; i < nv; i++) v[i] = Math.abs(v[i]! - medR);
    const sigma0 = MAD_TO_SIGMA * median(v, nv);
    cut = medR + 3 * sigma0;
    if (pass === 2) break;
    for (let i = 0; i < n; i++) masked[i] = t[i]! - model[i]! <= cut ? t[i]! : NaN;
    const next = boxMean(masked, tw, th, BOX_R);
    for (let i = 0; i < n; i++) if (Number.isFinite(next[i]!)) model[i] = next[i]!;
  }
  const resid = new Float64Array(n);
  for (let i = 0; i < n; i++) resid[i] = t[i]! - model[i]!;
  const skyR = new Float64Array(valid);
  const skyV = new Float64Array(valid);
  let ns = 0;
  for (let i = 0; i < n; i++) if (Number.isFinite(resid[i]!) && resid[i]! <= cut) { skyR[ns] = resid[i]!; skyV[ns] = t[i]!; ns++; }
  const ms = median(Float64Array.from(skyR.subarray(0, ns)));
  for (let i = 0; i < ns; i++) skyR[i] = Math.abs(skyR[i]! - ms);
  const sigma = MAD_TO_SIGMA * median(skyR, ns);
  const bg = median(skyV, ns);
  const g2 = new Float64Array(Math.max(0, (tw - 2) * (th - 2)));
  let ng = 0;
  if (tw >= 3 && th >= 3) {
    for (let y = 1; y < th - 1; y++) for (let x = 1; x < tw - 1; x++) {
      const p = (dx: number, dy: number) => resid[(y + dy - 1) * tw + x + dx - 1]!;
      const gx = (p(2, 0) + 2 * p(2, 1) + p(2, 2)) - (p(0, 0) + 2 * p(0, 1) + p(0, 2));
      const gy = (p(0, 2) + 2 * p(1, 2) + p(2, 2)) - (p(0, 0) + 2 * p(1, 0) + p(2, 0));
      const e = gx * gx + gy * gy;
      if (Number.isFinite(e)) g2[ng++] = e;
    }
  }
  const energy = median(g2, ng);
  const sig: Signal = (x, y) => resid[y * tw + x]!;
  const cands: [number, number, number][] = [];
  if (sigma > 0 && tw > 2 * STAR_R && th > 2 * STAR_R) {
    for (let y = STAR_R; y < th - STAR_R; y++) for (let x = STAR_R; x < tw - STAR_R; x++) {
      const r = sig(x, y);
      if (!(r > 5 * sigma) || !isPeak(sig, x, y, tw, th, 2)) continue;
      let above = 0;
      for (let yy = y - 1; yy < y + 2; yy++) for (let xx = x - 1; xx < x + 2; xx++) if (sig(xx, yy) > 3 * sigma) above++;
      if (above >= 4) cands.push([r, y, x]);
    }
  }
  cands.sort((a, b) => b[0] - a[0]);
  const fw: number[] = [], ro: number[] = [], co: number[] = [];
  for (const [peak, y, x] of cands.slice(0, MAX_TILE_STARS)) {
    const m = measure(sig, x - STAR_R, y - STAR_R, x + STAR_R + 1, y + STAR_R + 1);
    if (!m || !(m.fwhmMinor > 0.2 && m.fwhmMajor < 50)) continue;
    fw.push(Math.sqrt(m.fwhmMajor * m.fwhmMinor));
    ro.push(m.fwhmMinor / m.fwhmMajor);
    if (bg > 0) co.push(peak / bg);
  }
  return [bg, sigma, energy, energy / sigma, fw.length, median(fw), median(ro), median(co), frac];
}
