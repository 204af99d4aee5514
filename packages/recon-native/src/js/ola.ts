/** Windowed overlap-add — twin of native/src/ola.rs. */
export function overlapAdd(
  sum: Float64Array,
  weightSum: Float64Array,
  cw: number,
  tiles: Float32Array[],
  rects: Int32Array,
  weights: Float64Array,
  window: Float32Array | null,
): void {
  for (let t = 0; t < tiles.length; t++) {
    const x0 = rects[4 * t]!,
      y0 = rects[4 * t + 1]!,
      tw = rects[4 * t + 2]!,
      th = rects[4 * t + 3]!;
    const wt = weights[t]!;
    const tile = tiles[t]!;
    for (let ty = 0; ty < th; ty++) {
      const base = (y0 + ty) * cw + x0;
      const tb = ty * tw;
      if (window) {
        for (let i = 0; i < tw; i++) {
          const v = tile[tb + i]!;
          if (v === v && v !== Infinity && v !== -Infinity) {
            const k = wt * window[tb + i]!;
            sum[base + i] = sum[base + i]! + k * v;
            weightSum[base + i] = weightSum[base + i]! + k;
          }
        }
      } else {
        for (let i = 0; i < tw; i++) {
          const v = tile[tb + i]!;
          if (v === v && v !== Infinity && v !== -Infinity) {
            sum[base + i] = sum[base + i]! + wt * v;
            weightSum[base + i] = weightSum[base + i]! + wt;
          }
        }
      }
    }
  }
}

export function normalizeOverlap(sum: Float64Array, weightSum: Float64Array, out: Float32Array, eps: number): void {
  for (let i = 0; i < out.length; i++) out[i] = weightSum[i]! > eps ? sum[i]! / weightSum[i]! : NaN;
}
