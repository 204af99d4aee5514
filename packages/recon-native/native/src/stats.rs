//! Robust statistics by selection (no full sorts). The TypeScript twin (src/js/stats.ts) performs the
//! same f64 operations in the same order, so both backends agree to the last bit on the same data.

/// Value of rank k (0-based) of `v`, reordering `v`.
pub fn select(v: &mut [f64], k: usize) -> f64 {
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

/// Median of finite values (caller filtered NaN): the mean of the two middle values for even n.
pub fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 { return f64::NAN; }
    let hi = select(v, n / 2);
    if n % 2 == 1 { return hi; }
    let lo = v[..n / 2].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// f64 ↔ u64 keys in the order of `f64::total_cmp` (sign bit flipped for positives, all bits for negatives).
#[inline]
fn key(x: f64) -> u64 { let b = x.to_bits(); if b >> 63 == 1 { !b } else { b | (1 << 63) } }
#[inline]
fn unkey(k: u64) -> f64 { f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k }) }

/// `median`, selecting on integer keys (`keys` is scratch): the same value, about twice as fast on the
/// few-thousand-value sets of the tile metrics (a float comparator per comparison was most of the cost).
pub fn median_keyed(v: &[f64], keys: &mut Vec<u64>) -> f64 {
    let n = v.len();
    if n == 0 { return f64::NAN; }
    keys.clear();
    keys.extend(v.iter().map(|&x| key(x)));
    let (lo_part, hi, _) = keys.select_nth_unstable(n / 2);
    let hi = unkey(*hi);
    if n % 2 == 1 { return hi; }
    let lo = unkey(*lo_part.iter().max().unwrap());
    (lo + hi) / 2.0
}

/// f32 ↔ u32 keys in the order of `f32::total_cmp`.
#[inline]
fn key32(x: f32) -> u32 { let b = x.to_bits(); if b >> 31 == 1 { !b } else { b | (1 << 31) } }
#[inline]
fn unkey32(k: u32) -> f32 { f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k }) }

/// `median_keyed` of single-precision values (selecting on 32-bit keys, half the memory traffic): the same
/// value as `median_keyed` of the same values widened to f64 (the middle pair's mean is taken in f64).
pub fn median_keyed32(v: &[f32], keys: &mut Vec<u32>) -> f64 {
    let n = v.len();
    if n == 0 { return f64::NAN; }
    keys.clear();
    keys.extend(v.iter().map(|&x| key32(x)));
    let (lo_part, hi, _) = keys.select_nth_unstable(n / 2);
    let hi = unkey32(*hi) as f64;
    if n % 2 == 1 { return hi; }
    let lo = unkey32(*lo_part.iter().max().unwrap()) as f64;
    (lo + hi) / 2.0
}

/// Percentile p in [0, 1] with linear interpolation between order statistics (h = (n − 1)·p).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    let n = v.len();
    if n == 0 { return f64::NAN; }
    let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let x0 = select(v, lo);
    if lo + 1 >= n { return x0; }
    let x1 = v[lo + 1..].iter().cloned().fold(f64::INFINITY, f64::min);
    x0 + (h - lo as f64) * (x1 - x0)
}

pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() { return (f64::NAN, f64::NAN); }
    let mut s = 0.0;
    for x in v { s += x; }
    let m = s / n;
    let mut q = 0.0;
    for x in v { let d = x - m; q += d * d; }
    (m, (q / n).sqrt())
}

/// Median absolute deviation about `center` (unscaled), using `scratch`.
pub fn mad(v: &[f64], center: f64, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(v.iter().map(|x| (x - center).abs()));
    median(scratch)
}

/// [median, mad, clippedMean, clippedSigma, count, clippedCount] of the finite values.
/// Clipping: around the median of the kept values, by the population σ of the kept values, until
/// nothing changes or `iterations` passes; kept values stay in input order so sums are reproducible.
pub fn robust_stats(values: &[f32], low: f64, high: f64, iterations: usize) -> [f64; 6] {
    let mut kept: Vec<f64> = values.iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
    let n = kept.len();
    if n == 0 { return [f64::NAN, f64::NAN, f64::NAN, f64::NAN, 0.0, 0.0]; }
    let mut scratch = kept.clone();
    let med = median(&mut scratch);
    let mad_v = mad(&kept, med, &mut scratch);
    for _ in 0..iterations {
        scratch.clear();
        scratch.extend_from_slice(&kept);
        let c = median(&mut scratch);
        let (_, sd) = mean_sd(&kept);
        let (lo, hi) = (c - low * sd, c + high * sd);
        let before = kept.len();
        kept.retain(|&x| x >= lo && x <= hi);
        if kept.len() == before || kept.is_empty() { break; }
    }
    let (m, sd) = mean_sd(&kept);
    [med, mad_v, m, sd, n as f64, kept.len() as f64]
}
