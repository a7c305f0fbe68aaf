//! PyTorch's own layouts: persistent ids, the legacy sequential format
//! (`_use_new_zipfile_serialization=False`) and the oldest tar format.

use std::collections::{HashMap, HashSet};

use crate::analyzer::{element_size, Mode, Options, PickleReport};
use crate::decoder::{Arg, Decoder, Op, Source, SourceError};
use crate::findings::{Finding, FindingKind, Severity};
use crate::opcodes::Opcode;
use crate::policy::Policy;
use crate::Sym;

use super::joblib::{drive, merge, Analysis};

/// `torch.serialization.MAGIC_NUMBER` as LONG1 bytes and as protocol 0 text.
const MAGIC_LONG: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const MAGIC_TEXT: &[u8] = b"119547037146038801333356";
const PROTOCOL_VERSION: i64 = 1001;

/// Whether the input starts with the legacy format's magic-number pickle.
pub fn is_legacy(data: &[u8]) -> bool {
    let head = data.get(..data.len().min(64)).unwrap_or_default();
    let mut decoder = Decoder::from_slice(head);
    let mut magic = false;
    for _ in 0..4 {
        match decoder.next_op() {
            Ok(Some(op)) => match (op.opcode, &op.arg) {
                (Opcode::Proto | Opcode::Frame, _) => {}
                (Opcode::Long1 | Opcode::Long4, Arg::Long(payload)) => {
                    magic = payload.bytes() == Some(MAGIC_LONG.as_slice())
                }
                (Opcode::Long, Arg::Decimal(text)) => magic = *text == MAGIC_TEXT,
                (Opcode::Stop, _) => return magic,
                _ => return false,
            },
            _ => return false,
        }
    }
    false
}

fn finding(kind: FindingKind, severity: Severity, offset: u64, message: String) -> Finding {
    Finding {
        kind,
        severity,
        offset,
        import: None,
        message,
    }
}

/// A storage persistent id: `('storage', <storage class>, key, location, numel[, view])`.
#[derive(Debug, Clone)]
pub struct StorageId {
    /// The storage class as (module, name), e.g. `("torch", "FloatStorage")`.
    pub storage: (String, String),
    /// The key the storage's data is saved under: the record `data/<key>` in the zip format, an
    /// entry of the storage key list in the legacy format.
    pub key: String,
    /// The storage's element count, as the persistent id declares it (never negative).
    pub numel: i64,
}

/// Checks a persistent id against the shape torch writes (`fields` is 5 for the zip format, 6 for
/// the legacy format) and that its storage class is allowed.
pub fn check_storage_id(pid: &Sym, fields: usize, policy: &Policy) -> Result<StorageId, String> {
    let Sym::Tuple(items) = pid else {
        return Err(format!("persistent id {pid} is not a tuple"));
    };
    if items.len() != fields {
        return Err(format!(
            "persistent id {pid} has {} fields, torch writes {fields}",
            items.len()
        ));
    }
    let (
        Some(Sym::Str(tag)),
        Some(Sym::Import(storage)),
        Some(Sym::Str(key)),
        Some(Sym::Str(_)),
        Some(Sym::Int(numel)),
    ) = (
        items.first(),
        items.get(1),
        items.get(2),
        items.get(3),
        items.get(4),
    )
    else {
        return Err(format!(
            "persistent id {pid} is not ('storage', <storage class>, key, location, numel) with constants"
        ));
    };
    if tag != "storage" {
        return Err(format!("persistent id {pid} is not a storage"));
    }
    if fields == 6 {
        match items.get(5) {
            Some(Sym::Other("None")) => {}
            Some(Sym::Tuple(view)) if matches!(view.as_slice(), [Sym::Str(_), Sym::Int(_), Sym::Int(_)]) => {}
            _ => {
                return Err(format!(
                    "persistent id {pid} has a view that is not None or (key, offset, size)"
                ))
            }
        }
    }
    if !storage.name.ends_with("Storage") || !policy.is_allowed(&storage.module, &storage.name) {
        return Err(format!(
            "persistent id {pid} names storage type {storage}, which the policy does not allow"
        ));
    }
    if *numel < 0 {
        return Err(format!("persistent id {pid} has a negative element count"));
    }
    Ok(StorageId {
        storage: (storage.module.to_string(), storage.name.to_string()),
        key: key.clone(),
        numel: *numel,
    })
}

