/**
 * `defineEngine` and the contract check shared by the loader and the conformance kit.
 */
import { EngineContractError, EngineVersionError } from "../errors/index.js";
import { ENGINE_BRAND, STAGE_NAMES, SUPPORTED_API_VERSIONS, type Engine, type EngineDefinition, type StageName } from "./contracts.js";

const PROVIDER_METHOD: Record<StageName, string> = {
  calibration: "calibrate",
  background: "extract",
  registration: "register",
  stacking: "stack",
  composition: "compose",
  stretch: "stretch",
};
const STABILITIES = new Set(["stable", "experimental", "deprecated"]);

/**
 * List every way `value` fails the engine contract (empty when it conforms). Duck-typed on purpose: an
 * engine built against another copy of @tile-compile/core is fine if its shape is right.
 */
export function engineContractProblems(value: unknown): string[] {
  const problems: string[] = [];
  if (typeof value !== "object" || value === null)
    return [`the engine is ${value === null ? "null" : typeof value}, not an object from defineEngine()`];
  const e = value as Partial<EngineDefinition> & Record<string, unknown>;
  const meta = e.meta;
  if (typeof meta !== "object" || meta === null) problems.push("meta is missing");
  else {
    if (typeof meta.name !== "string" || meta.name === "") problems.push("meta.name must be the package name (non-empty string)");
    if (typeof meta.version !== "string" || !/^\d+\.\d+\.\d+/.test(meta.version))
      problems.push("meta.version must be a semver version string");
    if (typeof meta.apiVersion !== "number") problems.push("meta.apiVersion must be a number");
  }
  if (typeof e.capabilities !== "object" || e.capabilities === null) {
    problems.push("capabilities must be an object mapping 'stage:method' to 'stable' | 'experimental' | 'deprecated'");
    return problems;
  }
  for (const [cap, stability] of Object.entries(e.capabilities)) {
    const [stage, method, extra] = cap.split(":");
    if (!stage || !method || extra !== undefined || !STAGE_NAMES.includes(stage as StageName)) {
      problems.push(`capability "${cap}" is not "stage:method" with stage one of ${STAGE_NAMES.join(", ")}`);
      continue;
    }
    if (!STABILITIES.has(stability as string))
      problems.push(`capability "${cap}" has stability ${JSON.stringify(stability)}; use stable, experimental or deprecated`);
    const group = e[stage] as Record<string, unknown> | undefined;
    const provider = group?.[method] as Record<string, unknown> | undefined;
    const fn = PROVIDER_METHOD[stage as StageName];
    if (!provider || typeof provider[fn] !== "function")
      problems.push(`capability "${cap}" is declared but ${stage}.${method}.${fn}() is missing`);
  }
  for (const stage of STAGE_NAMES) {
    const group = e[stage];
    if (group === undefined) continue;
    if (typeof group !== "object" || group === null) {
      problems.push(`${stage} must be an object keyed by method`);
      continue;
    }
    for (const method of Object.keys(group)) {
      if (!(`${stage}:${method}` in e.capabilities))
        problems.push(`${stage}.${method} is provided but capability "${stage}:${method}" is not declared`);
    }
  }
  for (const obs of ["onFrameDone", "onStageDone"] as const) {
    if (e[obs] !== undefined && typeof e[obs] !== "function") problems.push(`${obs} must be a function`);
  }
  if (
    e.tasks !== undefined &&
    (!Array.isArray(e.tasks) ||
      e.tasks.some((t) => typeof (t as { name?: unknown }).name !== "string" || typeof (t as { run?: unknown }).run !== "function"))
  )
    problems.push("tasks must be an array of tasks made with defineTask (a name and a run function)");
  if (
    e.optionsSchema !== undefined &&
    typeof (e.optionsSchema as { "~standard"?: { validate?: unknown } })["~standard"]?.validate !== "function"
  ) {
    problems.push("optionsSchema must implement Standard Schema v1 (zod ≥ 3.24, valibot ≥ 1)");
  }
  return problems;
}

/** Throw EngineVersionError when the engine speaks an API version this core does not. */
export function assertApiVersion(engine: { meta: { name: string; apiVersion: number } }): void {
  if (!SUPPORTED_API_VERSIONS.includes(engine.meta.apiVersion)) {
    throw new EngineVersionError("TC_ENGINE_VERSION", {
      engine: engine.meta.name,
      apiVersion: engine.meta.apiVersion,
      supported: SUPPORTED_API_VERSIONS.join(", "),
    });
  }
}

/**
 * Declare an engine. Checks the contract at definition time, so an engine author sees mistakes when
 * their module loads rather than in the middle of a run. Returns a frozen, branded object.
 *
 * ```ts
 * export default defineEngine({
 *   meta: { name: pkg.name, version: pkg.version, apiVersion: 1 },
 *   capabilities: { "stacking:maximum": "experimental" },
 *   stacking: { maximum: { stack: (input, ctx) => maximumStack(input, ctx) } },
 * });
 * ```
 */
export function defineEngine<const T extends EngineDefinition>(definition: T): T & Engine {
  const problems = engineContractProblems(definition);
  if (problems.length > 0) throw new EngineContractError("TC_ENGINE_CONTRACT", { engine: definition?.meta?.name ?? "(unnamed)", problems });
  assertApiVersion(definition);
  const engine = { ...definition, [ENGINE_BRAND]: true as const };
  return Object.freeze(engine);
}

/** The engine's provider for `stage:method`, if any. */
export function providerOf<S extends StageName>(
  engine: EngineDefinition,
  stage: S,
  method: string,
): import("./contracts.js").StageProviders[S] | undefined {
  const group = engine[stage] as Record<string, import("./contracts.js").StageProviders[S]> | undefined;
  return group?.[method];
}
