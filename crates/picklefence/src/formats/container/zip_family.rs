//! The zip family: PyTorch zip and TorchScript archives, `.npz`, Keras v3 and any other zip
//! (members identified by content, nested archives bounded), and a zip appended to something
//! else. The central directory is parsed once, when the zip is identified, and that parse is
//! what the scan reads. The parser is [`crate::formats::zip`].

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Cursor, Read};

use crate::analyzer::PickleReport;
use crate::findings::{FindingKind, Severity};

use super::super::compress::{self, Crc};
use super::super::zip::{self, ZipArchive, ZipEntry, ZipError};
use super::super::{join, torch};
use super::pickle::{scan_named_pickle, stream_named_pickle};
use super::zip_stream::{analyse_member, scan_zip_stream};
use super::{find, hold, scan_slice, Container, Ctx, Format, Parsed, Probe, Stream, IDENTIFY_MEMBERS};

/// Zip archives of every kind.
pub(crate) struct ZipFamily;

/// A zip and its central directory (parsed to the scan's member limit), kept for the scan.
struct Directory<'d> {
    data: &'d [u8],
    format: Format,
    /// `None` when only a stream's first bytes were seen: parsed when scanned.
    archive: Option<Result<ZipArchive, ZipError>>,
}

impl Container for ZipFamily {
    fn identify<'d>(&self, data: &'d [u8], probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        if !(data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")) {
            return None;
        }
        if !probe.whole {
            // A stream's prefix: zip subtypes are not told apart.
            return Some(Box::new(Directory {
                data,
                format: Format::Zip,
                archive: None,
            }));
        }
        let archive = ZipArchive::parse(data, probe.max_members);
        let format = match &archive {
            // Identification reads up to IDENTIFY_MEMBERS members: a directory read whole within
            // both limits tells the same kind; otherwise the kind is read as identify() reads it.
            Ok(parsed) if !parsed.truncated_entries && parsed.entries.len() <= IDENTIFY_MEMBERS => {
                zip_kind_of(data, parsed)
            }
            _ => zip_kind(data),
        };
        Some(Box::new(Directory {
            data,
            format,
            archive: Some(archive),
        }))
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        // A zip that ends within `zip_stream_held` is read from its central directory, as a
        // file is; a longer one as streaming readers read it, in bounded memory.
        let held = ctx.options.zip_stream_held;
        let mut reader = stream.reader;
        let (head, _) = hold(ctx, &mut reader, held, location);
        if (head.len() as u64) < held {
            return scan_slice(ctx, &head, location, depth);
        }
        ctx.finding(location, FindingKind::Container, Severity::Info, 0, format!("a zip stream over {held} bytes is read as streaming readers read it, member after member, then its central directory is checked against them"));
        scan_zip_stream(
            ctx,
            BufReader::new(Cursor::new(head).chain(reader)),
            location,
            depth,
        )
    }
}

impl<'d> Parsed<'d> for Directory<'d> {
    fn format(&self) -> Format {
        self.format
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let Directory {
            data,
            format,
            archive,
        } = *self;
        let archive = archive.unwrap_or_else(|| ZipArchive::parse(data, ctx.options.max_members));
        match archive {
            Ok(archive) => scan_zip_archive(ctx, data, &archive, location, depth, format, true),
            Err(e) => ctx.finding(
                location,
                FindingKind::Container,
                Severity::High,
                0,
                format!("the zip archive cannot be read ({e}); its members were not analysed"),
            ),
        }
        format
    }
}

/// The name below the archive's top-level folder (torch's record name).
pub(super) fn record(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, rest)| rest)
}

/// Members read as pickles whatever they hold (as torch reads them).
pub(super) fn is_pickle_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".pkl") || lower.ends_with(".debug_pkl")
}

/// Globals TorchScript's C++ unpickler implements itself (no Python import happens).
const TORCHSCRIPT_NATIVE: [&str; 6] = [
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "build_tensor_from_id",
    "restore_type_tag",
];

/// What kind of zip `data` is, from its member names (and stored members' first bytes).
fn zip_kind(data: &[u8]) -> Format {
    match ZipArchive::parse(data, IDENTIFY_MEMBERS) {
        Ok(archive) => zip_kind_of(data, &archive),
        Err(_) => Format::Zip,
    }
}

/// The kind of zip, from a parsed directory.
fn zip_kind_of(data: &[u8], archive: &ZipArchive) -> Format {
    let mut names = NamesSeen::default();
    for entry in &archive.entries {
        let stored_npy = entry.method == 0
            && entry
                .raw(data)
                .is_some_and(|d| d.starts_with(super::super::npy::MAGIC));
        names.add(&entry.display_name(), stored_npy);
    }
    names.format()
}

