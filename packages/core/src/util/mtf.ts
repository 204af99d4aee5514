/**
 * The midtones transfer function (PixInsight's MTF): maps [0, 1] onto [0, 1] with mtf(m, m) = 0.5, so a
 * stretch moves the background's median to a chosen brightness. Shared by the stretch stage and the run
 * report's previews.
 */
export function mtf(x: number, m: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  return ((m - 1) * x) / ((2 * m - 1) * x - m);
}
