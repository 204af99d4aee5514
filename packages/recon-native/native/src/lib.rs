//! tile-compile recon: the Node-API entry point. Every binding validates its arguments on the JS thread
//! (throwing TypeError/RangeError with code TC_INPUT_INVALID, never crashing the process), then either
//! runs inline (decode, sum: well under a millisecond per call) or as async work on the libuv pool that
//! resolves a promise and polls the caller's cancel flag. The TypeScript wrapper (src/native.ts) is the
//! only caller and documents the JS-facing contract; outputs are always caller-allocated typed arrays.
mod background;
mod tbqr_band;
mod combine;
mod debayer;
mod decode;
mod ffi;
mod js;
mod ola;
mod par;
mod simd;
mod stars;
mod stats;
mod tiles;
mod rcd;
mod scratch;
mod photometry;
mod warp;
mod drizzle;

use ffi::*;
use js::{async_call, range, sync_call, Args, Buf, JsError, R};
use std::ptr::null_mut;

fn need(cond: bool, msg: impl FnOnce() -> String) -> R<()> { if cond { Ok(()) } else { range(msg()) } }
fn dims(w: usize, h: usize) -> R<usize> {
    need(w > 0 && h > 0, || format!("image dimensions must be positive, got {w}×{h}"))?;
    w.checked_mul(h).ok_or_else(|| JsError::Range("image too large".into()))
}
fn plane(args: &Args, i: usize, name: &str, w: usize, h: usize) -> R<Buf<f32>> {
    let n = dims(w, h)?;
    let b = args.f32s(i, name)?;
    need(b.len == n, || format!("{name} has {} values, expected {w}×{h} = {n}", b.len))?;
    Ok(b)
}

unsafe extern "C" fn decode(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 8);
    sync_call(env, || {
        let src = a.u8s(0, "bytes")?;
        let bitpix = a.f64(1, "bitpix")? as i32;
        let count = a.usize(2, "count")?;
        let (bzero, bscale) = (a.f64(3, "bzero")?, a.f64(4, "bscale")?);
        let blank = a.f64(5, "blank")?;
        let out = a.f32s(6, "out")?;
        let off = a.usize(7, "outOffset")?;
        need([8, 16, 32, 64, -32, -64].contains(&bitpix), || format!("BITPIX {bitpix} is not one of 8, 16, 32, 64, -32, -64"))?;
        let bpp = (bitpix.unsigned_abs() / 8) as usize;
        need(src.len >= count * bpp, || format!("bytes holds {} bytes, {count} pixels of BITPIX {bitpix} need {}", src.len, count * bpp))?;
        need(off + count <= out.len, || format!("out holds {} values, {count} from offset {off} do not fit", out.len))?;
        let blank = if blank.is_finite() { Some(blank as i64) } else { None };
        decode::decode(&src.slice()[..count * bpp], bitpix, bzero, bscale, blank, &mut out.slice_mut()[off..off + count]);
        Ok(count as f64)
    })
}

unsafe extern "C" fn sum_f32(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 1);
    sync_call(env, || Ok(simd::sum_f32(a.f32s(0, "values")?.slice())))
}

unsafe extern "C" fn set_threads(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 1);
    sync_call(env, || { let n = a.usize(0, "threads")?; par::set_threads(n); Ok(par::threads() as f64) })
}

unsafe extern "C" fn get_threads(env: napi_env, _info: napi_callback_info) -> napi_value { js::number(env, par::threads() as f64) }

/// 2 = AVX2, 1 = NEON, 0 = scalar.
unsafe extern "C" fn simd_level(env: napi_env, _info: napi_callback_info) -> napi_value {
    js::number(env, match simd::level() { "avx2" => 2.0, "neon" => 1.0, _ => 0.0 })
}

