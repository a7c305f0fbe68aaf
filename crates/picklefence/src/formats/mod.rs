//! Content identification and readers for the containers that carry pickles: PyTorch (zip,
//! legacy, tar, TorchScript), NumPy (`.npy`, `.npz`), joblib and its compressors, compressed
//! pickles, tar and zip archives (nested, bounded), and the non-pickle model formats a scan must
//! name rather than skip. Identification is by content only, never by file name.

mod archive;
pub mod compress;
mod ctx;
pub mod joblib;
pub mod npy;
pub mod other;
mod pylit;
pub mod tar;
pub mod torch;
pub mod zip;

use std::io::{Cursor, Read};

use serde::Serialize;

use crate::analyzer::joblib::{WRAPPER_MODULE, WRAPPER_NAME};
use crate::analyzer::{Mode, Options, PickleReport};
use crate::decoder::{Decoder, Source};
use crate::findings::{Finding, FindingKind, Severity};
use crate::policy::Policy;

use compress::Codec;
pub(crate) use ctx::{decoder_at, join, Ctx};

/// What an input is, by content. `name()` is stable (it appears in reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One or more pickles.
    Pickle,
    /// A pickle carrying joblib `NumpyArrayWrapper` arrays.
    Joblib,
    /// `torch.save` since 1.6: a zip with `<folder>/data.pkl`.
    PytorchZip,
    /// `torch.jit.save`: a zip with `<folder>/constants.pkl` (and `code/`).
    TorchScript,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: sequential pickles and raw storages.
    PytorchLegacy,
    /// The oldest `torch.save` format: a tar with `sys_info`, `pickle`, `storages`, `tensors`.
    PytorchTar,
    Npy,
    Npz,
    Zip,
    Tar,
    Compressed(Codec),
    Safetensors,
    Gguf,
    Onnx,
    Hdf5,
    /// Keras v3 `.keras` (a zip with `config.json` and `metadata.json`).
    Keras,
    /// An archive or compressor the scanner cannot open.
    UnsupportedArchive(&'static str),
    Empty,
    Unknown,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Pickle => "pickle",
            Format::Joblib => "joblib",
            Format::PytorchZip => "pytorch-zip",
            Format::TorchScript => "torchscript",
            Format::PytorchLegacy => "pytorch-legacy",
            Format::PytorchTar => "pytorch-tar",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::Compressed(codec) => codec.name(),
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
            Format::Onnx => "onnx",
            Format::Hdf5 => "hdf5",
            Format::Keras => "keras",
            Format::UnsupportedArchive(name) => name,
            Format::Empty => "empty",
            Format::Unknown => "unknown",
        }
    }

    /// Whether the format can hold pickles the scanner reads.
    pub fn carries_pickles(self) -> bool {
        !matches!(
            self,
            Format::Safetensors
                | Format::Gguf
                | Format::Onnx
                | Format::Hdf5
                | Format::Empty
                | Format::Unknown
        )
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Archives and compressors the scanner cannot open, by magic bytes.
const UNSUPPORTED: [(&[u8], &str); 9] = [
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"MSCF\0\0\0\0", "cab"),
    (b"!<arch>\n", "ar"),
    (b"070701", "cpio"),
    (b"070707", "cpio"),
    (b"LZIP", "lzip"),
    (b"\x1f\x9d", "unix-compress"),
    (b"ZF", "joblib-compat"),
];

/// Prefix the streaming reader looks at before deciding how to read the rest.
const PREFIX: usize = 64 << 10;

/// Identifies `data` (the whole input) by content.
pub fn identify(data: &[u8]) -> Format {
    identify_inner(data, true)
}

