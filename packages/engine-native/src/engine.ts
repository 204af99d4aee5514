/**
 * The built-in `native` engine. It registers through `defineEngine` exactly like a third-party engine
 * (STYLE.md §7): `calibration:native`, `background:polynomial|rbf`, `registration:relative`,
 * `stacking:mean|median|rejection|tbqr`, `composition:palette|hdr`, `stretch:autostretch|asinh|ghs`.
 */
import { createRequire } from "node:module";
import {
  defineEngine,
  frameStatsTask,
  refuseWarp,
  readFitsHeader,
  tbqrStageOptionsSchema,
  type Engine,
  type StackingProvider,
  type TbqrStageOptions,
  type Task,
} from "@tile-compile/core";
import { nativeStacking, photometryStarsTask, stackBandTask } from "./stacking/stack.js";
import { calibrateLightTask } from "./calibration/native.js";
import { registerFrameTask, starsTask } from "./registration/relative.js";
import { bandTask, frameMetricsTask, seeingTask, syntheticTask } from "./tbqr/units.js";
import { DEFAULT_TBQR, reconstructTbqr } from "./tbqr/reconstruct.js";
import { relativeRegistration } from "./registration/relative.js";
import { nativeCalibration } from "./calibration/native.js";
import { nativeComposition } from "./composition/native.js";
import { nativeHdrComposition } from "./composition/hdr.js";
import { nativeStretch } from "./stretch/native.js";
import { nativeBackground } from "./background/extract.js";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

/** `stacking:tbqr`: the TBQR options made from tile_compile.yaml (`tbqrStageOptionsSchema`). */
const tbqrStacking: StackingProvider<TbqrStageOptions> = {
  optionsSchema: tbqrStageOptionsSchema,
  stack: async (input, ctx) => {
    refuseWarp(input, "TBQR");
    // The job pipeline and `reconstruct` always pass the configured options (where frames_min guards a
    // run); a caller with no configuration gets the defaults with emergency mode allowed, so a small set
    // is reconstructed (with a warning) rather than refused by a gate nobody set.
    const o = input.options.tbqr ?? {
      ...DEFAULT_TBQR,
      assumptions: { ...DEFAULT_TBQR.assumptions, allowEmergency: true },
    };
    const r = await reconstructTbqr(
      input.frames.map((f) => f.path),
      input.output,
      o,
      ctx,
    );
    const h = await readFitsHeader(input.output);
    return {
      frameCount: r.frames,
      width: h.width,
      height: h.height,
      channels: h.channels,
      frameWeights: input.frames.map((f, i) => ({ path: f.path, weight: r.frameWeights[i]! })),
      tbqr: {
        mode: r.mode,
        tiles: r.tiles,
        fallbackTiles: r.fallbackTiles,
        tileSize: r.T,
        tileStep: r.S,
        validation: r.validation,
        weightMap: r.weightMap,
      },
    };
  },
};

export const nativeEngine: Engine = defineEngine({
  meta: { name: pkg.name, version: pkg.version, apiVersion: 1, description: "Built-in engines of tile-compile (short name: native)" },
  capabilities: {
    "stacking:mean": "stable",
    "stacking:median": "stable",
    "stacking:rejection": "stable",
    "stacking:tbqr": "stable",
    "registration:relative": "stable",
    "calibration:native": "stable",
    "composition:palette": "stable",
    "composition:hdr": "stable",
    "background:polynomial": "stable",
    "background:rbf": "stable",
    "stretch:autostretch": "stable",
    "stretch:asinh": "stable",
    "stretch:ghs": "stable",
  },
  stacking: {
    mean: nativeStacking,
    median: nativeStacking,
    rejection: nativeStacking,
    tbqr: tbqrStacking,
  },
  registration: { relative: relativeRegistration },
  calibration: { native: nativeCalibration(`${pkg.name}@${pkg.version}`) },
  background: { polynomial: nativeBackground("polynomial"), rbf: nativeBackground("rbf") },
  composition: { palette: nativeComposition, hdr: nativeHdrComposition },
  stretch: nativeStretch,
  tasks: [
    calibrateLightTask,
    starsTask,
    registerFrameTask,
    frameStatsTask,
    stackBandTask,
    photometryStarsTask,
    seeingTask,
    frameMetricsTask,
    bandTask,
    syntheticTask,
  ] as Task[],
});

/** Engines every run has, registered before the configured ones. */
export const builtinEngines: readonly Engine[] = [nativeEngine];
