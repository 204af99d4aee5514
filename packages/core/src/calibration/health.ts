/**
 * The calibration health check: after the masters are built and the lights calibrated, measure on the
 * masters and a sample of calibrated lights whether the calibration did what it should, each check with a
 * figure and a verdict (pass, warn, fail, n/a). A failing check stops the run with TC_CALIBRATION_CHECK
 * unless `calibration.checks.<name>: warn` (or `off`) in tile_compile.yaml relaxes it.
 *
 * | check | figure | fails when |
 * |---|---|---|
 * | offset | offset source and its level vs the raw lights' level | flats applied with no offset removed |
 * | double_offset | calibrated sky level in σ; dark vs bias level | sky < −5σ, or a dark below its bias (bias already taken out) |
 * | negative_pixels | % of calibrated pixels below 0 vs what the sky level and noise predict | more than twice the prediction + 1 point |
 * | master_mismatch | each master's size, binning, Bayer pattern, gain vs the lights' | any differs (size cannot be relaxed) |
 * | flat_exposure | raw flat median as % of the ADC range | > 90 % (saturated) or < 1 % (under-exposed) |
 * | vignetting_residual | (mean of the 4 corners − centre) / centre sky, median over sampled lights | corners > 5 % brighter (inverted vignetting; > 2 % or < −10 % warns) |
 * | dust_residual | |contrast| left where the flat has dust shadows (blocks ≥ 1 % deep), above the sky's own | residual above 1 % |
 * | temperature | largest light − dark temperature difference | beyond the job's tolerance |
 *
 * Numerics: sky levels are medians of 8×8-pixel block medians (stars and cosmics drop out); the large-
 * scale sky or flat is a median filter of the block image over ±6 blocks (±48 px), so dust shadows
 * (typically 20–100 px across) stand out of it and vignetting does not.
 */
import { FitsFile, readFitsImage, type FitsImage } from "@tile-compile/fits";
import { MAD_TO_SIGMA, median } from "../util/stats.js";

export const CHECK_NAMES = [
  "offset",
  "double_offset",
  "negative_pixels",
  "master_mismatch",
  "flat_exposure",
  "vignetting_residual",
  "dust_residual",
  "temperature",
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];
export type CheckVerdict = "pass" | "warn" | "fail" | "n/a";
/** Per check, from tile_compile.yaml `calibration.checks`: error (default), warn, or off. */
export type CheckSeverity = "error" | "warn" | "off";

export interface HealthCheck {
  check: CheckName;
  /** What was measured, e.g. "L 180 s". */
  subject: string;
  /** The measured figure (a number, for run.json and report.html), and its unit. */
  value?: number;
  unit?: string;
  /** The limit the figure is held to, in words. */
  limit: string;
  verdict: CheckVerdict;
  detail: string;
}

export interface HealthGroupInput {
  subject: string;
  /** Calibrated lights to sample (the first few are read). */
  calibrated: string[];
  /** Raw lights (one is read for its level). */
  raw: string[];
  flat?: string;
  dark?: string;
  bias?: string;
  pedestal?: number;
  offsetSource?: string;
  /** |T_light − T_dark| largest in the group, and the tolerance. */
  temperature?: { maxDelta: number; tolerance: number };
}

const BLOCK = 8;
const RADIUS = 6;
const SAMPLE = 3;

/**
 * Pixel noise σ from neighbour differences over a central box: 1.4826·MAD(p(x) − p(x+1)) / √2, so smooth
 * structure (a nebula, a gradient) does not count as noise.
 */
function noiseOf(img: FitsImage): number {
  const { width: w, height: h } = img;
  const bw = Math.min(256, w - 1),
    bh = Math.min(256, h);
  const x0 = (w - 1 - bw) >> 1,
    y0 = (h - bh) >> 1;
  const d = new Float64Array(bw * bh);
  for (let y = 0; y < bh; y++)
    for (let x = 0; x < bw; x++) {
      const i = (y0 + y) * w + x0 + x;
      d[y * bw + x] = img.data[i]! - img.data[i + 1]!;
    }
  const m = median(d);
  return (MAD_TO_SIGMA * median(d.map((v) => Math.abs(v - m)))) / Math.SQRT2;
}

