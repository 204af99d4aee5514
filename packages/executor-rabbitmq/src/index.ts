/**
 * @tile-compile/executor-rabbitmq — distributed runs over RabbitMQ (amqplib): the master publishes a
 * stage's work units, workers (`tile-compile worker`) run them, results come back in unit order, pixel
 * data goes through a shared store (`file://` or `s3://`), never through the broker.
 *
 * The default export is an engine with an empty capability map (an executor provides no stage), so it can
 * sit in `engines:` without claiming anything; the executor is selected by `runtime.executor: rabbitmq`.
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine } from "@tile-compile/core";

export { createRabbitExecutor, redact, type RabbitExecutorOptions } from "./master.js";
export { runWorker, type WorkerOptions, type WorkerHandle } from "./worker.js";
export { encode, decode } from "./codec.js";
export { FileStore, S3Store, storeFor, sha256, type DataRef, type DataStore, type S3Settings } from "./store.js";
export * from "./topology.js";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

const engine: Engine = defineEngine({
  meta: {
    name: pkg.name,
    version: pkg.version,
    apiVersion: 1,
    description: "distributed executor over RabbitMQ (runtime.executor: rabbitmq); provides no stage",
  },
  capabilities: {},
});

export default engine;
