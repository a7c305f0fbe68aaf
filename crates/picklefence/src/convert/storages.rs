//! Where a checkpoint's data pickle and storages are: the zip format's `data.pkl` and
//! `data/<key>` records, or the legacy format's five pickles and the records after them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use crate::analyzer::element_size;
use crate::decoder::{Decoder, Op, SliceSource};
use crate::evaluate::{Evaluator, GaveUp, Heap, Trailing, Val};
use crate::formats::zip::{ZipArchive, ZipEntry};
use crate::native_state::evaluate_as_read;
use crate::opcodes::Opcode;
use crate::policy::Policy;
use crate::report::ScanOptions;

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
    /// The tar format's tensors, by the key its data pickle's persistent ids name them with.
    pub tar_tensors: HashMap<String, TarTensor>,
    /// The bytes the data pickle was read from, which hold its NumPy arrays' data (a pickle or
    /// joblib file, a torch checkpoint's data pickle); `None`: its arrays are not read.
    pub arrays_in: Option<&'a [u8]>,
}

/// A tensor of the tar format's `tensors` member.
#[derive(Debug, Clone)]
pub(super) struct TarTensor {
    /// Its storage's class (`FloatStorage`, ...).
    pub class: String,
    /// Index of its storage's record.
    pub storage: usize,
    /// Bytes of the record its storage may use (a storage view ends before the record does).
    pub storage_bytes: u64,
    /// In elements, from the record's start.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
    /// Where its header is in the input.
    pub at: u64,
}

/// The tar format's keys are ints (`id()` of the saved object) written as ints or as decimal
/// text; both spell the same key.
pub(super) fn tar_key(heap: &Heap, value: Val) -> Option<String> {
    match value {
        Val::Int(i) => Some(i.to_string()),
        Val::Str(_) => {
            let text = heap.str(value)?;
            Some(
                text.trim()
                    .parse::<i64>()
                    .map_or_else(|_| text.to_owned(), |i| i.to_string()),
            )
        }
        _ => None,
    }
}

impl<'a> Found<'a> {
    /// The records' bytes, indexed as [`Found::keys`] gives.
    pub fn into_storages(self) -> Vec<Cow<'a, [u8]>> {
        self.records
    }

    /// How many records there are.
    pub fn record_count(&self) -> usize {
        self.records.len()
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
    // NumPy arrays in the checkpoint hold their data in data.pkl: read from it where it is
    // stored (torch stores it); a deflated one's arrays are listed as dropped.
    let arrays_in = match pickle {
        Cow::Borrowed(bytes) => Some(bytes),
        Cow::Owned(_) => None,
    };
    Ok(Found {
        heap: evaluator.heap,
        root,
        pickle_at,
        keys,
        records,
        big_endian,
        id_fields: 5,
        tar_tensors: HashMap::new(),
        arrays_in,
    })
}

/// A member's bytes: stored ones borrowed, deflated ones inflated (torch writes them stored).
pub(super) fn member<'a>(data: &'a [u8], entry: &ZipEntry) -> Result<Cow<'a, [u8]>, ConvertError> {
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
        tar_tensors: HashMap::new(),
        arrays_in: Some(data),
    })
}

