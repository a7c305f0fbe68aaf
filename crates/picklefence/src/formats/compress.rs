//! Compressed streams: recognition by magic bytes and bounded, streaming decompression.
//!
//! Every decompressor is wrapped in a `Limited` reader that counts what it produces against
//! a whole-scan budget and against the compressed bytes it consumed (the ratio), so a
//! decompression bomb ends in an error the scanner reports, never in unbounded work.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// A compression wrapper the scanner can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// gzip (`.gz`, joblib's `gzip` compressor).
    Gzip,
    /// A bare zlib stream (joblib's default compressor).
    Zlib,
    /// bzip2 (`.bz2`).
    Bzip2,
    /// xz (`.xz`, joblib's `xz` compressor).
    Xz,
    /// The legacy `.lzma` ("lzma-alone") format.
    Lzma,
    /// Zstandard frame format (`.zst`).
    Zstd,
    /// LZ4 frame format (joblib's `lz4` compressor).
    Lz4,
}

impl Codec {
    /// The codec's stable lowercase name: the format name reports use (`gzip`, `zstd`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zlib => "zlib",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Lzma => "lzma",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
        }
    }

    /// Recognises a compressed stream by its first bytes (the prefixes joblib, gzip, bz2, lzma,
    /// zstandard and lz4 write; zlib by its header check).
    pub fn sniff(data: &[u8]) -> Option<Codec> {
        match data {
            [0x1f, 0x8b, ..] => Some(Codec::Gzip),
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(Codec::Bzip2),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(Codec::Xz),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Codec::Zstd),
            [0x04, 0x22, 0x4d, 0x18, ..] => Some(Codec::Lz4),
            // Properties byte (lc/lp/pb) as every encoder writes it, then a dictionary size.
            [0x5d, 0x00, ..] => Some(Codec::Lzma),
            [cmf, flg, ..]
                if cmf & 0x0f == 8
                    && cmf >> 4 <= 7
                    && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 =>
            {
                Some(Codec::Zlib)
            }
            _ => None,
        }
    }
}

/// Bounds on decompression shared by a whole scan.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// Bytes still allowed to be produced by all decompressors of the scan together.
    remaining: Rc<Cell<u64>>,
    max_ratio: u64,
    ratio_floor: u64,
    /// The first limit hit, for the report.
    pub tripped: Rc<RefCell<Option<String>>>,
}

impl Budget {
    /// A budget of `total` output bytes for the whole scan; past `ratio_floor` output bytes, a
    /// stream may expand its compressed bytes at most `max_ratio` times.
    pub fn new(total: u64, max_ratio: u64, ratio_floor: u64) -> Self {
        Budget {
            remaining: Rc::new(Cell::new(total)),
            max_ratio,
            ratio_floor,
            tripped: Rc::new(RefCell::new(None)),
        }
    }

    /// The first limit hit (its message), if any, leaving none recorded.
    pub fn take_tripped(&self) -> Option<String> {
        self.tripped.borrow_mut().take()
    }

    fn trip(&self, message: String) -> io::Error {
        let mut slot = self.tripped.borrow_mut();
        if slot.is_none() {
            *slot = Some(message.clone());
        }
        io::Error::other(message)
    }
}

/// A stream read as the scan's input (standard input, a pipe, a device), charged to the same
/// byte budget as decompression: an input that never ends stops there, with a limit finding.
pub(crate) struct BudgetedInput<R> {
    inner: R,
    budget: Budget,
}

impl<R: Read> BudgetedInput<R> {
    /// `inner`, charged to `budget`.
    pub fn new(inner: R, budget: &Budget) -> Self {
        BudgetedInput {
            inner,
            budget: budget.clone(),
        }
    }
}

impl<R: Read> Read for BudgetedInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.budget.remaining.get();
        if remaining == 0 {
            return Err(self.budget.trip(
                "input limit: the stream is longer than the scan's byte budget (max_decompressed)".into(),
            ));
        }
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(buf.get_mut(..want).unwrap_or_default())?;
        self.budget.remaining.set(remaining.saturating_sub(n as u64));
        Ok(n)
    }
}

/// Counts the compressed bytes a decompressor consumed.
pub(crate) struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// A decompressor's output, checked against the budget and the ratio.
pub(crate) struct Limited<R> {
    inner: R,
    codec: Codec,
    consumed: Rc<Cell<u64>>,
    produced: u64,
    budget: Budget,
}

