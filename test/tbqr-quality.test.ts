/**
 * TBQR on the seeded seeing set of generators/seeing.ts (tbqr-reference quality acceptance): sharper than a
 * plain mean of the same frames, close to an oracle weighting from the generator's truth, noise within
 * budget, fluxes kept, no seams, and the default validation rules pass.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadRecon } from "@tile-compile/recon-native";
import { readFitsImage, type EngineContext } from "@tile-compile/core";
import { budgetKappa, DEFAULT_TBQR, reconstructTbqr } from "@tile-compile/engine-native";
import { H, makeSeeingSet, N, W } from "./generators/seeing.js";

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const ctx = (): EngineContext => ({
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
  progress() {},
  workdir: tmpdir(),
  options: {},
  runtime: { threads: 2, memoryBudgetBytes: 1 << 30 },
});

describe("TBQR quality on synthetic seeing", () => {
  it(
    "sharper than a plain mean (≥ 4 %, more in the bump quadrant), noise ≤ 1.1×, flux within 1 %, no seams",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-tbqr-"));
      const { frames, stars } = await makeSeeingSet(dir);
      // With the default validation rules (validation.* and pipeline.abort_on_fail of tile_compile.yaml).
      const rules = {
        minFwhmImprovementPercent: 5,
        maxBackgroundRmsIncreasePercent: 10,
        minTileWeightVariance: 0.05,
        requireNoTilePattern: true,
        abortOnFail: true,
      };
      const res = await reconstructTbqr(
        frames.map((f) => f.path),
        join(dir, "stacked.fit"),
        { ...DEFAULT_TBQR, artifactsDir: join(dir, "artifacts"), validation: rules },
        ctx(),
      );
      expect(res.validation.passed).toBe(true);
      expect(res.mode).toBe("reduced");
      const out = await readFitsImage(join(dir, "stacked.fit"));
      // The plain mean of the same frames (with the same normalisation and restore, from the validation pass).
      const recon = loadRecon();
      const plain = new Float32Array(W * H);
      for (const f of frames) {
        const img = await readFitsImage(f.path);
        for (let i = 0; i < plain.length; i++) plain[i] = plain[i]! + img.data[i]! / N;
      }
      const fwhmIn = async (data: Float32Array, quad: boolean) =>
        median(
          (await recon.detectStars({ data, width: W, height: H }, { radius: 6, maxStars: 500 })).stars
            .filter((s) => s.roundness > 0.6 && (!quad || (s.x > W / 2 && s.y > H / 2)))
            .map((s) => s.fwhm),
        );
      const [ft, fm, qt, qm] = [
        await fwhmIn(out.data, false),
        await fwhmIn(plain, false),
        await fwhmIn(out.data, true),
        await fwhmIn(plain, true),
      ];
      console.log(
        `fallback tiles ${res.fallbackTiles} of ${res.tiles}; TBQR FWHM ${ft.toFixed(3)} vs mean ${fm.toFixed(3)} (${(100 * (1 - ft / fm)).toFixed(1)} %); bump quadrant ${qt.toFixed(3)} vs ${qm.toFixed(3)} (${(100 * (1 - qt / qm)).toFixed(1)} %); noise ×${res.validation.noiseRatio.toFixed(3)}; seams worst ${res.validation.seamWorstRatio.toFixed(3)} p95 ${res.validation.seamP95Ratio.toFixed(3)}; tile weight variance ${res.validation.tileWeightVariance.toFixed(3)}`,
      );
      // Oracle: weights from the generator's truth (t²/FWHM² per quadrant), same noise budget.
      const oracle = new Float32Array(W * H);
      const imgs = await Promise.all(frames.map((f) => readFitsImage(f.path)));
      for (const quad of [false, true]) {
        const q = frames.map((f) => Math.log((f.t * f.t) / (quad ? f.fwhm * f.bump : f.fwhm) ** 2));
        const m = q.reduce((a, b) => a + b, 0) / N;
        const k = budgetKappa(
          q.map((v) => v - m),
          N / 1.08 ** 2,
        );
        const w = q.map((v) => Math.exp(k * (v - m)));
        const ws = w.reduce((a, b) => a + b, 0);
        for (let i = 0; i < W * H; i++) {
          const x = i % W,
            y = Math.floor(i / W);
          if ((x > W / 2 && y > H / 2) !== quad) continue;
          let a = 0;
          for (let f = 0; f < N; f++) a += w[f]! * imgs[f]!.data[i]!;
          oracle[i] = a / ws;
        }
      }
      const fo = await fwhmIn(oracle, false),
        qo = await fwhmIn(oracle, true);
      console.log(
        `oracle FWHM ${fo.toFixed(3)} (${(100 * (1 - fo / fm)).toFixed(1)} %), bump quadrant ${qo.toFixed(3)} (${(100 * (1 - qo / qm)).toFixed(1)} %)`,
      );
      expect(1 - ft / fm).toBeGreaterThanOrEqual(0.04);
      // Within 1 percentage point of the oracle's gain at the same noise budget.
      expect(1 - fo / fm - (1 - ft / fm)).toBeLessThanOrEqual(0.01);
      expect(1 - qt / qm).toBeGreaterThan(1 - ft / fm);
      expect(res.validation.noiseRatio).toBeLessThanOrEqual(1.1);
      expect(res.validation.seamWorstRatio).toBeLessThan(1.5);
      expect(res.validation.seamP95Ratio).toBeLessThan(1.25);
      // No tile-to-tile noise-level steps: the residual TBQR − plain mean, with stars masked, has no excess
      // power at the tile period (step S) along rows or columns compared with the neighbouring frequencies.
      const resid = new Float64Array(W * H);
      for (let i = 0; i < W * H; i++) {
        const d = out.data[i]! - plain[i]!;
        resid[i] = Math.abs(plain[i]! - 300) < 40 ? d : 0;
      }
      const power = (len: number, lines: number, at: (line: number, p: number) => number, k: number) => {
        let sum = 0;
        for (let l = 0; l < lines; l++) {
          let re = 0,
            im = 0;
          for (let p = 0; p < len; p++) {
            const ph = (2 * Math.PI * k * p) / len;
            re += at(l, p) * Math.cos(ph);
            im -= at(l, p) * Math.sin(ph);
          }
          sum += re * re + im * im;
        }
        return sum / lines;
      };
      // Both the residual (level steps) and its square minus the mean (noise-level steps) are checked.
      let m2 = 0;
      for (const v of resid) m2 += v * v;
      m2 /= resid.length;
      const sq = resid.map((v) => (v === 0 ? 0 : v * v - m2));
      for (const [name, len, lines, at] of [
        ["rows", W, H, (l: number, p: number) => resid[l * W + p]!],
        ["columns", H, W, (l: number, p: number) => resid[p * W + l]!],
        ["rows, squared", W, H, (l: number, p: number) => sq[l * W + p]!],
        ["columns, squared", H, W, (l: number, p: number) => sq[p * W + l]!],
      ] as const) {
        const k0 = Math.round(len / res.S);
        const atPeriod = power(len, lines, at, k0);
        const around = [-6, -5, -4, -3, 3, 4, 5, 6].map((d) => power(len, lines, at, k0 + d)).sort((x, y) => x - y);
        const ratio = atPeriod / ((around[3]! + around[4]!) / 2);
        console.log(`residual power at the tile period (${res.S} px) along ${name}: ${ratio.toFixed(2)}× the neighbouring frequencies`);
        expect(ratio).toBeLessThan(3);
      }
      // Photometry: aperture sums of bright isolated stars, TBQR vs plain mean.
      const phot = (d: Float32Array, s: { x: number; y: number }) => {
        let a = 0;
        const bg: number[] = [];
        for (let y = Math.floor(s.y) - 14; y <= Math.floor(s.y) + 14; y++)
          for (let x = Math.floor(s.x) - 14; x <= Math.floor(s.x) + 14; x++) {
            const dd = Math.hypot(x - s.x, y - s.y),
              v = d[y * W + x]!;
            if (dd <= 9) a += v - 300;
            else if (dd >= 11 && dd <= 14) bg.push(v);
          }
        return a - 0 * median(bg);
      };
      const iso = stars.filter(
        (s) =>
          s.f > 30000 &&
          s.x > 20 &&
          s.y > 20 &&
          s.x < W - 20 &&
          s.y < H - 20 &&
          stars.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > 20),
      );
      const ratios = iso.map((s) => phot(out.data, s) / phot(plain, s));
      console.log(`flux ratio TBQR / mean over ${iso.length} stars: median ${median(ratios).toFixed(4)}`);
      expect(Math.abs(median(ratios) - 1)).toBeLessThan(0.01);
    },
  );
});
