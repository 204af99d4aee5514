//! Ratio Corrected Demosaicing (RCD; L. Sanz Rodríguez, 2017 — Siril's default debayer), our implementation
//! of its five steps for linear astronomical frames. Written from the method's description; the arithmetic
//! is f64, every plane is stored as f32, in the order of the TypeScript twin (src/js/rcd.ts), so both give
//! the same bits. Rows are independent within a step: each step runs its rows in parallel and writes only
//! its own plane, so the result does not depend on the thread count.
//!
//! Working space: c = (v + P) / S, so that the ratios of step 3 see positive values (a calibrated frame's
//! sky may sit at or below zero): P lifts the smallest finite value to 1e-3 of the range, S = max + P. The
//! result is mapped back (v = c·S − P).
//! 1. Vertical/horizontal direction: a zero-sum high-pass along the column, (1, −3, −1, 6, −1, −3, 1) at
//!    offsets −3…3, squared, summed over the pixel and its two neighbours along the same column (V) — the
//!    same along the row (H); dir = V / (V + H) (≥ 1e-10 each). 0 = interpolate vertically, 1 = horizontally.
//!    Refined: where the mean of the four diagonal neighbours' dir is further from ½ (more decided) than
//!    the pixel's own, that mean is taken.
//! 2. A low-pass at the red and blue photosites: c + ½·(4 edge neighbours) + ¼·(4 diagonal ones).
//! 3. Green at red/blue photosites: per cardinal direction the gradient (ε + four absolute differences
//!    reaching 4 px) and the ratio-corrected estimate c[n]·2·lpf[i] / (ε + lpf[i] + lpf[n₂]) (n₂ two px
//!    away, a same-colour site); each axis blends its two estimates weighted by the opposite gradient;
//!    G = dir·H + (1 − dir)·V, limited to [0, 1].
//! 4. Red at blue and blue at red photosites: the same direction test along the two diagonals (P, Q) and
//!    colour differences X − G of the diagonal neighbours, blended by diagonal gradients (3 differences);
//!    then red and blue at green photosites from the colour differences of the 4 edge neighbours, blended
//!    as in step 3 by the step-1 direction. Both limited to [0, 1].
//! 5. Border: the 5 px frame around the image keeps the bilinear values (the steps above need 4 px of
//!    context and the refined directions one more).
//! 6. (ours) Flux: each plane's bilinear − RCD difference is shared out over the 9×9 box around each pixel
//!    in proportion to the plane's local signal, so each colour's flux over any aperture wider than the box
//!    is the bilinear debayer's (exact) and stars keep their colours in apertures of a few pixels; RCD alone
//!    pulled undersampled stars' colours 9–19 % toward grey (see `flux_correct`).
use crate::debayer::{bilinear, debayer, PATTERNS};
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;
use crate::scratch::{plane, Plane};

const EPS: f64 = 1e-5;
const EPSSQ: f64 = 1e-10;
/// Pixels within this distance of an edge keep the bilinear values.
pub const RCD_BORDER: usize = 5;

/// One output plane shared by the row workers; each row is written by exactly one of them.
#[derive(Clone, Copy)]
struct Rows { ptr: *mut f32, w: usize }
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}
impl Rows {
    fn of(v: &mut [f32], w: usize) -> Rows { Rows { ptr: v.as_mut_ptr(), w } }
    /// Row y, for the one worker that writes it.
    #[allow(clippy::mut_from_ref)]
    fn row(&self, y: usize) -> &mut [f32] { unsafe { std::slice::from_raw_parts_mut(self.ptr.add(y * self.w), self.w) } }
    /// Value k, read while other workers write other sites of the plane (never this one).
    #[inline]
    fn get(&self, k: usize) -> f64 { unsafe { self.ptr.add(k).read() as f64 } }
    /// Write value k (the site belongs to the calling worker's row).
    #[inline]
    fn set(&self, k: usize, v: f32) { unsafe { self.ptr.add(k).write(v) } }
}

/// The refined direction: the mean of the 4 diagonal neighbours where it is more decided than the pixel's own.
#[inline]
fn refine(d: &[f32], i: usize, w: usize) -> f64 {
    let c = d[i] as f64;
    let n = 0.25 * (d[i - w - 1] as f64 + d[i - w + 1] as f64 + d[i + w - 1] as f64 + d[i + w + 1] as f64);
    if (0.5 - c).abs() < (0.5 - n).abs() { n } else { c }
}

