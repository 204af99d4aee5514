/**
 * The executor contract: how a stage splits its heavy work into **work units** and gets their results
 * back, whatever runs them — this process (`runtime.executor: local`) or workers elsewhere
 * (`@tile-compile/executor-rabbitmq`). The stage code is the same for both; only the executor changes.
 *
 * Rules a stage follows so that the output bytes never depend on the executor, the number of workers or
 * the order in which units finish:
 * - a unit is a pure function of its input (a task name, small JSON input and shared values by reference);
 * - the stage consumes results **in unit order** (`run` yields them in that order) and aggregates them in
 *   that fixed order;
 * - per-pixel sums that span frames stay inside one unit (a band of rows over every frame), so
 *   floating-point summation order is fixed by the unit, not by the scheduling.
 *
 * Pixel data never travels inside a unit message: large inputs are `share`d once per stage (the remote
 * executor writes them to the shared store and sends a checksummed reference), and a unit's typed-array
 * results travel the same way.
 */

/** Typed arrays a task may take or return (little-endian on the wire). */
export type TaskArray = Float32Array | Float64Array | Uint16Array | Uint32Array | Int32Array | Uint8Array;

/** A value shared by every unit of a stage: returned by {@link Executor.share}, resolved by {@link TaskContext.shared}. */
export interface SharedRef {
  readonly $shared: string;
  /** sha256 (hex) of the encoded value; the remote executor verifies it on every read. */
  readonly sha256?: string;
}

/** What a task receives besides its input. */
export interface TaskContext {
  signal: AbortSignal;
  /** The run the unit belongs to; caches are per run. */
  runId: string;
  /** Resolve a shared value (cached per run and process). Treat it as read-only. */
  shared<T>(ref: SharedRef): Promise<T>;
  /** A per-run, per-process cache for expensive handles (open files, buffers); cleared when the run ends. */
  cache: Map<string, unknown>;
  /** Worker threads the task's kernels may use. */
  threads: number;
  /**
   * The unit's lane among the units running at once in this process (0 ≤ slot < their number; 0 when
   * absent). Per-unit scratch buffers in `cache` are keyed by it, so two units in flight never share one.
   */
  slot?: number;
}

/** A named task: the code a unit runs. Names are stable: a worker of the same version resolves them from its catalogue. */
export interface Task<I = unknown, O = unknown> {
  readonly name: string;
  run(input: I, ctx: TaskContext): Promise<O>;
}

/** Define a task (pure: no registration side effect; the worker's catalogue lists the built-in ones). */
export function defineTask<I, O>(name: string, run: (input: I, ctx: TaskContext) => Promise<O>): Task<I, O> {
  return { name, run };
}

/** One unit of work. `id` is unique within the stage and deterministic (never a random or a time). */
export interface WorkUnit<I = unknown, O = unknown> {
  id: string;
  task: Task<I, O>;
  /** JSON-serialisable input; shared values by {@link SharedRef}. Keep it small (metadata only). */
  input: I;
}

export interface RunUnitsOptions {
  signal: AbortSignal;
  /** Units in flight at once in this process (local executor; kernels are multi-threaded themselves). Default 1. */
  concurrency?: number;
  /** Called as units complete, in completion order, for progress (count of units done so far). */
  onUnitDone?(done: number, total: number): void;
}

/** Counters a run reports in run.json (`executor`). */
export interface ExecutorStats {
  executor: string;
  /** Units completed. */
  units: number;
  /** Units that were delivered more than once (a worker died or lost its connection) and redone. */
  redelivered: number;
  /** Results that arrived twice for the same unit (kept once). */
  duplicates: number;
  /** Workers that returned results (names). */
  workers: string[];
  /** Bytes of unit and result messages that went through the broker (0 locally). */
  brokerBytes: number;
  /** Bytes written to and read from the shared store (0 locally). */
  storeBytes: number;
  /** Largest unit or result message (bytes). */
  largestMessage: number;
  /** Times the connection to the broker was re-established. */
  reconnects: number;
}

/** Runs work units. */
export interface Executor {
  /** `local`, `rabbitmq`, … */
  readonly kind: string;
  /**
   * Units a stage should split into at least, so that every worker has work (1 locally: the kernels
   * are multi-threaded). Never changes results: a stage's units are independent per pixel or per frame.
   */
  readonly parallelism?: number;
  /** Make a value available to every unit of this run (JSON with typed-array leaves). */
  share(name: string, value: unknown): Promise<SharedRef>;
  /** Run the units; results are yielded in **unit order**, whatever the completion order. */
  run<O>(units: readonly WorkUnit<unknown, O>[], options: RunUnitsOptions): AsyncIterable<O>;
  stats(): ExecutorStats;
  /** Release the run's shared values, caches and connections. */
  close(): Promise<void>;
}

/** All results of `units` in unit order. */
export async function runAll<O>(executor: Executor, units: readonly WorkUnit<unknown, O>[], options: RunUnitsOptions): Promise<O[]> {
  const out: O[] = [];
  for await (const r of executor.run(units, options)) out.push(r);
  return out;
}
