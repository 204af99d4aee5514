/**
 * A seeded generator of *unregistered* frames with the true geometry, for registration tests on
 * conditions the registration was not tuned to (issue 15). Each frame k sees the sky through its own
 * transform M_k (sky → frame pixels: rotation by any angle, shift, optionally a mirror), so the true
 * frame → reference map of frame k onto reference r is M_r · M_k⁻¹. Knobs:
 *
 * - stars: count within a frame's area and flux range (power law), FWHM per frame in [fwhmMin, fwhmMax], round Gaussians;
 * - rotation: per-frame angle in [0, rotation] degrees; dither: shifts up to ±dither px;
 * - nebula: large emission clouds (σ 15–90 px) and compact knots (σ 2–4 px, i.e. FWHM 4.7–9.4 px: wider
 *   than the stars, bright enough to be detected), rendered analytically in sky coordinates;
 * - trails: frames with a bright satellite trail (straight, 1.2 px σ) across the frame;
 * - clouds: frames whose transparency is `cloudT` (stars and nebula dimmed, sky glow up 20 %);
 * - mirrored: frames whose transform includes a mirror (must be refused, never registered);
 * - hot pixels and cosmics; shot noise (gain 1) and 5 e⁻ read noise.
 */
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";

export interface FieldOptions {
  seed: number;
  frames: number;
  width: number;
  height: number;
  stars: number;
  /** Flux range (ADU) of the power law. */
  flux?: [number, number];
  fwhmMin?: number;
  fwhmMax?: number;
  /** Largest rotation (degrees); each frame gets a seeded angle in [0, rotation]. */
  rotation?: number;
  dither?: number;
  nebula?: boolean;
  /** Frame indices with a satellite trail, and its brightness (ADU). */
  trails?: number[];
  trailLevel?: number;
  /** Frame indices seen through clouds, and their transparency. */
  clouds?: number[];
  cloudT?: number;
  /** Frame indices whose transform is mirrored. */
  mirrored?: number[];
  /** Frame index given the best seeing of the set (fwhmMin) — e.g. the trailed one, to tempt `auto`. */
  sharpest?: number;
  sky?: number;
  /** AO-guided drift instead of random dithers: a random walk of `step` px per frame, plus one dither jump. */
  drift?: { step: number; jump?: { at: number; dx: number; dy: number } };
  /** Per-frame sky gradient (ADU across the frame, random direction) and a glow in a random corner (moon, light dome, amp glow). */
  gradient?: number;
  /** Hot columns (full-height bright columns, as on many CCDs), the same in every frame. */
  hotColumns?: number;
  /** 12-bit data in a 16-bit file: values rounded to multiples of 16. */
  twelveBit?: boolean;
}

export interface FieldFrame {
  path: string;
  /** Sky → frame pixel coordinates, row-major 3×3. */
  M: number[];
  fwhm: number;
  angleDeg: number;
  trail: boolean;
  cloudy: boolean;
  mirrored: boolean;
}

export interface FieldSet {
  W: number;
  H: number;
  frames: FieldFrame[];
}

const mul = (a: number[], b: number[]) =>
  [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => a[3 * i]! * b[j]! + a[3 * i + 1]! * b[3 + j]! + a[3 * i + 2]! * b[6 + j]!));
/** Inverse of an affine 3×3 (last row 0 0 1). */
export function invAffine(m: number[]): number[] {
  const [a, b, c, d, e, f] = m as [number, number, number, number, number, number];
  const det = a * e - b * d;
  return [e / det, -b / det, (b * f - c * e) / det, -d / det, a / det, (c * d - a * f) / det, 0, 0, 1];
}
export const applyM = (m: number[], x: number, y: number) => ({ x: m[0]! * x + m[1]! * y + m[2]!, y: m[3]! * x + m[4]! * y + m[5]! });
/** The true frame → reference matrix of frame k onto the reference r. */
export const trueMap = (set: FieldSet, k: number, r: number) => mul(set.frames[r]!.M, invAffine(set.frames[k]!.M));

/**
 * RMS and worst distance (px) between two frame → reference maps over a 9 × 9 grid of the frame
 * (the accuracy "over the field").
 */
