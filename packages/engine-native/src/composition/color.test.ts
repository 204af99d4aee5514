/**
 * Colour balance of a composition (issue 35, item 3) on generated channel stacks whose truth is known: stars
 * with known colours (half of them the reference colour, the rest spread symmetrically redder and bluer),
 * filters of different throughput (R 0.72, G 1, B 1.35 of the truth), a tinted sky (R 180, G 120, B 95),
 * a coloured nebula, saturated stars and a luminance stack. Scored independently of the code under test:
 * sky levels on pixels the truth says are sky, star fluxes by aperture photometry at the true positions.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testEngineContext } from "@tile-compile/core/testing";
import {
  BUILTIN_PALETTES,
  colorBalanceFor,
  readFitsImage,
  seededRandom,
  writeFitsImage,
  type ColorBalanceRecord,
} from "@tile-compile/core";
import { nativeComposition } from "./native.js";
import { skyLevels } from "./color.js";

const W = 640,
  H = 480,
  FWHM = 3.2,
  SAT = 30000;
const THROUGHPUT = { R: 0.72, G: 1, B: 1.35 };
const SKY = { R: 180, G: 120, B: 95, L: 380 };
const NOISE = 2.5;

interface TruthStar {
  x: number;
  y: number;
  flux: number;
  colour: { R: number; G: number; B: number };
}

const ctx = () => testEngineContext({ memoryBudgetBytes: 1 << 28 });

/** Channel stacks L, R, G, B (32-bit FITS) and the truth. */
async function generate(dir: string, seed: number): Promise<{ paths: Record<string, string>; stars: TruthStar[]; nebula: Float32Array }> {
  const r = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const stars: TruthStar[] = [];
  while (stars.length < 200) {
    // Half the stars have the reference colour; the others are redder or bluer by up to ±35 % in R/G,
    // symmetrically in the logarithm (so the median star is the reference colour).
    const u = stars.length % 2 ? 0 : (stars.length % 4 ? 1 : -1) * 0.3 * r();
    const s = {
      x: 14 + r() * (W - 28),
      y: 14 + r() * (H - 28),
      flux: 1500 * Math.exp(r() * Math.log(200)),
      colour: { R: Math.exp(u), G: 1, B: Math.exp(-0.8 * u) },
    };
    if (stars.every((t) => Math.hypot(t.x - s.x, t.y - s.y) > 6)) stars.push(s);
  }
  const sig2 = (FWHM / 2.3548) ** 2;
  const nebula = new Float32Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) nebula[y * W + x] = 40 * Math.exp(-(((x - 300) / 90) ** 2 + ((y - 150) / 70) ** 2));
  const nebColour = { R: 1, G: 0.45, B: 0.35 };
  const paths: Record<string, string> = {};
  for (const ch of ["L", "R", "G", "B"] as const) {
    const data = new Float32Array(W * H);
    for (const s of stars) {
      const f = ch === "L" ? s.flux * (s.colour.R + s.colour.G + s.colour.B) : s.flux * s.colour[ch] * THROUGHPUT[ch];
      for (let y = Math.max(0, Math.floor(s.y) - 10); y < Math.min(H, Math.floor(s.y) + 11); y++)
        for (let x = Math.max(0, Math.floor(s.x) - 10); x < Math.min(W, Math.floor(s.x) + 11); x++)
          data[y * W + x] = data[y * W + x]! + (f / (2 * Math.PI * sig2)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sig2));
    }
    for (let i = 0; i < W * H; i++) {
      const neb = ch === "L" ? nebula[i]! * (nebColour.R + nebColour.G + nebColour.B) : nebula[i]! * nebColour[ch] * THROUGHPUT[ch];
      // A stack's saturated stars: flat tops at the sensor's ceiling.
      data[i] = Math.min(SAT, data[i]! + neb + SKY[ch] + NOISE * g());
    }
    paths[ch] = join(dir, `stack_${ch}.fit`);
    await writeFitsImage(paths[ch], { width: W, height: H, data });
  }
  return { paths, stars, nebula };
}