impl<R> Limited<R> {
    /// `inner`, a decoder of `codec` whose input is counted in `consumed`, checked against
    /// `budget`.
    fn new(inner: R, codec: Codec, consumed: Rc<Cell<u64>>, budget: &Budget) -> Self {
        Limited {
            inner,
            codec,
            consumed,
            produced: 0,
            budget: budget.clone(),
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let n64 = n as u64;
        self.produced = self.produced.saturating_add(n64);
        let remaining = self.budget.remaining.get();
        if n64 > remaining {
            return Err(self.budget.trip(format!(
                "decompression limit: the {} stream decompresses to more than the scan's total budget",
                self.codec.name()
            )));
        }
        self.budget.remaining.set(remaining - n64);
        let consumed = self.consumed.get().max(1);
        if self.produced > self.budget.ratio_floor && self.produced / consumed > self.budget.max_ratio {
            return Err(self.budget.trip(format!(
                "decompression bomb: the {} stream expands {} compressed bytes to more than {} bytes \
                 (ratio over {}:1)",
                self.codec.name(),
                consumed,
                self.produced,
                self.budget.max_ratio
            )));
        }
        Ok(n)
    }
}

/// Decompresses `input` as Python's readers do, stream after stream ([`Streams`]), checked
/// against the scan's budget.
pub(crate) fn open<'a, R: Read + 'a>(
    codec: Codec,
    input: R,
    budget: &Budget,
) -> io::Result<Box<dyn Read + 'a>> {
    let consumed = Rc::new(Cell::new(0));
    let input = io::BufReader::with_capacity(
        64 << 10,
        Counting {
            inner: input,
            count: consumed.clone(),
        },
    );
    Ok(Box::new(Limited::new(
        Streams::new(codec, input)?,
        codec,
        consumed,
        budget,
    )))
}

/// One compressed stream (a gzip member, an xz stream, a zstd or lz4 frame, ...) read from
/// `input`, which it hands back at the stream's end.
enum Single<R: BufRead> {
    Gzip(flate2::bufread::GzDecoder<R>),
    Zlib(flate2::bufread::ZlibDecoder<R>),
    Bzip2(bzip2::bufread::BzDecoder<R>),
    Xz(Box<lzma_rust2::XzReader<R>>),
    Lzma(Box<lzma_rust2::LzmaReader<R>>),
    Zstd(Box<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>),
    Lz4(Box<lz4_flex::frame::FrameDecoder<R>>),
}

impl<R: BufRead> Single<R> {
    fn open(codec: Codec, input: R) -> io::Result<Self> {
        Ok(match codec {
            Codec::Gzip => Single::Gzip(flate2::bufread::GzDecoder::new(input)),
            Codec::Zlib => Single::Zlib(flate2::bufread::ZlibDecoder::new(input)),
            Codec::Bzip2 => Single::Bzip2(bzip2::bufread::BzDecoder::new(input)),
            // 1 GiB of dictionary at most: a hostile header cannot make it allocate more.
            Codec::Xz => Single::Xz(Box::new(lzma_rust2::XzReader::new_mem_limit(
                input,
                false,
                1 << 20,
            ))),
            Codec::Lzma => Single::Lzma(Box::new(
                lzma_rust2::LzmaReader::new_mem_limit(input, 1 << 20, None)
                    .map_err(|e| io::Error::other(e.to_string()))?,
            )),
            Codec::Zstd => Single::Zstd(Box::new(
                ruzstd::decoding::StreamingDecoder::new(input)
                    .map_err(|e| io::Error::other(e.to_string()))?,
            )),
            Codec::Lz4 => Single::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(input))),
        })
    }

    /// The input after the stream, and what the decoder read ahead of its end.
    fn into_parts(self) -> (R, Vec<u8>) {
        match self {
            Single::Gzip(d) => (d.into_inner(), Vec::new()),
            Single::Zlib(d) => (d.into_inner(), Vec::new()),
            Single::Bzip2(d) => (d.into_inner(), Vec::new()),
            Single::Xz(d) => (d.into_inner(), Vec::new()),
            Single::Lzma(d) => d.into_parts(),
            Single::Zstd(d) => (d.into_inner(), Vec::new()),
            Single::Lz4(d) => (d.into_inner(), Vec::new()),
        }
    }
}

impl<R: BufRead> Read for Single<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Single::Gzip(d) => d.read(buf),
            Single::Zlib(d) => d.read(buf),
            Single::Bzip2(d) => d.read(buf),
            Single::Xz(d) => d.read(buf),
            Single::Lzma(d) => d.read(buf),
            Single::Zstd(d) => d.read(buf),
            Single::Lz4(d) => d.read(buf),
        }
    }
}

/// Concatenated streams of one codec, read as the Python readers that open them read them:
/// - `GzipFile`: member after member, zero padding skipped, anything else an error;
/// - `BZ2File` and `LZMAFile` (xz and lzma-alone): stream after stream, and bytes after the
///   last one that do not start a stream are ignored;
/// - zstd and `LZ4FrameFile` (joblib's lz4): frame after frame, anything else an error;
/// - zlib, which only joblib reads (`BinaryZlibFile`): the first stream alone, since joblib
///   never returns data past its end.
struct Streams<R: BufRead> {
    codec: Codec,
    current: Option<Single<Unread<R>>>,
    /// A stream after the first that has produced nothing yet: Python's `BZ2File` and
    /// `LZMAFile` take its failure for the end of the data.
    fresh: bool,
}

