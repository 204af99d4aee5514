//! Pixel-wise combination of N aligned frames (or bands of them) with optional rejection.
//! Per pixel the finite values are gathered in frame order; rejection runs on them; the result is the
//! weighted mean of the survivors, summed in frame order (or their median). Rejection needs ≥ 3 values
//! to act and never rejects the last ones. Rules (σ is the population standard deviation):
//! - sigma: centre = median, reject x < c − low·σ or x > c + high·σ; repeat until stable / iterations;
//! - mad: as sigma with σ = 1.4826·MAD;
//! - winsorized: σ from a winsorized copy (clamp to c ± 1.5σ, σ ← 1.134·σ(clamped), c ← median(clamped),
//!   until σ changes < 0.05 %), then reject as sigma;
//! - linear-fit: fit a line to the sorted values, σ = mean |residual|, reject values below/above the line
//!   by low·σ / high·σ;
//! - percentile: one pass, reject x < c·(1 − low) or x > c·(1 + high) (low/high are fractions).
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;

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
#[inline]
fn sd(s: &[f64]) -> f64 {
    let n = s.len() as f64;
    let mut m = 0.0; for x in s { m += x; } m /= n;
    let mut q = 0.0; for x in s { let d = x - m; q += d * d; }
    (q / n).sqrt()
}

/// Scratch for one worker.
pub struct Px { vals: Vec<f64>, idx: Vec<usize>, keep: Vec<bool>, s: Vec<f64>, wz: Vec<f64> }
impl Px { pub fn new(n: usize) -> Px { Px { vals: Vec::with_capacity(n), idx: Vec::with_capacity(n), keep: Vec::with_capacity(n), s: Vec::with_capacity(n), wz: Vec::with_capacity(n) } } }

/// Bounds [lo, hi] of one rejection pass over the kept values, or None to stop.
fn bounds(p: &Params, px: &mut Px) -> Option<(f64, f64)> {
    px.s.clear();
    for (k, &v) in px.vals.iter().enumerate() { if px.keep[k] { px.s.push(v); } }
    if px.s.len() < 3 { return None; }
    sort(&mut px.s);
    let c = median_sorted(&px.s);
    match p.rejection {
        R_SIGMA => { let s = sd(&px.s); Some((c - p.low * s, c + p.high * s)) }
        R_MAD => {
            px.wz.clear(); px.wz.extend(px.s.iter().map(|x| (x - c).abs())); sort(&mut px.wz);
            let s = 1.482_602_218_505_602 * median_sorted(&px.wz);
            Some((c - p.low * s, c + p.high * s))
        }
        R_WINSORIZED => {
            let (mut c, mut s) = (c, sd(&px.s));
            for _ in 0..10 {
                px.wz.clear();
                let (a, b) = (c - 1.5 * s, c + 1.5 * s);
                px.wz.extend(px.s.iter().map(|&x| x.clamp(a, b)));
                let s1 = 1.134 * sd(&px.wz);
                c = median_sorted(&px.wz);
                let done = (s1 - s).abs() <= 5e-4 * s;
                s = s1;
                if done { break; }
            }
            Some((c - p.low * s, c + p.high * s))
        }
        R_PERCENTILE => Some((c - p.low * c.abs(), c + p.high * c.abs())),
        _ => None,
    }
}

