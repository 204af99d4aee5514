import { existsSync, readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadRecon } from "@tile-compile/recon-native";
import { writeFitsImage } from "@tile-compile/core";
import { FitsHeader } from "@tile-compile/core";
import type { EngineContext } from "@tile-compile/core";
import { seededRandom } from "@tile-compile/core";
import { DEFAULT_TBQR, reconstructTbqr, tileFractions, validationFailures, type TbqrOptions } from "./reconstruct.js";

const ctx = (): EngineContext => ({
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
  progress() {},
  workdir: tmpdir(),
  options: {},
  runtime: { threads: 2, memoryBudgetBytes: 1 << 30 },
});
const EMERGENCY: TbqrOptions = { ...DEFAULT_TBQR, assumptions: { ...DEFAULT_TBQR.assumptions, allowEmergency: true } };

async function set(
  dir: string,
  n: number,
  o: { W?: number; H?: number; exp?: (k: number) => number; channels?: number; stretch?: boolean; nanFrame?: number } = {},
): Promise<string[]> {
  const W = o.W ?? 200,
    H = o.H ?? 160,
    C = o.channels ?? 1,
    r = seededRandom(9);
  const stars = Array.from({ length: 40 }, () => ({ x: 10 + r() * (W - 20), y: 10 + r() * (H - 20), f: 5000 + 30000 * r() }));
  const out: string[] = [];
  for (let k = 0; k < n; k++) {
    const g = seededRandom(100 + k);
    const sg = 1.1 + 0.4 * g();
    const data = new Float32Array(W * H * C);
    for (let c = 0; c < C; c++)
      for (let i = 0; i < W * H; i++) data[c * W * H + i] = 400 + 5 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g());
    for (let c = 0; c < C; c++)
      for (const s of stars)
        for (let y = Math.max(0, Math.floor(s.y) - 8); y < Math.min(H, Math.floor(s.y) + 9); y++)
          for (let x = Math.max(0, Math.floor(s.x) - 8); x < Math.min(W, Math.floor(s.x) + 9); x++)
            data[c * W * H + y * W + x] =
              data[c * W * H + y * W + x]! +
              ((s.f * (c + 1)) / (2 * Math.PI * sg * sg)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
    if (o.stretch) {
      let mx = 0;
      for (const v of data) mx = Math.max(mx, v);
      for (let i = 0; i < data.length; i++) data[i] = Math.asinh((20 * data[i]!) / mx) / Math.asinh(20);
    }
    if (o.nanFrame === k) data.fill(NaN);
    const p = join(dir, `f${String(k).padStart(3, "0")}.fit`);
    await writeFitsImage(p, { width: W, height: H, channels: C, data }, { header: new FitsHeader().set("EXPTIME", o.exp ? o.exp(k) : 60) });
    out.push(p);
  }
  return out;
}

