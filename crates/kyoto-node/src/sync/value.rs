//! Values crossing threads: what a channel stores between a send in one env and a receive in
//! another. Primitives are stored as Rust values; the bytes of Buffers, typed arrays, DataViews and
//! ArrayBuffers are copied once out of the sender's memory (whose ArrayBuffer is then detached when
//! it is the sole owner of that memory) and handed to the receiver as an external buffer over the
//! same allocation (no second copy); anything else arrives here already structured-cloned
//! (`v8.serialize`) by the TypeScript layer and is revived by its `v8.deserialize` callback.
use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;

use napi::sys;

// How the JS layer tags a value it passes in: 0 = plain (primitives, typed arrays, ArrayBuffers).
/// The value is a Buffer holding `v8.serialize` output.
pub const TAG_CLONED: u32 = 1;
/// The value is a Node `Buffer` (moved, arrives as a Buffer).
pub const TAG_BUFFER: u32 = 2;

/// The shape moved bytes are revived as.
#[derive(Clone, Copy)]
pub enum BytesKind {
    Buffer,
    ArrayBuffer,
    Typed(sys::napi_typedarray_type, usize),
    DataView,
}

/// A value stored in a shared object.
#[derive(Clone)]
pub enum Msg {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Bytes(Block, BytesKind),
    Cloned(Block),
}

/// Moved bytes: an allocation that goes back to [`pool`] when dropped (by a receiver's collected
/// Buffer, or with its message), so the next send copies into memory that is already mapped.
pub struct Block(Vec<u8>);

impl Block {
    /// A block holding a copy of `src`.
    pub fn copy_of(src: &[u8]) -> Block {
        let mut v = pool::take(src.len());
        v.extend_from_slice(src);
        Block(v)
    }

