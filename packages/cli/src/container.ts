/**
 * The composition root: the only place that knows the DI container (STYLE.md §8). A run gets a child
 * container holding its signal, logger, events and engines; it is disposed when the run ends.
 * Engines never see it.
 */
import { fileURLToPath } from "node:url";
import { container as rootContainer, type DependencyContainer } from "tsyringe";
import {
  OFFICIAL_CAPABILITY_ENGINES,
  builtinEngines,
  EngineRegistry,
  loadEngine,
  tokens,
  type EngineDefinition,
  type LoadedConfig,
  type Logger,
  type RunEvents,
} from "@tile-compile/core";

export interface RunScope {
  container: DependencyContainer;
  registry: EngineRegistry;
  dispose(): Promise<void>;
}

/**
 * Load the built-in engines and those named in the configuration, in that order; then, for each
 * capability in `wanted` that none of them provides, the official engine that does (when installed).
 */
export async function loadConfiguredEngines(loaded: LoadedConfig, cwd: string, wanted: string[] = []): Promise<{ engine: EngineDefinition; source: string }[]> {
  const engines: { engine: EngineDefinition; source: string }[] = builtinEngines.map((engine) => ({ engine, source: "builtin" }));
  for (const spec of loaded.config.engines) {
    if (spec === "native") continue;
    const { engine, resolved } = await loadEngine(spec, { configDir: loaded.dir, cwd, ...(loaded.file ? { configFile: loaded.file } : {}) });
    engines.push({ engine, source: resolved.packageDir ?? resolved.entry });
  }
  for (const cap of wanted) {
    const official = OFFICIAL_CAPABILITY_ENGINES[cap];
    if (!official || engines.some((e) => cap in e.engine.capabilities)) continue;
    // The project's own install first, then the one shipped with this CLI (it depends on the official engines).
    for (const base of [cwd, fileURLToPath(new URL("..", import.meta.url))]) {
      try {
        const { engine, resolved } = await loadEngine(official, { configDir: loaded.dir, cwd: base, ...(loaded.file ? { configFile: loaded.file } : {}) });
        engines.push({ engine, source: resolved.packageDir ?? resolved.entry });
        break;
      } catch {
        // Not installed here: the planner's CapabilityError then names what provides the method.
      }
    }
  }
  return engines;
}

export async function createRunScope(values: { signal: AbortSignal; logger: Logger; events: RunEvents; engines: { engine: EngineDefinition; source: string }[]; workdir: string }): Promise<RunScope> {
  const c = rootContainer.createChildContainer();
  c.registerInstance(tokens.RunSignal, values.signal);
  c.registerInstance(tokens.RunLogger, values.logger);
  c.registerInstance(tokens.Events, values.events);
  c.registerInstance(tokens.Workdir, values.workdir);
  for (const { engine } of values.engines) c.register(tokens.Engine, { useValue: engine });
  const registry = new EngineRegistry();
  const sources = new Map(values.engines.map((e) => [e.engine, e.source]));
  for (const engine of c.resolveAll(tokens.Engine)) registry.register(engine, sources.get(engine));
  c.registerInstance(tokens.Registry, registry);
  return { container: c, registry, dispose: () => c.dispose() as Promise<void> };
}
