/**
 * The scalar parts of TBQR (tbqr-reference Part 1): robust scaling of metric sequences, global frame
 * weights, the seeing-adaptive tile geometry and grid, local tile quality, the cluster count rule and the
 * mode gate. Pure functions, unit-tested against the reference's derived cases (Part 4.3).
 */
import { MAD_TO_SIGMA, median, TileCompileError } from "@tile-compile/core";

export { median };

/** x̃ = (x − median) / max(1.4826·MAD, 1e-6); all zeros when MAD < 1e-12 (A.5 with HEAD's floor). NaN stays NaN. */
export function robustZ(x: readonly number[]): number[] {
  const m = median(x);
  const mad = median(x.map((v) => Math.abs(v - m)));
  if (!(mad >= 1e-12)) return x.map((v) => (Number.isFinite(v) ? 0 : NaN));
  const d = Math.max(MAD_TO_SIGMA * mad, 1e-6);
  return x.map((v) => (v - m) / d);
}

export interface GlobalWeightParams {
  background: number;
  noise: number;
  gradient: number;
  clamp: [number, number];
  exponentScale?: number;
}

/** Check α + β + γ = 1 within 1e-6 (a hard configuration error otherwise). */
export function checkWeightSum(name: string, weights: number[]): void {
  const s = weights.reduce((a, b) => a + b, 0);
  if (Math.abs(s - 1) > 1e-6)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`${name}: the weights sum to ${s}, not 1 (tolerance 1e-6)`],
    });
}

/**
 * G_f = exp(k · clamp(α·(−B̃) + β·(−σ̃) + γ·Ẽ)). Not normalised (G ∈ [e^lo, e^hi]).
 */
export function globalWeights(B: number[], sigma: number[], E: number[], p: GlobalWeightParams): { Q: number[]; G: number[] } {
  checkWeightSum("global_metrics.weights", [p.background, p.noise, p.gradient]);
  const [lo, hi] = p.clamp;
  if (!(lo < hi))
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`global_metrics.clamp: [${lo}, ${hi}] must be increasing`],
    });
  const zb = robustZ(B),
    zs = robustZ(sigma),
    ze = robustZ(E);
  const Q = B.map((_, i) => p.background * -zb[i]! + p.noise * -zs[i]! + p.gradient * ze[i]!);
  const k = p.exponentScale ?? 1;
  return { Q, G: Q.map((q) => Math.exp(k * Math.min(hi, Math.max(lo, Number.isFinite(q) ? q : 0)))) };
}

export interface TileParams {
  sizeFactor: number;
  minSize: number;
  maxDivisor: number;
  overlapFraction: number;
}
export const DEFAULT_TILE: TileParams = { sizeFactor: 32, minSize: 64, maxDivisor: 6, overlapFraction: 0.25 };

/** T, O, S from the median FWHM F (v3.0 formula with the v3.1 guards, §1.7). */
export function tileGeometry(
  F: number,
  W: number,
  H: number,
  p: TileParams = DEFAULT_TILE,
): { T: number; O: number; S: number; F: number } {
  if (!(p.overlapFraction >= 0 && p.overlapFraction <= 0.5))
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`tile.overlap_fraction: ${p.overlapFraction} is outside [0, 0.5]`],
    });
  if (!(p.sizeFactor > 0))
    throw new TileCompileError("TC_CONFIG_INVALID", { file: "tile_compile.yaml", issues: [`tile.size_factor must be > 0`] });
  const f = F > 0 && Number.isFinite(F) ? F : 3.0;
  const tMin = Math.max(16, p.minSize);
  const upper = Math.max(tMin, Math.floor(Math.min(W, H) / p.maxDivisor));
  let T = Math.floor(Math.min(Math.max(p.sizeFactor * f, tMin), upper));
  let o = p.overlapFraction;
  let O = Math.floor(o * T);
  let S = T - O;
  if (S <= 0) {
    o = 0.25;
    O = Math.floor(o * T);
    S = T - O;
  }
  if (Math.min(W, H) < T) {
    T = Math.min(W, H);
    O = 0;
    S = T;
  }
  return { T, O, S, F: f };
}

