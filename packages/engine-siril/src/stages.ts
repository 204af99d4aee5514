/**
 * The Siril stages behind tile-compile's stage contracts. Frames are linked (16-bit) or copied scaled to
 * [0, 1] (float: Siril reads float FITS as normalised data) into `<workdir>/input/f_00001.fit …`, Siril
 * works in `<workdir>/process`, and our code writes the final outputs (ADU, with our provenance keywords),
 * so the rest of the pipeline cannot tell which engine ran.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, statfs, symlink } from "node:fs/promises";
import { chooseAmong, chooseTransform, measureFromRegistered, parseSeq, seqFrameFigures } from "./seq.js";
import { basename, join, resolve } from "node:path";
import {
  combinedKeywords,
  formatFrameName,
  readFitsHeader,
  readFitsImage,
  TileCompileError,
  writeFitsImage,
  type EngineContext,
  type FrameRef,
  type RegisteredFrame,
  type RegistrationInput,
  type RegistrationResult,
  type StackingInput,
  type StackingResult,
  type FitsHeaderSummary,
  type FitsImage,
  filterFrames,
  type CalibrationInput,
  type CalibrationProvider,
  type CalibrationResult,
  type BackgroundOptions,
  type BackgroundProvider,
  type RegistrationOptions,
  type StackingOptions,
  type RegistrationProvider,
  type StackingProvider,
  refuseWarp,
  backgroundOptionsSchema,
  DEFAULT_REJECTION,
  registrationOptionsSchema,
  stackingOptionsSchema,
  masterHeader,
} from "@tile-compile/core";
import { locateSiril, PARTIAL_REGISTRATION, runSiril, type Siril } from "./siril.js";
import type { Command } from "./script.js";

/** Siril's float data are ADU / 65535. */
const ADU = 65535;

/** The engine's options block (`engine_options."@tile-compile/engine-siril"`). */
export interface SirilEngineOptions {
  /** siril-cli to run; default $SIRIL_CLI, then PATH. */
  path?: string;
  /** Stop a siril-cli run after this many seconds (default: no limit). */
  timeout_s?: number;
  /**
   * Siril's star detection for registration (`setfindstar`): detection threshold in σ above the
   * background (Siril's default 1.0) and the lowest roundness accepted (default 0.5). Raise `sigma` on
   * noisy frames where Siril finds noise, lower `roundness` for frames with elongated stars.
   */
  findstar?: { sigma?: number; roundness?: number };
}

/** What is wrong with an `engine_options.…findstar` value (empty when nothing). */
export function findstarIssues(f: unknown): string[] {
  if (typeof f !== "object" || f === null || Array.isArray(f)) return ["expected { sigma, roundness }"];
  const { sigma = 1, roundness = 0.5, ...rest } = f as Record<string, unknown>;
  const issues: string[] = [];
  if (Object.keys(rest).length)
    issues.push(`unknown key${Object.keys(rest).length > 1 ? "s" : ""} ${Object.keys(rest).join(", ")} (known: sigma, roundness)`);
  if (typeof sigma !== "number" || !(sigma > 0) || !Number.isFinite(sigma))
    issues.push(`sigma: a detection threshold in σ > 0, got ${JSON.stringify(sigma)}`);
  if (typeof roundness !== "number" || !(roundness >= 0 && roundness <= 1))
    issues.push(`roundness: a roundness between 0 and 1, got ${JSON.stringify(roundness)}`);
  return issues;
}

/** `engine_options.…findstar`, checked, with Siril's defaults (sigma 1, roundness 0.5) for what is not given. */
export function findstarOf(options: Record<string, unknown>): { sigma: number; roundness: number } | undefined {
  const f = options.findstar;
  if (f === undefined) return undefined;
  const issues = findstarIssues(f);
  if (issues.length)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: issues.map(
        (i) => `engine_options."@tile-compile/engine-siril".findstar${i.startsWith("sigma") || i.startsWith("roundness") ? "." : ": "}${i}`,
      ),
    });
  const { sigma = 1, roundness = 0.5 } = f as { sigma?: number; roundness?: number };
  return { sigma, roundness };
}

function siril(ctx: EngineContext): Siril {
  return locateSiril(typeof ctx.options.path === "string" ? ctx.options.path : undefined);
}

/** A fresh folder for one Siril run inside the stage's work folder (a stage may run Siril several times). */
function workdirOf(ctx: EngineContext): Promise<string> {
  ctx.signal.throwIfAborted();
  return mkdtemp(join(ctx.workdir, "siril-"));
}

/**
 * Run a script in `wd` with the engine options, progress and log wired up. A siril-cli killed by a signal
 * we did not send (1.0.6 aborts with SIGABRT when it cannot write, e.g. a full disk — seen in CI) is
 * retried once from a clean `process` folder with a warning; if it dies again the error says how much
 * space the work folder has left.
 */
