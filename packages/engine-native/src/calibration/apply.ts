/**
 * Light calibration: calibrated = (light − dark) / flat, where the master dark already holds the bias
 * (it is a combination of raw darks). Without a dark, the bias is subtracted instead; with
 * `dark_scaling`, the dark's thermal part is scaled by the exposure ratio: dark' = bias + (dark − bias)·t/t_d.
 * The master flat is normalised to mean 1.
 *
 * Cosmetic correction: hot pixels are those of the master dark more than 8 robust σ (1.4826·MAD) above its
 * median, cold pixels those of the master flat below 50 % of its mean; each is replaced by the median of
 * its nearest same-colour neighbours (distance 2 on a CFA mosaic, 1 otherwise). The map is computed once
 * per master pair.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "@tile-compile/core";
import { readFitsImage, type FitsImage } from "@tile-compile/core";
import { writeFitsImage } from "@tile-compile/core";
import { MAD_TO_SIGMA } from "@tile-compile/core";

export interface Masters {
  dark?: FitsImage;
  bias?: FitsImage;
  flat?: FitsImage;
}

export interface CalibrateOptions {
  darkScaling?: boolean;
  /** A constant offset (ADU) subtracted when neither a dark nor an offset master is given. */
  pedestal?: number;
  cosmetic?: boolean;
  signal?: AbortSignal;
  history?: string[];
}

export interface DefectMap {
  hot: Uint32Array;
  cold: Uint32Array;
}

/** Hot pixels from the master dark, cold pixels from the master flat. */
export async function defectMap(m: Masters): Promise<DefectMap> {
  const recon = loadRecon();
  const hot: number[] = [],
    cold: number[] = [];
  if (m.dark) {
    const s = await recon.robustStats(m.dark.data, { iterations: 0 });
    const limit = s.median + 8 * MAD_TO_SIGMA * Math.max(s.mad, 1e-6);
    m.dark.data.forEach((v, i) => {
      if (v > limit) hot.push(i);
    });
  }
  if (m.flat)
    m.flat.data.forEach((v, i) => {
      if (v < 0.5) cold.push(i);
    });
  return { hot: Uint32Array.from(hot), cold: Uint32Array.from(cold) };
}

function repair(data: Float32Array, width: number, height: number, channels: number, indices: Uint32Array, cfa: boolean): void {
  const step = cfa ? 2 : 1;
  const n = width * height;
  const bad = new Set(indices);
  const nb: number[] = [];
  for (const idx of indices) {
    const c = Math.floor(idx / n),
      p = idx % n,
      x = p % width,
      y = Math.floor(p / width);
    nb.length = 0;
    for (let dy = -step; dy <= step; dy += step)
      for (let dx = -step; dx <= step; dx += step) {
        if (dx === 0 && dy === 0) continue;
        const xx = x + dx,
          yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= width || yy >= height) continue;
        const q = c * n + yy * width + xx;
        if (!bad.has(q) && Number.isFinite(data[q]!)) nb.push(data[q]!);
      }
    if (nb.length) {
      nb.sort((a, b) => a - b);
      const h = nb.length >> 1;
      data[idx] = nb.length % 2 ? nb[h]! : (nb[h - 1]! + nb[h]!) / 2;
    }
  }
  void channels;
}

/**
 * Subtract the dark master (which holds the bias). With `scaling`, a dark of another exposure t_d is
 * scaled to the light's t by its thermal part over the offset master's own exposure t0 (0 for a bias; a
 * short dark used as the offset has one): dark'(t) = offset + (dark − offset)·(t − t0)/(t_d − t0).
 * Returns the HISTORY phrase.
 */
export function subtractDark(
  d: Float32Array,
  dark: FitsImage,
  scaling?: { offset: FitsImage | undefined; exposure: number | undefined },
): string {
  const n = d.length;
  const dexp = dark.header.getNumber("EXPTIME");
  const offset = scaling?.offset,
    exp = scaling?.exposure;
  const t0 = offset?.header.getNumber("EXPTIME") ?? 0;
  if (offset && exp !== undefined && dexp && Math.abs(exp - dexp) > 1e-6 && dexp > t0) {
    const k = (exp - t0) / (dexp - t0);
    for (let i = 0; i < n; i++) d[i] = d[i]! - (offset.data[i]! + (dark.data[i]! - offset.data[i]!) * k);
    return `dark scaled ×${k.toFixed(4)} (bias + thermal)`;
  }
  for (let i = 0; i < n; i++) d[i] = d[i]! - dark.data[i]!;
  return "dark (incl. bias) subtracted";
}

