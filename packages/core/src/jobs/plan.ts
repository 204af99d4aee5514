/**
 * `validate`: everything about a job that can be decided before any pixel is read — the job file checked
 * against its schema, the light headers scanned (headers only), the requirements table, the matching of
 * darks, bias and flats with the decision and every rejected candidate explained, and the masters to
 * reuse, build or rebuild (stale when their inputs or recipe changed). All problems are collected and
 * reported together; nothing is written.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from "node:fs";
import { basename, extname, join, relative } from "node:path";
import { parse as parseYaml } from "yaml";
import { readFitsHeader } from "@tile-compile/fits";
import { frameInfoFromHeader, type FrameInfo } from "../frames/metadata.js";
import { FITS_EXTENSIONS } from "../frames/scan.js";
import { darkCurrent, measureSetLevel, type SetLevel } from "../calibration/levels.js";
import { normalizeFilter } from "./filters.js";
import {
  daysBetween,
  existingMasters,
  expLabel,
  findBaseDir,
  insideBase,
  libraryLayout,
  masterPath,
  rawSets,
  tempLabel,
  type LibraryLayout,
  type RawSet,
} from "./library.js";
import { jobSchema, type JobFile } from "./schema.js";
import { type MasterRejection } from "../config/schema.js";

export interface JobProblem {
  file: string;
  field?: string;
  message: string;
  /** A stable code when the problem has its own entry in the error catalogue (e.g. TC_CALIBRATION_NO_OFFSET). */
  code?: string;
}

export interface LightFrame extends FrameInfo {
  /** The job's filter key (normalised). */
  filterKey: string;
  folder: string;
  /** The night: the folder's YYYY_MM_DD component, else DATE-OBS's date. */
  night: string;
  offset?: number;
  /**
   * Where its calibrated copy goes under `calibrated/<filter>_<exposure>/`: the night, and when two
   * folders of one night hold the same file names, the folder (relative to the base) below it — so no two
   * lights share an output name.
   */
  calibratedDir: string;
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
  /** Flats: the offset subtracted from each raw flat (flat-dark or bias master, or a declared pedestal). */
  offset?: { path?: string; name: string; pedestal?: number };
}

/**
 * Where a light group's offset (bias level / pedestal) comes from: `dark` (a dark of the same exposure
 * holds it), `scaled-dark` (bias + dark scaled by exposure), `bias`, `pedestal` (declared), `short-dark`
 * (the shortest dark at the lights' temperature), or `none`. With the dark signal an offset-only
 * calibration leaves in (measured dark current × exposure) and the read noise it is compared with.
 */
export interface LightOffset {
  source: "dark" | "scaled-dark" | "bias" | "pedestal" | "short-dark" | "none";
  label: string;
  pedestal?: number;
  /** The master subtracted as the offset (short-dark). */
  offsetMaster?: string;
  residualDarkAdu?: number;
  darkRateAduPerS?: number;
  readNoiseAdu?: number;
}

export interface Decision {
  kind: "bias" | "dark" | "flat" | "offset";
  /** What was matched, e.g. `L 180 s at -9.6 °C (12 frames)`. */
  subject: string;
  chosen?: string;
  reason: string;
  rejected: { candidate: string; reason: string }[];
  /** The offset source this decision gives its lights (or flats). */
  offset?: LightOffset;
}

export interface CalibratedGroup {
  filter: string;
  exposureSeconds: number;
  /** Per light: the masters; `bias` is the offset master (a bias, or the shortest dark), `pedestal` a constant. */
  frames: {
    frame: LightFrame;
    dark?: string;
    bias?: string;
    flat?: string;
    pedestal?: number;
    darkScaling?: boolean;
    offset?: LightOffset["source"];
  }[];
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
  /**
   * Exposure groups left out or flagged: a filter's minority exposure group of ≤ 2 frames or < 10 % of the
   * filter's frames is a likely stray (another target, a test frame); groups smaller than `hdr.min_frames`
   * are left out so they do not turn the job into HDR mode.
   */
  /** Lights reached more than once (the same path listed twice, a symlink, a hard link): used once. */
  duplicates: { path: string; sameAs: string; reason: string }[];
  strays: {
    filter: string;
    exposureSeconds: number;
    frames: { path: string; object?: string }[];
    action: "left out" | "kept";
    reason: string;
  }[];
}

export interface PlanOptions {
  baseDir?: string;
  filterAliases?: Record<string, string>;
  /** Skip the lights and calibration: only the job file and its output folder (for --stage compose/stretch). */
  stacksOnly?: boolean;
  /** engine@version that builds masters: part of the recipe (a new engine version rebuilds them). */
  engine?: string;
  /** Pixel rejection of the masters (`calibration.rejection`): part of the recipe. */
  masterRejection?: MasterRejection;
  /** `hdr.min_frames`: a filter's exposure group with fewer frames than this (when the filter has another) is left out. Default 3. */
  hdrMinFrames?: number;
  signal?: AbortSignal;
}

const JUNK = /^(\.|thumbs\.db$|desktop\.ini$)/i;

