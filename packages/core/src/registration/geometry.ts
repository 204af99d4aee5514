/**
 * Plane geometry for registration: least-squares transform fits between matched star lists and the
 * 3×3 matrices they produce. All matrices are row-major and map a point (x, y, 1) of the *source* list
 * to the *target* list; pixel centres are at integer coordinates (0-based, x along NAXIS1).
 */
export interface Point {
  x: number;
  y: number;
}

/** Transform models, from the most constrained: 2, 4, 6 and 8 degrees of freedom. */
export type TransformModel = "shift" | "similarity" | "affine" | "homography";
export const TRANSFORM_MODELS: readonly TransformModel[] = ["shift", "similarity", "affine", "homography"];
/** Matched pairs a model needs at the very least. */
export const MIN_PAIRS: Record<TransformModel, number> = { shift: 1, similarity: 2, affine: 3, homography: 4 };

export function apply(m: readonly number[], p: Point): Point {
  const w = m[6]! * p.x + m[7]! * p.y + m[8]!;
  return { x: (m[0]! * p.x + m[1]! * p.y + m[2]!) / w, y: (m[3]! * p.x + m[4]! * p.y + m[5]!) / w };
}

/** Solve A·x = b (n×n, row-major) by Gaussian elimination with partial pivoting; undefined if singular. */
export function solve(a: number[], b: number[], n: number): number[] | undefined {
  const m = a.slice();
  const v = b.slice();
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]!) > Math.abs(m[p * n + c]!)) p = r;
    if (Math.abs(m[p * n + c]!) < 1e-300) return undefined;
    if (p !== c) {
      for (let k = 0; k < n; k++) [m[c * n + k], m[p * n + k]] = [m[p * n + k]!, m[c * n + k]!];
      [v[c], v[p]] = [v[p]!, v[c]!];
    }
    for (let r = c + 1; r < n; r++) {
      const f = m[r * n + c]! / m[c * n + c]!;
      if (f === 0) continue;
      for (let k = c; k < n; k++) m[r * n + k] = m[r * n + k]! - f * m[c * n + k]!;
      v[r] = v[r]! - f * v[c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = v[r]!;
    for (let k = r + 1; k < n; k++) s -= m[r * n + k]! * x[k]!;
    x[r] = s / m[r * n + r]!;
  }
  return x.every(Number.isFinite) ? x : undefined;
}

/** Normal equations of an over-determined linear system given row by row. */
export class LeastSquares {
  private readonly ata: number[];
  private readonly atb: number[];
  constructor(private readonly n: number) {
    this.ata = new Array<number>(n * n).fill(0);
    this.atb = new Array<number>(n).fill(0);
  }
  add(row: number[], rhs: number): void {
    for (let i = 0; i < this.n; i++) {
      this.atb[i] = this.atb[i]! + row[i]! * rhs;
      for (let j = 0; j < this.n; j++) this.ata[i * this.n + j] = this.ata[i * this.n + j]! + row[i]! * row[j]!;
    }
  }
  solve(): number[] | undefined {
    return solve(this.ata, this.atb, this.n);
  }
}

/**
 * Least-squares transform taking `src[i]` to `dst[i]`. Coordinates are centred and scaled first
 * (Hartley normalisation), so the fit is well conditioned for any image size.
 */
export function fitTransform(src: readonly Point[], dst: readonly Point[], model: TransformModel): number[] | undefined {
  const n = src.length;
  if (n < MIN_PAIRS[model] || dst.length !== n) return undefined;
  const norm = (pts: readonly Point[]) => {
    let cx = 0,
      cy = 0;
    for (const p of pts) {
      cx += p.x;
      cy += p.y;
    }
    cx /= n;
    cy /= n;
    let d = 0;
    for (const p of pts) d += Math.hypot(p.x - cx, p.y - cy);
    const s = d > 0 ? (n * Math.SQRT2) / d : 1;
    return { cx, cy, s, m: [s, 0, -s * cx, 0, s, -s * cy, 0, 0, 1], inv: [1 / s, 0, cx, 0, 1 / s, cy, 0, 0, 1] };
  };
  const ns = norm(src),
    nd = norm(dst);
  const a = src.map((p) => ({ x: (p.x - ns.cx) * ns.s, y: (p.y - ns.cy) * ns.s }));
  const b = dst.map((p) => ({ x: (p.x - nd.cx) * nd.s, y: (p.y - nd.cy) * nd.s }));
  let h: number[] | undefined;
  if (model === "shift") {
    let px = 0,
      py = 0;
    for (let i = 0; i < n; i++) {
      px += dst[i]!.x - src[i]!.x;
      py += dst[i]!.y - src[i]!.y;
    }
    return [1, 0, px / n, 0, 1, py / n, 0, 0, 1];
  }
  if (model === "similarity") {
    const ls = new LeastSquares(4); // x' = a·x − b·y + tx ; y' = b·x + a·y + ty
    for (let i = 0; i < n; i++) {
      ls.add([a[i]!.x, -a[i]!.y, 1, 0], b[i]!.x);
      ls.add([a[i]!.y, a[i]!.x, 0, 1], b[i]!.y);
    }
    const s = ls.solve();
    if (s) h = [s[0]!, -s[1]!, s[2]!, s[1]!, s[0]!, s[3]!, 0, 0, 1];
  } else if (model === "affine") {
    const lx = new LeastSquares(3),
      ly = new LeastSquares(3);
    for (let i = 0; i < n; i++) {
      lx.add([a[i]!.x, a[i]!.y, 1], b[i]!.x);
      ly.add([a[i]!.x, a[i]!.y, 1], b[i]!.y);
    }
    const sx = lx.solve(),
      sy = ly.solve();
    if (sx && sy) h = [sx[0]!, sx[1]!, sx[2]!, sy[0]!, sy[1]!, sy[2]!, 0, 0, 1];
  } else {
    const ls = new LeastSquares(8); // DLT with h33 = 1
    for (let i = 0; i < n; i++) {
      const { x, y } = a[i]!,
        { x: u, y: v } = b[i]!;
      ls.add([x, y, 1, 0, 0, 0, -u * x, -u * y], u);
      ls.add([0, 0, 0, x, y, 1, -v * x, -v * y], v);
    }
    const s = ls.solve();
    if (s) h = [...s, 1];
  }
  if (!h) return undefined;
  const full = multiply(nd.inv, multiply(h, ns.m));
  const k = full[8]!;
  return full.map((v) => v / k);
}

export function multiply(a: readonly number[], b: readonly number[]): number[] {
  const r: number[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) r.push(a[3 * i]! * b[j]! + a[3 * i + 1]! * b[3 + j]! + a[3 * i + 2]! * b[6 + j]!);
  return r;
}

export function invert(m: readonly number[]): number[] | undefined {
  const [a, b, c, d, e, f, g, h, i] = m as [number, number, number, number, number, number, number, number, number];
  const A = e * i - f * h,
    B = -(d * i - f * g),
    C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-15) return undefined;
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

/** Scale, rotation (degrees) and whether the linear part mirrors (negative determinant). */
export function describe(m: readonly number[]): { scale: number; rotationDeg: number; mirrored: boolean } {
  const det = m[0]! * m[4]! - m[1]! * m[3]!;
  return { scale: Math.sqrt(Math.abs(det)), rotationDeg: (Math.atan2(m[3]! - m[1]!, m[0]! + m[4]!) * 180) / Math.PI, mirrored: det < 0 };
}
