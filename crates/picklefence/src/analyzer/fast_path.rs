//! The fast path: runs the opcodes that make up the bulk of data pickles straight from the
//! bytes, with exactly the effect `step` would have, and hands everything else back.
//!
//! The driver runs it before every opcode of a slice (and of joblib's pickles held in memory):
//! a check added to an opcode's handler must also be a precondition here, or it is skipped on
//! slices. `tests/fast_path.rs` holds both paths to the same reports.

use super::memo::sparse_memo_index;
use super::value::{Value, KEPT_TUPLE_DEPTH, KEPT_TUPLE_LEN, OPAQUE_TUPLE_SLOT};
use super::Analyzer;
use crate::opcodes::Opcode;

/// The opcode bytes the fast path matches, from the opcode table (`match` patterns need
/// constants).
const FRAME: u8 = Opcode::Frame as u8;
const BININT1: u8 = Opcode::BinInt1 as u8;
const BININT2: u8 = Opcode::BinInt2 as u8;
const BININT: u8 = Opcode::BinInt as u8;
const BINFLOAT: u8 = Opcode::BinFloat as u8;
const NONE: u8 = Opcode::None as u8;
const NEWTRUE: u8 = Opcode::NewTrue as u8;
const NEWFALSE: u8 = Opcode::NewFalse as u8;
const EMPTY_LIST: u8 = Opcode::EmptyList as u8;
const EMPTY_DICT: u8 = Opcode::EmptyDict as u8;
const EMPTY_TUPLE: u8 = Opcode::EmptyTuple as u8;
const SHORT_BINBYTES: u8 = Opcode::ShortBinBytes as u8;
const BINBYTES: u8 = Opcode::BinBytes as u8;
const BINBYTES8: u8 = Opcode::BinBytes8 as u8;
const BYTEARRAY8: u8 = Opcode::ByteArray8 as u8;
const SHORT_BINUNICODE: u8 = Opcode::ShortBinUnicode as u8;
const BINUNICODE: u8 = Opcode::BinUnicode as u8;
const MARK: u8 = Opcode::Mark as u8;
const APPEND: u8 = Opcode::Append as u8;
const APPENDS: u8 = Opcode::Appends as u8;
const SETITEM: u8 = Opcode::SetItem as u8;
const SETITEMS: u8 = Opcode::SetItems as u8;
const TUPLE: u8 = Opcode::Tuple as u8;
const TUPLE1: u8 = Opcode::Tuple1 as u8;
const TUPLE3: u8 = Opcode::Tuple3 as u8;
// TUPLE1..=TUPLE3 is matched as a range, and TUPLEn takes n items.
const _: () = assert!(TUPLE3 - TUPLE1 == 2 && Opcode::Tuple2 as u8 == TUPLE1 + 1);
const MEMOIZE: u8 = Opcode::Memoize as u8;
const BINPUT: u8 = Opcode::BinPut as u8;
const LONG_BINPUT: u8 = Opcode::LongBinPut as u8;
const BINGET: u8 = Opcode::BinGet as u8;
const LONG_BINGET: u8 = Opcode::LongBinGet as u8;
const POP: u8 = Opcode::Pop as u8;
const DUP: u8 = Opcode::Dup as u8;

/// The `n`-byte little-endian number at `at`.
pub(super) fn le_at(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Where the frame of a FRAME opcode at `pos` ends, if the decoder reads that FRAME without
/// error (its length is in range and the frame is all there).
pub(super) fn frame_opened_at(data: &[u8], pos: usize) -> Option<usize> {
    if data.get(pos) != Some(&FRAME) {
        return None;
    }
    let declared = le_at(data, pos + 1, 8)?;
    let body = pos + 9;
    usize::try_from(declared)
        .ok()
        .filter(|&n| declared <= i64::MAX as u64 && n <= data.len().saturating_sub(body))
        .map(|n| body + n)
}

/// The stand-in a scalar or tuple opcode at `at` pushes (the run in `append_run` checked it).
pub(super) fn scalar_value(data: &[u8], at: usize) -> Value {
    let arg = |n: usize| {
        data.get(at + 1..at + 1 + n)
            .map(|b| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            .unwrap_or(0)
    };
    match data.get(at).copied() {
        Some(BININT1) => Value::Int(arg(1) as i64),
        Some(BININT2) => Value::Int(arg(2) as i64),
        Some(BININT) => Value::Int(i64::from(arg(4) as u32 as i32)),
        Some(BINFLOAT) => Value::Float(f64::from_bits(
            data.get(at + 1..at + 9)
                .map_or(0, |b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))),
        )),
        Some(NONE) => Value::None,
        Some(NEWTRUE) => Value::Bool(true),
        Some(NEWFALSE) => Value::Bool(false),
        _ => Value::OpaqueTuple,
    }
}

