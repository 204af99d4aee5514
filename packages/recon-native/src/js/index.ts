/**
 * The pure-TypeScript backend: the reference implementation of every kernel in parity tests, and the
 * fallback when the native addon is not available. Single-threaded; it checks the cancel flag only
 * between calls (a synchronous loop cannot observe an abort), which the Backend wrapper does for it.
 */
import type { RawKernels } from "../raw.js";
import { interpolate, mesh } from "./background.js";
import { combine } from "./combine.js";
import { debayer } from "./debayer.js";
import { decode } from "./decode.js";
import { overlapAdd, normalizeOverlap } from "./ola.js";
import { detect } from "./stars.js";
import { percentile, robustStats, finiteValues } from "./stats.js";
import { frameTileMetrics } from "./tiles.js";
import { rcd } from "./rcd.js";
import { aperturePhotometry } from "./photometry.js";
import { drizzleDeposit } from "./drizzle.js";
import { warp } from "./warp.js";
import { tbqrBand } from "./tbqr-band.js";

export const jsKernels: RawKernels = {
  decode,
  sumF32(values) {
    // Same 8-lane f64 accumulation order as the native sum, so both agree bit for bit.
    const acc = new Float64Array(8);
    const n8 = values.length - (values.length % 8);
    for (let i = 0; i < n8; i += 8) for (let k = 0; k < 8; k++) acc[k] = acc[k]! + values[i + k]!;
    let s = acc[0]! + acc[1]! + (acc[2]! + acc[3]!) + (acc[4]! + acc[5]! + (acc[6]! + acc[7]!));
    for (let i = n8; i < values.length; i++) s += values[i]!;
    return s;
  },
  setThreads: () => 1,
  getThreads: () => 1,
  simdLevel: () => -1,
  async percentiles(values, ps, out) {
    const v = finiteValues(values);
    ps.forEach((p, k) => {
      out[k] = percentile(v, p);
    });
    return v.length;
  },
  async robustStats(values, low, high, iterations, out) {
    out.set(robustStats(values, low, high, iterations));
    return 0;
  },
  async backgroundMap(data, w, h, m, k, iterations, bg, noise) {
    const g = mesh(data, w, h, m, k, iterations);
    interpolate(g.bg, g.gx, g.gy, m, w, h, bg);
    interpolate(g.noise, g.gx, g.gy, m, w, h, noise);
    return g.gx * g.gy;
  },
  async detectStars(data, w, h, bg, noise, k, minArea, maxStars, radius, out) {
    return detect(data, w, h, bg, noise, k, minArea, maxStars, radius, out);
  },
  async tileMetrics(data, w, h, rects, out, scratch, scale) {
    if (scale !== 1) for (let i = 0; i < data.length; i++) data[i] = data[i]! * scale;
    frameTileMetrics(data, w, h, rects, out, scratch);
    return rects.length / 4;
  },
  async aperturePhotometry(data, w, _h, xs, ys, aperture, annIn, annOut, inner, flux, innerFlux) {
    aperturePhotometry(data, w, xs, ys, aperture, annIn, annOut, inner, flux, innerFlux);
    return xs.length;
  },
  async drizzleDeposit(src, sw, params, num, den, ref) {
    return drizzleDeposit(src, sw, params, num, den, ref);
  },
  async warp(src, sw, sh, matrix, dst, dw, dh, kind) {
    warp(src, sw, sh, matrix, dst, dw, dh, kind);
    return 0;
  },
  async debayer(src, w, h, pattern, offX, offY, method, r, g, b, rangeLo, rangeHi) {
    if (method === 2) rcd(src, w, h, pattern, offX & 1, offY & 1, [r, g, b], [rangeLo, rangeHi]);
    else debayer(src, w, h, pattern, offX & 1, offY & 1, method === 1, [r, g, b]);
    return 0;
  },
  async combine(frames, weights, norm, method, rejection, low, high, iterations, out, rejLow, rejHigh) {
    combine(frames, weights, norm, { method, rejection, low, high, iterations }, out, rejLow, rejHigh);
    return 0;
  },
  async overlapAdd(sum, weightSum, w, _h, tiles, rects, weights, window) {
    overlapAdd(sum, weightSum, w, tiles, rects, weights, window);
    return 0;
  },
  async normalizeOverlap(sum, weightSum, out, eps) {
    normalizeOverlap(sum, weightSum, out, eps);
    return 0;
  },
  async tbqrBand(
    frames,
    width,
    rows,
    inv,
    scale,
    sky,
    skyMean,
    restore,
    u,
    clipLow,
    clipHigh,
    trimScale,
    truncScale,
    fractions,
    xs0,
    tw,
    wx,
    sx,
    covStart,
    covIy,
    covWy,
    out,
    plain,
  ) {
    tbqrBand(
      {
        frames,
        width,
        rows,
        inv,
        scale,
        sky,
        skyMean,
        restore,
        u,
        clipLow,
        clipHigh,
        trimScale,
        truncScale,
        fractions,
        xs0,
        tw,
        wx,
        sx,
        covStart,
        covIy,
        covWy,
      },
      out,
      plain,
    );
    return 0;
  },
};