/// What a zip's member names say about its kind, gathered name by name (a stream's members
/// are met one at a time).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NamesSeen {
    torchscript: bool,
    torch: bool,
    config: bool,
    metadata: bool,
    members: usize,
    npy: usize,
}

impl NamesSeen {
    /// One more member; `npy_content`: it is stored `.npy` data whatever its name.
    pub fn add(&mut self, name: &str, npy_content: bool) {
        self.torchscript |= record(name) == "constants.pkl";
        self.torch |= record(name) == "data.pkl";
        self.config |= name == "config.json";
        self.metadata |= name == "metadata.json";
        self.members += 1;
        self.npy += usize::from(name.ends_with(".npy") || npy_content);
    }

    /// The kind the names so far say.
    pub fn format(&self) -> Format {
        if self.torchscript {
            Format::TorchScript
        } else if self.torch {
            Format::PytorchZip
        } else if self.config && self.metadata {
            Format::Keras
        } else if self.members > 0 && self.npy == self.members {
            Format::Npz
        } else {
            Format::Zip
        }
    }
}

/// A member's content: held in memory, or a stream that could not be.
enum Content<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
}

impl Content<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Content::Slice(s) => s,
            Content::Owned(v) => v,
        }
    }
}

/// `TorchScript` resolves `__torch__.*` globals to classes compiled from the archive's `code/`,
/// not to Python imports: those are reported as the embedded code they are.
fn torchscript_globals(report: &mut PickleReport) {
    for finding in &mut report.findings {
        let Some(import) = finding.import.as_ref() else {
            continue;
        };
        let name = import.to_string();
        if matches!(finding.kind, FindingKind::DisallowedImport) && is_torchscript_class(import) {
            finding.kind = FindingKind::EmbeddedCode;
            finding.severity = Severity::Info;
            finding.message =
                format!("the pickle builds {name}, a TorchScript class compiled from the archive's code/");
        } else if matches!(
            finding.kind,
            FindingKind::DisallowedImport | FindingKind::DangerousImport
        ) && is_torchscript_native(import)
        {
            finding.kind = FindingKind::EmbeddedCode;
            finding.severity = Severity::Info;
            finding.message = format!(
                "{name} is implemented by TorchScript's C++ unpickler itself; no Python code is imported"
            );
        }
    }
    for import in &mut report.imports {
        if import
            .target
            .as_ref()
            .is_some_and(|t| is_torchscript_class(t) || is_torchscript_native(t))
        {
            import.allowed = true;
        }
    }
}

fn is_torchscript_class(import: &crate::findings::ImportName) -> bool {
    &*import.module == "__torch__" || import.module.starts_with("__torch__.")
}

fn is_torchscript_native(import: &crate::findings::ImportName) -> bool {
    &*import.module == "torch.jit._pickle" && TORCHSCRIPT_NATIVE.contains(&&*import.name)
}

