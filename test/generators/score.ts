/**
 * An independent scorer for stacked images of a generated set (generators/sky.ts): it shares no code with
 * the methods under test (no star detector, background mesh or tile metric of recon-native) and measures
 * against the generator's truth.
 *
 * - FWHM: a circular Gaussian + constant background fitted (Levenberg–Marquardt) at the true position of
 *   every isolated, well-exposed star away from nebulae and edges; medians over all stars and over the bump
 *   region.
 * - background noise: sky pixels (far from every true star, off bright nebulosity — fainter nebulosity's
 *   truth subtracted — and off the trails) with a
 *   cubic surface removed (least squares), 1.4826·MAD of the rest after a 5σ cut (a plain mean's hot
 *   pixels and cosmics are not its noise). Level steps between tiles count as noise.
 * - flux: aperture photometry at the true positions, local background from an annulus, against the truth.
 * - tile pattern: power of the residual (image − reference) on the sky at the tile period along rows and
 *   columns, against the neighbouring frequencies; and the same for the squared residual (noise steps).
 */
import type { SkySet } from "./sky.js";
import { trimmedSdScale, truncatedSdScale } from "@tile-compile/recon-native";

export const median = (v: ArrayLike<number>): number => {
  const s = Array.from(v)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

/** FWHM of a circular Gaussian fitted to the stamp of half-size r at (x0, y0). NaN when the fit fails. */
export function fitFwhm(img: Float32Array, W: number, H: number, x0: number, y0: number, r = 7): number {
  const px: number[] = [],
    py: number[] = [],
    pv: number[] = [];
  for (let y = Math.round(y0) - r; y <= Math.round(y0) + r; y++)
    for (let x = Math.round(x0) - r; x <= Math.round(x0) + r; x++) {
      if (x < 0 || y < 0 || x >= W || y >= H) return NaN;
      const v = img[y * W + x]!;
      if (Number.isFinite(v)) {
        px.push(x);
        py.push(y);
        pv.push(v);
      }
    }
  const b0 = median(pv.filter((_, i) => Math.hypot(px[i]! - x0, py[i]! - y0) > r - 1.5));
  let p = [Math.max(...pv) - b0, x0, y0, 1.3, b0]; // A, x, y, σ, b
  const model = (q: number[], i: number) => {
    const dx = px[i]! - q[1]!,
      dy = py[i]! - q[2]!;
    const e = Math.exp(-(dx * dx + dy * dy) / (2 * q[3]! * q[3]!));
    return { v: q[0]! * e + q[4]!, e, dx, dy };
  };
  const cost = (q: number[]) => {
    let s = 0;
    for (let i = 0; i < pv.length; i++) s += (pv[i]! - model(q, i).v) ** 2;
    return s;
  };
  let lambda = 1e-2,
    c = cost(p);
  for (let it = 0; it < 60; it++) {
    const JTJ = Array.from({ length: 5 }, () => new Array<number>(5).fill(0)),
      JTr = new Array<number>(5).fill(0);
    for (let i = 0; i < pv.length; i++) {
      const m = model(p, i),
        s2 = p[3]! * p[3]!;
      const J = [m.e, (p[0]! * m.e * m.dx) / s2, (p[0]! * m.e * m.dy) / s2, (p[0]! * m.e * (m.dx * m.dx + m.dy * m.dy)) / (s2 * p[3]!), 1];
      const res = pv[i]! - m.v;
      for (let a = 0; a < 5; a++) {
        JTr[a] = JTr[a]! + J[a]! * res;
        for (let b = 0; b < 5; b++) JTJ[a]![b] = JTJ[a]![b]! + J[a]! * J[b]!;
      }
    }
    for (let a = 0; a < 5; a++) JTJ[a]![a] = JTJ[a]![a]! * (1 + lambda);
    const step = solve(JTJ, JTr);
    if (!step) return NaN;
    const q = p.map((v, i) => v + step[i]!);
    const cq = q[3]! > 0.2 ? cost(q) : Infinity;
    if (cq < c) {
      const done = Math.abs(c - cq) < 1e-10 * c;
      p = q;
      c = cq;
      lambda = Math.max(1e-7, lambda / 3);
      if (done) break;
    } else lambda *= 5;
  }
  if (!(p[0]! > 0) || Math.hypot(p[1]! - x0, p[2]! - y0) > 2 || p[3]! > r / 1.5) return NaN;
  return 2.3548 * p[3]!;
}

function solve(A: number[][], b: number[]): number[] | undefined {
  const n = b.length,
    M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[piv]![c]!)) piv = r;
    if (Math.abs(M[piv]![c]!) < 1e-300) return undefined;
    [M[c], M[piv]] = [M[piv]!, M[c]!];
    for (let r = 0; r < n; r++)
      if (r !== c) {
        const f = M[r]![c]! / M[c]![c]!;
        for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
      }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}

