/**
 * The job pipeline's frame steps: calibrate the lights, then per (filter, exposure) group flatten the
 * background (when `background.on: frames`), register and stack.
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import {
  calibratedName,
  DEFAULT_REJECTION,
  defineStep,
  groupRecord,
  provenanceLine,
  runCalibrateStage,
  TileCompileError,
  type CalibratedGroup,
  type RegistrationResult,
  type WarpPlan,
  readFitsHeader,
  type RunStep,
  type StackingResult,
  DEFAULT_DEBAYER,
} from "@tile-compile/core";
import { engineId, groupLabel, identity, stackPathOf, stampOf, type GroupState, type PipelineState } from "./state.js";

type Calibrated = { filter: string; exposureSeconds: number; dir: string; frames: string[] }[];

/** Where the calibrate step puts a group's frames (what a reuse rebuilds). */
function calibratedFrames(s: PipelineState, g: CalibratedGroup): { dir: string; frames: string[] } {
  const dir = join(s.out, "calibrated", groupLabel(g));
  return { dir, frames: g.frames.map((f) => join(dir, f.frame.calibratedDir, calibratedName(f.frame.path))) };
}

/** Masters as the plan has them, then every light calibrated into `<output>/calibrated/<group>/<night>/`. */
export function calibrateStep(s: PipelineState): RunStep {
  const cal = s.stages.calibration!;
  const { plan, cfg } = s;
  const job = plan.job!;
  // The offset choice per light (source, offset master, pedestal, scaling) and the health checks' severities are part of the step.
  const offsets = plan.groups
    .flatMap((g) => g.frames.map((f) => `${f.offset ?? ""}|${f.bias ?? ""}|${f.pedestal ?? ""}|${f.darkScaling ? 1 : 0}`))
    .join(",");
  return defineStep({
    key: "calibrate",
    stage: cal,
    inputs: plan.lights.map((f) => f.path),
    outputs: [],
    writes: [join(s.out, "calibrated")],
    stamp: () =>
      stampOf(
        identity(plan.lights.map((f) => f.path)),
        plan.masters.map((m) => `${m.name}:${m.inputHash ?? ""}:${m.recipeHash}`).join(","),
        JSON.stringify(job.options ?? {}),
        engineId(cal),
        offsets,
        JSON.stringify(cfg.calibration.checks ?? {}),
      ),
    run: async (provider, ctx) => {
      const r = await runCalibrateStage(plan, {
        provider,
        ctx,
        engine: engineId(cal),
        rejection: cfg.calibration.rejection,
        checks: cfg.calibration.checks,
        history: [provenanceLine(cal), `job ${job.name}`],
      });
      s.calibrateRecord = { mastersBuilt: r.mastersBuilt, mastersReused: r.mastersReused, health: r.health };
      return { outputs: r.calibrated.flatMap((g) => g.frames), value: r.calibrated as Calibrated, info: s.calibrateRecord };
    },
    reuse: (_outputs, info) => {
      // The health figures of the run that calibrated these frames (kept in the checkpoint).
      if (info) s.calibrateRecord = info;
      return plan.groups.map((g) => ({ filter: g.filter, exposureSeconds: g.exposureSeconds, ...calibratedFrames(s, g) }));
    },
    done: (calibrated) => {
      for (const c of calibrated) s.groupState.get(groupLabel(c))!.frames = c.frames;
    },
  });
}

/** The group's frames with a smooth sky model removed (`background.on: frames`). */
export function backgroundFramesStep(s: PipelineState, g: GroupState): RunStep {
  const bg = s.stages.background!;
  const calDir = join(s.out, "calibrated", g.label);
  const files = () => g.frames.map((f) => join(s.out, "background", g.label, relative(calDir, f)));
  return defineStep({
    key: `background ${g.label}`,
    stage: bg,
    inputs: g.frames,
    outputs: files(),
    stamp: () => stampOf(identity(g.frames), JSON.stringify(s.cfg.background), engineId(bg)),
    run: async (provider, ctx, tmp) => {
      await provider.extract(
        { images: g.frames.map((path) => ({ path })), outputs: tmp, options: bg.options, history: [provenanceLine(bg)] },
        ctx,
      );
      return { value: undefined };
    },
    done: () => {
      g.frames = files();
    },
  });
}

