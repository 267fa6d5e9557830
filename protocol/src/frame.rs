//! Frames: a 4-byte big-endian length, then that many bytes of MessagePack.
//!
//! The length is checked against a limit before anything is allocated, and
//! a frame is decoded only once all of it has arrived (as mini-redis does
//! with `Frame::check` before `Frame::parse`).

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ProtocolError;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Default largest frame body either side accepts: 16 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;

/// Encodes `message` as one frame. Message field names are kept, so either
/// side may add optional fields without breaking the other.
pub fn encode<T: Serialize>(message: &T) -> Result<Bytes, ProtocolError> {
    let mut out = BytesMut::with_capacity(256);
    out.put_u32(0);
    let mut writer = (&mut out).writer();
    rmp_serde::encode::write_named(&mut writer, message)?;
    let body = out.len() - LENGTH_PREFIX_BYTES;
    let length = u32::try_from(body).map_err(|_| ProtocolError::FrameTooLarge {
        bytes: body as u64,
        bytes_max: u64::from(u32::MAX),
    })?;
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(out.freeze())
}

/// Checks that `buffer` starts with a whole frame of at most `bytes_max`
/// body bytes. Returns the frame's total size, or `None` if more bytes are
/// needed.
pub fn check(buffer: &[u8], bytes_max: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(prefix) = buffer.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if length > bytes_max {
        return Err(ProtocolError::FrameTooLarge {
            bytes: length as u64,
            bytes_max: bytes_max as u64,
        });
    }
    let total = LENGTH_PREFIX_BYTES + length;
    Ok((buffer.len() >= total).then_some(total))
}

/// Decodes one whole frame (prefix included), as checked by [`check`].
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, ProtocolError> {
    Ok(rmp_serde::from_slice(&frame[LENGTH_PREFIX_BYTES..])?)
}

/// Writes one frame.
pub async fn write<W, T>(writer: &mut W, message: &T) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = encode(message)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame and decodes it. `Ok(None)` when the stream ends cleanly
/// before a frame starts. The body of an oversize frame is never read.
pub async fn read<R, T>(reader: &mut R, bytes_max: usize) -> Result<Option<T>, ProtocolError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut filled = 0;
    while filled < LENGTH_PREFIX_BYTES {
        let read = reader.read(&mut prefix[filled..]).await?;
        if read == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(ProtocolError::Truncated {
                    missing: (LENGTH_PREFIX_BYTES - filled) as u64,
                })
            };
        }
        filled += read;
    }
    let length = u32::from_be_bytes(prefix) as usize;
    if length > bytes_max {
        return Err(ProtocolError::FrameTooLarge {
            bytes: length as u64,
            bytes_max: bytes_max as u64,
        });
    }
    let mut body = vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        let read = reader.read(&mut body[filled..]).await?;
        if read == 0 {
            return Err(ProtocolError::Truncated {
                missing: (length - filled) as u64,
            });
        }
        filled += read;
    }
    Ok(Some(rmp_serde::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        values: Vec<u32>,
    }

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let message = Sample {
            name: "a".into(),
            values: vec![1, 2, 3],
        };
        let frame = encode(&message).expect("encodes");
        assert_eq!(check(&frame, 1024).expect("fits"), Some(frame.len()));
        let mut reader = &frame[..];
        let back: Option<Sample> = read(&mut reader, 1024).await.expect("decodes");
        assert_eq!(back, Some(message));
        let end: Option<Sample> = read(&mut reader, 1024).await.expect("clean end");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn oversize_frames_are_refused_before_reading_the_body() {
        let frame = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut reader = &frame[..];
        let result: Result<Option<Sample>, _> = read(&mut reader, 1 << 20).await;
        assert!(
            matches!(result, Err(ProtocolError::FrameTooLarge { bytes_max, .. }) if bytes_max == 1 << 20)
        );
        assert!(matches!(
            check(&frame, 1 << 20),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_reported() {
        let frame = encode(&Sample {
            name: "abc".into(),
            values: vec![],
        })
        .expect("encodes");
        for cut in 1..frame.len() {
            let mut reader = &frame[..cut];
            let result: Result<Option<Sample>, _> = read(&mut reader, 1024).await;
            assert!(
                matches!(result, Err(ProtocolError::Truncated { .. })),
                "cut at {cut}"
            );
            assert_eq!(check(&frame[..cut], 1024).expect("not too large"), None);
        }
    }

    proptest! {
        #[test]
        fn garbage_bodies_are_malformed_not_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let total = check(&frame, 1024).expect("fits").expect("whole");
            let _ = decode::<Sample>(&frame[..total]);
            let _ = decode::<crate::messages::Request>(&frame[..total]);
            let _ = decode::<crate::messages::Response>(&frame[..total]);
        }
    }
}
