/**
 * Finding, parsing and judging tile_compile.yaml, in three steps (STYLE.md §10):
 * 1. parse — YAML only (configuration is data; loading it runs no code), `$import` presets merged;
 * 2. validate — the zod schema, every problem reported at once as `dot.path: message`;
 * 3. normalise — short engine names expanded, aliases resolved, defaults filled; cross-field rules
 *    return warnings.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { cosmiconfig } from "cosmiconfig";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { configSchema, parseByteSize, type TileCompileConfig } from "./schema.js";

export const CONFIG_SEARCH_PLACES = ["tile_compile.yaml", "tile_compile.yml", ".config/tile_compile.yaml", "package.json"];

export interface LoadedConfig {
  config: TileCompileConfig;
  /** The file it came from, or undefined when defaults are used (no file found). */
  file?: string;
  /** Folder relative engine paths and outputs are resolved from. */
  dir: string;
  warnings: string[];
  /** Resolved runtime limits. */
  runtime: { threads: number; memoryBudgetBytes: number };
}

function parseYamlFile(file: string, seen: Set<string>): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError("TC_CONFIG_NOT_FOUND", { file }, { cause });
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError("TC_CONFIG_INVALID", { file, issues: doc.errors.map((e) => `YAML syntax: ${e.message.split("\n")[0]}`) });
  }
  let value: unknown;
  try {
    // maxAliasCount bounds alias expansion: a "billion laughs" file is a configuration error, not a hang.
    value = doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (e) {
    throw new ConfigError("TC_CONFIG_INVALID", { file, issues: [`YAML: ${(e as Error).message.split("\n")[0]}`] });
  }
  if (typeof value !== "object" || Array.isArray(value))
    throw new ConfigError("TC_CONFIG_INVALID", { file, issues: ["(root): expected a mapping of keys to values"] });
  return withImports(value as Record<string, unknown>, file, seen);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over))
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Record<string, unknown>, v) : v;
  return out;
}

/** `$import: preset.yaml` (or a list): presets merged under this file; this file wins. */
function withImports(value: Record<string, unknown>, file: string, seen: Set<string>): Record<string, unknown> {
  const imp = value.$import;
  if (imp === undefined) return value;
  const list = Array.isArray(imp) ? imp : [imp];
  let base: Record<string, unknown> = {};
  for (const rel of list) {
    if (typeof rel !== "string")
      throw new ConfigError("TC_CONFIG_INVALID", { file, issues: ["$import: expected a path or a list of paths"] });
    const p = resolve(dirname(file), rel);
    if (seen.has(p)) throw new ConfigError("TC_CONFIG_INVALID", { file, issues: [`$import: ${rel} imports itself (cycle)`] });
    if (!existsSync(p)) throw new ConfigError("TC_CONFIG_INVALID", { file, issues: [`$import: ${rel} does not exist (resolved to ${p})`] });
    base = deepMerge(base, parseYamlFile(p, new Set([...seen, p])));
  }
  const { $import: _drop, ...rest } = value;
  void _drop;
  return deepMerge(base, rest);
}

/** Format zod issues as `dot.path: message`, unknown keys named one by one. */
export function formatIssues(error: z.ZodError): string[] {
  const out: string[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push(`${path ? `${path}.` : ""}${key}: unknown key`);
    } else {
      out.push(`${path || "(root)"}: ${issue.message}`);
    }
  }
  return out;
}

/** Validate and normalise a raw configuration object. */
export function validateConfig(raw: unknown, file = "tile_compile.yaml"): { config: TileCompileConfig; warnings: string[] } {
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError("TC_CONFIG_INVALID", { file, issues: formatIssues(parsed.error) });
  const config = parsed.data;
  const warnings: string[] = [];
  // Normalise: the tile_compile README's `average` is our `mean`.
  if (config.stacking.method === "average") config.stacking.method = "mean";
  // Cross-field rules.
  const issues: string[] = [];
  if (config.stacking.sigma[0] > 20 || config.stacking.sigma[1] > 20)
    warnings.push("stacking.sigma: thresholds above 20σ reject nothing; did you mean 2–5?");
  const dup = config.engines.filter((e, i) => config.engines.indexOf(e) !== i);
  if (dup.length > 0) issues.push(`engines: ${dup.join(", ")} listed more than once`);
  if (issues.length > 0) throw new ConfigError("TC_CONFIG_INVALID", { file, issues });
  return { config, warnings };
}

function runtimeLimits(config: TileCompileConfig, cpuCount: number): LoadedConfig["runtime"] {
  return {
    threads: config.runtime.threads === "auto" ? Math.max(1, cpuCount) : config.runtime.threads,
    memoryBudgetBytes: parseByteSize(config.runtime.memory_budget),
  };
}

/**
 * Find and load tile_compile.yaml: `file` when given (--config), else cosmiconfig's project search from
 * `cwd`. With no file anywhere, the defaults apply (and `file` is undefined).
 */
export async function loadConfig(options: { cwd?: string; file?: string; cpuCount?: number } = {}): Promise<LoadedConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const cpus = options.cpuCount ?? (await import("node:os")).availableParallelism();
  const yamlLoader = (filepath: string) => parseYamlFile(filepath, new Set([filepath]));
  const explorer = cosmiconfig("tile_compile", {
    searchPlaces: CONFIG_SEARCH_PLACES,
    searchStrategy: "project",
    loaders: { ".yaml": yamlLoader, ".yml": yamlLoader, noExt: yamlLoader },
    cache: false,
  });
  let result: { config: unknown; filepath: string; isEmpty?: boolean } | null;
  if (options.file) {
    const file = resolve(cwd, options.file);
    if (!existsSync(file)) throw new ConfigError("TC_CONFIG_NOT_FOUND", { file });
    result = await explorer.load(file);
  } else {
    result = await explorer.search(cwd);
  }
  if (!result) {
    const { config, warnings } = validateConfig({}, "(defaults)");
    return { config, dir: cwd, warnings, runtime: runtimeLimits(config, cpus) };
  }
  const { config, warnings } = validateConfig(result.config, result.filepath);
  return { config, file: result.filepath, dir: dirname(result.filepath), warnings, runtime: runtimeLimits(config, cpus) };
}
