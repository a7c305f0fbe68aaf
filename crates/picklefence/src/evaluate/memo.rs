//! An unpickler's memo, as the evaluator keeps it.

use foldhash::HashMap;

use super::Val;

/// An unpickler's memo (a dict in CPython): keys written in order live in a vector, others in
/// a map; `len` counts distinct keys, as MEMOIZE needs.
#[derive(Debug, Default)]
pub(super) struct Memo {
    dense: Vec<Option<Val>>,
    dense_len: u64,
    sparse: HashMap<u64, Val>,
}

impl Memo {
    /// Keys this far past the vector's end go to the map (a huge key costs no memory).
    const DENSE_GAP: usize = 4096;

    pub(super) fn get(&self, key: u64) -> Option<Val> {
        let dense = usize::try_from(key)
            .ok()
            .and_then(|i| self.dense.get(i).copied().flatten());
        dense.or_else(|| self.sparse.get(&key).copied())
    }

    /// Stores `value` under `key`; returns how many slots the vector grew by (the caller counts
    /// them against its budget: keys a few thousand apart would otherwise grow it without one).
    pub(super) fn insert(&mut self, key: u64, value: Val) -> usize {
        let before = self.dense.len();
        match usize::try_from(key) {
            Ok(i) if i <= self.dense.len().saturating_add(Self::DENSE_GAP) => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, None);
                }
                if let Some(slot) = self.dense.get_mut(i) {
                    if slot.replace(value).is_none() {
                        self.dense_len += 1;
                    }
                }
                if !self.sparse.is_empty() {
                    self.sparse.remove(&key);
                }
            }
            _ => {
                self.sparse.insert(key, value);
            }
        }
        self.dense.len() - before
    }

    pub(super) fn len(&self) -> u64 {
        self.dense_len + self.sparse.len() as u64
    }
}
