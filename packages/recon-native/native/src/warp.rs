//! Resampling through a 3×3 homography H that maps *output* pixel coordinates to *source* coordinates
//! (pixel centres at integers): (u, v, s)ᵀ = H·(x, y, 1)ᵀ, sample at (u/s, v/s). Shifts, similarities and
//! affine maps are homographies with a last row (0, 0, 1). Output pixels whose sample point falls outside
//! [0, W−1] × [0, H−1] are NaN (outside the footprint); kernels reaching past the edge reuse edge pixels.
//! Kernels: bilinear, bicubic (Keys, a = −0.5), Lanczos-3 (weights renormalised to sum 1). Taps with a
//! zero weight are skipped, so an exact integer shift copies pixels bit for bit even next to NaNs.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;
use std::f64::consts::PI;

pub const BILINEAR: u32 = 1;
pub const BICUBIC: u32 = 2;
pub const LANCZOS3: u32 = 3;

#[inline]
fn cubic(t: f64) -> f64 {
    let a = -0.5;
    let t = t.abs();
    if t <= 1.0 { (a + 2.0) * t * t * t - (a + 3.0) * t * t + 1.0 } else if t < 2.0 { a * t * t * t - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a } else { 0.0 }
}
#[inline]
fn lanczos3(t: f64) -> f64 {
    if t == 0.0 { return 1.0; }
    if t.abs() >= 3.0 || t.fract() == 0.0 { return 0.0; }
    let p = PI * t;
    3.0 * p.sin() * (p / 3.0).sin() / (p * p)
}

/// Weights of the taps at offsets (1 − a) .. a around floor(u), for fraction f; returns (first offset, n).
#[inline]
fn weights(kind: u32, f: f64, w: &mut [f64; 6]) -> (isize, usize) {
    match kind {
        BILINEAR => { w[0] = 1.0 - f; w[1] = f; (0, 2) }
        BICUBIC => { for k in 0..4 { w[k] = cubic(f - (k as f64 - 1.0)); } (-1, 4) }
        LANCZOS3 | _ => {
            let mut s = 0.0;
            for k in 0..6 { w[k] = lanczos3(f - (k as f64 - 2.0)); s += w[k]; }
            for k in 0..6 { w[k] /= s; }
            (-2, 6)
        }
    }
}

pub fn warp(src: &[f32], sw: usize, sh: usize, hm: [f64; 9], dst: Buf<f32>, dw: usize, dh: usize, kind: u32, cancel: Cancel) -> Result<(), String> {
    for_chunks(dh, cancel, |y| {
        let row = &mut dst.slice_mut()[y * dw..(y + 1) * dw];
        let (mut wx, mut wy) = ([0.0f64; 6], [0.0f64; 6]);
        for (x, o) in row.iter_mut().enumerate() {
            let (xf, yf) = (x as f64, y as f64);
            let s = hm[6] * xf + hm[7] * yf + hm[8];
            let u = (hm[0] * xf + hm[1] * yf + hm[2]) / s;
            let v = (hm[3] * xf + hm[4] * yf + hm[5]) / s;
            const EPS: f64 = 1e-9;
            if !(u >= -EPS && v >= -EPS && u <= (sw - 1) as f64 + EPS && v <= (sh - 1) as f64 + EPS) { *o = f32::NAN; continue; }
            let (u0, v0) = (u.floor(), v.floor());
            let (fx, fy) = (u - u0, v - v0);
            let (ox, nx) = weights(kind, fx, &mut wx);
            let (oy, ny) = weights(kind, fy, &mut wy);
            let mut acc = 0.0;
            for j in 0..ny {
                if wy[j] == 0.0 { continue; }
                let yy = (v0 as isize + oy + j as isize).clamp(0, sh as isize - 1) as usize;
                let mut racc = 0.0;
                for i in 0..nx {
                    if wx[i] == 0.0 { continue; }
                    let xx = (u0 as isize + ox + i as isize).clamp(0, sw as isize - 1) as usize;
                    racc += wx[i] * src[yy * sw + xx] as f64;
                }
                acc += wy[j] * racc;
            }
            *o = acc as f32;
        }
    })
}