/** Recipe of a master: what would change its pixels. */
export function recipeOf(kind: "bias" | "dark" | "flat", engine: string, rejection: MasterRejection = "winsorized"): string {
  const steps = kind === "flat" ? "bias-subtracted,normalised-by-median" : "raw";
  return `${kind};combine=mean;rejection=${rejection};sigma=3,3;inputs=${steps};engine=${engine}`;
}
export function hashOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** FITS files of a raw set and the hash of their identities (name, size, mtime). */
export function setInputs(dir: string): { files: string[]; hash: string } {
  const files = readdirSync(dir)
    .filter((f) => FITS_EXTENSIONS.test(f))
    .sort()
    .map((f) => join(dir, f));
  const id = files
    .map((f) => {
      const st = statSync(f);
      return `${basename(f)}\0${st.size}\0${Math.round(st.mtimeMs)}`;
    })
    .join("\n");
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
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown key(s) ${(issue as { keys: string[] }).keys.map((k) => `"${k}"`).join(", ")}`
        : issue.message;
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
async function setFacts(files: string[]): Promise<{
  gain?: number;
  binning?: string;
  width?: number;
  height?: number;
  temperatureC?: number;
  exposureSeconds?: number;
  bayerPattern?: string;
}> {
  for (const f of files) {
    try {
      const info = frameInfoFromHeader(await readFitsHeader(f));
      return {
        ...(info.gain !== undefined ? { gain: info.gain } : {}),
        ...(info.binning ? { binning: info.binning } : {}),
        width: info.width,
        height: info.height,
        ...(info.temperatureC !== undefined ? { temperatureC: info.temperatureC } : {}),
        ...(info.exposureSeconds !== undefined ? { exposureSeconds: info.exposureSeconds } : {}),
        ...(info.bayerPattern ? { bayerPattern: info.bayerPattern } : {}),
      };
    } catch {
      // try the next one
    }
  }
  return {};
}

/** What the phases of `planJob` share. */
interface Planner {
  plan: JobPlan;
  problems: JobProblem[];
  job: JobFile;
  jobFile: string;
  base: string;
  library: LibraryLayout;
  options: PlanOptions;
  opt: NonNullable<JobFile["options"]>;
  cal: NonNullable<JobFile["calibration"]>;
  tempTol: number;
  expTol: number;
  missingTemp: NonNullable<NonNullable<JobFile["options"]>["missing_temperature"]>;
  aliases: Record<string, string>;
  engine: string;
}

/** A calibration set of the library: its raw frames, its master, or both. */
type Candidate = { set: RawSet; raw?: RawSet; master?: RawSet };

interface Candidates {
  all: Candidate[];
  darks: Candidate[];
  /** Camera facts of a set (binning, gain, size, …), read once. */
  facts(c: { raw?: RawSet; master?: RawSet }): Promise<Awaited<ReturnType<typeof setFacts>>>;
  /** The master a candidate becomes (built, rebuilt or reused), planned once. */
  useMaster(c: Candidate, offset?: MasterPlan["offset"]): MasterPlan;
  describe(c: { set: RawSet }): string;
}

type BiasChoice = { plan: MasterPlan; candidate: Candidate };

/** A dark that passed the temperature, binning, gain and size checks for a light group. */
type UsableDark = { c: Candidate; dt: number; days: number; dExp: number };

interface DarkMatching {
  darkOf: Map<LightFrame, MasterPlan>;
  offsetOf: Map<LightFrame, LightOffset>;
  darkRateAt(temperatureC: number | undefined, pool: Candidate[]): Promise<{ rate: number; from: string } | undefined>;
  readNoiseOf(c: { raw?: RawSet; master?: RawSet } | undefined): Promise<number | undefined>;
  pushDark(frames: LightFrame[], d: Decision): void;
}

export async function planJob(jobFile: string, options: PlanOptions = {}): Promise<JobPlan> {
  const problems: JobProblem[] = [];
  const base = findBaseDir(jobFile, options.baseDir);
  const library = libraryLayout(base);
  const plan: JobPlan = {
    jobFile,
    base,
    library,
    lights: [],
    requirements: [],
    masters: [],
    decisions: [],
    groups: [],
    problems,
    headerBytesRead: 0,
    strays: [],
    duplicates: [],
  };
  const job = loadJobFile(jobFile, problems);
  if (!job) return plan;
  // A job that failed the schema only by unknown keys is still checked further (all problems at once),
  // but it never runs: the problems recorded above stay.
  plan.job = job;
  const opt = job.options ?? {};
  const p: Planner = {
    plan,
    problems,
    job,
    jobFile,
    base,
    library,
    options,
    opt,
    cal: job.calibration ?? {},
    tempTol: opt.temp_tolerance ?? 2,
    expTol: opt.exposure_tolerance ?? 0.5,
    missingTemp: opt.missing_temperature ?? "error",
    aliases: options.filterAliases ?? {},
    engine: options.engine ?? "@tile-compile/engine-native",
  };

  // Output folder.
  const outRel = job.output ?? join(Object.values(job.lights).flat()[0]!.split(/[\\/]/)[0]!, "processed");
  const out = insideBase(base, outRel);
  if ("error" in out) problems.push({ file: jobFile, field: "output", message: out.error });
  else plan.output = out.path;
  if (options.stacksOnly) return plan;

  await readLights(p);
  assignCalibratedDirs(plan, base);
  const groups = groupLights(p);
  const c = libraryCandidates(p);
  const bias = await matchBias(p, c);
  const darks = await matchDarks(p, c, bias);
  const flats = await matchFlats(p, c, bias);
  assembleGroups(p, groups, bias, darks, flats);
  void extname;
  return plan;
}

/** The lights of every filter: folders, files, headers; duplicates used once, every problem recorded. */
async function readLights(p: Planner): Promise<void> {
  const { plan, problems, job, jobFile, base, options, missingTemp, aliases } = p;
  const seenFiles = new Map<string, string>();
  for (const [key, value] of Object.entries(job.lights)) {
    const filterKey = normalizeFilter(key, aliases);
    const folders = Array.isArray(value) ? value : [value];
    for (const [k, rel] of folders.entries()) {
      const field = Array.isArray(value) ? `lights.${key}[${k}]` : `lights.${key}`;
      const inside = insideBase(base, rel);
      if ("error" in inside) {
        problems.push({ file: jobFile, field, message: inside.error });
        continue;
      }
      const dir = inside.path;
      if (!existsSync(dir) || !statSync(dir).isDirectory()) {
        problems.push({ file: jobFile, field, message: `folder ${rel} does not exist (looked in ${dir})` });
        continue;
      }
      const entries = readdirSync(dir)
        .filter((f) => !JUNK.test(f))
        .sort();
      const fits = entries.filter((f) => FITS_EXTENSIONS.test(f));
      for (const f of entries) {
        if (FITS_EXTENSIONS.test(f)) continue;
        let st;
        try {
          st = statSync(join(dir, f));
        } catch (e) {
          problems.push({
            file: join(dir, f),
            field,
            code: "TC_IO",
            message: `cannot be read (${(e as { code?: string }).code === "ELOOP" ? "a symbolic link that loops" : (e as { code?: string }).code === "ENOENT" ? "a symbolic link to nothing" : (e as Error).message}): remove it from the lights folder`,
          });
          continue;
        }
        if (st.isFile())
          problems.push({ file: join(dir, f), field, message: "is not a FITS file but sits among the lights (move it away or rename it)" });
      }
      if (fits.length === 0) {
        problems.push({ file: jobFile, field, message: `folder ${rel} holds no FITS files` });
        continue;
      }
      for (const f of fits) {
        options.signal?.throwIfAborted();
        const path = join(dir, f);
        try {
          const summary = await readFitsHeader(path);
          plan.headerBytesRead += summary.bytesRead;
          const info = frameInfoFromHeader(summary);
          const offset = summary.header.getNumber("OFFSET");
          // The same file reached twice (listed twice, through a symlink, or a hard link) is used once.
          let real = path;
          try {
            real = realpathSync(path);
          } catch {
            /* reported by the header read */
          }
          const id = (() => {
            try {
              const st = statSync(real);
              return `${st.dev}:${st.ino}`;
            } catch {
              return real;
            }
          })();
          const first = seenFiles.get(id);
          if (first) {
            plan.duplicates.push({
              path,
              sameAs: first,
              reason:
                real === path && first === path
                  ? "listed twice"
                  : `the same file as ${relative(base, first)} (${realpathSync(first) === real ? "through a symbolic link or a second listing" : "a hard link"})`,
            });
            continue;
          }
          seenFiles.set(id, path);
          const frame: LightFrame = {
            ...info,
            filterKey,
            folder: dir,
            night: nightOf(relative(base, dir), info.dateObs),
            calibratedDir: "",
            ...(offset !== undefined ? { offset } : {}),
          };
          if (info.filter !== undefined && normalizeFilter(info.filter, aliases) !== filterKey) {
            problems.push({
              file: path,
              field: "FILTER",
              message: `header filter "${info.filter}" (${normalizeFilter(info.filter, aliases)}) disagrees with the job key "${key}" (${filterKey}); if "${info.filter}" is your ${filterKey} filter, say so in tile_compile.yaml: filters: { aliases: { "${info.filter}": ${filterKey} } }`,
            });
          }
          if (info.exposureSeconds === undefined)
            problems.push({ file: path, field: "EXPTIME", message: "has no exposure keyword (EXPTIME, EXPOSURE or EXP_TIME)" });
          if (info.temperatureC === undefined && missingTemp === "error" && job.calibration?.darks) {
            problems.push({
              file: path,
              field: "CCD-TEMP",
              message:
                "has no sensor temperature (CCD-TEMP, CCD_TEMP, SET-TEMP or TEMPERAT); set options.missing_temperature: ignore to match darks by exposure only",
            });
          }
          plan.lights.push(frame);
        } catch (e) {
          const code = (e as { cause?: { code?: string } }).cause?.code;
          const msg = (e as Error).message;
          problems.push({
            file: path,
            ...(code ? { code: "TC_IO" } : {}),
            message:
              code === "ELOOP"
                ? "is a symbolic link that loops: remove it from the lights folder"
                : code === "ENOENT"
                  ? "is a symbolic link to nothing (its target was moved or deleted): remove it or restore the target"
                  : msg.startsWith(`${path}: `)
                    ? msg.slice(path.length + 2)
                    : msg,
          });
        }
      }
    }
  }
}

/**
 * Unique calibrated names: within a (filter, exposure, night), folders whose file names collide get
 * their own subfolder (the folder's path relative to the base, as one ASCII name).
 */
function assignCalibratedDirs(plan: JobPlan, base: string): void {
  const byNight = new Map<string, LightFrame[]>();
  for (const f of plan.lights) {
    const k = `${f.filterKey}|${f.exposureSeconds}|${f.night}`;
    byNight.set(k, [...(byNight.get(k) ?? []), f]);
  }
  for (const list of byNight.values()) {
    const names = new Map<string, Set<string>>();
    for (const f of list) {
      const n = calibratedName(f.path);
      names.set(n, (names.get(n) ?? new Set()).add(f.folder));
    }
    const clash = [...names.values()].some((folders) => folders.size > 1);
    for (const f of list) f.calibratedDir = clash ? join(f.night, folderTag(relative(base, f.folder))) : f.night;
  }
}

/** Groups by (filter, exposure), strays and small HDR groups decided, sizes checked, the requirements table. */
function groupLights(p: Planner): Map<string, LightFrame[]> {
  const { plan, problems, options } = p;
  const groups = new Map<string, LightFrame[]>();
  for (const f of plan.lights) {
    if (f.exposureSeconds === undefined) continue;
    const k = `${f.filterKey}\0${f.exposureSeconds}`;
    groups.set(k, [...(groups.get(k) ?? []), f]);
  }
  // HDR decided on purpose: a stray exposure group does not switch a filter into HDR mode.
  const minFrames = options.hdrMinFrames ?? 3;
  for (const filter of new Set([...groups.values()].map((g) => g[0]!.filterKey))) {
    const list = [...groups.entries()]
      .filter(([, g]) => g[0]!.filterKey === filter)
      .sort((a, b) => b[1].length - a[1].length || b[1][0]!.exposureSeconds! - a[1][0]!.exposureSeconds!);
    if (list.length < 2) continue;
    const total = list.reduce((a, [, g]) => a + g.length, 0);
    for (const [key, g] of list.slice(1)) {
      const stray = g.length <= 2 || g.length < 0.1 * total;
      const small = g.length < minFrames;
      if (!stray && !small) continue;
      const exp = g[0]!.exposureSeconds!;
      const objects = [...new Set(g.map((f) => f.object ?? "no OBJECT"))];
      const reason = `${g.length} of the ${total} ${filter} frames are ${expLabel(exp)} (${g
        .map((f) => basename(f.path))
        .slice(0, 5)
        .join(
          ", ",
        )}${g.length > 5 ? ", …" : ""}; OBJECT ${objects.join(", ")}); the main group is ${expLabel(list[0]![1][0]!.exposureSeconds!)} (${list[0]![1].length} frames)`;
      plan.strays.push({
        filter,
        exposureSeconds: exp,
        frames: g.map((f) => ({ path: f.path, ...(f.object ? { object: f.object } : {}) })),
        action: small ? "left out" : "kept",
        reason: small
          ? `${reason}: fewer than hdr.min_frames (${minFrames}), left out — not an HDR set (lower hdr.min_frames to keep it)`
          : `${reason}: a likely stray, kept as an HDR exposure (≥ hdr.min_frames ${minFrames})`,
      });
      if (small) {
        groups.delete(key);
        const out = new Set(g);
        plan.lights = plan.lights.filter((f) => !out.has(f));
      }
    }
  }
  for (const frames of groups.values()) {
    const first = frames[0]!;
    for (const f of frames) {
      if (f.width !== first.width || f.height !== first.height || f.channels !== first.channels) {
        problems.push({
          file: f.path,
          field: "NAXIS1/NAXIS2",
          message: `is ${f.width}×${f.height}${f.channels > 1 ? `×${f.channels}` : ""} but ${basename(first.path)} in the same group (${first.filterKey} ${expLabel(first.exposureSeconds!)}) is ${first.width}×${first.height}${first.channels > 1 ? `×${first.channels}` : ""}`,
        });
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
  return groups;
}

/** Candidates: raw sets and existing masters, one candidate per identity; the master each would become. */
function libraryCandidates(p: Planner): Candidates {
  const { plan, problems, base, library, options, engine } = p;
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
  const useMaster = (c: { set: RawSet; raw?: RawSet; master?: RawSet }, offset?: MasterPlan["offset"]): MasterPlan => {
    const id = identity(c.set);
    const have = chosenMasters.get(id);
    if (have) return have;
    const kind = c.set.kind;
    const path = c.master?.dir ?? masterPath(library, kind, c.set);
    // A flat's offset is part of its recipe: another offset source rebuilds it.
    const offsetId = offset
      ? offset.pedestal !== undefined
        ? `pedestal=${offset.pedestal}`
        : `offset=${offset.name}:${plan.masters.find((x) => x.path === offset.path)?.inputHash ?? ""}`
      : "offset=none";
    const recipeHash = hashOf(`${recipeOf(kind, engine, options.masterRejection)}${kind === "flat" ? `;${offsetId}` : ""}`);
    let mp: MasterPlan;
    if (c.raw) {
      const { files, hash } = setInputs(c.raw.dir);
      if (existsSync(path)) {
        const stale = masterStamp(path);
        if (stale.unreadable)
          mp = {
            kind,
            name: basename(path),
            path,
            action: "rebuild",
            reason: `unreadable (${stale.unreadable})`,
            inputs: files,
            inputHash: hash,
            recipeHash,
            set: c.set,
          };
        else if (stale.inputHash === hash && stale.recipeHash === recipeHash)
          mp = {
            kind,
            name: basename(path),
            path,
            action: "reuse",
            reason: `up to date with its ${files.length} raw frames`,
            inputs: files,
            inputHash: hash,
            recipeHash,
            set: c.set,
          };
        else
          mp = {
            kind,
            name: basename(path),
            path,
            action: "rebuild",
            reason:
              stale.inputHash === undefined
                ? "it records no input hash (made elsewhere)"
                : stale.inputHash !== hash
                  ? `its raw frames changed (now ${files.length})`
                  : "the recipe or engine version changed",
            inputs: files,
            inputHash: hash,
            recipeHash,
            set: c.set,
          };
      } else
        mp = {
          kind,
          name: basename(path),
          path,
          action: "build",
          reason: `from ${files.length} raw frames in ${relative(base, c.raw.dir)}`,
          inputs: files,
          inputHash: hash,
          recipeHash,
          set: c.set,
        };
    } else {
      mp = {
        kind,
        name: basename(path),
        path,
        action: "reuse",
        reason: "existing master (no raw frames to check it against)",
        inputs: [],
        recipeHash,
        set: c.set,
      };
      const bad = masterStamp(path).unreadable;
      if (bad)
        problems.push({
          file: path,
          message: `the master is unreadable (${bad}) and has no raw frames to rebuild it from: restore its raw frames in ${relative(base, kind === "bias" ? library.rawBiases : kind === "dark" ? library.rawDarks : library.rawFlats)}/, or delete it`,
        });
    }
    if (offset) mp.offset = offset;
    chosenMasters.set(id, mp);
    plan.masters.push(mp);
    return mp;
  };
  const describe = (c: { set: RawSet }) =>
    c.set.kind === "dark"
      ? `dark ${expLabel(c.set.exposureSeconds!)} ${tempLabel(c.set.temperatureC!)} ${c.set.date}`
      : c.set.kind === "flat"
        ? `flat ${c.set.filter} ${c.set.date}`
        : `bias ${c.set.date}`;
  const all = [...candidates.values()];
  const darks = all.filter((x) => x.set.kind === "dark");
  return { all, darks, facts, useMaster, describe };
}

/** Bias: by date reference and binning/gain. */
async function matchBias(p: Planner, c: Candidates): Promise<BiasChoice | undefined> {
  const { plan, problems, jobFile, base, library, cal } = p;
  const { all, facts, useMaster, describe } = c;
  let bias: BiasChoice | undefined;
  if (cal.bias) {
    const ref = plan.lights[0];
    const rejected: Decision["rejected"] = [];
    const ok: { c: Candidate; days: number }[] = [];
    for (const c of all.filter((x) => x.set.kind === "bias")) {
      const f = await facts(c);
      if (ref?.binning && f.binning && f.binning !== ref.binning) {
        rejected.push({ candidate: describe(c), reason: `binning ${f.binning}, lights ${ref.binning}` });
        continue;
      }
      if (ref?.gain !== undefined && f.gain !== undefined && f.gain !== ref.gain) {
        rejected.push({ candidate: describe(c), reason: `gain ${f.gain}, lights ${ref.gain}` });
        continue;
      }
      if (ref && f.width !== undefined && (f.width !== ref.width || f.height !== ref.height)) {
        rejected.push({ candidate: describe(c), reason: `size ${f.width}×${f.height}, lights ${ref.width}×${ref.height}` });
        continue;
      }
      ok.push({ c, days: daysBetween(c.set.date, cal.bias) });
    }
    ok.sort((a, b) => a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
    const best = ok.find((o) => o.days === 0) ?? undefined;
    for (const o of ok)
      if (o !== best) rejected.push({ candidate: describe(o.c), reason: `dated ${o.c.set.date}, the job asks for ${cal.bias}` });
    if (best) bias = { plan: useMaster(best.c), candidate: best.c };
    else
      problems.push({
        file: jobFile,
        field: "calibration.bias",
        message: `no bias set or master dated ${cal.bias} (looked in ${relative(base, library.rawBiases)}/${cal.bias}/ and ${relative(base, library.masterBiases)}/bias_${cal.bias}.fit)${ok.length ? `; available: ${ok.map((o) => o.c.set.date).join(", ")}` : ""}`,
      });
    plan.decisions.push({
      kind: "bias",
      subject: "all lights",
      ...(bias ? { chosen: bias.plan.name } : {}),
      reason: bias ? `dated ${cal.bias} as the job asks` : "none found",
      rejected,
    });
  }
  return bias;
}

/**
 * What matching darks shares across light groups: the choices per light, the dark current and read noise
 * measured from the library, and the decision lines (lights that get the same masters share one).
 */
function darkMatching(p: Planner, c: Candidates, bias: BiasChoice | undefined): DarkMatching {
  const { plan, tempTol } = p;
  const darkOf = new Map<LightFrame, MasterPlan>();
  const offsetOf = new Map<LightFrame, LightOffset>();
  const levelCache = new Map<string, Promise<SetLevel | undefined>>();
  const levelOf = (c: { raw?: RawSet; master?: RawSet }): Promise<SetLevel | undefined> => {
    const key = (c.raw ?? c.master)!.dir;
    let p = levelCache.get(key);
    if (!p) {
      p = measureSetLevel(c.raw ? setInputs(c.raw.dir).files : [c.master!.dir]).catch(() => undefined);
      levelCache.set(key, p);
    }
    return p;
  };
  /** Dark current (ADU/s) at a temperature, from the bias and the darks there, or from two dark exposures. */
  const darkRateAt = async (temperatureC: number | undefined, pool: Candidate[]): Promise<{ rate: number; from: string } | undefined> => {
    const near = pool.filter((c) => temperatureC === undefined || Math.abs(c.set.temperatureC! - temperatureC) <= tempTol + 1e-9);
    const points: { exposureSeconds: number; level: number }[] = [];
    for (const c of near) {
      const l = await levelOf(c);
      if (l) points.push({ exposureSeconds: c.set.exposureSeconds!, level: l.level });
    }
    if (bias) {
      const l = await levelOf(bias.candidate);
      if (l) points.push({ exposureSeconds: 0, level: l.level });
    }
    const fit = darkCurrent(points);
    if (!fit) return undefined;
    return {
      rate: Math.max(0, fit.rate),
      from: `${points.length} levels (${[...new Set(points.map((p) => expLabel(p.exposureSeconds)))].join(", ")}${bias ? ", bias as 0 s" : ""})`,
    };
  };
  const readNoiseOf = async (c: { raw?: RawSet; master?: RawSet } | undefined): Promise<number | undefined> =>
    c ? (await levelOf(c))?.noise : undefined;
  // One decision line per (filters, exposure, chosen master, offset source): lights that get the same
  // masters are one line with their temperature range, not one line per 0.1 °C of sensor temperature.
  const merged = new Map<string, { d: Decision; frames: LightFrame[] }>();
  const pushDark = (frames: LightFrame[], d: Decision) => {
    const f0 = frames[0]!;
    const key = `${d.kind}|${d.chosen ?? ""}|${d.offset?.source ?? ""}|${f0.exposureSeconds}|${f0.gain ?? ""}|${f0.binning ?? ""}|${d.chosen ? "" : d.reason}`;
    const have = merged.get(key);
    if (!have) {
      merged.set(key, { d, frames: [...frames] });
      plan.decisions.push(d);
      return;
    }
    have.frames.push(...frames);
    const all = have.frames;
    const temps = all.map((f) => f.temperatureC).filter((t): t is number => t !== undefined);
    const filters = [...new Set(all.map((f) => f.filterKey))].join("/");
    have.d.subject = `${filters} ${expLabel(f0.exposureSeconds!)}${temps.length ? `, ${Math.min(...temps).toFixed(1)} … ${Math.max(...temps).toFixed(1)} °C` : ""} (${all.length} frames)`;
    const dts = [have.d.reason, d.reason].flatMap((r) => [...r.matchAll(/([\d.]+) °C away/g)].map((m) => Number(m[1])));
    if (dts.length) have.d.reason = have.d.reason.replace(/[\d.]+ °C away/, `≤ ${Math.max(...dts).toFixed(1)} °C away`).replace(/≤ ≤/, "≤");
    const seen = new Set(have.d.rejected.map((r) => `${r.candidate}|${r.reason}`));
    for (const r of d.rejected)
      if (!seen.has(`${r.candidate}|${r.reason}`)) {
        have.d.rejected.push(r);
        seen.add(`${r.candidate}|${r.reason}`);
      }
  };
  return { darkOf, offsetOf, darkRateAt, readNoiseOf, pushDark };
}

/**
 * Darks and the offset, per light (exposure, temperature, gain, binning). Flat-fielding is only right
 * once the offset (bias/pedestal) and the dark signal are out of the lights, so every group gets an
 * offset source, chosen in this order and explained: a dark of the same exposure · the bias + a dark
 * scaled from (dark − bias), shorter or longer · the bias alone · a declared pedestal · the shortest
 * dark at the lights' temperature. None, with flats applied, is refused (the vignetting would invert).
 */
async function matchDarks(p: Planner, c: Candidates, bias: BiasChoice | undefined): Promise<DarkMatching> {
  const { plan } = p;
  const d = darkMatching(p, c, bias);
  const byKey = new Map<string, LightFrame[]>();
  const keyOf = (f: LightFrame) =>
    `${f.exposureSeconds}|${f.temperatureC === undefined ? "?" : f.temperatureC.toFixed(1)}|${f.gain ?? ""}|${f.binning ?? ""}`;
  for (const f of plan.lights) if (f.exposureSeconds !== undefined) byKey.set(keyOf(f), [...(byKey.get(keyOf(f)) ?? []), f]);
  for (const frames of byKey.values()) await matchDarkGroup(p, c, bias, d, frames);
  return d;
}

/** One light group's dark: the same exposure within the tolerances, else (offsetWithoutDark) an offset source. */
async function matchDarkGroup(
  p: Planner,
  c: Candidates,
  bias: BiasChoice | undefined,
  d: DarkMatching,
  frames: LightFrame[],
): Promise<void> {
  const { problems, jobFile, cal, tempTol, expTol } = p;
  const { darks, facts, useMaster, describe } = c;
  const { darkOf, offsetOf, pushDark } = d;
  const f0 = frames[0]!;
  const subject = `${[...new Set(frames.map((f) => f.filterKey))].join("/")} ${expLabel(f0.exposureSeconds!)}${f0.temperatureC !== undefined ? ` at ${f0.temperatureC.toFixed(1)} °C` : " (no temperature)"} (${frames.length} frame${frames.length > 1 ? "s" : ""})`;
  const rejected: Decision["rejected"] = [];
  const usable: { c: Candidate; dt: number; days: number; dExp: number }[] = [];
  for (const c of cal.darks ? darks : []) {
    const s = c.set;
    const dExp = Math.abs(s.exposureSeconds! - f0.exposureSeconds!);
    const dt = f0.temperatureC === undefined ? 0 : Math.abs(s.temperatureC! - f0.temperatureC);
    if (f0.temperatureC !== undefined && dt > tempTol + 1e-9) {
      rejected.push({ candidate: describe(c), reason: `temperature ${dt.toFixed(1)} °C away, tolerance ${tempTol}` });
      continue;
    }
    const fx = await facts(c);
    if (f0.binning && fx.binning && fx.binning !== f0.binning) {
      rejected.push({ candidate: describe(c), reason: `binning ${fx.binning}, lights ${f0.binning}` });
      continue;
    }
    if (f0.gain !== undefined && fx.gain !== undefined && fx.gain !== f0.gain) {
      rejected.push({ candidate: describe(c), reason: `gain ${fx.gain}, lights ${f0.gain}` });
      continue;
    }
    if (fx.width !== undefined && (fx.width !== f0.width || fx.height !== f0.height)) {
      rejected.push({ candidate: describe(c), reason: `size ${fx.width}×${fx.height}, lights ${f0.width}×${f0.height}` });
      continue;
    }
    usable.push({ c, dt, days: daysBetween(s.date, cal.darks!), dExp });
  }
  const exact = usable
    .filter((u) => u.dExp <= expTol)
    .sort((a, b) => a.dt - b.dt || a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
  const assign = (dark: MasterPlan | undefined, offset: LightOffset) => {
    for (const f of frames) {
      if (dark) darkOf.set(f, dark);
      offsetOf.set(f, offset);
    }
  };
  if (cal.darks && usable.length === 0) {
    const near = rejected.find((r) => r.reason.startsWith("temperature"));
    problems.push({
      file: jobFile,
      field: "calibration.darks",
      message: `no dark for ${subject}${near ? `: the nearest is ${near.candidate} (${near.reason})` : rejected.length ? `: ${rejected.map((r) => `${r.candidate} (${r.reason})`).join("; ")}` : " (no dark sets in the library)"}`,
    });
    pushDark(frames, { kind: "dark", subject, reason: "no candidate within the tolerances", rejected });
    return;
  }
  const best = exact[0];
  if (best) {
    const mp = useMaster(best.c);
    for (const o of usable)
      if (o !== best)
        rejected.push({
          candidate: describe(o.c),
          reason:
            o.dExp > expTol
              ? `exposure ${expLabel(o.c.set.exposureSeconds!)}, lights ${expLabel(f0.exposureSeconds!)}`
              : o.dt > best.dt
                ? `temperature ${o.dt.toFixed(1)} °C away; ${describe(best.c)} is ${best.dt.toFixed(1)} °C away`
                : `dated ${o.c.set.date}, further from ${cal.darks}`,
        });
    const offset: LightOffset = { source: "dark", label: `dark ${mp.name} (holds the offset)` };
    assign(mp, offset);
    pushDark(frames, {
      kind: "dark",
      subject,
      chosen: mp.name,
      reason: `same exposure, ${best.dt.toFixed(1)} °C away (tolerance ${tempTol}), ${best.days === 0 ? `dated ${cal.darks}` : `${best.days} days from ${cal.darks}`}; the dark holds the offset`,
      rejected,
      offset,
    });
    return;
  }
  await offsetWithoutDark(p, c, bias, d, frames, { subject, rejected, usable, assign });
}

/** No dark of the lights' exposure: a scaled dark, the bias, a declared pedestal or the shortest dark as the offset — or none, explained. */
async function offsetWithoutDark(
  p: Planner,
  c: Candidates,
  bias: BiasChoice | undefined,
  d: DarkMatching,
  frames: LightFrame[],
  g: {
    subject: string;
    rejected: Decision["rejected"];
    usable: UsableDark[];
    assign: (dark: MasterPlan | undefined, offset: LightOffset) => void;
  },
): Promise<void> {
  const { problems, jobFile, opt, cal, tempTol } = p;
  const { darks, facts, useMaster, describe } = c;
  const { darkRateAt, readNoiseOf, pushDark } = d;
  const { subject, rejected, usable, assign } = g;
  const f0 = frames[0]!;
  const t = f0.exposureSeconds!;
  const rate = await darkRateAt(f0.temperatureC, usable.length ? usable.map((u) => u.c) : darks);
  const residual = (t0: number) => (rate ? rate.rate * Math.max(0, t - t0) : undefined);
  const residualText = (t0: number, rn: number | undefined) => {
    const r = residual(t0);
    if (r === undefined) return "dark current not measured (needs darks of two exposures, or a bias and a dark)";
    return `leaves ${r.toFixed(1)} ADU of dark signal (${rate!.rate.toPrecision(2)} ADU/s × ${expLabel(Math.max(0, t - t0))}, from ${rate!.from})${rn !== undefined ? `, read noise ${rn.toFixed(1)} ADU${r < rn ? " — negligible" : " — above the read noise: take darks of this exposure"}` : ""}`;
  };
  const withOffsetStats = (o: LightOffset, t0: number, rn: number | undefined): LightOffset => {
    const r = residual(t0);
    return {
      ...o,
      ...(r !== undefined ? { residualDarkAdu: Number(r.toFixed(3)) } : {}),
      ...(rate ? { darkRateAduPerS: Number(rate.rate.toPrecision(4)) } : {}),
      ...(rn !== undefined ? { readNoiseAdu: Number(rn.toFixed(3)) } : {}),
    };
  };
  const noExact = usable.length
    ? `no dark of ${expLabel(t)} (have ${[...new Set(usable.map((u) => expLabel(u.c.set.exposureSeconds!)))].join(", ")})`
    : "no darks asked for";
  for (const u of usable)
    rejected.push({ candidate: describe(u.c), reason: `exposure ${expLabel(u.c.set.exposureSeconds!)}, lights ${expLabel(t)}` });
  if (bias && usable.length && opt.dark_scaling !== false) {
    // Scaled: nearest exposure in ratio (scaling up a short dark multiplies its noise), ties to the longer.
    const pick = [...usable].sort(
      (a, b) =>
        Math.abs(Math.log(a.c.set.exposureSeconds! / t)) - Math.abs(Math.log(b.c.set.exposureSeconds! / t)) ||
        b.c.set.exposureSeconds! - a.c.set.exposureSeconds! ||
        a.dt - b.dt,
    )[0]!;
    const mp = useMaster(pick.c);
    const k = t / pick.c.set.exposureSeconds!;
    const offset: LightOffset = {
      ...withOffsetStats(
        { source: "scaled-dark", label: `bias ${bias.plan.name} + dark ${mp.name} scaled ×${k.toFixed(3)}` },
        t,
        await readNoiseOf(bias.candidate),
      ),
      residualDarkAdu: 0,
    };
    assign(mp, offset);
    pushDark(frames, {
      kind: "dark",
      subject,
      chosen: mp.name,
      reason: `${noExact}: bias + (dark − bias) × ${k.toFixed(3)} (${pick.dt.toFixed(1)} °C away)`,
      rejected: rejected.filter((r) => r.candidate !== describe(pick.c)),
      offset,
    });
    return;
  }
  if (bias) {
    const rn = await readNoiseOf(bias.candidate);
    const offset = withOffsetStats({ source: "bias", label: `bias ${bias.plan.name}` }, 0, rn);
    assign(undefined, offset);
    pushDark(frames, {
      kind: "offset",
      subject,
      chosen: bias.plan.name,
      reason: `${noExact}${opt.dark_scaling === false && usable.length ? " (dark_scaling: false)" : ""}: the bias removes the offset; ${residualText(0, rn)}`,
      rejected,
      offset,
    });
    return;
  }
  if (cal.offset !== undefined) {
    const offset = withOffsetStats(
      { source: "pedestal", label: `declared pedestal ${cal.offset} ADU`, pedestal: cal.offset },
      0,
      undefined,
    );
    assign(undefined, offset);
    pushDark(frames, {
      kind: "offset",
      subject,
      chosen: `pedestal ${cal.offset} ADU`,
      reason: `${noExact}: calibration.offset declares the pedestal; ${residualText(0, undefined)}`,
      rejected,
      offset,
    });
    return;
  }
  // The shortest dark at the lights' temperature as the offset (from the job's darks, else the library's).
  const pool = usable.length ? usable.map((u) => ({ c: u.c, dt: u.dt })) : [];
  if (!pool.length) {
    for (const c of darks) {
      const dt = f0.temperatureC === undefined ? 0 : Math.abs(c.set.temperatureC! - f0.temperatureC);
      if (f0.temperatureC !== undefined && dt > tempTol + 1e-9) continue;
      const fx = await facts(c);
      if (
        (f0.binning && fx.binning && fx.binning !== f0.binning) ||
        (f0.gain !== undefined && fx.gain !== undefined && fx.gain !== f0.gain)
      )
        continue;
      pool.push({ c, dt });
    }
  }
  const shortest = pool.sort(
    (a, b) => a.c.set.exposureSeconds! - b.c.set.exposureSeconds! || a.dt - b.dt || a.c.set.date.localeCompare(b.c.set.date),
  )[0];
  if (shortest) {
    const mp = useMaster(shortest.c);
    const t0 = shortest.c.set.exposureSeconds!;
    const rn = await readNoiseOf(shortest.c);
    const own = rate ? rate.rate * t0 : undefined;
    const offset = withOffsetStats({ source: "short-dark", label: `shortest dark ${mp.name} as the offset` }, t0, rn);
    assign(undefined, { ...offset, offsetMaster: mp.path });
    pushDark(frames, {
      kind: "offset",
      subject,
      chosen: mp.name,
      reason: `${noExact} and no bias: the shortest dark at the lights' temperature is the offset (its own dark signal ${own === undefined ? "not measured" : `${own.toFixed(2)} ADU${rn !== undefined ? ` vs read noise ${rn.toFixed(1)}` : ""}`})${cal.darks ? "" : ", taken from the library (set calibration.darks to choose a date)"}; ${residualText(t0, rn)}`,
      rejected,
      offset: { ...offset, offsetMaster: mp.path },
    });
    return;
  }
  const offset: LightOffset = { source: "none", label: "no offset source" };
  assign(undefined, offset);
  if (cal.flats) {
    problems.push({
      file: jobFile,
      field: "calibration",
      code: "TC_CALIBRATION_NO_OFFSET",
      message: `no offset source for ${subject}: with flats applied and the pedestal (bias level) left in, dividing by the flat inverts the vignetting and leaves dust donuts. Give one of: calibration.bias (a bias set), calibration.darks (darks of the lights' exposure, or any dark at their temperature — the shortest serves as the offset), or calibration.offset: <ADU> (the camera's pedestal)`,
    });
    pushDark(frames, { kind: "offset", subject, reason: "none: no dark, bias, pedestal or short dark", rejected, offset });
  } else {
    pushDark(frames, {
      kind: "offset",
      subject,
      reason:
        "none subtracted: no flats are applied, so the pedestal stays as a constant that normalisation and background extraction remove",
      rejected,
      offset,
    });
  }
}

