import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { nativeEngine } from "./engine.js";
import {
  CapabilityError,
  EngineContractError,
  EngineLoadError,
  EngineNotFoundError,
  EngineVersionError,
  exitCodeOf,
  TileCompileError,
} from "@tile-compile/core";
import { readFitsImage } from "@tile-compile/core";
import { runEngineConformance } from "@tile-compile/core/testing";
import { writeTinyFrames } from "@tile-compile/core/testing";
import type { EngineDefinition, StackingProvider } from "@tile-compile/core";
import { defineEngine } from "@tile-compile/core";
import { RunEvents, type RunEvent } from "@tile-compile/core";
import { listInstalledEngines, loadEngine } from "@tile-compile/core";
import { EngineRegistry } from "@tile-compile/core";
import { planStage, runStage } from "@tile-compile/core";

const dir = mkdtempSync(join(tmpdir(), "tc-kernel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meta = (name: string) => ({ name, version: "1.0.0", apiVersion: 1 });
const stackStub: StackingProvider = { stack: async () => ({ frameCount: 0, width: 0, height: 0, channels: 1 }) };

runEngineConformance(() => nativeEngine, "native (built-in)");

describe("defineEngine", () => {
  it("rejects a capability without a provider and a provider without a capability, listing both", () => {
    const bad = {
      meta: meta("x"),
      capabilities: { "stacking:mean": "stable" },
      stacking: { median: stackStub },
    } as unknown as EngineDefinition;
    const err = (() => {
      try {
        defineEngine(bad);
      } catch (e) {
        return e;
      }
    })() as EngineContractError;
    expect(err).toBeInstanceOf(EngineContractError);
    expect(err.details.problems).toEqual([
      'capability "stacking:mean" is declared but stacking.mean.stack() is missing',
      'stacking.median is provided but capability "stacking:median" is not declared',
    ]);
  });

  it("rejects an unsupported apiVersion with EngineVersionError", () => {
    expect(() => defineEngine({ meta: { ...meta("x"), apiVersion: 9 }, capabilities: {} })).toThrow(EngineVersionError);
  });
});

describe("engine registry", () => {
  const a = defineEngine({
    meta: meta("engine-a"),
    capabilities: { "stacking:mean": "stable", "stacking:median": "experimental" },
    stacking: { mean: stackStub, median: stackStub },
  });
  const b = defineEngine({ meta: meta("engine-b"), capabilities: { "stacking:mean": "stable" }, stacking: { mean: stackStub } });

  it("selects the only provider, warns for experimental ones, and names providers when the chosen engine lacks the capability", () => {
    const r = new EngineRegistry();
    r.register(a);
    r.register(b);
    expect(planStage(r, { stage: "stacking", method: "median", field: "stacking.method" }).warnings).toEqual([
      "stacking:median of engine-a is experimental",
    ]);
    expect(planStage(r, { stage: "stacking", method: "mean", engine: "engine-b", field: "stacking.method" }).engine).toBe(b);
    const err = (() => {
      try {
        r.select("stacking", "median", "engine-b", "stacking.method");
      } catch (e) {
        return e;
      }
    })() as CapabilityError;
    expect(err.code).toBe("TC_CAPABILITY_MISSING");
    expect(err.hint).toContain("engine-a");
    expect(exitCodeOf(err)).toBe(78);
    // `calibration: { engine: siril }` with the method left at its default: the hint names the method key.
    expect(err.hint).toMatch(
      /The engine "engine-b" provides stacking\.method: mean; set stacking\.method to one of these\. Engines that provide "stacking:median": engine-a\./,
    );
  });

  it("two engines claiming one method without a choice is an error, not last-wins", () => {
    const r = new EngineRegistry();
    r.register(a);
    r.register(b);
    expect(() => r.select("stacking", "mean", undefined, "stacking.method")).toThrow(/provided by engine-a and engine-b/);
  });

  it("the built-in engine is the default when it is among the providers (loading Siril for one stage keeps the rest native)", () => {
    const r = new EngineRegistry();
    r.register(a);
    r.register(nativeEngine);
    expect(r.select("stacking", "mean", undefined, "stacking.method").engine).toBe(nativeEngine);
    expect(r.select("stacking", "mean", "engine-a", "stacking.method").engine).toBe(a);
  });

  it("nothing provides it → TC_CAPABILITY_MISSING with no providers", () => {
    const r = new EngineRegistry();
    r.register(a);
    expect(() => r.select("registration", "wcs_anchor", undefined, "registration.engine")).toThrow(/no loaded engine provides it/);
  });

  it("is frozen once planned: a late register() throws with a fix", () => {
    const r = new EngineRegistry();
    r.register(a);
    r.freeze();
    expect(() => r.register(b)).toThrow(TileCompileError);
    expect(() => r.register(b)).toThrow(/after the run plan was made/);
  });
});

describe("engine loading fails in four distinct ways", () => {
  const project = join(dir, "project");
  const pkg = (name: string, code: string, manifest?: object) => {
    const d = join(project, "node_modules", ...name.split("/"));
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, "package.json"),
      JSON.stringify({
        name,
        version: "1.2.3",
        type: "module",
        exports: { ".": { import: "./index.js" } },
        keywords: ["tile-compile-engine"],
        ...(manifest ? { tileCompile: manifest } : {}),
      }),
    );
    writeFileSync(join(d, "index.js"), code);
  };
  const good = `export default { meta: { name: "tile-compile-engine-good", version: "1.2.3", apiVersion: 1 }, capabilities: { "stacking:sum": "experimental" }, stacking: { sum: { stack: async () => ({}) } } };`;
  pkg("tile-compile-engine-good", good, { apiVersion: 1, provides: ["stacking:sum"] });
  pkg("tile-compile-engine-throws", `throw new Error("boom at import");`);
  pkg("tile-compile-engine-shape", `export default { meta: { name: "x" } };`);
  pkg(
    "tile-compile-engine-future",
    `export default { default: { meta: { name: "f", version: "1.0.0", apiVersion: 2 }, capabilities: {} } };`,
  );
  pkg("@someone/tile-compile-engine-lies", good.replace("tile-compile-engine-good", "@someone/tile-compile-engine-lies"), {
    apiVersion: 1,
    provides: ["stacking:mean"],
  });
  mkdirSync(join(project, "cfg"), { recursive: true });
  writeFileSync(join(project, "cfg", "local-engine.mjs"), good);
  writeFileSync(join(project, "package.json"), JSON.stringify({ dependencies: { "tile-compile-engine-good": "1.2.3", "left-pad": "1" } }));
  const opts = { configDir: join(project, "cfg"), cwd: project, configFile: join(project, "cfg", "tile_compile.yaml") };

  it("loads a package by full name (resolved from the config folder up) and a relative path", async () => {
    expect((await loadEngine("tile-compile-engine-good", opts)).engine.meta.name).toBe("tile-compile-engine-good");
    expect((await loadEngine("./local-engine.mjs", opts)).engine.capabilities).toEqual({ "stacking:sum": "experimental" });
  });

  it("EngineNotFoundError names the config file and the install command", async () => {
    const err = (await loadEngine("tile-compile-engine-absent", opts).catch((e: unknown) => e)) as EngineNotFoundError;
    expect(err).toBeInstanceOf(EngineNotFoundError);
    expect(err.message).toContain(opts.configFile);
    expect(err.hint).toBe(
      "Install it next to your configuration: pnpm add tile-compile-engine-absent   (or npm install tile-compile-engine-absent)",
    );
    const short = (await loadEngine("siril", { ...opts, cwd: opts.configDir }).catch((e: unknown) => e)) as EngineNotFoundError;
    expect(short.details.packageName).toBe("@tile-compile/engine-siril");
  });

  it("EngineLoadError keeps the import error as cause", async () => {
    const err = (await loadEngine("tile-compile-engine-throws", opts).catch((e: unknown) => e)) as EngineLoadError;
    expect(err).toBeInstanceOf(EngineLoadError);
    expect((err.cause as Error).message).toBe("boom at import");
  });

  it("EngineContractError for a wrong shape and for a manifest that disagrees with the engine", async () => {
    await expect(loadEngine("tile-compile-engine-shape", opts)).rejects.toBeInstanceOf(EngineContractError);
    await expect(loadEngine("@someone/tile-compile-engine-lies", opts)).rejects.toThrow(/tileCompile.provides \[stacking:mean\] differs/);
  });

  it("EngineVersionError after unwrapping default twice", async () => {
    await expect(loadEngine("tile-compile-engine-future", opts)).rejects.toBeInstanceOf(EngineVersionError);
  });

  it("lists installed engines from package.json and the configuration without importing them", () => {
    const list = listInstalledEngines({ ...opts, configured: ["tile-compile-engine-throws"] });
    expect(list.map((l) => [l.name, l.configured, l.resolved?.manifest?.provides ?? null])).toEqual([
      ["tile-compile-engine-throws", true, null],
      ["tile-compile-engine-good", false, ["stacking:sum"]],
    ]);
  });
});

