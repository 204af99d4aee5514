/**
 * Bad input gives a typed error naming the file and what is wrong, never a crash or a huge allocation;
 * a folder scan lists bad files with the reason and goes on. Header scans read header blocks only.
 */
import { mkdtempSync, mkdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FitsError } from "../errors/index.js";
import { scanFrames } from "./scan.js";
import { DEBIAN_FITS } from "@tile-compile/test-support/tools";
import { FitsHeader } from "@tile-compile/fits";
import { readFitsHeader, readFitsImage } from "@tile-compile/fits";
import { writeFitsImage } from "@tile-compile/fits";

const dir = mkdtempSync(join(tmpdir(), "tc-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const header = (cards: [string, string | number | boolean][]) => {
  const h = new FitsHeader();
  for (const [k, v] of cards) h.set(k, v);
  return h.toBuffer();
};

const cases: { name: string; make: (p: string) => void; code: string; message: RegExp }[] = [
  {
    name: "truncated file",
    make: (p) =>
      writeFileSync(
        p,
        Buffer.concat([
          header([
            ["SIMPLE", true],
            ["BITPIX", 16],
            ["NAXIS", 2],
            ["NAXIS1", 100],
            ["NAXIS2", 100],
          ]),
          Buffer.alloc(5000),
        ]),
      ),
    code: "TC_FITS_TRUNCATED",
    message: /declares 22880 bytes of data \(NAXIS1\.\.2\), but the file holds only 7880/,
  },
  {
    name: "not a FITS file",
    make: (p) => writeFileSync(p, "just some text, not an image\n".repeat(200)),
    code: "TC_FITS_INVALID",
    message: /not a FITS file: it does not start with SIMPLE/,
  },
  {
    name: "tiny file",
    make: (p) => writeFileSync(p, "SIMPLE  =                    T"),
    code: "TC_FITS_INVALID",
    message: /shorter than one 2880-byte FITS block/,
  },
  { name: "empty file", make: (p) => writeFileSync(p, ""), code: "TC_FITS_INVALID", message: /the file is empty/ },
  {
    name: "header without END",
    make: (p) =>
      writeFileSync(
        p,
        header([
          ["SIMPLE", true],
          ["BITPIX", 16],
          ["NAXIS", 0],
        ])
          .toString("latin1")
          .replace(/END {77}/, " ".repeat(80)),
      ),
    code: "TC_FITS_INVALID",
    message: /no END card/,
  },
  {
    name: "NAXIS claiming more data than the file holds",
    make: (p) =>
      writeFileSync(
        p,
        header([
          ["SIMPLE", true],
          ["BITPIX", -64],
          ["NAXIS", 3],
          ["NAXIS1", 200000],
          ["NAXIS2", 200000],
          ["NAXIS3", 3],
        ]),
      ),
    code: "TC_FITS_TRUNCATED",
    message: /declares 960000002880 bytes of data/,
  },
  {
    name: "non-numeric NAXIS",
    make: (p) =>
      writeFileSync(
        p,
        header([
          ["SIMPLE", true],
          ["BITPIX", 16],
          ["NAXIS", "two"],
        ]),
      ),
    code: "TC_FITS_INVALID",
    message: /NAXIS must be an integer, found "two" \(keyword NAXIS\)/,
  },
  {
    name: "bad BITPIX",
    make: (p) =>
      writeFileSync(
        p,
        header([
          ["SIMPLE", true],
          ["BITPIX", 12],
          ["NAXIS", 0],
        ]),
      ),
    code: "TC_FITS_INVALID",
    message: /BITPIX = 12 is not one of/,
  },
  {
    name: "binary junk in the header",
    make: (p) => {
      const b = header([
        ["SIMPLE", true],
        ["BITPIX", 8],
        ["NAXIS", 0],
      ]);
      b[200] = 0;
      writeFileSync(p, b);
    },
    code: "TC_FITS_INVALID",
    message: /non-ASCII byte \(0x0\) at offset 200/,
  },
];

describe("bad FITS input", () => {
  it.each(cases)("$name → $code naming the file", async ({ name, make, code, message }) => {
    const p = join(dir, `${name.replace(/\W+/g, "_")}.fits`);
    make(p);
    for (const read of [readFitsHeader, readFitsImage]) {
      const err = await read(p).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FitsError);
      expect((err as FitsError).code).toBe(code);
      expect((err as Error).message).toContain(p);
      expect((err as Error).message).toMatch(message);
      expect((err as FitsError).hint.length).toBeGreaterThan(10);
    }
  });

  it("a file astropy ships that is not FITS (idcompspec.fits, 823 bytes) is refused", async () => {
    await expect(readFitsHeader(join(DEBIAN_FITS, "astropy__idcompspec.fits"))).rejects.toMatchObject({ code: "TC_FITS_INVALID" });
  });

  it("4-D images are refused as unsupported, naming NAXIS", async () => {
    await expect(readFitsImage(join(DEBIAN_FITS, "astropy__complex.fits"), { hdu: 1 })).rejects.toMatchObject({
      code: "TC_FITS_UNSUPPORTED",
      details: { field: "NAXIS" },
    });
  });

  it("a folder scan lists every bad file with its reason and goes on", async () => {
    const folder = join(dir, "mixed");
    mkdirSync(folder);
    for (const c of cases) c.make(join(folder, `${c.name.replace(/\W+/g, "_")}.fit`));
    writeFileSync(join(folder, "notes.txt"), "ignored: not a FITS extension");
    for (let i = 0; i < 3; i++)
      await writeFitsImage(
        join(folder, `good_${i}.fits`),
        { width: 8, height: 4, data: new Float32Array(32) },
        { header: new FitsHeader().set("IMAGETYP", "Light").set("EXPTIME", 30) },
      );
    const result = await scanFrames([folder]);
    expect(result.frames).toHaveLength(3);
    expect(result.bad).toHaveLength(cases.length);
    expect(result.bad.map((b) => b.code).sort()).toEqual(cases.map((c) => c.code).sort());
    expect(result.groups).toEqual([expect.objectContaining({ type: "light", exposureSeconds: 30, count: 3 })]);
  });
});

describe("header-only scan", () => {
  const many = join(dir, "many");
  beforeAll(async () => {
    mkdirSync(many);
    // 1,000 frames whose headers claim 4000×4000 16-bit pixels; the data blocks are sparse (holes), so
    // the files are the right size without 32 GB on disk. Any pixel read would show in bytesRead.
    const h = new FitsHeader()
      .set("SIMPLE", true)
      .set("BITPIX", 16)
      .set("NAXIS", 2)
      .set("NAXIS1", 4000)
      .set("NAXIS2", 4000)
      .set("IMAGETYP", "Light")
      .set("EXPTIME", 120)
      .set("FILTER", "Ha")
      .toBuffer();
    for (let i = 0; i < 1000; i++) {
      const p = join(many, `L_${String(i).padStart(4, "0")}.fits`);
      writeFileSync(p, h);
      truncateSync(p, h.length + 4000 * 4000 * 2 + 1920);
    }
  });

  it("scanning 1,000 files reads exactly their header blocks and no pixel", async () => {
    const r = await scanFrames([many]);
    expect(r.frames).toHaveLength(1000);
    expect(r.bad).toEqual([]);
    expect(r.bytesRead).toBe(1000 * 2880);
    expect(r.groups).toEqual([expect.objectContaining({ filter: "Ha", exposureSeconds: 120, count: 1000 })]);
  });
});