/**
 * Flats: by filter and date reference, same binning; each with its offset: flat-darks (darks of the
 * flats' exposure, any date, nearest the flats' date first), else the bias, else a declared pedestal,
 * else the shortest dark at the flats' temperature.
 */
async function matchFlats(p: Planner, c: Candidates, bias: BiasChoice | undefined): Promise<Map<string, MasterPlan>> {
  const { plan, problems, jobFile, cal, tempTol, aliases } = p;
  const { all, darks, facts, useMaster, describe } = c;
  const flatOf = new Map<string, MasterPlan>();
  const flatOffset = async (c: Candidate): Promise<{ offset?: { path?: string; name: string; pedestal?: number }; reason: string }> => {
    const fx = await facts(c);
    const fits = async (d: Candidate) => {
      const dx = await facts(d);
      if (fx.binning && dx.binning && dx.binning !== fx.binning) return false;
      if (fx.gain !== undefined && dx.gain !== undefined && dx.gain !== fx.gain) return false;
      return (
        fx.temperatureC === undefined ||
        d.set.temperatureC === undefined ||
        Math.abs(d.set.temperatureC - fx.temperatureC) <= tempTol + 1e-9
      );
    };
    if (fx.exposureSeconds !== undefined) {
      const te = fx.exposureSeconds;
      const near: { d: Candidate; dExp: number; days: number }[] = [];
      for (const d of darks) {
        const dExp = Math.abs(d.set.exposureSeconds! - te);
        if (dExp <= Math.max(0.05, 0.1 * te) && (await fits(d))) near.push({ d, dExp, days: daysBetween(d.set.date, c.set.date) });
      }
      near.sort((a, b) => a.dExp - b.dExp || a.days - b.days || a.d.set.date.localeCompare(b.d.set.date));
      if (near[0]) {
        const mp = useMaster(near[0].d);
        return { offset: { path: mp.path, name: mp.name }, reason: `flat-darks ${mp.name} (the flats' ${expLabel(te)})` };
      }
    }
    if (bias)
      return {
        offset: { path: bias.plan.path, name: bias.plan.name },
        reason: `bias ${bias.plan.name} (no darks of the flats' exposure${fx.exposureSeconds !== undefined ? ` ${expLabel(fx.exposureSeconds)}` : ""})`,
      };
    if (cal.offset !== undefined)
      return { offset: { name: `pedestal ${cal.offset} ADU`, pedestal: cal.offset }, reason: `declared pedestal ${cal.offset} ADU` };
    const short: Candidate[] = [];
    for (const d of darks) if (await fits(d)) short.push(d);
    short.sort(
      (a, b) =>
        a.set.exposureSeconds! - b.set.exposureSeconds! || daysBetween(a.set.date, c.set.date) - daysBetween(b.set.date, c.set.date),
    );
    if (short[0]) {
      const mp = useMaster(short[0]);
      return { offset: { path: mp.path, name: mp.name }, reason: `shortest dark ${mp.name} as the offset (no flat-darks, no bias)` };
    }
    return { reason: "none" };
  };
  if (cal.flats) {
    for (const filter of [...new Set(plan.lights.map((f) => f.filterKey))].sort()) {
      const ref = plan.lights.find((f) => f.filterKey === filter)!;
      const rejected: Decision["rejected"] = [];
      const ok: { c: Candidate; days: number }[] = [];
      for (const c of all.filter((x) => x.set.kind === "flat")) {
        const ff = normalizeFilter(c.set.filter!, aliases);
        if (ff !== filter) {
          rejected.push({ candidate: describe(c), reason: `filter ${ff}, lights ${filter}` });
          continue;
        }
        const fx = await facts(c);
        if (ref.binning && fx.binning && fx.binning !== ref.binning) {
          rejected.push({ candidate: describe(c), reason: `binning ${fx.binning}, lights ${ref.binning}` });
          continue;
        }
        if (fx.width !== undefined && (fx.width !== ref.width || fx.height !== ref.height)) {
          rejected.push({ candidate: describe(c), reason: `size ${fx.width}×${fx.height}, lights ${ref.width}×${ref.height}` });
          continue;
        }
        if (ref.bayerPattern && fx.bayerPattern && fx.bayerPattern !== ref.bayerPattern) {
          rejected.push({ candidate: describe(c), reason: `Bayer pattern ${fx.bayerPattern}, lights ${ref.bayerPattern}` });
          continue;
        }
        ok.push({ c, days: daysBetween(c.set.date, cal.flats) });
      }
      ok.sort((a, b) => a.days - b.days || a.c.set.date.localeCompare(b.c.set.date));
      const best = ok.find((o) => o.days === 0);
      for (const o of ok)
        if (o !== best) rejected.push({ candidate: describe(o.c), reason: `dated ${o.c.set.date}, the job asks for ${cal.flats}` });
      if (best) {
        const off = await flatOffset(best.c);
        const mp = useMaster(best.c, off.offset);
        flatOf.set(filter, mp);
        if (!off.offset)
          problems.push({
            file: jobFile,
            field: "calibration",
            code: "TC_CALIBRATION_NO_OFFSET",
            message: `no offset source for the ${filter} flats (${describe(best.c)}): a flat built with its pedestal in it is wrong by the pedestal's share of every pixel, and the lights divided by it show inverted vignetting. Add flat-darks (darks of the flats' exposure in calibration/raw/darks/<date>_<temp>C/<exposure>/), calibration.bias, or calibration.offset: <ADU>`,
          });
        plan.decisions.push({
          kind: "flat",
          subject: `filter ${filter}`,
          chosen: mp.name,
          reason: `filter ${filter} dated ${cal.flats}; offset: ${off.reason}`,
          rejected,
          ...(off.offset
            ? {
                offset: {
                  source:
                    off.offset.pedestal !== undefined
                      ? "pedestal"
                      : off.reason.startsWith("flat-darks")
                        ? "dark"
                        : off.reason.startsWith("bias")
                          ? "bias"
                          : "short-dark",
                  label: off.reason,
                },
              }
            : {}),
        });
      } else {
        const other = rejected.filter((r) => r.reason.startsWith("filter")).map((r) => r.candidate);
        problems.push({
          file: jobFile,
          field: "calibration.flats",
          message: `no flat for filter ${filter} dated ${cal.flats}${other.length ? ` (only ${other.join(", ")})` : ""}`,
        });
        plan.decisions.push({ kind: "flat", subject: `filter ${filter}`, reason: "none found", rejected });
      }
    }
  }
  return flatOf;
}

