/**
 * Frame selection shared by every stacking engine (`stacking.frame_filters`): per-frame figures (location
 * and scale per channel, FWHM, roundness, star count, background) and the filters that drop frames before
 * combining, each rejected frame reported with its figure and threshold. The native stack measures them in
 * work units (`stack.frame-stats`); engines that stack elsewhere (Siril) call `filterFrames`.
 */
import { loadRecon, type AperturePlan } from "@tile-compile/recon-native";
import { TileCompileError } from "../errors/index.js";
import { FitsFile, readFitsHeader } from "@tile-compile/fits";
import type { EngineContext, FrameRef } from "../kernel/contracts.js";
import { defineTask, type SharedRef } from "../executor/contracts.js";
import { MAD_TO_SIGMA, median } from "../util/stats.js";
import { skyGrid, type SkyGrid } from "./local-normalization.js";
import { cfaOf, finiteRange, warpFrame, warpRows, type WarpPlan } from "../registration/warp.js";
import { invert } from "../registration/geometry.js";

/** How the fused path warps a frame onto the reference grid before its figures are measured. */
export interface FrameWarp {
  matrix: number[];
  interpolation: WarpPlan["interpolation"];
  debayer: WarpPlan["debayer"];
}

/** Per-frame figures for normalisation, weights and frame filters. */
export interface FrameStats {
  median: number[];
  sigma: number[];
  /** Star metrics of the first channel (green for a colour frame): median FWHM, roundness, count, background. */
  fwhm: number;
  roundness: number;
  stars: number;
  background: number;
  /**
   * With `withPsf`: the round stars of the first channel (at most PSF_STARS, brightest first) with their
   * total flux — the detection's box flux divided by the share of a Gaussian of the frame's median FWHM
   * that the box holds — for `weighting: psf_snr`.
   */
  psfStars?: { x: number; y: number; flux: number }[];
  /** With `gridBox`: per channel, the sky level of every box (see skyGrid), row-major. */
  skyGrid?: SkyGrid[];
  /** With a photometry plan: per channel, the aperture flux of each of the plan's stars (NaN where not measurable). */
  starFlux?: Float64Array[];
  /** The fused path, a one-shot-colour frame: its mosaic's finite minimum and maximum (WarpPlan.ranges). */
  mosaicRange?: [number, number];
}

/** Stars per frame that `weighting: psf_snr` matches between frames. */
export const PSF_STARS = 300;
/** Half-size of the box star detection measures a star's flux in (an 11 × 11 box). */
const STAR_BOX_R = 5;

/** The share of a circular Gaussian PSF of this FWHM (px) that a (2r + 1)² box centred on it holds. */
export function boxShare(fwhm: number, r = STAR_BOX_R): number {
  const s = fwhm / (2 * Math.sqrt(2 * Math.LN2));
  return erf((r + 0.5) / (Math.SQRT2 * s)) ** 2;
}

/** erf to ~1e-7 (Abramowitz & Stegun 7.1.26 is 1.5e-7). */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x < 0 ? -y : y;
}

/**
 * Location/scale per channel (1-in-16 sample) and, with `withStars`, median FWHM, roundness and star count;
 * with `gridBox` the sky grid per channel, with `photometry` the plan's stars' aperture fluxes per channel.
 */
