/**
 * Real sky, known calibration. The shared Seestar M 94 frames are taken as the truth L; a seeded
 * synthetic bias B (with a column pattern), dark current with 60 hot pixels, and a vignetting flat F are
 * applied in reverse (raw = L·F + D + noise, D = B + dark current) and raw bias/dark/flat frames are made
 * from the same model. Calibrating the raw frames back through the job pipeline must give L again.
 *
 * Tolerances and why: the residual C − L on sky pixels is noise from the raw light (read noise 3 ADU and
 * dark shot noise, divided by F) plus the master dark's (the same / √8) and the master flat's relative error (1 % / √8, times L ≈ 0.35 % of
 * the sky level); its robust σ must be within ±25 % of that prediction (the MAD estimate over ~10⁵ sky
 * pixels is good to ~1 %; the margin covers the model's simplifications), its median within 0.5 ADU (no
 * bias left), and no hot pixel may stand more than 5 σ outside the range of its same-colour neighbours.
 */
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import { FitsHeader } from "@tile-compile/core";
import { planJob } from "@tile-compile/core";
import { runCalibrateStage } from "@tile-compile/core";
import { nativeCalibration } from "./native.js";
import { seestarDir } from "@tile-compile/test-support/tools";
import { seededRandom } from "@tile-compile/core";

