/**
 * `stacking.normalization: local` (issue 35, item 1) on a generated three-night set: every frame carries its
 * own sky gradient, on a different side each night (20°, 75°, −40°, ±15° per frame) — night 1 (half the
 * frames) from a dark site, within 2σ of the frame's noise at the edges; night 2 with the moon up, 10–20σ;
 * night 3 under a light dome, 5–15σ — plus a curvature, over a faint extended nebula (1.5σ of one frame at
 * its peak) and stars. Winsorized stacks with
 * global (`additive`) and local normalisation are scored against the truth: the large-scale background error
 * (32-px box medians of stack − truth, stars masked, less their mean), the share of sky pixels rejected
 * (rejection maps), and the nebula's flux. Without gradients the two must agree within the noise. A fourth
 * set adds passing clouds: every other frame's transparency 0.6–1 overall and ±15 % across the frame in its
 * own direction (the sky glow is additive and stays); the local scale maps must bring stars and nebula to
 * the clear frames' fluxes within 2 %, over the whole field.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testEngineContext } from "@tile-compile/core/testing";
import { FitsHeader, readFitsImage, seededRandom, writeFitsImage } from "@tile-compile/core";
import { nativeStack } from "./stack.js";
import { DEFAULT_TBQR, reconstructTbqr } from "../tbqr/reconstruct.js";
import { apertureFluxes } from "../tbqr/units.js";

const W = 384,
  H = 288,
  N = 24,
  NOISE = 10;

const ctx = () => testEngineContext();

interface Truth {
  paths: string[];
  /** Stars + nebula (no sky), and frame 0's sky level (the level both normalisations keep). */
  signal: Float32Array;
  nebula: Float32Array;
  sky0: number;
  starMask: Uint8Array;
  stars: { x: number; y: number; f: number }[];
}

async function generate(dir: string, gradients: boolean, clouds = false, cloudSlope = 0.3): Promise<Truth> {
  const r = seededRandom(clouds ? 353 : gradients ? 351 : 352);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const stars = Array.from({ length: clouds ? 150 : 70 }, () => ({
    x: 8 + r() * (W - 16),
    y: 8 + r() * (H - 16),
    f: 2000 * Math.exp(r() * Math.log(40)),
  }));
  const s2 = (2.6 / 2.3548) ** 2;
  const signal = new Float32Array(W * H),
    nebula = new Float32Array(W * H),
    starMask = new Uint8Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) nebula[y * W + x] = 1.5 * NOISE * Math.exp(-(((x - 230) / 80) ** 2 + ((y - 140) / 60) ** 2));
  for (const s of stars)
    for (let y = Math.max(0, Math.floor(s.y) - 10); y < Math.min(H, Math.floor(s.y) + 11); y++)
      for (let x = Math.max(0, Math.floor(s.x) - 10); x < Math.min(W, Math.floor(s.x) + 11); x++) {
        signal[y * W + x] = signal[y * W + x]! + (s.f / (2 * Math.PI * s2)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * s2));
        starMask[y * W + x] = 1;
      }
  for (let i = 0; i < W * H; i++) signal[i] = signal[i]! + nebula[i]!;
  const paths: string[] = [];
  let sky0 = 0;
  for (let k = 0; k < N; k++) {
    // Night 1 (half the frames): a dark site, gradients within 2σ at the edges. Night 2: the moon on one side,
    // 10–20σ at the edges. Night 3: a light dome on another side, 5–15σ.
    const night = k < N / 2 ? 0 : k < (3 * N) / 4 ? 1 : 2;
    const theta = ((([20, 75, -40][night]! + 30 * (r() - 0.5)) * Math.PI) / 180) as number;
    const edge = gradients ? NOISE * [2 * r(), 10 + 10 * r(), 5 + 10 * r()][night]! : 0;
    const amp = 2 * edge;
    const sky = 300 + 200 * r();
    if (k === 0) sky0 = sky;
    // Passing clouds: every other frame clear (frame 0 among them); the others 0.6–1 overall and ±15 % at
    // the edges in their own direction.
    const cloudy = clouds && k % 2 === 1;
    const tau = cloudy ? 0.6 + 0.4 * r() : 1,
      phi = cloudy ? 2 * Math.PI * r() : 0,
      slope = cloudy ? cloudSlope * (r() - 0.5) * 2 : 0;
    const data = new Float32Array(W * H);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const u = x / W - 0.5,
          v = y / H - 0.5;
        const grad = amp * (u * Math.cos(theta) + v * Math.sin(theta)) + 0.3 * amp * (u * u + v * v);
        const t = tau * (1 + slope * (u * Math.cos(phi) + v * Math.sin(phi)));
        data[y * W + x] = 1000 + sky + grad + t * signal[y * W + x]! + NOISE * g();
      }
    const p = join(dir, `n${night}_${String(k).padStart(2, "0")}.fit`);
    await writeFitsImage(p, { width: W, height: H, data }, { header: new FitsHeader().set("EXPTIME", 120) });
    paths.push(p);
  }
  return { paths, signal, nebula, sky0: 1000 + sky0, starMask, stars };
}

