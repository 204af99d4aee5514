import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage, writeFitsImage, FitsHeader } from "@tile-compile/core";
import type { EngineContext } from "@tile-compile/core";
import { catalog, knownTransform, render } from "@tile-compile/test-support/sky";
import { seestarDir } from "@tile-compile/test-support/tools";
import { applyTransform as apply, formatFrameName, matchTolerance } from "@tile-compile/core";
import { matchStars } from "@tile-compile/core";
import { framesInFlight, registerRelative } from "./relative.js";
import { seededRandom } from "@tile-compile/core";

const W = 900,
  H = 640;

function ctx(): EngineContext & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    signal: new AbortController().signal,
    logger: { debug() {}, info() {}, warn: (m: string) => warnings.push(m), error() {} } as never,
    progress() {},
    workdir: tmpdir(),
    options: {},
    runtime: { threads: 0, memoryBudgetBytes: 2 ** 30 } as never,
    warnings,
  };
}

/** RMS over catalogue stars inside the frame of |H_est(p) − H_true(p)|, p in input pixels. */
function rmsError(est: number[], truth: number[], cat: { x: number; y: number }[]): number {
  const toInput = (p: { x: number; y: number }) => {
    // invert truth numerically via its matrix inverse
    const [a, b, c, d, e, f] = truth as [number, number, number, number, number, number];
    const det = a * e - b * d;
    const x = p.x - c,
      y = p.y - f;
    return { x: (e * x - b * y) / det, y: (-d * x + a * y) / det };
  };
  let sq = 0,
    n = 0;
  for (const s of cat) {
    const p = toInput(s);
    if (p.x < 0 || p.y < 0 || p.x > W - 1 || p.y > H - 1) continue;
    const q1 = apply(est, p),
      q2 = apply(truth, p);
    sq += (q1.x - q2.x) ** 2 + (q1.y - q2.y) ** 2;
    n++;
  }
  return Math.sqrt(sq / n);
}

