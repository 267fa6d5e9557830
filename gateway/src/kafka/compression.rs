//! Bounded decompression of Kafka record data: gzip, snappy (raw or in
//! the xerial framing Java clients write), lz4 (frame format) and zstd.
//!
//! Every decoder stops at `bytes_max` output bytes, so a small compressed
//! batch cannot make the node allocate without bound (a "decompression
//! bomb"); zstd frames are also refused before decoding when their window
//! is larger than `bytes_max`, since the decoder reserves the window first.

use std::io::Read;

use super::records::RecordsError;

/// A Kafka compression codec (the low three bits of a batch's attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy, raw or xerial-framed.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// The codec of attribute bits `bits` (0..=7), if known.
    pub fn from_bits(bits: u8) -> Option<Codec> {
        match bits {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Its name, as Kafka configurations spell it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The xerial snappy stream header (magic, version 1, compatible version 1).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// The zstd frame magic number, little-endian.
const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Decompresses `input` with `codec`, producing at most `bytes_max` bytes.
pub fn decompress(codec: Codec, input: &[u8], bytes_max: usize) -> Result<Vec<u8>, RecordsError> {
    let failed =
        |error: std::io::Error| RecordsError::Corrupt(format!("{}: {error}", codec.name()));
    let output = match codec {
        Codec::None => input.to_vec(),
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), bytes_max, codec)
            .map_err(failed)?,
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), bytes_max, codec)
            .map_err(failed)?,
        Codec::Snappy => snappy(input, bytes_max)?,
        Codec::Zstd => zstd(input, bytes_max)?,
    };
    if output.len() > bytes_max {
        return Err(too_large(codec, bytes_max));
    }
    Ok(output)
}

fn too_large(codec: Codec, bytes_max: usize) -> RecordsError {
    RecordsError::TooLarge(format!(
        "{} data decompresses to more than {bytes_max} bytes",
        codec.name()
    ))
}

/// Reads `reader` to its end, or to one byte past `bytes_max` (which the
/// caller then refuses).
fn read_bounded(reader: impl Read, bytes_max: usize, codec: Codec) -> std::io::Result<Vec<u8>> {
    let mut output = Vec::new();
    reader.take(bytes_max as u64 + 1).read_to_end(&mut output)?;
    if output.len() > bytes_max {
        return Err(std::io::Error::other(format!(
            "more than {bytes_max} bytes ({} limit)",
            codec.name()
        )));
    }
    Ok(output)
}

fn snappy(input: &[u8], bytes_max: usize) -> Result<Vec<u8>, RecordsError> {
    if input.len() >= XERIAL_HEADER_BYTES && input.starts_with(XERIAL_MAGIC) {
        let mut output = Vec::new();
        let mut rest = &input[XERIAL_HEADER_BYTES..];
        // Every block takes at least its 4-byte length, which bounds the loop.
        while !rest.is_empty() {
            let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                return Err(RecordsError::Corrupt(
                    "snappy: truncated block length".into(),
                ));
            };
            let length = u32::from_be_bytes(*length) as usize;
            let block = tail
                .get(..length)
                .ok_or_else(|| RecordsError::Corrupt("snappy: truncated block".into()))?;
            let decoded = snappy_raw(block, bytes_max - output.len())?;
            output.extend_from_slice(&decoded);
            rest = &tail[length..];
        }
        Ok(output)
    } else {
        snappy_raw(input, bytes_max)
    }
}

fn snappy_raw(input: &[u8], bytes_max: usize) -> Result<Vec<u8>, RecordsError> {
    let corrupt = |error: snap::Error| RecordsError::Corrupt(format!("snappy: {error}"));
    // The length is checked before the output is allocated.
    let length = snap::raw::decompress_len(input).map_err(corrupt)?;
    if length > bytes_max {
        return Err(too_large(Codec::Snappy, bytes_max));
    }
    snap::raw::Decoder::new()
        .decompress_vec(input)
        .map_err(corrupt)
}

