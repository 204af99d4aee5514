/**
 * The calibrate stage of a job: build (or rebuild) the masters the plan asks for, then calibrate every
 * light into `<output>/calibrated/<filter>_<exposure>/`. Frames are processed one at a time; the masters
 * of the group in use are the only images held in memory.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { loadRecon } from "@tile-compile/recon-native";
import { basename, join } from "node:path";
import { calibrateLight, defectMap, type DefectMap, type Masters } from "../calibration/apply.js";
import { buildMaster } from "../calibration/masters.js";
import { TileCompileError } from "../errors/index.js";
import { readFitsImage, type FitsImage } from "../fits/reader.js";
import { expLabel } from "./library.js";
import type { JobPlan, JobProblem } from "./plan.js";

export function jobError(plan: JobPlan): TileCompileError {
  const fmt = (p: JobProblem) => `${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`;
  return new TileCompileError("TC_JOB_INVALID", { file: plan.jobFile, problems: plan.problems.map(fmt) });
}

export interface CalibrateStageOptions {
  engine: string;
  memoryBudgetBytes: number;
  signal?: AbortSignal;
  history?: string[];
  onProgress?: (fraction: number, note: string) => void;
  log?: (line: string) => void;
}

export interface CalibrateStageResult {
  mastersBuilt: string[];
  mastersReused: string[];
  calibrated: { filter: string; exposureSeconds: number; dir: string; frames: string[] }[];
}

export async function runCalibrateStage(plan: JobPlan, o: CalibrateStageOptions): Promise<CalibrateStageResult> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  const started = performance.now();
  const built: string[] = [], reused: string[] = [];
  const todo = plan.masters.filter((m) => m.action !== "reuse");
  const biasPath = plan.masters.find((m) => m.kind === "bias")?.path;
  for (const [i, m] of todo.entries()) {
    o.log?.(`${m.action === "build" ? "building" : "rebuilding"} ${m.name}: ${m.reason}`);
    await buildMaster(m, {
      engine: o.engine, memoryBudgetBytes: o.memoryBudgetBytes, history: o.history ?? [],
      ...(m.kind === "flat" && biasPath ? { bias: biasPath } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (f) => o.onProgress?.((0.5 * (i + f)) / Math.max(1, todo.length), `master ${m.name}`),
    });
    built.push(m.path);
  }
  for (const m of plan.masters) if (m.action === "reuse") reused.push(m.path);

  const cache = new Map<string, FitsImage>();
  const load = async (p?: string) => {
    if (!p) return undefined;
    if (!existsSync(p)) throw new TileCompileError("TC_INPUT_INVALID", { input: p, reason: "the master does not exist" });
    if (!cache.has(p)) {
      if (cache.size >= 6) cache.clear(); // masters of the current groups only
      cache.set(p, await readFitsImage(p, o.signal ? { signal: o.signal } : {}));
    }
    return cache.get(p)!;
  };
  const defects = new Map<string, DefectMap>();
  const opt = plan.job.options ?? {};
  const calibrated: CalibrateStageResult["calibrated"] = [];
  const total = plan.groups.reduce((a, g) => a + g.frames.length, 0);
  let done = 0;
  for (const g of plan.groups) {
    const dir = join(plan.output, "calibrated", `${g.filter}_${expLabel(g.exposureSeconds)}`);
    const frames: string[] = [];
    for (const f of g.frames) {
      o.signal?.throwIfAborted();
      const m: Masters = {};
      const dark = await load(f.dark), bias = await load(f.bias), flat = await load(f.flat);
      if (dark) m.dark = dark;
      if (bias && (!dark || opt.dark_scaling)) m.bias = bias;
      if (flat) m.flat = flat;
      const key = `${f.dark ?? ""}|${f.flat ?? ""}`;
      if (opt.cosmetic !== false && !defects.has(key)) defects.set(key, await defectMap(m));
      const out = join(dir, basename(f.frame.path).replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, ".fit"));
      await calibrateLight(f.frame.path, out, m, defects.get(key), { cosmetic: opt.cosmetic !== false, darkScaling: opt.dark_scaling ?? false, history: o.history ?? [], ...(o.signal ? { signal: o.signal } : {}) });
      frames.push(out);
      o.onProgress?.(0.5 + (0.5 * ++done) / total, `calibrate ${basename(f.frame.path)}`);
    }
    calibrated.push({ filter: g.filter, exposureSeconds: g.exposureSeconds, dir, frames });
  }
  const result = { mastersBuilt: built, mastersReused: reused, calibrated };
  await writeRunJson(plan, { calibrate: { ...result, seconds: (performance.now() - started) / 1000 } }, o.engine);
  return result;
}

/**
 * `<output>/run.json`: the plan (requirements, every calibration decision with its rejected candidates,
 * masters and what was done with them), the stages run, the engine and the kernel backend. Atomic.
 */
export async function writeRunJson(plan: JobPlan, stages: Record<string, unknown>, engine: string): Promise<string> {
  const recon = loadRecon();
  const doc = {
    job: plan.job, jobFile: plan.jobFile, base: plan.base, output: plan.output,
    engine, kernels: { backend: recon.kind, simd: recon.simd, threads: recon.threads() },
    requirements: plan.requirements,
    decisions: plan.decisions,
    masters: plan.masters.map((m) => ({ kind: m.kind, name: m.name, path: m.path, action: m.action, reason: m.reason, inputs: m.inputs.length, inputHash: m.inputHash, recipeHash: m.recipeHash })),
    stages,
  };
  await mkdir(plan.output!, { recursive: true });
  const target = join(plan.output!, "run.json");
  const tmp = `${target}.${process.pid}.partial`;
  await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  await rename(tmp, target);
  return target;
}
