import { uninitialisedPlane } from "@tile-compile/fits";

/**
 * A pool of whole-frame Float32Array planes for per-frame work that runs frame after frame (a
 * registration: decoded frame, background and noise maps, warped frame). Reusing the same few blocks
 * instead of allocating ≈ 80 MB per 2048² frame spares the allocator, the page faults and, above all, V8's
 * garbage collector, which starts a major collection for every few dozen MB of new ArrayBuffers.
 *
 * Contents of a taken plane are undefined (the previous user's values). A plane must be given back only
 * once nothing reads or writes it any more; giving back is optional (an unreturned plane is collected).
 */
export class PlanePool {
  private readonly idle = new Map<number, Float32Array[]>();
  private held = 0;
  private heldBytes = 0;

  /**
   * `maxIdle`: most idle planes kept, `maxIdleBytes`: most idle bytes (beyond either, a returned plane is
   * dropped to the collector). Planes in use are not counted: their number is the caller's concurrency.
   */
  constructor(
    private readonly maxIdle = 12,
    private readonly maxIdleBytes = 256 * 2 ** 20,
  ) {}

  /** A plane of exactly `length` values (not zeroed). */
  take(length: number): Float32Array {
    const list = this.idle.get(length);
    const p = list?.pop();
    if (p) {
      this.held--;
      this.heldBytes -= p.byteLength;
      return p;
    }
    return uninitialisedPlane(length);
  }

  /** Give back planes taken from {@link take} (or any Float32Array that owns its whole buffer). */
  give(...planes: (Float32Array | undefined)[]): void {
    for (const p of planes) {
      if (
        !p ||
        p.byteOffset !== 0 ||
        p.buffer.byteLength !== p.byteLength ||
        this.held >= this.maxIdle ||
        this.heldBytes + p.byteLength > this.maxIdleBytes
      )
        continue;
      const list = this.idle.get(p.length) ?? [];
      if (list.includes(p)) continue; // given twice: keep one entry
      list.push(p);
      this.idle.set(p.length, list);
      this.held++;
      this.heldBytes += p.byteLength;
    }
  }

  /** Drop every idle plane. */
  clear(): void {
    this.idle.clear();
    this.held = 0;
    this.heldBytes = 0;
  }
}
