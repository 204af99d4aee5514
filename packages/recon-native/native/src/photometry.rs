//! Aperture photometry at fixed positions (TBQR's pass A: the photometry stars of registered frames share
//! their positions). Per star: the sum over the disc of radius `aperture` minus its pixel count times the
//! median of the annulus [ann_in, ann_out] (NaN when a disc pixel is not finite or the annulus has fewer
//! than 8 finite pixels); with `inner` > 0 also the sky-subtracted sum inside the disc of that radius. The
//! box is scanned row by row from (round(x) − R, round(y) − R), R = ⌈ann_out⌉, adding in f64 in that order,
//! as the TypeScript twin (src/js/photometry.ts) does, so both give the same bits. The caller keeps every
//! position at least R + 1 px inside the plane.
use crate::stats::median;

pub struct Aperture { pub aperture: f64, pub ann_in: f64, pub ann_out: f64, pub inner: f64 }

pub fn run(plane: &[f32], w: usize, xs: &[f64], ys: &[f64], a: &Aperture, flux: &mut [f64], inner: &mut [f64]) {
    let r = a.ann_out.ceil() as isize;
    let (a2, i2, o2) = (a.aperture * a.aperture, a.ann_in * a.ann_in, a.ann_out * a.ann_out);
    let r2 = if a.inner > 0.0 { a.inner * a.inner } else { -1.0 };
    let mut bg: Vec<f64> = Vec::with_capacity(((2 * r + 1) * (2 * r + 1)) as usize);
    for k in 0..xs.len() {
        let (sx, sy) = (xs[k], ys[k]);
        let (cx, cy) = (sx.round() as isize, sy.round() as isize);
        let (mut sum, mut cnt, mut sum_in, mut cnt_in, mut bad) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, false);
        bg.clear();
        for y in cy - r..=cy + r {
            let dy = y as f64 - sy;
            let dy2 = dy * dy;
            let row = &plane[y as usize * w..];
            for x in cx - r..=cx + r {
                let dx = x as f64 - sx;
                let d2 = dx * dx + dy2;
                let v = row[x as usize];
                if d2 <= a2 {
                    if v.is_finite() {
                        sum += v as f64;
                        cnt += 1.0;
                        if d2 <= r2 { sum_in += v as f64; cnt_in += 1.0; }
                    } else { bad = true; }
                } else if d2 >= i2 && d2 <= o2 && v.is_finite() { bg.push(v as f64); }
            }
        }
        if bad || bg.len() < 8 {
            flux[k] = f64::NAN;
            if a.inner > 0.0 { inner[k] = f64::NAN; }
            continue;
        }
        let sky = median(&mut bg);
        flux[k] = sum - cnt * sky;
        if a.inner > 0.0 { inner[k] = sum_in - cnt_in * sky; }
    }
}
