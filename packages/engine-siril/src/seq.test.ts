import { describe, expect, it } from "vitest";
import { invertTransform, multiplyTransform, seededRandom } from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";
import { chooseTransform, parseSeq, seqFrameFigures } from "./seq.js";

const W = 300, H = 200;
function starField(seed: number): Float32Array {
  const r = seededRandom(seed), data = new Float32Array(W * H);
  for (let i = 0; i < data.length; i++) data[i] = 500 + 5 * (r() - 0.5);
  for (let s = 0; s < 60; s++) {
    const x0 = 10 + r() * (W - 20), y0 = 10 + r() * (H - 20), f = 2000 + 20000 * r();
    for (let y = Math.max(0, Math.floor(y0) - 6); y < Math.min(H, Math.floor(y0) + 7); y++) for (let x = Math.max(0, Math.floor(x0) - 6); x < Math.min(W, Math.floor(x0) + 7); x++) data[y * W + x]! += (f / 10) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / 3.2);
  }
  return data;
}
const fmt = (m: number[]) => m.map((v) => v.toPrecision(12)).join(" ");

describe("Siril 1.2+ sequence files", () => {
  it("parses version 4+ S, I and R lines (homography after the H token; empty layers ignored)", () => {
    const seq = parseSeq([
      "#Siril sequence file. Contains list of images, selection, registration data and statistics",
      "S 'f_' 1 3 3 5 0 4 0 0 0",
      "L 3",
      "I 1 1", "I 2 0", "I 3 1",
      "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0", "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0", "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
      "R1 2.5 2.4 0.9 0.3 0.01 120 H 1 0 0 0 1 0 0 0 1",
      "R1 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
      "R1 2.6 2.5 0.9 0.3 0.01 118 H 0.9999 -0.01 3.25 0.01 0.9999 -1.5 0 0 1",
    ].join("\n"));
    expect(seq.version).toBe(4);
    expect(seq.reference).toBe(0);
    expect(seq.images.map((i) => i.included)).toEqual([true, false, true]);
    expect(seq.images[0]!.H).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(seq.images[1]!.H).toBeUndefined();
    expect(seq.images[2]!.H).toEqual([0.9999, -0.01, 3.25, 0.01, 0.9999, -1.5, 0, 0, 1]);
  });

  it("recovers our input → reference matrix from H whichever way Siril writes it (H or H⁻¹, y down or up), by reproducing the registered frame", async () => {
    const recon = loadRecon();
    const input = starField(3);
    const th = (0.7 * Math.PI) / 180;
    const truth = [Math.cos(th), -Math.sin(th), 4.3, Math.sin(th), Math.cos(th), -2.6, 0, 0, 1];
    const registered = (await recon.warp({ data: input, width: W, height: H }, invertTransform(truth)!, { interpolation: "lanczos3" })).data;
    const F = [1, 0, 0, 0, -1, H - 1, 0, 0, 1];
    const conventions: Record<string, number[]> = {
      "H, y up": truth, "H⁻¹, y up": invertTransform(truth)!,
      "H, y down": multiplyTransform(multiplyTransform(F, truth), F), "H⁻¹, y down": multiplyTransform(multiplyTransform(F, invertTransform(truth)!), F),
    };
    for (const [name, Hs] of Object.entries(conventions)) {
      const seq = parseSeq(`S 'f_' 1 1 1 5 0 4 0 0 0\nL 1\nI 1 1\nR0 2 2 1 1 0 60 H ${fmt(Hs)}\n`);
      const chosen = await chooseTransform(seq.images[0]!.H!, { data: input, width: W, height: H }, { data: registered, width: W, height: H });
      expect(chosen, name).toBeDefined();
      for (let k = 0; k < 9; k++) expect(chosen!.matrix[k]!, `${name} [${k}]`).toBeCloseTo(truth[k]!, 6);
      // The right candidate leaves only the bilinear-vs-Lanczos difference; the next best misplaces the stars.
      expect(chosen!.rms * 4).toBeLessThan(chosen!.runnerUp);
    }
    // The reference frame (identity) is accepted; an unrelated frame is not.
    expect((await chooseTransform([1, 0, 0, 0, 1, 0, 0, 0, 1], { data: input, width: W, height: H }, { data: input, width: W, height: H }))!.rms).toBe(0);
    expect(await chooseTransform(truth, { data: input, width: W, height: H }, { data: starField(99), width: W, height: H })).toBeUndefined();
  });
});

describe("seqFrameFigures", () => {
  it("reads Siril 1.0's version-3 R lines (FWHM, roundness) and leaves a skipped frame undefined", () => {
    const text = "S 'f_' 1 3 3 5 0 3\nL 1\nI 1 1\nI 2 1\nI 3 1\nR0 0.000000 0.000000 3.57495 3.57495 0.972445 0\nR0 0.000000 0.000000 0 0 0 0\nR0 0.000000 0.000000 3.5714 3.76981 0.973743 0\n";
    expect(seqFrameFigures(text)).toEqual([{ fwhm: 3.57495, roundness: 0.972445 }, undefined, { fwhm: 3.5714, roundness: 0.973743 }]);
  });
});
