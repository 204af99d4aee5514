/**
 * The debayer of one-shot-colour frames on real data (issue 34, item 0): the Seestar M 94 session (16 × 10 s,
 * GRBG) registered with each demosaic — `rcd` (the default) and `bilinear` — and, where Siril is installed, by
 * Siril 1.0.6 (its own demosaic, RCD); every set stacked by the same winsorized stacker onto the same
 * reference frame as Siril's (the first), so only the demosaic and the resampling differ. Scored here
 * (generators/real.ts: no code of the methods under test): median FWHM of isolated unsaturated stars from
 * circular Gaussian fits per channel, and the sky noise. A sharper resampling kernel trades pixel noise for
 * sharpness, so the default (Lanczos-3) stack is also compared at Siril's noise: smoothed by the Gaussian that
 * brings its sky noise down to Siril's, its stars must still be no wider.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage, type EngineContext } from "@tile-compile/core";
import { nativeStack, registerRelative } from "@tile-compile/engine-native";
import { runCli } from "@tile-compile/cli";
import { isolatedStarFwhm, realData, skyMask, skyNoise } from "./generators/real.js";

const m94 = realData("seestar/M94/2025_03_27");
if (!m94)
  console.log("SKIP the debayer comparison on the Seestar M 94 frames: ../shared/data/seestar/M94 not found (set TILE_COMPILE_DATA)");
const siril = spawnSync("siril-cli", ["--version"], { stdio: "ignore" }).status === 0;

const ctx = (workdir: string): EngineContext => ({
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
  progress() {},
  workdir,
  options: {},
  runtime: { threads: 2, memoryBudgetBytes: 1 << 30 },
});
const fitsIn = (dir: string) =>
  readdirSync(dir)
    .filter((f) => /\.fits?$/.test(f))
    .sort()
    .map((f) => join(dir, f));

interface Scored {
  fwhm: number[];
  stars: number[];
  noise: number[];
}

async function stackAndScore(frames: string[], out: string): Promise<Scored> {
  await nativeStack(
    {
      frames: frames.map((path) => ({ path })),
      output: out,
      method: "rejection",
      options: { rejection: "winsorized", sigma: [3, 3], normalization: "additive" },
      history: [],
    },
    ctx(join(out, "..")),
  );
  const img = await readFitsImage(out);
  const { width: W, height: H } = img;
  const n = W * H;
  const s: Scored = { fwhm: [], stars: [], noise: [] };
  for (let c = 0; c < img.channels; c++) {
    const p = img.data.subarray(c * n, (c + 1) * n);
    const f = isolatedStarFwhm(p, W, H);
    s.fwhm.push(f.fwhm);
    s.stars.push(f.stars.length);
    s.noise.push(skyNoise(p, W, H, skyMask(p, W, H)));
  }
  return s;
}

/** The plane smoothed by a normalised Gaussian of σ `sig` px (separable, edges clamped). */
function gaussianBlur(p: Float32Array, W: number, H: number, sig: number): Float32Array {
  const r = Math.ceil(3 * sig);
  const k = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sig * sig)));
  const t = k.reduce((a, b) => a + b, 0);
  const a = new Float32Array(W * H),
    b = new Float32Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r]! * p[y * W + Math.min(W - 1, Math.max(0, x + i))]!;
      a[y * W + x] = v / t;
    }
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r]! * a[Math.min(H - 1, Math.max(0, y + i)) * W + x]!;
      b[y * W + x] = v / t;
    }
  return b;
}

/** FWHM per channel of the stack at `path` after the Gaussian that brings each channel's sky noise to `noise`. */
async function fwhmAtNoise(path: string, noise: number[]): Promise<{ fwhm: number[]; sigma: number[] }> {
  const img = await readFitsImage(path);
  const { width: W, height: H } = img;
  const n = W * H;
  const res = { fwhm: [] as number[], sigma: [] as number[] };
  for (let c = 0; c < img.channels; c++) {
    const p = img.data.subarray(c * n, (c + 1) * n);
    const sky = skyMask(p, W, H);
    let [lo, hi] = [0.05, 1.5];
    for (let it = 0; it < 10; it++) {
      const mid = (lo + hi) / 2;
      if (skyNoise(gaussianBlur(p, W, H, mid), W, H, sky) > noise[c]!) lo = mid;
      else hi = mid;
    }
    res.sigma.push(hi);
    res.fwhm.push(isolatedStarFwhm(gaussianBlur(p, W, H, hi), W, H).fwhm);
  }
  return res;
}

const show = (s: Scored) =>
  `FWHM R/G/B ${s.fwhm.map((v) => v.toFixed(3)).join(" / ")} px (${s.stars.join("/")} stars), sky noise ${s.noise.map((v) => v.toFixed(2)).join(" / ")}`;

