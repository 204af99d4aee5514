/**
 * Picks the backend. `TILE_COMPILE_RECON` = `native` | `js` | `auto` (default): auto uses the native
 * addon when it loads and otherwise the TypeScript backend, saying so once on stderr; a forced `native`
 * that cannot load throws NativeBindingError (TC_NATIVE_UNAVAILABLE) with the reason.
 *
 * The addon is looked up as `recon.<platform>.node` next to the package (built from source with
 * `pnpm --filter @tile-compile/recon-native build:native`), then in the per-platform npm package
 * `@tile-compile/recon-native-<platform>` that napi's release layout publishes; `TILE_COMPILE_RECON_ADDON`
 * overrides both with one path.
 */
import { NativeBindingError } from "@tile-compile/errors";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { Backend } from "./backend.js";
import type { ReconBackend, ReconBackendKind } from "./contract.js";
import { jsKernels } from "./js/index.js";
import type { RawKernels } from "./raw.js";

const require = createRequire(import.meta.url);

/** napi-rs platform suffix, e.g. `linux-x64-gnu`. */
export function platformTriple(): string {
  const { platform, arch } = process;
  if (platform !== "linux") return `${platform}-${arch}`;
  const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  return `linux-${arch}-${glibc ? "gnu" : "musl"}`;
}

function loadAddon(): RawKernels {
  const triple = platformTriple();
  const local = fileURLToPath(new URL(`../recon.${triple}.node`, import.meta.url));
  // TILE_COMPILE_RECON_ADDON names an explicit .node file (a custom build; also how tests make loading fail).
  const explicit = process.env.TILE_COMPILE_RECON_ADDON;
  const candidates = explicit ? [explicit] : [local, `@tile-compile/recon-native-${triple}`];
  const problems: string[] = [];
  for (const c of candidates) {
    if ((c === local || c === explicit) && !existsSync(c)) {
      problems.push(`${c} does not exist (build it with cargo: pnpm --filter @tile-compile/recon-native build:native)`);
      continue;
    }
    try {
      const mod = require(c) as RawKernels;
      if (typeof mod.tileMetrics !== "function") throw new Error("it does not export the kernel table");
      return mod;
    } catch (e) {
      problems.push(`${c}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  throw new NativeBindingError("TC_NATIVE_UNAVAILABLE", { reason: problems.join("; ") });
}

const cache = new Map<ReconBackendKind, ReconBackend>();
let warned = false;

/** The backend to use, per `TILE_COMPILE_RECON` (or `prefer`); cached per kind. */
export function loadRecon(prefer?: ReconBackendKind | "auto"): ReconBackend {
  const want = prefer ?? parseEnv();
  if (want === "js") return cached("js", () => new Backend("js", jsKernels));
  if (want === "native") return cached("native", () => new Backend("native", loadAddon()));
  try {
    return cached("native", () => new Backend("native", loadAddon()));
  } catch (e) {
    if (!warned) {
      warned = true;
      process.stderr.write(
        `tile-compile: native kernels unavailable, using the TypeScript backend (slower). Reason: ${(e as Error).message}\n`,
      );
    }
    return cached("js", () => new Backend("js", jsKernels));
  }
}

/** True when the native addon loads (without warning). */
export function nativeAvailable(): boolean {
  try {
    cached("native", () => new Backend("native", loadAddon()));
    return true;
  } catch {
    return false;
  }
}

function cached(kind: ReconBackendKind, make: () => ReconBackend): ReconBackend {
  let b = cache.get(kind);
  if (!b) {
    b = make();
    cache.set(kind, b);
  }
  return b;
}

function parseEnv(): ReconBackendKind | "auto" {
  const v = (process.env.TILE_COMPILE_RECON ?? "auto").trim().toLowerCase();
  if (v === "js" || v === "native" || v === "auto" || v === "") return (v || "auto") as ReconBackendKind | "auto";
  throw new NativeBindingError("TC_NATIVE_UNAVAILABLE", { reason: `TILE_COMPILE_RECON="${v}" is not one of js, native, auto` });
}
