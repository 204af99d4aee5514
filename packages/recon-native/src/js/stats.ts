/**
 * Robust statistics by selection — the twin of native/src/stats.rs: same f64 operations in the same
 * order, so both backends agree bit for bit on the same input.
 */

/** Rearrange `v[0..n)` so v[k] holds the value of rank k, smaller values before it, larger after. */
export function select(v: Float64Array | number[], k: number, n = v.length): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    // Median-of-three pivot, then a Hoare-style partition.
    const mid = (lo + hi) >>> 1;
    const a = v[lo]!,
      b = v[mid]!,
      c = v[hi]!;
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i]! < pivot) i++;
      while (v[j]! > pivot) j--;
      if (i <= j) {
        const t = v[i]!;
        v[i] = v[j]!;
        v[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return v[k]!;
}

export function median(v: Float64Array | number[], n = v.length): number {
  if (n === 0) return NaN;
  const hi = select(v, n >> 1, n);
  if (n % 2 === 1) return hi;
  let lo = -Infinity;
  for (let i = 0; i < n >> 1; i++) if (v[i]! > lo) lo = v[i]!;
  return (lo + hi) / 2;
}

export function percentile(v: Float64Array | number[], p: number, n = v.length): number {
  if (n === 0) return NaN;
  const h = (n - 1) * Math.min(Math.max(p, 0), 1);
  const lo = Math.floor(h);
  const x0 = select(v, lo, n);
  if (lo + 1 >= n) return x0;
  let x1 = Infinity;
  for (let i = lo + 1; i < n; i++) if (v[i]! < x1) x1 = v[i]!;
  return x0 + (h - lo) * (x1 - x0);
}

export function meanSd(v: ArrayLike<number>, n = v.length): [number, number] {
  if (n === 0) return [NaN, NaN];
  let s = 0;
  for (let i = 0; i < n; i++) s += v[i]!;
  const m = s / n;
  let q = 0;
  for (let i = 0; i < n; i++) {
    const d = v[i]! - m;
    q += d * d;
  }
  return [m, Math.sqrt(q / n)];
}

export function finiteValues(values: Float32Array): Float64Array {
  const out = new Float64Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (x === x && x !== Infinity && x !== -Infinity) out[n++] = x;
  }
  return out.subarray(0, n);
}

/** [median, mad, clippedMean, clippedSigma, count, clippedCount]; see stats.rs. */
export function robustStats(values: Float32Array, low: number, high: number, iterations: number): number[] {
  let kept = finiteValues(values);
  const n = kept.length;
  if (n === 0) return [NaN, NaN, NaN, NaN, 0, 0];
  const scratch = Float64Array.from(kept);
  const med = median(scratch);
  for (let i = 0; i < n; i++) scratch[i] = Math.abs(kept[i]! - med);
  const mad = median(scratch);
  for (let it = 0; it < iterations; it++) {
    scratch.set(kept);
    const c = median(scratch, kept.length);
    const sd = meanSd(kept)[1];
    const lo = c - low * sd;
    const hi = c + high * sd;
    const next = kept.filter((x) => x >= lo && x <= hi);
    const changed = next.length !== kept.length;
    kept = next;
    if (!changed || kept.length === 0) break;
  }
  const [m, sd] = meanSd(kept);
  return [med, mad, m, sd, n, kept.length];
}
