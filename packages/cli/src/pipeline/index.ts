/**
 * The full job run (seed Stages 1–4) with whichever engines tile_compile.yaml selects per stage:
 *
 *   calibrate (calibration.method) → per (filter, exposure) group: register (registration.engine) →
 *   stack (stacking.method) → stack_{filter}_{exposure}s.fit → compose (composition.method, palette from
 *   the job type or composition.palette; HDR filters skip it unless hdr.blend) → stretch (stretch.method)
 *   → run.json.
 *
 * `planJobRun` makes the run's steps (kernel/driver.ts) before any pixel is read — what `run --dry-run`
 * prints — and `runJobPipeline` executes them. Checkpoints: every step records a stamp (hash of its inputs'
 * identities and its options) next to its outputs in `<output>/.tile-compile/checkpoints.json`; a re-run
 * (after a failure, Ctrl-C or kill -9) skips every step whose stamp matches and whose outputs exist, so it
 * resumes from the first unfinished step. Outputs are written atomically, so a killed step leaves nothing
 * that looks finished.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import {
  calibratedName,
  executeRun,
  jobError,
  openCheckpoints,
  readFitsHeader,
  tbqrOptionsFromConfig,
  TileCompileError,
  writeRunJson,
  type Checkpoints,
  type JobPlan,
  type RunStep,
} from "@tile-compile/core";
import { backgroundFramesStep, calibrateStep, registerStep, stackStep } from "./frames.js";
import { imageSteps } from "./compose.js";
import {
  groupLabel,
  identity,
  planned,
  PIPELINE_STEPS,
  stackPathOf,
  type GroupState,
  type PipelineOptions,
  type PipelineResult,
  type PipelineStages,
  type PipelineState,
  type StackRecord,
} from "./state.js";

export { PIPELINE_STEPS, type PipelineStep, type PipelineOptions, type PipelineResult } from "./state.js";

/** The stages a run up to `until` reaches, planned now: a method no loaded engine provides fails before any pixel work. */
function planStages(o: PipelineOptions, out: string, upto: number): PipelineStages {
  const cfg = o.config;
  const { engine: bgEngine, method: bgMethod, on: _on, ...bgOptions } = cfg.background;
  void _on;
  const {
    engine: stEngine,
    method: stMethod,
    input_dir: _i,
    input_pattern: _p,
    output_file: _f,
    rejection_maps: _m,
    ...stOptions
  } = cfg.stacking;
  void [_i, _p, _f, _m];
  const stackingMethod = stMethod === "average" ? "mean" : stMethod;
  let registration: ReturnType<PipelineStages["registration"]> | undefined;
  let hdr: ReturnType<PipelineStages["hdr"]> | undefined;
  const stages: PipelineStages = {
    registration: () =>
      (registration ??= planned(o, "registration", cfg.registration.engine, cfg.registration.provider, "registration.engine", {
        transform: cfg.registration.transform,
        ...(cfg.registration.interpolation ? { interpolation: cfg.registration.interpolation } : {}),
        ...(cfg.registration.debayer ? { debayer: cfg.registration.debayer } : {}),
      })),
    stacking: (label) =>
      planned(
        o,
        "stacking",
        stackingMethod,
        stEngine,
        "stacking.method",
        stMethod === "tbqr" ? { ...stOptions, tbqr: tbqrOptionsFromConfig(cfg, join(out, "tbqr", label)) } : stOptions,
      ),
    hdr: () => (hdr ??= planned(o, "composition", "hdr", undefined, "hdr.blend", {})),
  };
  if (bgMethod !== "none") stages.background = planned(o, "background", bgMethod, bgEngine, "background.method", bgOptions);
  if (!o.fromStacks) {
    stages.calibration = planned(o, "calibration", cfg.calibration.method, cfg.calibration.engine, "calibration.method", {});
    if (upto >= 1) stages.registration();
    const stacking = upto >= 2 ? planned(o, "stacking", stackingMethod, stEngine, "stacking.method", {}) : undefined;
    // The fused path needs a registration that can measure without writing and a stacker that warps as it
    // reads: the built-in ones (TBQR reads registered frames in several passes; Siril registers by writing).
    // Drizzle reads the calibrated frames with their transforms too.
    const what = cfg.stacking.drizzle ? "stacking.drizzle" : "registration.write_registered: false";
    if ((!cfg.registration.write_registered || cfg.stacking.drizzle) && upto >= 1) {
      const issues: string[] = [];
      const reg = stages.registration();
      if (reg.method !== "relative" || reg.engine.meta.name !== "@tile-compile/engine-native")
        issues.push(`${what} needs the built-in relative registration (registration.engine is "${cfg.registration.engine}")`);
      const methods = cfg.stacking.drizzle ? ["mean", "rejection"] : ["mean", "median", "rejection"];
      if (stacking && (!methods.includes(stacking.method) || stacking.engine.meta.name !== "@tile-compile/engine-native"))
        issues.push(
          `${what} needs the built-in ${methods.join(", ")} stacking (stacking.method is "${stMethod}"${stEngine ? `, engine ${String(stEngine)}` : ""}); TBQR and Siril read registered frames`,
        );
      if (issues.length) throw new TileCompileError("TC_CONFIG_INVALID", { file: "tile_compile.yaml", issues });
    }
  }
  if (upto >= 3) stages.composition = planned(o, "composition", cfg.composition.method, cfg.composition.engine, "composition.method", {});
  if (upto >= 4) stages.stretch = planned(o, "stretch", cfg.stretch.method, cfg.stretch.engine, "stretch.method", {});
  return stages;
}

