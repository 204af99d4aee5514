/**
 * `tile-compile demo [dir]`: generate a seeded, realistic LRGB data set with a calibration library
 * (two nights of L, an HDR short L exposure, R/G/B; biases, darks at two temperatures, flats) and run the
 * full job on it with the built-in engines: validate → calibrate (masters built) → register → stack per
 * (filter, exposure) → compose LRGB → stretch with PNG previews; then the HDR job (two L stacks,
 * composition skipped with the reason). Running it again reuses every finished step.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { generateDemoLibrary } from "../demo-library.js";
import type { Io } from "../output.js";
import { runCli } from "../program.js";

export async function demoCommand(dirArg: string | undefined, io: Io, signal: AbortSignal, cwd: string): Promise<number> {
  const dir = resolve(cwd, dirArg ?? "tile-compile-demo");
  let jobs: string[];
  if (existsSync(join(dir, "jobs", "M42_LRGB.json")) && existsSync(join(dir, "truth.json"))) {
    io.out(`Using the demo data set in ${dir} (delete the folder to generate it again).`);
    jobs = [join(dir, "jobs", "M42_LRGB.json"), join(dir, "jobs", "M42_HDR.json")];
  } else {
    io.out(`Generating a seeded demo data set in ${dir} …`);
    ({ jobs } = await generateDemoLibrary(dir));
  }
  for (const job of jobs) {
    io.out(`\n$ tile-compile run ${job.slice(dir.length + 1)}`);
    const code = await runCli(["run", job], { io, cwd: dir, signal });
    if (code !== 0) return code;
  }
  io.out(
    `\nDone. Open ${join(dir, "M42", "processed", "M42_LRGB_stretched.png")} for the colour image; the linear data is M42_LRGB_linear.fits, the per-filter stacks stack_*.fit; report.html shows the run (frames, decisions, previews, timings) and run.json records every decision.`,
  );
  return 0;
}