// percentiles(values, ps: Float64Array, out: Float64Array, cancel)
unsafe extern "C" fn percentiles(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 4);
    async_call(env, &a, 3, || {
        let v = a.f32s(0, "values")?;
        let ps = a.f64s(1, "percentiles")?;
        let out = a.f64s(2, "out")?;
        need(out.len >= ps.len, || "out is shorter than the percentile list".into())?;
        Ok(Box::new(move |_c| {
            let mut vals: Vec<f64> = v.slice().iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
            for (k, p) in ps.slice().iter().enumerate() { out.slice_mut()[k] = stats::percentile(&mut vals, *p); }
            Ok(vals.len() as f64)
        }))
    })
}

// robustStats(values, low, high, iterations, out: Float64Array(6), cancel)
unsafe extern "C" fn robust_stats(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 6);
    async_call(env, &a, 5, || {
        let v = a.f32s(0, "values")?;
        let (low, high, it) = (a.f64(1, "sigmaLow")?, a.f64(2, "sigmaHigh")?, a.usize(3, "iterations")?);
        let out = a.f64s(4, "out")?;
        need(out.len >= 6, || "out must hold 6 values".into())?;
        Ok(Box::new(move |_c| { out.slice_mut()[..6].copy_from_slice(&stats::robust_stats(v.slice(), low, high, it)); Ok(0.0) }))
    })
}

// backgroundMap(data, w, h, mesh, k, iterations, bgOut, noiseOut, cancel)
unsafe extern "C" fn background_map(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 9);
    async_call(env, &a, 8, || {
        let (w, h) = (a.usize(1, "width")?, a.usize(2, "height")?);
        let data = plane(&a, 0, "data", w, h)?;
        let (m, k, it) = (a.usize(3, "meshSize")?, a.f64(4, "clipSigma")?, a.usize(5, "iterations")?);
        need(m > 0, || "meshSize must be positive".into())?;
        let bg = plane(&a, 6, "background", w, h)?;
        let noise = plane(&a, 7, "noise", w, h)?;
        Ok(Box::new(move |c| {
            let mesh = background::mesh(data.slice(), w, h, m, k, it, c)?;
            background::interpolate(&mesh.bg, mesh.gx, mesh.gy, m, w, h, bg.slice_mut(), c)?;
            background::interpolate(&mesh.noise, mesh.gx, mesh.gy, m, w, h, noise.slice_mut(), c)?;
            Ok((mesh.gx * mesh.gy) as f64)
        }))
    })
}

// detectStars(data, w, h, bg, noise, k, minArea, maxStars, radius, out, cancel) → stars found
unsafe extern "C" fn detect_stars(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 11);
    async_call(env, &a, 10, || {
        let (w, h) = (a.usize(1, "width")?, a.usize(2, "height")?);
        let data = plane(&a, 0, "data", w, h)?;
        let bg = plane(&a, 3, "background", w, h)?;
        let noise = plane(&a, 4, "noise", w, h)?;
        let p = stars::Params { k: a.f64(5, "threshold")?, min_area: a.usize(6, "minArea")?, max_stars: a.usize(7, "maxStars")?, radius: a.usize(8, "radius")? };
        let out = a.f64s(9, "out")?;
        need(out.len >= p.max_stars * stars::STAR_FIELDS, || format!("out must hold maxStars × {} values", stars::STAR_FIELDS))?;
        need(p.radius >= 1, || "radius must be ≥ 1".into())?;
        Ok(Box::new(move |c| stars::detect(data.slice(), w, h, bg.slice(), noise.slice(), &p, out, c).map(|n| n as f64)))
    })
}

