/**
 * Scanning folders of frames: find FITS files (recursively, by extension), read their headers only,
 * describe them, group them, and collect unreadable files with the reason instead of stopping.
 */
import { readdir, realpath, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { TileCompileError } from "../errors/index.js";
import { readFitsHeader } from "@tile-compile/fits";
import { frameInfoFromHeader, type FrameInfo, type FrameType } from "./metadata.js";

export const FITS_EXTENSIONS = /\.(fits?|fts|fit\.fz|fits\.fz|fz|fits\.gz|fit\.gz)$/i;

export interface BadFile {
  path: string;
  code: string;
  reason: string;
}

export interface FrameGroup {
  type: FrameType;
  object?: string;
  filter?: string;
  exposureSeconds?: number;
  count: number;
  frames: string[];
}

export interface ScanResult {
  frames: FrameInfo[];
  groups: FrameGroup[];
  bad: BadFile[];
  /** Header bytes read in total (pixel data is never read). */
  bytesRead: number;
}

export interface ScanOptions {
  signal?: AbortSignal;
  /** Called after each file: (done, total, path). */
  onProgress?: (done: number, total: number, path: string) => void;
  /** Files read at once. */
  concurrency?: number;
}

/** Expand files and folders into FITS file paths, sorted, folders recursively. */
export async function findFitsFiles(inputs: string[], signal?: AbortSignal): Promise<{ files: string[]; bad: BadFile[] }> {
  const files: string[] = [];
  const bad: BadFile[] = [];
  // Folders by their real path: a symbolic link back up the tree (a loop) is walked once, not forever.
  const seen = new Set<string>();
  const walk = async (p: string, explicit: boolean): Promise<void> => {
    signal?.throwIfAborted();
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      const code = (e as { code?: string }).code;
      bad.push({
        path: p,
        code: "TC_IO",
        reason:
          code === "ELOOP"
            ? "a symbolic link that loops"
            : code === "ENOENT"
              ? "a symbolic link to nothing (target moved or deleted)"
              : (e as Error).message,
      });
      return;
    }
    if (st.isDirectory()) {
      let real = p;
      try {
        real = await realpath(p);
      } catch {
        /* stat succeeded: keep the path */
      }
      if (seen.has(real)) return;
      seen.add(real);
      const entries = (await readdir(p)).sort();
      for (const name of entries) if (!name.startsWith(".")) await walk(join(p, name), false);
    } else if (explicit || FITS_EXTENSIONS.test(p)) {
      let real = p;
      try {
        real = await realpath(p);
      } catch {
        /* keep the path */
      }
      if (seen.has(real)) return;
      seen.add(real);
      files.push(p);
    }
  };
  for (const i of inputs) await walk(resolve(i), true);
  return { files, bad };
}

/** Group key: type, object, filter, exposure. */
export function groupFrames(frames: FrameInfo[]): FrameGroup[] {
  const groups = new Map<string, FrameGroup>();
  for (const f of frames) {
    const key = JSON.stringify([f.type, f.object ?? null, f.filter ?? null, f.exposureSeconds ?? null]);
    let g = groups.get(key);
    if (!g) {
      g = { type: f.type, count: 0, frames: [] };
      if (f.object !== undefined) g.object = f.object;
      if (f.filter !== undefined) g.filter = f.filter;
      if (f.exposureSeconds !== undefined) g.exposureSeconds = f.exposureSeconds;
      groups.set(key, g);
    }
    g.count++;
    g.frames.push(f.path);
  }
  return [...groups.values()].sort(
    (a, b) =>
      a.type.localeCompare(b.type) ||
      (a.object ?? "").localeCompare(b.object ?? "") ||
      (a.filter ?? "").localeCompare(b.filter ?? "") ||
      (a.exposureSeconds ?? 0) - (b.exposureSeconds ?? 0),
  );
}

/** Scan files and folders. Never throws for a bad file; it is listed in `bad` with the reason. */
export async function scanFrames(inputs: string[], options: ScanOptions = {}): Promise<ScanResult> {
  const { files, bad } = await findFitsFiles(inputs, options.signal);
  const results: (FrameInfo | undefined)[] = new Array(files.length);
  let next = 0;
  let done = 0;
  let bytesRead = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const path = files[i]!;
      options.signal?.throwIfAborted();
      try {
        const summary = await readFitsHeader(path);
        bytesRead += summary.bytesRead;
        results[i] = frameInfoFromHeader(summary);
      } catch (e) {
        if (e instanceof TileCompileError)
          bad.push({ path, code: e.code, reason: e.message.startsWith(path) ? e.message.slice(path.length + 2) : e.message });
        else throw e;
      }
      options.onProgress?.(++done, files.length, path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 16, Math.max(1, files.length)) }, worker));
  const frames = results.filter((r): r is FrameInfo => r !== undefined);
  bad.sort((a, b) => a.path.localeCompare(b.path));
  return { frames, groups: groupFrames(frames), bad, bytesRead };
}