async function run(
  s: Siril,
  ctx: EngineContext,
  wd: string,
  label: string,
  cmds: Command[],
  expect: string[],
  onLog?: (line: string) => void,
  allow?: readonly RegExp[],
): Promise<string[]> {
  const timeoutS = typeof ctx.options.timeout_s === "number" ? ctx.options.timeout_s : undefined;
  const once = () =>
    runSiril(s, cmds, {
      workdir: wd,
      signal: ctx.signal,
      expect,
      ...(timeoutS ? { timeoutS } : {}),
      ...(allow ? { allow: [...allow] } : {}),
      onProgress: (f) => ctx.progress(f, label),
      onLog: (l) => {
        onLog?.(l);
        ctx.logger.debug(`siril: ${l}`);
      },
    });
  try {
    return await once();
  } catch (e) {
    const sig =
      (e as { code?: string; details?: { signal?: string } }).code === "TC_TOOL_FAILED"
        ? (e as { details?: { signal?: string } }).details?.signal
        : undefined;
    if (!sig || ctx.signal.aborted) throw e;
    ctx.logger.warn(`siril-cli ${s.version} died of ${sig} during ${label}; running it once more`);
    await rm(join(wd, "process"), { recursive: true, force: true });
    await mkdir(join(wd, "process"), { recursive: true });
    try {
      return await once();
    } catch (e2) {
      if ((e2 as { code?: string }).code !== "TC_TOOL_FAILED" || ctx.signal.aborted) throw e2;
      const fs = await statfs(wd).catch(() => undefined);
      const free = fs ? `${((fs.bavail * fs.bsize) / 2 ** 30).toFixed(1)} GiB` : "unknown";
      throw new TileCompileError("TC_TOOL_FAILED", {
        ...(e2 as TileCompileError).details,
        hint: `siril-cli died of ${sig} twice during ${label}. Free space in ${wd}: ${free}; Siril 1.0.6 aborts when it cannot write its files.`,
      });
    }
  }
}

/** Link or copy the frames into `<workdir>/input` as f_00001.fit …; returns their headers. */
async function stageFrames(frames: FrameRef[], workdir: string, signal: AbortSignal): Promise<FitsHeaderSummary[]> {
  signal.throwIfAborted();
  const input = join(workdir, "input");
  await mkdir(input, { recursive: true });
  await mkdir(join(workdir, "process"), { recursive: true });
  const heads: FitsHeaderSummary[] = [];
  for (const [i, f] of frames.entries()) {
    signal.throwIfAborted();
    const h = await readFitsHeader(f.path);
    heads.push(h);
    const target = join(input, `f_${String(i + 1).padStart(5, "0")}.fit`);
    if (h.bitpix === 16 || h.bitpix === 8) await symlink(resolve(f.path), target);
    else await stageScaled(f.path, target, 1 / ADU, signal);
  }
  // Siril 1.0.6 makes no sequence of a single converted file ("No sequence f_ found"): a group of one
  // frame (a stray exposure, a master from one raw flat) is staged twice. Calibrating, combining or
  // stacking two copies of one frame gives that frame; only the first output is used.
  if (frames.length === 1) await symlink(join(input, "f_00001.fit"), join(input, "f_00002.fit"));
  return heads;
}

/** A float copy of `path` multiplied by `k`, for Siril (which reads float FITS as data in [0, 1]). */
async function stageScaled(path: string, target: string, k: number, signal: AbortSignal): Promise<void> {
  const img = await readFitsImage(path, { signal });
  await writeFitsImage(
    target,
    { width: img.width, height: img.height, channels: img.channels, data: img.data.map((v) => v * k) },
    { header: img.header.withoutStructure() },
  );
}

/** A constant image (a declared pedestal as a bias master Siril can subtract), in Siril's scale. */
async function stageConstant(like: string, target: string, adu: number, signal: AbortSignal): Promise<void> {
  const h = await readFitsHeader(like);
  await writeFitsImage(
    target,
    { width: h.width, height: h.height, channels: h.channels, data: new Float32Array(h.width * h.height * h.channels).fill(adu / ADU) },
    { signal },
  );
}

/** A Siril output in ADU: float results are ADU / 65535, 16-bit ones are ADU already. */
async function readResult(path: string, signal: AbortSignal): Promise<FitsImage> {
  const img = await readFitsImage(path, { signal });
  if ((await readFitsHeader(path)).bitpix < 0)
    img.data.forEach((v, i, d) => {
      d[i] = v * ADU;
    });
  return img;
}

const base = (): Command[] => [{ op: "requires" }, { op: "setext" }];
/** Convert the staged frames into a sequence `f_` in `<workdir>/process` and work there. */
const sequence = (workdir: string, debayer = false): Command[] => [
  { op: "cd", dir: join(workdir, "input") },
  { op: "convert", name: "f", out: join(workdir, "process"), ...(debayer ? { debayer } : {}) },
  { op: "cd", dir: join(workdir, "process") },
];

