//! Pixel-wise combination of N aligned frames (or bands of them) with optional rejection.
//!
//! Per pixel the finite values are sorted; rejection keeps a contiguous range s[a..b) of the sorted
//! values, so every pass is O(log n) on prefix sums P, Q of (s − s[n/2]) instead of O(n). A pass:
//! centre c = median of the range; σ by the method; bounds [c − low·σ, c + high·σ]; the range shrinks
//! to the values inside, unless fewer than 2 would remain (then rejection stops). σ is the sample
//! standard deviation (n − 1, as Siril and most tools); passes repeat until nothing changes or `iterations`. Methods:
//! - sigma: σ of the range;
//! - mad: σ = 1.4826·MAD of the range;
//! - winsorized: σ is the fixed point of σ ↦ σ'(σ) = 1.134·σ(copy clamped to c ± 1.5σ) (Siril's and
//!   Huber's iteration, whose limit this is). For fixed clamp counts σ'(σ)² is a quadratic in σ, so the
//!   fixed point is solved in closed form and accepted once its own clamp counts are the ones it was
//!   solved with (see `fixed_sigma`; usually two rounds). Lanes the closed form does not settle fall back
//!   to the iteration (relaxed step, see `RELAX`; |σ' − σ| ≤ 0.05 % of σ, at most 10 steps);
//! - percentile: one pass, bounds c·(1 − low), c·(1 + high) (low/high are fractions of |c|);
//! - linear-fit: fit a line to the sorted values, σ = mean |residual|, reject values below/above the line
//!   by low·σ / high·σ (may remove inner values, so it keeps per-value flags).
//! The result is the weighted mean, in frame order, of the values inside [s[a], s[b−1]] (or their median).
//! With normalisation, frame f's value x enters as f32(scale_f·x + offset_f) (f64 arithmetic, one
//! rounding): exactly what storing the normalised frame in a Float32Array first would give.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;

/// Frame f's value as it enters the combination (see the module note on normalisation).
#[inline(always)]
fn norm_value(x: f32, f: usize, norm: Option<&[f64]>) -> f32 {
    match norm { Some(n) => (n[2 * f] * x as f64 + n[2 * f + 1]) as f32, None => x }
}

/// Relaxation of the winsorizing iteration. σ' = 1.134·sd(clamp(x, c ± 1.5σ)) has slope
/// 1.134·1.5·g'(1.5) = 0.386 at its fixed point for Gaussian data (g(k): the standard deviation of a unit
/// normal winsorized at ±k, g'(k) = 2k(1 − Φ(k))/g(k)), so plain iteration shrinks the error only ×0.39 a
/// step (≈ 8 steps to 0.05 %, 20 % of pixels hit the cap of 10). Stepping 1/(1 − 0.386) = 1.63 times the
/// change cancels that slope; for any slope s in [0, 1) the error factor 1.63·s − 0.63 stays inside
/// (−1, 1), so it converges wherever the plain iteration does, to the same fixed point.
const RELAX: f64 = 1.63;

/// Rounds of the closed-form winsorized σ before a lane falls back to the iteration.
const ROUNDS: usize = 6;
/// 1.134², the winsorizing correction squared (both backends compute it as this product).
const K2: f64 = 1.134 * 1.134;

/// Fixed point of the winsorizing map for fixed clamp counts. With nl values clamped up to c − 1.5σ, nh
/// clamped down to c + 1.5σ and the m − nl − nh middle values having sums D1, D2 of (s − shift) and
/// (s − shift)², write c' = c − shift, K = nl + nh, Δ = nh − nl, S0 = K·c' + D1. Then
///   (m − 1)·var(σ) = C0 + C1·σ + C2·σ², C0 = K·c'² + D2 − S0²/m, C1 = 3Δ(c' − S0/m), C2 = 2.25(K − Δ²/m),
/// and σ = 1.134·√var(σ) becomes A·σ² − B·σ − C = 0 with A = m − 1 − 1.134²·C2, B = 1.134²·C1,
/// C = 1.134²·C0. Its non-negative root (the cancellation-free form for either sign of B) is returned;
/// NaN when A ≤ 0 (more than about a third of the values clamped: the map is not contracting there).
#[inline(always)]
fn fixed_sigma(m: f64, cp: f64, nl: f64, nh: f64, d1: f64, d2: f64) -> f64 {
    let (k, dl) = (nl + nh, nh - nl);
    let s0 = k * cp + d1;
    let c0 = k * cp * cp + d2 - s0 * s0 / m;
    let c1 = 3.0 * dl * (cp - s0 / m);
    let c2 = 2.25 * (k - dl * dl / m);
    let aq = (m - 1.0) - K2 * c2;
    let bq = K2 * c1;
    let cq = K2 * (if c0 > 0.0 { c0 } else { 0.0 });
    let disc = (bq * bq + 4.0 * aq * cq).sqrt();
    let r = if bq >= 0.0 { (bq + disc) / (2.0 * aq) } else { 2.0 * cq / (disc - bq) };
    if aq > 0.0 { r } else { f64::NAN }
}

