/**
 * Invariants (fast-check) and accuracy against known truth, run on every available backend.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { separableWindow, shiftMatrix, similarityMatrix, invertMatrix, multiplyMatrix, type ReconBackend } from "./index.js";
import { backends, maxRelDiff, starField } from "./test-support/synth.js";

const { js, native } = backends();
const all: [string, ReconBackend][] = native
  ? [
      ["js", js],
      ["native", native],
    ]
  : [["js", js]];
const f32 = (a: number[]) => Float32Array.from(a);
const finiteF32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });

describe.each(all)("%s backend", (_name, b) => {
  it("median and percentiles do not depend on the order of the values", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(finiteF32, { minLength: 1, maxLength: 200 }), fc.integer(), async (vals, seed) => {
        const a = f32(vals);
        const shuffled = f32(vals);
        let s = seed >>> 0;
        for (let i = shuffled.length - 1; i > 0; i--) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          const j = s % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const [x, y] = [await b.robustStats(a), await b.robustStats(shuffled)];
        expect(y.median).toBe(x.median);
        expect(y.mad).toBe(x.mad);
        expect(await b.percentiles(shuffled, [0, 0.3, 1])).toEqual(await b.percentiles(a, [0, 0.3, 1]));
        const sorted = Array.from(a).sort((p, q) => p - q);
        const n = sorted.length;
        expect(x.median).toBe(n % 2 ? sorted[n >> 1] : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2);
      }),
      { numRuns: 60 },
    );
  });

  it("combine of identical frames returns the frame, for every method and rejection", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(finiteF32, { minLength: 1, maxLength: 64 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom("none", "sigma", "winsorized", "linear-fit", "percentile", "mad" as const),
        fc.constantFrom("mean", "median" as const),
        async (vals, n, rejection, method) => {
          const frame = f32(vals);
          const r = await b.combine(
            Array.from({ length: n }, () => frame),
            { rejection, method, counts: true },
          );
          expect(maxRelDiff(r.data, frame, 0)).toBe(0);
          expect(r.rejectedLow!.every((c) => c === 0) && r.rejectedHigh!.every((c) => c === 0)).toBe(true);
        },
      ),
      { numRuns: 80 },
    );
  });

  it("warp by the identity is the identity (every kernel, bit for bit, NaNs included)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom("bilinear", "bicubic", "lanczos3" as const),
        fc.integer(),
        async (w, h, interpolation, seed) => {
          const data = Float32Array.from({ length: w * h }, (_, i) => ((i * 7919 + seed) % 1000) / 7 - 40);
          if (w * h > 3) data[1] = NaN;
          const out = await b.warp({ data, width: w, height: h }, [1, 0, 0, 0, 1, 0, 0, 0, 1], { interpolation });
          expect(maxRelDiff(out.data, data, 0)).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("overlap-add of constant tiles is constant wherever anything was added", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 8, max: 40 }),
        fc.integer({ min: 1, max: 30 }),
        fc.double({ min: -1e4, max: 1e4, noNaN: true }),
        fc.constantFrom("hann-positive", "flat" as const),
        async (T, step, value, kind) => {
          const W = 3 * T,
            H = 2 * T + 5;
          const canvas = { width: W, height: H, sum: new Float64Array(W * H), weightSum: new Float64Array(W * H) };
          const tiles = [];
          for (let y = 0; y + T <= H; y += step)
            for (let x = 0; x + T <= W; x += step)
              tiles.push({ x0: x, y0: y, width: T, height: T, data: new Float32Array(T * T).fill(value), weight: 1 + ((x + y) % 3) });
          await b.overlapAdd(canvas, tiles, separableWindow(T, T, kind));
          const out = await b.normalizeOverlap(canvas);
          const v = Math.fround(value);
          for (let i = 0; i < out.length; i++)
            if (canvas.weightSum[i]! > 1e-6) expect(Math.abs(out[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 1e-6 + 1e-6);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("stars are found where they were put: centroid < 0.05 px, FWHM within 3 %, round", async () => {
    const p = starField(480, 360, 21, { stars: 50, sigma: 2.0, noise: 5 });
    const r = await b.detectStars(p, { threshold: 5 });
    const expected = 2.0 * 2.3548200450309493;
    let matched = 0;
    for (const t of p.truth) {
      const s = r.stars.find((q) => Math.hypot(q.x - t.x, q.y - t.y) < 1.5);
      if (!s) continue;
      matched++;
      expect(Math.hypot(s.x - t.x, s.y - t.y)).toBeLessThan(0.05);
      expect(Math.abs(s.fwhm / expected - 1)).toBeLessThan(0.03);
      expect(s.roundness).toBeGreaterThan(0.93);
      expect(Math.abs(s.flux / t.flux - 1)).toBeLessThan(0.05);
    }
    expect(matched).toBe(p.truth.length);
    expect(r.count).toBe(p.truth.length);
  });

  it("background map recovers a sloped sky under stars within 0.5 σ; noise map within 5 % (the in-cell slope adds 2 %)", async () => {
    const p = starField(512, 384, 22, { stars: 60, noise: 10, gradient: 0.1 });
    const m = await b.backgroundMap(p, { meshSize: 64 });
    let worst = 0,
      noiseWorst = 0;
    for (let y = 32; y < 384 - 32; y += 16)
      for (let x = 32; x < 512 - 32; x += 16) {
        worst = Math.max(worst, Math.abs(m.background[y * 512 + x]! - (1000 + 0.1 * (x + 0.5 * y))));
        noiseWorst = Math.max(noiseWorst, Math.abs(m.noise[y * 512 + x]! / 10 - 1));
      }
    expect(worst).toBeLessThan(5);
    expect(noiseWorst).toBeLessThan(0.05);
  });

  it("tile metrics: star counts and FWHM per tile match the truth; structure metrics are finite", async () => {
    const p = starField(384, 256, 23, { stars: 40, sigma: 1.6, noise: 5 });
    const tiles = [
      { x0: 0, y0: 0, width: 128, height: 128 },
      { x0: 128, y0: 0, width: 128, height: 128 },
      { x0: 256, y0: 128, width: 128, height: 128 },
    ];
    const m = await b.tileMetrics(p, tiles);
    tiles.forEach((t, k) => {
      const inside = p.truth.filter(
        (s) => s.x >= t.x0 + 6 && s.x < t.x0 + t.width - 6 && s.y >= t.y0 + 6 && s.y < t.y0 + t.height - 6,
      ).length;
      expect(m.starCount[k]).toBeGreaterThanOrEqual(inside);
      expect(m.starCount[k]).toBeLessThanOrEqual(inside + 2);
      if (inside > 0) expect(Math.abs(m.fwhm[k]! / (1.6 * 2.3548) - 1)).toBeLessThan(0.06);
      expect(Math.abs(m.noise[k]! / 5 - 1)).toBeLessThan(0.1);
      expect(m.validFraction[k]).toBe(1);
      expect(Number.isFinite(m.energyOverNoise[k]!)).toBe(true);
    });
  });

  it("a warp and its inverse return the image (Lanczos-3, interior, < 0.5 % of the signal range)", async () => {
    const W = 96,
      H = 80;
    const data = Float32Array.from({ length: W * H }, (_, i) => 100 + 50 * Math.sin((i % W) / 6) * Math.cos(Math.floor(i / W) / 7));
    const m = similarityMatrix(1, 0.05, 3.3, -2.2);
    const there = await b.warp({ data, width: W, height: H }, m, { interpolation: "lanczos3" });
    const back = await b.warp(there, invertMatrix(m), { interpolation: "lanczos3" });
    multiplyMatrix(m, invertMatrix(m)).forEach((v, i) => expect(v).toBeCloseTo([1, 0, 0, 0, 1, 0, 0, 0, 1][i]!, 12));
    let worst = 0;
    for (let y = 12; y < H - 12; y++)
      for (let x = 12; x < W - 12; x++)
        if (Number.isFinite(back.data[y * W + x]!)) worst = Math.max(worst, Math.abs(back.data[y * W + x]! - data[y * W + x]!));
    expect(worst).toBeLessThan(0.5);
    // An integer shift moves pixels exactly and leaves NaN outside the footprint.
    const s = await b.warp({ data, width: W, height: H }, shiftMatrix(2, 1), { interpolation: "bicubic" });
    expect(s.data[0]).toBe(data[W + 2]);
    expect(s.data[W - 1]).toBeNaN();
  });

  it("debayer: constant colour planes come back exactly; a crop by one pixel with offsetX = 1 matches", async () => {
    const W = 16,
      H = 12,
      cols = [300, 500, 700];
    const pat = [0, 1, 1, 2]; // RGGB
    const mosaic = Float32Array.from({ length: W * H }, (_, i) => cols[pat[(Math.floor(i / W) & 1) * 2 + ((i % W) & 1)]!]!);
    for (const method of ["bilinear", "superpixel"] as const) {
      const rgb = await b.debayer({ data: mosaic, width: W, height: H }, { pattern: "RGGB", method });
      expect(rgb.red.every((v) => v === 300) && rgb.green.every((v) => v === 500) && rgb.blue.every((v) => v === 700)).toBe(true);
    }
    const full = await b.debayer({ data: starField(W, H, 3, { stars: 0 }).data, width: W, height: H }, { pattern: "GRBG" });
    const src = starField(W, H, 3, { stars: 0 }).data;
    const crop = Float32Array.from({ length: (W - 1) * H }, (_, i) => src[Math.floor(i / (W - 1)) * W + (i % (W - 1)) + 1]!);
    const cut = await b.debayer({ data: crop, width: W - 1, height: H }, { pattern: "GRBG", offsetX: 1 });
    for (let y = 1; y < H - 1; y++) for (let x = 1; x < W - 3; x++) expect(cut.red[y * (W - 1) + x]).toBe(full.red[y * W + x + 1]);
  });

  it("rejection removes planted outliers and counts them", async () => {
    const frames = Array.from({ length: 12 }, (_, f) => Float32Array.from({ length: 50 }, (_, i) => 1000 + ((f * 37 + i * 11) % 13) - 6));
    frames[4]![10] = 60000; // satellite trail
    frames[7]![20] = -5000; // dead column
    for (const rejection of ["sigma", "winsorized", "mad", "linear-fit"] as const) {
      const r = await b.combine(frames, { rejection, counts: true, low: 3, high: 3 });
      expect(r.rejectedHigh![10], rejection).toBeGreaterThanOrEqual(1);
      expect(r.rejectedLow![20], rejection).toBeGreaterThanOrEqual(1);
      expect(Math.abs(r.data[10]! - 1000), rejection).toBeLessThan(8);
      expect(Math.abs(r.data[20]! - 1000), rejection).toBeLessThan(8);
    }
  });
});