/// Identification from the first bytes only (`whole` false): zip subtypes are not told apart.
fn identify_inner(data: &[u8], whole: bool) -> Format {
    if data.is_empty() {
        return Format::Empty;
    }
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return if whole {
            archive::zip_kind(data)
        } else {
            Format::Zip
        };
    }
    if data.starts_with(npy::MAGIC) {
        return Format::Npy;
    }
    if let Some(codec) = Codec::sniff(data) {
        return Format::Compressed(codec);
    }
    if let Some((_, name)) = UNSUPPORTED.iter().find(|(magic, _)| data.starts_with(magic)) {
        return Format::UnsupportedArchive(name);
    }
    if data.len() >= tar::BLOCK as usize && data.get(..tar::BLOCK as usize).is_some_and(tar::is_header) {
        return if whole {
            archive::tar_kind(data)
        } else {
            Format::Tar
        };
    }
    if data.starts_with(b"GGUF") {
        return Format::Gguf;
    }
    if other::looks_like_hdf5(data) {
        return Format::Hdf5;
    }
    if other::looks_like_safetensors(data) {
        return Format::Safetensors;
    }
    if other::looks_like_onnx(data) {
        return Format::Onnx;
    }
    if torch::is_legacy(data) {
        return Format::PytorchLegacy;
    }
    if looks_like_pickle(data, whole) {
        let head = data.get(..data.len().min(1 << 20)).unwrap_or_default();
        if memchr::memmem::find(head, b"NumpyArrayWrapper").is_some() {
            return Format::Joblib;
        }
        return Format::Pickle;
    }
    Format::Unknown
}

/// Protocol 2+ pickles start with PROTO; protocol 0 and 1 pickles have no magic, so the first
/// megabyte is analysed: it is a pickle if, before it first breaks, it imports, calls or loads
/// something or runs to a STOP, or (when more input follows) it decodes for at least 4 KiB.
fn looks_like_pickle(data: &[u8], whole: bool) -> bool {
    if let [0x80, 2..=5, ..] = data {
        return true;
    }
    let head = data.get(..data.len().min(1 << 20)).unwrap_or_default();
    let options = Options {
        mode: Mode::FirstPickle,
        ..Options::default()
    };
    let report = crate::analyzer::analyze_slice(head, &Policy::empty(), &options);
    // Only what CPython would reach before the stream first breaks counts.
    let broken_at = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::MalformedPickle)
        .map(|f| f.offset)
        .min()
        .unwrap_or(u64::MAX);
    report.imports.iter().any(|i| i.offset < broken_at)
        || report.calls.iter().any(|c| c.offset < broken_at)
        || report.persistent_ids.iter().any(|p| p.offset < broken_at)
        || report
            .pickles
            .iter()
            .any(|p| p.end.is_some_and(|end| end <= broken_at) && p.opcodes > 1)
        || ((!whole || head.len() < data.len()) && broken_at >= (head.len() as u64 / 2).min(4096))
}

/// Scans bytes held in memory (the input, or a stored member); returns what they were.
pub(crate) fn scan_slice(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) -> Format {
    if ctx.too_deep(location, depth) {
        return Format::Unknown;
    }
    let format = identify(data);
    match format {
        Format::Pickle | Format::Joblib => {
            let found = scan_pickle_slice(ctx, data, location, depth);
            appended_archive(ctx, data, location, depth);
            return found;
        }
        Format::PytorchLegacy => {
            let report = torch::scan_legacy(
                Decoder::from_slice(data),
                ctx.policy,
                &ctx.analysis(Mode::FirstPickle),
            );
            ctx.add_pickle(location, format.name(), report, Some((data, 0)), depth);
            appended_archive(ctx, data, location, depth);
        }
        Format::PytorchZip | Format::TorchScript | Format::Npz | Format::Zip | Format::Keras => {
            archive::scan_zip(ctx, data, location, depth, format);
        }
        Format::PytorchTar | Format::Tar => archive::scan_tar(ctx, data, location, depth, format),
        Format::Npy => scan_npy_slice(ctx, data, location, depth),
        Format::Compressed(codec) => scan_compressed(ctx, codec, data, location, depth),
        Format::UnsupportedArchive(name) => ctx.finding(
            location,
            FindingKind::Unsupported,
            Severity::High,
            0,
            format!(
                "a {name} archive or stream, which the scanner cannot open: its content was not analysed"
            ),
        ),
        Format::Safetensors => match other::check_safetensors(data) {
            Ok(count) => ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Info,
                0,
                format!("safetensors with {count} tensors: not pickle-based, nothing here runs code on load"),
            ),
            Err(problem) => ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Warning,
                0,
                format!("safetensors with a bad header: {problem}; loaders reject it"),
            ),
        },
        Format::Gguf => {
            let version = other::gguf_version(data).map_or_else(|| "?".to_string(), |v| v.to_string());
            ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Info,
                0,
                format!("GGUF (version {version}): not pickle-based"),
            );
        }
        Format::Onnx => ctx.finding(
            location,
            FindingKind::NonPickleFormat,
            Severity::Info,
            0,
            "ONNX (protobuf): not pickle-based; custom operators it names are not checked".into(),
        ),
        Format::Hdf5 => ctx.finding(
            location,
            FindingKind::NonPickleFormat,
            Severity::Info,
            0,
            "HDF5 (Keras .h5): not pickle-based; Lambda layers it may hold are not checked".into(),
        ),
        Format::Empty => ctx.finding(
            location,
            FindingKind::NonPickleFormat,
            Severity::Info,
            0,
            "empty: nothing to load".into(),
        ),
        Format::Unknown => {
            ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Info,
                0,
                "not a recognised model format, and not a pickle that would import or call anything".into(),
            );
            appended_archive(ctx, data, location, depth);
        }
    }
    format
}

