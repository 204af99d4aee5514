//! Resampling through a 3×3 homography H that maps *output* pixel coordinates to *source* coordinates
//! (pixel centres at integers): (u, v, s)ᵀ = H·(x, y, 1)ᵀ, sample at (u/s, v/s). Shifts, similarities and
//! affine maps are homographies with a last row (0, 0, 1). Output pixels whose sample point falls outside
//! [0, W−1] × [0, H−1] are NaN (outside the footprint); kernels reaching past the edge reuse edge pixels.
//! Kernels: bilinear, bicubic (Keys, a = −0.5), Lanczos-3. Lanczos weights come from a table of 2048
//! sub-pixel phases (each row normalised to sum 1; the phase is rounded, i.e. ≤ 1/4096 px), as OpenCV
//! and most stackers do; the TypeScript twin builds the same table. Taps with a zero weight are skipped,
//! so an exact integer shift copies pixels bit for bit even next to NaNs.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;
use std::f64::consts::PI;
use std::sync::OnceLock;

pub const BILINEAR: u32 = 1;
pub const BICUBIC: u32 = 2;
pub const LANCZOS3: u32 = 3;
pub const PHASES: usize = 2048;

#[inline]
fn cubic(t: f64) -> f64 {
    let a = -0.5;
    let t = t.abs();
    if t <= 1.0 { (a + 2.0) * t * t * t - (a + 3.0) * t * t + 1.0 } else if t < 2.0 { a * t * t * t - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a } else { 0.0 }
}
fn lanczos3(t: f64) -> f64 {
    if t == 0.0 { return 1.0; }
    if t.abs() >= 3.0 || t.fract() == 0.0 { return 0.0; }
    let p = PI * t;
    3.0 * p.sin() * (p / 3.0).sin() / (p * p)
}
static LANCZOS: OnceLock<Vec<[f64; 6]>> = OnceLock::new();
fn lanczos_table() -> &'static [[f64; 6]] {
    LANCZOS.get_or_init(|| (0..=PHASES).map(|k| {
        let f = k as f64 / PHASES as f64;
        let mut w = [0.0; 6];
        let mut s = 0.0;
        for i in 0..6 { w[i] = lanczos3(f - (i as f64 - 2.0)); s += w[i]; }
        for i in 0..6 { w[i] /= s; }
        w
    }).collect())
}

