/**
 * Siril 1.2+ registration results. `register -2pass` stores each image's homography in the sequence file
 * (format version ≥ 4, as Siril's own `readseqfile` reads it):
 *
 *   S 'name' beg number selnum fixed reference version …
 *   I filenum incl                       one per image, in order
 *   R<layer> fwhm wfwhm roundness quality background stars H h00 h01 h02 h10 h11 h12 h20 h21 h22
 *
 * Which way Siril's H points and in which y convention it is written is not something we can check on
 * this machine (Debian ships 1.0.6), so `chooseTransform` does not assume it: it tries H and H⁻¹, each in
 * Siril's y-down display convention and as is, warps the input with each candidate and keeps the one that
 * reproduces Siril's own `r_` frame — a wrong candidate misplaces every star by pixels, the right one
 * leaves only the interpolation difference.
 */
import { frameStars, invertTransform, matchStars, multiplyTransform } from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";

export interface SeqImage {
  filenum: number;
  included: boolean;
  /** Siril's homography, row-major, when the sequence has registration data (version ≥ 4). */
  H?: number[];
}

export interface SeqFile {
  version: number;
  reference: number;
  images: SeqImage[];
}

/** Parse a Siril sequence file (versions 3–7); registration homographies from version 4 on. */
export function parseSeq(text: string): SeqFile {
  let version = -1,
    reference = 0;
  const images: SeqImage[] = [];
  const byLayer = new Map<string, number[][]>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (line.startsWith("S ")) {
      const m = /^S\s+(?:'[^']*'|\S+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+(\d+)/.exec(line);
      if (!m) throw new Error(`unreadable sequence header: ${line}`);
      reference = Number(m[5]);
      version = Number(m[6]);
    } else if (line.startsWith("I ")) {
      const [filenum, incl] = line.slice(2).trim().split(/\s+/).map(Number);
      images.push({ filenum: filenum!, included: incl !== 0 });
    } else if (/^R[\d*]\s/.test(line) && version >= 4) {
      const parts = line.slice(3).trim().split(/\s+/);
      const h = parts.indexOf("H");
      if (h < 0 || parts.length < h + 10) throw new Error(`unreadable registration line: ${line}`);
      const list = byLayer.get(line[1]!) ?? [];
      list.push(parts.slice(h + 1, h + 10).map(Number));
      byLayer.set(line[1]!, list);
    }
  }
  // The registration layer is the one whose homographies are not all zero (Siril writes R lines for the
  // other layers of a colour sequence too, empty).
  const layer = [...byLayer.values()].find((l) => l.some((m) => m.some((v) => v !== 0)));
  if (layer)
    layer.forEach((H, i) => {
      if (images[i] && H.some((v) => v !== 0)) images[i]!.H = H;
    });
  return { version, reference, images };
}

/**
 * The per-image star figures Siril stores with its registration data: FWHM (px) and roundness, in image
 * order; undefined where Siril measured nothing
 * (a skipped frame). Version 3 (Siril 1.0): `R<layer> shiftx shifty fwhm wfwhm roundness quality`;
 * version ≥ 4: `R<layer> fwhm wfwhm roundness quality background stars H …`. The layer is the one Siril
 * registered on (the only one with non-zero FWHMs).
 */
export function seqFrameFigures(text: string): ({ fwhm: number; roundness: number } | undefined)[] {
  let version = -1;
  const byLayer = new Map<string, number[][]>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("S ")) {
      const m = /^S\s+(?:'[^']*'|\S+)\s+-?\d+\s+\d+\s+\d+\s+\d+\s+-?\d+\s+(\d+)/.exec(line);
      if (m) version = Number(m[1]);
      continue;
    }
    if (!/^R[\d*]\s/.test(line)) continue;
    const list = byLayer.get(line[1]!) ?? [];
    list.push(line.slice(3).trim().split(/\s+/).map(Number));
    byLayer.set(line[1]!, list);
  }
  const [iF, iR] = version >= 4 ? [0, 2] : [2, 4];
  const layer = [...byLayer.values()].find((l) => l.some((p) => (p[iF] ?? 0) > 0));
  if (!layer) return [];
  return layer.map((p) => {
    const fwhm = p[iF] ?? NaN,
      roundness = p[iR] ?? NaN;
    return fwhm > 0 && roundness > 0 && roundness <= 1 ? { fwhm, roundness } : undefined;
  });
}

/** Flip between y-up (FITS, our matrices) and y-down (Siril's display convention) for an image of height h. */
function flip(h: number): number[] {
  return [1, 0, 0, 0, -1, h - 1, 0, 0, 1];
}

/**
 * Our input → reference matrix from Siril's H, chosen by reproducing Siril's registered frame: `input`
 * and `registered` are one plane (the same channel) of the input frame and of Siril's `r_` frame.
 * Returns undefined when no candidate explains the registered frame clearly better than the others.
 */
export async function chooseTransform(
  H: number[],
  input: { data: Float32Array; width: number; height: number },
  registered: { data: Float32Array; width: number; height: number },
  signal?: AbortSignal,
): Promise<{ matrix: number[]; rms: number; runnerUp: number } | undefined> {
  const hi = invertTransform(H);
  const candidates: number[][] = [];
  for (const m of hi ? [[...H], hi] : [[...H]]) {
    candidates.push(m);
    // y_display = height − 1 − y, as in Siril 1.0's printed transforms (stages.ts).
    const f = flip(input.height);
    candidates.push(multiplyTransform(multiplyTransform(f, m), f));
  }
  // Distinct candidates only (for the identity of the reference frame they all coincide).
  const unique = candidates.filter((m, i) => candidates.findIndex((q) => q.every((v, k) => Math.abs(v - m[k]!) < 1e-9)) === i);
  candidates.length = 0;
  candidates.push(...unique);
  const scored = await scoreCandidates(candidates, input, registered, signal);
  return pickReproducing(scored, registered.width, registered.height);
}

