//! Persistent ids (PERSID, BINPERSID): what they are noted as, and torch's legacy storages
//! they declare.

use std::collections::HashSet;

use super::value::Value;
use super::{Analyzer, Detail, Flow, PersistentId, Sym};
use crate::decoder::{Arg, Op};
use crate::findings::{FindingKind, Severity};

/// Bytes per element of a storage class.
pub fn element_size(storage: &str) -> Option<u64> {
    Some(match storage {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage"
        | "QUInt4x2Storage" | "QUInt2x4Storage" | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// The distinct storages the legacy torch persistent ids of a stream declare, and their bytes.
#[derive(Debug, Default)]
pub(super) struct LegacyStorages {
    keys: HashSet<Box<str>>,
    bytes: u64,
    reported: bool,
}

/// Distinct legacy storage keys counted; past it every new key is taken as unbounded.
const MAX_LEGACY_STORAGES: usize = 1 << 16;

impl Analyzer<'_> {
    /// A persistent id: noted once a pickle, listed (up to `max_records`) in full detail.
    pub(super) fn persistent(&mut self, offset: u64, pid: &Value) {
        self.active = true;
        let listed = self.detail == Detail::Full;
        if listed || !self.persistent_noted {
            let pid = self.sym(pid);
            self.persistent_finding(offset, &pid);
            if listed && self.report.persistent_ids.len() < self.limits.max_records {
                self.report.persistent_ids.push(PersistentId {
                    offset,
                    pickle: self.pickle_index(),
                    value: pid,
                });
            } else if listed {
                self.report.records_dropped += 1;
            }
        }
        // torch's `('storage', StorageClass, key, location, numel, ...)`: the storage's size
        // bounds the tensor views made over it.
        let storage = match pid {
            Value::Tuple(items, _) if items.first().and_then(Value::name_bytes) == Some(b"storage") => {
                match items.get(4) {
                    Some(Value::Int(numel)) if *numel >= 0 => Some(*numel as u64),
                    _ => None,
                }
            }
            _ => None,
        };
        if self.stream_remaining.is_some() {
            self.count_legacy_storage(offset, pid);
        }
        self.push(storage.map_or(Value::Persistent, Value::Storage));
    }

    /// torch's legacy `('storage', StorageClass, key, location, numel, view_metadata)`: the
    /// loader allocates `numel` elements for each new key while the pickle loads.
    pub(super) fn count_legacy_storage(&mut self, offset: u64, pid: &Value) {
        let Value::Tuple(items, _) = pid else {
            return;
        };
        let [tag, class, key, _, numel, _] = &**items else {
            return;
        };
        if tag.name_bytes() != Some(b"storage") {
            return;
        }
        let element = match class {
            Value::Import(index) => self
                .table
                .get(*index as usize)
                .and_then(|e| e.target.as_ref())
                .and_then(|t| element_size(&t.name)),
            _ => None,
        };
        let bytes = match numel {
            Value::Int(n) if *n >= 0 => (*n as u64).saturating_mul(element.unwrap_or(1)),
            _ => u64::MAX,
        };
        let storages = self.legacy_storages.get_or_insert_with(Box::default);
        let new_key = match key.as_name() {
            Some(key) if storages.keys.len() < MAX_LEGACY_STORAGES => storages.keys.insert(key.into()),
            _ => true,
        };
        if new_key {
            storages.bytes = storages.bytes.saturating_add(bytes);
        }
        let (declared, available) = (storages.bytes, self.stream_remaining.unwrap_or(u64::MAX));
        if declared > available && !storages.reported {
            storages.reported = true;
            self.finding(
                FindingKind::Container,
                Severity::High,
                offset,
                None,
                format!(
                    "the legacy torch storages declared up to offset {offset} hold {declared} bytes, but only \
                     {available} bytes follow the start of the pickle: torch allocates every declared storage \
                     while loading, before it reads any data"
                ),
            );
        }
    }

    pub(super) fn persistent_finding(&mut self, offset: u64, pid: &Sym) {
        // One note per pickle: container readers judge the ids themselves.
        if self.persistent_noted {
            return;
        }
        self.persistent_noted = true;
        self.finding(
            FindingKind::PersistentId,
            Severity::Info,
            offset,
            None,
            format!("persistent id {pid} at offset {offset}: the loader's persistent_load decides what it becomes"),
        );
    }

    /// PERSID: an ASCII line as the id.
    pub(super) fn load_persid(&mut self, op: &Op<'_>) -> Flow {
        let pid = match &op.arg {
            Arg::Line(line) if line.is_ascii() => self.name_value(Some(line)),
            _ => {
                self.break_stream(op.offset, "the PERSID argument is not ASCII");
                Value::Unknown
            }
        };
        self.persistent(op.offset, &pid);
        Flow::Continue
    }

    /// BINPERSID: the id is the value on top.
    pub(super) fn load_binpersid(&mut self, op: &Op<'_>) -> Flow {
        let pid_value = self.pop(op.offset, op.opcode);
        self.persistent(op.offset, &pid_value);
        // Legacy torch saves name a module's class as `('module', cls, file, source)`
        // and its `persistent_load` returns `cls`: the object is that (checked) import.
        if let Value::Tuple(items, _) = &pid_value {
            if let (Some(tag), Some(Value::Import(class))) =
                (items.first().and_then(Value::as_name), items.get(1))
            {
                if tag == "module" {
                    if let Some(top) = self.stack.last_mut() {
                        *top = Value::Import(*class);
                    }
                }
            }
        }
        Flow::Continue
    }

    /// NEXT_BUFFER: an out-of-band buffer, noted once a stream.
    pub(super) fn load_next_buffer(&mut self, offset: u64) -> Flow {
        if !self.buffers_noted {
            self.buffers_noted = true;
            self.finding(
                FindingKind::OutOfBandBuffer,
                Severity::Info,
                offset,
                None,
                "the pickle takes out-of-band buffers (protocol 5); they come from the loader, not the file"
                    .into(),
            );
        }
        self.push(Value::Buffer {
            at: offset,
            readonly: false,
        });
        Flow::Continue
    }

    /// READONLY_BUFFER: a read-only view of the buffer on top, over the same memory (CPython
    /// makes a memoryview of a writable object and marks it read-only; a read-only one stays).
    pub(super) fn load_readonly_buffer(&mut self, op: &Op<'_>) -> Flow {
        let value = match self.pop(op.offset, op.opcode) {
            Value::Bytes { at, len, .. } => Value::Bytes {
                at,
                len,
                mutable: false,
            },
            Value::Buffer { at, .. } => Value::Buffer { at, readonly: true },
            other => other,
        };
        self.push(value);
        Flow::Continue
    }
}
