/**
 * The worker side: takes units from `tile-compile.units`, runs their tasks from the catalogue it is given
 * (the tasks of the engines the worker was started with: core's `taskCatalogue`)
 * and publishes the results (inline when small, else by reference in the run's store). It survives a
 * broker restart (reconnects and resumes); a unit it was running when the connection dropped is
 * redelivered by the broker and done again (results are pure, so the bytes are the same).
 */
import { hostname } from "node:os";
import { connect, type Channel, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import { closeCache, slotPool, type Logger, type SharedRef, type Task, type TaskContext } from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";
import { decode, encode } from "./codec.js";
import { StoreCache, type DataRef, type S3Settings } from "./store.js";
import {
  assertTopology,
  CONTROL_EXCHANGE,
  DEAD_EXCHANGE,
  INLINE_MAX,
  UNITS_QUEUE,
  type ControlMessage,
  type ResultMessage,
  type UnitMessage,
} from "./topology.js";

export interface WorkerOptions {
  url: string;
  /** Units run at once (each unit's kernels use `threads`). Default 1. */
  concurrency?: number;
  threads?: number;
  /** Shown in run.json (`executor.workers`). Default `host:pid`. */
  name?: string;
  s3?: S3Settings;
  /** The tasks this worker runs, by name: `taskCatalogue(engines)` of the engines it was started with. */
  tasks: ReadonlyMap<string, Task>;
  logger?: Logger;
  /**
   * Wait this long before each unit (fault injection: lets a test or a rehearsal kill a worker, or restart
   * the broker, while a unit is in its hands). Default 0.
   */
  delayMs?: number;
  /** Called when a unit is taken. */
  onUnitStart?(e: { run: string; unit: string; deliveries: number }): void;
  /** Called after each unit (tests, progress). */
  onUnit?(e: { run: string; unit: string; ok: boolean; seconds: number; deliveries: number; error?: string }): void;
}

export interface WorkerHandle {
  readonly name: string;
  /** Units completed (results published). */
  readonly completed: number;
  readonly reconnects: number;
  /** Stop taking units, wait for the running ones, close. */
  stop(): Promise<void>;
}

interface RunState {
  cache: Map<string, unknown>;
  shared: Map<string, Promise<unknown>>;
  abort: AbortController;
}

/** How long a worker trusts that a run's master is alive before checking again (ms). */
const RUN_CHECK_MS = 5000;

export async function runWorker(o: WorkerOptions): Promise<WorkerHandle> {
  const name = o.name ?? `${hostname()}:${process.pid}`;
  // The kernels' thread pool is per process: a worker's units use `threads` of them.
  loadRecon().setThreads(o.threads ?? 1);
  const tasks = o.tasks;
  // Units of one process running at once (up to its concurrency) hold distinct lanes: their scratch buffers.
  const slots = slotPool();
  const stores = new StoreCache(o.s3);
  const log = o.logger;
  const runs = new Map<string, RunState>();
  const cancelled = new Set<string>();
  const alive = new Map<string, { at: number; ok: Promise<boolean> }>();
  const running = new Set<Promise<void>>();
  let completed = 0,
    connects = 0,
    stopping = false;
  let ch: ConfirmChannel | undefined;
  let consumerTag: string | undefined;

  const runState = (run: string): RunState => {
    let r = runs.get(run);
    if (!r) {
      r = { cache: new Map(), shared: new Map(), abort: new AbortController() };
      runs.set(run, r);
    }
    return r;
  };
  const endRun = async (run: string, cancel: boolean) => {
    const r = runs.get(run);
    if (cancel) {
      cancelled.add(run);
      r?.abort.abort(new DOMException(`run ${run} cancelled`, "AbortError"));
    }
    alive.delete(run);
    if (r) {
      runs.delete(run);
      await closeCache(r.cache);
    }
  };

  const handle = async (channel: ConfirmChannel, msg: ConsumeMessage) => {
    const started = performance.now();
    const deliveries = Number((msg.properties.headers as Record<string, unknown> | undefined)?.["x-delivery-count"] ?? 0);
    let m: UnitMessage;
    try {
      m = decode<UnitMessage>(msg.content);
    } catch (e) {
      log?.warn(`dead-lettering a malformed unit message: ${(e as Error).message}`);
      channel.nack(msg, false, false);
      return;
    }
    if (cancelled.has(m.run)) {
      channel.ack(msg);
      return;
    }
    if (!(await runAlive(m.run, m.reply))) {
      if (!cancelled.has(m.run))
        log?.warn(`run ${m.run}: its results queue is gone (the master was killed and the queue expired); its units are dropped`);
      void endRun(m.run, true);
      channel.ack(msg);
      return;
    }
    const rs = runState(m.run);
    const store = stores.for(m.store);
    const slot = slots.take();
    const ctx: TaskContext = {
      signal: rs.abort.signal,
      runId: m.run,
      cache: rs.cache,
      threads: o.threads ?? 1,
      slot,
      shared: async <T>(ref: SharedRef) => {
        let p = rs.shared.get(ref.$shared);
        if (!p) {
          const r = ref as SharedRef & { bytes: number };
          p = store.get({ url: r.$shared, sha256: r.sha256!, bytes: r.bytes } as DataRef).then((b) => decode(b));
          p.catch(() => rs.shared.delete(ref.$shared));
          rs.shared.set(ref.$shared, p);
        }
        return (await p) as T;
      },
    };
    try {
      o.onUnitStart?.({ run: m.run, unit: m.unit, deliveries });
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      const task = tasks.get(m.task);
      if (!task)
        throw Object.assign(
          new Error(`unknown task "${m.task}" (this worker runs ${[...tasks.keys()].join(", ")}; is it an older tile-compile?)`),
          { fatal: true },
        );
      const value = await task.run(m.input, ctx);
      const body = encode(value);
      const r: ResultMessage = {
        v: 1,
        run: m.run,
        call: m.call,
        index: m.index,
        unit: m.unit,
        worker: name,
        deliveries,
        seconds: (performance.now() - started) / 1000,
      };
      if (body.length <= INLINE_MAX) r.inline = body;
      else r.ref = await store.put(m.run, `results/${m.call}-${String(m.index).padStart(6, "0")}.bin`, body);
      await new Promise<void>((res, rej) =>
        channel.publish("", m.reply, encode(r), { persistent: true }, (err) => (err ? rej(err) : res())),
      );
      channel.ack(msg);
      completed++;
      o.onUnit?.({ run: m.run, unit: m.unit, ok: true, seconds: r.seconds, deliveries });
    } catch (e) {
      const err = e as Error & { code?: string; fatal?: boolean };
      if (channel !== ch || stopping) return; // the connection went: the broker redelivers the unit
      if (cancelled.has(m.run) || err?.name === "AbortError") {
        channel.ack(msg);
        return;
      }
      const attempts = deliveries + 1;
      o.onUnit?.({ run: m.run, unit: m.unit, ok: false, seconds: (performance.now() - started) / 1000, deliveries, error: err?.message });
      if (!err?.fatal && attempts < m.maxAttempts) {
        log?.warn(
          `unit ${m.unit} of run ${m.run} failed (attempt ${attempts} of ${m.maxAttempts}), returned to the queue: ${err?.message}`,
        );
        channel.nack(msg, false, true);
        return;
      }
      log?.error(`unit ${m.unit} of run ${m.run} failed ${attempts} time(s); dead-lettered: ${err?.message}`);
      try {
        await new Promise<void>((res, rej) =>
          channel.publish(
            DEAD_EXCHANGE,
            m.run,
            msg.content,
            {
              persistent: true,
              headers: {
                "x-tc-error": String(err?.message ?? err),
                "x-tc-code": err?.code ?? "",
                "x-tc-worker": name,
                "x-tc-attempts": attempts,
                "x-tc-task": m.task,
                "x-tc-unit": m.unit,
                "x-tc-run": m.run,
              },
            },
            (er) => (er ? rej(er) : res()),
          ),
        );
        channel.ack(msg);
      } catch {
        /* the connection went: redelivered */
      }
    } finally {
      slots.give(slot);
    }
  };

  // Whether a run's master is still there: its results queue exists (it expires once unused). Checked on
  // a throwaway channel (a passive declare of a missing queue closes its channel), at most every
  // RUN_CHECK_MS per run; when the check itself fails (connection trouble) the run counts as alive.
  let model: { createChannel(): Promise<Channel> } | undefined;
  const runAlive = (run: string, reply: string): Promise<boolean> => {
    const e = alive.get(run);
    if (e && performance.now() - e.at < RUN_CHECK_MS) return e.ok;
    const ok = (async () => {
      let c: Channel;
      try {
        c = await model!.createChannel();
      } catch {
        return true;
      }
      c.on("error", () => undefined);
      try {
        await c.checkQueue(reply);
        return true;
      } catch (err) {
        return !/NOT_FOUND|404/.test((err as Error).message);
      } finally {
        c.close().catch(() => undefined);
      }
    })();
    alive.set(run, { at: performance.now(), ok });
    return ok;
  };

  const conn = (await connect(o.url, {
    recovery: {
      maxRetries: Infinity,
      initialMaxRetries: 30,
      calculateDelay: (a: number) => Math.min(2000, 100 * 2 ** Math.min(a, 5)),
      async setup(m: { createConfirmChannel(): Promise<ConfirmChannel>; createChannel(): Promise<Channel> }) {
        model = m;
        const c = await m.createConfirmChannel();
        c.on("error", (e: Error) => log?.warn(`broker channel: ${e.message}`));
        await assertTopology(c);
        await c.prefetch(o.concurrency ?? 1);
        const q = await c.assertQueue("", { exclusive: true, autoDelete: true });
        await c.bindQueue(q.queue, CONTROL_EXCHANGE, "");
        await c.consume(
          q.queue,
          (msg) => {
            if (!msg) return;
            try {
              const n = JSON.parse(msg.content.toString("utf8")) as ControlMessage;
              void endRun(n.run, n.type === "cancel");
            } catch {
              /* ignore */
            }
          },
          { noAck: true },
        );
        ch = c;
        if (stopping) return;
        const r = await c.consume(
          UNITS_QUEUE,
          (msg) => {
            if (!msg) return;
            const p = handle(c, msg)
              .catch((e: Error) => log?.error(`worker: ${e.message}`))
              .finally(() => running.delete(p));
            running.add(p);
          },
          { noAck: false },
        );
        consumerTag = r.consumerTag;
        if (connects++ > 0) log?.info(`worker ${name} reconnected`);
      },
    },
  } as never)) as unknown as { close(): Promise<void>; on(e: string, l: (...a: never[]) => void): unknown };
  conn.on("disconnect", (e: Error) => {
    ch = undefined;
    log?.warn(`worker ${name}: lost the broker (${e?.message ?? "closed"}); reconnecting`);
  });
  conn.on("error", (e: Error) => log?.warn(`worker ${name}: ${e.message}`));

  return {
    name,
    get completed() {
      return completed;
    },
    get reconnects() {
      return Math.max(0, connects - 1);
    },
    async stop() {
      stopping = true;
      const c = ch;
      if (c && consumerTag) await c.cancel(consumerTag).catch(() => undefined);
      await Promise.allSettled([...running]);
      await conn.close().catch(() => undefined);
      for (const r of [...runs.keys()]) await endRun(r, false);
    },
  };
}