describe("running a stage", () => {
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const registry = () => {
    const r = new EngineRegistry();
    r.register(nativeEngine);
    return r;
  };

  it("writes the output atomically with provenance, emits progress, and cleans its workdir", async () => {
    const frames = await writeTinyFrames(join(dir, "frames"), 4);
    const out = join(dir, "out", "stack.fit");
    const plan = planStage(registry(), { stage: "stacking", method: "mean", field: "stacking.method", options: { sigma: [3, 3] } });
    const events = new RunEvents();
    const seen: RunEvent["type"][] = [];
    events.on((e) => seen.push(e.type));
    const workRoot = join(dir, "work");
    const r = await runStage(
      plan,
      [out],
      (p, ctx, [tmp]) =>
        p.stack({ frames: frames.map((path) => ({ path })), output: tmp!, method: "mean", options: {}, history: ["prov line"] }, ctx),
      {
        signal: new AbortController().signal,
        logger: silent,
        events,
        runtime: { threads: 1, memoryBudgetBytes: 16 * 16 * 4 },
        workRoot,
      },
    );
    expect(r.frameCount).toBe(4);
    const img = await readFitsImage(out);
    expect(img.header.get("NCOMBINE")).toBe(4);
    expect(img.header.get("LIVETIME")).toBe(40);
    expect(img.header.get("DATE-END")).toBe("2024-01-15T20:03:00");
    expect(img.header.commentary("HISTORY")).toEqual(["prov line"]);
    expect(seen[0]).toBe("stage:start");
    expect(seen.filter((t) => t === "stage:progress").length).toBeGreaterThan(2);
    expect(seen.at(-1)).toBe("stage:done");
    expect(readdirSync(workRoot)).toEqual([]);
    expect(readdirSync(join(dir, "out"))).toEqual(["stack.fit"]);
  });

  it("mean of the frames equals their pixel mean, band by band with a tiny memory budget", async () => {
    const frames = await writeTinyFrames(join(dir, "frames2"), 3, 16, 12, 7);
    const imgs = await Promise.all(frames.map((f) => readFitsImage(f)));
    const out = join(dir, "out2", "m.fit");
    const plan = planStage(registry(), { stage: "stacking", method: "mean", field: "stacking.method" });
    await runStage(
      plan,
      [out],
      (p, ctx, [tmp]) => p.stack({ frames: frames.map((path) => ({ path })), output: tmp!, method: "mean", options: {}, history: [] }, ctx),
      {
        signal: new AbortController().signal,
        logger: silent,
        events: new RunEvents(),
        runtime: { threads: 1, memoryBudgetBytes: 1 },
        workRoot: join(dir, "work"),
      },
    );
    const m = await readFitsImage(out);
    for (let i = 0; i < m.data.length; i++)
      expect(m.data[i]).toBe(Math.fround((imgs[0]!.data[i]! + imgs[1]!.data[i]! + imgs[2]!.data[i]!) / 3));
  });

  it("a cancel mid-stage rejects with AbortError (exit 130) and leaves no output", async () => {
    const frames = await writeTinyFrames(join(dir, "frames3"), 3);
    const out = join(dir, "out3", "c.fit");
    const controller = new AbortController();
    const plan = planStage(registry(), { stage: "stacking", method: "mean", field: "stacking.method" });
    const events = new RunEvents();
    events.on((e) => {
      if (e.type === "stage:progress" && e.fraction > 0.3) controller.abort();
    });
    const err = await runStage(
      plan,
      [out],
      (p, ctx, [tmp]) => p.stack({ frames: frames.map((path) => ({ path })), output: tmp!, method: "mean", options: {}, history: [] }, ctx),
      {
        signal: controller.signal,
        logger: silent,
        events,
        runtime: { threads: 1, memoryBudgetBytes: 16 * 16 },
        workRoot: join(dir, "work"),
      },
    ).catch((e: unknown) => e);
    expect((err as Error).name).toBe("AbortError");
    expect(exitCodeOf(err)).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(join(dir, "out3"))).toEqual([]);
  });

  it("frames of different sizes fail with TC_INPUT_INVALID naming the odd file", async () => {
    const a = await writeTinyFrames(join(dir, "frames4"), 2, 16, 12);
    const b = await writeTinyFrames(join(dir, "frames5"), 1, 20, 12);
    const plan = planStage(registry(), { stage: "stacking", method: "mean", field: "stacking.method" });
    const err = (await runStage(
      plan,
      [join(dir, "out4", "x.fit")],
      (p, ctx, [tmp]) =>
        p.stack({ frames: [...a, ...b].map((path) => ({ path })), output: tmp!, method: "mean", options: {}, history: [] }, ctx),
      {
        signal: new AbortController().signal,
        logger: silent,
        events: new RunEvents(),
        runtime: { threads: 1, memoryBudgetBytes: 1 << 20 },
        workRoot: join(dir, "work"),
      },
    ).catch((e: unknown) => e)) as TileCompileError;
    expect(err.code).toBe("TC_INPUT_INVALID");
    expect(err.message).toContain(b[0]);
    expect(readdirSync(join(dir, "out4"))).toEqual([]);
  });
});