/// Scans the members of a parsed zip (`scan_prefix`: bytes before the archive are scanned
/// too); `format` says whether torch's rules for storages and TorchScript code apply.
fn scan_zip_archive(
    ctx: &mut Ctx<'_>,
    data: &[u8],
    archive: &ZipArchive,
    location: &str,
    depth: usize,
    format: Format,
    scan_prefix: bool,
) {
    let member_location = |index: usize| {
        archive
            .entries
            .get(index)
            .map_or_else(|| location.to_string(), |e| join(location, &e.display_name()))
    };
    // The members zipfile and torch read, then those only streaming readers see.
    let members: Vec<&ZipEntry> = archive.entries.iter().chain(&archive.hidden).collect();
    let listed = archive.entries.len();
    for issue in &archive.issues {
        let at = issue.member.map_or_else(|| location.to_string(), member_location);
        ctx.finding(
            &at,
            FindingKind::Container,
            issue.severity,
            issue.offset,
            issue.message.clone(),
        );
    }
    if archive.truncated_entries {
        let max = ctx.options.max_members;
        ctx.finding(
            location,
            FindingKind::LimitExceeded,
            Severity::High,
            archive.central_offset,
            format!("the archive has more than {max} members; the rest were not analysed"),
        );
    }
    if scan_prefix && archive.start > 0 {
        if let Some(prefix) = usize::try_from(archive.start).ok().and_then(|s| data.get(..s)) {
            scan_slice(ctx, prefix, &join(location, "<prepended>"), depth + 1);
        }
    }
    let torch_kind = matches!(format, Format::PytorchZip | Format::TorchScript);
    let mut order: Vec<usize> = (0..members.len()).collect();
    // Pickles first: their persistent ids say which members are raw storages.
    order.sort_by_key(|&i| !members.get(i).is_some_and(|e| is_pickle_name(&e.display_name())));
    let mut storage_keys: HashSet<String> = HashSet::new();
    let mut code_files: Vec<String> = Vec::new();
    let mut records: HashMap<String, usize> = HashMap::new();
    for (index, entry) in archive.entries.iter().enumerate() {
        records.insert(record(&entry.display_name()).to_string(), index);
    }
    // Members may share data (a zip bomb): bytes read across members are bounded by the input.
    let mut read_total: u64 = 0;
    let read_budget = (data.len() as u64).saturating_mul(2).saturating_add(64 << 20);
    for index in order {
        let Some(&entry) = members.get(index) else {
            continue;
        };
        // A hidden member's CRC and sizes may be in a data descriptor: not checked.
        let checked = index < listed;
        let name = entry.display_name();
        let rec = record(&name).to_string();
        let at = join(location, &name);
        if name.ends_with('/') && entry.uncompressed_size == 0 {
            continue;
        }
        // Encrypted for every reader only when both headers say so; otherwise some reader
        // reads it as plain data (the mismatch itself is reported).
        if entry.flags & zip::FLAG_ENCRYPTED != 0
            && entry
                .local
                .as_ref()
                .is_none_or(|l| l.flags & zip::FLAG_ENCRYPTED != 0)
        {
            ctx.finding(
                &at,
                FindingKind::Unsupported,
                Severity::High,
                entry.local_offset,
                format!("member {name:?} is encrypted: it cannot be analysed"),
            );
            continue;
        }
        if torch_kind {
            if let Some(key) = rec.strip_prefix("data/") {
                if storage_keys.contains(key) {
                    continue;
                }
            }
            if format == Format::TorchScript && rec.starts_with("code/") && rec.ends_with(".py") {
                code_files.push(rec.clone());
                continue;
            }
        }
        let Some(raw) = entry.raw(data) else {
            // The layout check has reported it.
            continue;
        };
        read_total = read_total.saturating_add(raw.len() as u64);
        if read_total > read_budget {
            ctx.finding(location, FindingKind::LimitExceeded, Severity::High, entry.local_offset, format!("members from {name:?} on re-read data other members hold (more than twice the input in all); they were not analysed"));
            break;
        }
        let pickle_named = is_pickle_name(&name);
        let content = match entry.method {
            0 => {
                if entry.compressed_size != entry.uncompressed_size {
                    ctx.finding(&at, FindingKind::Container, Severity::High, entry.local_offset, format!("stored member {name:?} declares {} bytes compressed but {} uncompressed: readers disagree on its end", entry.compressed_size, entry.uncompressed_size));
                }
                Content::Slice(raw)
            }
            8 => {
                if pickle_named && torch_kind && !name.ends_with("debug_pkl") {
                    ctx.finding(&at, FindingKind::Container, Severity::Warning, entry.local_offset, format!("pickle member {name:?} is deflate-compressed; torch writes pickles stored, so the archive was rewritten by another tool"));
                }
                let mut reader = Crc::new(compress::open_deflate(raw, &ctx.budget));
                if !pickle_named {
                    // Only what the content needs is decompressed (an .npy header, say).
                    analyse_member(ctx, &mut reader, &name, &at, format, &mut storage_keys, depth);
                    if reader.eof && checked {
                        check_crc(ctx, &at, entry, reader.crc(), reader.len);
                    }
                    ctx.note_budget(&at);
                    continue;
                }
                if ctx.kept.is_none() {
                    // Analysed as it inflates: memory stays bounded whatever the member claims.
                    let report = stream_named_pickle(ctx, &mut reader);
                    ctx.note_budget(&at);
                    if reader.eof && checked {
                        check_crc(ctx, &at, entry, reader.crc(), reader.len);
                    }
                    if report.nested.is_empty() {
                        add_member_pickle(ctx, &at, report, None, format, &mut storage_keys, depth);
                        continue;
                    }
                    // A nested torch file is read from the member's bytes: inflated again, bounded.
                    reader = Crc::new(compress::open_deflate(raw, &ctx.budget));
                }
                match compress::read_bounded(&mut reader, ctx.options.max_buffered) {
                    Ok(Ok(buffer)) => {
                        if checked {
                            check_crc(ctx, &at, entry, reader.crc(), reader.len);
                        }
                        Content::Owned(buffer)
                    }
                    Ok(Err(max)) => {
                        ctx.finding(&at, FindingKind::LimitExceeded, Severity::High, entry.local_offset, format!("pickle member {name:?} decompresses to more than {max} bytes; it was not analysed"));
                        continue;
                    }
                    Err((e, read)) => {
                        ctx.note_budget(&at);
                        ctx.finding(
                            &at,
                            FindingKind::Container,
                            Severity::High,
                            entry.local_offset,
                            format!(
                                "member {name:?} cannot be decompressed past byte {read} of its content: {e}"
                            ),
                        );
                        continue;
                    }
                }
            }
            method => {
                ctx.finding(&at, FindingKind::Unsupported, Severity::High, entry.local_offset, format!("member {name:?} uses compression method {method}, which the scanner cannot read: it was not analysed"));
                continue;
            }
        };
        let bytes = content.bytes();
        if pickle_named {
            if matches!(content, Content::Slice(_)) && checked {
                check_crc(ctx, &at, entry, crc32fast::hash(bytes), bytes.len() as u64);
            }
            let report = scan_named_pickle(ctx, bytes);
            add_member_pickle(ctx, &at, report, Some(bytes), format, &mut storage_keys, depth);
            continue;
        }
        // Identified once: the parse that tells the kind is the one scanned.
        let found = find(bytes, Probe::whole(ctx.options.max_members));
        let kind = found.format();
        if matches!(kind, Format::Pickle | Format::Joblib | Format::PytorchLegacy)
            && matches!(content, Content::Slice(_))
            && checked
        {
            check_crc(ctx, &at, entry, crc32fast::hash(bytes), bytes.len() as u64);
        }
        if torch_kind && matches!(kind, Format::Unknown | Format::Empty) {
            // Metadata records (version, byteorder, ...) and unreferenced data.
            continue;
        }
        found.scan(ctx, &at, depth + 1);
    }
    if torch_kind {
        let mut missing: Vec<&String> = storage_keys
            .iter()
            .filter(|k| !records.contains_key(&format!("data/{k}")))
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            let count = missing.len();
            ctx.finding(location, FindingKind::Container, Severity::Warning, archive.central_offset, format!("{count} storages named by persistent ids have no data/ record (first: {first:?}); torch.load fails on them"));
        }
    }
    if !code_files.is_empty() {
        code_files.sort();
        let count = code_files.len();
        let shown: Vec<&str> = code_files.iter().take(5).map(String::as_str).collect();
        ctx.finding(
            location,
            FindingKind::EmbeddedCode,
            Severity::Warning,
            0,
            format!(
                "the archive carries {count} TorchScript code files ({}{}) that run when the model runs; not a violation \
                 by default: load TorchScript only from sources you trust",
                shown.join(", "),
                if count > shown.len() { ", ..." } else { "" }
            ),
        );
    }
}

