/**
 * `tile-compile validate JOB` — scan the light headers (no pixels), match calibration, print the
 * requirements table, every decision with its rejected candidates, and the masters to reuse/build/rebuild;
 * exit 78 with every problem listed when the job cannot run. Writes nothing.
 *
 * `tile-compile run JOB --stage calibrate [--dry-run]` — the same plan, then (unless --dry-run) build the
 * masters it needs and calibrate the lights into `<output>/calibrated/`. Later stages join with their issues.
 */
import { ensureWritable, lockOutput, openEventLog, sweepPartials } from "../outputdir.js";
import { createRequire } from "node:module";
import { join, relative, resolve } from "node:path";
import { describeRun, jobError, planJob, RunEvents, TileCompileError, type JobPlan, type LoadedConfig } from "@tile-compile/core";
import { createRunScope, executorSummary, loadConfiguredEngines, type RunScope } from "../container.js";
import { printPlan, progressBar, stderrLogger, teeLogger, type Io } from "../output.js";
import { PIPELINE_STEPS, planJobRun, runJobPipeline, type PipelineOptions, type PipelineStep } from "../pipeline/index.js";

const corePkg = createRequire(import.meta.url)("@tile-compile/core/package.json") as { name: string; version: string };
const ENGINE = `${corePkg.name}@${corePkg.version}`;

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r
      .map((v, c) => v.padEnd(w[c]!))
      .join("  ")
      .trimEnd(),
  );
}

/**
 * The plan on the console: requirements, one line per calibration decision (lights that get the same
 * masters share a line), strays, masters. The rejected candidates are in run.json and report.html, and
 * on the console with --verbose.
 */
export function describePlan(plan: JobPlan, io: Io, verbose = false): void {
  const rel = (p: string) => relative(plan.base, p) || ".";
  io.out(`job ${plan.job?.name ?? "?"} (${plan.job?.type ?? "?"}), base ${plan.base}`);
  if (plan.requirements.length) {
    io.out("");
    io.out("requirements:");
    const rows = [["filter", "exposure", "temperature", "gain", "binning", "frames", "nights"]];
    for (const r of plan.requirements)
      rows.push([
        r.filter,
        `${r.exposureSeconds} s`,
        r.temperatureMin === undefined
          ? "—"
          : r.temperatureMin === r.temperatureMax
            ? `${r.temperatureMin} °C`
            : `${r.temperatureMin.toFixed(1)} … ${r.temperatureMax!.toFixed(1)} °C`,
        r.gain === undefined ? "—" : String(r.gain),
        r.binning ?? "—",
        String(r.count),
        r.nights.join(", "),
      ]);
    for (const l of table(rows)) io.out(`  ${l}`);
  }
  if (plan.decisions.length) {
    io.out("");
    io.out("calibration matching:");
    let hidden = 0;
    for (const d of plan.decisions) {
      io.out(`  ${d.kind} for ${d.subject}: ${d.chosen ? `${d.chosen} — ${d.reason}` : `NONE — ${d.reason}`}`);
      if (verbose) for (const r of d.rejected) io.out(`      not ${r.candidate}: ${r.reason}`);
      else hidden += d.rejected.length;
    }
    if (hidden)
      io.out(`  (${hidden} rejected candidate${hidden === 1 ? "" : "s"} not shown: --verbose, or run.json / report.html after a run)`);
  }
  if (plan.duplicates.length) {
    io.out("");
    io.out("used once:");
    for (const d of plan.duplicates) io.out(`  ${rel(d.path)} — ${d.reason}`);
  }
  if (plan.strays.length) {
    io.out("");
    io.out("exposure groups:");
    for (const s of plan.strays)
      io.out(`  ${s.action === "left out" ? "left out" : "stray?"}: ${s.filter} ${s.exposureSeconds} s — ${s.reason}`);
  }
  if (plan.masters.length) {
    io.out("");
    io.out("masters:");
    for (const m of plan.masters) io.out(`  ${m.action.padEnd(7)} ${rel(m.path)} — ${m.reason}`);
  }
  if (plan.output) {
    io.out("");
    io.out(`output: ${rel(plan.output)}`);
  }
}

