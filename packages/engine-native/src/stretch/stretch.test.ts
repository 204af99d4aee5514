import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { mtf } from "@tile-compile/core";
import { ghs } from "./native.js";

describe("stretch transfer functions", () => {
  it("MTF and GHS map 0 → 0 and 1 → 1 and are monotonic; MTF(m; m) = 0.5", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        fc.double({ min: 0.5, max: 20, noNaN: true }),
        fc.oneof(fc.constant(-1), fc.double({ min: 0, max: 5, noNaN: true })),
        fc.double({ min: 0, max: 0.9, noNaN: true }),
        (m, D, b, sp) => {
          expect(mtf(0, m)).toBe(0);
          expect(mtf(1, m)).toBe(1);
          expect(mtf(m, m)).toBeCloseTo(0.5, 12);
          expect(ghs(0, D, b, sp)).toBeCloseTo(0, 12);
          expect(ghs(1, D, b, sp)).toBeCloseTo(1, 12);
          let prev = -1;
          for (let x = 0; x <= 1.0001; x += 0.05) {
            const y = ghs(x, D, b, sp);
            expect(y).toBeGreaterThanOrEqual(prev - 1e-12);
            prev = y;
          }
        },
      ),
    );
  });
  it("GHS lifts faint signal: a pixel just above the symmetry point gains more than in a linear map", () => {
    expect(ghs(0.12, 8, 2, 0.1) - ghs(0.1, 8, 2, 0.1)).toBeGreaterThan(0.02 * 1.5);
  });
});