trait Kernel { const N: usize; const OFF: isize; fn weights(f: f64, w: &mut [f64; 6]); }
struct Bilinear;
struct Bicubic;
struct Lanczos;
impl Kernel for Bilinear { const N: usize = 2; const OFF: isize = 0; #[inline(always)] fn weights(f: f64, w: &mut [f64; 6]) { w[0] = 1.0 - f; w[1] = f; } }
impl Kernel for Bicubic { const N: usize = 4; const OFF: isize = -1; #[inline(always)] fn weights(f: f64, w: &mut [f64; 6]) { for k in 0..4 { w[k] = cubic(f - (k as f64 - 1.0)); } } }
impl Kernel for Lanczos { const N: usize = 6; const OFF: isize = -2; #[inline(always)] fn weights(f: f64, w: &mut [f64; 6]) { *w = LANCZOS.get().unwrap()[(f * PHASES as f64 + 0.5) as usize]; } }

/// floor() without a libm call (x86-64's baseline has no roundsd); exact for |x| < 2^53.
#[inline(always)]
fn floor(x: f64) -> f64 { let t = x as i64 as f64; if t > x { t - 1.0 } else { t } }

#[inline(always)]
fn row<K: Kernel>(src: &[f32], sw: usize, sh: usize, hm: &[f64; 9], y: usize, out: &mut [f32]) {
    let (mut wx, mut wy) = ([0.0f64; 6], [0.0f64; 6]);
    let dwidth = out.len();
    let mut skip = 0usize;
    let yf = y as f64;
    const EPS: f64 = 1e-9;
    let (umax, vmax) = ((sw - 1) as f64 + EPS, (sh - 1) as f64 + EPS);
    let affine = hm[6] == 0.0 && hm[7] == 0.0 && hm[8] == 1.0;
    // Bilinear: four output pixels per step (AVX2) where all four are interior and finite.
    #[cfg(target_arch = "x86_64")]
    let vec_bilinear = K::N == 2 && crate::simd::has_avx2() && sw * sh < (i32::MAX as usize) - sw;
    #[cfg(target_arch = "x86_64")]
    let quad_lanczos = K::N == 6 && crate::simd::has_avx2() && sw < (i32::MAX as usize) && sh < (i32::MAX as usize);
    #[cfg(target_arch = "x86_64")]
    let table = if quad_lanczos { lanczos_table() } else { &[] };
    for x in 0..dwidth {
        if skip > 0 { skip -= 1; continue; }
        #[cfg(target_arch = "x86_64")]
        if quad_lanczos && x + 4 <= dwidth {
            // SAFETY: AVX2+FMA checked; lanczos4 reads src only for interior taps and writes out[x..x + 4].
            if unsafe { lanczos4(src, sw, sh, hm, affine, x, yf, table, &mut out[x..x + 4]) } { skip = 3; continue; }
        }
        #[cfg(target_arch = "x86_64")]
        if vec_bilinear && x % 4 == 0 && x + 4 <= dwidth {
            // SAFETY: AVX2 checked; bilinear4 reads src only after checking all four taps are inside,
            // and writes out[x..x + 4] (in bounds by the condition above).
            if unsafe { bilinear4(src, sw, sh, hm, affine, x, yf, out[x..x + 4].as_mut_ptr()) } { skip = 3; continue; }
        }
        let o = &mut out[x];
        let xf = x as f64;
        // For an affine matrix s is exactly 1 and the division is skipped (x / 1.0 == x exactly).
        let (u, v) = if affine { (hm[0] * xf + hm[1] * yf + hm[2], hm[3] * xf + hm[4] * yf + hm[5]) } else {
            let s = hm[6] * xf + hm[7] * yf + hm[8];
            ((hm[0] * xf + hm[1] * yf + hm[2]) / s, (hm[3] * xf + hm[4] * yf + hm[5]) / s)
        };
        if !(u >= -EPS && v >= -EPS && u <= umax && v <= vmax) { *o = f32::NAN; continue; }
        let (u0, v0) = (floor(u), floor(v));
        K::weights(u - u0, &mut wx);
        K::weights(v - v0, &mut wy);
        let (xs, ys) = (u0 as isize + K::OFF, v0 as isize + K::OFF);
        let interior = xs >= 0 && ys >= 0 && xs + K::N as isize <= sw as isize && ys + K::N as isize <= sh as isize;
        #[cfg(target_arch = "x86_64")]
        if K::N == 6 && interior && crate::simd::has_avx2() {
            // SAFETY: interior means rows ys..ys+6 and columns xs..xs+6 are inside src; AVX2+FMA checked.
            let acc = unsafe { lanczos_taps(src, sw, xs as usize, ys as usize, &wx, &wy) };
            if acc.is_finite() { *o = acc as f32; continue; }
        }
        if interior {
            // Fast path: every tap, unrolled. It equals the tap-skipping sum below unless a tap is NaN or
            // infinite (adding 0·finite = ±0 to a +0-started sum changes nothing), so recompute only then.
            let (xs, ys) = (xs as usize, ys as usize);
            let mut acc = 0.0;
            for j in 0..K::N {
                let r = &src[(ys + j) * sw + xs..(ys + j) * sw + xs + K::N];
                let mut racc = 0.0;
                for i in 0..K::N { racc += wx[i] * r[i] as f64; }
                acc += wy[j] * racc;
            }
            if acc.is_finite() { *o = acc as f32; continue; }
        }
        let mut acc = 0.0;
        for j in 0..K::N {
            if wy[j] == 0.0 { continue; }
            let yy = (ys + j as isize).clamp(0, sh as isize - 1) as usize;
            let r = &src[yy * sw..yy * sw + sw];
            let mut racc = 0.0;
            for i in 0..K::N {
                if wx[i] == 0.0 { continue; }
                let xx = (xs + i as isize).clamp(0, sw as isize - 1) as usize;
                racc += wx[i] * r[xx] as f64;
            }
            acc += wy[j] * racc;
        }
        *o = acc as f32;
    }
}

/// Sample points (u, v) of output pixels x..x + 4 of row y and their floors, in AVX2 lanes: the scalar
/// path's expressions, u = (h0·x + h1·y) + h2 left to right without FMA (÷ s for a homography), floor =
/// round toward −∞; so every lane holds exactly the scalar path's value.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sample_points4(hm: &[f64; 9], affine: bool, x: usize, yf: f64) -> (std::arch::x86_64::__m256d, std::arch::x86_64::__m256d, std::arch::x86_64::__m256d, std::arch::x86_64::__m256d) {
    use std::arch::x86_64::*;
    let xf = _mm256_add_pd(_mm256_set1_pd(x as f64), _mm256_set_pd(3.0, 2.0, 1.0, 0.0));
    let lin = |a: f64, b: f64, c: f64| _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(a), xf), _mm256_set1_pd(b * yf)), _mm256_set1_pd(c));
    let (mut u, mut v) = (lin(hm[0], hm[1], hm[2]), lin(hm[3], hm[4], hm[5]));
    if !affine {
        let sv = lin(hm[6], hm[7], hm[8]);
        u = _mm256_div_pd(u, sv);
        v = _mm256_div_pd(v, sv);
    }
    (u, v, _mm256_round_pd(u, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), _mm256_round_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC))
}