async function stack(dir: string, t: Truth, normalization: "additive" | "local", name: string) {
  const out = join(dir, `${name}.fit`),
    low = join(dir, `${name}_low.fit`),
    high = join(dir, `${name}_high.fit`);
  const res = await nativeStack(
    {
      frames: t.paths.map((path) => ({ path })),
      output: out,
      method: "rejection",
      // Boxes of 64 px: the default 128 would give these small frames only 3 × 2 boxes (a plane).
      options: {
        rejection: "winsorized",
        sigma: [3, 3],
        normalization,
        ...(normalization === "local" ? { local_normalization: { scale: 64 } } : {}),
      },
      history: [],
      rejectionMaps: { low, high },
    },
    ctx(),
  );
  void res;
  const img = (await readFitsImage(out)).data;
  const lo = (await readFitsImage(low)).data,
    hi = (await readFitsImage(high)).data;
  return { img, rejected: Float32Array.from(lo, (v, i) => v + hi[i]!) };
}

/** 32-px box medians of (stack − truth signal) over non-star pixels, less their mean: the large-scale background error; its RMS. */
function backgroundError(img: Float32Array, t: Truth): { rms: number; boxes: number[] } {
  const B = 32,
    boxes: number[] = [];
  for (let y0 = 0; y0 + B <= H; y0 += B)
    for (let x0 = 0; x0 + B <= W; x0 += B) {
      const v: number[] = [];
      for (let y = y0; y < y0 + B; y++)
        for (let x = x0; x < x0 + B; x++) if (!t.starMask[y * W + x]) v.push(img[y * W + x]! - t.signal[y * W + x]!);
      v.sort((a, b) => a - b);
      boxes.push(v[v.length >> 1]!);
    }
  const m = boxes.reduce((a, b) => a + b, 0) / boxes.length;
  const c = boxes.map((b) => b - m);
  return { rms: Math.sqrt(c.reduce((a, b) => a + b * b, 0) / c.length), boxes: c };
}

// Nebula flux where it is above 20 % of its peak, above the stack's sky: a quadratic surface fitted to
// the sky pixels around it (the photometry any user would do; what background error is left is scored
// above — here the question is whether the normalisation took nebula light away).
function nebulaFlux(img: Float32Array, t: Truth): number {
  const terms = [
    () => 1,
    (u: number) => u,
    (_: number, v: number) => v,
    (u: number) => u * u,
    (u: number, v: number) => u * v,
    (_: number, v: number) => v * v,
  ];
  const m = terms.length;
  const A = Array.from({ length: m }, () => new Float64Array(m + 1));
  for (let y = 0; y < H; y += 2)
    for (let x = 0; x < W; x += 2) {
      const i = y * W + x;
      if (t.starMask[i] || t.nebula[i]! >= 0.02 * 1.5 * NOISE) continue;
      const phi = terms.map((f) => f(x / W - 0.5, y / H - 0.5));
      for (let a = 0; a < m; a++) {
        for (let b = 0; b < m; b++) A[a]![b] = A[a]![b]! + phi[a]! * phi[b]!;
        A[a]![m] = A[a]![m]! + phi[a]! * img[i]!;
      }
    }
  for (let c = 0; c < m; c++) {
    const d = A[c]![c]!;
    for (let j = c; j <= m; j++) A[c]![j] = A[c]![j]! / d;
    for (let r = 0; r < m; r++)
      if (r !== c) {
        const f = A[r]![c]!;
        for (let j = c; j <= m; j++) A[r]![j] = A[r]![j]! - f * A[c]![j]!;
      }
  }
  const coef = A.map((row) => row[m]!);
  let got = 0,
    want = 0;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (t.nebula[i]! <= 0.2 * 1.5 * NOISE) continue;
      const sky = terms.reduce((s, f, k) => s + coef[k]! * f(x / W - 0.5, y / H - 0.5), 0);
      got += img[i]! - sky - (t.signal[i]! - t.nebula[i]!);
      want += t.nebula[i]!;
    }
  return got / want;
}

/**
 * The nebula's flux / truth as the amplitude of the true nebula template in a joint fit over every
 * non-star pixel of (stack − true stars) = a·nebula + quadratic background: the background is fitted under
 * the nebula together with it, not extrapolated from the edges (which turns a 0.3-ADU residual tilt into a
 * 5 % flux error on this faint nebula).
 */
