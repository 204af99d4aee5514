/**
 * What a frame is, from its header (and, where the header is silent, its file and folder names): type,
 * target, filter, exposure, sensor temperature, gain, binning, size, date, Bayer pattern.
 *
 * Capture programs and observatories disagree on keywords and on how they write values; the dialects
 * are one table below (`HEADER_DIALECT`), read in order, first usable value wins. Whenever a value does
 * not come from the standard keyword (IMAGETYP, FILTER, EXPTIME, CCD-TEMP, DATE-OBS) the frame records
 * where it came from (`sources`), and every lenient reading or placeholder is a `note` — `scan`, `validate`
 * and run.json show them, so a user can tell "filter B from INSFLNAM" from a guess.
 */
import type { FitsHeader } from "@tile-compile/fits";
import type { FitsHeaderSummary } from "@tile-compile/fits";

export type FrameType = "light" | "dark" | "bias" | "flat" | "darkflat" | "unknown";

/** The fields whose origin is recorded when it is not the standard keyword. */
export type SourcedField = "type" | "filter" | "exposureSeconds" | "temperatureC" | "dateObs";

export interface FrameInfo {
  path: string;
  type: FrameType;
  object?: string;
  filter?: string;
  exposureSeconds?: number;
  temperatureC?: number;
  gain?: number;
  /** `XxY`, e.g. `1x1`. */
  binning?: string;
  width: number;
  height: number;
  channels: number;
  bitpix: number;
  /** DATE-OBS in UTC, ISO 8601 without a zone suffix (a written zone is converted). */
  dateObs?: string;
  /** CFA pattern (RGGB, GRBG, GBRG, BGGR) for one-shot-colour frames. */
  bayerPattern?: string;
  compressed: boolean;
  /** Where a value came from when not from the standard keyword, e.g. `{ filter: "INSFLNAM" }`, `{ type: "folder Dark_30s" }`. */
  sources?: Partial<Record<SourcedField, string>>;
  /** Lenient readings, placeholders and unknowns, each a sentence (e.g. "temperature: CCDTEMP = -99 is a placeholder, read as unknown"). */
  notes?: string[];
}

/**
 * The dialect table: for each field, the keywords tried in order. The first is the standard one (a value
 * read from it records no source). Kept as data so a new capture program is one line here and one test.
 */
export const HEADER_DIALECT = {
  /** IMAGETYP: most programs; FRAME: N.I.N.A./SGP variants; OBSTYPE: IRAF/NOAO; CAHA's own hierarchical card. */
  type: ["IMAGETYP", "FRAME", "FRAMETYP", "IMAGETYPE", "OBSTYPE", "CAHA DET EXP TYPE"],
  /** INSFLNAM: Calar Alto CAFOS; FILTER1/FILTER2: two-wheel instruments (an open/clear position is skipped). */
  filter: ["FILTER", "FILTNAME", "FILTER1", "FILTER2", "INSFLNAM", "FILTERID"],
  /** EXPOINUS: ZWO ASIImg, in microseconds. */
  exposure: ["EXPTIME", "EXPOSURE", "EXP_TIME", "EXPOINUS"],
  /** CCDTEMP: CAFOS (and others), often a placeholder. */
  temperature: ["CCD-TEMP", "CCD_TEMP", "CCDTEMP", "SENSOR-TEMP", "TEMPERAT", "DET-TEMP", "DETTEMP"],
  object: ["OBJECT", "OBJNAME"],
  gain: ["GAIN", "EGAIN_SETTING", "CCDGAIN"],
  binX: ["XBINNING", "BINX", "CCDXBIN", "CCDBINX"],
  binY: ["YBINNING", "BINY", "CCDYBIN", "CCDBINY"],
  date: ["DATE-OBS", "DATE_OBS", "DATE-STA"],
  /** Time of day when DATE-OBS holds only the date (older observatory headers). */
  time: ["TIME-OBS", "UT", "UTSTART", "UT-START"],
  bayer: ["BAYERPAT", "COLORTYP", "CFA-PAT"],
} as const;

/** Filter-wheel positions that mean "no filter in this wheel" (skipped when another wheel names one). */
const EMPTY_FILTER = /^(open|none|empty|free|no filter|nofilter|-+|n\/a)$/i;

/**
 * A frame-type word → frame type. Accepts the spellings met in the wild, in any case: `Light Frame`,
 * `science`, `object`, `zero`, `offset`, `Dark Frame`, `dark flat`, `FlatDark`, `sky flat`, `domeflat`…
 */
export function frameTypeOf(value: string | undefined): FrameType {
  if (!value) return "unknown";
  const v = value.toLowerCase().replace(/[_-]/g, " ").trim();
  if (/dark\s*flat|flat\s*dark/.test(v)) return "darkflat";
  if (/\b(bias|biases|offset|offsets|zero)\b/.test(v)) return "bias";
  if (/dark/.test(v)) return "dark";
  if (/flat/.test(v)) return "flat";
  if (/\b(light|lights|object|science|target|sky)\b/.test(v) || /light/.test(v)) return "light";
  return "unknown";
}