// tileMetrics(data, w, h, rects: Int32Array, out: Float64Array, scratch: Float32Array[] | null, scale, cancel)
unsafe extern "C" fn tile_metrics(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 8);
    async_call(env, &a, 7, || {
        let (w, h) = (a.usize(1, "width")?, a.usize(2, "height")?);
        let data = plane(&a, 0, "data", w, h)?;
        let rects = a.i32s(3, "rects")?;
        need(rects.len % 4 == 0, || "rects must hold 4 values (x0, y0, width, height) per tile".into())?;
        for (k, r) in rects.slice().chunks_exact(4).enumerate() {
            need(r[0] >= 0 && r[1] >= 0 && r[2] > 0 && r[3] > 0 && (r[0] + r[2]) as usize <= w && (r[1] + r[3]) as usize <= h,
                || format!("tile {k} ({} {} {}×{}) is not inside the {w}×{h} image", r[0], r[1], r[2], r[3]))?;
        }
        let out = a.f64s(4, "out")?;
        need(out.len >= rects.len / 4 * tiles::TILE_FIELDS, || format!("out must hold {} values per tile", tiles::TILE_FIELDS))?;
        let scratch = if a.is_nullish(5) { None } else {
            let list = a.f32_list(5, "scratch")?;
            need(list.len() == tiles::SCRATCH_PLANES && list.iter().all(|b| b.len >= tiles::scratch_len(w, h)), || format!("scratch must be {} planes of at least {} values", tiles::SCRATCH_PLANES, tiles::scratch_len(w, h)))?;
            // The kernel writes every scratch plane: they must not overlap each other or the frame.
            let spans: Vec<(usize, usize)> = list.iter().map(|b| (b.ptr as usize, b.ptr as usize + 4 * b.len)).chain([(data.ptr as usize, data.ptr as usize + 4 * data.len)]).collect();
            need(spans.iter().enumerate().all(|(i, a)| spans[i + 1..].iter().all(|b| a.1 <= b.0 || b.1 <= a.0)), || "scratch planes must be distinct buffers, apart from the frame".into())?;
            Some(list)
        };
        let scale = a.f64(6, "scale")?;
        need(scale.is_finite() && scale > 0.0, || "scale must be finite and > 0".into())?;
        Ok(Box::new(move |c| {
            // y = f32(raw · scale) in place, first (the caller's normalisation, without a pass of its own).
            if scale != 1.0 { for v in data.slice_mut().iter_mut() { *v = (*v as f64 * scale) as f32; } }
            tiles::run(data.slice(), w, h, rects.slice(), out, scratch, c).map(|_| (rects.len / 4) as f64)
        }))
    })
}

// warp(src, sw, sh, matrix: Float64Array(9), dst, dw, dh, kind, cancel)
unsafe extern "C" fn warp(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 9);
    async_call(env, &a, 8, || {
        let (sw, sh) = (a.usize(1, "sourceWidth")?, a.usize(2, "sourceHeight")?);
        let src = plane(&a, 0, "source", sw, sh)?;
        let m = a.f64s(3, "matrix")?;
        need(m.len == 9 && m.slice().iter().all(|x| x.is_finite()), || "matrix must be 9 finite values (row-major 3×3)".into())?;
        let (dw, dh) = (a.usize(5, "width")?, a.usize(6, "height")?);
        let dst = plane(&a, 4, "out", dw, dh)?;
        let kind = a.usize(7, "interpolation")? as u32;
        need((1..=3).contains(&kind), || format!("interpolation code {kind} is not 1..3"))?;
        let hm: [f64; 9] = m.slice().try_into().unwrap();
        Ok(Box::new(move |c| warp::warp(src.slice(), sw, sh, hm, dst, dw, dh, kind, c).map(|_| 0.0)))
    })
}

// debayer(src, w, h, pattern, offX, offY, method, r, g, b, rangeLo, rangeHi, cancel)
unsafe extern "C" fn debayer(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 13);
    async_call(env, &a, 12, || {
        let (w, h) = (a.usize(1, "width")?, a.usize(2, "height")?);
        let src = plane(&a, 0, "mosaic", w, h)?;
        let pattern = a.usize(3, "pattern")?;
        need(pattern < 4, || "pattern code must be 0..3".into())?;
        let (ox, oy) = (a.usize(4, "offsetX")? & 1, a.usize(5, "offsetY")? & 1);
        // 0 bilinear, 1 superpixel, 2 RCD.
        let method = a.usize(6, "method")?;
        need(method <= 2, || "method code must be 0..2".into())?;
        let sp = method == 1;
        let (ow, oh) = if sp { (w / 2, h / 2) } else { (w, h) };
        need(ow > 0 && oh > 0, || format!("a {w}×{h} mosaic is too small for superpixel debayering"))?;
        let out = [plane(&a, 7, "red", ow, oh)?, plane(&a, 8, "green", ow, oh)?, plane(&a, 9, "blue", ow, oh)?];
        // RCD's value range (NaN: the mosaic's own finite minimum and maximum).
        let range = (a.f64(10, "rangeLo")?, a.f64(11, "rangeHi")?);
        Ok(Box::new(move |c| if method == 2 { rcd::rcd(src.slice(), w, h, pattern, ox, oy, range, out, c).map(|_| 0.0) } else { debayer::debayer(src.slice(), w, h, pattern, ox, oy, sp, out, c).map(|_| 0.0) }))
    })
}

