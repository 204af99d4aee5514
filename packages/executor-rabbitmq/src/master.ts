/**
 * The master side: an {@link Executor} that publishes a stage's units to the broker and yields their
 * results in unit order. Pixel data stays in the shared store (`runtime.rabbitmq.data`); messages carry
 * metadata and checksummed references only.
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { connect, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import {
  TileCompileError,
  type Executor,
  type ExecutorStats,
  type Logger,
  type RunUnitsOptions,
  type SharedRef,
  type WorkUnit,
} from "@tile-compile/core";
import { decode, encode } from "./codec.js";
import { storeFor, type DataRef, type DataStore, type S3Settings } from "./store.js";
import {
  assertTopology,
  CONTROL_EXCHANGE,
  DEAD_EXCHANGE,
  MAX_ATTEMPTS,
  resultsQueue,
  runDeadQueue,
  WORK_EXCHANGE,
  type ControlMessage,
  type ResultMessage,
  type UnitMessage,
} from "./topology.js";

export interface RabbitExecutorOptions {
  /** `amqp://user:password@host:5672/vhost`. */
  url: string;
  /** Shared store for data refs: `file:///shared/folder` (same path on every machine) or `s3://bucket/prefix`. */
  data: string;
  s3?: S3Settings;
  /** Isolates this run's queues and store keys; default: random. */
  runId?: string;
  /** Units published ahead of the one the stage waits for (bounds the results held in memory). Default 32. */
  window?: number;
  /** Attempts before a unit whose task throws is dead-lettered. Default 3. */
  maxAttempts?: number;
  /** Seconds to wait for the broker at start. Default 15. */
  connectTimeoutSeconds?: number;
  /** Reconnect attempts after a lost connection before the run fails. Default 120 (about 4 minutes). */
  reconnectAttempts?: number;
  /** Units a stage should split into at least (so every worker has work). Default 16. */
  parallelism?: number;
  /**
   * Seconds after which the broker deletes this run's queues once no master consumes them (the master
   * was killed or its machine died); workers then drop the run's remaining units instead of computing
   * them for nobody. Longer than the reconnect window. Default 600.
   */
  orphanAfterSeconds?: number;
  logger?: Logger;
}

interface Call {
  id: number;
  units: readonly WorkUnit[];
  results: Map<number, Promise<unknown>>;
  published: Set<number>;
  failed?: Error;
  wake?: () => void;
  done: number;
  onUnitDone?: (done: number, total: number) => void;
}

type Recovering = Awaited<ReturnType<typeof connect>> & {
  on(e: string, l: (...a: never[]) => void): unknown;
  waitForConnect?: () => Promise<unknown>;
};

const delay = (attempt: number) => Math.min(2000, 100 * 2 ** Math.min(attempt, 5));

