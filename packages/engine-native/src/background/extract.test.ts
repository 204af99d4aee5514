import { describe, expect, it } from "vitest";
import { seededRandom } from "@tile-compile/core";
import { extractBackground } from "./extract.js";

describe("background extraction", () => {
  for (const method of ["polynomial", "rbf"] as const) {
    it(`${method}: a sky gradient of 200 ADU under stars is flattened to < 2 ADU; stars keep their flux`, async () => {
      const W = 300,
        H = 200,
        r = seededRandom(4);
      const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
      const sky = (x: number, y: number) => 1000 + 0.5 * x + 0.3 * y + 0.001 * (x - 150) ** 2;
      const data = new Float32Array(W * H);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * W + x] = sky(x, y) + 3 * g();
      const stars = Array.from({ length: 40 }, () => ({ x: 10 + r() * 280, y: 10 + r() * 180 }));
      for (const s of stars)
        for (let y = Math.floor(s.y) - 6; y <= Math.floor(s.y) + 6; y++)
          for (let x = Math.floor(s.x) - 6; x <= Math.floor(s.x) + 6; x++)
            data[y * W + x] = data[y * W + x]! + 5000 * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / 4);
      const out = await extractBackground(data, W, H, 1, { method, degree: 2 });
      // Flatness: medians of 30×30 star-free-ish corner and centre boxes agree.
      const med = (x0: number, y0: number) => {
        const v: number[] = [];
        for (let y = y0; y < y0 + 30; y++) for (let x = x0; x < x0 + 30; x++) v.push(out[y * W + x]!);
        v.sort((a, b) => a - b);
        return v[v.length >> 1]!;
      };
      const boxes = [med(0, 0), med(270, 0), med(0, 170), med(270, 170), med(135, 85)];
      expect(Math.max(...boxes) - Math.min(...boxes)).toBeLessThan(2);
      const s = stars[0]!;
      let before = 0,
        after = 0;
      for (let y = Math.floor(s.y) - 4; y <= Math.floor(s.y) + 4; y++)
        for (let x = Math.floor(s.x) - 4; x <= Math.floor(s.x) + 4; x++) {
          before += data[y * W + x]! - sky(x, y);
          after += out[y * W + x]! - boxes[4]!;
        }
      expect(Math.abs(after / before - 1)).toBeLessThan(0.02);
    });
  }
});
