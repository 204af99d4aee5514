/**
 * `tile-compile stack <frames…> --out FILE`: one stacking stage through whichever engine the
 * configuration selects (`stacking.engine`, `stacking.method`), capability-checked before any pixel is
 * read, output written atomically, progress shown, provenance in FITS HISTORY.
 */
import { resolve } from "node:path";
import { defineStep, describeRun, planStage, provenanceLine, RunEvents, runStep, type LoadedConfig } from "@tile-compile/core";
import { createRunScope, loadConfiguredEngines } from "../container.js";
import { printPlan, progressBar, stderrLogger, type Io } from "../output.js";
import { framesFrom } from "../frames.js";

export async function stackCommand(
  inputs: string[],
  opts: { out: string; method?: string; engine?: string; json?: boolean; verbose?: boolean; dryRun?: boolean },
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
    const { engine: _e, method: _m, ...options } = stacking;
    void _e;
    void _m;
    const plan = planStage(scope.registry, {
      stage: "stacking",
      method: method === "average" ? "mean" : method,
      ...(engine ? { engine } : {}),
      field: opts.method ? "--method" : "stacking.method",
      options,
    });
    const step = defineStep({
      key: "stack",
      stage: plan,
      inputs: files,
      outputs: [output],
      run: async (provider, ctx, [tmp]) => ({
        value: await provider.stack(
          {
            frames: files.map((path) => ({ path })),
            output: tmp!,
            method: plan.method,
            options: plan.options,
            history: [provenanceLine(plan)],
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
