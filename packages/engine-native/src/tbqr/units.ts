/**
 * TBQR's heavy work as executor units (see ../executor/contracts.ts), so that a reconstruction runs the
 * same on this machine and on RabbitMQ workers, with the same output bytes:
 *
 * - `tbqr.seeing` — the FWHM of one frame's stars (the seeing estimate that sizes the tiles);
 * - `tbqr.frame-metrics` — pass A for one frame: per channel the sky B_f, the tile metrics of y = raw/B_f
 *   and the frame's own sky surface;
 * - `tbqr.band` — pass B for one band of rows of one channel over **every** frame: the per-pixel clip
 *   statistics of y, then the weighted, clipped mean with the smooth weight map, and the plain mean.
 *   Per-pixel sums over frames live inside one band unit and take the frames in their fixed order, so the
 *   floating-point summation order does not depend on scheduling or on the band split;
 * - `tbqr.synthetic` — one state's synthetic frame, Σ G·I / Σ G over its member frames.
 *
 * The master (reconstruct.ts) does what is global and cheap: weights, photometric calibration, validation.
 */
import { loadRecon, measureApertures, TILE_SCRATCH_PLANES, tileScratchLength } from "@tile-compile/recon-native";
import { TileCompileError } from "@tile-compile/core";
import { FitsFile, readFitsImage } from "@tile-compile/core";
import { defineTask, type SharedRef } from "@tile-compile/core";
import { readBand, surfaceRow } from "@tile-compile/core";
import { fitSkySurface, median, skyRow } from "./math.js";
import { PlanePool } from "@tile-compile/core";

/** Frame and scratch planes reused from one pass-A unit to the next (see PlanePool). */
const planes = new PlanePool();

/** Drop the idle pass-A planes (after pass A, so pass B and later stages have the memory). */
export function releaseFramePlanes(): void {
  planes.clear();
}

function fail(file: string, reason: string, hint?: string): never {
  throw new TileCompileError("TC_INPUT_INVALID", { input: file, reason, ...(hint ? { hint } : {}) });
}

export interface TileRect {
  x0: number;
  y0: number;
  width: number;
  height: number;
}

/** One frame's seeing: the median FWHM of its round stars, and those stars (brightest first). */
export interface FrameSeeing {
  fwhm: number;
  stars: { x: number; y: number; flux: number }[];
}

/** Median FWHM of the round stars of one channel of one frame, with the stars themselves. */
export const seeingTask = defineTask("tbqr.seeing", async (i: { path: string; channel: number }, ctx): Promise<FrameSeeing> => {
  const recon = loadRecon();
  const f = await FitsFile.open(i.path);
  try {
    const r = await f.image();
    const data = await r.readRows(0, r.height, i.channel);
    const list = await recon.detectStars({ data, width: r.width, height: r.height }, { radius: 5, maxStars: 300, signal: ctx.signal });
    const round = list.stars.filter((s) => s.roundness > 0.6);
    return { fwhm: median(round.map((s) => s.fwhm)), stars: round.map((s) => ({ x: s.x, y: s.y, flux: s.flux })) };
  } finally {
    await f.close();
  }
});

/**
 * The photometry stars of pass A: positions (registered frames share them), the aperture radii and, for the
 * local seeing, the radius of an inner disc (its share of the aperture's flux is the star's encircled energy).
 */
export interface PhotometryPlan {
  stars: { x: number; y: number }[];
  aperture: number;
  annulus: [number, number];
  inner?: number;
}

/**
 * Aperture fluxes at fixed positions: the sum over the disc of radius `aperture` minus its pixel count
 * times the median of the annulus [annulus₀, annulus₁] (NaN when a pixel of the disc is not finite or the
 * annulus has fewer than 8 finite pixels). Positions must lie at least annulus₁ + 1 px inside the plane.
 */
export function apertureFluxes(plane: Float32Array, width: number, p: PhotometryPlan): Float64Array {
  return aperturePhotometry(plane, width, p).flux;
}

/**
 * Aperture photometry as in {@link apertureFluxes}, and with `p.inner` also the sky-subtracted flux inside
 * the inner disc of that radius (`inner`; empty without `p.inner`). Synchronous (the kernel's TypeScript
 * twin: the same bits as `recon.aperturePhotometry`, which pass A calls).
 */
