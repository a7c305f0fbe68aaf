//! Pickles (and joblib files: a pickle with arrays between its opcodes): recognised by
//! analysing their start, read by the joblib-aware driver from memory or as they stream.
//! Also the pickle helpers other containers use: a pickle member read whatever it looks like,
//! and the check of the native state pickles carry.

use crate::analyzer::joblib::{WRAPPER_MODULE, WRAPPER_NAME};
use crate::analyzer::{Mode, Options, PickleReport};
use crate::decoder::Decoder;
use crate::findings::{Finding, FindingKind, Severity};
use crate::policy::Policy;

use super::super::joblib;
use super::zip_family::appended_archive;
use super::{Container, Ctx, Format, Parsed, Probe, Stream};

/// Pickles and joblib files.
pub(crate) struct PickleFile;

/// Bytes that look like a pickle; `format` is `joblib` when joblib's array wrapper is named in
/// the first megabyte.
struct Recognised<'d> {
    data: &'d [u8],
    format: Format,
}

impl Container for PickleFile {
    fn identify<'d>(&self, data: &'d [u8], probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        if !looks_like_pickle(data, probe.whole) {
            return None;
        }
        let head = data.get(..data.len().min(1 << 20)).unwrap_or_default();
        let format = if memchr::memmem::find(head, b"NumpyArrayWrapper").is_some() {
            Format::Joblib
        } else {
            Format::Pickle
        };
        Some(Box::new(Recognised { data, format }))
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        let options = ctx.analysis(Mode::AllPickles);
        let mut reader = stream.reader;
        let magic = std::io::BufRead::fill_buf(&mut reader)
            .map(|head| head.get(..2).unwrap_or(head).to_vec())
            .unwrap_or_default();
        let (analysis, _) = joblib::drive(
            Decoder::from_reader(reader, options.limits.stream),
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
        ctx.note_budget(location);
        if inert(&magic, &analysis.report) {
            return not_a_pickle(ctx, location);
        }
        ctx.add_pickle(location, format.name(), analysis.report, None, depth);
        format
    }
}

impl<'d> Parsed<'d> for Recognised<'d> {
    fn format(&self) -> Format {
        self.format
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let found = scan_pickle_slice(ctx, self.data, location, depth);
        // A pickle/zip polyglot: the zip reading is analysed too.
        appended_archive(ctx, self.data, location, depth);
        found
    }
}

/// The longest argument a stream of unknown length is taken to be able to hold (1 TiB, past
/// every read budget).
const MAX_STREAM_CLAIM: u64 = 1 << 40;

/// Protocol 2+ pickles start with PROTO; protocol 0 and 1 pickles have no magic, so the first
/// megabyte is analysed: it is a pickle if, before it first breaks, it imports, calls or loads
/// something or runs to a STOP, or (when more input follows) it decodes for at least 4 KiB.
pub(crate) fn looks_like_pickle(data: &[u8], whole: bool) -> bool {
    if let [0x80, 2..=5, ..] = data {
        return true;
    }
    let head = data.get(..data.len().min(1 << 20)).unwrap_or_default();
    let options = Options {
        mode: Mode::FirstPickle,
        ..Options::default()
    };
    let report = crate::analyzer::analyze_slice(head, &Policy::empty(), &options);
    let more_follows = !whole || head.len() < data.len();
    // Only what CPython would reach before the stream first breaks counts. Where more input
    // follows, running out at the end of these bytes (a FRAME longer than they are, say) is
    // not a break: the stream goes on, if it can hold what was claimed (the whole input, or a
    // stream of at most MAX_STREAM_CLAIM): binary data that merely starts with such an opcode
    // claims billions of gigabytes.
    let room = if whole {
        data.len() as u64
    } else {
        MAX_STREAM_CLAIM
    };
    let goes_on = |at: u64| {
        more_follows && report.ran_out_at == Some(at) && at.saturating_add(report.ran_out_claiming) <= room
    };
    let broken_at = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::MalformedPickle)
        .map(|f| f.offset)
        .min()
        .filter(|&at| !goes_on(at))
        .unwrap_or(u64::MAX);
    report.imports.iter().any(|i| i.offset < broken_at)
        || report.calls.iter().any(|c| c.offset < broken_at)
        || report.persistent_ids.iter().any(|p| p.offset < broken_at)
        || report
            .pickles
            .iter()
            .any(|p| p.end.is_some_and(|end| end <= broken_at) && p.opcodes > 1)
        || (more_follows && broken_at >= (head.len() as u64 / 2).min(4096))
}

