//! Per-tile TBQR metrics (tbqr-reference §1.8 / §2.4.3), computed at frame level: the background model,
//! the residual, the clip levels and the star list are built once for the whole frame, and each tile reads
//! its statistics from them (tiles overlap by a quarter per axis, so per-tile models did ~1.8× the work and
//! gave a different model at every tile border).
//! - background model: box mean over 15 × 15 bins of 2×2 pixels (30 px; NaN-aware, clamped at the frame's
//!   edges) of the frame with its bright sources masked, constant over each bin; residual = frame − model
//!   (the reference's 31-px box at a quarter of the cost). (The reference's plain box blur is pulled up by
//!   ~flux/961 around every star, which doubles the noise estimate of a starry tile; two masking passes —
//!   drop pixels above median + 3σ0 of the current residual in their 64-px cell, recompute the box mean —
//!   remove that bias; their clip levels come from every 2nd row, MASK_ROW_STEP.)
//! - clip level per 64-px cell: σ0 = 1.4826·MAD of the residual (median and MAD from every 4th pixel of
//!   the cell), cut = median + 3σ0; "sky" pixels are those with residual ≤ their cell's cut; the cell's
//!   sky noise (MAD of its sampled sky residuals) sets the star threshold.
//! - per tile, from every 4th pixel of every row, the column offset cycling 0, 2, 1, 3 with the frame row
//!   (a quarter of the tile, ~2000 sky pixels on a 90-px tile: the noise to ~3 %, far inside what the
//!   weights need; every 2×2 pixel phase equally — see PHASE_COL): noise σ = 1.4826·MAD of the sky
//!   residuals, background B = median of the sky pixel values, gradient energy E = median of the Sobel
//!   |∇residual|² (interior pixels); also E/σ;
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
/// The two masking passes of the background model take their cells' clip levels from every 2nd row (and
/// every 4th column, ~512 residuals per 64-px cell): a mask level, not a measurement; the final levels,
/// whose noise sets the star threshold, use every row.
const MASK_ROW_STEP: usize = 2;
use crate::stats::median_keyed;

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
/// row-major pixel order; with `mask = Some((model, cut))` only the pixels whose residual against the
/// binned model is at most their cell's clip level.
fn bin_sums(data: &[f32], w: usize, h: usize, bw: usize, mask: Option<(&[f32], &[f64])>, sb: &mut [f32], cb: &mut [f32]) {
    let cw = w.div_ceil(CELL);
    sb.fill(0.0);
    cb.fill(0.0);
    // f32 `s + v` is the f32 rounding of the exact sum, as is f32(f64(s) + f64(v)) of the twin (a double holds
    // the sum of two floats exactly enough: the rounding to f32 is the same), so the bits agree.
    for y in 0..h {
        let row = &data[y * w..(y + 1) * w];
        let brow = (y / BIN) * bw;
        let (sbr, cbr) = (&mut sb[brow..brow + bw], &mut cb[brow..brow + bw]);
        match mask {
            None => for (bx, pair) in row.chunks(BIN).enumerate() {
                let (mut s, mut c) = (sbr[bx], cbr[bx]);
                for &v in pair { if v.is_finite() { s += v; c += 1.0; } }
                sbr[bx] = s;
                cbr[bx] = c;
            },
            Some((m, cut)) => {
                let (mrow, crow) = (&m[brow..brow + bw], &cut[(y / CELL) * cw..(y / CELL + 1) * cw]);
                for (bx, pair) in row.chunks(BIN).enumerate() {
                    let (mb, lim) = (mrow[bx] as f64, crow[bx * BIN / CELL]);
                    let (mut s, mut c) = (sbr[bx], cbr[bx]);
                    for &v in pair { if v.is_finite() && v as f64 - mb <= lim { s += v; c += 1.0; } }
                    sbr[bx] = s;
                    cbr[bx] = c;
                }
            }
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

/// Clip level (median + 3σ0) of each cell, and with `with_noise` its sky noise, from every 4th pixel of
/// every `row_step`-th row.
fn cell_levels(data: &[f32], model: &[f32], w: usize, h: usize, bw: usize, with_noise: bool, row_step: usize, v: &mut Vec<f64>, d: &mut Vec<f64>, keys: &mut Vec<u64>) -> (Vec<f64>, Vec<f64>) {
    let (cw, ch) = (w.div_ceil(CELL), h.div_ceil(CELL));
    let (mut cut, mut noise) = (vec![f64::NAN; cw * ch], vec![f64::NAN; cw * ch]);
    for cy in 0..ch { for cx in 0..cw {
        v.clear();
        for y in (cy * CELL..((cy + 1) * CELL).min(h)).step_by(row_step) {
            let mut x = cx * CELL;
            while x < ((cx + 1) * CELL).min(w) { let r = data[y * w + x] as f64 - model[(y / BIN) * bw + x / BIN] as f64; if r.is_finite() { v.push(r); } x += 4; }
        }
        if v.is_empty() { continue; }
        let med = median_keyed(v, keys);
        d.clear();
        d.extend(v.iter().map(|x| (x - med).abs()));
        let c = med + 3.0 * (MAD_TO_SIGMA * median_keyed(d, keys));
        cut[cy * cw + cx] = c;
        if !with_noise { continue; }
        d.clear();
        d.extend(v.iter().cloned().filter(|&x| x <= c));
        let ms = median_keyed(d, keys);
        for x in d.iter_mut() { *x = (*x - ms).abs(); }
        noise[cy * cw + cx] = MAD_TO_SIGMA * median_keyed(d, keys);
    } }
    (cut, noise)
}

struct Cand { peak: f64, x: usize, y: usize }

/// Scratch planes of the frame's size: row counts of finite pixels; binned sums, counts and model; the box
/// mean's row sums and counts.
pub const SCRATCH_PLANES: usize = 3;

/// The background model's bins (2×2 pixels) and box radius in bins (15 bins = 30 px, the reference's
/// 31-px box): binning first makes the three box means a quarter of the work, and a model that varies
/// over 30 px is not changed by being constant over 2.
const BIN: usize = 2;
const BOX_RB: usize = 7;

/// Values each scratch plane needs for a w×h frame: the frame's size (row counts), or three binned planes
/// if larger (tileScratchLength in contract.ts).
pub fn scratch_len(w: usize, h: usize) -> usize {
    (w * h).max(3 * w.div_ceil(BIN) * h.div_ceil(BIN))
}

pub fn frame_tile_metrics(data: &[f32], w: usize, h: usize, rects: &[i32], out: &mut [f64], scratch: [&mut [f32]; SCRATCH_PLANES], cancel: &Cancel) -> Result<(), String> {
    let [cnt, binned, rows] = scratch;
    let (bw, bh) = (w.div_ceil(BIN), h.div_ceil(BIN));
    let nb = bw * bh;
    let (sb, rest) = binned.split_at_mut(nb);
    let (cb, rest) = rest.split_at_mut(nb);
    let mb = &mut rest[..nb];
    let (hs, rest) = rows.split_at_mut(nb);
    let hc = &mut rest[..nb];
    let cw = w.div_ceil(CELL);
    let (mut v, mut d): (Vec<f64>, Vec<f64>) = (Vec::with_capacity(CELL * CELL / 4 + 1), Vec::with_capacity(CELL * CELL / 4 + 1));
    let mut keys: Vec<u64> = Vec::new();
    let (mut colsum, mut colcnt) = (Vec::new(), Vec::new());
    bin_sums(data, w, h, bw, None, sb, cb);
    // Every pixel finite (the bins' counts add up to the frame): then every tile is fully valid and the
    // per-row counts below are not needed.
    let all_finite = cb.iter().map(|&c| c as f64).sum::<f64>() == (w * h) as f64;
    box_mean(sb, cb, bw, bh, BOX_RB, hs, hc, mb, false, &mut colsum, &mut colcnt);
    for _pass in 0..2 {
        if cancel.is_set() { return Err(ABORTED.into()); }
        let (cut, _) = cell_levels(data, mb, w, h, bw, false, MASK_ROW_STEP, &mut v, &mut d, &mut keys);
        bin_sums(data, w, h, bw, Some((mb, &cut)), sb, cb);
        box_mean(sb, cb, bw, bh, BOX_RB, hs, hc, mb, true, &mut colsum, &mut colcnt);
    }
    let (cut, cnoise) = cell_levels(data, mb, w, h, bw, true, 1, &mut v, &mut d, &mut keys);
    let model: &[f32] = mb;
    if cancel.is_set() { return Err(ABORTED.into()); }
    // The residual against the binned model, computed where it is read (no plane of its own).
    let sig = |x: usize, y: usize| data[y * w + x] as f64 - model[(y / BIN) * bw + x / BIN] as f64;
    // Star candidates over the whole frame, highest peak first (row-major among equals: stable sort).
    let mut cands: Vec<Cand> = Vec::new();
    if w > 2 * STAR_R && h > 2 * STAR_R {
        for y in STAR_R..h - STAR_R {
            let crow = &cnoise[(y / CELL) * cw..];
            for x in STAR_R..w - STAR_R {
                let s = crow[x / CELL];
                let r = sig(x, y);
                if !(r > 5.0 * s) || !(s > 0.0) { continue; }
                // A 5×5 peak is above its left neighbour and not below its right one (is_peak's tie rule): a
                // cheap test first, as most pixels above 5σ are on a star's flank.
                if !(sig(x - 1, y) < r && sig(x + 1, y) <= r) || !is_peak(&sig, x, y, w, h, 2) { continue; }
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
    let nan = f64::NAN;
    let (mut sky_r, mut sky_v, mut g2) = (Vec::new(), Vec::new(), Vec::new());
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
            let mut x = x0 + (PHASE_COL[y % 4] + 4 - x0 % 4) % 4;
            while x < x0 + tw {
                let rv = sig(x, y);
                if rv.is_finite() && rv <= crow[x / CELL] { sky_r.push(rv); sky_v.push(data[y * w + x] as f64); }
                if y > y0 && y + 1 < y0 + th && x > x0 && x + 1 < x0 + tw {
                    let p = |dx: usize, dy: usize| sig(x + dx - 1, y + dy - 1);
                    let gx = (p(2, 0) + 2.0 * p(2, 1) + p(2, 2)) - (p(0, 0) + 2.0 * p(0, 1) + p(0, 2));
                    let gy = (p(0, 2) + 2.0 * p(1, 2) + p(2, 2)) - (p(0, 0) + 2.0 * p(1, 0) + p(2, 0));
                    let e = gx * gx + gy * gy;
                    if e.is_finite() { g2.push(e); }
                }
                x += 4;
            }
        }
        let ms = median_keyed(&sky_r, &mut keys);
        for x in sky_r.iter_mut() { *x = (*x - ms).abs(); }
        let sigma = MAD_TO_SIGMA * median_keyed(&sky_r, &mut keys);
        let bg = median_keyed(&sky_v, &mut keys);
        let energy = median_keyed(&g2, &mut keys);
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
        o.copy_from_slice(&[bg, sigma, energy, energy / sigma, count, median_keyed(&fw, &mut keys), median_keyed(&ro, &mut keys), median_keyed(&co, &mut keys), frac]);
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
    let [a, b, c]: [&mut [f32]; SCRATCH_PLANES] = planes.try_into().map_err(|_| "scratch planes".to_string())?;
    let r = frame_tile_metrics(data, w, h, rects, out.slice_mut(), [a, b, c], &cancel);
    drop(own);
    r
}
