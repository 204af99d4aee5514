/**
 * What the job pipeline's steps share: the job plan, the configuration, the stages planned for the run,
 * and what earlier steps produced (calibrated frames, registered frames, stacks, channel images).
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import {
  expLabel,
  type ColorBalanceRecord,
  hashOf,
  planStage,
  type EngineRegistry,
  type GroupRecord,
  type JobPlan,
  type StageName,
  type StagePlan,
  type StageRunOptions,
  type TileCompileConfig,
} from "@tile-compile/core";

export const PIPELINE_STEPS = ["calibrate", "register", "stack", "compose", "stretch"] as const;
export type PipelineStep = (typeof PIPELINE_STEPS)[number];

export interface PipelineOptions extends StageRunOptions {
  registry: EngineRegistry;
  config: TileCompileConfig;
  /** Run up to and including this step (default: all). */
  until?: PipelineStep;
  /** Start at compose (or stretch) from the stacks already in the output folder: no lights needed. */
  fromStacks?: boolean;
  log?: (line: string) => void;
}

export interface StackRecord {
  filter: string;
  exposureSeconds: number;
  path: string;
  frames: number;
  rejected: { path: string; reason: string }[];
}

export interface PipelineResult {
  stacks: StackRecord[];
  composed?: string;
  /** What the composition's colour balance did (factors, sky levels, stars measured). */
  color?: ColorBalanceRecord;
  compositionSkipped?: string;
  stretched: string[];
  reused: string[];
  ran: string[];
}

/** The stages of a job run, planned (engine chosen, capability checked) before any pixel is read. */
export interface PipelineStages {
  calibration?: StagePlan<"calibration">;
  background?: StagePlan<"background">;
  /** Planned on first use: the frames, the HDR exposures and the channel stacks are registered with it. */
  registration(): StagePlan<"registration">;
  /** Per group: TBQR's artifacts folder depends on the group. */
  stacking(label: string): StagePlan<"stacking">;
  /** `composition:hdr`, planned on first use (an HDR filter with `hdr.blend`). */
  hdr(): StagePlan<"composition">;
  composition?: StagePlan<"composition">;
  stretch?: StagePlan<"stretch">;
}

/** A (filter, exposure) group as the steps see it: its frames after each step so far. */
export interface GroupState {
  label: string;
  filter: string;
  exposureSeconds: number;
  /** Calibrated (then background-flattened) frames. */
  frames: string[];
  registered?: { frames: string[]; rejected: { path: string; reason: string }[] };
}

export interface PipelineState {
  plan: JobPlan;
  out: string;
  cfg: TileCompileConfig;
  o: PipelineOptions;
  stages: PipelineStages;
  log: (line: string) => void;
  /** Index of the last pipeline step to run (PIPELINE_STEPS). */
  upto: number;
  result: PipelineResult;
  groups: GroupRecord[];
  groupState: Map<string, GroupState>;
  inputs: { path: string; sha256: string }[];
  /** The calibrate stage's masters and health figures, for run.json (also when reused from a checkpoint). */
  calibrateRecord?: unknown;
  /** Composition input channel → image (stack, aligned stack, flattened stack), as the steps replace them. */
  channels: Record<string, string>;
  /** The images the stretch steps take. */
  toStretch: string[];
}

/** Files' identities (path, size, mtime): what a checkpoint stamp hashes instead of the bytes. */
export const identity = (paths: readonly string[]): string =>
  paths
    .map((p) => {
      const st = statSync(p);
      return `${p}\0${st.size}\0${Math.round(st.mtimeMs)}`;
    })
    .join("\n");

export const engineId = (p: StagePlan): string => `${p.engine.meta.name}@${p.engine.meta.version}`;

/** A stamp from lines (kept in one place so every step hashes the same way). */
export const stampOf = (...lines: string[]): string => hashOf(lines.join("\n"));

export const groupLabel = (g: { filter: string; exposureSeconds: number }): string => `${g.filter}_${expLabel(g.exposureSeconds)}`;

export const stackPathOf = (out: string, g: { filter: string; exposureSeconds: number }): string =>
  join(out, `stack_${g.filter}_${expLabel(g.exposureSeconds)}.fit`);

export const planned = <S extends StageName>(
  o: PipelineOptions,
  stage: S,
  method: string,
  engine: string | undefined,
  field: string,
  options: Record<string, unknown>,
): StagePlan<S> => planStage<S>(o.registry, { stage, method, ...(engine ? { engine } : {}), field, options });