// combine(frames: Float32Array[], weights|null, norm|null, method, rejection, low, high, iterations, out, rejLow|null, rejHigh|null, cancel)
unsafe extern "C" fn combine(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 12);
    async_call(env, &a, 11, || {
        let frames = a.f32_list(0, "frames")?;
        need(!frames.is_empty(), || "frames is empty".into())?;
        let len = frames[0].len;
        for (k, f) in frames.iter().enumerate() { need(f.len == len, || format!("frames[{k}] has {} values, frames[0] has {len}", f.len))?; }
        let weights = a.opt_f64s(1, "weights")?;
        if let Some(w) = weights {
            need(w.len == frames.len(), || format!("weights has {} values for {} frames", w.len, frames.len()))?;
            need(w.slice().iter().all(|x| x.is_finite() && *x > 0.0), || "weights must be finite and > 0".into())?;
        }
        let norm = a.opt_f64s(2, "normalize")?;
        if let Some(n) = norm {
            need(n.len == 2 * frames.len(), || format!("normalize has {} values for {} frames (scale, offset per frame)", n.len, frames.len()))?;
            need(n.slice().iter().all(|x| x.is_finite()), || "normalize scales and offsets must be finite".into())?;
        }
        let p = combine::Params { method: a.usize(3, "method")? as u32, rejection: a.usize(4, "rejection")? as u32, low: a.f64(5, "low")?, high: a.f64(6, "high")?, iterations: a.usize(7, "iterations")? };
        need(p.method <= 1 && p.rejection <= 5, || "unknown method or rejection code".into())?;
        let out = a.f32s(8, "out")?;
        need(out.len == len, || format!("out has {} values, frames have {len}", out.len))?;
        let lo = a.opt_u16s(9, "rejectedLow")?;
        let hi = a.opt_u16s(10, "rejectedHigh")?;
        let rej = match (lo, hi) {
            (Some(l), Some(h)) => { need(l.len == len && h.len == len, || "rejection count arrays must match the frame length".into())?; Some((l, h)) }
            (None, None) => None,
            _ => return range("pass both rejection count arrays or neither".into()),
        };
        Ok(Box::new(move |c| {
            let w = weights.map(|w| w.slice());
            combine::run(&frames, len, w, norm.map(|n| n.slice()), p, out, rej, c).map(|_| 0.0)
        }))
    })
}

