//! Threads: `std::thread::scope` workers take fixed chunks from an atomic counter. Chunk boundaries
//! depend only on the problem size, never on the thread count, and every chunk writes a disjoint part of
//! the output, so results are bit-identical for 1 and N threads.
use crate::js::{Cancel, ABORTED};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(0);

pub fn threads() -> usize {
    let t = THREADS.load(Ordering::Relaxed);
    if t > 0 { t } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
}
pub fn set_threads(n: usize) { THREADS.store(n, Ordering::Relaxed); }

/// Run `f(chunk)` for chunk = 0..n_chunks on up to `threads()` threads. Stops early when cancelled.
pub fn for_chunks<F: Fn(usize) + Sync>(n_chunks: usize, cancel: Cancel, f: F) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let worker = || loop {
        if stop.load(Ordering::Relaxed) { return; }
        if cancel.is_set() { stop.store(true, Ordering::Relaxed); return; }
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= n_chunks { return; }
        f(c);
    };
    let t = threads().min(n_chunks.max(1));
    if t <= 1 { worker(); } else {
        std::thread::scope(|s| {
            for _ in 1..t { s.spawn(worker); }
            worker();
        });
    }
    if stop.load(Ordering::Relaxed) || cancel.is_set() { Err(ABORTED.into()) } else { Ok(()) }
}
