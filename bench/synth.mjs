// Seeded synthetic data for benchmarks (same generator as recon-native's tests).
import { seededRandom as rng } from "@tile-compile/recon-native";
export { rng };
const gauss = (r) => () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
export function starField(width, height, seed, { stars = 40, sky = 1000, noise = 10, sigma = 1.8 } = {}) {
  const r = rng(seed),
    g = gauss(r);
  const data = new Float32Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = sky + noise * g();
  for (let s = 0; s < stars; s++) {
    const x0 = 12 + r() * (width - 24),
      y0 = 12 + r() * (height - 24),
      flux = 2e4 + r() * 2e5;
    for (let y = Math.floor(y0) - 11; y <= Math.floor(y0) + 11; y++)
      for (let x = Math.floor(x0) - 11; x <= Math.floor(x0) + 11; x++) {
        data[y * width + x] += (flux / (2 * Math.PI * sigma * sigma)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma * sigma));
      }
  }
  return { data, width, height };
}
export function noiseFrames(n, len, seed) {
  const r = rng(seed),
    g = gauss(r);
  return Array.from({ length: n }, () => Float32Array.from({ length: len }, () => (r() < 0.01 ? 5000 * r() : 500 + 20 * g())));
}
