/**
 * The kernel contract shared by both backends. Data conventions (ARCHITECTURE.md § Data): an image is a
 * row-major Float32Array plane with width × height values in ADU; NaN marks invalid pixels and is
 * skipped by statistics, propagated by warps. Outputs are freshly allocated unless documented.
 * Long kernels are async, run off the JS thread in the native backend, and reject with the signal's
 * reason (an AbortError) soon after `signal` aborts.
 */

/** A single-channel image. */
export interface Plane {
  data: Float32Array;
  width: number;
  height: number;
}

/** Which backend ran, recorded in run provenance. */
export type ReconBackendKind = "native" | "js";

/** Options every async kernel accepts. */
export interface KernelOptions {
  signal?: AbortSignal | undefined;
}

/** Robust statistics of a set of pixels (NaN ignored). */
export interface RobustStats {
  median: number;
  /** Median absolute deviation about the median (unscaled; ×1.4826 estimates σ for Gaussian noise). */
  mad: number;
  /** Mean and population σ after sigma clipping around the median. */
  clippedMean: number;
  clippedSigma: number;
  /** Finite values in the input. */
  count: number;
  /** Values that survived clipping. */
  clippedCount: number;
}

export interface RobustStatsOptions extends KernelOptions {
  /** Clip below median − sigmaLow·σ (default 3). */
  sigmaLow?: number;
  /** Clip above median + sigmaHigh·σ (default 3). */
  sigmaHigh?: number;
  /** At most this many clipping passes (default 5). */
  iterations?: number;
}

/** Full-resolution sky background and noise (σ) maps. */
export interface BackgroundMap {
  background: Float32Array;
  noise: Float32Array;
  /** Mesh cells (⌈W/mesh⌉ × ⌈H/mesh⌉). */
  cells: number;
}

export interface BackgroundOptions extends KernelOptions {
  /** Mesh cell size in pixels (default 64). */
  meshSize?: number;
  /** Sigma-clipping threshold in each cell (default 3). */
  clipSigma?: number;
  /** Clipping passes per cell, stopping early when nothing changes (default 10). */
  iterations?: number;
  /** Planes of the plane's size to write the maps into (reused buffers); by default they are allocated. */
  out?: { background: Float32Array; noise: Float32Array };
}

/** One detected star. Coordinates are 0-based with pixel centres at integers. */
export interface Star {
  x: number;
  y: number;
  /** Background-subtracted flux in the measuring box (ADU). */
  flux: number;
  /** Background-subtracted value of the peak pixel (ADU). */
  peak: number;
  background: number;
  noise: number;
  /** √(FWHM_major · FWHM_minor) in pixels, from adaptive (Gaussian-weighted) second moments. */
  fwhm: number;
  /** FWHM_minor / FWHM_major, 1 for a round star. */
  roundness: number;
}

export interface StarDetectionOptions extends KernelOptions {
  /** Detection threshold in σ of the noise map (default 5). */
  threshold?: number;
  /** Pixels of the 3×3 neighbourhood that must exceed the threshold (default 4; rejects hot pixels). */
  minArea?: number;
  /** Keep the brightest this many (default 2000). */
  maxStars?: number;
  /** Half-size of the measuring box (default 7 → 15×15). */
  radius?: number;
  /** Precomputed maps; computed with default options when absent. */
  background?: BackgroundMap;
}

export interface StarList {
  /** Brightest (flux) first, at most maxStars. */
  stars: Star[];
  /** Stars that passed detection before the maxStars cut. */
  count: number;
}

/** A tile rectangle in image pixels. */
export interface TileRect {
  x0: number;
  y0: number;
  width: number;
  height: number;
}

/** Options of {@link ReconKernels.tileMetrics}. */
export interface TileMetricsOptions extends KernelOptions {
  /**
   * {@link TILE_SCRATCH_PLANES} distinct planes of at least {@link tileScratchLength} values for the
   * kernel's working data (row counts, the binned frame and model, row sums, the residual); reused across frames they spare a fresh allocation
   * (and its page faults) per frame. Allocated inside the call when absent. Contents undefined after.
   */
  scratch?: readonly Float32Array[];
  /**
   * Multiply the plane by this factor in place first (each value rounded to f32), and measure the result: a
   * frame's normalisation y = raw / B without a pass of its own. Default 1 (the plane is left as it is).
   */
  scale?: number;
}

