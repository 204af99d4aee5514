/**
 * Big-endian FITS pixel payloads → physical f32 — twin of native/src/decode.rs. The input is not
 * modified: bytes are copied to an aligned scratch buffer, byte-swapped there with Buffer.swapNN
 * (native code) and read through a typed view, so the per-pixel loop is a plain multiply-add in f64.
 */
let scratch = Buffer.alloc(0);
function aligned(bytes: Uint8Array, n: number): Buffer {
  if (scratch.length < n) scratch = Buffer.allocUnsafeSlow(Math.max(n, scratch.length * 2));
  const b = scratch.subarray(0, n);
  b.set(bytes.subarray(0, n));
  return b;
}

export function decode(
  bytes: Uint8Array,
  bitpix: number,
  count: number,
  bzero: number,
  bscale: number,
  blank: number,
  out: Float32Array,
  off: number,
): number {
  const hasBlank = Number.isFinite(blank);
  const target = out.subarray(off, off + count);
  switch (bitpix) {
    case 8:
      for (let i = 0; i < count; i++) {
        const v = bytes[i]!;
        target[i] = hasBlank && v === blank ? NaN : v * bscale + bzero;
      }
      return count;
    case 16: {
      const b = aligned(bytes, 2 * count).swap16();
      const a = new Int16Array(b.buffer, b.byteOffset, count);
      if (!hasBlank && bzero === 32768 && bscale === 1) {
        // Unsigned 16-bit: flip the sign bits (two pixels per 32-bit word) and convert natively.
        const u32 = new Uint32Array(b.buffer, b.byteOffset, count >>> 1);
        for (let i = 0; i < u32.length; i++) u32[i] = u32[i]! ^ 0x80008000;
        const u16 = new Uint16Array(b.buffer, b.byteOffset, count);
        if (count & 1) u16[count - 1] = u16[count - 1]! ^ 0x8000;
        target.set(u16);
        return count;
      }
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        target[i] = hasBlank && v === blank ? NaN : v * bscale + bzero;
      }
      return count;
    }
    case 32: {
      const b = aligned(bytes, 4 * count).swap32();
      const a = new Int32Array(b.buffer, b.byteOffset, count);
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        target[i] = hasBlank && v === blank ? NaN : v * bscale + bzero;
      }
      return count;
    }
    case 64: {
      const b = aligned(bytes, 8 * count).swap64();
      const a = new BigInt64Array(b.buffer, b.byteOffset, count);
      const bl = hasBlank ? BigInt(blank) : undefined;
      for (let i = 0; i < count; i++) {
        const v = a[i]!;
        target[i] = v === bl ? NaN : Number(v) * bscale + bzero;
      }
      return count;
    }
    case -32: {
      const b = aligned(bytes, 4 * count).swap32();
      const a = new Float32Array(b.buffer, b.byteOffset, count);
      if (bzero === 0 && bscale === 1) target.set(a);
      else for (let i = 0; i < count; i++) target[i] = a[i]! * bscale + bzero;
      return count;
    }
    default: {
      const b = aligned(bytes, 8 * count).swap64();
      const a = new Float64Array(b.buffer, b.byteOffset, count);
      for (let i = 0; i < count; i++) target[i] = a[i]! * bscale + bzero;
      return count;
    }
  }
}
