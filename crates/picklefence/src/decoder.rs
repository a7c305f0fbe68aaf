//! Bytes → `(offset, opcode, argument)`, for every opcode of protocols 0–5.
//!
//! One decoder, two inputs: a slice (zero-copy) and any `std::io::Read` (streaming, consuming
//! exactly the bytes of the opcodes it returns). Lengths are checked against what the input
//! holds before anything is sized from them; nothing here panics on any input.

use std::borrow::Cow;
use std::io::Read;

use crate::error::DecodeError;
use crate::opcodes::{ArgKind, Opcode};
use crate::text;

/// A length-prefixed payload. In streaming mode, payloads over the keep limit are read past
/// (and, for text, validated) without being held: `data` is then `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<'a> {
    /// Its length as declared (and read).
    pub len: u64,
    /// Its bytes, when held.
    pub data: Option<Cow<'a, [u8]>>,
}

impl<'a> Payload<'a> {
    fn held(data: Cow<'a, [u8]>) -> Self {
        Payload {
            len: data.len() as u64,
            data: Some(data),
        }
    }

    /// Its bytes, when held.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// The same payload, owning its bytes.
    pub fn into_owned(self) -> Payload<'static> {
        Payload {
            len: self.len,
            data: self.data.map(|d| Cow::Owned(d.into_owned())),
        }
    }
}

