/**
 * @tile-compile/registration-wcs — registration `wcs_anchor`: FITS WCS (TAN + SIP) from headers, or
 * plate solving with astrometry.net `solve-field` (Debian `astrometry.net` + Tycho-2 index 08/09) when a
 * frame has none; each frame reprojected onto the anchor frame's WCS. See anchor.ts.
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine } from "@tile-compile/core";
import { wcsAnchorRegistration } from "./anchor.js";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

const engine: Engine = defineEngine({
  meta: {
    name: pkg.name,
    version: pkg.version,
    apiVersion: 1,
    description: "Plate-solved WCS registration (wcs_anchor) with astrometry.net",
  },
  capabilities: { "registration:wcs_anchor": "stable" },
  registration: { wcs_anchor: wcsAnchorRegistration },
});

export default engine;
export { Wcs, type WcsParams, type Sip } from "./wcs.js";
export { solveField, hintsFromHeader, solveFieldAvailable, type SolveHints } from "./solve.js";
export { registerWcsAnchor, wcsAnchorOptionsSchema, skyHomography, frameWcs, type WcsAnchorOptions } from "./anchor.js";
