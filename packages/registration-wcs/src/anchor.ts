/**
 * `registration:wcs_anchor` — registration through the sky: every frame gets a WCS (its own header's,
 * a cached plate solution, or a fresh `solve-field` solution), the anchor frame is chosen like the
 * relative engine's reference (auto: most stars per px of FWHM; kept across re-runs), and each frame is
 * resampled onto the anchor's pixel grid.
 *
 * The frame → anchor map is sky-exact where it matters: two gnomonic (TAN) projections of the sphere are
 * related by a homography (both are central projections), so a homography fitted to a 16 × 16 grid of
 * points mapped pixel → sky → anchor pixel is exact up to the SIP distortion terms; the residual of that
 * fit is checked (a frame is rejected above 0.25 px). That map is then refined with the stars both
 * frames share (least squares, nearest partners under the WCS map), which removes the plate solutions'
 * own catalogue noise; `rms_px` reports the final fit.
 *
 * Plate solutions are cached under `<outputDir>/wcs/` by file identity (path, size, mtime) and never
 * written into the input files.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { copyFile, mkdir, rename } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import {
  applyTransform,
  chooseReference,
  fitTransform,
  multiplyTransform,
  refineMatch,
  type Point,
  FitsFile,
  formatFrameName,
  frameStars,
  readFitsImage,
  detectionPlane,
  TileCompileError,
  isIoFault,
  ioFault,
  warpOntoReference,
  writeFitsImage,
  type EngineContext,
  type FrameRef,
  type RegisteredFrame,
  type RegistrationInput,
  type RegistrationProvider,
  registrationOptionsSchema,
  type RegistrationResult,
  DEFAULT_DEBAYER,
} from "@tile-compile/core";
import { loadRecon, type ReconBackend } from "@tile-compile/recon-native";
import { z } from "zod";
import { hintsFromHeader, solveField } from "./solve.js";
import { Wcs } from "./wcs.js";

/**
 * The `wcs_anchor` method's options: `registration.interpolation` (default lanczos3), `registration.debayer`
 * (rcd (default) | bilinear, for colour frames), and for callers the
 * seconds astrometry.net may spend per frame (`cpulimit`, default 60), the SIP order of fresh plate
 * solutions (`sipOrder`, default 0: plain TAN, whose frame-to-anchor map is an exact homography), whether to
 * refine the WCS map with the stars the frame shares with the anchor (`refine`, default true), and the
 * largest accepted residual of the homography fit in pixels (`maxModelResidualPx`, default 0.25).
 */
export const wcsAnchorOptionsSchema = registrationOptionsSchema.extend({
  cpulimit: z.number().positive().optional(),
  sipOrder: z.number().int().min(0).max(5).optional(),
  refine: z.boolean().optional(),
  maxModelResidualPx: z.number().positive().optional(),
});
export type WcsAnchorOptions = z.infer<typeof wcsAnchorOptionsSchema>;

function cacheKey(path: string): string {
  const st = statSync(path);
  return createHash("sha1")
    .update(`${resolve(path)}\0${st.size}\0${st.mtimeMs}`)
    .digest("hex")
    .slice(0, 16);
}

async function readWcsFile(path: string): Promise<Wcs | undefined> {
  const f = await FitsFile.open(path);
  try {
    return Wcs.fromHeader((await f.hdu(0))!.header);
  } finally {
    await f.close();
  }
}