/// An opcode's argument, as the stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    /// No argument.
    None,
    /// BININT*, BINGET/LONG_BINGET, BINPUT/LONG_BINPUT, EXT*, PROTO.
    Int(i64),
    /// FRAME's length.
    U64(u64),
    /// INT "00" / "01".
    Bool(bool),
    /// The text of INT, LONG (without its `L`), GET and PUT, as written.
    Decimal(&'a [u8]),
    /// The text of FLOAT, as written.
    FloatText(&'a [u8]),
    /// BINFLOAT: a big-endian double.
    Float(f64),
    /// LONG1/LONG4: little-endian two's complement.
    Long(Payload<'a>),
    /// STRING (escape-decoded), BINSTRING, SHORT_BINSTRING: a Python 2 `str`, bytes whose
    /// meaning depends on the unpickler's `encoding`.
    Str(Payload<'a>),
    /// STRING whose argument CPython rejects (unquoted, bad escape).
    BadStr(&'a [u8]),
    /// BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8.
    Bytes(Payload<'a>),
    /// UNICODE, SHORT_BINUNICODE, BINUNICODE, BINUNICODE8: WTF-8 text.
    Unicode(Payload<'a>),
    /// Text CPython fails to decode (it raises there).
    BadUnicode(Payload<'a>),
    /// PERSID's line.
    Line(&'a [u8]),
    /// GLOBAL and INST: module line and name line.
    Pair(&'a [u8], &'a [u8]),
}

impl Arg<'_> {
    /// The integer of a memo or extension opcode, the way CPython reads it.
    pub fn as_index(&self) -> Option<i64> {
        match self {
            Arg::Int(value) => Some(*value),
            Arg::Decimal(text) => text::parse_python_int(text, 10),
            _ => None,
        }
    }
}

/// One decoded opcode.
#[derive(Debug, Clone, PartialEq)]
pub struct Op<'a> {
    /// Offset of the opcode byte from the start of the input.
    pub offset: u64,
    /// Encoded length, opcode byte included.
    pub len: u64,
    /// The opcode.
    pub opcode: Opcode,
    /// Its argument, decoded.
    pub arg: Arg<'a>,
}

impl Op<'_> {
    /// Offset of the byte after it.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// Bounds for streaming decoding. The slice decoder needs none: it holds nothing.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Longest newline-terminated argument read (CPython has no limit; a longer line ends decoding).
    pub max_line: usize,
    /// Payloads up to this size are held; larger ones are skipped.
    pub keep_payload: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_line: 1 << 20,
            keep_payload: 64 << 10,
        }
    }
}

/// What the decoder reads from.
pub trait Source {
    /// Offset of the next unread byte.
    fn position(&self) -> u64;
    /// The next byte, `None` at the end of input.
    fn next_byte(&mut self) -> Result<Option<u8>, SourceError>;
    /// Exactly `n` bytes; `n` is small or within the keep limit.
    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError>;
    /// Up to and including the next `\n`; returns the line without it.
    fn take_line(&mut self) -> Result<&[u8], SourceError>;
    /// Two lines in a row (GLOBAL, INST), each without its `\n`.
    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError>;
    /// Whether a payload of `n` bytes is to be held.
    fn keeps(&self, n: u64) -> bool;
    /// Reads past `n` bytes, showing them to `inspect` chunk by chunk.
    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError>;
    /// How many bytes remain, when the source knows (a slice does).
    fn remaining(&self) -> Option<u64>;
    /// The whole input and the offset of the next byte, for a source that holds it all (a
    /// slice): the analyzer can then run opcodes straight from the bytes.
    fn window(&self) -> Option<(&[u8], usize)> {
        None
    }
    /// Moves to `pos`, past opcodes run from [`Source::window`].
    fn advance_to(&mut self, _pos: usize) {}
}

/// Low-level failure of a source, turned into a `DecodeError` with the opcode's context.
#[derive(Debug)]
pub enum SourceError {
    /// The input ended; `available` bytes of the request were there.
    Short {
        /// Bytes of the request that were there.
        available: u64,
    },
    /// The input ended before a newline.
    NoNewline,
    /// A line longer than the limit.
    LineTooLong {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The reader failed (its error's text).
    Io(String),
}

/// Zero-copy source over a slice.
#[derive(Debug, Clone)]
pub struct SliceSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    /// A source reading `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        SliceSource { data, pos: 0 }
    }

    /// Moves to `pos` (clamped to the end): for callers that ran opcodes past the decoder.
    pub fn skip_to(&mut self, pos: usize) {
        self.pos = pos.min(self.data.len());
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// A read past the end takes what is left, as a short read from a file does.
    fn short<T>(&mut self) -> Result<T, SourceError> {
        let available = self.rest().len() as u64;
        self.pos = self.data.len();
        Err(SourceError::Short { available })
    }

    /// So does a line that the input ends before.
    fn unterminated<T>(&mut self) -> Result<T, SourceError> {
        self.pos = self.data.len();
        Err(SourceError::NoNewline)
    }
}

impl Source for SliceSource<'_> {
    fn position(&self) -> u64 {
        self.pos as u64
    }

    fn next_byte(&mut self) -> Result<Option<u8>, SourceError> {
        let byte = self.data.get(self.pos).copied();
        if byte.is_some() {
            self.pos += 1;
        }
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        let rest = self.rest();
        match rest.get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(Cow::Borrowed(bytes))
            }
            None => self.short(),
        }
    }

    fn take_line(&mut self) -> Result<&[u8], SourceError> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.pos += end + 1;
                Ok(rest.get(..end).unwrap_or_default())
            }
            None => self.unterminated(),
        }
    }

    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError> {
        let rest = self.rest();
        let Some(first) = rest.iter().position(|&b| b == b'\n') else {
            return self.unterminated();
        };
        let after = rest.get(first + 1..).unwrap_or_default();
        let Some(second) = after.iter().position(|&b| b == b'\n') else {
            return self.unterminated();
        };
        self.pos += first + second + 2;
        Ok((
            rest.get(..first).unwrap_or_default(),
            after.get(..second).unwrap_or_default(),
        ))
    }

    fn keeps(&self, _n: u64) -> bool {
        true
    }

    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        let rest = self.rest();
        let Ok(len) = usize::try_from(n) else {
            return self.short();
        };
        match rest.get(..len) {
            Some(bytes) => {
                inspect(bytes);
                self.pos += len;
                Ok(())
            }
            None => self.short(),
        }
    }

    fn remaining(&self) -> Option<u64> {
        Some(self.rest().len() as u64)
    }

    fn window(&self) -> Option<(&[u8], usize)> {
        Some((self.data, self.pos))
    }

    fn advance_to(&mut self, pos: usize) {
        self.skip_to(pos);
    }
}

/// Streaming source over any reader. It asks the reader for exactly the bytes each opcode
/// needs, so the reader is left just past the last opcode returned; wrap an unbuffered
/// reader in `BufReader` for speed when exactness against the underlying reader is not needed.
pub struct ReaderSource<R> {
    reader: R,
    pos: u64,
    buf: Vec<u8>,
    limits: StreamLimits,
}

impl<R: Read> ReaderSource<R> {
    /// A source reading `reader` from where it is, within `limits`.
    pub fn new(reader: R, limits: StreamLimits) -> Self {
        ReaderSource {
            reader,
            pos: 0,
            buf: Vec::new(),
            limits,
        }
    }

