/**
 * @tile-compile/executor-rabbitmq — NOT BUILT YET.
 *
 * A distributed master/worker executor over RabbitMQ (amqplib): tiles and frames are dispatched as jobs, pixel data travels by reference (shared file system), never through the broker; the master aggregates deterministically.
 *
 * Until then this package registers an engine with an empty capability map, so the planner reports
 * honestly that nothing here provides a stage (CapabilityError names the engines that do), and
 * `tile-compile engines` lists it with no capabilities. Planned capabilities: (an executor, not a stage provider).
 */
import { createRequire } from "node:module";
import { defineEngine, type Engine } from "@tile-compile/core";

const pkg = createRequire(import.meta.url)("../package.json") as { name: string; version: string };

const engine: Engine = defineEngine({
  meta: { name: pkg.name, version: pkg.version, apiVersion: 1, description: "not built yet: provides no capability" },
  capabilities: {},
});

export default engine;