/** Register the group's frames onto its reference; `transforms.json` beside the registered frames. */
export function registerStep(s: PipelineState, g: GroupState): RunStep {
  const reg = s.stages.registration();
  const regCfg = s.cfg.registration;
  const regDir = join(s.out, regCfg.output_dir, g.label);
  const transformsPath = join(regDir, "transforms.json");
  // The fused path: transforms only; the "registered frames" handed on are the calibrated ones.
  const fused = !regCfg.write_registered;
  const registeredOf = (r: RegistrationResult) =>
    fused ? r.frames.filter((f) => f.matrix && !f.error).map((f) => f.input) : r.frames.filter((f) => f.output).map((f) => f.output!);
  return defineStep({
    key: `register ${g.label}`,
    stage: reg,
    inputs: g.frames,
    outputs: [],
    writes: [regDir],
    stamp: () => stampOf(identity(g.frames), JSON.stringify(regCfg), engineId(reg)),
    run: async (provider, ctx) => {
      const r = await provider.register(
        {
          frames: g.frames.map((path) => ({ path })),
          reference: regCfg.reference,
          outputDir: regDir,
          filenamePattern: regCfg.registered_filename_pattern,
          options: reg.options,
          history: [provenanceLine(reg)],
          ...(fused ? { writeRegistered: false } : {}),
        },
        ctx,
      );
      await mkdir(regDir, { recursive: true });
      await writeFile(transformsPath, JSON.stringify(r, null, 2));
      for (const f of r.frames) if (f.error) s.log(`  not registered: ${basename(f.input)}: ${f.error}`);
      const ok = registeredOf(r);
      if (ok.length === 0)
        throw new TileCompileError("TC_STAGE_FAILED", {
          stage: "registration",
          engine: reg.engine.meta.name,
          method: reg.method,
          reason: `no frame of ${g.label} could be registered`,
        });
      const rejected = r.frames.filter((f) => f.error).map((f) => ({ path: f.input, reason: `not registered: ${f.error!}` }));
      // transforms.json is an output too: a deleted one re-runs the step instead of failing every re-run.
      return { outputs: [...(fused ? [] : ok), transformsPath], value: { frames: ok, rejected }, info: rejected };
    },
    reuse: (outputs, info) => ({
      frames: fused ? registeredOf(registrationOf(s, g)) : outputs.filter((p) => p !== transformsPath),
      rejected: (info ?? []) as { path: string; reason: string }[],
    }),
    done: (registered) => {
      g.registered = registered;
      if (s.upto < 2) s.groups.push(groupRecord(g, registrationOf(s, g)));
    },
  });
}

/** The registration result of a group (written with its registered frames; also there on a reuse). */
function registrationOf(s: PipelineState, g: GroupState): RegistrationResult {
  return JSON.parse(readFileSync(join(s.out, s.cfg.registration.output_dir, g.label, "transforms.json"), "utf8")) as RegistrationResult;
}

type StackInfo = { frames: number; rejected: { path: string; reason: string }[] } & Pick<
  StackingResult,
  "frameWeights" | "rejectedPercent" | "tbqr" | "drizzle"
>;

