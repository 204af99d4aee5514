/**
 * Per-run caches tasks use through {@link TaskContext.cache}: open FITS files (so a band task does not
 * reopen and reparse every frame's header per band) and reusable buffers.
 */
import { readFileSync } from "node:fs";
import { FitsFile } from "@tile-compile/fits";
import { mapLimit } from "../util/pool.js";
import type { TaskContext } from "./contracts.js";

/**
 * Most files a cache keeps open: a quarter of the process's descriptor limit (Node raises the soft limit
 * to the hard one at start-up), at most 4096; 256 where the limit cannot be read. Beyond it a band task
 * opens, reads and closes every frame per band: with 400 frames in 19-row bands that was 21 600 opens per
 * TBQR pass B, a third of its time.
 */
export const OPEN_FILES_MAX = openFilesMax();

function openFilesMax(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (m) return Math.max(64, Math.min(4096, Math.floor(Number(m[1]) / 4)));
  } catch {
    // not Linux, or no /proc: the conservative figure
  }
  return 256;
}

interface FileEntry {
  file: Promise<FitsFile>;
  users: number;
}

/** An open FITS file from the cache (opened on first use). Keep at most {@link OPEN_FILES_MAX}: beyond, open per use. */
export async function cachedFile(
  ctx: TaskContext,
  path: string,
  openMax = OPEN_FILES_MAX,
): Promise<{ file: FitsFile; release(): Promise<void> }> {
  const files = (ctx.cache.get("files") as Map<string, FileEntry> | undefined) ?? new Map<string, FileEntry>();
  ctx.cache.set("files", files);
  let e = files.get(path);
  if (!e && files.size >= openMax) {
    const file = await FitsFile.open(path);
    return { file, release: () => file.close() };
  }
  if (!e) {
    e = { file: FitsFile.open(path), users: 0 };
    files.set(path, e);
    e.file.catch(() => files.delete(path));
  }
  const file = await e.file;
  return { file, release: async () => undefined };
}

/**
 * Lanes for the units an executor runs at once: `take` gives the lowest free one, `give` returns it. A
 * unit's scratch buffers are keyed by its lane (TaskContext.slot), so units in flight never share one and
 * the buffers are reused by whichever unit next takes the lane.
 */
export function slotPool(): { take(): number; give(slot: number): void } {
  const busy: boolean[] = [];
  return {
    take() {
      let s = busy.indexOf(false);
      if (s < 0) s = busy.length;
      busy[s] = true;
      return s;
    },
    give(slot) {
      busy[slot] = false;
    },
  };
}

/**
 * A reusable buffer of at least `length` elements for `key` (contents undefined), private to the unit's
 * lane (`ctx.slot`) until the unit ends.
 */
export function scratch(ctx: TaskContext, key: string, length: number): Float32Array {
  const k = `scratch:${ctx.slot ?? 0}:${key}`;
  const b = ctx.cache.get(k) as Float32Array | undefined;
  if (b && b.length >= length) return b.subarray(0, length);
  const nb = new Float32Array(length);
  ctx.cache.set(k, nb);
  return nb;
}

/** Band reads in flight when files are opened per band (more than OPEN_FILES_MAX frames). */
const READS_IN_FLIGHT = 8;

/**
 * Rows [y0, y0 + rows) of channel `c` of every frame, into buffers reused across the run's bands
 * (`key` names them: fresh 100 × 5 MB typed arrays per band cost more in page zeroing and GC than the
 * read itself). Files stay open across bands up to `openMax` of them (default OPEN_FILES_MAX), else they
 * are opened per band.
 */
export async function readBand(
  ctx: TaskContext,
  key: string,
  frames: readonly { path: string; hdu?: number }[],
  y0: number,
  rows: number,
  c: number,
  width: number,
  openMax = OPEN_FILES_MAX,
): Promise<Float32Array[]> {
  const len = rows * width;
  const views = frames.map((_, k) => scratch(ctx, `${key}:${k}`, len));
  const keepOpen = frames.length <= openMax;
  await mapLimit(frames, keepOpen ? frames.length : READS_IN_FLIGHT, async (f, k) => {
    ctx.signal.throwIfAborted();
    const h = keepOpen ? await cachedFile(ctx, f.path, openMax) : undefined;
    const file = h?.file ?? (await FitsFile.open(f.path));
    try {
      await (await file.image(f.hdu)).readRows(y0, rows, c, views[k]);
    } finally {
      if (h) await h.release();
      else await file.close();
    }
  });
  return views;
}

/** Close every cached file and drop the buffers. */
export async function closeCache(cache: Map<string, unknown>): Promise<void> {
  const files = cache.get("files") as Map<string, FileEntry> | undefined;
  cache.clear();
  if (files) await Promise.allSettled([...files.values()].map(async (e) => (await e.file).close()));
}
