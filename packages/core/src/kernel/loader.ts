/**
 * Loading engines named in tile_compile.yaml. Resolution is explicit and by name: a short name of an
 * official engine, a full npm package name, or a relative path — resolved from the config file's
 * folder, then the current folder. We look for that one package in the node_modules folders of those
 * two folders and their parents (Node's own rule); we never list or crawl node_modules.
 *
 * Loading fails in four distinct ways (STYLE.md §5): EngineNotFoundError, EngineLoadError (cause:
 * the import error), EngineContractError, EngineVersionError.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { EngineContractError, EngineLoadError, EngineNotFoundError } from "../errors/index.js";
import type { EngineDefinition } from "./contracts.js";
import { assertApiVersion, engineContractProblems } from "./define.js";
import { expandEngineName } from "./registry.js";

/** The static `tileCompile` block of an engine's package.json. */
export interface EngineManifest {
  apiVersion: number;
  provides: string[];
}

export interface ResolvedEngine {
  /** As written in the configuration. */
  specifier: string;
  /** Package name, or the path for path engines. */
  packageName: string;
  /** Absolute path of the module to import. */
  entry: string;
  packageDir?: string;
  version?: string;
  manifest?: EngineManifest;
  keywords?: string[];
}

interface PackageJson {
  name?: string;
  version?: string;
  main?: string;
  exports?: unknown;
  keywords?: string[];
  tileCompile?: EngineManifest;
}

function isPathSpecifier(s: string): boolean {
  return s.startsWith("./") || s.startsWith("../") || isAbsolute(s) || s === "." || s === "..";
}

function readPackageJson(dir: string): PackageJson | undefined {
  const p = join(dir, "package.json");
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, "utf8")) as PackageJson;
}

/** The ESM entry of a package: exports["."] (import/default conditions), else main, else index.js. */
function packageEntry(dir: string, pkg: PackageJson): string {
  let target: unknown = pkg.exports;
  if (typeof target === "object" && target !== null && "." in (target as object)) target = (target as Record<string, unknown>)["."];
  for (let i = 0; i < 4 && typeof target === "object" && target !== null; i++) {
    const t = target as Record<string, unknown>;
    target = t.import ?? t.node ?? t.default;
  }
  const rel = typeof target === "string" ? target : (pkg.main ?? "index.js");
  return resolve(dir, rel);
}