/** The masters in order, and per (filter, exposure) group each light with the masters and offset it gets. */
function assembleGroups(
  p: Planner,
  groups: Map<string, LightFrame[]>,
  bias: BiasChoice | undefined,
  d: DarkMatching,
  flatOf: Map<string, MasterPlan>,
): void {
  const { plan } = p;
  const { darkOf, offsetOf } = d;
  plan.masters.sort(
    (a, b) => ["bias", "dark", "flat"].indexOf(a.kind) - ["bias", "dark", "flat"].indexOf(b.kind) || a.name.localeCompare(b.name),
  );
  for (const frames of groups.values()) {
    const f0 = frames[0]!;
    plan.groups.push({
      filter: f0.filterKey,
      exposureSeconds: f0.exposureSeconds!,
      frames: frames.map((frame) => {
        const off = offsetOf.get(frame);
        const offsetMaster = off?.source === "bias" || off?.source === "scaled-dark" ? bias?.plan.path : off?.offsetMaster;
        return {
          frame,
          ...(darkOf.get(frame) ? { dark: darkOf.get(frame)!.path } : {}),
          ...(offsetMaster ? { bias: offsetMaster } : {}),
          ...(off?.pedestal !== undefined ? { pedestal: off.pedestal } : {}),
          ...(off?.source === "scaled-dark" ? { darkScaling: true } : {}),
          ...(off ? { offset: off.source } : {}),
          ...(flatOf.get(frame.filterKey) ? { flat: flatOf.get(frame.filterKey)!.path } : {}),
        };
      }),
    });
  }
  plan.groups.sort((a, b) => a.filter.localeCompare(b.filter) || b.exposureSeconds - a.exposureSeconds);
}