/**
 * The command list of each stage (pure: paths in, commands out), rendered per dialect by script.ts.
 * script.test.ts holds the golden text of every stage in every dialect.
 */
export const stageScripts = {
  master(workdir: string, kind: "bias" | "dark" | "flat", withBias: boolean, rejection: "winsorized" | "sigma" = "winsorized"): Command[] {
    const proc = join(workdir, "process");
    const cmds: Command[] = [...base(), ...sequence(workdir)];
    let seq = "f_";
    if (kind === "flat" && withBias) {
      cmds.push({ op: "calibrate", seq, bias: join(workdir, "masters", "mbias.fit") });
      seq = "pp_f_";
    }
    cmds.push(
      {
        op: "stack",
        seq,
        method: "rejection",
        rejection,
        sigma: [3, 3],
        normalization: kind === "flat" ? "multiplicative" : "none",
        out: join(proc, "master"),
      },
      { op: "close" },
    );
    return cmds;
  },
  calibrate(workdir: string, masters: { bias?: string; dark?: string; flat?: string }, optimizeDark: boolean): Command[] {
    return [
      ...base(),
      ...sequence(workdir),
      { op: "calibrate", seq: "f_", ...masters, ...(optimizeDark && masters.dark ? { optimizeDark: true } : {}) },
      { op: "close" },
    ];
  },
  register(
    workdir: string,
    reference: number,
    cfa: boolean,
    o: RegistrationOptions = {},
    findstar?: { sigma: number; roundness: number },
  ): Command[] {
    const reg: Command = { op: "register", seq: "f_" };
    if (o.transform) reg.transform = o.transform;
    if (o.interpolation) reg.interpolation = o.interpolation;
    return [
      ...base(),
      ...sequence(workdir, cfa),
      ...(findstar ? [{ op: "setfindstar", ...findstar } as Command] : []),
      { op: "setref", seq: "f_", index: reference + 1 },
      reg,
      { op: "close" },
    ];
  },
  background(workdir: string, degree: number): Command[] {
    return [...base(), ...sequence(workdir), { op: "subsky", seq: "f_", degree }, { op: "close" }];
  },
  stack(workdir: string, method: "mean" | "median" | "rejection", o: StackingOptions): Command[] {
    return [
      ...base(),
      ...sequence(workdir),
      {
        op: "stack",
        seq: "f_",
        method,
        rejection: o.rejection ?? DEFAULT_REJECTION,
        sigma: o.sigma ?? [3, 3],
        normalization: o.normalization ?? (method === "rejection" ? "additive" : "none"),
        weighted: o.weighting === "noise",
        out: join(workdir, "process", "result"),
      },
      { op: "close" },
    ];
  },
};

/** `stacking:mean|median|rejection` through Siril: options parsed by core's `stackingOptionsSchema`. */
export const sirilStacking: StackingProvider<StackingOptions> = { optionsSchema: stackingOptionsSchema, stack: (i, c) => sirilStack(i, c) };

export async function sirilStack(input: StackingInput<StackingOptions>, ctx: EngineContext): Promise<StackingResult> {
  refuseWarp(input, "Siril");
  if (input.options.drizzle)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: ["stacking.drizzle: the Siril engine does not drizzle here; use the built-in engine (stacking.engine: native)"],
    });
  const s = siril(ctx);
  const wd = await workdirOf(ctx);
  if (input.frames.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: "stacking", reason: "no frames to stack" });
  const o = input.options;
  if (input.rejectionMaps)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [
        `stacking.rejection_maps: Siril ${s.version} does not write rejection maps (1.2's -rejmaps is not wired yet); use the native engine or turn them off`,
      ],
    });
  if (o.normalization === "local")
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [
        `stacking.normalization: "local" is not available with Siril ${s.version} (use additive or additive_scaling, or the native engine)`,
      ],
    });
  if (o.weighting && !["none", "noise"].includes(o.weighting)) {
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`stacking.weighting: "${o.weighting}" is not available with Siril (use none or noise, or the native engine)`],
    });
  }
  // Frame filters are measured by our code (Siril 1.0.6 only filters on figures from its own `register`).
  const { frames, rejectedFrames } = await filterFrames(input.frames, o.frame_filters ?? {}, ctx);
  const heads = await stageFrames(frames, wd, ctx.signal);
  const method = input.method === "median" ? "median" : input.method === "mean" ? "mean" : "rejection";
  const result = join(wd, "process", "result");
  await run(s, ctx, wd, "siril stack", stageScripts.stack(wd, method, o), [`${result}.fit`]);
  const img = await readResult(`${result}.fit`, ctx.signal);
  const data = img.data;
  const header = heads[0]!.header.clone();
  for (const k of combinedKeywords(heads)) header.set(k.key, k.value, k.comment, k.float ? { numberFormat: "float" } : undefined);
  header.set("STACKMTH", input.method, "stacking method");
  header.set("SIRILVER", s.version, "Siril version that stacked the frames");
  await writeFitsImage(
    input.output,
    { width: img.width, height: img.height, channels: img.channels, data },
    { header, history: [...input.history, `Siril ${s.version}: stack ${method}`], signal: ctx.signal },
  );
  return {
    frameCount: frames.length,
    width: img.width,
    height: img.height,
    channels: img.channels,
    ...(rejectedFrames.length ? { rejectedFrames } : {}),
  };
}

