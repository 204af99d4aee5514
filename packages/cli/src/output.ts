/**
 * Terminal output: errors with title, message, hint and code; plain tables; a progress bar on stderr
 * that appears only when stderr is a terminal (and never in --json mode).
 */
import { formatRunPlan, TileCompileError, isAbortError, type StepDescription } from "@tile-compile/core";

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** True when progress bars may be drawn. */
  interactive: boolean;
}

/** The progress bar on screen, if any: a line written to the terminal goes above it, never into it. */
let activeBar: { clear(): void; redraw(): void } | undefined;

/** Write a line to a terminal stream: clear the bar's line first, redraw the bar after. */
function writeLine(stream: NodeJS.WriteStream, t: string): void {
  const line = t.endsWith("\n") ? t : `${t}\n`;
  if (!activeBar || !stream.isTTY) {
    stream.write(line);
    return;
  }
  activeBar.clear();
  stream.write(line);
  activeBar.redraw();
}

export const processIo: Io = {
  out: (t) => writeLine(process.stdout, t),
  err: (t) => writeLine(process.stderr, t),
  interactive: Boolean(process.stderr.isTTY) && !process.env.CI,
};

export function formatError(error: unknown): string {
  if (isAbortError(error)) return "Cancelled. Nothing half-written was left behind.";
  if (error instanceof TileCompileError) {
    const lines = [`✖ ${error.title} [${error.code}]`, error.message, `hint: ${error.hint}`];
    let cause = error.cause as Error | undefined;
    for (let depth = 0; cause && depth < 3; depth++, cause = cause.cause as Error | undefined)
      lines.push(`cause: ${cause.message ?? String(cause)}`);
    return lines.join("\n");
  }
  const e = error as Error;
  return `✖ Unexpected error: ${e?.stack ?? String(error)}`;
}

/** Left-aligned text table with a header row. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c ?? "").padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "─".repeat(w))), ...rows.map(line)].join("\n");
}

export interface Progress {
  update(fraction: number, note?: string): void;
  stop(): void;
}

/**
 * A progress bar on stderr when interactive; otherwise nothing (logs stay clean in pipes and CI). One
 * line, cut to the terminal's width (a wrapped bar cannot be cleared with a carriage return), redrawn at
 * most 10 times a second; lines written through `processIo` meanwhile go above it.
 */
export function progressBar(io: Io, label: string): Progress {
  if (!io.interactive) return { update: () => undefined, stop: () => undefined };
  const stream = process.stderr;
  let value = 0,
    note = "",
    last = 0,
    shown = false;
  const draw = () => {
    const width = Math.max(20, (stream.columns || 80) - 1);
    const filled = Math.round(value * 30);
    const text = `${label} [${"█".repeat(filled)}${"░".repeat(30 - filled)}] ${String(Math.floor(value * 100)).padStart(3)}% ${note}`;
    stream.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    shown = true;
    last = Date.now();
  };
  const me = {
    clear: () => {
      if (shown) stream.write("\r\x1b[2K");
      shown = false;
    },
    redraw: draw,
  };
  activeBar = me;
  stream.write("\x1b[?25l");
  draw();
  return {
    update: (f, n) => {
      value = Math.min(1, Math.max(0, f));
      note = n ?? "";
      if (Date.now() - last >= 100) draw();
    },
    stop: () => {
      me.clear();
      stream.write("\x1b[?25h");
      if (activeBar === me) activeBar = undefined;
    },
  };
}

/**
 * The run log: every logger line (debug included — e.g. Siril's own log) goes to `sink` once it is set
 * (events.jsonl), while `base` decides what the terminal shows.
 */
export function teeLogger(
  base: ReturnType<typeof stderrLogger>,
): ReturnType<typeof stderrLogger> & { sink?: (e: { type: "log"; level: string; message: string }) => void } {
  const t: ReturnType<typeof stderrLogger> & { sink?: (e: { type: "log"; level: string; message: string }) => void } = {
    debug: (m: string) => {
      t.sink?.({ type: "log", level: "debug", message: m });
      base.debug(m);
    },
    info: (m: string) => {
      t.sink?.({ type: "log", level: "info", message: m });
      base.info(m);
    },
    warn: (m: string) => {
      t.sink?.({ type: "log", level: "warn", message: m });
      base.warn(m);
    },
    error: (m: string) => {
      t.sink?.({ type: "log", level: "error", message: m });
      base.error(m);
    },
  };
  return t;
}

export function stderrLogger(io: Io, verbose: boolean) {
  return {
    debug: (m: string) => {
      if (verbose) io.err(`debug: ${m}`);
    },
    info: (m: string) => io.err(m),
    warn: (m: string) => io.err(`warning: ${m}`),
    error: (m: string) => io.err(`error: ${m}`),
  };
}

/** `--dry-run`: the planned steps (capability, engine, inputs, outputs, options hash, reuse); nothing is run or written. */
export function printPlan(io: Io, steps: readonly StepDescription[], json: boolean): number {
  io.out(json ? JSON.stringify({ dryRun: true, steps }, null, 2) : `plan (--dry-run: nothing is run or written)\n${formatRunPlan(steps)}`);
  return 0;
}
