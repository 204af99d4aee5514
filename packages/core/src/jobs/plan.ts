/**
 * `validate`: everything about a job that can be decided before any pixel is read — the job file checked
 * against its schema, the light headers scanned (headers only), the requirements table, the matching of
 * darks, bias and flats with the decision and every rejected candidate explained, and the masters to
 * reuse, build or rebuild (stale when their inputs or recipe changed). All problems are collected and
 * reported together; nothing is written.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { basename, extname, join, relative } from "node:path";
import { parse as parseYaml } from "yaml";
import { readFitsHeader } from "../fits/reader.js";
import { frameInfoFromHeader, type FrameInfo } from "../frames/metadata.js";
import { FITS_EXTENSIONS } from "../frames/scan.js";
import { normalizeFilter } from "./filters.js";
import { daysBetween, existingMasters, expLabel, findBaseDir, insideBase, libraryLayout, masterPath, rawSets, tempLabel, type LibraryLayout, type RawSet } from "./library.js";
import { jobSchema, type JobFile } from "./schema.js";

export interface JobProblem {
  file: string;
  field?: string;
  message: string;
}

export interface LightFrame extends FrameInfo {
  /** The job's filter key (normalised). */
  filterKey: string;
  folder: string;
  /** The night: the folder's YYYY_MM_DD component, else DATE-OBS's date. */
  night: string;
  offset?: number;
}

export interface Requirement {
  filter: string;
  exposureSeconds: number;
  temperatureMin?: number;
  temperatureMax?: number;
  gain?: number;
  binning?: string;
  count: number;
  nights: string[];
}

export type MasterAction = "reuse" | "build" | "rebuild";

export interface MasterPlan {
  kind: "bias" | "dark" | "flat";
  name: string;
  path: string;
  action: MasterAction;
  reason: string;
  /** Raw frames it is (re)built from. */
  inputs: string[];
  inputHash?: string;
  recipeHash: string;
  set: RawSet;
}

export interface Decision {
  kind: "bias" | "dark" | "flat";
  /** What was matched, e.g. `L 180 s at -9.6 °C (12 frames)`. */
  subject: string;
  chosen?: string;
  reason: string;
  rejected: { candidate: string; reason: string }[];
}

export interface CalibratedGroup {
  filter: string;
  exposureSeconds: number;
  frames: { frame: LightFrame; dark?: string; bias?: string; flat?: string }[];
}

export interface JobPlan {
  jobFile: string;
  job?: JobFile;
  base: string;
  library: LibraryLayout;
  output?: string;
  lights: LightFrame[];
  requirements: Requirement[];
  masters: MasterPlan[];
  decisions: Decision[];
  groups: CalibratedGroup[];
  problems: JobProblem[];
  /** Bytes read from light files (headers only). */
  headerBytesRead: number;
}

export interface PlanOptions {
  baseDir?: string;
  filterAliases?: Record<string, string>;
  /** Skip the lights and calibration: only the job file and its output folder (for --stage compose/stretch). */
  stacksOnly?: boolean;
  /** engine@version that builds masters: part of the recipe (a new engine version rebuilds them). */
  engine?: string;
  /** Pixel rejection of the masters (`calibration.rejection`): part of the recipe. */
  masterRejection?: "winsorized" | "sigma";
  signal?: AbortSignal;
}

const JUNK = /^(\.|thumbs\.db$|desktop\.ini$)/i;

/** Recipe of a master: what would change its pixels. */
export function recipeOf(kind: "bias" | "dark" | "flat", engine: string, rejection: "winsorized" | "sigma" = "winsorized"): string {
  const steps = kind === "flat" ? "bias-subtracted,normalised-by-median" : "raw";
  return `${kind};combine=mean;rejection=${rejection};sigma=3,3;inputs=${steps};engine=${engine}`;
}
export function hashOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** FITS files of a raw set and the hash of their identities (name, size, mtime). */
export function setInputs(dir: string): { files: string[]; hash: string } {
  const files = readdirSync(dir).filter((f) => FITS_EXTENSIONS.test(f)).sort().map((f) => join(dir, f));
  const id = files.map((f) => { const st = statSync(f); return `${basename(f)}\0${st.size}\0${Math.round(st.mtimeMs)}`; }).join("\n");
  return { files, hash: hashOf(id) };
}