/** Aperture flux (r = 2.5 FWHM) with the sky from the ring 3.5–5 FWHM (median), and its 1σ sky-noise error. */
function phot(p: Float32Array, x0: number, y0: number): [number, number] {
  const ra = 2.5 * FWHM,
    r1 = 3.5 * FWHM,
    r2 = 5 * FWHM;
  const ring: number[] = [];
  let sum = 0,
    n = 0;
  for (let y = Math.floor(y0 - r2); y <= Math.ceil(y0 + r2); y++)
    for (let x = Math.floor(x0 - r2); x <= Math.ceil(x0 + r2); x++) {
      const d = Math.hypot(x - x0, y - y0);
      const v = p[y * W + x]!;
      if (d <= ra) {
        sum += v;
        n++;
      } else if (d >= r1 && d <= r2) ring.push(v);
    }
  ring.sort((a, b) => a - b);
  const sky = ring[ring.length >> 1]!;
  const sd = 1.4826 * [...ring.map((v) => Math.abs(v - sky))].sort((a, b) => a - b)[ring.length >> 1]!;
  return [sum - n * sky, sd * Math.sqrt(n * (1 + (1.57 * n) / ring.length))];
}

/** Compose the palette with its default colour balance; the result's planes and the balance record. */
async function compose(
  dir: string,
  paths: Record<string, string>,
  name: string,
  palette: Record<string, Record<string, number>>,
  color = colorBalanceFor({ neutralize_background: true, star_color: { R: 1, G: 1, B: 1 } }, palette),
): Promise<{ planes: Float32Array[]; color?: ColorBalanceRecord }> {
  const output = join(dir, `${name}.fits`);
  const r = await nativeComposition.compose({ channels: paths, palette, output, options: {}, history: [], color }, ctx());
  const img = await readFitsImage(output);
  const n = W * H;
  return { planes: [0, 1, 2].map((c) => img.data.subarray(c * n, (c + 1) * n)), ...(r.color ? { color: r.color } : {}) };
}

/** Per channel, the median of the pixels the truth calls sky: ≥ 6 FWHM from every star, nebula < 0.05 ADU. */
function truthSky(planes: Float32Array[], stars: TruthStar[], nebula: Float32Array): number[] {
  const sky = new Uint8Array(W * H).fill(1);
  for (const s of stars) {
    const rr = s.flux > 50000 ? 14 * FWHM : 6 * FWHM;
    for (let y = Math.max(0, Math.floor(s.y - rr)); y < Math.min(H, Math.ceil(s.y + rr)); y++)
      for (let x = Math.max(0, Math.floor(s.x - rr)); x < Math.min(W, Math.ceil(s.x + rr)); x++)
        if (Math.hypot(x - s.x, y - s.y) < rr) sky[y * W + x] = 0;
  }
  return planes.map((p) => {
    const v: number[] = [];
    for (let i = 0; i < W * H; i++) if (sky[i] && nebula[i]! < 0.05) v.push(p[i]!);
    v.sort((a, b) => a - b);
    return v[v.length >> 1]!;
  });
}

/** Colour-ratio errors (R/G and B/G against the truth) of the isolated, unsaturated stars measured to 0.7 % (1σ; 3 % is then > 4σ). */
function colourErrors(planes: Float32Array[], stars: TruthStar[]): number[] {
  const errs: number[] = [];
  const margin = 5 * FWHM + 2;
  for (const s of stars) {
    if (s.x < margin || s.y < margin || s.x >= W - margin || s.y >= H - margin) continue;
    if (stars.some((t) => t !== s && Math.hypot(t.x - s.x, t.y - s.y) < 6 * FWHM)) continue;
    const peak = (s.flux * 1.35 * 1.4) / (2 * Math.PI * (FWHM / 2.3548) ** 2);
    if (peak + SKY.R > 0.8 * SAT) continue;
    const [[fr, nr], [fg, ng], [fb, nb]] = planes.map((p) => phot(p, s.x, s.y)) as [[number, number], [number, number], [number, number]];
    for (const [f, n, truth] of [
      [fr, nr, s.colour.R / s.colour.G],
      [fb, nb, s.colour.B / s.colour.G],
    ] as const)
      if (Math.hypot(n / f, ng / fg) <= 0.007) errs.push(Math.abs(f / fg / truth - 1));
  }
  return errs.sort((a, b) => a - b);
}

