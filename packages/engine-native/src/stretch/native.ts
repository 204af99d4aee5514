/**
 * The built-in stretches (`stretch:autostretch`, `stretch:asinh`) and PNG previews.
 *
 * autostretch: per channel (unlinked) or with one set of parameters for all (linked, default), the
 * shadows are clipped at median − 2.8·σ (σ = 1.4826·MAD) and the midtones transfer function
 * MTF(x; m) = (m − 1)x / ((2m − 1)x − m) is chosen so the median lands at `target` (default 0.25) — the
 * screen transfer function Siril and PixInsight use. asinh: y = asinh(β·x)/asinh(β) after the same
 * black point. ghs: the generalised hyperbolic stretch around the median (options D, b). The output is a float FITS in [0, 1]; previews are 8- and 16-bit PNGs written from it, and
 * the working (linear) image is never modified.
 */
import { writeFile, rename } from "node:fs/promises";
import { encode } from "fast-png";
import { loadRecon } from "@tile-compile/recon-native";
import { z } from "zod";
import {
  MAD_TO_SIGMA,
  mtf,
  readFitsImage,
  TileCompileError,
  writeFitsImage,
  type EngineContext,
  type StretchInput,
  type StretchProvider,
} from "@tile-compile/core";

/**
 * The stretches' own options (none are in tile_compile.yaml's `stretch:` block today; an engine caller may
 * pass them): `linked` channels (default true), the autostretch background `target` (0.25), the asinh
 * `beta` (50), the generalised hyperbolic stretch's `D` (8) and `b` (2, or −1 for a logarithmic stretch).
 */
export const stretchOptionsSchema = z.object({
  linked: z.boolean().optional(),
  target: z.number().gt(0).lt(1).optional(),
  beta: z.number().positive().optional(),
  D: z.number().optional(),
  b: z.number().optional(),
});
export type NativeStretchOptions = z.infer<typeof stretchOptionsSchema>;

/**
 * Generalised hyperbolic stretch (Cranfield & Payne): stretch factor D, local intensity b (b = 0
 * exponential, b = −1 logarithmic, b > 0 hyperbolic, b = 1 harmonic) around the symmetry point SP,
 * normalised so that 0 → 0 and 1 → 1.
 */
export function ghs(x: number, D: number, b: number, SP: number): number {
  const q = (v: number): number => {
    const d = v - SP,
      s = d >= 0 ? 1 : -1,
      a = Math.abs(d);
    if (D === 0) return d;
    if (Math.abs(b) < 1e-6) return s * (1 - Math.exp(-D * a)); // the b → 0 limit (and no 1/b overflow)
    if (b === -1) return s * Math.log1p(D * a);
    return s * (1 - Math.pow(1 + b * D * a, -1 / b));
  };
  const q0 = q(0),
    q1 = q(1);
  return (q(Math.min(1, Math.max(0, x))) - q0) / (q1 - q0);
}

