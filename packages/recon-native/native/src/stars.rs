//! Star detection and measurement.
//!
//! Detection: a pixel is a star candidate when its background-subtracted signal s exceeds k·σ(noise
//! map), it is the maximum of its 5×5 neighbourhood (ties go to the earlier pixel in row-major order),
//! and at least `min_area` pixels of its 3×3 neighbourhood are above the threshold (which rejects hot
//! pixels and lone noise spikes). Taking maxima over 5×5 deblends pairs whose peaks are ≥ 3 px apart.
//!
//! Measurement: flux is the sum of s over the box; the centroid and shape start from first and second
//! moments of the positive signal and are refined by *adaptive moments* (Bernstein & Jarvis 2002): the
//! moments are re-measured under an elliptical Gaussian weight whose covariance is the current
//! estimate, with M ← 2·M_w. For a Gaussian star the fixed point is its true covariance, so this is
//! equivalent to a Gaussian fit but needs no solver. FWHM = 2.3548·√λ along each principal axis;
//! the reported FWHM is √(major·minor) and roundness = minor/major (1 = round).
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;
use std::sync::Mutex;

/// Convergence of the adaptive moments for detected stars: centre shift and relative moment change < 1e-5.
pub const SHAPE_TOL: f64 = 1e-5;

pub const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949_3;

pub struct Shape { pub x: f64, pub y: f64, pub flux: f64, pub fwhm_major: f64, pub fwhm_minor: f64 }

/// Measure the source around (px, py) in the box [x0, x1) × [y0, y1); `s(x, y)` is the
/// background-subtracted signal (NaN = invalid, skipped). The adaptive moments stop when the centre moves
/// less than `tol` px and the moments change by less than `tol` (relative).
///
/// The box is read once. The Gaussian weight exp(−½(a'·dx² + 2b'·dx·dy + d'·dy²)) is built from
/// ex(dx)·ey(dy)·exp(−b'·dy·dx), the last factor stepped along each row by multiplying with exp(−b'·dy)
/// (dx grows by 1 per column): 2·(columns + rows) exponentials per iteration instead of one per pixel.
/// Where that product is not finite (nearly singular shapes) the pixel's weight is computed directly.
pub fn measure(s: &dyn Fn(usize, usize) -> f64, x0: usize, y0: usize, x1: usize, y1: usize, tol: f64) -> Option<Shape> {
    let (bw, bh) = (x1 - x0, y1 - y0);
    let mut stack = [0.0f64; 169];
    let mut heap: Vec<f64> = Vec::new();
    let vals: &mut [f64] = if bw * bh <= stack.len() { &mut stack[..bw * bh] } else { heap.resize(bw * bh, 0.0); &mut heap[..] };
    for j in 0..bh { for i in 0..bw { vals[j * bw + i] = s(x0 + i, y0 + j); } }
    let (mut flux, mut w, mut sx, mut sy) = (0.0, 0.0, 0.0, 0.0);
    for j in 0..bh { for i in 0..bw {
        let v = vals[j * bw + i];
        if !v.is_finite() { continue; }
        flux += v;
        if v > 0.0 { w += v; sx += v * (x0 + i) as f64; sy += v * (y0 + j) as f64; }
    } }
    if !(w > 0.0) { return None; }
    let (mut cx, mut cy) = (sx / w, sy / w);
    let (mut a, mut b, mut d) = (0.0, 0.0, 0.0);
    for j in 0..bh { for i in 0..bw {
        let v = vals[j * bw + i];
        if !(v > 0.0) { continue; }
        let (dx, dy) = ((x0 + i) as f64 - cx, (y0 + j) as f64 - cy);
        a += v * dx * dx; b += v * dx * dy; d += v * dy * dy;
    } }
    a /= w; b /= w; d /= w;
    let unweighted = (cx, cy, a, b, d);
    let mut ok = false;
    if a * d - b * b <= 1e-12 { a = 1.0; b = 0.0; d = 1.0; }
    let (mut ex, mut ey) = (vec![0.0f64; bw], vec![0.0f64; bh]);
    for _ in 0..30 {
        let det = a * d - b * b;
        if !(det > 1e-12) { break; }
        let (ia, ib, id) = (d / det, -b / det, a / det);
        for (i, e) in ex.iter_mut().enumerate() { let dx = (x0 + i) as f64 - cx; *e = (-0.5 * ia * dx * dx).exp(); }
        for (j, e) in ey.iter_mut().enumerate() { let dy = (y0 + j) as f64 - cy; *e = (-0.5 * id * dy * dy).exp(); }
        let (mut s0, mut s1x, mut s1y, mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for j in 0..bh {
            let dy = (y0 + j) as f64 - cy;
            let step = (-ib * dy).exp();
            let mut cross = (-ib * dy * (x0 as f64 - cx)).exp();
            for i in 0..bw {
                let v = vals[j * bw + i];
                let dx = (x0 + i) as f64 - cx;
                let mut g = ex[i] * ey[j] * cross;
                cross *= step;
                if !v.is_finite() { continue; }
                if !g.is_finite() { g = (-0.5 * (ia * dx * dx + 2.0 * ib * dx * dy + id * dy * dy)).exp(); }
                let vg = v * g;
                s0 += vg; s1x += vg * dx; s1y += vg * dy; sxx += vg * dx * dx; sxy += vg * dx * dy; syy += vg * dy * dy;
            }
        }
        if !(s0 > 0.0) { break; }
        let (mx, my) = (s1x / s0, s1y / s0);
        let na = 2.0 * (sxx / s0 - mx * mx);
        let nb = 2.0 * (sxy / s0 - mx * my);
        let nd = 2.0 * (syy / s0 - my * my);
        if !(na > 0.0 && nd > 0.0 && na * nd - nb * nb > 0.0) || mx.abs() > 3.0 || my.abs() > 3.0 { break; }
        cx += mx; cy += my;
        let change = ((na - a).abs() + (nd - d).abs()) / (a + d);
        a = na; b = nb; d = nd;
        if mx.abs() < tol && my.abs() < tol && change < tol { ok = true; break; }
    }
    if !ok { (cx, cy, a, b, d) = unweighted; }
    let tr = (a + d) / 2.0;
    let disc = (((a - d) / 2.0).powi(2) + b * b).sqrt();
    let (l1, l2) = (tr + disc, tr - disc);
    if !(l2 > 0.0) { return None; }
    Some(Shape { x: cx, y: cy, flux, fwhm_major: FWHM_PER_SIGMA * l1.sqrt(), fwhm_minor: FWHM_PER_SIGMA * l2.sqrt() })
}

/// Is s[y·w + x] the strict maximum of its (2r+1)² window (ties to the earlier pixel)?
#[inline]
pub fn is_peak(s: &dyn Fn(usize, usize) -> f64, x: usize, y: usize, w: usize, h: usize, r: usize) -> bool {
    let v = s(x, y);
    for yy in y.saturating_sub(r)..(y + r + 1).min(h) { for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
        let q = s(xx, yy);
        if q > v || (q == v && (yy, xx) < (y, x)) { return false; }
    } }
    true
}

