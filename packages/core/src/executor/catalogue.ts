/**
 * The built-in tasks by name: what a worker (`tile-compile worker`) can run. A unit names its task; a
 * worker of the same tile-compile version resolves the name here. Third-party engines' tasks are not
 * in it yet: their stages run with the local executor.
 */
import type { Task } from "./contracts.js";
import { frameStatsTask, stackBandTask } from "../engines/stack.js";
import { calibrateLightTask } from "../calibration/native.js";
import { registerFrameTask, starsTask } from "../registration/relative.js";
import { bandTask, frameMetricsTask, seeingTask, syntheticTask } from "../tbqr/units.js";

export const builtinTasks: ReadonlyMap<string, Task> = new Map<string, Task>(
  ([calibrateLightTask, starsTask, registerFrameTask, frameStatsTask, stackBandTask, seeingTask, frameMetricsTask, bandTask, syntheticTask] as Task[]).map((t) => [t.name, t]),
);
