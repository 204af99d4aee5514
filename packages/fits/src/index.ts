/**
 * @tile-compile/fits — FITS images for tile-compile: headers (CONTINUE, HIERARCH, dialects repaired on
 * read), primary and IMAGE extension HDUs, every BITPIX with BZERO/BSCALE/BLANK, tile-compressed images
 * (RICE_1, GZIP_1/2, quantized floats), streaming row reads, and an atomic, deterministic writer.
 */
export * from "./header.js";
export * from "./decode.js";
export * from "./reader.js";
export * from "./writer.js";
export type { HduInfo, HduKind } from "./hdu.js";
export { FileSource } from "./source.js";
export { uninitialisedPlane } from "./planes.js";