/**
 * The candidate that reproduces the registered frame, or undefined when none does clearly: the best
 * residual must be under half that of the first candidate that places the frame differently (by more
 * than 0.05 px anywhere in it). Candidates that agree within 0.05 px everywhere count as one answer.
 */
function pickReproducing(
  scored: { matrix: number[]; rms: number }[],
  W: number,
  H: number,
): { matrix: number[]; rms: number; runnerUp: number } | undefined {
  scored.sort((a, b) => a.rms - b.rms);
  const best = scored[0];
  if (!best) return undefined;
  const corners = [
    [0, 0],
    [W - 1, 0],
    [0, H - 1],
    [W - 1, H - 1],
    [(W - 1) / 2, (H - 1) / 2],
  ] as const;
  const apart = (m: number[]) =>
    corners.some(([x, y]) => {
      const d = (k: number) => (m[k]! - best.matrix[k]!) * x + (m[k + 1]! - best.matrix[k + 1]!) * y + (m[k + 2]! - best.matrix[k + 2]!);
      return Math.hypot(d(0), d(3)) > 0.05;
    });
  const other = scored.find((c) => apart(c.matrix));
  if (other && !(best.rms < 0.5 * other.rms)) return undefined;
  return { matrix: best.matrix, rms: best.rms, runnerUp: other?.rms ?? Infinity };
}

/**
 * Of several candidate input → reference matrices (affine, row-major 3×3) for one frame, the one that
 * reproduces Siril's registered frame (bilinear resampling, as Siril 1.0 writes its `r_` frames); undefined
 * when none does clearly. Used where Siril 1.0's log leaves open which printed transform is whose.
 */
export async function chooseAmong(
  candidates: number[][],
  input: { data: Float32Array; width: number; height: number },
  registered: { data: Float32Array; width: number; height: number },
  signal?: AbortSignal,
): Promise<{ matrix: number[]; rms: number; runnerUp: number } | undefined> {
  return pickReproducing(await scoreCandidates(candidates, input, registered, signal), registered.width, registered.height);
}

/** Each candidate's RMS difference to the registered frame over its central 80 % (warped bilinearly). */
async function scoreCandidates(
  candidates: number[][],
  input: { data: Float32Array; width: number; height: number },
  registered: { data: Float32Array; width: number; height: number },
  signal?: AbortSignal,
): Promise<{ matrix: number[]; rms: number }[]> {
  const recon = loadRecon();
  const W = registered.width,
    Ht = registered.height;
  const x0 = Math.floor(W * 0.1),
    x1 = Math.ceil(W * 0.9),
    y0 = Math.floor(Ht * 0.1),
    y1 = Math.ceil(Ht * 0.9);
  const scored: { matrix: number[]; rms: number }[] = [];
  const out = new Float32Array(W * Ht);
  for (const m of candidates) {
    const inv = invertTransform(m);
    if (!inv) continue;
    // recon.warp takes the output → input map; m maps input → reference (the registered grid).
    await recon.warp({ data: input.data, width: input.width, height: input.height }, inv, {
      width: W,
      height: Ht,
      interpolation: "bilinear",
      out,
      ...(signal ? { signal } : {}),
    });
    let s = 0,
      n = 0;
    for (let y = y0; y < y1; y++)
      for (let x = x0; x < x1; x++) {
        const d = out[y * W + x]! - registered.data[y * W + x]!;
        if (Number.isFinite(d)) {
          s += d * d;
          n++;
        }
      }
    if (n > 0.5 * (x1 - x0) * (y1 - y0)) scored.push({ matrix: m, rms: Math.sqrt(s / n) });
  }
  return scored;
}

/**
 * The input → reference matrix of one frame measured from Siril's own result: stars of the input frame
 * matched (similarity) to the stars of its registered `r_` frame. For frames whose transform Siril 1.0's log
 * does not give — under load its two threads' lines interleave, and lines can go missing altogether (seen:
 * an image's `scale` and `rotation` lines, and in CI a whole image's lines) —, so a frame Siril registered is
 * not lost to a log that cannot be read. Undefined unless at least 10 pairs fit within 0.25 px RMS and the
 * matrix reproduces the registered frame (see chooseAmong).
 */
export async function measureFromRegistered(
  inputPath: string,
  registeredPath: string,
  input: { data: Float32Array; width: number; height: number },
  registered: { data: Float32Array; width: number; height: number },
  signal: AbortSignal,
): Promise<{ matrix: number[]; rmsPx: number; pairs: number } | undefined> {
  const recon = loadRecon();
  const [a, b] = [await frameStars(recon, { path: inputPath }, signal), await frameStars(recon, { path: registeredPath }, signal)];
  // The same stars on both grids, resampled once: partners lie within a fraction of a pixel.
  const m = matchStars(a.stars, b.stars, { model: "similarity", tolerancePx: 1 });
  if (!m.ok || m.pairs < 10 || !(m.rmsPx <= 0.25)) return undefined;
  const check = await chooseAmong([m.matrix], input, registered, signal);
  return check ? { matrix: m.matrix, rmsPx: m.rmsPx, pairs: m.pairs } : undefined;
}