/** Tiles of size T every S pixels, with a last tile snapped to W − T / H − T so every pixel is covered. */
export function tileGrid(W: number, H: number, T: number, S: number): { x0: number; y0: number; width: number; height: number }[] {
  const starts = (n: number) => {
    if (n <= T) return [0];
    const s: number[] = [];
    for (let p = 0; p + T <= n; p += S) s.push(p);
    if (s[s.length - 1]! + T < n) s.push(n - T);
    return s;
  };
  const tw = Math.min(T, W),
    th = Math.min(T, H);
  const out = [];
  for (const y0 of starts(H)) for (const x0 of starts(W)) out.push({ x0, y0, width: tw, height: th });
  return out;
}

/** K = clip(floor(N / 10), 5, 30) (v3.1). */
export function clusterCount(N: number, min = 5, max = 30): number {
  return Math.min(max, Math.max(min, Math.floor(N / 10)));
}

export type TbqrMode = "full" | "reduced" | "emergency";
export interface Assumptions {
  framesMin: number;
  framesReducedThreshold: number;
  allowEmergency: boolean;
}

/** Mode gate on usable frames: < frames_min → abort (or emergency), < reduced threshold → reduced, else full. */
export function modeGate(N: number, a: Assumptions): TbqrMode {
  if (N < a.framesMin) {
    if (a.allowEmergency && N >= 2) return "emergency";
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "frames",
      reason: `${N} usable frames, fewer than assumptions.frames_min = ${a.framesMin}`,
      hint: "Add frames, or set assumptions.allow_emergency_mode: true to reconstruct a small set (reduced, no clustering).",
    });
  }
  return N < a.framesReducedThreshold ? "reduced" : "full";
}

export interface LocalParams {
  starMinCount: number;
  star: { fwhm: number; roundness: number; contrast: number };
  structure: { metric: number; background: number };
  clamp: [number, number];
}
export const DEFAULT_LOCAL: LocalParams = {
  starMinCount: 3,
  star: { fwhm: 0.6, roundness: 0.2, contrast: 0.2 },
  structure: { metric: 0.7, background: 0.3 },
  clamp: [-3, 3],
};

/**
 * Local weights L[f][t] = exp(clamp(Q_local)) from per-frame tile metrics. The mode (STAR / STRUCTURE) is
 * chosen once per tile from the median star count over frames; z-scores are taken across frames for each
 * tile (so L ranks frames within a tile, as intended).
 */
export function localWeights(
  m: {
    fwhm: ArrayLike<number>[];
    roundness: ArrayLike<number>[];
    contrast: ArrayLike<number>[];
    stars: ArrayLike<number>[];
    eOverSigma: ArrayLike<number>[];
    background: ArrayLike<number>[];
  },
  p: LocalParams = DEFAULT_LOCAL,
): { L: number[][]; mode: ("star" | "structure")[] } {
  checkWeightSum("local_metrics.star_mode.weights", [p.star.fwhm, p.star.roundness, p.star.contrast]);
  checkWeightSum("local_metrics.structure_mode", [p.structure.metric, p.structure.background]);
  const nf = m.fwhm.length,
    nt = m.fwhm[0]?.length ?? 0;
  const L = Array.from({ length: nf }, () => new Array<number>(nt).fill(1));
  const mode: ("star" | "structure")[] = [];
  const col = (a: ArrayLike<number>[], t: number) => a.map((row) => row[t]!);
  for (let t = 0; t < nt; t++) {
    const star = median(col(m.stars, t)) >= p.starMinCount;
    mode.push(star ? "star" : "structure");
    let Q: number[];
    if (star) {
      const zf = robustZ(col(m.fwhm, t).map((v) => Math.log(v))),
        zr = robustZ(col(m.roundness, t)),
        zc = robustZ(col(m.contrast, t));
      Q = zf.map((_, f) => p.star.fwhm * -(zf[f] ?? 0) + p.star.roundness * (zr[f] ?? 0) + p.star.contrast * (zc[f] ?? 0));
    } else {
      const ze = robustZ(col(m.eOverSigma, t)),
        zb = robustZ(col(m.background, t));
      Q = ze.map((_, f) => p.structure.metric * (ze[f] ?? 0) - p.structure.background * (zb[f] ?? 0));
    }
    for (let f = 0; f < nf; f++) {
      const q = Number.isFinite(Q[f]!) ? Q[f]! : 0; // a frame with no measurement in this tile is neutral
      L[f]![t] = Math.exp(Math.min(p.clamp[1], Math.max(p.clamp[0], q)));
    }
  }
  return { L, mode };
}

