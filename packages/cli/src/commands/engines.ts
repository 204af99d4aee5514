/**
 * `tile-compile engines`: built-in engines and every engine the project names or has installed, with
 * their capabilities read from the static package.json manifest — nothing is imported or executed.
 */
import { listInstalledEngines, type LoadedConfig } from "@tile-compile/core";
import { builtinEngines } from "@tile-compile/engine-native";
import { table, type Io } from "../output.js";

export interface EngineListing {
  name: string;
  version: string;
  status: "built-in" | "enabled" | "installed, not enabled" | "missing";
  capabilities: string[];
  source: string;
  problem?: string;
}

export function listEngines(loaded: LoadedConfig, cwd: string): EngineListing[] {
  const out: EngineListing[] = builtinEngines.map((e) => ({
    name: e.meta.name,
    version: e.meta.version,
    status: "built-in",
    capabilities: Object.keys(e.capabilities),
    source: "built-in (short name: native)",
  }));
  const configured = loaded.config.engines.filter((e) => e !== "native");
  for (const item of listInstalledEngines({ configDir: loaded.dir, cwd, configured })) {
    if (item.error || !item.resolved) {
      out.push({
        name: item.name,
        version: "—",
        status: "missing",
        capabilities: [],
        source: "—",
        problem: item.error?.split("\n")[0] ?? "not found",
      });
      continue;
    }
    const r = item.resolved;
    const listing: EngineListing = {
      name: r.packageName,
      version: r.version ?? "—",
      status: item.configured ? "enabled" : "installed, not enabled",
      capabilities: r.manifest?.provides ?? [],
      source: r.packageDir ?? r.entry,
    };
    if (!r.manifest) listing.problem = "package.json has no tileCompile manifest; capabilities are known only after loading";
    out.push(listing);
  }
  return out;
}

export function enginesCommand(loaded: LoadedConfig, cwd: string, opts: { json?: boolean }, io: Io): number {
  const list = listEngines(loaded, cwd);
  if (opts.json) {
    io.out(JSON.stringify({ config: loaded.file ?? null, engines: list }, null, 2));
    return 0;
  }
  io.out(`config: ${loaded.file ?? "(none found; defaults)"}`);
  io.out(
    table(
      ["engine", "version", "status", "capabilities"],
      list.map((e) => [e.name, e.version, e.status, e.capabilities.join(", ") || "(none)"]),
    ),
  );
  for (const e of list) if (e.problem) io.out(`\n${e.name}: ${e.problem}`);
  return list.some((e) => e.status === "missing") ? 1 : 0;
}