function loadJobFile(path: string, problems: JobProblem[]): JobFile | undefined {
  let raw: unknown;
  try {
    const text = readFileSync(path, "utf8");
    raw = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    problems.push({ file: path, message: existsSync(path) ? `cannot be parsed: ${(e as Error).message}` : "does not exist" });
    return undefined;
  }
  const r = jobSchema.safeParse(raw);
  if (r.success) return r.data;
  let onlyUnknownKeys = true;
  for (const issue of r.error.issues) {
    const field = issue.path.map(String).join(".") || undefined;
    const message = issue.code === "unrecognized_keys" ? `unknown key(s) ${(issue as { keys: string[] }).keys.map((k) => `"${k}"`).join(", ")}` : issue.message;
    problems.push({ file: path, ...(field ? { field } : {}), message });
    if (issue.code !== "unrecognized_keys") onlyUnknownKeys = false;
    else {
      // Drop the unknown keys so the rest of the job can still be checked (all problems at once).
      let o = raw as Record<string, unknown>;
      for (const k of issue.path) o = o[k as string] as Record<string, unknown>;
      for (const k of (issue as { keys: string[] }).keys) delete o[k];
    }
  }
  if (onlyUnknownKeys) {
    const again = jobSchema.safeParse(raw);
    if (again.success) return again.data;
  }
  return undefined;
}

function nightOf(folder: string, dateObs?: string): string {
  const m = /(\d{4}_\d{2}_\d{2})/.exec(folder);
  if (m) return m[1]!;
  return dateObs ? dateObs.slice(0, 10).replace(/-/g, "_") : "unknown";
}

/** Header facts of a raw set, from its first readable frame. */
async function setFacts(files: string[]): Promise<{ gain?: number; binning?: string; width?: number; height?: number; temperatureC?: number }> {
  for (const f of files) {
    try {
      const info = frameInfoFromHeader(await readFitsHeader(f));
      return { ...(info.gain !== undefined ? { gain: info.gain } : {}), ...(info.binning ? { binning: info.binning } : {}), width: info.width, height: info.height, ...(info.temperatureC !== undefined ? { temperatureC: info.temperatureC } : {}) };
    } catch {
      // try the next one
    }
  }
  return {};
}

