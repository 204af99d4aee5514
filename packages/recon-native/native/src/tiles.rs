//! Per-tile TBQR metrics (tbqr-reference §1.8 / §2.4.3), computed at frame level: the background model,
//! the residual, the clip levels and the star list are built once for the whole frame, and each tile reads
//! its statistics from them (tiles overlap by a quarter per axis, so per-tile models did ~1.8× the work and
//! gave a different model at every tile border).
//! - background model: box mean over 15 × 15 bins of 2×2 pixels (30 px; NaN-aware, clamped at the frame's
//!   edges) of the frame with its bright sources masked, constant over each bin; residual = frame − model
//!   (the reference's 31-px box at a quarter of the cost), computed once into a scratch plane (f32). (The
//!   reference's plain box blur is pulled up by ~flux/961 around every star, which doubles the noise
//!   estimate of a starry tile; two masking passes remove that bias: a bin whose mean lies above its 32-bin
//!   cell's clip level — median + 3σ0 of the bins' residuals, every 2nd bin row — leaves the box mean.)
//! - clip level per 64-px cell: σ0 = 1.4826·MAD of the residual (median and MAD from every 4th pixel of
//!   every row of the cell, the column offset cycling with the row as for the tiles), cut = median + 3σ0; "sky" pixels are those with residual ≤ their cell's
//!   cut; the cell's sky noise (MAD of its sampled sky residuals) sets the star threshold.
//! - per tile, from every 4th pixel of every row, the column offset cycling 0, 2, 1, 3 with the frame row
//!   (a quarter of the tile, ~2000 sky pixels on a 90-px tile: the noise to ~3 %, far inside what the
//!   weights need; every 2×2 pixel phase equally — see PHASE_COL): noise σ = 1.4826·MAD of the sky
//!   residuals, background B = median of the sky pixel values, gradient energy E = median of the Sobel
//!   |∇residual|² (interior pixels; computed once per sample for the whole frame, stored as f32); also E/σ;
//! - stars: residual peaks > 5σ_cell with ≥ 4 pixels of their 3×3 above 3σ_cell (pure noise gives ~0.005
//!   false stars per 128² area; a 3σ peak cut would give ~20), 5×5 maxima; a tile takes those at least
//!   5 px inside it, the 50 highest, measured in an 11×11 box (see stars.rs; to TILE_SHAPE_TOL); kept when 0.2 < FWHM per
//!   axis < 50 px; per tile: count and the medians of FWHM, roundness and contrast (= peak residual / B).
//!
//! Arithmetic is f64, stored as f32 where the scratch planes hold it, in the order of the TypeScript twin
//! (src/js/tiles.ts), so both backends give the same bits.
use crate::js::{Buf, Cancel, ABORTED};
use crate::stars::{is_peak, measure};

/// The tile stars' shapes converge to 1e-3 (px, and relative moments): 0.05 % in FWHM, far inside what the
/// weights resolve, at a third of the iterations of 1e-5 (pass A on 1024² frames with ~400 stars: 10 → 3.5 ms).
const TILE_SHAPE_TOL: f64 = 1e-3;
use crate::stats::{median_keyed, median_keyed32};

/// Column offset (mod 4, in frame coordinates) of the tile samples in frame row y: over any four rows every
/// 2×2 pixel phase is sampled equally. A debayered colour frame's noise differs between the phases of its
/// Bayer pattern (interpolated pixels are smoother), and registration moves the pattern by a different
/// sub-pixel shift in every frame: the former grid of even rows and columns measured each frame's noise
/// on whichever phase its shift put there, and the inverse-variance weights chased it (generated OSC frames
/// through a mosaic, debayered and warped: stack noise ×1.095 for a predicted ×1.05).
const PHASE_COL: [usize; 4] = [0, 2, 1, 3];

pub const TILE_FIELDS: usize = 9; // background, noise, energy, energy/noise, stars, fwhm, roundness, contrast, valid fraction
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;
const STAR_R: usize = 5;
const MAX_TILE_STARS: usize = 50;
/// Side of the cells that hold the clip levels and the star threshold.
pub const CELL: usize = 64;

