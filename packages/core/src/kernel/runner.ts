/**
 * Planning and running one stage. `planStage` resolves the provider (capability check, stability
 * warnings) before any pixel is read; `runStage` calls it with a context, makes its outputs atomic
 * (the provider writes to temporary paths that are renamed into place only on success and removed on
 * failure or cancel), emits events and calls the engines' observers.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isAbortError, StageError, TileCompileError } from "../errors/index.js";
import type { EngineContext, EngineDefinition, Logger, OptionsSchema, RuntimeLimits, StageName, StageProviders } from "./contracts.js";
import type { Executor } from "../executor/contracts.js";
import { localExecutor } from "../executor/local.js";
import { providerOf } from "./define.js";
import type { RunEvents } from "./events.js";
import type { EngineRegistry } from "./registry.js";

export interface StagePlan<S extends StageName = StageName> {
  stage: S;
  method: string;
  engine: EngineDefinition;
  provider: StageProviders[S];
  /** Options of the stage block, hashed into provenance. */
  options: Record<string, unknown>;
  optionsHash: string;
  warnings: string[];
}

/** Stable JSON (sorted keys) → sha256, first 12 hex digits. */
export function optionsHash(options: unknown): string {
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v && typeof v === "object"
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, stable((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash("sha256")
    .update(JSON.stringify(stable(options)))
    .digest("hex")
    .slice(0, 12);
}

export function planStage<S extends StageName>(
  registry: EngineRegistry,
  request: { stage: S; method: string; engine?: string; field: string; options?: Record<string, unknown> },
): StagePlan<S> {
  const sel = registry.select(request.stage, request.method, request.engine, request.field);
  const provider = providerOf(sel.engine, request.stage, request.method)!;
  const warnings: string[] = [];
  if (sel.stability !== "stable") warnings.push(`${sel.capability} of ${sel.engine.meta.name} is ${sel.stability}`);
  const raw = request.options ?? {};
  return {
    stage: request.stage,
    method: request.method,
    engine: sel.engine,
    provider,
    options: provider.optionsSchema ? parseStageOptions(provider.optionsSchema, raw, request, sel.engine.meta.name) : raw,
    // The hash is of the options as configured (what FITS HISTORY and run.json have always named).
    optionsHash: optionsHash(raw),
    warnings,
  };
}

/** The stage's options through its provider's schema: the parsed value, or a configuration error naming each field. */
function parseStageOptions(
  schema: OptionsSchema,
  raw: Record<string, unknown>,
  request: { stage: StageName; method: string; field: string },
  engine: string,
): Record<string, unknown> {
  const r = schema["~standard"].validate(raw);
  const where = `${request.stage}:${request.method} of ${engine}`;
  if (r instanceof Promise)
    throw new TileCompileError("TC_ENGINE_CONTRACT", {
      engine,
      problems: [
        `the options schema of ${where} validates asynchronously; stage options are checked when the stage is planned, so it must be synchronous`,
      ],
    });
  if (r.issues)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: r.issues.map((i) => {
        // The options are the stage's block of tile_compile.yaml (stacking.*, registration.*, …).
        const path = (i.path ?? []).map((k) => String(typeof k === "object" ? k.key : k)).join(".");
        return `${path ? `${request.stage}.${path}` : request.field}: ${i.message} (${where})`;
      }),
    });
  // An object schema parses to an object; anything else is the engine's mistake.
  const v: unknown = r.value;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new TileCompileError("TC_ENGINE_CONTRACT", { engine, problems: [`the options schema of ${where} does not parse to an object`] });
  return Object.fromEntries(Object.entries(v));
}

/** The provenance line every output of a stage carries (FITS HISTORY and run.json). */
export function provenanceLine(plan: StagePlan, extra: Record<string, string> = {}): string {
  const parts = [
    `tile-compile ${plan.stage}:${plan.method}`,
    `${plan.engine.meta.name}@${plan.engine.meta.version}`,
    `options=${plan.optionsHash}`,
  ];
  for (const [k, v] of Object.entries(extra)) parts.push(`${k}=${v}`);
  return parts.join(" ");
}