function findPackageDir(name: string, from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** Resolve an engine specifier without importing it. */
export function resolveEngine(specifier: string, options: { configDir: string; cwd: string; configFile?: string }): ResolvedEngine {
  const bases = [...new Set([options.configDir, options.cwd])];
  if (isPathSpecifier(specifier)) {
    for (const base of bases) {
      const p = resolve(base, specifier);
      if (!existsSync(p)) continue;
      if (statSync(p).isDirectory()) {
        const pkg = readPackageJson(p);
        if (!pkg) continue;
        return {
          specifier,
          packageName: pkg.name ?? p,
          entry: packageEntry(p, pkg),
          packageDir: p,
          ...(pkg.version ? { version: pkg.version } : {}),
          ...(pkg.tileCompile ? { manifest: pkg.tileCompile } : {}),
          ...(pkg.keywords ? { keywords: pkg.keywords } : {}),
        };
      }
      return { specifier, packageName: p, entry: p };
    }
    throw new EngineNotFoundError("TC_ENGINE_NOT_FOUND", {
      engine: specifier,
      packageName: specifier,
      configFile: options.configFile ?? "tile_compile.yaml",
      searched: bases.join(" and "),
    });
  }
  const packageName = expandEngineName(specifier);
  for (const base of bases) {
    const dir = findPackageDir(packageName, base);
    if (!dir) continue;
    const pkg = readPackageJson(dir)!;
    return {
      specifier,
      packageName,
      entry: packageEntry(dir, pkg),
      packageDir: dir,
      ...(pkg.version ? { version: pkg.version } : {}),
      ...(pkg.tileCompile ? { manifest: pkg.tileCompile } : {}),
      ...(pkg.keywords ? { keywords: pkg.keywords } : {}),
    };
  }
  throw new EngineNotFoundError("TC_ENGINE_NOT_FOUND", {
    engine: specifier,
    packageName,
    configFile: options.configFile ?? "tile_compile.yaml",
    searched: bases.join(" and "),
  });
}

/** Unwrap `default` once or twice (ESM default, or CJS interop that wraps it again). */
function unwrapDefault(mod: unknown): unknown {
  let v = mod;
  for (let i = 0; i < 2; i++) {
    if (typeof v === "object" && v !== null && "default" in v && !("meta" in v)) v = (v as { default: unknown }).default;
  }
  return v;
}

/** Import a resolved engine and check it against the contract and its manifest. */
export async function importEngine(resolved: ResolvedEngine): Promise<EngineDefinition> {
  let mod: unknown;
  try {
    mod = await import(pathToFileURL(resolved.entry).href);
  } catch (cause) {
    throw new EngineLoadError(
      "TC_ENGINE_LOAD",
      { engine: resolved.specifier, entry: resolved.entry, reason: (cause as Error)?.message ?? String(cause) },
      { cause },
    );
  }
  const engine = unwrapDefault(mod);
  const problems = engineContractProblems(engine);
  if (problems.length === 0 && resolved.manifest) {
    const declared = Object.keys((engine as EngineDefinition).capabilities).sort();
    const listed = [...(resolved.manifest.provides ?? [])].sort();
    if (declared.join() !== listed.join())
      problems.push(
        `package.json tileCompile.provides [${listed.join(", ")}] differs from the engine's capabilities [${declared.join(", ")}]`,
      );
  }
  if (problems.length > 0) throw new EngineContractError("TC_ENGINE_CONTRACT", { engine: resolved.specifier, problems });
  assertApiVersion(engine as EngineDefinition);
  return engine as EngineDefinition;
}

export async function loadEngine(
  specifier: string,
  options: { configDir: string; cwd: string; configFile?: string },
): Promise<{ engine: EngineDefinition; resolved: ResolvedEngine }> {
  const resolved = resolveEngine(specifier, options);
  return { engine: await importEngine(resolved), resolved };
}

/** True for package names that follow the engine naming convention (STYLE.md §4). */
export function isEnginePackageName(name: string): boolean {
  return (
    /^@tile-compile\/(engine-|registration-|executor-|stacking-|calibration-|composition-|stretch-)/.test(name) ||
    /^(@[^/]+\/)?tile-compile-engine-/.test(name)
  );
}

/**
 * Engines a project has installed, from its package.json dependencies (by naming convention) plus the
 * ones named in the configuration, each with its static manifest. Nothing is imported or executed.
 */
export function listInstalledEngines(options: {
  configDir: string;
  cwd: string;
  configured: string[];
}): { name: string; resolved?: ResolvedEngine; error?: string; configured: boolean }[] {
  const names = new Map<string, boolean>();
  for (const c of options.configured) names.set(c, true);
  for (const base of new Set([options.configDir, options.cwd])) {
    for (let dir = resolve(base); ; dir = dirname(dir)) {
      const pkg = readPackageJson(dir) as
        (PackageJson & { dependencies?: Record<string, string>; devDependencies?: Record<string, string> }) | undefined;
      if (pkg) {
        for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })) {
          const configured = options.configured.some((c) => expandEngineName(c) === dep);
          if (isEnginePackageName(dep) && !configured && !names.has(dep)) names.set(dep, false);
        }
        break;
      }
      if (dirname(dir) === dir) break;
    }
  }
  return [...names].map(([name, configured]) => {
    try {
      return { name, configured, resolved: resolveEngine(name, options) };
    } catch (e) {
      return { name, configured, error: (e as Error).message };
    }
  });
}
