/**
 * TBQR's self-measurement: how much sharper and how much noisier the reconstruction is than the plain mean
 * of the same registered frames (with the same rejection), by estimators that do not share TBQR's own
 * assumptions (its weights come from moments of detected stars; these figures from Gaussian fits).
 *
 * FWHM: the *same* stars are measured in both stacks — isolated, unsaturated, round point sources of the
 * frames' PSF size, chosen once on the plain mean — so the ratio compares like with like. Chosen
 * independently in each image (as before), the two medians came from different star sets: nebula knots
 * and hot-pixel clusters counted as stars, and on sparse fields the sets differed by the faint stars the
 * sharper stack lifted over the threshold, which called a sharper stack blurrier and overstated a 5.6 % gain
 * as 14 %. Each star's FWHM is that of a circular Gaussian fitted (Levenberg–Marquardt) to its stamp over
 * the local sky (the median of a ring around it).
 */
import type { ReconBackend } from "@tile-compile/recon-native";
import { median } from "./math.js";

/** A star measured in both stacks. */
export interface PairedStar {
  x: number;
  y: number;
  /** FWHM (px) in the reconstruction and in the plain mean. */
  fwhm: number;
  fwhmMean: number;
}

export interface FwhmComparison {
  /** Median FWHM over the paired stars, in the reconstruction and the plain mean. */
  fwhm: number;
  fwhmMean: number;
  /** 1 − median over stars of FWHM_tbqr / FWHM_mean: the per-star gain (positive: sharper). */
  improvement: number;
  stars: PairedStar[];
}

/** Fewer paired stars than this and the comparison is not made (NaN figures). */
export const MIN_PAIRED_STARS = 5;

/**
 * FWHM (px) of a circular Gaussian A·exp(−r²/2σ²) fitted over the sky level to the (2h+1)² stamp around
 * (x, y): Levenberg–Marquardt on (A, x, y, σ), the sky fixed to the median of the stamp's outer ring.
 * NaN when the stamp leaves the image, the fit does not converge, or its centre wanders more than 1.5 px.
 */
export function gaussianFwhm(plane: Float32Array, W: number, H: number, x: number, y: number, h: number): number {
  const cx = Math.round(x),
    cy = Math.round(y);
  if (cx - h < 0 || cy - h < 0 || cx + h >= W || cy + h >= H) return NaN;
  const ring: number[] = [];
  const xs: number[] = [],
    ys: number[] = [],
    vs: number[] = [];
  for (let j = -h; j <= h; j++)
    for (let i = -h; i <= h; i++) {
      const v = plane[(cy + j) * W + cx + i]!;
      if (!Number.isFinite(v)) return NaN;
      const r = Math.hypot(i, j);
      if (r >= h - 1) ring.push(v);
      if (r <= h) {
        xs.push(cx + i);
        ys.push(cy + j);
        vs.push(v);
      }
    }
  const sky = median(ring);
  for (let k = 0; k < vs.length; k++) vs[k] = vs[k]! - sky;
  // Start: the peak and a σ from the pixels above half of it.
  const peak = Math.max(...vs);
  if (!(peak > 0)) return NaN;
  const halfArea = vs.filter((v) => v > peak / 2).length;
  let p = [peak, x, y, Math.max(0.5, Math.sqrt(halfArea / Math.PI) / 1.1774)];
  const residual2 = (q: number[]): number => {
    let s = 0;
    for (let k = 0; k < vs.length; k++) {
      const dx = xs[k]! - q[1]!,
        dy = ys[k]! - q[2]!;
      const d = vs[k]! - q[0]! * Math.exp(-(dx * dx + dy * dy) / (2 * q[3]! * q[3]!));
      s += d * d;
    }
    return s;
  };
  let cost = residual2(p),
    damping = 1e-3;
  for (let iter = 0; iter < 50; iter++) {
    // Normal equations JᵀJ δ = Jᵀr of the four parameters.
    const a = new Float64Array(16),
      g = new Float64Array(4);
    const [A, x0, y0, s] = p as [number, number, number, number];
    const s2 = s * s;
    for (let k = 0; k < vs.length; k++) {
      const dx = xs[k]! - x0,
        dy = ys[k]! - y0,
        r2 = dx * dx + dy * dy;
      const e = Math.exp(-r2 / (2 * s2));
      const jac = [e, (A * e * dx) / s2, (A * e * dy) / s2, (A * e * r2) / (s2 * s)];
      const r = vs[k]! - A * e;
      for (let u = 0; u < 4; u++) {
        g[u] = g[u]! + jac[u]! * r;
        for (let v = 0; v < 4; v++) a[u * 4 + v] = a[u * 4 + v]! + jac[u]! * jac[v]!;
      }
    }
    for (let u = 0; u < 4; u++) a[u * 5] = a[u * 5]! * (1 + damping);
    const step = solve4(a, g);
    if (!step) return NaN;
    const next = p.map((v, u) => v + step[u]!);
    const nextCost = next[3]! > 0.3 && next[0]! > 0 ? residual2(next) : Infinity;
    if (nextCost < cost) {
      const converged = cost - nextCost < 1e-9 * cost;
      p = next;
      cost = nextCost;
      damping = Math.max(1e-8, damping / 4);
      if (converged) break;
    } else {
      damping *= 8;
      if (damping > 1e8) break;
    }
  }
  if (Math.hypot(p[1]! - x, p[2]! - y) > 1.5 || p[3]! > h / 1.5) return NaN;
  return 2 * Math.sqrt(2 * Math.LN2) * p[3]!;
}