async function plan(jobFile: string, loaded: LoadedConfig, signal: AbortSignal, stacksOnly = false): Promise<JobPlan> {
  const base = loaded.config.base_dir;
  const aliases = loaded.config.filters.aliases;
  // The calibration method is part of every master's recipe: switching native ↔ siril rebuilds them.
  const cal = loaded.config.calibration;
  return planJob(jobFile, {
    engine: cal.method === "native" ? ENGINE : `${ENGINE};calibration=${cal.method}${cal.engine ? `@${cal.engine}` : ""}`,
    masterRejection: cal.rejection,
    hdrMinFrames: loaded.config.hdr.min_frames,
    signal,
    filterAliases: aliases,
    stacksOnly,
    ...(base ? { baseDir: resolve(loaded.dir, base) } : {}),
  });
}

export async function validateCommand(
  jobFile: string,
  opts: { json?: boolean; verbose?: boolean },
  loaded: LoadedConfig,
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const p = await plan(jobFile, loaded, signal);
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          job: p.job,
          base: p.base,
          output: p.output,
          requirements: p.requirements,
          decisions: p.decisions,
          strays: p.strays,
          duplicates: p.duplicates,
          masters: p.masters.map(({ set: _s, ...m }) => m),
          problems: p.problems,
          headerBytesRead: p.headerBytesRead,
        },
        null,
        2,
      ),
    );
    return p.problems.length ? 78 : 0;
  }
  describePlan(p, io, opts.verbose);
  if (p.problems.length) throw jobError(p);
  io.out("");
  io.out(
    `valid: ${p.lights.length} lights in ${p.groups.length} group(s); ${p.masters.filter((m) => m.action !== "reuse").length} master(s) to build, ${p.masters.filter((m) => m.action === "reuse").length} to reuse`,
  );
  return 0;
}

/**
 * The job-file seed's stage names (its Stage 0–4: validation, calibration, preprocessing — convert,
 * calibrate, background, register, stack —, composition, stretching) as aliases of ours.
 */
export const STAGE_ALIASES: Readonly<Record<string, PipelineStep | "all" | "validate">> = {
  preprocess: "stack",
  preprocessing: "stack",
  calibration: "calibrate",
  registration: "register",
  stacking: "stack",
  composition: "compose",
  stretching: "stretch",
  validation: "validate",
  validate: "validate",
  full: "all",
};