/**
 * One transform as Siril 1.0 prints it (display coordinates, y down); `inferred` where the log lacked its
 * scale or rotation line (taken as 1 or 0).
 */
export interface SirilPrintedTransform {
  scale: number;
  rotationDeg: number;
  dx: number;
  dy: number;
  inferred?: boolean;
}

/**
 * Per-image transforms from Siril 1.0's registration log ("Matching stars in image N: done", then
 * scale/rotation/dx/dy), as candidate lists: one transform where the log is unambiguous, several where it
 * is not. Siril registers on several threads and each prints its lines separately, so two images' lines can
 * interleave ("Matching … image 4", "Matching … image 5", then 4's fields). Lines are grouped into
 * tangles — stretches in which some image has printed its "Matching" line but not yet its dy; an image is
 * certain when it is alone in its tangle. Otherwise its candidates are every combination of the values of
 * each field printed after its own "Matching" line within the tangle (its true values are among them; the
 * caller picks by reproducing Siril's registered frame). An image with more than 256 combinations gets no
 * candidates. Siril's log can also lose lines (seen: an image's scale and rotation lines): a transform
 * missing those is marked `inferred`, and an image whose lines are lost entirely gets no entry — the caller
 * then measures the transform from the registered frame.
 */
export function parseRegistrationLog(lines: string[]): Map<number, SirilPrintedTransform[]> {
  type Token = { image: number } | { field: "scale" | "rotation" | "dx" | "dy"; value: number };
  const out = new Map<number, SirilPrintedTransform[]>();
  const settle = (tangle: Token[]) => {
    const hasField = (f: string) => tangle.some((t) => "field" in t && t.field === f);
    for (const [p, t] of tangle.entries()) {
      if (!("image" in t)) continue;
      const after = tangle.slice(p + 1);
      const values = (f: string, fallback?: number) => {
        const v = [...new Set(after.flatMap((u) => ("field" in u && u.field === f ? [u.value] : [])))];
        return v.length ? v : !hasField(f) && fallback !== undefined ? [fallback] : [];
      };
      const [scale, rot, dx, dy] = [values("scale", 1), values("rotation", 0), values("dx"), values("dy")];
      if (scale.length * rot.length * dx.length * dy.length > 256) {
        out.set(t.image, []);
        continue;
      }
      // A scale or rotation line missing from the stretch (Siril's log can drop lines) is taken as 1 or 0
      // and the transform marked inferred: it has to be confirmed against the registered frame.
      const inferred = !hasField("scale") || !hasField("rotation");
      const list: SirilPrintedTransform[] = [];
      for (const s of scale)
        for (const r of rot)
          for (const x of dx)
            for (const y of dy) list.push({ scale: s, rotationDeg: r, dx: x, dy: y, ...(inferred ? { inferred: true } : {}) });
      out.set(t.image, list);
    }
  };
  let tangle: Token[] = [];
  let open = 0;
  for (const raw of lines) {
    const l = raw.replace(/^log:\s*/, "");
    const im = /Matching stars in image (\d+)/.exec(l);
    if (im) {
      tangle.push({ image: Number(im[1]) });
      open++;
      continue;
    }
    const m = /^(scale|rotation|dx|dy):\s*([+-]?[\d.]+)/.exec(l);
    if (!m || open === 0) continue;
    tangle.push({ field: m[1] as "scale" | "rotation" | "dx" | "dy", value: Number(m[2]) });
    if (m[1] === "dy" && --open === 0) {
      settle(tangle);
      tangle = [];
    }
  }
  if (tangle.length) settle(tangle);
  return out;
}

/** `registration:siril`: `registration.transform` and `.interpolation` parsed by core's `registrationOptionsSchema`. */
export const sirilRegistration: RegistrationProvider<RegistrationOptions> = {
  optionsSchema: registrationOptionsSchema,
  register: (i, c) => sirilRegister(i, c),
};

