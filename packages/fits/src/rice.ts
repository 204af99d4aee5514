/**
 * Rice decompression of one tile, as written by CFITSIO's `fpack` (RICE_1 in the FITS tiled image
 * compression convention, FITS Standard 4.0 §10.4.1 and White, Greenfield, Pence & Tody 2013).
 *
 * Stream layout: the first pixel verbatim (`bytepix` bytes, big-endian); then blocks of `blockSize`
 * pixels, each starting with an `fsBits`-bit code. code−1 = fs < 0: every difference in the block is 0;
 * fs = fsMax: each difference is stored verbatim in `bbits` bits; otherwise each difference is a unary
 * run of zeros (the high part) followed by `fs` low bits. Differences are zig-zag mapped
 * (0, −1, 1, −2, … ↦ 0, 1, 2, 3, …) and accumulate modulo 2^bbits.
 */

const PARAMS = {
  1: { fsBits: 3, fsMax: 6, bbits: 8 },
  2: { fsBits: 4, fsMax: 14, bbits: 16 },
  4: { fsBits: 5, fsMax: 25, bbits: 32 },
} as const;

export class RiceError extends Error {}

/**
 * Decode `count` pixels from `input` into `out` (Int32Array, values sign-extended from bytepix bytes,
 * except bytepix 1 which FITS defines as unsigned).
 */
export function riceDecode(input: Uint8Array, count: number, blockSize: number, bytepix: 1 | 2 | 4, out: Int32Array): void {
  const { fsBits, fsMax, bbits } = PARAMS[bytepix];
  if (input.length < bytepix + 1) throw new RiceError("compressed tile is shorter than its first pixel");
  let pos = 0;
  let last = 0;
  for (let k = 0; k < bytepix; k++) last = last * 256 + input[pos++]!;
  last = wrap(last, bytepix);
  // Bit buffer: `b` holds the unread low `nbits` bits. We never keep more than 32 bits (>>> keeps it unsigned).
  let b = input[pos++]!;
  let nbits = 8;
  const next = (): number => {
    if (pos >= input.length) throw new RiceError("compressed tile ended early");
    return input[pos++]!;
  };
  for (let i = 0; i < count; i += blockSize) {
    const imax = Math.min(i + blockSize, count);
    nbits -= fsBits;
    while (nbits < 0) {
      b = ((b << 8) | next()) >>> 0;
      nbits += 8;
    }
    const fs = (b >>> nbits) - 1;
    b &= (1 << nbits) - 1;
    if (fs < 0) {
      for (let j = i; j < imax; j++) out[j] = last;
    } else if (fs === fsMax) {
      for (let j = i; j < imax; j++) {
        // Read bbits verbatim bits: the nbits we hold, then whole bytes, then the top of one more byte.
        let diff = 0;
        let need = bbits;
        diff = nbits > 0 ? b : 0;
        need -= nbits;
        while (need >= 8) {
          diff = diff * 256 + next();
          need -= 8;
        }
        if (need > 0) {
          b = next();
          diff = diff * (1 << need) + (b >>> (8 - need));
          nbits = 8 - need;
          b &= (1 << nbits) - 1;
        } else {
          nbits = 0;
          b = 0;
        }
        last = wrap(last + unzig(diff), bytepix);
        out[j] = last;
      }
    } else {
      for (let j = i; j < imax; j++) {
        // Count leading zeros of the unary high part.
        while (b === 0) {
          nbits += 8;
          b = next();
        }
        const nzero = nbits - (32 - Math.clz32(b));
        nbits -= nzero + 1;
        b ^= 1 << nbits;
        nbits -= fs;
        while (nbits < 0) {
          b = ((b << 8) | next()) >>> 0;
          nbits += 8;
        }
        const diff = nzero * 2 ** fs + (b >>> nbits);
        b &= (1 << nbits) - 1;
        last = wrap(last + unzig(diff), bytepix);
        out[j] = last;
      }
    }
  }
}

/** Zig-zag inverse: even → +d/2, odd → −(d+1)/2. `d` may exceed 2^31 for bbits 32, hence plain arithmetic. */
function unzig(d: number): number {
  return d % 2 === 0 ? d / 2 : -(d + 1) / 2;
}

/** Reduce to the signed range of the pixel width (unsigned for bytes, as FITS BITPIX 8 is unsigned). */
function wrap(v: number, bytepix: 1 | 2 | 4): number {
  if (bytepix === 1) return ((v % 256) + 256) % 256;
  if (bytepix === 2) return (v << 16) >> 16;
  return v | 0;
}