/// Combine one pixel from `px.vals`/`px.idx`; returns (value, rejected low, rejected high).
pub fn pixel(p: &Params, weights: Option<&[f64]>, px: &mut Px) -> (f64, u32, u32) {
    let n = px.vals.len();
    if n == 0 { return (f64::NAN, 0, 0); }
    px.keep.clear(); px.keep.resize(n, true);
    let (mut rl, mut rh) = (0u32, 0u32);
    let passes = if p.rejection == R_PERCENTILE { 1 } else { p.iterations };
    if p.rejection != R_NONE {
        for _ in 0..passes {
            let mut changed = false;
            if p.rejection == R_LINEAR {
                // Fit on sorted kept values: s_i ≈ a + b·i; reject by their deviation from the line.
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
                    let below = px.s.partition_point(|&y| y < v);
                    let mut rank = below;
                    for kk in 0..k { if px.keep[kk] && px.vals[kk] == v { rank += 1; } }
                    let fit = a + b * rank as f64;
                    if kept_left <= 2 { break; }
                    if v < fit - p.low * sigma { px.keep[k] = false; rl += 1; kept_left -= 1; changed = true; }
                    else if v > fit + p.high * sigma { px.keep[k] = false; rh += 1; kept_left -= 1; changed = true; }
                }
            } else {
                let Some((lo, hi)) = bounds(p, px) else { break };
                let mut kept_left = px.keep.iter().filter(|k| **k).count();
                for k in 0..n {
                    if !px.keep[k] || kept_left <= 2 { continue; }
                    let v = px.vals[k];
                    if v < lo { px.keep[k] = false; rl += 1; kept_left -= 1; changed = true; }
                    else if v > hi { px.keep[k] = false; rh += 1; kept_left -= 1; changed = true; }
                }
            }
            if !changed { break; }
        }
    }
    if p.method == MEDIAN {
        px.s.clear();
        for (k, &v) in px.vals.iter().enumerate() { if px.keep[k] { px.s.push(v); } }
        sort(&mut px.s);
        return (median_sorted(&px.s), rl, rh);
    }
    let (mut acc, mut wsum, mut plain, mut cnt) = (0.0, 0.0, 0.0, 0.0);
    for k in 0..n {
        if !px.keep[k] { continue; }
        let w = weights.map_or(1.0, |w| w[px.idx[k]]);
        acc += w * px.vals[k]; wsum += w; plain += px.vals[k]; cnt += 1.0;
    }
    (if wsum > 0.0 { acc / wsum } else { plain / cnt }, rl, rh)
}

const CHUNK: usize = 4096;

#[inline(always)]
fn mean_chunk_body(frames: &[Buf<f32>], weights: Option<&[f64]>, start: usize, out: &mut [f32], acc: &mut [f64], wsum: &mut [f64]) {
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
            let v = x[i] as f64;
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
unsafe fn mean_chunk_avx2(frames: &[Buf<f32>], weights: Option<&[f64]>, start: usize, out: &mut [f32], acc: &mut [f64], wsum: &mut [f64]) { mean_chunk_body(frames, weights, start, out, acc, wsum) }

pub fn run(frames: &[Buf<f32>], len: usize, weights: Option<&[f64]>, p: Params, out: Buf<f32>, rej: Option<(Buf<u16>, Buf<u16>)>, cancel: Cancel) -> Result<(), String> {
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
            if crate::simd::has_avx2() { unsafe { mean_chunk_avx2(frames, weights, start, o, &mut acc, &mut wsum) }; }
            else { mean_chunk_body(frames, weights, start, o, &mut acc, &mut wsum); }
            #[cfg(not(target_arch = "x86_64"))]
            mean_chunk_body(frames, weights, start, o, &mut acc, &mut wsum);
            if let Some((lo, hi)) = rej { lo.slice_mut()[start..start + m].fill(0); hi.slice_mut()[start..start + m].fill(0); }
        });
    }
    for_chunks(chunks, cancel, |c| {
        let start = c * CHUNK;
        let end = (start + CHUNK).min(len);
        let mut px = Px::new(frames.len());
        let o = out.slice_mut();
        for i in start..end {
            px.vals.clear(); px.idx.clear();
            for (f, fr) in frames.iter().enumerate() { let v = fr.slice()[i]; if v.is_finite() { px.vals.push(v as f64); px.idx.push(f); } }
            let (v, rl, rh) = pixel(&p, weights, &mut px);
            o[i] = v as f32;
            if let Some((lo, hi)) = rej { lo.slice_mut()[i] = rl.min(65535) as u16; hi.slice_mut()[i] = rh.min(65535) as u16; }
        }
    })
}
