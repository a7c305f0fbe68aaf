//! Errors of the decoder. Every one carries the byte offset it happened at.

use thiserror::Error;

/// Why the opcode stream could not be read any further.
///
/// CPython stops at the same places (it raises), but only after it has run every opcode before them,
/// so a decode error ends a stream; it never excuses what came before it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unknown opcode 0x{byte:02x} at offset {offset}")]
    UnknownOpcode { offset: u64, byte: u8 },
    #[error(
        "{opcode} at offset {offset} is truncated: its argument needs {needed} bytes, {available} remain"
    )]
    Truncated {
        offset: u64,
        opcode: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{opcode} at offset {offset}: no newline ends its argument")]
    UnterminatedLine { offset: u64, opcode: &'static str },
    #[error("{opcode} at offset {offset}: its argument line is longer than the limit of {limit} bytes")]
    LineTooLong {
        offset: u64,
        opcode: &'static str,
        limit: u64,
    },
    #[error("{opcode} at offset {offset} declares a length of {declared} bytes, more than this platform can address")]
    LengthOverflow {
        offset: u64,
        opcode: &'static str,
        declared: u64,
    },
    #[error("read error at offset {offset}: {message}")]
    Io { offset: u64, message: String },
}

impl DecodeError {
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::UnknownOpcode { offset, .. }
            | DecodeError::Truncated { offset, .. }
            | DecodeError::UnterminatedLine { offset, .. }
            | DecodeError::LineTooLong { offset, .. }
            | DecodeError::LengthOverflow { offset, .. }
            | DecodeError::Io { offset, .. } => *offset,
        }
    }

    /// Whether the input simply ended (as opposed to holding bytes CPython cannot read).
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            DecodeError::Truncated { .. } | DecodeError::UnterminatedLine { .. }
        )
    }
}
