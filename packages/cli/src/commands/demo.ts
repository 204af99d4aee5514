/**
 * `tile-compile demo [dir]`: generate a seeded, realistic small data set (a star field seen through
 * L, R, G, B at two exposures, with sky background, read noise and shot noise) and run what the
 * pipeline can do today on it with the built-in engines: scan every header, then stack each
 * (filter, exposure) group to `processed/stack_{filter}_{exposure}s.fit`.
 *
 * The full job of the job-file system (calibration, registration, composition, stretch) joins this
 * command as those stages land; until then the demo says which stages it ran.
 */
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { FitsHeader, scanFrames, seededRandom, writeFitsImage } from "@tile-compile/core";
import type { Io } from "../output.js";
import { runCli } from "../program.js";

const W = 320;
const H = 240;

/** Box–Muller normal deviate from a uniform generator. */
function gauss(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
}

export async function generateDemoData(dir: string, seed = 2024): Promise<string> {
  const rnd = seededRandom(seed);
  const stars = Array.from({ length: 60 }, () => ({ x: rnd() * W, y: rnd() * H, flux: 2000 * Math.exp(4 * rnd()), colour: [0.8 + 0.4 * rnd(), 1, 0.7 + 0.6 * rnd()] as const }));
  const plan: [string, number, number][] = [["L", 60, 8], ["L", 15, 4], ["R", 60, 5], ["G", 60, 5], ["B", 60, 5]];
  const lights = join(dir, "M42", "2024_01_15");
  for (const [filter, exposure, count] of plan) {
    const folder = join(lights, `${filter}${exposure}`);
    await mkdir(folder, { recursive: true });
    const weight = filter === "L" ? 1 : filter === "R" ? 0 : filter === "G" ? 1 : 2;
    for (let k = 0; k < count; k++) {
      const seeing = 1.4 + 0.5 * rnd();
      const data = new Float32Array(W * H);
      for (let i = 0; i < data.length; i++) data[i] = 0;
      for (const s of stars) {
        const f = s.flux * (exposure / 60) * (filter === "L" ? 1 : s.colour[weight]! / 2);
        const x0 = Math.max(0, Math.floor(s.x - 8)), x1 = Math.min(W, Math.ceil(s.x + 8));
        const y0 = Math.max(0, Math.floor(s.y - 8)), y1 = Math.min(H, Math.ceil(s.y + 8));
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) data[y * W + x]! += (f / (2 * Math.PI * seeing ** 2)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * seeing ** 2));
      }
      const sky = 300 * (exposure / 60);
      for (let i = 0; i < data.length; i++) {
        const signal = data[i]! + sky;
        data[i] = 1000 + signal + Math.sqrt(signal + 64) * gauss(rnd);
      }
      const header = new FitsHeader()
        .set("IMAGETYP", "Light Frame").set("OBJECT", "M42").set("FILTER", filter)
        .set("EXPTIME", exposure, "[s]", { numberFormat: "float" }).set("CCD-TEMP", -10 + 0.2 * gauss(rnd), "[C]")
        .set("GAIN", 100).set("XBINNING", 1).set("YBINNING", 1)
        .set("DATE-OBS", `2024-01-15T${String(20 + Math.floor(k / 6)).padStart(2, "0")}:${String((k * 7) % 60).padStart(2, "0")}:00`);
      await writeFitsImage(join(folder, `${filter}_${exposure}s_${String(k + 1).padStart(4, "0")}.fit`), { width: W, height: H, data }, { bitpix: 16, header });
    }
  }
  return lights;
}

export async function demoCommand(dirArg: string | undefined, io: Io, signal: AbortSignal, cwd: string): Promise<number> {
  const dir = resolve(cwd, dirArg ?? "tile-compile-demo");
  io.out(`Generating a seeded demo data set in ${dir} …`);
  const lights = await generateDemoData(dir);
  const scan = await scanFrames([lights], { signal });
  io.out(`Scanned ${scan.frames.length} frames in ${scan.groups.length} (filter, exposure) groups.`);
  const processed = join(dir, "M42", "processed");
  for (const g of scan.groups) {
    const out = join(processed, `stack_${g.filter}_${g.exposureSeconds}s.fit`);
    const code = await runCli(["stack", ...g.frames, "--out", out], { io, cwd: dir, signal });
    if (code !== 0) return code;
  }
  io.out(`\nDone: stacks in ${processed}.\nStages run today: scan (headers only) → stack (built-in mean). Calibration, registration, composition and stretch join as they land.`);
  return 0;
}
