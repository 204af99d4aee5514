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
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "../errors/index.js";
import { FitsFile, readFitsImage } from "../fits/reader.js";
import { defineTask, type SharedRef } from "../executor/contracts.js";
import { readBand } from "../executor/cache.js";
import { fitSkySurface, median, skyRow } from "./math.js";
import { PlanePool } from "../util/planes.js";

/** Frame planes reused from one pass-A unit to the next (see PlanePool). */
const planes = new PlanePool();

function fail(file: string, reason: string, hint?: string): never {
  throw new TileCompileError("TC_INPUT_INVALID", { input: file, reason, ...(hint ? { hint } : {}) });
}

export interface TileRect { x0: number; y0: number; width: number; height: number }

/** Median FWHM of the round stars of one channel of one frame. */
export const seeingTask = defineTask("tbqr.seeing", async (i: { path: string; channel: number }, ctx): Promise<number> => {
  const recon = loadRecon();
  const f = await FitsFile.open(i.path);
  try {
    const r = await f.image();
    const data = await r.readRows(0, r.height, i.channel);
    const list = await recon.detectStars({ data, width: r.width, height: r.height }, { radius: 5, maxStars: 300, signal: ctx.signal });
    return median(list.stars.filter((s) => s.roundness > 0.6).map((s) => s.fwhm));
  } finally {
    await f.close();
  }
});

/** Pass A figures of one channel of one frame. Tile metrics are per tile, in the grid's order. */
export interface ChannelMetrics {
  /** B_f: the median of the raw channel. */
  background: number;
  /** σ_f and E_f: medians over tiles of the tile noise and gradient energy (of y = raw/B_f). */
  noise: number;
  energy: number;
  /** The frame's sky surface in y units (6 coefficients, see fitSkySurface). */
  sky: number[];
  tiles: { fwhm: Float64Array; roundness: Float64Array; contrast: Float64Array; stars: Float64Array; eOverSigma: Float64Array; background: Float64Array; noise: Float64Array };
}

/** Pass A for one frame (every channel, independently). Refuses (almost) all-NaN and stretched frames. */
export const frameMetricsTask = defineTask("tbqr.frame-metrics", async (i: { path: string; tiles: SharedRef; epsilon: number }, ctx): Promise<ChannelMetrics[]> => {
  const recon = loadRecon();
  const sig = ctx.signal;
  const tiles = await ctx.shared<TileRect[]>(i.tiles);
  // The frame is read into a pooled plane and normalised in place (y = raw/B_f needs no second plane):
  // 8 MB of fresh ArrayBuffers per 1024² frame kept V8's collector busy through pass A.
  const img = await readFitsImage(i.path, { signal: sig, out: (len) => planes.take(len) });
  const { width: W, height: H, channels: C } = img;
  const n = W * H;
  const out: ChannelMetrics[] = [];
  for (let c = 0; c < C; c++) {
    const plane = img.data.subarray(c * n, (c + 1) * n);
    const sample = new Float32Array(Math.ceil(n / 9));
    let finite = 0;
    for (let p = 0, k = 0; p < n; p += 9, k++) { sample[k] = plane[p]!; if (Number.isFinite(plane[p]!)) finite++; }
    if (finite < sample.length / 10) fail(i.path, `channel ${c + 1} is (almost) entirely NaN`, "A frame that failed registration or calibration should be left out before TBQR.");
    const st = await recon.robustStats(sample, { iterations: 0, signal: sig });
    const [p9999] = await recon.percentiles(sample, [0.9999], { signal: sig });
    // Linear data: the sky sits far below the brightest stars. A stretched frame puts its median at
    // 20–50 % of the range.
    if (st.median > 0 && p9999! > 0 && st.median / p9999! > 0.2 && p9999! <= 1.5) fail(i.path, `looks stretched (median ${st.median.toFixed(3)} at ${((100 * st.median) / p9999!).toFixed(0)} % of the 99.99th percentile); TBQR needs linear data`);
    const b = st.median;
    const norm = plane; // y = raw/B_f, in place: the raw values are not used again
    const inv = 1 / Math.max(b, i.epsilon);
    for (let p = 0; p < n; p++) norm[p] = plane[p]! * inv;
    const m = await recon.tileMetrics({ data: norm, width: W, height: H }, tiles, { signal: sig });
    // This frame's own sky surface (in y units) from its tile sky levels; pass B's clip statistics are
    // gathered on d = y − surface, so a frame's gradient neither widens nor shifts the clip window.
    const sky = fitSkySurface(tiles.map((t, ti) => ({ u: (t.x0 + t.width / 2) / W - 0.5, v: (t.y0 + t.height / 2) / H - 0.5, value: m.background[ti]! })));
    const f64 = (a: ArrayLike<number>) => Float64Array.from(a);
    out.push({
      background: b, noise: median(Array.from(m.noise)), energy: median(Array.from(m.energy)), sky,
      tiles: { fwhm: f64(m.fwhm), roundness: f64(m.roundness), contrast: f64(m.contrast), stars: f64(m.starCount), eOverSigma: f64(m.energyOverNoise), background: f64(m.background), noise: f64(m.noise) },
    });
  }
  planes.give(img.data);
  return out;
});

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
  }[];
}

