/**
 * One temporary root per test run: every test's `os.tmpdir()` files (copied frames, work folders, Siril
 * sequences — several GB for the Seestar tests) land under it, and it is removed when the run ends, so
 * repeated runs do not fill the disk. Set TILE_COMPILE_KEEP_TMP=1 to keep it for debugging.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "tile-compile-tests-"));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (process.env.TILE_COMPILE_KEEP_TMP === "1") console.log(`kept test files in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  };
}
