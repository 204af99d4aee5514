/**
 * The built-in stacking methods `mean`, `median` and `rejection` (mean of the values that survive
 * pixel rejection): streamed in bands of rows so memory is bounded by `runtime.memory_budget`, not by the
 * number of frames; NaN pixels (outside a registered frame's footprint) are left out.
 *
 * Normalisation (`normalization`) brings every frame to the reference frame (the first) before combining,
 * from robust per-frame statistics (median m and σ = 1.4826·MAD of a 1-in-16 pixel sample per channel):
 * additive x − m + m₀; multiplicative x·m₀/m; additive_scaling (x − m)·σ₀/σ + m₀;
 * multiplicative_scaling m₀ + (x·m₀/m − m₀)·σ₀/(σ·m₀/m); local s_f(x, y)·x + o_f(x, y), each frame's scale
 * surface from aperture photometry of frame 0's isolated unsaturated stars in every frame and its offset
 * surface from a grid of `local_normalization.scale`-px sky boxes, both onto a clean reference (core's
 * localNormalization). Weights (`weighting: noise`) are 1/σ'² of the normalised frame; `fwhm` uses 1/FWHM², `stars` the star count, `psf_snr` the square of the point-source
 * signal-to-noise S/(σ·FWHM) (core's psfSnr: S the frame's star fluxes relative to the reference's). Frame filters (`frame_filters`:
 * fwhm, roundness, stars, background, each `{ keep: percent }` or `{ kappa }`) drop frames before
 * combining and report each with its figure and threshold. Rejection (`rejection`, thresholds
 * `sigma: [low, high]`) is recon-native's combine.
 */
import { loadRecon, type AperturePlan, type Rejection } from "@tile-compile/recon-native";
import { z } from "zod";
import {
  applyFrameFilters,
  bandRows,
  BAND_BYTES,
  combinedKeywords,
  defineTask,
  DEFAULT_REJECTION,
  FitsHeader,
  FitsWriter,
  frameStatsTask,
  applyLocalNormalization,
  localNormalization,
  meanLocalScale,
  median,
  psfSnr,
  readBand,
  readWarpedBand,
  warpFrame,
  cfaOf,
  readFitsHeader,
  stackingOptionsSchema,
  TileCompileError,
  withExecutor,
  type EngineContext,
  type Executor,
  type FitsHeaderSummary,
  type FrameFilter,
  type FrameStats,
  type LocalNormalization,
  type SharedRef,
  type StackingInput,
  type StackingProvider,
  type StackingResult,
  type DrizzleSummary,
  type WorkUnit,
  type WarpPlan,
  type FrameWarp,
} from "@tile-compile/core";
import { FitsFile } from "@tile-compile/core";
import { photometryPlan } from "../tbqr/reconstruct.js";
import { drizzleBandTask, type DrizzleBandPlan, type DrizzleBandResult, type DrizzleOptions } from "./drizzle.js";
import { rm } from "node:fs/promises";

/** Frames measured at once by the statistics pass. */
const STATS_IN_FLIGHT = 4;
/**
 * Bands of registered frames combined at once, each unit in its own scratch lane: the next band is read
 * while the kernel combines this one (100 × 2048²: 2.70 → 2.17 s, best of three; same bytes). The fused
 * path keeps one: its bands are warped as they are read, which already keeps both cores in the kernels
 * (two in flight measured no faster).
 */
const BANDS_IN_FLIGHT = 2;

/**
 * The rejection methods of this engine, as the kernels call them. A new one is added here (and to the
 * kernels); the configuration accepts any name, and this engine's options schema says which it offers.
 * (Generalized ESD, `gesdt`, is Siril's: engine-siril.)
 */
const nativeRejections = ["none", "percentile", "sigma", "sigma_median", "mad", "winsorized", "linear_fit"] as const;
type NativeRejection = (typeof nativeRejections)[number];
const REJECTIONS: Record<NativeRejection, Rejection> = {
  none: "none",
  percentile: "percentile",
  sigma: "sigma",
  sigma_median: "sigma",
  mad: "mad",
  winsorized: "winsorized",
  linear_fit: "linear-fit",
};

/** `stacking:mean|median|rejection` options: core's stacking vocabulary with this engine's rejection methods. */
export const nativeStackingOptionsSchema = stackingOptionsSchema.extend({ rejection: z.enum(nativeRejections).optional() });
export type NativeStackingOptions = z.infer<typeof nativeStackingOptionsSchema>;