/// max(t, 1e-10), NaN → 1e-10 (as the twin's `t > EPSSQ ? t : EPSSQ`).
#[inline]
fn floor_sq(t: f64) -> f64 { if t > EPSSQ { t } else { EPSSQ } }

#[inline]
fn limit(v: f64) -> f64 { if v < 0.0 { 0.0 } else if v > 1.0 { 1.0 } else { v } }

#[inline]
fn hpf(c: &[f32], i: usize, s: usize) -> f64 {
    let at = |k: usize| c[k] as f64;
    let h = (at(i - 3 * s) - at(i - s) - at(i + s) + at(i + 3 * s)) - 3.0 * (at(i - 2 * s) + at(i + 2 * s)) + 6.0 * at(i);
    h * h
}

/// The direction statistic along strides `sa` (vertical or P diagonal) and `sb` (horizontal or Q) at the
/// sites `at(x, y)` selects: each axis's high-pass energy (rows/columns ≥ 3 from the edges), summed over the
/// site and its two neighbours along that axis, A / (A + B) (≥ 4 from the edges; ½ elsewhere).
#[allow(clippy::too_many_arguments)]
fn direction(c: &[f32], w: usize, h: usize, sa: usize, sb: usize, at: &(dyn Fn(usize, usize) -> bool + Sync), cancel: Cancel) -> Result<Plane<f32>, String> {
    let n = w * h;
    let (mut asq, mut bsq) = (plane(n, 0f32), plane(n, 0f32));
    {
        let (ar, br) = (Rows::of(&mut asq, w), Rows::of(&mut bsq, w));
        for_chunks(h - 6, cancel, |k| {
            let y = k + 3;
            let (ao, bo) = (ar.row(y), br.row(y));
            for x in 3..w - 3 {
                if !at(x, y) { continue; }
                let i = y * w + x;
                ao[x] = hpf(c, i, sa) as f32;
                bo[x] = hpf(c, i, sb) as f32;
            }
        })?;
    }
    let mut dir = plane(n, 0.5f32);
    {
        let r = Rows::of(&mut dir, w);
        for_chunks(h - 8, cancel, |k| {
            let y = k + 4;
            let o = r.row(y);
            for x in 4..w - 4 {
                if !at(x, y) { continue; }
                let i = y * w + x;
                let a = floor_sq(asq[i - sa] as f64 + asq[i] as f64 + asq[i + sa] as f64);
                let b = floor_sq(bsq[i - sb] as f64 + bsq[i] as f64 + bsq[i + sb] as f64);
                o[x] = (a / (a + b)) as f32;
            }
        })?;
    }
    Ok(dir)
}