/// Checks the persistent ids of a report; returns the valid storage ids.
pub fn check_storage_ids(report: &mut PickleReport, fields: usize, policy: &Policy) -> Vec<StorageId> {
    let mut ids = Vec::new();
    let mut problems = Vec::new();
    for pid in &report.persistent_ids {
        // Legacy whole-module saves also write ('module', class, source file, source).
        if fields == 6 {
            if let Sym::Tuple(items) = &pid.value {
                if matches!(items.first(), Some(Sym::Str(tag)) if tag == "module") {
                    continue;
                }
            }
        }
        match check_storage_id(&pid.value, fields, policy) {
            Ok(id) => ids.push(id),
            Err(problem) => problems.push(finding(
                FindingKind::PersistentId,
                Severity::High,
                pid.offset,
                format!("{problem}: torch's loader rejects it, other loaders may resolve it differently"),
            )),
        }
    }
    report.findings.extend(problems);
    if fields == 6 {
        module_classes(report, policy);
    }
    ids
}

/// Legacy whole-module saves: `('module', class, source file, source)` makes `persistent_load`
/// return `class`, which the pickle then instantiates. The class is an import the policy already
/// judged, so calling it is not an indirect call.
fn module_classes(report: &mut PickleReport, policy: &Policy) {
    let mut valid = true;
    let mut problems = Vec::new();
    for pid in &report.persistent_ids {
        let Sym::Tuple(items) = &pid.value else {
            continue;
        };
        if !matches!(items.first(), Some(Sym::Str(tag)) if tag == "module") {
            continue;
        }
        let text = |s: Option<&Sym>| matches!(s, Some(Sym::Str(_) | Sym::Other("None" | "str")));
        let ok = items.len() == 4
            && matches!(items.get(1), Some(Sym::Import(class)) if policy.is_allowed(&class.module, &class.name))
            && text(items.get(2))
            && text(items.get(3));
        if !ok {
            valid = false;
            problems.push(finding(
                FindingKind::PersistentId,
                Severity::High,
                pid.offset,
                format!(
                    "persistent id {} is not ('module', <allowed class>, source file, source)",
                    pid.value
                ),
            ));
        }
    }
    report.findings.extend(problems);
    if !valid {
        return;
    }
    let persistent_calls: HashSet<u64> = report
        .calls
        .iter()
        .filter(|c| {
            matches!(
                c.callee,
                crate::analyzer::Callee::Other {
                    what: "persistent object"
                }
            )
        })
        .map(|c| c.offset)
        .collect();
    for f in &mut report.findings {
        if f.kind == FindingKind::IndirectCall && persistent_calls.contains(&f.offset) {
            f.severity = Severity::Info;
            f.message = format!(
                "{} (a legacy 'module' persistent id: the class it names was checked)",
                f.message
            );
        }
    }
}