/** Block medians of the first channel (8×8 px). */
export function blockMedians(img: Pick<FitsImage, "width" | "height" | "data">): { bw: number; bh: number; data: Float64Array } {
  const bw = Math.floor(img.width / BLOCK),
    bh = Math.floor(img.height / BLOCK);
  const data = new Float64Array(bw * bh);
  const cell = new Float64Array(BLOCK * BLOCK);
  for (let by = 0; by < bh; by++)
    for (let bx = 0; bx < bw; bx++) {
      let k = 0;
      for (let y = 0; y < BLOCK; y++) for (let x = 0; x < BLOCK; x++) cell[k++] = img.data[(by * BLOCK + y) * img.width + bx * BLOCK + x]!;
      data[by * bw + bx] = median(cell);
    }
  return { bw, bh, data };
}

/**
 * A cubic surface in x, y fitted to the block image by least squares with two rounds of 3σ clipping:
 * vignetting and gradients, so the median filter below works on a flat residual and has no edge bias
 * (a median over a window cut by the frame edge sits off the value on a slope).
 */
function smoothSurface(b: { bw: number; bh: number; data: Float64Array }): Float64Array {
  const terms = (x: number, y: number) => [1, x, y, x * x, x * y, y * y, x * x * x, x * x * y, x * y * y, y * y * y];
  const n = 10;
  const keep = new Uint8Array(b.data.length).fill(1);
  for (let i = 0; i < b.data.length; i++) if (!Number.isFinite(b.data[i]!)) keep[i] = 0;
  let coef = new Float64Array(n);
  const at = (i: number) => {
    const x = ((i % b.bw) / b.bw) * 2 - 1,
      y = (Math.floor(i / b.bw) / b.bh) * 2 - 1;
    return terms(x, y);
  };
  for (let round = 0; round < 3; round++) {
    const A = Array.from({ length: n }, () => new Float64Array(n + 1));
    for (let i = 0; i < b.data.length; i++) {
      if (!keep[i]) continue;
      const t = at(i);
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < n; c++) A[r]![c]! += t[r]! * t[c]!;
        A[r]![n]! += t[r]! * b.data[i]!;
      }
    }
    // Gaussian elimination with partial pivoting.
    for (let c = 0; c < n; c++) {
      let p = c;
      for (let r = c + 1; r < n; r++) if (Math.abs(A[r]![c]!) > Math.abs(A[p]![c]!)) p = r;
      [A[c], A[p]] = [A[p]!, A[c]!];
      const d = A[c]![c]!;
      if (Math.abs(d) < 1e-300) continue;
      for (let r = 0; r < n; r++)
        if (r !== c) {
          const f = A[r]![c]! / d;
          for (let k = c; k <= n; k++) A[r]![k]! -= f * A[c]![k]!;
        }
    }
    coef = Float64Array.from(A.map((row, r) => (Math.abs(row[r]!) < 1e-300 ? 0 : row[n]! / row[r]!)));
    const res: number[] = [];
    for (let i = 0; i < b.data.length; i++)
      if (keep[i]) {
        const t = at(i);
        let v = 0;
        for (let k = 0; k < n; k++) v += coef[k]! * t[k]!;
        res.push(b.data[i]! - v);
      }
    const m = median(res),
      sd = 1.4826 * median(res.map((v) => Math.abs(v - m)));
    for (let i = 0; i < b.data.length; i++)
      if (Number.isFinite(b.data[i]!)) {
        const t = at(i);
        let v = 0;
        for (let k = 0; k < n; k++) v += coef[k]! * t[k]!;
        keep[i] = Math.abs(b.data[i]! - v - m) <= 3 * sd ? 1 : 0;
      }
  }
  const out = new Float64Array(b.data.length);
  for (let i = 0; i < out.length; i++) {
    const t = at(i);
    let v = 0;
    for (let k = 0; k < n; k++) v += coef[k]! * t[k]!;
    out[i] = v;
  }
  return out;
}