export interface Scorer {
  /** Median fitted FWHM of channel c (default: the green/first channel) overall and in the bump region. */
  fwhm(img: Float32Array, c?: number): { all: number; bump: number; stars: number; bumpStars: number };
  noise(img: Float32Array, c?: number): number;
  /** Noise on small scales only: sky pixels minus the median of their 7×7 neighbourhood, 1.4826·MAD, ×1.07
   *  (the 49-pixel median's own noise, measured on white noise). Immune to nebula structure; blind to steps. */
  noiseLocal(img: Float32Array, c?: number): number;
  /**
   * Median aperture flux over the true flux at the plain mean's scale (flux × colour × mean transparency)
   * over the same stars. A plain mean reads 1–2 % high here: it keeps the cosmic rays and hot pixels that
   * land in the apertures (10 cosmics of 2000–20000 ADU and 30 hot pixels per generated frame).
   */
  fluxTruth(img: Float32Array, c?: number): number;
  /** How many stars fluxTruth measures (bright, isolated; each to ~0.5–1 % on a bright nebula). */
  fluxStars: number;
  /** Residual power at the tile period / neighbouring frequencies: worst of rows, columns, and their squares. */
  tilePattern(img: Float32Array, reference: Float32Array, step: number, c?: number): number;
  /**
   * Dither-persistent hot pixels left in a stack: at each `hotSites` position on the sky mask, the pixel
   * minus the median of its 5×5 neighbourhood, in units of noiseLocal; `left` counts those above 5. Only
   * sites with at most `maxFrames` outliers: frames a hot pixel sat there plus cosmics that hit it (two
   * sensor hot pixels can land on the same sky pixel under different dither positions: twice the frames).
   */
  hotResidues(img: Float32Array, maxFrames: number, c?: number): { sites: number; left: number; worst: number };
  skyMask: Uint8Array;
}

