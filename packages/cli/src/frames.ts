/**
 * The frames a command works on: FITS files and folders named on the command line (relative to the current
 * folder). An unreadable entry or no FITS file at all is an input error naming what was given.
 */
import { resolve } from "node:path";
import { findFitsFiles, TileCompileError } from "@tile-compile/core";

export async function framesFrom(inputs: readonly string[], cwd: string, signal: AbortSignal): Promise<string[]> {
  const { files, bad } = await findFitsFiles(
    inputs.map((i) => resolve(cwd, i)),
    signal,
  );
  if (bad.length > 0) throw new TileCompileError("TC_INPUT_INVALID", { input: bad[0]!.path, reason: bad[0]!.reason });
  if (files.length === 0)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: inputs.join(", "),
      reason: "no FITS files found",
      hint: "Give FITS files or folders holding .fit/.fits/.fz files.",
    });
  return files;
}