    /// The reader back.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Appends one line to `buf`, without its newline. Byte by byte: reading ahead would
    /// consume what the next reader of the stream needs.
    fn append_line(&mut self) -> Result<(), SourceError> {
        let start = self.buf.len();
        let mut byte = [0u8; 1];
        loop {
            match self.reader.read(&mut byte) {
                Ok(0) => return Err(SourceError::NoNewline),
                Ok(_) => {
                    self.pos += 1;
                    if byte[0] == b'\n' {
                        return Ok(());
                    }
                    if self.buf.len() - start >= self.limits.max_line {
                        return Err(SourceError::LineTooLong {
                            limit: self.limits.max_line as u64,
                        });
                    }
                    self.buf.push(byte[0]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Io(e.to_string())),
            }
        }
    }

    /// Reads into `buf[..n]`, returning how many bytes the reader had. `n` can be a declared
    /// length the input does not back, so the buffer grows with what arrives, never to `n` at once.
    fn fill(&mut self, n: usize) -> Result<usize, SourceError> {
        self.buf.clear();
        let mut filled = 0;
        while filled < n {
            self.buf.resize(n.min(filled.saturating_add(FILL_STEP)), 0);
            let Some(window) = self.buf.get_mut(filled..) else {
                break;
            };
            match self.reader.read(window) {
                Ok(0) => break,
                Ok(read) => filled += read.min(window.len()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Io(e.to_string())),
            }
        }
        self.pos += filled as u64;
        self.buf.truncate(filled);
        Ok(filled)
    }
}

const SKIP_CHUNK: usize = 64 << 10;
/// UNICODE lines longer than this are validated but not decoded into a held payload.
pub const HELD_TEXT_LINE: usize = 64 << 10;
/// How far `fill` grows its buffer beyond the bytes already read.
const FILL_STEP: usize = 64 << 10;

impl<R: Read> Source for ReaderSource<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn next_byte(&mut self) -> Result<Option<u8>, SourceError> {
        let got = self.fill(1)?;
        Ok(if got == 1 { self.buf.first().copied() } else { None })
    }

    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        let got = self.fill(n)?;
        if got < n {
            return Err(SourceError::Short {
                available: got as u64,
            });
        }
        Ok(Cow::Borrowed(&self.buf))
    }

    fn take_line(&mut self) -> Result<&[u8], SourceError> {
        self.buf.clear();
        self.append_line()?;
        Ok(&self.buf)
    }

    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError> {
        self.buf.clear();
        self.append_line()?;
        let split = self.buf.len();
        self.append_line()?;
        let (first, second) = self.buf.split_at(split);
        Ok((first, second))
    }

    fn keeps(&self, n: u64) -> bool {
        n <= self.limits.keep_payload as u64
    }

    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        let mut left = n;
        while left > 0 {
            let want = usize::try_from(left.min(SKIP_CHUNK as u64)).unwrap_or(SKIP_CHUNK);
            let got = self.fill(want)?;
            inspect(&self.buf);
            if got < want {
                return Err(SourceError::Short {
                    available: n - left + got as u64,
                });
            }
            left -= got as u64;
        }
        Ok(())
    }

    fn remaining(&self) -> Option<u64> {
        None
    }
}

/// The decoder: call [`Decoder::next_op`] until it returns `Ok(None)` (end of input) or an error.
pub struct Decoder<S> {
    source: S,
    /// Set once an error was returned: the stream is not read past it.
    broken: bool,
}

impl<'a> Decoder<SliceSource<'a>> {
    /// A decoder over bytes in memory (zero-copy).
    pub fn from_slice(data: &'a [u8]) -> Self {
        Decoder::new(SliceSource::new(data))
    }
}

