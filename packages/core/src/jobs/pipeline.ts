/**
 * The full job run (seed Stages 1–4) with whichever engines tile_compile.yaml selects per stage:
 *
 *   calibrate (calibration.method) → per (filter, exposure) group: register (registration.engine) →
 *   stack (stacking.method) → stack_{filter}_{exposure}s.fit → compose (composition.method, palette from
 *   the job type or composition.palette; HDR filters skip it unless hdr.blend) → stretch (stretch.method)
 *   → run.json.
 *
 * Checkpoints: every step records a stamp (hash of its inputs' identities and its options) next to its
 * outputs in `<output>/.tile-compile/checkpoints.json`; a re-run (after a failure, Ctrl-C or kill -9)
 * skips every step whose stamp matches and whose outputs exist, so it resumes from the first unfinished
 * step. Outputs are written atomically, so a killed step leaves nothing that looks finished.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { BUILTIN_PALETTES, paletteInputs, type Palette } from "../composition/palettes.js";
import { tbqrOptionsFromConfig } from "../config/tbqr.js";
import { DEFAULT_REJECTION, type TileCompileConfig } from "../config/schema.js";
import { TileCompileError } from "../errors/index.js";
import { readFitsHeader } from "@tile-compile/fits";
import type { EngineRegistry } from "../kernel/registry.js";
import { planStage, provenanceLine, runStage, type StageRunOptions } from "../kernel/runner.js";
import { openCheckpoints, type StepResult } from "../kernel/checkpoints.js";
import type { RegistrationResult, StageName, StackingResult } from "../kernel/contracts.js";
import { groupRecord, type GroupRecord } from "../report/records.js";
import { expLabel } from "./library.js";
import { calibratedName, hashOf, type JobPlan } from "./plan.js";
import { jobError, runCalibrateStage, writeRunJson } from "./run.js";

export const PIPELINE_STEPS = ["calibrate", "register", "stack", "compose", "stretch"] as const;
export type PipelineStep = (typeof PIPELINE_STEPS)[number];

export interface PipelineOptions extends StageRunOptions {
  registry: EngineRegistry;
  config: TileCompileConfig;
  /** Run up to and including this step (default: all). */
  until?: PipelineStep;
  /** Start at compose (or stretch) from the stacks already in the output folder: no lights needed. */
  fromStacks?: boolean;
  log?: (line: string) => void;
}

export interface PipelineResult {
  stacks: { filter: string; exposureSeconds: number; path: string; frames: number; rejected: { path: string; reason: string }[] }[];
  composed?: string;
  compositionSkipped?: string;
  stretched: string[];
  reused: string[];
  ran: string[];
}

const identity = (paths: string[]) =>
  paths
    .map((p) => {
      const st = statSync(p);
      return `${p}\0${st.size}\0${Math.round(st.mtimeMs)}`;
    })
    .join("\n");

/** What a run had done when it failed: kept so run.json and report.html can say so. */
interface RunRecord {
  result?: PipelineResult;
  timings?: Record<string, number>;
  groups?: GroupRecord[];
  inputs?: { path: string; sha256: string }[];
}

/**
 * The job run. When it fails after planning, run.json and report.html still describe what was done
 * (finished steps, the frames and why any were left out, timings) and name the error under
 * `stages.pipeline.failed`; then the error is rethrown.
 */
