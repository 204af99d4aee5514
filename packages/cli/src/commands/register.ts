/**
 * `tile-compile register <frames or folders…> --engine relative|wcs_anchor|siril [--reference auto|N|path] --out DIR`:
 * one registration stage through the selected engine. Writes the registered frames (named by
 * `registration.registered_filename_pattern`) and `DIR/transforms.json`: per input frame, by file name,
 * `matrix` (row-major 3×3 H mapping a pixel (x, y, 1) of the input to the reference frame, 0-based
 * pixel centres, x along NAXIS1), `rms_px`, `median_px`, `stars` — or `error`, the reason it failed.
 * Frames that fail are reported and left out; the command exits 1 only when none could be registered.
 */
import { rename, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import {
  applyTransform,
  defineStep,
  describeRun,
  frameStars,
  pixelAgreement,
  planStage,
  provenanceLine,
  readFitsImage,
  RunEvents,
  runStep,
  type LoadedConfig,
  type RegistrationResult,
  type StagePlan,
} from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";
import { createRunScope, loadConfiguredEngines } from "../container.js";
import { printPlan, progressBar, stderrLogger, type Io } from "../output.js";
import { framesFrom } from "../frames.js";

export interface RegisterOptions {
  out?: string;
  engine?: string;
  reference?: string;
  transform?: string;
  json?: boolean;
  verbose?: boolean;
  /** Print the plan (stage, engine, frames, outputs) and register nothing. */
  dryRun?: boolean;
  /** A second registration method (siril, wcs_anchor, relative) run onto the same reference; per-frame agreement written beside. */
  compare?: string;
}

export async function registerCommand(
  inputs: string[],
  opts: RegisterOptions,
  loaded: LoadedConfig,
  io: Io,
  signal: AbortSignal,
  cwd: string,
): Promise<number> {
  const files = await framesFrom(inputs, cwd, signal);
  const reg = loaded.config.registration;
  const outDir = resolve(cwd, opts.out ?? reg.output_dir);
  const refOpt = opts.reference ?? reg.reference;
  const reference =
    refOpt === "auto" ? "auto" : typeof refOpt === "number" ? refOpt : /^\d+$/.test(refOpt) ? Number(refOpt) : resolve(cwd, refOpt);
  const method = opts.engine ?? reg.engine;
  const engines = await loadConfiguredEngines(loaded, cwd, [
    `registration:${method}`,
    ...(opts.compare ? [`registration:${opts.compare}`] : []),
  ]);
  const logger = stderrLogger(io, Boolean(opts.verbose));
  const events = new RunEvents();
  const scope = await createRunScope({ signal, logger, events, engines, workdir: outDir, threads: loaded.runtime.threads });
  try {
    const options: Record<string, unknown> = {
      transform: opts.transform ?? reg.transform,
      ...(reg.interpolation ? { interpolation: reg.interpolation } : {}),
      ...(reg.debayer ? { debayer: reg.debayer } : {}),
    };
    const plan = planStage(scope.registry, {
      stage: "registration",
      method,
      ...(reg.provider ? { engine: reg.provider } : {}),
      field: opts.engine ? "--engine" : "registration.engine",
      options,
    });
    // The frames onto the reference; with --compare, the same frames onto the same reference with the other method.
    const registerStep = (key: string, stage: StagePlan<"registration">, dir: string, ref: () => typeof reference) =>
      defineStep({
        key,
        stage,
        inputs: files,
        outputs: [],
        writes: [dir],
        run: async (provider, ctx) => ({
          value: await provider.register(
            {
              frames: files.map((path) => ({ path })),
              reference: ref(),
              outputDir: dir,
              filenamePattern: reg.registered_filename_pattern,
              options: stage.options,
              history: [provenanceLine(stage)],
            },
            ctx,
          ),
        }),
      });
    const results: RegistrationResult[] = [];
    const steps = [registerStep("register", plan, outDir, () => reference)];
    if (opts.compare) {
      const other = planStage(scope.registry, { stage: "registration", method: opts.compare, field: "--compare", options });
      steps.push(registerStep(`compare ${opts.compare}`, other, join(outDir, `compare-${opts.compare}`), () => results[0]!.reference));
    }
    scope.registry.freeze();
    if (opts.dryRun) return printPlan(io, describeRun(steps), Boolean(opts.json));
    const bar = opts.json ? progressBar({ ...io, interactive: false }, "") : progressBar(io, `registration:${plan.method}`);
    events.on((e) => {
      if (e.type === "stage:progress") bar.update(e.fraction, e.note);
      if (e.type === "warning") logger.warn(e.message);
    });
    const driver = { stage: scope.stageOptions(loaded) };
    const result = await runStep(steps[0]!, driver);
    results.push(result);
    bar.stop();
    const doc: Record<string, unknown> = {
      engine: `${plan.engine.meta.name}@${plan.engine.meta.version}`,
      method: plan.method,
      reference: result.reference,
      frames: Object.fromEntries(
        result.frames.map((f) => [
          basename(f.input),
          f.error !== undefined
            ? { input: f.input, error: f.error }
            : { input: f.input, output: f.output, matrix: f.matrix, rms_px: f.rmsPx, median_px: f.medianPx, stars: f.stars },
        ]),
      ),
    };
    if (steps[1]) {
      // Per frame, how far the two transforms put the frame's corners apart, and which one the pixels favour (verify.ts).
      const other = steps[1].stage;
      const second = await runStep(steps[1], driver);
      doc.compare = await compareRegistrations(
        result,
        second,
        `${other.engine.meta.name}@${other.engine.meta.version}`,
        other.method,
        signal,
      );
    }
    const target = join(outDir, "transforms.json");
    const tmp = join(outDir, `.transforms.json.${process.pid}.partial`);
    await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`);
    await rename(tmp, target);
    const ok = result.frames.filter((f) => !f.error);
    const failed = result.frames.filter((f) => f.error);
    if (opts.json) io.out(JSON.stringify(doc, null, 2));
    else {
      io.out(
        `registered ${ok.length} of ${result.frames.length} frames onto ${basename(result.reference)} with registration:${plan.method} → ${outDir}`,
      );
      for (const f of failed) io.out(`  not registered: ${basename(f.input)}: ${f.error}`);
      const cmp = doc.compare as Awaited<ReturnType<typeof compareRegistrations>> | undefined;
      if (cmp) {
        io.out(
          `compared with registration:${cmp.method}: worst corner disagreement ${cmp.worstCornersPx.toFixed(3)} px over ${Object.keys(cmp.frames).length} frames both registered; the pixels favour ${plan.method} on ${cmp.favoured.main}, ${cmp.method} on ${cmp.favoured.other}`,
        );
        for (const [name, f] of Object.entries(cmp.frames))
          io.out(
            `  ${name}: corners ${f.cornersPx.toFixed(3)} px; pixel correlation ${f.pixelCorrelation.main.toFixed(4)} (${plan.method}) / ${f.pixelCorrelation.other.toFixed(4)} (${cmp.method})`,
          );
      }
      io.out(`transforms: ${target}`);
    }
    return ok.length > 0 ? 0 : 1;
  } finally {
    await scope.dispose();
  }
}

/** One frame of a `--compare`: corner disagreement, pixel correlation under each transform, the other engine's transform. */
export interface ComparedFrame {
  cornersPx: number;
  pixelCorrelation: { main: number; other: number };
  otherMatrix: number[];
}

/**
 * Two registrations of the same frames onto the same reference: per frame both registered, the largest
 * distance between where the two transforms put the frame's four corners, and the pixel correlation of
 * the frame with the reference under each (the check that does not use either engine's star list).
 */
export async function compareRegistrations(
  main: RegistrationResult,
  other: RegistrationResult,
  engine: string,
  method: string,
  signal: AbortSignal,
): Promise<{
  engine: string;
  method: string;
  worstCornersPx: number;
  favoured: { main: number; other: number };
  frames: Record<string, ComparedFrame>;
}> {
  const refImg = await readFitsImage(main.reference, { signal });
  const refStars = await frameStars(loadRecon(), { path: main.reference }, signal);
  const W = refImg.width,
    H = refImg.height;
  const frames: Record<string, ComparedFrame> = {};
  let worst = 0,
    favMain = 0,
    favOther = 0;
  for (const [k, a] of main.frames.entries()) {
    const b = other.frames[k];
    if (!a.matrix || !b?.matrix || a.input === main.reference) continue;
    let cornersPx = 0;
    for (const [x, y] of [
      [0, 0],
      [W - 1, 0],
      [0, H - 1],
      [W - 1, H - 1],
    ] as const) {
      const p = applyTransform(a.matrix, { x, y }),
        q = applyTransform(b.matrix, { x, y });
      cornersPx = Math.max(cornersPx, Math.hypot(p.x - q.x, p.y - q.y));
    }
    const img = await readFitsImage(a.input, { signal });
    const pm = pixelAgreement(refImg, refStars.stars, img, a.matrix, refStars.fwhm).r,
      po = pixelAgreement(refImg, refStars.stars, img, b.matrix, refStars.fwhm).r;
    if (pm >= po) favMain++;
    else favOther++;
    worst = Math.max(worst, cornersPx);
    frames[basename(a.input)] = {
      cornersPx: Number(cornersPx.toFixed(4)),
      pixelCorrelation: { main: Number(pm.toFixed(5)), other: Number(po.toFixed(5)) },
      otherMatrix: [...b.matrix],
    };
  }
  return { engine, method, worstCornersPx: worst, favoured: { main: favMain, other: favOther }, frames };
}
