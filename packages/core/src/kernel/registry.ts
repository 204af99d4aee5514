/**
 * The engine registry: every engine of a run, built-in or loaded, registered the same way. Selection of
 * the provider for a stage happens here, and nowhere else: by `stage:method` capability, with the
 * engine named in tile_compile.yaml when one is, and an error when two engines could serve and the
 * configuration does not choose (never last-wins). Once a plan exists the registry is frozen.
 */
import { CapabilityError, TileCompileError } from "../errors/index.js";
import type { CapabilityId, EngineDefinition, Stability, StageName } from "./contracts.js";

/** Short names of official engines; bare names not listed here map to `@tile-compile/engine-<name>`. */
export const OFFICIAL_SHORT_NAMES: Readonly<Record<string, string>> = {
  native: "@tile-compile/engine-native",
  siril: "@tile-compile/engine-siril",
  "registration-wcs": "@tile-compile/registration-wcs",
  wcs: "@tile-compile/registration-wcs",
  rabbitmq: "@tile-compile/executor-rabbitmq",
};

/** Expand a short engine name to its package name; full names and paths pass through. */
/**
 * Capabilities that an official engine provides, so a configuration naming only the method
 * (`registration.engine: wcs_anchor`) loads the engine without listing it under `engines:`.
 */
export const OFFICIAL_CAPABILITY_ENGINES: Readonly<Record<string, string>> = {
  "registration:wcs_anchor": "@tile-compile/registration-wcs",
  "registration:siril": "@tile-compile/engine-siril",
  "calibration:siril": "@tile-compile/engine-siril",
};

export function expandEngineName(name: string): string {
  if (name in OFFICIAL_SHORT_NAMES) return OFFICIAL_SHORT_NAMES[name]!;
  if (/^[a-z0-9][a-z0-9_-]*$/.test(name) && !name.startsWith("tile-compile-")) return `@tile-compile/engine-${name}`;
  return name;
}

export interface RegisteredEngine {
  engine: EngineDefinition;
  /** Where it came from: `builtin`, a package name or a file path. */
  source: string;
}

export interface Selection {
  capability: CapabilityId;
  engine: EngineDefinition;
  stability: Stability;
}

export class EngineRegistry {
  private readonly engines = new Map<string, RegisteredEngine>();
  private frozen = false;

  register(engine: EngineDefinition, source = "builtin"): void {
    if (this.frozen) throw new TileCompileError("TC_REGISTRY_FROZEN", { engine: engine.meta.name });
    const existing = this.engines.get(engine.meta.name);
    if (existing) {
      if (existing.engine === engine) return;
      throw new TileCompileError("TC_ENGINE_DUPLICATE", { engine: engine.meta.name, sources: `${existing.source} and ${source}` });
    }
    this.engines.set(engine.meta.name, { engine, source });
  }

  /** Called by the planner once a plan exists; later `register()` calls throw. */
  freeze(): void {
    this.frozen = true;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  list(): RegisteredEngine[] {
    return [...this.engines.values()];
  }

  /** Look an engine up by package name or short name. */
  get(name: string): EngineDefinition | undefined {
    return this.engines.get(name)?.engine ?? this.engines.get(expandEngineName(name))?.engine;
  }

  providersOf(capability: CapabilityId): EngineDefinition[] {
    return this.list()
      .map((r) => r.engine)
      .filter((e) => capability in e.capabilities);
  }

  /**
   * Choose the engine for `stage:method`. `engineName` is what the configuration says (`field` names
   * the YAML path for messages). Without a name the built-in engine wins when it qualifies; otherwise
   * throws CapabilityError when none or more than one engine qualifies.
   */
  select(stage: StageName, method: string, engineName: string | undefined, field: string): Selection {
    const capability = `${stage}:${method}` as CapabilityId;
    const providers = this.providersOf(capability);
    const names = providers.map((e) => e.meta.name);
    if (engineName !== undefined) {
      const engine = this.get(engineName);
      if (!engine) {
        throw new CapabilityError("TC_CAPABILITY_MISSING", {
          capability,
          field,
          engine: engineName,
          providers: names,
          reason: "engine not loaded",
        });
      }
      const stability = engine.capabilities[capability];
      // What this engine does offer for the stage, so `calibration: { engine: siril }` (method left at its
      // default, native) is told to set `calibration.method: siril`.
      const offers = Object.keys(engine.capabilities)
        .filter((c) => c.startsWith(`${stage}:`))
        .map((c) => c.slice(stage.length + 1));
      if (!stability)
        throw new CapabilityError("TC_CAPABILITY_MISSING", {
          capability,
          field,
          engine: engine.meta.name,
          providers: names,
          ...(offers.length ? { offers } : {}),
        });
      return { capability, engine, stability };
    }
    if (providers.length === 0) throw new CapabilityError("TC_CAPABILITY_MISSING", { capability, field, providers: [] });
    // The built-in engines are the default: loading Siril for one stage must not make every stage it
    // also offers ambiguous. Among other engines, the configuration must say which one.
    const builtin = providers.find((e) => e.meta.name === OFFICIAL_SHORT_NAMES.native);
    if (providers.length > 1 && !builtin)
      throw new CapabilityError("TC_CAPABILITY_AMBIGUOUS", {
        capability,
        field: `${field.replace(/\.method$/, "")}.engine`,
        providers: names,
      });
    const engine = builtin ?? providers[0]!;
    return { capability, engine, stability: engine.capabilities[capability]! };
  }
}
