//! Where a checkpoint's data pickle and storages are: the zip format's `data.pkl` and
//! `data/<key>` records, or the legacy format's five pickles and the records after them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use crate::analyzer::element_size;
use crate::decoder::{Decoder, Op, SliceSource};
use crate::evaluate::{Evaluator, GaveUp, Heap, Trailing, Val};
use crate::formats::zip::{ZipArchive, ZipEntry};
use crate::opcodes::Opcode;

use super::ConvertError;

/// Members read at most from a checkpoint's zip (one per storage, and a few more).
const MAX_ENTRIES: usize = 1 << 20;

/// A checkpoint's data pickle, evaluated, and its storage records.
#[derive(Debug)]
pub(super) struct Found<'a> {
    /// What the data pickle made.
    pub heap: Heap,
    /// What `load` returns.
    pub root: Val,
    /// Offset of the data pickle in the input (pickle offsets are relative to it).
    pub pickle_at: u64,
    /// Storage records by key: index into `records`.
    pub keys: HashMap<String, usize>,
    /// Each record's bytes.
    records: Vec<Cow<'a, [u8]>>,
    /// The archive's byte order is big-endian (torch writes `byteorder`; legacy files
    /// `sys_info['little_endian']`).
    pub big_endian: bool,
    /// Fields of a storage persistent id (5 in the zip format, 6 in the legacy one).
    pub id_fields: usize,
}

impl<'a> Found<'a> {
    /// The records' bytes, indexed as [`Found::keys`] gives.
    pub fn into_storages(self) -> Vec<Cow<'a, [u8]>> {
        self.records
    }
}

fn malformed(offset: u64, what: impl Into<String>) -> ConvertError {
    ConvertError::Malformed {
        offset,
        what: what.into(),
    }
}

/// The zip format: the folder of the archive's first member holds `data.pkl`, `byteorder` and
/// `data/<key>` (as torch's reader finds them).
pub(super) fn zip(data: &[u8]) -> Result<Found<'_>, ConvertError> {
    let archive = ZipArchive::parse(data, MAX_ENTRIES).map_err(|e| malformed(0, e.to_string()))?;
    let first = archive
        .entries
        .first()
        .ok_or_else(|| malformed(0, "the archive has no members"))?;
    let folder = match first.name.iter().position(|&b| b == b'/') {
        Some(slash) => first.name.get(..=slash).unwrap_or_default().to_vec(),
        None => {
            return Err(malformed(
                first.local_offset,
                "the archive's first member is not in a folder",
            ))
        }
    };
    let named = |name: &[u8]| {
        archive
            .entries
            .iter()
            .rev() // zipfile and torch's reader take the last member of a name
            .find(|e| e.name.strip_prefix(folder.as_slice()) == Some(name))
    };
    let pickle_entry = named(b"data.pkl").ok_or_else(|| malformed(0, "the archive has no data.pkl"))?;
    let pickle = member(data, pickle_entry)?;
    let big_endian = match named(b"byteorder") {
        None => false,
        Some(entry) => match member(data, entry)?.as_ref() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(malformed(
                    entry.local_offset,
                    format!("byteorder record is {:?}", String::from_utf8_lossy(other)),
                ))
            }
        },
    };
    let mut keys = HashMap::new();
    let mut records = Vec::new();
    let data_folder = [folder.as_slice(), b"data/"].concat();
    for entry in &archive.entries {
        let Some(key) = entry.name.strip_prefix(data_folder.as_slice()) else {
            continue;
        };
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        keys.insert(key.to_owned(), records.len());
        records.push(member(data, entry)?);
    }
    let pickle_at = pickle_entry.data_offset.unwrap_or(0);
    let mut evaluator = Evaluator::default();
    let mut decoder = Decoder::from_slice(&pickle);
    let root = next_result(&mut evaluator, &mut decoder, pickle_at)?;
    Ok(Found {
        heap: evaluator.heap,
        root,
        pickle_at,
        keys,
        records,
        big_endian,
        id_fields: 5,
    })
}

/// A member's bytes: stored ones borrowed, deflated ones inflated (torch writes them stored).
fn member<'a>(data: &'a [u8], entry: &ZipEntry) -> Result<Cow<'a, [u8]>, ConvertError> {
    let at = entry.local_offset;
    let name = entry.display_name();
    if entry.is_encrypted() {
        return Err(ConvertError::Unsupported {
            offset: at,
            what: format!("member {name} is encrypted"),
        });
    }
    let raw = entry
        .raw(data)
        .ok_or_else(|| malformed(at, format!("member {name} runs past the end of the input")))?;
    match entry.method {
        0 => Ok(Cow::Borrowed(raw)),
        8 => {
            let mut out = Vec::new();
            let declared = entry.uncompressed_size;
            flate2::read::DeflateDecoder::new(raw)
                .take(declared.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| malformed(at, format!("member {name} does not inflate: {e}")))?;
            if out.len() as u64 != declared {
                return Err(malformed(
                    at,
                    format!(
                        "member {name} inflates to {} bytes, its header says {declared}",
                        out.len()
                    ),
                ));
            }
            Ok(Cow::Owned(out))
        }
        method => Err(ConvertError::Unsupported {
            offset: at,
            what: format!("member {name} is compressed with method {method}"),
        }),
    }
}

