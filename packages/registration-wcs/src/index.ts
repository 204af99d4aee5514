/**
 * @tile-compile/registration-wcs — NOT BUILT YET.
 *
 * Registration `wcs_anchor`: FITS WCS (TAN + SIP) from headers, or plate solving with astrometry.net `solve-field` (Debian `astrometry.net` + Tycho-2 index 08/09) when a frame has none; each frame reprojected onto the anchor frame's WCS.
 *
 * Until then this package registers an engine with an empty capability map, so the planner reports
 * honestly that nothing here provides a stage (CapabilityError names the engines that do), and
 * `tile-compile engines` lists it with no capabilities. Planned capabilities: "registration:wcs_anchor".
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine } from "@tile-compile/core";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

const engine: Engine = defineEngine({
  meta: { name: pkg.name, version: pkg.version, apiVersion: 1, description: "not built yet: provides no capability" },
  capabilities: {},
});

export default engine;
