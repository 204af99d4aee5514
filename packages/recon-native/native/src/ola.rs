//! Windowed overlap-add: tiles are accumulated onto a canvas as A += w·win·T and S += w·win (f64), then
//! the canvas is normalised as A / S (NaN where S ≤ ε). NaN tile pixels contribute nothing. Threads own
//! bands of canvas rows and add the tiles in list order, so every canvas pixel sees the same sequence of
//! additions whatever the thread count.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;

const BAND: usize = 4;

/// One tile row onto one canvas row: A += k·v, S += k for finite v (branch-free; see combine.rs).
#[inline(always)]
fn add_row(arow: &mut [f64], srow: &mut [f64], trow: &[f32], wrow: Option<&[f32]>, wt: f64) {
    let n = trow.len();
    let (arow, srow) = (&mut arow[..n], &mut srow[..n]);
    match wrow {
        Some(wrow) => {
            let wrow = &wrow[..n];
            for i in 0..n {
                let v = trow[i] as f64;
                let k = wt * wrow[i] as f64;
                let (kv, kk) = if v.abs() < f64::INFINITY { (k * v, k) } else { (0.0, 0.0) };
                arow[i] += kv;
                srow[i] += kk;
            }
        }
        None => for i in 0..n {
            let v = trow[i] as f64;
            let (kv, kk) = if v.abs() < f64::INFINITY { (wt * v, wt) } else { (0.0, 0.0) };
            arow[i] += kv;
            srow[i] += kk;
        },
    }
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2(arow: &mut [f64], srow: &mut [f64], trow: &[f32], wrow: Option<&[f32]>, wt: f64) { add_row(arow, srow, trow, wrow, wt) }

pub fn add(acc: Buf<f64>, wsum: Buf<f64>, cw: usize, ch: usize, tiles: &[Buf<f32>], rects: &[i32], weights: &[f64], window: Option<&[f32]>, cancel: Cancel) -> Result<(), String> {
    let bands = ch.div_ceil(BAND);
    let avx2 = crate::simd::has_avx2();
    for_chunks(bands, cancel, |b| {
        let (y_lo, y_hi) = (b * BAND, ((b + 1) * BAND).min(ch));
        let (a, s) = (acc.slice_mut(), wsum.slice_mut());
        for (t, tile) in tiles.iter().enumerate() {
            let r = &rects[4 * t..4 * t + 4];
            let (x0, y0, tw, th) = (r[0] as usize, r[1] as usize, r[2] as usize, r[3] as usize);
            let (ya, yb) = (y0.max(y_lo), (y0 + th).min(y_hi));
            let wt = weights[t];
            let tv = tile.slice();
            for y in ya..yb {
                let ty = y - y0;
                let arow = &mut a[y * cw + x0..y * cw + x0 + tw];
                let srow = &mut s[y * cw + x0..y * cw + x0 + tw];
                let trow = &tv[ty * tw..(ty + 1) * tw];
                let wrow = window.map(|win| &win[ty * tw..(ty + 1) * tw]);
                #[cfg(target_arch = "x86_64")]
                if avx2 { unsafe { add_row_avx2(arow, srow, trow, wrow, wt) }; continue; }
                add_row(arow, srow, trow, wrow, wt);
            }
        }
    })
}

pub fn normalize(acc: &[f64], wsum: &[f64], out: Buf<f32>, eps: f64, cancel: Cancel) -> Result<(), String> {
    let n = out.len;
    const CHUNK: usize = 65536;
    for_chunks(n.div_ceil(CHUNK), cancel, |c| {
        let o = out.slice_mut();
        for i in c * CHUNK..((c + 1) * CHUNK).min(n) { o[i] = if wsum[i] > eps { (acc[i] / wsum[i]) as f32 } else { f32::NAN }; }
    })
}
