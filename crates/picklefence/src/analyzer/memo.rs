//! The memo, and the opcodes that write and read it (PUT, BINPUT, LONG_BINPUT, MEMOIZE, GET,
//! BINGET, LONG_BINGET).

use std::collections::HashMap;

use super::value::{plain_index, Value, PLAIN_VALUES};
use super::{Analyzer, Flow};
use crate::decoder::Op;
use crate::findings::{FindingKind, Severity};
use crate::opcodes::Opcode;

/// The memo. Picklers number entries 0, 1, 2, ...: those keys live in a vector, any other key
/// in a map. The vector holds 4-byte indexes into `values`, where each value without a payload
/// is stored once: a list of a million containers or tuples memoizes a million of those, and
/// costs 4 MB and no per-entry drop. A key given a payload gets a slot of its own, which later
/// stores to that key reuse, so `values` never outgrows the keys. Keys below `dense.len()` are
/// never in `sparse`.
#[derive(Debug)]
pub(super) struct Memo {
    pub(super) dense: Vec<u32>,
    pub(super) values: Vec<Value>,
    pub(super) sparse: HashMap<i64, Value>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            dense: Vec::new(),
            values: PLAIN_VALUES.to_vec(),
            sparse: HashMap::new(),
        }
    }
}

impl Memo {
    pub(super) fn len(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    pub(super) fn get(&self, key: &i64) -> Option<&Value> {
        match usize::try_from(*key) {
            Ok(i) if i < self.dense.len() => {
                self.dense.get(i).and_then(|&slot| self.values.get(slot as usize))
            }
            _ if self.sparse.is_empty() => None,
            _ => self.sparse.get(key),
        }
    }

    pub(super) fn contains_key(&self, key: &i64) -> bool {
        self.get(key).is_some()
    }

    /// Appends the entry for key `dense.len()`; gives the value back when `values` is full.
    #[inline]
    pub(super) fn push_dense(&mut self, value: Value) -> Result<(), Value> {
        let slot = match plain_index(&value) {
            Some(slot) => slot,
            None => {
                let Ok(slot) = u32::try_from(self.values.len()) else {
                    return Err(value);
                };
                self.values.push(value);
                slot
            }
        };
        self.dense.push(slot);
        Ok(())
    }

    pub(super) fn insert(&mut self, key: i64, value: Value) {
        match usize::try_from(key) {
            Ok(i) if i < self.dense.len() => {
                let Some(slot) = self.dense.get_mut(i) else { return };
                if (*slot as usize) >= PLAIN_VALUES.len() {
                    if let Some(owned) = self.values.get_mut(*slot as usize) {
                        *owned = value;
                    }
                } else if let Some(plain) = plain_index(&value) {
                    *slot = plain;
                } else if let Ok(owned) = u32::try_from(self.values.len()) {
                    *slot = owned;
                    self.values.push(value);
                }
            }
            Ok(i) if i == self.dense.len() => {
                if !self.sparse.is_empty() {
                    self.sparse.remove(&key);
                }
                if let Err(value) = self.push_dense(value) {
                    self.sparse.insert(key, value);
                }
            }
            _ => {
                self.sparse.insert(key, value);
            }
        }
    }

    /// Drops the dense entries from key `len` on (they were all appended after it).
    pub(super) fn truncate_dense(&mut self, len: usize) {
        let first_owned = self.dense.get(len..).and_then(|tail| {
            tail.iter()
                .copied()
                .find(|&slot| slot as usize >= PLAIN_VALUES.len())
        });
        if let Some(first_owned) = first_owned {
            self.values.truncate(first_owned as usize);
        }
        self.dense.truncate(len);
    }

    pub(super) fn clear(&mut self) {
        self.dense.clear();
        self.values.truncate(PLAIN_VALUES.len());
        self.sparse.clear();
    }
}

/// A memo key so far past the entries written that CPython's memo array would take over a
/// gigabyte for it (`_Unpickler_MemoPut` resizes to twice the key, 8 bytes a slot).
pub(super) fn sparse_memo_index(key: i64, entries: usize) -> bool {
    const HUGE: i64 = 1 << 26;
    key >= HUGE && key > i64::try_from(entries).unwrap_or(i64::MAX).saturating_mul(2)
}

impl Analyzer<'_> {
    pub(super) fn memo_key(&mut self, op: &Op<'_>) -> Option<i64> {
        match op.arg.as_index() {
            Some(key) if key >= 0 => Some(key),
            _ => {
                self.break_stream(
                    op.offset,
                    &format!("{} has an invalid memo index", op.opcode.name()),
                );
                None
            }
        }
    }

    pub(super) fn memo_put(&mut self, offset: u64, key: i64, value: Value) -> Flow {
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            return self.limit(
                offset,
                &format!("more than {} memo entries", self.limits.max_memo),
            );
        }
        self.memo.insert(key, value);
        Flow::Continue
    }

    /// CPython keeps the memo as an array indexed by key and grows it to twice the largest key
    /// written: a huge key far beyond the entries written makes the loader allocate gigabytes.
    pub(super) fn check_memo_index(&mut self, offset: u64, opcode: Opcode, key: i64) {
        if sparse_memo_index(key, self.memo.len()) {
            let gib = key.saturating_mul(16) >> 30;
            self.finding(
                FindingKind::LimitExceeded,
                Severity::High,
                offset,
                None,
                format!(
                    "{} at offset {offset} stores memo key {key} with {} entries written: CPython would allocate \
                     about {gib} GiB for its memo (memory exhaustion); picklers number keys densely",
                    opcode.name(),
                    self.memo.len()
                ),
            );
        }
    }

    /// GET, BINGET, LONG_BINGET. A key this pickle never stored is a break, or, when the
    /// unpickler keeps an earlier memo, an object the analysis never saw.
    pub(super) fn load_get(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let value = match self.memo_key(op) {
            Some(key) => match self.memo.get(&key) {
                Some(value) => value.clone(),
                None if self.memo_inherited => {
                    self.finding(
                        FindingKind::EarlierMemo,
                        Severity::Critical,
                        offset,
                        None,
                        format!(
                            "{} at offset {offset} reads memo key {key}, which this pickle never stored: an \
                             unpickler that loaded before keeps its memo, so it is an object of an earlier \
                             pickle, whose use here cannot be checked",
                            opcode.name()
                        ),
                    );
                    Value::Unknown
                }
                None => {
                    self.break_stream(offset, &format!("memo key {key} was never stored"));
                    Value::Unknown
                }
            },
            None => Value::Unknown,
        };
        self.push(value);
        Flow::Continue
    }

    /// PUT, BINPUT, LONG_BINPUT.
    pub(super) fn load_put(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let value = self.top(offset, opcode);
        if let Some(key) = self.memo_key(op) {
            self.check_memo_index(offset, opcode, key);
            return self.memo_put(offset, key, value);
        }
        Flow::Continue
    }

    /// MEMOIZE: the next key is the memo's size.
    pub(super) fn load_memoize(&mut self, op: &Op<'_>) -> Flow {
        let value = self.top(op.offset, op.opcode);
        let key = i64::try_from(self.memo.len()).unwrap_or(i64::MAX);
        self.memo_put(op.offset, key, value)
    }
}