export function aperturePhotometry(plane: Float32Array, width: number, p: PhotometryPlan): { flux: Float64Array; inner: Float64Array } {
  const n = p.stars.length;
  const flux = new Float64Array(n),
    inner = new Float64Array(p.inner ? n : 0);
  measureApertures(
    plane,
    width,
    p.stars.map((s) => s.x),
    p.stars.map((s) => s.y),
    p.aperture,
    p.annulus[0],
    p.annulus[1],
    p.inner ?? 0,
    flux,
    inner,
  );
  return { flux, inner };
}

/** Pass A figures of one channel of one frame. Tile metrics are per tile, in the grid's order. */
export interface ChannelMetrics {
  /** B_f: the median of the raw channel. */
  background: number;
  /** σ_f and E_f: medians over tiles of the tile noise and gradient energy (of y = raw/B_f). */
  noise: number;
  energy: number;
  /** The frame's sky surface in y units (6 coefficients, see fitSkySurface). */
  sky: number[];
  tiles: {
    fwhm: Float64Array;
    roundness: Float64Array;
    contrast: Float64Array;
    stars: Float64Array;
    eOverSigma: Float64Array;
    background: Float64Array;
    noise: Float64Array;
  };
  /** Aperture fluxes (y units) of the photometry stars, in the plan's order; empty without a plan. */
  fluxes: Float64Array;
  /** Their fluxes inside the plan's inner disc (for the encircled energy); empty without a plan. */
  innerFluxes: Float64Array;
}

/** Pass A for one frame (every channel, independently). Refuses (almost) all-NaN and stretched frames. */
export const frameMetricsTask = defineTask(
  "tbqr.frame-metrics",
  async (i: { path: string; tiles: SharedRef; photometry?: SharedRef; epsilon: number }, ctx): Promise<ChannelMetrics[]> => {
    const recon = loadRecon();
    const sig = ctx.signal;
    const tiles = await ctx.shared<TileRect[]>(i.tiles);
    const phot = i.photometry ? await ctx.shared<PhotometryPlan>(i.photometry) : undefined;
    // The frame is read into a pooled plane and normalised in place (y = raw/B_f needs no second plane):
    // 8 MB of fresh ArrayBuffers per 1024² frame kept V8's collector busy through pass A.
    const img = await readFitsImage(i.path, { signal: sig, out: (len) => planes.take(len) });
    const { width: W, height: H, channels: C } = img;
    const n = W * H;
    const scratch = Array.from({ length: TILE_SCRATCH_PLANES }, () => planes.take(tileScratchLength(W, H)));
    const out: ChannelMetrics[] = [];
    for (let c = 0; c < C; c++) {
      const plane = img.data.subarray(c * n, (c + 1) * n);
      const sample = new Float32Array(Math.ceil(n / 9));
      let finite = 0;
      for (let p = 0, k = 0; p < n; p += 9, k++) {
        sample[k] = plane[p]!;
        if (Number.isFinite(plane[p]!)) finite++;
      }
      if (finite < sample.length / 10)
        fail(
          i.path,
          `channel ${c + 1} is (almost) entirely NaN`,
          "A frame that failed registration or calibration should be left out before TBQR.",
        );
      // The median (B_f) and the 99.99th percentile from one call (one selection pass over the sample).
      const [b, p9999] = (await recon.percentiles(sample, [0.5, 0.9999], { signal: sig })) as [number, number];
      // Linear data: the sky sits far below the brightest stars. A stretched frame puts its median at
      // 20–50 % of the range.
      if (b > 0 && p9999 > 0 && b / p9999 > 0.2 && p9999 <= 1.5)
        fail(
          i.path,
          `looks stretched (median ${b.toFixed(3)} at ${((100 * b) / p9999).toFixed(0)} % of the 99.99th percentile); TBQR needs linear data`,
        );
      // y = raw/B_f, in place (the raw values are not used again), by the kernel before it measures.
      const m = await recon.tileMetrics({ data: plane, width: W, height: H }, tiles, {
        signal: sig,
        scratch,
        scale: 1 / Math.max(b, i.epsilon),
      });
      // This frame's own sky surface (in y units) from its tile sky levels; pass B's clip statistics are
      // gathered on d = y − surface, so a frame's gradient neither widens nor shifts the clip window.
      const sky = fitSkySurface(
        tiles.map((t, ti) => ({ u: (t.x0 + t.width / 2) / W - 0.5, v: (t.y0 + t.height / 2) / H - 0.5, value: m.background[ti]! })),
      );
      const f64 = (a: ArrayLike<number>) => Float64Array.from(a);
      const ph = phot
        ? await recon.aperturePhotometry({ data: plane, width: W, height: H }, phot, { signal: sig })
        : { flux: new Float64Array(0), inner: new Float64Array(0) };
      out.push({
        background: b,
        noise: median(Array.from(m.noise)),
        energy: median(Array.from(m.energy)),
        sky,
        tiles: {
          fwhm: f64(m.fwhm),
          roundness: f64(m.roundness),
          contrast: f64(m.contrast),
          stars: f64(m.starCount),
          eOverSigma: f64(m.energyOverNoise),
          background: f64(m.background),
          noise: f64(m.noise),
        },
        fluxes: ph.flux,
        innerFluxes: ph.inner,
      });
    }
    planes.give(img.data, ...scratch);
    return out;
  },
);