    fn as_slice(&self) -> &[u8] {
        &self.0
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for Block {
    fn clone(&self) -> Block {
        Block::copy_of(&self.0)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        pool::put(std::mem::take(&mut self.0));
    }
}

/// Recycled allocations for moved bytes. Writing into freshly mapped memory costs more than the
/// copy itself (a page fault and a page clear per 4 KiB), and the allocator hands pages back to the
/// kernel when a receiver's garbage collection frees many buffers at once (V8 collects external
/// memory about every 64 MiB), so the next sends would write into fresh pages again. Blocks of
/// 4 KiB to 4 MiB are therefore kept for reuse, in size classes (four per doubling, at most 25 %
/// slack), up to [`pool::KEEP`] bytes in all, and only while bytes are being moved: once nothing
/// has been taken for [`pool::IDLE`], a block coming back empties the pool instead.
pub mod pool {
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    const MIN: usize = 4096;
    const MAX: usize = 4 << 20;
    const CLASSES: usize = 44;
    /// The most bytes kept for reuse across all size classes (one V8 external-memory GC cycle).
    pub const KEEP: usize = 64 << 20;
    /// How long after the last send the pool keeps what comes back.
    pub const IDLE: Duration = Duration::from_secs(1);

    struct Pool {
        free: [Vec<Vec<u8>>; CLASSES],
        bytes: usize,
        last_take: Option<Instant>,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        free: [const { Vec::new() }; CLASSES],
        bytes: 0,
        last_take: None,
    });

    fn lock() -> MutexGuard<'static, Pool> {
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The size class of `len` bytes: `(index, block capacity)`, or `None` outside the pooled range.
    pub fn class(len: usize) -> Option<(usize, usize)> {
        if !(MIN..=MAX).contains(&len) {
            return None;
        }
        // 2^e < len <= 2^(e+1), e >= 11; classes are multiples of 2^(e-2) in that range.
        let e = (usize::BITS - 1 - (len - 1).leading_zeros()) as usize;
        let step = 1usize << (e - 2);
        let cap = (len + step - 1) & !(step - 1);
        let k = cap >> (e - 2); // 5..=8
        Some(((e - 11) * 4 + k - 5, cap))
    }

    /// An empty vector with room for `len` bytes (a recycled block when one is free).
    pub fn take(len: usize) -> Vec<u8> {
        let Some((i, cap)) = class(len) else {
            return Vec::with_capacity(len);
        };
        {
            let mut p = lock();
            p.last_take = Some(Instant::now());
            if let Some(v) = p.free[i].pop() {
                p.bytes -= cap;
                return v;
            }
        }
        Vec::with_capacity(cap)
    }

    /// Gives a block back: kept if it is of a pooled size, the pool has room and bytes were sent
    /// recently; otherwise freed (and, when sending has stopped, the whole pool with it).
    pub fn put(mut v: Vec<u8>) {
        let cap = v.capacity();
        let Some((i, c)) = class(cap) else {
            return;
        };
        if c != cap {
            return;
        }
        let stale = {
            let mut p = lock();
            if p.last_take.is_some_and(|t| t.elapsed() < IDLE) {
                if p.bytes + cap <= KEEP {
                    p.bytes += cap;
                    v.clear();
                    p.free[i].push(v);
                }
                return;
            }
            p.bytes = 0;
            std::mem::replace(&mut p.free, [const { Vec::new() }; CLASSES])
        };
        // Freed outside the lock.
        drop(stale);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn classes_cover_the_range_with_at_most_a_quarter_of_slack() {
            assert_eq!(class(MIN - 1), None);
            assert_eq!(class(MAX + 1), None);
            assert_eq!(class(MIN), Some((3, 4096)));
            assert_eq!(class(MIN + 1), Some((4, 5120)));
            assert_eq!(class(65536), Some((19, 65536)));
            assert_eq!(class(MAX), Some((CLASSES - 1, MAX)));
            let mut last = (0, 0);
            for len in (MIN..=MAX).step_by(97) {
                let (i, cap) = class(len).unwrap();
                assert!(
                    i < CLASSES && cap >= len && cap - len <= len / 4,
                    "{len} -> {cap}"
                );
                assert_eq!(
                    class(cap),
                    Some((i, cap)),
                    "a block's capacity maps to its class"
                );
                assert!((i, cap) >= last);
                last = (i, cap);
            }
        }

        #[test]
        fn a_returned_block_is_reused_while_sending_and_dropped_once_idle() {
            let v = take(70_000);
            let (p, cap) = (v.as_ptr(), v.capacity());
            assert_eq!(cap, class(70_000).unwrap().1);
            put(v);
            let w = take(69_000);
            assert_eq!(w.as_ptr(), p);
            assert!(w.is_empty());
            put(w);
            lock().last_take = Instant::now().checked_sub(IDLE * 2);
            put(take(5000)); // (take refreshed the clock: kept)
            lock().last_take = Instant::now().checked_sub(IDLE * 2);
            put(Vec::with_capacity(cap));
            let p = lock();
            assert_eq!(p.bytes, 0);
            assert!(p.free.iter().all(|c| c.is_empty()));
        }
    }
}

struct EnvRefs {
    deserialize: sys::napi_ref,
    empty: sys::napi_ref,
    closed: sys::napi_ref,
    /// Batch receives: a `Uint8Array` of kinds, a `Float64Array` of numbers (same length) and an
    /// array for the other values (see [`write_batch`]).
    kinds: sys::napi_ref,
    nums: sys::napi_ref,
    others: sys::napi_ref,
}

thread_local! {
    static REFS: RefCell<Option<EnvRefs>> = const { RefCell::new(None) };
}

fn err(msg: &str) -> napi::Error {
    napi::Error::new(napi::Status::InvalidArg, msg.to_owned())
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::GenericFailure,
            format!("kyoto/sync: {what} failed (napi status {status})"),
        ))
    }
}

