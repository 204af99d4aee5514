/**
 * `fn` over `items` with at most `limit` calls in flight; results in input order. Used to overlap file
 * reads (libuv's thread pool) with the kernels and JavaScript work of other items: the order of the
 * results, never the completion order, is what callers use, so output stays deterministic.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
