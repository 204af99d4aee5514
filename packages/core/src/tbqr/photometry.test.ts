/**
 * TBQR's per-frame photometry: aperture fluxes at fixed positions, the photometry star list, and the
 * relative transparency that scales each frame before frames are mixed.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../util/random.js";
import { photometryPlan, relativeTransparency, robustFluxRatio } from "./reconstruct.js";
import { apertureFluxes } from "./units.js";

/** A W×H plane with Gaussian stars (FWHM `fwhm`) on a sky of `sky`, with Gaussian noise of `sigma`. */
function field(W: number, H: number, stars: { x: number; y: number; flux: number }[], fwhm: number, sky: number, sigma: number, seed: number): Float32Array {
  const r = seededRandom(seed), g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const p = new Float32Array(W * H).map(() => sky + sigma * g());
  const s2 = (fwhm / 2.3548) ** 2;
  for (const s of stars) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) p[y * W + x] = p[y * W + x]! + (s.flux / (2 * Math.PI * s2)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * s2));
  return p;
}

describe("TBQR photometry", () => {
  it("the flux ratio drops stars hit by hot pixels, cosmics or trails even when there are only 8", () => {
    // A hazy frame at 0.33 of the reference: six clean stars (±3 % noise), one with a hot pixel in its
    // aperture (×1.43 of its reference flux), one hit by a trail (×4).
    const ref = [52_000, 31_000, 24_000, 18_000, 15_500, 12_000, 9_000, 7_500];
    const k = [0.33, 0.34, 1.43, 0.32, 0.335, 0.325, 4, 0.33];
    const r = robustFluxRatio(ref.map((b, s) => [b * k[s]!, b] as [number, number]));
    expect(Math.abs(r / 0.33 - 1)).toBeLessThan(0.02);
    // Fewer than 5 pairs: no figure.
    expect(robustFluxRatio(ref.slice(0, 4).map((b) => [b, b] as [number, number]))).toBeNaN();
  });
  it("the annulus median is the sorted median exactly, for odd and even annulus sizes and with NaN and repeated values", () => {
    const W = 80, H = 80, r = seededRandom(5);
    const plane = new Float32Array(W * H).map(() => Math.round(100 + 20 * r()));
    for (let i = 0; i < 40; i++) plane[Math.floor(r() * W * H)] = NaN;
    for (const [x, y, ap, a0, a1] of [[40, 40, 5, 7, 11], [30.4, 41.7, 4.2, 6.2, 10.2], [41.5, 38.5, 6, 8, 9.5], [39.9, 40.2, 3, 5, 14]] as const) {
      const plan = { stars: [{ x, y }], aperture: ap, annulus: [a0, a1] as [number, number] };
      // The reference: every pixel once, sorted annulus.
      let sum = 0, cnt = 0, bad = false;
      const bg: number[] = [];
      for (let yy = 0; yy < H; yy++) for (let xx = 0; xx < W; xx++) {
        const d2 = (xx - x) ** 2 + (yy - y) ** 2, v = plane[yy * W + xx]!;
        if (d2 <= ap * ap) { if (Number.isFinite(v)) { sum += v; cnt++; } else bad = true; } else if (d2 >= a0 * a0 && d2 <= a1 * a1 && Number.isFinite(v)) bg.push(v);
      }
      bg.sort((p, q) => p - q);
      const med = bg.length % 2 ? bg[bg.length >> 1]! : (bg[bg.length / 2 - 1]! + bg[bg.length / 2]!) / 2;
      const got = apertureFluxes(plane, W, plan)[0]!;
      if (bad) expect(got).toBeNaN();
      else expect(got, `star at ${x}, ${y}`).toBe(sum - cnt * med);
    }
  });
  it("aperture fluxes at fixed positions recover Gaussian stars' fluxes within 1 % at FWHM up to 2.4× the plan's", () => {
    const W = 120, H = 60, stars = [{ x: 30.3, y: 30.6, flux: 50_000 }, { x: 90.7, y: 29.2, flux: 20_000 }];
    const plan = { stars, aperture: 3.5 * 3, annulus: [3.5 * 3 + 2, 3.5 * 3 + 6] as [number, number] };
    for (const fwhm of [2, 3, 5, 7.2]) {
      const f = apertureFluxes(field(W, H, stars, fwhm, 400, 0.001, 1), W, plan);
      stars.forEach((s, k) => expect(Math.abs(f[k]! / s.flux - 1), `FWHM ${fwhm}, star ${k}`).toBeLessThan(0.01));
    }
    // A NaN inside the aperture makes that star's flux NaN (not a short sum).
    const p = field(W, H, stars, 3, 400, 1, 2);
    p[30 * W + 31] = NaN;
    const f = apertureFluxes(p, W, plan);
    expect(f[0]).toBeNaN();
    expect(Number.isFinite(f[1]!)).toBe(true);
  });

  it("relative transparency: the frames' flux ratio within 0.5 % under noise, robust to a star hit by a trail, undefined with < 5 stars", () => {
    const r = seededRandom(3);
    const S = 40, tau = [1, 0.9, 0.45, 1.05, 0.7];
    const base = Array.from({ length: S }, () => 5000 + 50_000 * r());
    const fluxes = tau.map((t) => Float64Array.from(base, (b) => t * b + 0.003 * b * (r() - 0.5)));
    fluxes[2]![7] = fluxes[2]![7]! + 200_000; // a satellite trail through star 7 in frame 2
    fluxes[4]![9] = NaN; // not measured
    const est = relativeTransparency(fluxes)!;
    const m = est.reduce((a, b) => a + b, 0) / est.length, mt = tau.reduce((a, b) => a + b, 0) / tau.length;
    est.forEach((e, f) => expect(Math.abs(e / m / (tau[f]! / mt) - 1), `frame ${f}`).toBeLessThan(0.005));
    expect(relativeTransparency(tau.map((t) => Float64Array.from(base.slice(0, 4), (b) => t * b)))).toBeUndefined();
    expect(relativeTransparency([])).toBeUndefined();
  });

  it("the photometry stars: isolated, away from the edges, from the seeing frame with most stars, at most 100", () => {
    const star = (x: number, y: number, flux: number) => ({ x, y, flux });
    const few = { fwhm: 3, stars: [star(50, 50, 1000)] };
    const many = { fwhm: 3, stars: [star(50, 50, 1000), star(55, 50, 900), star(150, 150, 800), star(3, 100, 700), star(100, 100, 600), star(120, 40, 500), star(40, 150, 400), star(160, 60, 300), star(100, 105, 5)] };
    const plan = photometryPlan([few, many], 3, 200, 200)!;
    // (50, 50) and (55, 50) crowd each other, (3, 100) is at the edge; (100, 100) keeps its faint neighbour (< 1/30).
    expect(plan.stars.map((s) => [s.x, s.y])).toEqual([[150, 150], [100, 100], [120, 40], [40, 150], [160, 60]]);
    expect(plan.aperture).toBeCloseTo(10.5, 12);
    expect(plan.annulus).toEqual([12.5, 16.5]);
    // Fewer than 5 usable stars: no plan (the transparency falls back to the peak-contrast estimate).
    expect(photometryPlan([few], 3, 200, 200)).toBeUndefined();
  });
});