/// The winsorizing iteration itself (the fallback of the closed form): from centre c and σ, step with
/// relaxation until |σ' − σ| ≤ 0.05 % of σ or 10 steps. `at(i)` is the i-th sorted value, `pq(i)` the
/// prefix sums of (s − shift), (s − shift)² before i; returns (centre, σ).
#[inline(always)]
fn winsor_iterate(at: impl Fn(usize) -> f64, pq: impl Fn(usize) -> (f64, f64), a: usize, b: usize, shift: f64, c: f64, sd: f64) -> (f64, f64) {
    let m = b - a;
    let mf = m as f64;
    let mid = a + m / 2;
    let (mut cc, mut ss) = (c, sd);
    let (mut hl, mut hu) = (a, b);
    for _ in 0..10 {
        let (wl, wh) = (cc - 1.5 * ss, cc + 1.5 * ss);
        hl = walk(&at, a, b, hl, |x| x < wl);
        hu = walk(&at, a, b, hu, |x| x <= wh);
        let (nl, nh) = ((hl - a) as f64, (b - hu) as f64);
        let (i0, i1) = (hl, hu.max(hl));
        let (lw, hw) = (wl - shift, wh - shift);
        let ((p0, q0), (p1, q1)) = (pq(i0), pq(i1));
        let sum = nl * lw + (p1 - p0) + nh * hw;
        let sq = nl * lw * lw + (q1 - q0) + nh * hw * hw;
        let v = (sq - sum * sum / mf) / (mf - 1.0);
        let s1 = 1.134 * (if v > 0.0 { v } else { 0.0 }).sqrt();
        let clamp = |x: f64| if x < wl { wl } else if x > wh { wh } else { x };
        cc = if m % 2 == 1 { clamp(at(mid)) } else { (clamp(at(mid - 1)) + clamp(at(mid))) / 2.0 };
        let done = (s1 - ss).abs() <= 5e-4 * ss;
        let t = ss + RELAX * (s1 - ss);
        ss = if done { s1 } else if t > 0.0 { t } else { 0.0 };
        if done { break; }
    }
    (cc, ss)
}

/// On a sorted range [a, b) with `below(x)` true for a prefix of it: the first index where it is false,
/// found by walking from the hint h (the previous bound, which moves by a step or two) — the same index
/// a binary search returns.
#[inline(always)]
fn walk(at: &impl Fn(usize) -> f64, a: usize, b: usize, h: usize, below: impl Fn(f64) -> bool) -> usize {
    let mut h = h.clamp(a, b);
    while h > a && !below(at(h - 1)) { h -= 1; }
    while h < b && below(at(h)) { h += 1; }
    h
}

/// Winsorized (centre, σ) of the sorted range [a, b) (m ≥ 3) with centre c = its median and sd its
/// sample σ: the closed-form fixed point (`fixed_sigma`), checked against its own clamp counts, else the
/// iteration. The centre stays c unless an even range's two middle values are clamped (then the
/// iteration, which moves the centre, decides).
#[inline(always)]
fn winsor(at: impl Fn(usize) -> f64, pq: impl Fn(usize) -> (f64, f64), a: usize, b: usize, shift: f64, c: f64, sd: f64) -> (f64, f64) {
    let m = b - a;
    let mf = m as f64;
    let mid = a + m / 2;
    let (mut sg, mut nl, mut nh) = (sd, usize::MAX, usize::MAX);
    let (mut hl, mut hu) = (a, b);
    for _ in 0..ROUNDS {
        hl = walk(&at, a, b, hl, |x| x < c - 1.5 * sg);
        hu = walk(&at, a, b, hu, |x| x <= c + 1.5 * sg);
        if m % 2 == 0 && (hl > mid - 1 || hu <= mid) { break; }
        if hl - a == nl && b - hu == nh { return (c, sg); }
        (nl, nh) = (hl - a, b - hu);
        let ((p0, q0), (p1, q1)) = (pq(hl), pq(hu.max(hl)));
        let r = fixed_sigma(mf, c - shift, nl as f64, nh as f64, p1 - p0, q1 - q0);
        if !(r >= 0.0) { break; }
        sg = r;
    }
    winsor_iterate(at, pq, a, b, shift, c, sd)
}

pub const MEAN: u32 = 0;
pub const MEDIAN: u32 = 1;
pub const R_NONE: u32 = 0;
pub const R_SIGMA: u32 = 1;
pub const R_WINSORIZED: u32 = 2;
pub const R_LINEAR: u32 = 3;
pub const R_PERCENTILE: u32 = 4;
pub const R_MAD: u32 = 5;

#[derive(Clone, Copy)]
pub struct Params { pub method: u32, pub rejection: u32, pub low: f64, pub high: f64, pub iterations: usize }

