/**
 * Random-access byte source over a file. Counts the bytes it reads, which is how tests prove that a
 * header scan never touches pixel data.
 */
import { open, type FileHandle } from "node:fs/promises";
import { FitsError, TileCompileError } from "../errors/index.js";

export class FileSource {
  /** Total bytes read through this source. */
  bytesRead = 0;
  private constructor(readonly path: string, private readonly fh: FileHandle, readonly size: number) {}

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
      if (bytesRead === 0) throw new FitsError("TC_FITS_TRUNCATED", { file: this.path, expected: position + length, actual: this.size, field: "data" });
      done += bytesRead;
    }
    this.bytesRead += length;
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
