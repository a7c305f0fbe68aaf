//! Helpers shared by the fuzz targets: a reader that returns short, random-sized reads (and
//! spurious `Interrupted` errors), and a deterministic configuration derived from the input.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use picklefence::{Arg, DecodeError, Decoder, Limits, Op, StreamLimits};

/// FNV-1a: the configuration (chunk sizes, limits) is derived from the input itself, so a seed
/// file is fuzzed as it is, with no configuration header eating its first bytes.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// xorshift64*: a tiny deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A reader over a slice that hands out 1..=`max_chunk` bytes per call, sometimes fails with
/// `Interrupted` (which a correct reader loop retries), and counts what it gave out.
pub struct ChoppyReader<'a> {
    data: &'a [u8],
    pos: usize,
    rng: Rng,
    max_chunk: u64,
    interrupts: bool,
    consumed: Rc<Cell<u64>>,
}

impl<'a> ChoppyReader<'a> {
    pub fn new(data: &'a [u8], seed: u64, max_chunk: u64, interrupts: bool) -> Self {
        ChoppyReader {
            data,
            pos: 0,
            rng: Rng::new(seed),
            max_chunk: max_chunk.max(1),
            interrupts,
            consumed: Rc::new(Cell::new(0)),
        }
    }

    /// A handle on how many bytes the reader has handed out so far.
    pub fn consumed(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.consumed)
    }
}

impl Read for ChoppyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupts && self.rng.below(8) == 0 {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "spurious"));
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let want = 1 + self.rng.below(self.max_chunk) as usize;
        let n = want.min(buf.len()).min(rest.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

/// Stream configuration for an input: chunking and the keep-payload limit.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    pub seed: u64,
    pub max_chunk: u64,
    pub interrupts: bool,
    pub keep_payload: usize,
}

impl StreamConfig {
    pub fn for_input(data: &[u8]) -> Self {
        let h = fnv(data);
        let max_chunk = match h & 3 {
            0 => 1,
            1 => 3,
            2 => 17,
            _ => 4096,
        };
        let keep_payload = match (h >> 2) & 3 {
            0 => 0,
            1 => 1,
            2 => 7,
            _ => 64 << 10,
        };
        StreamConfig {
            seed: h >> 8,
            max_chunk,
            interrupts: (h >> 4) & 1 == 1,
            keep_payload,
        }
    }

    pub fn reader<'a>(&self, data: &'a [u8]) -> ChoppyReader<'a> {
        ChoppyReader::new(data, self.seed, self.max_chunk, self.interrupts)
    }

    pub fn stream_limits(&self, max_line: usize) -> StreamLimits {
        StreamLimits {
            max_line,
            keep_payload: self.keep_payload,
        }
    }
}

/// Small limits derived from the input, to drive every limit path.
pub fn tight_limits(data: &[u8]) -> Limits {
    let h = fnv(data).rotate_left(17);
    let pick = |shift: u32, values: &[u64]| -> u64 {
        let i = ((h >> shift) as usize) % values.len();
        values.get(i).copied().unwrap_or(1)
    };
    Limits {
        max_stack: pick(0, &[0, 1, 2, 5, 64]) as usize,
        max_marks: pick(3, &[0, 1, 3, 64]) as usize,
        max_memo: pick(6, &[0, 1, 4, 64]) as usize,
        max_opcodes: pick(9, &[0, 1, 10, 1000]),
        max_name_len: pick(12, &[0, 1, 8, 4096]) as usize,
        max_records: pick(15, &[0, 1, 5, 1000]) as usize,
        max_findings: pick(18, &[0, 1, 5, 1000]) as usize,
        max_pickles: pick(21, &[0, 1, 2, 1000]) as usize,
        stream: StreamLimits::default(),
    }
}

/// Whether an argument the streaming decoder returned is what the slice decoder returned for
/// the same bytes: equal, or the same kind and length with the payload skipped (not held).
pub fn same_arg(slice: &Arg<'_>, stream: &Arg<'_>) -> bool {
    if slice == stream {
        return true;
    }
    match (slice, stream) {
        (Arg::Float(a), Arg::Float(b)) => a.to_bits() == b.to_bits(),
        (Arg::Long(a), Arg::Long(b))
        | (Arg::Str(a), Arg::Str(b))
        | (Arg::Bytes(a), Arg::Bytes(b))
        | (Arg::Unicode(a), Arg::Unicode(b))
        | (Arg::BadUnicode(a), Arg::BadUnicode(b)) => {
            a.len == b.len && b.data.is_none() && a.data.as_ref().map(|d| d.len() as u64) == Some(a.len)
        }
        _ => false,
    }
}

/// Whether two decoded opcodes agree (see [`same_arg`]).
pub fn same_op(slice: &Op<'_>, stream: &Op<'_>) -> bool {
    slice.offset == stream.offset
        && slice.len == stream.len
        && slice.opcode == stream.opcode
        && same_arg(&slice.arg, &stream.arg)
}

/// Whether the slice decoder stops at a FRAME longer than what remains: a stream cannot know
/// that up front, the one place slice and stream readings legitimately differ.
pub fn has_overlong_frame(data: &[u8]) -> bool {
    let mut decoder = Decoder::from_slice(data);
    loop {
        match decoder.next_op() {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(e) => return matches!(e, DecodeError::Truncated { opcode: "FRAME", .. }),
        }
    }
}
