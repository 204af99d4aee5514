import { describe, expect, it } from "vitest";
import { seededRandom } from "@tile-compile/core";
import { autoMinSpread, DEFAULT_TBQR, sharedSpread } from "./reconstruct.js";

/** Tile FWHM of N frames × T tiles: the frame's true FWHM (ln-normal, spread `spread`) × each tile's measurement error. */
function tiles(seed: number, N: number, T: number, spread: number, error: number): Float64Array[] {
  const r = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return Array.from({ length: N }, () => {
    const f = 3 * Math.exp(spread * g());
    return Float64Array.from({ length: T }, () => f * Math.exp(error * g()));
  });
}

describe("sharedSpread (weighting: auto's seeing spread)", () => {
  const all = (T: number) => Array.from({ length: T }, (_, t) => t);
  it("finds a real spread of the frames' seeing under tile scatter, within 25 %", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const s = sharedSpread(tiles(seed, 60, 40, 0.1, 0.3), all(40));
      expect(s).toBeGreaterThan(0.075);
      expect(s).toBeLessThan(0.125);
    }
  });
  it("reads no spread where the tiles only scatter (16 frames, few tiles: the M 94 case), where the robust spread of frame medians reads several %", () => {
    let zero = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const s = sharedSpread(tiles(seed, 16, 12, 0, 0.3), all(12));
      if (s === 0) zero++;
      expect(s).toBeLessThan(autoMinSpread(DEFAULT_TBQR.noiseBudget)); // SNR weights
    }
    expect(zero).toBeGreaterThanOrEqual(17); // the 2σ correlation test passes by chance on ~1 in 40
  });
  it("auto's threshold: the spread at which the noise budget can buy AUTO_MIN_GAIN (6.2 % at 1.05)", () => {
    expect(autoMinSpread(1.05)).toBeCloseTo(0.02 / Math.sqrt(1.05 ** 2 - 1), 12);
    expect(autoMinSpread(1.05)).toBeCloseTo(0.0625, 3);
    expect(autoMinSpread(1.5)).toBe(0.03);
  });
  it("skips NaN tiles and needs at least 4 frames", () => {
    const t = tiles(7, 30, 20, 0.1, 0.2);
    for (const row of t) row[3] = NaN;
    expect(sharedSpread(t, all(20))).toBeGreaterThan(0.06);
    expect(sharedSpread(t.slice(0, 3), all(20))).toBe(0);
  });
});
