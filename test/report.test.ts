/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * report.html in a real browser (Debian's chromium, headless, driven by puppeteer-core): a full demo job
 * with frame weights and a frame filter (so frames are dropped with a reason), and a TBQR `reconstruct`
 * of its L frames (tile-weight map, seam figures). For each report: the page loads with no console
 * error, no failed or outgoing request (self-contained), every plot and preview renders (pixels that are
 * not background), and every figure tagged with a run.json pointer shows exactly that value, formatted by
 * the rules below (implemented here, not imported), while no table cell shows an untagged number.
 * Skipped with one line when chromium is not installed (CI installs it).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { decode } from "fast-png";
import { beforeAll, afterAll, describe, expect, it } from "vitest";
import type { Browser } from "puppeteer-core";
import { generateDemoLibrary } from "@tile-compile/cli";
import { runCli } from "@tile-compile/cli";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(
  (p) => existsSync(p) && spawnSync(p, ["--version"], { stdio: "ignore" }).status === 0,
);
if (!CHROMIUM) console.log("SKIP report.html browser test: chromium not installed — apt-get install chromium");

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false }, out, err };
}

/** RFC 6901 pointer lookup. */
function at(doc: unknown, pointer: string): unknown {
  return pointer
    .split("/")
    .slice(1)
    .map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce<unknown>((v, k) => (v === undefined || v === null ? undefined : (v as Record<string, unknown>)[k]), doc);
}

/** The display rules of the report's data-fmt attribute, written independently of the renderer. */
function expected(v: unknown, fmt: string): string {
  if (fmt === "text") return String(v);
  if (fmt === "basename") return basename(String(v));
  if (fmt === "int") return String(Math.round(Number(v)));
  const m = /^(fixed|percent):(\d)$/.exec(fmt);
  if (!m) throw new Error(`unknown data-fmt ${fmt}`);
  return (m[1] === "percent" ? Number(v) * 100 : Number(v)).toFixed(Number(m[2]));
}

