//! One message in one frame: version byte, postcard payload, CRC-32, COBS.

use crate::{Reject, MAX_FRAME, MAX_PAYLOAD, MAX_RAW_FRAME, PROTOCOL_VERSION};
use crc::{Crc, CRC_32_ISO_HDLC};
use serde::{de::DeserializeOwned, Serialize};

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Why a frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// More bytes than the receive buffer before a delimiter.
    Overflow,
    /// Not valid COBS.
    Cobs,
    /// Fewer bytes than a version byte and a CRC.
    TooShort,
    /// CRC mismatch: corrupted in transit.
    Crc { expected: u32, actual: u32 },
    /// Peer speaks another protocol version.
    Version { got: u8 },
    /// CRC matched but the payload is not a message of this contract.
    Decode,
}

impl FrameError {
    /// The telemetry counter this error is reported under.
    pub fn reason(&self) -> Reject {
        match self {
            FrameError::Overflow => Reject::Overflow,
            FrameError::Cobs => Reject::Cobs,
            FrameError::TooShort => Reject::TooShort,
            FrameError::Crc { .. } => Reject::Crc,
            FrameError::Version { .. } => Reject::Version,
            FrameError::Decode => Reject::Decode,
        }
    }
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Overflow => write!(f, "frame longer than {MAX_FRAME} bytes"),
            FrameError::Cobs => write!(f, "invalid COBS encoding"),
            FrameError::TooShort => write!(f, "frame shorter than version byte + CRC"),
            FrameError::Crc { expected, actual } => {
                write!(
                    f,
                    "CRC mismatch: frame says {expected:#010x}, data gives {actual:#010x}"
                )
            }
            FrameError::Version { got } => {
                write!(
                    f,
                    "protocol version {got}, this build speaks {PROTOCOL_VERSION}"
                )
            }
            FrameError::Decode => write!(f, "payload is not a message of this protocol"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Why a message could not be encoded (only a too-small output buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The message serialises to more than [`MAX_PAYLOAD`] bytes, or `out` is
    /// smaller than the encoded frame ([`MAX_FRAME`] always suffices).
    BufferTooSmall,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "output buffer too small for the encoded frame")
    }
}

impl core::error::Error for EncodeError {}

/// Encodes `msg` as a complete frame, including the trailing `0x00`, into `out`
/// and returns the frame's length.
pub fn encode<M: Serialize>(msg: &M, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut raw = [0u8; MAX_RAW_FRAME];
    raw[0] = PROTOCOL_VERSION;
    let payload_len = postcard::to_slice(msg, &mut raw[1..1 + MAX_PAYLOAD])
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    let body = 1 + payload_len;
    let crc = CRC32.checksum(&raw[..body]);
    raw[body..body + 4].copy_from_slice(&crc.to_le_bytes());
    let n = cobs::try_encode(&raw[..body + 4], out).map_err(|_| EncodeError::BufferTooSmall)?;
    let delim = out.get_mut(n).ok_or(EncodeError::BufferTooSmall)?;
    *delim = 0;
    Ok(n + 1)
}

/// Decodes one frame (the bytes between two delimiters, without the `0x00`).
/// The frame is COBS-decoded in place, so `frame` is clobbered.
pub fn decode<M: DeserializeOwned>(frame: &mut [u8]) -> Result<M, FrameError> {
    let n = cobs::decode_in_place(frame).map_err(|_| FrameError::Cobs)?;
    let raw = frame.get(..n).ok_or(FrameError::Cobs)?;
    if raw.len() < 5 {
        return Err(FrameError::TooShort);
    }
    let (body, crc_bytes) = raw.split_at(raw.len() - 4);
    let expected = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let actual = CRC32.checksum(body);
    if expected != actual {
        return Err(FrameError::Crc { expected, actual });
    }
    if body[0] != PROTOCOL_VERSION {
        return Err(FrameError::Version { got: body[0] });
    }
    // A valid message consumes the whole payload: trailing bytes mean the peer
    // and we disagree about the layout even though the version matched.
    match postcard::take_from_bytes::<M>(&body[1..]) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(FrameError::Decode),
    }
}