export async function runJobPipeline(plan: JobPlan, o: PipelineOptions): Promise<PipelineResult> {
  const rec: RunRecord = {};
  try {
    return await runSteps(plan, o, rec);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (plan.output && plan.job && plan.problems.length === 0 && err.code !== "TC_JOB_INVALID" && err.code !== "TC_CONFIG_INVALID") {
      const failed = { code: err.code ?? "ERROR", message: err.message };
      // A failed calibration health check keeps its figures (the table in report.html says why).
      const health = (err as { health?: unknown }).health;
      try {
        await writeRunJson(
          plan,
          {
            ...(health ? { calibrate: { health } } : {}),
            pipeline: { ...(rec.result ?? {}), timings: rec.timings ?? {}, inputs: rec.inputs ?? [], groups: rec.groups ?? [], failed },
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

async function runSteps(plan: JobPlan, o: PipelineOptions, rec: RunRecord): Promise<PipelineResult> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  const out = plan.output;
  const job = plan.job;
  const cfg = o.config;
  const log = o.log ?? ((l: string) => o.logger.info(l));
  const checkpoints = openCheckpoints(out, log);
  const result: PipelineResult = { stacks: [], stretched: [], reused: checkpoints.reused, ran: checkpoints.ran };
  const timings = checkpoints.seconds;
  const groups: GroupRecord[] = [];
  Object.assign(rec, { result, timings, groups });
  const upto = PIPELINE_STEPS.indexOf(o.until ?? "stretch");
  /** The calibrate stage's masters and health figures, for run.json (also when reused from a checkpoint). */
  let calibrateRecord: unknown;
  /** Run `fn` unless a checkpoint with the same stamp and all its outputs exists (kernel/checkpoints.ts). */
  const step = <T>(
    key: string,
    stamp: string,
    fn: () => Promise<StepResult<T>>,
    reuse: (outputs: string[], info: unknown) => T,
  ): Promise<T> => checkpoints.step(key, stamp, fn, reuse);
  const stageOf = <S extends StageName>(
    stage: S,
    method: string,
    engine: string | undefined,
    field: string,
    options: Record<string, unknown>,
  ) => planStage<S>(o.registry, { stage, method, ...(engine ? { engine } : {}), field, options });
  const engineId = (p: { engine: { meta: { name: string; version: string } } }) => `${p.engine.meta.name}@${p.engine.meta.version}`;

  // Input hashes for run.json (sha-256 of each light; cached by file identity, so re-runs do not re-read).
  const { createHash } = await import("node:crypto");
  const { readFile } = await import("node:fs/promises");
  const hashCache = (checkpoints.info("inputs") ?? {}) as Record<string, string>;
  const inputs: { path: string; sha256: string }[] = [];
  rec.inputs = inputs;
  for (const f of plan.lights) {
    const id = identity([f.path]);
    hashCache[id] ??= createHash("sha256")
      .update(await readFile(f.path))
      .digest("hex");
    inputs.push({ path: f.path, sha256: hashCache[id]! });
  }
  if (plan.lights.length) await checkpoints.setInfo("inputs", hashCache);
  // Identical copies of one light (the same content under two names) are stacked once.
  const bySha = new Map<string, string>();
  const copies = new Set<string>();
  for (const { path, sha256 } of inputs) {
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
    log(`warning: ${relative(plan.base, path)} is an identical copy of ${relative(plan.base, first)}: used once`);
  }
  if (copies.size) {
    plan.lights = plan.lights.filter((f) => !copies.has(f.path));
    for (const g of plan.groups) g.frames = g.frames.filter((f) => !copies.has(f.frame.path));
    plan.groups = plan.groups.filter((g) => g.frames.length > 0);
  }

  const regCfg = cfg.registration;
  const bgCfg = cfg.background;
  const { engine: bgEngine, method: bgMethod, on: _on, ...bgOptions } = bgCfg;
  void _on;
  const bgPlan = bgMethod === "none" ? undefined : stageOf("background", bgMethod, bgEngine, "background.method", bgOptions);
  // Every stage this run can reach is planned now, so a method no loaded engine provides (e.g.
  // `composition.engine: siril`) fails before any pixel work, not after hours of stacking; then each
  // engine those stages use runs its preflight check once (e.g. Siril: is siril-cli installed?).
  // Registration is planned once (it also aligns the stacks before composition); stacking is planned per
  // group below (TBQR's artifacts folder depends on the group), here only checked.
  let regPlanned: ReturnType<typeof stageOf<"registration">> | undefined;
  const regPlanOf = () =>
    (regPlanned ??= stageOf("registration", regCfg.engine, regCfg.provider, "registration.engine", {
      transform: regCfg.transform,
      ...(regCfg.interpolation ? { interpolation: regCfg.interpolation } : {}),
    }));
  const calPlan = o.fromStacks
    ? undefined
    : stageOf("calibration", cfg.calibration.method, cfg.calibration.engine, "calibration.method", {});
  const coPlan = upto >= 3 ? stageOf("composition", cfg.composition.method, cfg.composition.engine, "composition.method", {}) : undefined;
  const srPlan = upto >= 4 ? stageOf("stretch", cfg.stretch.method, cfg.stretch.engine, "stretch.method", {}) : undefined;
  const planned: { engine: { meta: { name: string }; preflight?: (options: Record<string, unknown>) => void | Promise<void> } }[] = [];
  if (calPlan) {
    planned.push(calPlan);
    if (bgPlan) planned.push(bgPlan);
    if (upto >= 1) planned.push(regPlanOf());
    if (upto >= 2)
      planned.push(
        stageOf("stacking", cfg.stacking.method === "average" ? "mean" : cfg.stacking.method, cfg.stacking.engine, "stacking.method", {}),
      );
  }
  if (coPlan) planned.push(coPlan);
  if (srPlan) planned.push(srPlan);
  for (const e of new Set(planned.map((p) => p.engine))) await e.preflight?.(o.engineOptions?.[e.meta.name] ?? {});
  if (!calPlan) {
    // --stage compose|stretch: from the stacks on disk (no calibration is planned then).
    const { readdirSync } = await import("node:fs");
    for (const f of existsSync(out) ? readdirSync(out).sort() : []) {
      const m = /^stack_(.+)_([\d.]+)s\.fits?$/.exec(f);
      if (m)
        result.stacks.push({
          filter: m[1]!,
          exposureSeconds: Number(m[2]),
          path: join(out, f),
          frames: (await readFitsHeader(join(out, f))).header.getNumber("NCOMBINE") ?? 0,
          rejected: [],
        });
    }
    if (result.stacks.length === 0)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: out,
        reason: "no stack_<filter>_<exposure>s.fit files to compose",
        hint: "Run the job up to --stage stack first.",
      });
    log(`composing from the ${result.stacks.length} stack(s) in ${out}`);
    return compose();
  }

  // 1. Calibrate.
  const lightsId = identity(plan.lights.map((f) => f.path));
  // The offset choice per light (source, offset master, pedestal, scaling) and the health checks' severities are part of the step.
  const offsets = plan.groups
    .flatMap((g) => g.frames.map((f) => `${f.offset ?? ""}|${f.bias ?? ""}|${f.pedestal ?? ""}|${f.darkScaling ? 1 : 0}`))
    .join(",");
  const calStamp = hashOf(
    `${lightsId}\n${plan.masters.map((m) => `${m.name}:${m.inputHash ?? ""}:${m.recipeHash}`).join(",")}\n${JSON.stringify(job.options ?? {})}\n${engineId(calPlan)}\n${offsets}\n${JSON.stringify(cfg.calibration.checks ?? {})}`,
  );
  const calibrated = await step(
    "calibrate",
    calStamp,
    async () => {
      const r = await runStage(
        calPlan,
        [],
        (provider, ctx) =>
          runCalibrateStage(plan, {
            provider,
            ctx,
            engine: engineId(calPlan),
            rejection: cfg.calibration.rejection,
            checks: cfg.calibration.checks,
            history: [provenanceLine(calPlan), `job ${job.name}`],
          }),
        o,
      );
      calibrateRecord = { mastersBuilt: r.mastersBuilt, mastersReused: r.mastersReused, health: r.health };
      return { outputs: r.calibrated.flatMap((g) => g.frames), value: r.calibrated, info: calibrateRecord };
    },
    (_outputs, info) => {
      // The health figures of the run that calibrated these frames (kept in the checkpoint).
      if (info) calibrateRecord = info;
      return plan.groups.map((g) => {
        const dir = join(out, "calibrated", `${g.filter}_${expLabel(g.exposureSeconds)}`);
        return {
          filter: g.filter,
          exposureSeconds: g.exposureSeconds,
          dir,
          frames: g.frames.map((f) => join(dir, f.frame.calibratedDir, calibratedName(f.frame.path))),
        };
      });
    },
  );
  if (upto < 1) return finish();

  // 2–3. Register and stack each (filter, exposure) group.
  const {
    engine: stEngine,
    method: stMethod,
    input_dir: _i,
    input_pattern: _p,
    output_file: _f,
    rejection_maps: _m,
    ...stOptions
  } = cfg.stacking;
  void _i;
  void _p;
  void _f;
  void _m;
  for (const g0 of calibrated) {
    const label = `${g0.filter}_${expLabel(g0.exposureSeconds)}`;
    let g = g0;
    if (bgPlan && bgCfg.on === "frames") {
      const files = g0.frames.map((f) => join(out, "background", label, relative(g0.dir, f)));
      await step(
        `background ${label}`,
        hashOf(`${identity(g0.frames)}\n${JSON.stringify(bgCfg)}\n${engineId(bgPlan)}`),
        async () => {
          await runStage(
            bgPlan,
            files,
            (provider, ctx, tmp) =>
              provider.extract(
                { images: g0.frames.map((path) => ({ path })), outputs: tmp, options: bgPlan.options, history: [provenanceLine(bgPlan)] },
                ctx,
              ),
            o,
          );
          return { outputs: files, value: undefined };
        },
        () => undefined,
      );
      g = { ...g0, frames: files };
    }
    const regPlan = regPlanOf();
    const regDir = join(out, regCfg.output_dir, label);
    const transformsPath = join(regDir, "transforms.json");
    const regStamp = hashOf(`${identity(g.frames)}\n${JSON.stringify(regCfg)}\n${engineId(regPlan)}`);
    const registered = await step(
      `register ${label}`,
      regStamp,
      async () => {
        const r = await runStage(
          regPlan,
          [],
          (provider, ctx) =>
            provider.register(
              {
                frames: g.frames.map((path) => ({ path })),
                reference: regCfg.reference,
                outputDir: regDir,
                filenamePattern: regCfg.registered_filename_pattern,
                options: regPlan.options,
                history: [provenanceLine(regPlan)],
              },
              ctx,
            ),
          o,
        );
        await mkdir(regDir, { recursive: true });
        await writeFile(join(regDir, "transforms.json"), JSON.stringify(r, null, 2));
        for (const f of r.frames) if (f.error) log(`  not registered: ${basename(f.input)}: ${f.error}`);
        const ok = r.frames.filter((f) => f.output).map((f) => f.output!);
        if (ok.length === 0)
          throw new TileCompileError("TC_STAGE_FAILED", {
            stage: "registration",
            engine: regPlan.engine.meta.name,
            method: regPlan.method,
            reason: `no frame of ${label} could be registered`,
          });
        const rejected = r.frames.filter((f) => f.error).map((f) => ({ path: f.input, reason: `not registered: ${f.error!}` }));
        // transforms.json is an output too: a deleted one re-runs the step instead of failing every re-run.
        return { outputs: [...ok, transformsPath], value: { frames: ok, rejected }, info: rejected };
      },
      (outputs, info) => ({
        frames: outputs.filter((p) => p !== transformsPath),
        rejected: (info ?? []) as { path: string; reason: string }[],
      }),
    );
    // The registration result of this group (written with the registered frames; also on a reuse).
    const regResult = JSON.parse(readFileSync(join(regDir, "transforms.json"), "utf8")) as RegistrationResult;
    const groupInfo = { label, filter: g.filter, exposureSeconds: g.exposureSeconds };
    if (upto < 2) {
      groups.push(groupRecord(groupInfo, regResult));
      continue;
    }
    const stPlan = stageOf(
      "stacking",
      stMethod === "average" ? "mean" : stMethod,
      stEngine,
      "stacking.method",
      stMethod === "tbqr" ? { ...stOptions, tbqr: tbqrOptionsFromConfig(cfg, join(out, "tbqr", label)) } : stOptions,
    );
    const stackPath = join(out, `stack_${g.filter}_${expLabel(g.exposureSeconds)}.fit`);
    const maps =
      cfg.stacking.rejection_maps && stMethod === "rejection"
        ? [stackPath.replace(/\.fit$/, "_rejlow.fit"), stackPath.replace(/\.fit$/, "_rejhigh.fit")]
        : [];
    const stStamp = hashOf(`${identity(registered.frames)}\n${JSON.stringify(stPlan.options)}\n${stPlan.method}\n${engineId(stPlan)}`);
    const stacked = await step(
      `stack ${label}`,
      stStamp,
      async () => {
        const r = await runStage(
          stPlan,
          [stackPath, ...maps],
          (provider, ctx, [tmp, low, high]) =>
            provider.stack(
              {
                frames: registered.frames.map((path) => ({ path })),
                output: tmp!,
                method: stPlan.method,
                options: stPlan.options,
                history: [provenanceLine(calPlan), provenanceLine(regPlan), provenanceLine(stPlan)],
                ...(low && high ? { rejectionMaps: { low, high } } : {}),
              },
              ctx,
            ),
          o,
        );
        log(`stacked ${r.frameCount} frames of ${g.filter} ${g.exposureSeconds} s → ${basename(stackPath)}`);
        for (const f of r.rejectedFrames ?? []) log(`  left out: ${basename(f.path)}: ${f.reason}`);
        const info = {
          frames: r.frameCount,
          rejected: r.rejectedFrames ?? [],
          ...(r.frameWeights ? { frameWeights: r.frameWeights } : {}),
          ...(r.rejectedPercent ? { rejectedPercent: r.rejectedPercent } : {}),
          ...(r.tbqr ? { tbqr: r.tbqr } : {}),
        };
        return { outputs: [stackPath, ...maps], value: info, info };
      },
      (_o, info) =>
        (info ?? { frames: registered.frames.length, rejected: [] }) as {
          frames: number;
          rejected: { path: string; reason: string }[];
        } & Pick<StackingResult, "frameWeights" | "rejectedPercent" | "tbqr">,
    );
    groups.push(
      groupRecord(groupInfo, regResult, {
        path: stackPath,
        method: stMethod === "rejection" ? `rejection (${String(cfg.stacking.rejection ?? DEFAULT_REJECTION)})` : stMethod,
        result: { ...stacked, frameCount: stacked.frames, rejectedFrames: stacked.rejected },
      }),
    );
    result.stacks.push({
      filter: g.filter,
      exposureSeconds: g.exposureSeconds,
      path: stackPath,
      frames: stacked.frames,
      rejected: [...registered.rejected, ...stacked.rejected],
    });
  }
  if (upto < 3) return finish();
  return compose();

  async function compose(): Promise<PipelineResult> {
    // 4. Compose.
    const byFilter = new Map<string, typeof result.stacks>();
    for (const s of result.stacks) byFilter.set(s.filter, [...(byFilter.get(s.filter) ?? []), s]);
    const hdr = [...byFilter.entries()].filter(([, l]) => l.length > 1);
    let toStretch: string[] = [];
    if (job.type === "MONO") {
      result.compositionSkipped = "the job type is MONO (no composition)";
      toStretch = result.stacks.map((s) => s.path);
    }
    if (job.type !== "MONO" && hdr.length > 0 && cfg.hdr.blend) {
      // Blend each HDR filter's exposures into one stack, then compose as usual (below).
      for (const [filter, list] of hdr) {
        const sorted = [...list].sort((a, b) => b.exposureSeconds - a.exposureSeconds);
        const regPlan = regPlanOf();
        const dir = join(out, "hdr_registered", filter);
        const blended = join(out, `stack_${filter}_hdr.fit`);
        const stamp = hashOf(`${identity(sorted.map((s) => s.path))}\n${JSON.stringify(regCfg)}\n${engineId(regPlan)}`);
        await step(
          `hdr ${filter}`,
          stamp,
          async () => {
            const r = await runStage(
              regPlan,
              [],
              (provider, ctx) =>
                provider.register(
                  {
                    frames: sorted.map((s) => ({ path: s.path })),
                    reference: 0,
                    outputDir: dir,
                    filenamePattern: "{name}.fit",
                    options: regPlan.options,
                    history: [provenanceLine(regPlan)],
                  },
                  ctx,
                ),
              o,
            );
            const bad = r.frames.find((f) => f.error);
            if (bad)
              throw new TileCompileError("TC_STAGE_FAILED", {
                stage: "registration",
                engine: regPlan.engine.meta.name,
                method: regPlan.method,
                reason: `the ${filter} exposures could not be aligned for the HDR blend: ${bad.error}`,
              });
            const hdrPlan = stageOf("composition", "hdr", undefined, "hdr.blend", {});
            const paths = r.frames.map((f) => f.output!);
            const { scales = [] } = await runStage(
              hdrPlan,
              [],
              (provider, ctx) =>
                provider.compose(
                  {
                    channels: Object.fromEntries(paths.map((p, k) => [String(k), p])),
                    palette: {},
                    output: blended,
                    options: {},
                    history: [`HDR blend of ${sorted.map((s) => `${s.exposureSeconds} s`).join(" + ")}`],
                  },
                  ctx,
                ),
              o,
            );
            log(
              `HDR ${filter}: ${sorted.map((s) => `${s.exposureSeconds} s`).join(" + ")} blended (scale${scales.length > 1 ? "s" : ""} ${scales.map((x) => x.toFixed(3)).join(", ")}) → ${basename(blended)}`,
            );
            return { outputs: [blended], value: undefined };
          },
          () => undefined,
        );
        byFilter.set(filter, [{ ...sorted[0]!, path: blended }]);
      }
    }
    if (result.compositionSkipped || job.type === "MONO") {
      // nothing more to compose
    } else if (hdr.length > 0 && !cfg.hdr.blend) {
      result.compositionSkipped = `HDR: ${hdr.map(([f, l]) => `${f} has ${l.map((s) => `${s.exposureSeconds} s`).join(" and ")} stacks`).join("; ")} — composition is skipped (set hdr.blend: true to blend the exposures); each stack is kept`;
      toStretch = result.stacks.map((s) => s.path);
    } else {
      const paletteName = cfg.composition.palette ?? job.type;
      const palette: Palette | undefined = cfg.composition.palettes[paletteName] ?? BUILTIN_PALETTES[paletteName];
      if (!palette)
        throw new TileCompileError("TC_CONFIG_INVALID", {
          file: "tile_compile.yaml",
          issues: [
            `composition.palette: no palette "${paletteName}" (built-in: ${Object.keys(BUILTIN_PALETTES).join(", ")}; or define it under composition.palettes)`,
          ],
        });
      // Channel stacks: one per filter; a single 3-plane stack (one-shot colour) offers R, G, B itself.
      const channels: Record<string, string> = {};
      const single = byFilter.size === 1 && [...byFilter.values()][0]!.length === 1 ? [...byFilter.values()][0]![0]! : undefined;
      if (single && (await readFitsHeader(single.path)).channels === 3) channels.RGB = single.path;
      else {
        const need = paletteInputs(palette);
        for (const c of need) {
          const s = byFilter.get(c)?.[0];
          if (!s)
            throw new TileCompileError("TC_INPUT_INVALID", {
              input: plan.jobFile,
              reason: `the ${paletteName} palette needs a ${c} stack; the job has ${[...byFilter.keys()].join(", ")}`,
            });
          channels[c] = s.path;
        }
        // Cross-register the channel stacks onto the first palette input (L when there is one).
        const names = Object.keys(channels);
        if (names.length > 1) {
          const refName = names.includes("L") ? "L" : names.includes("G") ? "G" : names.includes("H") ? "H" : names[0]!;
          const ordered = [refName, ...names.filter((n) => n !== refName)];
          const regPlan = regPlanOf();
          const dir = join(out, "stacks_registered");
          const stamp = hashOf(`${identity(ordered.map((n) => channels[n]!))}\n${JSON.stringify(regCfg)}\n${engineId(regPlan)}`);
          const aligned = await step(
            "register stacks",
            stamp,
            async () => {
              const r = await runStage(
                regPlan,
                [],
                (provider, ctx) =>
                  provider.register(
                    {
                      frames: ordered.map((n) => ({ path: channels[n]! })),
                      reference: 0,
                      outputDir: dir,
                      filenamePattern: "{name}.fit",
                      options: regPlan.options,
                      history: [provenanceLine(regPlan)],
                    },
                    ctx,
                  ),
                o,
              );
              const bad = r.frames.find((f) => f.error);
              if (bad)
                throw new TileCompileError("TC_STAGE_FAILED", {
                  stage: "registration",
                  engine: regPlan.engine.meta.name,
                  method: regPlan.method,
                  reason: `the channel stack ${basename(bad.input)} could not be aligned with ${refName}: ${bad.error}`,
                });
              return { outputs: r.frames.map((f) => f.output!), value: r.frames.map((f) => f.output!) };
            },
            (outputs) => outputs,
          );
          ordered.forEach((n, k) => {
            channels[n] = aligned[k]!;
          });
        }
      }
      if (bgPlan && bgCfg.on === "stacks") {
        for (const [name, path] of Object.entries(channels)) {
          const target = join(out, "background_stacks", basename(path));
          await step(
            `background ${basename(path)}`,
            hashOf(`${identity([path])}\n${JSON.stringify(bgCfg)}\n${engineId(bgPlan)}`),
            async () => {
              await runStage(
                bgPlan,
                [target],
                (provider, ctx, tmp) =>
                  provider.extract({ images: [{ path }], outputs: tmp, options: bgPlan.options, history: [provenanceLine(bgPlan)] }, ctx),
                o,
              );
              return { outputs: [target], value: undefined };
            },
            () => undefined,
          );
          channels[name] = target;
        }
      }
      if (!coPlan) return finish();
      const composed = join(out, `${job.name}_linear.fits`);
      const stamp = hashOf(`${identity(Object.values(channels))}\n${JSON.stringify(palette)}\n${engineId(coPlan)}`);
      await step(
        "compose",
        stamp,
        async () => {
          await runStage(
            coPlan,
            [composed],
            (provider, ctx, [tmp]) =>
              provider.compose({ channels, palette, output: tmp!, options: coPlan.options, history: [provenanceLine(coPlan)] }, ctx),
            o,
          );
          log(`composed ${paletteName} → ${basename(composed)}`);
          return { outputs: [composed], value: undefined };
        },
        () => undefined,
      );
      result.composed = composed;
      toStretch = [composed];
    }
    if (result.compositionSkipped) log(`composition skipped: ${result.compositionSkipped}`);
    if (PIPELINE_STEPS.indexOf(o.until ?? "stretch") < 4) return finish();

    // 5. Stretch (previews next to the stretched FITS).
    if (!srPlan) return finish();
    for (const input of toStretch) {
      const output = input.replace(/(_linear)?\.(fits?|fit)$/i, "_stretched.fits");
      const stamp = hashOf(`${identity([input])}\n${srPlan.method}\n${engineId(srPlan)}`);
      await step(
        `stretch ${basename(input)}`,
        stamp,
        async () => {
          await runStage(
            srPlan,
            [output],
            (provider, ctx, [tmp]) =>
              provider.stretch(
                {
                  input,
                  output: tmp!,
                  options: { ...srPlan.options, previewBase: output.replace(/\.fits$/, "") },
                  history: [provenanceLine(srPlan)],
                },
                ctx,
              ),
            o,
          );
          const previews = [output.replace(/\.fits$/, ".png"), output.replace(/\.fits$/, "_16bit.png")].filter((p) => existsSync(p));
          return { outputs: [output, ...previews], value: undefined };
        },
        () => undefined,
      );
      result.stretched.push(output);
    }
    return finish();
  }

  async function finish(): Promise<PipelineResult> {
    await writeRunJson(
      plan,
      { ...(calibrateRecord ? { calibrate: calibrateRecord } : {}), pipeline: { ...result, timings, inputs, groups } },
      "tile-compile",
      o.executor?.stats(),
    );
    return result;
  }
}