export async function planJob(jobFile: string, options: PlanOptions = {}): Promise<JobPlan> {
  const problems: JobProblem[] = [];
  const base = findBaseDir(jobFile, options.baseDir);
  const library = libraryLayout(base);
  const plan: JobPlan = { jobFile, base, library, lights: [], requirements: [], masters: [], decisions: [], groups: [], problems, headerBytesRead: 0 };
  const job = loadJobFile(jobFile, problems);
  if (!job) return plan;
  // A job that failed the schema only by unknown keys is still checked further (all problems at once),
  // but it never runs: the problems recorded above stay.
  plan.job = job;
  const opt = job.options ?? {};
  const tempTol = opt.temp_tolerance ?? 2;
  const expTol = opt.exposure_tolerance ?? 0.5;
  const missingTemp = opt.missing_temperature ?? "error";
  const aliases = options.filterAliases ?? {};
  const engine = options.engine ?? "@tile-compile/core";

  // Output folder.
  const outRel = job.output ?? join(Object.values(job.lights).flat()[0]!.split(/[\\/]/)[0]!, "processed");
  const out = insideBase(base, outRel);
  if ("error" in out) problems.push({ file: jobFile, field: "output", message: out.error });
  else plan.output = out.path;
  if (options.stacksOnly) return plan;

  // Lights: folders, files, headers.
  for (const [key, value] of Object.entries(job.lights)) {
    const filterKey = normalizeFilter(key, aliases);
    const folders = Array.isArray(value) ? value : [value];
    for (const [k, rel] of folders.entries()) {
      const field = Array.isArray(value) ? `lights.${key}[${k}]` : `lights.${key}`;
      const inside = insideBase(base, rel);
      if ("error" in inside) { problems.push({ file: jobFile, field, message: inside.error }); continue; }
      const dir = inside.path;
      if (!existsSync(dir) || !statSync(dir).isDirectory()) { problems.push({ file: jobFile, field, message: `folder ${rel} does not exist (looked in ${dir})` }); continue; }
      const entries = readdirSync(dir).filter((f) => !JUNK.test(f)).sort();
      const fits = entries.filter((f) => FITS_EXTENSIONS.test(f));
      for (const f of entries) if (!FITS_EXTENSIONS.test(f) && statSync(join(dir, f)).isFile()) problems.push({ file: join(dir, f), field, message: "is not a FITS file but sits among the lights (move it away or rename it)" });
      if (fits.length === 0) { problems.push({ file: jobFile, field, message: `folder ${rel} holds no FITS files` }); continue; }
      for (const f of fits) {
        options.signal?.throwIfAborted();
        const path = join(dir, f);
        try {
          const summary = await readFitsHeader(path);
          plan.headerBytesRead += summary.bytesRead;
          const info = frameInfoFromHeader(summary);
          const offset = summary.header.getNumber("OFFSET");
          const frame: LightFrame = { ...info, filterKey, folder: dir, night: nightOf(relative(base, dir), info.dateObs), ...(offset !== undefined ? { offset } : {}) };
          if (info.filter !== undefined && normalizeFilter(info.filter, aliases) !== filterKey) {
            problems.push({ file: path, field: "FILTER", message: `header filter "${info.filter}" (${normalizeFilter(info.filter, aliases)}) disagrees with the job key "${key}" (${filterKey})` });
          }
          if (info.exposureSeconds === undefined) problems.push({ file: path, field: "EXPTIME", message: "has no exposure keyword (EXPTIME, EXPOSURE or EXP_TIME)" });
          if (info.temperatureC === undefined && missingTemp === "error" && job.calibration?.darks) {
            problems.push({ file: path, field: "CCD-TEMP", message: "has no sensor temperature (CCD-TEMP, CCD_TEMP, SET-TEMP or TEMPERAT); set options.missing_temperature: ignore to match darks by exposure only" });
          }
          plan.lights.push(frame);
        } catch (e) {
          problems.push({ file: path, message: (e as Error).message });
        }
      }
    }
  }

  // Groups by (filter, exposure); sizes must agree within a group.
  const groups = new Map<string, LightFrame[]>();
  for (const f of plan.lights) {
    if (f.exposureSeconds === undefined) continue;
    const k = `${f.filterKey}\0${f.exposureSeconds}`;
    groups.set(k, [...(groups.get(k) ?? []), f]);
  }
  for (const frames of groups.values()) {
    const first = frames[0]!;
    for (const f of frames) {
      if (f.width !== first.width || f.height !== first.height || f.channels !== first.channels) {
        problems.push({ file: f.path, field: "NAXIS1/NAXIS2", message: `is ${f.width}×${f.height}${f.channels > 1 ? `×${f.channels}` : ""} but ${basename(first.path)} in the same group (${first.filterKey} ${expLabel(first.exposureSeconds!)}) is ${first.width}×${first.height}${first.channels > 1 ? `×${first.channels}` : ""}` });
      }
    }
    const temps = frames.map((f) => f.temperatureC).filter((t): t is number => t !== undefined);
    plan.requirements.push({
      filter: first.filterKey,
      exposureSeconds: first.exposureSeconds!,
      ...(temps.length ? { temperatureMin: Math.min(...temps), temperatureMax: Math.max(...temps) } : {}),
      ...(first.gain !== undefined ? { gain: first.gain } : {}),
      ...(first.binning ? { binning: first.binning } : {}),
      count: frames.length,
      nights: [...new Set(frames.map((f) => f.night))].sort(),
    });
  }
  plan.requirements.sort((a, b) => a.filter.localeCompare(b.filter) || b.exposureSeconds - a.exposureSeconds);

  // Candidates: raw sets and existing masters, one candidate per identity.
  const raws = rawSets(library);
  const masters = existingMasters(library);
  const identity = (s: RawSet) => `${s.kind}|${s.date}|${s.temperatureC ?? ""}|${s.exposureSeconds ?? ""}|${s.filter ?? ""}`;
  const candidates = new Map<string, { set: RawSet; raw?: RawSet; master?: RawSet }>();
  for (const s of raws) candidates.set(identity(s), { set: s, raw: s });
  for (const m of masters) {
    const c = candidates.get(identity(m));
    if (c) c.master = m;
    else candidates.set(identity(m), { set: m, master: m });
  }
  const factsCache = new Map<string, Awaited<ReturnType<typeof setFacts>>>();
  const facts = async (c: { raw?: RawSet; master?: RawSet }) => {
    const key = (c.raw ?? c.master)!.dir;
    if (!factsCache.has(key)) factsCache.set(key, await setFacts(c.raw ? setInputs(c.raw.dir).files : [c.master!.dir]));
    return factsCache.get(key)!;
  };
  const chosenMasters = new Map<string, MasterPlan>();
  const useMaster = (c: { set: RawSet; raw?: RawSet; master?: RawSet }): MasterPlan => {
    const id = identity(c.set);
    const have = chosenMasters.get(id);
    if (have) return have;
    const kind = c.set.kind;
    const path = c.master?.dir ?? masterPath(library, kind, c.set);
    const recipeHash = hashOf(recipeOf(kind, engine, options.masterRejection));
    let mp: MasterPlan;
    if (c.raw) {
      const { files, hash } = setInputs(c.raw.dir);
      if (existsSync(path)) {
        const stale = masterStamp(path);
        if (stale.inputHash === hash && stale.recipeHash === recipeHash) mp = { kind, name: basename(path), path, action: "reuse", reason: `up to date with its ${files.length} raw frames`, inputs: files, inputHash: hash, recipeHash, set: c.set };
        else mp = { kind, name: basename(path), path, action: "rebuild", reason: stale.inputHash === undefined ? "it records no input hash (made elsewhere)" : stale.inputHash !== hash ? `its raw frames changed (now ${files.length})` : "the recipe or engine version changed", inputs: files, inputHash: hash, recipeHash, set: c.set };
      } else mp = { kind, name: basename(path), path, action: "build", reason: `from ${files.length} raw frames in ${relative(base, c.raw.dir)}`, inputs: files, inputHash: hash, recipeHash, set: c.set };
    } else mp = { kind, name: basename(path), path, action: "reuse", reason: "existing master (no raw frames to check it against)", inputs: [], recipeHash, set: c.set };
    chosenMasters.set(id, mp);
    plan.masters.push(mp);
    return mp;
  };
  const describe = (c: { set: RawSet }) => (c.set.kind === "dark" ? `dark ${expLabel(c.set.exposureSeconds!)} ${tempLabel(c.set.temperatureC!)} ${c.set.date}` : c.set.kind === "flat" ? `flat ${c.set.filter} ${c.set.date}` : `bias ${c.set.date}`);
  const cal = job.calibration ?? {};
  const all = [...candidates.values()];

  // Bias: by date reference and binning/gain.
  let bias: MasterPlan | undefined;
  if (cal.bias) {
    const ref = plan.lights[0];
    const rejected: Decision["rejected"] = [];
    const ok: { c: (typeof all)[number]; days: number }[] = [];
    for (const c of all.filter((x) => x.set.kind === "bias")) {
      const f = await facts(c);
      if (ref?.binning && f.binning && f.binning !== ref.binning) { rejected.push({ candidate: describe(c), reason: `binning ${f.binning}, lights ${ref.binning}` }); continue; }
      if (ref?.gain !== undefined && f.gain !== undefined && f.gain !== ref.gain) { rejected.push({ candidate: describe(c), reason: `gain ${f.gain}, lights ${ref.gain}` }); continue; }
      ok.push({ c, days: daysBetween(c.set.date, cal.bias) });
    }
    ok.sort((a, b) => a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
    const best = ok.find((o) => o.days === 0) ?? undefined;
    for (const o of ok) if (o !== best) rejected.push({ candidate: describe(o.c), reason: `dated ${o.c.set.date}, the job asks for ${cal.bias}` });
    if (best) bias = useMaster(best.c);
    else problems.push({ file: jobFile, field: "calibration.bias", message: `no bias set or master dated ${cal.bias} (looked in ${relative(base, library.rawBiases)}/${cal.bias}/ and ${relative(base, library.masterBiases)}/bias_${cal.bias}.fit)${ok.length ? `; available: ${ok.map((o) => o.c.set.date).join(", ")}` : ""}` });
    plan.decisions.push({ kind: "bias", subject: "all lights", ...(bias ? { chosen: bias.name } : {}), reason: bias ? `dated ${cal.bias} as the job asks` : "none found", rejected });
  }

  // Darks: per light, by exposure, temperature (nearest wins, inclusive tolerance), gain and binning.
  const darkOf = new Map<LightFrame, MasterPlan>();
  if (cal.darks) {
    const keyOf = (f: LightFrame) => `${f.exposureSeconds}|${f.temperatureC === undefined ? "?" : f.temperatureC.toFixed(1)}|${f.gain ?? ""}|${f.binning ?? ""}`;
    const byKey = new Map<string, LightFrame[]>();
    for (const f of plan.lights) if (f.exposureSeconds !== undefined) byKey.set(keyOf(f), [...(byKey.get(keyOf(f)) ?? []), f]);
    for (const frames of byKey.values()) {
      const f0 = frames[0]!;
      const subject = `${[...new Set(frames.map((f) => f.filterKey))].join("/")} ${expLabel(f0.exposureSeconds!)}${f0.temperatureC !== undefined ? ` at ${f0.temperatureC.toFixed(1)} °C` : " (no temperature)"} (${frames.length} frame${frames.length > 1 ? "s" : ""})`;
      const rejected: Decision["rejected"] = [];
      const ok: { c: (typeof all)[number]; dt: number; days: number; exact: boolean }[] = [];
      for (const c of all.filter((x) => x.set.kind === "dark")) {
        const s = c.set;
        const dExp = Math.abs(s.exposureSeconds! - f0.exposureSeconds!);
        if (dExp > expTol && !opt.dark_scaling) { rejected.push({ candidate: describe(c), reason: `exposure ${expLabel(s.exposureSeconds!)}, lights ${expLabel(f0.exposureSeconds!)}` }); continue; }
        if (opt.dark_scaling && s.exposureSeconds! < f0.exposureSeconds! - expTol && dExp > expTol) { rejected.push({ candidate: describe(c), reason: `exposure ${expLabel(s.exposureSeconds!)} is shorter than the lights' (scaling only shortens)` }); continue; }
        const dt = f0.temperatureC === undefined ? 0 : Math.abs(s.temperatureC! - f0.temperatureC);
        if (f0.temperatureC !== undefined && dt > tempTol + 1e-9) { rejected.push({ candidate: describe(c), reason: `temperature ${dt.toFixed(1)} °C away, tolerance ${tempTol}` }); continue; }
        const fx = await facts(c);
        if (f0.binning && fx.binning && fx.binning !== f0.binning) { rejected.push({ candidate: describe(c), reason: `binning ${fx.binning}, lights ${f0.binning}` }); continue; }
        if (f0.gain !== undefined && fx.gain !== undefined && fx.gain !== f0.gain) { rejected.push({ candidate: describe(c), reason: `gain ${fx.gain}, lights ${f0.gain}` }); continue; }
        ok.push({ c, dt, days: daysBetween(s.date, cal.darks), exact: dExp <= expTol });
      }
      ok.sort((a, b) => Number(b.exact) - Number(a.exact) || a.dt - b.dt || a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
      const best = ok[0];
      for (const o of ok.slice(1)) rejected.push({ candidate: describe(o.c), reason: !o.exact && best?.exact ? "needs exposure scaling; an exact exposure exists" : o.dt > best!.dt ? `temperature ${o.dt.toFixed(1)} °C away; ${describe(best!.c)} is ${best!.dt.toFixed(1)} °C away` : `dated ${o.c.set.date}, further from ${cal.darks}` });
      if (best) {
        const mp = useMaster(best.c);
        for (const f of frames) darkOf.set(f, mp);
        plan.decisions.push({ kind: "dark", subject, chosen: mp.name, reason: `${best.exact ? "same exposure" : "exposure scaled"}, ${best.dt.toFixed(1)} °C away (tolerance ${tempTol}), ${best.days === 0 ? `dated ${cal.darks}` : `${best.days} days from ${cal.darks}`}`, rejected });
      } else {
        const near = rejected.find((r) => r.reason.startsWith("temperature"));
        problems.push({ file: jobFile, field: "calibration.darks", message: `no dark for ${subject}${near ? `: the nearest is ${near.candidate} (${near.reason})` : rejected.length ? `: ${rejected.map((r) => `${r.candidate} (${r.reason})`).join("; ")}` : " (no dark sets in the library)"}` });
        plan.decisions.push({ kind: "dark", subject, reason: "no candidate within the tolerances", rejected });
      }
    }
  }

  // Flats: by filter and date reference, same binning.
  const flatOf = new Map<string, MasterPlan>();
  if (cal.flats) {
    for (const filter of [...new Set(plan.lights.map((f) => f.filterKey))].sort()) {
      const ref = plan.lights.find((f) => f.filterKey === filter)!;
      const rejected: Decision["rejected"] = [];
      const ok: { c: (typeof all)[number]; days: number }[] = [];
      for (const c of all.filter((x) => x.set.kind === "flat")) {
        const ff = normalizeFilter(c.set.filter!, aliases);
        if (ff !== filter) { rejected.push({ candidate: describe(c), reason: `filter ${ff}, lights ${filter}` }); continue; }
        const fx = await facts(c);
        if (ref.binning && fx.binning && fx.binning !== ref.binning) { rejected.push({ candidate: describe(c), reason: `binning ${fx.binning}, lights ${ref.binning}` }); continue; }
        if (fx.width !== undefined && (fx.width !== ref.width || fx.height !== ref.height)) { rejected.push({ candidate: describe(c), reason: `size ${fx.width}×${fx.height}, lights ${ref.width}×${ref.height}` }); continue; }
        ok.push({ c, days: daysBetween(c.set.date, cal.flats) });
      }
      ok.sort((a, b) => a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
      const best = ok.find((o) => o.days === 0);
      for (const o of ok) if (o !== best) rejected.push({ candidate: describe(o.c), reason: `dated ${o.c.set.date}, the job asks for ${cal.flats}` });
      if (best) {
        const mp = useMaster(best.c);
        flatOf.set(filter, mp);
        plan.decisions.push({ kind: "flat", subject: `filter ${filter}`, chosen: mp.name, reason: `filter ${filter} dated ${cal.flats}`, rejected });
      } else {
        const other = rejected.filter((r) => r.reason.startsWith("filter")).map((r) => r.candidate);
        problems.push({ file: jobFile, field: "calibration.flats", message: `no flat for filter ${filter} dated ${cal.flats}${other.length ? ` (only ${other.join(", ")})` : ""}` });
        plan.decisions.push({ kind: "flat", subject: `filter ${filter}`, reason: "none found", rejected });
      }
    }
  }

  // Flats are built bias-subtracted: the bias master is needed for them too.
  plan.masters.sort((a, b) => ["bias", "dark", "flat"].indexOf(a.kind) - ["bias", "dark", "flat"].indexOf(b.kind) || a.name.localeCompare(b.name));
  for (const frames of groups.values()) {
    const f0 = frames[0]!;
    plan.groups.push({
      filter: f0.filterKey,
      exposureSeconds: f0.exposureSeconds!,
      frames: frames.map((frame) => ({ frame, ...(darkOf.get(frame) ? { dark: darkOf.get(frame)!.path } : {}), ...(bias ? { bias: bias.path } : {}), ...(flatOf.get(frame.filterKey) ? { flat: flatOf.get(frame.filterKey)!.path } : {}) })),
    });
  }
  plan.groups.sort((a, b) => a.filter.localeCompare(b.filter) || b.exposureSeconds - a.exposureSeconds);
  void extname;
  return plan;
}

/** The recipe and input hashes recorded in a master's header (undefined fields when absent). */
export function masterStamp(path: string): { inputHash?: string; recipeHash?: string } {
  try {
    // Headers are small; the first 64 KiB hold ours.
    const buf = Buffer.alloc(65536);
    const h = openSync(path, "r");
    const n = readSync(h, buf, 0, buf.length, 0);
    closeSync(h);
    const fd = buf.toString("latin1", 0, n);
    const card = (key: string) => {
      for (let i = 0; i + 80 <= fd.length; i += 80) {
        const c = fd.slice(i, i + 80);
        if (c.startsWith(key.padEnd(8, " ") + "=")) return /'([^']*)'/.exec(c)?.[1]?.trim();
        if (c.startsWith("END     ")) break;
      }
      return undefined;
    };
    const inputHash = card("TCINHASH"), recipeHash = card("TCRECIPE");
    return { ...(inputHash ? { inputHash } : {}), ...(recipeHash ? { recipeHash } : {}) };
  } catch {
    return {};
  }
}