export async function sirilRegister(input: RegistrationInput<RegistrationOptions>, ctx: EngineContext): Promise<RegistrationResult> {
  const s = siril(ctx);
  const wd = await workdirOf(ctx);
  const frames = input.frames;
  if (frames.length === 1) {
    // One frame is its own reference: the identity, written under its registered name (no Siril run).
    const output = resolve(input.outputDir, formatFrameName(input.filenamePattern, 0, frames[0]!.path));
    const img = await readFitsImage(frames[0]!.path, { signal: ctx.signal });
    await mkdir(input.outputDir, { recursive: true });
    const header = img.header.withoutStructure();
    header.set("REGREF", basename(frames[0]!.path), "registration reference frame (itself: a group of one)");
    await writeFitsImage(
      output,
      { width: img.width, height: img.height, channels: img.channels, data: img.data },
      { header, history: [...input.history, "registered: a group of one frame is its own reference"], signal: ctx.signal },
    );
    return { reference: frames[0]!.path, frames: [{ input: frames[0]!.path, output, matrix: [1, 0, 0, 0, 1, 0, 0, 0, 1], rmsPx: 0 }] };
  }
  const heads = await stageFrames(frames, wd, ctx.signal);
  const ref =
    typeof input.reference === "number"
      ? input.reference
      : input.reference === "auto"
        ? 0
        : Math.max(
            0,
            frames.findIndex((f) => resolve(f.path) === resolve(String(input.reference))),
          );
  const cfa = heads[0]!.channels === 1 && typeof heads[0]!.header.get("BAYERPAT") === "string";
  const proc = join(wd, "process");
  const log: string[] = [];
  const o = input.options;
  if (s.dialect === "1.0" && o.interpolation && o.interpolation !== "bilinear")
    ctx.logger.warn(
      `Siril ${s.version} resamples registered frames bilinearly; registration.interpolation: ${o.interpolation} applies from Siril 1.2`,
    );
  if (s.dialect === "1.0" && (o.transform === "affine" || o.transform === "homography"))
    ctx.logger.warn(
      `Siril ${s.version} prints its transforms as scale, rotation and shift only; transforms.json holds that similarity (the r_ frames use Siril's full ${o.transform})`,
    );
  // Frames Siril skips are per-frame errors below (no transform for them), not a failed stage.
  const findstar = findstarOf(ctx.options);
  try {
    await run(s, ctx, wd, "siril register", stageScripts.register(wd, ref, cfa, o, findstar), [], (l) => log.push(l), PARTIAL_REGISTRATION);
  } catch (e) {
    // Too few stars in the reference: a user's first move is a lower detection threshold; tried once, said.
    const few = /not enough stars in reference image|Less than two stars were found in the reference/i;
    if (!(log.some((l) => few.test(l)) || few.test((e as Error).message))) throw e;
    const lower = { sigma: Number(((findstar?.sigma ?? 1) / 2).toFixed(3)), roundness: findstar?.roundness ?? 0.5 };
    ctx.logger.warn(
      `Siril found too few stars in the reference frame ${basename(frames[ref]!.path)} at setfindstar sigma ${findstar?.sigma ?? 1}: retrying once at sigma ${lower.sigma} (engine_options."@tile-compile/engine-siril".findstar sets it)`,
    );
    log.length = 0;
    await run(
      s,
      ctx,
      wd,
      "siril register (lower star threshold)",
      stageScripts.register(wd, ref, cfa, o, lower),
      [],
      (l) => log.push(l),
      PARTIAL_REGISTRATION,
    );
  }
  // Per input frame: Siril's registered file and our input → reference matrix, or why there is none.
  const found: ({ rpath: string; matrix: number[] } | { error: string })[] = [];
  // One plane (green of a colour frame) of an f_ or r_ file, for matching a transform to Siril's output.
  const plane = async (p: string) => {
    const img = await readFitsImage(p, { signal: ctx.signal });
    const c = img.channels === 3 ? 1 : 0,
      n = img.width * img.height;
    return { data: img.data.subarray(c * n, (c + 1) * n), width: img.width, height: img.height };
  };
  if (s.dialect === "1.0") {
    // 1.0 prints each transform in its log and writes an r_ frame for each frame it registered. Siril works in display coordinates (y down, origin at the top left) and prints the map as
    // p' = s·R(−θ)·p − (dx, dy); in FITS coordinates (y up, y_d = H − 1 − y) that is
    // [c, −s; s, c]·p + (s·sinθ·(H − 1) − dx, −(s·cosθ − 1)·(H − 1) + dy), checked against our own
    // registration on frames with known shifts and rotations (siril.test.ts).
    // The r_ files keep the input's number (with frame 3 skipped 1.0.6 writes r_f_00001, 00002, 00004, and
    // r_f_.seq lists those numbers). Which printed transform is whose: parseRegistrationLog.
    const transforms = parseRegistrationLog(log);
    const rseq = existsSync(join(proc, "r_f_.seq")) ? parseSeq(await readFile(join(proc, "r_f_.seq"), "utf8")) : undefined;
    for (const [i] of frames.entries()) {
      // Frame i is image i + 1 of the f_ sequence, and Siril 1.0.6 writes its r_ file under that number.
      const num = i + 1,
        name = String(num).padStart(5, "0");
      const printed = i === ref ? [{ scale: 1, rotationDeg: 0, dx: 0, dy: 0 }] : transforms.get(num);
      const rpath = join(proc, `r_f_${name}.fit`);
      const hasR = rseq ? rseq.images.some((im) => im.filenum === num) && existsSync(rpath) : existsSync(rpath);
      if (!printed && !hasR) {
        found.push({ error: "Siril could not register this frame (see the log)" });
        continue;
      }
      if (!hasR) {
        found.push({ error: "Siril registered this frame but wrote no r_ file for it" });
        continue;
      }
      const h1 = heads[i]!.height - 1;
      const toMatrix = (t: SirilPrintedTransform) => {
        const th = (t.rotationDeg * Math.PI) / 180,
          c = t.scale * Math.cos(th),
          sn = t.scale * Math.sin(th);
        return [c, -sn, sn * h1 - t.dx, sn, c, -(c - 1) * h1 + t.dy, 0, 0, 1];
      };
      if (printed?.length === 1 && !printed[0]!.inferred) {
        found.push({ rpath, matrix: toMatrix(printed[0]!) });
        continue;
      }
      // Siril's threads interleaved this frame's lines with another frame's: keep the printed transform
      // that reproduces its registered frame. Where none does, or the log lost the frame's lines, measure
      // the transform from Siril's registered frame itself (stars matched); else refuse the frame.
      const fpath = join(proc, `f_${name}.fit`),
        fPlane = await plane(fpath),
        rPlane = await plane(rpath);
      // (One inferred candidate is not chosen "among" anything: it goes to the measurement below.)
      const chosen = printed && printed.length > 1 ? await chooseAmong(printed.map(toMatrix), fPlane, rPlane, ctx.signal) : undefined;
      if (chosen) {
        ctx.logger.debug(
          `Siril's log interleaved image ${num}'s transform with another's; of ${printed!.length} candidates the one reproducing r_f_${name}.fit was kept (RMS ${chosen.rms.toPrecision(3)} vs ${chosen.runnerUp.toPrecision(3)})`,
        );
        found.push({ rpath, matrix: chosen.matrix });
        continue;
      }
      const measured = await measureFromRegistered(fpath, rpath, fPlane, rPlane, ctx.signal);
      if (!measured) {
        found.push({
          error: `Siril registered this frame, but its log ${printed?.length ? `interleaves its transform with other frames' (${printed.length} candidates, none reproducing r_f_${name}.fit clearly)` : "gives no transform for it"} and matching its stars to r_f_${name}.fit did not give one either`,
        });
        continue;
      }
      ctx.logger.info(
        `Siril's log ${printed?.length ? "interleaves" : "lost"} image ${num}'s transform; measured from its registered frame r_f_${name}.fit instead (${measured.pairs} stars matched, ${measured.rmsPx.toFixed(3)} px RMS)`,
      );
      found.push({ rpath, matrix: measured.matrix });
    }
  } else {
    // 1.2+: homographies in f_.seq, registered files listed (in order of the included images) in r_f_.seq;
    // each H is turned into our matrix by reproducing Siril's registered frame (seq.ts).
    const seq = parseSeq(await readFile(join(proc, "f_.seq"), "utf8"));
    const rseq = parseSeq(await readFile(join(proc, "r_f_.seq"), "utf8"));
    let k = 0;
    for (const [i] of frames.entries()) {
      const im = seq.images[i];
      if (!im?.included || !im.H) {
        found.push({ error: "Siril could not register this frame (see the log)" });
        continue;
      }
      const rnum = rseq.images[k++]?.filenum;
      if (rnum === undefined) {
        found.push({ error: "Siril registered this frame but wrote no r_ file for it" });
        continue;
      }
      const rpath = join(proc, `r_f_${String(rnum).padStart(5, "0")}.fit`);
      const chosen = await chooseTransform(
        im.H,
        await plane(join(proc, `f_${String(im.filenum).padStart(5, "0")}.fit`)),
        await plane(rpath),
        ctx.signal,
      );
      if (!chosen) {
        found.push({
          error: `Siril's transform for this frame could not be matched to its registered frame (H = ${im.H.map((v) => v.toPrecision(6)).join(" ")})`,
        });
        continue;
      }
      found.push({ rpath, matrix: chosen.matrix });
    }
  }
  await mkdir(input.outputDir, { recursive: true });
  // Siril's own star figures per frame (run.json, the run report), where its sequence file has them.
  const figures = existsSync(join(proc, "f_.seq")) ? seqFrameFigures(await readFile(join(proc, "f_.seq"), "utf8")) : [];
  const metrics = (i: number): Partial<RegisteredFrame> => {
    const g = figures[i];
    // FWHM and roundness only: the units of Siril's background and star fields were not checked here.
    return g ? { fwhmPx: g.fwhm, roundness: g.roundness } : {};
  };
  const out: RegisteredFrame[] = [];
  for (const [i, f] of frames.entries()) {
    const r = found[i]!;
    if ("error" in r) {
      out.push({ input: f.path, error: r.error, ...metrics(i) });
      continue;
    }
    const img = await readResult(r.rpath, ctx.signal);
    const output = resolve(input.outputDir, formatFrameName(input.filenamePattern, i, f.path));
    const header = img.header.withoutStructure();
    // Siril stamps its r_ files with the wall-clock DATE of writing them: not carried (same inputs, same bytes).
    header.delete("DATE");
    header.set("REGREF", basename(frames[ref]!.path), "registration reference frame (Siril)");
    await writeFitsImage(
      output,
      { width: img.width, height: img.height, channels: img.channels, data: img.data },
      { header, history: [...input.history, `registered by Siril ${s.version}`], signal: ctx.signal },
    );
    out.push({ input: f.path, output, matrix: r.matrix, ...metrics(i) });
  }
  return { reference: frames[ref]!.path, frames: out };
}