impl<R: Read> Decoder<ReaderSource<R>> {
    /// A decoder over a reader (streaming, within `limits`).
    pub fn from_reader(reader: R, limits: StreamLimits) -> Self {
        Decoder::new(ReaderSource::new(reader, limits))
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

impl<S: Source> Decoder<S> {
    /// A decoder over `source`.
    pub fn new(source: S) -> Self {
        Decoder {
            source,
            broken: false,
        }
    }

    /// Offset of the next opcode.
    pub fn position(&self) -> u64 {
        self.source.position()
    }

    /// The source it reads.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source it reads, to skip or seek past what the decoder need not see.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The source back.
    pub fn into_source(self) -> S {
        self.source
    }

    /// The next opcode; `Ok(None)` at the end of input, and after an error has been returned.
    pub fn next_op(&mut self) -> Result<Option<Op<'_>>, DecodeError> {
        if self.broken {
            return Ok(None);
        }
        let offset = self.source.position();
        let byte = match self.source.next_byte() {
            Ok(Some(byte)) => byte,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.broken = true;
                return Err(source_error(e, offset, "opcode", 1));
            }
        };
        let Some(opcode) = Opcode::from_byte(byte) else {
            self.broken = true;
            return Err(DecodeError::UnknownOpcode { offset, byte });
        };
        match read_arg(&mut self.source, opcode, offset) {
            Ok((arg, end)) => Ok(Some(Op {
                offset,
                len: end.saturating_sub(offset),
                opcode,
                arg,
            })),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }
}

fn source_error(e: SourceError, offset: u64, opcode: &'static str, needed: u64) -> DecodeError {
    match e {
        SourceError::Short { available } => DecodeError::Truncated {
            offset,
            opcode,
            needed,
            available,
        },
        SourceError::NoNewline => DecodeError::UnterminatedLine { offset, opcode },
        SourceError::LineTooLong { limit } => DecodeError::LineTooLong {
            offset,
            opcode,
            limit,
        },
        SourceError::Io(message) => DecodeError::Io { offset, message },
    }
}

/// Reads a fixed-size little-endian unsigned argument.
fn fixed<S: Source>(source: &mut S, n: usize, opcode: Opcode, offset: u64) -> Result<u64, DecodeError> {
    source
        .take(n)
        .map(|bytes| le_u64(&bytes))
        .map_err(|e| source_error(e, offset, opcode.name(), n as u64))
}

/// The argument and the offset just past it.
fn read_arg<S: Source>(source: &mut S, opcode: Opcode, offset: u64) -> Result<(Arg<'_>, u64), DecodeError> {
    let line_err = |e| source_error(e, offset, opcode.name(), 1);
    let start = source.position();
    let int = |source: &mut S, n| -> Result<(Arg<'static>, u64), DecodeError> {
        let value = fixed(source, n, opcode, offset)?;
        Ok((Arg::Int(value as i64), source.position()))
    };
    Ok(match opcode.arg_kind() {
        ArgKind::None => (Arg::None, start),
        ArgKind::Uint1 => int(source, 1)?,
        ArgKind::Uint2 => int(source, 2)?,
        ArgKind::Uint4 => int(source, 4)?,
        ArgKind::Int4 => {
            let value = fixed(source, 4, opcode, offset)? as u32 as i32;
            (Arg::Int(i64::from(value)), source.position())
        }
        ArgKind::Uint8 => {
            let declared = fixed(source, 8, opcode, offset)?;
            if opcode == Opcode::Frame {
                // `load_frame` raises OverflowError past PY_SSIZE_T_MAX (pickle.py: ValueError
                // past sys.maxsize), then reads the whole frame before running any of it.
                if declared > i64::MAX as u64 {
                    return Err(DecodeError::LengthOverflow {
                        offset,
                        opcode: opcode.name(),
                        declared,
                    });
                }
                if let Some(remaining) = source.remaining() {
                    if declared > remaining {
                        return Err(DecodeError::Truncated {
                            offset,
                            opcode: opcode.name(),
                            needed: declared,
                            available: remaining,
                        });
                    }
                }
            }
            (Arg::U64(declared), source.position())
        }
        ArgKind::Float8 => {
            let bits = source
                .take(8)
                .map(|bytes| bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
                .map_err(|e| source_error(e, offset, opcode.name(), 8))?;
            (Arg::Float(f64::from_bits(bits)), source.position())
        }
        ArgKind::DecimalNlShort => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            let arg = match line {
                b"00" if opcode == Opcode::Int => Arg::Bool(false),
                b"01" if opcode == Opcode::Int => Arg::Bool(true),
                _ => Arg::Decimal(line),
            };
            (arg, end)
        }
        ArgKind::DecimalNlLong => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            (Arg::Decimal(line.strip_suffix(b"L").unwrap_or(line)), end)
        }
        ArgKind::FloatNl => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            (Arg::FloatText(line), end)
        }
        ArgKind::StringNl => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            let arg = match unquote(line).and_then(text::decode_escape) {
                Some(decoded) => Arg::Str(Payload::held(Cow::Owned(decoded))),
                None => Arg::BadStr(line),
            };
            (arg, end)
        }
        ArgKind::StringNlNoEscape => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            (Arg::Line(line), end)
        }
        ArgKind::StringNlNoEscapePair => {
            let (module, qualname) = source.take_line_pair().map_err(line_err)?;
            let end = start + module.len() as u64 + qualname.len() as u64 + 2;
            (Arg::Pair(module, qualname), end)
        }
        ArgKind::UnicodeStringNl => {
            let line = source.take_line().map_err(line_err)?;
            let end = start + line.len() as u64 + 1;
            let arg = if line.len() > HELD_TEXT_LINE {
                // Decoded, the line could be twice its size again: validate and measure it only
                // (too long to be a name anyway), so memory stays within the input's size.
                match text::raw_unicode_escape_len(line) {
                    Some(len) => Arg::Unicode(Payload { len, data: None }),
                    None => Arg::BadUnicode(Payload {
                        len: line.len() as u64,
                        data: None,
                    }),
                }
            } else {
                match text::decode_raw_unicode_escape(line) {
                    Some(decoded) => Arg::Unicode(Payload::held(Cow::Owned(decoded))),
                    None => Arg::BadUnicode(Payload::held(Cow::Borrowed(line))),
                }
            };
            (arg, end)
        }
        ArgKind::Bytes1 | ArgKind::String1 | ArgKind::Unicode1 | ArgKind::Long1 => {
            let len = fixed(source, 1, opcode, offset)?;
            counted(source, opcode, offset, len)?
        }
        ArgKind::Bytes4 | ArgKind::String4 | ArgKind::Unicode4 | ArgKind::Long4 => {
            let len = fixed(source, 4, opcode, offset)?;
            // BINSTRING and LONG4 lengths are signed in CPython; a negative one is an error there.
            if matches!(opcode, Opcode::BinString | Opcode::Long4) && len & 0x8000_0000 != 0 {
                return Err(DecodeError::LengthOverflow {
                    offset,
                    opcode: opcode.name(),
                    declared: len,
                });
            }
            counted(source, opcode, offset, len)?
        }
        ArgKind::Bytes8 | ArgKind::Unicode8 | ArgKind::ByteArray8 => {
            let len = fixed(source, 8, opcode, offset)?;
            if len > i64::MAX as u64 {
                return Err(DecodeError::LengthOverflow {
                    offset,
                    opcode: opcode.name(),
                    declared: len,
                });
            }
            counted(source, opcode, offset, len)?
        }
    })
}