export async function frameStats(
  path: string,
  hdu: number | undefined,
  channels: number,
  signal: AbortSignal,
  withStars: boolean,
  withPsf = false,
  gridBox = 0,
  photometry?: AperturePlan,
  warp?: FrameWarp,
): Promise<FrameStats> {
  const recon = loadRecon();
  const f = await FitsFile.open(path);
  try {
    const r = await f.image(hdu);
    const STRIPS = 16;
    const stripRows = Math.ceil(r.height / (16 * STRIPS));
    const whole = withStars || withPsf || gridBox > 0 || STRIPS * stripRows * 2 > r.height;
    // The fused path: the frame as registration would have written it — warped whole in memory where the
    // figures need the whole frame, else only the strips the location and scale are sampled from (the same
    // rows, the same values: warpRows gives a registered file's rows bit for bit).
    const warped =
      warp && whole ? await warpFrame(recon, { path, ...(hdu !== undefined ? { hdu } : {}) }, warp.matrix, { ...warp, signal }) : undefined;
    let mosaicRange = warped?.mosaicRange;
    const inverse = warp && !warped ? invert(warp.matrix) : undefined;
    if (warp && !warped && !inverse) throw new Error(`${path}: the registration transform is singular`);
    if (inverse && warp!.debayer === "rcd" && cfaOf(r)) {
      // RCD of the strips needs the whole mosaic's value range (WarpPlan.ranges).
      mosaicRange = finiteRange(await r.readAll({ signal }));
    }
    const { width, height } = warped ?? r;
    const n = width * height;
    // Location and scale come from a sample of whole rows: STRIPS strips spread evenly over the frame,
    // 1/16 of the rows in all (a read per strip; per-row reads of a grid sample were measured slower than
    // reading the whole frame). Star figures need the whole frame, so then it is read whole.
    const all = warped?.data ?? (whole ? await r.readAll({ signal }) : undefined);
    const median: number[] = [],
      sigma: number[] = [];
    for (let c = 0; c < channels; c++) {
      let sample: Float32Array;
      if (all && whole) {
        // A 1-in-16 grid sample (every 4th row and column).
        const plane = all.subarray(c * n, (c + 1) * n);
        sample = new Float32Array(Math.ceil(height / 4) * Math.ceil(width / 4));
        let k = 0;
        for (let y = 0; y < height; y += 4) for (let x = 0; x < width; x += 4) sample[k++] = plane[y * width + x]!;
      } else {
        // Every 4th value of the strips: 1/64 of the frame (65 k values for 2048²) is plenty for a median
        // and a MAD, and their selection costs a quarter.
        // The strips are read concurrently (each is a small read; their latencies overlap).
        signal.throwIfAborted();
        // (The fused path warps just these rows: the same figures as its registered file would give.)
        const strips = await Promise.all(
          Array.from({ length: STRIPS }, async (_, k) => {
            const y = Math.min(height - stripRows, Math.floor(((k + 0.5) * height) / STRIPS));
            if (!inverse) return r.readRows(y, stripRows, c);
            const rows = new Float32Array(stripRows * width);
            await warpRows(recon, r, { width, ...warp! }, inverse, y, stripRows, c, rows, signal, mosaicRange);
            return rows;
          }),
        );
        sample = new Float32Array(STRIPS * Math.ceil((stripRows * width) / 4));
        let m = 0;
        for (const rows of strips) for (let i = 0; i < rows.length; i += 4) sample[m++] = rows[i]!;
        sample = sample.subarray(0, m);
      }
      const s = await recon.robustStats(sample, { iterations: 0, signal });
      median.push(s.median);
      sigma.push(MAD_TO_SIGMA * s.mad);
    }
    let fwhm = NaN,
      roundness = NaN,
      stars = 0,
      psfStars: FrameStats["psfStars"];
    if ((withStars || withPsf) && all) {
      const c = channels === 3 ? 1 : 0;
      const list = await recon.detectStars({ data: all.subarray(c * n, (c + 1) * n), width, height }, { radius: 5, maxStars: 500, signal });
      const med = (v: number[]) => {
        const t = [...v].sort((a, b) => a - b);
        return t.length ? (t.length % 2 ? t[t.length >> 1]! : (t[(t.length >> 1) - 1]! + t[t.length >> 1]!) / 2) : NaN;
      };
      fwhm = med(list.stars.map((s) => s.fwhm));
      roundness = med(list.stars.map((s) => s.roundness));
      stars = list.count;
      if (withPsf) {
        const share = boxShare(fwhm);
        psfStars = list.stars
          .filter((s) => s.roundness > 0.6)
          .slice(0, PSF_STARS)
          .map((s) => ({ x: s.x, y: s.y, flux: s.flux / share }));
      }
    }
    const grids =
      gridBox > 0 && all
        ? Array.from({ length: channels }, (_, c) => skyGrid(all.subarray(c * n, (c + 1) * n), width, height, gridBox))
        : undefined;
    const starFlux: Float64Array[] | undefined = photometry && all ? [] : undefined;
    if (starFlux)
      for (let c = 0; c < channels; c++)
        starFlux.push(
          (await recon.aperturePhotometry({ data: all!.subarray(c * n, (c + 1) * n), width, height }, photometry!, { signal })).flux,
        );
    return {
      median,
      sigma,
      fwhm,
      roundness,
      stars,
      background: median[channels === 3 ? 1 : 0]!,
      ...(psfStars ? { psfStars } : {}),
      ...(grids ? { skyGrid: grids } : {}),
      ...(starFlux ? { starFlux } : {}),
      ...(mosaicRange ? { mosaicRange } : {}),
    };
  } finally {
    await f.close();
  }
}

