/**
 * @tile-compile/engine-siril — NOT BUILT YET.
 *
 * Siril (`siril-cli`, Debian `siril` 1.0.6; dialects 1.0 / 1.2 / 1.4) as an engine: master building and light calibration, background extraction, registration `siril`, stacking with rejection, normalisation and FWHM/roundness filters, composition where the Siril version allows.
 *
 * Until then this package registers an engine with an empty capability map, so the planner reports
 * honestly that nothing here provides a stage (CapabilityError names the engines that do), and
 * `tile-compile engines` lists it with no capabilities. Planned capabilities: "calibration:siril", "registration:siril", "stacking:mean", "stacking:median", "stacking:rejection".
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine } from "@tile-compile/core";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

const engine: Engine = defineEngine({
  meta: { name: pkg.name, version: pkg.version, apiVersion: 1, description: "not built yet: provides no capability" },
  capabilities: {},
});

export default engine;
