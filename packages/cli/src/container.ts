/**
 * The composition root: the only place that knows the DI container (STYLE.md §8). A run gets a child
 * container holding its signal, logger, events and engines; it is disposed when the run ends.
 * Engines never see it.
 */
import { fileURLToPath } from "node:url";
import { container as rootContainer, type DependencyContainer } from "tsyringe";
import {
  OFFICIAL_CAPABILITY_ENGINES,
  EngineRegistry,
  expandEngineName,
  loadEngine,
  tokens,
  TileCompileError,
  type EngineDefinition,
  type Executor,
  type ExecutorStats,
  type LoadedConfig,
  type Logger,
  type RunEvents,
  type StageRunOptions,
} from "@tile-compile/core";
import { builtinEngines } from "@tile-compile/engine-native";
import { loadRecon } from "@tile-compile/recon-native";
import { workRoot } from "./workroot.js";

export interface RunScope {
  container: DependencyContainer;
  registry: EngineRegistry;
  /** The run's distributed executor (`runtime.executor: rabbitmq`), resolved from the container; undefined: each stage runs in this process. */
  executor: Executor | undefined;
  /** What every stage of this run is run with (`runStage`): signal, logger, events, limits, engine options, work root, time limit, observers, executor. */
  stageOptions(loaded: LoadedConfig): StageRunOptions;
  /** Closes the executor (if any) and disposes of the container. */
  dispose(): Promise<void>;
}

/**
 * Load the built-in engines and those named in the configuration (`engines:` and each stage's `engine:`),
 * in that order; then, for each capability in `wanted` and each stage method (`calibration.method`,
 * `registration.engine`, `stacking.method`, …) that none of them provides, the official engine that does
 * (when installed).
 */
export async function loadConfiguredEngines(
  loaded: LoadedConfig,
  cwd: string,
  wanted: string[] = [],
): Promise<{ engine: EngineDefinition; source: string }[]> {
  const engines: { engine: EngineDefinition; source: string }[] = builtinEngines.map((engine) => ({ engine, source: "builtin" }));
  const cfg = loaded.config;
  const opts = (base: string) => ({ configDir: loaded.dir, cwd: base, ...(loaded.file ? { configFile: loaded.file } : {}) });
  for (const spec of cfg.engines) {
    if (spec === "native" || engines.some((e) => e.engine.meta.name === expandEngineName(spec))) continue;
    const { engine, resolved } = await loadEngine(spec, opts(cwd));
    engines.push({ engine, source: resolved.packageDir ?? resolved.entry });
  }
  // The project's own install first, then the one shipped with this CLI (it depends on the official engines).
  const tryLoad = async (spec: string): Promise<void> => {
    for (const base of [cwd, fileURLToPath(new URL("..", import.meta.url))]) {
      try {
        const { engine, resolved } = await loadEngine(spec, opts(base));
        if (!engines.some((e) => e.engine.meta.name === engine.meta.name))
          engines.push({ engine, source: resolved.packageDir ?? resolved.entry });
        return;
      } catch {
        // Not installed here: the planner's errors then name what is missing.
      }
    }
  };
  for (const spec of [cfg.calibration.engine, cfg.registration.provider, cfg.stacking.engine, cfg.composition.engine, cfg.stretch.engine]) {
    if (spec && spec !== "native" && !engines.some((e) => e.engine.meta.name === expandEngineName(spec))) await tryLoad(spec);
  }
  const stageMethods = [
    `calibration:${cfg.calibration.method}`,
    `registration:${cfg.registration.engine}`,
    `stacking:${cfg.stacking.method}`,
  ];
  for (const cap of [...wanted, ...stageMethods]) {
    const official = OFFICIAL_CAPABILITY_ENGINES[cap];
    if (official && !engines.some((e) => cap in e.engine.capabilities)) await tryLoad(official);
  }
  return engines;
}