export function scorer(set: SkySet): Scorer {
  const { W, H, C, stars } = set;
  const n = W * H;
  const worst = Math.max(...set.frames.map((f) => f.fwhm * f.bump));
  const sgW = worst / 2.3548;
  // Sky mask: a star's light falls below 0.3 ADU, no nebula above 0.5 ADU, 6 px off every trail.
  const skyMask = new Uint8Array(n).fill(1);
  for (const s of stars) {
    const amp = (s.flux * 1.8) / (2 * Math.PI * sgW * sgW);
    const R = Math.ceil(sgW * Math.sqrt(2 * Math.log(Math.max(amp / 0.3, 1.0001)))) + 1;
    for (let y = Math.max(0, Math.floor(s.y - R)); y <= Math.min(H - 1, Math.ceil(s.y + R)); y++)
      for (let x = Math.max(0, Math.floor(s.x - R)); x <= Math.min(W - 1, Math.ceil(s.x + R)); x++)
        if (Math.hypot(x - s.x, y - s.y) <= R) skyMask[y * W + x] = 0;
  }
  // Faint nebulosity stays in the mask with its truth (at the plain mean's scale, mean transparency)
  // subtracted; bright parts (> 30 ADU, where their shot noise and small-scale structure dominate) are out.
  // A bright extended nebula (brightNebula) stays in: it is smooth on the scale of a star and of the 7×7
  // neighbourhoods, and the noise figures and star fits subtract its truth.
  const nebulaLimit = set.brightNebula ? Infinity : 30;
  for (let i = 0; i < n; i++) if (set.nebula[i]! > nebulaLimit) skyMask[i] = 0;
  const meanT = set.frames.reduce((a, f) => a + f.t, 0) / set.frames.length;
  for (const f of set.frames)
    if (f.trail) {
      const nx = -Math.sin(f.trail.angle),
        ny = Math.cos(f.trail.angle);
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) if (Math.abs((x - f.trail.x0) * nx + (y - f.trail.y0) * ny) < 6) skyMask[y * W + x] = 0;
    }
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (x < 3 || y < 3 || x >= W - 3 || y >= H - 3) skyMask[y * W + x] = 0;
  // Dither-persistent hot pixels' sites are not sky for the noise figures (a reference stack that cannot
  // reject them would be scored noisier for them); hotResidues looks at them on the mask before this.
  const siteMask = skyMask.slice();
  for (const h of set.hotSites) skyMask[h.y * W + h.x] = 0;
  // Measurable stars: bright enough for a precise fit, isolated, off nebulae, away from edges.
  const fitStars = stars.filter(
    (s) =>
      s.flux > 6000 &&
      s.x > 10 &&
      s.y > 10 &&
      s.x < W - 11 &&
      s.y < H - 11 &&
      set.nebula[Math.round(s.y) * W + Math.round(s.x)]! < nebulaLimit &&
      stars.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > 14 || t.flux < s.flux / 50),
  );
  const photStars = fitStars.filter(
    (s) =>
      s.flux > 15000 &&
      s.x > 18 &&
      s.y > 18 &&
      s.x < W - 19 &&
      s.y < H - 19 &&
      stars.every((t) => t === s || Math.hypot(t.x - s.x, t.y - s.y) > 20),
  );
  const plane = (img: Float32Array, c: number) => img.subarray(c * n, (c + 1) * n);
  const defC = C === 3 ? 1 : 0;
  /** Channel c, with a bright nebula's truth (at the plain mean's transparency) subtracted. */
  const clean = (img: Float32Array, c: number) => {
    const p = plane(img, c);
    if (!set.brightNebula) return p;
    const nebC = C === 3 ? [1.5, 0.6, 0.4][c]! : 1;
    return p.map((v, i) => v - meanT * nebC * set.nebula[i]!);
  };
  function phot(d: Float32Array, s: { x: number; y: number }): number {
    let sum = 0,
      cnt = 0;
    const bg: number[] = [];
    for (let y = Math.floor(s.y) - 16; y <= Math.floor(s.y) + 16; y++)
      for (let x = Math.floor(s.x) - 16; x <= Math.floor(s.x) + 16; x++) {
        const dd = Math.hypot(x - s.x, y - s.y),
          v = d[y * W + x]!;
        if (dd <= 10) {
          sum += v;
          cnt++;
        } else if (dd >= 12 && dd <= 16) bg.push(v);
      }
    return sum - cnt * median(bg);
  }
  return {
    skyMask,
    fluxStars: photStars.length,
    fwhm(img, c = defC) {
      const p = clean(img, c);
      const all: number[] = [],
        bump: number[] = [];
      for (const s of fitStars) {
        const f = fitFwhm(p, W, H, s.x, s.y);
        if (!Number.isFinite(f)) continue;
        all.push(f);
        if (set.bumpWeight(s.x, s.y) > 0.5) bump.push(f);
      }
      return { all: median(all), bump: median(bump), stars: all.length, bumpStars: bump.length };
    },
    noise(img, c = defC) {
      const nebC = C === 3 ? [1.5, 0.6, 0.4][c]! : 1;
      const p = plane(img, c).map((v, i) => v - meanT * nebC * set.nebula[i]!);
      // Cubic surface by least squares on every 2nd sky pixel (normal equations in scaled coordinates).
      const terms = (u: number, v: number) => [1, u, v, u * u, u * v, v * v, u * u * u, u * u * v, u * v * v, v * v * v];
      const A = Array.from({ length: 10 }, () => new Array<number>(10).fill(0)),
        b = new Array<number>(10).fill(0);
      for (let i = 0; i < n; i += 2) {
        if (!skyMask[i] || !Number.isFinite(p[i]!)) continue;
        const t = terms((i % W) / W - 0.5, Math.floor(i / W) / H - 0.5);
        for (let a = 0; a < 10; a++) {
          b[a] = b[a]! + t[a]! * p[i]!;
          for (let k = 0; k < 10; k++) A[a]![k] = A[a]![k]! + t[a]! * t[k]!;
        }
      }
      const coef = solve(A, b)!;
      const res: number[] = [];
      for (let i = 0; i < n; i++) {
        if (!skyMask[i] || !Number.isFinite(p[i]!)) continue;
        const t = terms((i % W) / W - 0.5, Math.floor(i / W) / H - 0.5);
        res.push(p[i]! - t.reduce((s, v, k) => s + v * coef[k]!, 0));
      }
      return clippedSigma(res);
    },
    noiseLocal(img, c = defC) {
      const p = clean(img, c),
        res: number[] = [],
        nb: number[] = [];
      for (let y = 3; y < H - 3; y++)
        for (let x = 3; x < W - 3; x++) {
          const i = y * W + x;
          if (!skyMask[i] || (x + 3 * y) % 3 !== 0) continue;
          nb.length = 0;
          for (let dy = -3; dy <= 3; dy++) for (let dx = -3; dx <= 3; dx++) nb.push(p[i + dy * W + dx]!);
          res.push(p[i]! - median(nb));
        }
      return clippedSigma(res);
    },
    hotResidues(img, maxFrames, c = defC) {
      const p = plane(img, c),
        sigma = this.noiseLocal(img, c);
      let sites = 0,
        left = 0,
        worst = 0;
      for (const h of set.hotSites) {
        if (h.frames + h.cosmics > maxFrames || h.x < 2 || h.y < 2 || h.x >= W - 2 || h.y >= H - 2 || !siteMask[h.y * W + h.x]) continue;
        const nb: number[] = [];
        for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) if (dx || dy) nb.push(p[(h.y + dy) * W + h.x + dx]!);
        const z = (p[h.y * W + h.x]! - median(nb)) / sigma;
        sites++;
        if (z > 5) left++;
        worst = Math.max(worst, z);
      }
      return { sites, left, worst };
    },
    fluxTruth(img, c = defC) {
      const p = clean(img, c);
      return median(photStars.map((s) => phot(p, s) / (s.flux * s.colour[c]! * meanT)));
    },
    tilePattern(img, reference, step, c = defC) {
      const pa = plane(img, c),
        pr = plane(reference, c);
      const resid = new Float64Array(n);
      for (let i = 0; i < n; i++) resid[i] = skyMask[i] && Number.isFinite(pa[i]!) ? pa[i]! - pr[i]! : 0;
      let mean = 0,
        cnt = 0;
      for (let i = 0; i < n; i++)
        if (skyMask[i]) {
          mean += resid[i]!;
          cnt++;
        }
      mean /= cnt;
      let m2 = 0;
      for (let i = 0; i < n; i++)
        if (skyMask[i]) {
          resid[i] = resid[i]! - mean;
          m2 += resid[i]! ** 2;
        }
      m2 /= cnt;
      const sq = resid.map((v, i) => (skyMask[i] ? v * v - m2 : 0));
      const power = (len: number, lines: number, at: (l: number, p: number) => number, k: number) => {
        let sum = 0;
        for (let l = 0; l < lines; l++) {
          let re = 0,
            im = 0;
          for (let p = 0; p < len; p++) {
            const ph = (2 * Math.PI * k * p) / len;
            re += at(l, p) * Math.cos(ph);
            im -= at(l, p) * Math.sin(ph);
          }
          sum += re * re + im * im;
        }
        return sum / lines;
      };
      let worstRatio = 0;
      for (const [len, lines, at] of [
        [W, H, (l: number, p: number) => resid[l * W + p]!],
        [H, W, (l: number, p: number) => resid[p * W + l]!],
        [W, H, (l: number, p: number) => sq[l * W + p]!],
        [H, W, (l: number, p: number) => sq[p * W + l]!],
      ] as const) {
        const k0 = Math.round(len / step);
        const around = [-6, -5, -4, -3, 3, 4, 5, 6].map((d) => power(len, lines, at, k0 + d)).sort((x, y) => x - y);
        worstRatio = Math.max(worstRatio, power(len, lines, at, k0) / ((around[3]! + around[4]!) / 2));
      }
      return worstRatio;
    },
  };
}

