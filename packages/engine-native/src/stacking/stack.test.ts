import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import { FitsHeader } from "@tile-compile/core";
import type { EngineContext } from "@tile-compile/core";
import { seededRandom } from "@tile-compile/core";
import { nativeStack } from "./stack.js";

const ctx = (): EngineContext => ({
  signal: new AbortController().signal,
  logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
  progress() {},
  workdir: tmpdir(),
  options: {},
  runtime: { threads: 2, memoryBudgetBytes: 1 << 20 },
});

async function frames(dir: string, sigmas: number[], opts: { skyOffset?: number[]; satellite?: number } = {}): Promise<string[]> {
  const W = 160,
    H = 120,
    r = seededRandom(3);
  const stars = Array.from({ length: 40 }, () => ({ x: 10 + r() * 140, y: 10 + r() * 100, f: 5000 + 40000 * r() }));
  const out: string[] = [];
  for (const [k, sg] of sigmas.entries()) {
    const g = seededRandom(10 + k);
    const data = new Float32Array(W * H).map(
      () => 500 + (opts.skyOffset?.[k] ?? 0) + 5 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g()),
    );
    for (const s of stars)
      for (let y = Math.max(0, Math.floor(s.y) - 12); y < Math.min(H, Math.floor(s.y) + 13); y++)
        for (let x = Math.max(0, Math.floor(s.x) - 12); x < Math.min(W, Math.floor(s.x) + 13); x++)
          data[y * W + x] =
            data[y * W + x]! + (s.f / (2 * Math.PI * sg * sg)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
    if (opts.satellite === k) for (let x = 0; x < W; x++) data[60 * W + x] = data[60 * W + x]! + 30000;
    const p = join(dir, `f${k}.fit`);
    await writeFitsImage(p, { width: W, height: H, data }, { header: new FitsHeader().set("EXPTIME", 60) });
    out.push(p);
  }
  return out;
}

