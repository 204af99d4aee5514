/**
 * Frame selection shared by every stacking engine (`stacking.frame_filters`): per-frame figures (location
 * and scale per channel, FWHM, roundness, star count, background) and the filters that drop frames before
 * combining, each rejected frame reported with its figure and threshold. The native stack measures them in
 * work units (`stack.frame-stats`); engines that stack elsewhere (Siril) call `filterFrames`.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "../errors/index.js";
import { FitsFile, readFitsHeader } from "@tile-compile/fits";
import type { EngineContext, FrameRef } from "../kernel/contracts.js";
import { defineTask } from "../executor/contracts.js";
import { MAD_TO_SIGMA } from "../util/stats.js";

/** Per-frame figures for normalisation, weights and frame filters. */
export interface FrameStats {
  median: number[];
  sigma: number[];
  /** Star metrics of the first channel (green for a colour frame): median FWHM, roundness, count, background. */
  fwhm: number;
  roundness: number;
  stars: number;
  background: number;
}

/** Location/scale per channel (1-in-16 sample) and, with `withStars`, median FWHM, roundness and star count. */
export async function frameStats(
  path: string,
  hdu: number | undefined,
  channels: number,
  signal: AbortSignal,
  withStars: boolean,
): Promise<FrameStats> {
  const recon = loadRecon();
  const f = await FitsFile.open(path);
  try {
    const r = await f.image(hdu);
    const { width, height } = r;
    const n = width * height;
    // Location and scale come from a sample of whole rows: STRIPS strips spread evenly over the frame,
    // 1/16 of the rows in all (a read per strip; per-row reads of a grid sample were measured slower than
    // reading the whole frame). Star figures need the whole frame, so then it is read whole.
    const STRIPS = 16;
    const stripRows = Math.ceil(height / (16 * STRIPS));
    const all = withStars || STRIPS * stripRows * 2 > height ? await r.readAll({ signal }) : undefined;
    const median: number[] = [],
      sigma: number[] = [];
    for (let c = 0; c < channels; c++) {
      let sample: Float32Array;
      if (all) {
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
        const strips = await Promise.all(
          Array.from({ length: STRIPS }, (_, k) =>
            r.readRows(Math.min(height - stripRows, Math.floor(((k + 0.5) * height) / STRIPS)), stripRows, c),
          ),
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
      stars = 0;
    if (withStars && all) {
      const c = channels === 3 ? 1 : 0;
      const list = await recon.detectStars({ data: all.subarray(c * n, (c + 1) * n), width, height }, { radius: 5, maxStars: 500, signal });
      const med = (v: number[]) => {
        const t = [...v].sort((a, b) => a - b);
        return t.length ? (t.length % 2 ? t[t.length >> 1]! : (t[(t.length >> 1) - 1]! + t[t.length >> 1]!) / 2) : NaN;
      };
      fwhm = med(list.stars.map((s) => s.fwhm));
      roundness = med(list.stars.map((s) => s.roundness));
      stars = list.count;
    }
    return { median, sigma, fwhm, roundness, stars, background: median[channels === 3 ? 1 : 0]! };
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
  async (i: { path: string; hdu?: number; channels: number; withStars: boolean }, ctx) =>
    frameStats(i.path, i.hdu, i.channels, ctx.signal, i.withStars),
);
