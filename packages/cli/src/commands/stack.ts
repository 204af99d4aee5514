/**
 * `tile-compile stack <frames…> --out FILE`: one stacking stage through whichever engine the
 * configuration selects (`stacking.engine`, `stacking.method`), capability-checked before any pixel is
 * read, output written atomically, progress shown, provenance in FITS HISTORY.
 */
import { readFile } from "node:fs/promises";
import { basename, resolve } from "node:path";
import {
  defineStep,
  describeRun,
  planStage,
  provenanceLine,
  readFitsHeader,
  RunEvents,
  runStep,
  TileCompileError,
  type LoadedConfig,
  type RegistrationResult,
  type WarpPlan,
  DEFAULT_DEBAYER,
} from "@tile-compile/core";
import { createRunScope, loadConfiguredEngines } from "../container.js";
import { printPlan, progressBar, stderrLogger, type Io } from "../output.js";
import { framesFrom } from "../frames.js";

export async function stackCommand(
  inputs: string[],
  opts: {
    out: string;
    method?: string;
    engine?: string;
    transforms?: string;
    drizzle?: string;
    pixfrac?: string;
    json?: boolean;
    verbose?: boolean;
    dryRun?: boolean;
  },
  loaded: LoadedConfig,
  io: Io,
  signal: AbortSignal,
  cwd: string,
): Promise<number> {
  const files = await framesFrom(inputs, cwd, signal);
  const engines = await loadConfiguredEngines(loaded, cwd);
  const logger = stderrLogger(io, Boolean(opts.verbose));
  const events = new RunEvents();
  const output = resolve(cwd, opts.out);
  const scope = await createRunScope({
    signal,
    logger,
    events,
    engines,
    workdir: resolve(output, ".."),
    threads: loaded.runtime.threads,
    ...(opts.dryRun ? {} : { executorFrom: loaded }),
  });
  const executor = scope.executor;
  try {
    const { stacking } = loaded.config;
    const method = opts.method ?? stacking.method;
    const engine = opts.engine ?? stacking.engine;
    const { engine: _e, method: _m, ...configured } = stacking;
    void _e;
    void _m;
    const options = opts.drizzle !== undefined ? { ...configured, drizzle: drizzleOf(opts, configured.drizzle) } : configured;
    if (options.drizzle && !opts.transforms)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: "--drizzle",
        reason: "drizzle needs the calibrated frames and their transforms",
        hint: "Add --transforms transforms.json (from tile-compile register) and give the calibrated frames.",
      });
    const coverage = options.drizzle ? output.replace(/(\.fits?)?$/i, "_coverage.fit") : undefined;
    const plan = planStage(scope.registry, {
      stage: "stacking",
      method: method === "average" ? "mean" : method,
      ...(engine ? { engine } : {}),
      field: opts.method ? "--method" : "stacking.method",
      options,
    });
    const warp = opts.transforms ? await warpPlanOf(resolve(cwd, opts.transforms), files, loaded) : undefined;
    if (warp && (plan.engine.meta.name !== "@tile-compile/engine-native" || !["mean", "median", "rejection"].includes(plan.method)))
      throw new TileCompileError("TC_CONFIG_INVALID", {
        file: "tile_compile.yaml",
        issues: [
          `--transforms needs the built-in mean, median or rejection stacking (stacking:${plan.method} of ${plan.engine.meta.name} reads registered frames)`,
        ],
      });
    const step = defineStep({
      key: "stack",
      stage: plan,
      inputs: files,
      outputs: [output, ...(coverage ? [coverage] : [])],
      run: async (provider, ctx, [tmp, cov]) => ({
        value: await provider.stack(
          {
            frames: files.map((path) => ({ path })),
            output: tmp!,
            method: plan.method,
            options: plan.options,
            history: [provenanceLine(plan)],
            ...(warp ? { warp } : {}),
            ...(cov ? { coverageMap: cov } : {}),
          },
          ctx,
        ),
      }),
    });
    scope.registry.freeze();
    if (opts.dryRun) return printPlan(io, describeRun([step]), Boolean(opts.json));
    const bar = opts.json ? progressBar({ ...io, interactive: false }, "") : progressBar(io, `stacking:${plan.method}`);
    events.on((e) => {
      if (e.type === "stage:progress") bar.update(e.fraction, e.note);
      if (e.type === "warning") logger.warn(e.message);
    });
    const result = await runStep(step, { stage: scope.stageOptions(loaded) });
    bar.stop();
    const summary = {
      output,
      engine: `${plan.engine.meta.name}@${plan.engine.meta.version}`,
      method: plan.method,
      ...result,
      ...(executor ? { executor: executor.stats() } : {}),
    };
    if (opts.json) io.out(JSON.stringify(summary, null, 2));
    else
      io.out(
        `stacked ${result.frameCount} frames (${result.width}×${result.height}${result.channels > 1 ? `×${result.channels}` : ""}) with stacking:${plan.method} of ${summary.engine} → ${output}`,
      );
    return 0;
  } finally {
    await scope.dispose();
  }
}

