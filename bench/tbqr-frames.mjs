// Synthetic registered frames for the TBQR benches (tbqr, distributed): N × S² 16-bit star fields with
// seeing varying per frame, seeded; generated once into `dir` (a "done" marker) and reused.
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";

/**
 * `dither`: each frame's stars shifted by up to ±8 px (seeded), as raw frames before registration are — the
 * input of the end-to-end figure (register + TBQR vs register + stack).
 */
export async function ensureTbqrFrames(dir, N, S, { dither = false } = {}) {
  if (existsSync(join(dir, "done"))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  console.log(`generating ${N} frames of ${S}² in ${dir} …`);
  const r = seededRandom(1);
  const stars = Array.from({ length: Math.round((S * S) / 2500) }, () => ({
    x: 8 + r() * (S - 16),
    y: 8 + r() * (S - 16),
    f: 3000 + 50000 * r() ** 2,
  }));
  for (let k = 0; k < N; k++) {
    const g = seededRandom(10 + k);
    const sg = (2.2 + 1.2 * g()) / 2.355;
    const [dx, dy] = dither ? [16 * (g() - 0.5), 16 * (g() - 0.5)] : [0, 0];
    const data = new Float32Array(S * S);
    for (let i = 0; i < data.length; i++) data[i] = 500 + 8 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g());
    for (const s0 of stars) {
      const s = { x: s0.x + dx, y: s0.y + dy, f: s0.f };
      for (let y = Math.max(0, Math.floor(s.y) - 7); y < Math.min(S, Math.floor(s.y) + 8); y++)
        for (let x = Math.max(0, Math.floor(s.x) - 7); x < Math.min(S, Math.floor(s.x) + 8); x++)
          data[y * S + x] += (s.f / (2 * Math.PI * sg * sg)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
    }
    await writeFitsImage(
      join(dir, `f${String(k).padStart(4, "0")}.fit`),
      { width: S, height: S, data: data.map((v) => Math.min(65535, Math.round(v))) },
      { bitpix: 16, header: new FitsHeader().set("EXPTIME", 60) },
    );
  }
  writeFileSync(join(dir, "done"), "");
  return dir;
}
