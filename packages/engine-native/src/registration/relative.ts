/**
 * `registration:relative` — the built-in star-pattern registration (kernels in recon-native).
 *
 * Work units (../executor/contracts.ts), so a registration runs the same here and on RabbitMQ workers:
 * `registration.stars` measures one frame's stars; `registration.frame` reads one frame, matches its stars
 * to the reference's, warps it onto the reference grid (Lanczos-3 by default) and writes it. When the
 * reference is known up front (an index, a path, or the reference an earlier run into the same folder
 * recorded) one pass suffices: each frame is read once, by its `registration.frame` unit. With `auto`
 * there are two passes: every frame's stars first (only the star lists come back), to choose the
 * reference; then the frame units. Memory does not grow with the number of frames: the local executor
 * runs up to three units at a time (one frame's JavaScript work — matching, the write's byte swap —
 * overlaps with the others' native kernels and file I/O; fewer when `runtime.memory_budget` is tight), each
 * holding one frame. Warnings and results are taken in frame order, whatever order units finish in.
 *
 * Reference `auto`: the frame with the highest quality figure Q = star count / median FWHM (more and
 * sharper stars), earlier frame on ties. A reference chosen by an earlier run into the same output folder
 * (recorded in its `transforms.json`) is kept as long as that frame is still among the inputs.
 *
 * One-shot-colour (CFA) frames: stars are detected on the green plane of a bilinear debayer (half the
 * photosites are green; full resolution keeps stars well sampled). The mosaic itself is
 * never interpolated — that would mix the colours of neighbouring photosites — it is debayered first
 * (bilinear, honouring BAYERPAT and XBAYROFF/YBAYROFF) and the three colour planes are warped, so the
 * registered frame is an RGB cube (NAXIS3 = 3) and the Bayer phase cannot be scrambled.
 *
 * A frame that cannot be registered (too few stars, no common pattern, mirrored) is reported with the
 * reason and left out — never aligned with the identity.
 */
import { mkdir } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { loadRecon, type ReconBackend } from "@tile-compile/recon-native";
import { z } from "zod";
import {
  chooseReference,
  defineTask,
  knownReference,
  describeTransform as describe,
  FitsFile,
  formatFrameName,
  frameMetrics,
  frameStars,
  ioFault,
  isIoFault,
  withExecutor,
  matchStars,
  matchTolerance,
  MIN_PAIRS,
  pixelAgreement,
  pixelsConfirm,
  readFrame,
  registrationOptionsSchema,
  starPlanes,
  TileCompileError,
  warpOntoReference,
  type EngineContext,
  type Executor,
  type FitsImage,
  type FrameRef,
  type FrameStars,
  type Point,
  type RegisteredFrame,
  type RegistrationInput,
  type RegistrationProvider,
  type RegistrationResult,
  type SharedRef,
  type TransformModel,
  type WorkUnit,
  DEFAULT_DEBAYER,
} from "@tile-compile/core";

/**
 * The `relative` method's options: `registration.transform` (shift | similarity (default) | affine |
 * homography), `registration.interpolation` (bilinear | bicubic | lanczos3 (default)), `registration.debayer`
 * (rcd (default) | bilinear: the demosaic of colour frames before they are resampled), and the star
 * detection threshold in σ (default 5).
 */
export const relativeOptionsSchema = registrationOptionsSchema.extend({ threshold: z.number().positive().optional() });
export type RelativeOptions = z.infer<typeof relativeOptionsSchema>;

/** Largest relative scale difference between a frame and the reference that registration accepts. */
export const MAX_SCALE_CHANGE = 0.02;

/** A frame's star measurement as a unit result: the star list as one typed array (x, y interleaved). */
export interface FrameStarsWire extends Omit<FrameStars, "stars"> {
  xy: Float64Array;
  width?: number;
  height?: number;
}

const toWire = (f: FrameStars & { size?: { width: number; height: number } }): FrameStarsWire => {
  const { stars, size, ...rest } = f;
  const xy = new Float64Array(2 * stars.length);
  stars.forEach((p, k) => {
    xy[2 * k] = p.x;
    xy[2 * k + 1] = p.y;
  });
  return { ...rest, xy, ...(size ? { width: size.width, height: size.height } : {}) };
};

const fromWire = (w: FrameStarsWire): FrameStars => {
  const { xy, width: _w, height: _h, ...rest } = w;
  void _w;
  void _h;
  const stars: Point[] = [];
  for (let k = 0; k + 1 < xy.length; k += 2) stars.push({ x: xy[k]!, y: xy[k + 1]! });
  return { ...rest, stars };
};

