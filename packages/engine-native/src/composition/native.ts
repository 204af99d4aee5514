/**
 * The built-in `composition:palette` provider. Channel stacks (already registered onto one grid) are
 * brought to a common background by an additive linear match — each channel's sky level (median of the
 * pixels below its 40th percentile) is moved to the reference channel's — so star and emission ratios are
 * untouched (matching whole channels by scale would change them). Output channels are weighted sums of
 * the inputs (the palette). An `L` entry gives the luminance, linearly (luminance transfer): with the
 * sky-subtracted layers r, g, b, their mean y = (r + g + b)/3 and l the L layer's, η = the median of l/y over
 * pixels of signal (y > 20σ), and d = l/η − y, each colour layer becomes c + d·ĉ, ĉ its share of y in the
 * layers smoothed over 5 × 5 px (ĉ = 1, grey, where the smoothed y is within 3σ of the sky). The result's
 * mean of R, G, B is exactly l/η — L's detail and signal-to-noise in the RGB stacks' units — while its
 * colour is the R, G, B stacks' own: d carries no signal where L's filter passes what R, G and B pass
 * together, so a star keeps its integrated colour also in front of a nebula of another colour. (The former
 * per-pixel swap RGB·L/Y, grey below 3σ of Y, bent faint stars' colours by up to 4 %: ratios of noisy
 * values are biased, and the grey wings pulled toward neutral.) Where the L and RGB stacks have different
 * seeing d is a ring around each star whose integral is 0, and colours move by far less than with a swap.
 * With `input.color`, the R, G, B layers are colour-balanced before the L layer (color.ts): background
 * neutralisation and a white balance on the stars; what was done is returned and written to HISTORY.
 * Output: a 3-plane (R, G, B) 32-bit float FITS cube.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { median, TileCompileError } from "@tile-compile/core";
import { readFitsImage, type FitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import { describeColorBalance, type CompositionInput, type CompositionProvider, type EngineContext } from "@tile-compile/core";
import { balanceColor, skyLevels } from "./color.js";

async function skyLevel(plane: Float32Array, signal: AbortSignal): Promise<number> {
  const recon = loadRecon();
  const sample = new Float32Array(Math.ceil(plane.length / 7));
  for (let i = 0, k = 0; i < plane.length; i += 7) sample[k++] = plane[i]!;
  const [p40] = await recon.percentiles(sample, [0.4], { signal });
  const below = sample.filter((v) => v <= p40!);
  return (await recon.robustStats(below, { iterations: 0, signal })).median;
}

/**
 * η = L/Y for the signal: the median of (L − sky_L)/y over the pixels where y > 20σ (at least 50 of them;
 * else over y > 5σ). NaN when too few pixels carry signal.
 */
function luminanceScale(L: Float32Array, skyL: number, y: Float32Array, sigmaY: number): number {
  for (const k of [20, 5]) {
    const r: number[] = [];
    for (let i = 0; i < y.length; i++) {
      const v = y[i]!,
        l = L[i]! - skyL;
      if (v > k * sigmaY && Number.isFinite(l)) r.push(l / v);
    }
    if (r.length >= 50) return median(r);
  }
  return NaN;
}

/** Mean of (v − sky) over the finite pixels of each 5 × 5 box (clamped at the edges); NaN where none is finite. */
function boxMean5(p: Float32Array, sky: number, W: number, H: number): Float32Array {
  const R = 2;
  const rowS = new Float64Array(W * H),
    rowN = new Float64Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let s = 0,
        c = 0;
      for (let k = Math.max(0, x - R); k <= Math.min(W - 1, x + R); k++) {
        const v = p[y * W + k]!;
        if (Number.isFinite(v)) {
          s += v - sky;
          c++;
        }
      }
      rowS[y * W + x] = s;
      rowN[y * W + x] = c;
    }
  const out = new Float32Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let s = 0,
        c = 0;
      for (let k = Math.max(0, y - R); k <= Math.min(H - 1, y + R); k++) {
        s += rowS[k * W + x]!;
        c += rowN[k * W + x]!;
      }
      out[y * W + x] = c > 0 ? s / c : NaN;
    }
  return out;
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
    // Without a colour balance (a caller that asks for none): an additive match of every input's sky onto
    // the first palette channel's. With one, the balance neutralises the output channels' sky itself (or, with
    // neutralize_background: false, leaves every channel its own).
    const names = [...planes.keys()];
    const levels = new Map<string, number>();
    if (!input.color) for (const c of names) levels.set(c, await skyLevel(planes.get(c)!, ctx.signal));
    const ref = levels.get(names.includes("G") ? "G" : names[0]!) ?? 0;
    for (const c of input.color ? [] : names) {
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
    // Colour balance on the R, G, B layers, before an L layer takes over the luminance (which keeps each
    // pixel's chromaticity, so the balance carries through).
    const color = input.color ? await balanceColor([R, G, B], width, height, input.color, ctx.signal) : undefined;
    if (color) ctx.logger.info(describeColorBalance(color));
    if (input.palette.L) {
      const L = mix(input.palette.L);
      const recon = loadRecon();
      // Sky levels from the same sky boxes for all four layers (color.ts).
      const lv = skyLevels([R, G, B, L], width, height);
      if (!lv)
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: input.channels.L ?? "L",
          reason: "no part of the image has enough valid pixels in every layer to measure the sky",
        });
      const [sR, sG, sB, sL] = lv.sky as [number, number, number, number];
      const y = new Float32Array(n);
      for (let i = 0; i < n; i++) y[i] = (R[i]! - sR + G[i]! - sG + B[i]! - sB) / 3;
      const sigmaY = (await recon.robustStats(y, { iterations: 3, signal: ctx.signal })).clippedSigma;
      const eta = luminanceScale(L, sL, y, sigmaY);
      if (!(eta > 0))
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: input.channels.L ?? "L",
          reason: "the L stack and the R, G, B stacks share no measurable signal (no pixel is above 5σ in both)",
          hint: "Check that the stacks show the same field (registered onto one grid); or compose without L (composition.palette: RGB).",
        });
      const Rs = boxMean5(R, sR, width, height),
        Gs = boxMean5(G, sG, width, height),
        Bs = boxMean5(B, sB, width, height);
      const Ys = new Float32Array(n);
      for (let i = 0; i < n; i++) Ys[i] = (Rs[i]! + Gs[i]! + Bs[i]!) / 3;
      const floor = 3 * (await recon.robustStats(Ys, { iterations: 3, signal: ctx.signal })).clippedSigma;
      const sky = sG;
      for (let i = 0; i < n; i++) {
        const d = (L[i]! - sL) / eta - y[i]!,
          ys = Ys[i]!;
        // ĉ: the pixel's smoothed colour shares, blended to grey over (floor, 2·floor] of the smoothed y.
        const w = ys > floor ? Math.min(1, (ys - floor) / floor) : 0;
        const share = (cs: number) => (w > 0 ? 1 + w * (cs / ys - 1) : 1);
        R[i] = sky + (R[i]! - sR) + d * share(Rs[i]!);
        G[i] = sky + (G[i]! - sG) + d * share(Gs[i]!);
        B[i] = sky + (B[i]! - sB) + d * share(Bs[i]!);
      }
      ctx.logger.info(`L layer: luminance scale L/Y = ${eta.toPrecision(5)}`);
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
    const history = color ? [...input.history, `colour balance: ${describeColorBalance(color)}`] : input.history;
    await writeFitsImage(input.output, { width, height, channels: 3, data }, { header, history, signal: ctx.signal });
    return { output: input.output, ...(color ? { color } : {}) };
  },
};
