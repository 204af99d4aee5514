/**
 * `registration: relative` on generated sets it was not tuned to (issue 15), each on several seeds, scored
 * against the generator's true geometry (generators/field.ts) over a 9 × 9 grid of each frame:
 *
 * - a satellite trail in the frame with the best seeing (the one `auto` is tempted by);
 * - a nebula-rich field (knots wider than the stars) with rotations up to 40°;
 * - a sparse field of 15 stars; frames through clouds (transparency 0.3); a mirrored frame.
 *
 * Asserted: every frame registration accepts is within 0.05 px RMS of the truth (so no frame is ever
 * accepted with a wrong transform), the mirrored frame is refused, `auto` never picks a trailed frame,
 * and every frame that is not mirrored or trailed is registered.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { type EngineContext } from "@tile-compile/core";
import { registerRelative } from "@tile-compile/engine-native";
import { sirilRegister } from "@tile-compile/engine-siril";
import { makeField, mapError, trueMap, type FieldOptions, type FieldSet } from "./generators/field.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const ctx = (): EngineContext => ({
  signal: new AbortController().signal,
  logger: quiet as never,
  progress() {},
  workdir: tmpdir(),
  options: {},
  runtime: { threads: 2, memoryBudgetBytes: 1 << 30 },
});

interface Outcome {
  reason: string;
  trailed: number[];
  reference: number;
  accepted: { k: number; rms: number; worst: number }[];
  refused: { k: number; reason: string }[];
}

async function run(name: string, opts: FieldOptions): Promise<{ set: FieldSet; out: Outcome }> {
  const dir = mkdtempSync(join(tmpdir(), `tc-reg-${name}-`));
  const set = await makeField(dir, opts);
  const res = await registerRelative(
    {
      frames: set.frames.map((f) => ({ path: f.path })),
      reference: "auto",
      outputDir: join(dir, "reg"),
      filenamePattern: "r_{index:03d}.fit",
      options: {},
      history: [],
    },
    ctx(),
  );
  const reference = set.frames.findIndex((f) => f.path === res.reference);
  expect(res.referenceReason ?? "").toMatch(/auto: the most stars per px of FWHM/);
  const out: Outcome = {
    reason: res.referenceReason ?? "",
    trailed: res.frames.flatMap((f, k) => (f.trails?.length ? [k] : [])),
    reference,
    accepted: [],
    refused: [],
  };
  res.frames.forEach((f, k) => {
    if (f.matrix) out.accepted.push({ k, ...mapError(f.matrix, trueMap(set, k, reference), set.W, set.H) });
    else out.refused.push({ k, reason: f.error ?? "?" });
  });
  const worst = out.accepted.reduce((a, x) => Math.max(a, x.rms), 0);
  if (process.env.TC_REG_DEBUG)
    console.log(out.accepted.map((a) => `${a.k}${set.frames[a.k]!.cloudy ? "c" : ""}:${a.rms.toFixed(3)}`).join(" "));
  console.log(
    `${name} seed ${opts.seed}: reference ${basename(res.reference)}${set.frames[reference]!.trail ? " (TRAILED)" : ""}; ${out.accepted.length}/${set.frames.length} registered, worst ${worst.toFixed(3)} px rms vs truth; refused: ${out.refused.map((r) => `${r.k}${set.frames[r.k]!.mirrored ? " (mirrored)" : set.frames[r.k]!.trail ? " (trail)" : ""}: ${r.reason}`).join("; ") || "none"}`,
  );
  return { set, out };
}

function check(set: FieldSet, out: Outcome) {
  // Never a wrong transform: every accepted frame matches the truth to 0.05 px RMS over the field.
  const bad = out.accepted.filter((a) => !(a.rms <= 0.05));
  expect(bad.map((b) => `frame ${b.k}: ${b.rms.toFixed(3)} px rms, worst ${b.worst.toFixed(3)}`)).toEqual([]);
  expect(set.frames[out.reference]!.trail).toBe(false);
  for (const r of out.refused) expect(set.frames[r.k]!.mirrored || set.frames[r.k]!.trail, `frame ${r.k} refused: ${r.reason}`).toBe(true);
  for (const k of set.frames.map((f, i) => (f.mirrored ? i : -1)).filter((i) => i >= 0))
    expect(out.refused.find((r) => r.k === k)?.reason ?? "", `mirrored frame ${k}`).toMatch(/mirror/);
}

describe("registration on conditions it was not tuned to (issue 15)", () => {
  for (const seed of [1, 2, 3]) {
    it(
      `satellite trail in the sharpest frame, 24 dithered 512² frames, ~25 bright stars (seed ${seed})`,
      { timeout: 120_000 },
      async () => {
        const { set, out } = await run("trail", {
          seed,
          frames: 24,
          width: 512,
          height: 512,
          stars: 60,
          flux: [2000, 300000],
          trails: [3, 11, 17],
          sharpest: 3,
          trailLevel: 3000,
        });
        check(set, out);
        // transforms.json names the trails it found: only on trailed frames (a faint or edge-cut one may be missed).
        expect(out.trailed.filter((k) => ![3, 11, 17].includes(k))).toEqual([]);
        expect(out.trailed.length).toBeGreaterThanOrEqual(1);
      },
    );
    it(
      `nebula field, knots wider than the stars, rotations up to 40°, 12 frames 640×480 (seed ${seed})`,
      { timeout: 120_000 },
      async () => {
        const { set, out } = await run("nebula", {
          seed,
          frames: 12,
          width: 640,
          height: 480,
          stars: 120,
          fwhmMin: 3.4,
          fwhmMax: 3.8,
          rotation: 40,
          nebula: true,
        });
        check(set, out);
      },
    );
    it(`sparse field of 15 stars with clouds (transparency 0.3) and a mirrored frame (seed ${seed})`, { timeout: 120_000 }, async () => {
      const { set, out } = await run("sparse", {
        seed,
        frames: 12,
        width: 512,
        height: 512,
        stars: 15,
        flux: [20000, 300000],
        rotation: 180,
        clouds: [4, 5],
        mirrored: [8],
      });
      check(set, out);
    });
  }
  it(
    "the review's set: 120 dithered 512² frames, ~25 bright stars, one trailed frame with the best seeing",
    { timeout: 300_000 },
    async () => {
      const { set, out } = await run("trail120", {
        seed: 7,
        frames: 120,
        width: 512,
        height: 512,
        stars: 25,
        flux: [20000, 300000],
        trails: [40],
        sharpest: 40,
        trailLevel: 3000,
      });
      check(set, out);
      expect(out.accepted.length).toBeGreaterThanOrEqual(119);
      // Siril 1.0.6 on the same frames (reference 0; it has no `auto`), for the record: ours must do better.
      if (spawnSync("siril-cli", ["--version"], { stdio: "ignore" }).status !== 0) {
        console.log("SKIP Siril comparison on the 120-frame set: siril-cli not installed — apt-get install siril");
        return;
      }
      const dir = join(set.frames[0]!.path, "..");
      const sr = await sirilRegister(
        {
          frames: set.frames.map((f) => ({ path: f.path })),
          reference: 0,
          outputDir: join(dir, "siril-reg"),
          filenamePattern: "s_{index:03d}.fit",
          options: {},
          history: [],
        },
        { ...ctx(), workdir: mkdtempSync(join(tmpdir(), "tc-reg-siril-")) },
      ).catch((e: Error) => e);
      const sOk = sr instanceof Error ? [] : sr.frames.map((f, k) => ({ k, f })).filter(({ f }) => f.matrix);
      const sErr = sOk.map(({ k, f }) => mapError(f.matrix!, trueMap(set, k, 0), set.W, set.H).rms);
      console.log(
        `Siril 1.0.6 on the same set: ${sOk.length}/120 registered${sr instanceof Error ? ` (${sr.message})` : ""}${sErr.length ? `, worst ${Math.max(...sErr).toFixed(3)} px rms vs truth` : ""}`,
      );
      expect(out.accepted.length).toBeGreaterThanOrEqual(sOk.length);
      if (sErr.length) expect(Math.max(...out.accepted.map((a) => a.rms))).toBeLessThanOrEqual(Math.max(...sErr));
    },
  );
  it(
    "a dense field (600 stars in 768², rotations up to 90°): the chance test does not refuse good matches",
    { timeout: 300_000 },
    async () => {
      const { set, out } = await run("dense", {
        seed: 4,
        frames: 8,
        width: 768,
        height: 768,
        stars: 600,
        flux: [1500, 200000],
        rotation: 90,
      });
      check(set, out);
      expect(out.accepted.length).toBe(8);
    },
  );
});

/**
 * Issue 31: the conditions real frames showed (a binned, AO-guided CCD; thin cloud; small frames with few
 * stars and strong per-frame gradients; 12-bit data with hot columns). Every frame must register, within
 * 0.05 px RMS of the truth (0.08 px where fewer than 15 stars are measurable), none accepted wrong, none
 * flagged as trailed without a trail.
 */