fn zstd(input: &[u8], bytes_max: usize) -> Result<Vec<u8>, RecordsError> {
    let mut output = Vec::new();
    let mut rest = input;
    // Each frame consumes at least its header, which bounds the loop.
    while !rest.is_empty() {
        let window = zstd_window_bytes(rest)?;
        if window > bytes_max.max(1 << 20) as u64 {
            return Err(RecordsError::TooLarge(format!(
                "zstd frame window of {window} bytes is larger than the {bytes_max}-byte limit"
            )));
        }
        let mut reader = rest;
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut reader)
            .map_err(|error| RecordsError::Corrupt(format!("zstd: {error}")))?;
        let budget = bytes_max - output.len();
        let frame = read_bounded(decoder, budget, Codec::Zstd).map_err(|error| {
            if output.len() + budget >= bytes_max && error.kind() == std::io::ErrorKind::Other {
                too_large(Codec::Zstd, bytes_max)
            } else {
                RecordsError::Corrupt(format!("zstd: {error}"))
            }
        })?;
        output.extend_from_slice(&frame);
        if reader.len() >= rest.len() {
            return Err(RecordsError::Corrupt("zstd: frame consumed nothing".into()));
        }
        rest = reader;
    }
    Ok(output)
}

/// The window size a zstd frame header asks for (RFC 8878, 3.1.1.1).
fn zstd_window_bytes(frame: &[u8]) -> Result<u64, RecordsError> {
    let corrupt = || RecordsError::Corrupt("zstd: truncated or invalid frame header".into());
    let magic = frame.get(..4).ok_or_else(corrupt)?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != ZSTD_MAGIC {
        return Err(RecordsError::Corrupt("zstd: bad frame magic".into()));
    }
    let descriptor = *frame.get(4).ok_or_else(corrupt)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let window_descriptor = *frame.get(5).ok_or_else(corrupt)?;
        let exponent = u64::from(window_descriptor >> 3);
        let mantissa = u64::from(window_descriptor & 7);
        let base = 1u64 << (10 + exponent);
        return Ok(base + base / 8 * mantissa);
    }
    // Single segment: the window is the content size that follows the
    // (optional) dictionary id.
    let dictionary_bytes = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size_bytes = [1, 2, 4, 8][usize::from(descriptor >> 6)];
    let at = 5 + dictionary_bytes;
    let field = frame.get(at..at + content_size_bytes).ok_or_else(corrupt)?;
    let mut size = 0u64;
    for (index, byte) in field.iter().enumerate() {
        size |= u64::from(*byte) << (8 * index);
    }
    Ok(if content_size_bytes == 2 {
        size + 256
    } else {
        size
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let lz4 = {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(&data).expect("in memory");
            encoder.finish().expect("in memory")
        };
        let snappy_raw = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compresses");
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new()
                .compress_vec(chunk)
                .expect("compresses");
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, input) in [
            (Codec::None, data.clone()),
            (Codec::Gzip, gzip(&data)),
            (Codec::Lz4, lz4),
            (Codec::Snappy, snappy_raw),
            (Codec::Snappy, xerial),
        ] {
            let output = decompress(codec, &input, data.len())
                .unwrap_or_else(|e| panic!("{}: {e}", codec.name()));
            assert_eq!(output, data, "{}", codec.name());
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 100_000);
        let error = decompress(Codec::Gzip, &bomb, 1 << 20).expect_err("too large");
        assert!(matches!(
            error,
            RecordsError::Corrupt(_) | RecordsError::TooLarge(_)
        ));
        let snappy = snap::raw::Encoder::new()
            .compress_vec(&zeros)
            .expect("compresses");
        let error = decompress(Codec::Snappy, &snappy, 1 << 20).expect_err("too large");
        assert!(matches!(error, RecordsError::TooLarge(_)), "{error}");
    }

    #[test]
    fn zstd_frames_with_huge_windows_are_refused_before_decoding() {
        // Magic, descriptor without single segment, window exponent 30 (1 GiB).
        let frame = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 30 << 3, 0, 0, 0];
        let error = decompress(Codec::Zstd, &frame, 1 << 20).expect_err("window");
        assert!(matches!(error, RecordsError::TooLarge(_)), "{error}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u32;
        for length in 0..300 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
                let _ = decompress(codec, &bytes, 1 << 16);
            }
        }
    }
}
