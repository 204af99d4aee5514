import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { TileCompileError } from "../errors/index.js";
import { openCheckpoints } from "./checkpoints.js";
import type { StackingProvider } from "./contracts.js";
import { defineEngine } from "./define.js";
import { defineStep, describeRun, executeRun, formatRunPlan } from "./driver.js";
import { RunEvents } from "./events.js";
import { EngineRegistry } from "./registry.js";
import { optionsHash, planStage, type StageRunOptions } from "./runner.js";

const dir = mkdtempSync(join(tmpdir(), "tc-driver-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sigmaOptions = z.object({ sigma: z.number().positive(), label: z.string().optional() });
let stacked = 0;
/** A provider whose options are typed by its schema: `input.options.sigma` is a number, no cast. */
const typed: StackingProvider<z.infer<typeof sigmaOptions>> = {
  optionsSchema: sigmaOptions,
  async stack(input) {
    stacked++;
    writeFileSync(input.output, `sigma ${input.options.sigma.toFixed(1)} of ${input.frames.length} frames`);
    return { frameCount: input.frames.length, width: 1, height: 1, channels: 1 };
  },
};
const engine = defineEngine({
  meta: { name: "typed", version: "1.0.0", apiVersion: 1 },
  capabilities: { "stacking:typed": "stable" },
  stacking: { typed },
});
const registry = new EngineRegistry();
registry.register(engine);
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const stageOptions = (): StageRunOptions => ({
  signal: new AbortController().signal,
  logger: silent,
  events: new RunEvents(),
  runtime: { threads: 1, memoryBudgetBytes: 1 << 28 },
  workRoot: join(dir, "work"),
});

describe("stage options typed by the provider's schema", () => {
  it("are parsed when the stage is planned (unknown keys dropped) and hashed as configured", () => {
    const raw = { sigma: 2.5, rejection_maps: false };
    const plan = planStage(registry, { stage: "stacking", method: "typed", field: "stacking.method", options: raw });
    expect(plan.options).toEqual({ sigma: 2.5 });
    // FITS HISTORY names the options as configured, so the hash is of those.
    expect(plan.optionsHash).toBe(optionsHash(raw));
  });

  it("that the schema refuses are a configuration error naming the field, the capability and the key", () => {
    const err = (() => {
      try {
        planStage(registry, { stage: "stacking", method: "typed", field: "stacking.method", options: { sigma: -1 } });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(TileCompileError);
    expect((err as TileCompileError).code).toBe("TC_CONFIG_INVALID");
    expect((err as TileCompileError).message).toMatch(/stacking\.sigma: .* \(stacking:typed of typed\)/);
  });
});

describe("the plan-and-run driver", () => {
  it("plans steps with reuse status, runs them in order, and a re-run reuses every finished step", async () => {
    const out = join(dir, "run");
    const input = join(dir, "in.txt");
    writeFileSync(input, "frame");
    const plan = planStage(registry, { stage: "stacking", method: "typed", field: "stacking.method", options: { sigma: 3 } });
    const first = join(out, "first.txt");
    const second = join(out, "second.txt");
    const seen: string[] = [];
    const steps = () => [
      defineStep({
        key: "first",
        stage: plan,
        inputs: [input],
        outputs: [first],
        stamp: () => `${readFileSync(input, "utf8")}|${plan.optionsHash}`,
        run: async (provider, ctx, [tmp]) => ({
          value: (
            await provider.stack({ frames: [{ path: input }], output: tmp!, method: "typed", options: plan.options, history: [] }, ctx)
          ).frameCount,
        }),
        reuse: () => 1,
        done: (n) => seen.push(`first ${n}`),
      }),
      defineStep({
        key: "second",
        stage: plan,
        inputs: [first],
        outputs: [second],
        // Made from what the first step wrote: pending until it exists.
        stamp: () => readFileSync(first, "utf8"),
        run: async (provider, ctx, [tmp]) => ({
          value: (
            await provider.stack({ frames: [{ path: first }], output: tmp!, method: "typed", options: plan.options, history: [] }, ctx)
          ).frameCount,
        }),
        reuse: () => 1,
        done: (n) => seen.push(`second ${n}`),
      }),
    ];
    const before = describeRun(steps(), openCheckpoints(out));
    expect(before.map((d) => [d.key, d.capability, d.engine, d.inputs, d.status])).toEqual([
      ["first", "stacking:typed", "typed@1.0.0", 1, "run"],
      ["second", "stacking:typed", "typed@1.0.0", 1, "pending"],
    ]);
    expect(formatRunPlan(before)).toMatch(
      /^1\. first — stacking:typed \(typed@1\.0\.0\): 1 input → .*first\.txt \[options [0-9a-f]{12}\] \(runs\)\n2\. second/,
    );

    const run1 = openCheckpoints(out);
    await executeRun(steps(), { stage: stageOptions(), checkpoints: run1 });
    expect(run1.ran).toEqual(["first", "second"]);
    expect(readFileSync(second, "utf8")).toBe("sigma 3.0 of 1 frames");
    expect(existsSync(join(out, ".first.txt." + process.pid + ".partial"))).toBe(false);

    expect(describeRun(steps(), openCheckpoints(out)).map((d) => d.status)).toEqual(["reuse", "reuse"]);
    const calls = stacked;
    const run2 = openCheckpoints(out);
    await executeRun(steps(), { stage: stageOptions(), checkpoints: run2 });
    expect(stacked).toBe(calls);
    expect(run2.reused).toEqual(["first", "second"]);
    // The run, the dry run after it (it hands a reused step's value on, as a run does) and the re-run.
    expect(seen).toEqual(["first 1", "second 1", "first 1", "second 1", "first 1", "second 1"]);

    // A changed input runs the first step again; the second follows what the first writes.
    writeFileSync(input, "another frame");
    expect(describeRun(steps(), openCheckpoints(out)).map((d) => d.status)).toEqual(["run", "reuse"]);
  });
});