/// Stores this env's `deserialize` function, the two sentinels `tryRecv` returns and the batch
/// arrays (`kinds`: Uint8Array, `nums`: Float64Array of the same length, `others`: Array).
pub fn init(env: sys::napi_env, vals: [sys::napi_value; 6]) -> napi::Result<()> {
    if REFS.with(|r| r.borrow().is_some()) {
        return Ok(());
    }
    let (kl, _) = typed(env, vals[3], sys::TypedarrayType::uint8_array)?;
    let (nl, _) = typed(env, vals[4], sys::TypedarrayType::float64_array)?;
    if kl == 0 || kl != nl {
        return Err(err(
            "kyoto/sync: batch arrays must be non-empty and of equal length",
        ));
    }
    let mut refs = [ptr::null_mut(); 6];
    for (slot, v) in refs.iter_mut().zip(vals) {
        // SAFETY: live env and a value of the current callback scope; the reference lives as long
        // as the env (Node reclaims it at env teardown).
        let st = unsafe { sys::napi_create_reference(env, v, 1, slot) };
        check(st, "napi_create_reference")?;
    }
    REFS.with(|r| {
        *r.borrow_mut() = Some(EnvRefs {
            deserialize: refs[0],
            empty: refs[1],
            closed: refs[2],
            kinds: refs[3],
            nums: refs[4],
            others: refs[5],
        })
    });
    Ok(())
}

fn get_ref(
    env: sys::napi_env,
    pick: fn(&EnvRefs) -> sys::napi_ref,
) -> napi::Result<sys::napi_value> {
    let r = REFS
        .with(|r| r.borrow().as_ref().map(pick))
        .ok_or_else(|| err("kyoto/sync is not initialised in this thread"))?;
    let mut v = ptr::null_mut();
    // SAFETY: `r` is a live reference created in `init` for this env.
    let st = unsafe { sys::napi_get_reference_value(env, r, &mut v) };
    check(st, "napi_get_reference_value")?;
    Ok(v)
}

/// A typed array's element count and data pointer, checked to be of kind `want`.
fn typed(
    env: sys::napi_env,
    v: sys::napi_value,
    want: sys::napi_typedarray_type,
) -> napi::Result<(usize, *mut c_void)> {
    let mut is = false;
    // SAFETY: live env and value.
    let st = unsafe { sys::napi_is_typedarray(env, v, &mut is) };
    check(st, "napi_is_typedarray")?;
    if !is {
        return Err(err("kyoto/sync: expected a typed array"));
    }
    let (mut ty, mut len, mut data, mut ab, mut off) =
        (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
    // SAFETY: `v` is a typed array; all out-pointers are valid.
    let st = unsafe {
        sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off)
    };
    check(st, "napi_get_typedarray_info")?;
    if ty != want {
        return Err(err("kyoto/sync: wrong typed array kind"));
    }
    Ok((len, data))
}

/// The most messages one [`write_batch`] can hold in this env.
pub fn batch_cap(env: sys::napi_env) -> napi::Result<usize> {
    let k = get_ref(env, |r| r.kinds)?;
    Ok(typed(env, k, sys::TypedarrayType::uint8_array)?.0)
}

