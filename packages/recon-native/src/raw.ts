/**
 * The positional, allocation-free kernel interface that the Rust addon exports and the TypeScript twin
 * (./js) mirrors one to one. Only `Backend` (backend.ts) calls it; it validates and allocates first.
 * Async kernels resolve with a number (a count or 0) and poll `cancel[0]` (set to 1 on abort).
 */
type F32 = Float32Array;
type F64 = Float64Array;
type Cancel = Int32Array;

export interface RawKernels {
  decode(
    bytes: Uint8Array,
    bitpix: number,
    count: number,
    bzero: number,
    bscale: number,
    blank: number,
    out: F32,
    outOffset: number,
  ): number;
  sumF32(values: F32): number;
  setThreads(n: number): number;
  getThreads(): number;
  /** 2 = AVX2, 1 = NEON, 0 = scalar. */
  simdLevel(): number;
  percentiles(values: F32, ps: F64, out: F64, cancel: Cancel): Promise<number>;
  robustStats(values: F32, low: number, high: number, iterations: number, out: F64, cancel: Cancel): Promise<number>;
  backgroundMap(
    data: F32,
    w: number,
    h: number,
    mesh: number,
    k: number,
    iterations: number,
    bg: F32,
    noise: F32,
    cancel: Cancel,
  ): Promise<number>;
  detectStars(
    data: F32,
    w: number,
    h: number,
    bg: F32,
    noise: F32,
    k: number,
    minArea: number,
    maxStars: number,
    radius: number,
    out: F64,
    cancel: Cancel,
  ): Promise<number>;
  tileMetrics(
    data: F32,
    w: number,
    h: number,
    rects: Int32Array,
    out: F64,
    scratch: F32[] | null,
    scale: number,
    cancel: Cancel,
  ): Promise<number>;
  aperturePhotometry(
    data: F32,
    w: number,
    h: number,
    xs: F64,
    ys: F64,
    aperture: number,
    annulusIn: number,
    annulusOut: number,
    inner: number,
    flux: F64,
    innerFlux: F64,
    cancel: Cancel,
  ): Promise<number>;
  warp(src: F32, sw: number, sh: number, matrix: F64, dst: F32, dw: number, dh: number, kind: number, cancel: Cancel): Promise<number>;
  /** Drizzle drops into a band; params: the block of contract.ts's drizzleParams. Returns the values rejected. */
  drizzleDeposit(src: F32, srcWidth: number, params: F64, num: F64, den: F64, ref: F32, cancel: Cancel): Promise<number>;
  debayer(
    src: F32,
    w: number,
    h: number,
    pattern: number,
    offX: number,
    offY: number,
    /** 0 bilinear, 1 superpixel, 2 RCD. */
    method: number,
    r: F32,
    g: F32,
    b: F32,
    /** RCD's value range; NaN, NaN: the mosaic's own. */
    rangeLo: number,
    rangeHi: number,
    cancel: Cancel,
  ): Promise<number>;
  combine(
    frames: F32[],
    weights: F64 | null,
    norm: F64 | null,
    method: number,
    rejection: number,
    low: number,
    high: number,
    iterations: number,
    out: F32,
    rejLow: Uint16Array | null,
    rejHigh: Uint16Array | null,
    cancel: Cancel,
  ): Promise<number>;
  overlapAdd(
    sum: F64,
    weightSum: F64,
    w: number,
    h: number,
    tiles: F32[],
    rects: Int32Array,
    weights: F64,
    window: F32 | null,
    cancel: Cancel,
  ): Promise<number>;
  normalizeOverlap(sum: F64, weightSum: F64, out: F32, epsilon: number, cancel: Cancel): Promise<number>;
  tbqrBand(
    frames: F32[],
    width: number,
    rows: number,
    inv: F64,
    scale: F64,
    sky: F64,
    skyMean: F64,
    restore: number,
    u: F64,
    clipLow: number,
    clipHigh: number,
    trimScale: F64,
    truncScale: number,
    fractions: F64,
    xs0: Int32Array,
    tileWidth: number,
    wx: F64,
    sx: F64,
    covStart: Int32Array,
    covIy: Int32Array,
    covWy: F64,
    out: F32,
    plain: F32,
    cancel: Cancel,
  ): Promise<number>;
}
