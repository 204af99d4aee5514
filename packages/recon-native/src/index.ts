/**
 * @tile-compile/recon-native — the hot loops of tile-compile in two backends with one contract: a Rust
 * Node-API addon without crate dependencies (SIMD via std::arch with runtime detection, threads via
 * std::thread::scope, long calls as cancellable async work) and a pure-TypeScript twin that is the
 * reference in parity tests. `loadRecon()` picks one (TILE_COMPILE_RECON=js|native|auto) and reports
 * which in `backend.kind`.
 */
export * from "./contract.js";
export { loadRecon, nativeAvailable, platformTriple } from "./load.js";
export { Backend } from "./backend.js";
export { jsKernels } from "./js/index.js";
/** Median of v[0..n) by selection (reorders v; the mean of the two middle values for even n) — the kernels' own. */
export { median as selectionMedian } from "./js/stats.js";
/** The aperture photometry kernel's TypeScript twin, synchronous (for a few planes where a kernel call is not worth it). */
export { aperturePhotometry as measureApertures } from "./js/photometry.js";
export type { RawKernels } from "./raw.js";
export { shiftMatrix, similarityMatrix, affineMatrix, multiplyMatrix, invertMatrix, separableWindow } from "./transforms.js";
export { seededRandom } from "./random.js";
export { trimmedSdScale, trimmedSdScales, truncatedSdScale } from "./trim.js";