/// Bilinear for output pixels x..x+4 of row y, four lanes of f64: the same sample points, weights and
/// operations in the same order as the scalar path (row sums wx0·p0 + wx1·p1, then wy0·r0 + wy1·r1; no
/// FMA), so the results are identical. Returns false, writing nothing, unless all four sample points are
/// interior (both taps inside in x and y) and all four results finite; the scalar path then handles them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bilinear4(src: &[f32], sw: usize, sh: usize, hm: &[f64; 9], affine: bool, x: usize, yf: f64, out: *mut f32) -> bool {
    use std::arch::x86_64::*;
    let (u, v, u0, v0) = sample_points4(hm, affine, x, yf);
    // Interior: 0 ≤ u0, u0 + 1 ≤ sw − 1 (same for v). NaN fails every compare.
    let zero = _mm256_setzero_pd();
    let ok = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(u0, zero, _CMP_GE_OQ), _mm256_cmp_pd(v0, zero, _CMP_GE_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(u0, _mm256_set1_pd((sw - 2) as f64), _CMP_LE_OQ), _mm256_cmp_pd(v0, _mm256_set1_pd((sh - 2) as f64), _CMP_LE_OQ)),
    );
    if _mm256_movemask_pd(ok) != 0xF { return false; }
    let (fx, fy) = (_mm256_sub_pd(u, u0), _mm256_sub_pd(v, v0));
    let one = _mm256_set1_pd(1.0);
    let (wx0, wy0) = (_mm256_sub_pd(one, fx), _mm256_sub_pd(one, fy));
    // Tap index v0·sw + u0 < sw·sh fits i32 (checked by the caller).
    let idx = _mm256_cvtpd_epi32(_mm256_add_pd(_mm256_mul_pd(v0, _mm256_set1_pd(sw as f64)), u0));
    let mut ix = [0i32; 4];
    _mm_storeu_si128(ix.as_mut_ptr() as *mut __m128i, idx);
    // Each pixel's two horizontal taps are adjacent: one 64-bit load per source row and pixel, then a
    // shuffle splits left and right taps (cheaper than four gathers on these cores).
    let base = src.as_ptr();
    let pair = |i: i32, j: i32, row: usize| {
        let a = _mm_castpd_ps(_mm_load_sd(base.add(i as usize + row) as *const f64));
        _mm_castpd_ps(_mm_loadh_pd(_mm_castps_pd(a), base.add(j as usize + row) as *const f64))
    };
    let (a0, a1) = (pair(ix[0], ix[1], 0), pair(ix[2], ix[3], 0));
    let (b0, b1) = (pair(ix[0], ix[1], sw), pair(ix[2], ix[3], sw));
    let p00 = _mm256_cvtps_pd(_mm_shuffle_ps::<0b10_00_10_00>(a0, a1));
    let p01 = _mm256_cvtps_pd(_mm_shuffle_ps::<0b11_01_11_01>(a0, a1));
    let p10 = _mm256_cvtps_pd(_mm_shuffle_ps::<0b10_00_10_00>(b0, b1));
    let p11 = _mm256_cvtps_pd(_mm_shuffle_ps::<0b11_01_11_01>(b0, b1));
    // The scalar sums start from +0.0 (which turns a −0 first term into +0); so do these.
    let r0 = _mm256_add_pd(_mm256_add_pd(zero, _mm256_mul_pd(wx0, p00)), _mm256_mul_pd(fx, p01));
    let r1 = _mm256_add_pd(_mm256_add_pd(zero, _mm256_mul_pd(wx0, p10)), _mm256_mul_pd(fx, p11));
    let acc = _mm256_add_pd(_mm256_add_pd(zero, _mm256_mul_pd(wy0, r0)), _mm256_mul_pd(fy, r1));
    // Finite: |acc| < ∞ (false for NaN).
    let abs = _mm256_andnot_pd(_mm256_set1_pd(-0.0), acc);
    if _mm256_movemask_pd(_mm256_cmp_pd(abs, _mm256_set1_pd(f64::INFINITY), _CMP_LT_OQ)) != 0xF { return false; }
    _mm_storeu_ps(out, _mm256_cvtpd_ps(acc));
    true
}

