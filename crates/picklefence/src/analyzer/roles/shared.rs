//! One memory under two arrays: `numpy`'s `_frombuffer` and `pyarrow`'s `py_buffer` make an
//! array or buffer over the object they are given without a copy, and numpy's
//! `ndarray.__setstate__` keeps large bytes as the array's memory (and makes that array
//! writable). A pickle can hand one object (a memoised bytearray, a DUP, an out-of-band buffer
//! read twice from the memo) to two of them: one becomes state the guard validates (a
//! MultiIndex's codes, an Arrow array's offsets), the other an ordinary frame column, and an
//! ordinary write to the column after the load rewrites the validated state. Real pickles give
//! every array its own buffer: a memory under more than one array or buffer is refused unless
//! all of them are read-only.
//!
//! Read-only sharing stays allowed, on purpose: `_frombuffer`/`py_buffer` over immutable bytes
//! make read-only arrays and buffers (numpy refuses `setflags(write=True)` over a read-only
//! base; pandas refuses `iloc` writes into them), so nothing can write what was checked; and
//! real pickles share bytes (CPython's empty and one-byte bytes are single objects that the
//! pickler memoises once).

use super::*;

/// Raw data an ndarray BUILD is not counted for, in bytes. numpy's `ndarray.__setstate__`
/// copies raw data of at most 1,000 bytes (or unaligned, or byte-swapped) and keeps larger bytes
/// as the array's memory, writable (numpy 2.4). Everything longer than CPython's shared empty
/// and one-byte bytes objects is counted: whether numpy copies depends on its version and the
/// alignment, and no real pickle shares longer bytes between arrays.
const SHARED_BYTES_MAX: u64 = 1;

impl<'p> Analyzer<'p> {
    /// The memory an array made over `value` without a copy would have, and whether it can be
    /// written: `Ok(None)` for what no array can be made over (numpy and pyarrow raise) or what
    /// was already refused; `Err` for an object whose memory the analysis cannot name (another
    /// array, an import), which a second array over it would share.
    pub(super) fn buffer_memory(&self, value: &Value) -> Result<Option<(Memory, bool)>, String> {
        Ok(Some(match value {
            Value::Bytes { at, mutable, .. } => (Memory::Stream(*at), *mutable),
            Value::Buffer { at, readonly } => (Memory::Stream(*at), !*readonly),
            Value::Persistent | Value::Storage(_) => (Memory::Persistent, true),
            Value::Obj(id) => {
                if let Some(memory) = self.tables.memory_of.get(id) {
                    return Ok(Some(*memory));
                }
                if self.obj_flags(*id) & Obj::POISONED != 0 {
                    return Ok(None);
                }
                if self.obj_class_is(*id, "builtins", "bytearray") {
                    (Memory::Made(*id), true)
                } else if self.obj_class_is(*id, "_codecs", "encode") {
                    (Memory::Made(*id), false)
                } else {
                    return Err(format!(
                        "{}, not a buffer the pickle wrote: an array or buffer of its own, whose memory the new \
                         one would share (or no buffer at all)",
                        self.describe_value(value)
                    ));
                }
            }
            Value::Import(index) if !self.is_refused(*index) => {
                return Err(format!(
                    "the import {}, whose memory (if it has any) the whole process shares",
                    self.shown(*index)
                ))
            }
            _ => return Ok(None),
        }))
    }

    /// `where own-buffer(n)`: the buffer is an object whose memory the analysis can name.
    pub(super) fn check_own_buffer(&self, args: &[Value], slot: usize) -> Result<(), String> {
        match args.get(slot) {
            Some(value) => self
                .buffer_memory(value)
                .map(|_| ())
                .map_err(|why| format!("its buffer is {why}")),
            None => Ok(()),
        }
    }

    /// The object `value` describes as a buffer, for messages.
    fn buffer_words(&self, value: &Value) -> String {
        match value {
            Value::Bytes {
                at, mutable: true, ..
            } => format!("the bytearray whose bytes start at offset {at}"),
            Value::Bytes { at, .. } => {
                format!("the bytes (or read-only view) whose bytes start at offset {at}")
            }
            Value::Buffer { at, .. } => format!("the out-of-band buffer of the NEXT_BUFFER at offset {at}"),
            Value::Persistent | Value::Storage(_) => {
                "an object of the loader's persistent_load (any persistent id may return the same object)"
                    .into()
            }
            Value::Obj(id) => {
                let made = self.tables.objects.get(*id as usize).map_or(0, |o| o.offset);
                format!("{} (made at offset {made})", self.describe_value(value))
            }
            other => format!("a {}", other.what()),
        }
    }

