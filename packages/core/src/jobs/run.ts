/**
 * The calibrate stage of a job: build (or rebuild) the masters the plan asks for, then calibrate every
 * light into `<output>/calibrated/<filter>_<exposure>/<night>/` (nights may reuse file names). Frames are processed one at a time; the masters
 * of the group in use are the only images held in memory.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { loadRecon } from "@tile-compile/recon-native";
import { basename, join } from "node:path";
import type { CalibrationProvider, ColorBalanceRecord, EngineContext } from "../kernel/contracts.js";
import { TileCompileError } from "../errors/index.js";
import { expLabel } from "./library.js";
import { writeRunReport, type PreviewSource, type RunDocument } from "../report/html.js";
import type { JobPlan, JobProblem } from "./plan.js";
import type { ExecutorStats } from "../executor/contracts.js";
import {
  lightsHealth,
  mastersHealth,
  type CheckName,
  type CheckSeverity,
  type HealthCheck,
  type HealthGroupInput,
} from "../calibration/health.js";
import { DEFAULT_REJECTION, type MasterRejection } from "../config/schema.js";

export function jobError(plan: JobPlan): TileCompileError {
  const fmt = (p: JobProblem) => `${p.code ? `[${p.code}] ` : ""}${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`;
  // Problems that all have their own catalogue entry are raised under it (its hint says what to do).
  const codes = new Set(plan.problems.map((p) => p.code));
  if (codes.size === 1 && [...codes][0] === "TC_CALIBRATION_NO_OFFSET")
    return new TileCompileError("TC_CALIBRATION_NO_OFFSET", { file: plan.jobFile, reason: plan.problems.map((p) => p.message).join("\n") });
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
  rejection?: MasterRejection;
  history?: string[];
  /** `calibration.checks` of tile_compile.yaml: per health check, error (default), warn or off. */
  checks?: Partial<Record<CheckName, CheckSeverity>>;
}

export interface CalibrateStageResult {
  mastersBuilt: string[];
  mastersReused: string[];
  calibrated: { filter: string; exposureSeconds: number; dir: string; frames: string[] }[];
  /** The calibration health check: every figure with its verdict and the severity it was held to. */
  health: (HealthCheck & { severity: CheckSeverity })[];
}

/** What to do when a check fails, for the error's hint. */
const CHECK_ADVICE: Record<CheckName, string> = {
  offset: "Give the lights an offset source (calibration.bias, calibration.darks or calibration.offset) or leave the flats out.",
  double_offset:
    "Check that the dark master was not bias-subtracted elsewhere, and that bias, darks and lights share gain and offset settings.",
  negative_pixels:
    "Compare the dark/bias with the lights' gain, offset and temperature; an over-subtracted dark (e.g. a longer or warmer one) clips the sky.",
  master_mismatch: "Use masters taken with the lights' camera settings (size, binning, Bayer pattern, gain).",
  flat_exposure: "Retake the flats at about half the ADC range (30 000 ADU on a 16-bit camera).",
  vignetting_residual:
    "Usually the offset was not removed from the lights or the flats: add a bias, flat-darks or calibration.offset. Or the flats come from another optical setup (focus, rotation, camera removed).",
  dust_residual: "The flat does not remove the dust shadows: offset left in, or the flats were taken after the optical train moved.",
  temperature: "Take darks at the lights' sensor temperature, or widen options.temp_tolerance.",
};

/**
 * Apply each check's severity: a failure at `error` (the default) stops the run after run.json is
 * written, at `warn` it is logged, at `off` it is recorded only. A master of another size is always refused.
 */
function judge(
  checks: HealthCheck[],
  severities: Partial<Record<CheckName, CheckSeverity>>,
  warn: (m: string) => void,
): { recorded: (HealthCheck & { severity: CheckSeverity })[]; failure?: HealthCheck } {
  const recorded = checks.map((c) => ({
    ...c,
    severity: c.check === "master_mismatch" && /size/.test(c.detail) ? ("error" as const) : (severities[c.check] ?? "error"),
  }));
  let failure: HealthCheck | undefined;
  for (const c of recorded) {
    if (c.verdict !== "fail" || c.severity === "off") continue;
    if (c.severity === "warn") warn(`calibration check ${c.check} (${c.subject}) failed, relaxed to a warning: ${c.detail}`);
    else failure ??= c;
  }
  return { recorded, ...(failure ? { failure } : {}) };
}

function checkError(c: HealthCheck): TileCompileError {
  return new TileCompileError("TC_CALIBRATION_CHECK", {
    check: c.check,
    reason: `${c.subject}: ${c.detail} (limit: ${c.limit})`,
    advice: CHECK_ADVICE[c.check],
  });
}

