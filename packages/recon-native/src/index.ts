/**
 * @tile-compile/recon-native — CONTRACT ONLY SO FAR.
 *
 * The hot loops of every native engine will live here, in two backends with one contract: a Rust
 * Node-API addon without crate dependencies (SIMD via std::arch, threads via std::thread::scope, long
 * calls as cancellable async work) and a pure-TypeScript twin that is the reference in parity tests.
 * `loadRecon()` will report which backend ran; `TILE_COMPILE_RECON=js|native` forces one.
 *
 * This file declares the data conventions and the planned contract. No kernel is implemented yet and
 * nothing here pretends otherwise: there is no loader to call.
 */

/** A single-channel image or tile: row-major, `stride` values between row starts, values in ADU, NaN = invalid. */
export interface Plane {
  data: Float32Array;
  width: number;
  height: number;
  stride: number;
}

/** Which backend ran, recorded in run provenance. */
export type ReconBackendKind = "native" | "js";

/** Robust statistics of a set of pixels (NaN ignored). */
export interface RobustStats {
  median: number;
  /** Median absolute deviation (unscaled). */
  mad: number;
  /** Sigma-clipped mean and standard deviation. */
  clippedMean: number;
  clippedSigma: number;
  count: number;
}

/**
 * The planned kernel contract (see the recon-native issue): decode, robust statistics, background and
 * noise maps, star detection, per-tile TBQR metrics, warping, debayering, combine with rejection, and
 * windowed overlap-add. Both backends will implement exactly this interface.
 */
export interface ReconBackend {
  readonly kind: ReconBackendKind;
  robustStats(values: Float32Array, options?: { sigmaLow?: number; sigmaHigh?: number; iterations?: number }): RobustStats;
}