/// The tar format of torch < 0.4: members `sys_info`, `storages` (a count, then per storage a
/// pickled `(key, location, class)`, its element count and bytes, then the views), `tensors`
/// (a count, then per tensor a pickled `(key, storage key, type)`, `ndim` and 4 more bytes,
/// sizes, strides and offset) and `pickle`, whose persistent ids name tensors by key.
pub(super) fn tar(data: &[u8]) -> Result<Found<'_>, ConvertError> {
    let (members, _) =
        crate::formats::tar::members(data, MAX_ENTRIES).map_err(|e| malformed(0, e.to_string()))?;
    let member = |name: &str| -> Result<(&[u8], u64), ConvertError> {
        let found = members.iter().rev().find(|m| m.name == name && m.is_file());
        let found = found.ok_or_else(|| malformed(0, format!("the archive has no {name} member")))?;
        let bytes = usize::try_from(found.data_offset)
            .ok()
            .zip(usize::try_from(found.size).ok())
            .and_then(|(start, len)| data.get(start..start.checked_add(len)?))
            .ok_or_else(|| malformed(found.header_offset, format!("member {name} runs past the input")))?;
        Ok((bytes, found.data_offset))
    };
    let (sys_info, sys_at) = member("sys_info")?;
    let mut evaluator = Evaluator::default();
    let info = next_result(&mut evaluator, &mut Decoder::from_slice(sys_info), sys_at)?;
    let big_endian = matches!(evaluator.heap.get(info, "little_endian"), Some(Val::Bool(false)));
    let read_i64 = |bytes: &[u8], at: usize| -> Option<i64> {
        let raw = <[u8; 8]>::try_from(bytes.get(at..at.checked_add(8)?)?).ok()?;
        Some(if big_endian {
            i64::from_be_bytes(raw)
        } else {
            i64::from_le_bytes(raw)
        })
    };

    // Storages: records, their classes, then the views of them.
    let (bytes, base) = member("storages")?;
    let (mut evaluator, mut decoder, count) = counted(bytes, base, "storages")?;
    let mut keys = HashMap::new();
    let mut records = Vec::new();
    let mut classes: Vec<(String, u64)> = Vec::new();
    for _ in 0..count {
        let at = base + decoder.position();
        let record = next_result(&mut evaluator, &mut decoder, base)?;
        let heap = &evaluator.heap;
        let fields = heap.tuple(record).unwrap_or_default();
        let (Some(key), Some((_, class))) = (
            fields.first().and_then(|k| tar_key(heap, *k)),
            fields.get(2).and_then(|c| heap.global(*c)),
        ) else {
            return Err(malformed(at, "a storage record is not (key, location, class)"));
        };
        let size =
            element_size(class).ok_or_else(|| malformed(at, format!("storage class {class} is unknown")))?;
        let start = usize::try_from(decoder.position()).unwrap_or(usize::MAX);
        let numel = read_i64(bytes, start)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| malformed(at, "the member ends before a storage's element count"))?;
        let len = numel.checked_mul(size).and_then(|l| usize::try_from(l).ok());
        let data_start = start.saturating_add(8);
        let stored = len
            .and_then(|len| bytes.get(data_start..data_start.checked_add(len)?))
            .ok_or_else(|| {
                malformed(
                    at,
                    format!("storage {key} declares {numel} elements, past the member's end"),
                )
            })?;
        keys.insert(key, records.len());
        records.push(Cow::Borrowed(stored));
        classes.push((class.to_owned(), size));
        decoder
            .source_mut()
            .skip_to(data_start.saturating_add(stored.len()));
    }
    // A view of a storage: (key, root key, offset, numel), in elements of the root.
    let mut views: HashMap<String, (usize, u64, u64)> = HashMap::new();
    let views_at = base + decoder.position();
    let listed = next_result(&mut evaluator, &mut decoder, base)?;
    let heap = &evaluator.heap;
    let listed = heap
        .list(listed, u64::MAX)
        .map(<[Val]>::to_vec)
        .unwrap_or_default();
    for view in listed {
        let fields = heap.tuple(view).unwrap_or_default();
        let parsed = match fields {
            [key, root, offset, numel] => tar_key(heap, *key).zip(tar_key(heap, *root)).zip(
                heap.int(*offset)
                    .and_then(|o| u64::try_from(o).ok())
                    .zip(heap.int(*numel).and_then(|n| u64::try_from(n).ok())),
            ),
            _ => None,
        };
        let ((key, root), (offset, numel)) =
            parsed.ok_or_else(|| malformed(views_at, "a storage view is not (key, root, offset, numel)"))?;
        let root = *keys
            .get(&root)
            .ok_or_else(|| malformed(views_at, format!("storage view {key} of unknown storage {root}")))?;
        views.insert(key, (root, offset, numel));
    }

    // Tensors: their storage, view and class.
    let (bytes, base) = member("tensors")?;
    let (mut evaluator, mut decoder, count) = counted(bytes, base, "tensors")?;
    let mut tar_tensors = HashMap::new();
    for _ in 0..count {
        let at = base + decoder.position();
        let record = next_result(&mut evaluator, &mut decoder, base)?;
        let heap = &evaluator.heap;
        let fields = heap.tuple(record).unwrap_or_default();
        let (Some(key), Some(storage_key)) = (
            fields.first().and_then(|k| tar_key(heap, *k)),
            fields.get(1).and_then(|k| tar_key(heap, *k)),
        ) else {
            return Err(malformed(at, "a tensor record is not (key, storage key, type)"));
        };
        let header = usize::try_from(decoder.position()).unwrap_or(usize::MAX);
        let ndim = bytes
            .get(header..header.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|raw| {
                if big_endian {
                    i32::from_be_bytes(raw)
                } else {
                    i32::from_le_bytes(raw)
                }
            })
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= 64)
            .ok_or_else(|| malformed(at, format!("tensor {key} has no valid dimension count")))?;
        let field = |i: usize| {
            read_i64(bytes, header + 8 + 8 * i)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| malformed(at, format!("tensor {key}'s header is cut short or negative")))
        };
        let shape = (0..ndim).map(&field).collect::<Result<Vec<_>, _>>()?;
        let stride = (ndim..2 * ndim).map(&field).collect::<Result<Vec<_>, _>>()?;
        let offset = field(2 * ndim)?;
        let (storage, view_offset, view_numel) = match (views.get(&storage_key), keys.get(&storage_key)) {
            (Some(&(root, offset, numel)), _) => (root, offset, Some(numel)),
            (None, Some(&index)) => (index, 0, None),
            (None, None) => {
                return Err(malformed(
                    at,
                    format!("tensor {key} uses unknown storage {storage_key}"),
                ))
            }
        };
        let (class, size) = classes.get(storage).cloned().unwrap_or_default();
        let record_numel = records.get(storage).map_or(0, |r| r.len() as u64) / size.max(1);
        let end = match view_numel {
            Some(numel) => view_offset.saturating_add(numel),
            None => record_numel,
        };
        tar_tensors.insert(
            key,
            TarTensor {
                class,
                storage,
                storage_bytes: end.saturating_mul(size),
                offset: offset.saturating_add(view_offset),
                shape,
                stride,
                at,
            },
        );
        decoder
            .source_mut()
            .skip_to(header.saturating_add(16 + 16 * ndim));
    }

    let (pickle, pickle_at) = member("pickle")?;
    let mut evaluator = Evaluator::default();
    let root = next_result(&mut evaluator, &mut Decoder::from_slice(pickle), pickle_at)?;
    Ok(Found {
        heap: evaluator.heap,
        root,
        pickle_at,
        keys,
        records,
        big_endian,
        id_fields: 0,
        tar_tensors,
        arrays_in: Some(pickle),
    })
}