/**
 * The frame type a path's names say (file name first, then up to three folders), by whole words only:
 * `Bias/…`, `Dark/Dark_30s/…`, `flat_001.fit`, `DarkFlats/…`. Undefined when no name says it.
 */
export function frameTypeFromPath(path: string): { type: FrameType; from: string } | undefined {
  const parts = path.split(/[\\/]/).filter(Boolean);
  const names = parts.slice(-4).reverse();
  for (const [i, name] of names.entries()) {
    const stem = i === 0 ? name.replace(/\.(fits?|fts)(\.fz|\.gz)?$/i, "") : name;
    const words = stem
      .toLowerCase()
      .split(/[^a-z]+/)
      .filter(Boolean);
    const has = (...w: string[]) => words.some((x) => w.includes(x));
    let type: FrameType | undefined;
    if (has("darkflat", "darkflats", "flatdark", "flatdarks") || (has("dark", "darks") && has("flat", "flats"))) type = "darkflat";
    else if (has("bias", "biases", "offset", "offsets", "zero", "zeros")) type = "bias";
    else if (has("dark", "darks")) type = "dark";
    else if (has("flat", "flats", "skyflat", "skyflats", "domeflat", "domeflats")) type = "flat";
    else if (has("light", "lights", "science")) type = "light";
    if (type) return { type, from: i === 0 ? "file name" : `folder ${name}` };
  }
  return undefined;
}

/** A DATE-OBS value in UTC without a zone suffix; `+01:00`/`Z` converted, a date alone completed with `time`. */
export function utcDate(value: string, time?: string): { iso: string; note?: string } | undefined {
  const v = value.trim();
  const full = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|UTC|[+-]\d{2}:?\d{2})?$/i.exec(v);
  if (full) {
    const [, d, t, zone] = full;
    if (!zone || /^(Z|UTC)$/i.test(zone))
      return { iso: `${d}T${t}`, ...(zone ? { note: `DATE-OBS zone suffix ${zone} dropped (UTC)` } : {}) };
    const ms = Date.parse(`${d}T${t!.length === 5 ? `${t}:00` : t}${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`);
    if (!Number.isFinite(ms)) return undefined;
    const frac = /\.(\d+)$/.exec(t!)?.[1];
    const iso = new Date(ms).toISOString().slice(0, 19) + (frac ? `.${frac}` : "");
    return { iso, note: `DATE-OBS written with zone ${zone}, converted to UTC` };
  }
  if (/^\d{4}-\d{2}-\d{2}$/.test(v)) {
    if (time && /^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(time.trim()))
      return { iso: `${v}T${time.trim()}`, note: `DATE-OBS holds the date only; time of day from the time keyword` };
    return { iso: v };
  }
  // Old FITS form DD/MM/YY is ambiguous and rare in amateur data: left as written.
  return { iso: v };
}

function firstNumber(h: FitsHeader, keys: readonly string[]): { value: number; key: string } | undefined {
  for (const k of keys) {
    const v = h.getNumber(k);
    if (v !== undefined && Number.isFinite(v)) return { value: v, key: k };
  }
  return undefined;
}

function firstString(h: FitsHeader, keys: readonly string[], skip?: RegExp): { value: string; key: string } | undefined {
  for (const k of keys) {
    const v = h.getString(k);
    if (v && !(skip && skip.test(v))) return { value: v, key: k };
  }
  return undefined;
}

/** Whether the header shows a regulated cooler (a set point or cooler power/state keyword). */
function hasCooler(h: FitsHeader): boolean {
  return ["SET-TEMP", "SET_TEMP", "SETTEMP", "COOLPOWR", "COOLERON", "COOLER", "CCD-COOL"].some((k) => h.has(k));
}

/**
 * A sensor temperature, or why not: −99 / −999 (and anything below −100 °C) are placeholders, 0 °C with
 * no cooler keyword is a placeholder of uncooled cameras' drivers, values above 150 are Kelvin.
 */
export function sensorTemperature(h: FitsHeader): { value?: number; key?: string; note?: string } {
  const t = firstNumber(h, HEADER_DIALECT.temperature);
  if (!t) return {};
  const { value, key } = t;
  if (value <= -99 && value >= -99.5) return { note: `${key} = ${value} is a placeholder (no sensor reading): temperature unknown` };
  if (value <= -100) return { note: `${key} = ${value} is not a sensor temperature (placeholder): temperature unknown` };
  if (value > 150 && value < 400)
    return {
      value: Number((value - 273.15).toFixed(2)),
      key,
      note: `${key} = ${value} read as Kelvin (${(value - 273.15).toFixed(1)} °C)`,
    };
  if (value >= 400) return { note: `${key} = ${value} is not a plausible temperature: unknown` };
  if (value === 0 && !hasCooler(h)) return { note: `${key} = 0 with no cooler keyword is a driver placeholder: temperature unknown` };
  return { value, key };
}