describe("TBQR behaviour", () => {
  it("8. determinism: two runs, and 1 vs 2 threads, give byte-identical stacked.fit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-det-"));
    const f = await set(dir, 12);
    const recon = loadRecon();
    const before = recon.threads();
    try {
      recon.setThreads(2);
      await reconstructTbqr(f, join(dir, "a.fit"), EMERGENCY, ctx());
      await reconstructTbqr(f, join(dir, "b.fit"), EMERGENCY, ctx());
      recon.setThreads(1);
      await reconstructTbqr(f, join(dir, "c.fit"), EMERGENCY, ctx());
    } finally {
      recon.setThreads(before);
    }
    const [a, b, c] = ["a", "b", "c"].map((x) => readFileSync(join(dir, `${x}.fit`)));
    expect(Buffer.compare(a!, b!)).toBe(0);
    expect(Buffer.compare(a!, c!)).toBe(0);
  });

  it("13. channel isolation: perturbing R only leaves G and B bitwise unchanged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-iso-"));
    const f = await set(dir, 10, { channels: 3 });
    await reconstructTbqr(f, join(dir, "a.fit"), EMERGENCY, ctx());
    // Perturb channel R of frame 3 (a bright blob) and reconstruct again.
    const { readFitsImage } = await import("@tile-compile/core");
    const img = await readFitsImage(f[3]!);
    for (let i = 0; i < 2000; i++) img.data[i] = img.data[i]! + 5000;
    await writeFitsImage(
      f[3]!,
      { width: img.width, height: img.height, channels: 3, data: img.data },
      { header: img.header.withoutStructure() },
    );
    await reconstructTbqr(f, join(dir, "b.fit"), EMERGENCY, ctx());
    const a = await readFitsImage(join(dir, "a.fit")),
      b = await readFitsImage(join(dir, "b.fit"));
    const n = a.width * a.height;
    expect(
      Buffer.compare(
        Buffer.from(a.data.buffer, a.data.byteOffset + 4 * n, 8 * n),
        Buffer.from(b.data.buffer, b.data.byteOffset + 4 * n, 8 * n),
      ),
    ).toBe(0);
    expect(
      Buffer.compare(Buffer.from(a.data.buffer, a.data.byteOffset, 4 * n), Buffer.from(b.data.buffer, b.data.byteOffset, 4 * n)),
    ).not.toBe(0);
  });

  it("16. no frame selection: every frame contributes (weights all positive); artifacts written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-all-"));
    const f = await set(dir, 10);
    const r = await reconstructTbqr(f, join(dir, "s.fit"), { ...EMERGENCY, artifactsDir: join(dir, "art") }, ctx());
    expect(r.frames).toBe(10);
    expect(r.G[0]!.every((g) => g > 0)).toBe(true);
    const csv = readFileSync(join(dir, "art", "frame_metrics.csv"), "utf8")
      .trim()
      .split("\n");
    expect(csv).toHaveLength(11);
    const v = JSON.parse(readFileSync(join(dir, "art", "validation.json"), "utf8"));
    expect(v.mode).toBe("emergency");
    const proc = readFileSync(join(dir, "art", "tile_compile.proc"), "utf8");
    expect(proc).toMatch(/GENERATE tile_grid WITH T = \d+, O = \d+, S = \d+/);
    expect(proc).toMatch(/SKIP TO Phase 10/);
  });

  it("validation (phase 10): a failed check with pipeline.abort_on_fail fails the stage and writes no result, only the report; without it the result is kept", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-val-"));
    const f = await set(dir, 10);
    const rules = {
      minFwhmImprovementPercent: 50,
      maxBackgroundRmsIncreasePercent: 10,
      minTileWeightVariance: 0,
      requireNoTilePattern: true,
      abortOnFail: true,
    };
    const e = await reconstructTbqr(
      f,
      join(dir, "s.fit"),
      { ...EMERGENCY, artifactsDir: join(dir, "art"), validation: rules },
      ctx(),
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "TC_VALIDATION_FAILED" });
    expect(String((e as Error).message)).toMatch(/FWHM improvement -?\d+\.\d % < validation\.min_fwhm_improvement_percent 50 %/);
    expect(existsSync(join(dir, "s.fit"))).toBe(false);
    const v = JSON.parse(readFileSync(join(dir, "art", "validation.json"), "utf8"));
    expect(v).toMatchObject({ passed: false, rules: { minFwhmImprovementPercent: 50 } });
    expect(v.failures).toHaveLength(1);
    const kept = await reconstructTbqr(f, join(dir, "kept.fit"), { ...EMERGENCY, validation: { ...rules, abortOnFail: false } }, ctx());
    expect(kept.validation.passed).toBe(false);
    expect(existsSync(join(dir, "kept.fit"))).toBe(true);
    // Every rule, as a pure function of the figures.
    const ok = { fwhmImprovement: 0.06, noiseRatio: 1.03, tileWeightVariance: 0.2, seamWorstRatio: 1.1, seamP95Ratio: 1.05 };
    const defaults = {
      minFwhmImprovementPercent: 5,
      maxBackgroundRmsIncreasePercent: 10,
      minTileWeightVariance: 0.05,
      requireNoTilePattern: true,
      abortOnFail: true,
    };
    expect(validationFailures(ok, defaults)).toEqual([]);
    expect(validationFailures({ ...ok, fwhmImprovement: 0.04 }, defaults)[0]).toMatch(/FWHM improvement 4\.0 %/);
    expect(validationFailures({ ...ok, noiseRatio: 1.12 }, defaults)[0]).toMatch(/background RMS \+12\.0 %/);
    expect(validationFailures({ ...ok, tileWeightVariance: 0.04 }, defaults)[0]).toMatch(/tile weight variance 0\.040/);
    expect(validationFailures({ ...ok, seamP95Ratio: 1.3 }, defaults)[0]).toMatch(/tile pattern/);
    expect(validationFailures({ ...ok, seamP95Ratio: 1.3 }, { ...defaults, requireNoTilePattern: false })).toEqual([]);
    expect(validationFailures({ ...ok, fwhmImprovement: NaN }, defaults)).toEqual([]); // no stars to measure: not judged
  });

  it("bad input: different sizes, a NaN-filled frame, exposures 10 % apart, stretched data, too few frames → clear errors", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-bad-"));
    const good = await set(join(dir, "good"), 6);
    const small = await set(join(dir, "small"), 1, { W: 100, H: 80 });
    await expect(reconstructTbqr([...good, ...small], join(dir, "o1.fit"), EMERGENCY, ctx())).rejects.toThrow(
      /is 100×80×1, f000\.fit is 200×160×1/,
    );
    const nan = await set(join(dir, "nan"), 6, { nanFrame: 2 });
    await expect(reconstructTbqr(nan, join(dir, "o2.fit"), EMERGENCY, ctx())).rejects.toThrow(
      /f002\.fit.*channel 1 is \(almost\) entirely NaN/,
    );
    const exp = await set(join(dir, "exp"), 6, { exp: (k) => (k === 4 ? 66 : 60) });
    await expect(reconstructTbqr(exp, join(dir, "o3.fit"), EMERGENCY, ctx())).rejects.toThrow(
      /exposure 66 s differs from 60 s by more than 5 %/,
    );
    const st = await set(join(dir, "st"), 6, { stretch: true });
    await expect(reconstructTbqr(st, join(dir, "o4.fit"), EMERGENCY, ctx())).rejects.toThrow(/looks stretched.*needs linear data/);
    await expect(reconstructTbqr(good, join(dir, "o5.fit"), DEFAULT_TBQR, ctx())).rejects.toThrow(
      /6 usable frames, fewer than assumptions.frames_min = 50/,
    );
  });
});