/// Adds a pickle member's report; in torch archives its persistent ids name the storages
/// (`storage_keys`) and `TorchScript` classes are not imports.
pub(super) fn add_member_pickle(
    ctx: &mut Ctx<'_>,
    location: &str,
    mut report: PickleReport,
    held: Option<&[u8]>,
    format: Format,
    storage_keys: &mut HashSet<String>,
    depth: usize,
) {
    if matches!(format, Format::PytorchZip | Format::TorchScript) {
        for id in torch::check_storage_ids(&mut report, 5, ctx.policy) {
            storage_keys.insert(id.key);
        }
        if format == Format::TorchScript {
            torchscript_globals(&mut report);
        }
    }
    ctx.add_pickle(location, "pickle", report, held.map(|bytes| (bytes, 0)), depth);
}

/// A finding when a member's CRC or length is not what the directory declares.
fn check_crc(ctx: &mut Ctx<'_>, location: &str, entry: &ZipEntry, crc: u32, len: u64) {
    if crc != entry.crc32 || len != entry.uncompressed_size {
        let name = entry.display_name();
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            entry.local_offset,
            format!(
                "member {name:?} has CRC {crc:#010x} over {len} bytes but the archive declares {:#010x} over {} bytes: \
                 readers that check CRCs reject it, others load it",
                entry.crc32, entry.uncompressed_size
            ),
        );
    }
}

/// A zip at the end of something that is not a zip at its start (a pickle/zip polyglot): both
/// readings are analysed.
pub(crate) fn appended_archive(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) {
    let Some(eocd) = zip::find_end_record(data) else {
        return;
    };
    let Ok(archive) = zip::ZipArchive::parse(data, ctx.options.max_members) else {
        return;
    };
    if archive.entries.is_empty() || archive.entries.iter().all(|e| e.local.is_none()) {
        return;
    }
    ctx.finding(
        location,
        FindingKind::Container,
        Severity::High,
        eocd,
        format!(
            "a zip archive starts at offset {} after other content: zip readers (miniz, zipfile) read the archive while \
             readers of the file's start read the rest; both were analysed",
            archive.start
        ),
    );
    scan_zip_archive(
        ctx,
        data,
        &archive,
        &join(location, "<appended zip>"),
        depth + 1,
        zip_kind_of(data, &archive),
        false,
    );
}