const failed = (error: string): FrameStarsWire => ({ xy: new Float64Array(0), quality: 0, fwhm: NaN, error });

/** The measurement, or a per-frame error when the frame's size differs from `size` (the first frame's). */
function ofSize(w: FrameStarsWire, size: { width: number; height: number }): FrameStarsWire {
  if (w.error || w.width === undefined || w.height === undefined || (w.width === size.width && w.height === size.height)) return w;
  return failed(`its size ${w.width}×${w.height} differs from the set's ${size.width}×${size.height}`);
}

/** Stars of one frame, or the reason it could not be measured (a per-frame error, not a failed unit). */
async function measureFrame(
  recon: ReconBackend,
  frame: FrameRef,
  signal: AbortSignal,
  threshold: number,
  image?: FitsImage,
): Promise<FrameStarsWire> {
  try {
    return toWire(await frameStars(recon, frame, signal, threshold, image));
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    if (isIoFault(e)) throw ioFault(e, "read", frame.path);
    return failed((e as Error).message);
  }
}

/** `registration.stars`: one frame's stars, FWHM, quality and sky figures (pass 1 of `auto`). */
export const starsTask = defineTask("registration.stars", async (i: { frame: FrameRef; threshold: number }, ctx): Promise<FrameStarsWire> =>
  measureFrame(loadRecon(), i.frame, ctx.signal, i.threshold),
);

/** Stars every frame unit of one registration shares: the reference's and, after an `auto` pass 1, every frame's. */
interface RegistrationStars {
  reference: FrameStarsWire;
  frames: (FrameStarsWire | null)[] | null;
}

/** Input of one `registration.frame` unit (JSON; star lists by reference). */
export interface RegisterFrameInput {
  index: number;
  frame: FrameRef;
  stars: SharedRef;
  /** Measure the frame's stars in the unit (the reference was known before pass 1), checking its size. */
  measure: boolean;
  isReference: boolean;
  threshold: number;
  size: { width: number; height: number };
  model: TransformModel;
  interpolation: "bilinear" | "bicubic" | "lanczos3";
  /** Demosaic of colour (CFA) frames before they are resampled. */
  debayer: "rcd" | "bilinear";
  output: string;
  /** false: the transform only (the fused path), nothing warped or written. */
  write?: boolean;
  referenceName: string;
  /** The reference frame, read (once per process) only to check a thin star match against its pixels. */
  referencePath?: string;
  history: string[];
}

/** What one frame unit returns: the frame's entry and, when it was refused, the warning to log. */
export interface RegisterFrameResult {
  entry: RegisteredFrame;
  warning?: string;
  note?: string;
}

/**
 * `registration.frame`: read one frame, (measure its stars,) match them to the reference's, check the fit
 * (scale within {@link MAX_SCALE_CHANGE}, not mirrored), warp it onto the reference grid and write it
 * atomically. A frame that fails is an entry with its error, never an aligned-with-identity frame.
 */
