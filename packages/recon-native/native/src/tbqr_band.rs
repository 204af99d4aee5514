//! TBQR pass B for one band of rows of one channel over every frame (core's `tbqr.band` unit; the
//! method is described in core/src/tbqr/units.ts). Per pixel, in frame order:
//! 1. clip statistics of d = f32(raw·inv_f) − sky_f(u) over the frames, in two stages. (a) Sum, sum of
//!    squares, count, largest and smallest of the finite d; without the largest and the smallest, their
//!    mean m₁ and sample sd × trim_scale[n] (the caller's table: a Gaussian sample without its extremes has
//!    a smaller sd, js/trim.ts) give a window m₁ ± 3σ₁. (b) Mean m₂ and sample sd σ₂ × trunc_scale (the sd
//!    of a Gaussian cut at ±3σ is 0.987σ) of the d inside that window (of (a) where fewer than 3 are);
//!    lo = f32(m₂ − k_low·σ₂), hi = f32(m₂ + k_high·σ₂). Fewer than 4 finite values: no clipping.
//!    With μ and σ over all frames a single outlier can never lie more than (N − 1)/√N σ out, and k
//!    outliers at one place (a hot pixel that stays on one sky position between dithers) widen σ until
//!    none is rejected. Stage (a), without the extremes, sees one outlier clean; k of them, amplitude A,
//!    leave (k − 1) with σ₁ ≈ A·√(p(1 − p)), p = k/N, so they fall outside m₁ ± 3σ₁ while p < ~10 %, and
//!    (b) measures the clean frames (issue 33, item 4). Where the sharpest frames' star peaks stand out,
//!    (b) keeps them: its window is 3σ of the spread they belong to, and the final bounds 5σ of it;
//! 2. the weighted mean of x = (raw·inv_f − sky_f(u))·s_f over the frames whose d lies inside the bounds,
//!    with the smooth weight ω_f(x, y) built from the tile grid's window sums, the plain mean of x, and
//!    the plain mean of raw over the same frames (the reference of the validation figures: equal weights,
//!    the same rejection — a plain mean that keeps every cosmic and hot pixel is no reference for noise or
//!    photometry, least of all over hundreds of frames);
//! 3. out = sky_mean(u) + (weighted mean, or the mean of x where no weight remains)·restore, plain = the
//!    clipped mean of raw at the common sky: sky_mean(u) + the mean over the kept frames of raw minus the
//!    frame's own sky B_f·sky_f(u) (the mean of all raw values where every value was rejected).
//! Every sum takes the frames in their order and the same f64 operations as the TypeScript twin
//! (js/tbqr-band.ts, which is the code this kernel replaced), so both give the same bits. Rows are
//! independent: chunks of rows run in parallel, and a row's result does not depend on the split.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;

pub struct Band<'a> {
    pub frames: &'a [Buf<f32>],
    pub width: usize,
    pub rows: usize,
    /// Per frame: 1 / max(B_f, ε) and the flux scale s_f.
    pub inv: &'a [f64],
    pub scale: &'a [f64],
    /// Per frame and row: the sky surface's row coefficients (a0, a1, a2), frame-major (N × rows × 3).
    pub sky: &'a [f64],
    /// Per row: the plain mean's sky row coefficients (rows × 3), and the restore factor.
    pub sky_mean: &'a [f64],
    pub restore: f64,
    /// u = x/W − 0.5 per column.
    pub u: &'a [f64],
    pub clip_low: f64,
    pub clip_high: f64,
    /// The sd scale of a sample without its extremes per count of finite values (N + 1), and of a sample
    /// cut at ±3σ.
    pub trim_scale: &'a [f64],
    pub trunc_scale: f64,
    /// Tile grid: W_ft/D_t frame-major (N × tiles), column starts, tile width, column window, Σ windows per column.
    pub fractions: &'a [f64],
    pub xs0: &'a [i32],
    pub tw: usize,
    pub wx: &'a [f64],
    pub sx: &'a [f64],
    /// Per row r: its covering tile rows cov_iy[cov_start[r]..cov_start[r + 1]] with window weights cov_wy.
    pub cov_start: &'a [i32],
    pub cov_iy: &'a [i32],
    pub cov_wy: &'a [f64],
}

