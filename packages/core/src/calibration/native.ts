/**
 * The built-in `calibration:native` provider: master building (calibration/masters.ts) and light
 * calibration (calibration/apply.ts) behind the stage contract, so a job's calibrate stage runs through
 * the engine registry like every other stage and another engine (Siril) can take its place.
 *
 * Options it reads: buildMaster — `inputHash`, `recipeHash` (stamped into the master), `name`;
 * calibrate — `darkScaling` (default false), `cosmetic` (default true).
 */
import { basename, join } from "node:path";
import type { CalibrationInput, CalibrationProvider, CalibrationResult, EngineContext, FrameRef } from "../kernel/contracts.js";
import { readFitsImage, type FitsImage } from "../fits/reader.js";
import { calibrateLight, defectMap, type Masters } from "./apply.js";
import { buildMaster } from "./masters.js";

export function nativeCalibration(engine: string): CalibrationProvider {
  return {
    async buildMaster(input: { kind: "bias" | "dark" | "flat"; frames: FrameRef[]; output: string; masterBias?: string; options: Record<string, unknown>; history: string[] }, ctx: EngineContext) {
      const o = input.options;
      const r = await buildMaster(
        { kind: input.kind, name: String(o.name ?? basename(input.output)), path: input.output, action: "build", reason: "", inputs: input.frames.map((f) => f.path), ...(typeof o.inputHash === "string" ? { inputHash: o.inputHash } : {}), recipeHash: String(o.recipeHash ?? ""), set: { kind: input.kind, date: "", dir: "" } },
        { engine, rejection: o.rejection === "sigma" ? "sigma" : "winsorized", memoryBudgetBytes: ctx.runtime.memoryBudgetBytes, signal: ctx.signal, history: input.history, ...(input.masterBias ? { bias: input.masterBias } : {}), onProgress: (f) => ctx.progress(f, basename(input.output)) },
      );
      return { output: r.path, frameCount: r.frames };
    },
    async calibrate(input: CalibrationInput, ctx: EngineContext): Promise<CalibrationResult> {
      const load = async (p?: string): Promise<FitsImage | undefined> => (p ? readFitsImage(p, { signal: ctx.signal }) : undefined);
      const [dark, bias, flat] = await Promise.all([load(input.masterDark), load(input.masterBias), load(input.masterFlat)]);
      const darkScaling = input.options.darkScaling === true;
      const m: Masters = {};
      if (dark) m.dark = dark;
      if (bias && (!dark || darkScaling)) m.bias = bias;
      if (flat) m.flat = flat;
      const cosmetic = input.options.cosmetic !== false;
      const defects = cosmetic ? await defectMap(m) : undefined;
      const frames: CalibrationResult["frames"] = [];
      for (const [i, f] of input.frames.entries()) {
        ctx.signal.throwIfAborted();
        const output = join(input.outputDir, basename(f.path).replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, ".fit"));
        await calibrateLight(f.path, output, m, defects, { cosmetic, darkScaling, history: input.history, signal: ctx.signal });
        frames.push({ input: f.path, output });
        ctx.progress((i + 1) / input.frames.length, basename(f.path));
      }
      return { frames };
    },
  };
}
