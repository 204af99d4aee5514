/** Resampling through a homography — twin of native/src/warp.rs (see there for conventions and the Lanczos phase table). */
const PHASES = 2048;
let table: Float64Array | undefined;
function lanczosTable(): Float64Array {
  if (table) return table;
  table = new Float64Array((PHASES + 1) * 6);
  for (let k = 0; k <= PHASES; k++) {
    const f = k / PHASES;
    let s = 0;
    for (let i = 0; i < 6; i++) {
      table[k * 6 + i] = lanczos3(f - (i - 2));
      s += table[k * 6 + i]!;
    }
    for (let i = 0; i < 6; i++) table[k * 6 + i] = table[k * 6 + i]! / s;
  }
  return table;
}
function cubic(t: number): number {
  const a = -0.5;
  t = Math.abs(t);
  if (t <= 1) return (a + 2) * t * t * t - (a + 3) * t * t + 1;
  if (t < 2) return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a;
  return 0;
}
function lanczos3(t: number): number {
  if (t === 0) return 1;
  if (Math.abs(t) >= 3 || t % 1 === 0) return 0;
  const p = Math.PI * t;
  return (3 * Math.sin(p) * Math.sin(p / 3)) / (p * p);
}
function weights(kind: number, f: number, w: Float64Array): [number, number] {
  if (kind === 1) {
    w[0] = 1 - f;
    w[1] = f;
    return [0, 2];
  }
  if (kind === 2) {
    for (let k = 0; k < 4; k++) w[k] = cubic(f - (k - 1));
    return [-1, 4];
  }
  const t = lanczosTable();
  const row = Math.floor(f * PHASES + 0.5) * 6;
  for (let k = 0; k < 6; k++) w[k] = t[row + k]!;
  return [-2, 6];
}

export function warp(
  src: Float32Array,
  sw: number,
  sh: number,
  hm: Float64Array,
  dst: Float32Array,
  dw: number,
  dh: number,
  kind: number,
): void {
  const wx = new Float64Array(6),
    wy = new Float64Array(6);
  const EPS = 1e-9;
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      const s = hm[6]! * x + hm[7]! * y + hm[8]!;
      const u = (hm[0]! * x + hm[1]! * y + hm[2]!) / s;
      const v = (hm[3]! * x + hm[4]! * y + hm[5]!) / s;
      if (!(u >= -EPS && v >= -EPS && u <= sw - 1 + EPS && v <= sh - 1 + EPS)) {
        dst[y * dw + x] = NaN;
        continue;
      }
      const u0 = Math.floor(u),
        v0 = Math.floor(v);
      const [ox, nx] = weights(kind, u - u0, wx);
      const [oy, ny] = weights(kind, v - v0, wy);
      let acc = 0;
      for (let j = 0; j < ny; j++) {
        if (wy[j] === 0) continue;
        const yy = Math.min(Math.max(v0 + oy + j, 0), sh - 1);
        let racc = 0;
        for (let i = 0; i < nx; i++) {
          if (wx[i] === 0) continue;
          const xx = Math.min(Math.max(u0 + ox + i, 0), sw - 1);
          racc += wx[i]! * src[yy * sw + xx]!;
        }
        acc += wy[j]! * racc;
      }
      dst[y * dw + x] = acc;
    }
  }
}
