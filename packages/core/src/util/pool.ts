/**
 * `fn` over `items` with at most `limit` calls in flight; results in input order. Used to overlap file
 * reads (libuv's thread pool) with the kernels and JavaScript work of other items: the order of the
 * results, never the completion order, is what callers use, so output stays deterministic. `lane`
 * (0 ≤ lane < limit) names the call's lane: no two calls in flight share one, so a lane can own a buffer.
 * After an error no new item starts, and the error is passed on once every lane has ended.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number, lane: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0,
    failed = false;
  const worker = async (lane: number) => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i, lane);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, (_, l) => worker(l));
  const bad = (await Promise.allSettled(lanes)).find((r) => r.status === "rejected");
  if (bad) throw (bad as PromiseRejectedResult).reason;
  return out;
}
