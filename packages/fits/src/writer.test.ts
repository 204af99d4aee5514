import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fitsverify, requireTool } from "@tile-compile/test-support/tools";
import { FitsHeader } from "./header.js";
import { readFitsImage } from "./reader.js";
import { FitsWriter, writeFitsImage } from "./writer.js";

const hasVerify = requireTool("fitsverify", "fitsverify");
const dir = mkdtempSync(join(tmpdir(), "tc-writer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ramp(w: number, h: number, c = 1): Float32Array {
  const d = new Float32Array(w * h * c);
  for (let i = 0; i < d.length; i++) d[i] = ((i * 37) % 65000) + 0.25;
  return d;
}

const source = new FitsHeader()
  .set("OBJECT", "M 94", "target")
  .set("EXPTIME", 10, "[s] exposure", { numberFormat: "float" })
  .set("DATE-OBS", "2025-03-27T01:20:32.955")
  .set("FILTER", "IRCUT")
  .set("BAYERPAT", "GRBG")
  .set("BITPIX", 16) // structural: must not be carried over
  .addComment("from the capture program")
  .set("LONGNOTE", "a very long string value that needs the CONTINUE convention because it does not fit into one card at all");

describe("writing FITS", () => {
  it.each([
    { bitpix: -32 as const, w: 61, h: 47, c: 1 },
    { bitpix: 16 as const, w: 61, h: 47, c: 1 },
    { bitpix: -32 as const, w: 33, h: 20, c: 3 },
  ])("BITPIX $bitpix, $w×$h×$c round-trips and carries keywords and provenance", async ({ bitpix, w, h, c }) => {
    const data = ramp(w, h, c);
    const path = join(dir, `out_${bitpix}_${c}.fits`);
    await writeFitsImage(
      path,
      { width: w, height: h, channels: c, data },
      { bitpix, header: source, history: ["tile-compile stacking:mean @tile-compile/core@0.1.0 options=abc"] },
    );
    const back = await readFitsImage(path);
    expect([back.width, back.height, back.channels]).toEqual([w, h, c]);
    for (let i = 0; i < data.length; i++) expect(back.data[i]).toBe(bitpix === -32 ? data[i] : Math.round(data[i]!));
    expect(back.header.get("OBJECT")).toBe("M 94");
    expect(back.header.get("BITPIX")).toBe(bitpix);
    expect(back.header.get("PROGRAM")).toBe("tile-compile");
    expect(back.header.commentary("HISTORY")).toEqual(["tile-compile stacking:mean @tile-compile/core@0.1.0 options=abc"]);
    expect(back.header.get("LONGNOTE")).toBe(source.get("LONGNOTE"));
  });

  it.skipIf(!hasVerify)("every file we write passes fitsverify with no errors and no warnings", async () => {
    const cases: [string, -32 | 16, number, boolean][] = [
      ["f32.fits", -32, 1, false],
      ["u16.fits", 16, 1, false],
      ["cube.fits", -32, 3, false],
      ["u16nan.fits", 16, 1, true],
      ["f32nan.fits", -32, 1, true],
    ];
    for (const [name, bitpix, channels, nan] of cases) {
      const data = ramp(100, 80, channels);
      if (nan) data[5] = NaN;
      const path = join(dir, name);
      await writeFitsImage(path, { width: 100, height: 80, channels, data }, { bitpix, header: source, history: ["provenance line"] });
      const v = fitsverify(path);
      expect({ name, errors: v.errors, warnings: v.warnings }, v.report).toEqual({ name, errors: 0, warnings: 0 });
    }
  });

  it("16-bit output with NaN declares BLANK and reads NaN back", async () => {
    const data = new Float32Array([0, 1, NaN, 65535, 70000, -5]);
    const path = join(dir, "blank16.fits");
    await writeFitsImage(path, { width: 3, height: 2, data }, { bitpix: 16 });
    const back = await readFitsImage(path);
    expect(Array.from(back.data)).toEqual([1, 1, NaN, 65535, 65535, 1]);
    expect(back.header.get("BLANK")).toBe(-32768);
  });

  it("is atomic: an aborted or incomplete write leaves neither the target nor a temporary file", async () => {
    const sub = mkdtempSync(join(dir, "atomic-"));
    const target = join(sub, "stack.fits");
    const controller = new AbortController();
    const w = await FitsWriter.create(target, { width: 10, height: 10 }, { signal: controller.signal });
    await w.write(new Float32Array(50));
    controller.abort();
    await expect(w.write(new Float32Array(50))).rejects.toThrow(/abort/i);
    expect(readdirSync(sub)).toEqual([]);
    const w2 = await FitsWriter.create(target, { width: 10, height: 10 });
    await w2.write(new Float32Array(30));
    await expect(w2.commit()).rejects.toThrow(/30 of 100 pixels/);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(sub)).toEqual([]);
  });

  it("writes the same bytes for the same input (no wall-clock date)", async () => {
    const a = join(dir, "det_a.fits");
    const b = join(dir, "det_b.fits");
    await writeFitsImage(a, { width: 20, height: 10, data: ramp(20, 10) }, { header: source });
    await new Promise((r) => setTimeout(r, 1100));
    await writeFitsImage(b, { width: 20, height: 10, data: ramp(20, 10) }, { header: source });
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });

  it("`consume` writes the same bytes without a copy, swapping the caller's values in place", async () => {
    const { readFileSync } = await import("node:fs");
    // 1.5 M values: more than one write chunk (1 M), with NaN and −0 among them.
    const W = 1500,
      H = 1000;
    const data = ramp(W, H).map((v, i) => (i % 977 === 0 ? NaN : i % 1013 === 0 ? -0 : v * 1.37 - 5));
    const copy = Float32Array.from(data);
    const a = join(dir, "consume_a.fits"),
      b = join(dir, "consume_b.fits");
    await writeFitsImage(a, { width: W, height: H, data }, { header: source });
    expect(Buffer.from(data.buffer).equals(Buffer.from(copy.buffer))).toBe(true); // untouched without consume
    await writeFitsImage(b, { width: W, height: H, data }, { header: source, consume: true });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    // The caller's values are now big-endian: swapped back they are the originals, bit for bit.
    const back = Buffer.from(data.buffer, data.byteOffset, data.byteLength).swap32();
    expect(back.equals(Buffer.from(copy.buffer))).toBe(true);
  });
});
