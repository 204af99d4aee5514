/**
 * The calibration library and base directory of the seed (seeds/job-file-system.md):
 *
 *   <base>/calibration/raw/biases/<date>/                 raw bias frames
 *   <base>/calibration/raw/darks/<date>_<temp>/<exposure>/ raw darks (temp like -10C, exposure in s)
 *   <base>/calibration/raw/flats/<date>/<filter>/          raw flats
 *   <base>/calibration/masters/{biases,darks,flats}/       bias_<date>.fit, dark_<exp>s_<temp>C_<date>.fit, flat_<filter>_<date>.fit
 *   <base>/jobs/<name>.json|yaml
 *
 * Paths in a job are relative to the base directory and may not leave it.
 */
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

export interface LibraryLayout {
  base: string;
  rawBiases: string;
  rawDarks: string;
  rawFlats: string;
  masterBiases: string;
  masterDarks: string;
  masterFlats: string;
}

export function libraryLayout(base: string): LibraryLayout {
  const c = join(base, "calibration");
  return {
    base,
    rawBiases: join(c, "raw", "biases"),
    rawDarks: join(c, "raw", "darks"),
    rawFlats: join(c, "raw", "flats"),
    masterBiases: join(c, "masters", "biases"),
    masterDarks: join(c, "masters", "darks"),
    masterFlats: join(c, "masters", "flats"),
  };
}

/**
 * The base directory of a job file: `base_dir` when configured, else the nearest ancestor of the job file
 * that holds a `calibration/` folder or is the parent of a `jobs/` folder holding the file, else the job
 * file's own folder.
 */
export function findBaseDir(jobPath: string, configured?: string): string {
  if (configured) return resolve(configured);
  let dir = dirname(resolve(jobPath));
  const start = dir;
  for (;;) {
    if (existsSync(join(dir, "calibration"))) return dir;
    if (dir.endsWith(`${sep}jobs`) && existsSync(join(dirname(dir), "jobs"))) return dirname(dir);
    const up = dirname(dir);
    if (up === dir) return start;
    dir = up;
  }
}

/**
 * Resolve `rel` inside `base`; an error (with the reason) when it escapes, including through symlinks.
 * The real path of the deepest *existing* ancestor decides, so a path whose last folders do not exist yet
 * (an output folder under a symlinked parent) is judged the same way before and after it is created.
 */
export function insideBase(base: string, rel: string): { path: string } | { error: string } {
  const p = isAbsolute(rel) ? resolve(rel) : resolve(base, rel);
  const within = (a: string, b: string) => {
    const r = relative(a, b);
    return r === "" || (!r.startsWith("..") && !isAbsolute(r));
  };
  if (!within(resolve(base), p)) return { error: `${rel} is outside the base directory ${base}` };
  let existing = p;
  const rest: string[] = [];
  while (!existsSync(existing) && dirname(existing) !== existing) {
    rest.unshift(basename(existing));
    existing = dirname(existing);
  }
  try {
    const real = join(realpathSync(existing), ...rest);
    if (!within(realpathSync(base), real)) return { error: `${rel} leads outside the base directory ${base} through a symbolic link` };
  } catch {
    // Unreadable (a looping link): reported by whoever reads it.
  }
  return { path: p };
}

export interface RawSet {
  kind: "bias" | "dark" | "flat";
  date: string;
  dir: string;
  temperatureC?: number;
  exposureSeconds?: number;
  filter?: string;
}

const DATE = /^(\d{4}_\d{2}_\d{2})$/;
const DARK_DIR = /^(\d{4}_\d{2}_\d{2})_([+-]?\d+(?:\.\d+)?)C?$/i;

function subdirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => !d.startsWith(".") && statSync(join(dir, d)).isDirectory())
    .sort();
}

/** Every raw calibration set of the library, from its folder names. */
export function rawSets(lib: LibraryLayout): RawSet[] {
  const out: RawSet[] = [];
  for (const d of subdirs(lib.rawBiases)) if (DATE.test(d)) out.push({ kind: "bias", date: d, dir: join(lib.rawBiases, d) });
  for (const d of subdirs(lib.rawDarks)) {
    const m = DARK_DIR.exec(d);
    if (!m) continue;
    for (const e of subdirs(join(lib.rawDarks, d))) {
      const exp = Number(e.replace(/s$/i, ""));
      if (Number.isFinite(exp) && exp >= 0)
        out.push({ kind: "dark", date: m[1]!, temperatureC: Number(m[2]), exposureSeconds: exp, dir: join(lib.rawDarks, d, e) });
    }
  }
  for (const d of subdirs(lib.rawFlats)) {
    if (!DATE.test(d)) continue;
    for (const f of subdirs(join(lib.rawFlats, d))) out.push({ kind: "flat", date: d, filter: f, dir: join(lib.rawFlats, d, f) });
  }
  return out;
}

/** `-10` → `-10C`, `2.5` → `2.5C` (no `+`). */
export function tempLabel(t: number): string {
  return `${Number(t.toFixed(1))}C`;
}
export function expLabel(e: number): string {
  return `${Number(e.toFixed(3))}s`;
}

export function masterName(
  kind: "bias" | "dark" | "flat",
  s: { date: string; exposureSeconds?: number; temperatureC?: number; filter?: string },
): string {
  if (kind === "bias") return `bias_${s.date}.fit`;
  if (kind === "dark") return `dark_${expLabel(s.exposureSeconds!)}_${tempLabel(s.temperatureC!)}_${s.date}.fit`;
  return `flat_${s.filter}_${s.date}.fit`;
}

export function masterPath(
  lib: LibraryLayout,
  kind: "bias" | "dark" | "flat",
  s: { date: string; exposureSeconds?: number; temperatureC?: number; filter?: string },
): string {
  const dir = kind === "bias" ? lib.masterBiases : kind === "dark" ? lib.masterDarks : lib.masterFlats;
  return join(dir, masterName(kind, s));
}

/** Masters present in the library (parsed back from their names). */
export function existingMasters(lib: LibraryLayout): RawSet[] {
  const out: RawSet[] = [];
  const files = (dir: string) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => /\.fits?$/i.test(f))
          .sort()
      : [];
  for (const f of files(lib.masterBiases)) {
    const m = /^bias_(\d{4}_\d{2}_\d{2})\.fits?$/i.exec(f);
    if (m) out.push({ kind: "bias", date: m[1]!, dir: join(lib.masterBiases, f) });
  }
  for (const f of files(lib.masterDarks)) {
    const m = /^dark_([\d.]+)s_([+-]?[\d.]+)C_(\d{4}_\d{2}_\d{2})\.fits?$/i.exec(f);
    if (m)
      out.push({ kind: "dark", date: m[3]!, exposureSeconds: Number(m[1]), temperatureC: Number(m[2]), dir: join(lib.masterDarks, f) });
  }
  for (const f of files(lib.masterFlats)) {
    const m = /^flat_(.+)_(\d{4}_\d{2}_\d{2})\.fits?$/i.exec(f);
    if (m) out.push({ kind: "flat", date: m[2]!, filter: m[1]!, dir: join(lib.masterFlats, f) });
  }
  return out;
}

/** Days between two YYYY_MM_DD dates. */
export function daysBetween(a: string, b: string): number {
  const t = (d: string) => {
    const [y, m, dd] = d.split("_").map(Number) as [number, number, number];
    return Date.UTC(y, m - 1, dd);
  };
  return Math.abs(t(a) - t(b)) / 86_400_000;
}