export const registerFrameTask = defineTask("registration.frame", async (i: RegisterFrameInput, ctx): Promise<RegisterFrameResult> => {
  const recon = loadRecon();
  const path = i.frame.path;
  const shared = await ctx.shared<RegistrationStars>(i.stars);
  const ref = fromWire(shared.reference);
  let img: FitsImage;
  let fw: FrameStarsWire;
  try {
    img = await readFrame(i.frame, ctx.signal, true);
    fw = i.isReference
      ? shared.reference
      : i.measure
        ? ofSize(await measureFrame(recon, i.frame, ctx.signal, i.threshold, img), i.size)
        : shared.frames![i.index]!;
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    if (isIoFault(e)) throw ioFault(e, "read", path);
    return { entry: { input: path, error: (e as Error).message } };
  }
  if (fw.error) return { entry: { input: path, error: fw.error } };
  const f = fromWire(fw);
  let matrix: number[],
    rmsPx = 0,
    medianPx = 0,
    stars = f.stars.length;
  let confirmed = "";
  if (i.isReference) matrix = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  else {
    let m = matchStars(f.stars, ref.stars, { model: i.model, tolerancePx: matchTolerance(f.fwhm, ref.fwhm) });
    // A thin match (4–5 stars where 6 are asked: few-star frames, clouds) is accepted only when it also
    // passes the chance test and the frame's pixels agree with the reference's under it (verify.ts).
    const few = !m.ok ? /^only (\d+) stars matched the reference \(need \d+\)$/.exec(m.reason) : null;
    if (few && Number(few[1]) >= MIN_PAIRS[i.model] + 2 && i.referencePath) {
      const thin = matchStars(f.stars, ref.stars, {
        model: i.model,
        tolerancePx: matchTolerance(f.fwhm, ref.fwhm),
        minMatches: MIN_PAIRS[i.model] + 2,
      });
      if (thin.ok) {
        const key = `registration.reference-image:${i.referencePath}`;
        let refImg = ctx.cache.get(key) as Promise<FitsImage> | undefined;
        if (!refImg) {
          refImg = readFrame({ path: i.referencePath }, ctx.signal);
          refImg.catch(() => ctx.cache.delete(key));
          ctx.cache.set(key, refImg);
        }
        const agree = pixelAgreement(await refImg, ref.stars, img, thin.matrix, ref.fwhm);
        if (pixelsConfirm(agree)) {
          m = thin;
          confirmed = `; ${thin.pairs} stars, confirmed by the pixels (correlation ${agree.r.toFixed(2)}, ${agree.control.toFixed(2)} off the transform)`;
        } else
          m = {
            ok: false,
            reason: `only ${thin.pairs} stars matched the reference and the pixels do not confirm it (correlation ${agree.r.toFixed(2)}, ${agree.control.toFixed(2)} off the transform); not registered — a longer exposure or a reference with more stars (registration.reference) may get it in`,
          };
      }
    }
    if (!m.ok)
      return { entry: { input: path, error: m.reason, ...frameMetrics(f) }, warning: `${basename(path)}: not registered: ${m.reason}` };

    // Frames of one set come through the same optics: a scale off by more than 2 % is a false match
    // (or a different instrument), never a registration to keep.
    const shape = describe(m.matrix);
    if (!shape.mirrored && Math.abs(shape.scale - 1) > MAX_SCALE_CHANGE) {
      const error = `the fitted scale ${shape.scale.toFixed(4)} differs from the reference's by more than ${100 * MAX_SCALE_CHANGE} % (same optics expected): a false match or another instrument; not registered`;
      return { entry: { input: path, error, ...frameMetrics(f) }, warning: `${basename(path)}: not registered: ${error}` };
    }
    if (shape.mirrored)
      return { entry: { input: path, error: "the frame is mirrored relative to the reference; it is not registered", ...frameMetrics(f) } };
    matrix = m.matrix;
    rmsPx = m.rmsPx;
    medianPx = m.medianPx;
    stars = m.pairs;
  }
  if (i.write === false) {
    planes.give(img.data);
    return {
      entry: { input: path, matrix, rmsPx, medianPx, stars, ...frameMetrics(f) },
      ...(confirmed ? { note: `${basename(path)}: registered on a thin match${confirmed}` } : {}),
    };
  }
  try {
    await warpOntoReference(recon, i.frame, matrix, {
      output: i.output,
      interpolation: i.interpolation,
      debayer: i.debayer,
      signal: ctx.signal,
      image: img,
      keywords: {
        REGREF: [i.referenceName, "registration reference frame"],
        REGRMS: [Number(rmsPx.toFixed(4)), "[px] RMS residual of matched stars"],
        REGSTARS: [stars, "stars matched to the reference"],
      },
      history: [...i.history, `registered onto ${i.referenceName} (${i.model}, ${i.interpolation}, rms ${rmsPx.toFixed(3)} px)`],
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    // A failed write (full disk, read-only folder) fails the stage: never a frame left out for it.
    if (isIoFault(e)) throw ioFault(e, "write", i.output);
    return { entry: { input: path, error: (e as Error).message } };
  }
  planes.give(img.data); // warped and written: nothing reads it any more
  return {
    entry: { input: path, output: i.output, matrix, rmsPx, medianPx, stars, ...frameMetrics(f) },
    ...(confirmed ? { note: `${basename(path)}: registered on a thin match${confirmed}` } : {}),
  };
});

/**
 * Frame units in flight in this process. The JavaScript thread is busy ≈ half of a frame's time (star
 * matching, the write), the kernels and the fsync the rest: three units keep both cores busy (100 ×
 * 2048², 2 cores: 2 in flight ≈ 123 ms/frame, 3 ≈ 99 ms/frame with the other changes of that commit; 4 was
 * no better than 3). Fewer when `runtime.memory_budget` does not hold three units' planes.
 */
const FRAMES_IN_FLIGHT = 3;

/**
 * Whole-frame planes one frame unit holds at most: a colour (CFA) frame's raw plane, its debayered R, G,
 * B, the background and noise maps and the three warped planes.
 */
const PLANES_PER_UNIT = 9;

/** Units in flight within the memory budget, from the first frame's size (3 when it cannot be read). */
export async function framesInFlight(frames: readonly FrameRef[], budgetBytes: number | undefined): Promise<number> {
  if (!budgetBytes || frames.length === 0) return FRAMES_IN_FLIGHT;
  try {
    const f = await FitsFile.open(frames[0]!.path);
    try {
      const img = await f.image(frames[0]!.hdu);
      const perUnit = PLANES_PER_UNIT * 4 * img.width * img.height;
      return Math.max(1, Math.min(FRAMES_IN_FLIGHT, Math.floor(budgetBytes / perUnit)));
    } finally {
      await f.close();
    }
  } catch {
    return FRAMES_IN_FLIGHT; // the frame's own unit reports why it cannot be read
  }
}

/** Whole-frame planes: the star toolkit's pool (the frame units give back what the toolkit took). */
const planes = starPlanes;

/** `registration:relative`: its options parsed by `relativeOptionsSchema` when the stage is planned. */
export const relativeRegistration: RegistrationProvider<RelativeOptions> = {
  optionsSchema: relativeOptionsSchema,
  register: registerRelative,
};

export async function registerRelative(input: RegistrationInput<RelativeOptions>, ctx: EngineContext): Promise<RegistrationResult> {
  const opts = input.options;
  const model = opts.transform ?? "similarity";
  if (input.frames.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: "frames", reason: "no frames to register" });
  try {
    return await withExecutor(ctx, (executor) => registerWith(input, ctx, executor, model, opts));
  } finally {
    planes.clear(); // nothing idle held for the stages after this one
  }
}

async function registerWith(
  input: RegistrationInput<RelativeOptions>,
  ctx: EngineContext,
  executor: Executor,
  model: TransformModel,
  opts: RelativeOptions,
): Promise<RegistrationResult> {
  const interpolation = opts.interpolation ?? "lanczos3";
  const threshold = opts.threshold ?? 5;
  const recon = loadRecon();
  const frames = input.frames;
  const inFlight = await framesInFlight(frames, ctx.runtime.memoryBudgetBytes);

  // The reference is known before any frame is read (an index, a path, or the reference an earlier run
  // into the same folder recorded): one pass, every frame read once by its frame unit — its stars
  // detected, matched and the same decoded image warped. With `auto` the reference is the best frame, so
  // every frame's stars are measured first (pass 1, star-list units) and each frame is read again by its
  // frame unit (pass 2).
  let known = knownReference(input);
  const found: (FrameStarsWire | undefined)[] = new Array(frames.length);
  let size: { width: number; height: number } | undefined;
  /** The reference (or the size most frames have) fixes the grid; a frame of another size is a per-frame error. */
  const sized = (w: FrameStarsWire): FrameStarsWire => {
    if (w.error || w.width === undefined || w.height === undefined) return w;
    size ??= { width: w.width, height: w.height };
    return ofSize(w, size);
  };
  let refIndex: number;
  let referenceReason = "";
  if (known !== undefined) {
    // Measured here and read again by its frame unit: one extra read per run.
    found[known] = sized(await measureFrame(recon, frames[known]!, ctx.signal, threshold));
    // An earlier run's reference that is no longer usable: `auto` picks the best frame instead.
    if (input.reference === "auto" && (found[known]!.error || found[known]!.xy.length < 6)) {
      found[known] = undefined;
      known = undefined;
    }
  }
  const starCount = (w: FrameStarsWire | undefined) => (w ? w.xy.length >> 1 : 0);
  if (known !== undefined) {
    refIndex = chooseReference(
      { ...input, reference: known },
      frames.map((_, i) => (found[i] ? fromWire(found[i]!) : { quality: 0, stars: [] })),
    );
    referenceReason = input.reference !== "auto" ? "registration.reference" : "the reference of the earlier run into this folder";
  } else {
    const units: WorkUnit<unknown, FrameStarsWire>[] = frames.map((frame, i) => ({
      id: `stars/${i}`,
      task: starsTask as never,
      input: { frame, threshold },
    }));
    let i = 0;
    for await (const w of executor.run(units, {
      signal: ctx.signal,
      concurrency: inFlight,
      onUnitDone: (d) => ctx.progress((0.4 * d) / frames.length, "stars"),
    }))
      found[i++] = w;
    // The size most frames have fixes the grid (an odd first frame must not make every good frame "odd").
    const sizes = new Map<string, number>();
    for (const w of found)
      if (w && !w.error && w.width !== undefined) sizes.set(`${w.width}x${w.height}`, (sizes.get(`${w.width}x${w.height}`) ?? 0) + 1);
    const common = [...sizes.entries()].sort((a, b) => b[1] - a[1])[0];
    if (common) {
      const [cw, ch] = common[0].split("x").map(Number) as [number, number];
      size = { width: cw, height: ch };
    }
    for (let k = 0; k < found.length; k++) found[k] = sized(found[k]!);
    const fs = found.map((w) => fromWire(w!));
    refIndex = chooseReference(input, fs, (r) => {
      referenceReason = r;
    });
    // `auto` checks its choice against the set before any pixel is warped: it and the six best other
    // frames (no trailed ones) are matched with each other on their star lists alone; a frame's support
    // is how many of the others register onto it unmirrored. A reference with less support than another
    // of them is the odd one out (a mirrored frame, another field) and gives way to the best supported.
    if (input.reference === "auto") {
      const others = fs
        .map((f, k) => ({ f, k }))
        .filter(({ f, k }) => k !== refIndex && !f.error && f.stars.length >= 3 && !f.trail)
        .sort((x, y) => y.f.quality - x.f.quality || x.k - y.k)
        .slice(0, 6)
        .map(({ k }) => k);
      if (others.length >= 2) {
        const S = [refIndex, ...others];
        const onto = (o: number, c: number) => {
          const m = matchStars(fs[o]!.stars, fs[c]!.stars, { model: "similarity", tolerancePx: matchTolerance(fs[o]!.fwhm, fs[c]!.fwhm) });
          return m.ok && !describe(m.matrix).mirrored;
        };
        const support = S.map((c) => S.filter((o) => o !== c && onto(o, c)).length);
        let best = 0;
        for (let k = 1; k < S.length; k++) if (support[k]! > support[best]!) best = k;
        if (best !== 0) {
          ctx.logger.warn(
            `${basename(frames[refIndex]!.path)} would be the reference, but only ${support[0]} of the ${S.length - 1} best other frames register onto it unmirrored (${support[best]} onto ${basename(frames[S[best]!]!.path)}): set aside as the odd one out`,
          );
          referenceReason = `${referenceReason}; ${basename(frames[refIndex]!.path)} was set aside (only ${support[0]} of ${S.length - 1} frames registered onto it unmirrored), ${basename(frames[S[best]!]!.path)} taken (${support[best]} of ${S.length - 1})`;
          refIndex = S[best]!;
        }
      }
    }
  }
  const refPath = frames[refIndex]!.path;
  const ref = found[refIndex]!;
  ctx.logger.info(
    `registration reference: ${basename(refPath)} (${starCount(ref)} stars, FWHM ${ref.fwhm.toFixed(2)} px) — ${referenceReason}`,
  );

  // Pass 2: one unit per frame (frames whose pass-1 measurement failed are reported without one).
  await mkdir(input.outputDir, { recursive: true });
  const onePass = known !== undefined;
  const starsRef = await executor.share("registration.stars", {
    reference: ref,
    frames: onePass ? null : found.map((w) => w ?? null),
  } satisfies RegistrationStars);
  const out: RegisteredFrame[] = new Array(frames.length);
  const todo: number[] = [];
  for (let i = 0; i < frames.length; i++) {
    if (!onePass && found[i]?.error) out[i] = { input: frames[i]!.path, error: found[i]!.error! };
    else todo.push(i);
  }
  const p0 = onePass ? 0 : 0.4; // progress already spent on pass 1
  const units: WorkUnit<unknown, RegisterFrameResult>[] = todo.map((i) => ({
    id: `frame/${i}`,
    task: registerFrameTask as never,
    input: {
      index: i,
      frame: frames[i]!,
      stars: starsRef,
      measure: onePass,
      isReference: i === refIndex,
      threshold,
      size: size!,
      model,
      interpolation,
      debayer: opts.debayer ?? DEFAULT_DEBAYER,
      output: resolve(input.outputDir, formatFrameName(input.filenamePattern, i, frames[i]!.path)),
      ...(input.writeRegistered === false ? { write: false } : {}),
      referenceName: basename(refPath),
      referencePath: refPath,
      history: input.history,
    } satisfies RegisterFrameInput,
  }));
  let k = 0;
  for await (const r of executor.run(units, {
    signal: ctx.signal,
    concurrency: inFlight,
    onUnitDone: (d, total) => ctx.progress(p0 + ((1 - p0) * d) / total, "register"),
  })) {
    out[todo[k++]!] = r.entry;
    if (r.warning) ctx.logger.warn(r.warning);
    if (r.note) ctx.logger.info(r.note);
  }
  ctx.progress(1);
  return { reference: refPath, referenceReason, frames: out };
}
