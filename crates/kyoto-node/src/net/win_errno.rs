//! Win32/WinSock error codes → libuv error numbers, which are what Node's `util.getSystemErrorMap()`
//! (and so `systemError` in `lib/net/core.ts`) knows. The table is libuv's own: the host process
//! (`node.exe`) exports `uv_translate_sys_error`, found once with `GetProcAddress`.
use std::sync::OnceLock;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

type Translate = unsafe extern "C" fn(i32) -> i32;

/// libuv's `UV_EIO` on Windows: the answer when the host does not export the translator.
const UV_EIO: i32 = -4070;

fn translator() -> Option<Translate> {
    static TRANSLATE: OnceLock<Option<Translate>> = OnceLock::new();
    *TRANSLATE.get_or_init(|| {
        // SAFETY: `GetModuleHandleW(null)` returns the executable's module handle without taking
        // a reference (it lives as long as the process); the name is a NUL-terminated C string.
        let f = unsafe {
            let exe = GetModuleHandleW(std::ptr::null());
            if exe.is_null() {
                return None;
            }
            GetProcAddress(exe, c"uv_translate_sys_error".as_ptr().cast())
        }?;
        // SAFETY: libuv declares `int uv_translate_sys_error(int sys_errno)` with the C calling
        // convention, which is `Translate`; the pointer came from the export of that name.
        Some(unsafe { std::mem::transmute::<unsafe extern "system" fn() -> isize, Translate>(f) })
    })
}

/// The positive libuv error number for the OS error `code` (0 stays 0).
pub fn uv_errno(code: i32) -> i32 {
    if code == 0 {
        return 0;
    }
    let uv = match translator() {
        // SAFETY: a plain C function of one int (see `translator`), safe for any input.
        Some(f) => unsafe { f(code) },
        None => UV_EIO,
    };
    -uv
}