/** A frame filter: keep the best `keep` % of the frames, or drop those more than `kappa` σ on the bad side of the median. */
export interface FrameFilter {
  keep?: number;
  kappa?: number;
}
const FILTERS: Record<string, { metric: keyof FrameStats; worse: "high" | "low"; label: string; unit: string }> = {
  fwhm: { metric: "fwhm", worse: "high", label: "FWHM", unit: " px" },
  roundness: { metric: "roundness", worse: "low", label: "roundness", unit: "" },
  stars: { metric: "stars", worse: "low", label: "star count", unit: "" },
  background: { metric: "background", worse: "high", label: "background", unit: " ADU" },
};

/** Frames a set of filters rejects, each with its figure and the threshold it failed. */
export function applyFrameFilters(paths: string[], stats: FrameStats[], filters: Record<string, FrameFilter>): Map<number, string> {
  const out = new Map<number, string>();
  for (const [name, spec] of Object.entries(filters)) {
    const def = FILTERS[name];
    if (!def)
      throw new TileCompileError("TC_CONFIG_INVALID", {
        file: "tile_compile.yaml",
        issues: [`stacking.frame_filters.${name}: unknown filter (use ${Object.keys(FILTERS).join(", ")})`],
      });
    const vals = stats.map((s) => s[def.metric] as number);
    const finite = vals.filter(Number.isFinite).sort((a, b) => a - b);
    if (finite.length < 3) continue;
    let threshold: number;
    if (spec.keep !== undefined) {
      const k = Math.max(1, Math.ceil((finite.length * spec.keep) / 100));
      threshold = def.worse === "high" ? finite[k - 1]! : finite[finite.length - k]!;
    } else {
      const m = finite[finite.length >> 1]!;
      const mad = [...finite].map((v) => Math.abs(v - m)).sort((a, b) => a - b)[finite.length >> 1]! * MAD_TO_SIGMA;
      const kappa = spec.kappa ?? 3;
      threshold = def.worse === "high" ? m + kappa * mad : m - kappa * mad;
    }
    vals.forEach((v, i) => {
      const bad = !Number.isFinite(v) || (def.worse === "high" ? v > threshold : v < threshold);
      if (bad && !out.has(i))
        out.set(
          i,
          `${def.label} ${Number.isFinite(v) ? v.toFixed(3) : "not measurable"}${def.unit} ${def.worse === "high" ? ">" : "<"} ${threshold.toFixed(3)}${def.unit} (${spec.keep !== undefined ? `keep ${spec.keep} %` : `median ${def.worse === "high" ? "+" : "−"} ${spec.kappa ?? 3}σ`})`,
        );
    });
  }
  void paths;
  return out;
}

/**
 * The frames `stacking.frame_filters` keeps, for engines that stack elsewhere (Siril): the same figures
 * and thresholds as the native engine, every rejected frame logged with its figure.
 */
