/**
 * The robust statistics helpers the TypeScript side shares (the kernels have their own in recon-native).
 */

/** σ of a Gaussian from its median absolute deviation: 1 / Φ⁻¹(3/4). */
export const MAD_TO_SIGMA = 1.482602218505602;

/** Median of the finite values (the mean of the two middle ones for an even count); NaN when there are none. */
export function median(values: ArrayLike<number>): number {
  const s = Float64Array.from(values as ArrayLike<number>)
    .filter(Number.isFinite)
    .sort();
  if (s.length === 0) return Number.NaN;
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}
