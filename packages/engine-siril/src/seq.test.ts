import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyTransform, invertTransform, multiplyTransform, seededRandom, writeFitsImage } from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";
import { chooseAmong, chooseTransform, measureFromRegistered, parseSeq, seqFrameFigures } from "./seq.js";
import { parseRegistrationLog } from "./stages.js";

const W = 300,
  H = 200;
function starField(seed: number): Float32Array {
  const r = seededRandom(seed),
    data = new Float32Array(W * H);
  for (let i = 0; i < data.length; i++) data[i] = 500 + 5 * (r() - 0.5);
  for (let s = 0; s < 60; s++) {
    const x0 = 10 + r() * (W - 20),
      y0 = 10 + r() * (H - 20),
      f = 2000 + 20000 * r();
    for (let y = Math.max(0, Math.floor(y0) - 6); y < Math.min(H, Math.floor(y0) + 7); y++)
      for (let x = Math.max(0, Math.floor(x0) - 6); x < Math.min(W, Math.floor(x0) + 7); x++)
        data[y * W + x]! += (f / 10) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / 3.2);
  }
  return data;
}
const fmt = (m: number[]) => m.map((v) => v.toPrecision(12)).join(" ");

describe("Siril 1.2+ sequence files", () => {
  it("parses version 4+ S, I and R lines (homography after the H token; empty layers ignored)", () => {
    const seq = parseSeq(
      [
        "#Siril sequence file. Contains list of images, selection, registration data and statistics",
        "S 'f_' 1 3 3 5 0 4 0 0 0",
        "L 3",
        "I 1 1",
        "I 2 0",
        "I 3 1",
        "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
        "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
        "R0 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
        "R1 2.5 2.4 0.9 0.3 0.01 120 H 1 0 0 0 1 0 0 0 1",
        "R1 0 0 0 0 0 0 H 0 0 0 0 0 0 0 0 0",
        "R1 2.6 2.5 0.9 0.3 0.01 118 H 0.9999 -0.01 3.25 0.01 0.9999 -1.5 0 0 1",
      ].join("\n"),
    );
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
    const registered = (await recon.warp({ data: input, width: W, height: H }, invertTransform(truth)!, { interpolation: "lanczos3" }))
      .data;
    const F = [1, 0, 0, 0, -1, H - 1, 0, 0, 1];
    const conventions: Record<string, number[]> = {
      "H, y up": truth,
      "H⁻¹, y up": invertTransform(truth)!,
      "H, y down": multiplyTransform(multiplyTransform(F, truth), F),
      "H⁻¹, y down": multiplyTransform(multiplyTransform(F, invertTransform(truth)!), F),
    };
    for (const [name, Hs] of Object.entries(conventions)) {
      const seq = parseSeq(`S 'f_' 1 1 1 5 0 4 0 0 0\nL 1\nI 1 1\nR0 2 2 1 1 0 60 H ${fmt(Hs)}\n`);
      const chosen = await chooseTransform(
        seq.images[0]!.H!,
        { data: input, width: W, height: H },
        { data: registered, width: W, height: H },
      );
      expect(chosen, name).toBeDefined();
      for (let k = 0; k < 9; k++) expect(chosen!.matrix[k]!, `${name} [${k}]`).toBeCloseTo(truth[k]!, 6);
      // The right candidate leaves only the bilinear-vs-Lanczos difference; the next best misplaces the stars.
      expect(chosen!.rms * 4).toBeLessThan(chosen!.runnerUp);
    }
    // The reference frame (identity) is accepted; an unrelated frame is not.
    expect(
      (await chooseTransform([1, 0, 0, 0, 1, 0, 0, 0, 1], { data: input, width: W, height: H }, { data: input, width: W, height: H }))!.rms,
    ).toBe(0);
    expect(
      await chooseTransform(truth, { data: input, width: W, height: H }, { data: starField(99), width: W, height: H }),
    ).toBeUndefined();
  });
});

describe("seqFrameFigures", () => {
  it("reads Siril 1.0's version-3 R lines (FWHM, roundness) and leaves a skipped frame undefined", () => {
    const text =
      "S 'f_' 1 3 3 5 0 3\nL 1\nI 1 1\nI 2 1\nI 3 1\nR0 0.000000 0.000000 3.57495 3.57495 0.972445 0\nR0 0.000000 0.000000 0 0 0 0\nR0 0.000000 0.000000 3.5714 3.76981 0.973743 0\n";
    expect(seqFrameFigures(text)).toEqual([{ fwhm: 3.57495, roundness: 0.972445 }, undefined, { fwhm: 3.5714, roundness: 0.973743 }]);
  });
});

/** Siril 1.0.6's lines for one registered image, as its log prints them. */
function block(image: number, t: { rot: string; dx: string; dy: string }): string[] {
  return [
    `log: Found 60 stars in image ${image}, channel #0`,
    `log: Matching stars in image ${image}: done`,
    "log: Initial pair matches: 59",
    "log: Pair matches after fitting: 59",
    "log: Inliers:      1.000",
    "log: scaleX:       1.000",
    "log: scaleY:       1.000",
    "log: scale:        1.000",
    `log: rotation:   ${t.rot} deg`,
    `log: dx:          ${t.dx} px`,
    `log: dy:          ${t.dy} px`,
    "log: FWHMx:        3.83 px",
  ];
}

