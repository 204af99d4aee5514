/**
 * The built-in `composition:palette` provider. Channel stacks (already registered onto one grid) are
 * brought to a common background by an additive linear match — each channel's sky level (median of the
 * pixels below its 40th percentile) is moved to the reference channel's — so star and emission ratios are
 * untouched (matching whole channels by scale would change them). Output channels are weighted sums of
 * the inputs (the palette). An `L` entry replaces the luminance: on sky-subtracted channels,
 * RGB·L/Y with Y = 0.2126 R + 0.7152 G + 0.0722 B where Y is above 3 σ of its sky noise (each pixel keeps
 * its chromaticity), and plain L elsewhere; the common sky level is added back. Integrated star colours
 * are exact only when the L and RGB stacks have the same PSF; with different seeing they drift by a few
 * per cent (see the notes of the full-job issue).
 * Output: a 3-plane (R, G, B) 32-bit float FITS cube.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "@tile-compile/core";
import { readFitsImage, type FitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import type { CompositionInput, CompositionProvider, EngineContext } from "@tile-compile/core";

async function skyLevel(plane: Float32Array, signal: AbortSignal): Promise<number> {
  const recon = loadRecon();
  const sample = new Float32Array(Math.ceil(plane.length / 7));
  for (let i = 0, k = 0; i < plane.length; i += 7) sample[k++] = plane[i]!;
  const [p40] = await recon.percentiles(sample, [0.4], { signal });
  const below = sample.filter((v) => v <= p40!);
  return (await recon.robustStats(below, { iterations: 0, signal })).median;
}

export const nativeComposition: CompositionProvider = {
  async compose(input: CompositionInput, ctx: EngineContext) {
    // Channel name → plane. A 3-plane stack offers R, G, B (one-shot colour).
    const planes = new Map<string, Float32Array>();
    let shape: { width: number; height: number } | undefined;
    const images: FitsImage[] = [];
    for (const [name, path] of Object.entries(input.channels)) {
      const img = await readFitsImage(path, { signal: ctx.signal });
      images.push(img);
      shape ??= { width: img.width, height: img.height };
      if (img.width !== shape.width || img.height !== shape.height)
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: path,
          reason: `is ${img.width}×${img.height}, the other channels ${shape.width}×${shape.height}; register the stacks onto one grid first`,
        });
      const n = img.width * img.height;
      if (img.channels === 3 && (name === "RGB" || name === "OSC"))
        ["R", "G", "B"].forEach((c, k) => planes.set(c, img.data.subarray(k * n, (k + 1) * n)));
      else planes.set(name, img.data.subarray(0, n));
    }
    const { width, height } = shape!;
    const n = width * height;
    // Additive background match onto the first palette channel's sky.
    const names = [...planes.keys()];
    const levels = new Map<string, number>();
    for (const c of names) levels.set(c, await skyLevel(planes.get(c)!, ctx.signal));
    const ref = levels.get(names.includes("G") ? "G" : names[0]!)!;
    for (const c of names) {
      const d = ref - levels.get(c)!;
      if (d !== 0) {
        const p = Float32Array.from(planes.get(c)!);
        for (let i = 0; i < n; i++) p[i] = p[i]! + d;
        planes.set(c, p);
      }
    }
    const mix = (spec: Record<string, number>): Float32Array => {
      const out = new Float32Array(n);
      for (const [c, w] of Object.entries(spec)) {
        const p = planes.get(c);
        if (!p)
          throw new TileCompileError("TC_INPUT_INVALID", {
            input: c,
            reason: `the palette needs channel ${c}, which the job has no stack for`,
          });
        for (let i = 0; i < n; i++) out[i] = out[i]! + w * p[i]!;
      }
      return out;
    };
    const R = mix(input.palette.R ?? {}),
      G = mix(input.palette.G ?? {}),
      B = mix(input.palette.B ?? {});
    if (input.palette.L) {
      const L = mix(input.palette.L);
      const Y = new Float32Array(n);
      for (let i = 0; i < n; i++) Y[i] = 0.2126 * R[i]! + 0.7152 * G[i]! + 0.0722 * B[i]!;
      const recon = loadRecon();
      const ys = await recon.robustStats(Y, { iterations: 3, signal: ctx.signal });
      const ls = await recon.robustStats(L, { iterations: 3, signal: ctx.signal });
      const sky = ref,
        yFloor = 3 * ys.clippedSigma;
      for (let i = 0; i < n; i++) {
        const y = Y[i]! - ys.median,
          l = L[i]! - ls.median;
        if (y > yFloor) {
          const k = l / y;
          R[i] = sky + (R[i]! - sky) * k;
          G[i] = sky + (G[i]! - sky) * k;
          B[i] = sky + (B[i]! - sky) * k;
        } else {
          R[i] = sky + l;
          G[i] = sky + l;
          B[i] = sky + l;
        }
      }
    }
    // A pixel missing from any channel (outside a registered stack's footprint) is missing from all three,
    // so frame edges come out black, not coloured.
    for (let i = 0; i < n; i++)
      if (!(Number.isFinite(R[i]!) && Number.isFinite(G[i]!) && Number.isFinite(B[i]!))) {
        R[i] = NaN;
        G[i] = NaN;
        B[i] = NaN;
      }
    const data = new Float32Array(3 * n);
    data.set(R, 0);
    data.set(G, n);
    data.set(B, 2 * n);
    const header = images[0]!.header.withoutStructure();
    for (const k of ["FILTER", "BAYERPAT"]) header.delete(k);
    header.set(
      "COMPOSIT",
      Object.entries(input.palette)
        .map(
          ([o, m]) =>
            `${o}=${Object.entries(m)
              .map(([c, w]) => (w === 1 ? c : `${w}${c}`))
              .join("+")}`,
        )
        .join(" "),
      "palette",
    );
    await writeFitsImage(input.output, { width, height, channels: 3, data }, { header, history: input.history, signal: ctx.signal });
    return { output: input.output };
  },
};