/** The frame's WCS: from its header, the cache, or a plate solve (cached). */
export async function frameWcs(
  recon: ReconBackend,
  frame: FrameRef,
  cacheDir: string,
  workdir: string,
  o: { signal: AbortSignal; cpulimit?: number; sipOrder?: number },
): Promise<{ wcs: Wcs; source: "header" | "cache" | "solved" }> {
  const img = await readFitsImage(frame.path, { signal: o.signal, ...(frame.hdu !== undefined ? { hdu: frame.hdu } : {}) });
  const own = Wcs.fromHeader(img.header);
  if (own) return { wcs: own, source: "header" };
  const cached = join(cacheDir, `${basename(frame.path).replace(/[^\w.-]+/g, "_")}.${cacheKey(frame.path)}.sip${o.sipOrder ?? 0}.wcs`);
  if (existsSync(cached)) {
    const w = await readWcsFile(cached);
    if (w) return { wcs: w, source: "cache" };
  }
  // Solve a mono image of the frame (the green plane of a CFA frame): same pixel grid, clean stars.
  const { plane, scale } = await detectionPlane(recon, img, o.signal);
  if (scale !== 1) throw new Error("internal: detection plane is not at full resolution");
  const dir = join(workdir, `solve-${cacheKey(frame.path)}`);
  await mkdir(dir, { recursive: true });
  const image = join(dir, "frame.fits");
  await writeFitsImage(image, { width: plane.width, height: plane.height, data: plane.data });
  const wcs = await solveField(image, dir, hintsFromHeader(img.header), {
    signal: o.signal,
    ...(o.cpulimit ? { cpulimitSeconds: o.cpulimit } : {}),
    ...(o.sipOrder !== undefined ? { sipOrder: o.sipOrder } : {}),
  });
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${cached}.${process.pid}.partial`;
  await copyFile(join(dir, "solution.wcs"), tmp);
  await rename(tmp, cached);
  return { wcs, source: "solved" };
}

/** Homography taking `from` pixels to `to` pixels through the sky, with its fit residual (px). */
export function skyHomography(
  from: Wcs,
  to: Wcs,
  width: number,
  height: number,
): { matrix: number[]; rmsPx: number; maxPx: number; overlap: number } | undefined {
  const src: { x: number; y: number }[] = [],
    dst: { x: number; y: number }[] = [];
  const n = 16;
  for (let j = 0; j < n; j++)
    for (let i = 0; i < n; i++) {
      const x = (i * (width - 1)) / (n - 1),
        y = (j * (height - 1)) / (n - 1);
      const [ra, dec] = from.pixelToSky(x, y);
      const [u, v] = to.skyToPixel(ra, dec);
      if (Number.isFinite(u) && Number.isFinite(v)) {
        src.push({ x, y });
        dst.push({ x: u, y: v });
      }
    }
  const m = fitTransform(src, dst, "homography");
  if (!m) return undefined;
  let sq = 0,
    max = 0;
  // Fraction of the grid that lands inside the target frame (same size assumed, as registration requires).
  const overlap = dst.filter((q) => q.x >= 0 && q.y >= 0 && q.x <= width - 1 && q.y <= height - 1).length / (n * n);
  src.forEach((p, k) => {
    const w = m[6]! * p.x + m[7]! * p.y + m[8]!;
    const d = Math.hypot((m[0]! * p.x + m[1]! * p.y + m[2]!) / w - dst[k]!.x, (m[3]! * p.x + m[4]! * p.y + m[5]!) / w - dst[k]!.y);
    sq += d * d;
    max = Math.max(max, d);
  });
  return { matrix: m, rmsPx: Math.sqrt(sq / src.length), maxPx: max, overlap };
}

/** `registration:wcs_anchor`: options parsed by `wcsAnchorOptionsSchema` when the stage is planned. */
export const wcsAnchorRegistration: RegistrationProvider<WcsAnchorOptions> = {
  optionsSchema: wcsAnchorOptionsSchema,
  register: (i, c) => registerWcsAnchor(i, c),
};

export async function registerWcsAnchor(input: RegistrationInput<WcsAnchorOptions>, ctx: EngineContext): Promise<RegistrationResult> {
  const opts = input.options;
  const recon = loadRecon();
  const frames = input.frames;
  if (frames.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: "frames", reason: "no frames to register" });
  const cacheDir = join(input.outputDir, "wcs");
  const info: { wcs?: Wcs; quality: number; stars: Point[]; error?: string; size?: { width: number; height: number } }[] = [];
  for (let i = 0; i < frames.length; i++) {
    ctx.signal.throwIfAborted();
    ctx.progress((0.5 * i) / frames.length, `plate solve ${basename(frames[i]!.path)}`);
    try {
      const st = await frameStars(recon, frames[i]!, ctx.signal);
      const { wcs, source } = await frameWcs(recon, frames[i]!, cacheDir, ctx.workdir, {
        signal: ctx.signal,
        ...(opts.cpulimit ? { cpulimit: opts.cpulimit } : {}),
        ...(opts.sipOrder !== undefined ? { sipOrder: opts.sipOrder } : {}),
      });
      ctx.logger.debug(`${basename(frames[i]!.path)}: WCS from ${source}, ${wcs.scaleArcsec.toFixed(3)}″/px`);
      info.push({ wcs, quality: st.quality, stars: st.stars, size: st.size });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      if (isIoFault(e)) throw ioFault(e, "read", frames[i]!.path);
      info.push({ quality: 0, stars: [], error: (e as Error).message });
      ctx.logger.warn(`${basename(frames[i]!.path)}: not registered: ${(e as Error).message}`);
    }
  }
  const anchorIndex = chooseReference(input, info);
  const anchor = info[anchorIndex]!;
  const anchorPath = frames[anchorIndex]!.path;
  const interpolation = opts.interpolation ?? "lanczos3";
  const maxResidual = opts.maxModelResidualPx ?? 0.25;
  await mkdir(input.outputDir, { recursive: true });
  const out: RegisteredFrame[] = [];
  for (let i = 0; i < frames.length; i++) {
    ctx.signal.throwIfAborted();
    ctx.progress(0.5 + (0.5 * i) / frames.length, `reproject ${basename(frames[i]!.path)}`);
    const path = frames[i]!.path;
    const f = info[i]!;
    if (f.error || !f.wcs || !f.size) {
      out.push({ input: path, error: f.error ?? "no WCS" });
      continue;
    }
    const h =
      i === anchorIndex
        ? { matrix: [1, 0, 0, 0, 1, 0, 0, 0, 1], rmsPx: 0, maxPx: 0, overlap: 1 }
        : skyHomography(f.wcs, anchor.wcs!, f.size.width, f.size.height);
    if (!h || h.overlap < 0.1) {
      const [ra, dec] = f.wcs.pixelToSky(f.size.width / 2, f.size.height / 2);
      out.push({
        input: path,
        error: `the frame and the anchor do not overlap on the sky (frame centre RA ${ra.toFixed(3)}°, Dec ${dec.toFixed(3)}°; a different field?)`,
      });
      continue;
    }
    if (h.maxPx > maxResidual) {
      out.push({
        input: path,
        error: `the frame's distortion relative to the anchor is not a homography (residual ${h.maxPx.toFixed(3)} px > ${maxResidual} px)`,
      });
      continue;
    }
    // Refine with the frames' own stars: the plate solutions rest on a few dozen catalogue stars whose
    // J2000 positions carry ~25 years of proper motion, so frame-to-frame they disagree by up to ~0.5 px;
    // the stars both frames share pin the map down to their centroid noise. Without enough shared
    // stars the sky map stands.
    let matrix = h.matrix,
      rmsPx = h.rmsPx,
      medianPx: number | undefined,
      stars: number | undefined;
    if (i !== anchorIndex && opts.refine !== false) {
      // A similarity correction on top of the sky map: it keeps the map's projective part (exact for two
      // TAN projections) and fits only the 4 parameters the catalogue noise disturbs; a full homography
      // fitted to ~40 stars was measured 0.4 px noisy in the corners of the M 94 frames.
      const moved = f.stars.map((p) => applyTransform(h.matrix, p));
      const r = refineMatch(moved, anchor.stars, [1, 0, 0, 0, 1, 0, 0, 0, 1], { model: "similarity" });
      if (r.ok) {
        matrix = multiplyTransform(r.matrix, h.matrix);
        ({ rmsPx, medianPx, pairs: stars } = r);
      }
    }
    const output = resolve(input.outputDir, formatFrameName(input.filenamePattern, i, path));
    try {
      await warpOntoReference(recon, frames[i]!, matrix, {
        output,
        interpolation,
        debayer: opts.debayer ?? DEFAULT_DEBAYER,
        signal: ctx.signal,
        keywords: {
          REGREF: [basename(anchorPath), "registration anchor frame (WCS)"],
          REGRMS: [Number(rmsPx.toFixed(4)), "[px] RMS residual of the final fit"],
        },
        history: [...input.history, `reprojected onto the WCS of ${basename(anchorPath)} (${interpolation})`],
      });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      if (isIoFault(e)) throw ioFault(e, "write", output);
      out.push({ input: path, error: (e as Error).message });
      continue;
    }
    out.push({
      input: path,
      output,
      matrix,
      rmsPx,
      ...(medianPx !== undefined ? { medianPx } : {}),
      ...(stars !== undefined ? { stars } : {}),
    });
  }
  ctx.progress(1);
  return { reference: anchorPath, frames: out };
}
