/**
 * Reading FITS files: the HDU list, header-only scans, whole images and streaming reads of row ranges
 * and rectangular tiles. Pixel data is only read by the image methods, and only the bytes asked for.
 *
 * Coordinates: x runs along NAXIS1, y along NAXIS2, both 0-based; y = 0 is the first row stored in the
 * file (FITS pixel row 1). Channels are NAXIS3 planes. Values are physical (BSCALE/BZERO applied), f32.
 */
import { FitsError } from "@tile-compile/errors";
import { CompressedImage, compressedLayout } from "./compressed.js";
import { bytesPerPixel, decodeBigEndian, type Bitpix, type Scaling } from "./decode.js";
import { describeHdu, nextHduOffset, readHeaderAt, type HduInfo } from "./hdu.js";
import type { FitsHeader } from "./header.js";
import { FileSource, releaseScratch, takeScratch } from "./source.js";
import { uninitialisedPlane } from "./planes.js";

/** An image in memory: plane-major Float32Array (all of channel 0, then channel 1, …). */
export interface FitsImage {
  width: number;
  height: number;
  channels: number;
  data: Float32Array;
  header: FitsHeader;
}

export interface OpenOptions {
  signal?: AbortSignal;
}

export class FitsFile {
  private hduCache: HduInfo[] = [];
  private complete = false;

  private constructor(readonly source: FileSource) {}

  get path(): string {
    return this.source.path;
  }

  /** Bytes read so far through this file. */
  get bytesRead(): number {
    return this.source.bytesRead;
  }

  static async open(path: string): Promise<FitsFile> {
    const f = new FitsFile(await FileSource.open(path));
    try {
      await f.hdu(0);
    } catch (e) {
      await f.close();
      throw e;
    }
    return f;
  }

  /** The HDU at `index`, reading headers up to it (never data). Undefined past the last HDU. */
  async hdu(index: number): Promise<HduInfo | undefined> {
    while (this.hduCache.length <= index && !this.complete) {
      const prev = this.hduCache[this.hduCache.length - 1];
      const offset = prev ? nextHduOffset(prev) : 0;
      if (prev && offset + 2880 > this.source.size) {
        this.complete = true;
        break;
      }
      const { header, dataOffset } = await readHeaderAt(this.source, offset, !prev);
      this.hduCache.push(describeHdu(this.source, this.hduCache.length, header, offset, dataOffset));
    }
    return this.hduCache[index];
  }

  async hdus(): Promise<HduInfo[]> {
    for (let i = 0; await this.hdu(i); i++);
    return this.hduCache;
  }

  get primaryHeader(): FitsHeader {
    return this.hduCache[0]!.header;
  }

  /**
   * The HDU that holds "the image": the primary HDU if it has NAXIS ≥ 2, otherwise the first IMAGE
   * extension or tile-compressed image.
   */
  async imageHdu(): Promise<HduInfo> {
    const p = (await this.hdu(0))!;
    if (p.axes.length >= 2 && p.axes.every((a) => a > 0) && !p.header.getBoolean("GROUPS")) return p;
    for (let i = 1; ; i++) {
      const h = await this.hdu(i);
      if (!h) break;
      if ((h.kind === "image" && h.axes.length >= 2) || h.kind === "compressed-image") return h;
    }
    throw new FitsError("TC_FITS_INVALID", {
      file: this.path,
      reason: "the file holds no 2-D image (primary HDU and extensions have none)",
      field: "NAXIS",
    });
  }