/// Lanczos-3 for output pixels x..x + 4 of row y: the same sample points, table weights and tap
/// arithmetic as the one-pixel path (so the same bits). The sample points, floors, phases and the
/// interior test are computed for the four pixels in AVX2 lanes (the expressions of the scalar path, no
/// FMA), then each pixel's taps by `lanczos_taps` (inlined: the four independent FMA chains overlap in the
/// core). One pixel's set-up was some 30 scalar instructions around a chain of dependent FMAs; four at a
/// time keep the FMA units busy (2048² frame, one thread: 69 → 36 ms, output bit-identical; the four chains
/// written out interleaved by hand were 5 % faster still, not worth a second copy of the tap code).
/// Returns false, writing nothing, unless all four pixels are interior with finite results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn lanczos4(src: &[f32], sw: usize, sh: usize, hm: &[f64; 9], affine: bool, x: usize, yf: f64, table: &[[f64; 6]], out: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    let (u, v, u0, v0) = sample_points4(hm, affine, x, yf);
    // Interior: the 6 taps u0 − 2 … u0 + 3 inside [0, sw − 1] (same for v). This implies the scalar
    // path's footprint test (−ε ≤ u ≤ sw − 1 + ε); NaN fails every compare.
    let ok = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(u0, _mm256_set1_pd(2.0), _CMP_GE_OQ), _mm256_cmp_pd(v0, _mm256_set1_pd(2.0), _CMP_GE_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(u0, _mm256_set1_pd(sw as f64 - 4.0), _CMP_LE_OQ), _mm256_cmp_pd(v0, _mm256_set1_pd(sh as f64 - 4.0), _CMP_LE_OQ)),
    );
    if _mm256_movemask_pd(ok) != 0xF { return false; }
    // Table phase ((u − u0)·PHASES + 0.5) truncated, as the scalar `as usize` (positive, small).
    let ph = |f: __m256d| {
        let t = _mm256_cvttpd_epi32(_mm256_add_pd(_mm256_mul_pd(f, _mm256_set1_pd(PHASES as f64)), _mm256_set1_pd(0.5)));
        let mut a = [0i32; 4];
        _mm_storeu_si128(a.as_mut_ptr() as *mut __m128i, t);
        a
    };
    let (pu, pv) = (ph(_mm256_sub_pd(u, u0)), ph(_mm256_sub_pd(v, v0)));
    let (mut xs, mut ys) = ([0i32; 4], [0i32; 4]);
    _mm_storeu_si128(xs.as_mut_ptr() as *mut __m128i, _mm256_cvttpd_epi32(u0));
    _mm_storeu_si128(ys.as_mut_ptr() as *mut __m128i, _mm256_cvttpd_epi32(v0));
    let mut r = [0.0f64; 4];
    for k in 0..4 {
        r[k] = lanczos_taps(src, sw, xs[k] as usize - 2, ys[k] as usize - 2, &table[pu[k] as usize], &table[pv[k] as usize]);
        if !r[k].is_finite() { return false; }
    }
    for k in 0..4 { out[k] = r[k] as f32; }
    true
}

