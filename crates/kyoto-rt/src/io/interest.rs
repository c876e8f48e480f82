//! [`Interest`]: which readiness a caller waits for.
use super::Ready;
use std::fmt;
use std::ops;

const READABLE: u8 = 0b001;
const WRITABLE: u8 = 0b010;
const PRIORITY: u8 = 0b100;

/// The kinds of readiness to wait for, as passed to `ready(interest)` or a resource's registration.
///
/// Combine with `|`: `Interest::READABLE | Interest::WRITABLE`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Wait until the resource is readable (or its read side closed, or it has an error).
    pub const READABLE: Interest = Interest(READABLE);
    /// Wait until the resource is writable (or its write side closed, or it has an error).
    pub const WRITABLE: Interest = Interest(WRITABLE);
    /// Wait for priority (out-of-band) data. Only Linux and Android report it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub const PRIORITY: Interest = Interest(PRIORITY);

    /// Whether the interest includes readable.
    pub const fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }

    /// Whether the interest includes writable.
    pub const fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }

    /// Whether the interest includes priority.
    pub const fn is_priority(self) -> bool {
        self.0 & PRIORITY != 0
    }

    /// Both interests together.
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    /// `self` without `other`, or `None` when nothing is left.
    pub const fn remove(self, other: Interest) -> Option<Interest> {
        let bits = self.0 & !other.0;
        if bits == 0 {
            None
        } else {
            Some(Interest(bits))
        }
    }

    pub(crate) fn to_mio(self) -> mio::Interest {
        let mut mio: Option<mio::Interest> = None;
        let mut add = |i: mio::Interest| {
            mio = Some(match mio {
                Some(m) => m.add(i),
                None => i,
            })
        };
        if self.is_readable() {
            add(mio::Interest::READABLE);
        }
        if self.is_writable() {
            add(mio::Interest::WRITABLE);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.is_priority() {
            add(mio::Interest::PRIORITY);
        }
        // An `Interest` is never empty (there is no constructor for one), so this is READABLE only
        // for the impossible case.
        mio.unwrap_or(mio::Interest::READABLE)
    }

    /// The readiness states that satisfy this interest. Errors satisfy every interest so the waiter
    /// runs its operation and sees the error.
    pub(crate) fn mask(self) -> Ready {
        let mut mask = Ready::ERROR;
        if self.is_readable() {
            mask |= Ready::READABLE | Ready::READ_CLOSED;
        }
        if self.is_writable() {
            mask |= Ready::WRITABLE | Ready::WRITE_CLOSED;
        }
        if self.is_priority() {
            mask |= Ready::PRIORITY | Ready::READ_CLOSED;
        }
        mask
    }
}

impl ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        self.add(rhs)
    }
}

impl ops::BitOrAssign for Interest {
    fn bitor_assign(&mut self, rhs: Interest) {
        *self = self.add(rhs);
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.is_readable() {
            parts.push("READABLE");
        }
        if self.is_writable() {
            parts.push("WRITABLE");
        }
        if self.is_priority() {
            parts.push("PRIORITY");
        }
        write!(f, "Interest({})", parts.join(" | "))
    }
}
