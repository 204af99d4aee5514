/**
 * Bad input, cancellation and backend selection. Bad input must give a typed error (or the documented
 * NaN propagation), never a crash of the Node process; a long native kernel must stop soon after its
 * AbortSignal fires; the loader must say which backend ran and fail loudly when native is forced.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { TileCompileError } from "@tile-compile/errors";
import { loadRecon, type ReconBackend } from "./index.js";
import { backends, noiseFrames } from "./test-support/synth.js";

const { js, native } = backends();
const all: [string, ReconBackend][] = native
  ? [
      ["js", js],
      ["native", native],
    ]
  : [["js", js]];

async function invalid(p: Promise<unknown> | (() => unknown), input: RegExp): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TileCompileError);
  expect((err as TileCompileError).code).toBe("TC_INPUT_INVALID");
  expect((err as TileCompileError).message).toMatch(input);
}

describe.each(all)("%s backend: one signal, many calls", (_n, b) => {
  it("40 kernel calls in flight on one AbortSignal raise no MaxListenersExceededWarning (each removes its listener)", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const ac = new AbortController();
      const d = new Float32Array(256 * 256).map((_, i) => (i * 7) % 13);
      const r = await Promise.all(Array.from({ length: 40 }, () => b.percentiles(d, [0.5], { signal: ac.signal })));
      expect(r.every((v) => v[0] === r[0]![0])).toBe(true);
      await new Promise((res) => setImmediate(res)); // warnings are emitted on the next tick
      expect(warnings).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });
});

describe.each(all)("%s backend: bad input", (_n, b) => {
  const plane = { data: new Float32Array(12), width: 4, height: 3 };
  it("mismatched lengths name the argument", async () => {
    await invalid(b.combine([new Float32Array(4), new Float32Array(5)]), /frames\[1\].*5 values/);
    await invalid(b.combine([new Float32Array(4)], { weights: [1, 2] }), /weights.*2 values for 1 frames/);
    await invalid(b.warp({ data: new Float32Array(11), width: 4, height: 3 }, [1, 0, 0, 0, 1, 0, 0, 0, 1]), /source.*11 values/);
    await invalid(
      b.overlapAdd({ width: 4, height: 3, sum: new Float64Array(12), weightSum: new Float64Array(12) }, [
        { x0: 0, y0: 0, width: 2, height: 2, data: new Float32Array(3) },
      ]),
      /tiles\[0\].*3 values/,
    );
    await invalid(() => b.decode(new Uint8Array(3), 16, 2, { bzero: 0, bscale: 1 }, new Float32Array(2)), /bytes.*3 bytes/);
  });
  it("zero or negative dimensions", async () => {
    await invalid(b.backgroundMap({ data: new Float32Array(0), width: 0, height: 3 }), /plane.*dimensions/);
    await invalid(b.warp(plane, [1, 0, 0, 0, 1, 0, 0, 0, 1], { width: -2 }), /width.*positive/);
    await invalid(b.backgroundMap(plane, { meshSize: 0 }), /meshSize/);
    await invalid(b.debayer({ data: new Float32Array(3), width: 3, height: 1 }, { pattern: "RGGB", method: "superpixel" }), /too small/);
  });
  it("a tile larger than the image", async () => {
    await invalid(b.tileMetrics(plane, [{ x0: 0, y0: 0, width: 5, height: 3 }]), /tiles\[0\].*not inside the 4×3 image/);
    await invalid(
      b.overlapAdd({ width: 4, height: 3, sum: new Float64Array(12), weightSum: new Float64Array(12) }, [
        { x0: 2, y0: 0, width: 4, height: 3, data: new Float32Array(12) },
      ]),
      /not inside/,
    );
  });
  it("unknown options and bad weights", async () => {
    await invalid(b.combine([new Float32Array(2)], { rejection: "kappa" as never }), /unknown rejection "kappa"/);
    await invalid(b.combine([new Float32Array(2)], { weights: [0] }), /weights\[0\].*> 0/);
    await invalid(b.warp(plane, [1, 0, 0, 0, 1, 0, 0, 0, NaN]), /matrix/);
    await invalid(b.debayer(plane, { pattern: "RGBG" as never }), /Bayer pattern "RGBG"/);
  });
  it("NaN-filled frames propagate NaN as documented (no throw, no zeros)", async () => {
    const nan = new Float32Array(12).fill(NaN);
    const nanPlane = { data: nan, width: 4, height: 3 };
    expect((await b.combine([nan, nan], { rejection: "sigma" })).data.every(Number.isNaN)).toBe(true);
    const st = await b.robustStats(nan);
    expect(st.count).toBe(0);
    expect(st.median).toBeNaN();
    const bg = await b.backgroundMap(nanPlane, { meshSize: 2 });
    expect(bg.background.every(Number.isNaN)).toBe(true);
    expect((await b.detectStars(nanPlane, { background: bg })).count).toBe(0);
    const tm = await b.tileMetrics(nanPlane, [{ x0: 0, y0: 0, width: 4, height: 3 }]);
    expect(tm.validFraction[0]).toBe(0);
    expect(tm.noise[0]).toBeNaN();
    expect((await b.warp(nanPlane, [1, 0, 0.5, 0, 1, 0, 0, 0, 1])).data.every(Number.isNaN)).toBe(true);
    const c = { width: 4, height: 3, sum: new Float64Array(12), weightSum: new Float64Array(12) };
    await b.overlapAdd(c, [{ x0: 0, y0: 0, width: 4, height: 3, data: nan }]);
    expect((await b.normalizeOverlap(c)).every(Number.isNaN)).toBe(true);
  });
});

describe.runIf(native)("native addon: hostile raw calls and cancellation", () => {
  it("raw calls with wrong types throw TypeError/RangeError (TC_INPUT_INVALID), the process survives", () => {
    const script = `
      const { createRequire } = require("node:module");
      const addon = require(${JSON.stringify(fileURLToPath(new URL(`../recon.${(process.report?.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime ? "linux-x64-gnu" : "linux-x64-musl"}.node`, import.meta.url)))});
      const out = [];
      const tries = [
        () => addon.decode("x", 16, 1, 0, 1, NaN, new Float32Array(1), 0),
        () => addon.decode(new Uint8Array(2), 16, 5, 0, 1, NaN, new Float32Array(1), 0),
        () => addon.warp(new Float32Array(4), 2, 2, new Float64Array(9), new Float32Array(4), 2, 2, 9, null),
        () => addon.combine([new Float32Array(2), {}], null, 0, 0, 3, 3, 1, new Float32Array(2), null, null, null),
        () => addon.tileMetrics(new Float32Array(4), 2, 2, new Int32Array([0, 0, 3, 3]), new Float64Array(9), null),
        () => addon.overlapAdd(new Float64Array(4), new Float64Array(4), 2, 2, [new Float32Array(4)], new Int32Array([1, 1, 2, 2]), new Float64Array([1]), null, null),
        () => addon.backgroundMap(new Float32Array(4), -1, 2, 1, 3, 1, new Float32Array(4), new Float32Array(4), null),
      ];
      for (const t of tries) { try { t(); out.push("no error"); } catch (e) { out.push(e.name + ":" + e.code); } }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const names = JSON.parse(r.stdout) as string[];
    expect(names).toHaveLength(7);
    for (const n of names) expect(n).toMatch(/^(TypeError|RangeError):TC_INPUT_INVALID$/);
  });

  it("a long combine stops soon after the signal aborts and rejects with the signal's reason", async () => {
    const nat = native!;
    const frames = noiseFrames(40, 400_000, 5);
    const t0 = performance.now();
    await nat.combine(frames, { rejection: "winsorized" });
    const full = performance.now() - t0;
    const ac = new AbortController();
    const t1 = performance.now();
    setTimeout(() => ac.abort(new DOMException("stop", "AbortError")), 5);
    const err = await nat.combine(frames, { rejection: "winsorized", signal: ac.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const took = performance.now() - t1;
    expect((err as Error)?.name).toBe("AbortError");
    // The kernel polls the flag per 4096-pixel chunk: it must end well before a full run would.
    expect(took).toBeLessThan(Math.max(full / 2, 20));
  });
});

describe("backend selection", () => {
  const pkg = fileURLToPath(new URL("..", import.meta.url));
  const run = (env: Record<string, string>) =>
    spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { loadRecon } from "./dist/index.js"; const b = loadRecon(); console.log(b.kind + " " + b.simd);`,
      ],
      { cwd: pkg, encoding: "utf8", env: { ...process.env, ...env } },
    );

  it("TILE_COMPILE_RECON=js forces the TypeScript backend, silently", () => {
    const r = run({ TILE_COMPILE_RECON: "js" });
    expect(r.stdout.trim()).toBe("js js");
    expect(r.stderr).toBe("");
  });
  it("a forced native backend that cannot load raises TC_NATIVE_UNAVAILABLE with the reason", () => {
    const r = run({ TILE_COMPILE_RECON: "native", TILE_COMPILE_RECON_ADDON: "/nonexistent/recon.node" });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/NativeBindingError|TC_NATIVE_UNAVAILABLE|native recon backend could not be loaded/);
    expect(r.stderr).toContain("/nonexistent/recon.node does not exist");
  });
  it("auto falls back to js and says so exactly once", () => {
    const r = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { loadRecon } from "./dist/index.js"; loadRecon(); loadRecon(); console.log(loadRecon().kind);`,
      ],
      {
        cwd: pkg,
        encoding: "utf8",
        env: { ...process.env, TILE_COMPILE_RECON: "auto", TILE_COMPILE_RECON_ADDON: "/nonexistent/recon.node" },
      },
    );
    expect(r.stdout.trim()).toBe("js");
    expect(r.stderr.match(/using the TypeScript backend/g)).toHaveLength(1);
  });
  it.runIf(native)("auto picks native when the addon is built", () => {
    expect(run({ TILE_COMPILE_RECON: "auto" }).stdout.trim()).toMatch(/^native (avx2|neon|scalar)$/);
    expect(loadRecon().kind).toBe(process.env.TILE_COMPILE_RECON === "js" ? "js" : "native");
    execFileSync(process.execPath, ["-e", "0"]);
  });
});
