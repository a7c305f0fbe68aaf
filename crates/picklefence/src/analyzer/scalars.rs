//! Constants: the opcodes that push a number, a string, bytes, None or a bool (INT, BININT*,
//! LONG*, FLOAT, BINFLOAT, STRING, BINSTRING, SHORT_BINSTRING, BINBYTES*, BYTEARRAY8,
//! UNICODE, BINUNICODE*, NONE, NEWTRUE, NEWFALSE), and how str constants become names.

use std::rc::Rc;

use super::value::{ShortName, Value};
use super::{Analyzer, Flow};
use crate::decoder::{Arg, Op};
use crate::opcodes::Opcode;

/// An INT or LONG written in decimal: its value, or its size when it does not fit `i64`.
fn decimal_int(text: &[u8]) -> Value {
    match crate::text::parse_python_int(text, 0) {
        Some(v) => Value::Int(v),
        None => Value::Long((text.len() as u64).div_ceil(2)),
    }
}

/// Whether no integer reader of CPython (`strtol`, `int(text, 0)`) can accept `text`: it holds a
/// byte that is neither a digit, a letter (hex digits, `0x`/`0o`/`0b`, LONG's `L`), a sign, an
/// underscore nor ASCII whitespace. Only these certain failures break the stream here.
fn never_an_int(text: &[u8]) -> bool {
    text.iter().any(|&b| {
        !(b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'+' | b'-')
            || b.is_ascii_whitespace()
            || b == 0x0b)
    })
}

/// A LONG1/LONG4 payload (little-endian two's complement) that fits `i64`.
fn le_signed(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xff; 8] } else { [0; 8] };
    buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

impl Analyzer<'_> {
    /// The stand-in for a str payload: a name when it is UTF-8 and short enough to be one.
    pub(super) fn name_value(&self, payload_text: Option<&[u8]>) -> Value {
        match payload_text {
            Some(bytes) if bytes.len() <= self.limits.max_name_len => match std::str::from_utf8(bytes) {
                Ok(text) => self.name_of(text),
                Err(_) => Value::Text,
            },
            _ => Value::Text,
        }
    }

    /// The stand-in for a str constant: a name unless it is too long to be one.
    pub(super) fn name_of(&self, text: &str) -> Value {
        if text.len() > self.limits.max_name_len {
            Value::Text
        } else if let Some(short) = ShortName::new(text) {
            Value::ShortName(short)
        } else {
            Value::Name(Rc::from(text))
        }
    }

    /// NONE, NEWTRUE, NEWFALSE, EMPTY_SET, EMPTY_TUPLE: a value without an argument.
    pub(super) fn load_value(&mut self, value: Value) -> Flow {
        self.push(value);
        Flow::Continue
    }

    /// INT, BININT, BININT1, BININT2 (INT's `00`/`01` are the bools of protocol 0).
    pub(super) fn load_int(&mut self, op: &Op<'_>) -> Flow {
        if let Arg::Decimal(text) = &op.arg {
            if never_an_int(text) {
                self.break_stream(
                    op.offset,
                    "the INT argument is not a number (CPython raises ValueError)",
                );
            }
        }
        let value = match &op.arg {
            Arg::Int(v) => Value::Int(*v),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Decimal(text) => decimal_int(text),
            _ => Value::Long(0),
        };
        self.push(value);
        Flow::Continue
    }

    /// LONG, LONG1, LONG4.
    pub(super) fn load_long(&mut self, op: &Op<'_>) -> Flow {
        if let Arg::Decimal(text) = &op.arg {
            if never_an_int(text) {
                self.break_stream(
                    op.offset,
                    "the LONG argument is not a number (CPython raises ValueError)",
                );
            }
        }
        let value = match &op.arg {
            Arg::Decimal(text) => decimal_int(text.strip_suffix(b"L").unwrap_or(text)),
            Arg::Long(payload) => match payload.bytes() {
                Some(bytes) => le_signed(bytes).map_or(Value::Long(payload.len), Value::Int),
                None => Value::Long(payload.len),
            },
            _ => Value::Long(0),
        };
        self.push(value);
        Flow::Continue
    }

    /// FLOAT, BINFLOAT.
    pub(super) fn load_float(&mut self, op: &Op<'_>) -> Flow {
        let value = match &op.arg {
            Arg::Float(v) => *v,
            Arg::FloatText(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        self.push(Value::Float(value));
        Flow::Continue
    }

    /// STRING, BINSTRING, SHORT_BINSTRING: a Python 2 str.
    pub(super) fn load_string(&mut self, op: &Op<'_>) -> Flow {
        let value = match &op.arg {
            Arg::BadStr(_) => {
                self.break_stream(
                    op.offset,
                    "the STRING argument is not a quoted, validly escaped string",
                );
                Value::Unknown
            }
            // Python 2 str: ASCII reads the same under every `encoding=`, so it can be
            // a name (a special key in a state written by Python 2 is still one).
            Arg::Str(payload) => match payload.bytes() {
                Some(bytes) if bytes.is_ascii() => self.name_value(Some(bytes)),
                _ => Value::Text,
            },
            _ => Value::Text,
        };
        self.push(value);
        Flow::Continue
    }

    /// BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8: where the payload lies, not the bytes.
    pub(super) fn load_bytes(&mut self, op: &Op<'_>) -> Flow {
        let len = match &op.arg {
            Arg::Bytes(payload) => payload.len,
            _ => 0,
        };
        self.push(Value::Bytes {
            at: op.end().saturating_sub(len),
            len,
            mutable: op.opcode == Opcode::ByteArray8,
        });
        Flow::Continue
    }

    /// UNICODE, SHORT_BINUNICODE, BINUNICODE, BINUNICODE8.
    pub(super) fn load_unicode(&mut self, op: &Op<'_>) -> Flow {
        let value = match &op.arg {
            Arg::Unicode(payload) => match self.name_value(payload.bytes()) {
                // A long str keeps where it lies (the latin-1 text of nested bytes).
                Value::Text if op.opcode != Opcode::Unicode => Value::TextAt {
                    at: op.end().saturating_sub(payload.len),
                    len: payload.len,
                },
                value => value,
            },
            _ => {
                self.break_stream(op.offset, "the string is not valid UTF-8");
                Value::Unknown
            }
        };
        self.push(value);
        Flow::Continue
    }
}
