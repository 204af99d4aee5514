import { describe, expect, it } from "vitest";
import { stateCount } from "./reconstruct.js";
import fc from "fast-check";
import { clusterCount, globalWeights, localWeights, modeGate, robustZ, tileGeometry, tileGrid } from "./math.js";

const P = { background: 0.4, noise: 0.3, gradient: 0.3, clamp: [-3, 3] as [number, number] };

describe("TBQR derived cases (tbqr-reference Part 4.3)", () => {
  it("1. weights: α+β+γ ≠ 1 is a config error; G unnormalised, within [e^-3, e^3]; the (1,2,3) triple", () => {
    expect(() => globalWeights([1, 2, 3], [1, 2, 3], [1, 2, 3], { ...P, gradient: 0.31 })).toThrow(/sum to 1\.01/);
    const { G } = globalWeights([1, 2, 3], [1, 2, 3], [1, 2, 3], P);
    expect(G[0]).toBeCloseTo(1.3097, 4);
    expect(G[1]).toBeCloseTo(1.0, 12);
    expect(G[2]).toBeCloseTo(0.7635, 4);
    expect(G.reduce((a, b) => a + b, 0)).not.toBeCloseTo(1, 2);
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.double({ min: -1e3, max: 1e3, noNaN: true }),
            fc.double({ min: 0, max: 1e3, noNaN: true }),
            fc.double({ min: 0, max: 1e3, noNaN: true }),
          ),
          { minLength: 3, maxLength: 30 },
        ),
        (rows) => {
          const { G: g } = globalWeights(
            rows.map((r) => r[0]),
            rows.map((r) => r[1]),
            rows.map((r) => r[2]),
            P,
          );
          for (const v of g) {
            expect(v).toBeGreaterThanOrEqual(Math.exp(-3) - 1e-12);
            expect(v).toBeLessThanOrEqual(Math.exp(3) + 1e-9);
          }
        },
      ),
    );
  });
  it("2. clamp before exp: Q = ±100 gives G = e^±3 exactly", () => {
    const { Q, G } = globalWeights([1, 2, 3, -1000, 1e6], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], { ...P, background: 1, noise: 0, gradient: 0 });
    expect(Q[3]).toBeGreaterThan(100);
    expect(Q[4]).toBeLessThan(-100);
    expect(G[3]).toBe(Math.exp(3));
    expect(G[4]).toBe(Math.exp(-3));
    const z = robustZ([0, 0, 1, 0, 0]);
    expect(z.every((v) => v === 0)).toBe(true); // MAD = 0 → zeros
  });
  it("3. tile geometry table (3840×2160) and guards", () => {
    expect(tileGeometry(1.5, 3840, 2160)).toMatchObject({ T: 64, O: 16, S: 48 });
    expect(tileGeometry(3, 3840, 2160)).toMatchObject({ T: 96, O: 24, S: 72 });
    expect(tileGeometry(15, 3840, 2160)).toMatchObject({ T: 360, O: 90, S: 270 });
    expect(tileGrid(3840, 2160, 96, 72)).toHaveLength(53 * 30);
    expect(tileGeometry(0, 3840, 2160)).toMatchObject({ F: 3, T: 96 });
    expect(tileGeometry(-2, 3840, 2160).F).toBe(3);
    expect(() => tileGeometry(3, 3840, 2160, { sizeFactor: 32, minSize: 64, maxDivisor: 6, overlapFraction: 0.6 })).toThrow(
      /overlap_fraction/,
    );
    expect(tileGeometry(3, 60, 50)).toMatchObject({ T: 50, O: 0, S: 50 });
    expect(tileGrid(60, 50, 50, 50)).toEqual([
      { x0: 0, y0: 0, width: 50, height: 50 },
      { x0: 10, y0: 0, width: 50, height: 50 },
    ]);
  });
  it("4. monotonicity: F = 0.5…20 gives non-decreasing T", () => {
    let prev = 0;
    for (let F = 0.5; F <= 20; F += 0.05) {
      const { T } = tileGeometry(F, 3840, 2160);
      expect(T).toBeGreaterThanOrEqual(prev);
      prev = T;
    }
  });
  it("5. full coverage: every pixel of odd-sized images is in some tile", () => {
    for (const [W, H, F] of [
      [1001, 777, 3],
      [257, 129, 2.2],
      [64, 64, 5],
      [3840, 2160, 7.7],
    ] as const) {
      const { T, S } = tileGeometry(F, W, H);
      const cover = new Uint8Array(W * H);
      for (const t of tileGrid(W, H, T, S))
        for (let y = t.y0; y < t.y0 + t.height; y++) cover.fill(1, y * W + t.x0, y * W + t.x0 + t.width);
      expect(
        cover.every((c) => c === 1),
        `${W}×${H}`,
      ).toBe(true);
    }
  });
  it("11. mode gate: 49 → abort (or emergency), 50–199 → reduced, ≥ 200 → full", () => {
    const a = { framesMin: 50, framesReducedThreshold: 200, allowEmergency: false };
    expect(() => modeGate(49, a)).toThrow(/49 usable frames/);
    expect(modeGate(49, { ...a, allowEmergency: true })).toBe("emergency");
    expect(modeGate(50, a)).toBe("reduced");
    expect(modeGate(199, a)).toBe("reduced");
    expect(modeGate(200, a)).toBe("full");
  });
  it("12. K rule: N = 50, 200, 1000 → 5, 20, 30", () => {
    expect([50, 200, 1000].map((n) => clusterCount(n))).toEqual([5, 20, 30]);
    // synthetic.*: the number of states is kept within [frames_min, frames_max] (defaults 15 / 30).
    const syn = { framesMin: 15, framesMax: 30, clusterRange: [5, 30] as [number, number] };
    expect([100, 200, 260, 1000].map((n) => stateCount(n, syn))).toEqual([15, 20, 26, 30]);
    expect(stateCount(400, { ...syn, framesMax: 25 })).toBe(25);
    expect(stateCount(400, { ...syn, clusterRange: [5, 12], framesMin: 5 })).toBe(12);
  });
  it("local weights: mode once per tile from the median star count; z across frames ranks frames within a tile", () => {
    // 5 frames × 2 tiles; tile 0 has stars (frame 4 blurred), tile 1 is structure (frame 2 sharper).
    const fwhm = [
      [3, NaN],
      [3.1, NaN],
      [2.9, NaN],
      [3.0, NaN],
      [5, NaN],
    ];
    const ones = fwhm.map(() => [1, 1]);
    const stars = fwhm.map(() => [10, 0]);
    const eOverSigma = [
      [0, 10],
      [0, 10.5],
      [0, 14],
      [0, 9.8],
      [0, 10.2],
    ];
    const { L, mode } = localWeights({ fwhm, roundness: ones, contrast: ones, stars, eOverSigma, background: ones });
    expect(mode).toEqual(["star", "structure"]);
    expect(L[4]![0]).toBeLessThan(L[0]![0]!);
    expect(L[2]![1]).toBeGreaterThan(L[0]![1]!);
  });
});
