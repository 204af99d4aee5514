/**
 * A seeded generator of registered deep-sky frames with ground truth, for quality tests of the stacking and
 * reconstruction methods on conditions they were not tuned to (issue 16). Every condition is a knob:
 *
 * - seeing: per-frame FWHM log-normal around `fwhm` (spread `fwhmSpread`), clipped to [0.6, 1.8]× of it,
 *   and a local seeing bump (a disc of radius `bump.radius`·min(W, H) at a seeded place, smooth cosine edge)
 *   whose FWHM factor varies in time as 1 + amp·sin(2πk/period + φ);
 * - sky: a level drifting over the night (moon rise: `sky`·[1, 1 + skyDrift]) and per-frame gradients —
 *   a plane of random direction up to ±`gradient` of the level across the frame plus a quadratic term;
 * - clouds: transparency 0.9–1.0, with cloud episodes (transparency down to `cloudMin`, sky glow up 20 %);
 * - trails: `trails` frames carry a satellite trail (straight, 1.2 px σ, 300–3000 ADU, any angle);
 * - cosmics (per frame, 1–2 px, 2000–20000 ADU) and hot pixels that move between frames (dither residue);
 * - `ditherHot`: hot pixels fixed on the sensor, uncalibrated (no darks), under a dither that moves the
 *   frame every `every` frames — on the registered frames each sits on one sky position for `every` frames
 *   in a row (integer offsets, so no interpolation spreads them), the pattern a stack leaves as dotted
 *   dither tracks when its rejection cannot catch an outlier that repeats;
 * - nebula: extended emission (Gaussian clouds of 12–80 px σ) and compact knots (2–4 px σ);
 * - brightNebula: emission over most of the frame — 24 Gaussian clouds of σ 0.12–0.32·W and 200–1200 ADU
 *   over the 400 ADU sky (its own random stream, so the stars and every other knob are unchanged);
 * - star density: `stars` stars, fluxes from a power law; OSC: three channels, star colours and sky colour
 *   differ per channel.
 *
 * Frames share star positions (already registered), so tests measure the combination, not the registration.
 * Truth is returned per frame (FWHM, bump factor, transparency, sky level) and per star.
 */
import { join } from "node:path";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";
import { loadRecon } from "@tile-compile/recon-native";

export interface SkySetOptions {
  seed: number;
  frames: number;
  width: number;
  height: number;
  /** 1 (mono) or 3 (OSC, already debayered). */
  channels?: 1 | 3;
  stars?: number;
  fwhm?: number;
  fwhmSpread?: number;
  bump?: { amp: number; radius: number; period: number };
  sky?: number;
  skyDrift?: number;
  gradient?: number;
  clouds?: boolean;
  cloudMin?: number;
  trails?: number;
  cosmics?: number;
  hot?: number;
  nebula?: boolean;
  /** Bright extended emission over most of the frame (mono and OSC, not with `nebula` or `mosaic`). */
  brightNebula?: boolean;
  /** Sensor hot pixels (`count`, 300–3000 ADU, log-uniform) under a dither of ±8 px every `every` frames (mono). */
  ditherHot?: { count: number; every: number };
  /**
   * OSC as a sensor records it (channels 3 only): each frame is rendered shifted by up to ±2.5 px and
   * rotated by up to ±1° about the centre (an alt-az mount's field rotation), sampled
   * through a GRBG Bayer mosaic, given its noise on the mosaic, debayered (bilinear) and warped back onto the
   * reference grid (Lanczos-3) by recon-native — as the pipeline's registration does. Its noise is then
   * correlated between neighbours and between channels, and differs between the Bayer phases that each
   * frame's shift moves around. Not with `nebula`.
   */
  mosaic?: boolean;
}

