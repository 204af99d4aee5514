/** Helpers that build the inputs of the kernels: warp matrices and overlap-add windows. */
import type { Matrix3 } from "./contract.js";

/** Output (x, y) samples source (x + dx, y + dy): shifts the image content by (−dx, −dy). */
export function shiftMatrix(dx: number, dy: number): number[] {
  return [1, 0, dx, 0, 1, dy, 0, 0, 1];
}

/** Source = s·R(θ)·output + (tx, ty) (θ in radians, counter-clockwise in pixel coordinates). */
export function similarityMatrix(scale: number, theta: number, tx: number, ty: number): number[] {
  const c = scale * Math.cos(theta),
    s = scale * Math.sin(theta);
  return [c, -s, tx, s, c, ty, 0, 0, 1];
}

/** Source = [[a, b], [c, d]]·output + (tx, ty). */
export function affineMatrix(a: number, b: number, c: number, d: number, tx: number, ty: number): number[] {
  return [a, b, tx, c, d, ty, 0, 0, 1];
}

/** Matrix product A·B (apply B first). */
export function multiplyMatrix(a: Matrix3, b: Matrix3): number[] {
  const r: number[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) r.push(a[3 * i]! * b[j]! + a[3 * i + 1]! * b[3 + j]! + a[3 * i + 2]! * b[6 + j]!);
  return r;
}

/** Inverse of a 3×3 matrix (throws RangeError when singular). */
export function invertMatrix(m: Matrix3): number[] {
  const [a, b, c, d, e, f, g, h, i] = Array.from(m) as [number, number, number, number, number, number, number, number, number];
  const A = e * i - f * h,
    B = -(d * i - f * g),
    C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-15) throw new RangeError("matrix is singular");
  return [
    A / det,
    -(b * i - c * h) / det,
    (b * f - c * e) / det,
    B / det,
    (a * i - c * g) / det,
    -(a * f - c * d) / det,
    C / det,
    -(a * h - b * g) / det,
    (a * e - b * d) / det,
  ];
}

/**
 * A separable 2-D window of width × height. `hann` is the TBQR-reference window
 * 0.5·(1 − cos(2πi/(N−1))) (zero at both ends); `hann-positive` is sin²(π(i + ½)/N), strictly positive,
 * so the outermost image pixels keep a weight (tbqr-reference §1.9 pitfall); `flat` is all ones.
 */
export function separableWindow(width: number, height: number, kind: "hann" | "hann-positive" | "flat" = "hann-positive"): Float32Array {
  const axis = (n: number) =>
    Float64Array.from({ length: n }, (_, i) => {
      if (kind === "flat" || n === 1) return 1;
      if (kind === "hann") return 0.5 * (1 - Math.cos((2 * Math.PI * i) / (n - 1)));
      return Math.sin((Math.PI * (i + 0.5)) / n) ** 2;
    });
  const wx = axis(width),
    wy = axis(height);
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * width + x] = wx[x]! * wy[y]!;
  return out;
}
