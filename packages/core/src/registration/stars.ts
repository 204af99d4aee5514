/**
 * The star toolkit every registration method shares (built-in `relative`, `wcs_anchor`, Siril's
 * measurements): the plane stars are detected on (the green plane of a CFA frame), a frame's stars with
 * its FWHM, roundness, sky and trails, the star-matching tolerance, and warping a frame onto a reference
 * grid. Kernels from recon-native; whole-frame planes come from one pool ({@link starPlanes}) that the
 * registration methods share and clear when they finish.
 */
import { extname, basename } from "node:path";
import type { BayerPattern, Plane, ReconBackend } from "@tile-compile/recon-native";
import { PlanePool } from "../util/planes.js";
import { readFitsImage, type FitsImage } from "@tile-compile/fits";
import { writeFitsImage } from "@tile-compile/fits";
import type { FrameRef, RegisteredFrame } from "../kernel/contracts.js";
import { cleanStars } from "./clean.js";
import { type Point } from "./geometry.js";
import { warpFrame } from "./warp.js";
import { median } from "../util/stats.js";
import { DEFAULT_DEBAYER } from "../config/schema.js";

/** Whole-frame planes reused from frame to frame (decoded frame, sky maps, warped frame): see PlanePool. */
export const starPlanes = new PlanePool();
const planes = starPlanes;

export interface FrameStars {
  stars: Point[];
  quality: number;
  fwhm: number;
  /** Median FWHM_minor / FWHM_major of the measured stars (1 = round). */
  roundness?: number;
  /** Median sky level (ADU) and noise σ (ADU) of the frame's background map. */
  background?: number;
  noise?: number;
  /** Stars that passed detection (before the measuring cut). */
  detected?: number;
  /** A trail (satellite, aircraft) was found and removed from the star list. */
  trail?: boolean;
  /** The trails' lines (Hough angle in degrees, distance from the frame origin in px) and how many detections lie on each. */
  trails?: { thetaDeg: number; rhoPx: number; detections: number }[];
  /** Detections that were not kept as stars, by reason (clean.ts). */
  dropped?: { trail: number; elongated: number; extended: number; compact: number };
  error?: string;
}

const PATTERNS: readonly BayerPattern[] = ["RGGB", "GRBG", "GBRG", "BGGR"];

/** The CFA pattern of a mono frame, or undefined for a plain mono or colour frame. */
export function bayerOf(img: FitsImage): { pattern: BayerPattern; offsetX: number; offsetY: number } | undefined {
  if (img.channels !== 1) return undefined;
  const p = img.header.get("BAYERPAT");
  if (typeof p !== "string") return undefined;
  const pattern = p.trim().toUpperCase() as BayerPattern;
  if (!PATTERNS.includes(pattern)) return undefined;
  const ox = img.header.getNumber("XBAYROFF") ?? 0,
    oy = img.header.getNumber("YBAYROFF") ?? 0;
  return { pattern, offsetX: Math.abs(Math.round(ox)) & 1, offsetY: Math.abs(Math.round(oy)) & 1 };
}

/** The plane stars are detected on, and the factor/offset mapping its pixels to the frame's. */
export async function detectionPlane(
  recon: ReconBackend,
  img: FitsImage,
  signal: AbortSignal,
): Promise<{ plane: Plane; scale: number; offset: number }> {
  const n = img.width * img.height;
  const bayer = bayerOf(img);
  if (bayer) {
    // The green plane of a bilinear debayer: full resolution, so stars stay well sampled (a superpixel
    // image halves the FWHM in pixels and its centroids were measured 2–3× noisier on the M 94 frames).
    const rgb = await recon.debayer({ data: img.data, width: img.width, height: img.height }, { ...bayer, method: "bilinear", signal });
    return { plane: { data: rgb.green, width: rgb.width, height: rgb.height }, scale: 1, offset: 0 };
  }
  if (img.channels === 1) return { plane: { data: img.data, width: img.width, height: img.height }, scale: 1, offset: 0 };
  const lum = new Float32Array(n);
  for (let c = 0; c < img.channels; c++) for (let i = 0; i < n; i++) lum[i] = lum[i]! + img.data[c * n + i]! / img.channels;
  return { plane: { data: lum, width: img.width, height: img.height }, scale: 1, offset: 0 };
}

/**
 * Stars of one frame (brightest first, frame pixel coordinates) and its quality figure
 * Q = star count / median FWHM, as used to pick a reference.
 */
