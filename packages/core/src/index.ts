/**
 * @tile-compile/core — contracts, kernel, errors, configuration, FITS I/O, frame scanning, the job and
 * calibration library, the run report and the star toolkit. The built-in engine is @tile-compile/engine-native.
 * Depends on no other package of ours.
 */
export * from "./errors/index.js";
export * from "@tile-compile/fits";
export * from "./kernel/index.js";
export * from "./config/schema.js";
export * from "./config/load.js";
export * from "./frames/metadata.js";
export * from "./frames/scan.js";
export { seededRandom } from "./util/random.js";
export {
  starPlanes,
  formatFrameName,
  bayerOf,
  frameStars,
  frameMetrics,
  readFrame,
  matchTolerance,
  warpOntoReference,
  detectionPlane,
  type FrameStars,
  type WarpOntoReferenceOptions,
} from "./registration/stars.js";
export { cleanStars } from "./registration/clean.js";
export {
  readWarpedBand,
  warpFrame,
  warpRows,
  warpRowsSource,
  demosaicMargin,
  sourceRows,
  bandInverse,
  cfaOf,
  refuseWarp,
  type WarpPlan,
} from "./registration/warp.js";
export { pixelAgreement, pixelsConfirm, type PixelAgreement } from "./registration/verify.js";
export { matchStars, refineMatch, type MatchOptions, type MatchResult } from "./registration/match.js";
export {
  MIN_PAIRS,
  solve as solveLinear,
  fitTransform,
  apply as applyTransform,
  invert as invertTransform,
  multiply as multiplyTransform,
  describe as describeTransform,
  TRANSFORM_MODELS,
  type Point,
  type TransformModel,
} from "./registration/geometry.js";
export { jobSchema, jobJsonSchema, JOB_TYPES, type JobFile } from "./jobs/schema.js";
export { normalizeFilter, DEFAULT_FILTER_ALIASES } from "./jobs/filters.js";
export { libraryLayout, findBaseDir, masterName, rawSets, expLabel, type LibraryLayout, type RawSet } from "./jobs/library.js";
export {
  planJob,
  masterStamp,
  recipeOf,
  hashOf,
  calibratedName,
  type JobPlan,
  type JobProblem,
  type MasterPlan,
  type Decision,
  type Requirement,
  type LightFrame,
  type CalibratedGroup,
  type PlanOptions,
} from "./jobs/plan.js";
export {
  runCalibrateStage,
  writeRunRecord,
  writeRunJson,
  jobError,
  type CalibrateStageResult,
  type CalibrateStageOptions,
} from "./jobs/run.js";
export { buildMaster, masterBandRows, masterHeader } from "./calibration/masters.js";
export {
  CHECK_NAMES,
  lightsHealth,
  mastersHealth,
  type CheckName,
  type CheckSeverity,
  type CheckVerdict,
  type HealthCheck,
} from "./calibration/health.js";
export { darkCurrent, measureSetLevel, type SetLevel } from "./calibration/levels.js";
export {
  BUILTIN_PALETTES,
  colorBalanceFor,
  describeColorBalance,
  paletteInputs,
  type ColorConfig,
  type Palette,
} from "./composition/palettes.js";
export { configReferenceMarkdown } from "./config/reference.js";
export { renderRunReport, writeRunReport, previewDataUri, formatValue, type RunDocument, type PreviewSource } from "./report/html.js";
export { groupRecord, type GroupRecord, type FrameRecord } from "./report/records.js";
export {
  defineTask,
  runAll,
  type Executor,
  type ExecutorStats,
  type RunUnitsOptions,
  type SharedRef,
  type Task,
  type TaskArray,
  type TaskContext,
  type WorkUnit,
} from "./executor/contracts.js";
export { localExecutor, withExecutor, type LocalExecutorOptions } from "./executor/local.js";
export { cachedFile, closeCache, readBand, scratch, slotPool, OPEN_FILES_MAX } from "./executor/cache.js";
export { PlanePool } from "./util/planes.js";
export { BAND_BYTES, bandRows } from "./util/bands.js";

export { mapLimit } from "./util/pool.js";
export {
  tbqrOptionsFromConfig,
  tbqrStageOptionsSchema,
  type TbqrOptions,
  type TbqrStageOptions,
  type TbqrValidation,
} from "./config/tbqr.js";
export { mtf } from "./util/mtf.js";
export { taskCatalogue } from "./executor/catalogue.js";
export { combinedKeywords, provenanceKeywords } from "./frames/combined.js";
export {
  filterFrames,
  frameStats,
  applyFrameFilters,
  frameStatsTask,
  psfSnr,
  boxShare,
  type FrameStats,
  type FrameFilter,
  type FrameWarp,
} from "./frames/selection.js";
export {
  skyGrid,
  localNormalization,
  localScales,
  applyLocalNormalization,
  meanLocalScale,
  surfaceRow,
  surfaceValue,
  type SkyGrid,
  type FrameSurfaces,
  type LocalNormalization,
  type LocalPhotometry,
} from "./frames/local-normalization.js";
export { chooseReference, knownReference } from "./registration/reference.js";
export { median, MAD_TO_SIGMA } from "./util/stats.js";
