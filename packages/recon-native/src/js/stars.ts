/** Star detection and adaptive-moment measurement — twin of native/src/stars.rs (see there for the method). */
export const FWHM_PER_SIGMA = 2.3548200450309493;

export interface Shape {
  x: number;
  y: number;
  flux: number;
  fwhmMajor: number;
  fwhmMinor: number;
}

export type Signal = (x: number, y: number) => number;

/** Twin of stars.rs `measure` (the box read once; the Gaussian weight from per-axis factors and a cross term stepped along each row). */
export function measure(s: Signal, x0: number, y0: number, x1: number, y1: number, tol = 1e-5): Shape | undefined {
  const bw = x1 - x0,
    bh = y1 - y0;
  const vals = new Float64Array(bw * bh);
  for (let j = 0; j < bh; j++) for (let i = 0; i < bw; i++) vals[j * bw + i] = s(x0 + i, y0 + j);
  let flux = 0,
    w = 0,
    sx = 0,
    sy = 0;
  for (let j = 0; j < bh; j++) {
    for (let i = 0; i < bw; i++) {
      const v = vals[j * bw + i]!;
      if (!Number.isFinite(v)) continue;
      flux += v;
      if (v > 0) {
        w += v;
        sx += v * (x0 + i);
        sy += v * (y0 + j);
      }
    }
  }
  if (!(w > 0)) return undefined;
  let cx = sx / w,
    cy = sy / w;
  let a = 0,
    b = 0,
    d = 0;
  for (let j = 0; j < bh; j++) {
    for (let i = 0; i < bw; i++) {
      const v = vals[j * bw + i]!;
      if (!(v > 0)) continue;
      const dx = x0 + i - cx,
        dy = y0 + j - cy;
      a += v * dx * dx;
      b += v * dx * dy;
      d += v * dy * dy;
    }
  }
  a /= w;
  b /= w;
  d /= w;
  const unweighted = [cx, cy, a, b, d] as const;
  let ok = false;
  if (a * d - b * b <= 1e-12) {
    a = 1;
    b = 0;
    d = 1;
  }
  const ex = new Float64Array(bw),
    ey = new Float64Array(bh);
  for (let it = 0; it < 30; it++) {
    const det = a * d - b * b;
    if (!(det > 1e-12)) break;
    const ia = d / det,
      ib = -b / det,
      id = a / det;
    for (let i = 0; i < bw; i++) {
      const dx = x0 + i - cx;
      ex[i] = Math.exp(-0.5 * ia * dx * dx);
    }
    for (let j = 0; j < bh; j++) {
      const dy = y0 + j - cy;
      ey[j] = Math.exp(-0.5 * id * dy * dy);
    }
    let s0 = 0,
      s1x = 0,
      s1y = 0,
      sxx = 0,
      sxy = 0,
      syy = 0;
    for (let j = 0; j < bh; j++) {
      const dy = y0 + j - cy;
      const step = Math.exp(-ib * dy);
      let cross = Math.exp(-ib * dy * (x0 - cx));
      for (let i = 0; i < bw; i++) {
        const v = vals[j * bw + i]!;
        const dx = x0 + i - cx;
        let g = ex[i]! * ey[j]! * cross;
        cross *= step;
        if (!Number.isFinite(v)) continue;
        if (!Number.isFinite(g)) g = Math.exp(-0.5 * (ia * dx * dx + 2 * ib * dx * dy + id * dy * dy));
        const vg = v * g;
        s0 += vg;
        s1x += vg * dx;
        s1y += vg * dy;
        sxx += vg * dx * dx;
        sxy += vg * dx * dy;
        syy += vg * dy * dy;
      }
    }
    if (!(s0 > 0)) break;
    const mx = s1x / s0,
      my = s1y / s0;
    const na = 2 * (sxx / s0 - mx * mx);
    const nb = 2 * (sxy / s0 - mx * my);
    const nd = 2 * (syy / s0 - my * my);
    if (!(na > 0 && nd > 0 && na * nd - nb * nb > 0) || Math.abs(mx) > 3 || Math.abs(my) > 3) break;
    cx += mx;
    cy += my;
    const change = (Math.abs(na - a) + Math.abs(nd - d)) / (a + d);
    a = na;
    b = nb;
    d = nd;
    if (Math.abs(mx) < tol && Math.abs(my) < tol && change < tol) {
      ok = true;
      break;
    }
  }
  if (!ok) [cx, cy, a, b, d] = unweighted;
  const tr = (a + d) / 2;
  const disc = Math.sqrt(((a - d) / 2) ** 2 + b * b);
  const l1 = tr + disc,
    l2 = tr - disc;
  if (!(l2 > 0)) return undefined;
  return { x: cx, y: cy, flux, fwhmMajor: FWHM_PER_SIGMA * Math.sqrt(l1), fwhmMinor: FWHM_PER_SIGMA * Math.sqrt(l2) };
}

export function isPeak(s: Signal, x: number, y: number, w: number, h: number, r: number): boolean {
  const v = s(x, y);
  for (let yy = Math.max(0, y - r); yy < Math.min(h, y + r + 1); yy++) {
    for (let xx = Math.max(0, x - r); xx < Math.min(w, x + r + 1); xx++) {
      const q = s(xx, yy);
      if (q > v || (q === v && (yy < y || (yy === y && xx < x)))) return false;
    }
  }
  return true;
}

export const STAR_FIELDS = 8;

export function detect(
  data: Float32Array,
  w: number,
  h: number,
  bg: Float32Array,
  noise: Float32Array,
  k: number,
  minArea: number,
  maxStars: number,
  radius: number,
  out: Float64Array,
): number {
  const sig: Signal = (x, y) => data[y * w + x]! - bg[y * w + x]!;
  const all: number[][] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const thr = k * noise[i]!;
      const v = sig(x, y);
      if (!(v > thr) || !(thr > 0)) continue;
      let above = 0;
      for (let yy = Math.max(0, y - 1); yy < Math.min(h, y + 2); yy++)
        for (let xx = Math.max(0, x - 1); xx < Math.min(w, x + 2); xx++) if (sig(xx, yy) > k * noise[yy * w + xx]!) above++;
      if (above < minArea || !isPeak(sig, x, y, w, h, 2)) continue;
      const r = radius;
      const m = measure(sig, Math.max(0, x - r), Math.max(0, y - r), Math.min(w, x + r + 1), Math.min(h, y + r + 1));
      if (!m) continue;
      if (!(m.fwhmMinor >= 0.5 && m.fwhmMajor <= 2 * r + 1 && m.flux > 0)) continue;
      all.push([m.x, m.y, m.flux, v, bg[i]!, Math.sqrt(m.fwhmMajor * m.fwhmMinor), m.fwhmMinor / m.fwhmMajor, noise[i]!]);
    }
  }
  all.sort((p, q) => q[2]! - p[2]!); // stable: equal fluxes keep row-major order
  for (let s = 0; s < Math.min(maxStars, all.length); s++) out.set(all[s]!, s * STAR_FIELDS);
  return all.length;
}