/// `range`: the value range the algorithm's constants are scaled to — the mosaic's own finite minimum and
/// maximum where NaN, or the whole frame's when a band of it is demosaicked (the fused path), so that a band
/// gives the whole frame's values.
pub fn rcd(src: &[f32], w: usize, h: usize, pattern: usize, off_x: usize, off_y: usize, range: (f64, f64), out: [Buf<f32>; 3], cancel: Cancel) -> Result<(), String> {
    let b = RCD_BORDER;
    let copy = |o: &[Buf<f32>; 3]| [Buf { ptr: o[0].ptr, len: o[0].len }, Buf { ptr: o[1].ptr, len: o[1].len }, Buf { ptr: o[2].ptr, len: o[2].len }];
    if w < 2 * b + 1 || h < 2 * b + 1 { return debayer(src, w, h, pattern, off_x, off_y, false, out, cancel); }
    // The bilinear values are needed on the border only: the interior's missing colours are all computed
    // below before they are read (step 3 writes green, 4.2 the opposite colour, 4.3 red and blue at green).
    bilinear(src, w, h, pattern, off_x, off_y, b, copy(&out), cancel)?;
    let pat = PATTERNS[pattern];
    let color = move |x: usize, y: usize| pat[((y + off_y) & 1) * 2 + ((x + off_x) & 1)] as usize;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    if range.0.is_finite() && range.1.is_finite() { lo = range.0; hi = range.1; } else {
        for &v in src { if v.is_finite() { let v = v as f64; if v < lo { lo = v; } if v > hi { hi = v; } } }
    }
    if !(hi > lo) { return debayer(src, w, h, pattern, off_x, off_y, false, out, cancel); }
    let p = if lo < 1e-3 * (hi - lo) { 1e-3 * (hi - lo) - lo } else { 0.0 };
    let s = hi + p;
    let n = w * h;
    let norm = |v: f32| ((v as f64 + p) / s) as f32;
    let mut c = plane(n, 0f32);
    // Working colour planes in c units: the samples at their own sites, the bilinear values on the border
    // (interior sites of the other colours are written by the steps below before anything reads them).
    let mut col: [Plane<f32>; 3] = [plane(n, 0f32), plane(n, 0f32), plane(n, 0f32)];
    {
        let (cr, r0, r1, r2) = (Rows::of(&mut c, w), Rows::of(&mut col[0], w), Rows::of(&mut col[1], w), Rows::of(&mut col[2], w));
        let planes = [r0, r1, r2];
        for_chunks(h, cancel, |y| {
            let inner = y >= b && y + b < h;
            let crow = cr.row(y);
            for x in 0..w { crow[x] = norm(src[y * w + x]); }
            for (k, pl) in planes.iter().enumerate() {
                let (o, bil) = (pl.row(y), &out[k].slice()[y * w..(y + 1) * w]);
                for x in 0..w {
                    o[x] = if color(x, y) == k { crow[x] } else if !inner || x < b || x + b >= w { norm(bil[x]) } else { 0.0 };
                }
            }
        })?;
    }
    let c = c;
    // Step 1: the vertical/horizontal direction at every site.
    let vh = direction(&c, w, h, w, 1, &|_, _| true, cancel)?;
    // Step 2: low-pass at red/blue sites (≥ 1 from the edges).
    let mut lpf = plane(n, 0f32);
    {
        let r = Rows::of(&mut lpf, w);
        for_chunks(h - 2, cancel, |k| {
            let y = k + 1;
            let o = r.row(y);
            for x in 1..w - 1 {
                if color(x, y) == 1 { continue; }
                let i = y * w + x;
                let at = |k: usize| c[k] as f64;
                o[x] = (at(i) + 0.5 * (at(i - w) + at(i + w) + at(i - 1) + at(i + 1)) + 0.25 * (at(i - w - 1) + at(i - w + 1) + at(i + w - 1) + at(i + w + 1))) as f32;
            }
        })?;
    }
    // Step 3: green at red/blue sites.
    {
        let g = Rows::of(&mut col[1], w);
        for_chunks(h - 2 * b, cancel, |k| {
            let y = k + b;
            let o = g.row(y);
            for x in b..w - b {
                if color(x, y) == 1 { continue; }
                let i = y * w + x;
                let at = |k: usize| c[k] as f64;
                let lp = |k: usize| lpf[k] as f64;
                let grad = |s: isize| -> f64 {
                    let q = |m: isize| at((i as isize + m * s) as usize);
                    EPS + (q(1) - q(-1)).abs() + (q(0) - q(2)).abs() + (q(1) - q(3)).abs() + (q(2) - q(4)).abs()
                };
                let est = |s: isize| -> f64 {
                    let (n1, n2) = ((i as isize + s) as usize, (i as isize + 2 * s) as usize);
                    at(n1) * 2.0 * lp(i) / (EPS + lp(i) + lp(n2))
                };
                let (wi, one) = (w as isize, 1isize);
                let (gn, gs, gw, ge) = (grad(-wi), grad(wi), grad(-one), grad(one));
                let (en, es, ew, ee) = (est(-wi), est(wi), est(-one), est(one));
                let v = (gs * en + gn * es) / (gn + gs);
                let hh = (ge * ew + gw * ee) / (ge + gw);
                let d = refine(&vh, i, w);
                o[x] = limit(d * hh + (1.0 - d) * v) as f32;
            }
        })?;
    }
    // Step 4.1: the diagonal (P/Q) direction at red/blue sites.
    let pq = direction(&c, w, h, w + 1, w - 1, &|x, y| color(x, y) != 1, cancel)?;
    // Step 4.2: red at blue, blue at red (the colour of the diagonal neighbours).
    {
        let [r0, g0, b0] = &mut col;
        let g: &[f32] = g0;
        let (rr, br) = (Rows::of(r0, w), Rows::of(b0, w));
        for_chunks(h - 2 * b, cancel, |k| {
            let y = k + b;
            for x in b..w - b {
                let here = color(x, y);
                if here == 1 { continue; }
                let i = y * w + x;
                // Target plane: the other of red/blue; its samples sit on the diagonals (raw values there).
                let tp = if here == 0 { br } else { rr };
                let at = |k: usize| tp.get(k);
                let gg = |k: usize| g[k] as f64;
                let diag = |s: isize| -> (f64, f64) {
                    let q = |m: isize| (i as isize + m * s) as usize;
                    let grad = EPS + (at(q(1)) - at(q(-1))).abs() + (at(q(1)) - at(q(3))).abs() + (gg(i) - gg(q(2))).abs();
                    (grad, at(q(1)) - gg(q(1)))
                };
                let (wi, one) = (w as isize, 1isize);
                let (nw, se) = (diag(-wi - one), diag(wi + one));
                let (ne, sw) = (diag(-wi + one), diag(wi - one));
                let pe = (nw.0 * se.1 + se.0 * nw.1) / (nw.0 + se.0);
                let qe = (ne.0 * sw.1 + sw.0 * ne.1) / (ne.0 + sw.0);
                let d = refine(&pq, i, w);
                // Only the row's own sites are written; the diagonal reads are raw samples, never written here.
                tp.set(i, limit(gg(i) + (1.0 - d) * pe + d * qe) as f32);
            }
        })?;
    }
    // Step 4.3: red and blue at green sites, from the (now complete) red/blue sites around them.
    {
        let [r0, g0, b0] = &mut col;
        let g: &[f32] = g0;
        let (rr, br) = (Rows::of(r0, w), Rows::of(b0, w));
        // Reads of step 4.3 touch only red/blue sites, writes only green sites: disjoint.
        for_chunks(h - 2 * b, cancel, |k| {
            let y = k + b;
            for x in b..w - b {
                if color(x, y) != 1 { continue; }
                let i = y * w + x;
                let d = refine(&vh, i, w);
                for tp in [rr, br] {
                    let at = |k: usize| tp.get(k);
                    let gg = |k: usize| g[k] as f64;
                    let card = |s: isize| -> (f64, f64) {
                        let q = |m: isize| (i as isize + m * s) as usize;
                        let grad = EPS + (gg(i) - gg(q(2))).abs() + (at(q(1)) - at(q(-1))).abs() + (at(q(1)) - at(q(3))).abs();
                        (grad, at(q(1)) - gg(q(1)))
                    };
                    let (wi, one) = (w as isize, 1isize);
                    let (nn, ss, ww, ee) = (card(-wi), card(wi), card(-one), card(one));
                    let v = (nn.0 * ss.1 + ss.0 * nn.1) / (nn.0 + ss.0);
                    let hh = (ee.0 * ww.1 + ww.0 * ee.1) / (ee.0 + ww.0);
                    tp.set(i, limit(gg(i) + d * hh + (1.0 - d) * v) as f32);
                }
            }
        })?;
    }
    // Back to the frame's units, inside the border only (the border keeps the bilinear values exactly); a
    // colour's own sites take the sample itself.
    for_chunks(h - 2 * b, cancel, |k| {
        let y = k + b;
        for (ch, o) in out.iter().enumerate() {
            let (dst, srcp) = (&mut o.slice_mut()[y * w..(y + 1) * w], &col[ch][y * w..(y + 1) * w]);
            for x in b..w - b { dst[x] = if color(x, y) == ch { src[y * w + x] } else { (srcp[x] as f64 * s - p) as f32 }; }
        }
    })?;
    flux_correct(src, w, h, pattern, off_x, off_y, s, out, cancel)
}