/** `stack_<filter>_<exposure>s.fit` in the output folder (`--stage compose|stretch` starts from them). */
async function stacksOnDisk(out: string): Promise<StackRecord[]> {
  const stacks: StackRecord[] = [];
  for (const f of existsSync(out) ? readdirSync(out).sort() : []) {
    const m = /^stack_(.+)_([\d.]+)s\.fits?$/.exec(f);
    if (m)
      stacks.push({
        filter: m[1]!,
        exposureSeconds: Number(m[2]),
        path: join(out, f),
        frames: (await readFitsHeader(join(out, f))).header.getNumber("NCOMBINE") ?? 0,
        rejected: [],
      });
  }
  if (stacks.length === 0)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: out,
      reason: "no stack_<filter>_<exposure>s.fit files to compose",
      hint: "Run the job up to --stage stack first.",
    });
  return stacks;
}

/** A job run planned: its state and its steps, in order. Nothing is read but headers. */
export interface JobRun {
  state: PipelineState;
  steps: RunStep[];
  checkpoints: Checkpoints;
}

/**
 * Plan the job's run: every stage chosen and every step made, before any pixel is read (`run --dry-run`
 * prints it). With `hashInputs`, each light's content is hashed first (for run.json) and identical copies
 * are left out of the plan.
 */
export async function planJobRun(plan: JobPlan, o: PipelineOptions, opts: { hashInputs?: boolean } = {}): Promise<JobRun> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  const out = plan.output;
  const log = o.log ?? ((l: string) => o.logger.info(l));
  const upto = PIPELINE_STEPS.indexOf(o.until ?? "stretch");
  const checkpoints = openCheckpoints(out, log);
  const s: PipelineState = {
    plan,
    out,
    cfg: o.config,
    o,
    stages: planStages(o, out, upto),
    log,
    upto,
    result: { stacks: [], stretched: [], reused: checkpoints.reused, ran: checkpoints.ran },
    groups: [],
    groupState: new Map(),
    inputs: [],
    channels: {},
    toStretch: [],
  };
  const steps: RunStep[] = [];
  if (opts.hashInputs && !o.fromStacks) await hashInputs(s, checkpoints);
  if (o.fromStacks) {
    s.result.stacks = await stacksOnDisk(out);
    log(`composing from the ${s.result.stacks.length} stack(s) in ${out}`);
    if (upto >= 3) steps.push(...imageSteps(s, s.result.stacks));
    return { state: s, steps, checkpoints };
  }
  steps.push(calibrateStep(s));
  const planned: StackRecord[] = [];
  for (const g of plan.groups) {
    const dir = join(out, "calibrated", groupLabel(g));
    const frames = g.frames.map((f) => join(dir, f.frame.calibratedDir, calibratedName(f.frame.path)));
    const gs: GroupState = { label: groupLabel(g), filter: g.filter, exposureSeconds: g.exposureSeconds, frames };
    s.groupState.set(gs.label, gs);
    if (upto < 1) continue;
    if (s.stages.background && s.cfg.background.on === "frames") steps.push(backgroundFramesStep(s, gs));
    steps.push(registerStep(s, gs));
    if (upto < 2) continue;
    steps.push(stackStep(s, gs));
    planned.push({ filter: g.filter, exposureSeconds: g.exposureSeconds, path: stackPathOf(out, g), frames: frames.length, rejected: [] });
  }
  if (upto >= 3) steps.push(...imageSteps(s, planned));
  return { state: s, steps, checkpoints };
}

