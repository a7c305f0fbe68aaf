//! The pre-scan: the first pickle of a `bytes` object or of a Python file object (read through
//! [`crate::read_ahead::FileSource`] or [`crate::file::PyReader`]), plain or the way joblib reads
//! it, summarised for the Python layer.

use picklefence::analyzer::run;
use picklefence::decoder::Decoder;
use picklefence::formats::joblib::analyze_joblib_slice;
use picklefence::{
    analyze_joblib_reader, analyze_slice, Arg, DecodeError, Detail, Finding, Limits, Mode, Opcode, Options,
    PickleReport,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::file::PyReader;
use crate::policy::Policy;
use crate::read_ahead::{ByRef, FileSource, CHUNK};

/// Inputs at least this long are analysed with the GIL released (below it the release costs more
/// than it frees).
const RELEASE_GIL_ABOVE: usize = 64 << 10;

/// One violation as the Python layer receives it:
/// `(kind, severity, offset, module, name, message, ext_code)`.
type Violation = (
    &'static str,
    &'static str,
    u64,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
);

/// What a pre-scan returns: `(consumed, protocol, violations)`; `protocol` is that of the first
/// pickle (`-1` if there was none).
type Prescan = (u64, i32, Vec<Violation>);

/// A file pre-scan: a [`Prescan`] and, in exact mode, the bytes read.
type FilePrescan = (u64, i32, Vec<Violation>, Option<Py<PyBytes>>);

fn ext_code_at(report: &PickleReport, finding: &Finding) -> Option<i64> {
    report
        .imports
        .iter()
        .find(|import| import.offset == finding.offset && import.ext_code.is_some())
        .and_then(|import| import.ext_code)
}

fn summarize(report: &PickleReport) -> Prescan {
    let violations = report
        .violations()
        .map(|finding| {
            let (module, name) = match &finding.import {
                Some(import) => (Some(import.module.to_string()), Some(import.name.to_string())),
                None => (None, None),
            };
            (
                finding.kind.as_str(),
                finding.severity.as_str(),
                finding.offset,
                module,
                name,
                finding.message.clone(),
                ext_code_at(report, finding),
            )
        })
        .collect();
    let protocol = report.pickles.first().map_or(-1, |p| i32::from(p.protocol));
    (report.consumed, protocol, violations)
}

/// `memo_inherited`: the unpickler loaded before and keeps its memo; `stream_remaining`: the
/// bytes from the pickle to the end of its stream, when known (see `Options`).
fn first_pickle_options(memo_inherited: bool, stream_remaining: Option<u64>) -> Options {
    Options {
        limits: Limits::default(),
        mode: Mode::FirstPickle,
        detail: Detail::Verdict,
        memo_inherited,
        stream_remaining,
    }
}

/// Pre-scan the first pickle of a `bytes` object (zero-copy; the GIL is released for large
/// inputs). Returns `(consumed, protocol, violations)`.
#[pyfunction]
#[pyo3(signature = (data, policy, memo_inherited=false, stream_remaining=None))]
pub(crate) fn prescan_bytes(
    py: Python<'_>,
    data: &Bound<'_, PyBytes>,
    policy: &Policy,
    memo_inherited: bool,
    stream_remaining: Option<u64>,
) -> Prescan {
    let bytes = data.as_bytes();
    let options = first_pickle_options(memo_inherited, stream_remaining);
    let core = policy.core();
    let report = if bytes.len() >= RELEASE_GIL_ABOVE {
        py.allow_threads(|| analyze_slice(bytes, core, &options))
    } else {
        analyze_slice(bytes, core, &options)
    };
    summarize(&report)
}

/// Pre-scan a joblib stream held in a `bytes` object (zero-copy; the GIL is released for large
/// inputs), the way `joblib.load` reads it. Returns `(consumed, protocol, violations)`.
#[pyfunction]
#[pyo3(signature = (data, policy, memo_inherited=false, stream_remaining=None))]
pub(crate) fn prescan_joblib_bytes(
    py: Python<'_>,
    data: &Bound<'_, PyBytes>,
    policy: &Policy,
    memo_inherited: bool,
    stream_remaining: Option<u64>,
) -> Prescan {
    let bytes = data.as_bytes();
    let options = first_pickle_options(memo_inherited, stream_remaining);
    let core = policy.core();
    let report = if bytes.len() >= RELEASE_GIL_ABOVE {
        py.allow_threads(|| analyze_joblib_slice(bytes, core, &options))
    } else {
        analyze_joblib_slice(bytes, core, &options)
    };
    summarize(&report)
}

/// A payload at least this long marks a pickle as payload-heavy (see [`prefix_kind`]).
const LARGE_PAYLOAD: u64 = 128 << 10;

/// How the pickle starting a file looks from its first bytes, to choose how to pre-scan it:
/// `2` it ends (STOP) within `prefix`; `0` it carries a large payload early on (array data:
/// read it in chunks and skip payloads by seeking); `1` it is opcode-dense (read it whole and
/// scan it as a buffer). Decodes only; nothing is judged here.
#[pyfunction]
pub(crate) fn prefix_kind(prefix: &Bound<'_, PyBytes>) -> u8 {
    let mut decoder = Decoder::from_slice(prefix.as_bytes());
    loop {
        match decoder.next_op() {
            Ok(Some(op)) => {
                let len = match &op.arg {
                    Arg::Long(p) | Arg::Str(p) | Arg::Bytes(p) | Arg::Unicode(p) | Arg::BadUnicode(p) => {
                        p.len
                    }
                    _ => 0,
                };
                if len >= LARGE_PAYLOAD {
                    return 0;
                }
                if op.opcode == Opcode::Stop {
                    return 2;
                }
            }
            Ok(None) => return 1,
            Err(DecodeError::Truncated { needed, .. }) if needed >= LARGE_PAYLOAD => return 0,
            Err(_) => return 1,
        }
    }
}

/// Pre-scan the first pickle of a file object.
///
/// With `start` (the file's current absolute position, the file being seekable), reads ahead
/// freely and skips long payloads by seeking; the caller must seek back to `start`. Without it,
/// reads exactly the bytes of the pickle (up to STOP, or the end of the frame holding it) and
/// returns them as the fourth item so that the caller can unpickle from a copy.
#[pyfunction]
#[pyo3(signature = (file, policy, start=None, memo_inherited=false, stream_remaining=None))]
pub(crate) fn prescan_file(
    py: Python<'_>,
    file: &Bound<'_, PyAny>,
    policy: &Policy,
    start: Option<u64>,
    memo_inherited: bool,
    stream_remaining: Option<u64>,
) -> PyResult<FilePrescan> {
    let mut source = FileSource::new(file, start)?;
    let exact = source.exact();
    let report = run(
        Decoder::new(ByRef(&mut source)),
        policy.core(),
        &first_pickle_options(memo_inherited, stream_remaining),
    );
    let bytes = source.into_result()?;
    let (consumed, protocol, violations) = summarize(&report);
    let copy = exact.then(|| PyBytes::new_bound(py, &bytes).unbind());
    Ok((consumed, protocol, violations, copy))
}

/// Pre-scan the pickle of a joblib file the way `joblib.load` reads it: the outer pickle up to
/// its STOP, with the raw array bytes joblib reads after each `NumpyArrayWrapper` skipped by
/// their declared size (and object arrays' nested pickles analysed). `file` yields the
/// decompressed stream (joblib's `NumpyUnpickler.file_handle`).
///
/// With `start` (seekable), reads ahead freely and the caller seeks back to `start`; without,
/// reads exactly the bytes joblib would read and returns them as the fourth item.
#[pyfunction]
#[pyo3(signature = (file, policy, start=None, memo_inherited=false, stream_remaining=None))]
pub(crate) fn prescan_joblib_file(
    py: Python<'_>,
    file: &Bound<'_, PyAny>,
    policy: &Policy,
    start: Option<u64>,
    memo_inherited: bool,
    stream_remaining: Option<u64>,
) -> PyResult<FilePrescan> {
    let exact = start.is_none();
    let mut reader = PyReader {
        read: file.getattr("read")?,
        copy: exact.then(Vec::new),
        error: None,
    };
    let options = first_pickle_options(memo_inherited, stream_remaining);
    let report = if exact {
        analyze_joblib_reader(&mut reader, policy.core(), &options)
    } else {
        analyze_joblib_reader(
            std::io::BufReader::with_capacity(CHUNK, &mut reader),
            policy.core(),
            &options,
        )
    };
    if let Some(error) = reader.error.take() {
        return Err(error);
    }
    let (consumed, protocol, violations) = summarize(&report);
    let copy = reader.copy.map(|bytes| PyBytes::new_bound(py, &bytes).unbind());
    Ok((consumed, protocol, violations, copy))
}
