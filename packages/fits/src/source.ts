/**
 * Random-access byte source over a file. Counts the bytes it reads, which is how tests prove that a
 * header scan never touches pixel data.
 */
import { open, type FileHandle } from "node:fs/promises";
import { FitsError, TileCompileError } from "@tile-compile/errors";

/**
 * Reusable scratch buffers for pixel reads: decoding happens right after the read, so the raw bytes are
 * garbage at once; recycling them avoids allocating (and collecting) one large external buffer per
 * frame. Take with `takeScratch`, give back with `releaseScratch` once decoded.
 */
const scratchPool: Buffer[] = [];
export function takeScratch(length: number): Buffer {
  const i = scratchPool.findIndex((b) => b.length >= length);
  const buf = i >= 0 ? scratchPool.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(length);
  return buf.length === length ? buf : buf.subarray(0, length);
}
export function releaseScratch(buf: Buffer): void {
  const whole = Buffer.from(buf.buffer, 0, buf.buffer.byteLength);
  if (scratchPool.length < 4 && whole.length <= 256 << 20) scratchPool.push(whole);
}

export class FileSource {
  /** Total bytes read through this source. */
  bytesRead = 0;
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<FileSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (cause) {
      throw new TileCompileError("TC_IO", { op: "open", file: path, reason: (cause as Error).message }, { cause });
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new FitsError("TC_FITS_INVALID", { file: path, reason: "not a regular file" });
    }
    return new FileSource(path, fh, st.size);
  }

  /**
   * Read exactly `length` bytes at `position` into a fresh, 8-byte-aligned buffer (or `into`).
   * Short reads are an error: callers check sizes against the header first.
   */
  async read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0)
        throw new FitsError("TC_FITS_TRUNCATED", { file: this.path, expected: position + length, actual: this.size, field: "data" });
      done += bytesRead;
    }
    this.bytesRead += length;
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
