/**
 * Background extraction: a grid of boxes over the image, each summarised by its sigma-clipped median;
 * boxes far from the sky (stars, nebula: more than 2.5 σ from the median of all boxes, repeated) are
 * dropped; a smooth model is fitted through the rest and subtracted, keeping the sky's median level as a
 * pedestal. Models: `polynomial` (degree 1–4, least squares in normalised coordinates) or `rbf` (thin-plate
 * spline through the samples with a smoothing term). Applied per channel.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "@tile-compile/core";
import { solveLinear as solve } from "@tile-compile/core";
import { basename } from "node:path";
import { readFitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import { backgroundOptionsSchema, type BackgroundOptions as BackgroundStageOptions, type BackgroundProvider } from "@tile-compile/core";

export interface BackgroundOptions {
  method: "polynomial" | "rbf";
  degree?: number;
  /** Boxes across the longer side (default 16). */
  grid?: number;
  /** RBF smoothing (default 0.1, in units of the sample noise). */
  smoothing?: number;
  signal?: AbortSignal;
}

interface Sample {
  x: number;
  y: number;
  v: number;
}

async function samples(plane: Float32Array, w: number, h: number, grid: number, signal?: AbortSignal): Promise<Sample[]> {
  const recon = loadRecon();
  const box = Math.max(8, Math.floor(Math.max(w, h) / grid));
  const out: Sample[] = [];
  for (let y0 = 0; y0 + box <= h; y0 += box)
    for (let x0 = 0; x0 + box <= w; x0 += box) {
      const vals = new Float32Array(box * box);
      for (let y = 0; y < box; y++) vals.set(plane.subarray((y0 + y) * w + x0, (y0 + y) * w + x0 + box), y * box);
      const s = await recon.robustStats(vals, { iterations: 5, sigmaLow: 3, sigmaHigh: 2, ...(signal ? { signal } : {}) });
      if (s.clippedCount > vals.length / 4) out.push({ x: x0 + box / 2 - 0.5, y: y0 + box / 2 - 0.5, v: s.clippedMean });
    }
  // Drop boxes that sit on objects, iteratively (robustly around the median of the box values).
  let kept = out;
  for (let it = 0; it < 5; it++) {
    const v = kept.map((s) => s.v).sort((a, b) => a - b);
    const m = v[v.length >> 1]!;
    const mad = 1.4826 * kept.map((s) => Math.abs(s.v - m)).sort((a, b) => a - b)[kept.length >> 1]!;
    const next = kept.filter((s) => Math.abs(s.v - m) <= 2.5 * Math.max(mad, 1e-9) || kept.length < 8);
    if (next.length === kept.length) break;
    kept = next;
  }
  return kept;
}

