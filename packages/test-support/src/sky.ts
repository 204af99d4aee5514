/**
 * The seeded synthetic sky the tests share: a star catalogue in reference-frame pixels, rendered through a
 * known transform (input pixel → reference pixel) with a Gaussian PSF and Gaussian noise.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { applyTransform as apply, invertTransform as invert, seededRandom, writeFitsImage } from "@tile-compile/core";

export interface CatalogStar {
  x: number;
  y: number;
  flux: number;
}

export function catalog(width: number, height: number, n: number, seed: number, margin = -200): CatalogStar[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => ({
    x: margin + r() * (width - 2 * margin),
    y: margin + r() * (height - 2 * margin),
    flux: 3000 * Math.exp(r() * Math.log(60)),
  }));
}

/** Render the catalogue as seen by a frame whose pixels map to the reference through `toRef`. */
export function render(
  cat: readonly CatalogStar[],
  width: number,
  height: number,
  toRef: number[],
  seed: number,
  opts: { sigma?: number; sky?: number; noise?: number } = {},
): Float32Array {
  const { sigma = 1.6, sky = 800, noise = 8 } = opts;
  const r = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const data = new Float32Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = sky + noise * g();
  const fromRef = invert(toRef)!;
  const R = Math.ceil(5 * sigma);
  for (const s of cat) {
    const p = apply(fromRef, s);
    if (p.x < -R || p.y < -R || p.x > width + R || p.y > height + R) continue;
    const amp = s.flux / (2 * Math.PI * sigma * sigma);
    for (let y = Math.max(0, Math.floor(p.y) - R); y <= Math.min(height - 1, Math.floor(p.y) + R); y++) {
      for (let x = Math.max(0, Math.floor(p.x) - R); x <= Math.min(width - 1, Math.floor(p.x) + R); x++) {
        data[y * width + x] = data[y * width + x]! + amp * Math.exp(-((x - p.x) ** 2 + (y - p.y) ** 2) / (2 * sigma * sigma));
      }
    }
  }
  return data;
}

/** Input → reference matrix for a rotation `deg` about the frame centre, a scale and a shift. */
export function knownTransform(width: number, height: number, deg: number, scale: number, dx: number, dy: number): number[] {
  const t = (deg * Math.PI) / 180,
    c = Math.cos(t) * scale,
    s = Math.sin(t) * scale;
  const cx = (width - 1) / 2,
    cy = (height - 1) / 2;
  return [c, -s, cx - c * cx + s * cy + dx, s, c, cy - s * cx - c * cy + dy, 0, 0, 1];
}

/**
 * Four 400×300 frames for the `register` command: a reference, two shifted copies of its sky (the second
 * by (dx, dy): its pixel p maps to the reference at p + (dx, dy)) and a blank frame. Returns (dx, dy).
 */
export async function catalogFrames(dir: string): Promise<{ dx: number; dy: number }> {
  mkdirSync(dir, { recursive: true });
  const W = 400,
    H = 300,
    dx = 6.4,
    dy = -3.7;
  const cat = catalog(W, H, 70, 5, 0);
  const shifted = (sx: number, sy: number, stars: readonly CatalogStar[], seed: number) =>
    render(stars, W, H, knownTransform(W, H, 0, 1, sx, sy), seed, { sky: 500, noise: 6 });
  await writeFitsImage(join(dir, "a_ref.fit"), { width: W, height: H, data: shifted(0, 0, cat, 1) });
  await writeFitsImage(join(dir, "b_shift.fit"), { width: W, height: H, data: shifted(dx, dy, cat, 2) });
  await writeFitsImage(join(dir, "c_shift2.fit"), { width: W, height: H, data: shifted(-2.2, 4.1, cat, 3) });
  await writeFitsImage(join(dir, "d_blank.fit"), { width: W, height: H, data: shifted(0, 0, [], 4) });
  return { dx, dy };
}