  /** A reader for an image HDU (the default image if no index is given). */
  async image(index?: number): Promise<FitsImageReader> {
    const h = index === undefined ? await this.imageHdu() : await this.hdu(index);
    if (!h) throw new FitsError("TC_FITS_INVALID", { file: this.path, reason: `there is no HDU ${index}` });
    return FitsImageReader.create(this.source, h);
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

/** Header-level facts about an image, enough to scan a folder. */
export interface FitsHeaderSummary {
  path: string;
  /** Header with the observation keywords: the image HDU's, merged over the primary's when they differ. */
  header: FitsHeader;
  width: number;
  height: number;
  channels: number;
  bitpix: Bitpix;
  compressed: boolean;
  bytesRead: number;
}

/**
 * Read only the header blocks needed to describe the image (primary, and the first extension when the
 * primary holds no image, as in `.fz` files). Pixel data is never read; sizes are checked against the
 * file length so truncated files are reported here.
 */
export async function readFitsHeader(path: string): Promise<FitsHeaderSummary> {
  const f = await FitsFile.open(path);
  try {
    const hdu = await f.imageHdu();
    const r = await FitsImageReader.create(f.source, hdu, false);
    let header = hdu.header;
    if (hdu.index > 0) {
      // Observation keywords may sit in either header; the extension wins.
      header = f.primaryHeader.withoutStructure();
      for (const c of hdu.header.cards) if (c.value !== undefined) header.set(c.key, c.value, c.comment);
    }
    return {
      path,
      header,
      width: r.width,
      height: r.height,
      channels: r.channels,
      bitpix: r.bitpix,
      compressed: hdu.kind === "compressed-image",
      bytesRead: f.bytesRead,
    };
  } finally {
    await f.close();
  }
}

/** Read a whole image (all channels) into memory. */
export async function readFitsImage(
  path: string,
  options: OpenOptions & { hdu?: number; out?: (length: number) => Float32Array } = {},
): Promise<FitsImage> {
  const f = await FitsFile.open(path);
  try {
    const r = await f.image(options.hdu);
    const data = await r.readAll({ signal: options.signal, out: options.out?.(r.width * r.height * r.channels) });
    return { width: r.width, height: r.height, channels: r.channels, data, header: r.header };
  } finally {
    await f.close();
  }
}

export class FitsImageReader {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  /** BITPIX of the stored pixels (ZBITPIX for compressed images). */
  readonly bitpix: Bitpix;
  readonly scaling: Scaling;
  private readonly compressed?: CompressedImage;
  private tileCache?: { key: string; tiles: Float32Array[] };

  private constructor(
    private readonly src: FileSource,
    readonly hdu: HduInfo,
    checkData: boolean,
  ) {
    const h = hdu.header;
    const file = src.path;
    const scaling: Scaling = { bzero: h.getNumber("BZERO") ?? 0, bscale: h.getNumber("BSCALE") ?? 1 };
    const blank = h.get("BLANK");
    if (typeof blank === "number" || typeof blank === "bigint") scaling.blank = blank;
    this.scaling = scaling;
    let axes: number[];
    if (hdu.kind === "compressed-image") {
      const layout = compressedLayout(src, hdu);
      axes = layout.axes;
      this.bitpix = layout.zbitpix;
      if (checkData)
        this.compressed = new CompressedImage(src, hdu, layout, {
          bzero: scaling.bzero,
          bscale: scaling.bscale,
          ...(typeof blank === "number" ? { blank } : {}),
        });
    } else {
      axes = hdu.axes;
      this.bitpix = hdu.bitpix;
    }
    if (axes.length < 2 || (axes.length > 3 && axes.slice(3).some((a) => a !== 1))) {
      throw new FitsError("TC_FITS_UNSUPPORTED", {
        file,
        reason: `images with NAXIS = ${axes.length} are not supported (2 or 3 are)`,
        field: "NAXIS",
      });
    }
    this.width = axes[0]!;
    this.height = axes[1]!;
    this.channels = axes[2] ?? 1;
  }

  static async create(src: FileSource, hdu: HduInfo, checkData = true): Promise<FitsImageReader> {
    return new FitsImageReader(src, hdu, checkData);
  }

  get header(): FitsHeader {
    return this.hdu.header;
  }

  private checkRect(x0: number, y0: number, w: number, h: number, channel: number): void {
    if (
      !(Number.isInteger(x0) && Number.isInteger(y0) && Number.isInteger(w) && Number.isInteger(h)) ||
      x0 < 0 ||
      y0 < 0 ||
      w < 0 ||
      h < 0 ||
      x0 + w > this.width ||
      y0 + h > this.height ||
      channel < 0 ||
      channel >= this.channels
    ) {
      throw new RangeError(
        `${this.src.path}: region x=${x0} y=${y0} ${w}×${h} channel ${channel} is outside the ${this.width}×${this.height}×${this.channels} image`,
      );
    }
  }

  /** Rows [y0, y0 + count) of one channel, row-major, `width * count` values. */
  async readRows(y0: number, count: number, channel = 0, out?: Float32Array): Promise<Float32Array> {
    return this.readTile(0, y0, this.width, count, channel, out);
  }

  /** A rectangle of one channel, row-major, `w * h` values. Reads only the rows it covers. */
  async readTile(x0: number, y0: number, w: number, h: number, channel = 0, out?: Float32Array): Promise<Float32Array> {
    this.checkRect(x0, y0, w, h, channel);
    const result = out ?? new Float32Array(w * h);
    if (w === 0 || h === 0) return result;
    if (this.compressed) return this.readCompressed(x0, y0, w, h, channel, result);
    const bpp = bytesPerPixel(this.bitpix);
    const W = this.width;
    const rowStart = (channel * this.height + y0) * W;
    if (x0 === 0 && w === W) {
      const bytes = await this.src.read(this.hdu.dataOffset + rowStart * bpp, w * h * bpp, takeScratch(w * h * bpp));
      decodeBigEndian(bytes, this.bitpix, w * h, this.scaling, result);
      releaseScratch(bytes);
      return result;
    }
    // Narrow tiles: read the span from the first to the last needed byte in one call, decode row slices.
    const span = ((h - 1) * W + w) * bpp;
    const bytes = await this.src.read(this.hdu.dataOffset + (rowStart + x0) * bpp, span);
    for (let r = 0; r < h; r++) {
      // Each slice starts at a multiple of the pixel size in a fresh buffer, so typed views are aligned.
      decodeBigEndian(bytes.subarray(r * W * bpp, r * W * bpp + w * bpp), this.bitpix, w, this.scaling, result, r * w);
    }
    return result;
  }

  /** All channels, plane-major. */
  async readAll(options: OpenOptions & { out?: Float32Array } = {}): Promise<Float32Array> {
    const n = this.width * this.height;
    if (options.out && options.out.length !== n * this.channels)
      throw new RangeError(`readAll: out holds ${options.out.length} values, the image ${n * this.channels}`);
    // Every value is written below, so the zero fill of `new Float32Array` is wasted work; worse, a fresh
    // zeroed 8 MB block costs page faults on every frame (measured: more than the whole file read).
    // Buffer.allocUnsafeSlow memory comes from malloc, which recycles it between frames.
    const out = options.out ?? uninitialisedPlane(n * this.channels);
    // Read in bands of ≤ 16 MB so a cancel is noticed and no second full-size buffer is held.
    const rowsPerBand = Math.max(1, Math.floor((16 << 20) / (this.width * bytesPerPixel(this.bitpix))));
    for (let c = 0; c < this.channels; c++) {
      for (let y = 0; y < this.height; y += rowsPerBand) {
        options.signal?.throwIfAborted();
        const h = Math.min(rowsPerBand, this.height - y);
        await this.readTile(0, y, this.width, h, c, out.subarray(c * n + y * this.width, c * n + (y + h) * this.width));
      }
    }
    return out;
  }

  private async readCompressed(x0: number, y0: number, w: number, h: number, channel: number, out: Float32Array): Promise<Float32Array> {
    const ci = this.compressed!;
    const T = ci.layout.tile;
    const tw = T[0]!;
    const th = T[1] ?? 1;
    const tdepth = T[2] ?? 1;
    const tz = Math.floor(channel / tdepth);
    const zIn = channel - tz * tdepth;
    for (let ty = Math.floor(y0 / th); ty * th < y0 + h; ty++) {
      // Decoded tiles of one tile-row are cached, so row-by-row reads of 2-D tiles decode each tile once.
      const key = `${tz}:${ty}`;
      if (this.tileCache?.key !== key) this.tileCache = { key, tiles: [] };
      for (let tx = Math.floor(x0 / tw); tx * tw < x0 + w; tx++) {
        const tile = this.tileCache.tiles[tx] ?? (this.tileCache.tiles[tx] = await ci.decodeTile(tx, ty, tz));
        const e = ci.tileExtent(tx, ty);
        const planeOff = zIn * e.w * e.h;
        const ya = Math.max(y0, e.y0);
        const yb = Math.min(y0 + h, e.y0 + e.h);
        const xa = Math.max(x0, e.x0);
        const xb = Math.min(x0 + w, e.x0 + e.w);
        for (let y = ya; y < yb; y++) {
          const srcOff = planeOff + (y - e.y0) * e.w + (xa - e.x0);
          out.set(tile.subarray(srcOff, srcOff + (xb - xa)), (y - y0) * w + (xa - x0));
        }
      }
    }
    return out;
  }
}
