/**
 * What the seeing-bump target can be on a generated set at all: the best FWHM gain in the bump that weights
 * of the form exp(λ·base + κ·q) reach when q is the *true* local seeing of every frame (q = −2 ln F_true) and
 * base the true inverse variance of each frame at a common star-flux scale (σ ∝ √(sky + read²) / t), within a
 * noise budget against the plain mean of the raw frames. It uses only the generator's truth — no method under
 * test — and models the stack's star as the weighted sum of the frames' Gaussians (flux-scaled: every frame
 * contributes its weight; the plain mean of raw frames contributes ∝ t).
 *
 * The conditions test prints it next to the measured bump figure, so a seed that misses the −8 % target shows
 * whether the weights or the set are the limit.
 */
import type { SkySet } from "./sky.js";

/** FWHM of Σ w_i · (unit-flux Gaussian of FWHM F_i), by bisection on half the peak. */
export function fwhmOfMixture(w: number[], F: number[]): number {
  const s2 = F.map((f) => (f / 2.3548) ** 2);
  const profile = (r: number) => w.reduce((a, wi, i) => a + (wi / (2 * Math.PI * s2[i]!)) * Math.exp((-r * r) / (2 * s2[i]!)), 0);
  const half = profile(0) / 2;
  let lo = 0,
    hi = 20;
  for (let i = 0; i < 50; i++) {
    const m = (lo + hi) / 2;
    if (profile(m) > half) lo = m;
    else hi = m;
  }
  return 2 * lo;
}

/**
 * The oracle's best relative FWHM change (e.g. −0.085) at bump depth `bw` (1: the bump's centre) within
 * `budget` × the plain mean's noise; λ ∈ {0, ½, 1}, κ in steps of 0.05 up to 3.
 */
export function bumpOracle(set: SkySet, bw: number, budget: number, readNoise = 5): number {
  const F = set.frames.map((f) => f.fwhm * (1 + (f.bump - 1) * bw));
  const sx = set.frames.map((f) => Math.sqrt(f.sky + readNoise ** 2) / f.t);
  const N = F.length;
  const ref = Math.sqrt(set.frames.reduce((a, f) => a + f.sky + readNoise ** 2, 0)) / N / (set.frames.reduce((a, f) => a + f.t, 0) / N);
  const noise = (w: number[]) => Math.sqrt(w.reduce((a, wi, i) => a + (wi * sx[i]!) ** 2, 0)) / w.reduce((a, b) => a + b, 0) / ref;
  const plain = fwhmOfMixture(
    set.frames.map((f) => f.t),
    F,
  );
  let best = 0;
  for (const lambda of [0, 0.5, 1])
    for (let k = 0; k <= 3 + 1e-9; k += 0.05) {
      const e = sx.map((s, i) => -2 * lambda * Math.log(s) - 2 * k * Math.log(F[i]!)),
        mx = Math.max(...e);
      const w = e.map((v) => Math.exp(v - mx));
      if (noise(w) <= budget) best = Math.min(best, fwhmOfMixture(w, F) / plain - 1);
    }
  return best;
}