/** The large-scale level of a block image: a cubic surface times the ±RADIUS-block median of what is left. */
export function largeScale(b: { bw: number; bh: number; data: Float64Array }): Float64Array {
  const surface = smoothSurface(b);
  const flat = { bw: b.bw, bh: b.bh, data: b.data.map((v, i) => v / surface[i]!) };
  const med = medianFilter(flat);
  return med.map((v, i) => v * surface[i]!);
}

function medianFilter(b: { bw: number; bh: number; data: Float64Array }): Float64Array {
  const out = new Float64Array(b.data.length);
  const win: number[] = [];
  for (let y = 0; y < b.bh; y++)
    for (let x = 0; x < b.bw; x++) {
      win.length = 0;
      for (let yy = Math.max(0, y - RADIUS); yy <= Math.min(b.bh - 1, y + RADIUS); yy++)
        for (let xx = Math.max(0, x - RADIUS); xx <= Math.min(b.bw - 1, x + RADIUS); xx++) win.push(b.data[yy * b.bw + xx]!);
      out[y * b.bw + x] = median(win);
    }
  return out;
}

/** (mean of the four corner boxes − centre box) / centre, boxes of 1/8 (corners) and 1/4 (centre) of each side, on block medians. */
export function cornerResidual(b: { bw: number; bh: number; data: Float64Array }): { corners: number; centre: number; residual: number } {
  const box = (x0: number, y0: number, x1: number, y1: number) => {
    const v: number[] = [];
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) v.push(b.data[y * b.bw + x]!);
    return median(v);
  };
  const cw = Math.max(1, Math.round(b.bw / 8)),
    ch = Math.max(1, Math.round(b.bh / 8));
  const corners =
    (box(0, 0, cw, ch) + box(b.bw - cw, 0, b.bw, ch) + box(0, b.bh - ch, cw, b.bh) + box(b.bw - cw, b.bh - ch, b.bw, b.bh)) / 4;
  const centre = box(Math.round((3 * b.bw) / 8), Math.round((3 * b.bh) / 8), Math.round((5 * b.bw) / 8), Math.round((5 * b.bh) / 8));
  return { corners, centre, residual: (corners - centre) / centre };
}

/** Dust shadows of a master flat: blocks ≥ 1 % below the flat's large scale. */
export function dustMask(flat: Pick<FitsImage, "width" | "height" | "data">): {
  mask: Uint8Array;
  depth: number;
  blocks: number;
  bw: number;
  bh: number;
} {
  const b = blockMedians(flat);
  const big = largeScale(b);
  const mask = new Uint8Array(b.data.length);
  const depths: number[] = [];
  for (let i = 0; i < mask.length; i++) {
    const d = 1 - b.data[i]! / big[i]!;
    if (d >= 0.01) {
      mask[i] = 1;
      depths.push(d);
    }
  }
  return { mask, depth: depths.length ? median(depths) : 0, blocks: depths.length, bw: b.bw, bh: b.bh };
}

/**
 * What a calibrated light keeps of the flat's dust shadows: the median |contrast| (light / its large scale
 * − 1) over the dust blocks, less the same over the other blocks (the sky's own texture and noise). The
 * absolute value matters: dust that moved between the flats and the lights leaves a dark/bright pair that a
 * signed median averages away (the Calar Alto set: signed +0.24 %, absolute 0.69 % against 0.22 % elsewhere).
 */
export function dustResidual(light: Pick<FitsImage, "width" | "height" | "data">, mask: Uint8Array): number {
  const b = blockMedians(light);
  const big = largeScale(b);
  const inDust: number[] = [],
    outside: number[] = [];
  for (let i = 0; i < mask.length && i < b.data.length; i++) (mask[i] ? inDust : outside).push(Math.abs(b.data[i]! / big[i]! - 1));
  return median(inDust) - (outside.length ? median(outside) : 0);
}