/**
 * Each light's sha-256 for run.json (cached by file identity, so re-runs do not re-read); identical copies
 * of one light (the same content under two names) are stacked once.
 */
async function hashInputs(s: PipelineState, checkpoints: Checkpoints): Promise<void> {
  const { plan } = s;
  s.inputs = [];
  const hashCache = (checkpoints.info("inputs") ?? {}) as Record<string, string>;
  for (const f of plan.lights) {
    const id = identity([f.path]);
    hashCache[id] ??= createHash("sha256")
      .update(await readFile(f.path))
      .digest("hex");
    s.inputs.push({ path: f.path, sha256: hashCache[id]! });
  }
  if (plan.lights.length) await checkpoints.setInfo("inputs", hashCache);
  const bySha = new Map<string, string>();
  const copies = new Set<string>();
  for (const { path, sha256 } of s.inputs) {
    const first = bySha.get(sha256);
    if (first === undefined) {
      bySha.set(sha256, path);
      continue;
    }
    copies.add(path);
    plan.duplicates.push({
      path,
      sameAs: first,
      reason: `identical content to ${relative(plan.base, first)} (sha-256 ${sha256.slice(0, 12)}…)`,
    });
    s.log(`warning: ${relative(plan.base, path)} is an identical copy of ${relative(plan.base, first)}: used once`);
  }
  if (copies.size) {
    plan.lights = plan.lights.filter((f) => !copies.has(f.path));
    for (const g of plan.groups) g.frames = g.frames.filter((f) => !copies.has(f.frame.path));
    plan.groups = plan.groups.filter((g) => g.frames.length > 0);
  }
}

/**
 * The job run. When it fails after planning, run.json and report.html still describe what was done
 * (finished steps, the frames and why any were left out, timings) and name the error under
 * `stages.pipeline.failed`; then the error is rethrown.
 */
export async function runJobPipeline(plan: JobPlan, o: PipelineOptions): Promise<PipelineResult> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  let run: JobRun | undefined;
  try {
    run = await planJobRun(plan, o, { hashInputs: true });
    // Each engine a planned stage uses runs its preflight check once (e.g. Siril: is siril-cli installed?).
    for (const e of new Set(run.steps.map((x) => x.stage.engine))) await e.preflight?.(o.engineOptions?.[e.meta.name] ?? {});
    await executeRun(run.steps, { stage: o, checkpoints: run.checkpoints });
    return await finish(run.state, run.checkpoints);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code !== "TC_JOB_INVALID" && err.code !== "TC_CONFIG_INVALID") {
      const failed = { code: err.code ?? "ERROR", message: err.message };
      // A failed calibration health check keeps its figures (the table in report.html says why).
      const health = (err as { health?: unknown }).health;
      const s = run?.state;
      try {
        await writeRunJson(
          plan,
          {
            ...(health ? { calibrate: { health } } : {}),
            pipeline: {
              ...(s?.result ?? {}),
              timings: run?.checkpoints.seconds ?? {},
              inputs: s?.inputs ?? [],
              groups: s?.groups ?? [],
              failed,
            },
          },
          "tile-compile",
          o.executor?.stats(),
        );
      } catch {
        /* the error that stopped the run is what the user must see */
      }
    }
    throw e;
  }
}

async function finish(s: PipelineState, checkpoints: Checkpoints): Promise<PipelineResult> {
  if (s.result.compositionSkipped) s.log(`composition skipped: ${s.result.compositionSkipped}`);
  await writeRunJson(
    s.plan,
    {
      ...(s.calibrateRecord ? { calibrate: s.calibrateRecord } : {}),
      pipeline: { ...s.result, timings: checkpoints.seconds, inputs: s.inputs, groups: s.groups },
    },
    "tile-compile",
    s.o.executor?.stats(),
  );
  return s.result;
}
