//! Debayering of a colour-filter-array mosaic. The pattern names the colours of the 2×2 cell at the
//! sensor origin (RGGB, GRBG, GBRG, BGGR); `off_x`/`off_y` are the parity of the crop origin, so a frame
//! cropped by an odd number of pixels keeps the right colours.
//! - bilinear: a pixel of the wanted colour is copied; otherwise the mean of the wanted colour among the
//!   4 edge neighbours, or if none, among the 4 diagonal neighbours (pixels outside the image skipped);
//! - superpixel: each 2×2 cell becomes one pixel (R, mean of the two G, B); output ⌊W/2⌋×⌊H/2⌋.
use crate::js::{Buf, Cancel};
use crate::par::for_chunks;

/// Colour index (0 R, 1 G, 2 B) of each cell position for pattern codes 0..3 = RGGB, GRBG, GBRG, BGGR.
pub const PATTERNS: [[u8; 4]; 4] = [[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1], [2, 1, 1, 0]];

pub fn debayer(src: &[f32], w: usize, h: usize, pattern: usize, off_x: usize, off_y: usize, superpixel: bool, out: [Buf<f32>; 3], cancel: Cancel) -> Result<(), String> {
    let pat = PATTERNS[pattern];
    let color = move |x: usize, y: usize| pat[((y + off_y) & 1) * 2 + ((x + off_x) & 1)];
    if superpixel {
        let (ow, oh) = (w / 2, h / 2);
        return for_chunks(oh, cancel, |j| {
            for i in 0..ow {
                let mut acc = [0.0f64; 3];
                let mut cnt = [0.0f64; 3];
                for dy in 0..2 { for dx in 0..2 {
                    let (x, y) = (2 * i + dx, 2 * j + dy);
                    let c = color(x, y) as usize;
                    acc[c] += src[y * w + x] as f64;
                    cnt[c] += 1.0;
                } }
                for c in 0..3 { out[c].slice_mut()[j * ow + i] = (acc[c] / cnt[c]) as f32; }
            }
        });
    }
    bilinear(src, w, h, pattern, off_x, off_y, 0, out, cancel)
}

/// The bilinear rule for every pixel, or with `border` > 0 only for those within `border` px of an edge.
#[allow(clippy::too_many_arguments)]
pub fn bilinear(src: &[f32], w: usize, h: usize, pattern: usize, off_x: usize, off_y: usize, border: usize, out: [Buf<f32>; 3], cancel: Cancel) -> Result<(), String> {
    let pat = PATTERNS[pattern];
    let color = move |x: usize, y: usize| pat[((y + off_y) & 1) * 2 + ((x + off_x) & 1)];
    const EDGE: [(isize, isize); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];
    const DIAG: [(isize, isize); 4] = [(-1, -1), (1, -1), (-1, 1), (1, 1)];
    for_chunks(h, cancel, |y| {
        let inner = border > 0 && y >= border && y + border < h && 2 * border < w;
        let cols: Box<dyn Iterator<Item = usize>> = if inner { Box::new((0..border).chain(w - border..w)) } else { Box::new(0..w) };
        for x in cols {
            let here = color(x, y);
            for c in 0..3u8 {
                let v = if here == c { src[y * w + x] } else {
                    let mean = |offs: &[(isize, isize); 4]| {
                        let (mut s, mut n) = (0.0f64, 0.0f64);
                        for &(dx, dy) in offs {
                            let (xx, yy) = (x as isize + dx, y as isize + dy);
                            if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize { continue; }
                            if color(xx as usize, yy as usize) != c { continue; }
                            s += src[yy as usize * w + xx as usize] as f64;
                            n += 1.0;
                        }
                        if n > 0.0 { Some(s / n) } else { None }
                    };
                    mean(&EDGE).or_else(|| mean(&DIAG)).unwrap_or(f64::NAN) as f32
                };
                out[c as usize].slice_mut()[y * w + x] = v;
            }
        }
    })
}
