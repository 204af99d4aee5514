/**
 * Broker topology, shared by master and workers (declared idempotently by both, after every reconnect):
 *
 * - `tile-compile.work` (fanout) → `tile-compile.units`: a durable **quorum** queue every worker consumes
 *   (manual acks, prefetch = the worker's concurrency). Units are published with the run id as routing
 *   key, persistent, under publisher confirms.
 * - `tile-compile.dead` (topic): the dead-letter exchange. The units queue dead-letters there after
 *   {@link DELIVERY_LIMIT} deliveries (workers that died or lost their connection each time), and a worker
 *   publishes there itself, with the error in `x-tc-error`, a unit whose task threw {@link MAX_ATTEMPTS}
 *   times. `tile-compile.dead` (queue, bound `#`) keeps every dead unit for inspection; each run binds its own
 *   `tile-compile.run.<id>.dead` with its run id, so the master learns of it at once.
 * - `tile-compile.run.<id>.results`: durable, the run's results (survive a broker restart). Like the run's
 *   dead queue it expires (`x-expires`) once no master has used it for a while: a worker that finds it
 *   gone drops the run's remaining units (their master was killed).
 * - `tile-compile.control` (fanout): `cancel` and `done` notices to every worker (exclusive queue each).
 */
import type { Channel } from "amqplib";

export const WORK_EXCHANGE = "tile-compile.work";
export const UNITS_QUEUE = "tile-compile.units";
export const DEAD_EXCHANGE = "tile-compile.dead";
export const DEAD_QUEUE = "tile-compile.dead";
export const CONTROL_EXCHANGE = "tile-compile.control";
/** Deliveries after which the broker dead-letters a unit whose workers kept dying (quorum `x-delivery-limit`). */
export const DELIVERY_LIMIT = 5;
/** Attempts after which a worker dead-letters a unit whose task threw. */
export const MAX_ATTEMPTS = 3;
/** Results up to this size travel inside the result message; larger ones by reference. */
export const INLINE_MAX = 2048;

export const resultsQueue = (run: string) => `tile-compile.run.${run}.results`;
export const runDeadQueue = (run: string) => `tile-compile.run.${run}.dead`;

export async function assertTopology(ch: Channel): Promise<void> {
  await ch.assertExchange(WORK_EXCHANGE, "fanout", { durable: true });
  await ch.assertExchange(DEAD_EXCHANGE, "topic", { durable: true });
  await ch.assertExchange(CONTROL_EXCHANGE, "fanout", { durable: true });
  await ch.assertQueue(UNITS_QUEUE, {
    durable: true,
    arguments: { "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": DEAD_EXCHANGE },
  });
  await ch.bindQueue(UNITS_QUEUE, WORK_EXCHANGE, "");
  await ch.assertQueue(DEAD_QUEUE, { durable: true });
  await ch.bindQueue(DEAD_QUEUE, DEAD_EXCHANGE, "#");
}

/** A unit on the wire (encoded with codec.ts). */
export interface UnitMessage {
  v: 1;
  run: string;
  /** Which `run()` call of the executor (units of one call share it). */
  call: number;
  /** Index of the unit in its call. */
  index: number;
  /** The stage's unit id (`band/0/128`). */
  unit: string;
  task: string;
  input: unknown;
  /** Base URL of the run's store (results larger than INLINE_MAX go there). */
  store: string;
  reply: string;
  maxAttempts: number;
}

/** A result on the wire. */
export interface ResultMessage {
  v: 1;
  run: string;
  call: number;
  index: number;
  unit: string;
  worker: string;
  /** Deliveries before this one (0: first attempt). */
  deliveries: number;
  seconds: number;
  inline?: Uint8Array;
  ref?: { url: string; sha256: string; bytes: number };
}

/** A control notice. */
export interface ControlMessage {
  type: "cancel" | "done";
  run: string;
}
