//! [`Ready`]: the readiness a resource reported, as a small bit set.
use std::fmt;
use std::ops;

const READABLE: u16 = 0b00_0001;
const WRITABLE: u16 = 0b00_0010;
const READ_CLOSED: u16 = 0b00_0100;
const WRITE_CLOSED: u16 = 0b00_1000;
const PRIORITY: u16 = 0b01_0000;
const ERROR: u16 = 0b10_0000;

/// A set of readiness states of an I/O resource, as returned by `ready(interest)`.
///
/// Readiness is cached until an operation in that direction returns `WouldBlock`. So the "closed"
/// states are in effect sticky: once the reactor has seen the peer close a direction, operations in
/// it return their end-of-stream result (never `WouldBlock`) and the state stays.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ready(u16);

impl Ready {
    /// No readiness.
    pub const EMPTY: Ready = Ready(0);
    /// Data (or a connection, or a datagram) can be read.
    pub const READABLE: Ready = Ready(READABLE);
    /// Data can be written.
    pub const WRITABLE: Ready = Ready(WRITABLE);
    /// The peer closed its writing side (or both): reads return end of stream.
    pub const READ_CLOSED: Ready = Ready(READ_CLOSED);
    /// The writing side is closed: writes fail.
    pub const WRITE_CLOSED: Ready = Ready(WRITE_CLOSED);
    /// Out-of-band (priority) data is available (Linux and Android only report it).
    pub const PRIORITY: Ready = Ready(PRIORITY);
    /// The socket has a pending error (for example an ICMP "port unreachable" on a connected UDP
    /// socket); the next operation returns it.
    pub const ERROR: Ready = Ready(ERROR);
    /// Every readiness state.
    pub const ALL: Ready =
        Ready(READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | PRIORITY | ERROR);

    /// The states a short read or write does not clear (their edge is reported only once).
    pub(crate) const CLOSED: Ready = Ready(READ_CLOSED | WRITE_CLOSED);

    pub(crate) fn from_mio(event: &mio::event::Event) -> Ready {
        let mut ready = Ready::EMPTY;
        if event.is_readable() {
            ready |= Ready::READABLE;
        }
        if event.is_writable() {
            ready |= Ready::WRITABLE;
        }
        if event.is_read_closed() {
            ready |= Ready::READ_CLOSED;
        }
        if event.is_write_closed() {
            ready |= Ready::WRITE_CLOSED;
        }
        if event.is_error() {
            ready |= Ready::ERROR;
        }
        if event.is_priority() {
            ready |= Ready::PRIORITY;
        }
        ready
    }

    /// Whether no state is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a read would not block: readable, or the read side is closed (reads return 0).
    pub fn is_readable(self) -> bool {
        self.0 & (READABLE | READ_CLOSED) != 0
    }

    /// Whether a write would not block: writable, or the write side is closed (writes fail).
    pub fn is_writable(self) -> bool {
        self.0 & (WRITABLE | WRITE_CLOSED) != 0
    }

    /// Whether the read side is closed.
    pub fn is_read_closed(self) -> bool {
        self.0 & READ_CLOSED != 0
    }

    /// Whether the write side is closed.
    pub fn is_write_closed(self) -> bool {
        self.0 & WRITE_CLOSED != 0
    }

    /// Whether priority data is available.
    pub fn is_priority(self) -> bool {
        self.0 & PRIORITY != 0
    }

    /// Whether the socket has a pending error.
    pub fn is_error(self) -> bool {
        self.0 & ERROR != 0
    }

    /// Whether every state of `other` is in `self`.
    pub fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) const fn as_usize(self) -> usize {
        self.0 as usize
    }

    pub(crate) const fn from_usize(bits: usize) -> Ready {
        Ready((bits as u16) & Ready::ALL.0)
    }
}

impl ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for Ready {
    type Output = Ready;
    fn bitand(self, rhs: Ready) -> Ready {
        Ready(self.0 & rhs.0)
    }
}

impl ops::Sub for Ready {
    type Output = Ready;
    fn sub(self, rhs: Ready) -> Ready {
        Ready(self.0 & !rhs.0)
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("readable", &(self.0 & READABLE != 0))
            .field("writable", &(self.0 & WRITABLE != 0))
            .field("read_closed", &self.is_read_closed())
            .field("write_closed", &self.is_write_closed())
            .field("priority", &self.is_priority())
            .field("error", &self.is_error())
            .finish()
    }
}