// tbqrBand(frames, width, rows, inv, scale, sky, skyMean, restore, u, clipLow, clipHigh, trimScale, truncScale, fractions, xs0, tw, wx, sx,
//          covStart, covIy, covWy, out, plain, cancel)
unsafe extern "C" fn tbqr_band(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 24);
    async_call(env, &a, 23, || {
        let frames = a.f32_list(0, "frames")?;
        let (w, rows) = (a.usize(1, "width")?, a.usize(2, "rows")?);
        let len = dims(w, rows)?;
        let n = frames.len();
        need(n > 0, || "frames is empty".into())?;
        for (k, f) in frames.iter().enumerate() { need(f.len == len, || format!("frames[{k}] has {} values, the band {len}", f.len))?; }
        let (inv, scale, sky, sky_mean) = (a.f64s(3, "inv")?, a.f64s(4, "scale")?, a.f64s(5, "sky")?, a.f64s(6, "skyMean")?);
        need(inv.len == n && scale.len == n, || "inv and scale need one value per frame".into())?;
        need(sky.len == 3 * n * rows, || format!("sky has {} values, needs 3 per frame and row ({})", sky.len, 3 * n * rows))?;
        need(sky_mean.len == 3 * rows, || "skyMean needs 3 values per row".into())?;
        let restore = a.f64(7, "restore")?;
        let u = a.f64s(8, "u")?;
        need(u.len == w, || "u needs one value per column".into())?;
        let (clip_low, clip_high) = (a.f64(9, "clipLow")?, a.f64(10, "clipHigh")?);
        let (trim_scale, trunc_scale) = (a.f64s(11, "trimScale")?, a.f64(12, "truncScale")?);
        need(trim_scale.len == n + 1, || "trimScale needs one value per count of frames, 0 … N".into())?;
        let fractions = a.f64s(13, "fractions")?;
        let xs0 = a.i32s(14, "xs0")?;
        let tw = a.usize(15, "tileWidth")?;
        let (wx, sx) = (a.f64s(16, "wx")?, a.f64s(17, "sx")?);
        need(wx.len == tw && sx.len == w, || "wx needs one value per tile column, sx one per image column".into())?;
        need(xs0.slice().iter().all(|&x| x >= 0 && x as usize + tw <= w), || "xs0: a tile reaches past the band".into())?;
        need(xs0.len > 0 && fractions.len % n == 0 && fractions.len / n >= xs0.len, || "fractions need N × tiles values".into())?;
        let tiles = fractions.len / n;
        let (cov_start, cov_iy, cov_wy) = (a.i32s(18, "covStart")?, a.i32s(19, "covIy")?, a.f64s(20, "covWy")?);
        need(cov_start.len == rows + 1 && cov_iy.len == cov_wy.len, || "covStart needs rows + 1 offsets, covIy and covWy the same length".into())?;
        let cs = cov_start.slice();
        need(cs[0] == 0 && cs.windows(2).all(|p| p[0] <= p[1]) && cs[rows] as usize == cov_iy.len, || "covStart must rise from 0 to the coverage length".into())?;
        need(cov_iy.slice().iter().all(|&iy| iy >= 0 && (iy as usize + 1) * xs0.len <= tiles), || "covIy: a tile row outside the grid".into())?;
        let (out, plain) = (a.f32s(21, "out")?, a.f32s(22, "plain")?);
        need(out.len == len && plain.len == len, || "out and plain need the band's size".into())?;
        Ok(Box::new(move |c| {
            let b = tbqr_band::Band {
                frames: &frames, width: w, rows, inv: inv.slice(), scale: scale.slice(), sky: sky.slice(), sky_mean: sky_mean.slice(), restore, u: u.slice(),
                clip_low, clip_high, trim_scale: trim_scale.slice(), trunc_scale, fractions: fractions.slice(), xs0: xs0.slice(), tw, wx: wx.slice(), sx: sx.slice(),
                cov_start: cov_start.slice(), cov_iy: cov_iy.slice(), cov_wy: cov_wy.slice(),
            };
            tbqr_band::run(&b, out, plain, c).map(|_| 0.0)
        }))
    })
}

