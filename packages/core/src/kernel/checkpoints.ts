/**
 * Checkpoints: a run's finished steps, so that a re-run (after a failure, Ctrl-C or kill -9) resumes from
 * the first unfinished one. Each step has a key, a stamp (a hash of everything its outputs depend on:
 * inputs' identities, options, engine versions) and its outputs with their sizes. A step is reused only when
 * the stamp matches and every output exists with the recorded size: per-frame outputs are not fsynced, so a
 * file a power loss left short makes its step run again. Stored in `<output>/.tile-compile/checkpoints.json`,
 * written atomically after every finished step.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

interface Checkpoint {
  stamp: string;
  outputs: string[];
  sizes?: number[];
  info?: unknown;
}

/** What a step returns when it runs: its outputs, its value, and what a later reuse needs back (`info`). */
export interface StepResult<T> {
  outputs: string[];
  value: T;
  info?: unknown;
}

export interface Checkpoints {
  /** Run `fn` unless a checkpoint with the same stamp and all its outputs (at their recorded sizes) exists; then `reuse` rebuilds the value. */
  step<T>(key: string, stamp: string, fn: () => Promise<StepResult<T>>, reuse: (outputs: string[], info: unknown) => T): Promise<T>;
  /** Whether `step(key, stamp, …)` would reuse the checkpoint (`--dry-run`). */
  isDone(key: string, stamp: string): boolean;
  /** The outputs and info a finished step recorded (what `reuse` is given). */
  recorded(key: string): { outputs: string[]; info: unknown } | undefined;
  /** Data kept between runs under `key` that is not a step (e.g. the inputs' hashes), and saving it. */
  info(key: string): unknown;
  setInfo(key: string, info: unknown): Promise<void>;
  /** Steps run and reused so far, in order, and each run step's seconds. */
  readonly ran: string[];
  readonly reused: string[];
  readonly seconds: Record<string, number>;
}

const sizeOf = (p: string): number => {
  try {
    const st = statSync(p);
    return st.isFile() ? st.size : -1;
  } catch {
    return -2;
  }
};

/** The checkpoints of the run writing into `outputDir`; `log` hears of each reused step. */
export function openCheckpoints(outputDir: string, log: (line: string) => void = () => {}): Checkpoints {
  const dir = join(outputDir, ".tile-compile");
  const file = join(dir, "checkpoints.json");
  const state: Record<string, Checkpoint> = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, Checkpoint>) : {};
  const save = async () => {
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.partial`;
    await writeFile(tmp, JSON.stringify(state, null, 2));
    await rename(tmp, file);
  };
  const isDone = (key: string, stamp: string): boolean => {
    const c = state[key];
    return Boolean(
      c && c.stamp === stamp && c.outputs.every((p, k) => existsSync(p) && (c.sizes?.[k] === undefined || c.sizes[k] === sizeOf(p))),
    );
  };
  const ran: string[] = [],
    reused: string[] = [],
    seconds: Record<string, number> = {};
  return {
    ran,
    reused,
    seconds,
    isDone,
    recorded: (key) => (state[key] ? { outputs: state[key].outputs, info: state[key].info } : undefined),
    async step(key, stamp, fn, reuse) {
      const c = state[key];
      if (isDone(key, stamp)) {
        reused.push(key);
        log(`✓ ${key} (finished earlier, reused)`);
        return reuse(c!.outputs, c!.info);
      }
      const t = performance.now();
      const r = await fn();
      seconds[key] = (performance.now() - t) / 1000;
      state[key] = { stamp, outputs: r.outputs, sizes: r.outputs.map(sizeOf), ...(r.info !== undefined ? { info: r.info } : {}) };
      await save();
      ran.push(key);
      return r.value;
    },
    info: (key) => state[key]?.info,
    async setInfo(key, info) {
      state[key] = { stamp: "", outputs: [], info };
      await save();
    },
  };
}
