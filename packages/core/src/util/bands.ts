/**
 * Band sizing for the combines that stream all frames a band of rows at a time (master building, the
 * native stack). A band of every frame is kept small enough to stay in the CPU caches (L2 + L3 here):
 * bigger bands read nothing less — every row is read once either way — and cost fresh pages (1310-row
 * bands of 50 frames spent ~20 % of a master build zeroing 536 MB of new buffers, measured with perf).
 */
export const BAND_BYTES = 32 << 20;

/** Rows per band: `bytesPerRow` (all frames' rows plus the combine's own) within the budget and `bandBytes`. */
export function bandRows(bytesPerRow: number, height: number, memoryBudgetBytes: number, bandBytes = BAND_BYTES): number {
  return Math.max(1, Math.min(height, Math.floor(Math.min(memoryBudgetBytes, bandBytes) / bytesPerRow)));
}
