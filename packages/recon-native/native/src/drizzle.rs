//! Drizzle: the drops of one frame's source rows into one band of the output grid (twin:
//! src/js/drizzle.ts — the same f64 operations in the same order, so both give the same bits).
//!
//! `p` (see the twin for the layout): the frame's input → reference matrix, the output scale, the drop's half
//! side (0: point), the source rows to drizzle, the band, the frame's normalisation a·x + b and weight, the
//! blot rejection's σ and thresholds, the Bayer layout for a Bayer drizzle and the 1× stack's rows.

const PATTERNS: [[usize; 4]; 4] = [[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1], [2, 1, 1, 0]];

#[inline]
fn round(x: f64) -> f64 { (x + 0.5).floor() }

/// Returns the number of values rejected against the 1× stack.
pub fn deposit(src: &[f32], sw: usize, p: &[f64], num: &mut [f64], den: &mut [f64], rf: &[f32]) -> f64 {
    let h = &p[0..9];
    let (s, half) = (p[9], p[10]);
    let (src_y0, row_from, row_to) = (p[11] as i64, p[12] as i64, p[13] as i64);
    let (band_y0, band_rows, wo) = (p[14], p[15], p[16] as usize);
    let (a, b, w, sig, low_t, high_t) = (p[17], p[18], p[19], p[20], p[21], p[22]);
    let (cfa, ox, oy, ch) = (p[23], p[24] as usize, p[25] as usize, p[26] as usize);
    let (ref_y0, ref_w, ref_rows) = (p[27], p[28] as usize, p[29] as usize);
    let pat = if cfa >= 0.0 { Some(PATTERNS[cfa as usize]) } else { None };
    let blot = ref_rows > 0;
    let mut rejected = 0.0;
    for y in row_from..row_to {
        let row = ((y - src_y0) as usize) * sw;
        let yf = y as f64;
        for x in 0..sw {
            if let Some(pt) = pat { if pt[((y as usize + oy) & 1) * 2 + ((x + ox) & 1)] != ch { continue; } }
            let v = src[row + x] as f64;
            if !v.is_finite() { continue; }
            let xf = x as f64;
            let q = h[6] * xf + h[7] * yf + h[8];
            let gx = (h[0] * xf + h[1] * yf + h[2]) / q;
            let gy = (h[3] * xf + h[4] * yf + h[5]) / q;
            let u = (gx + 0.5) * s - 0.5;
            let vv = (gy + 0.5) * s - 0.5;
            if vv + half < band_y0 - 0.5 || vv - half > band_y0 + band_rows - 0.5 { continue; }
            let xv = a * v + b;
            if blot {
                let x0 = gx.floor();
                let yy0 = gy.floor() - ref_y0;
                if x0 >= 0.0 && x0 + 1.0 < ref_w as f64 && yy0 >= 0.0 && yy0 + 1.0 < ref_rows as f64 {
                    let (xi, yi) = (x0 as usize, yy0 as usize);
                    let fx = gx - x0;
                    let fy = gy - ref_y0 - yy0;
                    let at = |yy: usize, xx: usize| rf[yy * ref_w + xx] as f64;
                    let (c00, c01, c10, c11) = (at(yi, xi), at(yi, xi + 1), at(yi + 1, xi), at(yi + 1, xi + 1));
                    let mut lo = c00.min(c01).min(c10).min(c11);
                    let mut hi = c00.max(c01).max(c10).max(c11);
                    if xi >= 1 && xi + 2 < ref_w && yi >= 1 && yi + 2 < ref_rows {
                        for yy in yi - 1..=yi + 2 { for xx in xi - 1..=xi + 2 { let t = at(yy, xx); if t < lo { lo = t; } if t > hi { hi = t; } } }
                    }
                    let m = (1.0 - fy) * ((1.0 - fx) * c00 + fx * c01) + fy * ((1.0 - fx) * c10 + fx * c11);
                    if m.is_finite() {
                        let range = hi - lo;
                        let tol = (sig * sig + 1.44 * range * range).sqrt();
                        if xv < m - low_t * tol || xv > m + high_t * tol { rejected += 1.0; continue; }
                    }
                }
            }
            let by0 = band_y0 as i64;
            let rows = band_rows as i64;
            if half == 0.0 {
                let j = round(u) as i64;
                let r = round(vv) as i64 - by0;
                if j < 0 || j >= wo as i64 || r < 0 || r >= rows { continue; }
                let k = r as usize * wo + j as usize;
                num[k] += w * xv;
                den[k] += w;
                continue;
            }
            let jx0 = (round(u - half) as i64).max(0);
            let jx1 = (round(u + half) as i64).min(wo as i64 - 1);
            let jy0 = (round(vv - half) as i64).max(by0);
            let jy1 = (round(vv + half) as i64).min(by0 + rows - 1);
            let mut jy = jy0;
            while jy <= jy1 {
                let jyf = jy as f64;
                let oy_ = (vv + half).min(jyf + 0.5) - (vv - half).max(jyf - 0.5);
                if oy_ > 0.0 {
                    let base = (jy - by0) as usize * wo;
                    let mut jx = jx0;
                    while jx <= jx1 {
                        let jxf = jx as f64;
                        let ox_ = (u + half).min(jxf + 0.5) - (u - half).max(jxf - 0.5);
                        if ox_ > 0.0 {
                            let wa = w * ox_ * oy_;
                            num[base + jx as usize] += wa * xv;
                            den[base + jx as usize] += wa;
                        }
                        jx += 1;
                    }
                }
                jy += 1;
            }
        }
    }
    rejected
}