export function frameInfoFromHeader(summary: FitsHeaderSummary): FrameInfo {
  const h = summary.header;
  const sources: Partial<Record<SourcedField, string>> = {};
  const notes: string[] = [];
  const info: FrameInfo = {
    path: summary.path,
    type: "unknown",
    width: summary.width,
    height: summary.height,
    channels: summary.channels,
    bitpix: summary.bitpix,
    compressed: summary.compressed,
  };
  // Type: the keyword, then the names.
  const typeCard = firstString(h, HEADER_DIALECT.type);
  if (typeCard) {
    info.type = frameTypeOf(typeCard.value);
    if (typeCard.key !== "IMAGETYP") sources.type = typeCard.key;
  }
  if (info.type === "unknown") {
    const byName = frameTypeFromPath(summary.path);
    if (byName) {
      info.type = byName.type;
      sources.type = byName.from;
      if (typeCard) notes.push(`type: ${typeCard.key} = '${typeCard.value}' is not a frame type; ${byName.type} from the ${byName.from}`);
    } else {
      notes.push(
        typeCard
          ? `type unknown: ${typeCard.key} = '${typeCard.value}' is not a frame type and no file or folder name says one`
          : `type unknown: no ${HEADER_DIALECT.type.slice(0, 5).join("/")} keyword and no file or folder name says one (bias, dark, flat, light)`,
      );
    }
  }
  const object = firstString(h, HEADER_DIALECT.object);
  if (object) info.object = object.value;
  const filter = firstString(h, HEADER_DIALECT.filter, EMPTY_FILTER);
  if (filter) {
    info.filter = filter.value;
    if (filter.key !== "FILTER") sources.filter = filter.key;
  }
  const exp = firstNumber(h, HEADER_DIALECT.exposure);
  if (exp) {
    info.exposureSeconds = exp.key === "EXPOINUS" ? exp.value / 1e6 : exp.value;
    if (exp.key !== "EXPTIME") sources.exposureSeconds = exp.key === "EXPOINUS" ? "EXPOINUS (µs)" : exp.key;
  }
  const temp = sensorTemperature(h);
  if (temp.value !== undefined) {
    info.temperatureC = temp.value;
    if (temp.key !== "CCD-TEMP") sources.temperatureC = temp.key!;
  }
  if (temp.note) notes.push(`temperature: ${temp.note}`);
  const gain = firstNumber(h, HEADER_DIALECT.gain);
  if (gain) info.gain = gain.value;
  const xb = firstNumber(h, HEADER_DIALECT.binX)?.value;
  const yb = firstNumber(h, HEADER_DIALECT.binY)?.value;
  if (xb !== undefined || yb !== undefined) info.binning = `${xb ?? yb}x${yb ?? xb}`;
  const date = firstString(h, HEADER_DIALECT.date);
  if (date) {
    const u = utcDate(date.value, firstString(h, HEADER_DIALECT.time)?.value);
    if (u) {
      info.dateObs = u.iso;
      if (u.note) notes.push(`date: ${u.note}`);
    }
    if (date.key !== "DATE-OBS") sources.dateObs = date.key;
  }
  const bayer = firstString(h, HEADER_DIALECT.bayer);
  if (bayer && /^[RGB]{4}$/i.test(bayer.value)) info.bayerPattern = bayer.value.toUpperCase();
  const repaired = h.cards.filter((c) => c.repaired);
  if (repaired.length)
    notes.push(
      `${repaired.map((c) => c.key).join(", ")}: ${[...new Set(repaired.map((c) => c.repaired!.replace(/ \(.*/, "")))].join(", ")} (not valid FITS), read leniently`,
    );
  if (Object.keys(sources).length) info.sources = sources;
  if (notes.length) info.notes = notes;
  return info;
}

/** "filter B from INSFLNAM, type dark from folder Dark_30s": the non-standard origins of a frame's values. */
export function describeSources(
  f: Pick<FrameInfo, "sources" | "type" | "filter" | "exposureSeconds" | "temperatureC" | "dateObs">,
): string[] {
  const out: string[] = [];
  const s = f.sources ?? {};
  if (s.type) out.push(`type ${f.type} from ${s.type}`);
  if (s.filter) out.push(`filter ${f.filter} from ${s.filter}`);
  if (s.exposureSeconds) out.push(`exposure ${f.exposureSeconds} s from ${s.exposureSeconds}`);
  if (s.temperatureC) out.push(`temperature ${f.temperatureC} °C from ${s.temperatureC}`);
  if (s.dateObs) out.push(`date from ${s.dateObs}`);
  return out;
}
