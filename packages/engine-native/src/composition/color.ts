/**
 * Colour balance of a composed R, G, B image (`composition.color`), in place, on linear data:
 *
 * - **Sky levels.** The image is cut into boxes (about 24 across its shorter side, at least 16 px); per box
 *   and channel the median of its finite pixels after one clip at median + 3σ (stars, hot pixels). The
 *   boxes whose summed level is in the darkest quarter are the sky; a channel's sky level is the median of
 *   its values over those boxes. (The darkest quarter, not the whole image: a nebula over half the frame
 *   has its own colour and would pull each channel's level by a different amount.)
 * - **Background neutralisation** moves every channel's sky to the green channel's: v → v − sky_c + sky_G.
 * - **White balance on stars.** Stars are detected on the sky-subtracted sum of the three channels; kept
 *   are those that are round (roundness > 0.6), isolated (no other detection within the photometry annulus
 *   plus one FWHM), unsaturated (no flat top: fewer than 3 pixels of the 3×3 around the peak within 3 % of
 *   it in any channel, and the peak below 98 % of that channel's brightest pixel) and bright enough (flux
 *   ≥ 20σ of the aperture's sky noise in every channel). Their aperture fluxes (radius 2.5 × the median
 *   FWHM, sky from an annulus) give R/G and B/G; the factors make the median star's colour `starColor`:
 *   k_R = (c_R/c_G) / median(R/G), k_B likewise, k_G = 1, applied about the sky:
 *   v → sky_common + (v − sky_c)·k_c. Median, not mean: a few very red or blue stars do not move it, and
 *   the stars' own colour spread averages out as long as the typical star is the reference colour (the
 *   convention of PixInsight's and Siril's star-based balances; a user who knows their field's typical
 *   star colour gives it as `starColor`).
 * Fewer than 5 such stars, or a factor outside [0.1, 10]: the white balance is skipped and says why (the
 * factors stay 1); the neutralisation still applies.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { MAD_TO_SIGMA, median, type ColorBalanceRecord, type ColorBalanceRequest } from "@tile-compile/core";

/** Stars the white balance needs at least. */
export const MIN_BALANCE_STARS = 5;

/** Per-box sky of each plane and the boxes' summed level; boxes with fewer than half their pixels finite are left out. */
function boxLevels(planes: readonly Float32Array[], W: number, H: number): { levels: number[][]; noise: number[][] } {
  const side = Math.max(16, Math.round(Math.min(W, H) / 24));
  const levels: number[][] = planes.map(() => []),
    noise: number[][] = planes.map(() => []);
  // Boxes wider than 32 px are sampled on every 2nd row and column (≥ 256 values: the median to < 0.1σ).
  const step = side > 32 ? 2 : 1,
    per = Math.ceil(side / step) ** 2;
  const buf = new Float64Array(per);
  for (let y0 = 0; y0 + side <= H; y0 += side)
    for (let x0 = 0; x0 + side <= W; x0 += side) {
      const box: [number, number][] = [];
      for (const p of planes) {
        let k = 0;
        for (let y = y0; y < y0 + side; y += step)
          for (let x = x0; x < x0 + side; x += step) {
            const v = p[y * W + x]!;
            if (Number.isFinite(v)) buf[k++] = v;
          }
        if (k < per / 2) break;
        const vals = buf.subarray(0, k);
        const m = median(vals);
        const s = MAD_TO_SIGMA * median(vals.map((v) => Math.abs(v - m)));
        const kept = vals.filter((v) => v <= m + 3 * s);
        const mk = median(kept);
        box.push([mk, MAD_TO_SIGMA * median(kept.map((v) => Math.abs(v - mk)))]);
      }
      if (box.length < planes.length) continue;
      box.forEach(([m, s], c) => {
        levels[c]!.push(m);
        noise[c]!.push(s);
      });
    }
  return { levels, noise };
}

/**
 * Each plane's sky level and sky noise, from the darkest quarter of the boxes (by the planes' summed box
 * levels; at least 4 boxes). Undefined when no box has enough finite pixels.
 */
export function skyLevels(planes: readonly Float32Array[], W: number, H: number): { sky: number[]; noise: number[] } | undefined {
  const { levels, noise } = boxLevels(planes, W, H);
  const nb = levels[0]!.length;
  if (nb === 0) return undefined;
  const sum = Array.from({ length: nb }, (_, b) => levels.reduce((a, l) => a + l[b]!, 0));
  const order = [...sum.keys()].sort((a, b) => sum[a]! - sum[b]! || a - b);
  const dark = order.slice(0, Math.min(nb, Math.max(4, Math.ceil(nb / 4))));
  return {
    sky: levels.map((l) => median(dark.map((b) => l[b]!))),
    noise: noise.map((l) => median(dark.map((b) => l[b]!))),
  };
}

/** True when a star's peak in `p` has a flat top (≥ 3 pixels of its 3×3 within 3 % of the peak above the sky) or reaches 98 % of `max`. */
function saturated(p: Float32Array, W: number, x: number, y: number, sky: number, max: number): boolean {
  const cx = Math.round(x),
    cy = Math.round(y);
  let peak = -Infinity;
  for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) peak = Math.max(peak, p[(cy + dy) * W + cx + dx]!);
  if (!(peak < 0.98 * max)) return true;
  let near = 0;
  for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) if (p[(cy + dy) * W + cx + dx]! >= peak - 0.03 * (peak - sky)) near++;
  return near >= 3;
}

function maxFinite(p: Float32Array): number {
  let m = -Infinity;
  for (const v of p) if (v > m) m = v;
  return m;
}

