/**
 * A seeded, realistic demo library in the job-file seed's layout: a calibration library (biases; darks at
 * −10 °C and −5 °C for 30/60/180 s with hot pixels; flats for L, R, G, B with vignetting) and M 42-like
 * lights — L over two nights plus a short L exposure (an HDR filter), R, G and B — whose sensor
 * temperature drifts ±1.5 °C, with read noise, dark current, sky and star shot noise, a sub-pixel dither
 * between frames and varying seeing. The filters' throughput differs (THROUGHPUT) and the sky glows orange,
 * so the raw colour stacks have a colour cast that the composition's colour balance removes. Every star has
 * known per-channel fluxes (`truth.json`: colour × throughput), so tests can
 * check the colours of the final image. Two jobs: `M42_LRGB.json` (composed) and `M42_HDR.json` (L at two
 * exposures: two stacks, composition skipped).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";

export interface DemoOptions {
  width?: number;
  height?: number;
  stars?: number;
  /** Light frames per (night, filter, exposure). */
  framesPerSet?: number;
  seed?: number;
  /** Also narrowband H, O, S frames (filters Ha, OIII, SII) with flats, and SHO and HOO jobs. */
  narrowband?: boolean;
}

/**
 * The camera's response per colour filter relative to a star's colour (`DemoStar.colour`): blue is the
 * weakest, as on most sensors. A star's flux through filter c is colour[c] × THROUGHPUT[c] (× flux × time).
 */
export const THROUGHPUT = { R: 0.85, G: 1, B: 0.7 } as const;
/** The sky's glow per filter before the throughput (sodium light pollution: orange), per second. */
const SKY_GLOW = { R: 0.5, G: 0.4, B: 0.3 } as const;
const RGB = ["R", "G", "B"] as const;

export interface DemoStar {
  x: number;
  y: number;
  flux: number;
  colour: { R: number; G: number; B: number };
}