/// The 36 Lanczos-3 taps of one interior output pixel: each of the 6 source rows is scaled by its row
/// weight and accumulated 4 + 2 columns wide (f64 FMA), then dotted with the column weights. A different
/// summation order from the scalar path (the TypeScript twin agrees to ~1e-12 relative, see the parity
/// test); a non-finite tap makes the result non-finite, and the caller then takes the tap-skipping path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lanczos_taps(src: &[f32], sw: usize, xs: usize, ys: usize, wx: &[f64; 6], wy: &[f64; 6]) -> f64 {
    use std::arch::x86_64::*;
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm_setzero_pd());
    let base = src.as_ptr().add(ys * sw + xs);
    for j in 0..6 {
        let p = base.add(j * sw);
        let w = _mm256_set1_pd(wy[j]);
        // Columns 0–3, then 4–5 (a 64-bit load: nothing past the kernel is read).
        lo = _mm256_fmadd_pd(w, _mm256_cvtps_pd(_mm_loadu_ps(p)), lo);
        let two = _mm_castpd_ps(_mm_load_sd(p.add(4) as *const f64));
        hi = _mm_fmadd_pd(_mm256_castpd256_pd128(w), _mm_cvtps_pd(two), hi);
    }
    let s4 = _mm256_mul_pd(lo, _mm256_loadu_pd(wx.as_ptr()));
    let s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    let s2 = _mm_fmadd_pd(hi, _mm_loadu_pd(wx.as_ptr().add(4)), s2);
    _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2<K: Kernel>(src: &[f32], sw: usize, sh: usize, hm: &[f64; 9], y: usize, out: &mut [f32]) { row::<K>(src, sw, sh, hm, y, out) }

#[inline(always)]
fn any_row<K: Kernel>(src: &[f32], sw: usize, sh: usize, hm: &[f64; 9], y: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() { return unsafe { row_avx2::<K>(src, sw, sh, hm, y, out) }; }
    row::<K>(src, sw, sh, hm, y, out)
}

pub fn warp(src: &[f32], sw: usize, sh: usize, hm: [f64; 9], dst: Buf<f32>, dw: usize, dh: usize, kind: u32, cancel: Cancel) -> Result<(), String> {
    if kind == LANCZOS3 { lanczos_table(); }
    for_chunks(dh, cancel, |y| {
        let out = &mut dst.slice_mut()[y * dw..(y + 1) * dw];
        match kind {
            BILINEAR => any_row::<Bilinear>(src, sw, sh, &hm, y, out),
            BICUBIC => any_row::<Bicubic>(src, sw, sh, &hm, y, out),
            _ => any_row::<Lanczos>(src, sw, sh, &hm, y, out),
        }
    })
}
