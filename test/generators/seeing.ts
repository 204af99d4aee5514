/**
 * The seeded seeing generator of the TBQR quality acceptance (issue 6): per-frame seeing log-normal around
 * 3 px FWHM (clipped 2–5 px), a ±30 % time-varying seeing bump in the top-right quadrant, transparency
 * 0.6–1.0 with cloud episodes (2 frames in every 13), Poisson-like noise on a 300 ADU sky, 30 hot pixels
 * and 8 cosmic-ray hits per frame. Frames share star positions (already registered), so tests measure the
 * reconstruction, not the registration. Every frame's truth (FWHM, bump factor, transparency) is returned
 * for oracle weightings.
 */
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";

export const W = 480,
  H = 360,
  N = 60;

export interface SeeingFrame {
  path: string;
  fwhm: number;
  bump: number;
  t: number;
}

export async function makeSeeingSet(dir: string): Promise<{ frames: SeeingFrame[]; stars: { x: number; y: number; f: number }[] }> {
  const r = seededRandom(77);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const stars = Array.from({ length: 160 }, () => ({ x: 12 + r() * (W - 24), y: 12 + r() * (H - 24), f: 3000 + 60000 * r() ** 2 }));
  const hot = Array.from({ length: 30 }, () => Math.floor(r() * W * H));
  const frames: SeeingFrame[] = [];
  for (let k = 0; k < N; k++) {
    const fwhm = Math.min(5, Math.max(2, 3 * Math.exp(0.25 * g())));
    const bump = 1 + 0.3 * Math.sin((2 * Math.PI * k) / 17);
    const t = k % 13 < 2 ? 0.6 + 0.05 * r() : 0.9 + 0.1 * r();
    const data = new Float32Array(W * H).fill(0);
    for (const s of stars) {
      const fw = s.x > W / 2 && s.y > H / 2 ? fwhm * bump : fwhm;
      const sg = fw / 2.3548;
      const amp = (s.f * t) / (2 * Math.PI * sg * sg);
      const R = Math.ceil(4 * sg);
      for (let y = Math.max(0, Math.floor(s.y) - R); y <= Math.min(H - 1, Math.floor(s.y) + R); y++)
        for (let x = Math.max(0, Math.floor(s.x) - R); x <= Math.min(W - 1, Math.floor(s.x) + R); x++)
          data[y * W + x] = data[y * W + x]! + amp * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
    }
    for (let i = 0; i < data.length; i++) {
      const s = data[i]! + 300;
      data[i] = s + Math.sqrt(s + 25) * g();
    }
    for (const h of hot) data[h] = data[h]! + 2000;
    for (let c = 0; c < 8; c++) data[Math.floor(r() * W * H)] = 8000; // cosmics
    const path = join(dir, `f${String(k).padStart(3, "0")}.fit`);
    await writeFitsImage(path, { width: W, height: H, data }, { header: new FitsHeader().set("EXPTIME", 60) });
    frames.push({ path, fwhm, bump, t });
  }
  return { frames, stars };
}