function nebulaTemplate(img: Float32Array, t: Truth): number {
  const m = 7;
  const A = Array.from({ length: m }, () => new Float64Array(m + 1));
  for (let y = 0; y < H; y += 1)
    for (let x = 0; x < W; x += 1) {
      const i = y * W + x;
      if (t.starMask[i]) continue;
      const u = x / W - 0.5,
        v = y / H - 0.5;
      const phi = [t.nebula[i]!, 1, u, v, u * u, u * v, v * v];
      const z = img[i]! - (t.signal[i]! - t.nebula[i]!);
      for (let a = 0; a < m; a++) {
        for (let b = 0; b < m; b++) A[a]![b] = A[a]![b]! + phi[a]! * phi[b]!;
        A[a]![m] = A[a]![m]! + phi[a]! * z;
      }
    }
  for (let c = 0; c < m; c++) {
    const d = A[c]![c]!;
    for (let j = c; j <= m; j++) A[c]![j] = A[c]![j]! / d;
    for (let r = 0; r < m; r++)
      if (r !== c) {
        const f = A[r]![c]!;
        for (let j = c; j <= m; j++) A[r]![j] = A[r]![j]! - f * A[c]![j]!;
      }
  }
  return A[0]![m]!;
}

/**
 * Star flux / truth over isolated stars (aperture 6 px, sky annulus 9–14 px; no other star within 16 px):
 * the median ratio over all of them and over each quadrant of the frame.
 */
function starFlux(img: Float32Array, t: Truth): { all: number; quadrants: number[]; n: number } {
  const iso = t.stars.filter(
    (s) => s.x > 16 && s.y > 16 && s.x < W - 17 && s.y < H - 17 && t.stars.every((o) => o === s || Math.hypot(o.x - s.x, o.y - s.y) > 16),
  );
  const plan = { stars: iso.map((s) => ({ x: s.x, y: s.y })), aperture: 6, annulus: [9, 14] as [number, number] };
  const got = apertureFluxes(img, W, plan);
  // The truth through the same aperture (the nebula is in the truth image too: subtract it the same way).
  const want = apertureFluxes(t.signal, W, plan);
  const ratios = iso.map((s, k) => ({ s, r: got[k]! / want[k]! }));
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!;
  const quadrants = [0, 1, 2, 3].map((q) =>
    med(ratios.filter(({ s }) => (s.x < W / 2 ? 0 : 1) + (s.y < H / 2 ? 0 : 2) === q).map((x) => x.r)),
  );
  return { all: med(ratios.map((x) => x.r)), quadrants, n: iso.length };
}

/** TBQR of the set (emergency mode allowed: 24 frames), with the plain mean's or the flattest frame's sky. */
async function tbqr(dir: string, t: Truth, name: string, skyReference?: "flattest"): Promise<Float32Array> {
  const o = { ...DEFAULT_TBQR, assumptions: { ...DEFAULT_TBQR.assumptions, framesMin: 2, allowEmergency: true } };
  const out = join(dir, `${name}.fit`);
  await reconstructTbqr(t.paths, out, { ...o, ...(skyReference ? { skyReference } : {}), artifactsDir: join(dir, name) }, ctx());
  return (await readFitsImage(out)).data;
}

