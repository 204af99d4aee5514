/**
 * What is not a star, out of a detection list, before anything is matched or measured (issue 15):
 *
 * - **Trails** (satellites, aircraft, meteors): the detector breaks a trail into a chain of elongated
 *   detections (roundness ≈ 0.3 on a 1–2 px wide trail). Elongated detections are collected in a Hough
 *   accumulator (1° × 4 px bins); a line holding ≥ 5 of them is a trail, and every detection within 4 px
 *   of it is dropped, the round ones where a star sits on the trail included. The frame is flagged.
 * - **Elongated** detections that are not on a line: roundness below 0.6, or below 0.8 × the frame's own
 *   median roundness when every star is elongated (tracking errors, wind) — then that shape is the PSF.
 * - **Extended** sources (nebula knots, galaxies, blends): the frame's PSF width F is the median FWHM of
 *   the round detections near their lowest common width (a first guess F₀ = their 25th percentile FWHM,
 *   then the median of those within [0.75, 1.35]·F₀, since point sources are the narrowest things in the
 *   frame; widths the measuring box limits do not count when there are others); detections wider than
 *   1.45·F or narrower than 0.55·F (hot pixels, cosmic hits) are dropped.
 *
 * The frame's FWHM is the median of the stars that remain, so a nebula does not inflate it.
 */
import type { Star } from "@tile-compile/recon-native";
import { median } from "../util/stats.js";

export interface CleanStars {
  /** The stars kept, in the detector's order (brightest first). */
  stars: Star[];
  /** Median FWHM (px) of the kept stars (NaN when none). */
  fwhm: number;
  /** Median roundness of the kept stars. */
  roundness: number;
  /** Trails found (each a line: angle θ of its normal, distance ρ from the origin, px) and detections dropped. */
  trails: { theta: number; rho: number; detections: number }[];
  dropped: { trail: number; elongated: number; extended: number; compact: number };
}

const quantile = (sorted: readonly number[], q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]! : NaN;

/**
 * `boxRadius`: the detector's measuring radius. Widths near the box (≥ 1.6 × radius) are the box's, not
 * a star's (flat structure, gradients, nebula fill it): they do not set the PSF width unless nothing else
 * was detected (a frame of genuinely bloated stars).
 */
export function cleanStars(detected: readonly Star[], boxRadius = 5): CleanStars {
  const dropped = { trail: 0, elongated: 0, extended: 0, compact: 0 };
  // 1. Trails: lines through ≥ 5 elongated detections.
  const elong = detected.filter((s) => s.roundness < 0.6);
  const trails: CleanStars["trails"] = [];
  const onTrail = new Set<Star>();
  if (elong.length >= 5) {
    const used = new Set<Star>();
    for (let round = 0; round < 4; round++) {
      const pts = elong.filter((s) => !used.has(s));
      if (pts.length < 5) break;
      const acc = new Map<number, number>();
      let best = { key: 0, n: 0 };
      for (const s of pts)
        for (let a = 0; a < 180; a++) {
          const th = (a * Math.PI) / 180;
          const key = a * 100000 + Math.round((s.x * Math.cos(th) + s.y * Math.sin(th)) / 4) + 50000;
          const n = (acc.get(key) ?? 0) + 1;
          acc.set(key, n);
          if (n > best.n || (n === best.n && key < best.key)) best = { key, n };
        }
      if (best.n < 5) break;
      // Refine the line on its members (total least squares), then take every detection near it.
      const a = Math.floor(best.key / 100000),
        th0 = (a * Math.PI) / 180,
        rho0 = ((best.key % 100000) - 50000) * 4;
      const members = pts.filter((s) => Math.abs(s.x * Math.cos(th0) + s.y * Math.sin(th0) - rho0) <= 6);
      const mx = members.reduce((t, s) => t + s.x, 0) / members.length,
        my = members.reduce((t, s) => t + s.y, 0) / members.length;
      let sxx = 0,
        syy = 0,
        sxy = 0;
      for (const s of members) {
        sxx += (s.x - mx) ** 2;
        syy += (s.y - my) ** 2;
        sxy += (s.x - mx) * (s.y - my);
      }
      const theta = 0.5 * Math.atan2(2 * sxy, sxx - syy) + Math.PI / 2; // normal of the principal direction
      const rho = mx * Math.cos(theta) + my * Math.sin(theta);
      let n = 0;
      for (const s of detected)
        if (Math.abs(s.x * Math.cos(theta) + s.y * Math.sin(theta) - rho) <= 4) {
          if (!onTrail.has(s)) {
            onTrail.add(s);
            n++;
          }
          used.add(s);
        }
      for (const s of members) used.add(s);
      trails.push({ theta, rho, detections: n });
    }
  }
  dropped.trail = onTrail.size;
  // 2. Elongated detections off any trail.
  const rest = detected.filter((s) => !onTrail.has(s));
  const medRound = median(rest.slice(0, 50).map((s) => s.roundness));
  const minRound = Math.min(0.6, 0.8 * (Number.isFinite(medRound) ? medRound : 1));
  const round = rest.filter((s) => {
    const ok = s.roundness >= minRound;
    if (!ok) dropped.elongated++;
    return ok;
  });
  // 3. The PSF width from the narrowest common width; drop what is much wider or narrower.
  const all = round
    .slice(0, 200)
    .map((s) => s.fwhm)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const measurable = all.filter((w) => w < 1.6 * boxRadius);
  const widths = measurable.length >= Math.max(5, 0.1 * all.length) ? measurable : all;
  const f0 = quantile(widths, 0.25);
  const F = median(widths.filter((w) => w >= 0.75 * f0 && w <= 1.35 * f0));
  const stars = Number.isFinite(F)
    ? round.filter((s) => {
        if (s.fwhm > 1.45 * F) {
          dropped.extended++;
          return false;
        }
        if (s.fwhm < 0.55 * F) {
          dropped.compact++;
          return false;
        }
        return true;
      })
    : round;
  const top = stars.slice(0, 200);
  return { stars, fwhm: median(top.map((s) => s.fwhm)), roundness: median(top.map((s) => s.roundness)), trails, dropped };
}