fn sort(v: &mut [f64]) {
    if v.len() <= 24 {
        for i in 1..v.len() { let x = v[i]; let mut j = i; while j > 0 && v[j - 1] > x { v[j] = v[j - 1]; j -= 1; } v[j] = x; }
    } else { v.sort_unstable_by(|a, b| a.total_cmp(b)); }
}
#[inline]
fn median_sorted(s: &[f64]) -> f64 { let n = s.len(); if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 } }

/// Scratch for one worker.
pub struct Px { vals: Vec<f64>, idx: Vec<usize>, keep: Vec<bool>, s: Vec<f64>, wz: Vec<f64>, pq: Vec<(f64, f64)> }
impl Px { pub fn new(n: usize) -> Px { Px { vals: Vec::with_capacity(n), idx: Vec::with_capacity(n), keep: Vec::with_capacity(n), s: Vec::with_capacity(n), wz: Vec::with_capacity(n), pq: Vec::with_capacity(n + 1) } } }

// On a sorted range, "first index with s ≥ v" equals a + (number of values < v). Counting is branch-free
// and vectorises; a binary search on ~16–100 values mispredicts about every other step, and these two
// searches run in the innermost winsorizing loop. Same indices as the TypeScript twin's binary search.
#[inline(always)]
fn lower_bound(s: &[f64], a: usize, b: usize, v: f64) -> usize { a + s[a..b].iter().map(|&x| (x < v) as usize).sum::<usize>() }
#[inline(always)]
fn upper_bound(s: &[f64], a: usize, b: usize, v: f64) -> usize { a + s[a..b].iter().map(|&x| (x <= v) as usize).sum::<usize>() }
#[inline]
fn median_range(s: &[f64], a: usize, b: usize) -> f64 { median_sorted(&s[a..b]) }

/// Sorted-range rejection; returns (a, b, rejected low, rejected high). Needs px.s sorted (n values).
#[inline(always)]
fn reject_range(p: &Params, px: &mut Px) -> (usize, usize, u32, u32) {
    let n = px.s.len();
    let (mut a, mut b, mut rl, mut rh) = (0usize, n, 0u32, 0u32);
    if n < 3 { return (a, b, rl, rh); }
    let shift = px.s[n / 2];
    px.pq.clear();
    px.pq.push((0.0, 0.0));
    let (mut ps, mut qs) = (0.0, 0.0);
    for &x in &px.s { let d = x - shift; ps += d; qs += d * d; px.pq.push((ps, qs)); }
    let sd_range = |pq: &[(f64, f64)], a: usize, b: usize| -> f64 {
        let m = (b - a) as f64;
        let sum = pq[b].0 - pq[a].0;
        let sq = pq[b].1 - pq[a].1;
        ((sq - sum * sum / m) / (m - 1.0)).max(0.0).sqrt()
    };
    let passes = if p.rejection == R_PERCENTILE { 1 } else { p.iterations };
    for _ in 0..passes {
        let m = b - a;
        if m < 3 { break; }
        let c = median_range(&px.s, a, b);
        let (lo, hi) = match p.rejection {
            R_SIGMA => { let sd = sd_range(&px.pq, a, b); (c - p.low * sd, c + p.high * sd) }
            R_MAD => {
                px.wz.clear(); px.wz.extend(px.s[a..b].iter().map(|x| (x - c).abs())); sort(&mut px.wz);
                let sd = 1.482_602_218_505_602 * median_sorted(&px.wz);
                (c - p.low * sd, c + p.high * sd)
            }
            R_WINSORIZED => {
                let (sv, pq) = (&px.s, &px.pq);
                let (cc, ss) = winsor(|i| sv[i], |i| pq[i], a, b, shift, c, sd_range(pq, a, b));
                (cc - p.low * ss, cc + p.high * ss)
            }
            _ => (c - p.low * c.abs(), c + p.high * c.abs()),
        };
        let a2 = lower_bound(&px.s, a, b, lo);
        let b2 = upper_bound(&px.s, a, b, hi).max(a2);
        if b2 - a2 < 2 || (a2 == a && b2 == b) { break; }
        rl += (a2 - a) as u32;
        rh += (b - b2) as u32;
        a = a2;
        b = b2;
    }
    (a, b, rl, rh)
}

