/**
 * Test helpers around the CFITSIO command-line tools (Debian libcfitsio-bin, fitsverify), our oracle
 * for FITS reading and writing. A missing tool makes the calling test skip with one printed line.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function haveTool(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
}

const announced = new Set<string>();
/** True when the tool exists; otherwise prints (once) how to install it and returns false. */
export function requireTool(name: string, pkg: string): boolean {
  if (haveTool(name)) return true;
  if (!announced.has(name)) {
    announced.add(name);
    console.warn(
      `SKIP: ${name} not found — install it with: apt-get install -y ${pkg}   (CI installs it; tests needing it are skipped here)`,
    );
  }
  return false;
}

/** Parse a FITS file written by CFITSIO with BITPIX −64: the first HDU's doubles. */
export function readDoublesFits(path: string): Float64Array {
  const buf = readFileSync(path);
  let off = 0;
  for (; ; off += 80) {
    if (buf.toString("latin1", off, off + 3) === "END" && buf.toString("latin1", off + 3, off + 80).trim() === "") break;
  }
  const dataStart = Math.ceil((off + 80) / 2880) * 2880;
  let n = 1;
  const text = buf.toString("latin1", 0, dataStart);
  const naxis = Number(/NAXIS {3}=\s*(\d+)/.exec(text)![1]);
  for (let i = 1; i <= naxis; i++) n *= Number(new RegExp(`NAXIS${i}\\s*=\\s*(\\d+)`).exec(text)![1]);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readDoubleBE(dataStart + i * 8);
  return out;
}

/** Pixels of `file[hdu]` as CFITSIO sees them: `imcopy 'file[hdu][pixd X]'` → doubles. */
export function cfitsioPixels(file: string, hdu: number): Float64Array {
  const dir = mkdtempSync(join(tmpdir(), "tc-oracle-"));
  try {
    const out = join(dir, "o.fits");
    execFileSync("imcopy", [`${file}[${hdu}][pixd X]`, `!${out}`], { stdio: "pipe" });
    return readDoublesFits(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run fitsverify; returns its error and warning counts and the report. */
export function fitsverify(path: string): { errors: number; warnings: number; report: string } {
  const full = spawnSync("fitsverify", [path], { encoding: "utf8" });
  const report = `${full.stdout}${full.stderr}`;
  const m = /found (\d+) warning\(s\) and (\d+) error\(s\)/i.exec(report);
  return { warnings: m ? Number(m[1]) : -1, errors: m ? Number(m[2]) : -1, report };
}

const REPO = new URL("../../../", import.meta.url).pathname;

/** The shared real frames (../shared/data/seestar next to the repository, or $TILE_COMPILE_DATA/seestar). */
export function seestarDir(): string | undefined {
  const candidates = [
    process.env.TILE_COMPILE_DATA && join(process.env.TILE_COMPILE_DATA, "seestar"),
    join(REPO, "..", "shared", "data", "seestar"),
    "/work/shared/data/seestar",
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  if (!announced.has("seestar")) {
    announced.add("seestar");
    console.warn(
      "SKIP: the shared Seestar frames were not found (looked in $TILE_COMPILE_DATA/seestar and ../shared/data/seestar); tests on real frames are skipped",
    );
  }
  return undefined;
}
export const DEBIAN_FITS = new URL("../../../test/fixtures/debian-fits/", import.meta.url).pathname;
