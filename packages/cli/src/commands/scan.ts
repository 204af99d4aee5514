/** `tile-compile scan <dir…>`: every FITS file found, grouped and counted; bad files listed at the end. */
import { describeSources, scanFrames, type FrameInfo, type ScanResult } from "@tile-compile/core";
import { progressBar, table, type Io } from "../output.js";

const fmt = (v: number | undefined, digits = 1, unit = "") =>
  v === undefined ? "—" : `${Number.isInteger(v) ? v : v.toFixed(digits)}${unit}`;

function row(f: FrameInfo, base: string): string[] {
  const name = f.path.startsWith(base) ? f.path.slice(base.length).replace(/^\//, "") : f.path;
  return [
    name,
    f.type,
    f.object ?? "—",
    f.filter ?? "—",
    fmt(f.exposureSeconds, 2, " s"),
    f.temperatureC === undefined ? "—" : `${f.temperatureC.toFixed(1)} °C`,
    fmt(f.gain, 0),
    f.binning ?? "—",
    `${f.width}×${f.height}${f.channels > 1 ? `×${f.channels}` : ""}`,
    f.dateObs ?? "—",
    f.bayerPattern ?? "—",
  ];
}

export function renderScan(result: ScanResult, base: string): string {
  const lines: string[] = [];
  const byPath = new Map(result.frames.map((f) => [f.path, f]));
  for (const g of result.groups) {
    lines.push(
      `\n${g.type} · ${g.object ?? "(no object)"} · ${g.filter ?? "(no filter)"} · ${fmt(g.exposureSeconds, 2, " s")} — ${g.count} frame${g.count === 1 ? "" : "s"}`,
    );
    lines.push(
      table(
        ["file", "type", "object", "filter", "exposure", "temp", "gain", "bin", "size", "date", "bayer"],
        g.frames.map((p) => row(byPath.get(p)!, base)),
      ),
    );
    // Where values came from when not the standard keyword, and what was read leniently: once per group.
    const notes = new Map<string, number>();
    for (const p of g.frames) {
      const f = byPath.get(p)!;
      for (const n of [...describeSources(f), ...(f.notes ?? [])]) notes.set(n, (notes.get(n) ?? 0) + 1);
    }
    for (const [n, count] of notes) lines.push(`  · ${n}${count < g.count ? ` (${count} of ${g.count} frames)` : ""}`);
  }
  lines.push(
    `\n${result.frames.length} frame${result.frames.length === 1 ? "" : "s"} in ${result.groups.length} group${result.groups.length === 1 ? "" : "s"}` +
      (result.bad.length ? `, ${result.bad.length} bad file${result.bad.length === 1 ? "" : "s"}` : ""),
  );
  if (result.bad.length > 0) {
    lines.push("\nBad files (skipped):");
    for (const b of result.bad) lines.push(`  ${b.path}\n    [${b.code}] ${b.reason.split("\n")[0]}`);
  }
  return lines.join("\n").replace(/^\n/, "");
}

export async function scanCommand(
  rawInputs: string[],
  opts: { json?: boolean },
  io: Io,
  signal: AbortSignal,
  cwd: string,
): Promise<number> {
  const { resolve } = await import("node:path");
  const inputs = rawInputs.map((i) => resolve(cwd, i));
  const bar = opts.json ? progressBar({ ...io, interactive: false }, "") : progressBar(io, "scanning");
  const result = await scanFrames(inputs, { signal, onProgress: (done, total) => bar.update(done / total, `${done}/${total} files`) });
  bar.stop();
  if (opts.json) {
    io.out(JSON.stringify({ frames: result.frames, groups: result.groups, bad: result.bad }, null, 2));
  } else {
    const base = inputs.length === 1 ? inputs[0]! : "";
    io.out(renderScan(result, base));
  }
  return 0;
}