/// A zip at the end of something that is not a zip at its start (a pickle/zip polyglot): both
/// readings are analysed.
fn appended_archive(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) {
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
    archive::scan_zip_archive(
        ctx,
        data,
        &archive,
        &join(location, "<appended zip>"),
        depth + 1,
        archive::zip_kind_of(data, &archive),
        false,
    );
}

fn scan_pickle_slice(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) -> Format {
    let options = ctx.analysis(Mode::AllPickles);
    // Most pickles never import joblib's array wrapper: for them the fast slice analysis is the
    // whole answer (array tracking only starts at that import). Anything that might reach the
    // wrapper some other way (EXT codes, unlisted imports) takes the joblib-aware loop.
    let quick = crate::analyzer::analyze_slice(data, ctx.policy, &options);
    let may_hold_arrays = quick.records_dropped > 0
        || quick.imports.iter().any(|import| {
            import.ext_code.is_some()
                || import
                    .target
                    .as_ref()
                    .is_some_and(|t| &*t.module == WRAPPER_MODULE && &*t.name == WRAPPER_NAME)
        });
    if !may_hold_arrays {
        let mut report = quick;
        check_native_state(data, false, &[], &mut report);
        ctx.add_pickle(location, Format::Pickle.name(), report, Some((data, 0)), depth);
        return Format::Pickle;
    }
    let (analysis, _) = joblib::drive(Decoder::from_slice(data), ctx.policy, &options, true, None);
    let format = if analysis.arrays > 0 {
        Format::Joblib
    } else {
        Format::Pickle
    };
    let mut report = analysis.report;
    if analysis.arrays > 0 {
        // pickle.load reads the array bytes as opcodes: imports that reading finds run there.
        let (plain, _) = joblib::drive(Decoder::from_slice(data), ctx.policy, &options, false, None);
        for f in plain.report.findings {
            // Not unresolvable imports: in this reading the nested pickles of object arrays
            // share the outer memo, so benign files give STACK_GLOBALs on non-str operands,
            // where CPython raises instead of importing.
            let import_kind = matches!(
                f.kind,
                FindingKind::DangerousImport | FindingKind::DisallowedImport | FindingKind::ExtensionCode
            );
            if !import_kind
                || report
                    .findings
                    .iter()
                    .any(|g| g.offset == f.offset && g.kind == f.kind)
            {
                continue;
            }
            // For the same reason a benign file's object arrays (a OneHotEncoder's categories,
            // numpy scalars) give imports of names joined from unrelated strings of the outer
            // pickle (`numpy._core.multiarray.dtype`): listed, but only names known to run code
            // are violations in this reading.
            let (severity, note) = if f.kind == FindingKind::DisallowedImport {
                (
                    Severity::Warning.min(f.severity),
                    "; a warning here: object arrays read this way join unrelated names",
                )
            } else {
                (f.severity, "")
            };
            report.findings.push(Finding {
                message: format!(
                    "read by pickle.load instead of joblib.load (array bytes taken as opcodes): {}{note}",
                    f.message
                ),
                severity,
                ..f
            });
        }
    }
    let readable = data
        .get(..usize::try_from(analysis.end).unwrap_or(usize::MAX))
        .unwrap_or(data);
    check_native_state(readable, analysis.arrays > 0, &analysis.skips, &mut report);
    ctx.add_pickle(location, format.name(), report, Some((data, 0)), depth);
    format
}