describe("TBQR fallback and rejection (derived cases 6 and 7)", () => {
  it("6. a tile whose weights are all 0 falls back to the plain mean (every frame 1/N), is counted, and nothing is NaN", () => {
    const W = [
      [0, 0.8, 0],
      [0, 0.6, 0],
      [0, 0.4, 0],
    ]; // 3 frames × 3 tiles; tiles 0 and 2 have no weight
    const r = tileFractions(W, 1e-6);
    expect(r.fallbackTiles).toBe(2);
    expect(r.fractions.map((f) => f[0])).toEqual([1 / 3, 1 / 3, 1 / 3]);
    r.fractions.forEach((f, k) => expect(f[1]!).toBeCloseTo([0.8, 0.6, 0.4][k]! / 1.8, 12));
    expect(r.fractions.flat().every(Number.isFinite)).toBe(true);
    // The reference's unit case: values {10, 30} with weights {0, 0} → fallback, value 20.
    const two = tileFractions([[0], [0]], 1e-6);
    expect(10 * two.fractions[0]![0]! + 30 * two.fractions[1]![0]!).toBe(20);
    // …and with weights 1 and no clip, {10, 20, 40} → 23.333.
    const three = tileFractions([[1], [1], [1]], 1e-6);
    expect(10 * three.fractions[0]![0]! + 20 * three.fractions[1]![0]! + 40 * three.fractions[2]![0]!).toBeCloseTo(23.3333, 4);
  });

  it("7. one hot outlier in 20 frames is rejected (judged against the other frames' μ ± 5σ), while a hot pixel present in every frame is kept as signal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-hot-"));
    const f = await set(dir, 20);
    const { readFitsImage } = await import("@tile-compile/core");
    for (const [k, p] of f.entries()) {
      const img = await readFitsImage(p);
      if (k === 7) img.data[40 * 200 + 50] = img.data[40 * 200 + 50]! + 5000; // a cosmic in one frame
      img.data[100 * 200 + 150] = img.data[100 * 200 + 150]! + 3000; // a hot pixel in all
      await writeFitsImage(p, { width: 200, height: 160, data: img.data }, { header: img.header.withoutStructure() });
    }
    const r = await reconstructTbqr(f, join(dir, "s.fit"), EMERGENCY, ctx());
    expect(r.frames).toBe(20);
    const out = (await readFitsImage(join(dir, "s.fit"))).data;
    const around = (i: number) =>
      [out[i - 1]!, out[i + 1]!, out[i - 200]!, out[i + 200]!]
        .sort((a, b) => a - b)
        .slice(1, 3)
        .reduce((a, b) => a + b, 0) / 2;
    // Without rejection the cosmic would add 5000/20 = 250 ADU; rejected, the pixel stays within the sky noise.
    expect(Math.abs(out[40 * 200 + 50]! - around(40 * 200 + 50))).toBeLessThan(15);
    expect(out[100 * 200 + 150]! - around(100 * 200 + 150)).toBeGreaterThan(2500);
  });
});