/** Stack the group's registered frames into `stack_<filter>_<exposure>s.fit` (and the rejection maps when asked). */
export function stackStep(s: PipelineState, g: GroupState): RunStep {
  const st = s.stages.stacking(g.label);
  const stackPath = stackPathOf(s.out, g);
  const method = s.cfg.stacking.method;
  const maps =
    s.cfg.stacking.rejection_maps && method === "rejection"
      ? [stackPath.replace(/\.fit$/, "_rejlow.fit"), stackPath.replace(/\.fit$/, "_rejhigh.fit")]
      : [];
  // The fused path (write_registered: false) and drizzle: the calibrated frames with their transforms, warped
  // (or drizzled) by the stacker as it reads them; otherwise the registered frames.
  const regCfg = s.cfg.registration;
  const fromInputs = !regCfg.write_registered || s.cfg.stacking.drizzle !== undefined;
  const coverage = s.cfg.stacking.drizzle ? [stackPath.replace(/\.fit$/, "_coverage.fit")] : [];
  const registered = () => registrationOf(s, g).frames.filter((f) => f.matrix && !f.error && (!regCfg.write_registered || f.output));
  const frames = () => (fromInputs ? registered().map((f) => f.input) : g.registered!.frames);
  const warp = (): WarpPlan | undefined =>
    fromInputs
      ? {
          width: 0,
          height: 0,
          interpolation: regCfg.interpolation ?? "lanczos3",
          debayer: regCfg.debayer ?? DEFAULT_DEBAYER,
          matrices: registered().map((f) => f.matrix!),
        }
      : undefined;
  return defineStep({
    key: `stack ${g.label}`,
    stage: st,
    inputs: g.frames,
    outputs: [stackPath, ...maps, ...coverage],
    stamp: () => stampOf(identity(frames()), JSON.stringify(st.options), st.method, engineId(st), JSON.stringify(warp() ?? null)),
    run: async (provider, ctx, temps) => {
      const [tmp] = temps;
      const [low, high] = maps.length ? [temps[1], temps[2]] : [undefined, undefined];
      const cov = coverage.length ? temps[1 + maps.length] : undefined;
      const w = warp();
      if (w) {
        const h = await readFitsHeader(frames()[0]!);
        w.width = h.width;
        w.height = h.height;
      }
      const r = await provider.stack(
        {
          frames: frames().map((path) => ({ path })),
          output: tmp!,
          method: st.method,
          options: st.options,
          history: [provenanceLine(s.stages.calibration!), provenanceLine(s.stages.registration()), provenanceLine(st)],
          ...(low && high ? { rejectionMaps: { low, high } } : {}),
          ...(w ? { warp: w } : {}),
          ...(cov ? { coverageMap: cov } : {}),
        },
        ctx,
      );
      s.log(`stacked ${r.frameCount} frames of ${g.filter} ${g.exposureSeconds} s → ${basename(stackPath)}`);
      for (const f of r.rejectedFrames ?? []) s.log(`  left out: ${basename(f.path)}: ${f.reason}`);
      const info: StackInfo = {
        frames: r.frameCount,
        rejected: r.rejectedFrames ?? [],
        ...(r.frameWeights ? { frameWeights: r.frameWeights } : {}),
        ...(r.rejectedPercent ? { rejectedPercent: r.rejectedPercent } : {}),
        ...(r.tbqr ? { tbqr: r.tbqr } : {}),
        ...(r.drizzle ? { drizzle: { ...r.drizzle, ...(coverage.length ? { coverage: coverage[0]! } : {}) } } : {}),
      };
      return { outputs: [stackPath, ...maps, ...coverage], value: info, info };
    },
    reuse: (_o, info) => (info ?? { frames: frames().length, rejected: [] }) as StackInfo,
    done: (stacked) => {
      s.groups.push(
        groupRecord(g, registrationOf(s, g), {
          path: stackPath,
          method: method === "rejection" ? `rejection (${String(s.cfg.stacking.rejection ?? DEFAULT_REJECTION)})` : method,
          result: { ...stacked, frameCount: stacked.frames, rejectedFrames: stacked.rejected },
        }),
      );
      s.result.stacks.push({
        filter: g.filter,
        exposureSeconds: g.exposureSeconds,
        path: stackPath,
        frames: stacked.frames,
        rejected: [...g.registered!.rejected, ...stacked.rejected],
      });
    },
  });
}
