/**
 * The engine conformance checks (our RuleTester). Framework-free: `checkEngineConformance` returns
 * named results; `runEngineConformance` in ./index.ts turns them into vitest tests.
 *
 * What is checked: meta (name, semver version, supported apiVersion); the capability map (well-formed
 * ids, valid stabilities, a provider for each capability and none without one); abort behaviour (every
 * provider, called with an already aborted signal, rejects with an AbortError and writes nothing); output
 * shapes (stacking providers, given three small seeded frames, write a FITS image of their size and
 * report frameCount 3).
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isAbortError } from "../errors/index.js";
import { readFitsHeader } from "@tile-compile/fits";
import { writeFitsImage } from "@tile-compile/fits";
import { FitsHeader } from "@tile-compile/fits";
import { STAGE_NAMES, SUPPORTED_API_VERSIONS, type EngineContext, type EngineDefinition, type StageName } from "../kernel/contracts.js";
import { engineContractProblems } from "../kernel/define.js";
import { seededRandom } from "../util/random.js";
import { localExecutor } from "../executor/local.js";
import type { Executor } from "../executor/contracts.js";

export { seededRandom };

export interface ConformanceCheck {
  name: string;
  problems: string[];
}

/** Write `count` small seeded frames (sky 1000 ADU + noise + one star) and return their paths. */
export async function writeTinyFrames(dir: string, count = 3, width = 16, height = 12, seed = 42): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const rnd = seededRandom(seed);
  const paths: string[] = [];
  for (let k = 0; k < count; k++) {
    const data = new Float32Array(width * height);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const r2 = (x - width / 2) ** 2 + (y - height / 2) ** 2;
        data[y * width + x] = 1000 + 20 * (rnd() - 0.5) + 5000 * Math.exp(-r2 / 4);
      }
    const header = new FitsHeader()
      .set("IMAGETYP", "Light")
      .set("EXPTIME", 10, "[s]", { numberFormat: "float" })
      .set("FILTER", "L")
      .set("DATE-OBS", `2024-01-15T20:0${k}:00`);
    const p = join(dir, `tiny_${String(k + 1).padStart(3, "0")}.fit`);
    await writeFitsImage(p, { width, height, data }, { header });
    paths.push(p);
  }
  return paths;
}

/** A context as the kernel's runner gives it: silent, small budget, and always an executor (here, this process). */
function silentContext(signal: AbortSignal, workdir: string, executor: Executor): EngineContext {
  const noop = () => undefined;
  return {
    signal,
    workdir,
    executor,
    logger: { debug: noop, info: noop, warn: noop, error: noop },
    progress: noop,
    options: {},
    runtime: { threads: 1, memoryBudgetBytes: 64 << 20 },
  };
}

async function callProvider(
  stage: StageName,
  provider: Record<string, unknown>,
  frames: string[],
  outDir: string,
  ctx: EngineContext,
): Promise<unknown> {
  const refs = frames.map((path) => ({ path }));
  const out = join(outDir, `${stage}.fit`);
  switch (stage) {
    case "stacking":
      return (provider as { stack: Function }).stack({ frames: refs, output: out, method: "", options: {}, history: [] }, ctx);
    case "registration":
      return (provider as { register: Function }).register(
        { frames: refs, reference: "auto", outputDir: outDir, filenamePattern: "reg_{index:05d}.fit", options: {}, history: [] },
        ctx,
      );
    case "calibration":
      return (provider as { calibrate: Function }).calibrate({ frames: refs, outputDir: outDir, options: {}, history: [] }, ctx);
    case "background":
      return (provider as { extract: Function }).extract(
        { images: refs, outputs: refs.map((_, i) => join(outDir, `background_${i}.fit`)), options: {}, history: [] },
        ctx,
      );
    case "composition":
      return (provider as { compose: Function }).compose(
        { channels: { L: frames[0] }, palette: { L: { L: 1 } }, output: out, options: {}, history: [] },
        ctx,
      );
    case "stretch":
      return (provider as { stretch: Function }).stretch({ input: frames[0], output: out, options: {}, history: [] }, ctx);
  }
}

/** Run every conformance check on an engine (or a factory returning one). */
export async function checkEngineConformance(engineOrFactory: unknown): Promise<ConformanceCheck[]> {
  const engine = (typeof engineOrFactory === "function" ? await (engineOrFactory as () => unknown)() : engineOrFactory) as EngineDefinition;
  const checks: ConformanceCheck[] = [];
  const contract = engineContractProblems(engine);
  const metaProblems = contract.filter((p) => p.startsWith("meta"));
  if (metaProblems.length === 0 && !SUPPORTED_API_VERSIONS.includes(engine.meta.apiVersion))
    metaProblems.push(`meta.apiVersion ${engine.meta.apiVersion} is not supported (${SUPPORTED_API_VERSIONS.join(", ")})`);
  checks.push({ name: "meta", problems: metaProblems });
  checks.push({ name: "capability map", problems: contract.filter((p) => !p.startsWith("meta")) });
  if (contract.length > 0) return checks;

  const dir = await mkdtemp(join(tmpdir(), "tc-conformance-"));
  const executor = localExecutor({ threads: 1 });
  try {
    const frames = await writeTinyFrames(join(dir), 3);
    const abortProblems: string[] = [];
    const shapeProblems: string[] = [];
    for (const stage of STAGE_NAMES) {
      for (const [method, provider] of Object.entries((engine[stage] ?? {}) as unknown as Record<string, Record<string, unknown>>)) {
        const id = `${stage}:${method}`;
        const outDir = await mkdtemp(join(dir, "out-"));
        const controller = new AbortController();
        controller.abort();
        try {
          await callProvider(stage, provider, frames, outDir, silentContext(controller.signal, outDir, executor));
          abortProblems.push(`${id}: resolved although the signal was already aborted`);
        } catch (e) {
          if (!isAbortError(e))
            abortProblems.push(`${id}: rejected with ${(e as Error)?.name ?? e} ("${(e as Error)?.message}") instead of an AbortError`);
        }
        const left = (await readdir(outDir)).filter((f) => !f.startsWith("."));
        if (left.length > 0) abortProblems.push(`${id}: wrote ${left.join(", ")} although cancelled`);
        if (stage === "stacking") {
          const ctx = silentContext(new AbortController().signal, outDir, executor);
          try {
            const result = (await callProvider(stage, provider, frames, outDir, ctx)) as {
              frameCount?: number;
              width?: number;
              height?: number;
            };
            const out = join(outDir, "stacking.fit");
            if (!existsSync(out)) shapeProblems.push(`${id}: did not write its output file`);
            else {
              const h = await readFitsHeader(out);
              if (h.width !== 16 || h.height !== 12) shapeProblems.push(`${id}: output is ${h.width}×${h.height}, expected 16×12`);
            }
            if (result?.frameCount !== 3) shapeProblems.push(`${id}: reported frameCount ${result?.frameCount}, expected 3`);
            if (result?.width !== 16 || result?.height !== 12)
              shapeProblems.push(`${id}: reported ${result?.width}×${result?.height}, expected 16×12`);
          } catch (e) {
            shapeProblems.push(`${id}: failed on three valid frames: ${(e as Error)?.message ?? e}`);
          }
        }
      }
    }
    checks.push({ name: "abort behaviour", problems: abortProblems });
    checks.push({ name: "output shapes", problems: shapeProblems });
  } finally {
    await executor.close();
    await rm(dir, { recursive: true, force: true });
  }
  return checks;
}