/// A pickle in memory: the fast slice analysis when it cannot hold joblib arrays, the
/// joblib-aware driver (and the plain `pickle.load` reading of it) when it may.
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
        if inert(data, &report) {
            return not_a_pickle(ctx, location);
        }
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
    if inert(data, &report) {
        return not_a_pickle(ctx, location);
    }
    let readable = data
        .get(..usize::try_from(analysis.end).unwrap_or(usize::MAX))
        .unwrap_or(data);
    check_native_state(readable, analysis.arrays > 0, &analysis.skips, &mut report);
    ctx.add_pickle(location, format.name(), report, Some((data, 0)), depth);
    format
}

/// Whether input that was taken for a pickle from its start alone (no PROTO 2+: it decoded for
/// 4 KiB, or ran out there claiming more) proved, read whole, to be data that merely began like
/// one: nothing imported, called, loaded or completed before its bytes broke (a read error is no
/// such break: what followed was never seen), and nothing else found.
/// `pickle.load` of it runs nothing. Binary data whose first byte is BINBYTES, BINUNICODE or
/// BINSTRING (about 1 in 85 random streams) claims a length that a stream of unknown size may
/// hold, and was reported as a broken pickle.
///
/// An import of a module whose name is no dotted Python name (`lass Foo:` from a text file
/// that begins `class Foo:`, `make_minimum_required(VERSION 3.10)` from a CMakeLists.txt) counts
/// as nothing imported: no module can have that name (only a file planted under it on the
/// module path, which needs code execution already), so `pickle.load` raises there.
fn inert(start: &[u8], report: &PickleReport) -> bool {
    let unimportable =
        |name: Option<&crate::findings::ImportName>| name.is_some_and(|n| !dotted_name(&n.module));
    !matches!(start, [0x80, 2..=5, ..])
        && !report.read_failed
        && report.imports.iter().all(|i| unimportable(i.target.as_ref()))
        && report.calls.is_empty()
        && report.persistent_ids.is_empty()
        && report.nested.is_empty()
        && report.records_dropped == 0
        && report.pickles.iter().all(|p| p.end.is_none())
        && report.findings.iter().all(|f| {
            f.kind == FindingKind::MalformedPickle
                || f.severity == Severity::Info
                || unimportable(f.import.as_ref())
        })
}

/// Whether `module` could name a module: dot-separated Python identifiers (non-ASCII letters
/// allowed, as Python allows them).
fn dotted_name(module: &str) -> bool {
    module.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    })
}

/// What [`inert`] input is reported as: the note of bytes no container recognises.
fn not_a_pickle(ctx: &mut Ctx<'_>, location: &str) -> Format {
    ctx.finding(
        location,
        FindingKind::NonPickleFormat,
        Severity::Info,
        0,
        "not a recognised model format: it begins like a pickle but, read whole, imports, calls or completes \
         nothing before it breaks"
            .into(),
    );
    Format::Unknown
}

/// A pickle member analysed whatever its content looks like (`*.pkl` in archives).
pub(crate) fn scan_named_pickle(ctx: &Ctx<'_>, data: &[u8]) -> crate::analyzer::PickleReport {
    let options = ctx.analysis(Mode::AllPickles);
    joblib::drive(Decoder::from_slice(data), ctx.policy, &options, true, None)
        .0
        .report
}

/// [`scan_named_pickle`] over a stream (a deflated member), read as it arrives.
pub(crate) fn stream_named_pickle(
    ctx: &Ctx<'_>,
    reader: impl std::io::Read,
) -> crate::analyzer::PickleReport {
    let options = ctx.analysis(Mode::AllPickles);
    joblib::drive(
        Decoder::from_reader(reader, options.limits.stream),
        ctx.policy,
        &options,
        true,
        None,
    )
    .0
    .report
}

/// Where the report notes a class the scanner checks inside pickles, reads the pickle's data
/// without running it (`skips`: the array bytes joblib reads between opcodes, from the analysis)
/// and checks the instances whose arrays are inside it
/// ([`crate::native_state::check_pickled`]): a broken one is a critical state violation; the
/// note says what the scanner checked and what it leaves to the guard.
fn check_native_state(data: &[u8], joblib: bool, skips: &[(u64, u64)], report: &mut PickleReport) {
    use crate::evaluate::GaveUp;
    use crate::native_state::{check_pickled, evaluate_as_read, load_time_check, PickledOutcome};

    let checkable = |f: &Finding| {
        f.kind == FindingKind::NativeState
            && f.import
                .as_ref()
                .is_some_and(|i| crate::native_state::checked_in_pickles(&i.module, &i.name))
    };
    if !report.findings.iter().any(checkable) {
        return;
    }
    let evaluator = evaluate_as_read(data, joblib, skips);
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
