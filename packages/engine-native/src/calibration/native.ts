/**
 * The built-in `calibration:native` provider: master building (calibration/masters.ts) and light
 * calibration (calibration/apply.ts) behind the stage contract, so a job's calibrate stage runs through
 * the engine registry like every other stage and another engine (Siril) can take its place.
 *
 * Options it reads: buildMaster — `inputHash`, `recipeHash` (stamped into the master), `name`;
 * calibrate — `darkScaling` (default false), `cosmetic` (default true).
 *
 * Lights are calibrated as work units (`calibration.light`, one per frame; ../executor/contracts.ts), so
 * they run the same here and on RabbitMQ workers. A unit names the masters by path; each process loads
 * them (and derives the defect map) once per run, through the executor's per-run cache.
 */
import { basename, join } from "node:path";
import {
  buildMaster,
  DEFAULT_REJECTION,
  defineTask,
  readFitsImage,
  withExecutor,
  type CalibrationInput,
  type CalibrationProvider,
  type CalibrationResult,
  type EngineContext,
  type FitsImage,
  type WorkUnit,
} from "@tile-compile/core";
import { calibrateLight, defectMap, type DefectMap, type Masters } from "./apply.js";

/** Input of one `calibration.light` unit: paths and flags only. */
export interface CalibrateLightInput {
  light: string;
  output: string;
  masters: { dark?: string; bias?: string; flat?: string };
  darkScaling: boolean;
  cosmetic: boolean;
  /** A constant offset (ADU) when no offset master is given. */
  pedestal?: number;
  history: string[];
}

/** The masters a unit applies, read (and their defect map derived) once per run and process. */
function mastersFor(
  i: CalibrateLightInput,
  cache: Map<string, unknown>,
  signal: AbortSignal,
): Promise<{ m: Masters; defects: DefectMap | undefined }> {
  const key = `calibration.masters:${JSON.stringify([i.masters, i.darkScaling, i.cosmetic])}`;
  let p = cache.get(key) as Promise<{ m: Masters; defects: DefectMap | undefined }> | undefined;
  if (!p) {
    p = (async () => {
      const load = async (path?: string): Promise<FitsImage | undefined> => (path ? readFitsImage(path, { signal }) : undefined);
      const [dark, bias, flat] = await Promise.all([load(i.masters.dark), load(i.masters.bias), load(i.masters.flat)]);
      const m: Masters = {};
      if (dark) m.dark = dark;
      if (bias && (!dark || i.darkScaling)) m.bias = bias;
      if (flat) m.flat = flat;
      return { m, defects: i.cosmetic ? await defectMap(m) : undefined };
    })();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

/** `calibration.light`: calibrate one light into its output (atomic write). */
export const calibrateLightTask = defineTask("calibration.light", async (i: CalibrateLightInput, ctx): Promise<string> => {
  const { m, defects } = await mastersFor(i, ctx.cache, ctx.signal);
  await calibrateLight(i.light, i.output, m, defects, {
    cosmetic: i.cosmetic,
    darkScaling: i.darkScaling,
    history: i.history,
    signal: ctx.signal,
    ...(i.pedestal !== undefined ? { pedestal: i.pedestal } : {}),
  });
  return i.output;
});

/** Lights in flight in this process: one light's read overlaps with another's write. */
const LIGHTS_IN_FLIGHT = 2;

export function nativeCalibration(engine: string): CalibrationProvider {
  return {
    async buildMaster(input, ctx) {
      const o = input.options;
      const r = await buildMaster(
        {
          kind: input.kind,
          name: o.name ?? basename(input.output),
          path: input.output,
          action: "build",
          reason: "",
          inputs: input.frames.map((f) => f.path),
          ...(o.inputHash !== undefined ? { inputHash: o.inputHash } : {}),
          recipeHash: o.recipeHash ?? "",
          set: { kind: input.kind, date: "", dir: "" },
        },
        {
          engine,
          rejection: o.rejection ?? DEFAULT_REJECTION,
          memoryBudgetBytes: ctx.runtime.memoryBudgetBytes,
          signal: ctx.signal,
          history: input.history,
          ...(input.masterBias ? { bias: input.masterBias } : {}),
          ...(o.pedestal !== undefined ? { pedestal: o.pedestal } : {}),
          onProgress: (f) => ctx.progress(f, basename(input.output)),
        },
      );
      return { output: r.path, frameCount: r.frames };
    },
    async calibrate(input: CalibrationInput, ctx: EngineContext): Promise<CalibrationResult> {
      const masters = {
        ...(input.masterDark ? { dark: input.masterDark } : {}),
        ...(input.masterBias ? { bias: input.masterBias } : {}),
        ...(input.masterFlat ? { flat: input.masterFlat } : {}),
      };
      const { darkScaling = false, cosmetic = true, pedestal } = input.options;
      const units: WorkUnit<unknown, string>[] = input.frames.map((f, i) => ({
        id: `light/${i}`,
        task: calibrateLightTask as never,
        input: {
          light: f.path,
          output: join(input.outputDir, basename(f.path).replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, ".fit")),
          masters,
          darkScaling,
          cosmetic,
          history: input.history,
          ...(pedestal !== undefined ? { pedestal } : {}),
        } satisfies CalibrateLightInput,
      }));
      return withExecutor(ctx, async (executor) => {
        const frames: CalibrationResult["frames"] = [];
        let k = 0;
        for await (const output of executor.run(units, {
          signal: ctx.signal,
          concurrency: LIGHTS_IN_FLIGHT,
          onUnitDone: (d, total) => ctx.progress(d / total, "calibrate"),
        }))
          frames.push({ input: input.frames[k++]!.path, output });
        return { frames };
      });
    },
  };
}