export async function runCommand(
  jobFile: string,
  opts: { stage?: string; dryRun?: boolean; json?: boolean; validate?: boolean; verbose?: boolean },
  loaded: LoadedConfig,
  io: Io,
  signal: AbortSignal,
  cwd: string,
): Promise<number> {
  const asked = opts.stage ?? "all";
  const stage = STAGE_ALIASES[asked] ?? asked;
  // `--validate` and `--stage validate` (the seed's Stage 0) are `tile-compile validate JOB`.
  if (opts.validate || stage === "validate")
    return validateCommand(
      jobFile,
      { ...(opts.json ? { json: true } : {}), ...(opts.verbose ? { verbose: true } : {}) },
      loaded,
      io,
      signal,
    );
  if (stage !== "all" && !(PIPELINE_STEPS as readonly string[]).includes(stage))
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "--stage",
      reason: `unknown stage "${asked}"`,
      hint: `Use one of ${PIPELINE_STEPS.join(", ")} or all (runs up to and including that stage; finished steps are reused), or a name of the job-file seed: ${Object.keys(STAGE_ALIASES).join(", ")}.`,
    });
  // compose and stretch work from the stacks alone: the lights (and calibration) are not needed.
  const fromStacks = stage === "compose" || stage === "stretch";
  const p = await plan(jobFile, loaded, signal, fromStacks);
  describePlan(p, io, opts.verbose);
  if (p.problems.length) throw jobError(p);
  const wanted = [`registration:${loaded.config.registration.engine}`];
  const engines = await loadConfiguredEngines(loaded, cwd, wanted);
  const logger = teeLogger(stderrLogger(io, false));
  const until: PipelineStep = stage === "all" || stage === "compose" ? "stretch" : (stage as PipelineStep);
  const pipelineOptions = (scope: RunScope, log?: (line: string) => void): PipelineOptions => ({
    registry: scope.registry,
    config: loaded.config,
    until,
    fromStacks,
    ...scope.stageOptions(loaded),
    ...(log ? { log } : {}),
  });
  if (opts.dryRun) {
    // The steps the run would take, each with its engine and whether a checkpoint already covers it.
    const events = new RunEvents();
    const scope = await createRunScope({ signal, logger, events, engines, workdir: p.output!, threads: loaded.runtime.threads });
    try {
      scope.registry.freeze();
      const run = await planJobRun(
        p,
        pipelineOptions(scope, () => {}),
      );
      io.out("");
      printPlan(io, describeRun(run.steps, run.checkpoints), Boolean(opts.json));
      if (!opts.json)
        io.out(
          `dry run: would build ${p.masters.filter((m) => m.action !== "reuse").length} master(s), calibrate ${p.lights.length} light(s) in ${run.steps.length} step(s). Nothing written.`,
        );
      return 0;
    } finally {
      await scope.dispose();
    }
  }
  // One run per output folder; what killed runs left half-written is swept first.
  ensureWritable(p.output!);
  const release = lockOutput(p.output!);
  try {
    const swept = sweepPartials(p.output!) + sweepPartials(join(p.base, "calibration", "masters"));
    if (swept) logger.info(`removed ${swept} temporary file(s) left by interrupted runs`);
    return await runLocked();
  } finally {
    release();
  }

  async function runLocked(): Promise<number> {
    const events = new RunEvents();
    const scope = await createRunScope({
      signal,
      logger,
      events,
      engines,
      workdir: p.output!,
      threads: loaded.runtime.threads,
      executorFrom: loaded,
    });
    const executor = scope.executor;
    try {
      scope.registry.freeze();
      const bar = progressBar(opts.json ? { ...io, interactive: false } : io, "run");
      let stageLabel = "";
      // The event log: every stage event and log line as JSON lines, next to run.json.
      const eventLog = openEventLog(p.output!, (m) => logger.warn(m));
      const record = (e: object) => eventLog.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
      logger.sink = record; // engines' own logs (Siril's, at debug level) are in the run log, not on the terminal
      record({ type: "run:start", job: p.jobFile, stage });
      events.on((e) => {
        if (e.type !== "stage:progress") record(e);
        if (e.type === "stage:start") {
          stageLabel = `${e.stage} (${e.method})`;
          bar.update(0, stageLabel);
        }
        if (e.type === "stage:progress") bar.update(e.fraction, e.note ? `${stageLabel} · ${e.note}` : stageLabel);
        if (e.type === "warning") logger.warn(e.message);
      });
      const res = await runJobPipeline(
        p,
        pipelineOptions(scope, (l) => {
          record({ type: "log", message: l });
          io.err(l);
        }),
      )
        .catch((e: unknown) => {
          record({ type: "run:failed", error: (e as Error).message });
          throw e;
        })
        .finally(() => {
          logger.sink = undefined;
          eventLog.end();
        });
      bar.stop();
      io.out("");
      for (const s of res.stacks) io.out(`stack ${s.filter} ${s.exposureSeconds} s: ${s.frames} frames → ${relative(p.base, s.path)}`);
      if (res.composed) io.out(`composed → ${relative(p.base, res.composed)}`);
      if (res.compositionSkipped) io.out(`composition skipped: ${res.compositionSkipped}`);
      for (const s of res.stretched) io.out(`stretched → ${relative(p.base, s)} (+ PNG previews)`);
      io.out(`steps run: ${res.ran.length}, reused from an earlier run: ${res.reused.length}; run.json in ${relative(p.base, p.output!)}`);
      if (executor) io.out(executorSummary(executor.stats()));
      return 0;
    } finally {
      await scope.dispose();
    }
  }
}