/// Half-size of the box over which the flux of each colour plane is restored.
pub const FLUX_BOX_R: usize = 4;

thread_local! {
    /// One row of f64 sums per worker thread (the box sums add in f64 and store f32).
    static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Row sums over the window of half-size r clamped at the row's ends, each sum in f64 from 0.0 adding the
/// values left to right (the TypeScript twin's order), stored as f32. The interior adds one shifted copy of
/// the row at a time, which vectorises; the same additions in the same order per pixel.
#[inline]
fn row_box_sum(s: &[f32], row: &mut [f32], r: usize) {
    let w = row.len();
    ACC.with(|acc| {
        let mut acc = acc.borrow_mut();
        acc.clear();
        acc.resize(w, 0.0);
        let naive = |acc: &mut [f64], x: usize| {
            let mut t = 0.0f64;
            for &v in &s[x.saturating_sub(r)..=(x + r).min(w - 1)] { t += v as f64; }
            acc[x] = t;
        };
        if w <= 2 * r {
            for x in 0..w { naive(&mut acc, x); }
        } else {
            for d in 0..=2 * r {
                for (o, &v) in acc[r..w - r].iter_mut().zip(&s[d..d + w - 2 * r]) { *o += v as f64; }
            }
            for x in (0..r).chain(w - r..w) { naive(&mut acc, x); }
        }
        for (o, &t) in row.iter_mut().zip(acc.iter()) { *o = t as f32; }
    });
}

/// Column sums over the window of half-size r clamped at the top and bottom: row y of the result, in f64
/// from 0.0 adding rows y − r … y + r of `src` top to bottom, stored as f32.
#[inline]
fn col_box_sum(src: &[f32], w: usize, h: usize, r: usize, y: usize, row: &mut [f32]) {
    ACC.with(|acc| {
        let mut acc = acc.borrow_mut();
        acc.clear();
        acc.resize(w, 0.0);
        for yy in y.saturating_sub(r)..=(y + r).min(h - 1) {
            for (o, &v) in acc.iter_mut().zip(&src[yy * w..(yy + 1) * w]) { *o += v as f64; }
        }
        for (o, &t) in row.iter_mut().zip(acc.iter()) { *o = t as f32; }
    });
}

/// Box sums over the (2r+1)² window clamped at the edges: along rows into `tmp`, then along columns into
/// `out` (see `row_box_sum`, `col_box_sum`).
#[allow(clippy::too_many_arguments)]
fn box_sum(src: &[f32], w: usize, h: usize, r: usize, tmp: &mut [f32], out: &mut [f32], cancel: Cancel) -> Result<(), String> {
    {
        let tp = Buf { ptr: tmp.as_mut_ptr(), len: tmp.len() };
        for_chunks(h, cancel, |y| row_box_sum(&src[y * w..(y + 1) * w], &mut tp.slice_mut()[y * w..(y + 1) * w], r))?;
    }
    let tr: &[f32] = tmp;
    let op = Buf { ptr: out.as_mut_ptr(), len: out.len() };
    for_chunks(h, cancel, |y| col_box_sum(tr, w, h, r, y, &mut op.slice_mut()[y * w..(y + 1) * w]))
}

/// Pixels in the clamped window of half-size r around x (along one axis of length n).
#[inline]
fn span(x: usize, r: usize, n: usize) -> f64 { ((x + r).min(n - 1) - x.saturating_sub(r) + 1) as f64 }

/// Step 6 (ours): RCD's green at red/blue sites follows a low-pass of the mixed colours, so on a star a few
/// pixels wide it takes a share of the star's red or blue, and the colour differences of step 4 hand that
/// share back: generated undersampled stars (FWHM 3.5 px) came out 9–19 % nearer grey in R/G, B/G, the green
/// flux 3 % high. The bilinear debayer keeps every plane's flux exactly (each sample is shared out with weights
/// that sum to one). So the difference D = bilinear − RCD of each plane is handed back, each pixel's D shared
/// out over the (2R+1)² box around it in proportion to a weight W: pixel i gets
/// W_i · Σ_{j ∈ box(i)} D_j / Σ_{k ∈ box(j)} W_k, which moves flux without creating or losing any (over any
/// aperture wider than the box the flux is the bilinear one) while the detail finer than the box — the
/// sharpness — stays RCD's. W is where the plane's own signal is, so that a star's missing flux is added in
/// the shape RCD gave it: e = value − mean_box(value) where positive, plus half the box mean of |e| (the
/// noise level there) and a tiny floor (1e-9 of the working scale). A uniform W (the box mean of D, as
/// before) put a 9×9 share of a star's missing colour on the sky around it: on a generated dithered OSC set
/// (FWHM 2 px) star colours in r = 5 px apertures were off by −3.0 / −1.0 % (median R/G, B/G; rms 5.1 / 4.1),
/// now −0.7 / +0.5 % (rms 1.3 / 1.2), and a 5×5 uniform box, better for colour, added 3 % sky noise in R and
/// B. W from the bilinear luminance (wider than RCD's stars) was as good for colour but changed each frame's
/// star widths with the Bayer phase under them, which TBQR's `weighting: auto` read as seeing (a spread of
/// 7.4 % on the Seestar M 94 frames, above its 6.2 % threshold: noise ×1.012). Arithmetic and sums in f64
/// in a fixed order, the working planes stored as f32 (half the memory traffic of f64 planes),
/// boxes clamped at the edges; the result at a pixel depends on RCD values up to 4·R px away (core
/// `DEBAYER_MARGIN` covers it), and non-finite differences are not shared out.
#[allow(clippy::too_many_arguments)]
fn flux_correct(src: &[f32], w: usize, h: usize, pattern: usize, off_x: usize, off_y: usize, scale: f64, out: [Buf<f32>; 3], cancel: Cancel) -> Result<(), String> {
    let n = w * h;
    let r = FLUX_BOX_R;
    let mut bl: [Plane<f32>; 3] = [plane(n, 0f32), plane(n, 0f32), plane(n, 0f32)];
    {
        let [a, bb, c] = &mut bl;
        debayer(src, w, h, pattern, off_x, off_y, false, [Buf { ptr: a.as_mut_ptr(), len: n }, Buf { ptr: bb.as_mut_ptr(), len: n }, Buf { ptr: c.as_mut_ptr(), len: n }], cancel)?;
    }
    let (mut wt, mut a, mut b, mut tmp) = (plane(n, 0f32), plane(n, 0f32), plane(n, 0f32), plane(n, 0f32));
    let floor = 1e-9 * scale;
    for (k, o) in out.iter().enumerate() {
        let (cur, bil) = (o.slice(), &bl[k]);
        // The plane (into wt), e = value − mean_box (into wt), the box sums of |e| (into b).
        {
            let lp = Buf { ptr: wt.as_mut_ptr(), len: n };
            for_chunks(h, cancel, |y| {
                let row = &mut lp.slice_mut()[y * w..(y + 1) * w];
                for x in 0..w {
                    let v = cur[y * w + x];
                    row[x] = if v.is_finite() { v } else { 0.0 };
                }
            })?;
        }
        box_sum(&wt, w, h, r, &mut tmp, &mut b, cancel)?;
        {
            let (ep, ap) = (Buf { ptr: wt.as_mut_ptr(), len: n }, Buf { ptr: a.as_mut_ptr(), len: n });
            let ab: &[f32] = &b;
            for_chunks(h, cancel, |y| {
                let (row, arow) = (&mut ep.slice_mut()[y * w..(y + 1) * w], &mut ap.slice_mut()[y * w..(y + 1) * w]);
                let cr = span(y, r, h);
                for x in 0..w {
                    let e = row[x] as f64 - ab[y * w + x] as f64 / (cr * span(x, r, w));
                    row[x] = e as f32;
                    arow[x] = e.abs() as f32;
                }
            })?;
        }
        box_sum(&a, w, h, r, &mut tmp, &mut b, cancel)?;
        // W = max(e, 0) + ½·mean_box|e| + 1e-9·scale (into wt); then its box sums (into b).
        {
            let wp = Buf { ptr: wt.as_mut_ptr(), len: n };
            let m: &[f32] = &b;
            for_chunks(h, cancel, |y| {
                let row = &mut wp.slice_mut()[y * w..(y + 1) * w];
                let cr = span(y, r, h);
                for x in 0..w {
                    let e = row[x] as f64;
                    row[x] = ((if e > 0.0 { e } else { 0.0 }) + 0.5 * m[y * w + x] as f64 / (cr * span(x, r, w)) + floor) as f32;
                }
            })?;
        }
        box_sum(&wt, w, h, r, &mut tmp, &mut b, cancel)?;
        // Q = D / Σ_box W (into a), its box sums (into b), then each pixel + W · Σ_box Q.
        {
            let qp = Buf { ptr: a.as_mut_ptr(), len: n };
            let sw: &[f32] = &b;
            for_chunks(h, cancel, |y| {
                let row = &mut qp.slice_mut()[y * w..(y + 1) * w];
                for x in 0..w {
                    let i = y * w + x;
                    let d = bil[i] as f64 - cur[i] as f64;
                    row[x] = if d.is_finite() { (d / sw[i] as f64) as f32 } else { 0.0 };
                }
            })?;
        }
        box_sum(&a, w, h, r, &mut tmp, &mut b, cancel)?;
        let (bq, wr): (&[f32], &[f32]) = (&b, &wt);
        let dst = Buf { ptr: o.ptr, len: o.len };
        for_chunks(h, cancel, |y| {
            let row = &mut dst.slice_mut()[y * w..(y + 1) * w];
            for x in 0..w { row[x] = (row[x] as f64 + wr[y * w + x] as f64 * bq[y * w + x] as f64) as f32; }
        })?;
    }
    Ok(())
}
