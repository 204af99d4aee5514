/**
 * The output folder of a run: a lock so two runs of one job never interleave their checkpoints, the sweep
 * of temporary files that killed runs left behind, and the event log opened so that a read-only folder is
 * a coded error before any work (not an unhandled stream error later).
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
  createWriteStream,
  type WriteStream,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { TileCompileError } from "@tile-compile/core";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/** Make the folder (coded error when it cannot be made or written). */
export function ensureWritable(dir: string): void {
  try {
    mkdirSync(join(dir, ".tile-compile"), { recursive: true });
  } catch (e) {
    throw new TileCompileError("TC_IO", { op: "create the output folder", file: dir, reason: (e as Error).message }, { cause: e });
  }
}

/**
 * Take `<dir>/.tile-compile/lock` (pid and host inside). A lock held by a live process on this host
 * refuses the run with TC_RUN_LOCKED naming it; a dead holder's lock is taken over. Returns the release.
 */
export function lockOutput(dir: string): () => void {
  const path = join(dir, ".tile-compile", "lock");
  const me = `${process.pid}@${hostname()}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, `${me}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, "utf8").trim() === me) rmSync(path, { force: true });
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST")
        throw new TileCompileError("TC_IO", { op: "create the run lock", file: path, reason: (e as Error).message }, { cause: e });
      const holder = (() => {
        try {
          return readFileSync(path, "utf8").trim();
        } catch {
          return "";
        }
      })();
      const [pid, host] = holder.split("@");
      if (host === hostname() && Number(pid) > 0 && alive(Number(pid)))
        throw new TileCompileError("TC_RUN_LOCKED", { dir, holder, pid: Number(pid) });
      if (host && host !== hostname()) throw new TileCompileError("TC_RUN_LOCKED", { dir, holder, pid: Number(pid) });
      rmSync(path, { force: true }); // a dead process's lock
    }
  }
  throw new TileCompileError("TC_RUN_LOCKED", { dir, holder: "?", pid: 0 });
}

/** Remove temporary files of processes that are no longer running (`.<name>.<pid>.<hex>.tmp`, `<name>.<pid>.partial`); returns how many. */
export function sweepPartials(dir: string): number {
  let n = 0;
  const walk = (d: string, depth: number) => {
    if (depth > 6) return;
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        walk(p, depth + 1);
        continue;
      }
      const m = /^\..+\.(\d+)\.[0-9a-f]+\.tmp$/.exec(e.name) ?? /\.(\d+)\.partial$/.exec(e.name);
      if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
        try {
          rmSync(p, { force: true });
          n++;
        } catch {
          /* left for the next run */
        }
      }
    }
  };
  if (existsSync(dir)) walk(dir, 0);
  return n;
}

/** The event log (events.jsonl), opened now so that a folder we cannot write is a coded error at once; later write errors are reported once, not thrown. */
export function openEventLog(dir: string, warn: (m: string) => void): WriteStream {
  const path = join(dir, "events.jsonl");
  let fd: number;
  try {
    fd = openSync(path, "a");
  } catch (e) {
    throw new TileCompileError("TC_IO", { op: "open the event log", file: path, reason: (e as Error).message }, { cause: e });
  }
  const stream = createWriteStream(path, { fd, flags: "a" });
  let reported = false;
  stream.on("error", (e) => {
    if (!reported) {
      reported = true;
      warn(`the event log ${path} could not be written: ${e.message}`);
    }
  });
  return stream;
}