/** Where and how {@link ReconKernels.aperturePhotometry} measures. */
export interface AperturePlan {
  /** Star positions (pixel centres at integers), each at least ⌈annulus[1]⌉ + 1 px inside the plane. */
  stars: readonly { x: number; y: number }[];
  /** Radius of the flux disc, px. */
  aperture: number;
  /** Inner and outer radius of the sky annulus (aperture ≤ inner < outer). */
  annulus: readonly [number, number];
  /** Radius of an inner disc whose flux is also returned (its share of the aperture's flux is the encircled energy). */
  inner?: number;
}

/** Fluxes of {@link ReconKernels.aperturePhotometry}, in the plan's star order; NaN where not measurable. */
export interface ApertureFluxes {
  /** Disc sum minus its pixel count × the annulus median. */
  flux: Float64Array;
  /** The same inside the inner disc (empty without `inner`). */
  inner: Float64Array;
}

/** Scratch planes {@link ReconKernels.tileMetrics} works in. */
export const TILE_SCRATCH_PLANES = 4;

/** Values each tile-metrics scratch plane needs for a width × height frame (the frame's size, or three 2×2-binned planes if larger). */
export function tileScratchLength(width: number, height: number): number {
  return Math.max(width * height, 3 * Math.ceil(width / 2) * Math.ceil(height / 2));
}

/** Per-tile TBQR metrics (tbqr-reference §1.8); NaN where a metric is undefined (no stars, no pixels). */
export interface TileMetrics {
  background: Float64Array;
  noise: Float64Array;
  /** Median Sobel |∇(tile − 31×31 box mean)|². */
  energy: Float64Array;
  energyOverNoise: Float64Array;
  starCount: Float64Array;
  fwhm: Float64Array;
  roundness: Float64Array;
  /** Median of peak / background over the tile's stars. */
  contrast: Float64Array;
  /** Fraction of finite pixels. */
  validFraction: Float64Array;
}

export type Interpolation = "bilinear" | "bicubic" | "lanczos3";

/**
 * A 3×3 row-major homography mapping OUTPUT pixel coordinates to SOURCE coordinates. Build one with
 * `shiftMatrix`, `similarityMatrix`, `affineMatrix` or pass any homography.
 */
export type Matrix3 = readonly number[] | Float64Array;

export interface WarpOptions extends KernelOptions {
  /** Output size (default: the source size). */
  width?: number;
  height?: number;
  interpolation?: Interpolation;
  /** Write into this buffer (width × height values) instead of allocating one — for streaming frames. */
  out?: Float32Array;
}

export type BayerPattern = "RGGB" | "GRBG" | "GBRG" | "BGGR";

/** Debayer methods, see {@link DebayerOptions.method}. */
export type DebayerMethod = "bilinear" | "superpixel" | "rcd";
export const DEBAYER_METHODS: readonly DebayerMethod[] = ["rcd", "bilinear", "superpixel"];

export interface DebayerOptions extends KernelOptions {
  pattern: BayerPattern;
  /**
   * `rcd`: Ratio Corrected Demosaicing, edge-aware, each plane's flux kept (native/src/rcd.rs);
   * `bilinear` (the default here): the mean of the nearest samples of the colour; `superpixel`: one pixel per 2×2 cell.
   */
  method?: DebayerMethod;
  /** x/y of the frame's origin on the sensor (only parity matters), for frames cropped after capture. */
  offsetX?: number;
  offsetY?: number;
  /**
   * `rcd`: the value range its constants are scaled to (default: the mosaic's own finite minimum and
   * maximum). A band of a frame demosaicked with the whole frame's range gives the whole frame's values.
   */
  range?: [number, number];
}

