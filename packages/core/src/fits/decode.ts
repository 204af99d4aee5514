/**
 * Big-endian FITS pixel payloads → Float32Array in physical units (value·BSCALE + BZERO), with BLANK
 * (integer images) and IEEE NaN (float images) both becoming NaN.
 *
 * Speed matters (it sits on every frame read): the bytes are byte-swapped in place with Buffer.swapNN,
 * which is native code, and then read through a typed-array view, so the per-pixel loop is a plain
 * multiply-add. The input buffer is clobbered; callers pass a scratch buffer they own.
 */

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
 * Decode `count` pixels starting at byte 0 of `bytes` into `out` at `outOffset`.
 * `bytes` must start on an offset that is a multiple of the pixel size within its ArrayBuffer (a fresh
 * Buffer.allocUnsafeSlow satisfies this); it is byte-swapped in place on little-endian machines.
 */
export function decodeBigEndian(bytes: Buffer, bitpix: Bitpix, count: number, scaling: Scaling, out: Float32Array, outOffset = 0): void {
  const { bzero, bscale } = scaling;
  const identity = bzero === 0 && bscale === 1;
  const n = count * bytesPerPixel(bitpix);
  const view = n === bytes.length ? bytes : bytes.subarray(0, n);
  switch (bitpix) {
    case 8: {
      const a = new Uint8Array(view.buffer, view.byteOffset, count);
      const blank = scaling.blank === undefined ? -1 : Number(scaling.blank);
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        out[outOffset + i] = v === blank ? NaN : v * bscale + bzero;
      }
      return;
    }
    case 16: {
      view.swap16();
      if (scaling.blank === undefined) decodeInt16(view, count, bzero, bscale, out, outOffset);
      else {
        const a = new Int16Array(view.buffer, view.byteOffset, count);
        const blank = Number(scaling.blank);
        for (let i = 0; i < count; i++) {
          const v = a[i]!;
          out[outOffset + i] = v === blank ? NaN : v * bscale + bzero;
        }
      }
      return;
    }
    case 32: {
      view.swap32();
      const a = new Int32Array(view.buffer, view.byteOffset, count);
      const blank = scaling.blank === undefined ? undefined : Number(scaling.blank);
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        out[outOffset + i] = v === blank ? NaN : v * bscale + bzero;
      }
      return;
    }
    case 64: {
      view.swap64();
      const a = new BigInt64Array(view.buffer, view.byteOffset, count);
      const blank = scaling.blank === undefined ? undefined : BigInt(scaling.blank);
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        out[outOffset + i] = v === blank ? NaN : Number(v) * bscale + bzero;
      }
      return;
    }
    case -32: {
      view.swap32();
      const target = out.subarray(outOffset, outOffset + count);
      target.set(new Float32Array(view.buffer, view.byteOffset, count));
      if (!identity) affineInPlace(target, bscale, bzero);
      return;
    }
    case -64: {
      view.swap64();
      const a = new Float64Array(view.buffer, view.byteOffset, count);
      for (let i = 0; i < count; i++) out[outOffset + i] = a[i]! * bscale + bzero;
      return;
    }
  }
}

/** y = y·bscale + bzero over a Float32Array; exact for values that f32 holds exactly (all int16). */
function affineInPlace(a: Float32Array, bscale: number, bzero: number): void {
  if (bscale === 1) for (let i = 0; i < a.length; i++) a[i] = a[i]! + bzero;
  else for (let i = 0; i < a.length; i++) a[i] = a[i]! * bscale + bzero;
}

/**
 * Native-endian int16 → f32 with scaling. Unsigned 16-bit (BZERO 32768, BSCALE 1, the common camera
 * case) flips the sign bit two pixels at a time through a Uint32 view and lets TypedArray.set convert
 * u16 → f32 in native code; other scalings convert natively and then apply the affine map.
 */
function decodeInt16(view: Buffer, count: number, bzero: number, bscale: number, out: Float32Array, outOffset: number): void {
  const target = out.subarray(outOffset, outOffset + count);
  if (bzero === 32768 && bscale === 1 && view.byteOffset % 4 === 0) {
    const pairs = count >>> 1;
    const u32 = new Uint32Array(view.buffer, view.byteOffset, pairs);
    for (let i = 0; i < pairs; i++) u32[i] = u32[i]! ^ 0x80008000;
    const u16 = new Uint16Array(view.buffer, view.byteOffset, count);
    if (count & 1) u16[count - 1] = u16[count - 1]! ^ 0x8000;
    target.set(u16);
    return;
  }
  target.set(new Int16Array(view.buffer, view.byteOffset, count));
  if (bzero !== 0 || bscale !== 1) affineInPlace(target, bscale, bzero);
}
