/**
 * What a frame is, from its header alone: type, target, filter, exposure, sensor temperature, gain,
 * binning, size, date, Bayer pattern. Capture programs disagree on keywords; the aliases are here.
 */
import type { FitsHeader } from "../fits/header.js";
import type { FitsHeaderSummary } from "../fits/reader.js";

export type FrameType = "light" | "dark" | "bias" | "flat" | "darkflat" | "unknown";

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
  /** DATE-OBS as written (ISO 8601, UTC by FITS convention). */
  dateObs?: string;
  /** CFA pattern (RGGB, GRBG, GBRG, BGGR) for one-shot-colour frames. */
  bayerPattern?: string;
  compressed: boolean;
}

/** IMAGETYP / FRAME values → frame type. Covers N.I.N.A., SharpCap, APT, ASIAIR, Seestar, MaxIm, Siril. */
export function frameTypeOf(value: string | undefined): FrameType {
  if (!value) return "unknown";
  const v = value.toLowerCase().replace(/[_-]/g, " ").trim();
  if (/(dark\s*flat|flat\s*dark)/.test(v)) return "darkflat";
  if (/\b(bias|offset|zero)\b/.test(v)) return "bias";
  if (/\bdark\b/.test(v)) return "dark";
  if (/\bflat\b/.test(v)) return "flat";
  if (/\b(light|object|science)\b/.test(v)) return "light";
  return "unknown";
}

function firstNumber(h: FitsHeader, keys: string[]): number | undefined {
  for (const k of keys) {
    const v = h.getNumber(k);
    if (v !== undefined && Number.isFinite(v)) return v;
  }
  return undefined;
}

function firstString(h: FitsHeader, keys: string[]): string | undefined {
  for (const k of keys) {
    const v = h.getString(k);
    if (v) return v;
  }
  return undefined;
}

export function frameInfoFromHeader(summary: FitsHeaderSummary): FrameInfo {
  const h = summary.header;
  const info: FrameInfo = {
    path: summary.path,
    type: frameTypeOf(firstString(h, ["IMAGETYP", "FRAME", "FRAMETYP"])),
    width: summary.width,
    height: summary.height,
    channels: summary.channels,
    bitpix: summary.bitpix,
    compressed: summary.compressed,
  };
  const object = firstString(h, ["OBJECT", "OBJNAME"]);
  if (object) info.object = object;
  const filter = firstString(h, ["FILTER", "FILTER1", "FILTNAME"]);
  if (filter) info.filter = filter;
  const exp = firstNumber(h, ["EXPTIME", "EXPOSURE", "EXP_TIME"]);
  if (exp !== undefined) info.exposureSeconds = exp;
  const temp = firstNumber(h, ["CCD-TEMP", "CCD_TEMP", "SENSOR-TEMP", "TEMPERAT", "DET-TEMP"]);
  if (temp !== undefined) info.temperatureC = temp;
  const gain = firstNumber(h, ["GAIN", "EGAIN_SETTING"]);
  if (gain !== undefined) info.gain = gain;
  const xb = firstNumber(h, ["XBINNING", "BINX", "CCDXBIN"]);
  const yb = firstNumber(h, ["YBINNING", "BINY", "CCDYBIN"]);
  if (xb !== undefined || yb !== undefined) info.binning = `${xb ?? yb}x${yb ?? xb}`;
  const date = firstString(h, ["DATE-OBS", "DATE_OBS"]);
  if (date) info.dateObs = date;
  const bayer = firstString(h, ["BAYERPAT", "COLORTYP", "CFA-PAT"]);
  if (bayer && /^[RGB]{4}$/i.test(bayer)) info.bayerPattern = bayer.toUpperCase();
  return info;
}