/** A calibrated light's file name: the raw name with a `.fit` extension. */
export function calibratedName(path: string): string {
  return basename(path).replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, ".fit");
}

/** A folder path as one portable name: separators to `_`, anything not ASCII-safe transliterated or `_`. */
export function folderTag(rel: string): string {
  return (
    rel
      .normalize("NFKD")
      .replace(/[\u0300-\u036f]/g, "")
      .replace(/[\\/]+/g, "_")
      .replace(/[^A-Za-z0-9._+-]/g, "_") || "_"
  );
}

/**
 * The recipe and input hashes recorded in a master's header (undefined fields when absent), and
 * `unreadable` when the header is not valid FITS text (a non-ASCII byte, no END card): such a master is
 * stale and rebuilt, never "up to date".
 */
export function masterStamp(path: string): { inputHash?: string; recipeHash?: string; unreadable?: string } {
  try {
    // Headers are small; the first 64 KiB hold ours.
    const buf = Buffer.alloc(65536);
    const h = openSync(path, "r");
    const n = readSync(h, buf, 0, buf.length, 0);
    closeSync(h);
    const fd = buf.toString("latin1", 0, n);
    let end = -1;
    for (let i = 0; i + 80 <= fd.length; i += 80)
      if (fd.startsWith("END     ", i) || fd.slice(i, i + 80).trimEnd() === "END") {
        end = i;
        break;
      }
    if (!fd.startsWith("SIMPLE  =") || end < 0) return { unreadable: "its header is not a FITS header (no SIMPLE or END card)" };
    const bad = /[^\x20-\x7e]/.exec(fd.slice(0, end));
    if (bad) return { unreadable: `its header holds a non-ASCII byte (0x${bad[0].charCodeAt(0).toString(16)}) at offset ${bad.index}` };
    const card = (key: string) => {
      for (let i = 0; i < end; i += 80) {
        const c = fd.slice(i, i + 80);
        if (c.startsWith(key.padEnd(8, " ") + "=")) return /'([^']*)'/.exec(c)?.[1]?.trim();
      }
      return undefined;
    };
    const inputHash = card("TCINHASH"),
      recipeHash = card("TCRECIPE");
    return { ...(inputHash ? { inputHash } : {}), ...(recipeHash ? { recipeHash } : {}) };
  } catch (e) {
    return { unreadable: (e as Error).message };
  }
}