/// A pickle or joblib file of NumPy arrays: its first pickle evaluated as `joblib.load` reads
/// it (the array bytes joblib reads between opcodes are skipped and recorded on each wrapper,
/// as the scanner reads them), the input holding the arrays' data. Also the format's name:
/// joblib when joblib arrays follow its opcodes.
pub(super) fn pickled<'a>(
    data: &'a [u8],
    policy: &Policy,
    options: &ScanOptions,
) -> Result<(Found<'a>, &'static str), ConvertError> {
    let analysis_options = crate::analyzer::Options {
        limits: options.limits,
        mode: crate::analyzer::Mode::FirstPickle,
        ..crate::analyzer::Options::default()
    };
    let (analysis, _) =
        crate::formats::joblib::drive(Decoder::from_slice(data), policy, &analysis_options, true, None);
    let first = data
        .get(..usize::try_from(analysis.end).unwrap_or(usize::MAX))
        .unwrap_or(data);
    let evaluator = evaluate_as_read(first, analysis.arrays > 0, &analysis.skips);
    match evaluator.gave_up {
        Some(GaveUp::TooLarge) => {
            return Err(ConvertError::Unsupported {
                offset: 0,
                what: "the pickle holds more values than the converter reads".into(),
            })
        }
        Some(GaveUp::Broken(at)) => return Err(malformed(at, "the pickle stops here: the unpickler raises")),
        None => {}
    }
    let root = evaluator
        .result
        .ok_or_else(|| malformed(analysis.end, "the input ends inside a pickle"))?;
    let format = if analysis.arrays > 0 { "joblib" } else { "pickle" };
    let found = Found {
        heap: evaluator.heap,
        root,
        pickle_at: 0,
        keys: HashMap::new(),
        records: Vec::new(),
        big_endian: false,
        id_fields: 0,
        tar_tensors: HashMap::new(),
        arrays_in: Some(data),
    };
    Ok((found, format))
}

/// A tar-format member that starts with a pickled count: the evaluator and decoder that read
/// it, and the count.
fn counted<'d>(
    bytes: &'d [u8],
    base: u64,
    what: &str,
) -> Result<(Evaluator, Decoder<SliceSource<'d>>, i64), ConvertError> {
    let mut evaluator = Evaluator::default();
    let mut decoder = Decoder::from_slice(bytes);
    let count = next_result(&mut evaluator, &mut decoder, base)?;
    let count = evaluator
        .heap
        .int(count)
        .filter(|&n| n >= 0)
        .ok_or_else(|| malformed(base, format!("the {what} member does not start with a count")))?;
    Ok((evaluator, decoder, count))
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