export async function frameStars(
  recon: ReconBackend,
  frame: FrameRef,
  signal: AbortSignal,
  threshold = 5,
  image?: FitsImage,
): Promise<FrameStars & { size: { width: number; height: number } }> {
  const img = image ?? (await readFrame(frame, signal, true));
  const { plane, scale, offset } = await detectionPlane(recon, img, signal);
  // An 11×11 measuring box (radius 5): on the M 94 frames it gave less centroid noise than 15×15.
  // Background mesh: 64-px cells, 128 px on frames whose short side is 2048 px or more (the same fraction
  // of the field; at 2048² a quarter of the cells to clip — 100 frames of the register bench: 78–87 → 69–70
  // ms per frame — and the same accuracy on the trailed, nebula and sparse sets of the conditions test).
  const meshSize = Math.min(plane.width, plane.height) >= 2048 ? 128 : 64;
  const background = await recon.backgroundMap(plane, {
    signal,
    meshSize,
    out: { background: planes.take(plane.data.length), noise: planes.take(plane.data.length) },
  });
  const detect = async (radius: number) => {
    const list = await recon.detectStars(plane, { threshold, radius, maxStars: 800, signal, background });
    // Trails, elongated and extended detections are not stars (clean.ts); the FWHM is of the stars only.
    // A star whose measuring box the frame edge cuts has a centroid pulled inwards (by 2.5 px for one
    // 1.6 px from the edge): only stars at least the box radius plus a FWHM inside are kept.
    const inside = list.stars.filter((s) => {
      const m = radius + (Number.isFinite(s.fwhm) ? s.fwhm : 0);
      return s.x >= m && s.y >= m && s.x <= plane.width - 1 - m && s.y <= plane.height - 1 - m;
    });
    return { list, clean: cleanStars(inside) };
  };
  let { list, clean } = await detect(5);
  // Wide stars (binned frames, poor seeing: FWHM > 4 px) do not fit the 11×11 box: its cut wings pull
  // each centroid towards the box centre (0.055–0.067 px RMS on a generated 2×2-binned set at FWHM 5–6.5
  // px). Measured again with a box of ±1.6 FWHM.
  // Kept only when it measures the same stars (median FWHM within 25 %): on nebula-rich frames a larger
  // box takes in nebulosity and the "stars" grow (FWHM 4.2 → 23 px on the demo's narrowband stacks).
  if (clean.fwhm > 4 && Number.isFinite(clean.fwhm)) {
    const wide = await detect(Math.min(14, Math.ceil(1.6 * clean.fwhm)));
    if (
      Number.isFinite(wide.clean.fwhm) &&
      Math.abs(wide.clean.fwhm / clean.fwhm - 1) < 0.25 &&
      wide.clean.stars.length >= 0.8 * clean.stars.length
    )
      ({ list, clean } = wide);
  }
  const fwhm = clean.fwhm * scale;
  // The maps are smooth (mesh-interpolated): every 61st value describes them as well as all of them.
  // Every 997th value (4.2 k of a 2048² map, a prime stride so rows do not alias) in a typed array, which
  // sorts without a comparator: the figure is a report's, and the JS thread is the registration's
  // scarcest resource (every 61st value in an Array cost ≈ 8 ms of it per frame).
  const sampled = (m: Float32Array) => {
    const v = new Float64Array(Math.ceil(m.length / 997));
    let n = 0;
    for (let i = 0; i < m.length; i += 997) if (Number.isFinite(m[i]!)) v[n++] = m[i]!;
    return median(v.subarray(0, n));
  };
  const sky = { background: sampled(background.background), noise: sampled(background.noise) };
  planes.give(background.background, background.noise);
  if (!image) planes.give(img.data);
  return {
    size: { width: img.width, height: img.height },
    stars: clean.stars.map((s) => ({ x: s.x * scale + offset, y: s.y * scale + offset })),
    fwhm,
    quality: clean.stars.length > 0 ? clean.stars.length / fwhm : 0,
    trail: clean.trails.length > 0,
    dropped: clean.dropped,
    ...(clean.trails.length
      ? {
          trails: clean.trails.map((t) => ({
            thetaDeg: Number(((t.theta * 180) / Math.PI).toFixed(2)),
            rhoPx: Number((t.rho * scale).toFixed(1)),
            detections: t.detections,
          })),
        }
      : {}),
    roundness: clean.roundness,
    ...sky,
    detected: list.count,
  };
}

/** The per-frame figures a registration result carries (run.json, the run report), finite ones only. */
export function frameMetrics(
  f: FrameStars,
): Pick<RegisteredFrame, "fwhmPx" | "roundness" | "background" | "noise" | "detected" | "trails"> {
  const r: Pick<RegisteredFrame, "fwhmPx" | "roundness" | "background" | "noise" | "detected" | "trails"> = {};
  if (f.trails?.length) r.trails = f.trails;
  if (Number.isFinite(f.fwhm)) r.fwhmPx = f.fwhm;
  if (f.roundness !== undefined && Number.isFinite(f.roundness)) r.roundness = f.roundness;
  if (f.background !== undefined && Number.isFinite(f.background)) r.background = f.background;
  if (f.noise !== undefined && Number.isFinite(f.noise)) r.noise = f.noise;
  if (f.detected !== undefined) r.detected = f.detected;
  return r;
}