/// Writes `msgs` into this env's batch arrays: per message a kind (0 number, 1 undefined, 2 null,
/// 3 false, 4 true, 5 the next element of `others`) and, for numbers, the value. Every message is
/// converted even if one fails, so no moved bytes are lost unaccounted. `msgs.len()` must not
/// exceed [`batch_cap`].
pub fn write_batch(env: sys::napi_env, msgs: Vec<Msg>) -> napi::Result<usize> {
    let kv = get_ref(env, |r| r.kinds)?;
    let nv = get_ref(env, |r| r.nums)?;
    let ov = get_ref(env, |r| r.others)?;
    let mut first_err = None;
    let mut n_others = 0u32;
    let count = msgs.len();
    let read = || -> napi::Result<(usize, *mut u8, *mut f64)> {
        let (kl, kp) = typed(env, kv, sys::TypedarrayType::uint8_array)?;
        let (nl, np) = typed(env, nv, sys::TypedarrayType::float64_array)?;
        Ok((kl.min(nl), kp.cast(), np.cast()))
    };
    let (mut len, mut kp, mut np) = read()?;
    for (i, m) in msgs.into_iter().enumerate() {
        let (kind, num) = match m {
            Msg::Num(x) => (0u8, x),
            Msg::Undefined => (1, 0.0),
            Msg::Null => (2, 0.0),
            Msg::Bool(false) => (3, 0.0),
            Msg::Bool(true) => (4, 0.0),
            other => {
                match other.into_js(env) {
                    Ok(v) => {
                        // SAFETY: live env; `ov` is the env's others array.
                        let st = unsafe { sys::napi_set_element(env, ov, n_others, v) };
                        check(st, "napi_set_element")?;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
                n_others += 1;
                // A deserialize callback ran JS: read the arrays' data again (JS cannot reach
                // these module-private arrays, but nothing here relies on that).
                (len, kp, np) = read()?;
                (5, 0.0)
            }
        };
        if i >= len {
            return Err(err("kyoto/sync: batch larger than the batch arrays"));
        }
        // SAFETY: `i < len`, the length of both arrays; the pointers were read from the live typed
        // arrays after the last point where JS could run.
        unsafe {
            *kp.add(i) = kind;
            *np.add(i) = num;
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(count),
    }
}

/// The `EMPTY` sentinel of this env.
pub fn empty(env: sys::napi_env) -> napi::Result<sys::napi_value> {
    get_ref(env, |r| r.empty)
}

/// The `CLOSED` sentinel of this env.
pub fn closed(env: sys::napi_env) -> napi::Result<sys::napi_value> {
    get_ref(env, |r| r.closed)
}

fn type_of(env: sys::napi_env, v: sys::napi_value) -> napi::Result<sys::napi_valuetype> {
    let mut t = 0;
    // SAFETY: live env and value.
    check(unsafe { sys::napi_typeof(env, v, &mut t) }, "napi_typeof")?;
    Ok(t)
}

/// Copies `len` bytes at `data` (null allowed when `len == 0`).
fn copy_bytes(data: *const c_void, len: usize) -> Block {
    if len == 0 || data.is_null() {
        return Block(Vec::new());
    }
    // SAFETY: napi reported `data` as the start of `len` readable bytes of a live backing store;
    // nothing runs JS (which could detach or shrink it) while we copy.
    Block::copy_of(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

/// Detaches `ab` if these bytes were all of it (never a pooled Buffer's shared slab, never a
/// SharedArrayBuffer: napi refuses those and we ignore the refusal).
fn detach_if_sole(env: sys::napi_env, ab: sys::napi_value, offset: usize, len: usize) {
    if ab.is_null() || offset != 0 {
        return;
    }
    let mut data = ptr::null_mut();
    let mut ab_len = 0usize;
    // SAFETY: live env; `ab` is the ArrayBuffer napi returned for the view.
    let st = unsafe { sys::napi_get_arraybuffer_info(env, ab, &mut data, &mut ab_len) };
    if st == sys::Status::napi_ok && ab_len == len && len > 0 {
        // SAFETY: live env and ArrayBuffer; detaching a non-detachable buffer only returns an error.
        unsafe { sys::napi_detach_arraybuffer(env, ab) };
    }
}

/// Converts a JS value (tagged by the TS layer) into a [`Msg`]. Moves byte containers.
pub fn from_js(env: sys::napi_env, v: sys::napi_value, tag: u32) -> napi::Result<Msg> {
    let t = type_of(env, v)?;
    match t {
        sys::ValueType::napi_undefined => return Ok(Msg::Undefined),
        sys::ValueType::napi_null => return Ok(Msg::Null),
        sys::ValueType::napi_boolean => {
            let mut b = false;
            // SAFETY: live env; `v` is a boolean.
            let st = unsafe { sys::napi_get_value_bool(env, v, &mut b) };
            check(st, "napi_get_value_bool")?;
            return Ok(Msg::Bool(b));
        }
        sys::ValueType::napi_number => {
            let mut n = 0f64;
            // SAFETY: live env; `v` is a number.
            let st = unsafe { sys::napi_get_value_double(env, v, &mut n) };
            check(st, "napi_get_value_double")?;
            return Ok(Msg::Num(n));
        }
        sys::ValueType::napi_string => {
            let mut len = 0usize;
            // SAFETY: live env; `v` is a string; a null buffer asks for the length.
            let st =
                unsafe { sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len) };
            check(st, "napi_get_value_string_utf8")?;
            let mut buf = vec![0u8; len + 1];
            let mut written = 0usize;
            // SAFETY: `buf` has room for `len` bytes plus the terminator napi writes.
            let st = unsafe {
                sys::napi_get_value_string_utf8(
                    env,
                    v,
                    buf.as_mut_ptr().cast(),
                    len + 1,
                    &mut written,
                )
            };
            check(st, "napi_get_value_string_utf8")?;
            buf.truncate(written);
            // napi writes UTF-8 (lone surrogates become U+FFFD), so this cannot fail; be defensive.
            let s = String::from_utf8(buf).map_err(|_| err("string is not valid UTF-8"))?;
            return Ok(Msg::Str(s));
        }
        sys::ValueType::napi_object => {}
        _ => {
            return Err(err(
                "kyoto/sync: this value must be structured-cloned first",
            ))
        }
    }
    let mut is = false;
    // SAFETY: live env and value (for each of the predicates below).
    let st = unsafe { sys::napi_is_typedarray(env, v, &mut is) };
    check(st, "napi_is_typedarray")?;
    if is {
        // Node leaves the kind unwritten for a typed array it has no napi kind for (Float16Array
        // before `napi_float16_array`): the sentinel tells that apart from an Int8Array.
        let mut ty = UNKNOWN_KIND;
        let mut len = 0usize;
        let mut data = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let mut off = 0usize;
        // SAFETY: `v` is a typed array; all out-pointers are valid.
        let st = unsafe {
            sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off)
        };
        check(st, "napi_get_typedarray_info")?;
        let size = elem_size(ty).ok_or_else(|| {
            err("kyoto/sync: this kind of typed array cannot be moved; send a copy of its bytes")
        })?;
        let bytes = len
            .checked_mul(size)
            .ok_or_else(|| err("typed array too large"))?;
        let vec = copy_bytes(data, bytes);
        if tag == TAG_CLONED {
            return Ok(Msg::Cloned(vec));
        }
        detach_if_sole(env, ab, off, bytes);
        let kind = if tag == TAG_BUFFER {
            BytesKind::Buffer
        } else {
            BytesKind::Typed(ty, size)
        };
        return Ok(Msg::Bytes(vec, kind));
    }
    // SAFETY: as above.
    let st = unsafe { sys::napi_is_dataview(env, v, &mut is) };
    check(st, "napi_is_dataview")?;
    if is {
        let mut len = 0usize;
        let mut data = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let mut off = 0usize;
        // SAFETY: `v` is a DataView; all out-pointers are valid.
        let st =
            unsafe { sys::napi_get_dataview_info(env, v, &mut len, &mut data, &mut ab, &mut off) };
        check(st, "napi_get_dataview_info")?;
        let vec = copy_bytes(data, len);
        detach_if_sole(env, ab, off, len);
        return Ok(Msg::Bytes(vec, BytesKind::DataView));
    }
    // SAFETY: as above.
    let st = unsafe { sys::napi_is_arraybuffer(env, v, &mut is) };
    check(st, "napi_is_arraybuffer")?;
    if is {
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: `v` is an ArrayBuffer.
        let st = unsafe { sys::napi_get_arraybuffer_info(env, v, &mut data, &mut len) };
        check(st, "napi_get_arraybuffer_info")?;
        let vec = copy_bytes(data, len);
        detach_if_sole(env, v, 0, len);
        return Ok(Msg::Bytes(vec, BytesKind::ArrayBuffer));
    }
    Err(err(
        "kyoto/sync: this value must be structured-cloned first",
    ))
}

/// What `napi_get_typedarray_info` is given to write the kind into: no napi kind has this value.
const UNKNOWN_KIND: sys::napi_typedarray_type = -1;

/// `napi_float16_array` (Node-API's kind of `Float16Array`, newer than these bindings).
const FLOAT16_KIND: sys::napi_typedarray_type = 11;

/// Bytes per element of a typed array of kind `ty`; `None` for a kind this code does not know,
/// whose length in bytes it therefore cannot tell (guessing would read past the array's memory).
fn elem_size(ty: sys::napi_typedarray_type) -> Option<usize> {
    use sys::TypedarrayType as T;
    match ty {
        T::int8_array | T::uint8_array | T::uint8_clamped_array => Some(1),
        T::int16_array | T::uint16_array | FLOAT16_KIND => Some(2),
        T::int32_array | T::uint32_array | T::float32_array => Some(4),
        T::float64_array | T::bigint64_array | T::biguint64_array => Some(8),
        _ => None,
    }
}

unsafe extern "C" fn free_vec(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Block>` leaked in `external`; V8 finalizes an external buffer
    // exactly once.
    drop(unsafe { Box::from_raw(hint as *mut Block) });
}

/// Creates an external ArrayBuffer (or Buffer) over `vec`'s allocation, without copying.
fn external(env: sys::napi_env, vec: Block, buffer: bool) -> napi::Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    if vec.is_empty() {
        let mut data = ptr::null_mut();
        // SAFETY: live env; zero-length allocations need no backing memory.
        let st = unsafe {
            if buffer {
                sys::napi_create_buffer(env, 0, &mut data, &mut out)
            } else {
                sys::napi_create_arraybuffer(env, 0, &mut data, &mut out)
            }
        };
        check(st, "napi_create_buffer")?;
        return Ok(out);
    }
    let mut boxed = Box::new(vec);
    let data = boxed.0.as_mut_ptr();
    let len = boxed.len();
    let hint = Box::into_raw(boxed);
    // SAFETY: `data` points to `len` bytes owned by `*hint`, which stays alive (and unmoved: the
    // Vec is never touched again) until `free_vec` reclaims it when V8 collects the buffer.
    let st = unsafe {
        if buffer {
            sys::napi_create_external_buffer(
                env,
                len,
                data.cast(),
                Some(free_vec),
                hint.cast(),
                &mut out,
            )
        } else {
            sys::napi_create_external_arraybuffer(
                env,
                data.cast(),
                len,
                Some(free_vec),
                hint.cast(),
                &mut out,
            )
        }
    };
    if st != sys::Status::napi_ok {
        // SAFETY: creation failed, so the finalizer will never run: reclaim the box here.
        let back = unsafe { Box::from_raw(hint) };
        // Some embedders forbid external buffers: fall back to one copy.
        return copy_out(env, back.as_slice(), buffer);
    }
    Ok(out)
}

fn copy_out(env: sys::napi_env, bytes: &[u8], buffer: bool) -> napi::Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    let mut data = ptr::null_mut();
    // SAFETY: live env; `data` receives a fresh allocation of `bytes.len()` bytes which we fill.
    unsafe {
        if buffer {
            check(
                sys::napi_create_buffer(env, bytes.len(), &mut data, &mut out),
                "napi_create_buffer",
            )?;
        } else {
            check(
                sys::napi_create_arraybuffer(env, bytes.len(), &mut data, &mut out),
                "napi_create_arraybuffer",
            )?;
        }
        if !bytes.is_empty() {
            ptr::copy_nonoverlapping(bytes.as_ptr(), data as *mut u8, bytes.len());
        }
    }
    Ok(out)
}

fn bytes_to_js(
    env: sys::napi_env,
    data: BytesSrc<'_>,
    kind: BytesKind,
) -> napi::Result<sys::napi_value> {
    let len = data.len();
    let make = |buffer: bool| match data {
        BytesSrc::Owned(v) => external(env, v, buffer),
        BytesSrc::Borrowed(b) => copy_out(env, b, buffer),
    };
    match kind {
        BytesKind::Buffer => make(true),
        BytesKind::ArrayBuffer => make(false),
        BytesKind::Typed(ty, size) => {
            let ab = make(false)?;
            let mut out = ptr::null_mut();
            // SAFETY: live env; `ab` holds `len` bytes, a multiple of the element size.
            let st =
                unsafe { sys::napi_create_typedarray(env, ty, len / size.max(1), ab, 0, &mut out) };
            check(st, "napi_create_typedarray")?;
            Ok(out)
        }
        BytesKind::DataView => {
            let ab = make(false)?;
            let mut out = ptr::null_mut();
            // SAFETY: live env; `ab` holds `len` bytes.
            let st = unsafe { sys::napi_create_dataview(env, len, ab, 0, &mut out) };
            check(st, "napi_create_dataview")?;
            Ok(out)
        }
    }
}

enum BytesSrc<'a> {
    Owned(Block),
    Borrowed(&'a [u8]),
}

impl BytesSrc<'_> {
    fn len(&self) -> usize {
        match self {
            BytesSrc::Owned(v) => v.len(),
            BytesSrc::Borrowed(b) => b.len(),
        }
    }
}

fn deserialize(env: sys::napi_env, buf: sys::napi_value) -> napi::Result<sys::napi_value> {
    let f = get_ref(env, |r| r.deserialize)?;
    let mut undefined = ptr::null_mut();
    let mut out = ptr::null_mut();
    // SAFETY: live env; `f` is the deserialize function stored at init; one valid argument.
    let st = unsafe {
        sys::napi_get_undefined(env, &mut undefined);
        sys::napi_call_function(env, undefined, f, 1, &buf, &mut out)
    };
    if st == sys::Status::napi_pending_exception {
        // Leave the exception pending: napi-rs rethrows it when the native call returns.
        return Err(napi::Error::new(
            napi::Status::PendingException,
            "deserialize threw".to_owned(),
        ));
    }
    check(st, "deserialize")?;
    Ok(out)
}

fn prim_to_js(env: sys::napi_env, m: &Msg) -> napi::Result<Option<sys::napi_value>> {
    let mut out = ptr::null_mut();
    // SAFETY: live env in a callback scope; strings are valid UTF-8 of the given length.
    let st = unsafe {
        match m {
            Msg::Undefined => sys::napi_get_undefined(env, &mut out),
            Msg::Null => sys::napi_get_null(env, &mut out),
            Msg::Bool(b) => sys::napi_get_boolean(env, *b, &mut out),
            Msg::Num(n) => sys::napi_create_double(env, *n, &mut out),
            Msg::Str(s) => {
                sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out)
            }
            _ => return Ok(None),
        }
    };
    check(st, "create value")?;
    Ok(Some(out))
}

impl Msg {
    /// Gives the value to JS, moving any bytes (no copy).
    pub fn into_js(self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        if let Some(v) = prim_to_js(env, &self)? {
            return Ok(v);
        }
        match self {
            Msg::Bytes(v, kind) => bytes_to_js(env, BytesSrc::Owned(v), kind),
            Msg::Cloned(v) => {
                let buf = external(env, v, true)?;
                deserialize(env, buf)
            }
            _ => unreachable!("primitives handled above"),
        }
    }

    /// Gives JS a copy of the value (the stored one stays).
    pub fn to_js(&self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        if let Some(v) = prim_to_js(env, self)? {
            return Ok(v);
        }
        match self {
            Msg::Bytes(v, kind) => bytes_to_js(env, BytesSrc::Borrowed(v.as_slice()), *kind),
            Msg::Cloned(v) => {
                let buf = copy_out(env, v.as_slice(), true)?;
                deserialize(env, buf)
            }
            _ => unreachable!("primitives handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_array_is_copied_by_its_real_byte_length_and_an_unknown_kind_is_refused() {
        use sys::TypedarrayType as T;
        let known = [
            (T::int8_array, 1),
            (T::uint8_array, 1),
            (T::uint8_clamped_array, 1),
            (T::int16_array, 2),
            (T::uint16_array, 2),
            (T::int32_array, 4),
            (T::uint32_array, 4),
            (T::float32_array, 4),
            (T::float64_array, 8),
            (T::bigint64_array, 8),
            (T::biguint64_array, 8),
            // Node >= 24 reports a Float16Array as kind 11: two bytes an element, not eight.
            (FLOAT16_KIND, 2),
        ];
        for (ty, size) in known {
            assert_eq!(elem_size(ty), Some(size), "kind {ty}");
        }
        // A kind Node left unwritten, or one added after this code: its size is unknown.
        assert_eq!(elem_size(UNKNOWN_KIND), None);
        assert_eq!(elem_size(12), None);
    }
}
