/**
 * `Backend` turns the positional raw kernels (native addon or TS twin) into the `ReconBackend`
 * contract: it validates inputs (typed TC_INPUT_INVALID errors naming the argument), applies defaults,
 * allocates outputs, wires the AbortSignal to the kernel's cancel flag and maps native failures to
 * catalogue errors. Both backends share this code, so they accept and reject exactly the same inputs.
 */
import { getMaxListeners, setMaxListeners } from "node:events";
import { TileCompileError } from "@tile-compile/errors";
import {
  BAYER_CODES,
  INTERPOLATION_CODES,
  REJECTION_CODES,
  STAR_FIELDS,
  TILE_FIELDS,
  TILE_SCRATCH_PLANES,
  tileScratchLength,
  type TileMetricsOptions,
  type AperturePlan,
  type ApertureFluxes,
  type BackgroundMap,
  type BackgroundOptions,
  type CombineOptions,
  type CombineResult,
  type DebayerOptions,
  type DrizzleDeposit,
  type KernelOptions,
  type Matrix3,
  type OverlapCanvas,
  type OverlapTile,
  type Plane,
  type ReconBackend,
  type ReconBackendKind,
  type RgbPlanes,
  type RobustStats,
  type RobustStatsOptions,
  type Star,
  type StarDetectionOptions,
  type StarList,
  type TbqrBandInput,
  type TileMetrics,
  type TileRect,
  type WarpOptions,
} from "./contract.js";
import type { RawKernels } from "./raw.js";
import { trimmedSdScales, truncatedSdScale } from "./trim.js";

/** A Float32Array of n values on malloc'd memory (not zero-filled): for outputs a kernel writes whole. */
function uninitialised(n: number): Float32Array {
  return new Float32Array(Buffer.allocUnsafeSlow(4 * n).buffer, 0, n);
}

function invalid(input: string, reason: string): TileCompileError {
  return new TileCompileError("TC_INPUT_INVALID", { input, reason });
}
function checkPlane(p: Plane, name: string): void {
  if (!(p.data instanceof Float32Array)) throw invalid(name, "data must be a Float32Array");
  if (!(Number.isInteger(p.width) && Number.isInteger(p.height) && p.width > 0 && p.height > 0))
    throw invalid(name, `dimensions must be positive integers, got ${p.width}×${p.height}`);
  if (p.data.length !== p.width * p.height)
    throw invalid(name, `has ${p.data.length} values, ${p.width}×${p.height} needs ${p.width * p.height}`);
}
function checkRect(r: TileRect, w: number, h: number, name: string): void {
  const ok =
    [r.x0, r.y0, r.width, r.height].every(Number.isInteger) &&
    r.x0 >= 0 &&
    r.y0 >= 0 &&
    r.width > 0 &&
    r.height > 0 &&
    r.x0 + r.width <= w &&
    r.y0 + r.height <= h;
  if (!ok) throw invalid(name, `rectangle x0=${r.x0} y0=${r.y0} ${r.width}×${r.height} is not inside the ${w}×${h} image`);
}
function positiveInt(v: number, name: string): number {
  if (!(Number.isInteger(v) && v > 0)) throw invalid(name, `must be a positive integer, got ${v}`);
  return v;
}
function finite(v: number, name: string): number {
  if (!Number.isFinite(v)) throw invalid(name, `must be a finite number, got ${v}`);
  return v;
}

/**
 * Listeners one signal may hold before Node warns. Many kernel calls of one run can be in flight on the same
 * signal at once (the fused stack: two frame lanes, each with its band's warps and combines; TBQR's units), each
 * with its own abort listener that it removes when it returns — not a leak, but past Node's default of 10 it
 * printed "MaxListenersExceededWarning: Possible EventTarget memory leak detected" (`pnpm bench register`).
 */
const KERNEL_LISTENERS = 256;