impl<R: BufRead> Streams<R> {
    fn new(codec: Codec, input: R) -> io::Result<Self> {
        Ok(Streams {
            codec,
            current: Some(Single::open(codec, Unread::new(input))?),
            fresh: false,
        })
    }

    fn trailing_ignored(&self) -> bool {
        matches!(self.codec, Codec::Bzip2 | Codec::Xz | Codec::Lzma)
    }

    /// After a stream's end: the next stream over the rest of the input, or none.
    fn next_stream(&mut self, single: Single<Unread<R>>) -> io::Result<Option<Single<Unread<R>>>> {
        if self.codec == Codec::Zlib {
            return Ok(None);
        }
        let (mut input, ahead) = single.into_parts();
        input.put_back(ahead);
        if self.codec == Codec::Gzip {
            loop {
                let available = input.fill_buf()?;
                let zeros = available.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                input.consume(zeros);
            }
        }
        if input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        match Single::open(self.codec, input) {
            Ok(next) => Ok(Some(next)),
            Err(_) if self.trailing_ignored() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A buffered input with bytes read past where they belong (a decoder's read-ahead, a peek)
/// put back in front.
pub(crate) struct Unread<R> {
    ahead: Vec<u8>,
    at: usize,
    inner: R,
}

impl<R> Unread<R> {
    /// `inner`, nothing put back yet.
    pub fn new(inner: R) -> Self {
        Unread {
            ahead: Vec::new(),
            at: 0,
            inner,
        }
    }

    /// Puts `bytes` back: they are read next.
    pub fn put_back(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let mut ahead = bytes;
        ahead.extend_from_slice(self.ahead.get(self.at..).unwrap_or_default());
        self.ahead = ahead;
        self.at = 0;
    }
}

impl<R: BufRead> Read for Unread<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(available.get(..n).unwrap_or_default());
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Unread<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at < self.ahead.len() {
            return Ok(self.ahead.get(self.at..).unwrap_or_default());
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.at < self.ahead.len() {
            self.at = (self.at + amount).min(self.ahead.len());
        } else {
            self.inner.consume(amount);
        }
    }
}

impl<R: BufRead> Read for Streams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(single) = self.current.as_mut() else {
                return Ok(0);
            };
            match single.read(buf) {
                Ok(0) if !buf.is_empty() => {
                    let Some(ended) = self.current.take() else {
                        return Ok(0);
                    };
                    self.current = self.next_stream(ended)?;
                    self.fresh = true;
                }
                Ok(n) => {
                    self.fresh = false;
                    return Ok(n);
                }
                Err(_) if self.fresh && self.trailing_ignored() => {
                    self.current = None;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count.set(self.count.get().saturating_add(amount as u64));
        self.inner.consume(amount);
    }
}

/// Raw deflate (a zip member) read from `input`, under the same budget, without reading past
/// the stream's end (the next member of a zip stream follows it) and counting for the ratio
/// exactly the compressed bytes used.
pub(crate) fn open_deflate<'a>(input: impl BufRead + 'a, budget: &Budget) -> Box<dyn Read + 'a> {
    let consumed = Rc::new(Cell::new(0));
    let input = Counting {
        inner: input,
        count: consumed.clone(),
    };
    Box::new(Limited::new(
        flate2::bufread::DeflateDecoder::new(input),
        Codec::Zlib,
        consumed,
        budget,
    ))
}

/// Reads everything, refusing more than `max` bytes; a read error comes with how many bytes
/// were read before it.
pub(crate) fn read_bounded<R: Read>(reader: R, max: u64) -> Result<Result<Vec<u8>, u64>, (io::Error, u64)> {
    let mut out = Vec::new();
    // read_to_end keeps what it read before an error: how far the input could be read.
    if let Err(e) = reader.take(max.saturating_add(1)).read_to_end(&mut out) {
        return Err((e, out.len() as u64));
    }
    if out.len() as u64 > max {
        return Ok(Err(max));
    }
    Ok(Ok(out))
}

/// CRC-32 and length of everything read through it.
pub(crate) struct Crc<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    /// Bytes read through it so far.
    pub len: u64,
    /// Whether the inner reader has reported its end (a read of 0 bytes into a non-empty buffer).
    pub eof: bool,
}

impl<R: Read> Crc<R> {
    /// Wraps `inner`, with nothing read yet.
    pub fn new(inner: R) -> Self {
        Crc {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
            eof: false,
        }
    }

    /// The CRC-32 of the bytes read so far.
    pub fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.len = self.len.saturating_add(n as u64);
        Ok(n)
    }
}
