/**
 * The local executor: units run in this process, `concurrency` at a time, results yielded in unit order.
 * Shared values stay in memory (no encoding), so the local path costs nothing over a plain loop.
 */
import type { Executor, ExecutorStats, RunUnitsOptions, SharedRef, TaskContext, WorkUnit } from "./contracts.js";
import { closeCache, slotPool } from "./cache.js";

export interface LocalExecutorOptions {
  /** Threads a task's kernels may use. */
  threads?: number;
  runId?: string;
}

export function localExecutor(options: LocalExecutorOptions = {}): Executor {
  const shared = new Map<string, unknown>();
  const cache = new Map<string, unknown>();
  const slots = slotPool();
  const runId = options.runId ?? "local";
  let n = 0,
    units = 0;
  const ctxFor = (signal: AbortSignal): TaskContext => ({
    signal,
    runId,
    cache,
    threads: options.threads ?? 1,
    shared: async <T>(ref: SharedRef) => {
      if (!shared.has(ref.$shared)) throw new Error(`shared value ${ref.$shared} is not known to this executor`);
      return shared.get(ref.$shared) as T;
    },
  });
  return {
    kind: "local",
    async share(name, value) {
      const key = `${name}#${++n}`;
      shared.set(key, value);
      return { $shared: key };
    },
    async *run<O>(list: readonly WorkUnit<unknown, O>[], opts: RunUnitsOptions): AsyncIterable<O> {
      const base = ctxFor(opts.signal);
      const limit = Math.max(1, Math.min(opts.concurrency ?? 1, list.length));
      const pending = new Map<number, Promise<O>>();
      let next = 0,
        done = 0;
      const start = (i: number) => {
        const u = list[i]!;
        const p = (async () => {
          opts.signal.throwIfAborted();
          const slot = slots.take();
          try {
            const r = await u.task.run(u.input, { ...base, slot });
            opts.onUnitDone?.(++done, list.length);
            return r;
          } finally {
            slots.give(slot);
          }
        })();
        p.catch(() => undefined); // awaited below in order; avoid an unhandled rejection meanwhile
        pending.set(i, p);
      };
      try {
        for (let i = 0; i < list.length; i++) {
          while (next < list.length && next < i + limit) start(next++);
          const r = await pending.get(i)!;
          pending.delete(i);
          units++;
          yield r;
        }
      } finally {
        // A consumer that stops early (or an error) leaves no unit running unobserved.
        await Promise.allSettled(pending.values());
      }
    },
    stats(): ExecutorStats {
      return {
        executor: "local",
        units,
        redelivered: 0,
        duplicates: 0,
        workers: [],
        brokerBytes: 0,
        storeBytes: 0,
        largestMessage: 0,
        reconnects: 0,
      };
    },
    async close() {
      shared.clear();
      await closeCache(cache);
    },
  };
}

/**
 * Run `fn` with the context's executor — the kernel's runner always supplies one — or, for a caller that
 * invokes an engine function directly (a test, a bench), with a local executor closed afterwards.
 */
export async function withExecutor<T>(
  ctx: { executor?: Executor; runtime: { threads?: number } },
  fn: (executor: Executor) => Promise<T>,
): Promise<T> {
  if (ctx.executor) return fn(ctx.executor);
  const executor = localExecutor({ threads: ctx.runtime.threads });
  try {
    return await fn(executor);
  } finally {
    await executor.close();
  }
}