pub fn run(b: &Band, out: Buf<f32>, plain: Buf<f32>, cancel: Cancel) -> Result<(), String> {
    let (w, n) = (b.width, b.frames.len());
    let tx = b.xs0.len();
    let tiles = if n > 0 { b.fractions.len() / n } else { 0 };
    for_chunks(b.rows, cancel, |r| {
        let (mut s1, mut s2, mut sn) = (vec![0.0f64; w], vec![0.0f64; w], vec![0u32; w]);
        let (mut dmax, mut dmin) = (vec![f64::NEG_INFINITY; w], vec![f64::INFINITY; w]);
        let d_of = |f: usize, x: usize, v: &[f32]| -> f64 {
            let k = 3 * (f * b.rows + r);
            let u = b.u[x];
            ((v[x] as f64 * b.inv[f]) as f32) as f64 - (b.sky[k] + b.sky[k + 1] * u + b.sky[k + 2] * u * u)
        };
        for f in 0..n {
            let v = &b.frames[f].slice()[r * w..(r + 1) * w];
            for x in 0..w {
                let d = d_of(f, x, v);
                if d - d == 0.0 {
                    s1[x] += d; s2[x] += d * d; sn[x] += 1;
                    if d > dmax[x] { dmax[x] = d; }
                    if d < dmin[x] { dmin[x] = d; }
                }
            }
        }
        // (a) The window m₁ ± 3σ₁ from the values without their extremes (empty: no clipping).
        let (mut w_lo, mut w_hi) = (vec![f64::NEG_INFINITY; w], vec![f64::INFINITY; w]);
        for x in 0..w {
            let nf = sn[x] as usize;
            if nf < 4 { continue; }
            let (a, q, m) = (s1[x] - dmax[x] - dmin[x], s2[x] - dmax[x] * dmax[x] - dmin[x] * dmin[x], (nf - 2) as f64);
            let mean = a / m;
            let var = (q - a * mean) / (m - 1.0);
            // Math.max(var, 0) of the twin (NaN stays NaN, −0 becomes +0).
            let sd = (if var.is_nan() { var } else if var > 0.0 { var } else { 0.0 }).sqrt() * b.trim_scale[nf];
            w_lo[x] = mean - 3.0 * sd;
            w_hi[x] = mean + 3.0 * sd;
        }
        // (b) Mean and σ of the values inside the window.
        let (mut t1, mut t2, mut tn) = (vec![0.0f64; w], vec![0.0f64; w], vec![0u32; w]);
        for f in 0..n {
            let v = &b.frames[f].slice()[r * w..(r + 1) * w];
            for x in 0..w {
                if sn[x] < 4 { continue; }
                let d = d_of(f, x, v);
                if d >= w_lo[x] && d <= w_hi[x] { t1[x] += d; t2[x] += d * d; tn[x] += 1; }
            }
        }
        let (mut lo, mut hi) = (vec![0.0f32; w], vec![0.0f32; w]);
        for x in 0..w {
            if sn[x] < 4 { lo[x] = f32::NEG_INFINITY; hi[x] = f32::INFINITY; continue; }
            let (mean, sd) = if tn[x] >= 3 {
                let (a, q, m) = (t1[x], t2[x], tn[x] as f64);
                let mean = a / m;
                let var = (q - a * mean) / (m - 1.0);
                (mean, (if var.is_nan() { var } else if var > 0.0 { var } else { 0.0 }).sqrt() * b.trunc_scale)
            } else {
                ((w_lo[x] + w_hi[x]) / 2.0, (w_hi[x] - w_lo[x]) / 6.0)
            };
            lo[x] = (mean - b.clip_low * sd) as f32;
            hi[x] = (mean + b.clip_high * sd) as f32;
        }
        let (mut acc, mut wsum, mut macc, mut mcnt, mut racc, mut rcnt) = (vec![0.0f64; w], vec![0.0f64; w], vec![0.0f64; w], vec![0.0f64; w], vec![0.0f64; w], vec![0.0f64; w]);
        let (mut aacc, mut acnt) = (vec![0.0f64; w], vec![0.0f64; w]);
        let (mut row_a, mut wrow) = (vec![0.0f64; tx], vec![0.0f64; w]);
        let (c0, c1) = (b.cov_start[r] as usize, b.cov_start[r + 1] as usize);
        for f in 0..n {
            let plane = &b.frames[f].slice()[r * w..(r + 1) * w];
            let af = &b.fractions[f * tiles..(f + 1) * tiles];
            let (sc, inv_b) = (b.scale[f], b.inv[f]);
            row_a.iter_mut().for_each(|v| *v = 0.0);
            let mut sy = 0.0;
            for c in c0..c1 {
                let (iy, wy) = (b.cov_iy[c] as usize, b.cov_wy[c]);
                sy += wy;
                for ix in 0..tx { row_a[ix] += wy * af[iy * tx + ix]; }
            }
            wrow.iter_mut().for_each(|v| *v = 0.0);
            for ix in 0..tx {
                let (a, x0) = (row_a[ix], b.xs0[ix] as usize);
                if a != 0.0 { for k in 0..b.tw { wrow[x0 + k] += b.wx[k] * a; } }
            }
            let inv = 1.0 / sy;
            for xx in 0..w { wrow[xx] *= inv / b.sx[xx]; }
            let k = 3 * (f * b.rows + r);
            let (a0, a1, a2) = (b.sky[k], b.sky[k + 1], b.sky[k + 2]);
            for xx in 0..w {
                let raw = plane[xx];
                if raw.is_nan() { continue; }
                let raw = raw as f64;
                aacc[xx] += raw; acnt[xx] += 1.0;
                let u = b.u[xx];
                let d = raw * inv_b - (a0 + a1 * u + a2 * u * u);
                let v = d * sc;
                macc[xx] += v; mcnt[xx] += 1.0;
                if d < lo[xx] as f64 || d > hi[xx] as f64 { continue; }
                // The plain mean at the frames' common sky: raw minus this frame's own sky (raw units), the
                // mean sky added back below. A mean of raw values over the kept frames only would take the
                // sky level of whichever frames were kept (a hot pixel rejected in 4 early frames of a night
                // whose sky doubles: a spike of 5 % of the sky at every such pixel).
                racc[xx] += raw - (a0 + a1 * u + a2 * u * u) / inv_b; rcnt[xx] += 1.0;
                let wt = wrow[xx];
                acc[xx] += wt * v; wsum[xx] += wt;
            }
        }
        let (o, p) = (&mut out.slice_mut()[r * w..(r + 1) * w], &mut plain.slice_mut()[r * w..(r + 1) * w]);
        let (a0, a1, a2) = (b.sky_mean[3 * r], b.sky_mean[3 * r + 1], b.sky_mean[3 * r + 2]);
        for xx in 0..w {
            let u = b.u[xx];
            let sky = a0 + a1 * u + a2 * u * u;
            let m = if mcnt[xx] > 0.0 { macc[xx] / mcnt[xx] } else { f64::NAN };
            o[xx] = (sky + (if wsum[xx] > 0.0 { acc[xx] / wsum[xx] } else { m }) * b.restore) as f32;
            p[xx] = if rcnt[xx] > 0.0 { (sky + racc[xx] / rcnt[xx]) as f32 } else if acnt[xx] > 0.0 { (aacc[xx] / acnt[xx]) as f32 } else { f32::NAN };
        }
    })
}
