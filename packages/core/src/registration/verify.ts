/**
 * A check of a registration that does not use the star lists: the pixels. Around every reference star
 * (its brightest 60, matched or not), the reference's pixels are correlated with the frame's pixels at
 * the places the transform maps them to. A right transform puts the frame's stars on the reference's
 * (correlation near 1 whatever the seeing or transparency); a wrong one puts sky or other stars there
 * (near 0). The same is measured for the transform moved by 3 FWHM in four directions (controls), so a
 * smooth gradient or a bright glow that correlates anywhere cannot pass.
 *
 * Used where the star evidence alone is thin (a match of fewer than six stars): such a match is accepted
 * only when the pixels agree too.
 */
import type { FitsImage } from "@tile-compile/fits";
import { apply, invert, type Point } from "./geometry.js";

export interface PixelAgreement {
  /** Correlation of the reference's and the frame's star pixels under the transform. */
  r: number;
  /** The highest correlation under the transform moved by 3 FWHM (four directions). */
  control: number;
  /** Pixels compared. */
  samples: number;
}

/** Bilinear sample of the first plane at (x, y); NaN outside. */
function sample(img: FitsImage, x: number, y: number): number {
  const x0 = Math.floor(x),
    y0 = Math.floor(y);
  if (x0 < 0 || y0 < 0 || x0 + 1 >= img.width || y0 + 1 >= img.height) return Number.NaN;
  const fx = x - x0,
    fy = y - y0,
    w = img.width,
    d = img.data;
  const i = y0 * w + x0;
  return (1 - fy) * ((1 - fx) * d[i]! + fx * d[i + 1]!) + fy * ((1 - fx) * d[i + w]! + fx * d[i + w + 1]!);
}

function correlation(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 10) return Number.NaN;
  let mx = 0,
    my = 0;
  for (let k = 0; k < n; k++) {
    mx += xs[k]!;
    my += ys[k]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0,
    sxx = 0,
    syy = 0;
  for (let k = 0; k < n; k++) {
    const a = xs[k]! - mx,
      b = ys[k]! - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : Number.NaN;
}

/**
 * Correlate `reference` and `frame` around the reference's stars under `matrix` (frame → reference pixel
 * coordinates, as a registration returns it), in boxes of ±1.5 FWHM (at least ±3 px).
 */
export function pixelAgreement(
  reference: FitsImage,
  refStars: readonly Point[],
  frame: FitsImage,
  matrix: readonly number[],
  fwhm: number,
): PixelAgreement {
  const inv = invert(matrix);
  if (!inv) return { r: Number.NaN, control: Number.NaN, samples: 0 };
  const half = Math.max(3, Math.ceil(1.5 * (Number.isFinite(fwhm) ? fwhm : 3)));
  const shift = 3 * Math.max(2, Number.isFinite(fwhm) ? fwhm : 3);
  const measure = (dx: number, dy: number): { r: number; n: number } => {
    const a: number[] = [],
      b: number[] = [];
    for (const s of refStars.slice(0, 60)) {
      for (let y = Math.round(s.y) - half; y <= Math.round(s.y) + half; y++)
        for (let x = Math.round(s.x) - half; x <= Math.round(s.x) + half; x++) {
          if (x < 0 || y < 0 || x >= reference.width || y >= reference.height) continue;
          const p = apply(inv, { x: x + dx, y: y + dy });
          const v = sample(frame, p.x, p.y);
          const u = reference.data[y * reference.width + x]!;
          if (Number.isFinite(v) && Number.isFinite(u)) {
            a.push(u);
            b.push(v);
          }
        }
    }
    return { r: correlation(a, b), n: a.length };
  };
  const main = measure(0, 0);
  const controls = [
    [shift, 0],
    [-shift, 0],
    [0, shift],
    [0, -shift],
  ]
    .map(([dx, dy]) => measure(dx!, dy!).r)
    .filter(Number.isFinite);
  return { r: main.r, control: controls.length ? Math.max(...controls) : Number.NaN, samples: main.n };
}

/** The rule: the pixels agree (r ≥ 0.5) and clearly better than off the transform (by ≥ 0.3). */
export function pixelsConfirm(p: PixelAgreement): boolean {
  return p.r >= 0.5 && Number.isFinite(p.control) && p.r - p.control >= 0.3;
}
