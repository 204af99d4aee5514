/**
 * HDU structure: reading one header from a byte offset, checking its structural keywords, and working
 * out where its data starts and ends. Nothing here reads pixel data.
 */
import { FitsError } from "@tile-compile/errors";
import { BITPIX_VALUES, type Bitpix } from "./decode.js";
import { BLOCK, FitsHeader, HeaderSyntaxError } from "./header.js";
import type { FileSource } from "./source.js";

export type HduKind = "primary" | "image" | "bintable" | "table" | "compressed-image" | "other";

export interface HduInfo {
  index: number;
  kind: HduKind;
  header: FitsHeader;
  headerOffset: number;
  dataOffset: number;
  /** Bytes of data, without padding to the next 2880-byte block. */
  dataBytes: number;
  bitpix: Bitpix;
  /** NAXISn values, NAXIS1 first. */
  axes: number[];
}

/** Largest header we accept (10,000 blocks, ~28 MB); beyond that the file is not a sane FITS header. */
const MAX_HEADER_BLOCKS = 10_000;

function invalid(file: string, reason: string, field?: string): FitsError {
  return new FitsError("TC_FITS_INVALID", field ? { file, reason, field } : { file, reason });
}

/** Read the header that starts at `offset` (block-aligned); returns it with the offset where data begins. */
export async function readHeaderAt(src: FileSource, offset: number, primary: boolean): Promise<{ header: FitsHeader; dataOffset: number }> {
  const parts: string[] = [];
  let pos = offset;
  for (let n = 0; ; n++) {
    if (pos + BLOCK > src.size) {
      if (n === 0 && primary)
        throw invalid(
          src.path,
          src.size === 0 ? "the file is empty" : `the file is ${src.size} bytes, shorter than one 2880-byte FITS block`,
        );
      throw invalid(
        src.path,
        n === 0 ? "truncated before the next header" : "the header has no END card (truncated or damaged file)",
        "END",
      );
    }
    if (n >= MAX_HEADER_BLOCKS) throw invalid(src.path, "the header has no END card within 10,000 blocks", "END");
    const block = await src.read(pos, BLOCK);
    pos += BLOCK;
    if (n === 0 && primary && block.toString("latin1", 0, 9) !== "SIMPLE  =") {
      throw invalid(src.path, "not a FITS file: it does not start with SIMPLE =", "SIMPLE");
    }
    for (let i = 0; i < BLOCK; i++) {
      const c = block[i]!;
      if (c < 32 || c > 126)
        throw invalid(src.path, `the header holds a non-ASCII byte (0x${c.toString(16)}) at offset ${pos - BLOCK + i}`, undefined);
    }
    const text = block.toString("latin1");
    parts.push(text);
    for (let c = 0; c < BLOCK; c += 80) {
      if (text.startsWith("END", c) && text.slice(c + 3, c + 80).trim() === "") {
        try {
          return { header: FitsHeader.parse(parts.join("")), dataOffset: pos };
        } catch (e) {
          if (e instanceof HeaderSyntaxError) throw invalid(src.path, e.message, e.field);
          throw e;
        }
      }
    }
  }
}

function intKey(file: string, h: FitsHeader, key: string, min: number, max: number, fallback?: number): number {
  const v = h.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (v === undefined) throw invalid(file, `required keyword ${key} is missing`, key);
  if (typeof v !== "number" || !Number.isInteger(v))
    throw invalid(file, `${key} must be an integer, found ${JSON.stringify(typeof v === "bigint" ? v.toString() : v)}`, key);
  if (v < min || v > max) throw invalid(file, `${key} = ${v} is out of range [${min}, ${max}]`, key);
  return v;
}

/** Describe an HDU from its header; checks that the file holds all the data it declares. */
export function describeHdu(src: FileSource, index: number, header: FitsHeader, headerOffset: number, dataOffset: number): HduInfo {
  const file = src.path;
  const bitpixRaw = intKey(file, header, "BITPIX", -64, 64);
  if (!BITPIX_VALUES.includes(bitpixRaw as Bitpix))
    throw invalid(file, `BITPIX = ${bitpixRaw} is not one of 8, 16, 32, 64, -32, -64`, "BITPIX");
  const bitpix = bitpixRaw as Bitpix;
  const naxis = intKey(file, header, "NAXIS", 0, 999);
  const axes: number[] = [];
  for (let i = 1; i <= naxis; i++) axes.push(intKey(file, header, `NAXIS${i}`, 0, Number.MAX_SAFE_INTEGER));
  let kind: HduKind;
  let pcount = 0;
  let gcount = 1;
  if (index === 0) {
    kind = "primary";
    if (naxis > 0 && axes[0] === 0 && header.getBoolean("GROUPS")) {
      pcount = intKey(file, header, "PCOUNT", 0, Number.MAX_SAFE_INTEGER, 0);
      gcount = intKey(file, header, "GCOUNT", 0, Number.MAX_SAFE_INTEGER, 1);
    }
  } else {
    const xt = header.getString("XTENSION");
    if (xt === undefined) throw invalid(file, `extension ${index} has no XTENSION keyword`, "XTENSION");
    pcount = intKey(file, header, "PCOUNT", 0, Number.MAX_SAFE_INTEGER, 0);
    gcount = intKey(file, header, "GCOUNT", 0, Number.MAX_SAFE_INTEGER, 1);
    if (xt === "IMAGE") kind = "image";
    else if (xt === "BINTABLE") kind = header.getBoolean("ZIMAGE") === true ? "compressed-image" : "bintable";
    else if (xt === "TABLE") kind = "table";
    else kind = "other";
  }
  let elements = naxis === 0 ? 0 : 1;
  // Random groups (NAXIS1 = 0, GROUPS = T): the group axes start at NAXIS2.
  const groupAxes = kind === "primary" && axes[0] === 0 && header.getBoolean("GROUPS") === true ? axes.slice(1) : axes;
  for (const a of groupAxes) elements *= a;
  const dataBytes = naxis === 0 ? 0 : (Math.abs(bitpix) / 8) * gcount * (pcount + elements);
  if (!Number.isSafeInteger(dataBytes)) throw invalid(file, `the NAXISn values declare an impossible data size`, "NAXIS");
  if (dataOffset + dataBytes > src.size) {
    throw new FitsError("TC_FITS_TRUNCATED", {
      file,
      expected: dataOffset + dataBytes,
      actual: src.size,
      field: `NAXIS${naxis > 0 ? `1..${naxis}` : ""}${index > 0 ? ` of HDU ${index}` : ""}`,
    });
  }
  return { index, kind, header, headerOffset, dataOffset, dataBytes, bitpix, axes };
}

/** Byte offset of the next HDU after this one. */
export function nextHduOffset(h: HduInfo): number {
  return h.dataOffset + Math.ceil(h.dataBytes / BLOCK) * BLOCK;
}
