/**
 * Reading against CFITSIO as the oracle: every image HDU of the shared Seestar frames and of the FITS
 * test files shipped by Debian's python3-astropy and python3-ccdproc (extracted once into
 * test/fixtures/debian-fits), decoded by us and by `imcopy 'file[hdu][pixd X]'`, must agree exactly
 * after rounding CFITSIO's doubles to f32 (our output type). fpack-compressed copies must decode to
 * exactly the pixels of their originals.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cfitsioPixels, DEBIAN_FITS, requireTool, seestarDir } from "@tile-compile/test-support/tools";
import { FitsHeader } from "./header.js";
import { FitsFile, readFitsHeader, readFitsImage } from "./reader.js";

const hasImcopy = requireTool("imcopy", "libcfitsio-bin");
const hasFpack = requireTool("fpack", "libcfitsio-bin");
const seestar = seestarDir();
const work = mkdtempSync(join(tmpdir(), "tc-reader-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function compare(ours: Float32Array, oracle: Float64Array): { mismatches: number; first?: string } {
  expect(ours.length).toBe(oracle.length);
  let mismatches = 0;
  let first: string | undefined;
  for (let i = 0; i < ours.length; i++) {
    const a = ours[i]!;
    const b = Math.fround(oracle[i]!);
    if (Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) || a === b) continue;
    mismatches++;
    first ??= `pixel ${i}: ours ${a}, cfitsio ${oracle[i]}`;
  }
  return first === undefined ? { mismatches } : { mismatches, first };
}

/** Image HDUs (2-D or 3-D, non-empty) of the Debian fixture files; 4-D images are expected to be refused. */
const debianCases: { file: string; hdu: number }[] = [];
for (const name of readdirSync(DEBIAN_FITS).sort()) {
  const file = join(DEBIAN_FITS, name);
  try {
    const f = await FitsFile.open(file);
    for (const h of await f.hdus()) {
      const dims = h.kind === "compressed-image" ? [h.header.getNumber("ZNAXIS1")!, h.header.getNumber("ZNAXIS2")!] : h.axes;
      const isImage =
        h.kind === "compressed-image" ||
        ((h.kind === "primary" || h.kind === "image") && h.axes.length >= 2 && h.axes.length <= 3 && !h.header.getBoolean("GROUPS"));
      if (isImage && dims.every((d) => d > 0)) debianCases.push({ file: name, hdu: h.index });
    }
    await f.close();
  } catch {
    /* idcompspec.fits is not a FITS file: covered by the bad-input tests */
  }
}

describe.skipIf(!hasImcopy)("reading matches CFITSIO", () => {
  it("covers BITPIX 16, 32, 64, −32, −64, BZERO/BSCALE, BLANK, cubes and Rice tiles among the Debian fixtures", () => {
    expect(debianCases.length).toBeGreaterThanOrEqual(25);
  });

  it.each(debianCases)("$file HDU $hdu", async ({ file, hdu }) => {
    const path = join(DEBIAN_FITS, file);
    const ours = await readFitsImage(path, { hdu });
    expect(compare(ours.data, cfitsioPixels(path, hdu))).toEqual({ mismatches: 0 });
  });

  it.skipIf(!seestar)("every shared Seestar frame (BITPIX 16, BZERO 32768)", async () => {
    const files = execFileSync("find", [seestar!, "-name", "*.fit"]).toString().trim().split("\n").sort();
    expect(files.length).toBe(22);
    for (const f of files) {
      const ours = await readFitsImage(f);
      expect(ours.width * ours.height).toBe(1080 * 1920);
      expect(compare(ours.data, cfitsioPixels(f, 0)), f).toEqual({ mismatches: 0 });
    }
  });

  it("BITPIX 8, 32 and −64 images converted by CFITSIO's pixel filters", async () => {
    for (const [src, filter, expr, bitpix] of [
      [join(DEBIAN_FITS, "astropy__test0.fits[1]"), "pixb", "X / 40", 8],
      ...["pixj:X * 1000 - 7:32", "pixd:X / 3.7:-64", "pixr:X / 3.7:-32"].map((s) => [
        join(DEBIAN_FITS, "ccdproc__a8280271.fits[0]"),
        ...s.split(":"),
      ]),
    ] as [string, string, string, number][]) {
      const out = join(work, `conv_${filter}.fits`);
      execFileSync("imcopy", [`${src}[${filter} ${expr}]`, `!${out}`], { stdio: "pipe" });
      const ours = await readFitsImage(out);
      expect((await readFitsHeader(out)).bitpix).toBe(Number(bitpix));
      expect(compare(ours.data, cfitsioPixels(out, 0))).toEqual({ mismatches: 0 });
    }
  });

  it("BITPIX 64 with BZERO and BLANK (file built by hand)", async () => {
    const h = new FitsHeader()
      .set("SIMPLE", true)
      .set("BITPIX", 64)
      .set("NAXIS", 2)
      .set("NAXIS1", 5)
      .set("NAXIS2", 3)
      .set("BZERO", 100)
      .set("BSCALE", 0.5, undefined, { numberFormat: "float" })
      .set("BLANK", -1);
    const data = Buffer.alloc(2880);
    const values = [0n, 1n, -1n, 2n ** 40n, -(2n ** 33n), 7n, 8n, 9n, 10n, 11n, 12n, 13n, 14n, 15n, 16n];
    values.forEach((v, i) => data.writeBigInt64BE(v, i * 8));
    const path = join(work, "int64.fits");
    writeFileSync(path, Buffer.concat([h.toBuffer(), data]));
    const ours = await readFitsImage(path);
    expect(Number.isNaN(ours.data[2]!)).toBe(true);
    expect(ours.data[3]).toBe(Math.fround(2 ** 39 + 100));
    expect(compare(ours.data, cfitsioPixels(path, 0))).toEqual({ mismatches: 0 });
  });
});