export interface StageRunOptions {
  signal: AbortSignal;
  logger: Logger;
  events: RunEvents;
  runtime: RuntimeLimits;
  /** Engine options blocks by engine name (`engine_options` of the config). */
  engineOptions?: Record<string, Record<string, unknown>>;
  /** Folder under which the stage's private workdir is made. */
  workRoot: string;
  /** Per-stage timeout in ms (combined with the run signal). */
  timeoutMs?: number;
  /** All engines of the run, for observers. */
  observers?: EngineDefinition[];
  /** Where the stage's work units run (`runtime.executor`); absent: this process. */
  executor?: Executor;
}

/**
 * Run a stage. `outputs` are the final paths the stage produces; `invoke` receives the provider, a
 * context and the temporary path for each output, and must write there.
 */
export async function runStage<S extends StageName, R>(
  plan: StagePlan<S>,
  outputs: string[],
  invoke: (provider: StageProviders[S], ctx: EngineContext, tempOutputs: string[]) => Promise<R>,
  opts: StageRunOptions,
): Promise<R> {
  const { stage, method, engine } = plan;
  const signal = opts.timeoutMs ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]) : opts.signal;
  const started = performance.now();
  opts.events.emit({ type: "stage:start", stage, engine: engine.meta.name, method });
  for (const w of plan.warnings) opts.events.emit({ type: "warning", message: w });
  const temps = outputs.map((o) => join(dirname(o), `.${basename(o)}.${process.pid}.partial`));
  await mkdir(opts.workRoot, { recursive: true });
  const workdir = await mkdtemp(join(opts.workRoot, `${stage}-`));
  for (const o of outputs) await mkdir(dirname(o), { recursive: true });
  // The stage always gets an executor: the run's (distributed), else one in this process for this stage.
  const executor = opts.executor ?? localExecutor({ threads: opts.runtime.threads });
  const ctx: EngineContext = {
    signal,
    logger: opts.logger,
    workdir,
    runtime: opts.runtime,
    executor,
    options: opts.engineOptions?.[engine.meta.name] ?? {},
    progress: (fraction, note) =>
      opts.events.emit({ type: "stage:progress", stage, fraction: Math.max(0, Math.min(1, fraction)), ...(note ? { note } : {}) }),
  };
  const closeOwn = async () => {
    if (!opts.executor) await executor.close();
  };
  const cleanup = async () => {
    await closeOwn();
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    await rm(workdir, { recursive: true, force: true });
  };
  try {
    signal.throwIfAborted();
    const result = await invoke(plan.provider, ctx, temps);
    signal.throwIfAborted();
    for (let i = 0; i < outputs.length; i++) {
      if (!existsSync(temps[i]!))
        throw new StageError("TC_STAGE_FAILED", {
          stage,
          engine: engine.meta.name,
          method,
          reason: `the engine reported success but did not write ${outputs[i]}`,
        });
    }
    for (let i = 0; i < outputs.length; i++) await rename(temps[i]!, outputs[i]!);
    await closeOwn();
    await rm(workdir, { recursive: true, force: true });
    const seconds = (performance.now() - started) / 1000;
    opts.events.emit({ type: "stage:done", stage, engine: engine.meta.name, method, outputs, seconds });
    for (const e of opts.observers ?? [engine]) {
      try {
        e.onStageDone?.({ stage, engine: engine.meta.name, method, outputs, seconds });
      } catch (err) {
        opts.logger.warn(`observer onStageDone of ${e.meta.name} threw: ${(err as Error).message}`);
      }
    }
    return result;
  } catch (error) {
    await cleanup();
    const cancelled = isAbortError(error) || signal.aborted;
    opts.events.emit({
      type: "stage:failed",
      stage,
      engine: engine.meta.name,
      method,
      error: (error as Error)?.message ?? String(error),
      cancelled,
    });
    if (cancelled) {
      // Our own time limit, not the user's Ctrl-C: a coded failure naming the stage and the limit.
      if (opts.timeoutMs && !opts.signal.aborted)
        throw new StageError("TC_STAGE_TIMEOUT", { stage, engine: engine.meta.name, method, seconds: opts.timeoutMs / 1000 });
      if (isAbortError(error)) throw error;
      const reason = signal.reason;
      throw isAbortError(reason) ? reason : new DOMException(String(reason ?? "cancelled"), "AbortError");
    }
    if (error instanceof TileCompileError) throw error;
    throw new StageError(
      "TC_STAGE_FAILED",
      { stage, engine: engine.meta.name, method, reason: (error as Error)?.message ?? String(error) },
      { cause: error },
    );
  }
}
