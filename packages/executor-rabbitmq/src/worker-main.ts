#!/usr/bin/env node
/**
 * `tile-compile-worker --broker amqp://… --engine native [--engine PKG|PATH …] [--concurrency N] [--threads N] [--name NAME] [--s3-endpoint URL] [--log-units] [--delay-ms N]`:
 * a worker process (the CLI's `tile-compile worker` runs the same). It runs the tasks of the engines named
 * with `--engine` (short names, package names or paths, resolved from the current folder like the engines
 * of tile_compile.yaml). Stops cleanly on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { loadEngine, taskCatalogue } from "@tile-compile/core";
import { runWorker } from "./worker.js";

const { values } = parseArgs({
  options: {
    engine: { type: "string", multiple: true },
    broker: { type: "string" },
    concurrency: { type: "string" },
    threads: { type: "string" },
    name: { type: "string" },
    "s3-endpoint": { type: "string" },
    quiet: { type: "boolean" },
    "delay-ms": { type: "string" },
    "log-units": { type: "boolean" },
  },
});
const url = values.broker ?? process.env.TILE_COMPILE_BROKER;
if (!url) {
  process.stderr.write("tile-compile-worker: --broker amqp://user:password@host:5672 is required (or TILE_COMPILE_BROKER)\n");
  process.exit(78);
}
if (!values.engine?.length) {
  process.stderr.write("tile-compile-worker: name the engines whose tasks to run: --engine native [--engine PKG|PATH …]\n");
  process.exit(78);
}
const engines = await Promise.all(
  values.engine.map(async (e) => (await loadEngine(e, { configDir: process.cwd(), cwd: process.cwd() })).engine),
);
const say = (l: string) => (m: string) => {
  if (!values.quiet || l !== "info") process.stderr.write(`[worker ${l}] ${m}\n`);
};
const w = await runWorker({
  url,
  tasks: taskCatalogue(engines),
  concurrency: Number(values.concurrency ?? 1),
  threads: Number(values.threads ?? 1),
  ...(values.name ? { name: values.name } : {}),
  ...(values["s3-endpoint"] ? { s3: { endpoint: values["s3-endpoint"] } } : {}),
  ...(values["delay-ms"] ? { delayMs: Number(values["delay-ms"]) } : {}),
  ...(values["log-units"]
    ? {
        onUnitStart: (e: { run: string; unit: string; deliveries: number }) =>
          process.stdout.write(`start ${e.run} ${e.unit} ${e.deliveries}\n`),
        onUnit: (e: { run: string; unit: string; ok: boolean }) => process.stdout.write(`${e.ok ? "done" : "fail"} ${e.run} ${e.unit}\n`),
      }
    : {}),
  logger: { debug() {}, info: say("info"), warn: say("warn"), error: say("error") },
});
process.stdout.write(`worker ${w.name} ready\n`);
const stop = async () => {
  await w.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