// overlapAdd(acc, wsum, cw, ch, tiles: Float32Array[], rects: Int32Array, weights: Float64Array, window|null, cancel)
unsafe extern "C" fn overlap_add(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 9);
    async_call(env, &a, 8, || {
        let (cw, ch) = (a.usize(2, "width")?, a.usize(3, "height")?);
        let n = dims(cw, ch)?;
        let acc = a.f64s(0, "sum")?;
        let ws = a.f64s(1, "weightSum")?;
        need(acc.len == n && ws.len == n, || format!("sum and weightSum must hold {cw}×{ch} values"))?;
        let tiles = a.f32_list(4, "tiles")?;
        let rects = a.i32s(5, "rects")?;
        let weights = a.f64s(6, "weights")?;
        need(rects.len == 4 * tiles.len() && weights.len == tiles.len(), || "rects (4 per tile) and weights (1 per tile) must match the tile list".into())?;
        let window = if a.is_nullish(7) { None } else { Some(a.f32s(7, "window")?) };
        for (k, r) in rects.slice().chunks_exact(4).enumerate() {
            need(r[0] >= 0 && r[1] >= 0 && r[2] > 0 && r[3] > 0 && (r[0] + r[2]) as usize <= cw && (r[1] + r[3]) as usize <= ch,
                || format!("tile {k} ({} {} {}×{}) is not inside the {cw}×{ch} canvas", r[0], r[1], r[2], r[3]))?;
            let px = (r[2] * r[3]) as usize;
            need(tiles[k].len == px, || format!("tile {k} has {} values, its rectangle {}×{} needs {px}", tiles[k].len, r[2], r[3]))?;
            if let Some(wn) = window { need(wn.len == px, || format!("window has {} values, tile {k} has {px}", wn.len))?; }
            need(weights.slice()[k].is_finite() && weights.slice()[k] >= 0.0, || format!("weight of tile {k} must be finite and ≥ 0"))?;
        }
        Ok(Box::new(move |c| ola::add(acc, ws, cw, ch, &tiles, rects.slice(), weights.slice(), window.map(|w| w.slice()), c).map(|_| 0.0)))
    })
}

// aperturePhotometry(data, w, h, xs, ys, aperture, annulusIn, annulusOut, inner, flux, innerFlux, cancel)
unsafe extern "C" fn aperture_photometry(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 12);
    async_call(env, &a, 11, || {
        let (w, h) = (a.usize(1, "width")?, a.usize(2, "height")?);
        let data = plane(&a, 0, "data", w, h)?;
        let (xs, ys) = (a.f64s(3, "xs")?, a.f64s(4, "ys")?);
        let ap = photometry::Aperture { aperture: a.f64(5, "aperture")?, ann_in: a.f64(6, "annulusIn")?, ann_out: a.f64(7, "annulusOut")?, inner: a.f64(8, "inner")? };
        need(ap.aperture > 0.0 && ap.ann_in >= ap.aperture && ap.ann_out > ap.ann_in && ap.ann_out.is_finite() && ap.inner.is_finite() && ap.inner <= ap.aperture, || "need 0 < aperture ≤ annulusIn < annulusOut and inner ≤ aperture".into())?;
        let (flux, inner) = (a.f64s(9, "flux")?, a.f64s(10, "innerFlux")?);
        need(xs.len == ys.len && flux.len >= xs.len && (ap.inner <= 0.0 || inner.len >= xs.len), || "xs and ys need one value per star, flux (and innerFlux with inner > 0) room for each".into())?;
        let r = ap.ann_out.ceil() + 1.0;
        for k in 0..xs.len {
            let (x, y) = (xs.slice()[k], ys.slice()[k]);
            need(x.is_finite() && y.is_finite() && x.round() - r >= 0.0 && y.round() - r >= 0.0 && x.round() + r < w as f64 && y.round() + r < h as f64,
                || format!("star {k} at ({x}, {y}) is not ⌈annulusOut⌉ + 1 px inside the {w}×{h} plane"))?;
        }
        Ok(Box::new(move |_c| { photometry::run(data.slice(), w, xs.slice(), ys.slice(), &ap, flux.slice_mut(), inner.slice_mut()); Ok(xs.len as f64) }))
    })
}