/** Gaussian lower tail Φ(−z). */
function lowerTail(z: number): number {
  // Abramowitz–Stegun 26.2.17 (|error| < 7.5e-8).
  const t = 1 / (1 + 0.2316419 * Math.abs(z));
  const p =
    0.3989422804014327 *
    Math.exp((-z * z) / 2) *
    t *
    (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  return z >= 0 ? p : 1 - p;
}

async function headerOf(path: string) {
  const f = await FitsFile.open(path);
  try {
    return await f.image();
  } finally {
    await f.close();
  }
}

const pct = (v: number) => `${(100 * v).toFixed(2)} %`;

/** The lights' layout the masters must match. */
export interface LightLayout {
  width: number;
  height: number;
  binning?: string;
  bayerPattern?: string;
  gain?: number;
}

/** Master checks from headers only (master_mismatch, flat_exposure): run before any light is calibrated. */
export async function mastersHealth(paths: Iterable<string>, lights: LightLayout): Promise<HealthCheck[]> {
  const out: HealthCheck[] = [];
  for (const path of new Set(paths)) {
    const r = await headerOf(path);
    const h = r.header;
    const diffs: string[] = [];
    if (r.width !== lights.width || r.height !== lights.height)
      diffs.push(`size ${r.width}×${r.height}, lights ${lights.width}×${lights.height}`);
    const xb = h.getNumber("XBINNING"),
      yb = h.getNumber("YBINNING");
    if (lights.binning && xb !== undefined && `${xb}x${yb ?? xb}` !== lights.binning)
      diffs.push(`binning ${xb}x${yb ?? xb}, lights ${lights.binning}`);
    const bayer = h.getString("BAYERPAT");
    if (lights.bayerPattern && bayer && bayer.toUpperCase() !== lights.bayerPattern)
      diffs.push(`Bayer ${bayer}, lights ${lights.bayerPattern}`);
    const gain = h.getNumber("GAIN");
    if (lights.gain !== undefined && gain !== undefined && gain !== lights.gain) diffs.push(`gain ${gain}, lights ${lights.gain}`);
    const name = path.split(/[\\/]/).pop()!;
    out.push({
      check: "master_mismatch",
      subject: name,
      limit: "same size, binning, Bayer pattern and gain as the lights",
      verdict: diffs.length ? "fail" : "pass",
      detail: diffs.length
        ? diffs.join("; ")
        : `${r.width}×${r.height}${xb !== undefined ? `, bin ${xb}x${yb ?? xb}` : ""}${bayer ? `, ${bayer}` : ""}${gain !== undefined ? `, gain ${gain}` : ""}`,
    });
    if (h.getString("IMAGETYP") === "Master Flat") {
      const raw = h.getNumber("FLATRAW"),
        top = h.getNumber("FLATMAXR"),
        bpx = h.getNumber("FLATBPX") ?? 16;
      if (raw === undefined || bpx < 0)
        out.push({
          check: "flat_exposure",
          subject: name,
          limit: "1 … 90 % of the ADC range",
          verdict: "n/a",
          detail: raw === undefined ? "the master records no raw flat level (built elsewhere)" : "float raw flats: no ADC range",
        });
      else {
        const range = bpx === 8 ? 255 : bpx === 16 ? 65535 : 2 ** (bpx - 1) - 1;
        const frac = raw / range,
          hi = (top ?? raw) / range;
        out.push({
          check: "flat_exposure",
          subject: name,
          value: Number((100 * frac).toFixed(2)),
          unit: "% of ADC range",
          limit: "1 … 90 % of the ADC range",
          verdict: hi > 0.9 || frac < 0.01 ? "fail" : "pass",
          detail:
            hi > 0.9
              ? `brightest raw flat at ${pct(hi)} of ${range}: saturated or non-linear — take flats at about half the range`
              : frac < 0.01
                ? `raw flats at ${raw.toFixed(0)} ADU, ${pct(frac)} of ${range}: under-exposed, the flat's noise will show in every light`
                : `raw flats at ${raw.toFixed(0)} ADU (${pct(frac)} of ${range})`,
        });
      }
    }
  }
  return out;
}

/** Checks on the calibrated lights of each group (and the masters' pixels); never throws for a failed check. */
export async function lightsHealth(groups: HealthGroupInput[], signal?: AbortSignal): Promise<HealthCheck[]> {
  const out: HealthCheck[] = [];
  const dust = new Map<string, ReturnType<typeof dustMask>>();
  // A master's level (median of its block medians), read once however many groups use it.
  const masterLevels = new Map<string, Promise<number>>();
  const levelOf = (path: string) => {
    let l = masterLevels.get(path);
    if (!l) {
      l = readFitsImage(path, signal ? { signal } : {}).then((img) => median(blockMedians(img).data));
      masterLevels.set(path, l);
    }
    return l;
  };
  for (const g of groups) {
    signal?.throwIfAborted();
    if (g.temperature) {
      out.push({
        check: "temperature",
        subject: g.subject,
        value: Number(g.temperature.maxDelta.toFixed(2)),
        unit: "°C",
        limit: `≤ ${g.temperature.tolerance} °C (options.temp_tolerance)`,
        verdict: g.temperature.maxDelta > g.temperature.tolerance + 1e-9 ? "fail" : "pass",
        detail: `largest light − dark difference ${g.temperature.maxDelta.toFixed(2)} °C`,
      });
    }
    // Offset vs the raw level.
    const rawImg = g.raw[0] ? await readFitsImage(g.raw[0], signal ? { signal } : {}) : undefined;
    const rawLevel = rawImg ? median(blockMedians(rawImg).data) : Number.NaN;
    let offsetLevel: number | undefined;
    const offsetPath = g.bias ?? g.dark;
    if (offsetPath) offsetLevel = await levelOf(offsetPath);
    else if (g.pedestal !== undefined) offsetLevel = g.pedestal;
    const none = offsetLevel === undefined;
    out.push({
      check: "offset",
      subject: g.subject,
      ...(offsetLevel !== undefined ? { value: Number(((100 * offsetLevel) / rawLevel).toFixed(2)), unit: "% of the raw level" } : {}),
      limit: "an offset removed whenever flats are applied",
      verdict: none && g.flat ? "fail" : "pass",
      detail: none
        ? g.flat
          ? `no offset removed from lights at ${rawLevel.toFixed(0)} ADU before dividing by the flat`
          : `no offset removed (no flats, so it stays a constant: ${rawLevel.toFixed(0)} ADU raw)`
        : `${g.offsetSource ?? "offset"} at ${offsetLevel!.toFixed(1)} ADU, raw lights at ${rawLevel.toFixed(1)} ADU`,
    });
    // A dark below its bias: the bias was already taken out of it.
    if (g.dark && g.bias && g.dark !== g.bias) {
      const d = await levelOf(g.dark),
        b = await levelOf(g.bias);
      out.push({
        check: "double_offset",
        subject: `${g.subject}: dark vs bias`,
        value: Number((d - b).toFixed(2)),
        unit: "ADU",
        limit: "dark level ≥ bias level",
        verdict: d < b - Math.max(5, 0.05 * b) ? "fail" : "pass",
        detail: `dark ${d.toFixed(1)} ADU, bias ${b.toFixed(1)} ADU${d < b - Math.max(5, 0.05 * b) ? ": the dark looks bias-subtracted already — subtracting the bias again removes the offset twice" : ""}`,
      });
    }
    // Calibrated lights: level, negatives, vignetting and dust residuals.
    const sample = g.calibrated.slice(0, SAMPLE);
    const levels: number[] = [],
      sigmas: number[] = [],
      negatives: number[] = [],
      expected: number[] = [],
      vign: { r: number; c: number; k: number }[] = [],
      dustR: number[] = [];
    let mask: ReturnType<typeof dustMask> | undefined;
    if (g.flat) {
      mask = dust.get(g.flat);
      if (!mask) {
        mask = dustMask(await readFitsImage(g.flat, signal ? { signal } : {}));
        dust.set(g.flat, mask);
      }
    }
    for (const p of sample) {
      const img = await readFitsImage(p, signal ? { signal } : {});
      const b = blockMedians(img);
      const level = median(b.data),
        sigma = noiseOf(img);
      levels.push(level);
      sigmas.push(sigma);
      let neg = 0,
        n = 0;
      for (let i = 0; i < img.width * img.height; i++) {
        const v = img.data[i]!;
        if (Number.isFinite(v)) {
          n++;
          if (v < 0) neg++;
        }
      }
      negatives.push(neg / n);
      // Expected negatives where the sky is faint: per 8×8 block, Φ(−level/σ), averaged (a nebula in the
      // centre must not hide a faint sky at the edges).
      let e = 0;
      for (const v of b.data) e += lowerTail(v / Math.max(sigma, 1e-9));
      expected.push(e / b.data.length);
      if (g.flat) {
        const c = cornerResidual(b);
        vign.push({ r: c.residual, c: c.centre, k: c.centre / Math.max(sigma / BLOCK, 1e-9) });
        if (mask && mask.blocks > 0) dustR.push(dustResidual(img, mask.mask));
      }
    }
    if (!sample.length) continue;
    const level = median(levels),
      sigma = median(sigmas);
    out.push({
      check: "double_offset",
      subject: g.subject,
      value: Number((level / sigma).toFixed(2)),
      unit: "σ",
      limit: "calibrated sky ≥ −5 σ",
      verdict: level < -5 * sigma ? "fail" : "pass",
      detail: `calibrated sky ${level.toFixed(1)} ADU, noise σ ${sigma.toFixed(1)} ADU${level < -5 * sigma ? ": far below zero — an offset was subtracted twice, or the dark/bias is from another camera setting" : ""}`,
    });
    const neg = median(negatives),
      exp = median(expected);
    out.push({
      check: "negative_pixels",
      subject: g.subject,
      value: Number((100 * neg).toFixed(3)),
      unit: "%",
      limit: `≤ 2 × ${(100 * exp).toFixed(3)} % (what the sky's local levels and noise predict) + 1 point`,
      verdict: neg > 2 * exp + 0.01 ? "fail" : "pass",
      detail: `${pct(neg)} of the calibrated pixels are negative; ${pct(exp)} expected from the sky's local levels (median ${level.toFixed(1)} ADU) and its noise σ ${sigma.toFixed(1)} ADU`,
    });
    if (g.flat) {
      const measurable = vign.filter((v) => v.c > 0 && v.k >= 20);
      if (!measurable.length)
        out.push({
          check: "vignetting_residual",
          subject: g.subject,
          limit: "corners ≤ +5 % of the centre",
          verdict: "n/a",
          detail: "the calibrated sky is too faint against its noise to measure a few-% residual",
        });
      else {
        const r = median(measurable.map((v) => v.r));
        out.push({
          check: "vignetting_residual",
          subject: g.subject,
          value: Number((100 * r).toFixed(2)),
          unit: "% (corners − centre) / centre",
          limit:
            "corners ≤ +5 % of the centre (a warning above +2 %, or at −10 % and below, where a nebula or galaxy in the centre also gives it)",
          verdict: r > 0.05 ? "fail" : r > 0.02 || r < -0.1 ? "warn" : "pass",
          detail: `corners ${r >= 0 ? "+" : ""}${(100 * r).toFixed(2)} % against the centre on ${measurable.length} calibrated light(s)${r > 0.05 ? ": inverted vignetting — the offset was not (fully) removed before flat-fielding, or the flat does not belong to these lights" : r > 0.02 ? ": the flat over-corrects a little — dome or panel illumination differs from the sky's, or scattered light in the lights" : r < -0.1 ? ": corners much darker — under-corrected, or a bright object in the centre" : ""}`,
        });
      }
      if (!mask || mask.blocks === 0)
        out.push({
          check: "dust_residual",
          subject: g.subject,
          limit: "residual ≤ 1 %",
          verdict: "n/a",
          detail: "no dust shadow ≥ 1 % deep in the master flat",
        });
      else if (!dustR.length || !(median(levels) > 0))
        out.push({
          check: "dust_residual",
          subject: g.subject,
          limit: "residual ≤ 1 %",
          verdict: "n/a",
          detail: "calibrated sky not positive: no contrast to measure",
        });
      else {
        const r = median(dustR);
        out.push({
          check: "dust_residual",
          subject: g.subject,
          value: Number((100 * r).toFixed(2)),
          unit: "% contrast above the sky's own",
          limit: "residual ≤ 1 %",
          verdict: r > 0.01 ? "fail" : "pass",
          detail: `dust shadows ${(100 * mask.depth).toFixed(1)} % deep over ${mask.blocks} blocks in the flat; ${(100 * r).toFixed(2)} % more contrast there than elsewhere in the calibrated lights${r > 0.01 ? " — donuts remain: offset not removed, or the flat was taken with another optical setup" : ""}`,
        });
      }
    }
  }
  return out;
}
