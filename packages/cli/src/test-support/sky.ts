// Test helper (not built into dist): four small synthetic frames for the register command.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { seededRandom, writeFitsImage } from "@tile-compile/core";

export async function catalogFrames(dir: string): Promise<{ dx: number; dy: number }> {
  mkdirSync(dir, { recursive: true });
  const W = 400, H = 300, r = seededRandom(5);
  const stars = Array.from({ length: 70 }, () => ({ x: r() * W, y: r() * H, f: 5000 + r() * 80000 }));
  const dx = 6.4, dy = -3.7;
  const frame = (sx: number, sy: number, withStars: boolean, seed: number) => {
    const g = seededRandom(seed);
    const data = new Float32Array(W * H).map(() => 500 + 6 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g()));
    if (withStars) for (const s of stars) {
      const x0 = s.x - sx, y0 = s.y - sy; // input pixel p maps to the reference at p + (sx, sy)
      for (let y = Math.max(0, Math.floor(y0) - 8); y < Math.min(H, Math.floor(y0) + 9); y++) for (let x = Math.max(0, Math.floor(x0) - 8); x < Math.min(W, Math.floor(x0) + 9); x++) {
        data[y * W + x] = data[y * W + x]! + (s.f / (2 * Math.PI * 2.56)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 2.56));
      }
    }
    return data;
  };
  await writeFitsImage(join(dir, "a_ref.fit"), { width: W, height: H, data: frame(0, 0, true, 1) });
  await writeFitsImage(join(dir, "b_shift.fit"), { width: W, height: H, data: frame(dx, dy, true, 2) });
  await writeFitsImage(join(dir, "c_shift2.fit"), { width: W, height: H, data: frame(-2.2, 4.1, true, 3) });
  await writeFitsImage(join(dir, "d_blank.fit"), { width: W, height: H, data: frame(0, 0, false, 4) });
  return { dx, dy };
}