/**
 * A smooth sky surface s(u, v) = c0 + c1·u + c2·v + c3·u² + c4·u·v + c5·v² (u = x/W − ½, v = y/H − ½)
 * fitted by least squares to tile sky levels, with two rejection passes (|residual| > 3·1.4826·MAD:
 * nebula-filled or star-crowded tiles). A plane when fewer than 12 points are usable, a constant below 4.
 * Used to take each frame's own gradient (moon, light pollution, clouds) out before frames are mixed with
 * tile-varying weights; without it every tile's weighted mix of differing gradients is a different
 * brightness, and the tiles show as blocks.
 */
export function fitSkySurface(points: readonly { u: number; v: number; value: number }[]): number[] {
  let use = points.filter((p) => Number.isFinite(p.value));
  const coef = new Array<number>(6).fill(0);
  if (use.length === 0) return coef;
  for (let pass = 0; pass < 3; pass++) {
    const k = use.length >= 12 ? 6 : use.length >= 4 ? 3 : 1;
    const terms = (u: number, v: number) => [1, u, v, u * u, u * v, v * v].slice(0, k);
    const A = Array.from({ length: k }, () => new Array<number>(k).fill(0)),
      b = new Array<number>(k).fill(0);
    for (const p of use) {
      const t = terms(p.u, p.v);
      for (let i = 0; i < k; i++) {
        b[i] = b[i]! + t[i]! * p.value;
        for (let j = 0; j < k; j++) A[i]![j] = A[i]![j]! + t[i]! * t[j]!;
      }
    }
    const x = solveLinear(A, b);
    if (!x) {
      coef.fill(0);
      coef[0] = median(use.map((p) => p.value));
      return coef;
    }
    coef.fill(0);
    x.forEach((c, i) => {
      coef[i] = c;
    });
    if (pass === 2) break;
    const res = use.map((p) => p.value - evalSkySurface(coef, p.u, p.v));
    const mr = median(res),
      mad = MAD_TO_SIGMA * median(res.map((r) => Math.abs(r - mr)));
    const kept = use.filter((_, i) => Math.abs(res[i]! - mr) <= 3 * mad);
    if (kept.length === use.length || kept.length < 4 || !(mad > 0)) break;
    use = kept;
  }
  return coef;
}

export function evalSkySurface(c: readonly number[], u: number, v: number): number {
  const [a0, a1, a2] = skyRow(c, v);
  return a0 + a1 * u + a2 * u * u;
}

/** The surface along one image row v as a0 + a1·u + a2·u² (for per-pixel loops over a row). */
export function skyRow(c: readonly number[], v: number): [number, number, number] {
  return [c[0]! + c[2]! * v + c[5]! * v * v, c[1]! + c[4]! * v, c[3]!];
}

function solveLinear(A: number[][], b: number[]): number[] | undefined {
  const n = b.length,
    M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[piv]![c]!)) piv = r;
    if (!(Math.abs(M[piv]![c]!) > 1e-12)) return undefined;
    [M[c], M[piv]] = [M[piv]!, M[c]!];
    for (let r = 0; r < n; r++)
      if (r !== c) {
        const f = M[r]![c]! / M[c]![c]!;
        for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
      }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}