fn one_pickle<S: Source>(
    decoder: Decoder<S>,
    policy: &Policy,
    options: &Options,
    observe: Option<&mut dyn FnMut(&Op<'_>)>,
) -> (Analysis, Decoder<S>) {
    let options = Options {
        mode: Mode::FirstPickle,
        ..*options
    };
    drive(decoder, policy, &options, false, observe)
}

/// Bytes after the end of a layout: reported, and analysed as pickles (whether held in memory
/// or streamed, so that both readings of a file agree).
fn trailing<S: Source>(
    source: S,
    policy: &Policy,
    options: &Options,
    report: &mut PickleReport,
    after: &str,
) {
    let end = source.position();
    let held = source.remaining();
    if held == Some(0) {
        return;
    }
    let options = Options {
        mode: Mode::AllPickles,
        ..*options
    };
    let (rest, decoder) = drive(Decoder::new(source), policy, &options, false, None);
    // A stream tells whether anything follows only by being read.
    if held.is_none() && decoder.position() == end {
        return;
    }
    report.findings.push(finding(
        FindingKind::TrailingData,
        Severity::Warning,
        end,
        format!("bytes from offset {end} follow {after}"),
    ));
    report.findings.extend(
        rest.report
            .findings
            .into_iter()
            .filter(Finding::is_violation)
            .filter(|f| f.kind != FindingKind::MalformedPickle),
    );
}

fn read_i64<S: Source>(source: &mut S) -> Result<i64, SourceError> {
    let bytes = source.take(8)?;
    let array: [u8; 8] = bytes
        .as_ref()
        .try_into()
        .map_err(|_| SourceError::Short { available: 0 })?;
    Ok(i64::from_le_bytes(array))
}

/// Analyses whatever follows as plain pickles (what is left when the layout cannot be followed).
fn rest_as_pickles<S: Source>(
    decoder: Decoder<S>,
    policy: &Policy,
    options: &Options,
    report: &mut PickleReport,
) {
    let options = Options {
        mode: Mode::AllPickles,
        ..*options
    };
    let (rest, _) = drive(decoder, policy, &options, false, None);
    merge(report, rest.report);
}

/// The legacy format: magic number, protocol version, sys info, the data pickle and the storage
/// keys, each a pickle, then each storage's element count and raw bytes.
pub fn scan_legacy<S: Source>(decoder: Decoder<S>, policy: &Policy, options: &Options) -> PickleReport {
    let mut report = PickleReport::default();
    let mut decoder = decoder;
    let mut ids = Vec::new();
    let mut keys: Option<Vec<String>> = None;
    for index in 0..5 {
        let mut strings: Vec<String> = Vec::new();
        let mut simple = true;
        let mut collect = |op: &Op<'_>| match (op.opcode, &op.arg) {
            (
                Opcode::Proto
                | Opcode::Frame
                | Opcode::EmptyList
                | Opcode::Mark
                | Opcode::Append
                | Opcode::Appends,
                _,
            )
            | (Opcode::Stop | Opcode::Memoize | Opcode::Put | Opcode::BinPut | Opcode::LongBinPut, _) => {}
            (_, Arg::Unicode(p) | Arg::Str(p)) => {
                match p.bytes().map(|b| String::from_utf8_lossy(b).into_owned()) {
                    Some(text) => strings.push(text),
                    None => simple = false,
                }
            }
            _ => simple = false,
        };
        let observe: Option<&mut dyn FnMut(&Op<'_>)> = if index == 4 { Some(&mut collect) } else { None };
        let (mut analysis, rest) = one_pickle(decoder, policy, options, observe);
        decoder = rest;
        if index == 3 {
            ids = check_storage_ids(&mut analysis.report, 6, policy);
        }
        let complete = analysis.complete;
        let last = analysis.last.clone();
        merge(&mut report, analysis.report);
        if !complete {
            return report;
        }
        if index == 1 && last != Some(Sym::Int(PROTOCOL_VERSION)) {
            // torch.load raises here; other readers might go on.
            report.findings.push(finding(
                FindingKind::Container,
                Severity::Warning,
                decoder.position(),
                format!(
                    "the legacy protocol version is {}, not {PROTOCOL_VERSION}; torch.load stops here",
                    last.map_or("unknown".into(), |l| l.to_string())
                ),
            ));
            rest_as_pickles(decoder, policy, options, &mut report);
            return report;
        }
        if index == 4 && simple {
            keys = Some(strings);
        }
    }
    let start = decoder.position();
    let Some(keys) = keys else {
        report.findings.push(finding(
            FindingKind::Container,
            Severity::High,
            start,
            format!(
                "the storage key list ending at offset {start} is not a plain list of strings, so the raw storage data \
                 after it cannot be located; what follows was analysed as pickles"
            ),
        ));
        rest_as_pickles(decoder, policy, options, &mut report);
        return report;
    };
    let by_key: HashMap<&str, &StorageId> = ids.iter().map(|id| (id.key.as_str(), id)).collect();
    let mut source = decoder.into_source();
    for key in &keys {
        let at = source.position();
        let Some(id) = by_key.get(key.as_str()) else {
            report.findings.push(finding(
                FindingKind::Container,
                Severity::Warning,
                at,
                format!("storage key {key:?} has no persistent id in the data pickle; torch.load fails here"),
            ));
            return report;
        };
        let Some(size) = element_size(&id.storage.1) else {
            report.findings.push(finding(
                FindingKind::Container,
                Severity::Warning,
                at,
                format!("storage {key:?} has type {}.{} of unknown element size; the data after offset {at} was not followed", id.storage.0, id.storage.1),
            ));
            return report;
        };
        let numel = match read_i64(&mut source) {
            Ok(n) => n,
            Err(_) => {
                report.findings.push(finding(
                    FindingKind::Container,
                    Severity::Warning,
                    at,
                    format!("the file ends at offset {at}, before storage {key:?}"),
                ));
                return report;
            }
        };
        if numel != id.numel {
            // torch allocated the declared size while the data pickle loaded.
            let severity = if id.numel > numel {
                Severity::High
            } else {
                Severity::Warning
            };
            report.findings.push(finding(
                FindingKind::Container,
                severity,
                at,
                format!(
                    "storage {key:?} at offset {at} holds {numel} elements but its persistent id declares {}; \
                     torch.load allocates the declared size, then fails here",
                    id.numel
                ),
            ));
            return report;
        }
        let Some(nbytes) = u64::try_from(numel).ok().and_then(|n| n.checked_mul(size)) else {
            return report;
        };
        if source.skip(nbytes, &mut |_| {}).is_err() {
            report.findings.push(finding(
                FindingKind::Container,
                Severity::High,
                at,
                format!(
                    "the file ends inside storage {key:?} (declared {nbytes} bytes from offset {}); torch.load \
                     allocates the declared size before it reads",
                    at + 8
                ),
            ));
            return report;
        }
    }
    let listed: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let never_read: Vec<&StorageId> = ids
        .iter()
        .filter(|id| !listed.contains(id.key.as_str()))
        .collect();
    if let Some(first) = never_read.first() {
        report.findings.push(finding(
            FindingKind::Container,
            Severity::High,
            source.position(),
            format!(
                "{} storage(s) declared by persistent ids have no data in the file (first: {:?}, {} elements); \
                 torch.load allocates each declared storage while the data pickle loads",
                never_read.len(),
                first.key,
                first.numel
            ),
        ));
    }
    let end = source.position();
    trailing(
        source,
        policy,
        options,
        &mut report,
        "the last storage; torch.load never reads them",
    );
    report.consumed = end;
    report
}

/// The tar format's `storages` member: a count, then per storage a pickled
/// `(key, location, storage class)` and the storage's element count and bytes, then the views.
pub fn scan_tar_storages(data: &[u8], policy: &Policy, options: &Options) -> PickleReport {
    scan_tar_counted(data, policy, options, true)
}

/// The tar format's `tensors` member: a count, then per tensor a pickled `(key, storage id,
/// type)` and its `ndim`, sizes, strides and offset.
pub fn scan_tar_tensors(data: &[u8], policy: &Policy, options: &Options) -> PickleReport {
    scan_tar_counted(data, policy, options, false)
}

fn scan_tar_counted(data: &[u8], policy: &Policy, options: &Options, storages: bool) -> PickleReport {
    let what = if storages { "storages" } else { "tensors" };
    let mut report = PickleReport::default();
    let (first, mut decoder) = one_pickle(Decoder::from_slice(data), policy, options, None);
    let count = first.last.clone();
    let complete = first.complete;
    merge(&mut report, first.report);
    if !complete {
        return report;
    }
    let Some(Sym::Int(count)) = count.filter(|c| matches!(c, Sym::Int(n) if *n >= 0)) else {
        report.findings.push(finding(
            FindingKind::Container,
            Severity::High,
            decoder.position(),
            format!("the {what} member does not start with a count; its layout cannot be followed, so the rest was analysed as pickles"),
        ));
        rest_as_pickles(decoder, policy, options, &mut report);
        return report;
    };
    for _ in 0..count {
        let (item, rest) = one_pickle(decoder, policy, options, None);
        decoder = rest;
        let complete = item.complete;
        let last = item.last.clone();
        merge(&mut report, item.report);
        if !complete {
            return report;
        }
        let mut source = decoder.into_source();
        let at = source.position();
        let skipped: Result<(), String> = if storages {
            let size = match &last {
                Some(Sym::Tuple(items)) => match items.as_slice() {
                    [Sym::Str(_) | Sym::Int(_), Sym::Str(_), Sym::Import(t)]
                        if policy.is_allowed(&t.module, &t.name) =>
                    {
                        element_size(&t.name)
                    }
                    _ => None,
                },
                _ => None,
            };
            match size {
                None => Err(format!(
                    "storage record {} is not (key, location, <allowed storage class>)",
                    last.map_or("?".into(), |l| l.to_string())
                )),
                Some(size) => match read_i64(&mut source) {
                    Ok(numel) => match u64::try_from(numel).ok().and_then(|n| n.checked_mul(size)) {
                        Some(nbytes) => source
                            .skip(nbytes, &mut |_| {})
                            .map_err(|_| "the member ends inside storage data".to_string()),
                        None => Err(format!("a storage declares {numel} elements")),
                    },
                    Err(_) => Err("the member ends before a storage's size".into()),
                },
            }
        } else {
            (|| -> Result<(), String> {
                let head = source
                    .take(8)
                    .map_err(|_| "the member ends inside a tensor header".to_string())?;
                let ndim = i32::from_le_bytes([
                    head.first().copied().unwrap_or(0),
                    head.get(1).copied().unwrap_or(0),
                    head.get(2).copied().unwrap_or(0),
                    head.get(3).copied().unwrap_or(0),
                ]);
                let ndim = u64::try_from(ndim).map_err(|_| format!("a tensor has {ndim} dimensions"))?;
                source
                    .skip(ndim.saturating_mul(16).saturating_add(8), &mut |_| {})
                    .map_err(|_| "the member ends inside a tensor header".to_string())
            })()
        };
        if let Err(why) = skipped {
            report.findings.push(finding(
                FindingKind::Container,
                Severity::High,
                at,
                format!("{why} at offset {at} of the {what} member; the rest was not analysed"),
            ));
            return report;
        }
        decoder = Decoder::new(source);
    }
    if storages {
        let (views, rest) = one_pickle(decoder, policy, options, None);
        decoder = rest;
        merge(&mut report, views.report);
    }
    let what = format!("the last record of the {what} member; torch never reads them");
    trailing(decoder.into_source(), policy, options, &mut report, &what);
    report
}