pub const STAR_FIELDS: usize = 8; // x, y, flux, peak, background, fwhm, roundness, noise

pub struct Params { pub k: f64, pub min_area: usize, pub max_stars: usize, pub radius: usize }

/// Detect and measure stars; writes up to `max_stars` records (brightest flux first) into `out` and
/// returns how many stars passed.
pub fn detect(data: &[f32], w: usize, h: usize, bg: &[f32], noise: &[f32], p: &Params, out: Buf<f64>, cancel: Cancel) -> Result<usize, String> {
    let sig = |x: usize, y: usize| -> f64 { let i = y * w + x; data[i] as f64 - bg[i] as f64 };
    const BAND: usize = 32;
    let bands = h.div_ceil(BAND);
    let found: Vec<Mutex<Vec<[f64; STAR_FIELDS]>>> = (0..bands).map(|_| Mutex::new(Vec::new())).collect();
    for_chunks(bands, cancel, |bnd| {
        let mut list = Vec::new();
        for y in bnd * BAND..((bnd + 1) * BAND).min(h) { for x in 0..w {
            let i = y * w + x;
            let thr = p.k * noise[i] as f64;
            let v = sig(x, y);
            if !(v > thr) || !(thr > 0.0) { continue; }
            let mut above = 0;
            for yy in y.saturating_sub(1)..(y + 2).min(h) { for xx in x.saturating_sub(1)..(x + 2).min(w) {
                if sig(xx, yy) > p.k * noise[yy * w + xx] as f64 { above += 1; }
            } }
            if above < p.min_area || !is_peak(&sig, x, y, w, h, 2) { continue; }
            let r = p.radius;
            let Some(m) = measure(&sig, x.saturating_sub(r), y.saturating_sub(r), (x + r + 1).min(w), (y + r + 1).min(h), SHAPE_TOL) else { continue };
            if !(m.fwhm_minor >= 0.5 && m.fwhm_major <= (2 * r + 1) as f64 && m.flux > 0.0) { continue; }
            list.push([m.x, m.y, m.flux, v, bg[i] as f64, (m.fwhm_major * m.fwhm_minor).sqrt(), m.fwhm_minor / m.fwhm_major, noise[i] as f64]);
        } }
        *found[bnd].lock().unwrap() = list;
    })?;
    let mut all: Vec<[f64; STAR_FIELDS]> = found.into_iter().flat_map(|m| m.into_inner().unwrap()).collect();
    // Brightest first; equal fluxes keep detection (row-major) order: the sort is stable.
    all.sort_by(|a, b| b[2].total_cmp(&a[2]));
    let o = out.slice_mut();
    for (k, s) in all.iter().take(p.max_stars).enumerate() { o[k * STAR_FIELDS..(k + 1) * STAR_FIELDS].copy_from_slice(s); }
    Ok(all.len())
}