/** Run an async raw kernel with the signal wired to its cancel flag; map native errors. */
async function call(kernel: string, signal: AbortSignal | undefined, fn: (cancel: Int32Array) => Promise<number>): Promise<number> {
  signal?.throwIfAborted();
  if (signal && getMaxListeners(signal) < KERNEL_LISTENERS) setMaxListeners(KERNEL_LISTENERS, signal);
  const cancel = new Int32Array(1);
  const onAbort = () => {
    cancel[0] = 1;
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const n = await fn(cancel);
    signal?.throwIfAborted();
    return n;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === "ABORT_ERR" && signal?.aborted) throw signal.reason;
    if (code === "TC_INPUT_INVALID") throw invalid(kernel, (e as Error).message);
    if (code === "TC_NATIVE_FAILED" || code === "TC_NATIVE_PANIC")
      throw new TileCompileError("TC_NATIVE_FAILED", { kernel, reason: (e as Error).message }, { cause: e });
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

export class Backend implements ReconBackend {
  readonly simd: string;
  constructor(
    readonly kind: ReconBackendKind,
    private readonly k: RawKernels,
  ) {
    const level = k.simdLevel();
    this.simd = level === 2 ? "avx2" : level === 1 ? "neon" : level === 0 ? "scalar" : "js";
  }

  threads(): number {
    return this.k.getThreads();
  }
  setThreads(n: number): void {
    if (!(Number.isInteger(n) && n >= 0)) throw invalid("threads", `must be a non-negative integer, got ${n}`);
    this.k.setThreads(n);
  }

  decode(
    bytes: Uint8Array,
    bitpix: number,
    count: number,
    scaling: { bzero: number; bscale: number; blank?: number | bigint | undefined },
    out: Float32Array,
    outOffset = 0,
  ): void {
    if (![8, 16, 32, 64, -32, -64].includes(bitpix)) throw invalid("bitpix", `BITPIX ${bitpix} is not one of 8, 16, 32, 64, -32, -64`);
    const need = count * (Math.abs(bitpix) / 8);
    if (bytes.length < need) throw invalid("bytes", `holds ${bytes.length} bytes, ${count} pixels of BITPIX ${bitpix} need ${need}`);
    if (outOffset + count > out.length) throw invalid("out", `holds ${out.length} values, ${count} from offset ${outOffset} do not fit`);
    const blank = scaling.blank === undefined ? NaN : Number(scaling.blank);
    this.k.decode(bytes, bitpix, count, scaling.bzero, scaling.bscale, blank, out, outOffset);
  }

  sum(values: Float32Array): number {
    return this.k.sumF32(values);
  }

  async percentiles(values: Float32Array, ps: readonly number[], o: KernelOptions = {}): Promise<number[]> {
    for (const p of ps) if (!(p >= 0 && p <= 1)) throw invalid("percentiles", `each must be in [0, 1], got ${p}`);
    const out = new Float64Array(ps.length);
    await call("percentiles", o.signal, (c) => this.k.percentiles(values, Float64Array.from(ps), out, c));
    return Array.from(out);
  }

  async robustStats(values: Float32Array, o: RobustStatsOptions = {}): Promise<RobustStats> {
    const out = new Float64Array(6);
    const it = o.iterations ?? 5;
    if (!(Number.isInteger(it) && it >= 0)) throw invalid("iterations", `must be a non-negative integer, got ${it}`);
    await call("robustStats", o.signal, (c) =>
      this.k.robustStats(values, finite(o.sigmaLow ?? 3, "sigmaLow"), finite(o.sigmaHigh ?? 3, "sigmaHigh"), it, out, c),
    );
    return { median: out[0]!, mad: out[1]!, clippedMean: out[2]!, clippedSigma: out[3]!, count: out[4]!, clippedCount: out[5]! };
  }

  async backgroundMap(p: Plane, o: BackgroundOptions = {}): Promise<BackgroundMap> {
    checkPlane(p, "plane");
    const mesh = positiveInt(o.meshSize ?? 64, "meshSize");
    const it = o.iterations ?? 10;
    // Every value is written by the kernel: malloc-recycled memory rather than fresh zeroed pages (two
    // 16 MB maps per 2048² frame otherwise cost their page faults on every call).
    if (
      o.out &&
      (o.out.background.length !== p.data.length || o.out.noise.length !== p.data.length || o.out.background.buffer === o.out.noise.buffer)
    )
      throw invalid("out", "needs two distinct planes of the plane's size");
    const background = o.out?.background ?? uninitialised(p.data.length);
    const noise = o.out?.noise ?? uninitialised(p.data.length);
    const cells = await call("backgroundMap", o.signal, (c) =>
      this.k.backgroundMap(p.data, p.width, p.height, mesh, finite(o.clipSigma ?? 3, "clipSigma"), it, background, noise, c),
    );
    return { background, noise, cells };
  }

  async detectStars(p: Plane, o: StarDetectionOptions = {}): Promise<StarList> {
    checkPlane(p, "plane");
    const bgm = o.background ?? (await this.backgroundMap(p, { signal: o.signal }));
    if (bgm.background.length !== p.data.length || bgm.noise.length !== p.data.length)
      throw invalid("background", "maps do not match the plane size");
    const maxStars = o.maxStars ?? 2000;
    if (!(Number.isInteger(maxStars) && maxStars >= 0)) throw invalid("maxStars", `must be a non-negative integer, got ${maxStars}`);
    const radius = positiveInt(o.radius ?? 7, "radius");
    const minArea = o.minArea ?? 4;
    if (!(Number.isInteger(minArea) && minArea >= 1 && minArea <= 9))
      throw invalid("minArea", `must be an integer in 1..9, got ${minArea}`);
    const out = new Float64Array(maxStars * STAR_FIELDS);
    const count = await call("detectStars", o.signal, (c) =>
      this.k.detectStars(
        p.data,
        p.width,
        p.height,
        bgm.background,
        bgm.noise,
        finite(o.threshold ?? 5, "threshold"),
        minArea,
        maxStars,
        radius,
        out,
        c,
      ),
    );
    const stars: Star[] = [];
    for (let s = 0; s < Math.min(count, maxStars); s++) {
      const f = out.subarray(s * STAR_FIELDS, (s + 1) * STAR_FIELDS);
      stars.push({ x: f[0]!, y: f[1]!, flux: f[2]!, peak: f[3]!, background: f[4]!, fwhm: f[5]!, roundness: f[6]!, noise: f[7]! });
    }
    return { stars, count };
  }

  async tileMetrics(p: Plane, tiles: readonly TileRect[], o: TileMetricsOptions = {}): Promise<TileMetrics> {
    checkPlane(p, "plane");
    const need = tileScratchLength(p.width, p.height);
    if (
      o.scratch &&
      (o.scratch.length !== TILE_SCRATCH_PLANES ||
        o.scratch.some((s) => s.length < need) ||
        new Set(o.scratch.map((s) => s.buffer)).size !== o.scratch.length)
    )
      throw invalid("scratch", `must be ${TILE_SCRATCH_PLANES} distinct planes of at least ${need} values`);
    const scale = o.scale ?? 1;
    if (!(Number.isFinite(scale) && scale > 0)) throw invalid("scale", `must be finite and > 0, got ${scale}`);
    const rects = new Int32Array(tiles.length * 4);
    tiles.forEach((t, i) => {
      checkRect(t, p.width, p.height, `tiles[${i}]`);
      rects.set([t.x0, t.y0, t.width, t.height], 4 * i);
    });
    const out = new Float64Array(tiles.length * TILE_FIELDS);
    await call("tileMetrics", o.signal, (c) =>
      this.k.tileMetrics(p.data, p.width, p.height, rects, out, o.scratch ? [...o.scratch] : null, scale, c),
    );
    const field = (k: number) => Float64Array.from({ length: tiles.length }, (_, t) => out[t * TILE_FIELDS + k]!);
    return {
      background: field(0),
      noise: field(1),
      energy: field(2),
      energyOverNoise: field(3),
      starCount: field(4),
      fwhm: field(5),
      roundness: field(6),
      contrast: field(7),
      validFraction: field(8),
    };
  }

  async aperturePhotometry(p: Plane, plan: AperturePlan, o: KernelOptions = {}): Promise<ApertureFluxes> {
    checkPlane(p, "plane");
    const [ai, ao] = plan.annulus;
    const inner = plan.inner ?? 0;
    if (!(plan.aperture > 0 && ai >= plan.aperture && ao > ai && Number.isFinite(ao) && Number.isFinite(inner) && inner <= plan.aperture))
      throw invalid(
        "plan",
        `needs 0 < aperture ≤ annulus[0] < annulus[1] and inner ≤ aperture, got ${plan.aperture}, [${ai}, ${ao}], ${inner}`,
      );
    const R = Math.ceil(ao) + 1;
    const n = plan.stars.length,
      xs = new Float64Array(n),
      ys = new Float64Array(n);
    plan.stars.forEach((s, k) => {
      const cx = Math.round(s.x),
        cy = Math.round(s.y);
      if (!(cx - R >= 0 && cy - R >= 0 && cx + R < p.width && cy + R < p.height))
        throw invalid(`plan.stars[${k}]`, `(${s.x}, ${s.y}) is not ⌈annulus[1]⌉ + 1 px inside the ${p.width}×${p.height} plane`);
      xs[k] = s.x;
      ys[k] = s.y;
    });
    const flux = new Float64Array(n),
      innerFlux = new Float64Array(inner > 0 ? n : 0);
    await call("aperturePhotometry", o.signal, (c) =>
      this.k.aperturePhotometry(p.data, p.width, p.height, xs, ys, plan.aperture, ai, ao, inner, flux, innerFlux, c),
    );
    return { flux, inner: innerFlux };
  }

  async drizzleDeposit(
    src: { data: Float32Array; width: number },
    d: DrizzleDeposit,
    num: Float64Array,
    den: Float64Array,
    o: KernelOptions = {},
  ): Promise<number> {
    if (d.matrix.length !== 9) throw invalid("matrix", "must hold 9 values");
    if (num.length !== den.length || num.length < d.bandRows * d.outWidth) throw invalid("num/den", "need bandRows × outWidth values each");
    const b = d.blot;
    const p = Float64Array.from([
      ...d.matrix,
      d.scale,
      d.half,
      d.srcY0,
      d.rowFrom,
      d.rowTo,
      d.bandY0,
      d.bandRows,
      d.outWidth,
      d.a,
      d.b,
      d.weight,
      b?.sigma ?? 0,
      b?.low ?? 0,
      b?.high ?? 0,
      d.cfa ? d.cfa.pattern : -1,
      d.cfa?.offsetX ?? 0,
      d.cfa?.offsetY ?? 0,
      d.cfa?.channel ?? 0,
      b?.y0 ?? 0,
      b?.width ?? 0,
      b?.rows ?? 0,
    ]);
    return call("drizzleDeposit", o.signal, (c) =>
      this.k.drizzleDeposit(src.data, src.width, p, num, den, b?.data ?? new Float32Array(0), c),
    );
  }

  async warp(src: Plane, matrix: Matrix3, o: WarpOptions = {}): Promise<Plane> {
    checkPlane(src, "source");
    if (matrix.length !== 9 || !Array.from(matrix).every(Number.isFinite))
      throw invalid("matrix", "must be 9 finite numbers (row-major 3×3)");
    const width = positiveInt(o.width ?? src.width, "width");
    const height = positiveInt(o.height ?? src.height, "height");
    const kind = INTERPOLATION_CODES[o.interpolation ?? "lanczos3"];
    if (kind === undefined) throw invalid("interpolation", `unknown "${o.interpolation}"; use bilinear, bicubic or lanczos3`);
    if (o.out && o.out.length !== width * height)
      throw invalid("out", `has ${o.out.length} values, ${width}×${height} needs ${width * height}`);
    const data = o.out ?? new Float32Array(width * height);
    await call("warp", o.signal, (c) =>
      this.k.warp(src.data, src.width, src.height, Float64Array.from(matrix), data, width, height, kind, c),
    );
    return { data, width, height };
  }

  async debayer(m: Plane, o: DebayerOptions): Promise<RgbPlanes> {
    checkPlane(m, "mosaic");
    const pattern = BAYER_CODES[o.pattern];
    if (pattern === undefined) throw invalid("pattern", `unknown Bayer pattern "${o.pattern}"; use RGGB, GRBG, GBRG or BGGR`);
    const method = o.method ?? "bilinear";
    const code = { bilinear: 0, superpixel: 1, rcd: 2 }[method];
    if (code === undefined) throw invalid("method", `unknown debayer method "${o.method}"; use rcd, bilinear or superpixel`);
    const superpixel = code === 1;
    const width = superpixel ? m.width >> 1 : m.width;
    const height = superpixel ? m.height >> 1 : m.height;
    if (width === 0 || height === 0) throw invalid("mosaic", `${m.width}×${m.height} is too small for superpixel debayering`);
    const [red, green, blue] = [0, 1, 2].map(() => new Float32Array(width * height)) as [Float32Array, Float32Array, Float32Array];
    const ox = o.offsetX ?? 0,
      oy = o.offsetY ?? 0;
    if (!(Number.isInteger(ox) && Number.isInteger(oy) && ox >= 0 && oy >= 0))
      throw invalid("offsetX/offsetY", "must be non-negative integers");
    const [lo, hi] = o.range ?? [NaN, NaN];
    await call("debayer", o.signal, (c) =>
      this.k.debayer(m.data, m.width, m.height, pattern, ox & 1, oy & 1, code, red, green, blue, lo, hi, c),
    );
    return { red, green, blue, width, height };
  }

  async combine(frames: readonly Float32Array[], o: CombineOptions = {}): Promise<CombineResult> {
    if (frames.length === 0) throw invalid("frames", "no frames to combine");
    const len = frames[0]!.length;
    frames.forEach((f, i) => {
      if (!(f instanceof Float32Array)) throw invalid(`frames[${i}]`, "must be a Float32Array");
      if (f.length !== len) throw invalid(`frames[${i}]`, `has ${f.length} values, frames[0] has ${len}`);
    });
    const rejection = REJECTION_CODES[o.rejection ?? "none"];
    if (rejection === undefined)
      throw invalid("rejection", `unknown rejection "${o.rejection}"; use none, sigma, winsorized, linear-fit, percentile or mad`);
    const method = o.method ?? "mean";
    if (method !== "mean" && method !== "median") throw invalid("method", `unknown combine method "${method}"; use mean or median`);
    let weights: Float64Array | null = null;
    if (o.weights) {
      if (o.weights.length !== frames.length) throw invalid("weights", `has ${o.weights.length} values for ${frames.length} frames`);
      weights = Float64Array.from(o.weights as ArrayLike<number>);
      weights.forEach((w, i) => {
        if (!(Number.isFinite(w) && w > 0)) throw invalid(`weights[${i}]`, `must be finite and > 0, got ${w}`);
      });
    }
    let norm: Float64Array | null = null;
    if (o.normalize) {
      const { scale, offset } = o.normalize;
      if (scale.length !== frames.length || offset.length !== frames.length)
        throw invalid("normalize", `needs one scale and one offset per frame (${frames.length}), got ${scale.length} and ${offset.length}`);
      norm = new Float64Array(2 * frames.length);
      for (let i = 0; i < frames.length; i++) {
        norm[2 * i] = finite(Number(scale[i]), `normalize.scale[${i}]`);
        norm[2 * i + 1] = finite(Number(offset[i]), `normalize.offset[${i}]`);
      }
    }
    const pct = o.rejection === "percentile";
    const low = finite(o.low ?? (pct ? 0.2 : 3), "low");
    const high = finite(o.high ?? (pct ? 0.1 : 3), "high");
    const it = o.iterations ?? 5;
    if (!(Number.isInteger(it) && it >= 0)) throw invalid("iterations", `must be a non-negative integer, got ${it}`);
    const data = new Float32Array(len);
    const rl = o.counts ? new Uint16Array(len) : null;
    const rh = o.counts ? new Uint16Array(len) : null;
    await call("combine", o.signal, (c) =>
      this.k.combine([...frames], weights, norm, method === "median" ? 1 : 0, rejection, low, high, it, data, rl, rh, c),
    );
    return rl && rh ? { data, rejectedLow: rl, rejectedHigh: rh } : { data };
  }

  async overlapAdd(canvas: OverlapCanvas, tiles: readonly OverlapTile[], window?: Float32Array, o: KernelOptions = {}): Promise<void> {
    const n = positiveInt(canvas.width, "canvas.width") * positiveInt(canvas.height, "canvas.height");
    if (canvas.sum.length !== n || canvas.weightSum.length !== n)
      throw invalid("canvas", `sum and weightSum must hold ${canvas.width}×${canvas.height} values`);
    const rects = new Int32Array(tiles.length * 4);
    const weights = new Float64Array(tiles.length);
    tiles.forEach((t, i) => {
      checkRect(t, canvas.width, canvas.height, `tiles[${i}]`);
      if (t.data.length !== t.width * t.height)
        throw invalid(`tiles[${i}]`, `has ${t.data.length} values, ${t.width}×${t.height} needs ${t.width * t.height}`);
      if (window && window.length !== t.data.length)
        throw invalid("window", `has ${window.length} values, tiles[${i}] has ${t.data.length}`);
      const w = t.weight ?? 1;
      if (!(Number.isFinite(w) && w >= 0)) throw invalid(`tiles[${i}].weight`, `must be finite and ≥ 0, got ${w}`);
      rects.set([t.x0, t.y0, t.width, t.height], 4 * i);
      weights[i] = w;
    });
    await call("overlapAdd", o.signal, (c) =>
      this.k.overlapAdd(
        canvas.sum,
        canvas.weightSum,
        canvas.width,
        canvas.height,
        tiles.map((t) => t.data),
        rects,
        weights,
        window ?? null,
        c,
      ),
    );
  }

  async tbqrBand(b: TbqrBandInput, o: KernelOptions = {}): Promise<{ out: Float32Array; plain: Float32Array }> {
    const len = positiveInt(b.width, "width") * positiveInt(b.rows, "rows");
    const n = b.frames.length;
    if (n === 0) throw invalid("frames", "is empty");
    b.frames.forEach((f, k) => {
      if (!(f instanceof Float32Array) || f.length !== len)
        throw invalid(`frames[${k}]`, `must be a Float32Array of ${b.width}×${b.rows} values`);
    });
    if (b.inv.length !== n || b.scale.length !== n) throw invalid("inv", "inv and scale need one value per frame");
    if (b.sky.length !== 3 * n * b.rows) throw invalid("sky", `needs 3 values per frame and row (${3 * n * b.rows}), has ${b.sky.length}`);
    if (b.skyMean.length !== 3 * b.rows) throw invalid("skyMean", "needs 3 values per row");
    if (b.u.length !== b.width || b.sx.length !== b.width) throw invalid("u", "u and sx need one value per column");
    if (b.wx.length !== positiveInt(b.tileWidth, "tileWidth")) throw invalid("wx", "needs one value per tile column");
    if (b.xs0.length === 0 || b.fractions.length % n !== 0 || b.fractions.length / n < b.xs0.length)
      throw invalid("fractions", "needs N × tiles values");
    if (![...b.xs0].every((x) => x >= 0 && x + b.tileWidth <= b.width)) throw invalid("xs0", "a tile reaches past the band");
    const tiles = b.fractions.length / n;
    if (
      b.covStart.length !== b.rows + 1 ||
      b.covIy.length !== b.covWy.length ||
      b.covStart[0] !== 0 ||
      b.covStart[b.rows] !== b.covIy.length
    )
      throw invalid("covStart", "must rise from 0 to the coverage length, one offset per row and one more");
    for (let r = 0; r < b.rows; r++) if (b.covStart[r]! > b.covStart[r + 1]!) throw invalid("covStart", "must not decrease");
    if (![...b.covIy].every((iy) => iy >= 0 && (iy + 1) * b.xs0.length <= tiles)) throw invalid("covIy", "a tile row outside the grid");
    const out = uninitialised(len),
      plain = uninitialised(len);
    await call("tbqrBand", o.signal, (c) =>
      this.k.tbqrBand(
        b.frames,
        b.width,
        b.rows,
        b.inv,
        b.scale,
        b.sky,
        b.skyMean,
        finite(b.restore, "restore"),
        b.u,
        finite(b.clip.low, "clip.low"),
        finite(b.clip.high, "clip.high"),
        trimmedSdScales(n),
        truncatedSdScale(3),
        b.fractions,
        b.xs0,
        b.tileWidth,
        b.wx,
        b.sx,
        b.covStart,
        b.covIy,
        b.covWy,
        out,
        plain,
        c,
      ),
    );
    return { out, plain };
  }

  async normalizeOverlap(canvas: OverlapCanvas, o: KernelOptions & { epsilon?: number } = {}): Promise<Float32Array> {
    const out = new Float32Array(canvas.width * canvas.height);
    if (canvas.sum.length !== out.length || canvas.weightSum.length !== out.length)
      throw invalid("canvas", `sum and weightSum must hold ${canvas.width}×${canvas.height} values`);
    await call("normalizeOverlap", o.signal, (c) =>
      this.k.normalizeOverlap(canvas.sum, canvas.weightSum, out, finite(o.epsilon ?? 1e-6, "epsilon"), c),
    );
    return out;
  }
}
