/**
 * @tile-compile/engine-siril — Siril (`siril-cli`, Debian `siril` 1.0.6; dialects 1.0 / 1.2 / 1.4) as an
 * engine: `calibration:siril` (masters and light calibration), `registration:siril` and
 * `stacking:mean|median|rejection`. Scripts come from typed commands (script.ts), runs are checked for
 * Siril's exit-0 failures (siril.ts), and outputs are written by our code in ADU with our provenance
 * (stages.ts). Select it per stage in tile_compile.yaml: `calibration: { method: siril }`,
 * `registration: { engine: siril }`, `stacking: { engine: siril, method: rejection }`.
 *
 * Composition and stretch are not offered: Siril 1.0.6 has no `rgbcomp`, `pixelmath` or `autostretch`
 * (engines-on-debian.md §1.4), so the capability map leaves them out and the planner says so before a run.
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine, type OptionsSchema } from "@tile-compile/core";
import { locateSiril } from "./siril.js";
import { findstarIssues, findstarOf, sirilBackground, sirilCalibration, sirilRegistration, sirilStacking } from "./stages.js";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

/**
 * `engine_options."@tile-compile/engine-siril"`: `path` (siril-cli), `timeout_s` (per siril-cli run),
 * `findstar: { sigma, roundness }` (Siril's star detection for registration, `setfindstar`).
 */
export const optionsSchema: OptionsSchema = {
  "~standard": {
    version: 1,
    vendor: "tile-compile",
    validate(value: unknown) {
      const issues: { message: string; path: string[] }[] = [];
      if (typeof value !== "object" || value === null || Array.isArray(value)) return { issues: [{ message: "must be a mapping" }] };
      for (const [k, v] of Object.entries(value)) {
        if (k === "path") {
          if (typeof v !== "string" || v === "") issues.push({ message: "must be the path of siril-cli", path: [k] });
        } else if (k === "timeout_s") {
          if (typeof v !== "number" || !(v > 0)) issues.push({ message: "must be a positive number of seconds", path: [k] });
        } else if (k === "findstar") for (const m of findstarIssues(v)) issues.push({ message: m, path: [k] });
        else issues.push({ message: `unknown option (known: path, timeout_s, findstar)`, path: [k] });
      }
      return issues.length ? { issues } : { value };
    },
  },
};

const engine: Engine = defineEngine({
  meta: {
    name: pkg.name,
    version: pkg.version,
    apiVersion: 1,
    description: "Siril (siril-cli 1.0/1.2/1.4): calibration, registration and stacking",
  },
  capabilities: {
    "calibration:siril": "stable",
    "background:polynomial": "stable",
    "stacking:mean": "stable",
    "stacking:median": "stable",
    "stacking:rejection": "stable",
    "registration:siril": "stable",
  },
  optionsSchema,
  calibration: { siril: sirilCalibration },
  background: { polynomial: sirilBackground },
  stacking: { mean: sirilStacking, median: sirilStacking, rejection: sirilStacking },
  registration: { siril: sirilRegistration },
  // Before any pixel work: siril-cli must be there (TC_TOOL_MISSING names how to install or configure it).
  preflight(options) {
    findstarOf(options); // a bad engine_options.findstar fails before any pixel work
    locateSiril(typeof options.path === "string" ? options.path : undefined);
  },
});

export default engine;
export { locateSiril, runSiril, type Siril, type RunOptions } from "./siril.js";
export { render, dialectOf, type Command, type Dialect } from "./script.js";
export {
  findstarOf,
  parseRegistrationLog,
  sirilBackground,
  sirilCalibration,
  sirilRegister,
  sirilStack,
  type SirilEngineOptions,
} from "./stages.js";