/// A pickle member analysed whatever its content looks like (`*.pkl` in archives).
pub(crate) fn scan_named_pickle(ctx: &Ctx<'_>, data: &[u8]) -> crate::analyzer::PickleReport {
    let options = ctx.analysis(Mode::AllPickles);
    joblib::drive(Decoder::from_slice(data), ctx.policy, &options, true, None)
        .0
        .report
}

/// The pickle an object-dtype .npy holds after its header (what `numpy.load` unpickles).
fn npy_pickle(ctx: &Ctx<'_>, data: &[u8], offset: u64) -> crate::analyzer::PickleReport {
    joblib::drive(
        decoder_at(data, offset),
        ctx.policy,
        &ctx.analysis(Mode::FirstPickle),
        false,
        None,
    )
    .0
    .report
}

fn scan_npy_slice(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) {
    match npy::parse_header(data) {
        Ok(header) => match header.payload {
            npy::Payload::Raw => {}
            npy::Payload::Pickle => {
                let report = npy_pickle(ctx, data, header.data_offset);
                ctx.add_pickle(location, "npy", report, Some((data, header.data_offset)), depth);
            }
            npy::Payload::Unknown(why) => {
                ctx.finding(location, FindingKind::Container, Severity::Warning, 8, format!("the .npy dtype is not one the scanner knows ({why}); the data is analysed if it is a pickle"));
                let rest = usize::try_from(header.data_offset)
                    .ok()
                    .and_then(|o| data.get(o..))
                    .unwrap_or_default();
                if looks_like_pickle(rest, true) {
                    let report = npy_pickle(ctx, data, header.data_offset);
                    ctx.add_pickle(location, "npy", report, Some((data, header.data_offset)), depth);
                }
            }
        },
        Err(e) => ctx.finding(
            location,
            FindingKind::Container,
            Severity::Warning,
            0,
            format!("{e}; numpy rejects the file"),
        ),
    }
}

/// Scans a stream (decompressed data, deflated members): small ones are read whole; pickles,
/// `.npy` and tar are read as they stream; other containers are read into memory (bounded).
/// A compressed stream, decompressed as it is read, scanned as `location!<codec>`.
fn scan_compressed<'a>(ctx: &mut Ctx<'_>, codec: Codec, input: impl Read + 'a, location: &str, depth: usize) {
    let inner = join(location, &format!("<{}>", codec.name()));
    match compress::open(codec, input, &ctx.budget) {
        Ok(reader) => {
            scan_reader(ctx, reader, &inner, depth + 1);
        }
        Err(e) => ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            0,
            format!("the {} stream cannot be opened: {e}", codec.name()),
        ),
    }
    ctx.note_budget(&inner);
}

