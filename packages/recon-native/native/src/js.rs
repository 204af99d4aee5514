//! Thin, safe-ish glue over the raw Node-API: argument parsing with typed-array checks, errors thrown as
//! JS exceptions (never a crash), and async work that runs a kernel on the libuv pool and settles a
//! promise. Every typed array an async call touches stays referenced until the promise settles.
use crate::ffi::*;
use std::ffi::CString;
use std::os::raw::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI32, Ordering};

/// A raw view of a typed array's elements. `Send`/`Sync` because kernels only touch disjoint parts from
/// different threads (documented per kernel) and the array is kept alive by a reference.
#[derive(Clone, Copy)]
pub struct Buf<T> {
    pub ptr: *mut T,
    pub len: usize,
}
unsafe impl<T> Send for Buf<T> {}
unsafe impl<T> Sync for Buf<T> {}
impl<T> Buf<T> {
    pub fn slice<'a>(&self) -> &'a [T] { unsafe { std::slice::from_raw_parts(self.ptr, self.len) } }
    #[allow(clippy::mut_from_ref)]
    pub fn slice_mut<'a>(&self) -> &'a mut [T] { unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) } }
}

/// An argument error: becomes a TypeError/RangeError with code TC_INPUT_INVALID on the JS side.
pub enum JsError {
    Type(String),
    Range(String),
}
pub type R<T> = Result<T, JsError>;
pub fn range<T>(msg: String) -> R<T> { Err(JsError::Range(msg)) }

/// The cancel flag of one call: an Int32Array(1) that JS sets to 1 when the run's AbortSignal fires.
#[derive(Clone, Copy)]
pub struct Cancel(pub *const AtomicI32);
unsafe impl Send for Cancel {}
unsafe impl Sync for Cancel {}
impl Cancel {
    pub fn none() -> Self { Cancel(std::ptr::null()) }
    pub fn is_set(&self) -> bool { !self.0.is_null() && unsafe { (*self.0).load(Ordering::Relaxed) } != 0 }
}
/// Marker error of a cancelled kernel.
pub const ABORTED: &str = "__aborted__";
pub type KResult = Result<f64, String>;

pub struct Args {
    env: napi_env,
    pub argv: Vec<napi_value>,
}

unsafe fn typed_info(env: napi_env, v: napi_value) -> Option<(i32, *mut c_void, usize)> {
    let mut is = false;
    if napi_is_typedarray(env, v, &mut is) != NAPI_OK || !is { return None; }
    let (mut kind, mut len, mut data, mut ab, mut off) = (0i32, 0usize, null_mut(), null_mut(), 0usize);
    if napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut off) != NAPI_OK { return None; }
    if data.is_null() { data = std::ptr::NonNull::<f64>::dangling().as_ptr() as *mut c_void; }
    Some((kind, data, len))
}