/** One frame's drops into one band of a drizzle (the kernel's parameter block). */
export interface DrizzleDeposit {
  /** The frame's input → reference matrix (row-major 3×3). */
  matrix: readonly number[];
  /** Output pixels per reference pixel, and the drop's half side in output pixels (0: point kernel). */
  scale: number;
  half: number;
  /** First row of the source rows given, and the rows to drizzle [rowFrom, rowTo). */
  srcY0: number;
  rowFrom: number;
  rowTo: number;
  /** The band: first output row, rows, output width. */
  bandY0: number;
  bandRows: number;
  outWidth: number;
  /** The frame's normalisation x' = a·x + b and weight. */
  a: number;
  b: number;
  weight: number;
  /** Bayer drizzle: pattern code (RGGB 0, GRBG 1, GBRG 2, BGGR 3), offsets and the channel's colour (0 R, 1 G, 2 B). */
  cfa?: { pattern: number; offsetX: number; offsetY: number; channel: number };
  /** Rejection: the 1× stack's rows [y0, y0 + rows) of a `width`-px grid, the frame's normalised σ and the thresholds. */
  blot?: { data: Float32Array; y0: number; width: number; rows: number; sigma: number; low: number; high: number };
}

export interface RgbPlanes {
  red: Float32Array;
  green: Float32Array;
  blue: Float32Array;
  width: number;
  height: number;
}

export type Rejection = "none" | "sigma" | "winsorized" | "linear-fit" | "percentile" | "mad";

export interface CombineOptions extends KernelOptions {
  method?: "mean" | "median";
  rejection?: Rejection;
  /** Lower threshold: σ multiples, or a fraction for percentile rejection (default 3, or 0.2). */
  low?: number;
  /** Upper threshold (default 3, or 0.1 for percentile). */
  high?: number;
  /** Rejection passes (default 5). */
  iterations?: number;
  /** One weight per frame, finite and > 0 (mean only). */
  weights?: ArrayLike<number>;
  /**
   * Normalisation folded into the combination: frame f's value x enters as `scale[f]·x + offset[f]`,
   * rounded to f32 — exactly as if each frame had been normalised into a Float32Array first, without
   * the extra pass over the data. Both arrays have one finite value per frame.
   */
  normalize?: { scale: ArrayLike<number>; offset: ArrayLike<number> };
  /** Also return per-pixel counts of rejected low/high values. */
  counts?: boolean;
}

export interface CombineResult {
  data: Float32Array;
  rejectedLow?: Uint16Array;
  rejectedHigh?: Uint16Array;
}

/** An overlap-add canvas: Σ w·window·tile and Σ w·window per pixel, in f64. */
export interface OverlapCanvas {
  width: number;
  height: number;
  sum: Float64Array;
  weightSum: Float64Array;
}

/** A tile to add to a canvas. */
export interface OverlapTile extends TileRect {
  data: Float32Array;
  /** Tile weight (finite, ≥ 0; default 1). */
  weight?: number;
}

/**
 * One band of TBQR's pass B (core's `tbqr.band` unit): rows [y0, y0 + rows) of one channel of every
 * frame, already read, and what the reconstruction decided for them. The method is described in
 * engine-native/src/tbqr/units.ts; per pixel every sum takes the frames in their order.
 */
export interface TbqrBandInput {
  /** The band of each frame (rows × width values, raw ADU). */
  frames: Float32Array[];
  width: number;
  rows: number;
  /** Per frame: 1 / max(B_f, ε) and the photometric scale s_f. */
  inv: Float64Array;
  scale: Float64Array;
  /** Per frame and row: the frame's sky surface row coefficients (a0, a1, a2), frame-major (N × rows × 3). */
  sky: Float64Array;
  /** Per row: the plain mean's sky row coefficients (rows × 3); and the star-scale restore factor. */
  skyMean: Float64Array;
  restore: number;
  /** u = x/W − 0.5 per column. */
  u: Float64Array;
  /**
   * Clip thresholds k_low, k_high in σ of d over the frames, σ measured robustly: inside m ± 3σ of the
   * values without their largest and smallest (so repeated outliers at one place in up to ~10 % of the
   * frames are rejected; see tbqr_band.rs).
   */
  clip: { low: number; high: number };
  /** W_ft/D_t, frame-major (N × tiles, tiles row-major over the grid). */
  fractions: Float64Array;
  /** Tile column starts, tile width, the column window and its sum over the grid per image column. */
  xs0: Int32Array;
  tileWidth: number;
  wx: Float64Array;
  sx: Float64Array;
  /** Per row r: the covering tile rows covIy[covStart[r]..covStart[r + 1]) and their window weights covWy. */
  covStart: Int32Array;
  covIy: Int32Array;
  covWy: Float64Array;
}

