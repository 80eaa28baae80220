//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// The most bytes a batch's records may decompress to. A few compressed bytes can claim (or
/// expand to) gigabytes, so decompression stops and fails past this bound instead of
/// allocating whatever the data asks for.
pub const DECOMPRESSED_BYTES_MAX: usize = 128 << 20;

/// Reads a decompressing reader to its end, failing once it yields more than
/// [`DECOMPRESSED_BYTES_MAX`] bytes.
#[allow(dead_code)]
fn read_bounded<R: std::io::Read>(reader: R) -> Result<bytes::Bytes> {
    use std::io::Read as _;
    let mut out = Vec::new();
    reader
        .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        anyhow::bail!("records decompress to more than {DECOMPRESSED_BYTES_MAX} bytes");
    }
    Ok(out.into())
}

#[cfg(all(test, feature = "gzip"))]
mod bound_tests {
    use super::*;

    #[test]
    fn decompression_stops_past_the_bound() {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(DECOMPRESSED_BYTES_MAX >> 20) + 1 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = bytes::Bytes::from(e.finish().unwrap());
        assert!(bomb.len() < DECOMPRESSED_BYTES_MAX / 100, "a small input");
        let r = Gzip::decompress(&mut bomb.clone(), |_: &mut bytes::Bytes| Ok(()));
        assert!(r.is_err(), "over the bound");

        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"small").unwrap();
        let ok = bytes::Bytes::from(e.finish().unwrap());
        let out = Gzip::decompress(&mut ok.clone(), |b: &mut bytes::Bytes| Ok(b.clone())).unwrap();
        assert_eq!(&out[..], b"small");
    }
}

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}
