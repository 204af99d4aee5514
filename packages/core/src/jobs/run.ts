/**
 * The calibrate stage of a job: build (or rebuild) the masters the plan asks for, then calibrate every
 * light into `<output>/calibrated/<filter>_<exposure>/<night>/` (nights may reuse file names). Frames are processed one at a time; the masters
 * of the group in use are the only images held in memory.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { loadRecon } from "@tile-compile/recon-native";
import { basename, join } from "node:path";
import type { CalibrationProvider, EngineContext } from "../kernel/contracts.js";
import { TileCompileError } from "../errors/index.js";
import { expLabel } from "./library.js";
import { writeRunReport, type PreviewSource, type RunDocument } from "../report/html.js";
import type { JobPlan, JobProblem } from "./plan.js";
import type { ExecutorStats } from "../executor/contracts.js";

export function jobError(plan: JobPlan): TileCompileError {
  const fmt = (p: JobProblem) => `${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`;
  return new TileCompileError("TC_JOB_INVALID", { file: plan.jobFile, problems: plan.problems.map(fmt) });
}

export interface CalibrateStageOptions {
  /** The calibration provider (from the registry: `calibration.method`, default the built-in `native`). */
  provider: CalibrationProvider;
  /** The stage context (signal, logger, progress, runtime limits); see kernel/runner.ts. */
  ctx: EngineContext;
  /** engine@version of the provider: part of every master's recipe. */
  engine: string;
  /** Pixel rejection of the masters (`calibration.rejection`, default winsorized). */
  rejection?: "winsorized" | "sigma";
  history?: string[];
}

export interface CalibrateStageResult {
  mastersBuilt: string[];
  mastersReused: string[];
  calibrated: { filter: string; exposureSeconds: number; dir: string; frames: string[] }[];
}

export async function runCalibrateStage(plan: JobPlan, o: CalibrateStageOptions): Promise<CalibrateStageResult> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  const started = performance.now();
  const { provider, ctx } = o;
  const built: string[] = [], reused: string[] = [];
  const todo = plan.masters.filter((m) => m.action !== "reuse");
  const biasPath = plan.masters.find((m) => m.kind === "bias")?.path;
  if (todo.length > 0 && !provider.buildMaster) throw new TileCompileError("TC_CAPABILITY_MISSING", { capability: "calibration (master building)", field: "calibration.method" });
  for (const [i, m] of todo.entries()) {
    ctx.logger.info(`${m.action === "build" ? "building" : "rebuilding"} ${m.name}: ${m.reason}`);
    const sub: EngineContext = { ...ctx, progress: (f, note) => ctx.progress((0.5 * (i + f)) / Math.max(1, todo.length), note ?? `master ${m.name}`) };
    await provider.buildMaster!({ kind: m.kind, frames: m.inputs.map((path) => ({ path })), output: m.path, ...(m.kind === "flat" && biasPath ? { masterBias: biasPath } : {}), options: { name: m.name, recipeHash: m.recipeHash, rejection: o.rejection ?? "winsorized", ...(m.inputHash ? { inputHash: m.inputHash } : {}) }, history: o.history ?? [] }, sub);
    built.push(m.path);
  }
  for (const m of plan.masters) if (m.action === "reuse") reused.push(m.path);

  // Lights: one provider call per (group, master set), frames streamed inside it.
  const opt = plan.job.options ?? {};
  const calibrated: CalibrateStageResult["calibrated"] = [];
  const total = plan.groups.reduce((a, g) => a + g.frames.length, 0);
  let done = 0;
  for (const g of plan.groups) {
    const dir = join(plan.output, "calibrated", `${g.filter}_${expLabel(g.exposureSeconds)}`);
    const sets = new Map<string, typeof g.frames>();
    for (const f of g.frames) {
      // Per night as well: two nights may use the same file names (light_001.fit …).
      const key = `${f.frame.night}|${f.dark ?? ""}|${f.bias ?? ""}|${f.flat ?? ""}`;
      sets.set(key, [...(sets.get(key) ?? []), f]);
    }
    const frames: string[] = [];
    for (const list of sets.values()) {
      const f0 = list[0]!;
      for (const p of [f0.dark, f0.bias, f0.flat]) if (p && !existsSync(p)) throw new TileCompileError("TC_INPUT_INVALID", { input: p, reason: "the master does not exist" });
      const before = done;
      const sub: EngineContext = { ...ctx, progress: (f, note) => ctx.progress(0.5 + (0.5 * (before + f * list.length)) / total, note) };
      const r = await provider.calibrate({ frames: list.map((f) => ({ path: f.frame.path })), ...(f0.bias ? { masterBias: f0.bias } : {}), ...(f0.dark ? { masterDark: f0.dark } : {}), ...(f0.flat ? { masterFlat: f0.flat } : {}), outputDir: join(dir, f0.frame.night), options: { darkScaling: opt.dark_scaling ?? false, cosmetic: opt.cosmetic !== false }, history: o.history ?? [] }, sub);
      frames.push(...r.frames.map((x) => x.output));
      done += list.length;
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
export async function writeRunJson(plan: JobPlan, stages: Record<string, unknown>, engine: string, executor?: ExecutorStats): Promise<string> {
  const recon = loadRecon();
  const doc: RunDocument = {
    job: plan.job, jobFile: plan.jobFile, base: plan.base, output: plan.output,
    engine, kernels: { backend: recon.kind, simd: recon.simd, threads: recon.threads() },
    requirements: plan.requirements,
    decisions: plan.decisions,
    masters: plan.masters.map((m) => ({ kind: m.kind, name: m.name, path: m.path, action: m.action, reason: m.reason, inputs: m.inputs.length, inputHash: m.inputHash, recipeHash: m.recipeHash })),
    stages,
    ...(executor ? { executor } : {}),
  };
  return writeRunRecord(plan.output!, doc, previewSources(stages));
}

/**
 * `<dir>/run.json` (atomically) and the report.html made from it: what `run` and `reconstruct` leave
 * beside their outputs. Returns run.json's path.
 */
export async function writeRunRecord(dir: string, doc: RunDocument, previews: PreviewSource[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  const target = join(dir, "run.json");
  const tmp = `${target}.${process.pid}.partial`;
  await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  await rename(tmp, target);
  await writeRunReport(dir, doc, previews);
  return target;
}

/** The images a run's report previews: each stack (linear, auto-stretched for display), then the final images. */
export function previewSources(stages: Record<string, unknown>): PreviewSource[] {
  const p = (stages.pipeline ?? {}) as { stacks?: { filter: string; exposureSeconds: number; path: string }[]; stretched?: string[] };
  return [
    ...(p.stacks ?? []).map((s) => ({ title: `stack ${s.filter} ${s.exposureSeconds} s (linear, display stretch)`, path: s.path, stretched: false })),
    ...(p.stretched ?? []).map((path) => ({ title: `${basename(path)} (final)`, path, stretched: true })),
  ];
}