async function stretchImage(
  input: StretchInput<NativeStretchOptions>,
  ctx: EngineContext,
  kind: "autostretch" | "asinh" | "ghs",
): Promise<{ output: string }> {
  const img = await readFitsImage(input.input, { signal: ctx.signal });
  const recon = loadRecon();
  const n = img.width * img.height;
  const { linked = true, target = 0.25, beta = 50, D: ghsD = 8, b: ghsB = 2 } = input.options;
  if (kind === "ghs" && !(ghsD >= 0 && (ghsB >= 0 || ghsB === -1)))
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`engine_options: ghs needs D ≥ 0 and b ≥ 0 or b = −1 (got D=${ghsD}, b=${ghsB})`],
    });
  const stats: { median: number; sigma: number; max: number }[] = [];
  for (let c = 0; c < img.channels; c++) {
    const plane = img.data.subarray(c * n, (c + 1) * n);
    const sample = new Float32Array(Math.ceil(n / 5));
    for (let i = 0, k = 0; i < n; i += 5) sample[k++] = plane[i]!;
    const s = await recon.robustStats(sample, { iterations: 0, signal: ctx.signal });
    const [max] = await recon.percentiles(sample, [0.9999], { signal: ctx.signal });
    stats.push({ median: s.median, sigma: MAD_TO_SIGMA * s.mad, max: max! });
  }
  const avg = (k: "median" | "sigma" | "max") => stats.reduce((a, s) => a + s[k], 0) / stats.length;
  const out = new Float32Array(img.data.length);
  for (let c = 0; c < img.channels; c++) {
    const s = linked ? { median: avg("median"), sigma: avg("sigma"), max: Math.max(...stats.map((t) => t.max)) } : stats[c]!;
    const black = s.median - 2.8 * s.sigma;
    const white = Math.max(s.max, black + 1e-6);
    const norm = (v: number) => (v - black) / (white - black);
    const m0 = norm(s.median);
    // Midtone balance so that MTF(m0) = target: m = m0(target − 1) / (2·m0·target − m0 − target).
    const m = m0 > 0 && m0 < 1 ? (m0 * (target - 1)) / (2 * m0 * target - m0 - target) : 0.5;
    const plane = img.data.subarray(c * n, (c + 1) * n);
    const o = out.subarray(c * n, (c + 1) * n);
    for (let i = 0; i < n; i++) {
      const x = Math.min(1, Math.max(0, norm(plane[i]!)));
      o[i] = kind === "asinh" ? Math.asinh(beta * x) / Math.asinh(beta) : kind === "ghs" ? ghs(x, ghsD, ghsB, m0) : mtf(x, m);
    }
  }
  const header = img.header.withoutStructure();
  header.set(
    "STRETCH",
    kind === "asinh"
      ? `asinh beta=${beta}`
      : kind === "ghs"
        ? `ghs D=${ghsD} b=${ghsB} SP=median`
        : `mtf target=${target} ${linked ? "linked" : "unlinked"}`,
    "display stretch applied; not linear",
  );
  await writeFitsImage(
    input.output,
    { width: img.width, height: img.height, channels: img.channels, data: out },
    { header, history: input.history, signal: ctx.signal },
  );
  // Previews sit next to the final output (the runner hands us a temporary path for the FITS itself).
  const base = typeof input.options.previewBase === "string" ? input.options.previewBase : input.output.replace(/\.(fits?|fit)$/i, "");
  if (input.options.previews !== false) {
    await writePng(`${base}.png`, out, img.width, img.height, img.channels, 8);
    await writePng(`${base}_16bit.png`, out, img.width, img.height, img.channels, 16);
  }
  return { output: input.output };
}

/** A PNG of a [0, 1] image (FITS row 0 is the bottom of the picture, so rows are flipped). Atomic. */
export async function writePng(
  path: string,
  data: Float32Array,
  width: number,
  height: number,
  channels: number,
  depth: 8 | 16,
): Promise<void> {
  const n = width * height;
  const ch = channels >= 3 ? 3 : 1;
  const max = depth === 8 ? 255 : 65535;
  const px = depth === 8 ? new Uint8Array(n * ch) : new Uint16Array(n * ch);
  for (let y = 0; y < height; y++) {
    const src = (height - 1 - y) * width;
    for (let x = 0; x < width; x++)
      for (let c = 0; c < ch; c++) {
        const v = data[c * n + src + x]!;
        px[(y * width + x) * ch + c] = Math.round(Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0)) * max);
      }
  }
  const png = encode({ width, height, data: px, channels: ch, depth });
  const tmp = `${path}.${process.pid}.partial`;
  await writeFile(tmp, png);
  await rename(tmp, path);
}

const stretchProvider = (kind: "autostretch" | "asinh" | "ghs"): StretchProvider<NativeStretchOptions> => ({
  optionsSchema: stretchOptionsSchema,
  stretch: (i, c) => stretchImage(i, c, kind),
});

export const nativeStretch = { autostretch: stretchProvider("autostretch"), asinh: stretchProvider("asinh"), ghs: stretchProvider("ghs") };