    /// Records that `what`, made at `offset`, has the memory of `buffer` (writable or not);
    /// reports it when an earlier array or buffer has the same memory and either can be written.
    pub(super) fn claim_memory(
        &mut self,
        offset: u64,
        buffer: &Value,
        memory: Memory,
        writable: bool,
        what: &str,
    ) {
        let Some(first) = self.tables.buffer_uses.get(&memory).copied() else {
            self.tables
                .buffer_uses
                .insert(memory, BufferUse { offset, writable });
            return;
        };
        if !first.writable && !writable {
            return;
        }
        let which = if first.writable {
            "that one can be written"
        } else {
            "this one can be written"
        };
        let over = self.buffer_words(buffer);
        self.finding(
            FindingKind::SharedBuffer,
            Severity::Critical,
            offset,
            None,
            format!(
                "offset {offset}: {what} over {over}, which is already the memory of the array or buffer made at \
                 offset {} ({which}): the two share one memory, so a write through one (an ordinary \
                 `df.iloc[i, j] = v`) rewrites the other after it was checked; real pickles give every array its \
                 own buffer",
                first.offset
            ),
        );
        if let Some(entry) = self.tables.buffer_uses.get_mut(&memory) {
            entry.writable |= writable;
        }
    }

    /// After a call `where own-buffer(slot)` made `result`: claims the buffer's memory, which
    /// becomes the result's.
    pub(super) fn own_buffer_result(
        &mut self,
        offset: u64,
        index: u32,
        args: &[Value],
        slot: usize,
        result: &Value,
    ) {
        let Some(buffer) = args.get(slot) else {
            return;
        };
        let Ok(Some((memory, writable))) = self.buffer_memory(buffer) else {
            return;
        };
        let what = format!("{} makes an array or buffer", self.shown(index));
        self.claim_memory(offset, buffer, memory, writable, &what);
        if let Value::Obj(id) = result {
            self.tables.memory_of.insert(*id, (memory, writable));
        }
    }

    /// numpy's `ndarray.__setstate__` with raw data in bytes: large bytes become the array's
    /// memory, and the array is writable (numpy 2.4 keeps the bytes object as its base).
    /// bytearray raw data is refused by numpy (nothing is made), but counted all the same.
    pub(super) fn ndarray_over_bytes(&mut self, offset: u64, id: u32, rawdata: &Value) {
        let memory = match rawdata {
            Value::Bytes { at, len, .. } if *len > SHARED_BYTES_MAX => Memory::Stream(*at),
            Value::Obj(made) if self.obj_class_is(*made, "_codecs", "encode") => {
                let len = self.obj_text(*made).map_or(u64::MAX, |t| t.len);
                if len <= SHARED_BYTES_MAX {
                    return;
                }
                Memory::Made(*made)
            }
            Value::Obj(made) if self.obj_class_is(*made, "builtins", "bytearray") => Memory::Made(*made),
            _ => return,
        };
        self.claim_memory(
            offset,
            rawdata,
            memory,
            true,
            "BUILD makes a writable numpy array",
        );
        self.tables.memory_of.insert(id, (memory, true));
    }
}

#[cfg(test)]
mod tests {
    use crate::findings::{Finding, FindingKind};
    use crate::policy::Policy;
    use crate::{analyze_reader, analyze_slice, Options};

    /// A tiny protocol-5 assembler.
    struct B(Vec<u8>);

    type Push = fn(B) -> B;