/**
 * 1.4826·MAD of residuals after leaving out those beyond 5σ of a first estimate: a plain mean keeps every
 * hot pixel and cosmic ray of its frames (+25…250 ADU at 80 frames, 2 % of the pixels on the generated
 * sets), which inflated its MAD by 2–3 % and made any stack that rejects them look that much less noisy.
 */
export function clippedSigma(res: number[]): number {
  const m = median(res);
  const s = 1.482602 * median(res.map((v) => Math.abs(v - m)));
  const kept = res.filter((v) => Math.abs(v - m) <= 5 * s);
  const m2 = median(kept);
  return 1.482602 * median(kept.map((v) => Math.abs(v - m2)));
}

/** The plain (unweighted, unnormalised) mean of the frames, NaN-aware. */
export function plainMean(images: Float32Array[]): Float32Array {
  const n = images[0]!.length,
    out = new Float32Array(n),
    cnt = new Float32Array(n);
  for (const img of images)
    for (let i = 0; i < n; i++) {
      const v = img[i]!;
      if (v === v) {
        out[i] = out[i]! + v;
        cnt[i] = cnt[i]! + 1;
      }
    }
  for (let i = 0; i < n; i++) out[i] = out[i]! / cnt[i]!;
  return out;
}

/**
 * A frame's smooth background: a quadratic surface (1, u, v, u², uv, v²) fitted by least squares to the medians
 * of 6 × 6 blocks (every 4th pixel of each) — as TBQR takes each frame's sky surface from its tile levels, a
 * bright extended nebula goes partly into it.
 */
