/** Debayering — twin of native/src/debayer.rs (see there for the rules). */
export const PATTERNS = [
  [0, 1, 1, 2],
  [1, 0, 2, 1],
  [1, 2, 0, 1],
  [2, 1, 1, 0],
] as const;
const EDGE = [
  [0, -1],
  [-1, 0],
  [1, 0],
  [0, 1],
] as const;
const DIAG = [
  [-1, -1],
  [1, -1],
  [-1, 1],
  [1, 1],
] as const;

export function debayer(
  src: Float32Array,
  w: number,
  h: number,
  pattern: number,
  offX: number,
  offY: number,
  superpixel: boolean,
  out: [Float32Array, Float32Array, Float32Array],
): void {
  const pat = PATTERNS[pattern]!;
  const color = (x: number, y: number) => pat[((y + offY) & 1) * 2 + ((x + offX) & 1)]!;
  if (superpixel) {
    const ow = w >> 1,
      oh = h >> 1;
    for (let j = 0; j < oh; j++)
      for (let i = 0; i < ow; i++) {
        const acc = [0, 0, 0],
          cnt = [0, 0, 0];
        for (let dy = 0; dy < 2; dy++)
          for (let dx = 0; dx < 2; dx++) {
            const x = 2 * i + dx,
              y = 2 * j + dy;
            const c = color(x, y);
            acc[c]! += src[y * w + x]!;
            cnt[c]! += 1;
          }
        for (let c = 0; c < 3; c++) out[c]![j * ow + i] = acc[c]! / cnt[c]!;
      }
    return;
  }
  const mean = (x: number, y: number, c: number, offs: readonly (readonly [number, number])[]): number | undefined => {
    let s = 0,
      n = 0;
    for (const [dx, dy] of offs) {
      const xx = x + dx,
        yy = y + dy;
      if (xx < 0 || yy < 0 || xx >= w || yy >= h || color(xx, yy) !== c) continue;
      s += src[yy * w + xx]!;
      n += 1;
    }
    return n > 0 ? s / n : undefined;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const here = color(x, y);
      for (let c = 0; c < 3; c++) {
        out[c]![y * w + x] = here === c ? src[y * w + x]! : (mean(x, y, c, EDGE) ?? mean(x, y, c, DIAG) ?? NaN);
      }
    }
}