/** Read a frame (its HDU, if the reference names one). */
export function readFrame(frame: FrameRef, signal: AbortSignal, pooled = false): Promise<FitsImage> {
  return readFitsImage(frame.path, {
    signal,
    ...(frame.hdu !== undefined ? { hdu: frame.hdu } : {}),
    ...(pooled ? { out: (n: number) => planes.take(n) } : {}),
  });
}

/** `reg_{index:05d}.fit` → `reg_00007.fit`; `{name}` is the input file name without extension. */
export function formatFrameName(pattern: string, index: number, input: string): string {
  return pattern.replace(/\{(index|name)(?::0?(\d+)d)?\}/g, (_m, key: string, width?: string) => {
    if (key === "name") return basename(input, extname(input));
    return width ? String(index).padStart(Number(width), "0") : String(index);
  });
}

/**
 * Pairing tolerance for star matching: 2 px, or half the larger star FWHM when stars are bigger. The
 * centroid error of a faint star grows with its size (≈ FWHM/SNR), so with the bloated stars of
 * narrowband or poor-seeing frames (FWHM 8–10 px, centroids good to ~1 px) a fixed 2 px drops true
 * pairs; stars are at least a FWHM apart, so half of it cannot pair a star with its neighbour.
 */
export function matchTolerance(fwhm: number, refFwhm: number): number {
  const f = Math.max(Number.isFinite(fwhm) ? fwhm : 0, Number.isFinite(refFwhm) ? refFwhm : 0);
  return Math.max(2, 0.5 * f);
}

/**
 * Warp one frame onto the reference grid and write it (atomically). `matrix` maps the frame's pixels to
 * the reference's; every colour plane (the debayered R, G, B of a CFA frame) is resampled with its
 * inverse. Shared by every built-in registration method.
 */
export interface WarpOntoReferenceOptions {
  output: string;
  interpolation: "bilinear" | "bicubic" | "lanczos3";
  signal: AbortSignal;
  keywords: Record<string, [string | number, string]>;
  history: string[];
  /** The frame, already read (otherwise it is read here). */
  image?: FitsImage;
  /** Demosaic of a colour (CFA) frame before it is resampled: rcd (default) or bilinear. */
  debayer?: "rcd" | "bilinear";
}
/** With `deferWrite`, resolves once the pixels are warped, to `{ written }`: the (atomic) write in flight. */
export async function warpOntoReference(
  recon: ReconBackend,
  frame: FrameRef,
  matrix: readonly number[],
  o: WarpOntoReferenceOptions & { deferWrite: true },
): Promise<{ written: Promise<void> }>;
export async function warpOntoReference(
  recon: ReconBackend,
  frame: FrameRef,
  matrix: readonly number[],
  o: WarpOntoReferenceOptions,
): Promise<void>;
export async function warpOntoReference(
  recon: ReconBackend,
  frame: FrameRef,
  matrix: readonly number[],
  o: WarpOntoReferenceOptions & { deferWrite?: boolean },
): Promise<void | { written: Promise<void> }> {
  // Every value is written by the warp: malloc-recycled memory instead of a fresh zeroed 16 MB per frame
  // (its page faults cost more than the write of the frame).
  const w = await warpFrame(recon, frame, matrix, {
    interpolation: o.interpolation,
    debayer: o.debayer ?? DEFAULT_DEBAYER,
    signal: o.signal,
    ...(o.image ? { image: o.image } : {}),
    out: (n) => planes.take(n),
  });
  const { data, image: img } = w;
  const colour = { length: w.channels };
  const header = img.header.withoutStructure();
  const bayer = colour.length === 3 ? bayerOf(img) : undefined;
  if (bayer) for (const k of ["BAYERPAT", "XBAYROFF", "YBAYROFF"]) header.delete(k);
  for (const [k, [v, comment]] of Object.entries(o.keywords)) header.set(k, v, comment);
  if (bayer)
    header.set("DEBAYER", (o.debayer ?? DEFAULT_DEBAYER).toUpperCase(), `demosaic of the ${bayer.pattern} mosaic before resampling`);
  // `data` is ours alone: the writer byte-swaps it in place instead of copying 16 MB per frame.
  // Back to the pool once written (only then: the write reads it until it resolves).
  const written = writeFitsImage(
    o.output,
    { width: img.width, height: img.height, channels: colour.length, data },
    { header, history: o.history, signal: o.signal, consume: true, durable: false },
  ).then(() => planes.give(data));
  if (o.deferWrite) {
    written.catch(() => undefined); // the caller awaits it
    return { written };
  }
  await written;
}