/** Solve the 4×4 system a·δ = g (Gaussian elimination with partial pivoting); undefined when singular. */
function solve4(a: Float64Array, g: Float64Array): number[] | undefined {
  const m = Array.from({ length: 4 }, (_, r) => [a[r * 4]!, a[r * 4 + 1]!, a[r * 4 + 2]!, a[r * 4 + 3]!, g[r]!]);
  for (let c = 0; c < 4; c++) {
    let piv = c;
    for (let r = c + 1; r < 4; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[piv]![c]!)) piv = r;
    if (Math.abs(m[piv]![c]!) < 1e-300) return undefined;
    [m[c], m[piv]] = [m[piv]!, m[c]!];
    for (let r = c + 1; r < 4; r++) {
      const f = m[r]![c]! / m[c]![c]!;
      for (let k = c; k < 5; k++) m[r]![k] = m[r]![k]! - f * m[c]![k]!;
    }
  }
  const x = [0, 0, 0, 0];
  for (let r = 3; r >= 0; r--) {
    let s = m[r]![4]!;
    for (let k = r + 1; k < 4; k++) s -= m[r]![k]! * x[k]!;
    x[r] = s / m[r]![r]!;
  }
  return x;
}

/**
 * The stars to compare on: detected on the plain mean, then kept only if round (minor/major > 0.7), of the
 * PSF's size (0.7–1.5 × the median FWHM of the round detections: nebula knots are wider, hot-pixel
 * clusters narrower), unsaturated (no flat top: at most 2 pixels within 3 % of the peak), isolated (no
 * detection brighter than 1/50 of it within the stamp's half-size plus 1.5 FWHM, where its light would
 * reach the fit), on a quiet background (the ring's scatter at most
 * 3× the sky noise: not on nebulosity) and a stamp inside the image. The brightest `max` of them.
 */
export async function comparisonStars(
  recon: ReconBackend,
  plane: { data: Float32Array; width: number; height: number },
  h: number,
  signal: AbortSignal,
  max = 80,
): Promise<{ x: number; y: number }[]> {
  const { data, width: W, height: H } = plane;
  const found = (await recon.detectStars(plane, { radius: 5, maxStars: 600, signal })).stars;
  const round = found.filter((s) => s.roundness > 0.7 && Number.isFinite(s.fwhm));
  if (round.length === 0) return [];
  const psf = median(round.map((s) => s.fwhm));
  const skyNoise = median(found.map((s) => s.noise));
  const picked: { x: number; y: number }[] = [];
  for (const s of round) {
    if (picked.length >= max) break;
    if (s.fwhm < 0.7 * psf || s.fwhm > 1.5 * psf) continue;
    const cx = Math.round(s.x),
      cy = Math.round(s.y);
    if (cx - h - 1 < 0 || cy - h - 1 < 0 || cx + h + 1 >= W || cy + h + 1 >= H) continue;
    if (!found.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > h + 1.5 * psf || t.flux < s.flux / 50)) continue;
    let top = -Infinity;
    const ring: number[] = [];
    for (let j = -h; j <= h; j++)
      for (let i = -h; i <= h; i++) {
        const v = data[(cy + j) * W + cx + i]!;
        if (Math.abs(i) <= 2 && Math.abs(j) <= 2) top = Math.max(top, v);
        if (Math.hypot(i, j) >= h - 1) ring.push(v);
      }
    const sky = median(ring);
    let flat = 0;
    for (let j = -2; j <= 2; j++) for (let i = -2; i <= 2; i++) if (data[(cy + j) * W + cx + i]! >= sky + 0.97 * (top - sky)) flat++;
    if (flat > 2) continue;
    const spread = 1.4826 * median(ring.map((v) => Math.abs(v - sky)));
    if (Number.isFinite(skyNoise) && skyNoise > 0 && spread > 3 * skyNoise) continue;
    picked.push({ x: s.x, y: s.y });
  }
  return picked;
}

/** The same stars' Gaussian FWHM in the reconstruction and in the plain mean; NaN figures with fewer than MIN_PAIRED_STARS. */
export function compareFwhm(
  out: Float32Array,
  plain: Float32Array,
  W: number,
  H: number,
  stars: readonly { x: number; y: number }[],
  h: number,
): FwhmComparison {
  const pairs: PairedStar[] = [];
  for (const s of stars) {
    const a = gaussianFwhm(out, W, H, s.x, s.y, h),
      b = gaussianFwhm(plain, W, H, s.x, s.y, h);
    if (Number.isFinite(a) && Number.isFinite(b)) pairs.push({ x: s.x, y: s.y, fwhm: a, fwhmMean: b });
  }
  if (pairs.length < MIN_PAIRED_STARS) return { fwhm: NaN, fwhmMean: NaN, improvement: NaN, stars: pairs };
  return {
    fwhm: median(pairs.map((p) => p.fwhm)),
    fwhmMean: median(pairs.map((p) => p.fwhmMean)),
    improvement: 1 - median(pairs.map((p) => p.fwhm / p.fwhmMean)),
    stars: pairs,
  };
}