export interface TruthStar {
  x: number;
  y: number;
  flux: number;
  colour: [number, number, number];
}
export interface TruthFrame {
  path: string;
  fwhm: number;
  bump: number;
  t: number;
  sky: number;
  trail?: { x0: number; y0: number; angle: number };
}
export interface SkySet {
  W: number;
  H: number;
  C: number;
  frames: TruthFrame[];
  stars: TruthStar[];
  /** The bump disc: centre and radius (px). Inside `bumpWeight(x, y) > 0.5` counts as the bump region. */
  bumpCentre: { x: number; y: number; r: number };
  bumpWeight(x: number, y: number): number;
  /** Noise-free nebula brightness (ADU at transparency 1, channel 0). */
  nebula: Float32Array;
  /** The nebula is `brightNebula`'s: the scorer measures on it (truth subtracted) instead of masking it. */
  brightNebula: boolean;
  /** Where `ditherHot` put its hot pixels on the registered frames: sky pixel, amplitude, frames there, and cosmics that hit it too. */
  hotSites: { x: number; y: number; amp: number; frames: number; cosmics: number }[];
}

export async function makeSkySet(dir: string, opts: SkySetOptions): Promise<SkySet> {
  const o = {
    channels: 1 as 1 | 3,
    stars: 250,
    fwhm: 3,
    fwhmSpread: 0.12,
    bump: { amp: 0.3, radius: 0.22, period: 17 },
    sky: 400,
    skyDrift: 1,
    gradient: 0.15,
    clouds: true,
    cloudMin: 0.3,
    trails: 3,
    cosmics: 10,
    hot: 30,
    nebula: false,
    ...opts,
  };
  const { width: W, height: H, frames: N } = o;
  const C = o.channels;
  if (o.mosaic && (C !== 3 || o.nebula)) throw new Error("mosaic: needs channels 3 and no nebula");
  const recon = o.mosaic ? loadRecon() : undefined;
  /** Hot pixels (+2000 ADU) and cosmics (2000–20000 ADU, half of them two pixels long) on one plane. */
  const defects = (a: Float32Array) => {
    for (let h = 0; h < o.hot; h++) a[Math.floor(r() * n)] = a[Math.floor(r() * n)]! + 2000;
    for (let q = 0; q < o.cosmics; q++) {
      const i = Math.floor(r() * n),
        v = 2000 + 18000 * r();
      a[i] = v;
      cosmicHits.set(i, (cosmicHits.get(i) ?? 0) + 1);
      if (r() < 0.5 && i + 1 < n) {
        a[i + 1] = v / 2;
        cosmicHits.set(i + 1, (cosmicHits.get(i + 1) ?? 0) + 1);
      }
    }
  };
  const r = seededRandom(o.seed);
  /** Cosmic hits per pixel (mono sets: the pixel index), for the hot-pixel sites' outlier count. */
  const cosmicHits = new Map<number, number>();
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const stars: TruthStar[] = Array.from({ length: o.stars }, () => ({
    x: 6 + r() * (W - 12),
    y: 6 + r() * (H - 12),
    // Power law: many faint stars, few bright ones (flux 1500–150000 ADU).
    flux: 1500 * 100 ** (r() ** 2.2),
    colour: C === 3 ? ([0.6 + 0.8 * r(), 1, 0.5 + 0.8 * r()] as [number, number, number]) : [1, 1, 1],
  }));
  const bc = { x: W * (0.25 + 0.5 * r()), y: H * (0.25 + 0.5 * r()), r: o.bump.radius * Math.min(W, H) };
  const bumpWeight = (x: number, y: number) => {
    const d = Math.hypot(x - bc.x, y - bc.y) / bc.r;
    return d >= 1 ? 0 : d <= 0.6 ? 1 : 0.5 * (1 + Math.cos((Math.PI * (d - 0.6)) / 0.4));
  };
  const phase = 2 * Math.PI * r();
  // Nebula: a few large clouds and compact knots (channel 0 brightness; OSC scales it per channel).
  const nebula = new Float32Array(W * H);
  if (o.nebula) {
    const blobs = [
      ...Array.from({ length: 7 }, () => ({ x: r() * W, y: r() * H, s: 12 + 68 * r(), a: 30 + 170 * r() })),
      ...Array.from({ length: 12 }, () => ({ x: r() * W, y: r() * H, s: 2 + 2 * r(), a: 40 + 160 * r() })),
    ];
    for (const b of blobs) {
      const R = Math.ceil(4 * b.s);
      for (let y = Math.max(0, Math.floor(b.y - R)); y < Math.min(H, b.y + R); y++)
        for (let x = Math.max(0, Math.floor(b.x - R)); x < Math.min(W, b.x + R); x++)
          nebula[y * W + x] = nebula[y * W + x]! + b.a * Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.s * b.s));
    }
  }
  if (o.brightNebula) {
    if (o.nebula || o.mosaic) throw new Error("brightNebula: not with nebula or mosaic");
    const nr = seededRandom(o.seed + 104729);
    for (let b = 0; b < 24; b++) {
      const bx = nr() * W,
        by = nr() * H,
        sg = (0.12 + 0.2 * nr()) * W,
        a = 200 + 1000 * nr();
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) nebula[y * W + x] = nebula[y * W + x]! + a * Math.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sg * sg));
    }
  }
  const skyColour = C === 3 ? [1.2, 1, 0.8] : [1];
  const nebColour = C === 3 ? [1.5, 0.6, 0.4] : [1];
  const frames: TruthFrame[] = [];
  const n = W * H;
  // Dither-persistent hot pixels: their own random stream, so every other condition's frames are unchanged.
  const hotSites = new Map<number, { x: number; y: number; amp: number; frames: number }>();
  const dh = o.ditherHot;
  const hr = seededRandom(o.seed + 7919);
  const sensorHot = dh
    ? Array.from({ length: dh.count }, () => ({ x: Math.floor(hr() * W), y: Math.floor(hr() * H), amp: 300 * 10 ** hr() }))
    : [];
  let dither: [number, number] = [0, 0];
  const used = new Set<string>();
  const data = new Float32Array(n * C);
  for (let k = 0; k < N; k++) {
    const fwhm = o.fwhm * Math.min(1.8, Math.max(0.6, Math.exp(o.fwhmSpread * g())));
    const bump = 1 + o.bump.amp * Math.sin((2 * Math.PI * k) / o.bump.period + phase);
    const cloudy = o.clouds && k % 11 < 2;
    const t = cloudy ? o.cloudMin + (0.9 - o.cloudMin) * r() : 0.9 + 0.1 * r();
    const sky = o.sky * (1 + (o.skyDrift * k) / Math.max(1, N - 1)) * (cloudy ? 1.2 : 1);
    const ang = 2 * Math.PI * r(),
      ga = o.gradient * r(),
      gq = 0.3 * o.gradient * (r() - 0.5);
    const trail =
      k % Math.max(1, Math.floor(N / Math.max(1, o.trails))) === 1 && o.trails > 0
        ? { x0: r() * W, y0: r() * H, angle: Math.PI * r(), level: 300 + 2700 * r() }
        : undefined;
    // The frame's offset and rotation (about the centre) from the reference grid (mosaic sets only; field
    // rotation as an alt-az mount gives it): a star at (x, y) lands at (cx + ca·(x−cx) − sa·(y−cy) + dx, …).
    const [dx, dy, rot] = o.mosaic ? [5 * r() - 2.5, 5 * r() - 2.5, ((2 * r() - 1) * Math.PI) / 180] : [0, 0, 0];
    const ca = Math.cos(rot),
      sa = Math.sin(rot),
      cxm = (W - 1) / 2,
      cym = (H - 1) / 2;
    const onFrame = (x: number, y: number): [number, number] => [
      cxm + ca * (x - cxm) - sa * (y - cym) + dx,
      cym + sa * (x - cxm) + ca * (y - cym) + dy,
    ];
    data.fill(0);
    for (let c = 0; c < C; c++) {
      const off = c * n;
      // Sky with this frame's gradient and the nebula.
      for (let y = 0; y < H; y++) {
        const v = y / H - 0.5;
        for (let x = 0; x < W; x++) {
          const u = x / W - 0.5;
          const grad = 1 + ga * (u * Math.cos(ang) + v * Math.sin(ang)) + gq * (u * u + v * v);
          data[off + y * W + x] = sky * skyColour[c]! * grad + t * nebColour[c]! * nebula[y * W + x]!;
        }
      }
      for (const s of stars) {
        const fw = fwhm * (1 + (bump - 1) * bumpWeight(s.x, s.y));
        const sg = fw / 2.3548;
        const amp = (s.flux * s.colour[c]! * t) / (2 * Math.PI * sg * sg);
        const R = Math.ceil(4 * sg),
          [sx, sy] = onFrame(s.x, s.y);
        for (let y = Math.max(0, Math.floor(sy) - R); y <= Math.min(H - 1, Math.floor(sy) + R); y++)
          for (let x = Math.max(0, Math.floor(sx) - R); x <= Math.min(W - 1, Math.floor(sx) + R); x++)
            data[off + y * W + x] = data[off + y * W + x]! + amp * Math.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * sg * sg));
      }
      if (trail) {
        const nx = -Math.sin(trail.angle),
          ny = Math.cos(trail.angle);
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const d = (x - trail.x0) * nx + (y - trail.y0) * ny;
            if (Math.abs(d) < 5) data[off + y * W + x] = data[off + y * W + x]! + trail.level * Math.exp(-(d * d) / (2 * 1.2 * 1.2));
          }
      }
      if (o.mosaic) continue; // noise, hot pixels and cosmics go on the mosaic below
      // Shot noise (gain 1 e⁻/ADU) and 5 e⁻ read noise.
      for (let i = off; i < off + n; i++) {
        const s = data[i]!;
        data[i] = s + Math.sqrt(Math.max(s, 0) + 25) * g();
      }
      defects(data.subarray(off, off + n));
      if (dh) {
        // A new dither position every `every` frames, never one used before (a dither that returned would
        // put the same hot pixels on the same sky for twice as many frames).
        if (c === 0 && k % dh.every === 0)
          do dither = [Math.round(16 * hr() - 8), Math.round(16 * hr() - 8)];
          while (used.has(dither.join()));
        used.add(dither.join());
        for (const h of sensorHot) {
          const x = h.x - dither[0],
            y = h.y - dither[1];
          if (x < 0 || y < 0 || x >= W || y >= H) continue;
          data[off + y * W + x] = data[off + y * W + x]! + h.amp;
          const site = hotSites.get(y * W + x) ?? { x, y, amp: h.amp, frames: 0 };
          site.frames++;
          hotSites.set(y * W + x, site);
        }
      }
    }
    if (recon) {
      // GRBG: even rows G R G R …, odd rows B G B G …; the sensor sees one channel per pixel.
      const cfa = new Float32Array(n);
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const c = y % 2 === 0 ? (x % 2 === 0 ? 1 : 0) : x % 2 === 0 ? 2 : 1;
          const sv = data[c * n + y * W + x]!;
          cfa[y * W + x] = sv + Math.sqrt(Math.max(sv, 0) + 25) * g();
        }
      defects(cfa);
      const rgb = await recon.debayer({ data: cfa, width: W, height: H }, { pattern: "GRBG", method: "bilinear" });
      // Back onto the reference grid: output pixel (x, y) samples the frame at onFrame(x, y).
      const back = [ca, -sa, cxm - ca * cxm + sa * cym + dx, sa, ca, cym - sa * cxm - ca * cym + dy, 0, 0, 1] as const;
      for (const [c, plane] of [rgb.red, rgb.green, rgb.blue].entries())
        await recon.warp({ data: plane, width: W, height: H }, back, { interpolation: "lanczos3", out: data.subarray(c * n, (c + 1) * n) });
    }
    const path = join(dir, `f${String(k).padStart(4, "0")}.fit`);
    await writeFitsImage(path, { width: W, height: H, channels: C, data }, { header: new FitsHeader().set("EXPTIME", 30) });
    frames.push({ path, fwhm, bump, t, sky, ...(trail ? { trail: { x0: trail.x0, y0: trail.y0, angle: trail.angle } } : {}) });
  }
  return {
    W,
    H,
    C,
    frames,
    stars,
    bumpCentre: bc,
    bumpWeight,
    nebula,
    brightNebula: !!o.brightNebula,
    hotSites: [...hotSites.entries()].map(([i, h]) => ({ ...h, cosmics: cosmicHits.get(i) ?? 0 })),
  };
}