/// Sum and count of the finite pixels of each 2×2 block (bins of a bw-wide grid), accumulated in f32 in
/// row-major pixel order.
fn bin_sums(data: &[f32], w: usize, h: usize, bw: usize, sb: &mut [f32], cb: &mut [f32]) {
    sb.fill(0.0);
    cb.fill(0.0);
    // f32 `s + v` is the f32 rounding of the exact sum, as is f32(f64(s) + f64(v)) of the twin (a double holds
    // the sum of two floats exactly enough: the rounding to f32 is the same), so the bits agree.
    for y in 0..h {
        let row = &data[y * w..(y + 1) * w];
        let brow = (y / BIN) * bw;
        let (sbr, cbr) = (&mut sb[brow..brow + bw], &mut cb[brow..brow + bw]);
        for (bx, pair) in row.chunks(BIN).enumerate() {
            let (mut s, mut c) = (sbr[bx], cbr[bx]);
            for &v in pair { if v.is_finite() { s += v; c += 1.0; } }
            sbr[bx] = s;
            cbr[bx] = c;
        }
    }
}

/// Box mean of radius r (in bins) of the binned sums `sb` / counts `cb` (bw × bh), i.e. the mean of the
/// finite (unmasked) pixels in a (2r+1)-bin square, written into `out` where that square holds any — NaN
/// elsewhere (`keep_old = false`) or the old value (`keep_old = true`). Separable running sums in f64;
/// the row pass stores its sums and counts as f32 in `hs`, `hc`. The vertical pass runs row by row over
/// all columns at once; each column sees the same additions in the same order as the column-by-column
/// loop of the TypeScript twin, so results are identical.
#[allow(clippy::too_many_arguments)]
fn box_mean(sb: &[f32], cb: &[f32], w: usize, h: usize, r: usize, hs: &mut [f32], hc: &mut [f32], out: &mut [f32], keep_old: bool, colsum: &mut Vec<f64>, colcnt: &mut Vec<f64>) {
    for y in 0..h {
        let (rs, rc) = (&sb[y * w..(y + 1) * w], &cb[y * w..(y + 1) * w]);
        let (hsr, hcr) = (&mut hs[y * w..(y + 1) * w], &mut hc[y * w..(y + 1) * w]);
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for x in 0..r.min(w) { s += rs[x] as f64; c += rc[x] as f64; }
        for x in 0..w {
            if x + r < w { s += rs[x + r] as f64; c += rc[x + r] as f64; }
            if x > r { s -= rs[x - r - 1] as f64; c -= rc[x - r - 1] as f64; }
            hsr[x] = s as f32;
            hcr[x] = c as f32;
        }
    }
    colsum.clear(); colsum.resize(w, 0.0);
    colcnt.clear(); colcnt.resize(w, 0.0);
    let (s, c) = (&mut colsum[..], &mut colcnt[..]);
    for y in 0..r.min(h) { for x in 0..w { s[x] += hs[y * w + x] as f64; c[x] += hc[y * w + x] as f64; } }
    for y in 0..h {
        if y + r < h { let o = (y + r) * w; for x in 0..w { s[x] += hs[o + x] as f64; c[x] += hc[o + x] as f64; } }
        if y > r { let o = (y - r - 1) * w; for x in 0..w { s[x] -= hs[o + x] as f64; c[x] -= hc[o + x] as f64; } }
        let o = &mut out[y * w..(y + 1) * w];
        if keep_old { for x in 0..w { if c[x] > 0.0 { o[x] = (s[x] / c[x]) as f32; } } }
        else { for x in 0..w { o[x] = if c[x] > 0.0 { (s[x] / c[x]) as f32 } else { f32::NAN }; } }
    }
}

/// Selection scratch for both widths (see `Sample`).
#[derive(Default)]
struct Keys { k64: Vec<u64>, k32: Vec<u32> }

