//! Errors of the decoder. Every one carries the byte offset it happened at.

use thiserror::Error;

/// Why the opcode stream could not be read any further.
///
/// CPython stops at the same places (it raises), but only after it has run every opcode before them,
/// so a decode error ends a stream; it never excuses what came before it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A byte that is no opcode of protocols 0-5.
    #[error("unknown opcode 0x{byte:02x} at offset {offset}")]
    UnknownOpcode {
        /// Where the byte is.
        offset: u64,
        /// The byte.
        byte: u8,
    },
    #[error(
        "{opcode} at offset {offset} is truncated: its argument needs {needed} bytes, {available} remain"
    )]
    /// The input ends inside an opcode's argument.
    Truncated {
        /// Where the opcode is.
        offset: u64,
        /// Its name.
        opcode: &'static str,
        /// Bytes its argument needs.
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// The input ends before the newline that ends a text argument.
    #[error("{opcode} at offset {offset}: no newline ends its argument")]
    UnterminatedLine {
        /// Where the opcode is.
        offset: u64,
        /// Its name.
        opcode: &'static str,
    },
    #[error("{opcode} at offset {offset}: its argument line is longer than the limit of {limit} bytes")]
    /// A text argument longer than the decoder's line limit (bounded memory on streams).
    LineTooLong {
        /// Where the opcode is.
        offset: u64,
        /// Its name.
        opcode: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
    #[error("{opcode} at offset {offset} declares a length of {declared} bytes, more than this platform can address")]
    /// A declared length that does not fit this platform's address space.
    LengthOverflow {
        /// Where the opcode is.
        offset: u64,
        /// Its name.
        opcode: &'static str,
        /// The length it declares.
        declared: u64,
    },
    /// The reader failed.
    #[error("read error at offset {offset}: {message}")]
    Io {
        /// Bytes read before it failed.
        offset: u64,
        /// The I/O error's text.
        message: String,
    },
}

impl DecodeError {
    /// The byte offset the error happened at.
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