/** What every band unit of one stack shares (one copy per run, by reference). */
export interface StackBandPlan {
  frames: { path: string; hdu?: number }[];
  width: number;
  method: "mean" | "median";
  rejection: Rejection;
  low: number;
  high: number;
  /** Per channel: weights (or null), the normalisation (or null) and the local normalisation (`normalization: local`, or null). */
  channels: { weights: number[] | null; norm: { scale: number[]; offset: number[] } | null; local: LocalNormalization | null }[];
  height: number;
  /** The fused path: the frames are unregistered and warped onto the grid as their rows are read. */
  warp?: WarpPlan;
}

/** The result of one band: combined rows and, with rejection, per-pixel rejected counts. */
export interface StackBandResult {
  data: Float32Array;
  rejectedLow?: Uint16Array;
  rejectedHigh?: Uint16Array;
}

/**
 * One band of rows of one channel, combined over every frame (a work unit). Each pixel's combination
 * is independent of the band split, and the frames enter in their fixed order, so bytes never depend on
 * how the bands are scheduled.
 */
export const stackBandTask = defineTask(
  "stack.band",
  async (i: { plan: SharedRef; c: number; y0: number; rows: number }, ctx): Promise<StackBandResult> => {
    const plan = await ctx.shared<StackBandPlan>(i.plan);
    const { frames, width } = plan;
    const { weights, norm, local } = plan.channels[i.c]!;
    const views = plan.warp
      ? await readWarpedBand(ctx, "stack.band", frames, plan.warp, i.y0, i.rows, i.c)
      : await readBand(ctx, "stack.band", frames, i.y0, i.rows, i.c, width);
    // Local normalisation: each frame's scale and offset maps applied to its rows before they are combined.
    if (local) views.forEach((v, k) => applyLocalNormalization(v, width, plan.height, i.y0, i.rows, local, k));
    // Normalisation is applied inside the kernel (same f32 values as normalising the rows first).
    const recon = loadRecon();
    return recon.combine(views, {
      method: plan.method,
      rejection: plan.rejection,
      low: plan.low,
      high: plan.high,
      counts: plan.rejection !== "none",
      signal: ctx.signal,
      ...(weights ? { weights } : {}),
      ...(norm ? { normalize: norm } : {}),
    });
  },
);

/**
 * The photometry stars of `normalization: local`'s scale maps, from frame 0 (registered frames share the
 * positions): round detections of the star channel (green of a colour frame) whose peak is below half the
 * frame's brightest pixel — a clearer frame must not saturate them — isolated and clear of the edges
 * (TBQR's photometryPlan: aperture 3.5·FWHM, sky annulus beyond it). Null with fewer than 5.
 */
export const photometryStarsTask = defineTask(
  "stack.photometry-stars",
  async (i: { path: string; hdu?: number; channel: number; warp?: FrameWarp }, ctx): Promise<AperturePlan | null> => {
    const recon = loadRecon();
    const f = await FitsFile.open(i.path);
    try {
      const r = await f.image(i.hdu);
      // The fused path: positions on the reference grid, from the frame warped as registration would.
      const data = i.warp
        ? (
            await warpFrame(recon, { path: i.path, ...(i.hdu !== undefined ? { hdu: i.hdu } : {}) }, i.warp.matrix, {
              ...i.warp,
              signal: ctx.signal,
            })
          ).data.subarray(i.channel * r.width * r.height, (i.channel + 1) * r.width * r.height)
        : await r.readRows(0, r.height, i.channel);
      let top = -Infinity;
      for (const v of data) if (v > top) top = v;
      const list = await recon.detectStars({ data, width: r.width, height: r.height }, { radius: 5, maxStars: 500, signal: ctx.signal });
      const stars = list.stars.filter((s) => s.roundness > 0.6 && s.peak + s.background < 0.5 * top);
      const plan = photometryPlan([{ fwhm: median(stars.map((s) => s.fwhm)), stars }], median(stars.map((s) => s.fwhm)), r.width, r.height);
      return plan ? { stars: plan.stars, aperture: plan.aperture, annulus: plan.annulus } : null;
    } finally {
      await f.close();
    }
  },
);

/** `stacking:mean|median|rejection` of the built-in engine: options parsed by core's `stackingOptionsSchema`. */
export const nativeStacking: StackingProvider<NativeStackingOptions> = { optionsSchema: nativeStackingOptionsSchema, stack: nativeStack };