pub(crate) fn scan_reader(ctx: &mut Ctx<'_>, reader: impl Read, location: &str, depth: usize) -> Format {
    let mut reader = reader;
    if ctx.too_deep(location, depth) {
        return Format::Unknown;
    }
    let mut prefix = Vec::new();
    if let Err(e) = (&mut reader).take(PREFIX as u64).read_to_end(&mut prefix) {
        ctx.note_budget(location);
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            prefix.len() as u64,
            format!("the stream cannot be read past offset {}: {e}", prefix.len()),
        );
        if prefix.is_empty() {
            return Format::Unknown;
        }
        return scan_slice(ctx, &prefix, location, depth);
    }
    if prefix.len() < PREFIX {
        return scan_slice(ctx, &prefix, location, depth);
    }
    let format = identify_inner(&prefix, false);
    let head_len = prefix.len() as u64;
    let chained = std::io::BufReader::with_capacity(64 << 10, Cursor::new(prefix).chain(reader));
    match format {
        // Kept pickles need their bytes: what may hold one is read into memory (bounded).
        Format::Pickle
        | Format::Joblib
        | Format::PytorchLegacy
        | Format::Npy
        | Format::Tar
        | Format::Compressed(_)
            if ctx.kept.is_some() =>
        {
            buffered(ctx, chained, format, head_len, location, depth)
        }
        Format::Unknown => {
            ctx.finding(location, FindingKind::NonPickleFormat, Severity::Info, 0, "not a recognised model format, and its start is not a pickle that would import or call anything; the rest was not read".into());
            Format::Unknown
        }
        Format::Pickle | Format::Joblib => {
            let options = ctx.analysis(Mode::AllPickles);
            let (analysis, _) = joblib::drive(
                Decoder::from_reader(chained, options.limits.stream),
                ctx.policy,
                &options,
                true,
                None,
            );
            let format = if analysis.arrays > 0 {
                Format::Joblib
            } else {
                Format::Pickle
            };
            ctx.add_pickle(location, format.name(), analysis.report, None, depth);
            ctx.note_budget(location);
            format
        }
        Format::PytorchLegacy => {
            let options = ctx.analysis(Mode::FirstPickle);
            let report = torch::scan_legacy(
                Decoder::from_reader(chained, options.limits.stream),
                ctx.policy,
                &options,
            );
            ctx.add_pickle(location, format.name(), report, None, depth);
            ctx.note_budget(location);
            format
        }
        Format::Npy => {
            scan_npy_stream(ctx, chained, location, depth);
            format
        }
        Format::Compressed(codec) => {
            scan_compressed(ctx, codec, chained, location, depth);
            format
        }
        Format::Tar => {
            archive::scan_tar_stream(ctx, chained, location, depth);
            format
        }
        _ => buffered(ctx, chained, format, head_len, location, depth),
    }
}

/// A stream read into memory (up to `max_buffered`) and scanned as a slice.
fn buffered(
    ctx: &mut Ctx<'_>,
    reader: impl Read,
    format: Format,
    head_len: u64,
    location: &str,
    depth: usize,
) -> Format {
    let max = ctx.options.max_buffered;
    match compress::read_bounded(reader, max) {
        Ok(Ok(buffer)) => scan_slice(ctx, &buffer, location, depth),
        Ok(Err(max)) => {
            ctx.finding(location, FindingKind::LimitExceeded, Severity::High, head_len, format!("a {format} stream larger than {max} bytes would have to be held in memory to be read; it was not analysed"));
            format
        }
        Err(e) => {
            ctx.note_budget(location);
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::High,
                0,
                format!("the stream cannot be read: {e}"),
            );
            format
        }
    }
}

fn scan_npy_stream(ctx: &mut Ctx<'_>, mut reader: impl Read, location: &str, depth: usize) {
    let mut head = vec![0u8; 12];
    if reader.read_exact(&mut head).is_err() {
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::Warning,
            0,
            "the .npy stream ends inside its header".into(),
        );
        return;
    }
    let end = match npy::header_end(&head) {
        Ok(end) if end <= 1 << 24 => end,
        Ok(end) => {
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::High,
                8,
                format!("the .npy header is {end} bytes long; it was not analysed"),
            );
            return;
        }
        Err(e) => {
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::Warning,
                0,
                format!("{e}; numpy rejects the file"),
            );
            return;
        }
    };
    let mut rest = Vec::new();
    if (&mut reader)
        .take(end.saturating_sub(12))
        .read_to_end(&mut rest)
        .is_err()
    {
        ctx.note_budget(location);
        return;
    }
    head.extend(rest);
    let payload = match npy::parse_header(&head) {
        Ok(header) => header.payload,
        Err(e) => {
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::Warning,
                0,
                format!("{e}; numpy rejects the file"),
            );
            return;
        }
    };
    if let npy::Payload::Unknown(why) = &payload {
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::Warning,
            8,
            format!("the .npy dtype is not one the scanner knows ({why}); the data is analysed as a pickle"),
        );
    }
    if payload == npy::Payload::Raw {
        return;
    }
    // Offsets from the start of the file: the header bytes are fed again through the decoder's
    // source and skipped.
    let chained = Cursor::new(head).chain(reader);
    let options = ctx.analysis(Mode::FirstPickle);
    let mut source = crate::decoder::ReaderSource::new(chained, options.limits.stream);
    let _ = source.skip(end, &mut |_| {});
    let (analysis, _) = joblib::drive(Decoder::new(source), ctx.policy, &options, false, None);
    let mut report = analysis.report;
    if matches!(payload, npy::Payload::Unknown(_)) && report.imports.is_empty() && report.calls.is_empty() {
        report.findings.retain(|f| f.kind != FindingKind::MalformedPickle);
    }
    ctx.add_pickle(location, "npy", report, None, depth);
    ctx.note_budget(location);
}