/** One band's reconstruction (before photometric calibration) and the plain mean of the raw frames. */
export interface TbqrBandResult { out: Float32Array; plain: Float32Array }

/** The Hann window of a tile axis, positive up to the border. */
function axisWindow(len: number): Float64Array {
  return Float64Array.from({ length: len }, (_, i) => (len === 1 ? 1 : Math.sin((Math.PI * (i + 0.5)) / len) ** 2));
}

/**
 * Pass B for rows [y0, y0 + rows) of channel c. The overlap-add of tile-wise weighted means is, per
 * pixel, a weighted mean of the frames with the smooth weight map
 *   ω_f(p) = Σ_t win_t(p)·W_{f,t}/D_t / Σ_t win_t(p),   D_t = Σ_f W_{f,t},
 * separable over the tile grid (win = wx·wy), so it is built row by row without materialising tiles.
 * Each frame enters as x = (y − sky_f)·s_f; values whose d = y − sky_f lies outside μ_d ± kσ_d of the
 * pixel (over all frames, computed first) are left out (cosmics, satellite trails).
 */
export const bandTask = defineTask("tbqr.band", async (i: { plan: SharedRef; c: number; y0: number; rows: number }, ctx): Promise<TbqrBandResult> => {
  const plan = await ctx.shared<TbqrBandPlan>(i.plan);
  const { width: W, height: H, xs0, ys0, tw, th } = plan;
  const ch = plan.channels[i.c]!;
  const N = plan.frames.length, T = xs0.length * ys0.length, tx = xs0.length;
  const len = i.rows * W;
  const views = await readBand(ctx, "tbqr.band", plan.frames.map((path) => ({ path })), i.y0, i.rows, i.c, W);
  ctx.signal.throwIfAborted();
  // Clip statistics of d over frames, in frame order. d is formed from y rounded to f32 (pass A's y).
  const s1 = new Float64Array(len), s2 = new Float64Array(len), sn = new Uint32Array(len);
  // u = x/W − 0.5 per column, once per band (the same values the per-pixel expression gave).
  const U = new Float64Array(W);
  for (let x = 0; x < W; x++) U[x] = x / W - 0.5;
  for (let f = 0; f < N; f++) {
    const v = views[f]!, inv = 1 / Math.max(ch.background[f]!, plan.epsilon), surf = ch.sky.subarray(6 * f, 6 * f + 6);
    for (let r = 0, p = 0; r < i.rows; r++) {
      const [a0, a1, a2] = skyRow(surf as unknown as number[], (i.y0 + r) / H - 0.5);
      for (let x = 0; x < W; x++, p++) {
        const u = U[x]!;
        const d = Math.fround(v[p]! * inv) - (a0 + a1 * u + a2 * u * u);
        if (d - d === 0) { s1[p] = s1[p]! + d; s2[p] = s2[p]! + d * d; sn[p] = sn[p]! + 1; }
      }
    }
  }
  const lo = new Float32Array(len), hi = new Float32Array(len);
  for (let p = 0; p < len; p++) {
    const k = sn[p]!, m = s1[p]! / k;
    const sd = k > 1 ? Math.sqrt(Math.max((s2[p]! - s1[p]! * m) / (k - 1), 0)) : Infinity;
    lo[p] = m - plan.clip.low * sd;
    hi[p] = m + plan.clip.high * sd;
  }
  // Window sums over the grid: per column and per row (each row's covering tile rows with their weights).
  const wxA = axisWindow(tw), wyA = axisWindow(th);
  const sx = new Float64Array(W);
  for (const x0 of xs0) for (let k = 0; k < tw; k++) sx[x0 + k] = sx[x0 + k]! + wxA[k]!;
  // Each row's covering tile rows and their window weights: the same for every frame, so once per band.
  const covOf = Array.from({ length: i.rows }, (_, r) => { const y = i.y0 + r; return ys0.flatMap((s0, iy) => (y >= s0 && y < s0 + th ? [[iy, wyA[y - s0]!] as [number, number]] : [])); });
  const acc = new Float64Array(len), wsum = new Float64Array(len), macc = new Float64Array(len), mcnt = new Float64Array(len), racc = new Float64Array(len), rcnt = new Float64Array(len);
  const rowA = new Float64Array(tx), wrow = new Float64Array(W);
  for (let f = 0; f < N; f++) {
    ctx.signal.throwIfAborted();
    const plane = views[f]!;
    const af = ch.fractions.subarray(f * T, (f + 1) * T), sc = ch.fluxScale[f]!, invB = 1 / Math.max(ch.background[f]!, plan.epsilon), surf = ch.sky.subarray(6 * f, 6 * f + 6) as unknown as number[];
    for (let r = 0; r < i.rows; r++) {
      const y = i.y0 + r;
      const cov = covOf[r]!;
      rowA.fill(0);
      let sy = 0;
      for (const [iy, wy] of cov) { sy += wy; for (let ix = 0; ix < tx; ix++) rowA[ix] = rowA[ix]! + wy * af[iy * tx + ix]!; }
      // This row's weights ω_f(x, y): the tiles' column windows scaled by their row sums, normalised.
      wrow.fill(0);
      for (let ix = 0; ix < tx; ix++) {
        const a = rowA[ix]!, x0 = xs0[ix]!;
        if (a !== 0) for (let k = 0; k < tw; k++) wrow[x0 + k] = wrow[x0 + k]! + wxA[k]! * a;
      }
      const inv = 1 / sy;
      for (let xx = 0; xx < W; xx++) wrow[xx] = wrow[xx]! * (inv / sx[xx]!);
      const [a0, a1, a2] = skyRow(surf, y / H - 0.5);
      for (let xx = 0, p = r * W; xx < W; xx++, p++) {
        const raw = plane[p]!;
        if (raw !== raw) continue;
        racc[p] = racc[p]! + raw; rcnt[p] = rcnt[p]! + 1;
        const u = U[xx]!;
        const d = raw * invB - (a0 + a1 * u + a2 * u * u);
        const v = d * sc;
        macc[p] = macc[p]! + v; mcnt[p] = mcnt[p]! + 1;
        if (d < lo[p]! || d > hi[p]!) continue;
        const w = wrow[xx]!;
        acc[p] = acc[p]! + w * v; wsum[p] = wsum[p]! + w;
      }
    }
  }
  // Photometric restore: the sky surface of the plain mean plus the signal at the plain mean's star scale.
  const out = new Float32Array(len), plain = new Float32Array(len);
  for (let r = 0, p = 0; r < i.rows; r++) {
    const [a0, a1, a2] = skyRow(ch.skyMean, (i.y0 + r) / H - 0.5);
    for (let xx = 0; xx < W; xx++, p++) {
      const u = U[xx]!, sky = a0 + a1 * u + a2 * u * u;
      const m = mcnt[p]! > 0 ? macc[p]! / mcnt[p]! : NaN;
      out[p] = sky + (wsum[p]! > 0 ? acc[p]! / wsum[p]! : m) * ch.restore;
      plain[p] = rcnt[p]! > 0 ? racc[p]! / rcnt[p]! : NaN;
    }
  }
  return { out, plain };
});

/** One state's synthetic frame: Σ_f G_f·I_f/B_f / Σ_f G_f over its members, × the restore level, per channel. */
export const syntheticTask = defineTask("tbqr.synthetic", async (i: { paths: string[]; G: number[][]; B: number[][]; restore: number[] }, ctx): Promise<Float32Array> => {
  let acc: Float64Array | undefined, n = 0, C = 0;
  const ws = new Float64Array(i.G.length);
  for (const [k, path] of i.paths.entries()) {
    const img = await readFitsImage(path, { signal: ctx.signal });
    n = img.width * img.height; C = img.channels;
    acc ??= new Float64Array(n * C);
    for (let c = 0; c < C; c++) {
      const g = i.G[c]![k]!, b = i.B[c]![k]!;
      ws[c] = ws[c]! + g;
      for (let p = 0; p < n; p++) { const v = img.data[c * n + p]!; if (Number.isFinite(v)) acc[c * n + p] = acc[c * n + p]! + (g * v) / b; }
    }
  }
  const data = new Float32Array(n * C);
  for (let c = 0; c < C; c++) for (let p = 0; p < n; p++) data[c * n + p] = (acc![c * n + p]! / ws[c]!) * i.restore[c]!;
  return data;
});
