/**
 * `tile-compile worker --broker amqp://… [--engine PKG|PATH …]`: take work units of distributed runs
 * (`runtime.executor: rabbitmq`) from the broker until interrupted: the tasks of the built-in engine and of
 * each engine named with `--engine`. Reconnects after a lost connection; on SIGINT it stops
 * taking units, finishes the ones in hand and exits 0.
 */
import { availableParallelism } from "node:os";
import { loadEngine, taskCatalogue, TileCompileError, type EngineDefinition } from "@tile-compile/core";
import { builtinEngines } from "@tile-compile/engine-native";
import type { Io } from "../output.js";

export interface WorkerCommandOptions {
  engine?: string[];
  broker?: string;
  concurrency?: string;
  threads?: string;
  name?: string;
  s3Endpoint?: string;
  s3Region?: string;
  verbose?: boolean;
}

const positive = (v: string | undefined, flag: string, fallback: number): number => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new TileCompileError("TC_INPUT_INVALID", { input: flag, reason: `"${v}" is not a whole number ≥ 1` });
  return n;
};

export async function workerCommand(o: WorkerCommandOptions, io: Io, signal: AbortSignal): Promise<number> {
  const url = o.broker ?? process.env.TILE_COMPILE_BROKER;
  if (!url)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "--broker",
      reason: "not given and TILE_COMPILE_BROKER is empty",
      hint: "tile-compile worker --broker amqp://user:password@host:5672 (the broker the master's runtime.rabbitmq.url names).",
    });
  if (!/^amqps?:\/\//.test(url))
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: "--broker",
      reason: `"${url}" is not an amqp:// or amqps:// URL`,
      hint: "tile-compile worker --broker amqp://user:password@host:5672/vhost",
    });
  const concurrency = positive(o.concurrency, "--concurrency", 1);
  const threads = positive(o.threads, "--threads", Math.max(1, Math.floor(availableParallelism() / concurrency)));
  // The built-in engine's tasks, and those of each engine named with --engine (a package name or a path,
  // resolved from the current folder like the engines of tile_compile.yaml).
  const engines: EngineDefinition[] = [...builtinEngines];
  for (const spec of o.engine ?? []) engines.push((await loadEngine(spec, { configDir: process.cwd(), cwd: process.cwd() })).engine);
  const tasks = taskCatalogue(engines);
  const { runWorker, redact } = await import("@tile-compile/executor-rabbitmq");
  const say = (level: string) => (m: string) => io.err(`worker ${level}: ${m}`);
  let units = 0,
    failed = 0;
  const w = await runWorker({
    url,
    concurrency,
    threads,
    tasks,
    ...(o.name ? { name: o.name } : {}),
    ...(o.s3Endpoint || o.s3Region
      ? { s3: { ...(o.s3Endpoint ? { endpoint: o.s3Endpoint } : {}), ...(o.s3Region ? { region: o.s3Region } : {}) } }
      : {}),
    logger: { debug: o.verbose ? say("debug") : () => {}, info: say("info"), warn: say("warn"), error: say("error") },
    onUnit: (e) => {
      units++;
      if (!e.ok) {
        failed++;
        io.err(`worker: unit ${e.unit} of run ${e.run} failed (delivery ${e.deliveries + 1}): ${e.error ?? "?"}`);
      } else if (o.verbose) io.err(`worker: ${e.run} ${e.unit} ${e.seconds.toFixed(2)} s`);
    },
  });
  io.out(`worker ${w.name} ready on ${redact(url)} (concurrency ${concurrency}, ${threads} thread(s) per unit); Ctrl-C stops`);
  await new Promise<void>((res) => {
    if (signal.aborted) res();
    else signal.addEventListener("abort", () => res(), { once: true });
  });
  await w.stop();
  io.out(`worker ${w.name} stopped: ${units} unit(s) run, ${failed} failed, ${w.reconnects} reconnect(s)`);
  return 0;
}