export async function nativeStack(input: StackingInput<NativeStackingOptions>, ctx: EngineContext): Promise<StackingResult> {
  let { frames } = input;
  if (frames.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: "stacking", reason: "no frames to stack" });
  const o = input.options;
  const method = input.method === "median" ? "median" : "mean";
  const rejName: NativeRejection = input.method === "rejection" ? (o.rejection ?? DEFAULT_REJECTION) : "none";
  const rejection = REJECTIONS[rejName];
  const [low, high] = o.sigma ?? [3, 3];
  const normalization = o.normalization ?? (input.method === "rejection" ? "additive" : "none");
  const weighting = o.weighting ?? "none";
  const filters: Record<string, FrameFilter> = o.frame_filters ?? {};
  const withPsf = weighting === "psf_snr";
  const gridBox = normalization === "local" ? (o.local_normalization?.scale ?? 128) : 0;
  const needStars = Object.keys(filters).some((k) => k !== "background") || weighting === "fwhm" || weighting === "stars" || withPsf;
  return withExecutor(ctx, stackWith);

  async function stackWith(executor: Executor): Promise<StackingResult> {
    const summaries: FitsHeaderSummary[] = [];
    for (const f of frames) {
      ctx.signal.throwIfAborted();
      summaries.push(await readFitsHeader(f.path));
    }
    const first = summaries[0]!;
    const { width, height } = first;
    // The fused path: a one-shot-colour mosaic becomes R, G, B on the way (as registration writes it).
    const warp = input.warp;
    const cfa = warp ? cfaOf(first) : undefined;
    const channels = cfa ? 3 : first.channels;
    if (warp && warp.matrices.length !== frames.length)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: "stacking",
        reason: `${warp.matrices.length} transforms for ${frames.length} frames`,
        hint: "Give one transform per frame (transforms.json from tile-compile register).",
      });
    let matrices = warp?.matrices;
    const frameWarp = (i: number): { warp?: FrameWarp } =>
      warp ? { warp: { matrix: warp.matrices[i]!, interpolation: warp.interpolation, debayer: warp.debayer } } : {};
    for (const s of summaries) {
      if (s.width !== width || s.height !== height || s.channels !== first.channels) {
        throw new TileCompileError("TC_INPUT_INVALID", {
          file: s.path,
          reason: `is ${s.width}×${s.height}×${s.channels}, but ${first.path} is ${width}×${height}×${first.channels}; frames of one stack must have the same size`,
          hint: "Register the frames onto one reference first, or stack each size separately.",
        });
      }
    }
    // Per-frame statistics for normalisation and weights.
    let stats: FrameStats[] = [];
    // Local normalisation's photometry stars, from frame 0, measured in every frame by the statistics units.
    let photometry: AperturePlan | null = null;
    if (gridBox) {
      const unit: WorkUnit<unknown, AperturePlan | null> = {
        id: "photometry-stars",
        task: photometryStarsTask as never,
        input: {
          path: frames[0]!.path,
          ...(frames[0]!.hdu !== undefined ? { hdu: frames[0]!.hdu } : {}),
          channel: channels === 3 ? 1 : 0,
          ...frameWarp(0),
        },
      };
      for await (const plan of executor.run([unit], { signal: ctx.signal })) photometry = plan;
      if (!photometry)
        ctx.logger.warn(`local normalisation: fewer than 5 isolated, unsaturated stars in ${frames[0]!.path}; offsets only (scale 1)`);
    }
    const photRef = photometry ? await executor.share("stack.photometry", photometry) : undefined;
    // (The fused path with RCD needs every mosaic's value range, which the statistics units measure.)
    const needRanges = !!cfa && warp!.debayer === "rcd";
    if (normalization !== "none" || weighting !== "none" || Object.keys(filters).length > 0 || needRanges) {
      // A few frames in flight: their small strip reads overlap with the statistics of the others.
      const units: WorkUnit<unknown, FrameStats>[] = frames.map((f, i) => ({
        id: `stats/${i}`,
        task: frameStatsTask as never,
        input: {
          path: f.path,
          ...(f.hdu !== undefined ? { hdu: f.hdu } : {}),
          channels,
          withStars: needStars,
          ...(withPsf ? { withPsf } : {}),
          ...(gridBox ? { gridBox } : {}),
          ...(photRef ? { photometry: photRef } : {}),
          ...frameWarp(i),
        },
      }));
      stats = [];
      for await (const st of executor.run(units, {
        signal: ctx.signal,
        concurrency: STATS_IN_FLIGHT,
        onUnitDone: (d) => ctx.progress((0.2 * d) / frames.length, "frame statistics"),
      }))
        stats.push(st);
    }
    // Frame filters: every rejected frame is reported with its figure and the threshold.
    const rejectedFrames: { path: string; reason: string }[] = [];
    if (Object.keys(filters).length > 0) {
      const bad = applyFrameFilters(
        frames.map((f) => f.path),
        stats,
        filters,
      );
      for (const [i, reason] of [...bad.entries()].sort((a, b) => a[0] - b[0])) {
        rejectedFrames.push({ path: frames[i]!.path, reason });
        ctx.logger.info(`frame filtered out: ${frames[i]!.path}: ${reason}`);
      }
      if (bad.size >= frames.length)
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: "stacking.frame_filters",
          reason: "the frame filters reject every frame",
          hint: "Loosen the filters (a larger keep percentage or kappa).",
        });
      const keep = frames.map((_, i) => !bad.has(i));
      frames = frames.filter((_, i) => keep[i]);
      matrices = matrices?.filter((_, i) => keep[i]);
      summaries.splice(0, summaries.length, ...summaries.filter((_, i) => keep[i]));
      stats = stats.filter((_, i) => keep[i]);
    }
    const affine = (i: number, c: number): [number, number] => {
      // x' = a·x + b
      if (normalization === "none") return [1, 0];
      const m = stats[i]!.median[c]!,
        s = stats[i]!.sigma[c]!,
        m0 = stats[0]!.median[c]!,
        s0 = stats[0]!.sigma[c]!;
      switch (normalization) {
        case "local":
          return [1, 0];
        case "additive":
          return [1, m0 - m];
        case "multiplicative":
          return [m0 / m, 0];
        case "additive_scaling": {
          const k = s > 0 ? s0 / s : 1;
          return [k, m0 - k * m];
        }
        case "multiplicative_scaling": {
          const g = m0 / m;
          const k = s > 0 ? s0 / (s * g) : 1;
          return [g * k, m0 - k * m0];
        }
        default:
          throw new TileCompileError("TC_CONFIG_INVALID", {
            file: "tile_compile.yaml",
            issues: [`stacking.normalization: "${normalization}" is unknown`],
          });
      }
    };
    const psf = withPsf ? Array.from({ length: channels }, (_, c) => psfSnr(stats, c)) : [];
    const weightsFor = (c: number): number[] | undefined => {
      if (weighting === "none") return undefined;
      // (S/(σ·FWHM))²; a frame whose stars are not there (S = 0) keeps a token weight, as fwhm's unmeasurable frames do.
      if (withPsf) {
        const q2 = psf[c]!.map((q) => (q > 0 ? q * q : 0));
        const top = Math.max(...q2);
        return top > 0 ? q2.map((w) => Math.max(w, 1e-6 * top)) : q2.map(() => 1);
      }
      return frames.map((_, i) => {
        const st = stats[i]!;
        if (weighting === "fwhm") return Number.isFinite(st.fwhm) && st.fwhm > 0 ? 1 / (st.fwhm * st.fwhm) : 1e-6;
        if (weighting === "stars") return Math.max(1, st.stars);
        const a = normalization === "local" ? meanLocalScale(local[c]!, i) : affine(i, c)[0];
        const s = st.sigma[c]! * Math.abs(a);
        return s > 0 ? 1 / (s * s) : 1;
      });
    };

    // Local normalisation: per channel, every frame's scale and offset surfaces onto the clean reference (core's localNormalization).
    const local: LocalNormalization[] = gridBox
      ? Array.from({ length: channels }, (_, c) =>
          localNormalization(
            stats.map((st) => st.skyGrid![c]!),
            photometry ? { stars: photometry.stars, fluxes: stats.map((st) => st.starFlux![c]!), width, height } : undefined,
          ),
        )
      : [];
    if (local.length) {
      const l = local[0]!;
      ctx.logger.info(
        `local normalisation: offsets on ${l.nx}×${l.ny} boxes of ~${gridBox} px, surfaces of degree ${l.degree}; ${l.scale ? `scales of degree ${l.scale.degree} from ${l.scale.stars} stars (levelled to the clearest frames ${l.scale.reference.map((f) => f + 1).join(", ")})` : "no scale maps (too few photometry stars)"}; sky reference from frames ${l.reference.map((f) => f + 1).join(", ")}`,
      );
    }
    // Bands: every frame's rows (f32) plus the combine's output, within the memory budget and cache-sized.
    // (At least `executor.parallelism` bands, so every worker of a distributed run has some.)
    // The fused path warps every frame's band as it reads it: a kernel call and a read per frame and band,
    // each with the kernel's margin rows, so its bands are 8× longer (within the budget) than the
    // cache-sized bands of registered frames (100 × 2048²: 39-row bands made the bands 3× slower than the
    // write-then-stack path's).
    // Bands in flight at once share the budget.
    const bytesPerRow = width * 4 * (frames.length + 2);
    const inFlight = warp ? 1 : BANDS_IN_FLIGHT;
    const rowsPerBand = Math.min(
      bandRows(bytesPerRow, height, ctx.runtime.memoryBudgetBytes / inFlight, warp ? 8 * BAND_BYTES : BAND_BYTES),
      Math.max(1, Math.ceil(height / (executor.parallelism ?? 1))),
    );
    const header = first.header.clone();
    if (cfa) {
      for (const k of ["BAYERPAT", "XBAYROFF", "YBAYROFF"]) header.delete(k);
      header.set("DEBAYER", warp!.debayer.toUpperCase(), `demosaic of the ${cfa.pattern} mosaic before resampling`);
    }
    for (const k of combinedKeywords(summaries)) header.set(k.key, k.value, k.comment, k.float ? { numberFormat: "float" } : undefined);
    header.set("STACKMTH", input.method, "stacking method");
    if (rejection !== "none") header.set("REJECT", `${rejName} ${low} ${high}`, "pixel rejection and thresholds");
    if (normalization !== "none") header.set("NORMALIZ", normalization, "frame normalisation before combining");
    if (gridBox) header.set("LNSCALE", gridBox, "local normalisation box size (px)");
    if (o.drizzle) return drizzled(o.drizzle, header);
    const writer = await FitsWriter.create(
      input.output,
      { width, height, channels },
      { bitpix: -32, header, history: input.history, signal: ctx.signal },
    );
    // Rejection maps: per pixel, the number of frames rejected below / above (16-bit, the stack's shape).
    const maps: FitsWriter[] = [];
    if (input.rejectionMaps) {
      if (rejection === "none")
        throw new TileCompileError("TC_CONFIG_INVALID", {
          file: "tile_compile.yaml",
          issues: ["stacking.rejection_maps: needs stacking.method: rejection"],
        });
      for (const [side, path] of [
        ["low", input.rejectionMaps.low],
        ["high", input.rejectionMaps.high],
      ] as const) {
        const h = new FitsHeader()
          .set("IMAGETYP", `Rejection map (${side})`)
          .set("REJECT", `${rejName} ${low} ${high}`, "pixel rejection and thresholds")
          .set("NCOMBINE", frames.length, "frames combined");
        maps.push(
          await FitsWriter.create(
            path,
            { width, height, channels },
            {
              bitpix: 16,
              header: h,
              history: [...input.history, `frames rejected ${side === "low" ? "below" : "above"} the ${rejName} bounds, per pixel`],
              signal: ctx.signal,
            },
          ),
        );
      }
    }
    let rejectedLow = 0,
      rejectedHigh = 0;
    let rejectedPercent: { low: number; high: number } | undefined;
    try {
      const bands = Math.ceil(height / rowsPerBand);
      const plan: StackBandPlan = {
        frames: frames.map((f) => ({ path: f.path, ...(f.hdu !== undefined ? { hdu: f.hdu } : {}) })),
        width,
        height,
        method,
        rejection: rejection!,
        low: low!,
        high: high!,
        ...(warp ? { warp: { ...warp, matrices: matrices!, ...(needRanges ? { ranges: stats.map((st) => st.mosaicRange!) } : {}) } } : {}),
        channels: Array.from({ length: channels }, (_, c) => {
          const w = weightsFor(c);
          return {
            weights: w ?? null,
            norm:
              normalization === "none" || normalization === "local"
                ? null
                : { scale: frames.map((_, i) => affine(i, c)[0]), offset: frames.map((_, i) => affine(i, c)[1]) },
            local: local[c] ?? null,
          };
        }),
      };
      const shared = await executor.share("stack.plan", plan);
      const units: WorkUnit<unknown, StackBandResult>[] = [];
      for (let c = 0; c < channels; c++)
        for (let y0 = 0; y0 < height; y0 += rowsPerBand)
          units.push({
            id: `band/${c}/${y0}`,
            task: stackBandTask as never,
            input: { plan: shared, c, y0, rows: Math.min(rowsPerBand, height - y0) },
          });
      // Results arrive in band order whatever ran them; they are written as they come.
      let done = 0;
      for await (const r of executor.run(units, { signal: ctx.signal, concurrency: inFlight })) {
        const u = units[done]!.input as { c: number; y0: number; rows: number };
        if (r.rejectedLow) for (const v of r.rejectedLow) rejectedLow += v;
        if (r.rejectedHigh) for (const v of r.rejectedHigh) rejectedHigh += v;
        await writer.write(r.data);
        if (maps.length) {
          await maps[0]!.write(Float32Array.from(r.rejectedLow ?? new Uint16Array(r.data.length)));
          await maps[1]!.write(Float32Array.from(r.rejectedHigh ?? new Uint16Array(r.data.length)));
        }
        ctx.progress(
          0.2 + (0.8 * ++done) / (bands * channels),
          `rows ${u.y0 + u.rows}/${height}${channels > 1 ? ` channel ${u.c + 1}` : ""}`,
        );
      }
      if (rejection !== "none") {
        const total = width * height * channels * frames.length;
        rejectedPercent = { low: (100 * rejectedLow) / total, high: (100 * rejectedHigh) / total };
        ctx.logger.info(`rejection ${rejName}: ${rejectedPercent.low.toFixed(3)} % low, ${rejectedPercent.high.toFixed(3)} % high`);
      }
      await writer.commit();
      for (const m of maps) await m.commit();
    } catch (e) {
      await writer.abort();
      for (const m of maps) await m.abort();
      throw e;
    }
    // Relative weights (mean 1) of the first channel's weighting, for run.json and the run report.
    const w0 = weightsFor(0);
    const wMean = w0 ? w0.reduce((a, v) => a + v, 0) / w0.length : 1;
    const frameWeights = w0 ? frames.map((f, i) => ({ path: f.path, weight: wMean > 0 ? w0[i]! / wMean : 1 })) : undefined;
    return {
      frameCount: frames.length,
      width,
      height,
      channels,
      ...(rejectedFrames.length ? { rejectedFrames } : {}),
      ...(frameWeights ? { frameWeights } : {}),
      ...(rejectedPercent ? { rejectedPercent } : {}),
    };

    /** The drizzle's report: settings, empty pixels, rejections, FWHM of the 1× and the drizzled stack (input px), pixel scale. */
    async function drizzleSummary(
      dz: DrizzleOptions,
      cfaDrizzle: boolean,
      emptyPixels: number,
      rejectedValues: number | undefined,
      oneXPath: string | undefined,
      starChannel: number,
    ): Promise<DrizzleSummary> {
      const oneX = oneXPath ? await medianStarFwhm(oneXPath, starChannel, ctx.signal) : NaN;
      const drizzled = (await medianStarFwhm(input.output, starChannel, ctx.signal)) / dz.scale;
      const arcsec = arcsecPerPixel(first.header);
      return {
        scale: dz.scale,
        pixfrac: dz.pixfrac,
        kernel: dz.kernel,
        cfa: cfaDrizzle,
        emptyPixels,
        ...(rejectedValues !== undefined ? { rejectedValues } : {}),
        ...(Number.isFinite(drizzled) ? { fwhmPx: { ...(Number.isFinite(oneX) ? { oneX } : {}), drizzled } } : {}),
        ...(arcsec ? { arcsecPerPixel: arcsec } : {}),
      };
    }

    /** Per channel, each frame's normalisation, relative weight (mean 1) and normalised noise, for the drizzle bands. */
    function drizzleChannels(): DrizzleBandPlan["channels"] {
      return Array.from({ length: channels }, (_, c) => {
        const w = weightsFor(c);
        const mean = w ? w.reduce((a, v) => a + v, 0) / w.length : 1;
        return {
          scale: frames.map((_, i) => affine(i, c)[0]),
          offset: frames.map((_, i) => affine(i, c)[1]),
          weights: frames.map((_, i) => (w ? w[i]! / mean : 1)),
          sigma: frames.map((_, i) => (stats[i] ? stats[i]!.sigma[c]! * Math.abs(affine(i, c)[0]) : 0)),
        };
      });
    }

    /**
     * `stacking.drizzle` (drizzle.ts): the 1× stack with the configured rejection first when there is one
     * (the blot reference), then the drizzle bands; coverage map when asked.
     */
    async function drizzled(dz: DrizzleOptions, header: FitsHeader): Promise<StackingResult> {
      if (!warp)
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: "stacking.drizzle",
          reason: "drizzle needs the calibrated frames and their registration transforms, not registered frames",
          hint: "Run it in a job (the pipeline passes the transforms) or give tile-compile stack --transforms transforms.json.",
        });
      if (normalization === "local")
        throw new TileCompileError("TC_CONFIG_INVALID", {
          file: "tile_compile.yaml",
          issues: ["stacking.drizzle with stacking.normalization: local is not supported yet; use additive (the default) with drizzle"],
        });
      if (method === "median")
        throw new TileCompileError("TC_CONFIG_INVALID", {
          file: "tile_compile.yaml",
          issues: ["stacking.drizzle combines by weighted mean; use stacking.method: mean or rejection"],
        });
      const s = dz.scale;
      const outWidth = Math.round(width * s),
        outHeight = Math.round(height * s);
      let blot: DrizzleBandPlan["blot"] = null;
      if (rejection !== "none") {
        const ref = `${input.output}.drizzle-1x.fit`;
        await nativeStack(
          {
            ...input,
            frames,
            warp: { ...warp, matrices: matrices! },
            output: ref,
            options: { ...o, drizzle: undefined },
            rejectionMaps: undefined,
          },
          { ...ctx, progress: (f, note) => ctx.progress(0.5 * f, note ? `1× reference: ${note}` : "1× reference") },
        );
        blot = { path: ref, low: low!, high: high! };
      }
      const starChannel = channels === 3 ? 1 : 0;
      try {
        const plan: DrizzleBandPlan = {
          frames: frames.map((f) => ({ path: f.path, ...(f.hdu !== undefined ? { hdu: f.hdu } : {}) })),
          matrices: matrices!,
          width,
          height,
          outWidth,
          outHeight,
          drizzle: dz,
          debayer: warp.debayer,
          ...(needRanges ? { ranges: stats.map((st) => st.mosaicRange!) } : {}),
          ...(cfa && dz.cfa !== false ? { cfa: { pattern: cfa.pattern, offsetX: cfa.offsetX, offsetY: cfa.offsetY } } : {}),
          channels: drizzleChannels(),
          blot,
        };
        const shared = await executor.share("stack.drizzle-plan", plan);
        // Per output pixel: two f64 accumulators and the f32 results; every frame's source rows pass through one at a time.
        const rowsPerBand = Math.min(
          bandRows(outWidth * 24 + (width * 8) / s, outHeight, ctx.runtime.memoryBudgetBytes),
          Math.max(1, Math.ceil(outHeight / (executor.parallelism ?? 1))),
        );
        scaleWcs(header, s);
        header.set("DRIZSCAL", s, "drizzle: output pixels per input pixel (per axis)");
        header.set("DRIZPIXF", dz.pixfrac, "drizzle: drop size / input pixel");
        header.set("DRIZKERN", dz.kernel, "drizzle kernel");
        if (cfa && dz.cfa !== false) {
          header.delete("DEBAYER");
          header.set("DRIZCFA", true, `Bayer drizzle of the ${cfa.pattern} mosaic (no demosaic)`);
        }
        const writer = await FitsWriter.create(
          input.output,
          { width: outWidth, height: outHeight, channels },
          { bitpix: -32, header, history: input.history, signal: ctx.signal },
        );
        const cover = input.coverageMap
          ? await coverageWriter(input.coverageMap, outWidth, outHeight, channels, dz, input.history, ctx.signal)
          : undefined;
        let rejectedValues = 0,
          empty = 0;
        try {
          const units: WorkUnit<unknown, DrizzleBandResult>[] = [];
          for (let c = 0; c < channels; c++)
            for (let y0 = 0; y0 < outHeight; y0 += rowsPerBand)
              units.push({
                id: `drizzle/${c}/${y0}`,
                task: drizzleBandTask as never,
                input: { plan: shared, c, y0, rows: Math.min(rowsPerBand, outHeight - y0) },
              });
          let done = 0;
          for await (const r of executor.run(units, { signal: ctx.signal })) {
            rejectedValues += r.rejected;
            for (const v of r.coverage) if (!(v > 0)) empty++;
            await writer.write(r.data);
            if (cover) await cover.write(r.coverage);
            ctx.progress((blot ? 0.5 : 0.2) + ((blot ? 0.5 : 0.8) * ++done) / units.length, "drizzle");
          }
          await writer.commit();
          if (cover) await cover.commit();
        } catch (e) {
          await writer.abort();
          if (cover) await cover.abort();
          throw e;
        }
        ctx.logger.info(
          `drizzle ×${s} (pixfrac ${dz.pixfrac}, ${dz.kernel}): ${outWidth}×${outHeight}; ${empty} output values without a drop${blot ? `; ${rejectedValues} input values rejected against the 1× stack` : ""}`,
        );
        if (empty > 0)
          ctx.logger.warn(
            `drizzle: ${empty} output pixel values got no drop (NaN): too few dithered frames for pixfrac ${dz.pixfrac} at ×${s} — raise pixfrac or lower the scale`,
          );
        return {
          frameCount: frames.length,
          width: outWidth,
          height: outHeight,
          channels,
          ...(rejectedFrames.length ? { rejectedFrames } : {}),
          drizzle: await drizzleSummary(dz, !!plan.cfa, empty, blot ? rejectedValues : undefined, blot?.path, starChannel),
        };
      } finally {
        if (blot) await rm(blot.path, { force: true });
      }
    }
  }
}

