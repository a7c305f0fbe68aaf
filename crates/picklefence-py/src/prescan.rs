//! The pre-scan: the first pickle of a `bytes` object or of a Python file object (read through
//! [`PyFile`], by the read-ahead engine or the core's reader), plain or the way joblib reads it.
//! Results are [`Prescan`] objects with named fields; nothing is passed as text to be parsed.

use std::io::BufReader;

use picklefence::analyzer::run;
use picklefence::decoder::Decoder;
use picklefence::formats::joblib::analyze_joblib_slice;
use picklefence::{
    analyze_joblib_reader, analyze_slice, Arg, DecodeError, Detail, FindingKind, Limits, Mode, Opcode,
    Options, PickleReport,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::file::PyFile;
use crate::policy::Policy;
use crate::read_ahead::{ReadAhead, CHUNK};

/// Inputs at least this long are analysed with the GIL released (below it the release costs more
/// than it frees).
const RELEASE_GIL_ABOVE: usize = 64 << 10;

/// What a pre-scan's violations mean for the load.
#[pyclass(module = "picklefence._native", name = "PrescanVerdict", eq, eq_int)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No violation.
    #[pyo3(name = "CLEAN")]
    Clean,
    /// Only `malformed-pickle` violations: a truncated or broken stream whose opcodes before the
    /// break are all allowed (CPython raises its own error there).
    #[pyo3(name = "MALFORMED")]
    Malformed,
    /// joblib: the pre-scan stopped at `stopped_at`, where joblib reads array data whose layout
    /// it cannot recover; what it analysed before was allowed (or only `malformed-pickle`).
    #[pyo3(name = "INCOMPLETE")]
    Incomplete,
    /// Any other violation: the pickle is refused.
    #[pyo3(name = "REFUSED")]
    Refused,
}

/// How a pickle looks from its first bytes ([`prefix_kind`]).
#[pyclass(module = "picklefence._native", name = "PrefixKind", eq, eq_int)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrefixKind {
    /// It carries a large payload early on (array data): read it in chunks, skip payloads by
    /// seeking.
    #[pyo3(name = "PAYLOAD_HEAVY")]
    PayloadHeavy,
    /// Opcode-dense: read it whole and scan it as a buffer.
    #[pyo3(name = "OPCODE_DENSE")]
    OpcodeDense,
    /// It ends (STOP) within the prefix.
    #[pyo3(name = "ENDS")]
    Ends,
}

/// One violation of a pre-scan (a core `Finding` with its import and EXT code).
#[pyclass(module = "picklefence._native", name = "Finding", frozen, get_all)]
pub(crate) struct Finding {
    /// `dangerous-import`, `role-violation`, `malformed-pickle`, ... (the core's kinds).
    kind: &'static str,
    /// `high` or `critical`.
    severity: &'static str,
    /// Byte offset in the stream.
    offset: u64,
    module: Option<String>,
    name: Option<String>,
    message: String,
    /// The `copyreg` extension code the import was made by, if it was (EXT1/2/4).
    ext_code: Option<i64>,
}

/// What a pre-scan found.
#[pyclass(module = "picklefence._native", name = "Prescan", frozen)]
pub(crate) struct Prescan {
    /// What the violations mean for the load.
    #[pyo3(get)]
    verdict: Verdict,
    /// Bytes read: just past the STOP of the first pickle (or where reading stopped).
    #[pyo3(get)]
    consumed: u64,
    /// The first pickle's protocol (None when there was no pickle).
    #[pyo3(get)]
    protocol: Option<u8>,
    /// joblib: the offset where the pre-scan stopped, at array data it cannot follow.
    #[pyo3(get)]
    stopped_at: Option<u64>,
    violations: Py<PyTuple>,
    copy: Option<Py<PyBytes>>,
}

#[pymethods]
impl Prescan {
    /// Every violation (`Finding`s), in stream order.
    #[getter]
    fn violations(&self, py: Python<'_>) -> Py<PyTuple> {
        self.violations.clone_ref(py)
    }

    /// Exact-mode file pre-scans: the bytes read (the pickle, exactly as far as the unpickler
    /// reads it), to unpickle from.
    #[getter]
    fn copy(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.copy.as_ref().map(|copy| copy.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<picklefence._native.Prescan {:?}, {} violation(s), consumed {}>",
            self.verdict,
            self.violations.bind(py).len(),
            self.consumed
        )
    }
}