/** What every band unit of one reconstruction shares (one copy per run, by reference). */
export interface TbqrBandPlan {
  frames: string[];
  width: number;
  height: number;
  /** The tile grid: column and row starts (sorted), tile size. */
  xs0: number[];
  ys0: number[];
  tw: number;
  th: number;
  clip: { low: number; high: number };
  epsilon: number;
  channels: {
    /** W_ft / D_t, frame-major (N × tiles). */
    fractions: Float64Array;
    /** Per frame: photometric scale s_f, sky B_f and sky surface (6 coefficients each, frame-major). */
    fluxScale: number[];
    background: number[];
    sky: Float64Array;
    /** Raw sky surface of the plain mean (6 coefficients) and the star-scale restore factor. */
    skyMean: number[];
    restore: number;
    /**
     * `normalization: local`: per frame the relative ln transparency map (core FrameSurfaces, mean 0 over the
     * photometry stars; the global part is in fluxScale), applied to the frame's signal above its sky.
     */
    localScale?: { degree: number; coefficients: number[][] };
  }[];
}

/** One band's reconstruction (before photometric calibration) and the plain mean of the raw frames. */
export interface TbqrBandResult {
  out: Float32Array;
  plain: Float32Array;
}

/** The Hann window of a tile axis, positive up to the border. */
function axisWindow(len: number): Float64Array {
  return Float64Array.from({ length: len }, (_, i) => (len === 1 ? 1 : Math.sin((Math.PI * (i + 0.5)) / len) ** 2));
}

/**
 * Pass B for rows [y0, y0 + rows) of channel c. The overlap-add of tile-wise weighted means is, per
 * pixel, a weighted mean of the frames with the smooth weight map
 *   ω_f(p) = Σ_t win_t(p)·W_{f,t}/D_t / Σ_t win_t(p),   D_t = Σ_f W_{f,t},
 * separable over the tile grid (win = wx·wy), so it is built row by row without materialising tiles.
 * Each frame enters as x = (y − sky_f)·s_f; a pixel's largest (smallest) d = y − sky_f is left out when it
 * lies beyond μ_d + k_high·σ_d (μ_d − k_low·σ_d) of the other frames (cosmics, satellite trails; the kernel
 * `tbqrBand` of recon-native).
 */
