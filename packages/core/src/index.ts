/**
 * @tile-compile/core — contracts, kernel, errors, configuration, FITS I/O and the built-in engines.
 * Depends on no other package of ours.
 */
export * from "./errors/index.js";
export * from "./fits/index.js";
export * from "./kernel/index.js";
export * from "./config/schema.js";
export * from "./config/load.js";
export * from "./frames/metadata.js";
export * from "./frames/scan.js";
export { nativeEngine, builtinEngines } from "./engines/native.js";
export { combinedKeywords, provenanceKeywords } from "./engines/mean-stack.js";
export { seededRandom } from "./util/random.js";
export { registerRelative, formatFrameName, bayerOf, frameStars, chooseReference, warpOntoReference, detectionPlane, type RelativeOptions, type FrameStars } from "./registration/relative.js";
export { pixelAgreement, pixelsConfirm, type PixelAgreement } from "./registration/verify.js";
export { matchStars, refineMatch, type MatchOptions, type MatchResult } from "./registration/match.js";
export { fitTransform, apply as applyTransform, invert as invertTransform, multiply as multiplyTransform, describe as describeTransform, TRANSFORM_MODELS, type Point, type TransformModel } from "./registration/geometry.js";
export { jobSchema, jobJsonSchema, JOB_TYPES, type JobFile } from "./jobs/schema.js";
export { normalizeFilter, DEFAULT_FILTER_ALIASES } from "./jobs/filters.js";
export { libraryLayout, findBaseDir, masterName, rawSets, type LibraryLayout, type RawSet } from "./jobs/library.js";
export { planJob, masterStamp, recipeOf, hashOf, type JobPlan, type JobProblem, type MasterPlan, type Decision, type Requirement, type LightFrame, type CalibratedGroup, type PlanOptions } from "./jobs/plan.js";
export { runCalibrateStage, writeRunRecord, jobError, type CalibrateStageResult, type CalibrateStageOptions } from "./jobs/run.js";
export { buildMaster, masterBandRows, masterHeader } from "./calibration/masters.js";
export { nativeCalibration } from "./calibration/native.js";
export { calibrateLight, defectMap, type Masters, type DefectMap } from "./calibration/apply.js";
export { CHECK_NAMES, lightsHealth, mastersHealth, type CheckName, type CheckSeverity, type CheckVerdict, type HealthCheck } from "./calibration/health.js";
export { darkCurrent, measureSetLevel, type SetLevel } from "./calibration/levels.js";
export { runJobPipeline, PIPELINE_STEPS, type PipelineStep, type PipelineOptions, type PipelineResult } from "./jobs/pipeline.js";
export { BUILTIN_PALETTES, paletteInputs, type Palette } from "./composition/palettes.js";
export { nativeComposition } from "./composition/native.js";
export { nativeStretch, mtf, writePng } from "./stretch/native.js";
export { nativeStack, filterFrames, frameStats, applyFrameFilters, type FrameStats, type FrameFilter } from "./engines/stack.js";
export { generateDemoLibrary, type DemoOptions, type DemoStar } from "./demo/generate.js";
export { extractBackground, backgroundModel, type BackgroundOptions } from "./background/extract.js";
export { blendHdr } from "./composition/hdr.js";
export { reconstructTbqr, tbqrOptionsFromConfig, DEFAULT_TBQR, seamFigures, kmeans, budgetKappa, noiseBudgetKappa, tileFractions, validationFailures, type TbqrOptions, type TbqrResult } from "./tbqr/reconstruct.js";
export { tileGeometry, tileGrid, globalWeights, localWeights, robustZ, clusterCount, modeGate, type TbqrMode } from "./tbqr/math.js";
export { configReferenceMarkdown } from "./config/reference.js";
export { renderRunReport, writeRunReport, previewDataUri, formatValue, type RunDocument, type PreviewSource } from "./report/html.js";
export { groupRecord, type GroupRecord, type FrameRecord } from "./report/records.js";
export { defineTask, runAll, type Executor, type ExecutorStats, type RunUnitsOptions, type SharedRef, type Task, type TaskArray, type TaskContext, type WorkUnit } from "./executor/contracts.js";
export { localExecutor, type LocalExecutorOptions } from "./executor/local.js";
export { cachedFile, closeCache, scratch, OPEN_FILES_MAX } from "./executor/cache.js";
export { builtinTasks } from "./executor/catalogue.js";
export { stackBandTask, frameStatsTask, type StackBandPlan, type StackBandResult } from "./engines/stack.js";