/** Subtract the offset master: a bias, or the shortest dark standing in for one. Returns the HISTORY phrase. */
export function subtractBias(d: Float32Array, bias: FitsImage): string {
  for (let i = 0; i < d.length; i++) d[i] = d[i]! - bias.data[i]!;
  return bias.header.getString("IMAGETYP") === "Master Dark"
    ? `offset: shortest dark (${bias.header.getNumber("EXPTIME") ?? "?"} s) subtracted`
    : "bias subtracted";
}

/** Subtract a constant offset (ADU): the camera's pedestal when there is no bias or dark. */
export function subtractPedestal(d: Float32Array, pedestal: number): string {
  for (let i = 0; i < d.length; i++) d[i] = d[i]! - pedestal;
  return `pedestal ${pedestal} ADU subtracted`;
}

/** Divide by the flat master (normalised to mean 1). */
export function flatCorrect(d: Float32Array, flat: FitsImage): string {
  for (let i = 0; i < d.length; i++) d[i] = d[i]! / flat.data[i]!;
  return "divided by the flat (mean 1)";
}

/** Replace the masters' hot and cold pixels by the median of their neighbours (same CFA colour on a mosaic). */
export function repairDefects(d: Float32Array, light: FitsImage, defects: DefectMap): string {
  const cfa = light.channels === 1 && typeof light.header.get("BAYERPAT") === "string";
  repair(d, light.width, light.height, light.channels, defects.hot, cfa);
  repair(d, light.width, light.height, light.channels, defects.cold, cfa);
  return `cosmetic: ${defects.hot.length} hot, ${defects.cold.length} cold pixels repaired`;
}

/** Calibrate one light into `output` (float32 FITS, header carried over, HISTORY added). */
export async function calibrateLight(
  lightPath: string,
  output: string,
  m: Masters,
  defects: DefectMap | undefined,
  o: CalibrateOptions = {},
): Promise<void> {
  const light = await readFitsImage(lightPath, o.signal ? { signal: o.signal } : {});
  const n = light.data.length;
  for (const [name, img] of Object.entries(m) as [string, FitsImage | undefined][]) {
    if (img && (img.width !== light.width || img.height !== light.height || img.data.length !== n)) {
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: lightPath,
        reason: `is ${light.width}×${light.height}×${light.channels}, the master ${name} ${img.width}×${img.height}×${img.channels}`,
      });
    }
  }
  const d = light.data;
  const exp = light.header.getNumber("EXPTIME") ?? light.header.getNumber("EXPOSURE");
  // ccdproc's order: the offset and the dark signal out, then the flat, then the defects.
  const steps: string[] = [];
  if (m.dark) steps.push(subtractDark(d, m.dark, o.darkScaling ? { offset: m.bias, exposure: exp } : undefined));
  else if (m.bias) steps.push(subtractBias(d, m.bias));
  else if (o.pedestal !== undefined) steps.push(subtractPedestal(d, o.pedestal));
  if (m.flat) steps.push(flatCorrect(d, m.flat));
  if (defects && o.cosmetic !== false) steps.push(repairDefects(d, light, defects));
  const header = light.header.withoutStructure();
  header.set(
    "CALSTAT",
    [m.bias || m.dark || o.pedestal !== undefined ? "B" : "", m.dark ? "D" : "", m.flat ? "F" : ""].join(""),
    "calibration applied (B bias, D dark, F flat)",
  );
  await writeFitsImage(
    output,
    { width: light.width, height: light.height, channels: light.channels, data: d },
    {
      header,
      history: [...(o.history ?? []), `calibrated: ${steps.join("; ")}`],
      durable: false,
      ...(o.signal ? { signal: o.signal } : {}),
    },
  );
}
