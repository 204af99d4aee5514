/**
 * Stage contracts: what an engine provides and what the runner hands it.
 *
 * Lifecycle. The CLI loads the engines named in tile_compile.yaml, registers them (built-ins first,
 * through the same `defineEngine` path as third parties), makes a plan from the configuration — this
 * is where capabilities are checked, before any pixel is read — and freezes the registry. The runner
 * then calls one provider per stage.
 *
 * Execution kinds (STYLE.md §3):
 * - Stage providers (`calibration`, `registration`, `stacking`, `composition`, `stretch`) are
 *   **exclusive**: exactly one provider is selected per stage, by `stage:method` capability.
 * - Observers (`onFrameDone`, `onStageDone`) are **parallel**: every engine's observer is called, never
 *   awaited for a result; an observer that throws is logged and ignored.
 *
 * Mutability. Inputs are read-only. Providers write only to the paths the runner gives them (output
 * paths are temporary paths the runner renames into place when the provider resolves) and under
 * `ctx.workdir`. Every provider call is `(input, ctx) => Promise<output>` and must reject with an
 * `AbortError` promptly once `ctx.signal` aborts.
 *
 * Units and conventions: images are Float32Array planes in ADU (not normalised), row-major, x along
 * NAXIS1, 0-based pixel centres; invalid pixels are NaN. Times in seconds, temperatures in °C.
 */

import type { WarpPlan } from "../registration/warp.js";
import type { Executor, Task } from "../executor/contracts.js";
import type { MasterRejection } from "../config/schema.js";

/** The stages of the pipeline that engines can provide. */
export type StageName = "calibration" | "background" | "registration" | "stacking" | "composition" | "stretch";
export const STAGE_NAMES: readonly StageName[] = ["calibration", "background", "registration", "stacking", "composition", "stretch"];

/** `stage:method`, e.g. `stacking:mean`, `registration:wcs_anchor`, `composition:SHO`. */
export type CapabilityId = `${StageName}:${string}`;

/** `stable` is silent; `experimental` and `deprecated` make the planner warn. */
export type Stability = "stable" | "experimental" | "deprecated";

/** The engine API version this core speaks. Engines declare it in `meta.apiVersion`. */
export const ENGINE_API_VERSION = 1;
export const SUPPORTED_API_VERSIONS: readonly number[] = [1];

export interface EngineMeta {
  /** npm package name (official engines: `@tile-compile/…`). */
  name: string;
  /** The package version; recorded in provenance as `name@version`. */
  version: string;
  /** Engine API version; must be one of SUPPORTED_API_VERSIONS. */
  apiVersion: number;
  description?: string;
}

