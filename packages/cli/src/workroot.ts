/**
 * Per-process scratch space: one folder made with mkdtemp in $TMPDIR (mode 0700, a random name), so two
 * users — or two runs — on one machine never share or guess each other's work folders; removed when the
 * process exits.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TileCompileError } from "@tile-compile/core";

let root: string | undefined;

export function workRoot(): string {
  if (root) return root;
  try {
    root = mkdtempSync(join(tmpdir(), "tile-compile-"));
  } catch (e) {
    throw new TileCompileError("TC_IO", { op: "create the work folder in", file: tmpdir(), reason: (e as Error).message }, { cause: e });
  }
  const made = root;
  process.once("exit", () => {
    try {
      rmSync(made, { recursive: true, force: true });
    } catch {
      /* best effort at exit */
    }
  });
  return made;
}