export function mapError(est: number[], truth: number[], W: number, H: number): { rms: number; worst: number } {
  let sq = 0,
    worst = 0,
    n = 0;
  for (let j = 0; j < 9; j++)
    for (let i = 0; i < 9; i++) {
      const x = (i / 8) * (W - 1),
        y = (j / 8) * (H - 1);
      const p = applyM(est, x, y),
        q = applyM(truth, x, y);
      const d = Math.hypot(p.x - q.x, p.y - q.y);
      sq += d * d;
      worst = Math.max(worst, d);
      n++;
    }
  return { rms: Math.sqrt(sq / n), worst };
}

export async function makeField(dir: string, opts: FieldOptions): Promise<FieldSet> {
  const o = {
    flux: [3000, 200000] as [number, number],
    fwhmMin: 2.6,
    fwhmMax: 3.1,
    rotation: 0,
    dither: 15,
    nebula: false,
    trails: [] as number[],
    trailLevel: 2500,
    clouds: [] as number[],
    cloudT: 0.3,
    mirrored: [] as number[],
    sky: 400,
    ...opts,
  };
  const { width: W, height: H } = o;
  const r = seededRandom(o.seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  // The sky: a region larger than a frame (rotated frames see its corners), centred on the frame centre.
  const R = Math.hypot(W, H) / 2 + o.dither + 10;
  // `stars` is the count within one frame's area; the sky holds as many per unit area.
  const stars = Array.from({ length: Math.round((o.stars * 4 * R * R) / (W * H)) }, () => ({
    x: W / 2 + (2 * r() - 1) * R,
    y: H / 2 + (2 * r() - 1) * R,
    flux: o.flux[0] * (o.flux[1] / o.flux[0]) ** (r() ** 2),
  }));
  const blobs = o.nebula
    ? [
        ...Array.from({ length: 8 }, () => ({
          x: W / 2 + (2 * r() - 1) * R,
          y: H / 2 + (2 * r() - 1) * R,
          s: 15 + 75 * r(),
          a: 60 + 240 * r(),
        })),
        ...Array.from({ length: 40 }, () => ({
          x: W / 2 + (2 * r() - 1) * R,
          y: H / 2 + (2 * r() - 1) * R,
          s: 2 + 2 * r(),
          a: 150 + 600 * r(),
        })),
      ]
    : [];
  const frames: FieldFrame[] = [];
  const data = new Float32Array(W * H);
  const hotCols = Array.from({ length: o.hotColumns ?? 0 }, () => ({ x: Math.floor(r() * W), level: 400 + 1500 * r() }));
  let walkX = 0,
    walkY = 0;
  for (let k = 0; k < o.frames; k++) {
    const angleDeg = o.rotation * r();
    const th = (angleDeg * Math.PI) / 180,
      c = Math.cos(th),
      s = Math.sin(th);
    let dx = (2 * r() - 1) * o.dither,
      dy = (2 * r() - 1) * o.dither;
    if (o.drift) {
      walkX += o.drift.step * g();
      walkY += o.drift.step * g();
      if (o.drift.jump && k === o.drift.jump.at) {
        walkX += o.drift.jump.dx;
        walkY += o.drift.jump.dy;
      }
      dx = walkX;
      dy = walkY;
    }
    const mirrored = o.mirrored.includes(k);
    // Rotate about the frame centre, then shift; a mirror flips x about the centre first.
    const mx = mirrored ? -1 : 1;
    const cx = W / 2,
      cy = H / 2;
    const M = [c * mx, -s, cx + dx - (c * mx * cx - s * cy), s * mx, c, cy + dy - (s * mx * cx + c * cy), 0, 0, 1];
    const fwhm = k === o.sharpest ? o.fwhmMin : o.fwhmMin + (o.fwhmMax - o.fwhmMin) * r();
    const cloudy = o.clouds.includes(k),
      trail = o.trails.includes(k);
    const t = cloudy ? o.cloudT : 0.92 + 0.08 * r();
    const sky = o.sky * (cloudy ? 1.2 : 1);
    data.fill(sky);
    const Minv = invAffine(M);
    if (blobs.length) {
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const p = applyM(Minv, x, y);
          let v = 0;
          for (const b of blobs) {
            const d2 = (p.x - b.x) ** 2 + (p.y - b.y) ** 2;
            if (d2 < 16 * b.s * b.s) v += b.a * Math.exp(-d2 / (2 * b.s * b.s));
          }
          data[y * W + x] = data[y * W + x]! + t * v;
        }
    }
    const sg = fwhm / 2.3548;
    for (const st of stars) {
      const p = applyM(M, st.x, st.y);
      const Rs = Math.ceil(4.5 * sg);
      if (p.x < -Rs || p.y < -Rs || p.x > W + Rs || p.y > H + Rs) continue;
      // Pixel-integrated Gaussian (the flux of a pixel is the integral over its area): erf differences.
      const amp = st.flux * t;
      for (let y = Math.max(0, Math.floor(p.y) - Rs); y <= Math.min(H - 1, Math.floor(p.y) + Rs); y++) {
        const fy = erfDiff(y - 0.5 - p.y, y + 0.5 - p.y, sg);
        for (let x = Math.max(0, Math.floor(p.x) - Rs); x <= Math.min(W - 1, Math.floor(p.x) + Rs); x++)
          data[y * W + x] = data[y * W + x]! + amp * fy * erfDiff(x - 0.5 - p.x, x + 0.5 - p.x, sg);
      }
    }
    if (trail) {
      const x0 = W * (0.2 + 0.6 * r()),
        y0 = H * (0.2 + 0.6 * r()),
        a = Math.PI * r();
      const nx = -Math.sin(a),
        ny = Math.cos(a);
      // A little brightness flicker along the trail (a tumbling satellite) breaks it into detections.
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const d = (x - x0) * nx + (y - y0) * ny;
          if (Math.abs(d) >= 6) continue;
          const along = (x - x0) * ny - (y - y0) * nx;
          data[y * W + x] = data[y * W + x]! + o.trailLevel * (0.75 + 0.25 * Math.cos(along / 9)) * Math.exp(-(d * d) / (2 * 1.2 * 1.2));
        }
    }
    if (o.gradient) {
      const ga = 2 * Math.PI * r(),
        gx = Math.cos(ga) / W,
        gy = Math.sin(ga) / H;
      const corner = Math.floor(4 * r()),
        gcx = corner & 1 ? W : 0,
        gcy = corner & 2 ? H : 0,
        glow = o.gradient * (0.5 + r());
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const d2 = ((x - gcx) ** 2 + (y - gcy) ** 2) / (0.3 * W) ** 2;
          data[y * W + x] = data[y * W + x]! + o.gradient * ((x - W / 2) * gx + (y - H / 2) * gy) + glow * Math.exp(-d2);
        }
    }
    for (const hc of hotCols) for (let y = 0; y < H; y++) data[y * W + hc.x] = data[y * W + hc.x]! + hc.level;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      data[i] = v + Math.sqrt(Math.max(v, 0) + 25) * g();
    }
    if (o.twelveBit) for (let i = 0; i < data.length; i++) data[i] = Math.min(65520, Math.max(0, Math.round(data[i]! / 16) * 16));
    for (let h = 0; h < 25; h++) data[Math.floor(r() * data.length)] = 3000 + 3000 * r();
    for (let q = 0; q < 8; q++) {
      const i = Math.floor(r() * data.length);
      data[i] = 8000 + 12000 * r();
      if (i + 1 < data.length) data[i + 1] = data[i]! / 2;
    }
    const path = join(dir, `f${String(k).padStart(3, "0")}.fit`);
    await writeFitsImage(
      path,
      { width: W, height: H, data },
      { header: new FitsHeader().set("EXPTIME", 30).set("IMAGETYP", "Light Frame") },
    );
    frames.push({ path, M, fwhm, angleDeg, trail, cloudy, mirrored });
  }
  return { W, H, frames };
}

/** ∫_a^b of a unit-area 1-D Gaussian of σ s. */
function erfDiff(a: number, b: number, s: number): number {
  const k = 1 / (Math.SQRT2 * s);
  return 0.5 * (erf(b * k) - erf(a * k));
}
/** erf to 1.2e-7 (Numerical Recipes' erfc Chebyshev fit). */
function erf(x: number): number {
  const z = Math.abs(x),
    t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}
