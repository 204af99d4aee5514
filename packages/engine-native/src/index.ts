/**
 * @tile-compile/engine-native — the built-in engine of tile-compile, registered by the CLI through
 * `defineEngine` exactly like any other engine (short name `native`).
 */
export { nativeEngine, builtinEngines } from "./engine.js";
export { nativeStack, stackBandTask, type StackBandPlan, type StackBandResult } from "./stacking/stack.js";
export { registerRelative, framesInFlight, type RelativeOptions } from "./registration/relative.js";
export { nativeCalibration } from "./calibration/native.js";
export { calibrateLight, defectMap, type Masters, type DefectMap } from "./calibration/apply.js";
export { nativeComposition } from "./composition/native.js";
export { blendHdr, nativeHdrComposition } from "./composition/hdr.js";
export { nativeStretch, writePng } from "./stretch/native.js";
export { extractBackground, backgroundModel, type BackgroundOptions } from "./background/extract.js";
export {
  reconstructTbqr,
  DEFAULT_TBQR,
  seamFigures,
  kmeans,
  budgetKappa,
  noiseBudgetKappa,
  tileFractions,
  validationFailures,
  type TbqrOptions,
  type TbqrValidation,
  type TbqrResult,
} from "./tbqr/reconstruct.js";
export { tileGeometry, tileGrid, globalWeights, localWeights, robustZ, clusterCount, modeGate, type TbqrMode } from "./tbqr/math.js";

/** The engine, as the loader expects it (`engines: [native]`, `tile-compile worker --engine native`). */
export { nativeEngine as default } from "./engine.js";