/** Distinct colours of a PNG screenshot and the share of pixels unlike its most common colour. */
function pixels(png: Uint8Array): { colours: number; nonBackground: number } {
  const img = decode(png);
  const ch = img.channels,
    counts = new Map<number, number>();
  for (let i = 0; i < img.width * img.height; i++) {
    const k = (Number(img.data[i * ch]) << 16) | (Number(img.data[i * ch + 1]) << 8) | Number(img.data[i * ch + 2]);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const top = Math.max(...counts.values());
  return { colours: counts.size, nonBackground: 1 - top / (img.width * img.height) };
}

/** Median R − B (8-bit) of a colour PNG's darker half of pixels (its sky). */
function skyTint(png: Uint8Array): number {
  const img = decode(png);
  const ch = img.channels;
  const px: [number, number][] = [];
  for (let i = 0; i < img.width * img.height; i++) {
    const r = Number(img.data[i * ch]),
      g = Number(img.data[i * ch + 1]),
      b = Number(img.data[i * ch + 2]);
    px.push([r + g + b, r - b]);
  }
  px.sort((a, b) => a[0] - b[0]);
  const dark = px
    .slice(0, px.length >> 1)
    .map((p) => p[1])
    .sort((a, b) => a - b);
  return dark[dark.length >> 1]!;
}

interface PageFacts {
  errors: string[];
  requests: string[];
  figures: { pointer: string; fmt: string; text: string }[];
  headings: string[];
  untagged: string[];
  images: { alt: string; width: number; height: number }[];
  plots: number;
}

describe.skipIf(!CHROMIUM)("report.html in headless Chromium", () => {
  let browser: Browser;
  let dir: string;
  beforeAll(async () => {
    const { default: puppeteer } = await import("puppeteer-core");
    browser = await puppeteer.launch({
      executablePath: CHROMIUM!,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    dir = mkdtempSync(join(tmpdir(), "tc-report-"));
    const { jobs } = await generateDemoLibrary(dir);
    // Noise weights (so the weight plot varies) and an FWHM filter that keeps 85 %: the L group (12 frames)
    // loses its worst one or two frames, each with its figure and the threshold as the reason.
    writeFileSync(
      join(dir, "tile_compile.yaml"),
      "stacking:\n  weighting: noise\n  frame_filters:\n    fwhm: { keep: 85 }\npipeline:\n  abort_on_fail: false\n",
    );
    const c = capture();
    expect(await runCli(["run", jobs[0]!], { io: c.io, cwd: dir }), c.err.join("\n")).toBe(0);
    const r = capture();
    expect(
      await runCli(["reconstruct", join(dir, "M42", "processed", "calibrated", "L_180s"), "--out", join(dir, "tbqr-out"), "--emergency"], {
        io: r.io,
        cwd: dir,
      }),
      r.err.join("\n"),
    ).toBe(0);
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function open(html: string): Promise<PageFacts & { shot: Uint8Array; plotShot: Uint8Array; previewShot: Uint8Array }> {
    const page = await browser.newPage();
    const errors: string[] = [],
      requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warn") errors.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page error: ${String(e)}`));
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
    page.on("request", (r) => {
      if (!/^(file|data):/.test(r.url())) requests.push(r.url());
    });
    await page.setViewport({ width: 1200, height: 900 });
    await page.goto(`file://${html}`, { waitUntil: "load" });
    const facts = await page.evaluate(() => {
      const figures = [...document.querySelectorAll("[data-json]")].map((e) => ({
        pointer: e.getAttribute("data-json")!,
        fmt: e.getAttribute("data-fmt")!,
        text: e.textContent ?? "",
      }));
      // A table cell's own text, without its tagged figures: must hold no digit (row numbers excepted).
      const untagged: string[] = [];
      for (const td of document.querySelectorAll("td")) {
        if (td.classList.contains("idx") || td.classList.contains("const")) continue;
        const copy = td.cloneNode(true) as HTMLElement;
        copy.querySelectorAll("[data-json]").forEach((e) => e.remove());
        if (/\d/.test(copy.textContent ?? "")) untagged.push(td.textContent ?? "");
      }
      const images = [...document.images].map((i) => ({ alt: i.alt, width: i.naturalWidth, height: i.naturalHeight }));
      return {
        figures,
        untagged,
        images,
        plots: document.querySelectorAll("figure.plot svg").length,
        headings: [...document.querySelectorAll("h2")].map((e) => e.textContent ?? ""),
      };
    });
    const shot = await page.screenshot({ fullPage: true, type: "png" });
    const plot = await page.$("figure.plot svg");
    const plotShot = plot ? await plot.screenshot({ type: "png" }) : new Uint8Array();
    const img = await page.$(".previews img");
    const previewShot = img ? await img.screenshot({ type: "png" }) : new Uint8Array();
    await page.close();
    return { errors, requests, ...facts, shot, plotShot, previewShot };
  }

  function checkFigures(run: unknown, p: PageFacts) {
    expect(p.figures.length).toBeGreaterThan(50);
    const wrong = p.figures.filter((f) => at(run, f.pointer) === undefined || expected(at(run, f.pointer), f.fmt) !== f.text);
    expect(wrong.slice(0, 5), `${wrong.length} figures differ from run.json`).toEqual([]);
    expect(p.untagged.slice(0, 5), "table cells with numbers not taken from run.json").toEqual([]);
  }

  it("the job run's report: loads cleanly, plots and previews render, every figure is run.json's", async () => {
    const out = join(dir, "M42", "processed");
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8")) as {
      stages: {
        pipeline: {
          groups: { label: string; frames: { stacked: boolean; reason?: string; fwhmPx?: number; weight?: number }[] }[];
          timings: Record<string, number>;
          stacks: unknown[];
        };
      };
    };
    const p = await open(join(out, "report.html"));
    expect(p.errors).toEqual([]);
    expect(p.requests).toEqual([]);
    checkFigures(run, p);
    const pl = run.stages.pipeline;
    // What the page must show: each frame's FWHM and weight, each dropped frame's reason, each timing.
    const shown = new Set(p.figures.map((f) => f.pointer));
    pl.groups.forEach((g, gi) =>
      g.frames.forEach((f, fi) => {
        expect(shown.has(`/stages/pipeline/groups/${gi}/frames/${fi}/fwhmPx`)).toBe(true);
        if (f.stacked) expect(shown.has(`/stages/pipeline/groups/${gi}/frames/${fi}/weight`)).toBe(true);
        else expect(shown.has(`/stages/pipeline/groups/${gi}/frames/${fi}/reason`)).toBe(true);
      }),
    );
    for (const k of Object.keys(pl.timings))
      expect(shown.has(`/stages/pipeline/timings/${k.replace(/~/g, "~0").replace(/\//g, "~1")}`)).toBe(true);
    // The calibration health table: every check's verdict and detail, and its figure where it has one.
    const health = (run as unknown as { stages: { calibrate: { health: { check: string; value?: number }[] } } }).stages.calibrate.health;
    expect(new Set(health.map((h) => h.check))).toEqual(
      new Set([
        "master_mismatch",
        "flat_exposure",
        "temperature",
        "offset",
        "double_offset",
        "negative_pixels",
        "vignetting_residual",
        "dust_residual",
      ]),
    );
    health.forEach((h, i) => {
      expect(shown.has(`/stages/calibrate/health/${i}/verdict`)).toBe(true);
      expect(shown.has(`/stages/calibrate/health/${i}/detail`)).toBe(true);
      if (h.value !== undefined) expect(shown.has(`/stages/calibrate/health/${i}/value`)).toBe(true);
    });
    expect(p.headings).toContain("Calibration health");
    const dropped = pl.groups.flatMap((g) => g.frames.filter((f) => !f.stacked));
    expect(dropped.length).toBeGreaterThanOrEqual(1);
    expect(dropped.every((f) => /fwhm/i.test(f.reason ?? ""))).toBe(true);
    // Weights vary (noise weighting) and average 1 over a group's stacked frames (to 1e-9).
    const L = pl.groups.find((g) => g.label === "L_180s")!;
    const w = L.frames.filter((f) => f.stacked).map((f) => f.weight!);
    expect(Math.abs(w.reduce((a, v) => a + v, 0) / w.length - 1)).toBeLessThan(1e-9);
    expect(Math.max(...w) - Math.min(...w)).toBeGreaterThan(0.001);
    // The colour balance: its heading, every channel's sky level and factor, the stars it measured, and the
    // composite before and after it (decoded by the browser, and visibly different: the demo's sky glows
    // orange through filters whose blue is weakest — the before preview's sky is yellow, the after one's grey).
    expect(p.headings).toContain("Colour balance");
    for (const ch of ["R", "G", "B"])
      for (const k of ["sky", "factor"]) expect(shown.has(`/stages/pipeline/color/${k}/${ch}`), `${k} ${ch}`).toBe(true);
    expect(shown.has("/stages/pipeline/color/stars")).toBe(true);
    const color = (run as unknown as { stages: { pipeline: { color: { factor: { R: number; B: number }; stars: number } } } }).stages
      .pipeline.color;
    expect(color.stars).toBeGreaterThanOrEqual(5);
    expect(color.factor.B).toBeGreaterThan(1.2);
    const html = readFileSync(join(out, "report.html"), "utf8");
    const section = html.slice(html.indexOf("<h2>Colour balance</h2>"));
    const [before, after] = [...section.matchAll(/src="data:image\/png;base64,([^"]+)"/g)]
      .slice(0, 2)
      .map((m) => skyTint(Buffer.from(m[1]!, "base64")));
    console.log(`preview sky (R − B, 8-bit): before the colour balance ${before!.toFixed(1)}, after ${after!.toFixed(1)}`);
    expect(before!).toBeGreaterThan(8);
    expect(Math.abs(after!)).toBeLessThan(3);
    // Six plots per group, one preview per stack, the final image and the composite before and after the
    // colour balance, all decoded by the browser.
    expect(p.plots).toBe(6 * pl.groups.length + 1);
    expect(p.images.length).toBe(pl.stacks.length + 3);
    for (const im of p.images) expect(im.width, im.alt).toBeGreaterThan(50);
    // Screenshots are not blank: the page, a plot (its points and axis) and a preview.
    expect(pixels(p.shot).colours).toBeGreaterThan(200);
    expect(pixels(p.plotShot).nonBackground).toBeGreaterThan(0.02);
    expect(pixels(p.previewShot).nonBackground).toBeGreaterThan(0.3);
    expect(pixels(p.previewShot).colours).toBeGreaterThan(50);
  });

  it("reconstruct's report: TBQR figures, tile-weight map and per-frame weights from run.json", async () => {
    const out = join(dir, "tbqr-out");
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8")) as {
      stages: {
        reconstruct: {
          groups: {
            frames: { weight?: number }[];
            stack: {
              tbqr: { mode: string; weightMap: { columns: number; rows: number; values: number[] }; validation: Record<string, unknown> };
            };
          }[];
        };
      };
    };
    const validation = JSON.parse(readFileSync(join(out, "validation.json"), "utf8")) as Record<string, number>;
    const t = run.stages.reconstruct.groups[0]!.stack.tbqr;
    // run.json carries TBQR's own validation report, figure for figure.
    for (const k of ["fwhmTbqr", "fwhmMean", "noiseRatio", "seamWorstRatio", "seamP95Ratio", "tileWeightVariance"])
      expect(t.validation[k]).toBe(validation[k]);
    expect(t.mode).toBe("emergency");
    expect(t.weightMap.values.length).toBe(t.weightMap.columns * t.weightMap.rows);
    expect(Math.min(...t.weightMap.values)).toBeGreaterThanOrEqual(1 - 1e-9);
    const p = await open(join(out, "report.html"));
    expect(p.errors).toEqual([]);
    expect(p.requests).toEqual([]);
    checkFigures(run, p);
    const shown = new Set(p.figures.map((f) => f.pointer));
    for (const k of ["fwhmTbqr", "fwhmMean", "noiseRatio", "seamWorstRatio"])
      expect(shown.has(`/stages/reconstruct/groups/0/stack/tbqr/validation/${k}`)).toBe(true);
    expect(p.plots).toBe(6 + 1 + 1); // per-frame plots, tile-weight map, timings
    expect(p.images.length).toBe(1);
    expect(pixels(p.previewShot).nonBackground).toBeGreaterThan(0.3);
  });

  it("a failed run's report: the error, and what was done before it (frames, reasons, timings)", async () => {
    const base = mkdtempSync(join(tmpdir(), "tc-report-fail-"));
    const { jobs } = await generateDemoLibrary(base, { width: 240, height: 180, framesPerSet: 3 });
    // TBQR on 3–6 frames per group: below assumptions.frames_min, refused after calibration and registration.
    writeFileSync(join(base, "tile_compile.yaml"), "stacking:\n  method: tbqr\n");
    const c = capture();
    expect(await runCli(["run", jobs[0]!], { io: c.io, cwd: base })).not.toBe(0);
    const out = join(base, "M42", "processed");
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8")) as {
      stages: { pipeline: { failed: { code: string; message: string }; groups: unknown[]; timings: Record<string, number> } };
    };
    expect(run.stages.pipeline.failed.code).toMatch(/^TC_/);
    expect(run.stages.pipeline.timings.calibrate).toBeGreaterThan(0);
    const p = await open(join(out, "report.html"));
    expect(p.errors).toEqual([]);
    checkFigures(run, p);
    const shown = new Set(p.figures.map((f) => f.pointer));
    expect(shown.has("/stages/pipeline/failed/message")).toBe(true);
    expect(shown.has("/stages/pipeline/timings/calibrate")).toBe(true);
  });
});