impl Args {
    pub unsafe fn new(env: napi_env, info: napi_callback_info, n: usize) -> Args {
        let mut argc = n;
        let mut argv = vec![null_mut(); n];
        napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), null_mut(), null_mut());
        if argc < n {
            let mut undef = null_mut();
            napi_get_undefined(env, &mut undef);
            for a in argv.iter_mut().skip(argc) { *a = undef; }
        }
        Args { env, argv }
    }
    fn kind(&self, i: usize) -> i32 {
        let mut t = 0;
        unsafe { napi_typeof(self.env, self.argv[i], &mut t) };
        t
    }
    pub fn is_nullish(&self, i: usize) -> bool { let t = self.kind(i); t == T_UNDEFINED || t == T_NULL }
    pub fn f64(&self, i: usize, name: &str) -> R<f64> {
        if self.kind(i) != T_NUMBER { return Err(JsError::Type(format!("{name} must be a number"))); }
        let mut v = 0.0;
        unsafe { napi_get_value_double(self.env, self.argv[i], &mut v) };
        Ok(v)
    }
    /// A non-negative integer below 2^31.
    pub fn usize(&self, i: usize, name: &str) -> R<usize> {
        let v = self.f64(i, name)?;
        if !(v >= 0.0 && v < 2147483648.0 && v.fract() == 0.0) { return range(format!("{name} must be a non-negative integer, got {v}")); }
        Ok(v as usize)
    }
    fn typed<T>(&self, i: usize, name: &str, want: i32, what: &str) -> R<Buf<T>> {
        match unsafe { typed_info(self.env, self.argv[i]) } {
            Some((k, p, len)) if k == want => Ok(Buf { ptr: p as *mut T, len }),
            _ => Err(JsError::Type(format!("{name} must be a {what}"))),
        }
    }
    pub fn f32s(&self, i: usize, name: &str) -> R<Buf<f32>> { self.typed(i, name, TA_FLOAT32, "Float32Array") }
    pub fn f64s(&self, i: usize, name: &str) -> R<Buf<f64>> { self.typed(i, name, TA_FLOAT64, "Float64Array") }
    pub fn i32s(&self, i: usize, name: &str) -> R<Buf<i32>> { self.typed(i, name, TA_INT32, "Int32Array") }
    pub fn u16s(&self, i: usize, name: &str) -> R<Buf<u16>> { self.typed(i, name, TA_UINT16, "Uint16Array") }
    pub fn u8s(&self, i: usize, name: &str) -> R<Buf<u8>> {
        match unsafe { typed_info(self.env, self.argv[i]) } {
            Some((k, p, len)) if k == TA_UINT8 || k == TA_INT8 => Ok(Buf { ptr: p as *mut u8, len }),
            _ => Err(JsError::Type(format!("{name} must be a Uint8Array or Buffer"))),
        }
    }
    pub fn opt_f64s(&self, i: usize, name: &str) -> R<Option<Buf<f64>>> { if self.is_nullish(i) { Ok(None) } else { self.f64s(i, name).map(Some) } }
    pub fn opt_u16s(&self, i: usize, name: &str) -> R<Option<Buf<u16>>> { if self.is_nullish(i) { Ok(None) } else { self.u16s(i, name).map(Some) } }
    pub fn cancel(&self, i: usize) -> R<Cancel> {
        if self.is_nullish(i) { return Ok(Cancel::none()); }
        let b: Buf<i32> = self.i32s(i, "cancel")?;
        if b.len < 1 { return range("cancel must hold one element".into()); }
        Ok(Cancel(b.ptr as *const AtomicI32))
    }
    /// An array of Float32Array (frames of a combine).
    pub fn f32_list(&self, i: usize, name: &str) -> R<Vec<Buf<f32>>> {
        let mut is = false;
        unsafe { napi_is_array(self.env, self.argv[i], &mut is) };
        if !is { return Err(JsError::Type(format!("{name} must be an array of Float32Array"))); }
        let mut n = 0u32;
        unsafe { napi_get_array_length(self.env, self.argv[i], &mut n) };
        let mut out = Vec::with_capacity(n as usize);
        for k in 0..n {
            let mut v = null_mut();
            unsafe { napi_get_element(self.env, self.argv[i], k, &mut v) };
            match unsafe { typed_info(self.env, v) } {
                Some((TA_FLOAT32, p, len)) => out.push(Buf { ptr: p as *mut f32, len }),
                _ => return Err(JsError::Type(format!("{name}[{k}] must be a Float32Array"))),
            }
        }
        Ok(out)
    }
}

unsafe fn cstr(s: &str) -> CString { CString::new(s.replace('\0', " ")).unwrap() }

pub unsafe fn throw(env: napi_env, e: JsError) -> napi_value {
    let code = cstr("TC_INPUT_INVALID");
    match e {
        JsError::Type(m) => napi_throw_type_error(env, code.as_ptr(), cstr(&m).as_ptr()),
        JsError::Range(m) => napi_throw_range_error(env, code.as_ptr(), cstr(&m).as_ptr()),
    };
    null_mut()
}

