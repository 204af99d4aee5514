/**
 * Tile-compressed images (FITS Standard 4.0 §10, the `fpack` convention): the image is cut into tiles
 * (ZTILEn, by default one row each); each tile is one row of a BINTABLE whose COMPRESSED_DATA column
 * points into the heap. We decode RICE_1, GZIP_1, GZIP_2 and NOCOMPRESS tiles, uncompressed fallback
 * tiles (UNCOMPRESSED_DATA / GZIP_COMPRESSED_DATA), and quantized floating-point images with
 * NO_DITHER, SUBTRACTIVE_DITHER_1 and SUBTRACTIVE_DITHER_2 (ZSCALE/ZZERO per tile, ZBLANK).
 * PLIO_1 and HCOMPRESS_1 are reported as unsupported.
 */
import { gunzipSync, inflateSync } from "node:zlib";
import { FitsError } from "@tile-compile/errors";
import { BITPIX_VALUES, type Bitpix } from "./decode.js";
import type { FitsHeader } from "./header.js";
import type { HduInfo } from "./hdu.js";
import { riceDecode } from "./rice.js";
import type { FileSource } from "./source.js";

interface Column {
  name: string;
  offset: number;
  /** Type letter: L X B I J K A E D C M P Q. */
  type: string;
  repeat: number;
  /** For P/Q descriptors, the element type of the array. */
  arrayType?: string;
}

const TYPE_BYTES: Record<string, number> = { L: 1, B: 1, I: 2, J: 4, K: 8, A: 1, E: 4, D: 8, C: 8, M: 16, P: 8, Q: 16 };

export interface CompressedLayout {
  zbitpix: Bitpix;
  axes: number[];
  tile: number[];
  cmptype: string;
  quantize: "NO_DITHER" | "SUBTRACTIVE_DITHER_1" | "SUBTRACTIVE_DITHER_2" | "NONE";
  zdither0: number;
  blockSize: number;
  bytepix: 1 | 2 | 4 | 8;
  zblank?: number;
}

function bad(file: string, reason: string, field?: string): FitsError {
  return new FitsError("TC_FITS_INVALID", field ? { file, reason, field } : { file, reason });
}

function parseColumns(file: string, h: FitsHeader): Column[] {
  const n = h.getNumber("TFIELDS") ?? 0;
  const cols: Column[] = [];
  let offset = 0;
  for (let i = 1; i <= n; i++) {
    const form = h.getString(`TFORM${i}`);
    if (!form) throw bad(file, `TFORM${i} is missing`, `TFORM${i}`);
    const m = /^(\d*)([LXBIJKAEDCMPQ])([LXBIJKAEDCM]?)(?:\((\d+)\))?$/.exec(form.trim());
    if (!m) throw bad(file, `TFORM${i} = '${form}' is not a valid binary table format`, `TFORM${i}`);
    const repeat = m[1] === "" ? 1 : Number(m[1]);
    const type = m[2]!;
    const width = type === "X" ? Math.ceil(repeat / 8) : repeat * TYPE_BYTES[type]!;
    const col: Column = { name: (h.getString(`TTYPE${i}`) ?? "").toUpperCase(), offset, type, repeat };
    if (m[3]) col.arrayType = m[3];
    cols.push(col);
    offset += width;
  }
  return cols;
}