export async function runCalibrateStage(plan: JobPlan, o: CalibrateStageOptions): Promise<CalibrateStageResult> {
  if (plan.problems.length > 0 || !plan.job || !plan.output) throw jobError(plan);
  const started = performance.now();
  const { provider, ctx } = o;
  const built: string[] = [],
    reused: string[] = [];
  const todo = plan.masters.filter((m) => m.action !== "reuse");
  if (todo.length > 0 && !provider.buildMaster)
    throw new TileCompileError("TC_CAPABILITY_MISSING", { capability: "calibration (master building)", field: "calibration.method" });
  for (const [i, m] of todo.entries()) {
    ctx.logger.info(`${m.action === "build" ? "building" : "rebuilding"} ${m.name}: ${m.reason}`);
    const sub: EngineContext = {
      ...ctx,
      progress: (f, note) => ctx.progress((0.5 * (i + f)) / Math.max(1, todo.length), note ?? `master ${m.name}`),
    };
    // Flats: their offset (flat-dark or bias master, or a pedestal) is subtracted from every raw flat.
    const offset = m.kind === "flat" ? m.offset : undefined;
    await provider.buildMaster!(
      {
        kind: m.kind,
        frames: m.inputs.map((path) => ({ path })),
        output: m.path,
        ...(offset?.path ? { masterBias: offset.path } : {}),
        options: {
          name: m.name,
          recipeHash: m.recipeHash,
          rejection: o.rejection ?? DEFAULT_REJECTION,
          ...(m.inputHash ? { inputHash: m.inputHash } : {}),
          ...(offset?.pedestal !== undefined ? { pedestal: offset.pedestal } : {}),
        },
        history: o.history ?? [],
      },
      sub,
    );
    built.push(m.path);
  }
  for (const m of plan.masters) if (m.action === "reuse") reused.push(m.path);
  const severities = o.checks ?? {};
  const warn = (m: string) => ctx.logger.warn(m);
  const first = plan.lights[0];
  const layout = first
    ? {
        width: first.width,
        height: first.height,
        ...(first.binning ? { binning: first.binning } : {}),
        ...(first.bayerPattern ? { bayerPattern: first.bayerPattern } : {}),
        ...(first.gain !== undefined ? { gain: first.gain } : {}),
      }
    : { width: 0, height: 0 };
  const usedMasters = plan.groups.flatMap((g) => g.frames.flatMap((f) => [f.dark, f.bias, f.flat].filter((p): p is string => !!p)));
  const masterChecks = judge(
    await mastersHealth(
      usedMasters.filter((p) => existsSync(p)),
      layout,
    ),
    severities,
    warn,
  );
  const healthGroups: HealthGroupInput[] = [];
  if (masterChecks.failure) {
    await writeRunJson(
      plan,
      {
        calibrate: {
          mastersBuilt: built,
          mastersReused: reused,
          calibrated: [],
          health: masterChecks.recorded,
          seconds: (performance.now() - started) / 1000,
        },
      },
      o.engine,
    );
    throw Object.assign(checkError(masterChecks.failure), { health: masterChecks.recorded });
  }

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
      const key = `${f.frame.calibratedDir}|${f.dark ?? ""}|${f.bias ?? ""}|${f.flat ?? ""}|${f.pedestal ?? ""}|${f.darkScaling ? 1 : 0}`;
      sets.set(key, [...(sets.get(key) ?? []), f]);
    }
    const frames: string[] = [];
    for (const list of sets.values()) {
      const f0 = list[0]!;
      for (const p of [f0.dark, f0.bias, f0.flat])
        if (p && !existsSync(p)) throw new TileCompileError("TC_INPUT_INVALID", { input: p, reason: "the master does not exist" });
      const before = done;
      const sub: EngineContext = { ...ctx, progress: (f, note) => ctx.progress(0.5 + (0.5 * (before + f * list.length)) / total, note) };
      const r = await provider.calibrate(
        {
          frames: list.map((f) => ({ path: f.frame.path })),
          ...(f0.bias ? { masterBias: f0.bias } : {}),
          ...(f0.dark ? { masterDark: f0.dark } : {}),
          ...(f0.flat ? { masterFlat: f0.flat } : {}),
          outputDir: join(dir, f0.frame.calibratedDir),
          options: {
            darkScaling: f0.darkScaling === true,
            cosmetic: opt.cosmetic !== false,
            ...(f0.pedestal !== undefined ? { pedestal: f0.pedestal } : {}),
          },
          history: o.history ?? [],
        },
        sub,
      );
      frames.push(...r.frames.map((x) => x.output));
      done += list.length;
      const darkMaster = f0.dark ? plan.masters.find((m) => m.path === f0.dark) : undefined;
      const dT =
        darkMaster?.set.temperatureC !== undefined
          ? Math.max(
              ...list.map((f) => (f.frame.temperatureC === undefined ? 0 : Math.abs(f.frame.temperatureC - darkMaster.set.temperatureC!))),
            )
          : undefined;
      healthGroups.push({
        subject: `${g.filter} ${expLabel(g.exposureSeconds)}${sets.size > 1 ? ` (${f0.frame.calibratedDir})` : ""}`,
        calibrated: r.frames.map((x) => x.output),
        raw: list.map((f) => f.frame.path),
        ...(f0.flat ? { flat: f0.flat } : {}),
        ...(f0.dark ? { dark: f0.dark } : {}),
        ...(f0.bias && (!f0.dark || f0.darkScaling) ? { bias: f0.bias } : {}),
        ...(f0.pedestal !== undefined ? { pedestal: f0.pedestal } : {}),
        ...(f0.offset ? { offsetSource: f0.offset } : {}),
        ...(dT !== undefined ? { temperature: { maxDelta: dT, tolerance: opt.temp_tolerance ?? 2 } } : {}),
      });
    }
    calibrated.push({ filter: g.filter, exposureSeconds: g.exposureSeconds, dir, frames });
  }
  ctx.progress(1, "calibration health check");
  const lightChecks = judge(await lightsHealth(healthGroups, ctx.signal), severities, warn);
  const health = [...masterChecks.recorded, ...lightChecks.recorded];
  const result = { mastersBuilt: built, mastersReused: reused, calibrated, health };
  await writeRunJson(plan, { calibrate: { ...result, seconds: (performance.now() - started) / 1000 } }, o.engine);
  if (lightChecks.failure) throw Object.assign(checkError(lightChecks.failure), { health });
  return result;
}

