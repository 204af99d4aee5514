/**
 * Calibration libraries with a known truth, in the seed's layout, for the offset-source and health-check
 * tests: a cooled mono CCD with a pedestal (bias level) larger than the sky, vignetting, a dust donut
 * (a ring shadow in the light path, so it is in the flats and the lights alike), dark current with hot
 * pixels, read noise. The truth of a calibrated light's sky is flat: `sky` ADU everywhere.
 *
 * What the library holds is chosen per test: bias or not, darks at given exposures, flats with or
 * without flat-darks, lights at given exposures.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FitsHeader, writeFitsImage } from "@tile-compile/core";

export const W = 256,
  H = 192;

export interface CalLibraryOptions {
  /** Bias level (ADU). */
  pedestal?: number;
  /** Sky at the centre of a light (ADU, before vignetting; the calibrated truth). */
  sky?: number;
  /** Dark current (ADU/s) of ordinary pixels; hot pixels have 200×. */
  darkRate?: number;
  readNoise?: number;
  /** Bias frames in calibration/raw/biases/2024_03_01/. */
  bias?: boolean;
  /** Dark exposures (s) in calibration/raw/darks/2024_03_01_-30C/<exp>/. */
  darks?: number[];
  /** Flat exposure (s); flats in calibration/raw/flats/2024_03_01/L/. */
  flatExposure?: number;
  /** Light exposures (s): M1/2024_03_02/L<exp>/. */
  lights?: number[];
  /** Frames per light folder. */
  lightsPerSet?: number;
  /** A sky-free light (dark frames as lights): only offset + dark current + noise, to measure the dark residual. */
  darkLights?: boolean;
  seed?: number;
}

/** Deterministic normal deviates. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Vignetting: 1 at the centre, 0.8 in the corners. */
export function vignette(x: number, y: number): number {
  const r2 = ((x - W / 2) / (W / 2)) ** 2 + ((y - H / 2) / (W / 2)) ** 2;
  return 1 - 0.2 * (r2 / 1.5625);
}
/** A dust donut: a ring shadow 8 % deep, radius 24 px, width 10 px, centred at (70, 60). */
export function donut(x: number, y: number): number {
  const r = Math.hypot(x - 70, y - 60);
  return 1 - 0.08 * Math.exp(-(((r - 24) / 5) ** 2));
}
const HOT = new Set([31 * W + 40, 100 * W + 200, 150 * W + 90, 20 * W + 230]);

export async function makeCalibrationLibrary(
  base: string,
  o: CalLibraryOptions = {},
): Promise<{ job: (cal: Record<string, unknown>, extra?: Record<string, unknown>) => string }> {
  const pedestal = o.pedestal ?? 590,
    sky = o.sky ?? 480,
    rate = o.darkRate ?? 0.002,
    rn = o.readNoise ?? 6;
  const g = gaussian(o.seed ?? 11);
  const biasPattern = (x: number) => pedestal + 2 * Math.sin(x / 9);
  const dark = (i: number, t: number) => (HOT.has(i) ? 200 * rate : rate) * t;
  const write = async (path: string, kind: string, exp: number, value: (x: number, y: number, i: number) => number) => {
    const data = new Float32Array(W * H);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const i = y * W + x;
        data[i] = Math.max(0, Math.min(65535, Math.round(value(x, y, i) + rn * g())));
      }
    const h = new FitsHeader();
    h.set("IMAGETYP", kind)
      .set("EXPTIME", exp)
      .set("CCD-TEMP", -30)
      .set("XBINNING", 2)
      .set("YBINNING", 2)
      .set("FILTER", "L")
      .set("INSTRUME", "SimCCD");
    if (kind === "Light Frame") h.set("OBJECT", "M1").set("DATE-OBS", "2024-03-02T22:00:00");
    await writeFitsImage(path, { width: W, height: H, data }, { bitpix: 16, header: h });
  };
  const dir = (...p: string[]) => {
    const d = join(base, ...p);
    mkdirSync(d, { recursive: true });
    return d;
  };
  if (o.bias)
    for (let k = 0; k < 8; k++)
      await write(join(dir("calibration/raw/biases/2024_03_01"), `bias_${k}.fit`), "Bias Frame", 0, (x) => biasPattern(x));
  for (const t of o.darks ?? [])
    for (let k = 0; k < 8; k++)
      await write(
        join(dir(`calibration/raw/darks/2024_03_01_-30C/${t}`), `dark_${k}.fit`),
        "Dark Frame",
        t,
        (x, _y, i) => biasPattern(x) + dark(i, t),
      );
  const tf = o.flatExposure ?? 1;
  for (let k = 0; k < 8; k++)
    await write(
      join(dir("calibration/raw/flats/2024_03_01/L"), `flat_${k}.fit`),
      "Flat Field",
      tf,
      (x, y, i) => biasPattern(x) + dark(i, tf) + 25000 * vignette(x, y) * donut(x, y),
    );
  const n = o.lightsPerSet ?? 4;
  for (const t of o.lights ?? [180]) {
    const d = dir(`M1/2024_03_02/L${t}`);
    for (let k = 0; k < n; k++)
      await write(
        join(d, `light_${k}.fit`),
        "Light Frame",
        t,
        (x, y, i) => biasPattern(x) + dark(i, t) + (o.darkLights ? 0 : sky * vignette(x, y) * donut(x, y)),
      );
  }
  dir("jobs");
  return {
    job: (cal, extra = {}) => {
      const path = join(base, "jobs", `job_${Object.keys(cal).join("_") || "none"}.json`);
      writeFileSync(
        path,
        JSON.stringify(
          {
            name: "M1",
            type: "MONO",
            calibration: cal,
            lights: { L: (o.lights ?? [180]).map((t) => `M1/2024_03_02/L${t}`) },
            output: "M1/processed",
            ...extra,
          },
          null,
          2,
        ),
      );
      return path;
    },
  };
}

/** Truth helpers for the tests: corner/centre of a calibrated frame and the donut contrast, measured directly. */
export function skyFigures(data: Float32Array): { cornerVsCentre: number; donutContrast: number } {
  const box = (x0: number, y0: number, x1: number, y1: number, keep: (x: number, y: number) => boolean = () => true) => {
    const v: number[] = [];
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (keep(x, y)) v.push(data[y * W + x]!);
    v.sort((a, b) => a - b);
    return v[v.length >> 1]!;
  };
  const notDonut = (x: number, y: number) => Math.abs(Math.hypot(x - 70, y - 60) - 24) > 14;
  const centre = box(W / 2 - 32, H / 2 - 24, W / 2 + 32, H / 2 + 24);
  const c = 24;
  const corners = (box(0, 0, c, c) + box(W - c, 0, W, c) + box(0, H - c, c, H, notDonut) + box(W - c, H - c, W, H)) / 4;
  const ring = box(40, 30, 100, 90, (x, y) => Math.abs(Math.hypot(x - 70, y - 60) - 24) < 3);
  const around = box(20, 10, 120, 110, (x, y) => {
    const r = Math.hypot(x - 70, y - 60);
    return r > 38 && r < 50;
  });
  return { cornerVsCentre: corners / centre - 1, donutContrast: ring / around - 1 };
}