describe.skipIf(!m94)("debayer on the Seestar M 94 frames", () => {
  it(
    "rcd gives sharper stacked stars than bilinear; as sharp as Siril 1.0.6's registration at its noise",
    { timeout: 900_000 },
    async () => {
      const out = mkdtempSync(join(tmpdir(), "tc-debayer-"));
      try {
        const frames = fitsIn(m94!);
        const scored: Record<string, Scored> = {};
        for (const [key, debayer, interpolation] of [
          ["rcd", "rcd", "lanczos3"],
          ["bilinear", "bilinear", "lanczos3"],
          ["rcd+bilinear", "rcd", "bilinear"],
        ] as const) {
          const dir = join(out, key);
          const r = await registerRelative(
            {
              frames: frames.map((path) => ({ path })),
              reference: 0,
              outputDir: dir,
              filenamePattern: "reg_{index:05d}.fit",
              options: { debayer, interpolation },
              history: [],
            },
            ctx(out),
          );
          expect(r.frames.filter((f) => f.error)).toEqual([]);
          scored[key] = await stackAndScore(fitsIn(dir), join(out, `${key}.fit`));
          console.log(`M 94, ${debayer} debayer + ${interpolation} resampling + winsorized stack: ${show(scored[key]!)}`);
        }
        if (siril) {
          const c = { out: [] as string[], err: [] as string[] };
          const io = { out: (t: string) => void c.out.push(t), err: (t: string) => void c.err.push(t), interactive: false };
          const dir = join(out, "siril");
          expect(await runCli(["register", m94!, "-o", dir, "--engine", "siril"], { io, cwd: out }), c.err.join("\n")).toBe(0);
          scored.siril = await stackAndScore(fitsIn(dir), join(out, "siril.fit"));
          console.log(`M 94, Siril 1.0.6 registration (its RCD, bilinear resampling) + our winsorized stack: ${show(scored.siril)}`);
        } else console.log("SKIP M 94 against Siril: siril-cli not installed — apt-get install siril");
        if (scored.siril) {
          const [ours, theirs] = [scored["rcd+bilinear"]!, scored.siril];
          const matched = await fwhmAtNoise(join(out, "rcd.fit"), theirs.noise);
          console.log(
            `M 94, default stack smoothed to Siril's sky noise (Gaussian σ ${matched.sigma.map((v) => v.toFixed(3)).join(" / ")} px): FWHM R/G/B ${matched.fwhm.map((v) => v.toFixed(3)).join(" / ")} px`,
          );
          for (let c = 0; c < 3; c++) {
            // With the same (bilinear) resampling as Siril 1.0.6, only the demosaic differs: ours is at least as
            // sharp, at Siril's noise within 1.5 % (measured: −0.2 … +0.7 %).
            expect(ours.fwhm[c]!, `channel ${c} vs Siril`).toBeLessThanOrEqual(theirs.fwhm[c]!);
            expect(ours.noise[c]!, `channel ${c} noise vs Siril`).toBeLessThan(1.015 * theirs.noise[c]!);
            // The default (Lanczos-3) stack at Siril's noise: no wider stars than Siril's.
            expect(matched.fwhm[c]!, `channel ${c} at Siril's noise`).toBeLessThanOrEqual(theirs.fwhm[c]!);
          }
        }
        const [rcd, bil] = [scored.rcd!, scored.bilinear!];
        for (let c = 0; c < 3; c++) {
          expect(rcd.stars[c]!, `stars in channel ${c}`).toBeGreaterThanOrEqual(20);
          // Sharper on every channel by at least 3 % (measured: see the printed figures).
          expect(rcd.fwhm[c]!, `channel ${c}`).toBeLessThan(0.97 * bil.fwhm[c]!);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );

  it(
    "Bayer drizzle ×1 of the same frames (no demosaic) is sharper than the bilinear-demosaic stack in every channel; the default stack's star colours agree with it within 0.75 %",
    { timeout: 900_000 },
    async () => {
      const out = mkdtempSync(join(tmpdir(), "tc-bayer-drizzle-"));
      try {
        const frames = fitsIn(m94!);
        const r = await registerRelative(
          {
            frames: frames.map((path) => ({ path })),
            reference: "auto",
            outputDir: join(out, "reg"),
            filenamePattern: "reg_{index:05d}.fit",
            options: {},
            history: [],
            writeRegistered: false,
          },
          ctx(out),
        );
        const ok = r.frames.filter((f) => f.matrix && !f.error);
        expect(ok.length).toBe(frames.length);
        const h = await readFitsImage(frames[0]!);
        const warp = {
          width: h.width,
          height: h.height,
          interpolation: "lanczos3" as const,
          debayer: "bilinear" as const,
          matrices: ok.map((f) => f.matrix!),
        };
        const options = { rejection: "winsorized" as const, sigma: [3, 3] as [number, number], normalization: "additive" as const };
        const score = async (path: string): Promise<Scored> => {
          const img = await readFitsImage(path);
          const n = img.width * img.height;
          const s: Scored = { fwhm: [], stars: [], noise: [] };
          for (let c = 0; c < img.channels; c++) {
            const p = img.data.subarray(c * n, (c + 1) * n);
            const f = isolatedStarFwhm(p, img.width, img.height);
            s.fwhm.push(f.fwhm);
            s.stars.push(f.stars.length);
            s.noise.push(skyNoise(p, img.width, img.height, skyMask(p, img.width, img.height)));
          }
          return s;
        };
        const frameRefs = ok.map((f) => ({ path: f.input }));
        await nativeStack(
          { frames: frameRefs, output: join(out, "bilinear.fit"), method: "rejection", options, history: [], warp },
          ctx(out),
        );
        await nativeStack(
          {
            frames: frameRefs,
            output: join(out, "default.fit"),
            method: "rejection",
            options,
            history: [],
            warp: { ...warp, debayer: "rcd" },
          },
          ctx(out),
        );
        await nativeStack(
          {
            frames: frameRefs,
            output: join(out, "bayer-drizzle.fit"),
            method: "rejection",
            options: { ...options, drizzle: { scale: 1, pixfrac: 1, kernel: "square", cfa: true } },
            history: [],
            warp,
          },
          ctx(out),
        );
        const [d, b] = [await score(join(out, "bilinear.fit")), await score(join(out, "bayer-drizzle.fit"))];
        console.log(`M 94, bilinear demosaic + Lanczos-3 stack: ${show(d)}`);
        console.log(`M 94, Bayer drizzle ×1 (pixfrac 1): ${show(b)}`);
        // Not asserted: the default (RCD) stack is sharper than a Bayer drizzle ×1 on these well-sampled stars
        // (the drop and the output pixel add their width; RCD adds little) — printed for the record.
        console.log(`M 94, default (RCD + Lanczos-3) stack: ${show(await score(join(out, "default.fit")))}`);
        for (let c = 0; c < 3; c++) {
          expect(b.stars[c]!, `stars in channel ${c}`).toBeGreaterThanOrEqual(15);
          expect(b.fwhm[c]!, `channel ${c}`).toBeLessThan(d.fwhm[c]!);
        }
        // Star colours of the default (RCD) stack against the Bayer drizzle's — the most colour-faithful stack
        // (0.6 % rms on generated stars of known colour, drizzle.test.ts): per star, R/G and B/G in r = 7 px
        // apertures (the colour balance measures in r = max(3, 2.5·FWHM) ≈ 7 px here; r = 10 printed), sky the
        // median of a 10–14 px annulus, over the isolated stars of the bilinear stack's green. RCD's flux step
        // spread evenly over 9×9 boxes gave −0.76 / −1.48 % at r = 7; shared out where the plane's signal is,
        // −0.16 / −0.39 %. Held below 0.75 %.
        const imgR = await readFitsImage(join(out, "default.fit")),
          imgB = await readFitsImage(join(out, "bayer-drizzle.fit")),
          imgG = await readFitsImage(join(out, "bilinear.fit"));
        const { width: W, height: H } = imgR;
        const n = W * H;
        const med = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;
        const phot = (p: Float32Array, x: number, y: number, rad: number) => {
          const ring: number[] = [];
          let t = 0;
          for (let yy = y - 14; yy <= y + 14; yy++)
            for (let xx = x - 14; xx <= x + 14; xx++) if (Math.abs(Math.hypot(xx - x, yy - y) - 12) <= 2) ring.push(p[yy * W + xx]!);
          const sky = med(ring);
          for (let yy = y - rad; yy <= y + rad; yy++)
            for (let xx = x - rad; xx <= x + rad; xx++) if (Math.hypot(xx - x, yy - y) <= rad) t += p[yy * W + xx]! - sky;
          return t;
        };
        const stars = isolatedStarFwhm(imgG.data.subarray(n, 2 * n), W, H).stars;
        expect(stars.length).toBeGreaterThanOrEqual(40);
        for (const rad of [7, 10]) {
          const ratios = (img: typeof imgR, c: number) =>
            stars.map((s) => phot(img.data.subarray(c * n, (c + 1) * n), s.x, s.y, rad) / phot(img.data.subarray(n, 2 * n), s.x, s.y, rad));
          const [rg, bg] = [0, 2].map((c) => {
            const a = ratios(imgR, c),
              z = ratios(imgB, c);
            return med(a.map((v, i) => v / z[i]! - 1));
          });
          console.log(
            `M 94, default stack star colours vs Bayer drizzle ×1 at r = ${rad} px over ${stars.length} stars: R/G ${(100 * rg!).toFixed(2)} %, B/G ${(100 * bg!).toFixed(2)} %`,
          );
          if (rad === 7) {
            expect(Math.abs(rg!), `R/G at r = ${rad}`).toBeLessThan(0.0075);
            expect(Math.abs(bg!), `B/G at r = ${rad}`).toBeLessThan(0.0075);
          }
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