/** The background model of one plane. */
export async function backgroundModel(plane: Float32Array, w: number, h: number, o: BackgroundOptions): Promise<Float32Array> {
  const pts = await samples(plane, w, h, o.grid ?? 16, o.signal);
  const model = new Float32Array(w * h);
  const sx = 2 / (w - 1),
    sy = 2 / (h - 1);
  if (o.method === "polynomial") {
    const deg = o.degree ?? 2;
    if (!(deg >= 1 && deg <= 4))
      throw new TileCompileError("TC_CONFIG_INVALID", { file: "tile_compile.yaml", issues: [`background.degree: ${deg} is not 1–4`] });
    const terms: [number, number][] = [];
    for (let i = 0; i <= deg; i++) for (let j = 0; i + j <= deg; j++) terms.push([i, j]);
    if (pts.length < terms.length + 2)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: "background",
        reason: `only ${pts.length} sky samples for a degree-${deg} model`,
      });
    const n = terms.length;
    const ata = new Array<number>(n * n).fill(0),
      atb = new Array<number>(n).fill(0);
    for (const p of pts) {
      const u = p.x * sx - 1,
        v = p.y * sy - 1;
      const row = terms.map(([i, j]) => u ** i * v ** j);
      for (let a = 0; a < n; a++) {
        atb[a] = atb[a]! + row[a]! * p.v;
        for (let b = 0; b < n; b++) ata[a * n + b] = ata[a * n + b]! + row[a]! * row[b]!;
      }
    }
    const c = solve(ata, atb, n);
    if (!c) throw new TileCompileError("TC_INPUT_INVALID", { input: "background", reason: "the background fit is singular" });
    for (let y = 0; y < h; y++) {
      const v = y * sy - 1;
      for (let x = 0; x < w; x++) {
        const u = x * sx - 1;
        let s = 0;
        for (let k = 0; k < n; k++) s += c[k]! * u ** terms[k]![0] * v ** terms[k]![1];
        model[y * w + x] = s;
      }
    }
    return model;
  }
  // Thin-plate spline: f(p) = a0 + a1·u + a2·v + Σ wᵢ·φ(|p − pᵢ|), φ(r) = r² log r, with smoothing λ on the diagonal.
  const n = pts.length;
  if (n < 6) throw new TileCompileError("TC_INPUT_INVALID", { input: "background", reason: `only ${n} sky samples for an RBF model` });
  const U = pts.map((p) => p.x * sx - 1),
    V = pts.map((p) => p.y * sy - 1);
  const phi = (r2: number) => (r2 > 0 ? 0.5 * r2 * Math.log(r2) : 0);
  const N = n + 3;
  const A = new Array<number>(N * N).fill(0),
    bvec = new Array<number>(N).fill(0);
  const lambda = o.smoothing ?? 0.1;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) A[i * N + j] = phi((U[i]! - U[j]!) ** 2 + (V[i]! - V[j]!) ** 2) + (i === j ? lambda : 0);
    A[i * N + n] = 1;
    A[i * N + n + 1] = U[i]!;
    A[i * N + n + 2] = V[i]!;
    A[n * N + i] = 1;
    A[(n + 1) * N + i] = U[i]!;
    A[(n + 2) * N + i] = V[i]!;
    bvec[i] = pts[i]!.v;
  }
  const c = solve(A, bvec, N);
  if (!c) throw new TileCompileError("TC_INPUT_INVALID", { input: "background", reason: "the RBF system is singular" });
  // Evaluate on a coarse grid and interpolate bilinearly (the model is smooth by construction).
  const step = 8,
    gw = Math.ceil(w / step) + 1,
    gh = Math.ceil(h / step) + 1;
  const g = new Float64Array(gw * gh);
  for (let j = 0; j < gh; j++)
    for (let i = 0; i < gw; i++) {
      const u = Math.min(w - 1, i * step) * sx - 1,
        v = Math.min(h - 1, j * step) * sy - 1;
      let s = c[n]! + c[n + 1]! * u + c[n + 2]! * v;
      for (let k = 0; k < n; k++) s += c[k]! * phi((u - U[k]!) ** 2 + (v - V[k]!) ** 2);
      g[j * gw + i] = s;
    }
  for (let y = 0; y < h; y++) {
    const fy = y / step,
      j = Math.min(gh - 2, Math.floor(fy)),
      ty = fy - j;
    for (let x = 0; x < w; x++) {
      const fx = x / step,
        i = Math.min(gw - 2, Math.floor(fx)),
        tx = fx - i;
      model[y * w + x] =
        (1 - tx) * (1 - ty) * g[j * gw + i]! +
        tx * (1 - ty) * g[j * gw + i + 1]! +
        (1 - tx) * ty * g[(j + 1) * gw + i]! +
        tx * ty * g[(j + 1) * gw + i + 1]!;
    }
  }
  return model;
}

/** Subtract the background model from every channel, keeping each channel's sky median as a pedestal. */
export async function extractBackground(
  data: Float32Array,
  w: number,
  h: number,
  channels: number,
  o: BackgroundOptions,
): Promise<Float32Array> {
  const n = w * h;
  const out = new Float32Array(data.length);
  for (let c = 0; c < channels; c++) {
    const plane = data.subarray(c * n, (c + 1) * n);
    const model = await backgroundModel(plane, w, h, o);
    const pedestal = Float32Array.from(model).sort()[n >> 1]!;
    for (let i = 0; i < n; i++) out[c * n + i] = plane[i]! - model[i]! + pedestal;
  }
  return out;
}

/**
 * The built-in `background:polynomial` and `background:rbf` providers: each image is read, flattened by
 * `extractBackground` and written to its output with the HISTORY of what was removed.
 */
export function nativeBackground(method: "polynomial" | "rbf"): BackgroundProvider<BackgroundStageOptions> {
  return {
    optionsSchema: backgroundOptionsSchema,
    async extract(input, ctx) {
      const { degree = 2, grid = 16 } = input.options;
      for (const [k, f] of input.images.entries()) {
        ctx.signal.throwIfAborted();
        const img = await readFitsImage(f.path, { signal: ctx.signal });
        const data = await extractBackground(img.data, img.width, img.height, img.channels, { method, degree, grid, signal: ctx.signal });
        await writeFitsImage(
          input.outputs[k]!,
          { width: img.width, height: img.height, channels: img.channels, data },
          {
            header: img.header.withoutStructure(),
            history: [
              ...input.history,
              `background extracted: ${method}${method === "polynomial" ? ` degree ${degree}` : ""}, ${grid}-box grid`,
            ],
            signal: ctx.signal,
          },
        );
        ctx.progress((k + 1) / input.images.length, basename(f.path));
      }
      return { outputs: input.outputs };
    },
  };
}
