/**
 * Finding and running `siril-cli`. A script runs as `siril-cli -s /abs/script.ssf -d workdir` through
 * execa with an argument array (no shell); Siril's stdout is parsed line by line into progress and a bounded log tail.
 * Siril exits 0 after some failures and ignores unknown flags (engines-on-debian.md §1.5), so a run counts
 * as failed on a non-zero exit, on an error line in the log, or when an expected output is missing. A
 * cancelled or timed-out run kills siril-cli (SIGTERM, then SIGKILL) and only it.
 */
import { spawnSync } from "node:child_process";
import { execa } from "execa";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TileCompileError } from "@tile-compile/core";
import { dialectOf, render, type Command, type Dialect } from "./script.js";

export interface Siril {
  bin: string;
  version: string;
  dialect: Dialect;
}

const INSTALL =
  'Install it with `apt-get install siril` (Debian/Ubuntu) or set engine_options."@tile-compile/engine-siril".path in tile_compile.yaml.';

/** siril-cli from `path`, $SIRIL_CLI or PATH, with its version and dialect. */
export function locateSiril(path?: string): Siril {
  const candidates = [
    path,
    process.env.SIRIL_CLI,
    ...(process.env.PATH ?? "")
      .split(":")
      .filter(Boolean)
      .map((d) => join(d, "siril-cli")),
  ].filter((c): c is string => !!c);
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    const r = spawnSync(c, ["--version"], { encoding: "utf8", timeout: 20_000 });
    const d = dialectOf(`${r.stdout ?? ""}${r.stderr ?? ""}`);
    if (d) return { bin: c, ...d };
  }
  throw new TileCompileError("TC_TOOL_MISSING", {
    tool: "siril-cli",
    searched: path ? `${path}, $SIRIL_CLI and PATH` : "$SIRIL_CLI and PATH",
    hint: INSTALL,
  });
}

/** Terminal escape sequences siril-cli writes around its progress lines. */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");

/** Log lines that report a failure even when the exit code is 0. */
const ERROR_LINE = /\b(error|failed|not found|unknown command|cannot|could not)\b/i;
// "Cannot load initfile": the very first siril-cli run of a user, before ~/.config/siril/siril.config
// exists (several runs at once on a fresh machine all say it); Siril continues with its defaults.
const BENIGN = [
  /Cannot load initfile: file I\/O error/i,
  /(^|[\s(,])0 failed\b/i,
  /Reading sequence failed, file cannot be opened: .*\.seq/i,
  /Script execution failed\.$/ /* followed by rc 1 anyway */,
];

export interface RunOptions {
  workdir: string;
  signal: AbortSignal;
  onProgress?: (fraction: number) => void;
  onLog?: (line: string) => void;
  /** Files that must exist afterwards (absolute). */
  expect?: string[];
  /** Stop siril-cli after this many seconds (TC_TOOL_TIMEOUT). */
  timeoutS?: number;
  /**
   * Log lines that are not a failure of this run although they look like one: registration's
   * "partially succeeded … N images that failed" and "Total: N failed, M registered" (M ≥ 1) — the frames
   * Siril skipped are reported one by one by the caller, the stage itself succeeded.
   */
  allow?: RegExp[];
}

/** Siril's lines for a registration that skipped some frames but registered others (see RunOptions.allow). */
export const PARTIAL_REGISTRATION: readonly RegExp[] = [
  /Sequence processing partially succeeded/i,
  /Total: \d+ failed, [1-9]\d* registered/i,
];

export async function runSiril(s: Siril, cmds: Command[], o: RunOptions): Promise<string[]> {
  o.signal.throwIfAborted();
  const script = join(o.workdir, "script.ssf");
  await writeFile(script, render(cmds, s.dialect));
  const command = `siril-cli ${s.version} -s script.ssf`;
  // siril-cli 1.0.6 sometimes aborts at start-up with glibc heap corruption ("corrupted size vs. prev_size",
  // SIGABRT after ~0.1 s, not one log line; about one start in two on some days, seen in the bench and by
  // hand with the same script succeeding the next time). A run that died of a signal before it logged
  // anything did no work: start it again, at most twice, and say so.
  for (let attempt = 1; ; attempt++) {
    const run = await runOnce(s, script, o);
    if (run.r.signal && !run.r.timedOut && !run.r.isCanceled && run.lines === 0 && !o.signal.aborted && attempt < 3) {
      o.onLog?.(
        `siril-cli died at start-up (${run.r.signal}${run.tail.length ? `: ${run.tail.at(-1)}` : ""}); starting it again (attempt ${attempt + 1} of 3)`,
      );
      continue;
    }
    return finish(run, command, o);
  }
}

async function runOnce(s: Siril, script: string, o: RunOptions) {
  const tail: string[] = [];
  const errors: string[] = [];
  let lines = 0;
  // execa with an argument array (no shell); cancelSignal and timeout send SIGTERM to siril-cli (and only
  // it: no shell, no process group), then SIGKILL after 2 s.
  const child = execa(s.bin, ["-s", script, "-d", o.workdir], {
    stdin: "ignore",
    buffer: false,
    reject: false,
    cancelSignal: o.signal,
    forceKillAfterDelay: 2000,
    ...(o.timeoutS ? { timeout: Math.round(o.timeoutS * 1000) } : {}),
  });
  let buf = "";
  const onData = (chunk: Buffer) => {
    buf += chunk.toString("utf8");
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = (buf.slice(0, nl).replace(ANSI, "").split("\r").pop() ?? "").trim();
      buf = buf.slice(nl + 1);
      const p = /^progress:.*?([\d.]+)%$/.exec(line);
      if (p) {
        o.onProgress?.(Number(p[1]) / 100);
        continue;
      }
      if (!line) continue;
      tail.push(line);
      if (tail.length > 60) tail.shift();
      if (line.startsWith("log:")) {
        lines++;
        o.onLog?.(line.slice(4).trim());
        if (ERROR_LINE.test(line) && !BENIGN.some((b) => b.test(line)) && !(o.allow ?? []).some((b) => b.test(line)))
          errors.push(line.slice(4).trim());
      }
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const r = await child;
  return { r, tail, errors, lines };
}

function finish({ r, tail, errors }: Awaited<ReturnType<typeof runOnce>>, command: string, o: RunOptions): string[] {
  if (r.timedOut) throw new TileCompileError("TC_TOOL_TIMEOUT", { command, timeoutS: o.timeoutS!, tail: tail.slice(-15).join("\n") });
  if (r.isCanceled || o.signal.aborted) throw o.signal.reason ?? new DOMException("cancelled", "AbortError");
  if (r.failed && r.exitCode === undefined && !r.signal)
    throw new TileCompileError("TC_TOOL_FAILED", { command, exitCode: "none", tail: r.message });
  if (r.exitCode !== 0)
    throw new TileCompileError("TC_TOOL_FAILED", {
      command,
      exitCode: r.exitCode ?? "none",
      ...(r.signal ? { signal: r.signal } : {}),
      tail: tail.slice(-15).join("\n"),
    });
  if (errors.length > 0)
    throw new TileCompileError("TC_TOOL_FAILED", {
      command,
      exitCode: 0,
      tail: tail.slice(-15).join("\n"),
      hint: `Siril exited 0 but reported: ${errors[0]}`,
    });
  for (const f of o.expect ?? []) {
    if (!existsSync(f))
      throw new TileCompileError("TC_TOOL_FAILED", {
        command,
        exitCode: 0,
        tail: tail.slice(-15).join("\n"),
        hint: `Siril reported success but did not write ${f}`,
      });
  }
  return tail;
}