describe("colour balance (composition.color)", () => {
  it(
    "LRGB and RGB: the background comes out neutral within 1 % per channel and unsaturated stars' colours within 3 % of the truth, through filters of different throughput under a tinted sky",
    { timeout: 120_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-colour-"));
      const { paths, stars, nebula } = await generate(dir, 35);
      const lumNoise: Record<string, number> = {};
      for (const name of ["LRGB", "RGB"] as const) {
        const { planes, color } = await compose(dir, paths, name, BUILTIN_PALETTES[name]!);
        lumNoise[name] = skyLevels([Float32Array.from(planes[0]!, (v, i) => (v + planes[1]![i]! + planes[2]![i]!) / 3)], W, H)!.noise[0]!;
        const sky = truthSky(planes, stars, nebula);
        const errs = colourErrors(planes, stars);
        console.log(
          `${name}: sky R/G ${(sky[0]! / sky[1]!).toFixed(4)}, B/G ${(sky[2]! / sky[1]!).toFixed(4)}; white balance on ${color?.stars} stars: R ×${color?.factor.R.toFixed(4)} (truth ${(1 / THROUGHPUT.R).toFixed(4)}), B ×${color?.factor.B.toFixed(4)} (truth ${(1 / THROUGHPUT.B).toFixed(4)}); ${errs.length} star colour ratios: median error ${(100 * errs[errs.length >> 1]!).toFixed(2)} %, worst ${(100 * errs[errs.length - 1]!).toFixed(2)} %`,
        );
        expect(color?.skipped).toBeUndefined();
        expect(Math.abs(sky[0]! / sky[1]! - 1)).toBeLessThan(0.01);
        expect(Math.abs(sky[2]! / sky[1]! - 1)).toBeLessThan(0.01);
        expect(errs.length).toBeGreaterThanOrEqual(30);
        expect(errs[errs.length - 1]!).toBeLessThan(0.03);
        // The factors themselves undo the filters' throughput (to 2 %).
        expect(Math.abs(color!.factor.R * THROUGHPUT.R - 1)).toBeLessThan(0.02);
        expect(Math.abs(color!.factor.B * THROUGHPUT.B - 1)).toBeLessThan(0.02);
      }
      // The L layer gives the luminance its signal-to-noise: L's sky noise per unit of signal is 2.5/3 against
      // 2.5/√3 for the mean of R, G, B (×1.73).
      console.log(`luminance sky noise: LRGB ${lumNoise.LRGB!.toFixed(3)}, RGB ${lumNoise.RGB!.toFixed(3)}`);
      expect(lumNoise.RGB! / lumNoise.LRGB!).toBeGreaterThan(1.5);
      // Without the balance the same stacks are visibly off: the sky keeps its tint (R/G 1.5) and the stars their filters' throughput (28–35 %).
      const { planes } = await compose(dir, paths, "RGB-none", BUILTIN_PALETTES.RGB!, {
        neutralizeBackground: false,
        whiteBalance: "none",
        starColor: { R: 1, G: 1, B: 1 },
      });
      const sky = truthSky(planes, stars, nebula);
      expect(sky[0]! / sky[1]!).toBeGreaterThan(1.4);
      expect(colourErrors(planes, stars)[0]!).toBeGreaterThan(0.2);
    },
  );

  it(
    "HOO: the background is neutralised; the stars keep the palette's colours (no white balance by default)",
    { timeout: 60_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-colour-hoo-"));
      const { paths, stars, nebula } = await generate(dir, 36);
      const { planes, color } = await compose(dir, { H: paths.R!, O: paths.B! }, "HOO", BUILTIN_PALETTES.HOO!);
      expect(color?.whiteBalance).toBe("none");
      expect(color?.factor).toEqual({ R: 1, G: 1, B: 1 });
      const sky = truthSky(planes, stars, nebula);
      expect(Math.abs(sky[0]! / sky[1]! - 1)).toBeLessThan(0.01);
      expect(Math.abs(sky[2]! / sky[1]! - 1)).toBeLessThan(0.01);
    },
  );

  it("too few stars: the white balance is skipped with the reason, the background still neutralised", async () => {
    const w = 96,
      h = 96,
      r = seededRandom(3);
    const planes = [150, 100, 80].map((s) => Float32Array.from({ length: w * h }, () => s + 2 * (r() - 0.5))) as [
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    const { balanceColor } = await import("./color.js");
    const c = await balanceColor(
      planes,
      w,
      h,
      { neutralizeBackground: true, whiteBalance: "stars", starColor: { R: 1, G: 1, B: 1 } },
      ctx().signal,
    );
    expect(c.skipped).toMatch(/stars/);
    expect(c.factor).toEqual({ R: 1, G: 1, B: 1 });
    const lv = skyLevels(planes, w, h)!;
    expect(Math.abs(lv.sky[0]! - lv.sky[1]!)).toBeLessThan(0.05);
    expect(Math.abs(lv.sky[2]! - lv.sky[1]!)).toBeLessThan(0.05);
  });
});