/** Both backends implement exactly this. */
export interface ReconBackend {
  readonly kind: ReconBackendKind;
  /** "avx2", "neon" or "scalar" for native; "js" for the TypeScript backend. */
  readonly simd: string;
  /** Worker threads used by the native backend (1 for js). */
  threads(): number;
  /** Set the native thread count (0 = all cores). Results do not depend on it. */
  setThreads(n: number): void;

  /** Big-endian FITS pixel bytes → physical f32 values in `out` (sync: well under 1 ms per MB). */
  decode(
    bytes: Uint8Array,
    bitpix: number,
    count: number,
    scaling: { bzero: number; bscale: number; blank?: number | bigint | undefined },
    out: Float32Array,
    outOffset?: number,
  ): void;
  /** Σ values in f64 (the bandwidth reference of the benchmarks). */
  sum(values: Float32Array): number;

  /** Percentiles p ∈ [0, 1] of the finite values (linear interpolation between order statistics). */
  percentiles(values: Float32Array, ps: readonly number[], options?: KernelOptions): Promise<number[]>;
  robustStats(values: Float32Array, options?: RobustStatsOptions): Promise<RobustStats>;
  backgroundMap(plane: Plane, options?: BackgroundOptions): Promise<BackgroundMap>;
  detectStars(plane: Plane, options?: StarDetectionOptions): Promise<StarList>;
  /**
   * Per-tile metrics of one frame, computed at frame level (one background model, one star list; see
   * native/src/tiles.rs for the definitions).
   */
  tileMetrics(plane: Plane, tiles: readonly TileRect[], options?: TileMetricsOptions): Promise<TileMetrics>;
  /**
   * Aperture photometry at fixed positions: per star the disc sum minus its pixel count times the median of
   * the annulus (NaN when a disc pixel is not finite or fewer than 8 annulus pixels are).
   */
  aperturePhotometry(plane: Plane, plan: AperturePlan, options?: KernelOptions): Promise<ApertureFluxes>;
  warp(source: Plane, matrix: Matrix3, options?: WarpOptions): Promise<Plane>;
  /**
   * Drizzle: every source pixel of rows [rowFrom, rowTo) (of the `source` rows starting at srcY0) that lies
   * in the band becomes a drop added to `num`/`den` (bandRows × outWidth, f64 accumulators): see
   * {@link DrizzleDeposit}. Returns the number of values rejected against the 1× stack.
   */
  drizzleDeposit(
    source: { data: Float32Array; width: number },
    d: DrizzleDeposit,
    num: Float64Array,
    den: Float64Array,
    options?: KernelOptions,
  ): Promise<number>;
  debayer(mosaic: Plane, options: DebayerOptions): Promise<RgbPlanes>;
  combine(frames: readonly Float32Array[], options?: CombineOptions): Promise<CombineResult>;
  /** Accumulate tiles onto the canvas (in list order). `window` has width×height of every tile, or is omitted (flat). */
  overlapAdd(canvas: OverlapCanvas, tiles: readonly OverlapTile[], window?: Float32Array, options?: KernelOptions): Promise<void>;
  /** Σ/weights per pixel; NaN where the weight sum ≤ epsilon (default 1e-6). */
  normalizeOverlap(canvas: OverlapCanvas, options?: KernelOptions & { epsilon?: number }): Promise<Float32Array>;
  /** TBQR pass B for one band: the reconstruction (before photometric calibration) and the plain mean of the raw frames. */
  tbqrBand(input: TbqrBandInput, options?: KernelOptions): Promise<{ out: Float32Array; plain: Float32Array }>;
}

export const STAR_FIELDS = 8;
export const TILE_FIELDS = 9;
export const INTERPOLATION_CODES: Record<Interpolation, number> = { bilinear: 1, bicubic: 2, lanczos3: 3 };
export const BAYER_CODES: Record<BayerPattern, number> = { RGGB: 0, GRBG: 1, GBRG: 2, BGGR: 3 };
export const REJECTION_CODES: Record<Rejection, number> = { none: 0, sigma: 1, winsorized: 2, "linear-fit": 3, percentile: 4, mad: 5 };
