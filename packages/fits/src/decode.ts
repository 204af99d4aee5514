/**
 * Big-endian FITS pixel payloads → Float32Array in physical units (value·BSCALE + BZERO), with BLANK
 * (integer images) and IEEE NaN (float images) both becoming NaN.
 *
 * Speed matters (it sits on every frame read), so the work is done by recon-native's decode kernel.
 */
import { loadRecon } from "@tile-compile/recon-native";

export type Bitpix = 8 | 16 | 32 | 64 | -32 | -64;
export const BITPIX_VALUES: readonly Bitpix[] = [8, 16, 32, 64, -32, -64];

export function bytesPerPixel(bitpix: Bitpix): number {
  return Math.abs(bitpix) / 8;
}

export interface Scaling {
  bzero: number;
  bscale: number;
  /** Raw integer value marking undefined pixels (integer BITPIX only). */
  blank?: number | bigint | undefined;
}

/**
 * Decode `count` pixels starting at byte 0 of `bytes` into `out` at `outOffset`, through recon-native's
 * decode kernel (one pass in Rust when the addon is built; the TypeScript twin otherwise). `bytes` is
 * not modified.
 */
export function decodeBigEndian(
  bytes: Uint8Array,
  bitpix: Bitpix,
  count: number,
  scaling: Scaling,
  out: Float32Array,
  outOffset = 0,
): void {
  loadRecon().decode(bytes, bitpix, count, scaling, out, outOffset);
}