function backgroundSurface(img: Float32Array, W: number, H: number): Float64Array {
  const G = 6,
    A = Array.from({ length: 6 }, () => new Array<number>(6).fill(0)),
    b = new Array<number>(6).fill(0);
  const terms = (u: number, v: number) => [1, u, v, u * u, u * v, v * v];
  for (let by = 0; by < G; by++)
    for (let bx = 0; bx < G; bx++) {
      const vals: number[] = [];
      for (let y = Math.floor((by * H) / G); y < Math.floor(((by + 1) * H) / G); y += 2)
        for (let x = Math.floor((bx * W) / G) + (y % 4 === 0 ? 0 : 2); x < Math.floor(((bx + 1) * W) / G); x += 4)
          vals.push(img[y * W + x]!);
      const m = median(vals);
      if (!Number.isFinite(m)) continue;
      const t = terms((bx + 0.5) / G - 0.5, (by + 0.5) / G - 0.5);
      for (let i = 0; i < 6; i++) {
        b[i] = b[i]! + t[i]! * m;
        for (let k = 0; k < 6; k++) A[i]![k] = A[i]![k]! + t[i]! * t[k]!;
      }
    }
  const c = solve(A, b) ?? [median(Array.from(img).filter(Number.isFinite)), 0, 0, 0, 0, 0];
  const out = new Float64Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const t = terms((x + 0.5) / W - 0.5, (y + 0.5) / H - 0.5);
      out[y * W + x] = t.reduce((s0, v, k) => s0 + v * c[k]!, 0);
    }
  return out;
}