describe.skipIf(!hasFpack || !seestar)("fpack-compressed Seestar frames", () => {
  it("decode to exactly the pixels of the originals, whole and by rows and tiles", async () => {
    const files = execFileSync("find", [seestar!, "-name", "*.fit"]).toString().trim().split("\n").sort();
    for (const f of files) {
      const copy = join(work, "frame.fit");
      copyFileSync(f, copy);
      rmSync(`${copy}.fz`, { force: true });
      execFileSync("fpack", ["-O", `${copy}.fz`, copy]);
      const a = await readFitsImage(f);
      const b = await readFitsImage(`${copy}.fz`);
      expect(b.width).toBe(a.width);
      expect(compare(b.data, Float64Array.from(a.data))).toEqual({ mismatches: 0 });
      expect(b.header.get("ZCMPTYPE")).toBe("RICE_1");
    }
  });

  it("2-D Rice tiles (fpack -t 100,64) and GZIP tiles read by rectangles", async () => {
    const f = execFileSync("find", [seestar!, "-name", "*.fit"]).toString().trim().split("\n").sort()[0]!;
    const ref = await readFitsImage(f);
    for (const args of [
      ["-r", "-t", "100,64"],
      ["-g", "-t", "1080,1"],
      ["-g2", "-t", "128,128"],
    ]) {
      const copy = join(work, "tiles.fit");
      copyFileSync(f, copy);
      rmSync(`${copy}.fz`, { force: true });
      execFileSync("fpack", [...args, "-O", `${copy}.fz`, copy]);
      const file = await FitsFile.open(`${copy}.fz`);
      const r = await file.image();
      const tile = await r.readTile(250, 1000, 333, 77);
      for (let y = 0; y < 77; y++) for (let x = 0; x < 333; x++) expect(tile[y * 333 + x]).toBe(ref.data[(1000 + y) * 1080 + 250 + x]);
      await file.close();
    }
  });

  it("quantized float images (fpack -q 16) decode as CFITSIO does, dither included", async () => {
    const src = join(work, "float.fits");
    execFileSync("imcopy", [`${join(DEBIAN_FITS, "ccdproc__a8280271.fits")}[0][pixr X * 1.37]`, `!${src}`], { stdio: "pipe" });
    for (const q of [
      ["-q", "16"],
      ["-qz", "8"],
      ["-g", "-q", "8"],
    ]) {
      rmSync(`${src}.fz`, { force: true });
      execFileSync("fpack", [...q, "-O", `${src}.fz`, src]);
      const ours = await readFitsImage(`${src}.fz`);
      expect(compare(ours.data, cfitsioPixels(`${src}.fz`, 1)), q.join(" ")).toEqual({ mismatches: 0 });
    }
  });
});

describe.skipIf(!seestar)("streaming reads", () => {
  it("row ranges and tiles equal the same region of the whole image, and read only the rows they cover", async () => {
    const f = execFileSync("find", [seestar!, "-name", "*.fit"]).toString().trim().split("\n").sort()[3]!;
    const whole = await readFitsImage(f);
    const file = await FitsFile.open(f);
    const r = await file.image();
    const before = file.bytesRead;
    const rows = await r.readRows(700, 10);
    expect(file.bytesRead - before).toBe(10 * 1080 * 2);
    expect(rows).toEqual(whole.data.subarray(700 * 1080, 710 * 1080));
    const t = await r.readTile(1000, 1900, 80, 20);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 80; x++) expect(t[y * 80 + x]).toBe(whole.data[(1900 + y) * 1080 + 1000 + x]);
    await expect(r.readTile(1000, 1900, 81, 20)).rejects.toThrow(/outside/);
    await file.close();
  });
});