/// Linear-fit rejection with per-value flags (px.keep, frame order); returns (rejected low, high).
fn reject_linear(p: &Params, px: &mut Px) -> (u32, u32) {
    let n = px.vals.len();
    let (mut rl, mut rh) = (0u32, 0u32);
    for _ in 0..p.iterations {
        let mut changed = false;
        px.s.clear();
        for (k, &v) in px.vals.iter().enumerate() { if px.keep[k] { px.s.push(v); } }
        let m = px.s.len();
        if m < 3 { break; }
        sort(&mut px.s);
        let mf = m as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (i, &y) in px.s.iter().enumerate() { let x = i as f64; sx += x; sy += y; sxx += x * x; sxy += x * y; }
        let b = (mf * sxy - sx * sy) / (mf * sxx - sx * sx);
        let a = (sy - b * sx) / mf;
        let mut sigma = 0.0;
        for (i, &y) in px.s.iter().enumerate() { sigma += (y - (a + b * i as f64)).abs(); }
        sigma /= mf;
        // Rank of each kept value in the sorted order (ties take consecutive ranks in frame order).
        let mut kept_left = m;
        for k in 0..n {
            if !px.keep[k] { continue; }
            let v = px.vals[k];
            let mut rank = px.s.partition_point(|&y| y < v);
            for kk in 0..k { if px.keep[kk] && px.vals[kk] == v { rank += 1; } }
            let fit = a + b * rank as f64;
            if kept_left <= 2 { break; }
            if v < fit - p.low * sigma { px.keep[k] = false; rl += 1; kept_left -= 1; changed = true; }
            else if v > fit + p.high * sigma { px.keep[k] = false; rh += 1; kept_left -= 1; changed = true; }
        }
        if !changed { break; }
    }
    (rl, rh)
}

/// Combine one pixel from `px.vals`/`px.idx`; returns (value, rejected low, rejected high).
#[inline(always)]
pub fn pixel(p: &Params, weights: Option<&[f64]>, px: &mut Px) -> (f64, u32, u32) {
    let n = px.vals.len();
    if n == 0 { return (f64::NAN, 0, 0); }
    px.keep.clear(); px.keep.resize(n, true);
    let (rl, rh);
    if p.rejection == R_LINEAR {
        (rl, rh) = reject_linear(p, px);
        px.s.clear();
        for (k, &v) in px.vals.iter().enumerate() { if px.keep[k] { px.s.push(v); } }
        sort(&mut px.s);
    } else {
        px.s.clear(); px.s.extend_from_slice(&px.vals); sort(&mut px.s);
        let (a, b);
        if p.rejection == R_NONE { (a, b) = (0, n); (rl, rh) = (0, 0); } else { (a, b, rl, rh) = reject_range(p, px); }
        let (lo, hi) = (px.s[a], px.s[b - 1]);
        for k in 0..n { px.keep[k] = px.vals[k] >= lo && px.vals[k] <= hi; }
        if p.method == MEDIAN { return (median_range(&px.s, a, b), rl, rh); }
    }
    if p.method == MEDIAN { return (median_sorted(&px.s), rl, rh); }
    let (mut acc, mut wsum) = (0.0, 0.0);
    for k in 0..n {
        if !px.keep[k] { continue; }
        let w = weights.map_or(1.0, |w| w[px.idx[k]]);
        acc += w * px.vals[k]; wsum += w;
    }
    (acc / wsum, rl, rh)
}