describe("TBQR seams (derived case 9)", () => {
  it("a constant sky with random per-frame gains reconstructs flat", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-flat-"));
    const W = 300,
      H = 220,
      r = seededRandom(5);
    const files: string[] = [];
    for (let k = 0; k < 12; k++) {
      const gain = 0.8 + 0.4 * r();
      const p = join(dir, `f${k}.fit`);
      await writeFitsImage(
        p,
        { width: W, height: H, data: new Float32Array(W * H).fill(1000 * gain) },
        { header: new FitsHeader().set("EXPTIME", 60) },
      );
      files.push(p);
    }
    const res = await reconstructTbqr(files, join(dir, "flat.fit"), EMERGENCY, ctx());
    const { readFitsImage } = await import("@tile-compile/core");
    const img = await readFitsImage(join(dir, "flat.fit"));
    let lo = Infinity,
      hi = -Infinity;
    for (const v of img.data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect((hi - lo) / hi).toBeLessThan(1e-4);
    expect(res.validation.seamWorstRatio).toBeLessThan(1.5);
  });

  it("half the frames blurred in one tile only: no background step > 1 % across that tile's border", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-blur-"));
    const W = 320,
      H = 240,
      r = seededRandom(6);
    const stars = Array.from({ length: 120 }, () => ({ x: 8 + r() * (W - 16), y: 8 + r() * (H - 16), f: 5000 + 40000 * r() }));
    const files: string[] = [];
    for (let k = 0; k < 16; k++) {
      const g = seededRandom(60 + k);
      const data = new Float32Array(W * H);
      for (let i = 0; i < data.length; i++) data[i] = 800 + 6 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g());
      for (const s of stars) {
        const inBox = s.x > 100 && s.x < 200 && s.y > 80 && s.y < 180;
        const sg = inBox && k % 2 === 0 ? 2.6 : 1.2;
        for (let y = Math.max(0, Math.floor(s.y) - 10); y < Math.min(H, Math.floor(s.y) + 11); y++)
          for (let x = Math.max(0, Math.floor(s.x) - 10); x < Math.min(W, Math.floor(s.x) + 11); x++)
            data[y * W + x] =
              data[y * W + x]! + (s.f / (2 * Math.PI * sg * sg)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
      }
      const p = join(dir, `f${k}.fit`);
      await writeFitsImage(p, { width: W, height: H, data }, { header: new FitsHeader().set("EXPTIME", 60) });
      files.push(p);
    }
    await reconstructTbqr(files, join(dir, "out.fit"), EMERGENCY, ctx());
    const { readFitsImage } = await import("@tile-compile/core");
    const img = await readFitsImage(join(dir, "out.fit"));
    const skyMedian = (x0: number, x1: number, y0: number, y1: number) => {
      const v: number[] = [];
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) v.push(img.data[y * W + x]!);
      v.sort((a, b) => a - b);
      return v[v.length >> 1]!;
    };
    // Strips 6 px wide just inside and outside the blurred box's left and top borders.
    const steps = [skyMedian(94, 100, 90, 170) / skyMedian(100, 106, 90, 170), skyMedian(110, 190, 74, 80) / skyMedian(110, 190, 80, 86)];
    for (const s of steps) expect(Math.abs(s - 1)).toBeLessThan(0.01);
  });
});
