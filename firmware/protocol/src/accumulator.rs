//! Splits a byte stream into frames at `0x00` delimiters, in a fixed buffer.

use crate::{FrameError, MAX_FRAME};

/// Result of feeding one byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'a> {
    /// Inside a frame (or between frames).
    Pending,
    /// A delimiter closed a frame; hand it to [`crate::decode`].
    Frame(&'a mut [u8]),
    /// The frame was longer than the buffer; its bytes were dropped up to and
    /// including this delimiter.
    Error(FrameError),
}

/// Collects bytes until a `0x00` delimiter. `N` bounds one frame; the default
/// fits every message of this contract.
#[derive(Debug)]
pub struct Accumulator<const N: usize = MAX_FRAME> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for Accumulator<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Accumulator<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Feeds one byte. Empty frames (two delimiters in a row, a common way to
    /// flush a line) are skipped silently.
    pub fn feed(&mut self, byte: u8) -> Feed<'_> {
        if byte == 0 {
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.overflowed) {
                return Feed::Error(FrameError::Overflow);
            }
            if len == 0 {
                return Feed::Pending;
            }
            return Feed::Frame(&mut self.buf[..len]);
        }
        if self.overflowed {
            return Feed::Pending;
        }
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => {
                self.overflowed = true;
                self.len = 0;
            }
        }
        Feed::Pending
    }

    /// Discards a partial frame (e.g. after the link reconnects).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }
}