/**
 * The warp plan of `--transforms FILE`: each frame's matrix from a transforms.json (a job's or `tile-compile register`'s),
 * matched by path or, failing that, by file name; interpolation and demosaic from `registration:`. A frame
 * the file has no transform for — not in it, or not registered — is an error naming it.
 */
async function warpPlanOf(file: string, frames: string[], loaded: LoadedConfig): Promise<WarpPlan> {
  // Two layouts: a job's (a RegistrationResult: `frames` a list) and `tile-compile register`'s (`frames` keyed
  // by file name).
  let entries: RegistrationResult["frames"];
  try {
    const doc = JSON.parse(await readFile(file, "utf8")) as { frames?: unknown };
    if (Array.isArray(doc.frames)) entries = doc.frames as RegistrationResult["frames"];
    else if (doc.frames && typeof doc.frames === "object") entries = Object.values(doc.frames) as RegistrationResult["frames"];
    else throw new Error("no frames");
  } catch (e) {
    throw new TileCompileError("TC_INPUT_INVALID", {
      file,
      reason: `is not a transforms.json (${(e as Error).message})`,
      hint: "Give the transforms.json that tile-compile register (or a job's registration) wrote.",
    });
  }
  const byPath = new Map(entries.map((f) => [resolve(f.input), f]));
  const byName = new Map(entries.map((f) => [basename(f.input), f]));
  const matrices = frames.map((p) => {
    const f = byPath.get(resolve(p)) ?? byName.get(basename(p));
    if (!f?.matrix || f.error)
      throw new TileCompileError("TC_INPUT_INVALID", {
        file: p,
        reason: f ? `was not registered (${f.error ?? "no transform"}), so it has no transform in ${file}` : `has no entry in ${file}`,
        hint: "Leave the frame out, or register the same frames again (tile-compile register) and use that transforms.json.",
      });
    return f.matrix;
  });
  const h = await readFitsHeader(frames[0]!);
  const reg = loaded.config.registration;
  return {
    width: h.width,
    height: h.height,
    interpolation: reg.interpolation ?? "lanczos3",
    debayer: reg.debayer ?? DEFAULT_DEBAYER,
    matrices,
  };
}

/** `--drizzle SCALE [--pixfrac F]` over `stacking.drizzle`: checked like the configuration. */
function drizzleOf(
  opts: { drizzle?: string; pixfrac?: string },
  configured: { scale: number; pixfrac: number; kernel: "square" | "point"; cfa: boolean } | undefined,
): { scale: 1 | 1.5 | 2 | 3; pixfrac: number; kernel: "square" | "point"; cfa: boolean } {
  const scale = Number(opts.drizzle);
  const pixfrac = opts.pixfrac !== undefined ? Number(opts.pixfrac) : (configured?.pixfrac ?? 0.8);
  const issues: string[] = [];
  if (![1, 1.5, 2, 3].includes(scale)) issues.push(`--drizzle ${opts.drizzle}: use 1, 1.5, 2 or 3`);
  if (!(pixfrac >= 0.1 && pixfrac <= 1)) issues.push(`--pixfrac ${opts.pixfrac}: use a number from 0.1 to 1`);
  if (issues.length) throw new TileCompileError("TC_CONFIG_INVALID", { file: "command line", issues });
  return { scale: scale as 1 | 1.5 | 2 | 3, pixfrac, kernel: configured?.kernel ?? "square", cfa: configured?.cfa ?? true };
}