const dir = seestarDir();
describe.runIf(dir)("calibration on real sky with a known synthetic calibration", () => {
  it("calibrating back gives the original frames within the noise; no hot pixel survives", { timeout: 240_000 }, async () => {
    const src = join(dir!, "M94", "2025_03_27");
    const truths = readdirSync(src)
      .filter((f) => f.endsWith(".fit"))
      .sort()
      .slice(0, 4)
      .map((f) => join(src, f));
    const base = mkdtempSync(join(tmpdir(), "tc-seestar-cal-"));
    const r = seededRandom(2025);
    const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const first = await readFitsImage(truths[0]!);
    const W = first.width,
      Hh = first.height,
      n = W * Hh;
    const B = new Float32Array(n),
      Dc = new Float32Array(n),
      F = new Float32Array(n);
    const hot = new Set<number>();
    while (hot.size < 60) hot.add(Math.floor(r() * n));
    for (let i = 0; i < n; i++) {
      const x = i % W,
        y = Math.floor(i / W);
      B[i] = 500 + 4 * Math.sin(x / 7);
      Dc[i] = (hot.has(i) ? 300 : 0.2) * 10; // ADU over 10 s
      F[i] = 1 - 0.25 * (((x - W / 2) / W) ** 2 + ((y - Hh / 2) / Hh) ** 2) * 2;
    }
    let fm = 0;
    for (const v of F) fm += v / n;
    for (let i = 0; i < n; i++) F[i] = F[i]! / fm; // mean 1, as the master flat will be
    const keys = (h: FitsHeader, kind: string, exp: number, temp: number) => {
      const out = new FitsHeader();
      for (const k of ["BAYERPAT", "GAIN", "XBINNING", "YBINNING", "INSTRUME", "FILTER", "XPIXSZ", "YPIXSZ", "FOCALLEN"]) {
        const v = h.get(k);
        if (v !== undefined) out.set(k, v);
      }
      return out.set("IMAGETYP", kind).set("EXPTIME", exp).set("CCD-TEMP", temp);
    };
    const mk = (p: string) => {
      mkdirSync(p, { recursive: true });
      return p;
    };
    const rawB = mk(join(base, "calibration/raw/biases/2025_03_26"));
    const rawD = mk(join(base, "calibration/raw/darks/2025_03_26_25C/10"));
    const rawF = mk(join(base, "calibration/raw/flats/2025_03_26/IRCUT"));
    for (let k = 0; k < 8; k++) {
      await writeFitsImage(
        join(rawB, `b${k}.fit`),
        { width: W, height: Hh, data: B.map((v) => v + 3 * g()) },
        { header: keys(first.header, "Bias", 0, 25) },
      );
      await writeFitsImage(
        join(rawD, `d${k}.fit`),
        { width: W, height: Hh, data: B.map((v, i) => v + Dc[i]! + Math.sqrt(9 + Dc[i]!) * g()) },
        { header: keys(first.header, "Dark", 10, 25 + 0.2 * g()) },
      );
      await writeFitsImage(
        join(rawF, `f${k}.fit`),
        { width: W, height: Hh, data: B.map((v, i) => v + 20000 * F[i]! * (1 + 0.01 * g())) },
        { header: keys(first.header, "Flat", 0.5, 25) },
      );
    }
    const lights = mk(join(base, "M94/2025_03_26/IRCUT10"));
    for (const t of truths) {
      const L = await readFitsImage(t);
      // Read noise 3 ADU plus the dark current's shot noise: a hot pixel (3000 ADU) varies by ±55 ADU from
      // frame to frame, so dark subtraction alone leaves it standing out; cosmetic correction must act.
      const raw = L.data.map((v, i) => v * F[i]! + B[i]! + Dc[i]! + Math.sqrt(9 + Dc[i]!) * g());
      await writeFitsImage(join(lights, t.split("/").pop()!), { width: W, height: Hh, data: raw }, { header: L.header.withoutStructure() });
    }
    mk(join(base, "jobs"));
    writeFileSync(
      join(base, "jobs/m94.json"),
      JSON.stringify({
        name: "M94",
        type: "RGB",
        calibration: { bias: "2025_03_26", darks: "2025_03_26", flats: "2025_03_26" },
        lights: { IRCUT: "M94/2025_03_26/IRCUT10" },
        output: "M94/processed",
      }),
    );
    const plan = await planJob(join(base, "jobs/m94.json"), { engine: "test" });
    expect(plan.problems).toEqual([]);
    const ctx = {
      signal: new AbortController().signal,
      logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
      progress() {},
      workdir: tmpdir(),
      options: {},
      runtime: { threads: 2, memoryBudgetBytes: 256 << 20 },
    };
    const res = await runCalibrateStage(plan, { provider: nativeCalibration("test"), ctx, engine: "test" });
    expect(res.mastersBuilt).toHaveLength(3);
    for (const [k, out] of res.calibrated[0]!.frames.entries()) {
      const C = await readFitsImage(out);
      const L = await readFitsImage(truths[k]!);
      // Sky pixels: below the frame's 60th percentile of L (no stars, no galaxy core).
      const sorted = Float32Array.from(L.data).sort();
      const skyMax = sorted[Math.floor(0.6 * n)]!;
      const res: number[] = [];
      let predicted = 0;
      for (let i = 0; i < n; i += 7) {
        if (L.data[i]! > skyMax || hot.has(i)) continue;
        res.push(C.data[i]! - L.data[i]!);
        const f = F[i]!;
        predicted += ((9 + Dc[i]!) / (f * f)) * (1 + 1 / 8) + (L.data[i]! * 0.01) ** 2 / 8;
      }
      predicted = Math.sqrt(predicted / res.length);
      res.sort((a, b) => a - b);
      const median = res[res.length >> 1]!;
      const mad = res.map((v) => Math.abs(v - median)).sort((a, b) => a - b)[res.length >> 1]! * 1.4826;
      console.log(
        `frame ${k}: residual median ${median.toFixed(3)} ADU, robust σ ${mad.toFixed(3)} ADU, predicted ${predicted.toFixed(3)} ADU`,
      );
      expect(Math.abs(median)).toBeLessThan(0.5);
      expect(mad / predicted).toBeGreaterThan(0.75);
      expect(mad / predicted).toBeLessThan(1.25);
      // No hot pixel survives: each lies within the range of its same-colour neighbours (distance 2 on the
      // CFA) ± 5 σ. (Its value is their median, so on a star's flank it differs from the true L by the
      // local structure — that is interpolation, not a surviving defect.)
      let worst = 0;
      for (const i of hot) {
        const x = i % W,
          y = Math.floor(i / W);
        const nb: number[] = [];
        for (const [dx, dy] of [
          [-2, 0],
          [2, 0],
          [0, -2],
          [0, 2],
          [-2, -2],
          [2, 2],
          [-2, 2],
          [2, -2],
        ] as const) {
          const xx = x + dx,
            yy = y + dy;
          if (xx >= 0 && yy >= 0 && xx < W && yy < Hh && !hot.has(yy * W + xx)) nb.push(C.data[yy * W + xx]!);
        }
        const above = C.data[i]! - Math.max(...nb),
          below = Math.min(...nb) - C.data[i]!;
        worst = Math.max(worst, above / predicted, below / predicted);
      }
      expect(worst, "hot pixel outside its neighbours' range, in σ").toBeLessThan(5);
      expect(C.header.get("BAYERPAT")).toBe("GRBG");
    }
  });
});