describe("relative registration on synthetic frames with known transforms", () => {
  const cat = catalog(W, H, 260, 7);
  const dir = mkdtempSync(join(tmpdir(), "tc-reg-"));
  const cases: [string, number[]][] = [
    ["reference", [1, 0, 0, 0, 1, 0, 0, 0, 1]],
    ["shift", knownTransform(W, H, 0, 1, 13.37, -7.81)],
    ["rotation 37°", knownTransform(W, H, 37, 1, 4.2, 2.9)],
    ["meridian flip 180°", knownTransform(W, H, 180, 1, -3.3, 5.1)],
    ["scale 0.5 % and 2°", knownTransform(W, H, 2, 1.005, -9.5, 3.25)],
  ];

  it("recovers every transform to ≤ 0.05 px RMS on star positions, writes frames and reports", async () => {
    const files = [];
    for (const [i, [, t]] of cases.entries()) {
      const f = join(dir, `light_${i}.fit`);
      await writeFitsImage(f, { width: W, height: H, data: render(cat, W, H, t, 100 + i) });
      files.push(f);
    }
    const out = join(dir, "registered");
    const res = await registerRelative(
      {
        frames: files.map((path) => ({ path })),
        reference: 0,
        outputDir: out,
        filenamePattern: "reg_{index:05d}.fit",
        options: {},
        history: ["test"],
      },
      ctx(),
    );
    expect(res.reference).toBe(files[0]);
    for (const [i, [name, truth]] of cases.entries()) {
      const fr = res.frames[i]!;
      expect(fr.error, name).toBeUndefined();
      const err = rmsError(fr.matrix!, truth, cat);
      expect(err, `${name}: ${err.toFixed(4)} px`).toBeLessThanOrEqual(0.05);
      expect(fr.output).toBe(join(out, formatFrameName("reg_{index:05d}.fit", i, files[i]!)));
      expect(fr.stars!).toBeGreaterThan(50);
    }
    // The registered meridian-flip frame lies on the reference grid: compare a bright interior region.
    const ref = await readFitsImage(join(out, "reg_00000.fit"));
    const flip = await readFitsImage(join(out, "reg_00003.fit"));
    let num = 0,
      den = 0;
    for (let y = 100; y < H - 100; y++)
      for (let x = 100; x < W - 100; x++) {
        const a = ref.data[y * W + x]! - 800,
          b = flip.data[y * W + x]! - 800;
        if (Number.isFinite(b)) {
          num += a * b;
          den += Math.sqrt(a * a * b * b);
        }
      }
    expect(num / den).toBeGreaterThan(0.5);
    expect(flip.header.get("REGREF")).toBe("light_0.fit");
  });

  it("frames in flight follow runtime.memory_budget (9 planes per unit, 1 to 3), and the output does not depend on them", async () => {
    const files: string[] = [];
    for (const [i, [, t]] of cases.slice(0, 3).entries()) {
      const f = join(dir, `budget_${i}.fit`);
      await writeFitsImage(f, { width: W, height: H, data: render(cat, W, H, t, 200 + i) });
      files.push(f);
    }
    const plane = 4 * W * H;
    expect(
      await framesInFlight(
        files.map((path) => ({ path })),
        9 * plane,
      ),
    ).toBe(1);
    expect(
      await framesInFlight(
        files.map((path) => ({ path })),
        2 * 9 * plane + 1,
      ),
    ).toBe(2);
    expect(
      await framesInFlight(
        files.map((path) => ({ path })),
        2 ** 32,
      ),
    ).toBe(3);
    expect(await framesInFlight([{ path: join(dir, "missing.fit") }], 9 * plane)).toBe(3); // its unit reports the error
    const run = async (budget: number, name: string) => {
      const c = ctx();
      c.runtime.memoryBudgetBytes = budget;
      const res = await registerRelative(
        {
          frames: files.map((path) => ({ path })),
          reference: "auto",
          outputDir: join(dir, name),
          filenamePattern: "reg_{index:05d}.fit",
          options: {},
          history: [],
        },
        c,
      );
      return { res, bytes: res.frames.map((f) => readFileSync(f.output!)) };
    };
    const one = await run(9 * plane, "budget-1"),
      three = await run(2 ** 32, "budget-3");
    expect(one.res.reference).toBe(three.res.reference);
    one.res.frames.forEach((f, i) => {
      expect(f.matrix).toEqual(three.res.frames[i]!.matrix);
      expect(one.bytes[i]!.equals(three.bytes[i]!)).toBe(true);
    });
  });

  it("reports blank, foreign-field, mirrored and saturated frames with the reason and registers the rest", async () => {
    const files = [
      join(dir, "good_ref.fit"),
      join(dir, "blank.fit"),
      join(dir, "other_field.fit"),
      join(dir, "mirrored.fit"),
      join(dir, "good.fit"),
      join(dir, "saturated.fit"),
    ];
    await writeFitsImage(files[0]!, { width: W, height: H, data: render(cat, W, H, [1, 0, 0, 0, 1, 0, 0, 0, 1], 1, { sigma: 1.2 }) }); // sharpest: the auto reference
    await writeFitsImage(files[1]!, { width: W, height: H, data: render([], W, H, [1, 0, 0, 0, 1, 0, 0, 0, 1], 2) });
    await writeFitsImage(files[2]!, { width: W, height: H, data: render(catalog(W, H, 260, 99), W, H, [1, 0, 0, 0, 1, 0, 0, 0, 1], 3) });
    await writeFitsImage(files[3]!, { width: W, height: H, data: render(cat, W, H, [-1, 0, W - 1, 0, 1, 0, 0, 0, 1], 4) });
    await writeFitsImage(files[4]!, { width: W, height: H, data: render(cat, W, H, knownTransform(W, H, 90, 1, 1, 2), 5) });
    await writeFitsImage(files[5]!, { width: W, height: H, data: new Float32Array(W * H).fill(65535) });
    const res = await registerRelative(
      {
        frames: files.map((path) => ({ path })),
        reference: "auto",
        outputDir: join(dir, "reg2"),
        filenamePattern: "r_{name}.fit",
        options: {},
        history: [],
      },
      ctx(),
    );
    expect(res.reference).toBe(files[0]);
    expect(res.frames[1]!.error).toMatch(/stars detected/);
    expect(res.frames[2]!.error).toMatch(/pattern in common|matched/);
    expect(res.frames[3]!.error).toMatch(/mirrored/);
    expect(res.frames[4]!.error).toBeUndefined();
    expect(res.frames[4]!.output).toBe(join(dir, "reg2", "r_good.fit"));
    expect(res.frames[5]!.error).toMatch(/only 0 stars detected/);
  });

  it("keeps the reference of an earlier run into the same folder", async () => {
    const files = [join(dir, "k0.fit"), join(dir, "k1.fit")];
    await writeFitsImage(files[0]!, { width: W, height: H, data: render(cat, W, H, [1, 0, 0, 0, 1, 0, 0, 0, 1], 11, { sigma: 2.4 }) });
    await writeFitsImage(files[1]!, { width: W, height: H, data: render(cat, W, H, knownTransform(W, H, 1, 1, 3, 3), 12, { sigma: 1.5 }) });
    const out = join(dir, "reg3");
    const first = await registerRelative(
      {
        frames: files.map((path) => ({ path })),
        reference: "auto",
        outputDir: out,
        filenamePattern: "reg_{index:05d}.fit",
        options: {},
        history: [],
      },
      ctx(),
    );
    expect(first.reference).toBe(files[1]); // sharper stars win
    writeFileSync(join(out, "transforms.json"), JSON.stringify({ reference: files[0] }));
    const second = await registerRelative(
      {
        frames: files.map((path) => ({ path })),
        reference: "auto",
        outputDir: out,
        filenamePattern: "reg_{index:05d}.fit",
        options: {},
        history: [],
      },
      ctx(),
    );
    expect(second.reference).toBe(files[0]);
    expect(JSON.parse(readFileSync(join(out, "transforms.json"), "utf8")).reference).toBe(files[0]);
  });

  it("matchStars alone: similarity from 40 stars under 180° rotation", () => {
    const stars = cat.slice(0, 120).map((s) => ({ x: s.x, y: s.y }));
    const t = knownTransform(W, H, 180, 1, 2, 3);
    const inv = [-1, 0, 0, 0, -1, 0, 0, 0, 1];
    void inv;
    const moved = stars.map((p) => {
      const [a, b, c, d, e, f] = t as [number, number, number, number, number, number];
      const det = a * e - b * d;
      const x = p.x - c,
        y = p.y - f;
      return { x: (e * x - b * y) / det, y: (-d * x + a * y) / det };
    });
    const m = matchStars(moved, stars);
    expect(m.ok).toBe(true);
    if (m.ok) expect(rmsError(m.matrix, t, cat)).toBeLessThan(1e-6);
  });

  it("bloated stars (FWHM 9 px, centroids good to 1 px): the FWHM-scaled tolerance keeps the true pairs", () => {
    // 50 stars, both lists with 1 px (per axis) centroid noise, as the narrowband demo frames have.
    const r = seededRandom(7),
      g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const truth = cat.slice(0, 50);
    const ref = truth.map((p) => ({ x: p.x + g(), y: p.y + g() }));
    const frame = truth.map((p) => ({ x: p.x + 7.3 + g(), y: p.y - 4.1 + g() }));
    const fixed = matchStars(frame, ref, { tolerancePx: 2 });
    const scaled = matchStars(frame, ref, { tolerancePx: matchTolerance(9.1, 9.2) });
    expect(matchTolerance(9.1, 9.2)).toBeCloseTo(4.6, 10);
    expect(matchTolerance(3, Number.NaN)).toBe(2);
    // With 2 px, a pair survives only if its 2-D error (σ√2 per pair, Rayleigh) is < 2 px and then
    // < 3·RMS: about half; with 4.6 px nearly all 50.
    expect(scaled.ok).toBe(true);
    if (scaled.ok) {
      expect(scaled.pairs).toBeGreaterThanOrEqual(45);
      expect(Math.hypot(scaled.matrix[2]! - -7.3, scaled.matrix[5]! - 4.1)).toBeLessThan(0.5);
      expect(scaled.pairs).toBeGreaterThan(fixed.ok ? fixed.pairs + 10 : 0);
    }
  });
});