impl Prescan {
    fn new(py: Python<'_>, report: &PickleReport, joblib: bool, copy: Option<Vec<u8>>) -> PyResult<Self> {
        // The joblib pre-scan stops at array data it cannot follow with a `container` finding
        // at the BUILD's end, which is where its reading stopped: no other finding of a
        // first-pickle analysis lies at the end of what was read (each is at an opcode read).
        let stops = |f: &picklefence::Finding| {
            joblib && f.kind == FindingKind::Container && f.offset == report.consumed
        };
        let stopped_at = report.violations().find(|f| stops(f)).map(|f| f.offset);
        let mut malformed_only = true;
        let mut findings = Vec::new();
        for finding in report.violations() {
            malformed_only &= finding.kind == FindingKind::MalformedPickle || stops(finding);
            let (module, name) = match &finding.import {
                Some(import) => (Some(import.module.to_string()), Some(import.name.to_string())),
                None => (None, None),
            };
            let ext_code = report
                .imports
                .iter()
                .find(|import| import.offset == finding.offset && import.ext_code.is_some())
                .and_then(|import| import.ext_code);
            let finding = Finding {
                kind: finding.kind.as_str(),
                severity: finding.severity.as_str(),
                offset: finding.offset,
                module,
                name,
                message: finding.message.clone(),
                ext_code,
            };
            findings.push(Py::new(py, finding)?);
        }
        let verdict = match (findings.is_empty(), malformed_only, stopped_at) {
            (true, _, _) => Verdict::Clean,
            (false, false, _) => Verdict::Refused,
            (false, true, Some(_)) => Verdict::Incomplete,
            (false, true, None) => Verdict::Malformed,
        };
        Ok(Prescan {
            verdict,
            consumed: report.consumed,
            protocol: report.pickles.first().map(|p| p.protocol),
            stopped_at,
            violations: PyTuple::new_bound(py, findings).unbind(),
            copy: copy.map(|bytes| PyBytes::new_bound(py, &bytes).unbind()),
        })
    }
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

/// Pre-scan the first pickle of `source`: a `bytes` object (zero-copy; the GIL is released for
/// large inputs) or a file object, read from its current position.
///
/// `joblib`: read it the way `joblib.load` does: the outer pickle up to its STOP, with the raw
/// array bytes joblib reads after each `NumpyArrayWrapper` skipped by their declared size (and
/// object arrays' nested pickles analysed); a file then yields the decompressed stream
/// (joblib's `NumpyUnpickler.file_handle`).
///
/// A file with `start` (its current absolute position, the file being seekable) is read ahead
/// freely, long payloads skipped by seeking; the caller must seek back to `start`. Without it,
/// exactly the bytes of the pickle are read (up to STOP, or the end of the frame holding it;
/// for joblib, the bytes joblib would read) and returned as `copy`, so that the caller can
/// unpickle from them.
#[pyfunction]
#[pyo3(signature = (source, policy, joblib=false, start=None, memo_inherited=false, stream_remaining=None))]
pub(crate) fn prescan(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    policy: &Policy,
    joblib: bool,
    start: Option<u64>,
    memo_inherited: bool,
    stream_remaining: Option<u64>,
) -> PyResult<Prescan> {
    let options = first_pickle_options(memo_inherited, stream_remaining);
    let core = policy.core();
    if let Ok(data) = source.downcast::<PyBytes>() {
        let bytes = data.as_bytes();
        let analyze = || {
            if joblib {
                analyze_joblib_slice(bytes, core, &options)
            } else {
                analyze_slice(bytes, core, &options)
            }
        };
        let report = if bytes.len() >= RELEASE_GIL_ABOVE {
            py.allow_threads(analyze)
        } else {
            analyze()
        };
        return Prescan::new(py, &report, joblib, None);
    }
    let mut file = PyFile::new(source, start.is_some())?;
    let report = match (joblib, start) {
        (false, _) => run(
            Decoder::new(ReadAhead::new(&mut file, start.unwrap_or(0))),
            core,
            &options,
        ),
        (true, None) => analyze_joblib_reader(&mut file, core, &options),
        (true, Some(_)) => analyze_joblib_reader(BufReader::with_capacity(CHUNK, &mut file), core, &options),
    };
    let copy = file.finish()?;
    Prescan::new(py, &report, joblib, copy)
}

/// A payload at least this long marks a pickle as payload-heavy (see [`prefix_kind`]).
const LARGE_PAYLOAD: u64 = 128 << 10;

/// How the pickle starting a file looks from its first bytes, to choose how to pre-scan it.
/// Decodes only; nothing is judged here.
#[pyfunction]
pub(crate) fn prefix_kind(prefix: &Bound<'_, PyBytes>) -> PrefixKind {
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
                    return PrefixKind::PayloadHeavy;
                }
                if op.opcode == Opcode::Stop {
                    return PrefixKind::Ends;
                }
            }
            Ok(None) => return PrefixKind::OpcodeDense,
            Err(DecodeError::Truncated { needed, .. }) if needed >= LARGE_PAYLOAD => {
                return PrefixKind::PayloadHeavy
            }
            Err(_) => return PrefixKind::OpcodeDense,
        }
    }
}
