/**
 * A seeded calibration library and job set in the seed's layout, for the job tests: biases, darks at two
 * temperatures and three exposures (with hot pixels), flats for L/R/G/B/H/O/S (vignetting), and lights over
 * two nights whose sensor temperature drifts ±1.5 °C around −10 °C. Small frames (96×64, 16-bit).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";

export const W = 96,
  H = 64;
export const HOT = [
  [10, 10],
  [50, 20],
  [70, 40],
  [30, 55],
  [88, 5],
] as const;

export function model(seed: number) {
  const r = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const bias = (x: number) => 1000 + 3 * Math.sin(x / 5);
  const darkRate = (t: number, x: number, y: number) => (HOT.some(([hx, hy]) => hx === x && hy === y) ? 40 : 0.05) * 2 ** ((t + 10) / 6);
  const vignette = (x: number, y: number) => 1 - 0.3 * (((x - W / 2) / W) ** 2 + ((y - H / 2) / H) ** 2) * 2;
  return { r, g, bias, darkRate, vignette };
}

async function frame(
  path: string,
  kind: string,
  values: (x: number, y: number) => number,
  keys: Record<string, string | number>,
): Promise<void> {
  const data = new Float32Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * W + x] = Math.max(0, Math.min(65535, Math.round(values(x, y))));
  const h = new FitsHeader();
  h.set("IMAGETYP", kind);
  for (const [k, v] of Object.entries(keys)) h.set(k, v);
  await writeFitsImage(path, { width: W, height: H, data }, { bitpix: 16, header: h });
}

export async function makeLibrary(base: string, opts: { lightsPerNight?: number } = {}): Promise<void> {
  const m = model(7);
  const n = opts.lightsPerNight ?? 4;
  const common = { GAIN: 100, XBINNING: 1, YBINNING: 1, INSTRUME: "TestCam" };
  const dir = (...p: string[]) => {
    const d = join(base, ...p);
    mkdirSync(d, { recursive: true });
    return d;
  };
  for (let i = 0; i < 6; i++)
    await frame(join(dir("calibration/raw/biases/2024_01_15"), `bias_${i}.fit`), "Bias Frame", (x) => m.bias(x) + 5 * m.g(), {
      ...common,
      EXPTIME: 0,
      "CCD-TEMP": -10,
    });
  for (const t of [-10, -5])
    for (const e of [60, 180, 300]) {
      const d = dir(`calibration/raw/darks/2024_01_15_${t}C/${e}`);
      for (let i = 0; i < 5; i++)
        await frame(join(d, `dark_${i}.fit`), "Dark Frame", (x, y) => m.bias(x) + m.darkRate(t, x, y) * e + 5 * m.g(), {
          ...common,
          EXPTIME: e,
          "CCD-TEMP": t + (m.r() - 0.5) * 0.4,
        });
    }
  for (const f of ["L", "R", "G", "B", "H", "O", "S"]) {
    const d = dir(`calibration/raw/flats/2024_01_20/${f}`);
    for (let i = 0; i < 5; i++)
      await frame(join(d, `flat_${i}.fit`), "Flat Field", (x, y) => m.bias(x) + 20000 * m.vignette(x, y) * (1 + 0.01 * m.g()), {
        ...common,
        EXPTIME: 1,
        "CCD-TEMP": -10,
        FILTER: f === "H" ? "Ha" : f === "O" ? "OIII" : f === "S" ? "SII" : f,
      });
  }
  const stars = Array.from({ length: 12 }, () => ({ x: 8 + m.r() * (W - 16), y: 8 + m.r() * (H - 16), f: 2000 + 20000 * m.r() }));
  const sky = (x: number, y: number) =>
    200 + stars.reduce((a, s) => a + (s.f / (2 * Math.PI * 2.25)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / 4.5), 0);
  const lights: [string, string, number][] = [
    ["2024_01_15", "L", 180],
    ["2024_01_20", "L", 180],
    ["2024_01_15", "R", 60],
    ["2024_01_15", "G", 60],
    ["2024_01_15", "B", 60],
    ["2024_01_15", "H", 300],
    ["2024_01_15", "O", 300],
    ["2024_01_15", "S", 300],
  ];
  for (const [night, f, e] of lights) {
    const d = dir(`M42/${night}/${f}${e}`);
    for (let i = 0; i < n; i++) {
      const t = -10 + 1.5 * Math.sin(i + night.length); // drifts within ±1.5 °C
      await frame(
        join(d, `light_${f}_${i}.fit`),
        "Light Frame",
        (x, y) => m.bias(x) + m.darkRate(t, x, y) * e + sky(x, y) * m.vignette(x, y) + 4 * m.g(),
        {
          ...common,
          EXPTIME: e,
          "CCD-TEMP": Number(t.toFixed(2)),
          FILTER: f === "H" ? "Ha" : f === "O" ? "OIII" : f === "S" ? "SII" : f,
          "DATE-OBS": `${night.replace(/_/g, "-")}T22:00:0${i}`,
        },
      );
    }
  }
  const jobs = dir("jobs");
  writeFileSync(
    join(jobs, "M42_LRGB.json"),
    JSON.stringify(
      {
        name: "M42_LRGB",
        type: "LRGB",
        calibration: { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" },
        lights: {
          L: ["M42/2024_01_15/L180", "M42/2024_01_20/L180"],
          R: ["M42/2024_01_15/R60"],
          G: ["M42/2024_01_15/G60"],
          B: ["M42/2024_01_15/B60"],
        },
        output: "M42/processed",
        options: { temp_tolerance: 2 },
      },
      null,
      2,
    ),
  );
  writeFileSync(
    join(jobs, "M42_SHO.yaml"),
    `name: M42_SHO\ntype: SHO\ncalibration: { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" }\nlights:\n  S: M42/2024_01_15/S300\n  H: M42/2024_01_15/H300\n  O: M42/2024_01_15/O300\noutput: M42/processed_sho\n`,
  );
}