    impl B {
        fn new() -> B {
            B(vec![0x80, 5])
        }
        fn op(mut self, bytes: &[u8]) -> B {
            self.0.extend_from_slice(bytes);
            self
        }
        fn at(&self) -> u64 {
            self.0.len() as u64
        }
        fn s(mut self, text: &str) -> B {
            self.0.push(0x8c);
            self.0.push(text.len() as u8);
            self.0.extend_from_slice(text.as_bytes());
            self
        }
        fn g(self, module: &str, name: &str) -> B {
            self.s(module).s(name).op(&[0x93])
        }
        fn int(self, v: u8) -> B {
            self.op(&[b'K', v])
        }
        fn bytearray(mut self, payload: &[u8]) -> B {
            self.0.push(0x96);
            self.0.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            self.0.extend_from_slice(payload);
            self
        }
        fn bytes(mut self, payload: &[u8]) -> B {
            self.0.push(b'B');
            self.0.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.0.extend_from_slice(payload);
            self
        }
        fn put(self, key: u8) -> B {
            self.op(&[b'q', key])
        }
        fn get(self, key: u8) -> B {
            self.op(&[b'h', key])
        }
        fn dtype(self) -> B {
            self.g("numpy", "dtype")
                .s("i8")
                .op(b"\x89\x88\x87R(K\x03")
                .s("<")
                .op(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        }
        /// `_frombuffer(buf, dtype('i8'), (2,), 'C')`; the REDUCE's offset.
        fn frombuffer(self, buf: Push) -> (B, u64) {
            let p = buf(self.g("numpy._core.numeric", "_frombuffer").op(b"("));
            let p = p.dtype().int(2).op(b"\x85").s("C").op(b"t");
            let at = p.at();
            (p.op(b"R"), at)
        }
        /// `py_buffer(buf)`; the REDUCE's offset.
        fn py_buffer(self, buf: Push) -> (B, u64) {
            let p = buf(self.g("pyarrow.lib", "py_buffer")).op(b"\x85");
            let at = p.at();
            (p.op(b"R"), at)
        }
        /// `_reconstruct(ndarray, (0,), b'b')` BUILT with `(1, (n,), dtype('i8'), False, raw)`;
        /// the BUILD's offset.
        fn built(self, n: u8, raw: Push) -> (B, u64) {
            let p = self
                .g("numpy._core.multiarray", "_reconstruct")
                .g("numpy", "ndarray")
                .int(0)
                .op(b"\x85C\x01b\x87R(K\x01")
                .int(n)
                .op(b"\x85")
                .dtype()
                .op(b"\x89");
            let p = raw(p).op(b"t");
            let at = p.at();
            (p.op(b"b"), at)
        }
        /// Everything made is appended to a list: `]` first, `a` after each.
        fn list(self) -> B {
            self.op(b"]")
        }
        fn append(self) -> B {
            self.op(b"a")
        }
        fn stop(self) -> Vec<u8> {
            self.op(b".").0
        }
    }

    fn violations(data: &[u8]) -> Vec<Finding> {
        let policy = Policy::default();
        let slice = analyze_slice(data, &policy, &Options::default());
        let stream = analyze_reader(data, &policy, &Options::default());
        assert_eq!(slice.findings, stream.findings, "slice and stream disagree");
        slice.findings.into_iter().filter(Finding::is_violation).collect()
    }

    fn assert_clean(data: &[u8]) {
        let found = violations(data);
        assert!(found.is_empty(), "{found:#?}");
    }

    /// Refused as a shared buffer, at the offset of the second use.
    fn assert_shared(data: &[u8], at: u64) {
        let found = violations(data);
        assert!(
            found
                .iter()
                .any(|f| f.kind == FindingKind::SharedBuffer && f.offset == at),
            "expected shared-buffer at {at}: {found:#?}"
        );
    }

    const RAW: [u8; 16] = [0; 16];
    const LARGE: [u8; 2000] = [0; 2000];

    fn own_bytearray(p: B) -> B {
        p.bytearray(&RAW)
    }
    fn stored_bytearray(p: B) -> B {
        p.bytearray(&RAW).put(100)
    }
    fn again(p: B) -> B {
        p.get(100)
    }
    fn stored_bytes(p: B) -> B {
        p.bytes(&RAW).put(100)
    }
    fn stored_large_bytes(p: B) -> B {
        p.bytes(&LARGE).put(100)
    }
    fn own_large_bytes(p: B) -> B {
        p.bytes(&LARGE)
    }

    #[test]
    fn every_array_over_its_own_buffer_is_clean() {
        let (p, _) = B::new().list().frombuffer(own_bytearray);
        let (p, _) = p.append().frombuffer(own_bytearray);
        let (p, _) = p.append().py_buffer(own_bytearray);
        let (p, _) = p.append().built(250, own_large_bytes);
        let (p, _) = p.append().built(250, own_large_bytes);
        assert_clean(&p.append().stop());
        // Two out-of-band buffers are two buffers.
        let next: Push = |p| p.op(b"\x97");
        let (p, _) = B::new().list().frombuffer(next);
        let (p, _) = p.append().frombuffer(next);
        assert_clean(&p.append().stop());
    }

    #[test]
    fn a_memoised_bytearray_under_two_arrays_is_refused() {
        let (p, _) = B::new().list().frombuffer(stored_bytearray);
        let (p, second) = p.append().frombuffer(again);
        assert_shared(&p.append().stop(), second);
        // An array and an Arrow buffer (the offsets of a string column) over one bytearray.
        let (p, _) = B::new().list().frombuffer(stored_bytearray);
        let (p, second) = p.append().py_buffer(again);
        assert_shared(&p.append().stop(), second);
        let (p, _) = B::new().list().py_buffer(stored_bytearray);
        let (p, second) = p.append().py_buffer(again);
        assert_shared(&p.append().stop(), second);
    }