pub unsafe fn number(env: napi_env, v: f64) -> napi_value {
    let mut out = null_mut();
    napi_create_double(env, v, &mut out);
    out
}

/// Run a synchronous binding body, turning argument errors and panics into JS exceptions.
pub unsafe fn sync_call(env: napi_env, body: impl FnOnce() -> R<f64>) -> napi_value {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => number(env, v),
        Ok(Err(e)) => throw(env, e),
        Err(_) => { napi_throw_error(env, cstr("TC_NATIVE_PANIC").as_ptr(), cstr("recon-native: internal error (panic) in a kernel").as_ptr()); null_mut() }
    }
}

type Work = Box<dyn FnOnce(Cancel) -> KResult + Send>;
struct Job {
    work: Option<Work>,
    cancel: Cancel,
    result: Option<KResult>,
    deferred: napi_deferred,
    refs: Vec<napi_ref>,
    handle: napi_async_work,
}

unsafe extern "C" fn execute(_env: napi_env, data: *mut c_void) {
    let job = &mut *(data as *mut Job);
    let work = job.work.take().unwrap();
    let cancel = job.cancel;
    job.result = Some(match catch_unwind(AssertUnwindSafe(move || work(cancel))) {
        Ok(r) => r,
        Err(_) => Err("recon-native: internal error (panic) in a kernel".into()),
    });
}

unsafe extern "C" fn complete(env: napi_env, _status: napi_status, data: *mut c_void) {
    let job = Box::from_raw(data as *mut Job);
    for r in &job.refs { napi_delete_reference(env, *r); }
    napi_delete_async_work(env, job.handle);
    match job.result.unwrap_or_else(|| Err("recon-native: work was not run".into())) {
        Ok(v) => { napi_resolve_deferred(env, job.deferred, number(env, v)); }
        Err(msg) => {
            let code = if msg == ABORTED { "ABORT_ERR" } else { "TC_NATIVE_FAILED" };
            let (mut c, mut m, mut err) = (null_mut(), null_mut(), null_mut());
            napi_create_string_utf8(env, code.as_ptr() as *const _, code.len(), &mut c);
            napi_create_string_utf8(env, msg.as_ptr() as *const _, msg.len(), &mut m);
            napi_create_error(env, c, m, &mut err);
            napi_reject_deferred(env, job.deferred, err);
        }
    }
}

/// Validate arguments on the JS thread (`prepare`), then run the returned kernel on the libuv pool.
/// Returns a promise of the kernel's number. Every object argument stays referenced until it settles.
pub unsafe fn async_call(env: napi_env, args: &Args, cancel_arg: usize, prepare: impl FnOnce() -> R<Work>) -> napi_value {
    let work = match catch_unwind(AssertUnwindSafe(prepare)) {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return throw(env, e),
        Err(_) => { napi_throw_error(env, cstr("TC_NATIVE_PANIC").as_ptr(), cstr("recon-native: internal error (panic) while preparing a kernel").as_ptr()); return null_mut(); }
    };
    let cancel = match args.cancel(cancel_arg) { Ok(c) => c, Err(e) => return throw(env, e) };
    let mut refs = Vec::new();
    for (i, v) in args.argv.iter().enumerate() {
        if args.kind(i) == T_OBJECT {
            let mut r = null_mut();
            if napi_create_reference(env, *v, 1, &mut r) == NAPI_OK { refs.push(r); }
        }
    }
    let (mut deferred, mut promise) = (null_mut(), null_mut());
    napi_create_promise(env, &mut deferred, &mut promise);
    let job = Box::into_raw(Box::new(Job { work: Some(work), cancel, result: None, deferred, refs, handle: null_mut() }));
    let mut name = null_mut();
    napi_create_string_utf8(env, "tile-compile-recon".as_ptr() as *const _, 18, &mut name);
    napi_create_async_work(env, null_mut(), name, execute, complete, job as *mut c_void, &mut (*job).handle);
    napi_queue_async_work(env, (*job).handle);
    promise
}