/// A grid value: f64, or f32 where the values are single-precision numbers (the residual plane), whose
/// medians select on 32-bit keys — the same values, half the memory traffic.
trait Sample: Copy {
    fn wide(self) -> f64;
    fn median(v: &[Self], k: &mut Keys) -> f64;
}
impl Sample for f64 {
    fn wide(self) -> f64 { self }
    fn median(v: &[f64], k: &mut Keys) -> f64 { median_keyed(v, &mut k.k64) }
}
impl Sample for f32 {
    fn wide(self) -> f64 { self as f64 }
    fn median(v: &[f32], k: &mut Keys) -> f64 { median_keyed32(v, &mut k.k32) }
}

/// Clip level (median + 3σ0) of each cell, and with `with_noise` its sky noise, from the values `val(x, y)`
/// of a (gw × gh)-point grid whose cells are `side` points wide, taking every `col_step`-th point of every
/// `row_step`-th row (the grid is the frame's pixels with side CELL, or its 2×2 bins with side CELL / 2).
#[allow(clippy::too_many_arguments)]
fn cell_levels<T: Sample>(val: &dyn Fn(usize, usize) -> T, gw: usize, gh: usize, side: usize, col_step: usize, row_step: usize, phased: bool, with_noise: bool, v: &mut Vec<T>, d: &mut Vec<f64>, keys: &mut Keys) -> (Vec<f64>, Vec<f64>) {
    let (cw, ch) = (gw.div_ceil(side), gh.div_ceil(side));
    let (mut cut, mut noise) = (vec![f64::NAN; cw * ch], vec![f64::NAN; cw * ch]);
    for cy in 0..ch { for cx in 0..cw {
        v.clear();
        for y in (cy * side..((cy + 1) * side).min(gh)).step_by(row_step) {
            // `phased`: the column offset cycles with the row (PHASE_COL), so every 2×2 pixel phase is sampled alike.
            let mut x = cx * side + if phased { (PHASE_COL[y % 4] + 4 - (cx * side) % 4) % 4 } else { 0 };
            while x < ((cx + 1) * side).min(gw) { let r = val(x, y); if r.wide().is_finite() { v.push(r); } x += col_step; }
        }
        if v.is_empty() { continue; }
        let med = T::median(v, keys);
        d.clear();
        d.extend(v.iter().map(|x| (x.wide() - med).abs()));
        let c = med + 3.0 * (MAD_TO_SIGMA * median_keyed(d, &mut keys.k64));
        cut[cy * cw + cx] = c;
        if !with_noise { continue; }
        // The sky values (≤ the cut) to the front of `v`, in order, and their median and MAD.
        let mut k = 0;
        for i in 0..v.len() { if v[i].wide() <= c { v[k] = v[i]; k += 1; } }
        let ms = T::median(&v[..k], keys);
        d.clear();
        d.extend(v[..k].iter().map(|x| (x.wide() - ms).abs()));
        noise[cy * cw + cx] = MAD_TO_SIGMA * median_keyed(d, &mut keys.k64);
    } }
    (cut, noise)
}

struct Cand { peak: f64, x: usize, y: usize }

/// Scratch planes: (0) row counts of finite pixels, and before them the masked bin sums and counts;
/// (1) bin sums, counts and the model; (2) the box mean's row sums and counts, then the Sobel energies of
/// the tile samples; (3) the residual.
pub const SCRATCH_PLANES: usize = 4;

/// The background model's bins (2×2 pixels) and box radius in bins (15 bins = 30 px, the reference's
/// 31-px box): binning first makes the three box means a quarter of the work, and a model that varies
/// over 30 px is not changed by being constant over 2.
const BIN: usize = 2;
const BOX_RB: usize = 7;

/// Values each scratch plane needs for a w×h frame: the frame's size, or three binned planes if larger
/// (tileScratchLength in contract.ts).
pub fn scratch_len(w: usize, h: usize) -> usize {
    (w * h).max(3 * w.div_ceil(BIN) * h.div_ceil(BIN))
}

/// Tile samples per row in the Sobel-energy plane: ⌈w / 4⌉ (sample j of row y sits at x = PHASE_COL[y % 4] + 4j).
fn sample_stride(w: usize) -> usize { w.div_ceil(4) }