export function compressedLayout(src: FileSource, hdu: HduInfo): CompressedLayout {
  const h = hdu.header;
  const file = src.path;
  const zb = h.getNumber("ZBITPIX");
  if (zb === undefined || !BITPIX_VALUES.includes(zb as Bitpix)) throw bad(file, `ZBITPIX is missing or invalid`, "ZBITPIX");
  const zn = h.getNumber("ZNAXIS");
  if (zn === undefined || !Number.isInteger(zn) || zn < 1 || zn > 3) throw bad(file, `ZNAXIS must be 1, 2 or 3`, "ZNAXIS");
  const axes: number[] = [];
  const tile: number[] = [];
  for (let i = 1; i <= zn; i++) {
    const a = h.getNumber(`ZNAXIS${i}`);
    if (a === undefined || !Number.isInteger(a) || a < 0) throw bad(file, `ZNAXIS${i} is missing or invalid`, `ZNAXIS${i}`);
    axes.push(a);
    tile.push(h.getNumber(`ZTILE${i}`) ?? (i === 1 ? a : 1));
  }
  const cmptype = (h.getString("ZCMPTYPE") ?? "").toUpperCase();
  const params: Record<string, number> = {};
  for (let i = 1; i < 20; i++) {
    const name = h.getString(`ZNAME${i}`);
    if (name === undefined) break;
    const v = h.getNumber(`ZVAL${i}`);
    if (v !== undefined) params[name.toUpperCase()] = v;
  }
  const q = (h.getString("ZQUANTIZ") ?? (zb < 0 ? "NO_DITHER" : "NONE")).toUpperCase();
  const quantize = (
    ["NO_DITHER", "SUBTRACTIVE_DITHER_1", "SUBTRACTIVE_DITHER_2", "NONE"].includes(q) ? q : "NO_DITHER"
  ) as CompressedLayout["quantize"];
  const bytepixDefault = zb === 8 ? 1 : zb === 16 ? 2 : 4;
  const layout: CompressedLayout = {
    zbitpix: zb as Bitpix,
    axes,
    tile,
    cmptype,
    quantize,
    zdither0: h.getNumber("ZDITHER0") ?? 1,
    blockSize: params.BLOCKSIZE ?? 32,
    bytepix: (params.BYTEPIX ?? bytepixDefault) as 1 | 2 | 4 | 8,
  };
  const zblank = h.getNumber("ZBLANK");
  if (zblank !== undefined) layout.zblank = zblank;
  if (!["RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "NOCOMPRESS"].includes(cmptype)) {
    throw new FitsError("TC_FITS_UNSUPPORTED", {
      file,
      reason: `tile compression ${cmptype || "(none given)"} is not supported (RICE_1, GZIP_1, GZIP_2 are)`,
      field: "ZCMPTYPE",
    });
  }
  return layout;
}

// CFITSIO's dither sequence: a Park–Miller generator (a = 16807, m = 2^31 − 1, seed 1) drawn 10,000 times.
// It must be reproduced exactly, because the quantizer subtracted these very values.
const N_RANDOM = 10000;
let randomValues: Float32Array | undefined;
function ditherValues(): Float32Array {
  if (randomValues) return randomValues;
  const r = new Float32Array(N_RANDOM);
  const a = 16807;
  const m = 2147483647;
  let seed = 1;
  for (let i = 0; i < N_RANDOM; i++) {
    const temp = a * seed;
    seed = temp - m * Math.trunc(temp / m);
    r[i] = seed / m;
  }
  return (randomValues = r);
}

const NULL_VALUE = -2147483647;
const ZERO_VALUE = -2147483646;

/**
 * Reader of the tiles of one compressed HDU. Decodes tiles on demand; keeps the table rows (small) in
 * memory and reads each tile's bytes from the heap only when asked.
 */
export class CompressedImage {
  private table?: Buffer;
  private cols: Column[];
  readonly width: number;
  readonly height: number;
  readonly planes: number;
  readonly tilesX: number;
  readonly tilesY: number;

  constructor(
    private readonly src: FileSource,
    private readonly hdu: HduInfo,
    readonly layout: CompressedLayout,
    private readonly scaling: { bzero: number; bscale: number; blank?: number },
  ) {
    this.cols = parseColumns(src.path, hdu.header);
    this.width = layout.axes[0]!;
    this.height = layout.axes[1] ?? 1;
    this.planes = layout.axes[2] ?? 1;
    this.tilesX = Math.ceil(this.width / layout.tile[0]!);
    this.tilesY = Math.ceil(this.height / (layout.tile[1] ?? 1));
  }

  private col(name: string): Column | undefined {
    return this.cols.find((c) => c.name === name);
  }

  private async rows(): Promise<Buffer> {
    if (!this.table) this.table = await this.src.read(this.hdu.dataOffset, this.hdu.axes[0]! * this.hdu.axes[1]!);
    return this.table;
  }

  private async heapBytes(row: number, col: Column): Promise<{ bytes: Buffer; count: number } | undefined> {
    const t = await this.rows();
    const at = row * this.hdu.axes[0]! + col.offset;
    let count: number;
    let off: number;
    if (col.type === "P") {
      count = t.readInt32BE(at);
      off = t.readInt32BE(at + 4);
    } else if (col.type === "Q") {
      count = Number(t.readBigInt64BE(at));
      off = Number(t.readBigInt64BE(at + 8));
    } else throw bad(this.src.path, `column ${col.name} is not a variable-length array`, "TFORM");
    if (count === 0) return undefined;
    const elem = TYPE_BYTES[col.arrayType ?? "B"] ?? 1;
    const theap = this.hdu.header.getNumber("THEAP") ?? this.hdu.axes[0]! * this.hdu.axes[1]!;
    const start = this.hdu.dataOffset + theap + off;
    const len = count * elem;
    if (start + len > this.hdu.dataOffset + this.hdu.dataBytes)
      throw bad(this.src.path, `tile ${row + 1} points outside the heap`, col.name);
    return { bytes: await this.src.read(start, len), count };
  }

  private async scalar(row: number, name: string): Promise<number | undefined> {
    const c = this.col(name);
    if (!c) return undefined;
    const t = await this.rows();
    const at = row * this.hdu.axes[0]! + c.offset;
    switch (c.type) {
      case "D":
        return t.readDoubleBE(at);
      case "E":
        return t.readFloatBE(at);
      case "J":
        return t.readInt32BE(at);
      case "K":
        return Number(t.readBigInt64BE(at));
      case "I":
        return t.readInt16BE(at);
      default:
        return undefined;
    }
  }

  /** Tile (tx, ty, tz) → its pixel extent. */
  tileExtent(tx: number, ty: number): { x0: number; y0: number; w: number; h: number } {
    const tw = this.layout.tile[0]!;
    const th = this.layout.tile[1] ?? 1;
    const x0 = tx * tw;
    const y0 = ty * th;
    return { x0, y0, w: Math.min(tw, this.width - x0), h: Math.min(th, this.height - y0) };
  }

  /** Decode one tile to physical values (row-major within the tile). */
  async decodeTile(tx: number, ty: number, tz: number): Promise<Float32Array> {
    const L = this.layout;
    const file = this.src.path;
    const { w, h } = this.tileExtent(tx, ty);
    const tilePlanes = Math.min(L.tile[2] ?? 1, this.planes - tz * (L.tile[2] ?? 1));
    const n = w * h * tilePlanes;
    const row = (tz * this.tilesY + ty) * this.tilesX + tx;
    const out = new Float32Array(n);
    const cd = this.col("COMPRESSED_DATA");
    const data = cd ? await this.heapBytes(row, cd) : undefined;
    const quantized = L.zbitpix < 0 && L.quantize !== "NONE";
    if (!data) {
      // Tiles that could not be compressed are stored in UNCOMPRESSED_DATA or GZIP_COMPRESSED_DATA, as floats.
      for (const name of ["GZIP_COMPRESSED_DATA", "UNCOMPRESSED_DATA"]) {
        const c = this.col(name);
        const raw = c ? await this.heapBytes(row, c) : undefined;
        if (!raw || !c) continue;
        const bytes = name === "GZIP_COMPRESSED_DATA" ? gunzipSync(raw.bytes) : raw.bytes;
        const dbl = (c.arrayType ?? "E") === "D" || L.zbitpix === -64;
        for (let i = 0; i < n; i++) out[i] = dbl ? bytes.readDoubleBE(i * 8) : bytes.readFloatBE(i * 4);
        return this.applyScaling(out);
      }
      throw bad(file, `tile ${row + 1} holds no data`, "COMPRESSED_DATA");
    }
    let ints: Int32Array | undefined;
    let floats: Float64Array | undefined;
    switch (L.cmptype) {
      case "RICE_1":
      case "RICE_ONE": {
        ints = new Int32Array(n);
        if (L.bytepix === 8) throw new FitsError("TC_FITS_UNSUPPORTED", { file, reason: "RICE_1 with 8-byte pixels", field: "ZVAL2" });
        try {
          riceDecode(data.bytes, n, L.blockSize, L.bytepix, ints);
        } catch (e) {
          throw bad(file, `tile ${row + 1}: ${(e as Error).message}`, "COMPRESSED_DATA");
        }
        break;
      }
      case "GZIP_1":
      case "GZIP_2":
      case "NOCOMPRESS": {
        let bytes: Buffer = data.bytes;
        if (L.cmptype !== "NOCOMPRESS") {
          try {
            bytes = gunzipSync(bytes);
          } catch {
            bytes = inflateSync(bytes);
          }
        }
        const bp = quantized ? 4 : Math.abs(L.zbitpix) / 8;
        if (bytes.length < n * bp)
          throw bad(file, `tile ${row + 1} decompresses to ${bytes.length} bytes, expected ${n * bp}`, "COMPRESSED_DATA");
        if (L.cmptype === "GZIP_2" && bp > 1) {
          // Byte shuffling: all first bytes, then all second bytes, …
          const un = Buffer.allocUnsafe(n * bp);
          for (let b = 0; b < bp; b++) for (let i = 0; i < n; i++) un[i * bp + b] = bytes[b * n + i]!;
          bytes = un;
        }
        if (!quantized && L.zbitpix === -32) {
          floats = new Float64Array(n);
          for (let i = 0; i < n; i++) floats[i] = bytes.readFloatBE(i * 4);
        } else if (!quantized && L.zbitpix === -64) {
          floats = new Float64Array(n);
          for (let i = 0; i < n; i++) floats[i] = bytes.readDoubleBE(i * 8);
        } else if (!quantized && L.zbitpix === 64) {
          floats = new Float64Array(n);
          for (let i = 0; i < n; i++) floats[i] = Number(bytes.readBigInt64BE(i * 8));
        } else {
          ints = new Int32Array(n);
          if (bp === 1) for (let i = 0; i < n; i++) ints[i] = bytes[i]!;
          else if (bp === 2) for (let i = 0; i < n; i++) ints[i] = bytes.readInt16BE(i * 2);
          else for (let i = 0; i < n; i++) ints[i] = bytes.readInt32BE(i * 4);
        }
        break;
      }
    }
    if (floats) {
      for (let i = 0; i < n; i++) out[i] = floats[i]!;
      return this.applyScaling(out);
    }
    const v = ints!;
    if (quantized) {
      const zscale = (await this.scalar(row, "ZSCALE")) ?? this.hdu.header.getNumber("ZSCALE") ?? 1;
      const zzero = (await this.scalar(row, "ZZERO")) ?? this.hdu.header.getNumber("ZZERO") ?? 0;
      const zblank = (await this.scalar(row, "ZBLANK")) ?? L.zblank;
      if (L.quantize === "NO_DITHER") {
        for (let i = 0; i < n; i++) out[i] = v[i] === zblank ? NaN : v[i]! * zscale + zzero;
      } else {
        const r = ditherValues();
        let iseed = (row + L.zdither0 - 1) % N_RANDOM;
        let nextrand = Math.trunc(r[iseed]! * 500);
        const two = L.quantize === "SUBTRACTIVE_DITHER_2";
        for (let i = 0; i < n; i++) {
          const x = v[i]!;
          if (x === NULL_VALUE || x === zblank) out[i] = NaN;
          else if (two && x === ZERO_VALUE) out[i] = 0;
          else out[i] = (x - r[nextrand]! + 0.5) * zscale + zzero;
          nextrand++;
          if (nextrand === N_RANDOM) {
            iseed++;
            if (iseed === N_RANDOM) iseed = 0;
            nextrand = Math.trunc(r[iseed]! * 500);
          }
        }
      }
      return out;
    }
    // Integer image: ZBLANK (or the original BLANK) marks undefined pixels, then BSCALE/BZERO.
    const blank = L.zblank ?? this.scaling.blank;
    const { bzero, bscale } = this.scaling;
    for (let i = 0; i < n; i++) out[i] = v[i] === blank ? NaN : v[i]! * bscale + bzero;
    return out;
  }

  private applyScaling(out: Float32Array): Float32Array {
    const { bzero, bscale } = this.scaling;
    if (bzero !== 0 || bscale !== 1) for (let i = 0; i < out.length; i++) out[i] = out[i]! * bscale + bzero;
    return out;
  }
}
