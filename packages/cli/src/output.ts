/**
 * Terminal output: errors with title, message, hint and code; plain tables; a progress bar on stderr
 * that appears only when stderr is a terminal (and never in --json mode).
 */
import cliProgress from "cli-progress";
import { TileCompileError, isAbortError } from "@tile-compile/core";

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** True when progress bars may be drawn. */
  interactive: boolean;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
  interactive: Boolean(process.stderr.isTTY) && !process.env.CI,
};

export function formatError(error: unknown): string {
  if (isAbortError(error)) return "Cancelled. Nothing half-written was left behind.";
  if (error instanceof TileCompileError) {
    const lines = [`✖ ${error.title} [${error.code}]`, error.message, `hint: ${error.hint}`];
    let cause = error.cause as Error | undefined;
    for (let depth = 0; cause && depth < 3; depth++, cause = cause.cause as Error | undefined) lines.push(`cause: ${cause.message ?? String(cause)}`);
    return lines.join("\n");
  }
  const e = error as Error;
  return `✖ Unexpected error: ${e?.stack ?? String(error)}`;
}

/** Left-aligned text table with a header row. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? "").padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "─".repeat(w))), ...rows.map(line)].join("\n");
}

export interface Progress {
  update(fraction: number, note?: string): void;
  stop(): void;
}

/** A progress bar on stderr when interactive; otherwise nothing (logs stay clean in pipes and CI). */
export function progressBar(io: Io, label: string): Progress {
  if (!io.interactive) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {note}`, stream: process.stderr, hideCursor: true, clearOnComplete: true, barsize: 30 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1000, 0, { note: "" });
  return {
    update: (f, note) => bar.update(Math.round(f * 1000), { note: note ?? "" }),
    stop: () => bar.stop(),
  };
}

/**
 * The run log: every logger line (debug included — e.g. Siril's own log) goes to `sink` once it is set
 * (events.jsonl), while `base` decides what the terminal shows.
 */
export function teeLogger(base: ReturnType<typeof stderrLogger>): ReturnType<typeof stderrLogger> & { sink?: (e: { type: "log"; level: string; message: string }) => void } {
  const t: ReturnType<typeof stderrLogger> & { sink?: (e: { type: "log"; level: string; message: string }) => void } = {
    debug: (m: string) => { t.sink?.({ type: "log", level: "debug", message: m }); base.debug(m); },
    info: (m: string) => { t.sink?.({ type: "log", level: "info", message: m }); base.info(m); },
    warn: (m: string) => { t.sink?.({ type: "log", level: "warn", message: m }); base.warn(m); },
    error: (m: string) => { t.sink?.({ type: "log", level: "error", message: m }); base.error(m); },
  };
  return t;
}

export function stderrLogger(io: Io, verbose: boolean) {
  return {
    debug: (m: string) => { if (verbose) io.err(`debug: ${m}`); },
    info: (m: string) => io.err(m),
    warn: (m: string) => io.err(`warning: ${m}`),
    error: (m: string) => io.err(`error: ${m}`),
  };
}