describe("parseRegistrationLog (Siril 1.0)", () => {
  const t4 = { rot: "-0.001", dx: "-1.22", dy: "+0.57" },
    t5 = { rot: "+0.002", dx: "-1.61", dy: "-0.33" },
    t6 = { rot: "+0.000", dx: "+0.40", dy: "-1.89" };
  const value = (t: { rot: string; dx: string; dy: string }) => ({
    scale: 1,
    rotationDeg: Number(t.rot),
    dx: Number(t.dx),
    dy: Number(t.dy),
  });
  it("one transform per image where each image's lines come in one piece", () => {
    const m = parseRegistrationLog([...block(5, t5), "log: Saving FITS: file r_f_00005.fit", ...block(4, t4)]);
    expect(m.get(5)).toEqual([value(t5)]);
    expect(m.get(4)).toEqual([value(t4)]);
  });
  it("where two threads' lines interleave, both images get candidates that include their own transform; the next clean image stays certain", () => {
    const a = block(4, t4),
      b = block(5, t5);
    // Thread A prints "Matching … image 4", thread B "Matching … image 5", then their fields alternate.
    const lines = [...a.slice(0, 2), ...b.slice(0, 2), ...a.slice(2, 8), ...b.slice(2, 9), ...a.slice(8), ...b.slice(9), ...block(6, t6)];
    const m = parseRegistrationLog(lines);
    for (const [image, t] of [
      [4, t4],
      [5, t5],
    ] as const) {
      expect(m.get(image)!.length, `image ${image}`).toBeGreaterThan(1);
      expect(m.get(image), `image ${image}`).toContainEqual(value(t));
    }
    expect(m.get(6)).toEqual([value(t6)]);
    // Image 5's "Matching" line came after image 4's: 4's candidates are a superset of 5's.
    for (const c of m.get(5)!) expect(m.get(4)).toContainEqual(c);
  });
  it("lines Siril's log dropped (seen in CI: an image's scale and rotation lines): the transform is marked inferred, the others are not", () => {
    const lossy = block(4, t4).filter((l) => !/ (scale|rotation):/.test(l));
    const m = parseRegistrationLog([...block(5, t5), ...lossy, ...block(6, t6)]);
    expect(m.get(4)).toEqual([{ ...value(t4), rotationDeg: 0, inferred: true }]);
    expect(m.get(5)).toEqual([value(t5)]);
    expect(m.get(6)).toEqual([value(t6)]);
  });
  it("a skipped image prints no Matching line and gets no entry; a log cut short still yields the printed image", () => {
    const m = parseRegistrationLog(["log: Not enough stars. Image 3 skipped", ...block(2, t4).slice(0, 10)]);
    expect(m.has(3)).toBe(false);
    expect(m.get(2)).toEqual([]);
  });
});

describe("chooseAmong", () => {
  it("keeps the printed transform that reproduces the registered frame; candidates within 0.05 px count as one; an unrelated frame gets none", async () => {
    const input = starField(7),
      shift = (dx: number, dy: number) => [1, 0, dx, 0, 1, dy, 0, 0, 1];
    const truth = shift(-1.22, 0.57);
    const registered = (
      await loadRecon().warp({ data: input, width: W, height: H }, invertTransform(truth)!, { interpolation: "bilinear" })
    ).data;
    const picked = await chooseAmong(
      [shift(-1.61, -0.33), truth, shift(-1.22, -0.33)],
      { data: input, width: W, height: H },
      { data: registered, width: W, height: H },
    );
    expect(picked?.matrix).toEqual(truth);
    expect(picked!.rms * 20).toBeLessThan(picked!.runnerUp);
    // Printed to two decimals, two threads' transforms may differ by less than the rounding: either is right.
    expect(
      (
        await chooseAmong(
          [shift(-1.23, 0.57), shift(-1.21, 0.58)],
          { data: input, width: W, height: H },
          { data: registered, width: W, height: H },
        )
      )?.matrix,
    ).toEqual(shift(-1.23, 0.57));
    expect(
      await chooseAmong([shift(-1.61, -0.33), truth], { data: input, width: W, height: H }, { data: starField(99), width: W, height: H }),
    ).toBeUndefined();
  });
  it("where the log gives no transform, measures it from the registered frame by matching stars: within 0.02 px at the corners; a frame of another field gets none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-siril-measure-"));
    try {
      const input = starField(7),
        th = (0.3 * Math.PI) / 180;
      // A similarity as Siril 1.0 applies it: 0.3° and a sub-pixel shift.
      const truth = [Math.cos(th), -Math.sin(th), -1.37, Math.sin(th), Math.cos(th), 0.82, 0, 0, 1];
      const registered = (
        await loadRecon().warp({ data: input, width: W, height: H }, invertTransform(truth)!, { interpolation: "bilinear" })
      ).data;
      const fpath = join(dir, "f_00002.fit"),
        rpath = join(dir, "r_f_00002.fit"),
        other = join(dir, "r_other.fit");
      await writeFitsImage(fpath, { width: W, height: H, channels: 1, data: input });
      await writeFitsImage(rpath, { width: W, height: H, channels: 1, data: registered });
      await writeFitsImage(other, { width: W, height: H, channels: 1, data: starField(99) });
      const signal = new AbortController().signal;
      const got = await measureFromRegistered(
        fpath,
        rpath,
        { data: input, width: W, height: H },
        { data: registered, width: W, height: H },
        signal,
      );
      expect(got).toBeDefined();
      for (const [x, y] of [
        [0, 0],
        [W - 1, 0],
        [0, H - 1],
        [W - 1, H - 1],
      ] as const) {
        const p = applyTransform(got!.matrix, { x, y }),
          q = applyTransform(truth, { x, y });
        expect(Math.hypot(p.x - q.x, p.y - q.y), `corner ${x}, ${y}`).toBeLessThan(0.02);
      }
      expect(
        await measureFromRegistered(
          fpath,
          other,
          { data: input, width: W, height: H },
          { data: starField(99), width: W, height: H },
          signal,
        ),
      ).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