pub fn frame_tile_metrics(data: &[f32], w: usize, h: usize, rects: &[i32], out: &mut [f64], scratch: [&mut [f32]; SCRATCH_PLANES], cancel: &Cancel) -> Result<(), String> {
    let [cnt, binned, rows, resid] = scratch;
    let (bw, bh) = (w.div_ceil(BIN), h.div_ceil(BIN));
    let nb = bw * bh;
    let (sb, rest) = binned.split_at_mut(nb);
    let (cb, rest) = rest.split_at_mut(nb);
    let mb = &mut rest[..nb];
    let (hs, rest) = rows.split_at_mut(nb);
    let hc = &mut rest[..nb];
    let cw = w.div_ceil(CELL);
    let (mut v, mut d): (Vec<f64>, Vec<f64>) = (Vec::with_capacity(CELL * CELL / 4 + 1), Vec::with_capacity(CELL * CELL / 4 + 1));
    let mut v32: Vec<f32> = Vec::with_capacity(CELL * CELL / 4 + 1);
    let mut keys = Keys::default();
    let (mut colsum, mut colcnt) = (Vec::new(), Vec::new());
    bin_sums(data, w, h, bw, sb, cb);
    // Every pixel finite (the bins' counts add up to the frame): then every tile is fully valid and the
    // per-row counts below are not needed.
    let all_finite = cb.iter().map(|&c| c as f64).sum::<f64>() == (w * h) as f64;
    box_mean(sb, cb, bw, bh, BOX_RB, hs, hc, mb, false, &mut colsum, &mut colcnt);
    // Two masking passes on the bins: a bin whose mean lies above its cell's clip level (median + 3σ0 of
    // the bins' residuals, from every 2nd bin row) leaves the box mean. At the bins' own noise (half the
    // pixels') this masks a star's wings at least as far out as the former per-pixel masks did, at a
    // quarter of the work (pass A, 1024²: model 18 → ~5 ms).
    {
        let (msb, rest) = cnt.split_at_mut(nb);
        let mcb = &mut rest[..nb];
        for _pass in 0..2 {
            if cancel.is_set() { return Err(ABORTED.into()); }
            let model: &[f32] = mb;
            let (sbr, cbr): (&[f32], &[f32]) = (sb, cb);
            let bres = |x: usize, y: usize| { let b = y * bw + x; sbr[b] as f64 / cbr[b] as f64 - model[b] as f64 };
            let (cut, _) = cell_levels::<f64>(&bres, bw, bh, CELL / BIN, 1, 2, false, false, &mut v, &mut d, &mut keys);
            let bcw = bw.div_ceil(CELL / BIN);
            for by in 0..bh {
                let crow = &cut[(by * BIN / CELL) * bcw..];
                for bx in 0..bw {
                    let b = by * bw + bx;
                    let keep = cbr[b] > 0.0 && bres(bx, by) <= crow[bx * BIN / CELL];
                    (msb[b], mcb[b]) = if keep { (sbr[b], cbr[b]) } else { (0.0, 0.0) };
                }
            }
            box_mean(msb, mcb, bw, bh, BOX_RB, hs, hc, mb, true, &mut colsum, &mut colcnt);
        }
    }
    let model: &[f32] = mb;
    // The residual against the binned model, once (f64 difference rounded to f32): every later step reads it.
    for y in 0..h {
        let (drow, rrow, mrow) = (&data[y * w..(y + 1) * w], &mut resid[y * w..(y + 1) * w], &model[(y / BIN) * bw..(y / BIN + 1) * bw]);
        for ((dp, rp), &m) in drow.chunks(BIN).zip(rrow.chunks_mut(BIN)).zip(mrow) {
            let m = m as f64;
            for (r, &d) in rp.iter_mut().zip(dp) { *r = (d as f64 - m) as f32; }
        }
    }
    let resid: &[f32] = resid;
    let sig = |x: usize, y: usize| resid[y * w + x] as f64;
    // Final levels per 64-px cell from every 4th pixel of every row, all four 2×2 phases alike (PHASE_COL;
    // ~1024 residuals): the clip level that separates sky from sources, and the sky noise that sets the star
    // threshold. (From every 2nd row only one Bayer phase of a debayered frame was sampled, and which one
    // depended on the frame's registration shift: the sky cut, and with it the tile noise, followed it —
    // M 94 under `auto`: noise ×1.014–1.026 instead of ≤ 1.01.)
    let (cut, cnoise) = cell_levels::<f32>(&|x, y| resid[y * w + x], w, h, CELL, 4, 1, true, true, &mut v32, &mut d, &mut keys);
    if cancel.is_set() { return Err(ABORTED.into()); }
    // Star candidates over the whole frame, highest peak first (row-major among equals: stable sort).
    let mut cands: Vec<Cand> = Vec::new();
    if w > 2 * STAR_R && h > 2 * STAR_R {
        for y in STAR_R..h - STAR_R {
            let crow = &cnoise[(y / CELL) * cw..];
            let rrow = &resid[y * w..(y + 1) * w];
            for x in STAR_R..w - STAR_R {
                let s = crow[x / CELL];
                let r = rrow[x] as f64;
                if !(r > 5.0 * s) || !(s > 0.0) { continue; }
                // A 5×5 peak is above its left neighbour and not below its right one (is_peak's tie rule): a
                // cheap test first, as most pixels above 5σ are on a star's flank.
                if !((rrow[x - 1] as f64) < r && rrow[x + 1] as f64 <= r) || !is_peak(&sig, x, y, w, h, 2) { continue; }
                let mut above = 0;
                for yy in y - 1..y + 2 { for xx in x - 1..x + 2 { if sig(xx, yy) > 3.0 * s { above += 1; } } }
                if above >= 4 { cands.push(Cand { peak: r, x, y }); }
            }
        }
    }
    cands.sort_by(|a, b| b.peak.total_cmp(&a.peak));
    // Measured once, when a tile first asks: (fwhm, roundness), None when rejected.
    let mut shapes: Vec<Option<Option<(f64, f64)>>> = vec![None; cands.len()];
    // Finite pixels up to and including x in each row (exact in f32 below 2²⁴), for each tile's valid fraction.
    if !all_finite { for y in 0..h { let mut k = 0u32; for x in 0..w { if data[y * w + x].is_finite() { k += 1; } cnt[y * w + x] = k as f32; } } }
    // Sobel |∇residual|² at every tile sample (frame-global positions: a sample shared by overlapping tiles
    // is computed once; NaN on the frame's border rows and columns, which no tile's interior holds).
    let sw = sample_stride(w);
    let energy_at = &mut rows[..sw * h];
    for y in 0..h {
        let p = PHASE_COL[y % 4];
        let er = &mut energy_at[y * sw..(y + 1) * sw];
        er.fill(f32::NAN);
        if y == 0 || y + 1 >= h { continue; }
        let (a, b, c) = (&resid[(y - 1) * w..y * w], &resid[y * w..(y + 1) * w], &resid[(y + 1) * w..(y + 2) * w]);
        let mut x = p;
        let mut j = 0;
        while x < w {
            if x >= 1 && x + 1 < w {
                let q = |r: &[f32], i: usize| r[i] as f64;
                let gx = (q(a, x + 1) + 2.0 * q(b, x + 1) + q(c, x + 1)) - (q(a, x - 1) + 2.0 * q(b, x - 1) + q(c, x - 1));
                let gy = (q(c, x - 1) + 2.0 * q(c, x) + q(c, x + 1)) - (q(a, x - 1) + 2.0 * q(a, x) + q(a, x + 1));
                er[j] = (gx * gx + gy * gy) as f32;
            }
            x += 4;
            j += 1;
        }
    }
    let energy_at: &[f32] = energy_at;
    let nan = f64::NAN;
    let (mut sky_r, mut sky_v, mut g2): (Vec<f32>, Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new(), Vec::new());
    let mut dev: Vec<f64> = Vec::new();
    for (k, r) in rects.chunks_exact(4).enumerate() {
        if k % 16 == 0 && cancel.is_set() { return Err(ABORTED.into()); }
        let (x0, y0, tw, th) = (r[0] as usize, r[1] as usize, r[2] as usize, r[3] as usize);
        let mut valid = 0usize;
        if all_finite { valid = tw * th; }
        else { for y in y0..y0 + th { valid += (cnt[y * w + x0 + tw - 1] - if x0 > 0 { cnt[y * w + x0 - 1] } else { 0.0 }) as usize; } }
        let frac = valid as f64 / (tw * th) as f64;
        let o = &mut out[k * TILE_FIELDS..(k + 1) * TILE_FIELDS];
        if valid < 3 { o.copy_from_slice(&[nan, nan, nan, nan, 0.0, nan, nan, nan, frac]); continue; }
        sky_r.clear(); sky_v.clear(); g2.clear();
        for y in y0..y0 + th {
            let crow = &cut[(y / CELL) * cw..];
            let p = PHASE_COL[y % 4];
            let mut x = x0 + (p + 4 - x0 % 4) % 4;
            let mut j = (x - p) / 4;
            let inner_y = y > y0 && y + 1 < y0 + th;
            while x < x0 + tw {
                let rv = sig(x, y);
                if rv.is_finite() && rv <= crow[x / CELL] { sky_r.push(resid[y * w + x]); sky_v.push(data[y * w + x]); }
                if inner_y && x > x0 && x + 1 < x0 + tw {
                    let e = energy_at[y * sw + j];
                    if e.is_finite() { g2.push(e); }
                }
                x += 4;
                j += 1;
            }
        }
        let ms = median_keyed32(&sky_r, &mut keys.k32);
        dev.clear();
        dev.extend(sky_r.iter().map(|&x| (x as f64 - ms).abs()));
        let sigma = MAD_TO_SIGMA * median_keyed(&dev, &mut keys.k64);
        let bg = median_keyed32(&sky_v, &mut keys.k32);
        let energy = median_keyed32(&g2, &mut keys.k32);
        let (mut fw, mut ro, mut co) = (Vec::new(), Vec::new(), Vec::new());
        let mut taken = 0;
        for (ci, c) in cands.iter().enumerate() {
            if taken == MAX_TILE_STARS { break; }
            if c.x < x0 + STAR_R || c.x + STAR_R >= x0 + tw || c.y < y0 + STAR_R || c.y + STAR_R >= y0 + th { continue; }
            taken += 1;
            let shape = *shapes[ci].get_or_insert_with(|| {
                let m = measure(&sig, c.x - STAR_R, c.y - STAR_R, c.x + STAR_R + 1, c.y + STAR_R + 1, TILE_SHAPE_TOL)?;
                if !(m.fwhm_minor > 0.2 && m.fwhm_major < 50.0) { return None; }
                Some(((m.fwhm_major * m.fwhm_minor).sqrt(), m.fwhm_minor / m.fwhm_major))
            });
            let Some((f, rd)) = shape else { continue };
            fw.push(f);
            ro.push(rd);
            if bg > 0.0 { co.push(c.peak / bg); }
        }
        let count = fw.len() as f64;
        o.copy_from_slice(&[bg, sigma, energy, energy / sigma, count, median_keyed(&fw, &mut keys.k64), median_keyed(&ro, &mut keys.k64), median_keyed(&co, &mut keys.k64), frac]);
    }
    Ok(())
}

/// rects: [x0, y0, w, h] per tile (validated by the caller); out: TILE_FIELDS per tile; scratch: the
/// caller's planes (reused across frames, checked against `scratch_len`) or None (allocated here).
pub fn run(data: &[f32], w: usize, h: usize, rects: &[i32], out: Buf<f64>, scratch: Option<Vec<Buf<f32>>>, cancel: Cancel) -> Result<(), String> {
    let len = scratch_len(w, h);
    let mut own: Vec<Vec<f32>> = Vec::new();
    let planes: Vec<&mut [f32]> = match scratch {
        Some(list) => list.into_iter().map(|b| b.slice_mut()).collect(),
        None => { own = (0..SCRATCH_PLANES).map(|_| vec![0.0f32; len]).collect(); own.iter_mut().map(|v| &mut v[..]).collect() }
    };
    let [a, b, c, e]: [&mut [f32]; SCRATCH_PLANES] = planes.try_into().map_err(|_| "scratch planes".to_string())?;
    let r = frame_tile_metrics(data, w, h, rects, out.slice_mut(), [a, b, c, e], &cancel);
    drop(own);
    r
}