export interface Logger {
  debug(message: string, data?: Record<string, unknown>): void;
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/** Run-time limits from `runtime:` of tile_compile.yaml. */
export interface RuntimeLimits {
  /** Worker threads an engine may use. */
  threads: number;
  /** Bytes of pixel data an engine may hold at once. */
  memoryBudgetBytes: number;
}

/** What every provider call receives besides its input. */
export interface EngineContext {
  /** Aborts on cancel (SIGINT) or stage timeout. Check it between frames and tiles. */
  signal: AbortSignal;
  logger: Logger;
  /** Report progress in [0, 1] with an optional short note; cheap, call it freely. */
  progress(fraction: number, note?: string): void;
  /** A folder private to this stage run for temporary files. */
  workdir: string;
  /** This engine's own options block from tile_compile.yaml (`engine_options.<name>`), validated. */
  options: Record<string, unknown>;
  runtime: RuntimeLimits;
  /**
   * Runs the stage's work units (`runtime.executor`): this process, or workers over a broker. The kernel's
   * runner (and the conformance kit) always supply one; it is optional only for callers that invoke an
   * engine function directly, which `withExecutor(ctx, …)` serves with a local executor.
   */
  executor?: Executor;
}

/** A frame on disk. Pixel data is never passed between stages in memory. */
export interface FrameRef {
  path: string;
  /** HDU index; default: the file's image HDU. */
  hdu?: number;
}

// ── stacking ────────────────────────────────────────────────────────────────────────────────────────

/** A stage's options when its provider declares no schema: the stage block of tile_compile.yaml. */
export type StageOptions = Record<string, unknown>;

/**
 * What a provider may declare about its options: a schema (Standard Schema v1 — zod, valibot, …). The
 * kernel validates the stage's options with it when it plans the stage (a mismatch is a configuration
 * error naming the field) and hands the provider the parsed value, typed `O`.
 */
export interface TypedOptions<O> {
  optionsSchema?: OptionsSchema<O>;
}

export interface StackingInput<O = StageOptions> {
  frames: FrameRef[];
  /** Where to write the stacked FITS image. A temporary path; the runner moves it into place. */
  output: string;
  /** The method id this provider was selected for (`mean`, `median`, `rejection`, `tbqr`, …). */
  method: string;
  /** Method options from the `stacking:` block (rejection, sigma, normalization, weights, …), parsed by the provider's schema. */
  options: O;
  /** Provenance lines the provider must add as FITS HISTORY (engine@version, options hash). */
  history: string[];
  /**
   * When set (`stacking.rejection_maps: true`), also write per-pixel counts of the values rejected below
   * and above, as 16-bit images of the stack's shape (temporary paths, like `output`).
   */
  rejectionMaps?: { low: string; high: string };
  /**
   * The fused path (`registration.write_registered: false`, `tile-compile stack --transforms`): `frames` are
   * the calibrated, unregistered frames and this says how each is warped onto the reference grid; the
   * provider warps the rows it reads (core's readWarpedBand) and never writes registered frames. A provider
   * that cannot must refuse (core's refuseWarp); the pipeline and `stack --transforms` only hand it to the
   * built-in mean/median/rejection stacker.
   */
  warp?: WarpPlan;
  /** With `stacking.drizzle`: also write the coverage map (summed drop weight × area per output pixel) here (a temporary path, like `output`). */
  coverageMap?: string;
}

/** What a drizzled stack reports (run.json, the run report). */
export interface DrizzleSummary {
  scale: number;
  pixfrac: number;
  kernel: "square" | "point";
  /** Bayer drizzle (photosites into their colour planes, no demosaic). */
  cfa: boolean;
  /** Output pixel values no drop reached (NaN in the stack). */
  emptyPixels: number;
  /** Input values left out against the 1× stack (rejection), when there was one. */
  rejectedValues?: number;
  /** Median star FWHM in input pixels: of the 1× stack of the same frames (when it was made, for the rejection) and of the drizzled stack. */
  fwhmPx?: { oneX?: number; drizzled: number };
  /** Input pixel scale (″/px) from the header (CDELT/CD, or XPIXSZ and FOCALLEN), when known. */
  arcsecPerPixel?: number;
  /** The coverage map written beside the stack (set by the pipeline). */
  coverage?: string;
}

export interface StackingResult {
  frameCount: number;
  width: number;
  height: number;
  channels: number;
  /** Frames left out, each with the reason. */
  rejectedFrames?: { path: string; reason: string }[];
  /**
   * The weight each combined frame had, relative to the mean weight (1 = average), when the method
   * weights frames (stacking.weighting, TBQR's global weights); absent for equal weights.
   */
  frameWeights?: { path: string; weight: number }[];
  /** Percent of the pixel values rejected below and above, when the method rejects pixels. */
  rejectedPercent?: { low: number; high: number };
  /** TBQR's own report (mode, tile grid, validation figures, tile-weight map), when the method is tbqr. */
  tbqr?: TbqrSummary;
  /** With `stacking.drizzle`: its settings and what came of them. */
  drizzle?: DrizzleSummary;
}

/** What a TBQR reconstruction reports about itself (run.json, the run report). */
export interface TbqrSummary {
  mode: string;
  tiles: number;
  fallbackTiles: number;
  /** Tile size and step (px). */
  tileSize: number;
  tileStep: number;
  validation: {
    fwhmTbqr: number;
    fwhmMean: number;
    fwhmImprovement: number;
    /** Stars measured in both stacks (the same isolated point sources); absent in older run.json files. */
    fwhmStars?: number;
    /** Background noise over the plain mean's: the noisiest channel (judged by the rule), and each channel. */
    noiseRatio: number;
    noiseRatios?: number[];
    tileWeightVariance: number;
    seamWorstRatio: number;
    seamP95Ratio: number;
    passed: boolean;
    failures: string[];
  };
  /**
   * Per tile (row-major, `columns` × `rows`), the spread of the effective weights across frames: the
   * highest frame weight over the mean (1 = all frames equal in that tile).
   */
  weightMap: { columns: number; rows: number; values: number[] };
}

export interface StackingProvider<O = StageOptions> extends TypedOptions<O> {
  stack(input: StackingInput<O>, ctx: EngineContext): Promise<StackingResult>;
}

// ── registration ────────────────────────────────────────────────────────────────────────────────────

export interface RegistrationInput<O = StageOptions> {
  frames: FrameRef[];
  /** `auto`, a 0-based frame index, or a path. */
  reference: "auto" | number | string;
  outputDir: string;
  /** e.g. `reg_{index:05d}.fit`. */
  filenamePattern: string;
  /** `registration.transform`, `registration.interpolation`, parsed by the provider's schema. */
  options: O;
  history: string[];
  /**
   * false (`registration.write_registered: false`, the fused path): measure each frame's transform only —
   * no registered frame is written, and a registered frame is one with a `matrix` and no `error`. The
   * pipeline asks it of the built-in relative registration only (other engines are refused at plan time).
   */
  writeRegistered?: boolean;
}

export interface RegisteredFrame {
  input: string;
  /** Registered frame; absent when registration failed, or when registered frames were not asked for (writeRegistered: false). */
  output?: string;
  /** Row-major 3×3 H mapping (x, y, 1) of the input frame to the reference frame, 0-based pixel centres. */
  matrix?: number[];
  /** RMS and median distance (px) between the frame's transformed stars and their reference partners. */
  rmsPx?: number;
  medianPx?: number;
  /** Stars matched to the reference (all detected stars for the reference itself). */
  stars?: number;
  // Frame figures measured on the way, when the engine measures them (the run report plots them).
  /** Median star FWHM (px). */
  fwhmPx?: number;
  /** Median star roundness, FWHM_minor / FWHM_major (1 = round). */
  roundness?: number;
  /** Median sky level and its noise σ (ADU). */
  background?: number;
  noise?: number;
  /** Stars detected in the frame. */
  detected?: number;
  /** Satellite or aircraft trails found (and kept out of the star list): Hough angle (°), distance from the origin (px), detections on it. */
  trails?: { thetaDeg: number; rhoPx: number; detections: number }[];
  error?: string;
}

export interface RegistrationResult {
  reference: string;
  /** Why this frame is the reference (`auto`'s choice and what it left out, or the configuration). */
  referenceReason?: string;
  frames: RegisteredFrame[];
}

export interface RegistrationProvider<O = StageOptions> extends TypedOptions<O> {
  register(input: RegistrationInput<O>, ctx: EngineContext): Promise<RegistrationResult>;
}

// ── calibration ─────────────────────────────────────────────────────────────────────────────────────

export interface CalibrationInput {
  frames: FrameRef[];
  masterBias?: string;
  masterDark?: string;
  masterFlat?: string;
  outputDir: string;
  options: CalibrationOptions;
  history: string[];
}

/** What the job's calibration asks of every light of a call (the kernel decides them per light group). */
export interface CalibrationOptions {
  /** Scale the dark by exposure ratio (the dark's exposure differs from the lights'; bias subtracted from both). Default false. */
  darkScaling?: boolean;
  /** Repair hot and cold pixels found in the masters (job option `cosmetic`, default true). */
  cosmetic?: boolean;
  /** A constant offset (ADU) to subtract when there is no bias or dark (`calibration.offset`). */
  pedestal?: number;
}

/** How a master is made (recorded in its header; the library's cache keys). */
export interface MasterOptions {
  /** The master's library name (default: the output's file name). */
  name?: string;
  /** Hash of the recipe (engine, rejection, offset, kind), recorded in the header for the library's cache. */
  recipeHash?: string;
  /** Hash of the raw frames' identities. */
  inputHash?: string;
  /** Pixel rejection of the master (`calibration.rejection`, default winsorized). */
  rejection?: MasterRejection;
  /** A flat's offset when it is a constant (pedestal) rather than a bias master. */
  pedestal?: number;
}

export interface CalibrationResult {
  frames: { input: string; output: string }[];
}

/** Master building and light calibration. Built-in `native` provider: see the calibration issue. */
export interface CalibrationProvider extends TypedOptions<StageOptions> {
  /** Combine raw bias/dark/flat frames into a master. */
  buildMaster?(
    input: {
      kind: "bias" | "dark" | "flat";
      frames: FrameRef[];
      output: string;
      masterBias?: string;
      options: MasterOptions;
      history: string[];
    },
    ctx: EngineContext,
  ): Promise<{ output: string; frameCount: number }>;
  calibrate(input: CalibrationInput, ctx: EngineContext): Promise<CalibrationResult>;
}

// ── background extraction ───────────────────────────────────────────────────────────────────────────

export interface BackgroundInput<O = StageOptions> {
  /** Images (calibrated frames or stacks) to flatten; `outputs[i]` receives the result for `images[i]`. */
  images: FrameRef[];
  outputs: string[];
  /** `background.*` of tile_compile.yaml (degree, grid, …), parsed by the provider's schema. */
  options: O;
  history: string[];
}

/** Removes a smooth sky model (gradients, light pollution) from each image; the method is the model. */
export interface BackgroundProvider<O = StageOptions> extends TypedOptions<O> {
  extract(input: BackgroundInput<O>, ctx: EngineContext): Promise<{ outputs: string[] }>;
}

// ── composition and stretch ─────────────────────────────────────────────────────────────────────────

export interface CompositionInput<O = StageOptions> {
  /** Channel name (L, R, G, B, H, O, S, …) → stacked image. */
  channels: Record<string, string>;
  /** Palette as data: output channel (R, G, B, L) → { input channel: weight }. */
  palette: Record<string, Record<string, number>>;
  output: string;
  options: O;
  history: string[];
  /** Colour balance of the R, G, B output (before an L layer replaces the luminance); none when absent. */
  color?: ColorBalanceRequest;
}

/** What colour balance a composition applies (`composition.color` of tile_compile.yaml, resolved for the palette). */
export interface ColorBalanceRequest {
  /** Offset each output channel so its sky level equals the green channel's. */
  neutralizeBackground: boolean;
  /** `stars`: scale R and B (about the sky) so the median colour of isolated, unsaturated stars is `starColor`. */
  whiteBalance: "stars" | "none";
  /** The median star's colour R : G : B (default 1 : 1 : 1). */
  starColor: { R: number; G: number; B: number };
}

/**
 * What a colour balance did, per output channel: a pixel value v became
 * `skyCommon + (v − sky[c]) · factor[c]`. `stars` counts the stars the white balance measured; `skipped`
 * says why a requested white balance was not applied (factors then 1).
 */
export interface ColorBalanceRecord {
  sky: { R: number; G: number; B: number };
  skyCommon: number;
  factor: { R: number; G: number; B: number };
  whiteBalance: "stars" | "none";
  neutralizeBackground: boolean;
  /** Stars measured and the median R/G and B/G of their fluxes before the balance. */
  stars?: number;
  medianRatio?: { RG: number; BG: number };
  /** Robust scatter (1.4826·MAD) of the stars' R/G and B/G before the balance, relative. */
  ratioScatter?: { RG: number; BG: number };
  skipped?: string;
}

export interface CompositionProvider<O = StageOptions> extends TypedOptions<O> {
  /**
   * `scales`: for an HDR blend (`composition:hdr`), the factor each shorter exposure was scaled by;
   * `color`: what the colour balance did, when one was asked for.
   */
  compose(input: CompositionInput<O>, ctx: EngineContext): Promise<{ output: string; scales?: number[]; color?: ColorBalanceRecord }>;
}

/** How a stretch writes its previews (decided by the run, not the stage block). */
export interface StretchOptions {
  /** Path without extension of the PNG previews (`<base>.png`, `<base>_16bit.png`); default: the output's. */
  previewBase?: string;
  /** Write the previews (default true). */
  previews?: boolean;
}

export interface StretchInput<O = StageOptions> {
  input: string;
  output: string;
  /** The `stretch` stage options (parsed by the provider's schema) and the preview settings. */
  options: O & StretchOptions;
  history: string[];
}

export interface StretchProvider<O = StageOptions> extends TypedOptions<O> {
  stretch(input: StretchInput<O>, ctx: EngineContext): Promise<{ output: string }>;
}

/** Provider interface per stage. */
export interface StageProviders {
  calibration: CalibrationProvider;
  background: BackgroundProvider;
  registration: RegistrationProvider;
  stacking: StackingProvider;
  composition: CompositionProvider;
  stretch: StretchProvider;
}

export interface FrameDoneEvent {
  stage: StageName;
  frame: string;
  metrics?: Record<string, number>;
}
export interface StageDoneEvent {
  stage: StageName;
  engine: string;
  method: string;
  outputs: string[];
  seconds: number;
}

/**
 * A minimal Standard Schema v1 validator (zod 4 and valibot implement it), so third-party engines can
 * ship an options schema without sharing our copy of zod.
 */
export interface OptionsSchema<O = unknown> {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    validate(
      value: unknown,
    ):
      | { value: O; issues?: undefined }
      | { issues: readonly { message: string; path?: readonly (PropertyKey | { key: PropertyKey })[] }[] }
      | Promise<unknown>;
  };
}