impl Analyzer<'_> {
    /// `data` up to the end of the frame `pos` is in (all of it outside frames).
    pub(super) fn frame_window<'d>(&mut self, data: &'d [u8], pos: usize) -> &'d [u8] {
        if let Some(frame_end) = self.frame_end {
            let frame_end = usize::try_from(frame_end).unwrap_or(usize::MAX);
            if pos < frame_end {
                return data.get(..frame_end).unwrap_or(data);
            }
            self.frame_end = None;
        }
        data
    }

    /// Runs a FRAME at `pos`, outside any frame, as `step` would: the window of the new frame,
    /// or None (nothing changed) when the general path must take it.
    pub(super) fn open_frame<'d>(&mut self, data: &'d [u8], pos: usize) -> Option<&'d [u8]> {
        let end = frame_opened_at(data, pos)?;
        self.frame_end = Some(end as u64);
        data.get(..end)
    }

    /// Runs, straight from the bytes, the opcodes that make up the bulk of data pickles (numbers,
    /// empty containers, marks, appends, small tuples, memo traffic, byte payloads), with exactly
    /// the effect `step` would have. It returns at the first opcode it does not handle, whose
    /// preconditions do not plainly hold, or that would cross a frame end or a limit: the general
    /// path takes that one, so every finding is still made by `step`.
    pub fn fast_forward(&mut self, data: &[u8], mut pos: usize) -> usize {
        if self.pickle_opcodes == 0 || self.broken || self.stopped {
            return pos;
        }
        let full = data;
        // What may be read from `pos` on: up to the end of the current frame.
        let mut data = self.frame_window(full, pos);
        let budget = self.limits.max_opcodes.saturating_sub(self.opcodes);
        let (max_stack, max_marks, max_memo) =
            (self.limits.max_stack, self.limits.max_marks, self.limits.max_memo);
        let plain = self.joblib.is_none();
        let mut count: u64 = 0;
        // Each arm checks that its whole opcode lies within `data` (the frame) before it acts.
        macro_rules! push {
            ($size:expr, $value:expr) => {{
                let size: usize = $size;
                if pos + size > data.len() {
                    break;
                }
                self.stack.push($value);
                pos += size;
            }};
        }
        while count < budget && self.stack.len() < max_stack {
            let Some(&byte) = data.get(pos) else {
                // The end of a frame: read on outside it (the next FRAME, as a rule, opens the
                // next one), as `step` does.
                if pos != data.len() || data.len() == full.len() {
                    break;
                }
                data = self.frame_window(full, pos);
                continue;
            };
            match byte {
                FRAME if self.frame_end.is_none() => match self.open_frame(full, pos) {
                    Some(window) => {
                        data = window;
                        pos += 9;
                    }
                    None => break,
                },
                BININT1 => match data.get(pos + 1) {
                    Some(&v) => push!(2, Value::Int(i64::from(v))),
                    None => break,
                },
                BININT2 => match data.get(pos + 1..pos + 3) {
                    Some(&[a, b]) => push!(3, Value::Int(i64::from(u16::from_le_bytes([a, b])))),
                    _ => break,
                },
                BININT => match data.get(pos + 1..pos + 5) {
                    Some(&[a, b, c, d]) => push!(5, Value::Int(i64::from(i32::from_le_bytes([a, b, c, d])))),
                    _ => break,
                },
                BINFLOAT => match data.get(pos + 1..pos + 9) {
                    Some(&[a, b, c, d, e, f, g, h]) => {
                        push!(9, Value::Float(f64::from_be_bytes([a, b, c, d, e, f, g, h])))
                    }
                    _ => break,
                },
                NONE => push!(1, Value::None),
                NEWTRUE => push!(1, Value::Bool(true)),
                NEWFALSE => push!(1, Value::Bool(false)),
                EMPTY_LIST => {
                    // At the table bound the general path reports the limit.
                    if self.tables.lists.len() >= max_memo || pos + 1 > data.len() {
                        break;
                    }
                    let list = self.new_list(pos as u64);
                    push!(1, list)
                }
                EMPTY_DICT => {
                    if self.tables.dicts.len() >= max_memo || pos + 1 > data.len() {
                        break;
                    }
                    let dict = self.new_dict(pos as u64, &[]);
                    push!(1, dict)
                }
                EMPTY_TUPLE => push!(1, Value::EmptyTuple),
                SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                    let (prefix, declared) = match byte {
                        SHORT_BINBYTES => (1, le_at(data, pos + 1, 1)),
                        BINBYTES => (4, le_at(data, pos + 1, 4)),
                        _ => (8, le_at(data, pos + 1, 8)),
                    };
                    match declared
                        .and_then(|n| usize::try_from(n).ok())
                        .and_then(|n| n.checked_add(1 + prefix))
                        .filter(|size| pos.checked_add(*size).is_some())
                    {
                        Some(size) => push!(
                            size,
                            Value::Bytes {
                                at: (pos + 1 + prefix) as u64,
                                len: (size - 1 - prefix) as u64,
                                mutable: byte == BYTEARRAY8,
                            }
                        ),
                        None => break,
                    }
                }
                SHORT_BINUNICODE | BINUNICODE => {
                    // SHORT_BINUNICODE / BINUNICODE, as `name_value` makes them; text that is
                    // not strict UTF-8 (surrogates, or an error) or too long to be a name goes
                    // to the general path.
                    let prefix = if byte == SHORT_BINUNICODE { 1 } else { 4 };
                    let Some(n) = le_at(data, pos + 1, prefix)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= self.limits.max_name_len)
                    else {
                        break;
                    };
                    let start = pos + 1 + prefix;
                    let Some(Ok(text)) = data.get(start..start + n).map(std::str::from_utf8) else {
                        break;
                    };
                    push!(1 + prefix + n, self.name_of(text))
                }
                MARK => {
                    if self.marks.len() >= max_marks || pos + 1 > data.len() {
                        break;
                    }
                    if let (true, Some(&Value::List(list))) = (plain, self.stack.last()) {
                        if self.is_frozen(&Value::List(list)) {
                            break;
                        }
                        let room = max_stack.saturating_sub(self.stack.len());
                        if let Some((next, ops, items)) =
                            self.append_run(full, data, pos + 1, budget - count, room)
                        {
                            self.list_grow(list, items);
                            pos = next;
                            count += ops;
                            data = self.frame_window(full, pos);
                            continue;
                        }
                    }
                    self.marks.push(self.stack.len());
                    pos += 1;
                }
                APPENDS | SETITEMS => {
                    // APPENDS onto a list / SETITEMS into a dict, both made by the pickle; an
                    // item that may need a finding goes to the general path.
                    let Some(&mark) = self.marks.last() else { break };
                    let len = self.stack.len();
                    let target = match (byte, mark.checked_sub(1).and_then(|i| self.stack.get(i))) {
                        (APPENDS, Some(&Value::List(id))) => Value::List(id),
                        (SETITEMS, Some(&Value::Dict(id))) if len.saturating_sub(mark).is_multiple_of(2) => {
                            Value::Dict(id)
                        }
                        _ => break,
                    };
                    let items = self.stack.get(mark..).unwrap_or_default();
                    if pos + 1 > data.len()
                        || self.is_frozen(&target)
                        || items.iter().any(|v| self.needs_store_check(v))
                    {
                        break;
                    }
                    // The items are read from the stack while the tables change.
                    let stack = std::mem::take(&mut self.stack);
                    let items = stack.get(mark..).unwrap_or_default();
                    match target {
                        Value::List(id) => self.list_extend(id, items),
                        Value::Dict(id) => self.dict_set(id, items),
                        _ => {}
                    }
                    self.stack = stack;
                    self.stack.truncate(mark);
                    self.marks.pop();
                    pos += 1;
                }
                SETITEM | APPEND => {
                    // SETITEM into a dict / APPEND onto a list made by the pickle.
                    let n = if byte == SETITEM { 2 } else { 1 };
                    let len = self.stack.len();
                    let fence = self.marks.last().copied().unwrap_or(0);
                    if len < fence + n + 1 || pos + 1 > data.len() {
                        break;
                    }
                    let target = match (byte, self.stack.get(len - n - 1)) {
                        (SETITEM, Some(&Value::Dict(id))) => Value::Dict(id),
                        (APPEND, Some(&Value::List(id))) => Value::List(id),
                        _ => break,
                    };
                    let items = self.stack.get(len - n..).unwrap_or_default();
                    if self.is_frozen(&target) || items.iter().any(|v| self.needs_store_check(v)) {
                        break;
                    }
                    let stack = std::mem::take(&mut self.stack);
                    let items = stack.get(len - n..).unwrap_or_default();
                    match target {
                        Value::List(id) => self.list_extend(id, items),
                        Value::Dict(id) => self.dict_set(id, items),
                        _ => {}
                    }
                    self.stack = stack;
                    self.stack.truncate(len - n);
                    pos += 1;
                }
                TUPLE1..=TUPLE3 | TUPLE => {
                    let len = self.stack.len();
                    let fence = self.marks.last().copied().unwrap_or(0);
                    // TUPLE takes everything above its MARK; TUPLE1-3 that many above the fence.
                    let n = if byte == TUPLE {
                        let Some(&mark) = self.marks.last() else { break };
                        len.saturating_sub(mark)
                    } else {
                        let n = usize::from(byte - TUPLE1) + 1;
                        if len < fence + n {
                            break;
                        }
                        n
                    };
                    if pos + 1 > data.len() {
                        break;
                    }
                    let items = self.stack.get(len - n..).unwrap_or_default();
                    let opaque = plain && !self.keep_tuples && items.iter().all(Value::is_scalar);
                    // Tuples too large or deep to keep go the general way (they may need a finding).
                    if !opaque && (n > KEPT_TUPLE_LEN || items.iter().any(|v| v.depth() >= KEPT_TUPLE_DEPTH))
                    {
                        break;
                    }
                    if byte == TUPLE {
                        self.marks.pop();
                    }
                    let tuple = if n == 0 {
                        Value::EmptyTuple
                    } else if opaque {
                        self.stack.truncate(len - n);
                        Value::OpaqueTuple
                    } else {
                        let meta = self.tuple_meta(self.stack.get(len - n..).unwrap_or_default());
                        // One allocation: the Rc is filled from the stack in place.
                        Value::Tuple(self.stack.drain(len - n..).collect(), meta)
                    };
                    push!(1, tuple);
                }
                MEMOIZE | BINPUT | LONG_BINPUT => {
                    let (size, key) = match byte {
                        MEMOIZE => (1, Some(self.memo.len() as u64)),
                        BINPUT => (2, data.get(pos + 1).map(|&k| u64::from(k))),
                        _ => (5, le_at(data, pos + 1, 4)),
                    };
                    let Some(key) = key.and_then(|k| i64::try_from(k).ok()) else {
                        break;
                    };
                    let fence = self.marks.last().copied().unwrap_or(0);
                    let room = (self.memo.len() < max_memo || self.memo.contains_key(&key))
                        && !sparse_memo_index(key, self.memo.len());
                    if self.stack.len() <= fence || !room || pos + size > data.len() {
                        break;
                    }
                    let Some(top) = self.stack.last().cloned() else {
                        break;
                    };
                    self.memo.insert(key, top);
                    pos += size;
                }
                BINGET | LONG_BINGET => {
                    let (size, key) = if byte == BINGET {
                        (2, data.get(pos + 1).map(|&k| u64::from(k)))
                    } else {
                        (5, le_at(data, pos + 1, 4))
                    };
                    match key
                        .and_then(|k| i64::try_from(k).ok())
                        .and_then(|k| self.memo.get(&k))
                    {
                        Some(value) => {
                            let value = value.clone();
                            push!(size, value)
                        }
                        None => break,
                    }
                }
                POP => {
                    let len = self.stack.len();
                    if pos + 1 > data.len() {
                        break;
                    }
                    if self.marks.last() == Some(&len) {
                        self.marks.pop();
                    } else if len > self.marks.last().copied().unwrap_or(0) {
                        self.stack.pop();
                    } else {
                        break;
                    }
                    pos += 1;
                }
                DUP => {
                    let fence = self.marks.last().copied().unwrap_or(0);
                    match self.stack.last() {
                        Some(top) if self.stack.len() > fence => {
                            let top = top.clone();
                            push!(1, top)
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
            count += 1;
        }
        self.opcodes += count;
        self.pickle_opcodes += count;
        pos
    }

    /// `MARK <numbers, tuples of numbers, memo stores> APPENDS` onto a list: the batches a list
    /// of numbers or of number tuples is pickled in. Runs the batch over a depth count and the
    /// top value instead of a stack, ending after the APPENDS; `None` (with nothing changed)
    /// when the batch holds anything else, so that the general loop takes it.
    /// `start` is just past the MARK; returns where the batch ends, the opcode count (MARK and
    /// APPENDS included) and the number of items appended.
    pub(super) fn append_run<'d>(
        &mut self,
        full: &'d [u8],
        mut data: &'d [u8],
        start: usize,
        budget: u64,
        room: usize,
    ) -> Option<(usize, u64, usize)> {
        let dense_before = self.memo.dense.len();
        let max_memo = self.limits.max_memo;
        // With no sparse keys the memo's size is its dense part's, the next key MEMOIZE takes.
        let appendable = self.memo.sparse.is_empty();
        let mut pos = start;
        let mut depth = 0usize;
        // The general loop checks the depth and the opcode count before every opcode; both
        // only grow, so checking their highest values once the batch is read is the same.
        let mut max_depth = 0usize;
        // Where the op that made the top value is: its value is only needed for a memo store.
        let mut top_at = start;
        let mut ops: u64 = 2;
        // An opcode cut off by the end of `data` fails the next read at `pos`.
        // A run of one scalar opcode of `$size` bytes (a list of numbers). Each opcode's size
        // is a constant of its arm and a run is stepped over with the opcode byte only
        // compared: the next position never waits on a load.
        macro_rules! scalars {
            ($byte:ident, $size:literal) => {{
                let mut run = 1;
                while data.get(pos + run * $size) == Some(&$byte) {
                    run += 1;
                }
                pos += (run - 1) * $size;
                top_at = pos;
                depth += run;
                max_depth = max_depth.max(depth);
                pos += $size;
                ops += run as u64;
                continue;
            }};
        }
        // The end of the last frame the batch opened (set on success only).
        let mut opened = None;
        let outcome = loop {
            let Some(&byte) = data.get(pos) else {
                // The end of a frame: batches run on into the next one. (Past the end, an
                // opcode crossed it: the general path reports that.)
                match frame_opened_at(full, pos).filter(|_| pos == data.len()) {
                    Some(end) => {
                        data = full.get(..end).unwrap_or(full);
                        opened = Some(end);
                        pos += 9;
                        ops += 1;
                        continue;
                    }
                    None => break None,
                }
            };
            match byte {
                BININT1 => scalars!(byte, 2),
                BININT2 => scalars!(byte, 3),
                BININT => scalars!(byte, 5),
                BINFLOAT => scalars!(byte, 9),
                NONE | NEWTRUE | NEWFALSE => scalars!(byte, 1),
                TUPLE1..=TUPLE3 => {
                    let n = usize::from(byte - TUPLE1) + 1;
                    // Once the pickle imports anything its tuples are kept (the general path).
                    if depth < n || self.keep_tuples {
                        break None;
                    }
                    depth -= n - 1;
                    top_at = pos;
                    pos += 1;
                    // Picklers memoize a tuple right after making it: take that MEMOIZE here
                    // (the general arm below would do the same).
                    if data.get(pos) == Some(&MEMOIZE) && appendable && self.memo.dense.len() < max_memo {
                        self.memo.dense.push(OPAQUE_TUPLE_SLOT);
                        pos += 1;
                        ops += 1;
                    }
                }
                MEMOIZE | BINPUT | LONG_BINPUT => {
                    let (size, key) = match byte {
                        MEMOIZE => (1, Some(self.memo.dense.len() as u64)),
                        BINPUT => (2, data.get(pos + 1).map(|&k| u64::from(k))),
                        _ => (
                            5,
                            data.get(pos + 1..pos + 5)
                                .and_then(|b| b.try_into().ok())
                                .map(|b| u64::from(u32::from_le_bytes(b))),
                        ),
                    };
                    let fresh = appendable && key == Some(self.memo.dense.len() as u64);
                    if depth == 0 || !fresh || self.memo.dense.len() >= max_memo || pos + size > data.len() {
                        break None;
                    }
                    if matches!(data.get(top_at).copied(), Some(TUPLE1..=TUPLE3)) {
                        self.memo.dense.push(OPAQUE_TUPLE_SLOT);
                    } else if self.memo.push_dense(scalar_value(data, top_at)).is_err() {
                        break None;
                    }
                    pos += size;
                }
                APPENDS => break Some((pos + 1, depth)),
                _ => break None,
            }
            ops += 1;
        };
        match outcome {
            Some((next, items)) if ops < budget && max_depth < room => {
                if let Some(end) = opened {
                    self.frame_end = Some(end as u64);
                }
                Some((next, ops, items))
            }
            _ => {
                // Undo the memo stores: the general loop makes them again.
                self.memo.truncate_dense(dense_before);
                None
            }
        }
    }
}