/**
 * Master building and light calibration through Siril, as a 1.0–1.4 user scripts them: bias and darks
 * `stack … rej w 3 3 -nonorm`; flats `preprocess -bias=` then `stack pp_ … rej w 3 3 -norm=mul`; lights
 * `preprocess -dark= -flat=` (1.2+: `calibrate`). Our masters are float ADU (flats normalised to mean 1),
 * so each is staged as a Siril-scaled copy; the results are written by our code in our conventions (master
 * header from `masterHeader`, flats normalised to mean 1, calibrated lights in ADU with CALSTAT), so the
 * native and Siril calibration engines can read each other's masters.
 *
 * What differs from `calibration:native`: Siril 1.0.6 corrects hot pixels automatically whenever a dark is
 * given (our `cosmetic: false` cannot switch that off) and finds them with its own detector; its dark
 * optimisation (`darkScaling: true` → `-opt`) minimises noise rather than scaling by exposure time.
 */
export const sirilCalibration: CalibrationProvider = {
  async buildMaster(input, ctx) {
    const s = siril(ctx);
    const wd = await workdirOf(ctx);
    if (input.frames.length === 0)
      throw new TileCompileError("TC_INPUT_INVALID", { input: input.output, reason: "no raw frames to build it from" });
    const heads = await stageFrames(input.frames, wd, ctx.signal);
    const proc = join(wd, "process");
    const result = join(proc, "master");
    const pedestal = input.options.pedestal;
    const withBias = input.kind === "flat" && (!!input.masterBias || pedestal !== undefined);
    if (withBias) {
      await mkdir(join(wd, "masters"), { recursive: true });
      if (input.masterBias) await stageScaled(input.masterBias, join(wd, "masters", "mbias.fit"), 1 / ADU, ctx.signal);
      else await stageConstant(input.frames[0]!.path, join(wd, "masters", "mbias.fit"), pedestal!, ctx.signal);
    }
    await run(
      s,
      ctx,
      wd,
      `siril ${input.kind} master`,
      stageScripts.master(wd, input.kind, withBias, input.options.rejection === "sigma" ? "sigma" : "winsorized"),
      [`${result}.fit`],
    );
    const img = await readResult(`${result}.fit`, ctx.signal);
    if (input.kind === "flat") {
      let sum = 0,
        n = 0;
      for (const v of img.data)
        if (Number.isFinite(v)) {
          sum += v;
          n++;
        }
      const mean = sum / n;
      if (!(mean > 0))
        throw new TileCompileError("TC_INPUT_INVALID", { input: input.output, reason: `the master flat's mean ${mean} is not positive` });
      img.data.forEach((v, i, d) => {
        d[i] = v / mean;
      });
    }
    const o = input.options;
    const header = masterHeader(
      input.kind,
      heads.map((h) => h.header),
      { recipeHash: String(o.recipeHash ?? ""), ...(typeof o.inputHash === "string" ? { inputHash: o.inputHash } : {}) },
    );
    header.set("SIRILVER", s.version, "Siril version that combined the frames");
    await writeFitsImage(
      input.output,
      { width: img.width, height: img.height, channels: img.channels, data: img.data },
      {
        header,
        history: [
          ...input.history,
          `${input.kind} master by Siril ${s.version}: ${input.options.rejection === "sigma" ? "sigma" : "winsorized sigma"} rejection 3,3${input.kind === "flat" ? ", bias-subtracted, multiplicative normalisation" : ""}`,
          `inputs: ${input.frames
            .map((f) => basename(f.path))
            .join(", ")
            .slice(0, 2000)}`,
        ],
        signal: ctx.signal,
      },
    );
    return { output: input.output, frameCount: input.frames.length };
  },

  async calibrate(input: CalibrationInput, ctx: EngineContext): Promise<CalibrationResult> {
    const s = siril(ctx);
    const wd = await workdirOf(ctx);
    if (input.frames.length === 0) return { frames: [] };
    const heads = await stageFrames(input.frames, wd, ctx.signal);
    const masters = join(wd, "masters");
    await mkdir(masters, { recursive: true });
    const darkScaling = input.options.darkScaling ?? false;
    const staged: { bias?: string; dark?: string; flat?: string } = {};
    if (input.masterDark) await stageScaled(input.masterDark, (staged.dark = join(masters, "dark.fit")), 1 / ADU, ctx.signal);
    if (input.masterBias && (!input.masterDark || darkScaling))
      await stageScaled(input.masterBias, (staged.bias = join(masters, "bias.fit")), 1 / ADU, ctx.signal);
    else if (!input.masterDark && input.options.pedestal !== undefined)
      await stageConstant(input.frames[0]!.path, (staged.bias = join(masters, "bias.fit")), input.options.pedestal, ctx.signal);
    // Siril divides by the flat and multiplies by the flat's mean, so its scale does not matter; half of
    // our mean-1 master keeps it inside [0, 1].
    if (input.masterFlat) await stageScaled(input.masterFlat, (staged.flat = join(masters, "flat.fit")), 0.5, ctx.signal);
    const n = input.frames.length;
    const outs = input.frames.map((_, i) => join(wd, "process", `pp_f_${String(i + 1).padStart(5, "0")}.fit`));
    let norm: number | undefined;
    await run(s, ctx, wd, "siril calibrate", stageScripts.calibrate(wd, staged, darkScaling), outs, (l) => {
      const m = /Normalisation value auto evaluated: ([\d.]+)/.exec(l);
      if (m) norm = Number(m[1]);
    });
    // Siril multiplies by its own flat level N (logged with 3 decimals; in 1.0.6 it is not the plain mean
    // of the flat: 0.549 for a flat of mean 0.5); our convention is light / (flat of mean 1), so × 0.5 / N.
    const flatScale = staged.flat ? 0.5 / (norm ?? 0.5) : 1;
    await mkdir(input.outputDir, { recursive: true });
    const frames: CalibrationResult["frames"] = [];
    for (const [i, f] of input.frames.entries()) {
      const img = await readResult(outs[i]!, ctx.signal);
      if (flatScale !== 1)
        img.data.forEach((v, k, d) => {
          d[k] = v * flatScale;
        });
      const header = heads[i]!.header.withoutStructure();
      header.set(
        "CALSTAT",
        [staged.bias || staged.dark ? "B" : "", staged.dark ? "D" : "", staged.flat ? "F" : ""].join(""),
        "calibration applied (B bias, D dark, F flat)",
      );
      const output = join(input.outputDir, basename(f.path).replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, ".fit"));
      await writeFitsImage(
        output,
        { width: img.width, height: img.height, channels: img.channels, data: img.data },
        {
          header,
          history: [
            ...input.history,
            `calibrated by Siril ${s.version}: ${[staged.dark ? "dark" : staged.bias ? "bias" : "", staged.flat ? "flat" : "", staged.dark ? "hot-pixel correction" : ""].filter(Boolean).join(", ")}`,
          ],
          signal: ctx.signal,
        },
      );
      frames.push({ input: f.path, output });
      ctx.progress((i + 1) / n, basename(f.path));
    }
    return { frames };
  },
};

