//! Background and noise maps: a mesh of sigma-clipped cells (sampled on a sub-grid of ≈ 1024 pixels), a 3×3 median filter over the mesh (so a
//! bright star or a nebula knot does not punch a hole in the sky model), then bilinear interpolation
//! between mesh centres back to full resolution (continuous, clamped at the edges).
use crate::js::Cancel;
use crate::par::for_chunks;
use crate::stats::median;
use std::sync::Mutex;

/// Sigma-clipped median and σ of a cell: (median of kept, population σ of kept), clipping |x − c| ≤ k·σ
/// about the median c for up to `iterations` passes (until nothing more is clipped).
///
/// The values are sorted once. A kept set is then a contiguous range [lo, hi) of the sorted values (|x − c|
/// is monotone on either side of c, rounding included), so a pass moves two indices instead of copying,
/// selecting and compacting; the mean and σ of a range come from prefix sums of d = x − p and d² about the
/// cell's median p (deviations of the order of σ: no cancellation worth the name). At 2048² with 64-px
/// cells this took the map from 89 to ≈ 20 ms: clipping converges slowly (each pass trims a few more
/// noise tails), so most cells ran all ten passes of the copy-select-compact version.
pub fn clipped_median_sd(vals: &mut [f64], k: f64, iterations: usize, prefix: &mut Vec<(f64, f64)>) -> (f64, f64) {
    vals.sort_unstable_by(|a, b| a.total_cmp(b));
    let vals = &*vals;
    let mid = |lo: usize, hi: usize| -> f64 {
        let len = hi - lo;
        if len == 0 { f64::NAN } else if len % 2 == 1 { vals[lo + len / 2] } else { (vals[lo + len / 2 - 1] + vals[lo + len / 2]) / 2.0 }
    };
    let p = mid(0, vals.len());
    prefix.clear();
    prefix.push((0.0, 0.0));
    let (mut s, mut q) = (0.0f64, 0.0f64);
    for &x in vals { let d = x - p; s += d; q += d * d; prefix.push((s, q)); }
    let prefix = &*prefix;
    let sd = |lo: usize, hi: usize| -> f64 {
        if hi == lo { return f64::NAN; }
        let m = (hi - lo) as f64;
        let mean = (prefix[hi].0 - prefix[lo].0) / m;
        ((prefix[hi].1 - prefix[lo].1) / m - mean * mean).max(0.0).sqrt()
    };
    let (mut lo, mut hi) = (0usize, vals.len());
    for _ in 0..iterations {
        if hi - lo < 3 { break; }
        let c = mid(lo, hi);
        let t = k * sd(lo, hi);
        let before = (lo, hi);
        while lo < hi && !((vals[lo] - c).abs() <= t) { lo += 1; }
        while hi > lo && !((vals[hi - 1] - c).abs() <= t) { hi -= 1; }
        if (lo, hi) == before { break; }
    }
    (mid(lo, hi), sd(lo, hi))
}

/// Sampling step of a mesh cell of side m: ⌊m / 32⌋ (at least 1).
pub fn sample_step(m: usize) -> usize { (m / 32).max(1) }

pub struct Mesh { pub gx: usize, pub gy: usize, pub bg: Vec<f64>, pub noise: Vec<f64> }

pub fn mesh(data: &[f32], w: usize, h: usize, m: usize, k: f64, iterations: usize, cancel: Cancel) -> Result<Mesh, String> {
    let gx = w.div_ceil(m);
    let gy = h.div_ceil(m);
    let rows: Vec<Mutex<(Vec<f64>, Vec<f64>)>> = (0..gy).map(|_| Mutex::new((vec![f64::NAN; gx], vec![f64::NAN; gx]))).collect();
    for_chunks(gy, cancel, |j| {
        let mut vals = Vec::with_capacity(m * m);
        let mut prefix = Vec::with_capacity(m * m + 1);
        let mut row = rows[j].lock().unwrap();
        for i in 0..gx {
            vals.clear();
            let (x0, x1, y0, y1) = (i * m, ((i + 1) * m).min(w), j * m, ((j + 1) * m).min(h));
            // Cells larger than 32×32 are sampled on a regular sub-grid of ≈ 1024 pixels: the clipped
            // median of 1024 sky pixels is as good a background estimate, at a fraction of the cost.
            let step = sample_step(m);
            for y in (y0..y1).step_by(step) { for x in (x0..x1).step_by(step) { let v = data[y * w + x]; if v.is_finite() { vals.push(v as f64); } } }
            if vals.len() * 4 < (x1 - x0).div_ceil(step) * (y1 - y0).div_ceil(step) || vals.is_empty() { continue; }
            let (b, s) = clipped_median_sd(&mut vals, k, iterations, &mut prefix);
            row.0[i] = b;
            row.1[i] = s;
        }
    })?;
    let mut bg = Vec::with_capacity(gx * gy);
    let mut noise = Vec::with_capacity(gx * gy);
    for r in rows { let (b, s) = r.into_inner().unwrap(); bg.extend(b); noise.extend(s); }
    fill_and_filter(&mut bg, gx, gy);
    fill_and_filter(&mut noise, gx, gy);
    Ok(Mesh { gx, gy, bg, noise })
}