export async function generateDemoLibrary(base: string, o: DemoOptions = {}): Promise<{ jobs: string[]; stars: DemoStar[] }> {
  const W = o.width ?? 400,
    H = o.height ?? 300,
    N = o.framesPerSet ?? 6;
  const r = seededRandom(o.seed ?? 2024);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const bias = (x: number, y: number) => 1000 + 3 * Math.sin(x / 5) + 0.002 * y;
  const hot = new Set(Array.from({ length: Math.round((W * H) / 4000) }, () => Math.floor(r() * W * H)));
  const darkRate = (t: number, i: number) => (hot.has(i) ? 25 : 0.02) * 2 ** ((t + 10) / 6);
  const vignette = (x: number, y: number) => 1 - 0.5 * (((x - W / 2) / W) ** 2 + ((y - H / 2) / H) ** 2);
  const common = { GAIN: 100, OFFSET: 20, XBINNING: 1, YBINNING: 1, INSTRUME: "DemoCam 1600", TELESCOP: "Demo 80/480" };
  const dir = (...p: string[]) => {
    const d = join(base, ...p);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const write = async (path: string, kind: string, data: Float32Array, keys: Record<string, string | number>) => {
    const h = new FitsHeader();
    h.set("IMAGETYP", kind);
    for (const [k, v] of Object.entries(keys)) h.set(k, v);
    for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(65535, Math.round(data[i]!)));
    await writeFitsImage(path, { width: W, height: H, data }, { bitpix: 16, header: h });
  };
  const frame = (f: (x: number, y: number, i: number) => number) => {
    const d = new Float32Array(W * H);
    for (let y = 0, i = 0; y < H; y++) for (let x = 0; x < W; x++, i++) d[i] = f(x, y, i);
    return d;
  };

  for (let k = 0; k < 7; k++)
    await write(
      join(dir("calibration/raw/biases/2024_01_15"), `bias_${k}.fit`),
      "Bias Frame",
      frame((x, y) => bias(x, y) + 4 * g()),
      { ...common, EXPTIME: 0, "CCD-TEMP": -10 },
    );
  for (const t of [-10, -5])
    for (const e of [30, 60, 180]) {
      const d = dir(`calibration/raw/darks/2024_01_15_${t}C/${e}`);
      for (let k = 0; k < 7; k++)
        await write(
          join(d, `dark_${k}.fit`),
          "Dark Frame",
          frame((x, y, i) => bias(x, y) + darkRate(t, i) * e + Math.sqrt(16 + darkRate(t, i) * e) * g()),
          { ...common, EXPTIME: e, "CCD-TEMP": Number((t + 0.2 * g()).toFixed(2)) },
        );
    }
  const headerFilter: Record<string, string> = { L: "L", R: "R", G: "G", B: "B", H: "Ha", O: "OIII", S: "SII" };
  for (const f of o.narrowband ? ["L", "R", "G", "B", "H", "O", "S"] : ["L", "R", "G", "B"]) {
    const d = dir(`calibration/raw/flats/2024_01_20/${f}`);
    for (let k = 0; k < 7; k++)
      await write(
        join(d, `flat_${k}.fit`),
        "Flat Field",
        frame((x, y) => {
          const s = 22000 * vignette(x, y);
          return bias(x, y) + s + Math.sqrt(s) * g();
        }),
        { ...common, EXPTIME: 2, "CCD-TEMP": -10, FILTER: headerFilter[f]! },
      );
  }
  // Stars: log-uniform fluxes (per second in L), colours from a blackbody-ish spread.
  const stars: DemoStar[] = [];
  const n = o.stars ?? Math.round((W * H) / 900);
  while (stars.length < n) {
    const s = {
      x: 12 + r() * (W - 24),
      y: 12 + r() * (H - 24),
      flux: 40 * Math.exp(r() * Math.log(80)),
      colour: { R: 0.25 + 0.2 * r(), G: 0.33, B: 0.2 + 0.25 * r() },
    };
    if (stars.every((t) => Math.hypot(t.x - s.x, t.y - s.y) > 10)) stars.push(s);
  }
  const nebula = (x: number, y: number) => 6 * Math.exp(-(((x - W * 0.55) / (W * 0.2)) ** 2 + ((y - H * 0.45) / (H * 0.25)) ** 2));
  const sets: [string, string, number][] = [
    ["2024_01_15", "L", 180],
    ["2024_01_20", "L", 180],
    ["2024_01_15", "L", 30],
    ["2024_01_15", "R", 60],
    ["2024_01_15", "G", 60],
    ["2024_01_15", "B", 60],
  ];
  if (o.narrowband) sets.push(["2024_01_20", "H", 180], ["2024_01_20", "O", 180], ["2024_01_20", "S", 180]);
  // Line emission of the nebula and star continuum through the narrowband filters (per second).
  const line: Record<string, { star: number; neb: number; sky: number }> = {
    H: { star: 0.05, neb: 2.5, sky: 0.05 },
    O: { star: 0.04, neb: 1.2, sky: 0.05 },
    S: { star: 0.03, neb: 0.5, sky: 0.05 },
  };
  for (const [night, filter, e] of sets) {
    const d = dir(`M42/${night}/${filter}${e}`);
    for (let k = 0; k < N; k++) {
      const t = Number((-10 + 1.5 * Math.sin(k * 1.3 + night.length + e)).toFixed(2));
      const dx = 3 * (r() - 0.5),
        dy = 3 * (r() - 0.5); // dither
      const seeing = 1.3 + 0.5 * r();
      const band = filter === "L" ? 1 : 1; // per-channel fluxes below
      const sig = new Float32Array(W * H);
      for (const s of stars) {
        const f =
          (filter === "L"
            ? RGB.reduce((a, c) => a + s.colour[c] * THROUGHPUT[c], 0)
            : line[filter]
              ? line[filter].star
              : s.colour[filter as "R" | "G" | "B"] * THROUGHPUT[filter as "R" | "G" | "B"]) *
          s.flux *
          e *
          band;
        const x0 = s.x + dx,
          y0 = s.y + dy;
        for (let y = Math.max(0, Math.floor(y0) - 9); y < Math.min(H, Math.floor(y0) + 10); y++)
          for (let x = Math.max(0, Math.floor(x0) - 9); x < Math.min(W, Math.floor(x0) + 10); x++) {
            sig[y * W + x] =
              sig[y * W + x]! + (f / (2 * Math.PI * seeing * seeing)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * seeing * seeing));
          }
      }
      // Light-polluted sky and the nebula through each filter (L passes what R, G and B pass together, as real
      // luminance filters do).
      const through = (rate: Record<"R" | "G" | "B", number>) =>
        filter === "L"
          ? RGB.reduce((a, c) => a + rate[c] * THROUGHPUT[c], 0)
          : rate[filter as "R" | "G" | "B"] * THROUGHPUT[filter as "R" | "G" | "B"];
      const skyRate = line[filter]?.sky ?? through(SKY_GLOW);
      const nebRate = line[filter]?.neb ?? through({ R: 1, G: 0.6, B: 0.3 });
      const data = frame((x, y, i) => {
        const photons = (sig[i]! + (skyRate + nebula(x - dx, y - dy) * nebRate) * e) * vignette(x, y);
        const dark = darkRate(t, i) * e;
        return bias(x, y) + photons + dark + Math.sqrt(16 + photons + dark) * g();
      });
      await write(join(d, `${filter}_${e}s_${String(k + 1).padStart(3, "0")}.fit`), "Light Frame", data, {
        ...common,
        OBJECT: "M 42",
        FILTER: headerFilter[filter]!,
        EXPTIME: e,
        "CCD-TEMP": t,
        "DATE-OBS": `${night.replace(/_/g, "-")}T${String(20 + Math.floor(k / 10)).padStart(2, "0")}:${String((k * 3) % 60).padStart(2, "0")}:00`,
      });
    }
  }
  const jobs = dir("jobs");
  const lrgb = join(jobs, "M42_LRGB.json");
  writeFileSync(
    lrgb,
    JSON.stringify(
      {
        name: "M42_LRGB",
        type: "LRGB",
        calibration: { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" },
        lights: {
          L: ["M42/2024_01_15/L180", "M42/2024_01_20/L180"],
          R: "M42/2024_01_15/R60",
          G: "M42/2024_01_15/G60",
          B: "M42/2024_01_15/B60",
        },
        output: "M42/processed",
        options: { temp_tolerance: 2 },
      },
      null,
      2,
    ),
  );
  const hdr = join(jobs, "M42_HDR.json");
  writeFileSync(
    hdr,
    JSON.stringify(
      {
        name: "M42_HDR",
        type: "LRGB",
        calibration: { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" },
        lights: { L: ["M42/2024_01_15/L180", "M42/2024_01_15/L30"] },
        output: "M42/processed_hdr",
      },
      null,
      2,
    ),
  );
  const out = [lrgb, hdr];
  if (o.narrowband) {
    const cal = { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" };
    const sho = join(jobs, "M42_SHO.json"),
      hoo = join(jobs, "M42_HOO.json");
    writeFileSync(
      sho,
      JSON.stringify(
        {
          name: "M42_SHO",
          type: "SHO",
          calibration: cal,
          lights: { S: "M42/2024_01_20/S180", H: "M42/2024_01_20/H180", O: "M42/2024_01_20/O180" },
          output: "M42/processed_sho",
        },
        null,
        2,
      ),
    );
    writeFileSync(
      hoo,
      JSON.stringify(
        {
          name: "M42_HOO",
          type: "HOO",
          calibration: cal,
          lights: { H: "M42/2024_01_20/H180", O: "M42/2024_01_20/O180" },
          output: "M42/processed_hoo",
        },
        null,
        2,
      ),
    );
    out.push(sho, hoo);
  }
  writeFileSync(join(base, "truth.json"), JSON.stringify({ width: W, height: H, throughput: THROUGHPUT, stars }, null, 2));
  return { jobs: out, stars };
}