/** An executor over RabbitMQ. Connects before returning (fails with TC_BROKER_UNAVAILABLE). */
export async function createRabbitExecutor(
  o: RabbitExecutorOptions,
): Promise<Executor & { readonly runId: string; readonly parallelism: number }> {
  const runId =
    o.runId ??
    `${new Date()
      .toISOString()
      .replace(/[-:.TZ]/g, "")
      .slice(0, 14)}-${randomBytes(3).toString("hex")}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(runId))
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`run id "${runId}": letters, digits, _ and - only`],
    });
  const store: DataStore = storeFor(o.data, o.s3);
  const window = o.window ?? 32;
  // A run's own queues expire when unused (no master consuming) for `orphanAfterSeconds`.
  const runQueueOptions = { durable: true, arguments: { "x-expires": Math.round(1000 * (o.orphanAfterSeconds ?? 600)) } };
  const maxAttempts = o.maxAttempts ?? MAX_ATTEMPTS;
  const log = o.logger;
  const stats: ExecutorStats = {
    executor: "rabbitmq",
    units: 0,
    redelivered: 0,
    duplicates: 0,
    workers: [],
    brokerBytes: 0,
    storeBytes: 0,
    largestMessage: 0,
    reconnects: 0,
  };
  const workers = new Set<string>();
  const calls = new Map<number, Call>();
  let callSeq = 0,
    shareSeq = 0;
  let ch: ConfirmChannel | undefined;
  let readyResolve!: () => void;
  let ready = new Promise<void>((r) => (readyResolve = r));
  let fatal: Error | undefined;
  let connects = 0;
  const count = (bytes: number) => {
    stats.brokerBytes += bytes;
    stats.largestMessage = Math.max(stats.largestMessage, bytes);
  };
  const failAll = (e: Error) => {
    fatal ??= e;
    for (const c of calls.values()) {
      c.failed ??= e;
      c.wake?.();
    }
  };

  const onResult = (channel: ConfirmChannel) => (msg: ConsumeMessage | null) => {
    try {
      takeResult(channel, msg);
    } catch (e) {
      failAll(e as Error);
    }
  };
  const takeResult = (channel: ConfirmChannel, msg: ConsumeMessage | null) => {
    if (!msg) return;
    count(msg.content.length);
    let r: ResultMessage;
    try {
      r = decode<ResultMessage>(msg.content);
    } catch (e) {
      log?.warn(`ignored a malformed result message: ${(e as Error).message}`);
      channel.ack(msg);
      return;
    }
    const c = calls.get(r.call);
    if (!c || r.run !== runId || c.results.has(r.index) || r.index < c.done) {
      if (c) stats.duplicates++;
      channel.ack(msg);
      return;
    }
    if (r.deliveries > 0) stats.redelivered++;
    workers.add(r.worker);
    const p = r.inline ? Promise.resolve(decode(r.inline)) : store.get(r.ref as DataRef).then((b) => decode(b));
    p.catch(() => undefined);
    c.results.set(r.index, p);
    c.onUnitDone?.(c.results.size + c.done, c.units.length);
    channel.ack(msg);
    c.wake?.();
  };

  const onDead = (channel: ConfirmChannel) => (msg: ConsumeMessage | null) => {
    if (!msg) return;
    const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
    let u: Partial<UnitMessage> = {};
    try {
      u = decode<UnitMessage>(msg.content);
    } catch {
      /* reported below without the unit */
    }
    channel.ack(msg);
    if (u.run !== runId) return;
    const death = Array.isArray(h["x-death"]) ? (h["x-death"] as { reason?: string; count?: number }[])[0] : undefined;
    const reason =
      typeof h["x-tc-error"] === "string"
        ? String(h["x-tc-error"])
        : `the broker dead-lettered it (${death?.reason ?? "?"}): it was delivered ${Number(h["x-delivery-count"] ?? death?.count ?? 0) + 1} times and its workers died or lost their connection each time`;
    const e = new TileCompileError("TC_UNIT_FAILED", {
      run: runId,
      unit: u.unit ?? "?",
      task: u.task ?? "?",
      attempts: h["x-tc-attempts"] ?? "?",
      worker: h["x-tc-worker"],
      reason,
      queue: "tile-compile.dead",
      ...(typeof h["x-tc-code"] === "string" ? { code: h["x-tc-code"] } : {}),
    });
    const c = u.call !== undefined ? calls.get(u.call) : undefined;
    if (c) {
      c.failed ??= e;
      c.wake?.();
    } else failAll(e);
  };

  let conn: Recovering;
  try {
    conn = (await connect(o.url, {
      recovery: {
        initialMaxRetries: Math.max(1, Math.ceil((o.connectTimeoutSeconds ?? 15) / 2)),
        maxRetries: o.reconnectAttempts ?? 120,
        calculateDelay: delay,
        async setup(model: { createConfirmChannel(): Promise<ConfirmChannel> }) {
          const c = await model.createConfirmChannel();
          c.on("error", (e: Error) => log?.warn(`broker channel: ${e.message}`));
          await assertTopology(c);
          await c.assertQueue(resultsQueue(runId), runQueueOptions);
          await c.assertQueue(runDeadQueue(runId), runQueueOptions);
          await c.bindQueue(runDeadQueue(runId), DEAD_EXCHANGE, runId);
          await c.prefetch(256);
          await c.consume(resultsQueue(runId), onResult(c), { noAck: false });
          await c.consume(runDeadQueue(runId), onDead(c), { noAck: false });
          ch = c;
          if (connects++ > 0) {
            stats.reconnects++;
            log?.info(`reconnected to the broker (${stats.reconnects})`);
          }
          readyResolve();
        },
      },
    } as never)) as Recovering;
  } catch (e) {
    throw new TileCompileError(
      "TC_BROKER_UNAVAILABLE",
      { url: redact(o.url), seconds: o.connectTimeoutSeconds ?? 15, reason: (e as Error).message },
      { cause: e },
    );
  }
  conn.on("disconnect", (e: Error) => {
    ch = undefined;
    ready = new Promise<void>((r) => (readyResolve = r));
    log?.warn(`lost the broker connection (${e?.message ?? "closed"}); reconnecting`);
  });
  conn.on("reconnect-failed", (e: Error) =>
    failAll(new TileCompileError("TC_BROKER_UNAVAILABLE", { url: redact(o.url), reason: `gave up reconnecting: ${e.message}` })),
  );
  conn.on("error", (e: Error) => log?.warn(`broker connection: ${e.message}`));

  /** Publish with a confirm; after a lost connection, again on the new one (duplicates are dropped by unit). */
  const publish = async (exchange: string, key: string, body: Buffer, props: Record<string, unknown>): Promise<void> => {
    for (;;) {
      if (fatal) throw fatal;
      await ready;
      const c = ch;
      if (!c) continue;
      try {
        await new Promise<void>((res, rej) => {
          c.publish(exchange, key, body, props, (err) => (err ? rej(err) : res()));
        });
        count(body.length);
        return;
      } catch (e) {
        if (ch === c) await new Promise((r) => setTimeout(r, 200));
        log?.debug?.(`publish retried: ${(e as Error).message}`);
      }
    }
  };

  const control = (m: ControlMessage) =>
    publish(CONTROL_EXCHANGE, "", Buffer.from(JSON.stringify(m)), { persistent: false }).catch(() => undefined);

  const executor = {
    kind: "rabbitmq",
    runId,
    parallelism: o.parallelism ?? 16,
    async share(name: string, value: unknown): Promise<SharedRef> {
      const ref = await store.put(
        runId,
        `shared/${String(++shareSeq).padStart(4, "0")}-${name.replace(/[^A-Za-z0-9_.-]/g, "_")}.bin`,
        encode(value),
      );
      return { $shared: ref.url, sha256: ref.sha256, bytes: ref.bytes } as SharedRef;
    },
    async *run<O>(units: readonly WorkUnit<unknown, O>[], opts: RunUnitsOptions): AsyncIterable<O> {
      const call: Call = {
        id: ++callSeq,
        units,
        results: new Map(),
        published: new Set(),
        done: 0,
        ...(opts.onUnitDone ? { onUnitDone: opts.onUnitDone } : {}),
      };
      calls.set(call.id, call);
      const abort = () => {
        call.failed ??= opts.signal.reason instanceof Error ? opts.signal.reason : new DOMException("cancelled", "AbortError");
        call.wake?.();
      };
      opts.signal.addEventListener("abort", abort, { once: true });
      const publishUnit = (i: number) => {
        call.published.add(i);
        const u = units[i]!;
        const m: UnitMessage = {
          v: 1,
          run: runId,
          call: call.id,
          index: i,
          unit: u.id,
          task: u.task.name,
          input: u.input,
          store: storeBase(o.data),
          reply: resultsQueue(runId),
          maxAttempts,
        };
        publish(WORK_EXCHANGE, runId, encode(m), {
          persistent: true,
          messageId: `${runId}/${call.id}/${i}`,
          headers: { "x-tc-run": runId, "x-tc-unit": u.id },
        }).catch((e: Error) => {
          call.failed ??= e;
          call.wake?.();
        });
      };
      try {
        for (let i = 0; i < units.length; i++) {
          for (let k = i; k < Math.min(units.length, i + window); k++) if (!call.published.has(k)) publishUnit(k);
          for (;;) {
            if (call.failed) throw call.failed;
            if (call.results.has(i)) break;
            await new Promise<void>((r) => (call.wake = r));
            call.wake = undefined;
          }
          const v = (await call.results.get(i)!) as O;
          call.results.delete(i);
          call.done = i + 1;
          stats.units++;
          yield v;
        }
      } finally {
        opts.signal.removeEventListener("abort", abort);
        calls.delete(call.id);
        if (call.done < units.length) await control({ type: "cancel", run: runId });
      }
    },
    stats(): ExecutorStats {
      return { ...stats, workers: [...workers].sort(), storeBytes: store.bytes };
    },
    async close(): Promise<void> {
      await control({ type: "done", run: runId });
      const c = ch;
      if (c) {
        try {
          await c.deleteQueue(resultsQueue(runId));
          await c.deleteQueue(runDeadQueue(runId));
        } catch {
          /* the broker is gone: durable queues stay until the next run with this id or a manual delete */
        }
      }
      await conn.close().catch(() => undefined);
      await store.clear(runId).catch(() => undefined);
    },
  };
  return executor;
}

function storeBase(data: string): string {
  return data.startsWith("s3://") || data.startsWith("file://") ? data : pathToFileURL(resolve(data)).href;
}

/** The URL without its password (for messages and logs). */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.href;
  } catch {
    return url;
  }
}