/** What `defineEngine` takes and returns. */
export interface EngineDefinition {
  meta: EngineMeta;
  /** Every `stage:method` this engine provides, with its stability. Must match the providers below. */
  capabilities: Partial<Record<CapabilityId, Stability>>;
  /** Schema of this engine's block under `engine_options:` in tile_compile.yaml. Unknown keys should be errors. */
  optionsSchema?: OptionsSchema;
  calibration?: Record<string, CalibrationProvider>;
  background?: Record<string, BackgroundProvider>;
  registration?: Record<string, RegistrationProvider>;
  stacking?: Record<string, StackingProvider>;
  composition?: Record<string, CompositionProvider>;
  stretch?: Record<string, StretchProvider>;
  /** Observer (parallel): a frame finished a stage. */
  onFrameDone?(event: FrameDoneEvent): void;
  /** Observer (parallel): a stage finished. */
  onStageDone?(event: StageDoneEvent): void;
  /**
   * Optional check, run once per run for every engine a planned stage uses, before any pixel work:
   * external tools present, licences, … Throw a TileCompileError (e.g. TC_TOOL_MISSING) to stop the run.
   * `options` is the engine's block from `engine_options`.
   */
  preflight?(options: Record<string, unknown>): void | Promise<void>;
  /**
   * The work units this engine's stages hand to an executor (`defineTask`). A distributed worker runs the
   * tasks of the engines it was started with: an engine that lists its tasks here runs on workers like the
   * built-in one; one that does not runs its stages with the local executor only.
   */
  tasks?: readonly Task[];
}

/** An engine as returned by `defineEngine`: frozen, branded. */
export type Engine = Readonly<EngineDefinition> & { readonly [ENGINE_BRAND]: true };

/** Brand via a global symbol, so engines built against another copy of core are still recognised. */
export const ENGINE_BRAND: unique symbol = Symbol.for("tile-compile.engine");