/// Comparators of Batcher's odd–even merge sort for n values (padded to a power of two with +∞; the
/// comparators that only touch padding are dropped, since +∞ never moves down). Sorting the same network
/// over four pixels at once turns the per-pixel sort — the dominant cost with many frames — into
/// vector min/max operations; the sorted values are identical to a scalar sort's.
pub fn batcher(n: usize) -> Vec<(usize, usize)> {
    let pn = n.next_power_of_two();
    let mut out = Vec::new();
    let mut p = 1;
    while p < pn {
        let mut k = p;
        while k > 0 {
            let mut j = k % p;
            while j + k < pn {
                for i in 0..k {
                    let (a, b) = (i + j, i + j + k);
                    if b < pn && (a / (2 * p)) == (b / (2 * p)) && b < n { out.push((a, b)); }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    out
}

/// Pixels processed together by the grouped path: their sorts run as one 8-lane f32 network (vminps /
/// vmaxps), and their rejection passes run in lockstep so the eight dependency chains (median → bounds →
/// σ → √ → next bounds) overlap in the CPU instead of waiting on each other.
const L: usize = 8;

/// Scratch for one group: sorted columns (row k = the k-th smallest value of each pixel) and the prefix
/// sums P, Q of (s − shift) and (s − shift)² per pixel.
struct Grp { s: Vec<[f32; L]>, p: Vec<[f64; L]>, q: Vec<[f64; L]> }
impl Grp { fn new(n: usize) -> Grp { Grp { s: vec![[0.0; L]; n], p: vec![[0.0; L]; n + 1], q: vec![[0.0; L]; n + 1] } } }

/// Sort the columns with the comparator network. min/max equal a compare-and-swap for finite values
/// (the grouped path only sees finite ones); the one difference, −0 and +0 both leaving as +0, changes
/// no value.
#[inline(always)]
fn sort_cols(cols: &mut [[f32; L]], net: &[(usize, usize)]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_max_ps, _mm256_min_ps, _mm256_storeu_ps};
        let base = cols.as_mut_ptr() as *mut f32;
        for &(a, b) in net {
            // SAFETY: a, b < cols.len() (the network is built for this n); AVX2 checked above.
            unsafe {
                let (pa, pb) = (base.add(a * L), base.add(b * L));
                let (x, y) = (_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
                _mm256_storeu_ps(pa, _mm256_min_ps(x, y));
                _mm256_storeu_ps(pb, _mm256_max_ps(x, y));
            }
        }
        return;
    }
    for &(a, b) in net {
        let (x, y) = (cols[a], cols[b]);
        let mut lo = [0.0f32; L];
        let mut hi = [0.0f32; L];
        for l in 0..L { lo[l] = x[l].min(y[l]); hi[l] = x[l].max(y[l]); }
        cols[a] = lo;
        cols[b] = hi;
    }
}

/// Frame counts up to which the winsorizing rounds count bounds over whole columns (`count_cols`, cost
/// ∝ n) rather than walking per lane (cost ∝ the distance moved, plus mispredicted branches).
const COUNT_MAX: usize = 32;

// Bounds on one lane's sorted column, walking from a hint (see `walk`).
/// First i in [a, b) with s[i] ≥ v (b if none).
#[inline(always)]
fn lower_walk(s: &[[f32; L]], l: usize, a: usize, b: usize, v: f64, h: usize) -> usize { walk(&|i| s[i][l] as f64, a, b, h, |x| x < v) }
/// First i in [a, b) with s[i] > v (b if none).
#[inline(always)]
fn upper_walk(s: &[[f32; L]], l: usize, a: usize, b: usize, v: f64, h: usize) -> usize { walk(&|i| s[i][l] as f64, a, b, h, |x| x <= v) }

/// Per lane, over all rows of the sorted columns: how many values are < lo and how many ≤ hi. On a sorted
/// column these are the lower and upper bounds over the whole column, and clamped to [a, b] they are the
/// bounds within the range [a, b) — the indices a binary search over the range returns. Branch-free and
/// eight lanes wide, which beats walking or searching per lane (their data-dependent branches mispredict).
#[inline(always)]
fn count_cols(s: &[[f32; L]], lo: &[f64; L], hi: &[f64; L]) -> ([usize; L], [usize; L]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        // SAFETY: AVX2 checked; every row is 8 f32 and lo/hi are 8 f64.
        return unsafe { count_cols_avx2(s, lo, hi) };
    }
    let (mut cl, mut ch) = ([0u64; L], [0u64; L]);
    for r in s {
        for l in 0..L {
            let x = r[l] as f64;
            cl[l] += (x < lo[l]) as u64;
            ch[l] += (x <= hi[l]) as u64;
        }
    }
    let (mut nl, mut nh) = ([0usize; L], [0usize; L]);
    for l in 0..L { nl[l] = cl[l] as usize; nh[l] = ch[l] as usize; }
    (nl, nh)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn count_cols_avx2(s: &[[f32; L]], lo: &[f64; L], hi: &[f64; L]) -> ([usize; L], [usize; L]) {
    use std::arch::x86_64::*;
    let (lo0, lo1) = (_mm256_loadu_pd(lo.as_ptr()), _mm256_loadu_pd(lo.as_ptr().add(4)));
    let (hi0, hi1) = (_mm256_loadu_pd(hi.as_ptr()), _mm256_loadu_pd(hi.as_ptr().add(4)));
    let (mut l0, mut l1, mut h0, mut h1) = (_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256());
    for r in s {
        let x = _mm256_loadu_ps(r.as_ptr());
        let (x0, x1) = (_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
        // A true compare is all ones (−1 as an integer): subtracting it counts.
        l0 = _mm256_sub_epi64(l0, _mm256_castpd_si256(_mm256_cmp_pd(x0, lo0, _CMP_LT_OQ)));
        l1 = _mm256_sub_epi64(l1, _mm256_castpd_si256(_mm256_cmp_pd(x1, lo1, _CMP_LT_OQ)));
        h0 = _mm256_sub_epi64(h0, _mm256_castpd_si256(_mm256_cmp_pd(x0, hi0, _CMP_LE_OQ)));
        h1 = _mm256_sub_epi64(h1, _mm256_castpd_si256(_mm256_cmp_pd(x1, hi1, _CMP_LE_OQ)));
    }
    let (mut a, mut b) = ([0u64; L], [0u64; L]);
    _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, l0);
    _mm256_storeu_si256(a.as_mut_ptr().add(4) as *mut __m256i, l1);
    _mm256_storeu_si256(b.as_mut_ptr() as *mut __m256i, h0);
    _mm256_storeu_si256(b.as_mut_ptr().add(4) as *mut __m256i, h1);
    let (mut nl, mut nh) = ([0usize; L], [0usize; L]);
    for l in 0..L { nl[l] = a[l] as usize; nh[l] = b[l] as usize; }
    (nl, nh)
}

#[inline(always)]
fn median_col(s: &[[f32; L]], l: usize, a: usize, b: usize) -> f64 {
    let m = b - a;
    let mid = a + m / 2;
    if m % 2 == 1 { s[mid][l] as f64 } else { (s[mid - 1][l] as f64 + s[mid][l] as f64) / 2.0 }
}

/// `reject_range` for the L pixels of a group at once (same arithmetic, same order, per lane).
#[inline(always)]
fn reject_group(p: &Params, g: &mut Grp, n: usize) -> ([usize; L], [usize; L], [u32; L], [u32; L]) {
    let (mut a, mut b, mut rl, mut rh) = ([0usize; L], [n; L], [0u32; L], [0u32; L]);
    if n < 3 || p.rejection == R_NONE { return (a, b, rl, rh); }
    let s = &g.s;
    let mut shift = [0.0f64; L];
    for l in 0..L { shift[l] = s[n / 2][l] as f64; }
    g.p[0] = [0.0; L];
    g.q[0] = [0.0; L];
    let (mut ps, mut qs) = ([0.0f64; L], [0.0f64; L]);
    for k in 0..n {
        for l in 0..L { let d = s[k][l] as f64 - shift[l]; ps[l] += d; qs[l] += d * d; }
        g.p[k + 1] = ps;
        g.q[k + 1] = qs;
    }
    let (pp, qq) = (&g.p, &g.q);
    let sd_range = |l: usize, a: usize, b: usize| -> f64 {
        let m = (b - a) as f64;
        let sum = pp[b][l] - pp[a][l];
        let sq = qq[b][l] - qq[a][l];
        ((sq - sum * sum / m) / (m - 1.0)).max(0.0).sqrt()
    };
    let passes = if p.rejection == R_PERCENTILE { 1 } else { p.iterations };
    let mut active = [true; L];
    for _ in 0..passes {
        let mut any = false;
        for l in 0..L { if active[l] && b[l] - a[l] < 3 { active[l] = false; } any |= active[l]; }
        if !any { break; }
        let (mut lo, mut hi) = ([0.0f64; L], [0.0f64; L]);
        match p.rejection {
            R_SIGMA => for l in 0..L {
                if !active[l] { continue; }
                let (c, sd) = (median_col(s, l, a[l], b[l]), sd_range(l, a[l], b[l]));
                lo[l] = c - p.low * sd;
                hi[l] = c + p.high * sd;
            },
            R_WINSORIZED => {
                // `winsor` for the eight lanes in lockstep rounds: per lane, the clamp counts at the
                // current σ (bound walks, prefix-sum lookups); then the closed-form solve for all lanes
                // at once (element-wise, so its divisions and square root run four lanes an instruction).
                // A lane is settled when its counts repeat; lanes the rounds do not settle run `winsor`'s
                // fallback, the iteration, on their own.
                const SEARCH: u8 = 0;
                const SETTLED: u8 = 1;
                const ITERATE: u8 = 2;
                let (mut cc, mut ss, mut sd0, mut mf) = ([0.0f64; L], [0.0f64; L], [0.0f64; L], [3.0f64; L]);
                let mut state = [SETTLED; L];
                let (mut nl, mut nh) = ([usize::MAX; L], [usize::MAX; L]);
                let (mut hl, mut hu) = ([0usize; L], [0usize; L]);
                let (mut fl, mut fh, mut d1, mut d2) = ([0.0f64; L], [0.0f64; L], [0.0f64; L], [0.0f64; L]);
                for l in 0..L {
                    if !active[l] { continue; }
                    cc[l] = median_col(s, l, a[l], b[l]);
                    sd0[l] = sd_range(l, a[l], b[l]);
                    ss[l] = sd0[l];
                    mf[l] = (b[l] - a[l]) as f64;
                    state[l] = SEARCH;
                }
                for _ in 0..ROUNDS {
                    let (mut wl, mut wh) = ([0.0f64; L], [0.0f64; L]);
                    for l in 0..L { wl[l] = cc[l] - 1.5 * ss[l]; wh[l] = cc[l] + 1.5 * ss[l]; }
                    // Few frames: count all rows at once (branch-free); many: walk from the last bounds.
                    let counted = if n <= COUNT_MAX { Some(count_cols(&s[..n], &wl, &wh)) } else { None };
                    let mut any = false;
                    for l in 0..L {
                        if state[l] != SEARCH { continue; }
                        let (a, b) = (a[l], b[l]);
                        if let Some((cl, ch)) = counted { (hl[l], hu[l]) = (cl[l].clamp(a, b), ch[l].clamp(a, b)); } else {
                            hl[l] = lower_walk(s, l, a, b, wl[l], if nl[l] == usize::MAX { a } else { hl[l] });
                            hu[l] = upper_walk(s, l, a, b, wh[l], if nh[l] == usize::MAX { b } else { hu[l] });
                        }
                        let mid = a + (b - a) / 2;
                        if (b - a) % 2 == 0 && (hl[l] > mid - 1 || hu[l] <= mid) { state[l] = ITERATE; continue; }
                        if hl[l] - a == nl[l] && b - hu[l] == nh[l] { state[l] = SETTLED; continue; }
                        (nl[l], nh[l]) = (hl[l] - a, b - hu[l]);
                        let (i0, i1) = (hl[l], hu[l].max(hl[l]));
                        fl[l] = nl[l] as f64;
                        fh[l] = nh[l] as f64;
                        d1[l] = pp[i1][l] - pp[i0][l];
                        d2[l] = qq[i1][l] - qq[i0][l];
                        any = true;
                    }
                    if !any { break; }
                    for l in 0..L {
                        let r = fixed_sigma(mf[l], cc[l] - shift[l], fl[l], fh[l], d1[l], d2[l]);
                        let search = state[l] == SEARCH;
                        let ok = r >= 0.0;
                        ss[l] = if search && ok { r } else { ss[l] };
                        state[l] = if search && !ok { ITERATE } else { state[l] };
                    }
                }
                for l in 0..L {
                    if state[l] == SETTLED { continue; }
                    (cc[l], ss[l]) = winsor_iterate(|i| s[i][l] as f64, |i| (pp[i][l], qq[i][l]), a[l], b[l], shift[l], cc[l], sd0[l]);
                }
                for l in 0..L { lo[l] = cc[l] - p.low * ss[l]; hi[l] = cc[l] + p.high * ss[l]; }
            }
            _ => for l in 0..L {
                if !active[l] { continue; }
                let c = median_col(s, l, a[l], b[l]);
                lo[l] = c - p.low * c.abs();
                hi[l] = c + p.high * c.abs();
            },
        }
        for l in 0..L {
            if !active[l] { continue; }
            let a2 = lower_walk(s, l, a[l], b[l], lo[l], a[l]);
            let b2 = upper_walk(s, l, a[l], b[l], hi[l], b[l]).max(a2);
            if b2 - a2 < 2 || (a2 == a[l] && b2 == b[l]) { active[l] = false; continue; }
            rl[l] += (a2 - a[l]) as u32;
            rh[l] += (b[l] - b2) as u32;
            a[l] = a2;
            b[l] = b2;
        }
    }
    (a, b, rl, rh)
}

/// Combine the L all-finite pixels starting at `i`: identical results to `pixel` on each of them.
#[inline(always)]
fn group_body(frames: &[Buf<f32>], weights: Option<&[f64]>, norm: Option<&[f64]>, p: &Params, net: &[(usize, usize)], g: &mut Grp, i: usize, out: &mut [f32; L], rl: &mut [u32; L], rh: &mut [u32; L]) {
    let n = frames.len();
    sort_cols(&mut g.s[..n], net);
    let (a, b, l_rej, h_rej) = reject_group(p, g, n);
    *rl = l_rej;
    *rh = h_rej;
    let s = &g.s;
    if p.method == MEDIAN {
        for l in 0..L { out[l] = median_col(s, l, a[l], b[l]) as f32; }
        return;
    }
    let (mut lo, mut hi) = ([0.0f64; L], [0.0f64; L]);
    for l in 0..L { lo[l] = s[a[l]][l] as f64; hi[l] = s[b[l] - 1][l] as f64; }
    let (mut acc, mut wsum) = ([0.0f64; L], [0.0f64; L]);
    // Frame order, like `pixel`; a skipped value adds +0.0, which leaves the sums' bits unchanged.
    for (k, fr) in frames.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[k]);
        let x = &fr.slice()[i..i + L];
        for l in 0..L {
            let v = norm_value(x[l], k, norm) as f64;
            let keep = v >= lo[l] && v <= hi[l];
            acc[l] += if keep { w * v } else { 0.0 };
            wsum[l] += if keep { w } else { 0.0 };
        }
    }
    for l in 0..L { out[l] = (acc[l] / wsum[l]) as f32; }
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_avx2(frames: &[Buf<f32>], weights: Option<&[f64]>, norm: Option<&[f64]>, p: &Params, net: &[(usize, usize)], g: &mut Grp, i: usize, out: &mut [f32; L], rl: &mut [u32; L], rh: &mut [u32; L]) { group_body(frames, weights, norm, p, net, g, i, out, rl, rh) }
#[allow(clippy::too_many_arguments)]
fn group(frames: &[Buf<f32>], weights: Option<&[f64]>, norm: Option<&[f64]>, p: &Params, net: &[(usize, usize)], g: &mut Grp, i: usize, out: &mut [f32; L], rl: &mut [u32; L], rh: &mut [u32; L]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() { return unsafe { group_avx2(frames, weights, norm, p, net, g, i, out, rl, rh) }; }
    group_body(frames, weights, norm, p, net, g, i, out, rl, rh)
}

const CHUNK: usize = 4096;

#[inline(always)]
fn mean_chunk_body(frames: &[Buf<f32>], weights: Option<&[f64]>, norm: Option<&[f64]>, start: usize, out: &mut [f32], acc: &mut [f64], wsum: &mut [f64]) {
    let m = out.len();
    acc[..m].fill(0.0); wsum[..m].fill(0.0);
    for (f, fr) in frames.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[f]);
        let x = &fr.slice()[start..start + m];
        // Branch-free selects (a conditional add becomes masked loads/stores, which are microcoded and
        // ~6× slower on these AMD cores). Adding +0.0 leaves an accumulator that started at +0.0 unchanged,
        // so this equals the conditional add of the TypeScript twin bit for bit.
        let (acc, wsum) = (&mut acc[..m], &mut wsum[..m]);
        for i in 0..m {
            let v = norm_value(x[i], f, norm) as f64;
            let fin = v.abs() < f64::INFINITY;
            let (wv, ww) = if fin { (w * v, w) } else { (0.0, 0.0) };
            acc[i] += wv;
            wsum[i] += ww;
        }
    }
    for i in 0..m { out[i] = (acc[i] / wsum[i]) as f32; }
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mean_chunk_avx2(frames: &[Buf<f32>], weights: Option<&[f64]>, norm: Option<&[f64]>, start: usize, out: &mut [f32], acc: &mut [f64], wsum: &mut [f64]) { mean_chunk_body(frames, weights, norm, start, out, acc, wsum) }

pub fn run(frames: &[Buf<f32>], len: usize, weights: Option<&[f64]>, norm: Option<&[f64]>, p: Params, out: Buf<f32>, rej: Option<(Buf<u16>, Buf<u16>)>, cancel: Cancel) -> Result<(), String> {
    let chunks = len.div_ceil(CHUNK);
    // Plain (weighted) mean without rejection: frame-major accumulation over a chunk, vectorised; it
    // performs the same additions in the same order as the general path below. A positive weight sum
    // is required for that equivalence, which the caller's validation guarantees (weights > 0).
    if p.rejection == R_NONE && p.method == MEAN {
        return for_chunks(chunks, cancel, |c| {
            let start = c * CHUNK;
            let m = CHUNK.min(len - start);
            let o = &mut out.slice_mut()[start..start + m];
            let (mut acc, mut wsum) = (vec![0.0f64; m], vec![0.0f64; m]);
            #[cfg(target_arch = "x86_64")]
            if crate::simd::has_avx2() { unsafe { mean_chunk_avx2(frames, weights, norm, start, o, &mut acc, &mut wsum) }; }
            else { mean_chunk_body(frames, weights, norm, start, o, &mut acc, &mut wsum); }
            #[cfg(not(target_arch = "x86_64"))]
            mean_chunk_body(frames, weights, norm, start, o, &mut acc, &mut wsum);
            if let Some((lo, hi)) = rej { lo.slice_mut()[start..start + m].fill(0); hi.slice_mut()[start..start + m].fill(0); }
        });
    }
    // Groups of L all-finite pixels are sorted and rejected together (see `batcher`, `reject_group`),
    // except for linear-fit and MAD, which re-sort subsets anyway.
    let nf = frames.len();
    let grouped = nf >= 2 && p.rejection != R_LINEAR && p.rejection != R_MAD;
    let net = if grouped { batcher(nf) } else { Vec::new() };
    for_chunks(chunks, cancel, |c| {
        let start = c * CHUNK;
        let end = (start + CHUNK).min(len);
        let mut px = Px::new(frames.len());
        let o = out.slice_mut();
        let mut g = Grp::new(nf);
        let scalar = |i: usize, px: &mut Px| {
            px.vals.clear(); px.idx.clear();
            for (f, fr) in frames.iter().enumerate() { let v = norm_value(fr.slice()[i], f, norm); if v.is_finite() { px.vals.push(v as f64); px.idx.push(f); } }
            let (v, rl, rh) = pixel(&p, weights, px);
            out.slice_mut()[i] = v as f32;
            if let Some((lo, hi)) = rej { lo.slice_mut()[i] = rl.min(65535) as u16; hi.slice_mut()[i] = rh.min(65535) as u16; }
        };
        let mut i = start;
        let (mut v, mut rl, mut rh) = ([0.0f32; L], [0u32; L], [0u32; L]);
        while grouped && i + L <= end {
            let mut finite = true;
            for (f, fr) in frames.iter().enumerate() {
                let x = &fr.slice()[i..i + L];
                let mut row = [0.0f32; L];
                for l in 0..L { row[l] = norm_value(x[l], f, norm); finite &= row[l].abs() < f32::INFINITY; }
                g.s[f] = row;
            }
            if !finite {
                for k in i..i + L { scalar(k, &mut px); }
                i += L;
                continue;
            }
            group(frames, weights, norm, &p, &net, &mut g, i, &mut v, &mut rl, &mut rh);
            o[i..i + L].copy_from_slice(&v);
            if let Some((lo, hi)) = rej {
                for l in 0..L { lo.slice_mut()[i + l] = rl[l].min(65535) as u16; hi.slice_mut()[i + l] = rh[l].min(65535) as u16; }
            }
            i += L;
        }
        for k in i..end { scalar(k, &mut px); }
    })
}