describe("registration on real-camera conditions (issue 31)", () => {
  const all = (set: FieldSet, out: Outcome, limit: number) => {
    const bad = out.accepted.filter((a) => !(a.rms <= limit));
    expect(bad.map((b) => `frame ${b.k}: ${b.rms.toFixed(3)} px rms`)).toEqual([]);
    expect(out.refused.map((r) => `frame ${r.k}: ${r.reason}`)).toEqual([]);
    expect(out.accepted.length).toBe(set.frames.length);
    // No trail generated, none flagged (the reference choice names trailed frames it set aside).
    expect(out.reason).not.toMatch(/satellite trail/);
    expect(out.trailed.map((k) => `frame ${k}`)).toEqual([]);
  };
  for (const seed of [1, 2]) {
    it(
      `2×2-binned CCD, FWHM 5–6.5 px, AO drift of 0.3 px a frame and one 22 px dither, two frames through thin cloud (seed ${seed})`,
      { timeout: 180_000 },
      async () => {
        const { set, out } = await run("binned", {
          seed,
          frames: 14,
          width: 768,
          height: 512,
          stars: 45,
          flux: [8000, 400000],
          fwhmMin: 5,
          fwhmMax: 6.5,
          drift: { step: 0.3, jump: { at: 7, dx: 22, dy: -9 } },
          clouds: [3, 10],
          cloudT: 0.5,
          sky: 600,
        });
        // Measured 0.026 / 0.029 px: the ±1.6 FWHM box (0.055 / 0.067 with the 11×11 box) and no invented
        // rotation (the nested F-test in refineMatch; 0.039 / 0.060 with the similarity always fitted).
        all(set, out, 0.05);
      },
    );
    it(`thin cloud: half the frames at 30 % transparency, ≥ 8 stars visible (seed ${seed})`, { timeout: 180_000 }, async () => {
      const { set, out } = await run("cloud30", {
        seed,
        frames: 12,
        width: 512,
        height: 512,
        stars: 25,
        flux: [30000, 400000],
        clouds: [1, 3, 5, 7, 9, 11],
        cloudT: 0.3,
      });
      all(set, out, 0.08);
    });
    it(`small frames with ~10 stars and per-frame gradients of 300 ADU with glows (seed ${seed})`, { timeout: 180_000 }, async () => {
      const { set, out } = await run("fewgrad", {
        seed,
        frames: 20,
        width: 384,
        height: 384,
        stars: 10,
        flux: [20000, 300000],
        gradient: 300,
      });
      all(set, out, 0.08);
    });
    it(`12-bit data with hot columns (seed ${seed})`, { timeout: 180_000 }, async () => {
      const { set, out } = await run("12bit", {
        seed,
        frames: 10,
        width: 512,
        height: 384,
        stars: 40,
        flux: [8000, 300000],
        hotColumns: 4,
        twelveBit: true,
      });
      all(set, out, 0.05);
    });
  }
  it(
    "a thin match is confirmed by the pixels, or refused: a frame of another field with ~10 stars is never registered",
    { timeout: 180_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-reg-foreign-"));
      const set = await makeField(dir, { seed: 2, frames: 8, width: 384, height: 384, stars: 10, flux: [20000, 300000], gradient: 300 });
      mkdirSync(join(dir, "other"));
      const other = await makeField(join(dir, "other"), {
        seed: 9,
        frames: 1,
        width: 384,
        height: 384,
        stars: 10,
        flux: [20000, 300000],
        gradient: 300,
      });
      const frames = [...set.frames.map((f) => ({ path: f.path })), { path: other.frames[0]!.path }];
      const res = await registerRelative(
        { frames, reference: 0, outputDir: join(dir, "reg"), filenamePattern: "r_{index:03d}.fit", options: {}, history: [] },
        ctx(),
      );
      expect(res.frames[8]!.matrix).toBeUndefined();
      expect(res.frames[8]!.error).toBeDefined();
      for (let k = 0; k < 8; k++) {
        expect(res.frames[k]!.error, `frame ${k}`).toBeUndefined();
        expect(mapError(res.frames[k]!.matrix!, trueMap(set, k, 0), set.W, set.H).rms, `frame ${k}`).toBeLessThan(0.08);
      }
      console.log(`foreign frame among 8 thin-star frames: ${res.frames[8]!.error}`);
    },
  );
});
