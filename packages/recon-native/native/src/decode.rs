//! Big-endian FITS pixel payloads → f32 physical values (raw·BSCALE + BZERO; BLANK and IEEE NaN → NaN).
//! One pass, no in-place byte swap. The arithmetic is done in f64 and rounded once to f32, exactly like
//! the TypeScript decoder; the unsigned-16 case (BZERO 32768) is exact in f32 and takes a fast path
//! that the compiler vectorises (AVX2 when the CPU has it).

#[inline(always)]
fn u16_body(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = (u16::from_be_bytes([b[0], b[1]]) ^ 0x8000) as f32;
    }
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn u16_avx2(src: &[u8], out: &mut [f32]) { u16_body(src, out) }

pub fn decode(src: &[u8], bitpix: i32, bzero: f64, bscale: f64, blank: Option<i64>, out: &mut [f32]) {
    let n = out.len();
    match bitpix {
        8 => for i in 0..n {
            let v = src[i];
            out[i] = if Some(v as i64) == blank { f32::NAN } else { (v as f64 * bscale + bzero) as f32 };
        },
        16 => {
            if blank.is_none() && bzero == 32768.0 && bscale == 1.0 {
                #[cfg(target_arch = "x86_64")]
                if crate::simd::has_avx2() { unsafe { u16_avx2(&src[..2 * n], out) }; return; }
                u16_body(&src[..2 * n], out);
                return;
            }
            for i in 0..n {
                let v = i16::from_be_bytes([src[2 * i], src[2 * i + 1]]);
                out[i] = if Some(v as i64) == blank { f32::NAN } else { (v as f64 * bscale + bzero) as f32 };
            }
        }
        32 => for i in 0..n {
            let v = i32::from_be_bytes(src[4 * i..4 * i + 4].try_into().unwrap());
            out[i] = if Some(v as i64) == blank { f32::NAN } else { (v as f64 * bscale + bzero) as f32 };
        },
        64 => for i in 0..n {
            let v = i64::from_be_bytes(src[8 * i..8 * i + 8].try_into().unwrap());
            out[i] = if Some(v) == blank { f32::NAN } else { (v as f64 * bscale + bzero) as f32 };
        },
        -32 => {
            let identity = bzero == 0.0 && bscale == 1.0;
            for i in 0..n {
                let v = f32::from_be_bytes(src[4 * i..4 * i + 4].try_into().unwrap());
                out[i] = if identity { v } else { (v as f64 * bscale + bzero) as f32 };
            }
        }
        _ => for i in 0..n {
            let v = f64::from_be_bytes(src[8 * i..8 * i + 8].try_into().unwrap());
            out[i] = (v * bscale + bzero) as f32;
        },
    }
}