export async function filterFrames(
  frames: FrameRef[],
  filters: Record<string, FrameFilter>,
  ctx: EngineContext,
): Promise<{ frames: FrameRef[]; rejectedFrames: { path: string; reason: string }[] }> {
  if (Object.keys(filters).length === 0) return { frames, rejectedFrames: [] };
  const needStars = Object.keys(filters).some((k) => k !== "background");
  const stats: FrameStats[] = [];
  for (const [i, f] of frames.entries()) {
    const h = await readFitsHeader(f.path);
    stats.push(await frameStats(f.path, f.hdu, h.channels, ctx.signal, needStars));
    ctx.progress((i + 1) / frames.length, "frame statistics");
  }
  const bad = applyFrameFilters(
    frames.map((f) => f.path),
    stats,
    filters,
  );
  if (bad.size >= frames.length)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "stacking.frame_filters",
      reason: "the frame filters reject every frame",
      hint: "Loosen the filters (a larger keep percentage or kappa).",
    });
  const rejectedFrames = [...bad.entries()].sort((a, b) => a[0] - b[0]).map(([i, reason]) => ({ path: frames[i]!.path, reason }));
  for (const r of rejectedFrames) ctx.logger.info(`frame filtered out: ${r.path}: ${r.reason}`);
  return { frames: frames.filter((_, i) => !bad.has(i)), rejectedFrames };
}

/** Per-frame statistics as a work unit (location/scale per channel, star figures with `withStars`). */
export const frameStatsTask = defineTask(
  "stack.frame-stats",
  async (
    i: {
      path: string;
      hdu?: number;
      channels: number;
      withStars: boolean;
      withPsf?: boolean;
      gridBox?: number;
      photometry?: SharedRef;
      warp?: FrameWarp;
    },
    ctx,
  ) =>
    frameStats(
      i.path,
      i.hdu,
      i.channels,
      ctx.signal,
      i.withStars,
      i.withPsf ?? false,
      i.gridBox ?? 0,
      i.photometry ? await ctx.shared<AperturePlan>(i.photometry) : undefined,
      i.warp,
    ),
);

/**
 * `weighting: psf_snr`: per frame, its point-source signal-to-noise relative to the others,
 *   SNR_f = S_f / (σ_f · FWHM_f),
 * S_f the median over the stars it shares with the reference (the frame with the most PSF stars; matched
 * by position within max(1.5, FWHM/2) px — the frames are registered) of flux_f / flux_ref, σ_f its sky
 * noise, FWHM_f its median star FWHM. Why this form: fitting a PSF of width w to a star of flux F on sky
 * noise σ measures F with an error ∝ σ·w (the PSF's effective area is ∝ w²), so F/(σ·w) is the star's SNR
 * — transparency (S), sky brightness (σ) and seeing (w) in one figure, where `noise` sees only σ and `fwhm`
 * only w. S is a ratio over the same stars, so the stars' own brightness cancels, and a median, so a
 * variable star or a cosmic on one does not move it. A frame sharing fewer than 5 stars with the reference
 * gets S = 0 (clouds, lost guiding: its stars are not there). Returns SNR_f per frame (σ of channel c).
 */
export function psfSnr(stats: readonly FrameStats[], c: number): number[] {
  const ref = stats.reduce((b, s, i) => ((s.psfStars?.length ?? 0) > (stats[b]!.psfStars?.length ?? 0) ? i : b), 0);
  const refStars = stats[ref]!.psfStars ?? [];
  // A grid of the reference's stars for the nearest-neighbour match.
  const cell = 8;
  const grid = new Map<string, number[]>();
  refStars.forEach((s, k) => {
    const key = `${Math.floor(s.x / cell)},${Math.floor(s.y / cell)}`;
    grid.set(key, [...(grid.get(key) ?? []), k]);
  });
  return stats.map((st) => {
    const tol = Math.max(1.5, (Number.isFinite(st.fwhm) ? st.fwhm : 0) / 2);
    const ratios: number[] = [];
    for (const s of st.psfStars ?? []) {
      let best = -1,
        bestD = tol;
      const gx = Math.floor(s.x / cell),
        gy = Math.floor(s.y / cell);
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++)
          for (const k of grid.get(`${gx + dx},${gy + dy}`) ?? []) {
            const d = Math.hypot(refStars[k]!.x - s.x, refStars[k]!.y - s.y);
            if (d <= bestD) {
              bestD = d;
              best = k;
            }
          }
      if (best >= 0 && refStars[best]!.flux > 0) ratios.push(s.flux / refStars[best]!.flux);
    }
    const S = ratios.length >= 5 ? median(ratios) : 0;
    const sigma = st.sigma[c]!,
      w = st.fwhm;
    return S > 0 && sigma > 0 && w > 0 ? S / (sigma * w) : 0;
  });
}
