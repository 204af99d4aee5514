import { describe, expect, it } from "vitest";
import type { FitsImage } from "@tile-compile/fits";
import { FitsHeader } from "@tile-compile/fits";
import { seededRandom } from "../util/random.js";
import { pixelAgreement, pixelsConfirm } from "./verify.js";

const W = 200,
  H = 160;
/** An image with Gaussian stars (FWHM 3) at `stars` shifted by (dx, dy), a gradient and noise. */
function image(stars: { x: number; y: number; f: number }[], dx: number, dy: number, seed: number, gradient = 0): FitsImage {
  const r = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const data = new Float32Array(W * H);
  const s2 = 2 * (3 / 2.3548) ** 2;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let v = 300 + (gradient * x) / W;
      for (const s of stars) {
        const d2 = (x - s.x - dx) ** 2 + (y - s.y - dy) ** 2;
        if (d2 < 64) v += (s.f * Math.exp(-d2 / s2)) / (Math.PI * s2);
      }
      data[y * W + x] = v + 8 * g();
    }
  return { width: W, height: H, channels: 1, data, header: new FitsHeader() };
}

describe("pixelAgreement: a registration checked on the pixels, not the star list", () => {
  const r = seededRandom(3);
  const stars = Array.from({ length: 8 }, () => ({ x: 15 + r() * (W - 30), y: 15 + r() * (H - 30), f: 5000 + 30000 * r() }));
  const ref = image(stars, 0, 0, 1);
  const frame = image(stars, 5.3, -2.1, 2, 200); // another noise draw and a gradient; stars moved by (5.3, −2.1)
  const refStars = stars.map((s) => ({ x: s.x, y: s.y }));
  const shift = (tx: number, ty: number) => [1, 0, tx, 0, 1, ty, 0, 0, 1];

  it("the right transform is confirmed (r near 1, controls near 0)", () => {
    const p = pixelAgreement(ref, refStars, frame, shift(-5.3, 2.1), 3);
    expect(p.r).toBeGreaterThan(0.9);
    expect(p.control).toBeLessThan(0.3);
    expect(pixelsConfirm(p)).toBe(true);
  });
  it("a transform off by a few pixels, or another field, is not", () => {
    expect(pixelsConfirm(pixelAgreement(ref, refStars, frame, shift(-5.3 + 6, 2.1 - 4), 3))).toBe(false);
    const other = image(
      Array.from({ length: 8 }, () => ({ x: 15 + r() * (W - 30), y: 15 + r() * (H - 30), f: 5000 + 30000 * r() })),
      0,
      0,
      4,
      200,
    );
    expect(pixelsConfirm(pixelAgreement(ref, refStars, other, shift(0, 0), 3))).toBe(false);
  });
  it("a smooth gradient that correlates everywhere does not pass: the controls catch it", () => {
    const gradRef = image([], 0, 0, 5, 3000),
      gradFrame = image([], 0, 0, 6, 3000);
    const p = pixelAgreement(gradRef, refStars, gradFrame, shift(0, 0), 3);
    expect(pixelsConfirm(p)).toBe(false);
  });
});
