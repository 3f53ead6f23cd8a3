use std::io;

use super::{Decoder, Encoder};

/// Decompress from the given source as if using a `Decoder`.
///
/// The input data must be in the zstd frame format.
pub fn decode_all<R: io::Read>(mut source: R) -> io::Result<Vec<u8>> {
    // canvass: sled 0.34 reads every page it loads from disk through here,
    // and a `Decoder` builds a fresh decompression context and its buffers
    // for each call. A whole single frame that says its size (what
    // `block::compress` writes) is decompressed at once with one context
    // per thread instead; anything else is streamed as before.
    let mut input = Vec::new();
    source.read_to_end(&mut input)?;
    if let Some(size) = single_frame_size(&input) {
        thread_local! {
            static DECOMPRESSOR: std::cell::RefCell<crate::block::Decompressor> =
                std::cell::RefCell::new(crate::block::Decompressor::new());
        }
        let out = DECOMPRESSOR.with(|d| match d.try_borrow_mut() {
            Ok(mut d) => d.decompress(&input, size),
            Err(_) => crate::block::Decompressor::new().decompress(&input, size),
        });
        if let Ok(out) = out {
            return Ok(out);
        }
    }
    let mut result = Vec::new();
    copy_decode(&input[..], &mut result)?;
    Ok(result)
}

/// The content size of `input` when it is exactly one zstd frame whose
/// header gives its size, and that size is plausible for one block.
fn single_frame_size(input: &[u8]) -> Option<usize> {
    const LARGEST: u64 = 64 << 20;
    let whole = zstd_safe::find_frame_compressed_size(input).ok()? == input.len();
    let size = zstd_safe::get_frame_content_size(input);
    // (CONTENTSIZE_UNKNOWN and _ERROR are u64::MAX and u64::MAX - 1.)
    (whole && size <= LARGEST).then(|| size as usize)
}

/// Decompress from the given source as if using a `Decoder`.
///
/// Decompressed data will be appended to `destination`.
pub fn copy_decode<R, W>(source: R, mut destination: W) -> io::Result<()>
where
    R: io::Read,
    W: io::Write,
{
    let mut decoder = Decoder::new(source)?;
    io::copy(&mut decoder, &mut destination)?;
    Ok(())
}

/// Compress all data from the given source as if using an `Encoder`.
///
/// Result will be in the zstd frame format.
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn encode_all<R: io::Read>(source: R, level: i32) -> io::Result<Vec<u8>> {
    let mut result = Vec::<u8>::new();
    copy_encode(source, &mut result, level)?;
    Ok(result)
}

/// Compress all data from the given source as if using an `Encoder`.
///
/// Compressed data will be appended to `destination`.
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn copy_encode<R, W>(
    mut source: R,
    destination: W,
    level: i32,
) -> io::Result<()>
where
    R: io::Read,
    W: io::Write,
{
    let mut encoder = Encoder::new(destination, level)?;
    io::copy(&mut source, &mut encoder)?;
    encoder.finish()?;
    Ok(())
}

#[cfg(tests)]
mod tests {}
