import { describe, expect, it } from "vitest";
import { PlanePool } from "./planes.js";

describe("PlanePool", () => {
  it("hands a given-back plane out again, for its exact length only", () => {
    const pool = new PlanePool(4);
    const a = pool.take(1000);
    expect(a.length).toBe(1000);
    pool.give(a);
    expect(pool.take(999)).not.toBe(a); // another length: a fresh plane
    expect(pool.take(1000)).toBe(a);
    expect(pool.take(1000)).not.toBe(a); // taken already: not handed out twice
  });

  it("keeps no views and no duplicates, and at most maxIdle planes", () => {
    const pool = new PlanePool(2);
    const whole = pool.take(64);
    pool.give(whole.subarray(8), whole, whole); // a view of part of a buffer is never pooled; a repeat is ignored
    expect(pool.take(56)).not.toBe(whole.subarray(8));
    expect(pool.take(64)).toBe(whole);
    expect(pool.take(64)).not.toBe(whole);
    const [p, q, r] = [pool.take(10), pool.take(10), pool.take(10)];
    pool.give(p, q, r); // only two are kept
    const back = new Set([pool.take(10), pool.take(10), pool.take(10)]);
    expect([p, q, r].filter((x) => back.has(x)).length).toBe(2);
  });

  it("keeps at most maxIdleBytes idle, and nothing after clear()", () => {
    const pool = new PlanePool(12, 3 * 4000); // room for three planes of 1000 values
    const planes = Array.from({ length: 5 }, () => pool.take(1000));
    pool.give(...planes);
    const back = new Set(Array.from({ length: 5 }, () => pool.take(1000)));
    expect(planes.filter((x) => back.has(x)).length).toBe(3);
    pool.give(planes[0]);
    pool.clear();
    expect(pool.take(1000)).not.toBe(planes[0]);
  });
});