/**
 * `<output>/run.json`: the plan (requirements, every calibration decision with its rejected candidates,
 * masters and what was done with them), the stages run, the engine and the kernel backend. Atomic.
 */
export async function writeRunJson(
  plan: JobPlan,
  stages: Record<string, unknown>,
  engine: string,
  executor?: ExecutorStats,
): Promise<string> {
  const recon = loadRecon();
  const doc: RunDocument = {
    job: plan.job,
    jobFile: plan.jobFile,
    base: plan.base,
    output: plan.output,
    engine,
    kernels: { backend: recon.kind, simd: recon.simd, threads: recon.threads() },
    requirements: plan.requirements,
    decisions: plan.decisions,
    strays: plan.strays,
    duplicates: plan.duplicates,
    masters: plan.masters.map((m) => ({
      kind: m.kind,
      name: m.name,
      path: m.path,
      action: m.action,
      reason: m.reason,
      inputs: m.inputs.length,
      inputHash: m.inputHash,
      recipeHash: m.recipeHash,
    })),
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
  const p = (stages.pipeline ?? {}) as {
    stacks?: { filter: string; exposureSeconds: number; path: string }[];
    stretched?: string[];
    composed?: string;
    color?: ColorBalanceRecord;
    groups?: { stack?: { drizzle?: { coverage?: string; scale: number } } }[];
  };
  // The composite with its colour balance undone (v = sky_c + (v' − common)/k_c; approximate where an L
  // layer set the luminance) and as it is, both with the same linked display stretch.
  const c = p.color;
  const color: PreviewSource[] =
    c && p.composed && Number.isFinite(c.sky.G)
      ? [
          {
            title: `${basename(p.composed)} before the colour balance (display stretch)`,
            path: p.composed,
            stretched: false,
            section: "color",
            affine: (["R", "G", "B"] as const).map((ch) => {
              const common = c.neutralizeBackground ? c.skyCommon : c.sky[ch];
              return { scale: 1 / c.factor[ch], offset: c.sky[ch] - common / c.factor[ch] };
            }),
          },
          { title: `${basename(p.composed)} after it (display stretch)`, path: p.composed, stretched: false, section: "color" },
        ]
      : [];
  return [
    ...color,
    ...(p.stacks ?? []).map((s) => ({
      title: `stack ${s.filter} ${s.exposureSeconds} s (linear, display stretch)`,
      path: s.path,
      stretched: false,
    })),
    ...(p.groups ?? []).flatMap((g) =>
      g.stack?.drizzle?.coverage
        ? [
            {
              title: `${basename(g.stack.drizzle.coverage)} (drizzle ×${g.stack.drizzle.scale} coverage)`,
              path: g.stack.drizzle.coverage,
              stretched: false,
            },
          ]
        : [],
    ),
    ...(p.stretched ?? []).map((path) => ({ title: `${basename(path)} (final)`, path, stretched: true })),
  ];
}