describe("normalization: local", () => {
  it(
    "three nights of differing gradients: ≥ 75 % of the large-scale background error removed, sky rejections ≥ 2× fewer, nebula flux within 2 %",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-localnorm-"));
      const t = await generate(dir, true);
      const glob = await stack(dir, t, "additive", "global");
      const loc = await stack(dir, t, "local", "local");
      const eg = backgroundError(glob.img, t).rms,
        el = backgroundError(loc.img, t).rms;
      // Sky pixels: no star, nebula below 2 % of its peak.
      let sky = 0,
        rg = 0,
        rl = 0;
      for (let i = 0; i < W * H; i++)
        if (!t.starMask[i] && t.nebula[i]! < 0.02 * 1.5 * NOISE) {
          sky++;
          rg += glob.rejected[i]!;
          rl += loc.rejected[i]!;
        }
      const fg = rg / (sky * N),
        fl = rl / (sky * N);
      const ng = nebulaFlux(glob.img, t),
        nl = nebulaFlux(loc.img, t);
      console.log(
        `background error (RMS of 32-px boxes, ADU): global ${eg.toFixed(2)}, local ${el.toFixed(2)} → ${(100 * (1 - el / eg)).toFixed(1)} % removed; sky pixels rejected: global ${(100 * fg).toFixed(2)} %, local ${(100 * fl).toFixed(2)} % (${(fg / fl).toFixed(1)}×); nebula flux / truth: global ${ng.toFixed(4)}, local ${nl.toFixed(4)}`,
      );
      expect(1 - el / eg).toBeGreaterThanOrEqual(0.75);
      expect(fg / fl).toBeGreaterThanOrEqual(2);
      expect(Math.abs(nl - 1)).toBeLessThan(0.02);
    },
  );

  it(
    "TBQR: with normalization: local it keeps the flattest frame's sky, not the average of every frame's gradient (≥ 75 % of the background error removed)",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-localnorm-tbqr-"));
      const t = await generate(dir, true);
      const run = (name: string, skyReference?: "flattest") => tbqr(dir, t, name, skyReference);
      const em = backgroundError(await run("tbqr-mean"), t).rms,
        el = backgroundError(await run("tbqr-local", "flattest"), t).rms;
      console.log(
        `TBQR background error (RMS of 32-px boxes): plain mean's sky ${em.toFixed(2)} ADU, flattest frame's ${el.toFixed(2)} → ${(100 * (1 - el / em)).toFixed(1)} % removed`,
      );
      expect(1 - el / em).toBeGreaterThanOrEqual(0.75);
    },
  );

  it(
    "passing clouds (half the frames at transparency 0.6–1, ±15 % across the frame): star and nebula flux within 2 % of the clear frames', in every quadrant",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-localnorm-clouds-"));
      const t = await generate(dir, true, true);
      const glob = await stack(dir, t, "additive", "global");
      const loc = await stack(dir, t, "local", "local");
      const sg = starFlux(glob.img, t),
        sl = starFlux(loc.img, t);
      const ng = nebulaTemplate(glob.img, t),
        nl = nebulaTemplate(loc.img, t);
      const eg = backgroundError(glob.img, t).rms,
        el = backgroundError(loc.img, t).rms;
      console.log(
        `clouds: star flux / truth over ${sl.n} isolated stars: global ${sg.all.toFixed(4)} (quadrants ${sg.quadrants.map((q) => q.toFixed(3)).join(", ")}), local ${sl.all.toFixed(4)} (quadrants ${sl.quadrants.map((q) => q.toFixed(3)).join(", ")}); nebula flux / truth: global ${ng.toFixed(4)}, local ${nl.toFixed(4)}; background error global ${eg.toFixed(2)}, local ${el.toFixed(2)} ADU`,
      );
      expect(Math.abs(sl.all - 1)).toBeLessThan(0.02);
      for (const q of sl.quadrants) expect(Math.abs(q - 1)).toBeLessThan(0.02);
      expect(Math.abs(nl - 1)).toBeLessThan(0.02);
      expect(1 - el / eg).toBeGreaterThanOrEqual(0.75);
    },
  );

  it(
    "TBQR under passing clouds: with normalization: local its star fluxes agree across the field within 1 %",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-localnorm-tbqr-clouds-"));
      // Thicker cloud edges (±40 % across the cloudy frames): TBQR weights hazy frames down by τ², so thin
      // ones hardly show in its stack.
      const t = await generate(dir, true, true, 0.8);
      const run = (name: string, skyReference?: "flattest") => tbqr(dir, t, name, skyReference);
      const sm = starFlux(await run("tbqr-global"), t),
        sl = starFlux(await run("tbqr-local", "flattest"), t);
      const spread = (q: number[]) => Math.max(...q) / Math.min(...q) - 1;
      console.log(
        `TBQR, clouds: star flux / truth by quadrant: global transparency ${sm.quadrants.map((q) => q.toFixed(3)).join(", ")} (spread ${(100 * spread(sm.quadrants)).toFixed(1)} %), with transparency maps ${sl.quadrants.map((q) => q.toFixed(3)).join(", ")} (spread ${(100 * spread(sl.quadrants)).toFixed(1)} %)`,
      );
      expect(spread(sl.quadrants)).toBeLessThan(0.01);
    },
  );

  it("without gradients, local and global normalisation agree within the noise", { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-localnorm-flat-"));
    const t = await generate(dir, false);
    const glob = await stack(dir, t, "additive", "global");
    const loc = await stack(dir, t, "local", "local");
    const diff = Float32Array.from(loc.img, (v, i) => v - glob.img[i]!);
    const e = backgroundError(diff, { ...t, signal: new Float32Array(W * H) });
    // The stack's own noise per pixel: ~NOISE/√N; its 32-px box medians: ~1.25·NOISE/(√N·32).
    const boxNoise = (1.25 * NOISE) / (Math.sqrt(N) * 32);
    console.log(
      `no gradients: large-scale difference local − global ${e.rms.toFixed(3)} ADU RMS (box-median noise of one stack ${boxNoise.toFixed(3)} ADU)`,
    );
    expect(e.rms).toBeLessThan(3 * boxNoise);
  });
});