describe("native stacking", () => {
  it("frame filters drop the blurred frame and report its figure and threshold", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-stack-"));
    const f = await frames(dir, [1.5, 1.6, 1.5, 1.55, 3.5, 1.5, 1.6]);
    const r = await nativeStack(
      {
        frames: f.map((path) => ({ path })),
        output: join(dir, "out.fit"),
        method: "rejection",
        options: { rejection: "winsorized", sigma: [3, 3], frame_filters: { fwhm: { kappa: 3 } } },
        history: [],
      },
      ctx(),
    );
    expect(r.frameCount).toBe(6);
    expect(r.rejectedFrames).toHaveLength(1);
    expect(r.rejectedFrames![0]!.path).toBe(f[4]);
    expect(r.rejectedFrames![0]!.reason).toMatch(/^FWHM \d+\.\d+ px > \d+\.\d+ px \(median \+ 3σ\)$/);
    const keep = await nativeStack(
      {
        frames: f.map((path) => ({ path })),
        output: join(dir, "out2.fit"),
        method: "mean",
        options: { normalization: "none", frame_filters: { fwhm: { keep: 50 } } },
        history: [],
      },
      ctx(),
    );
    expect(keep.frameCount).toBe(4);
  });

  it("rejection removes a satellite trail; additive normalisation removes sky offsets; the header records the method", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-stack-"));
    const f = await frames(dir, [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], { skyOffset: [0, 40, -30, 10, 0, 25, -5, 15], satellite: 3 });
    await nativeStack(
      {
        frames: f.map((path) => ({ path })),
        output: join(dir, "rej.fit"),
        method: "rejection",
        options: { rejection: "winsorized", sigma: [3, 3], normalization: "additive" },
        history: ["test"],
      },
      ctx(),
    );
    const img = await readFitsImage(join(dir, "rej.fit"));
    const row = Array.from(img.data.subarray(60 * 160, 61 * 160)).sort((a, b) => a - b);
    expect(row[80]! - 500).toBeLessThan(5); // the trail (+30000 in one frame ⇒ +3750 in a plain mean) is gone
    expect(img.header.get("REJECT")).toBe("winsorized 3 3");
    expect(img.header.get("NORMALIZ")).toBe("additive");
    expect(img.header.get("NCOMBINE")).toBe(8);
    await nativeStack(
      {
        frames: f.map((path) => ({ path })),
        output: join(dir, "mean.fit"),
        method: "mean",
        options: { normalization: "none" },
        history: [],
      },
      ctx(),
    );
    const mean = await readFitsImage(join(dir, "mean.fit"));
    expect(Array.from(mean.data.subarray(60 * 160, 61 * 160)).sort((a, b) => a - b)[80]! - 500).toBeGreaterThan(3000);
  });

  it("rejection maps count, per pixel, the frames rejected below and above: the satellite row in the high map, a dead patch in the low map; valid FITS", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-stack-maps-"));
    const f = await frames(dir, [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], { satellite: 3 });
    // A dead 10×10 patch (0 ADU) in frame 5.
    const img5 = await readFitsImage(f[5]!);
    for (let y = 20; y < 30; y++) for (let x = 20; x < 30; x++) img5.data[y * 160 + x] = 0;
    await writeFitsImage(f[5]!, { width: 160, height: 120, data: img5.data }, { header: img5.header.withoutStructure() });
    const maps = { low: join(dir, "rejlow.fit"), high: join(dir, "rejhigh.fit") };
    await nativeStack(
      {
        frames: f.map((path) => ({ path })),
        output: join(dir, "rej.fit"),
        method: "rejection",
        options: { rejection: "winsorized", sigma: [3, 3], normalization: "none" },
        history: ["test"],
        rejectionMaps: maps,
      },
      ctx(),
    );
    const [low, high] = [await readFitsImage(maps.low), await readFitsImage(maps.high)];
    expect([high.width, high.height, high.channels]).toEqual([160, 120, 1]);
    const at = (m: typeof low, x: number, y: number) => m.data[y * 160 + x]!;
    let trail = 0,
      patch = 0;
    for (let x = 0; x < 160; x++) trail += at(high, x, 60) >= 1 ? 1 : 0;
    for (let y = 20; y < 30; y++) for (let x = 20; x < 30; x++) patch += at(low, x, y) >= 1 ? 1 : 0;
    expect(trail).toBe(160); // every pixel of the trail row rejected high in (at least) one frame
    expect(patch).toBe(100); // every dead pixel rejected low
    // Away from them only noise is rejected: with σ estimated from 8 values, |x − median| > 3σ̂ happens to
    // ~1 % of pure-noise values (Student-like tails), so ~7 % of pixels have one; asserted < 10 %.
    let elsewhere = 0;
    for (let y = 0; y < 120; y++)
      for (let x = 0; x < 160; x++)
        if (y !== 60 && !(y >= 20 && y < 30 && x >= 20 && x < 30) && (at(low, x, y) > 0 || at(high, x, y) > 0)) elsewhere++;
    expect(elsewhere / (160 * 120)).toBeLessThan(0.1);
    expect(high.header.get("REJECT")).toBe("winsorized 3 3");
    expect(high.header.get("NCOMBINE")).toBe(8);
    const { spawnSync } = await import("node:child_process");
    if (spawnSync("fitsverify", ["-h"], { stdio: "ignore" }).status !== null) {
      for (const m of [maps.low, maps.high]) expect(spawnSync("fitsverify", ["-q", "-e", m], { encoding: "utf8" }).stdout).toMatch(/OK/);
    }
    // Not without a rejection method.
    await expect(
      nativeStack(
        {
          frames: f.map((path) => ({ path })),
          output: join(dir, "m.fit"),
          method: "mean",
          options: {},
          history: [],
          rejectionMaps: { low: join(dir, "a.fit"), high: join(dir, "b.fit") },
        },
        ctx(),
      ),
    ).rejects.toThrow(/rejection_maps: needs stacking.method: rejection/);
  });
});
