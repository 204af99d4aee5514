//! Per-tile TBQR metrics (tbqr-reference §1.8 / §2.4.3). For each tile rectangle:
//! - background model: 31×31 box mean (NaN-aware, clamped at tile edges) of the tile with its bright
//!   sources masked; residual = tile − model. (The reference's plain box blur is pulled up by ~flux/961
//!   around every star, which doubles the noise estimate of a starry tile; two masking passes — drop
//!   pixels above median + 3σ0 of the current residual, recompute the box mean — remove that bias.)
//! - σ0 = 1.4826·MAD(residual) (median and MAD of the masking passes from every 4th pixel); the "sky"
//!   pixels are those with residual ≤ median + 3σ0;
//!   noise σ = 1.4826·MAD of the sky residuals, background B = median of the sky pixel values;
//! - gradient energy E = median of the Sobel |∇residual|² over interior pixels; also E/σ;
//! - stars: residual peaks > 5σ with ≥ 4 pixels of their 3×3 above 3σ (pure noise gives ~0.005 false
//!   stars per 128² tile; a 3σ peak cut would give ~20), 5×5 maxima at least 5 px inside the tile, the 50 highest,
//!   measured in an 11×11 box (see stars.rs); kept when 0.2 < FWHM per axis < 50 px;
//!   per tile: count and the medians of FWHM, roundness and contrast (= peak residual / B).
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;
use crate::stars::{is_peak, measure};
use crate::stats::median;

pub const TILE_FIELDS: usize = 9; // background, noise, energy, energy/noise, stars, fwhm, roundness, contrast, valid fraction
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;
const BOX_R: usize = 15;
const STAR_R: usize = 5;
const MAX_TILE_STARS: usize = 50;

/// NaN-aware box mean with radius r over a w×h f64 image (separable running sums). Branch-free selects
/// (adding +0.0 to a running sum that never becomes −0 is exact), and the vertical pass runs row by row
/// over all columns at once (cache-friendly); each column still sees the same additions in the same
/// order as the column-by-column loop of the TypeScript twin, so results are identical.
pub fn box_mean(t: &[f64], w: usize, h: usize, r: usize) -> Vec<f64> {
    let mut hs = vec![0.0; w * h];
    let mut hc = vec![0.0; w * h];
    let fin = |v: f64| if v.abs() < f64::INFINITY { (v, 1.0) } else { (0.0, 0.0) };
    for y in 0..h {
        let row = &t[y * w..(y + 1) * w];
        let (mut s, mut c) = (0.0, 0.0);
        for x in 0..r.min(w) { let (v, k) = fin(row[x]); s += v; c += k; }
        for x in 0..w {
            if x + r < w { let (v, k) = fin(row[x + r]); s += v; c += k; }
            if x > r { let (v, k) = fin(row[x - r - 1]); s -= v; c -= k; }
            hs[y * w + x] = s;
            hc[y * w + x] = c;
        }
    }
    let mut out = vec![f64::NAN; w * h];
    let (mut s, mut c) = (vec![0.0; w], vec![0.0; w]);
    for y in 0..r.min(h) { for x in 0..w { s[x] += hs[y * w + x]; c[x] += hc[y * w + x]; } }
    for y in 0..h {
        if y + r < h { let o = (y + r) * w; for x in 0..w { s[x] += hs[o + x]; c[x] += hc[o + x]; } }
        if y > r { let o = (y - r - 1) * w; for x in 0..w { s[x] -= hs[o + x]; c[x] -= hc[o + x]; } }
        let o = y * w;
        for x in 0..w { out[o + x] = if c[x] > 0.0 { s[x] / c[x] } else { f64::NAN }; }
    }
    out
}