/**
 * The plain mean with TBQR's rejection rule, written independently (sorting, not the kernel's sums): per
 * pixel, the frames' values less their smooth background (backgroundSurface), over their median level (TBQR
 * judges sky-normalised values less each frame's sky surface); the window m₁ ± 3σ₁ of those without the
 * largest and smallest (σ₁ × trimmedSdScale(n, 1)); mean and σ₂ of the values inside it
 * (× truncatedSdScale(3)); values beyond 5σ₂ left out, and the mean of the rest (less their frames'
 * backgrounds) plus the frames' mean background (a raw mean of the kept frames would take the level of
 * whichever frames were kept). The reference the self-measured figures are checked against: equal weights,
 * the same rejection. With `geom` (a plane's width and height) the backgrounds are those surfaces, plane by
 * plane; without it, each frame's median level.
 */
export function clippedMean(images: Float32Array[], geom?: { W: number; H: number }): Float32Array {
  const N = images.length,
    n = images[0]!.length;
  const out = new Float32Array(n);
  const planeLen = geom ? geom.W * geom.H : n;
  const planes = n / planeLen;
  // Per frame and plane: the median level, and the background.
  const levels = images.map((img) =>
    Array.from({ length: planes }, (_, p) =>
      median(Array.from({ length: Math.floor(planeLen / 7) }, (_, k) => img[p * planeLen + 7 * k]!)),
    ),
  );
  const bg = images.map((img, f) => {
    const b = new Float64Array(n);
    for (let p = 0; p < planes; p++)
      if (geom) b.set(backgroundSurface(img.subarray(p * planeLen, (p + 1) * planeLen), geom.W, geom.H), p * planeLen);
      else b.fill(levels[f]![p]!, p * planeLen, (p + 1) * planeLen);
    return b;
  });
  const level = (f: number, i: number) => levels[f]![Math.floor(i / planeLen)]!;
  const trunc = truncatedSdScale(3);
  const y = new Float64Array(N);
  const meanSd = (x: Float64Array) => {
    const m = x.reduce((a, b) => a + b, 0) / x.length;
    return [m, Math.sqrt(x.reduce((a, b) => a + (b - m) ** 2, 0) / (x.length - 1))] as const;
  };
  for (let i = 0; i < n; i++) {
    let c = 0,
      meanBg = 0;
    for (let f = 0; f < N; f++) {
      meanBg += bg[f]![i]! / N;
      const x = (images[f]![i]! - bg[f]![i]!) / level(f, i);
      if (x === x) y[c++] = x;
    }
    if (c === 0) {
      out[i] = NaN;
      continue;
    }
    let lo = -Infinity,
      hi = Infinity;
    if (c >= 4) {
      const sorted = y.slice(0, c).sort();
      const [m1, s1] = meanSd(sorted.subarray(1, c - 1));
      const sd1 = s1 * trimmedSdScale(c, 1);
      const inside = sorted.filter((x) => x >= m1 - 3 * sd1 && x <= m1 + 3 * sd1);
      const [m2, s2] = inside.length >= 3 ? [meanSd(inside)[0], meanSd(inside)[1] * trunc] : [m1, sd1];
      lo = m2 - 5 * s2;
      hi = m2 + 5 * s2;
    }
    let s = 0,
      all = 0,
      kept = 0,
      cnt = 0;
    for (let f = 0; f < N; f++) {
      const v = images[f]![i]!;
      if (v !== v) continue;
      const r = v - bg[f]![i]!,
        x = r / level(f, i);
      all += r;
      cnt++;
      if (x >= lo && x <= hi) {
        s += r;
        kept++;
      }
    }
    out[i] = meanBg + (kept ? s / kept : all / cnt);
  }
  return out;
}
