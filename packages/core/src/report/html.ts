/**
 * `report.html`: what a run did, for a person. One self-contained file next to run.json (inline CSS,
 * SVG plots, PNG previews as data URIs; no script, no network), written whenever run.json is.
 *
 * Every figure in it is taken from run.json and carries where it came from: an element
 * `<… data-json="/stages/pipeline/groups/0/frames/3/fwhmPx" data-fmt="fixed:2">3.14</…>` shows the value
 * at that JSON pointer (RFC 6901) formatted as `data-fmt` says (`int`, `fixed:N`, `percent:N` for a
 * fraction, `text`, `basename`). The report test re-reads run.json and checks every such element, so
 * the page cannot drift from the record.
 */
import { existsSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { encode } from "fast-png";
import { readFitsImage } from "@tile-compile/fits";
import { mtf } from "../util/mtf.js";
import type { FrameRecord, GroupRecord } from "./records.js";
import type { ColorBalanceRecord, DrizzleSummary } from "../kernel/contracts.js";

/** The parts of run.json the report reads (both `run` and `reconstruct` write this shape). */
export interface RunDocument {
  job?: { name?: string; type?: string } | null;
  jobFile?: string;
  command?: string;
  output?: string;
  engine?: string;
  kernels?: { backend: string; simd?: string; threads: number };
  requirements?: {
    filter: string;
    exposureSeconds: number;
    temperatureMin?: number;
    temperatureMax?: number;
    gain?: number;
    binning?: string;
    count: number;
    nights?: string[];
  }[];
  decisions?: {
    kind: string;
    subject: string;
    chosen?: string | null;
    reason: string;
    rejected?: { candidate: string; reason: string }[];
  }[];
  masters?: { kind: string; name: string; action: string; reason: string; inputs: number }[];
  stages: Record<string, unknown>;
  [key: string]: unknown;
}

/** A preview to show: an image file and whether it is already display-stretched. */
export interface PreviewSource {
  title: string;
  path: string;
  stretched: boolean;
  /** Per channel, v → v·scale + offset before the display stretch (e.g. a colour balance undone). */
  affine?: { scale: number; offset: number }[];
  /** Where the preview shows: with the other previews (default), or in the colour-balance section. */
  section?: "previews" | "color";
}

/** A rendered preview. */
export interface RenderedPreview {
  title: string;
  uri: string;
  section?: "previews" | "color";
}

type Fmt = "int" | "text" | "basename" | `fixed:${number}` | `percent:${number}`;

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const pointer = (path: (string | number)[]) => `/${path.map((k) => String(k).replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`;

/** The text a value shows as (the report test implements the same rules on its own). */
export function formatValue(v: unknown, fmt: Fmt): string {
  if (fmt === "text") return String(v);
  if (fmt === "basename") return basename(String(v));
  const x = Number(v);
  if (fmt === "int") return String(Math.round(x));
  const [kind, digits] = fmt.split(":") as [string, string];
  return kind === "percent" ? (100 * x).toFixed(Number(digits)) : x.toFixed(Number(digits));
}

/** A figure of run.json, tagged with its pointer (see the module comment). */
function fig(v: unknown, path: (string | number)[], fmt: Fmt, tag = "span"): string {
  if (v === undefined || v === null || (typeof v === "number" && !Number.isFinite(v))) return `<${tag} class="na">—</${tag}>`;
  return `<${tag} data-json="${esc(pointer(path))}" data-fmt="${fmt}">${esc(formatValue(v, fmt))}</${tag}>`;
}

// ── plots ────────────────────────────────────────────────────────────────────────────────────────────

/**
 * A per-frame series as an SVG scatter plot: x = frame number in the group, stacked frames blue,
 * left-out frames red crosses. The y-axis labels are the series' extremes (tagged like every figure).
 */
function seriesPlot(
  title: string,
  unit: string,
  frames: FrameRecord[],
  key: keyof FrameRecord,
  base: (string | number)[],
  digits: number,
): string {
  const pts = frames
    .map((f, i) => ({ i, v: f[key] as number | undefined, ok: f.stacked }))
    .filter((p) => typeof p.v === "number" && Number.isFinite(p.v));
  const W = 560,
    H = 150,
    L = 56,
    R = 10,
    T = 22,
    B = 26;
  if (pts.length === 0)
    return `<figure class="plot"><figcaption>${esc(title)}</figcaption><p class="na">not measured by this engine</p></figure>`;
  let lo = pts[0]!,
    hi = pts[0]!;
  for (const p of pts) {
    if (p.v! < lo.v!) lo = p;
    if (p.v! > hi.v!) hi = p;
  }
  const span = hi.v! - lo.v! || Math.abs(hi.v!) || 1;
  const y0 = lo.v! - 0.08 * span,
    y1 = hi.v! + 0.08 * span;
  const X = (i: number) => L + (W - L - R) * (frames.length > 1 ? i / (frames.length - 1) : 0.5);
  const Y = (v: number) => T + (H - T - B) * (1 - (v - y0) / (y1 - y0));
  const marks = pts
    .map((p) =>
      p.ok
        ? `<circle cx="${X(p.i).toFixed(1)}" cy="${Y(p.v!).toFixed(1)}" r="3" class="ok"><title>frame ${p.i + 1}: ${formatValue(p.v, `fixed:${digits}`)}</title></circle>`
        : `<path d="M${(X(p.i) - 3).toFixed(1)} ${(Y(p.v!) - 3).toFixed(1)}l6 6m0 -6l-6 6" class="bad"><title>frame ${p.i + 1} (left out): ${formatValue(p.v, `fixed:${digits}`)}</title></path>`,
    )
    .join("");
  const line = pts
    .filter((p) => p.ok)
    .map((p, k) => `${k ? "L" : "M"}${X(p.i).toFixed(1)} ${Y(p.v!).toFixed(1)}`)
    .join("");
  const label = (p: typeof lo, anchorY: number) =>
    `<text x="${L - 6}" y="${anchorY.toFixed(1)}" text-anchor="end" ${`data-json="${esc(pointer([...base, p.i, key]))}" data-fmt="fixed:${digits}"`}>${esc(formatValue(p.v, `fixed:${digits}`))}</text>`;
  return (
    `<figure class="plot"><figcaption>${esc(title)}${unit ? ` (${esc(unit)})` : ""}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">` +
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" class="frame"/>` +
    label(hi, Y(hi.v!) + 4) +
    (lo.i !== hi.i ? label(lo, Y(lo.v!) + 4) : "") +
    `<text x="${L}" y="${H - 8}" class="axis">frame 1</text><text x="${W - R}" y="${H - 8}" text-anchor="end" class="axis">frame ${frames.length}</text>` +
    `<path d="${line}" class="line"/>${marks}</svg></figure>`
  );
}

/** Colour of t ∈ [0, 1] on a dark-blue → yellow ramp. */
function ramp(t: number): string {
  const c = Math.max(0, Math.min(1, t));
  const r = Math.round(30 + 225 * c),
    g = Math.round(40 + 180 * c),
    b = Math.round(110 - 80 * c);
  return `rgb(${r},${g},${b})`;
}

/** TBQR's tile-weight map: each tile coloured by the spread of its frame weights (max / mean). */
function weightMapSvg(map: { columns: number; rows: number; values: number[] }, base: (string | number)[]): string {
  const cell = Math.max(6, Math.min(28, Math.floor(520 / Math.max(map.columns, map.rows))));
  const W = map.columns * cell,
    H = map.rows * cell;
  let lo = 0,
    hi = 0;
  map.values.forEach((v, i) => {
    if (v < map.values[lo]!) lo = i;
    if (v > map.values[hi]!) hi = i;
  });
  const vlo = map.values[lo]!,
    vhi = map.values[hi]!;
  // FITS row 0 is the bottom of the picture: tile row 0 is drawn at the bottom.
  const rects = map.values
    .map((v, i) => {
      const x = (i % map.columns) * cell,
        y = (map.rows - 1 - Math.floor(i / map.columns)) * cell;
      return `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${ramp(vhi > vlo ? (v - vlo) / (vhi - vlo) : 0.5)}"><title>tile ${i}: ${v.toFixed(3)}</title></rect>`;
    })
    .join("");
  return (
    `<figure class="plot"><figcaption>Tile weights: highest frame weight ÷ mean weight per tile (1 = all frames equal)</figcaption>` +
    `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="tile weight map">${rects}</svg>` +
    `<p class="legend"><span class="swatch" style="background:${ramp(0)}"></span> ${fig(vlo, [...base, "values", lo], "fixed:3")} … <span class="swatch" style="background:${ramp(1)}"></span> ${fig(vhi, [...base, "values", hi], "fixed:3")}</p></figure>`
  );
}

/** Seconds per step as horizontal bars. */
function timingBars(timings: Record<string, number>, base: (string | number)[]): string {
  const entries = Object.entries(timings);
  if (entries.length === 0) return `<p class="na">no step ran in this invocation (every step was reused)</p>`;
  const max = Math.max(...entries.map(([, v]) => v), 1e-9);
  const rowH = 20,
    L = 230,
    W = 640;
  const bars = entries
    .map(
      ([k, v], i) =>
        `<text x="${L - 8}" y="${i * rowH + 14}" text-anchor="end">${esc(k)}</text>` +
        `<rect x="${L}" y="${i * rowH + 3}" width="${Math.max(1, ((W - L - 70) * v) / max).toFixed(1)}" height="${rowH - 6}" class="bar"/>` +
        `<text x="${(L + Math.max(1, ((W - L - 70) * v) / max) + 6).toFixed(1)}" y="${i * rowH + 14}" data-json="${esc(pointer([...base, k]))}" data-fmt="fixed:2">${v.toFixed(2)}</text>`,
    )
    .join("");
  return `<figure class="plot"><figcaption>Time per step (s)</figcaption><svg viewBox="0 0 ${W} ${entries.length * rowH + 4}" width="${W}" height="${entries.length * rowH + 4}" role="img" aria-label="timings">${bars}</svg></figure>`;
}

// ── previews ─────────────────────────────────────────────────────────────────────────────────────────

/**
 * A PNG preview (at most `maxSide` px) of a FITS image, as a data URI: block-averaged, rows flipped so
 * north-up files look as in any viewer, and — for a linear image — a linked screen stretch (black point
 * median − 2.8σ, midtones so that the median lands at 0.25), the one `stretch.method: autostretch` uses.
 */
export async function previewDataUri(
  path: string,
  stretched: boolean,
  maxSide = 480,
  affine?: readonly { scale: number; offset: number }[],
): Promise<string> {
  const img = await readFitsImage(path);
  const k = Math.max(1, Math.ceil(Math.max(img.width, img.height) / maxSide));
  const w = Math.floor(img.width / k),
    h = Math.floor(img.height / k),
    n = img.width * img.height;
  const ch = img.channels >= 3 ? 3 : 1;
  const binned = new Float32Array(w * h * ch);
  for (let c = 0; c < ch; c++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let s = 0,
          m = 0;
        for (let dy = 0; dy < k; dy++)
          for (let dx = 0; dx < k; dx++) {
            const v = img.data[c * n + (y * k + dy) * img.width + x * k + dx]!;
            if (Number.isFinite(v)) {
              s += v;
              m++;
            }
          }
        const a = affine?.[c];
        binned[c * w * h + y * w + x] = m ? (a ? (s / m) * a.scale + a.offset : s / m) : 0;
      }
  let map = (v: number) => v;
  if (!stretched) {
    const sorted = Float32Array.from(binned).sort();
    const med = sorted[sorted.length >> 1]!;
    const dev = Float32Array.from(sorted, (v) => Math.abs(v - med)).sort();
    const sigma = 1.4826 * dev[dev.length >> 1]!;
    const black = med - 2.8 * sigma,
      white = Math.max(sorted[Math.floor(0.9995 * (sorted.length - 1))]!, black + 1e-6);
    const m0 = (med - black) / (white - black),
      t = 0.25;
    const mid = m0 > 0 && m0 < 1 ? (m0 * (t - 1)) / (2 * m0 * t - m0 - t) : 0.5;
    map = (v: number) => mtf(Math.min(1, Math.max(0, (v - black) / (white - black))), mid);
  }
  const px = new Uint8Array(w * h * ch);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < ch; c++) {
        const v = map(binned[c * w * h + (h - 1 - y) * w + x]!);
        px[(y * w + x) * ch + c] = Math.round(255 * Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0)));
      }
  return `data:image/png;base64,${Buffer.from(encode({ width: w, height: h, data: px, channels: ch, depth: 8 })).toString("base64")}`;
}