// drizzleDeposit(src, srcWidth, params, num, den, ref, cancel)
unsafe extern "C" fn drizzle_deposit(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 7);
    async_call(env, &a, 6, || {
        let sw = a.usize(1, "srcWidth")?;
        let src = a.f32s(0, "src")?;
        let p = a.f64s(2, "params")?;
        need(p.len >= 30, || "params must hold 30 values".into())?;
        let ps = p.slice();
        let (num, den, rf) = (a.f64s(3, "num")?, a.f64s(4, "den")?, a.f32s(5, "ref")?);
        let (y0, from, to) = (ps[11], ps[12], ps[13]);
        let (rows, wo) = (ps[15], ps[16]);
        need(sw > 0 && from >= y0 && to >= from && ((to - y0) as usize) * sw <= src.len, || "source rows outside src".into())?;
        need((rows * wo) as usize <= num.len && num.len == den.len, || "num and den need bandRows × outWidth values".into())?;
        need((ps[28] * ps[29]) as usize <= rf.len, || "ref holds fewer than refWidth × refRows values".into())?;
        need(ps[23] < 4.0 && ps[26] < 3.0, || "Bayer pattern code 0..3 (or −1) and channel 0..2".into())?;
        Ok(Box::new(move |_c| Ok(drizzle::deposit(src.slice(), sw, ps, num.slice_mut(), den.slice_mut(), rf.slice()))))
    })
}

// normalizeOverlap(acc, wsum, out, eps, cancel)
unsafe extern "C" fn normalize_overlap(env: napi_env, info: napi_callback_info) -> napi_value {
    let a = Args::new(env, info, 5);
    async_call(env, &a, 4, || {
        let acc = a.f64s(0, "sum")?;
        let ws = a.f64s(1, "weightSum")?;
        let out = a.f32s(2, "out")?;
        need(acc.len == out.len && ws.len == out.len, || "sum, weightSum and out must have the same length".into())?;
        let eps = a.f64(3, "epsilon")?;
        Ok(Box::new(move |c| ola::normalize(acc.slice(), ws.slice(), out, eps, c).map(|_| 0.0)))
    })
}

type Binding = unsafe extern "C" fn(napi_env, napi_callback_info) -> napi_value;

/// glibc's allocator serves every block of 128 kB and up (its dynamic threshold rises only as far as the
/// last freed block) with a fresh mmap, which the kernel hands out as zeroed pages faulted in one by one
/// and takes back on free. A frame of 2048² is a 16 MB plane, and a registration or TBQR pass allocates
/// several per frame (decoded image, background and noise maps, warped output, write buffer): on these
/// virtual machines the page faults cost more than the work (background map of a 2048² frame in a
/// running registration: 109 ms; with blocks up to 32 MB recycled from the heap: 43 ms). So when the addon
/// loads, blocks up to glibc's largest threshold (32 MB) come from the heap and up to 256 MB of free heap
/// is kept for reuse instead of being trimmed. Peak memory is unchanged (the same blocks, reused rather
/// than unmapped and mapped again). `TILE_COMPILE_MALLOC_TUNING=0` leaves glibc's defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    extern "C" { fn mallopt(param: i32, value: i32) -> i32; }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    if std::env::var("TILE_COMPILE_MALLOC_TUNING").map(|v| v == "0").unwrap_or(false) { return; }
    // SAFETY: mallopt only changes allocator parameters; both values are within glibc's accepted ranges.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
    }
}
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    tune_allocator();
    let table: [(&str, Binding); 18] = [
        ("decode", decode), ("sumF32", sum_f32), ("setThreads", set_threads), ("getThreads", get_threads), ("simdLevel", simd_level),
        ("percentiles", percentiles), ("robustStats", robust_stats), ("backgroundMap", background_map), ("detectStars", detect_stars),
        ("tileMetrics", tile_metrics), ("warp", warp), ("debayer", debayer), ("combine", combine), ("overlapAdd", overlap_add),
        ("normalizeOverlap", normalize_overlap), ("tbqrBand", tbqr_band), ("aperturePhotometry", aperture_photometry), ("drizzleDeposit", drizzle_deposit),
    ];
    for (name, f) in table {
        let c = std::ffi::CString::new(name).unwrap();
        let mut func = null_mut();
        napi_create_function(env, c.as_ptr(), name.len(), f, null_mut(), &mut func);
        napi_set_named_property(env, exports, c.as_ptr(), func);
    }
    exports
}
