//! Helpers over the [`AsyncRead`](super::AsyncRead)/[`AsyncWrite`](super::AsyncWrite) traits:
//! extension methods (`read`, `write_all`, ...) and the `copy` functions.
mod copy;
mod copy_bidirectional;
mod read;
mod write;

pub use copy::copy;
pub use copy_bidirectional::{copy_bidirectional, copy_bidirectional_with_sizes};
pub use read::{AsyncReadExt, Read, ReadExact, ReadToEnd, ReadVectored};
pub use write::{AsyncWriteExt, Flush, Shutdown, Write, WriteAll, WriteVectored};

/// The buffer size `copy` and `copy_bidirectional` use: 8 KiB, as Tokio.
pub const DEFAULT_BUF_SIZE: usize = 8 * 1024;

mod buf_read;
mod buf_reader;
pub mod codec;
mod duplex;
mod framed;
mod lines;

pub use buf_read::{AsyncBufReadExt, ReadLine, ReadUntil};
pub use buf_reader::BufReader;
pub use duplex::{duplex, DuplexReadHalf, DuplexStream, DuplexWriteHalf};
pub use framed::{Framed, FramedParts, FramedRead, FramedWrite};
pub use lines::Lines;