describe.runIf(seestarDir())("relative registration of the shared Seestar M 94 frames", () => {
  it("registers all 16 frames; matched stars lie within 0.3 px of the reference (median)", { timeout: 120_000 }, async () => {
    const { readdirSync } = await import("node:fs");
    const d = join(seestarDir()!, "M94", "2025_03_27");
    const files = readdirSync(d)
      .filter((f) => f.endsWith(".fit"))
      .sort()
      .map((f) => join(d, f));
    const out = mkdtempSync(join(tmpdir(), "tc-m94-"));
    const res = await registerRelative(
      {
        frames: files.map((path) => ({ path })),
        reference: "auto",
        outputDir: out,
        filenamePattern: "reg_{index:05d}.fit",
        options: {},
        history: [],
      },
      ctx(),
    );
    expect(res.frames.filter((f) => f.error)).toEqual([]);
    // Median distance between each frame's matched stars and the reference's, after the transform.
    for (const f of res.frames) expect(f.medianPx!, f.input).toBeLessThanOrEqual(0.3);
    const first = await readFitsImage(res.frames[0]!.output!);
    expect(first.channels).toBe(3);
    expect(first.header.get("BAYERPAT")).toBeUndefined();
    void FitsHeader;
  });
});

describe("one-shot colour: the Bayer phase survives registration (TBQR derived case 14)", () => {
  it("a mosaic shifted by an odd number of pixels registers back with the stars' colours unchanged (R/G, B/G within 2 %)", async () => {
    const w = 320,
      h = 240,
      { seededRandom } = await import("@tile-compile/core");
    const r = seededRandom(14);
    // Stars of distinct colours on a grey sky; RGGB mosaic: (even row, even col) R, (odd, odd) B, else G.
    const stars = Array.from({ length: 70 }, () => ({
      x: 15 + r() * (w - 30),
      y: 15 + r() * (h - 30),
      f: 20000 + 60000 * r(),
      c: [0.4 + 1.2 * r(), 1, 0.4 + 1.2 * r()] as const,
    }));
    const mosaic = (dx: number, dy: number) => {
      const g = seededRandom(99 + dx);
      const d = new Float32Array(w * h);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const ch = y % 2 === 0 ? (x % 2 === 0 ? 0 : 1) : x % 2 === 1 ? 2 : 1;
          let v = 300 + 3 * (g() - 0.5);
          for (const s of stars) {
            const ex = x - (s.x + dx),
              ey = y - (s.y + dy);
            if (ex * ex + ey * ey < 100) v += ((s.f * s.c[ch]!) / (2 * Math.PI * 2.25)) * Math.exp(-(ex * ex + ey * ey) / 4.5);
          }
          d[y * w + x] = v;
        }
      return d;
    };
    const dir = mkdtempSync(join(tmpdir(), "tc-cfa-parity-"));
    const paths = [join(dir, "a.fit"), join(dir, "b.fit")];
    for (const [k, [dx, dy]] of [
      [0, 0],
      [3, 1],
    ].entries())
      await writeFitsImage(
        paths[k]!,
        { width: w, height: h, data: mosaic(dx!, dy!) },
        { header: new FitsHeader().set("BAYERPAT", "RGGB").set("EXPTIME", 10) },
      );
    const res = await registerRelative(
      {
        frames: paths.map((path) => ({ path })),
        reference: 0,
        outputDir: join(dir, "reg"),
        filenamePattern: "{name}.fit",
        options: { transform: "shift" },
        history: [],
      },
      ctx(),
    );
    expect(res.frames.map((f) => f.error)).toEqual([undefined, undefined]);
    const [a, b] = await Promise.all(res.frames.map((f) => readFitsImage(f.output!)));
    expect(a!.channels).toBe(3);
    const n = w * h;
    const phot = (img: typeof a, c: number, s: { x: number; y: number }) => {
      let sum = 0;
      for (let y = Math.floor(s.y) - 5; y <= Math.floor(s.y) + 5; y++)
        for (let x = Math.floor(s.x) - 5; x <= Math.floor(s.x) + 5; x++) sum += img!.data[c * n + y * w + x]! - 300;
      return sum;
    };
    const worst = { r: 0, b: 0 };
    const isolated = stars.filter(
      (s) => s.x > 25 && s.y > 25 && s.x < w - 25 && s.y < h - 25 && stars.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > 14),
    );
    for (const s of isolated) {
      const ratio = (img: typeof a, c: number) => phot(img, c, s) / phot(img, 1, s);
      worst.r = Math.max(worst.r, Math.abs(ratio(b, 0) / ratio(a, 0) - 1));
      worst.b = Math.max(worst.b, Math.abs(ratio(b, 2) / ratio(a, 2) - 1));
      // and both are the true colour (bilinear debayer of a 1.5 px star: a few % of colour bleed).
      expect(Math.abs(ratio(a, 0) / s.c[0] - 1), "R/G vs truth").toBeLessThan(0.08);
    }
    console.log(
      `CFA parity: ${isolated.length} stars, odd shift (3, 1): worst R/G change ${(100 * worst.r).toFixed(2)} %, B/G ${(100 * worst.b).toFixed(2)} %`,
    );
    expect(isolated.length).toBeGreaterThan(15);
    expect(worst.r).toBeLessThan(0.02);
    expect(worst.b).toBeLessThan(0.02);
  });
});