pub fn tile_metrics(data: &[f32], w: usize, t_x0: usize, t_y0: usize, tw: usize, th: usize) -> [f64; TILE_FIELDS] {
    let mut t = vec![0.0f64; tw * th];
    let mut valid = 0usize;
    for y in 0..th { for x in 0..tw { let v = data[(t_y0 + y) * w + t_x0 + x] as f64; t[y * tw + x] = v; if v.is_finite() { valid += 1; } } }
    let nan = f64::NAN;
    let frac = valid as f64 / (tw * th) as f64;
    if valid < 3 { return [nan, nan, nan, nan, 0.0, nan, nan, nan, frac]; }
    let mut model = box_mean(&t, tw, th, BOX_R);
    let mut masked = vec![0.0f64; tw * th];
    let mut v: Vec<f64> = Vec::with_capacity(tw * th);
    let mut cut = 0.0;
    for pass in 0..3 {
        v.clear();
        // The clip level from every 4th pixel (the TypeScript twin samples the same ones): its median and
        // MAD need ~2 % precision, and these order statistics were a fifth of the kernel's time.
        v.extend(t.iter().zip(&model).step_by(4).map(|(a, b)| a - b).filter(|x| x.is_finite()));
        let med_r = median(&mut v);
        for x in v.iter_mut() { *x = (*x - med_r).abs(); }
        let sigma0 = MAD_TO_SIGMA * median(&mut v);
        cut = med_r + 3.0 * sigma0;
        if pass == 2 { break; }
        for i in 0..tw * th { masked[i] = if t[i] - model[i] <= cut { t[i] } else { f64::NAN }; }
        let next = box_mean(&masked, tw, th, BOX_R);
        for i in 0..tw * th { if next[i].is_finite() { model[i] = next[i]; } }
    }
    let resid: Vec<f64> = t.iter().zip(&model).map(|(a, b)| a - b).collect();
    let mut sky_r = Vec::with_capacity(valid);
    let mut sky_v = Vec::with_capacity(valid);
    for i in 0..tw * th { if resid[i].is_finite() && resid[i] <= cut { sky_r.push(resid[i]); sky_v.push(t[i]); } }
    let ms = median(&mut sky_r.clone());
    for x in sky_r.iter_mut() { *x = (*x - ms).abs(); }
    let sigma = MAD_TO_SIGMA * median(&mut sky_r);
    let bg = median(&mut sky_v);
    let mut g2 = Vec::with_capacity(tw * th);
    if tw >= 3 && th >= 3 {
        for y in 1..th - 1 { for x in 1..tw - 1 {
            let p = |dx: usize, dy: usize| resid[(y + dy - 1) * tw + x + dx - 1];
            let gx = (p(2, 0) + 2.0 * p(2, 1) + p(2, 2)) - (p(0, 0) + 2.0 * p(0, 1) + p(0, 2));
            let gy = (p(0, 2) + 2.0 * p(1, 2) + p(2, 2)) - (p(0, 0) + 2.0 * p(1, 0) + p(2, 0));
            let e = gx * gx + gy * gy;
            if e.is_finite() { g2.push(e); }
        } }
    }
    let energy = median(&mut g2);
    // Stars on the residual.
    let sig = |x: usize, y: usize| resid[y * tw + x];
    let mut cands: Vec<(f64, usize, usize)> = Vec::new();
    if sigma > 0.0 && tw > 2 * STAR_R && th > 2 * STAR_R {
        for y in STAR_R..th - STAR_R { for x in STAR_R..tw - STAR_R {
            let r = sig(x, y);
            if !(r > 5.0 * sigma) || !is_peak(&sig, x, y, tw, th, 2) { continue; }
            let mut above = 0;
            for yy in y - 1..y + 2 { for xx in x - 1..x + 2 { if sig(xx, yy) > 3.0 * sigma { above += 1; } } }
            if above >= 4 { cands.push((r, y, x)); }
        } }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut fw, mut ro, mut co) = (Vec::new(), Vec::new(), Vec::new());
    for &(peak, y, x) in cands.iter().take(MAX_TILE_STARS) {
        let Some(m) = measure(&sig, x - STAR_R, y - STAR_R, x + STAR_R + 1, y + STAR_R + 1) else { continue };
        if !(m.fwhm_minor > 0.2 && m.fwhm_major < 50.0) { continue; }
        fw.push((m.fwhm_major * m.fwhm_minor).sqrt());
        ro.push(m.fwhm_minor / m.fwhm_major);
        co.push(if bg > 0.0 { peak / bg } else { nan });
    }
    let count = fw.len() as f64;
    let mut co_f: Vec<f64> = co.into_iter().filter(|c: &f64| c.is_finite()).collect();
    [bg, sigma, energy, energy / sigma, count, median(&mut fw), median(&mut ro), median(&mut co_f), frac]
}

/// rects: [x0, y0, w, h] per tile (validated by the caller); out: TILE_FIELDS per tile.
pub fn run(data: &[f32], w: usize, rects: &[i32], out: Buf<f64>, cancel: Cancel) -> Result<(), String> {
    let n = rects.len() / 4;
    for_chunks(n, cancel, |k| {
        let r = &rects[4 * k..4 * k + 4];
        let m = tile_metrics(data, w, r[0] as usize, r[1] as usize, r[2] as usize, r[3] as usize);
        out.slice_mut()[k * TILE_FIELDS..(k + 1) * TILE_FIELDS].copy_from_slice(&m);
    })
}
