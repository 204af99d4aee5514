/**
 * The one plan-and-run driver of every command (`run`, `reconstruct`, `register`, `stack`).
 *
 * A command first plans its steps — each a planned stage (provider chosen, capability checked) with the
 * files it reads, the files it writes and how its checkpoint stamp is made — before any pixel is read.
 * `describeRun` is what `--dry-run` prints, the same for every command; `executeRun` then runs the steps in
 * order through `runStage` (atomic outputs, events, time limit, the run's executor), skipping each step
 * whose checkpoint says it is already done (kernel/checkpoints.ts).
 *
 * Steps are planned up front but may depend on what earlier steps produced (the stacking step stacks the
 * frames registration managed to register): their `run` reads that from the command's own state, and the
 * planned `inputs` are what the plan expects them to be.
 */
import type { Checkpoints } from "./checkpoints.js";
import type { EngineContext, StageName, StageProviders } from "./contracts.js";
import { runStage, type StagePlan, type StageRunOptions } from "./runner.js";

/** What a step hands back when it ran: its value, and what its checkpoint records. */
export interface StepOutcome<T> {
  value: T;
  /** The files the checkpoint checks on a re-run (default: the step's `outputs`). */
  outputs?: string[];
  /** What `reuse` needs back on a re-run (kept in the checkpoint). */
  info?: unknown;
}

/** One step of a run: a planned stage applied to its inputs. */
export interface RunStep<S extends StageName = StageName, T = unknown> {
  /** Unique within the run; the checkpoint's key (`register L_300s`). */
  key: string;
  stage: StagePlan<S>;
  /** The files the step reads, as planned. */
  inputs: readonly string[];
  /** The files written atomically: `run` receives a temporary path for each, renamed into place on success. */
  outputs: readonly string[];
  /** Files or folders the provider writes itself (registered frames), for the plan only. */
  writes?: readonly string[];
  /**
   * The checkpoint stamp (a hash of the inputs' identities, the options and the engine), made when the
   * step is about to run, so it may read files earlier steps wrote. A step without one always runs.
   */
  stamp?: () => string;
  run(provider: StageProviders[S], ctx: EngineContext, tempOutputs: string[]): Promise<StepOutcome<T>>;
  /** The value of a step a checkpoint says is done, from the recorded outputs and info. */
  reuse?(outputs: string[], info: unknown): T;
  /** Hears the value, whether the step ran or was reused. */
  done?(value: T): void;
}

/** A step as `--dry-run` shows it. */
export interface StepDescription {
  key: string;
  capability: string;
  engine: string;
  optionsHash: string;
  options: unknown;
  inputs: number;
  outputs: string[];
  warnings: string[];
  /** `run`, `reuse` (a checkpoint with the same stamp and its outputs exist) or `pending` (its inputs do not exist yet). */
  status?: "run" | "reuse" | "pending";
}

/** How `executeRun` runs steps: the stage options of the run, and its checkpoints when it resumes. */
export interface RunDriverOptions {
  stage: StageRunOptions;
  checkpoints?: Checkpoints;
}

/**
 * The plan of `steps` as `--dry-run` prints it. With `checkpoints`, each step whose stamp can be made now
 * says whether a run would reuse it; a reused step's value is rebuilt from its checkpoint and handed to
 * `done` (in memory, nothing is written), as a run would, so the stamps of the steps after it are made from
 * what it produced.
 */
export function describeRun(steps: readonly RunStep[], checkpoints?: Checkpoints): StepDescription[] {
  return steps.map((s) => {
    const d: StepDescription = {
      key: s.key,
      capability: `${s.stage.stage}:${s.stage.method}`,
      engine: `${s.stage.engine.meta.name}@${s.stage.engine.meta.version}`,
      optionsHash: s.stage.optionsHash,
      options: s.stage.options,
      inputs: s.inputs.length,
      outputs: [...s.outputs, ...(s.writes ?? [])],
      warnings: [...s.stage.warnings],
    };
    if (checkpoints && s.stamp) {
      let stamp: string | undefined;
      try {
        stamp = s.stamp();
      } catch {
        stamp = undefined; // inputs an earlier step writes
      }
      d.status = stamp === undefined ? "pending" : checkpoints.isDone(s.key, stamp) ? "reuse" : "run";
      const recorded = d.status === "reuse" ? checkpoints.recorded(s.key) : undefined;
      if (recorded) s.done?.(reusedValue(s, recorded.outputs, recorded.info));
    }
    return d;
  });
}

/** One line per planned step, for the console: `1. register L_300s — registration:relative (engine@1.0.0): 12 frames → out/ [options 3f2a…]`. */
export function formatRunPlan(steps: readonly StepDescription[]): string {
  return steps
    .map(
      (d, i) =>
        `${i + 1}. ${d.key} — ${d.capability} (${d.engine}): ${d.inputs} input${d.inputs === 1 ? "" : "s"} → ${d.outputs.join(", ")} [options ${d.optionsHash}]` +
        (d.status
          ? ` (${d.status === "reuse" ? "finished earlier: reused" : d.status === "pending" ? "after the steps before it" : "runs"})`
          : "") +
        d.warnings.map((w) => `\n   warning: ${w}`).join(""),
    )
    .join("\n");
}

/** A reused step's value: from `reuse`, or nothing for a step whose value is only its files. */
function reusedValue<T>(step: RunStep<StageName, T>, outputs: string[], info: unknown): T {
  // A step without `reuse` has no value beyond its outputs (T is void for it).
  return step.reuse ? step.reuse(outputs, info) : (undefined as T);
}

/** Run one step: reused when its checkpoint says it is done, else through `runStage`. */
export async function runStep<S extends StageName, T>(step: RunStep<S, T>, o: RunDriverOptions): Promise<T> {
  const exec = async (): Promise<{ outputs: string[]; value: T; info?: unknown }> => {
    const r = await runStage(step.stage, [...step.outputs], (provider, ctx, temps) => step.run(provider, ctx, temps), o.stage);
    return { outputs: r.outputs ?? [...step.outputs], value: r.value, ...(r.info !== undefined ? { info: r.info } : {}) };
  };
  const value =
    o.checkpoints && step.stamp
      ? await o.checkpoints.step(step.key, step.stamp(), exec, (outputs, info) => reusedValue(step, outputs, info))
      : (await exec()).value;
  step.done?.(value);
  return value;
}

/** Run the planned steps in order (each reused when its checkpoint says it is done). */
export async function executeRun(steps: readonly RunStep[], o: RunDriverOptions): Promise<void> {
  for (const s of steps) await runStep(s, o);
}

/** Type a step (infers the stage and value types from the plan and `run`). */
export function defineStep<S extends StageName, T>(step: RunStep<S, T>): RunStep<S, T> {
  return step;
}