/**
 * `background:polynomial` through Siril's `seqsubsky` (degree 1–4; Siril places its own samples, so
 * `background.grid` does not apply). Works on frames and on stacks (a one-image sequence).
 */
export const sirilBackground: BackgroundProvider<BackgroundOptions> = {
  optionsSchema: backgroundOptionsSchema,
  async extract(input, ctx) {
    const s = siril(ctx);
    const wd = await workdirOf(ctx);
    const degree = input.options.degree ?? 2;
    if (!(Number.isInteger(degree) && degree >= 1 && degree <= 4))
      throw new TileCompileError("TC_CONFIG_INVALID", {
        file: "tile_compile.yaml",
        issues: [`background.degree: Siril's seqsubsky takes 1–4, got ${degree}`],
      });
    const heads = await stageFrames(input.images, wd, ctx.signal);
    const outs = input.images.map((_, i) => join(wd, "process", `bkg_f_${String(i + 1).padStart(5, "0")}.fit`));
    await run(s, ctx, wd, "siril seqsubsky", stageScripts.background(wd, degree), outs);
    for (const [i, f] of input.images.entries()) {
      const img = await readResult(outs[i]!, ctx.signal);
      await writeFitsImage(
        input.outputs[i]!,
        { width: img.width, height: img.height, channels: img.channels, data: img.data },
        {
          header: heads[i]!.header.withoutStructure(),
          history: [...input.history, `background extracted by Siril ${s.version}: seqsubsky degree ${degree}`],
          signal: ctx.signal,
        },
      );
      ctx.progress((i + 1) / input.images.length, basename(f.path));
    }
    return { outputs: input.outputs };
  },
};