/**
 * The WCS of a drizzled output: the pixel scale divided by `s` (CDELTi, CDi_j), the reference pixel moved
 * onto the finer grid (FITS pixel centres at integers from 1: CRPIX' = (CRPIX − ½)·s + ½).
 */
function scaleWcs(h: FitsHeader, s: number): void {
  for (const k of ["CRPIX1", "CRPIX2"]) {
    const v = h.getNumber(k);
    if (v !== undefined) h.set(k, (v - 0.5) * s + 0.5, undefined, { numberFormat: "float" });
  }
  for (const k of ["CDELT1", "CDELT2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"]) {
    const v = h.getNumber(k);
    if (v !== undefined) h.set(k, v / s, undefined, { numberFormat: "float" });
  }
  for (const k of ["XPIXSZ", "YPIXSZ"]) {
    const v = h.getNumber(k);
    if (v !== undefined) h.set(k, v / s, undefined, { numberFormat: "float" });
  }
}

/** The drizzle coverage map's writer: per output pixel, the summed weight × area of the drops in it. */
function coverageWriter(
  path: string,
  width: number,
  height: number,
  channels: number,
  dz: DrizzleOptions,
  history: string[],
  signal: AbortSignal,
): Promise<FitsWriter> {
  return FitsWriter.create(
    path,
    { width, height, channels },
    {
      bitpix: -32,
      header: new FitsHeader().set("IMAGETYP", "Drizzle coverage").set("DRIZSCAL", dz.scale).set("DRIZPIXF", dz.pixfrac),
      history: [...history, "per output pixel: the summed weight × area of the drops that landed in it"],
      signal,
    },
  );
}