// ── the page ─────────────────────────────────────────────────────────────────────────────────────────

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;padding:0 16px;color:#1d2330;background:#fbfbfd}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce6;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #d8dce6;padding:3px 7px;text-align:left;vertical-align:top}th{background:#eef1f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}.na{color:#8a93a6}.bad-row td{background:#fdeeee}.meta{color:#566078}
figure.plot{display:inline-block;margin:6px 14px 10px 0;vertical-align:top}figcaption{font-weight:600;font-size:13px;margin-bottom:2px}
svg text{font-size:11px;fill:#38415a}svg .axis{fill:#8a93a6}svg .frame{fill:#fff;stroke:#d8dce6}svg .line{fill:none;stroke:#8fb3e8;stroke-width:1}
svg .ok{fill:#2361c4}svg .bad{stroke:#c62828;stroke-width:2}svg .bar{fill:#2361c4}.swatch{display:inline-block;width:12px;height:12px;vertical-align:middle;border:1px solid #999}
.previews figure{display:inline-block;margin:6px 12px 12px 0;vertical-align:top}.previews img{display:block;max-width:360px;border:1px solid #d8dce6;background:#000}
.failed{background:#fdeeee;border:1px solid #c62828;padding:8px 12px;white-space:pre-wrap}.pass{color:#1b7d3a;font-weight:600}.fail{color:#c62828;font-weight:600}`;

function table(head: string[], rows: string[][], rowClass?: (i: number) => string): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.map((r, i) => `<tr${rowClass?.(i) ? ` class="${rowClass(i)}"` : ""}>${r.join("")}</tr>`).join("")}</tbody></table>`;
}
/** A cell; `idx` marks a row number (the one kind of figure in a table that is not from run.json). */
const rowHead = (text: string) => `<th scope="row">${esc(text)}</th>`;
const td = (html: string, numeric = false, cls = "") =>
  `<td${numeric || cls ? ` class="${[numeric ? "n" : "", cls].filter(Boolean).join(" ")}"` : ""}>${html}</td>`;

/** A drizzled stack's settings and results: FWHM of the 1× and the drizzled stack (input px and ″), empty pixels, rejections, coverage map. */
function drizzleParagraph(d: DrizzleSummary, base: (string | number)[]): string {
  const arc = (px: number | undefined) => (px !== undefined && d.arcsecPerPixel ? ` (${(px * d.arcsecPerPixel).toFixed(2)}″)` : "");
  const fw = d.fwhmPx
    ? `star FWHM ${d.fwhmPx.oneX !== undefined ? `${fig(d.fwhmPx.oneX, [...base, "fwhmPx", "oneX"], "fixed:2")} px${arc(d.fwhmPx.oneX)} in the 1× stack → ` : ""}${fig(d.fwhmPx.drizzled, [...base, "fwhmPx", "drizzled"], "fixed:2")} px${arc(d.fwhmPx.drizzled)} drizzled (input pixels); `
    : "";
  return `<p class="meta">Drizzle ×${fig(d.scale, [...base, "scale"], "text")} (pixfrac ${fig(d.pixfrac, [...base, "pixfrac"], "text")}, ${fig(d.kernel, [...base, "kernel"], "text")}${d.cfa ? ", Bayer drizzle: each photosite into its colour plane" : ""}): ${fw}${fig(d.emptyPixels, [...base, "emptyPixels"], "int")} output values without a drop${d.rejectedValues !== undefined ? `; ${fig(d.rejectedValues, [...base, "rejectedValues"], "int")} input values rejected against the 1× stack` : ""}${d.coverage ? `; coverage map ${fig(d.coverage, [...base, "coverage"], "basename")}` : ""}.</p>`;
}

function groupSection(g: GroupRecord, base: (string | number)[]): string {
  const fb = [...base, "frames"];
  const stacked = g.frames.filter((f) => f.stacked).length;
  const parts: string[] = [
    `<h3>${esc(g.filter)} ${fig(g.exposureSeconds, [...base, "exposureSeconds"], "int")} s — ${stacked} of ${g.frames.length} frames stacked</h3>`,
  ];
  parts.push(
    `<p class="meta">Registration reference: ${fig(g.reference, [...base, "reference"], "basename")}${g.stack ? `; stack ${fig(g.stack.path, [...base, "stack", "path"], "basename")} by ${fig(g.stack.method, [...base, "stack", "method"], "text")} of ${fig(g.stack.frames, [...base, "stack", "frames"], "int")} frames` : ""}${g.stack?.rejectedPercent ? `; pixels rejected ${fig(g.stack.rejectedPercent.low, [...base, "stack", "rejectedPercent", "low"], "fixed:3")} % low, ${fig(g.stack.rejectedPercent.high, [...base, "stack", "rejectedPercent", "high"], "fixed:3")} % high` : ""}</p>`,
  );
  if (g.stack?.drizzle) parts.push(drizzleParagraph(g.stack.drizzle, [...base, "stack", "drizzle"]));
  parts.push(
    seriesPlot("Star FWHM", "px", g.frames, "fwhmPx", fb, 2),
    seriesPlot("Roundness", "minor/major", g.frames, "roundness", fb, 3),
    seriesPlot("Stars detected", "", g.frames, "detected", fb, 0),
    seriesPlot("Background", "ADU", g.frames, "background", fb, 1),
    seriesPlot("Weight in the stack", "relative to the mean", g.frames, "weight", fb, 3),
    seriesPlot("Registration residual", "px RMS", g.frames, "rmsPx", fb, 3),
  );
  const dropped = g.frames.map((f, i) => ({ f, i })).filter((x) => !x.f.stacked);
  if (dropped.length)
    parts.push(
      `<p><b>Left out (${dropped.length}):</b></p>`,
      table(
        ["#", "frame", "reason"],
        dropped.map(({ f, i }) => [
          td(String(i + 1), true, "idx"),
          td(fig(f.path, [...fb, i, "path"], "basename")),
          td(fig(f.reason ?? "", [...fb, i, "reason"], "text")),
        ]),
      ),
    );
  else parts.push(`<p class="meta">No frame was left out.</p>`);
  parts.push(
    `<details><summary>Per-frame table (${g.frames.length} frames)</summary>`,
    table(
      [
        "#",
        "frame",
        "FWHM px",
        "roundness",
        "stars",
        "trails",
        "background",
        "noise σ",
        "matched",
        "rms px",
        "median px",
        "weight",
        "stacked",
      ],
      g.frames.map((f, i) => [
        td(String(i + 1), true, "idx"),
        td(fig(f.path, [...fb, i, "path"], "basename")),
        td(fig(f.fwhmPx, [...fb, i, "fwhmPx"], "fixed:2"), true),
        td(fig(f.roundness, [...fb, i, "roundness"], "fixed:3"), true),
        td(fig(f.detected, [...fb, i, "detected"], "int"), true),
        td(fig(f.trails, [...fb, i, "trails"], "int"), true),
        td(fig(f.background, [...fb, i, "background"], "fixed:1"), true),
        td(fig(f.noise, [...fb, i, "noise"], "fixed:2"), true),
        td(fig(f.matched, [...fb, i, "matched"], "int"), true),
        td(fig(f.rmsPx, [...fb, i, "rmsPx"], "fixed:3"), true),
        td(fig(f.medianPx, [...fb, i, "medianPx"], "fixed:3"), true),
        td(fig(f.weight, [...fb, i, "weight"], "fixed:3"), true),
        td(f.stacked ? "yes" : "no"),
      ]),
      (i) => (g.frames[i]!.stacked ? "" : "bad-row"),
    ),
    `</details>`,
  );
  const t = g.stack?.tbqr;
  if (t) {
    const tb = [...base, "stack", "tbqr"],
      v = t.validation,
      vb = [...tb, "validation"];
    parts.push(
      `<h3>TBQR (${fig(t.mode, [...tb, "mode"], "text")} mode): ${fig(t.tiles, [...tb, "tiles"], "int")} tiles of ${fig(t.tileSize, [...tb, "tileSize"], "int")} px, step ${fig(t.tileStep, [...tb, "tileStep"], "int")} px, ${fig(t.fallbackTiles, [...tb, "fallbackTiles"], "int")} fallback</h3>`,
    );
    parts.push(
      table(
        ["figure", "TBQR", "plain mean", "verdict"],
        [
          [
            rowHead("star FWHM (px)"),
            td(fig(v.fwhmTbqr, [...vb, "fwhmTbqr"], "fixed:3"), true),
            td(fig(v.fwhmMean, [...vb, "fwhmMean"], "fixed:3"), true),
            td(`${fig(v.fwhmImprovement, [...vb, "fwhmImprovement"], "percent:1")} % sharper`),
          ],
          [
            rowHead("background noise"),
            td(`×${fig(v.noiseRatio, [...vb, "noiseRatio"], "fixed:3")}`, true),
            td("×1", true, "const"),
            td(""),
          ],
          [
            rowHead("tile seams (worst / 95th percentile boundary ratio, 1 = none)"),
            td(
              `${fig(v.seamWorstRatio, [...vb, "seamWorstRatio"], "fixed:3")} / ${fig(v.seamP95Ratio, [...vb, "seamP95Ratio"], "fixed:3")}`,
              true,
            ),
            td(""),
            td(""),
          ],
          [
            rowHead("weight spread across frames (mean CV²)"),
            td(fig(v.tileWeightVariance, [...vb, "tileWeightVariance"], "fixed:3"), true),
            td("0", true, "const"),
            td(
              v.passed
                ? `<span class="pass">validation passed</span>`
                : `<span class="fail">validation failed: ${v.failures.map((f, k) => fig(f, [...vb, "failures", k], "text")).join("; ")}</span>`,
            ),
          ],
        ],
      ),
    );
    parts.push(weightMapSvg(t.weightMap, [...tb, "weightMap"]));
  }
  return parts.join("\n");
}

/** The report page for a run.json document and its previews (title, data URI). */
export function renderRunReport(doc: RunDocument, allPreviews: RenderedPreview[]): string {
  const previews = allPreviews.filter((p) => (p.section ?? "previews") === "previews");
  const colorPreviews = allPreviews.filter((p) => p.section === "color");
  const st = doc.stages as Record<string, Record<string, unknown>>;
  const stageKey = st.pipeline ? "pipeline" : st.reconstruct ? "reconstruct" : (Object.keys(st)[0] ?? "");
  const stage = (st[stageKey] ?? {}) as {
    groups?: GroupRecord[];
    timings?: Record<string, number>;
    reused?: string[];
    compositionSkipped?: string;
    failed?: { code: string; message: string };
  };
  const title = doc.job?.name ? `${doc.job.name} (${doc.job.type ?? ""})` : (doc.command ?? "tile-compile run");
  const body: string[] = [
    `<h1>tile-compile — ${esc(title)}</h1>`,
    `<p class="meta">${doc.jobFile ? `Job ${fig(doc.jobFile, ["jobFile"], "text")} · ` : ""}output ${fig(doc.output, ["output"], "text")} · kernels ${fig(doc.kernels?.backend, ["kernels", "backend"], "text")}, ${fig(doc.kernels?.threads, ["kernels", "threads"], "int")} threads · everything here is from run.json beside this file</p>`,
  ];
  if (stage.failed)
    body.push(
      `<p class="failed"><b>This run failed</b> (${fig(stage.failed.code, ["stages", stageKey, "failed", "code"], "text")}): ${fig(stage.failed.message, ["stages", stageKey, "failed", "message"], "text")}. What it had done before is below; finished steps are reused when it runs again.</p>`,
    );
  if (doc.requirements?.length) {
    body.push(
      `<h2>Requirements</h2>`,
      table(
        ["filter", "exposure s", "frames", "temperature °C", "gain", "binning", "nights"],
        doc.requirements.map((r, i) => [
          td(fig(r.filter, ["requirements", i, "filter"], "text")),
          td(fig(r.exposureSeconds, ["requirements", i, "exposureSeconds"], "text"), true),
          td(fig(r.count, ["requirements", i, "count"], "int"), true),
          td(
            `${fig(r.temperatureMin, ["requirements", i, "temperatureMin"], "fixed:2")} … ${fig(r.temperatureMax, ["requirements", i, "temperatureMax"], "fixed:2")}`,
            true,
          ),
          td(fig(r.gain, ["requirements", i, "gain"], "text"), true),
          td(fig(r.binning, ["requirements", i, "binning"], "text")),
          td((r.nights ?? []).map((n, k) => fig(n, ["requirements", i, "nights", k], "text")).join(", ")),
        ]),
      ),
    );
  }
  if (doc.decisions?.length) {
    body.push(
      `<h2>Calibration decisions</h2>`,
      table(
        ["kind", "for", "chosen", "why", "candidates not taken"],
        doc.decisions.map((d, i) => [
          td(fig(d.kind, ["decisions", i, "kind"], "text")),
          td(fig(d.subject, ["decisions", i, "subject"], "text")),
          td(d.chosen ? fig(d.chosen, ["decisions", i, "chosen"], "text") : `<span class="na">none</span>`),
          td(fig(d.reason, ["decisions", i, "reason"], "text")),
          td(
            (d.rejected ?? [])
              .map(
                (r, k) =>
                  `${fig(r.candidate, ["decisions", i, "rejected", k, "candidate"], "text")}: ${fig(r.reason, ["decisions", i, "rejected", k, "reason"], "text")}`,
              )
              .join("<br>"),
          ),
        ]),
      ),
    );
  }
  if (doc.masters?.length) {
    body.push(
      `<h2>Masters</h2>`,
      table(
        ["kind", "master", "action", "why", "raw frames"],
        doc.masters.map((m, i) => [
          td(fig(m.kind, ["masters", i, "kind"], "text")),
          td(fig(m.name, ["masters", i, "name"], "text")),
          td(fig(m.action, ["masters", i, "action"], "text")),
          td(fig(m.reason, ["masters", i, "reason"], "text")),
          td(fig(m.inputs, ["masters", i, "inputs"], "int"), true),
        ]),
      ),
    );
  }
  const health = (st.calibrate?.health ?? []) as {
    check: string;
    subject: string;
    value?: number;
    unit?: string;
    limit: string;
    verdict: string;
    severity?: string;
    detail: string;
  }[];
  if (health.length) {
    const hb = ["stages", "calibrate", "health"];
    const failed = health.filter((h) => h.verdict === "fail").length,
      warned = health.filter((h) => h.verdict === "warn").length;
    body.push(
      `<h2>Calibration health</h2>`,
      `<p class="meta">Measured on the masters and a sample of calibrated lights: ${failed ? `<span class="fail">failed checks present</span>` : warned ? "warnings present" : `<span class="pass">every check passed or was not applicable</span>`}. A failing check stops the run unless relaxed by name (tile_compile.yaml <code>calibration.checks.&lt;name&gt;: warn</code>).</p>`,
      table(
        ["check", "for", "figure", "limit", "verdict", "what was measured"],
        health.map((h, i) => [
          td(fig(h.check, [...hb, i, "check"], "text")),
          td(fig(h.subject, [...hb, i, "subject"], "text")),
          td(
            h.value === undefined
              ? `<span class="na">—</span>`
              : `${fig(h.value, [...hb, i, "value"], "fixed:2")} ${h.unit ? fig(h.unit, [...hb, i, "unit"], "text") : ""}`,
            true,
          ),
          td(fig(h.limit, [...hb, i, "limit"], "text")),
          td(
            `<span class="${h.verdict === "pass" ? "pass" : h.verdict === "fail" ? "fail" : ""}">${fig(h.verdict, [...hb, i, "verdict"], "text")}</span>${h.severity && h.severity !== "error" ? ` (${fig(h.severity, [...hb, i, "severity"], "text")})` : ""}`,
          ),
          td(fig(h.detail, [...hb, i, "detail"], "text")),
        ]),
        (i) => (health[i]!.verdict === "fail" ? "bad-row" : ""),
      ),
    );
  }
  const strays = (doc.strays ?? []) as { filter: string; exposureSeconds: number; action: string; reason: string }[];
  if (strays.length) {
    body.push(
      `<h2>Exposure groups left out or flagged</h2>`,
      table(
        ["filter", "exposure s", "action", "why"],
        strays.map((x, i) => [
          td(fig(x.filter, ["strays", i, "filter"], "text")),
          td(fig(x.exposureSeconds, ["strays", i, "exposureSeconds"], "text"), true),
          td(fig(x.action, ["strays", i, "action"], "text")),
          td(fig(x.reason, ["strays", i, "reason"], "text")),
        ]),
      ),
    );
  }
  if (stage.groups?.length) {
    body.push(`<h2>Frames, registration and stacks</h2>`);
    stage.groups.forEach((g, i) => body.push(groupSection(g, ["stages", stageKey, "groups", i])));
  }
  const color = (stage as { color?: ColorBalanceRecord }).color;
  if (color) body.push(colorSection(color, ["stages", stageKey, "color"], colorPreviews));
  if (stage.compositionSkipped)
    body.push(`<p><b>Composition skipped:</b> ${fig(stage.compositionSkipped, ["stages", stageKey, "compositionSkipped"], "text")}</p>`);
  if (previews.length)
    body.push(
      `<h2>Previews</h2><div class="previews">${previews.map((p) => `<figure><img alt="${esc(p.title)}" src="${p.uri}"><figcaption>${esc(p.title)}</figcaption></figure>`).join("")}</div>`,
    );
  body.push(`<h2>Timings</h2>`, timingBars(stage.timings ?? {}, ["stages", stageKey, "timings"]));
  if (stage.reused?.length)
    body.push(
      `<p class="meta">Reused from an earlier run: ${stage.reused.map((r, k) => fig(r, ["stages", stageKey, "reused", k], "text")).join(", ")}</p>`,
    );
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)} — tile-compile report</title><style>${CSS}</style></head><body>\n${body.join("\n")}\n</body></html>\n`;
}

/** The composition's colour balance: per channel the sky level found and the factor applied, the stars measured, before/after previews. */
function colorSection(c: ColorBalanceRecord, base: (string | number)[], previews: RenderedPreview[]): string {
  const rows = (["R", "G", "B"] as const).map((ch) => [
    td(esc(ch)),
    td(fig(c.sky[ch], [...base, "sky", ch], "fixed:3"), true),
    td(c.neutralizeBackground ? fig(c.skyCommon, [...base, "skyCommon"], "fixed:3") : `<span class="na">unchanged</span>`, true),
    td(fig(c.factor[ch], [...base, "factor", ch], "fixed:4"), true),
  ]);
  const wb =
    c.whiteBalance !== "stars"
      ? `No white balance (<code>composition.color.white_balance: none</code>; the default for narrowband palettes).`
      : c.skipped
        ? `<span class="fail">White balance skipped:</span> ${fig(c.skipped, [...base, "skipped"], "text")}`
        : `White balance on ${fig(c.stars, [...base, "stars"], "int")} isolated, unsaturated stars: before it their median R/G was ${fig(c.medianRatio?.RG, [...base, "medianRatio", "RG"], "fixed:3")} and B/G ${fig(c.medianRatio?.BG, [...base, "medianRatio", "BG"], "fixed:3")} (scatter ${fig(c.ratioScatter?.RG, [...base, "ratioScatter", "RG"], "percent:1")} % and ${fig(c.ratioScatter?.BG, [...base, "ratioScatter", "BG"], "percent:1")} %); R and B are scaled so the median star takes the reference colour.`;
  return [
    `<h2>Colour balance</h2>`,
    `<p class="meta">Each output channel v became sky + (v − sky of the channel) × factor, before the luminance layer. ${c.neutralizeBackground ? "Background neutralised: every channel's sky (the darkest quarter of the image) moved to green's." : "Background left as it was (<code>neutralize_background: false</code>)."}</p>`,
    table(["channel", "sky before", "sky after", "factor"], rows),
    `<p>${wb}</p>`,
    previews.length
      ? `<div class="previews">${previews.map((p) => `<figure><img alt="${esc(p.title)}" src="${p.uri}"><figcaption>${esc(p.title)}</figcaption></figure>`).join("")}</div>`
      : "",
  ].join("\n");
}

/**
 * Write `<dir>/report.html` (atomically) for a run.json document: previews of the given images (each
 * stack, the final image) are made here. A preview that cannot be read is named, not fatal.
 */
export async function writeRunReport(dir: string, doc: RunDocument, sources: PreviewSource[]): Promise<string> {
  const previews: RenderedPreview[] = [];
  for (const s of sources) {
    if (!existsSync(s.path)) continue;
    try {
      previews.push({
        title: s.title,
        uri: await previewDataUri(s.path, s.stretched, 480, s.affine),
        ...(s.section ? { section: s.section } : {}),
      });
    } catch {
      // a preview is a convenience: an unreadable image is skipped (its path is in run.json)
    }
  }
  const target = join(dir, "report.html");
  const tmp = `${target}.${process.pid}.partial`;
  await writeFile(tmp, renderRunReport(doc, previews));
  await rename(tmp, target);
  return target;
}
