import { describe, expect, it } from "vitest";
import { chanceCount } from "./match.js";

/** P(Poisson(λ) ≥ k), summing the tail's terms from k (accurate for the small tails tested here). */
function tail(lambda: number, k: number): number {
  if (k <= 0) return 1;
  let term = Math.exp(-lambda);
  for (let i = 1; i <= k; i++) term *= lambda / i;
  let t = 0;
  for (let i = k; i < k + 400; i++) {
    t += term;
    term *= lambda / (i + 1);
  }
  return t;
}

describe("chanceCount: the fewest chance pairs a wrong match would reach with probability ≤ p", () => {
  it("is the smallest k whose Poisson tail is ≤ p, or one above it (the bound is conservative)", () => {
    for (const lambda of [0.005, 0.05, 0.41, 1.2, 3.7, 12, 40]) {
      for (const p of [1e-6, 1e-9, 1e-12]) {
        const k = chanceCount(lambda, p);
        expect(tail(lambda, k), `λ ${lambda}, p ${p}: k ${k}`).toBeLessThanOrEqual(p);
        // Never more than one above the exact answer.
        expect(tail(lambda, k - 2), `λ ${lambda}, p ${p}: k ${k} is not minimal`).toBeGreaterThan(p);
      }
    }
  });
  it("needs nothing when no chance pair is possible, and grows with λ", () => {
    expect(chanceCount(0, 1e-9)).toBe(1);
    const ks = [0.01, 0.1, 1, 10].map((l) => chanceCount(l, 1e-9));
    for (let i = 1; i < ks.length; i++) expect(ks[i]!).toBeGreaterThanOrEqual(ks[i - 1]!);
    expect(chanceCount(0.41, 1e-9)).toBe(9); // the 12-star demo field at 2 px (the case that needed r = the residual)
  });
});