    #[test]
    fn the_same_bytearray_under_other_memo_keys_or_dup_is_refused() {
        // Stored under two keys, read from each.
        let two_keys: Push = |p| p.bytearray(&RAW).put(100).put(101);
        let other_key: Push = |p| p.get(101);
        let (p, _) = B::new().list().frombuffer(two_keys);
        let (p, second) = p.append().frombuffer(other_key);
        assert_shared(&p.append().stop(), second);
        // DUP'ed, the copy stored and popped.
        let dup: Push = |p| p.bytearray(&RAW).op(b"2").put(101).op(b"0");
        let (p, _) = B::new().list().frombuffer(dup);
        let (p, second) = p.append().frombuffer(other_key);
        assert_shared(&p.append().stop(), second);
        // The whole argument tuple memoised and reused.
        let p = B::new()
            .list()
            .g("numpy._core.numeric", "_frombuffer")
            .op(b"(")
            .bytearray(&RAW);
        let p = p
            .dtype()
            .int(2)
            .op(b"\x85")
            .s("C")
            .op(b"t")
            .put(102)
            .op(b"R")
            .append();
        let p = p.g("numpy._core.numeric", "_frombuffer").get(102);
        let second = p.at();
        assert_shared(&p.op(b"R").append().stop(), second);
    }

    #[test]
    fn a_bytearray_call_result_or_an_out_of_band_buffer_reused_is_refused() {
        let made: Push = |p| p.g("builtins", "bytearray").bytes(&RAW).op(b"\x85R").put(100);
        let (p, _) = B::new().list().frombuffer(made);
        let (p, second) = p.append().frombuffer(again);
        assert_shared(&p.append().stop(), second);
        // NEXT_BUFFER gives a fresh buffer, but the pickle can memoise it.
        let next: Push = |p| p.op(b"\x97").put(100);
        let (p, _) = B::new().list().frombuffer(next);
        let (p, second) = p.append().py_buffer(again);
        assert_shared(&p.append().stop(), second);
        // A read-only view of it does not make the writable buffer read-only.
        let readonly: Push = |p| p.get(100).op(b"\x98");
        let (p, _) = B::new().list().frombuffer(next);
        let (p, second) = p.append().frombuffer(readonly);
        assert_shared(&p.append().stop(), second);
        // An array made over another array's memory is that memory again.
        let array: Push = |p| p.get(103);
        let (p, _) = B::new().list().frombuffer(stored_bytearray);
        let (p, second) = p.put(103).append().frombuffer(array);
        assert_shared(&p.append().stop(), second);
    }

    #[test]
    fn read_only_bytes_may_be_shared_but_not_with_a_built_array() {
        // `_frombuffer`/`py_buffer` over bytes make read-only arrays: nothing writes them.
        let (p, _) = B::new().list().frombuffer(stored_bytes);
        let (p, _) = p.append().frombuffer(again);
        let (p, _) = p.append().py_buffer(again);
        assert_clean(&p.append().stop());
        // numpy's __setstate__ keeps large bytes as a writable array's memory.
        let (p, _) = B::new().list().frombuffer(stored_large_bytes);
        let (p, second) = p.append().built(250, again);
        assert_shared(&p.append().stop(), second);
        let (p, _) = B::new().list().built(250, stored_large_bytes);
        let (p, second) = p.append().built(250, again);
        assert_shared(&p.append().stop(), second);
        let (p, _) = B::new().list().built(250, stored_large_bytes);
        let (p, second) = p.append().frombuffer(again);
        assert_shared(&p.append().stop(), second);
        // CPython's empty and one-byte bytes are single objects real pickles memoise once.
        let empty: Push = |p| p.bytes(b"").put(100);
        let (p, _) = B::new().list().built(0, empty);
        let (p, _) = p.append().built(0, again);
        assert_clean(&p.append().stop());
    }

    #[test]
    fn an_object_with_memory_of_its_own_is_no_buffer() {
        // Any object made by a call other than the buffer makers: it may be an array itself.
        let (p, _) = B::new().list().frombuffer(|p| p.dtype());
        let found = violations(&p.append().stop());
        assert!(
            found.iter().any(|f| f.kind == FindingKind::ArgumentViolation
                && f.message.contains("not a buffer the pickle wrote")),
            "{found:#?}"
        );
        // An array BUILT over bytes is that memory again.
        let (p, _) = B::new().list().built(2, stored_bytes);
        let (p, second) = p.put(103).append().frombuffer(|p| p.get(103));
        assert_shared(&p.append().stop(), second);
    }
}
