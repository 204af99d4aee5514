/**
 * Winsorized σ is defined as the fixed point of the winsorizing map σ ↦ 1.134·sd(x clamped to c ± 1.5σ)
 * (Siril's and Huber's iteration converges to it). Both backends solve for it in closed form per clamp
 * count and fall back to iterating; this test checks the result against the plain map iterated to
 * convergence here, pixel by pixel, through the whole rejection (passes, bounds, kept mean).
 */
import { describe, expect, it } from "vitest";
import type { ReconBackend } from "./index.js";
import { backends, gauss, rng } from "./test-support/synth.js";

const { js, native } = backends();
const all: [string, ReconBackend][] = native
  ? [
      ["js", js],
      ["native", native],
    ]
  : [["js", js]];

/** Reference: the documented rejection with σ from the plain winsorizing map iterated to 1e-14. */
function reference(values: number[], low: number, high: number, iterations: number): number {
  let kept = values.slice().sort((a, b) => a - b);
  const med = (v: number[]) => (v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2);
  const sd = (v: number[]) => {
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
  };
  for (let pass = 0; pass < iterations && kept.length >= 3; pass++) {
    let c = med(kept),
      s = sd(kept);
    for (let it = 0; it < 10000; it++) {
      const w = kept.map((x) => Math.min(Math.max(x, c - 1.5 * s), c + 1.5 * s));
      const s1 = 1.134 * sd(w);
      c = med(w);
      if (Math.abs(s1 - s) <= 1e-14 * s) {
        s = s1;
        break;
      }
      s = s1;
    }
    const next = kept.filter((x) => x >= c - low * s && x <= c + high * s);
    if (next.length < 2 || next.length === kept.length) break;
    kept = next;
  }
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

describe.each(all)("%s backend: winsorized rejection", (_n, b) => {
  // 12 frames (odd/even ranges, the grouped path's counting), 45 (walking), Gaussian noise with 3 %
  // outliers both ways; 4000 pixels each (500 groups of eight plus the scalar path for the tail).
  for (const nf of [12, 45]) {
    it(`equals the fixed point of the winsorizing iteration (${nf} frames)`, async () => {
      const len = 4003;
      const r = rng(nf),
        g = gauss(r);
      const frames = Array.from({ length: nf }, () =>
        Float32Array.from({ length: len }, () => {
          const u = r();
          return u < 0.015 ? 3000 + 2000 * r() : u < 0.03 ? 200 * r() : 1000 + 25 * g();
        }),
      );
      const got = (await b.combine(frames, { rejection: "winsorized", low: 3, high: 3, iterations: 5 })).data;
      let worst = 0;
      for (let i = 0; i < len; i++) {
        const want = reference(
          frames.map((f) => f[i]!),
          3,
          3,
          5,
        );
        worst = Math.max(worst, Math.abs(got[i]! - want) / want);
      }
      // Float32 output: 1 ulp is 6e-8 relative at 1000; a differently kept value would move the mean by
      // ~1e-3 relative, so this tolerance also proves every pixel kept the same values.
      expect(worst).toBeLessThan(2e-7);
    });
  }
});
