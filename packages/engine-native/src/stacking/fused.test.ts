/**
 * The fused path (issue 34, item 1): stacking the calibrated frames with their registration transforms, each
 * band warped as it is read, against the same frames registered (written) and then stacked. Mono frames
 * with shifts, a 2° rotation, a meridian flip and a 0.4 % scale; one-shot-colour mosaics (RGGB) the same.
 * The two stacks must agree within 1e-6 relative, pixel by pixel (the band warp composes the frame's
 * transform with the band's offsets, so the sample positions differ in the last bits), with the same
 * footprint (NaN where no frame reaches), under winsorized rejection, additive normalisation and noise
 * weights, and with small bands (a 1 MiB memory budget: many bands, each with its own source rows).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FitsHeader, readFitsImage, writeFitsImage, type WarpPlan } from "@tile-compile/core";
import { testEngineContext } from "@tile-compile/core/testing";
import { catalog, knownTransform, render } from "@tile-compile/test-support/sky";
import { registerRelative } from "../registration/relative.js";
import { nativeStack } from "./stack.js";

const W = 420,
  H = 300;

const ctx = () => testEngineContext({ memoryBudgetBytes: 1 << 20 });

const transforms = [
  knownTransform(W, H, 0, 1, 0, 0),
  knownTransform(W, H, 0, 1, 6.37, -4.81),
  knownTransform(W, H, 2, 1, -3.2, 2.9),
  knownTransform(W, H, 180, 1, -2.3, 3.1),
  knownTransform(W, H, 1, 1.004, 5.5, 1.25),
  knownTransform(W, H, -1.5, 1, -1.1, -6.4),
];

/** Frames rendered through the transforms; `cfa`: as RGGB mosaics with colour gains R 0.8, G 1, B 0.6. */
async function frames(dir: string, cfa: boolean): Promise<string[]> {
  const cat = catalog(W, H, 220, 11);
  const paths: string[] = [];
  for (const [i, t] of transforms.entries()) {
    const data = render(cat, W, H, t, 200 + i, { sigma: 1.8 });
    if (cfa)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) data[y * W + x] = data[y * W + x]! * (y % 2 === 0 ? (x % 2 === 0 ? 0.8 : 1) : x % 2 === 0 ? 1 : 0.6);
    const p = join(dir, `light_${i}.fit`);
    await writeFitsImage(p, { width: W, height: H, data }, { header: cfa ? new FitsHeader().set("BAYERPAT", "RGGB") : new FitsHeader() });
    paths.push(p);
  }
  return paths;
}

async function compare(cfa: boolean, debayer: "bilinear" | "rcd") {
  const dir = mkdtempSync(join(tmpdir(), `tc-fused-${cfa ? "cfa" : "mono"}-`));
  const paths = await frames(dir, cfa);
  const reg = await registerRelative(
    {
      frames: paths.map((path) => ({ path })),
      reference: 0,
      outputDir: join(dir, "registered"),
      filenamePattern: "reg_{index:05d}.fit",
      options: { interpolation: "lanczos3", debayer },
      history: ["test"],
    },
    ctx(),
  );
  expect(reg.frames.every((f) => f.output && f.matrix)).toBe(true);
  const options = {
    rejection: "winsorized" as const,
    sigma: [3, 3] as [number, number],
    normalization: "additive" as const,
    weighting: "noise" as const,
  };
  const written = join(dir, "written.fit"),
    fused = join(dir, "fused.fit");
  await nativeStack(
    { frames: reg.frames.map((f) => ({ path: f.output! })), output: written, method: "rejection", options, history: [] },
    ctx(),
  );
  const warp: WarpPlan = { width: W, height: H, interpolation: "lanczos3", debayer, matrices: reg.frames.map((f) => f.matrix!) };
  const res = await nativeStack(
    { frames: paths.map((path) => ({ path })), output: fused, method: "rejection", options, history: [], warp },
    ctx(),
  );
  const a = await readFitsImage(written),
    b = await readFitsImage(fused);
  expect(res.channels).toBe(cfa ? 3 : 1);
  expect([b.width, b.height, b.channels]).toEqual([a.width, a.height, a.channels]);
  let worst = 0,
    nanMismatch = 0,
    finite = 0;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i]!,
      y = b.data[i]!;
    if (Number.isFinite(x) !== Number.isFinite(y)) nanMismatch++;
    else if (Number.isFinite(x)) {
      finite++;
      worst = Math.max(worst, Math.abs(x - y) / Math.max(Math.abs(x), 1));
    }
  }
  console.log(
    `${cfa ? `RGGB mosaics (${debayer})` : "mono"}: fused vs written-then-stacked over ${finite} pixels: worst relative difference ${worst.toExponential(2)}, footprint mismatches ${nanMismatch}; DEBAYER ${b.header.get("DEBAYER") ?? "—"}`,
  );
  expect(nanMismatch).toBe(0);
  expect(worst).toBeLessThanOrEqual(1e-6);
  if (cfa) expect(b.header.get("BAYERPAT")).toBeUndefined();
}

describe("stacking from the calibrated frames and their transforms (the fused path)", () => {
  it("mono: within 1e-6 of writing the registered frames and stacking them", { timeout: 120_000 }, () => compare(false, "bilinear"));
  it("RGGB mosaics, bilinear demosaic: the same", { timeout: 120_000 }, () => compare(true, "bilinear"));
  it("RGGB mosaics, RCD demosaic: the same", { timeout: 120_000 }, () => compare(true, "rcd"));
});
