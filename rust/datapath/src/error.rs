//! The one error type of the datapath. Every fallible function returns [`Result`]; malformed
//! input is reported here and never causes a panic.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the datapath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input ends before a header or payload that it announces.
    Truncated {
        /// Which header or payload was cut short.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A header field holds a value the protocol forbids (bad version, bad length, ...).
    Malformed {
        /// Which header.
        what: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A checksum did not verify.
    BadChecksum {
        /// Which header's checksum.
        what: &'static str,
    },
    /// Well-formed, but not something this datapath handles (fragments, other protocols).
    Unsupported {
        /// Which header.
        what: &'static str,
        /// What is not handled.
        reason: &'static str,
    },
    /// The output buffer cannot hold the result.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A caller-supplied parameter is out of range (table size, prefix length, ...).
    InvalidArgument(String),
    /// An operating-system call failed (tunnel engine).
    Io(String),
}

impl Error {
    /// True for errors that describe a bad packet rather than a bad call.
    pub fn is_packet_error(&self) -> bool {
        matches!(
            self,
            Error::Truncated { .. }
                | Error::Malformed { .. }
                | Error::BadChecksum { .. }
                | Error::Unsupported { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, need, have } => {
                write!(f, "{what}: truncated, need {need} bytes, have {have}")
            }
            Error::Malformed { what, reason } => write!(f, "{what}: malformed, {reason}"),
            Error::BadChecksum { what } => write!(f, "{what}: bad checksum"),
            Error::Unsupported { what, reason } => write!(f, "{what}: unsupported, {reason}"),
            Error::BufferTooSmall { need, have } => {
                write!(f, "output buffer too small: need {need} bytes, have {have}")
            }
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Io(msg) => write!(f, "I/O error: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Fails with [`Error::Truncated`] unless `buf` holds at least `need` bytes.
#[inline]
pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(Error::Truncated {
            what,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}
