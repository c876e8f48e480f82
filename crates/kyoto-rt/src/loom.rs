//! The one place that chooses between `std` and `loom` synchronisation types.
//!
//! Code in this crate never names `std::sync::atomic`, `std::sync::{Mutex, Condvar}`, `std::thread`
//! or `std::cell::UnsafeCell` directly; it imports them from here, so that building with
//! `RUSTFLAGS="--cfg loom"` swaps every one of them for loom's instrumented version and the loom models
//! in `tests/loom_*.rs` explore the real code.
#![allow(unused_imports, dead_code)]

#[cfg(not(loom))]
mod imp {
    pub(crate) mod sync {
        pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

        pub(crate) mod atomic {
            pub(crate) use std::sync::atomic::{
                fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{current, panicking, spawn, yield_now, Builder, JoinHandle};
    }

    pub(crate) mod cell {
        /// `std::cell::UnsafeCell` with loom's closure-based access API, so callers look the same
        /// under both configurations.
        #[derive(Debug)]
        pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

        impl<T> UnsafeCell<T> {
            pub(crate) const fn new(data: T) -> UnsafeCell<T> {
                UnsafeCell(std::cell::UnsafeCell::new(data))
            }

            pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
                f(self.0.get())
            }

            pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
                f(self.0.get())
            }
        }
    }

    /// A spin hint; loom replaces it with a yield so models make progress.
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) mod sync {
        pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
        pub(crate) use std::sync::Weak;

        pub(crate) mod atomic {
            pub(crate) use loom::sync::atomic::{
                fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{current, spawn, yield_now, Builder, JoinHandle};
        pub(crate) use std::thread::panicking;
    }

    pub(crate) mod cell {
        pub(crate) use loom::cell::UnsafeCell;
    }

    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;