/// Empty cells take the median of the valid cells; then a 3×3 median filter. Neighbours beyond the
/// mesh edge are linear extrapolations (2·edge − inner), so a sky gradient is not bent at the borders.
fn fill_and_filter(g: &mut [f64], gx: usize, gy: usize) {
    let mut valid: Vec<f64> = g.iter().cloned().filter(|v| v.is_finite()).collect();
    if valid.is_empty() { return; } // nothing measurable: the maps stay NaN
    let fill = median(&mut valid);
    for v in g.iter_mut() { if !v.is_finite() { *v = fill; } }
    let src = g.to_vec();
    let (gxi, gyi) = (gx as isize, gy as isize);
    let col = |x: isize, y: usize| -> f64 {
        let at = |x: isize| src[y * gx + x as usize];
        if x < 0 { if gx > 1 { 2.0 * at(0) - at(1) } else { at(0) } } else if x >= gxi { if gx > 1 { 2.0 * at(gxi - 1) - at(gxi - 2) } else { at(gxi - 1) } } else { at(x) }
    };
    let ext = |x: isize, y: isize| -> f64 {
        if y < 0 { if gy > 1 { 2.0 * col(x, 0) - col(x, 1) } else { col(x, 0) } } else if y >= gyi { if gy > 1 { 2.0 * col(x, gy - 1) - col(x, gy - 2) } else { col(x, gy - 1) } } else { col(x, y as usize) }
    };
    let mut nb = Vec::with_capacity(9);
    for j in 0..gyi {
        for i in 0..gxi {
            nb.clear();
            for y in j - 1..j + 2 { for x in i - 1..i + 2 { nb.push(ext(x, y)); } }
            g[(j * gxi + i) as usize] = median(&mut nb);
        }
    }
}

/// Position of pixel `x` in mesh-centre coordinates: (lower cell, upper cell, fraction).
#[inline]
pub fn axis(x: usize, m: usize, g: usize) -> (usize, usize, f64) {
    let f = (x as f64 + 0.5) / m as f64 - 0.5;
    if f <= 0.0 { return (0, 0, 0.0); }
    let i0 = f.floor() as usize;
    if i0 >= g - 1 { return (g - 1, g - 1, 0.0); }
    (i0, i0 + 1, f - i0 as f64)
}

/// Bilinear interpolation between mesh centres, separably: each mesh row j is first interpolated along x
/// to full width (`along[j][x] = (1 − tx)·m[j][i0] + tx·m[j][i1]`, computed once), then every image row
/// blends its two mesh rows, `(1 − ty)·along[j0][x] + ty·along[j1][x]` — two multiplies and an add per
/// pixel, in a loop the compiler vectorises. The TypeScript twin computes the same expressions.
pub fn interpolate(mesh: &[f64], gx: usize, gy: usize, m: usize, w: usize, h: usize, out: &mut [f32], cancel: Cancel) -> Result<(), String> {
    let out_ptr = crate::js::Buf { ptr: out.as_mut_ptr(), len: out.len() };
    let cols: Vec<(usize, usize, f64)> = (0..w).map(|x| axis(x, m, gx)).collect();
    let mut along = vec![0.0f64; gy * w];
    for j in 0..gy {
        for (x, &(i0, i1, tx)) in cols.iter().enumerate() { along[j * w + x] = (1.0 - tx) * mesh[j * gx + i0] + tx * mesh[j * gx + i1]; }
    }
    let along = &along;
    for_chunks(h, cancel, |y| {
        let row = &mut out_ptr.slice_mut()[y * w..(y + 1) * w];
        let (j0, j1, ty) = axis(y, m, gy);
        let (r0, r1) = (&along[j0 * w..(j0 + 1) * w], &along[j1 * w..(j1 + 1) * w]);
        let sy = 1.0 - ty;
        for x in 0..w { row[x] = (sy * r0[x] + ty * r1[x]) as f32; }
    })
}
