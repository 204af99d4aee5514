/** A plane of `length` values on malloc'd memory, not zero-filled: for outputs written whole. */
export function uninitialisedPlane(length: number): Float32Array {
  return new Float32Array(Buffer.allocUnsafeSlow(4 * length).buffer, 0, length);
}
