//! One copy of kyoto's stateful JS modules per env, however often its files are evaluated.
//!
//! The addon is loaded once per process, but its JS files can be evaluated more than once in one
//! thread: a test runner that gives every test file a fresh module registry (Jest), or code that
//! clears `require.cache`. The native side keeps one completion bridge, one socket data path and
//! one sync codec per env, each bound to the JS callbacks and arrays of the copy that set it up; a
//! later copy's own would be ignored, and its operations would never settle. So each JS module
//! that owns such state registers its exports here under a name when it is first evaluated, and a
//! later copy of it in the same env takes the registered exports instead of its own.
//!
//! Invariant: an entry is a strong reference that lives as long as the env. Node deletes an env's
//! references when it tears the env down, after its cleanup hooks: the hook registered with the
//! first entry forgets the map first, so no reference is used after it is gone.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::bridge::check;

thread_local! {
    /// The registered exports of this thread's env, by module name.
    static MODULES: RefCell<HashMap<String, RefPtr>> = RefCell::new(HashMap::new());
    /// Whether this env's cleanup hook is registered.
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// A `napi_ref` of this thread's env.
#[derive(Clone, Copy)]
struct RefPtr(sys::napi_ref);

extern "C" fn forget_modules(_: *mut c_void) {
    MODULES.with(|m| m.borrow_mut().clear());
    HOOKED.with(|h| h.set(false));
}

/// The exports registered as `name` in this env; registers `exports` first if there are none. A
/// module that gets back something other than its own `exports` is a later copy and must use it.
#[napi(
    ts_args_type = "name: string, exports: object",
    ts_return_type = "object"
)]
pub fn env_module<'env>(
    env: &'env Env,
    name: String,
    exports: Unknown<'env>,
) -> Result<Unknown<'env>> {
    let raw_env = env.raw();
    if exports.get_type()? != ValueType::Object {
        return Err(Error::new(
            Status::InvalidArg,
            "kyoto: exports must be an object",
        ));
    }
    if let Some(r) = MODULES.with(|m| m.borrow().get(&name).copied()) {
        let mut value = ptr::null_mut();
        // SAFETY: `r` is a strong reference of this env (entries are forgotten before the env's
        // references are deleted, see the module docs); `value` is a valid out-pointer.
        let status = unsafe { sys::napi_get_reference_value(raw_env, r.0, &mut value) };
        check(status, "napi_get_reference_value")?;
        // SAFETY: `value` is a live value of this env in the current callback scope.
        return unsafe { Unknown::from_napi_value(raw_env, value) };
    }
    if !HOOKED.with(|h| h.get()) {
        // SAFETY: `forget_modules` takes no data and is a valid `extern "C"` function.
        let status = unsafe {
            sys::napi_add_env_cleanup_hook(raw_env, Some(forget_modules), ptr::null_mut())
        };
        check(status, "napi_add_env_cleanup_hook")?;
        HOOKED.with(|h| h.set(true));
    }
    let mut r = ptr::null_mut();
    // SAFETY: live env; `exports` is a value of the current callback scope; `r` is an out-pointer.
    let status = unsafe { sys::napi_create_reference(raw_env, exports.raw(), 1, &mut r) };
    check(status, "napi_create_reference")?;
    MODULES.with(|m| m.borrow_mut().insert(name, RefPtr(r)));
    Ok(exports)
}
