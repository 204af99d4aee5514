//! Scratch planes kept between kernel calls. A fresh multi-megabyte `Vec` is fresh pages: on these virtual
//! machines the first touch of each page (a page fault, the kernel zeroing it) cost RCD about a quarter of
//! its time. Kernels that need whole-frame working planes take them from here; a plane is handed out
//! filled with the value asked for (so nothing of an earlier call shows through) and returned when
//! dropped. The pool keeps at most `KEEP_BYTES` of planes; beyond that a returned plane is freed.
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Bytes of returned planes the pool keeps for the next call.
const KEEP_BYTES: usize = 256 << 20;

pub trait Elem: Copy + Send + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}
static F32: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static F64: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
impl Elem for f32 { fn pool() -> &'static Mutex<Vec<Vec<f32>>> { &F32 } }
impl Elem for f64 { fn pool() -> &'static Mutex<Vec<Vec<f64>>> { &F64 } }

/// A working plane of `n` values from the pool; goes back to it when dropped.
pub struct Plane<T: Elem> { v: Vec<T> }

/// A plane of `n` values, each `fill`.
pub fn plane<T: Elem>(n: usize, fill: T) -> Plane<T> {
    let mut v = {
        let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
        // The smallest kept plane that is large enough.
        let best = pool.iter().enumerate().filter(|(_, p)| p.capacity() >= n).min_by_key(|(_, p)| p.capacity()).map(|(i, _)| i);
        match best { Some(i) => pool.swap_remove(i), None => Vec::new() }
    };
    v.clear();
    v.resize(n, fill);
    Plane { v }
}

impl<T: Elem> Drop for Plane<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        let bytes = |p: &Vec<T>| p.capacity() * std::mem::size_of::<T>();
        let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = pool.iter().map(bytes).sum();
        if kept + bytes(&v) <= KEEP_BYTES { pool.push(v); }
    }
}
impl<T: Elem> Deref for Plane<T> {
    type Target = [T];
    fn deref(&self) -> &[T] { &self.v }
}
impl<T: Elem> DerefMut for Plane<T> {
    fn deref_mut(&mut self) -> &mut [T] { &mut self.v }
}