/// `load_string`: the argument must be quoted with the same quote at both ends.
fn unquote(line: &[u8]) -> Option<&[u8]> {
    match line {
        [first, inner @ .., last] if first == last && (*first == b'\'' || *first == b'"') => Some(inner),
        _ => None,
    }
}

fn wrap_payload(opcode: Opcode, payload: Payload<'_>, valid: bool) -> Arg<'_> {
    match opcode.arg_kind() {
        ArgKind::Unicode1 | ArgKind::Unicode4 | ArgKind::Unicode8 if valid => Arg::Unicode(payload),
        ArgKind::Unicode1 | ArgKind::Unicode4 | ArgKind::Unicode8 => Arg::BadUnicode(payload),
        ArgKind::String1 | ArgKind::String4 => Arg::Str(payload),
        ArgKind::Long1 | ArgKind::Long4 => Arg::Long(payload),
        _ => Arg::Bytes(payload),
    }
}

/// A length-prefixed argument of `len` bytes: held when the source keeps it, else skipped.
fn counted<S: Source>(
    source: &mut S,
    opcode: Opcode,
    offset: u64,
    len: u64,
) -> Result<(Arg<'_>, u64), DecodeError> {
    let is_text = matches!(
        opcode.arg_kind(),
        ArgKind::Unicode1 | ArgKind::Unicode4 | ArgKind::Unicode8
    );
    let start = source.position();
    if source.keeps(len) {
        let n = usize::try_from(len).map_err(|_| DecodeError::LengthOverflow {
            offset,
            opcode: opcode.name(),
            declared: len,
        })?;
        let data = source
            .take(n)
            .map_err(|e| source_error(e, offset, opcode.name(), len))?;
        let valid = !is_text || text::is_valid_utf8_surrogatepass(&data);
        return Ok((wrap_payload(opcode, Payload::held(data), valid), start + len));
    }
    let mut validator = text::Utf8SurrogatePass::new();
    let mut seen = 0u64;
    source
        .skip(len, &mut |chunk| {
            seen += chunk.len() as u64;
            if is_text {
                validator.feed(chunk)
            }
        })
        .map_err(|e| source_error(e, offset, opcode.name(), len))?;
    let payload = Payload { len, data: None };
    // A source may skip part of a long payload by seeking: text it did not show cannot be
    // judged here (CPython raises on it when it reads it), only text it showed whole.
    let valid = seen < len || validator.finish();
    Ok((wrap_payload(opcode, payload, valid), source.position()))
}