/// The legacy format: magic number, protocol version, `sys_info`, the data pickle and the
/// storage keys, then per key its element count (8 bytes) and its bytes.
pub(super) fn legacy(data: &[u8]) -> Result<Found<'_>, ConvertError> {
    let mut evaluator = Evaluator::default();
    let mut decoder = Decoder::from_slice(data);
    let _magic = next_result(&mut evaluator, &mut decoder, 0)?;
    let _protocol = next_result(&mut evaluator, &mut decoder, 0)?;
    let sys_info = next_result(&mut evaluator, &mut decoder, 0)?;
    let root = next_result(&mut evaluator, &mut decoder, 0)?;
    let keys_at = decoder.position();
    let key_list = next_result(&mut evaluator, &mut decoder, 0)?;
    let heap = evaluator.heap;
    let big_endian = matches!(heap.get(sys_info, "little_endian"), Some(Val::Bool(false)));
    let sizes = element_sizes(&heap);
    let key_values = match heap.list(key_list, u64::MAX) {
        Some(items) => items.to_vec(),
        None => heap.tuple(key_list).map(<[Val]>::to_vec).unwrap_or_default(),
    };
    let mut at = decoder.position();
    let mut keys = HashMap::new();
    let mut records = Vec::new();
    for key in key_values {
        let key = heap
            .str(key)
            .ok_or_else(|| malformed(keys_at, "the storage key list holds a value that is not a str"))?
            .to_owned();
        let size = *sizes.get(key.as_str()).ok_or_else(|| {
            malformed(
                keys_at,
                format!("storage {key} is listed but no tensor declares its type"),
            )
        })?;
        let head = usize::try_from(at)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(8)?))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| malformed(at, format!("the input ends before storage {key}'s element count")))?;
        let numel = if big_endian {
            u64::from_be_bytes(head)
        } else {
            u64::from_le_bytes(head)
        };
        let start = at + 8;
        let len = numel
            .checked_mul(size)
            .ok_or_else(|| malformed(at, format!("storage {key} declares {numel} elements")))?;
        let bytes = usize::try_from(start)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(s, l)| data.get(s..s.checked_add(l)?))
            .ok_or_else(|| {
                malformed(
                    at,
                    format!("storage {key} declares {len} bytes, past the end of the input"),
                )
            })?;
        keys.insert(key, records.len());
        records.push(Cow::Borrowed(bytes));
        at = start + len;
    }
    Ok(Found {
        heap,
        root,
        pickle_at: 0, // one decoder reads the whole input: offsets are already the input's
        keys,
        records,
        big_endian,
        id_fields: 6,
    })
}

/// The element size of each storage key the persistent ids declare.
fn element_sizes(heap: &Heap) -> HashMap<&str, u64> {
    let mut sizes = HashMap::new();
    for &id in heap.persistent_ids() {
        let Some([_, class, key, ..]) = heap.tuple(id) else {
            continue;
        };
        let (Some((_, class)), Some(key)) = (heap.global(*class), heap.str(*key)) else {
            continue;
        };
        if let Some(size) = element_size(class) {
            sizes.insert(key, size);
        }
    }
    sizes
}

/// Evaluates the next pickle of `decoder` to its STOP; its result. Offsets in errors are
/// `base` plus the decoder's.
fn next_result(
    evaluator: &mut Evaluator,
    decoder: &mut Decoder<SliceSource<'_>>,
    base: u64,
) -> Result<Val, ConvertError> {
    let nothing_trails = |_: &Heap, _: &crate::evaluate::Object| Trailing::Nothing;
    evaluator.result = None;
    loop {
        let op: Op<'_> = match decoder.next_op() {
            Ok(Some(op)) => op,
            Ok(None) => {
                return Err(malformed(
                    base + decoder.position(),
                    "the input ends inside a pickle",
                ))
            }
            Err(e) => return Err(malformed(base + e.offset(), e.to_string())),
        };
        evaluator.step(&op, &nothing_trails);
        match &evaluator.gave_up {
            Some(GaveUp::TooLarge) => {
                return Err(ConvertError::Unsupported {
                    offset: base + op.offset,
                    what: "the pickle holds more values than the converter reads".into(),
                })
            }
            Some(GaveUp::Broken(at)) => {
                return Err(malformed(
                    base + at,
                    "the pickle stops here: the unpickler raises",
                ))
            }
            None => {}
        }
        if op.opcode == Opcode::Stop {
            return evaluator
                .result
                .ok_or_else(|| malformed(base + op.offset, "STOP with nothing to return"));
        }
    }
}