export const bandTask = defineTask(
  "tbqr.band",
  async (i: { plan: SharedRef; c: number; y0: number; rows: number }, ctx): Promise<TbqrBandResult> => {
    const plan = await ctx.shared<TbqrBandPlan>(i.plan);
    const { width: W, height: H, xs0, ys0, tw, th } = plan;
    const ch = plan.channels[i.c]!;
    const N = plan.frames.length;
    const views = await readBand(
      ctx,
      "tbqr.band",
      plan.frames.map((path) => ({ path })),
      i.y0,
      i.rows,
      i.c,
      W,
    );
    ctx.signal.throwIfAborted();
    // What the kernel needs besides the pixels, all computed here with the expressions the per-pixel code
    // used (so the native kernel and its TypeScript twin reproduce it bit for bit): u = x/W − 0.5 per column,
    // the sky surfaces' row coefficients per frame and row, the grid's window sums per column, and each
    // row's covering tile rows with their window weights.
    const U = new Float64Array(W);
    for (let x = 0; x < W; x++) U[x] = x / W - 0.5;
    const inv = new Float64Array(N),
      sky = new Float64Array(3 * N * i.rows),
      skyMean = new Float64Array(3 * i.rows);
    for (let f = 0; f < N; f++) {
      inv[f] = 1 / Math.max(ch.background[f]!, plan.epsilon);
      const surf = ch.sky.subarray(6 * f, 6 * f + 6) as unknown as number[];
      for (let r = 0; r < i.rows; r++) sky.set(skyRow(surf, (i.y0 + r) / H - 0.5), 3 * (f * i.rows + r));
    }
    for (let r = 0; r < i.rows; r++) skyMean.set(skyRow(ch.skyMean, (i.y0 + r) / H - 0.5), 3 * r);
    // Local transparency maps: raw' = m·raw + (1 − m)·B_f·sky_f, so that y' − sky_f = m·(y − sky_f) in the
    // kernel — the frame's signal above its own sky multiplied by m_f(x, y), its sky untouched.
    if (ch.localScale) {
      const m = new Float64Array(W);
      for (let f = 0; f < N; f++) {
        const v = views[f]!,
          Bf = ch.background[f]!;
        for (let r = 0; r < i.rows; r++) {
          surfaceRow(ch.localScale.degree, ch.localScale.coefficients[f]!, i.y0 + r, W, H, m);
          const [a0, a1, a2] = [sky[3 * (f * i.rows + r)]!, sky[3 * (f * i.rows + r) + 1]!, sky[3 * (f * i.rows + r) + 2]!];
          for (let x = 0; x < W; x++) {
            const k = Math.exp(m[x]!),
              s0 = Bf * (a0 + a1 * U[x]! + a2 * U[x]! * U[x]!);
            v[r * W + x] = k * v[r * W + x]! + (1 - k) * s0;
          }
        }
      }
    }
    const wxA = axisWindow(tw),
      wyA = axisWindow(th);
    const sx = new Float64Array(W);
    for (const x0 of xs0) for (let k = 0; k < tw; k++) sx[x0 + k] = sx[x0 + k]! + wxA[k]!;
    const covStart = new Int32Array(i.rows + 1),
      covIy: number[] = [],
      covWy: number[] = [];
    for (let r = 0; r < i.rows; r++) {
      const y = i.y0 + r;
      ys0.forEach((s0, iy) => {
        if (y >= s0 && y < s0 + th) {
          covIy.push(iy);
          covWy.push(wyA[y - s0]!);
        }
      });
      covStart[r + 1] = covIy.length;
    }
    return loadRecon().tbqrBand(
      {
        frames: views,
        width: W,
        rows: i.rows,
        inv,
        scale: Float64Array.from(ch.fluxScale),
        sky,
        skyMean,
        restore: ch.restore,
        u: U,
        clip: plan.clip,
        fractions: ch.fractions,
        xs0: Int32Array.from(xs0),
        tileWidth: tw,
        wx: wxA,
        sx,
        covStart,
        covIy: Int32Array.from(covIy),
        covWy: Float64Array.from(covWy),
      },
      { signal: ctx.signal },
    );
  },
);

/** One state's synthetic frame: Σ_f G_f·I_f/B_f / Σ_f G_f over its members, × the restore level, per channel. */
export const syntheticTask = defineTask(
  "tbqr.synthetic",
  async (i: { paths: string[]; G: number[][]; B: number[][]; restore: number[] }, ctx): Promise<Float32Array> => {
    let acc: Float64Array | undefined,
      n = 0,
      C = 0;
    const ws = new Float64Array(i.G.length);
    for (const [k, path] of i.paths.entries()) {
      const img = await readFitsImage(path, { signal: ctx.signal });
      n = img.width * img.height;
      C = img.channels;
      acc ??= new Float64Array(n * C);
      for (let c = 0; c < C; c++) {
        const g = i.G[c]![k]!,
          b = i.B[c]![k]!;
        ws[c] = ws[c]! + g;
        for (let p = 0; p < n; p++) {
          const v = img.data[c * n + p]!;
          if (Number.isFinite(v)) acc[c * n + p] = acc[c * n + p]! + (g * v) / b;
        }
      }
    }
    const data = new Float32Array(n * C);
    for (let c = 0; c < C; c++) for (let p = 0; p < n; p++) data[c * n + p] = (acc![c * n + p]! / ws[c]!) * i.restore[c]!;
    return data;
  },
);
