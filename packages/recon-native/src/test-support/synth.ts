/** Seeded synthetic data for the parity and property tests (never downloaded, always reproducible). */
import { loadRecon, nativeAvailable, type Plane, type ReconBackend } from "../index.js";
import { seededRandom as rng } from "../random.js";

export { seededRandom as rng } from "../random.js";

/** Standard normal deviates (Box–Muller). */
export function gauss(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export interface SynthStar {
  x: number;
  y: number;
  flux: number;
  sigma: number;
}

/**
 * A sky frame: background `sky` + a gentle gradient, Gaussian noise σ = `noise`, and round Gaussian
 * stars (pixel-centre sampled) of the given σ.
 */
export function starField(
  width: number,
  height: number,
  seed: number,
  opts: { stars?: number; sky?: number; noise?: number; sigma?: number; gradient?: number; margin?: number } = {},
): Plane & { truth: SynthStar[] } {
  const r = rng(seed);
  const g = gauss(r);
  const { stars = 40, sky = 1000, noise = 10, sigma = 1.8, gradient = 0.05, margin = 12 } = opts;
  const data = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = sky + gradient * (x + 0.5 * y) + noise * g();
  const truth: SynthStar[] = [];
  for (let s = 0; s < stars; s++) {
    const st = { x: margin + r() * (width - 2 * margin), y: margin + r() * (height - 2 * margin), flux: 2e4 + r() * 2e5, sigma };
    if (truth.some((t) => Math.hypot(t.x - st.x, t.y - st.y) < 12)) continue;
    truth.push(st);
    const R = Math.ceil(6 * sigma);
    for (let y = Math.max(0, Math.floor(st.y) - R); y <= Math.min(height - 1, Math.floor(st.y) + R); y++) {
      for (let x = Math.max(0, Math.floor(st.x) - R); x <= Math.min(width - 1, Math.floor(st.x) + R); x++) {
        const d2 = (x - st.x) ** 2 + (y - st.y) ** 2;
        data[y * width + x] = data[y * width + x]! + (st.flux / (2 * Math.PI * sigma * sigma)) * Math.exp(-d2 / (2 * sigma * sigma));
      }
    }
  }
  return { data, width, height, truth };
}

export function noiseFrames(
  n: number,
  len: number,
  seed: number,
  opts: { mean?: number; noise?: number; outliers?: number } = {},
): Float32Array[] {
  const r = rng(seed);
  const g = gauss(r);
  const { mean = 500, noise = 20, outliers = 0.02 } = opts;
  return Array.from({ length: n }, () =>
    Float32Array.from({ length: len }, () => {
      const u = r();
      if (u < outliers / 2) return mean + 50 * noise * r();
      if (u < outliers) return mean - 30 * noise * r();
      return mean + noise * g();
    }),
  );
}

/**
 * Both backends when the addon loads, else only js — printing once how to get native. In CI
 * (TILE_COMPILE_REQUIRE_NATIVE=1) a missing addon fails instead of skipping.
 */
export function backends(): { js: ReconBackend; native: ReconBackend | undefined } {
  const js = loadRecon("js");
  if (nativeAvailable()) return { js, native: loadRecon("native") };
  if (process.env.TILE_COMPILE_REQUIRE_NATIVE === "1") {
    loadRecon("native"); // throws TC_NATIVE_UNAVAILABLE with the reason
  }
  if (!warned) {
    warned = true;
    console.log("recon-native: native addon not built — parity tests skipped. Install Rust (cargo) and run `pnpm build` to build it.");
  }
  return { js, native: undefined };
}
let warned = false;

/** Largest |a − b| / max(|b|, floor) over two arrays, NaN positions must match. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!,
      y = b[i]!;
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
      continue;
    }
    if (x === y) continue;
    m = Math.max(m, Math.abs(x - y) / Math.max(Math.abs(y), floor));
  }
  return m;
}