/**
 * Balance the colour of `planes` (R, G, B, modified in place) as `req` asks; returns what was done.
 * Undefined sky (no box with enough finite pixels): nothing is changed and `skipped` says so.
 */
export async function balanceColor(
  planes: [Float32Array, Float32Array, Float32Array],
  W: number,
  H: number,
  req: ColorBalanceRequest,
  signal: AbortSignal,
): Promise<ColorBalanceRecord> {
  const levels = skyLevels(planes, W, H);
  const none = { R: 1, G: 1, B: 1 };
  if (!levels)
    return {
      sky: { R: NaN, G: NaN, B: NaN },
      skyCommon: NaN,
      factor: none,
      whiteBalance: req.whiteBalance,
      neutralizeBackground: req.neutralizeBackground,
      skipped: "no part of the image has enough valid pixels to measure the sky",
    };
  const [sR, sG, sB] = levels.sky as [number, number, number];
  const record: ColorBalanceRecord = {
    sky: { R: sR, G: sG, B: sB },
    skyCommon: sG,
    factor: { ...none },
    whiteBalance: req.whiteBalance,
    neutralizeBackground: req.neutralizeBackground,
  };
  if (req.whiteBalance === "stars") Object.assign(record, await starBalance(planes, W, H, levels, req.starColor, signal));
  const k = [record.factor.R, record.factor.G, record.factor.B];
  planes.forEach((p, c) => {
    const sky = levels.sky[c]!,
      to = req.neutralizeBackground ? sG : sky,
      f = k[c]!;
    if (to === sky && f === 1) return;
    for (let i = 0; i < p.length; i++) p[i] = to + (p[i]! - sky) * f;
  });
  if (!req.neutralizeBackground) record.skyCommon = NaN;
  return record;
}

/** The star white balance's factors and figures (factors 1 and `skipped` when it cannot be measured). */
async function starBalance(
  planes: readonly Float32Array[],
  W: number,
  H: number,
  levels: { sky: number[]; noise: number[] },
  color: { R: number; G: number; B: number },
  signal: AbortSignal,
): Promise<Partial<ColorBalanceRecord>> {
  const recon = loadRecon();
  const n = W * H;
  const sum = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = planes[0]![i]! - levels.sky[0]! + planes[1]![i]! - levels.sky[1]! + planes[2]![i]! - levels.sky[2]!;
    sum[i] = Number.isFinite(v) ? v : 0;
  }
  const found = (await recon.detectStars({ data: sum, width: W, height: H }, { maxStars: 2000, signal })).stars;
  const fwhm = median(found.filter((s) => s.roundness > 0.6).map((s) => s.fwhm));
  const skip = (why: string): Partial<ColorBalanceRecord> => ({ skipped: why, stars: 0 });
  if (!Number.isFinite(fwhm)) return skip(`no round stars found for the white balance (${found.length} detections)`);
  const aperture = Math.max(3, 2.5 * fwhm),
    inner = aperture + 2,
    outer = inner + Math.max(5, 1.5 * fwhm);
  const margin = Math.ceil(outer) + 2,
    isolation = outer + fwhm;
  const max = planes.map(maxFinite);
  const candidates = found.filter(
    (s) =>
      s.roundness > 0.6 &&
      s.x >= margin &&
      s.y >= margin &&
      s.x < W - margin &&
      s.y < H - margin &&
      found.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > isolation) &&
      planes.every((p, c) => !saturated(p, W, s.x, s.y, levels.sky[c]!, max[c]!)),
  );
  const plan = { stars: candidates.map((s) => ({ x: s.x, y: s.y })), aperture, annulus: [inner, outer] as [number, number] };
  const flux = await Promise.all(planes.map((p) => recon.aperturePhotometry({ data: p, width: W, height: H }, plan, { signal })));
  // The aperture's sky noise (pixel noise over the disc, plus the annulus median's own error).
  const disc = Math.PI * aperture * aperture,
    ann = Math.PI * (outer * outer - inner * inner);
  const fluxNoise = levels.noise.map((s) => s * Math.sqrt(disc * (1 + (Math.PI / 2) * (disc / ann))));
  const rg: number[] = [],
    bg: number[] = [];
  candidates.forEach((_, i) => {
    const f = flux.map((x) => x.flux[i]!);
    if (!f.every((v, c) => Number.isFinite(v) && v >= 20 * fluxNoise[c]!)) return;
    rg.push(f[0]! / f[1]!);
    bg.push(f[2]! / f[1]!);
  });
  if (rg.length < MIN_BALANCE_STARS)
    return skip(
      `${rg.length} isolated, unsaturated stars bright enough in every channel (${MIN_BALANCE_STARS} needed; ${found.length} detections, ${candidates.length} isolated and unsaturated)`,
    );
  const mRG = median(rg),
    mBG = median(bg);
  const scatter = (v: number[], m: number) => (MAD_TO_SIGMA * median(v.map((x) => Math.abs(x - m)))) / m;
  const factor = { R: color.R / color.G / mRG, G: 1, B: color.B / color.G / mBG };
  const figures = { stars: rg.length, medianRatio: { RG: mRG, BG: mBG }, ratioScatter: { RG: scatter(rg, mRG), BG: scatter(bg, mBG) } };
  if (!(factor.R >= 0.1 && factor.R <= 10 && factor.B >= 0.1 && factor.B <= 10))
    return {
      ...figures,
      skipped: `the stars' median colour (R/G ${mRG.toFixed(3)}, B/G ${mBG.toFixed(3)}) would need a factor outside 0.1–10: the channels are not comparable stacks of one field; set composition.color.white_balance: none`,
    };
  return { ...figures, factor };
}