/** Median FWHM (px) of the round stars in one channel of a FITS image (NaN with none). */
async function medianStarFwhm(path: string, channel: number, signal: AbortSignal): Promise<number> {
  const f = await FitsFile.open(path);
  try {
    const r = await f.image();
    const data = await r.readRows(0, r.height, channel);
    const list = await loadRecon().detectStars({ data, width: r.width, height: r.height }, { radius: 5, maxStars: 300, signal });
    const v = list.stars
      .filter((st) => st.roundness > 0.6)
      .map((st) => st.fwhm)
      .sort((a, b) => a - b);
    return v.length ? v[v.length >> 1]! : NaN;
  } finally {
    await f.close();
  }
}

/** The pixel scale (″/px) a header states: CDELT2 or CD2_2/CD1_2 (degrees), else 206.265 × XPIXSZ (µm) / FOCALLEN (mm). */
function arcsecPerPixel(h: FitsHeader): number | undefined {
  const cd22 = h.getNumber("CD2_2");
  const cd = h.getNumber("CDELT2") ?? (cd22 !== undefined ? Math.hypot(cd22, h.getNumber("CD1_2") ?? 0) : undefined);
  if (cd !== undefined && cd !== 0) return Math.abs(cd) * 3600;
  const px = h.getNumber("XPIXSZ"),
    fl = h.getNumber("FOCALLEN");
  return px && fl ? (206.265 * px) / fl : undefined;
}