export async function createRunScope(values: {
  signal: AbortSignal;
  logger: Logger;
  events: RunEvents;
  engines: { engine: EngineDefinition; source: string }[];
  workdir: string;
  threads: number;
  /** Connect the executor `runtime.executor` of this configuration asks for (not for a dry run). */
  executorFrom?: LoadedConfig;
}): Promise<RunScope> {
  // `runtime.threads` is the kernels' thread count for this run (their pool is per process).
  const kernels = loadRecon();
  kernels.setThreads(values.threads);
  const c = rootContainer.createChildContainer();
  c.registerInstance(tokens.Kernels, kernels);
  c.registerInstance(tokens.RunSignal, values.signal);
  c.registerInstance(tokens.RunLogger, values.logger);
  c.registerInstance(tokens.Events, values.events);
  c.registerInstance(tokens.Workdir, values.workdir);
  for (const { engine } of values.engines) c.register(tokens.Engine, { useValue: engine });
  const registry = new EngineRegistry();
  const sources = new Map(values.engines.map((e) => [e.engine, e.source]));
  for (const engine of c.resolveAll(tokens.Engine)) registry.register(engine, sources.get(engine));
  c.registerInstance(tokens.Registry, registry);
  const executor = values.executorFrom
    ? await createExecutor(values.executorFrom, values.logger).catch(async (e: unknown) => {
        await (c.dispose() as Promise<void>);
        throw e;
      })
    : undefined;
  if (executor) c.registerInstance(tokens.RunExecutor, executor);
  const runExecutor = c.isRegistered(tokens.RunExecutor) ? c.resolve(tokens.RunExecutor) : undefined;
  return {
    container: c,
    registry,
    executor: runExecutor,
    stageOptions: (loaded) => ({
      signal: values.signal,
      logger: values.logger,
      events: values.events,
      runtime: loaded.runtime,
      engineOptions: loaded.config.engine_options,
      workRoot: workRoot(),
      ...(loaded.config.runtime.stage_timeout_seconds ? { timeoutMs: loaded.config.runtime.stage_timeout_seconds * 1000 } : {}),
      observers: registry.list().map((r) => r.engine),
      ...(runExecutor ? { executor: runExecutor } : {}),
    }),
    dispose: async () => {
      if (c.isRegistered(tokens.RunExecutor))
        await c
          .resolve(tokens.RunExecutor)
          .close()
          .catch((e: Error) => values.logger.warn(`closing the executor: ${e.message}`));
      await (c.dispose() as Promise<void>);
    },
  };
}

/**
 * The executor `runtime.executor` asks for: `undefined` for `local` (each stage runs its units in this
 * process), or a master connected to RabbitMQ (`runtime.rabbitmq`; the broker URL may come from
 * TILE_COMPILE_BROKER so the password stays out of the file). Close it when the run ends.
 */
export async function createExecutor(loaded: LoadedConfig, logger: Logger): Promise<Executor | undefined> {
  const rt = loaded.config.runtime;
  if (rt.executor === "local") return undefined;
  const rq = rt.rabbitmq!;
  const url = rq.url ?? process.env.TILE_COMPILE_BROKER;
  if (!url)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: loaded.file ?? "tile_compile.yaml",
      issues: ["runtime.rabbitmq.url: not set and TILE_COMPILE_BROKER is empty (amqp://user:password@host:5672)"],
    });
  const { createRabbitExecutor } = await import("@tile-compile/executor-rabbitmq");
  const s3 = rq.s3
    ? {
        ...(rq.s3.endpoint ? { endpoint: rq.s3.endpoint } : {}),
        ...(rq.s3.region ? { region: rq.s3.region } : {}),
        ...(rq.s3.force_path_style !== undefined ? { forcePathStyle: rq.s3.force_path_style } : {}),
      }
    : undefined;
  return createRabbitExecutor({
    url,
    data: rq.data,
    ...(s3 ? { s3 } : {}),
    parallelism: rq.parallelism,
    window: rq.window,
    orphanAfterSeconds: rq.orphan_after_seconds,
    logger,
  });
}

/** One line on what a distributed run's executor did, printed by `run` and `reconstruct` (`stack --json` has the figures as data). */
export function executorSummary(s: ExecutorStats): string {
  return `executor ${s.executor}: ${s.units} units on ${s.workers.length} worker(s) (${s.workers.join(", ")}), ${s.redelivered} redelivered, ${s.reconnects} reconnect(s), ${(s.brokerBytes / 1024).toFixed(1)} KiB through the broker`;
}