/// Where the report notes a class the scanner checks inside pickles, reads the pickle's data
/// without running it (`skips`: the array bytes joblib reads between opcodes, from the analysis)
/// and checks the instances whose arrays are inside it
/// ([`crate::native_state::check_pickled`]): a broken one is a critical state violation; the
/// note says what the scanner checked and what it leaves to the guard.
fn check_native_state(data: &[u8], joblib: bool, skips: &[(u64, u64)], report: &mut PickleReport) {
    use crate::evaluate::{Evaluator, GaveUp, Heap, Object, Trailing};
    use crate::native_state::{check_pickled, joblib_trailing, load_time_check, PickledOutcome};

    let checkable = |f: &Finding| {
        f.kind == FindingKind::NativeState
            && f.import
                .as_ref()
                .is_some_and(|i| crate::native_state::checked_in_pickles(&i.module, &i.name))
    };
    if !report.findings.iter().any(checkable) {
        return;
    }
    let trailing = |heap: &Heap, object: &Object| {
        if joblib {
            joblib_trailing(heap, object)
        } else {
            Trailing::Nothing
        }
    };
    let mut evaluator = Evaluator::default();
    let mut skips = skips.iter().peekable();
    let mut decoder = Decoder::from_slice(data);
    while let Ok(Some(op)) = decoder.next_op() {
        evaluator.step(&op, &trailing);
        let end = op.end();
        if evaluator.gave_up.is_some() {
            break;
        }
        // The opcodes as joblib reads them: the array bytes the analysis skipped are skipped.
        while let Some(&&(from, to)) = skips.peek() {
            if from > end {
                break;
            }
            if from == end {
                decoder
                    .source_mut()
                    .skip_to(usize::try_from(to).unwrap_or(usize::MAX));
            }
            skips.next();
        }
    }
    let states = check_pickled(&evaluator.heap, data);
    let incomplete = match &evaluator.gave_up {
        Some(GaveUp::TooLarge) => Some("the pickle is too large to read whole".to_owned()),
        Some(GaveUp::Broken(at)) => Some(format!(
            "reading stops at offset {at}, where the unpickler raises"
        )),
        None => None,
    };
    for state in &states {
        if let PickledOutcome::Broken(why) = &state.outcome {
            report.findings.push(Finding {
                kind: FindingKind::StateViolation,
                severity: Severity::Critical,
                offset: state.offset,
                import: Some(crate::findings::ImportName {
                    module: state.module.into(),
                    name: state.name.into(),
                }),
                message: format!(
                    "{}.{} made at offset {}: {why}; its compiled code trusts this state and would read out of \
                     bounds or never finish with it",
                    state.module, state.name, state.offset
                ),
            });
        }
    }
    for note in report
        .findings
        .iter_mut()
        .filter(|f| f.kind == FindingKind::NativeState)
    {
        let Some(target) = note.import.clone() else {
            continue;
        };
        let mine: Vec<_> = states
            .iter()
            .filter(|s| s.module == &*target.module && s.name == &*target.name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let Some(checked) = load_time_check(&target.module, &target.name) else {
            continue;
        };
        let broken = mine
            .iter()
            .filter(|s| matches!(s.outcome, PickledOutcome::Broken(_)))
            .count();
        let unchecked = mine.iter().find_map(|s| match &s.outcome {
            PickledOutcome::Unchecked(why) => Some(why.clone()),
            _ => None,
        });
        let left = match (unchecked.or(incomplete.clone()), broken) {
            (Some(why), _) => format!(
                "; not all could be read here ({why}): the guard validates them when it loads the file"
            ),
            (None, 0) => ": intact (the guard checks them again when it loads the file)".to_owned(),
            (None, _) => String::new(),
        };
        note.message = format!(
            "{target} keeps state its compiled code trusts ({checked}); the scanner checked the {} instance(s) in \
             this pickle, {broken} broken{left}",
            mine.len()
        );
    }
}
