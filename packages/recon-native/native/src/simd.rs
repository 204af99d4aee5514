//! Runtime CPU feature detection. Kernels compile their hot loops a second time under
//! `#[target_feature(enable = "avx2")]` (x86-64) and pick that copy when the CPU has AVX2; NEON is part
//! of the aarch64 baseline, so the plain copy is already vectorised there. Only element-wise loops and
//! fixed-lane reductions are vectorised, so every path gives identical bits.
use std::sync::OnceLock;

pub fn has_avx2() -> bool {
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        { std::env::var_os("TILE_COMPILE_NO_SIMD").is_none() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") }
        #[cfg(not(target_arch = "x86_64"))]
        { false }
    })
}

pub fn level() -> &'static str {
    if has_avx2() { "avx2" } else if cfg!(target_arch = "aarch64") { "neon" } else { "scalar" }
}

/// Sum with 8 f64 lanes, combined in a fixed order (the bandwidth reference of `pnpm bench native`).
#[inline(always)]
fn sum_body(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks { for k in 0..8 { acc[k] += c[k] as f64; } }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for x in rest { s += *x as f64; }
    s
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(v: &[f32]) -> f64 { sum_body(v) }

pub fn sum_f32(v: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() { return unsafe { sum_avx2(v) }; }
    sum_body(v)
}
