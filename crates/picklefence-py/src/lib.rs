//! `picklefence._native`: the thin PyO3 layer between the picklefence core and the Python package.
//!
//! Everything here is mechanical: wrap the core's `Policy`, run the analyzer over a `bytes`
//! object (zero-copy, GIL released) or over a Python file object (through [`FileSource`]), and
//! hand back plain tuples and JSON. The decisions (what to do with a report, how to patch
//! `pickle`) live in the Python package.

// PyO3 0.22's `#[pyfunction]`/`#[pymethods]` expansion converts `PyResult` errors into `PyErr`,
// which newer clippy flags at the function signature.
#![allow(clippy::useless_conversion)]

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use picklefence::analyzer::run;
use picklefence::decoder::{Decoder, Source, SourceError, StreamLimits};
use picklefence::formats::joblib::analyze_joblib_slice;
use picklefence::{
    analyze_joblib_reader, analyze_slice, Arg, DecodeError, Detail, Finding, Limits, Mode, Opcode, Options,
    PickleReport, Policy as CorePolicy, PolicyError as CorePolicyError,
};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

mod scan;
mod walk;

/// Inputs at least this long are analysed with the GIL released (below it the release costs more
/// than it frees).
const RELEASE_GIL_ABOVE: usize = 64 << 10;

/// Raises `picklefence.errors.<class_name>(message)`; falls back to `fallback` if the package's
/// error module cannot be imported (the native module used on its own).
fn package_error(py: Python<'_>, class_name: &str, message: String) -> PyErr {
    match py
        .import_bound("picklefence.errors")
        .and_then(|module| module.getattr(class_name))
    {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value_bound(instance),
            Err(err) => err,
        },
        Err(_) => pyo3::exceptions::PyValueError::new_err(message),
    }
}

fn policy_error(py: Python<'_>, error: &CorePolicyError) -> PyErr {
    package_error(py, "PolicyError", error.to_string())
}

/// An import allowlist: which `(module, qualified name)` pairs a pickle may import.
///
/// Immutable: `with_allowed` returns a new policy and never changes this one (or the default).
#[pyclass(name = "Policy", module = "picklefence", frozen)]
#[derive(Clone)]
pub struct Policy {
    inner: Arc<CorePolicy>,
}

impl Policy {
    fn wrap(policy: CorePolicy) -> Self {
        Policy {
            inner: Arc::new(policy),
        }
    }

    pub(crate) fn core(&self) -> &CorePolicy {
        &self.inner
    }
}

#[pymethods]
impl Policy {
    /// The default policy (the ML allowlist).
    #[new]
    fn py_new() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// The default policy (the ML allowlist).
    #[staticmethod]
    #[pyo3(name = "default")]
    fn py_default() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// The ML allowlist: plain data types, NumPy, PyTorch, scikit-learn, pandas, SciPy sparse.
    #[staticmethod]
    fn ml_default() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// A policy that allows no import at all (plain data only).
    #[staticmethod]
    fn empty() -> Self {
        Policy::wrap(CorePolicy::empty())
    }

    /// A curated named policy (see `named_policies()`).
    #[staticmethod]
    fn named(py: Python<'_>, name: &str) -> PyResult<Self> {
        CorePolicy::named(name)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// The names `named()` accepts.
    #[staticmethod]
    fn named_policies() -> Vec<String> {
        CorePolicy::named_policies()
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// A policy from the text of a TOML policy file.
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Self> {
        CorePolicy::from_toml_str(text)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A policy from a TOML policy file.
    #[staticmethod]
    fn from_toml_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PyOSError::new_err(format!("cannot read policy file {}: {e}", path.display())))?;
        CorePolicy::from_toml_str(&text)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A new policy that also allows `entries` ("module.name", split at the last dot, or
    /// "module:qual.name"; "=ROLE" after it gives the role, otherwise the entry is trusted: any
    /// use). A malformed entry, or a name that reaches code, files, processes, the network,
    /// imports, attribute lookup or nested unpickling without `allow_dangerous=True`, raises
    /// `PolicyError` (a `ValueError`) naming it.
    #[pyo3(signature = (entries, *, allow_dangerous = false))]
    fn with_allowed(&self, py: Python<'_>, entries: Vec<String>, allow_dangerous: bool) -> PyResult<Self> {
        self.inner
            .extend(entries, allow_dangerous)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A new policy that also allows these `copyreg` extension codes.
    fn with_allowed_ext_codes(&self, codes: Vec<u32>) -> Self {
        Policy::wrap(self.inner.with_allowed_ext_codes(codes))
    }

    /// Whether the policy allows importing `name` from `module` (exact match).
    fn is_allowed(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> bool {
        self.inner.is_allowed(&module, &name)
    }

    /// Whether the name is allowed where only names are seen (an unpickler that was not
    /// pre-scanned): names allowed only as verified calls (`builtins.getattr`...) are not.
    fn is_allowed_by_name(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> bool {
        self.inner.is_allowed_by_name(&module, &name)
    }

    /// The roles of an allowed name, as policy-file lines (`["reconstruct"]`,
    /// `["call(str<=64) -> value"]`), or None when it is not allowed.
    fn roles(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> Option<Vec<String>> {
        self.inner.roles(&module, &name).map(|roles| roles.lines())
    }

    /// Every allowed name with its roles (policy-file lines) and, for a call, the reviewed
    /// reason it is safe: `(module, name, roles, reason)`, sorted.
    fn entries_with_roles(&self) -> Vec<(String, String, Vec<String>, Option<String>)> {
        self.inner
            .entries_with_roles()
            .into_iter()
            .map(|(module, name, roles)| {
                let reason = roles.call.as_ref().map(|c| c.reason.clone());
                (module, name, roles.lines(), reason)
            })
            .collect()
    }

    /// Whether the policy allows the `copyreg` extension code `code`.
    fn is_ext_code_allowed(&self, code: u32) -> bool {
        self.inner.is_ext_code_allowed(code)
    }

    /// Every allowed `(module, name)` pair.
    fn entries(&self) -> Vec<(String, String)> {
        self.inner.entries()
    }

    /// The policy's name (`"ml-default"`, a named policy's name, or a derived name).
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    fn __len__(&self) -> usize {
        self.inner.entries().len()
    }

    fn __contains__(&self, entry: Cow<'_, str>) -> bool {
        match entry.rfind('.') {
            Some(dot) => self.inner.is_allowed(&entry[..dot], &entry[dot + 1..]),
            None => false,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<picklefence.Policy {:?} ({} entries)>",
            self.inner.name(),
            self.inner.entries().len()
        )
    }
}

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
fn prescan_bytes(
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
fn prescan_joblib_bytes(
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

/// Checks the node records of scikit-learn trees laid end to end in `nodes` (see
/// `picklefence::native_state::check_tree_nodes`). Returns None, or `(tree, node, field, value,
/// why)` for the first broken node.
#[pyfunction]
#[pyo3(signature = (nodes, itemsize, left, right, feature, trees))]
fn check_tree_nodes(
    nodes: &Bound<'_, PyBytes>,
    itemsize: usize,
    left: usize,
    right: usize,
    feature: usize,
    trees: Vec<(u64, i64)>,
) -> Option<BrokenNode> {
    let layout = picklefence::native_state::NodeLayout {
        itemsize,
        left,
        right,
        feature,
    };
    picklefence::native_state::check_tree_nodes(nodes.as_bytes(), layout, &trees)
        .err()
        .map(|e| (e.tree, e.node, e.field, e.value, e.why))
}

/// The first broken node of a batch of trees: `(tree, node, field, value, why)`.
type BrokenNode = (usize, u64, &'static str, i64, &'static str);

/// `check_predictor_nodes(records, itemsize, fields, shapes, predictors, bitset_rows)`: the node
/// records of HistGradientBoosting `TreePredictor`s laid end to end in `records` (see
/// `picklefence::native_state::check_predictor_nodes`). `fields`: `(offset, numpy type string)`
/// of `left`, `right`, `feature_idx`, `is_leaf`, `is_categorical`, `bitset_idx`; `shapes`:
/// `(nodes, n_features)` per predictor; `bitset_rows(predictor)`: called only for a predictor
/// with a categorical split, which is then checked again with them. Returns None or
/// `(predictor, node, field, value, why)` for the first broken node. ValueError for a field
/// that is not a little-endian integer.
#[pyfunction]
fn check_predictor_nodes(
    records: &Bound<'_, PyBytes>,
    itemsize: usize,
    fields: [(usize, String); 6],
    shapes: Vec<(u64, i64)>,
    predictors: Vec<Bound<'_, PyAny>>,
    bitset_rows: &Bound<'_, PyAny>,
) -> PyResult<Option<BrokenNode>> {
    use picklefence::native_state::{check_predictor_nodes, IntField, PredictorLayout, PredictorShape};
    let [left, right, feature, is_leaf, is_categorical, bitset_idx] = fields.map(|(offset, code)| {
        IntField::from_numpy(offset, &code).ok_or_else(|| {
            PyValueError::new_err(format!(
                "a node field of type {code:?} is not a little-endian integer"
            ))
        })
    });
    let layout = PredictorLayout {
        itemsize,
        left: left?,
        right: right?,
        feature: feature?,
        is_leaf: is_leaf?,
        is_categorical: is_categorical?,
        bitset_idx: bitset_idx?,
    };
    if predictors.len() != shapes.len() {
        return Err(PyValueError::new_err("one shape per predictor"));
    }
    let mut shapes: Vec<PredictorShape> = shapes
        .into_iter()
        .map(|(nodes, n_features)| PredictorShape {
            nodes,
            n_features,
            // No rows until a categorical split asks for them (then they are read).
            bitset_rows: 0,
        })
        .collect();
    let records = records.as_bytes();
    // Checked from `first` on; a predictor that needs its bitset rows is checked again with them.
    let (mut first, mut offset) = (0, 0);
    loop {
        let rest = records.get(offset..).unwrap_or_default();
        let batch = shapes.get(first..).unwrap_or_default();
        let Err(e) = check_predictor_nodes(rest, layout, batch) else {
            return Ok(None);
        };
        let which = first + e.tree;
        let broken = Some((which, e.node, e.field, e.value, e.why));
        let (Some(shape), Some(predictor)) = (shapes.get_mut(which), predictors.get(which)) else {
            return Ok(broken);
        };
        if e.field != "bitset_idx" || shape.bitset_rows != 0 {
            return Ok(broken);
        }
        shape.bitset_rows = bitset_rows.call1((predictor,))?.extract()?;
        if shape.bitset_rows == 0 {
            return Ok(broken);
        }
        let before: u64 = shapes
            .get(first..which)
            .unwrap_or_default()
            .iter()
            .map(|s| s.nodes)
            .sum();
        offset = offset.saturating_add(
            usize::try_from(before)
                .unwrap_or(usize::MAX)
                .saturating_mul(itemsize),
        );
        first = which;
    }
}

/// `predictor_feature_counts(predictors, models)`: for each predictor, the feature count of
/// the model that holds it (`models`: `(model._predictors, n_features_in_)`, a list of lists of
/// predictors each), `2**63 - 1` for a predictor no model holds. Matched by identity in Rust:
/// a dict of `id()`s cost more than checking the predictors (it made HistGradientBoosting's
/// validation miss its 2% target).
#[pyfunction]
fn predictor_feature_counts(
    predictors: Vec<Bound<'_, PyAny>>,
    models: Vec<(Bound<'_, PyAny>, i64)>,
) -> PyResult<Vec<i64>> {
    let mut features = std::collections::HashMap::new();
    // Held until the lookups are done, so that no address is reused meanwhile.
    let mut held = Vec::new();
    for (stages, count) in &models {
        for stage in stages.iter()? {
            for predictor in stage?.iter()? {
                let predictor = predictor?;
                features.insert(predictor.as_ptr(), *count);
                held.push(predictor);
            }
        }
    }
    Ok(predictors
        .iter()
        .map(|p| features.get(&p.as_ptr()).copied().unwrap_or(i64::MAX))
        .collect())
}

/// Every compiled class of the policy data and what is done about its state:
/// `(module, name, "validate" | "safe", what is checked or why nothing is)`.
#[pyfunction]
fn native_state_classes() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    use picklefence::native_state::{entries, Verdict};
    entries()
        .iter()
        .map(|e| {
            let verdict = match e.verdict {
                Verdict::Validate => "validate",
                Verdict::Safe => "safe",
            };
            (e.module, e.name, verdict, e.reason)
        })
        .collect()
}

/// A payload at least this long marks a pickle as payload-heavy (see [`prefix_kind`]).
const LARGE_PAYLOAD: u64 = 128 << 10;

/// How the pickle starting a file looks from its first bytes, to choose how to pre-scan it:
/// `2` it ends (STOP) within `prefix`; `0` it carries a large payload early on (array data:
/// read it in chunks and skip payloads by seeking); `1` it is opcode-dense (read it whole and
/// scan it as a buffer). Decodes only; nothing is judged here.
#[pyfunction]
fn prefix_kind(prefix: &Bound<'_, PyBytes>) -> u8 {
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

/// Bytes read ahead from a seekable file per call to its `read`: the first read after the
/// start or a seek asks for `FIRST_CHUNK`, each later one for twice as much, up to `CHUNK`. The
/// opcodes around a large payload (an array's header) are small: a large first read would
/// mostly read payload bytes that are then skipped.
const FIRST_CHUNK: usize = 16 << 10;
const CHUNK: usize = 256 << 10;
/// A skipped payload longer than this is skipped by seeking (seekable files).
const SEEK_OVER: u64 = 1 << 20;
/// A frame up to this long is read in one call (non-seekable files), as CPython does.
const MAX_FRAME_PREFETCH: u64 = 64 << 20;
/// Longest line argument read; CPython itself has no limit.
const MAX_LINE: usize = 1 << 30;
const FRAME_OPCODE: u8 = 0x95;

/// A decoder source over a Python file object.
///
/// Seekable mode (`seek` is set): reads ahead in large chunks and skips long payloads by
/// seeking; the caller seeks back to where it started. Exact mode: asks the file only for the
/// bytes the opcodes need (a whole frame at once, as CPython does), keeps every byte read, and
/// so leaves the file exactly where CPython's unpickler would leave it.
struct FileSource<'py> {
    read: Bound<'py, PyAny>,
    readline: Option<Bound<'py, PyAny>>,
    seek: Option<Bound<'py, PyAny>>,
    /// Absolute file position of logical offset 0 (seekable mode).
    start: u64,
    buf: Vec<u8>,
    head: usize,
    pos: u64,
    eof: bool,
    frame_pending: bool,
    /// How much the next read ahead asks for (seekable mode).
    read_ahead: usize,
    error: Option<PyErr>,
}

impl<'py> FileSource<'py> {
    fn new(file: &Bound<'py, PyAny>, start: Option<u64>) -> PyResult<Self> {
        let read = file.getattr("read")?;
        let seek = match start {
            Some(_) => Some(file.getattr("seek")?),
            None => None,
        };
        let readline = if start.is_none() {
            file.getattr("readline").ok()
        } else {
            None
        };
        Ok(FileSource {
            read,
            readline,
            seek,
            start: start.unwrap_or(0),
            buf: Vec::new(),
            head: 0,
            pos: 0,
            eof: false,
            frame_pending: false,
            read_ahead: FIRST_CHUNK,
            error: None,
        })
    }

    fn exact(&self) -> bool {
        self.seek.is_none()
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.head
    }

    fn fail(&mut self, error: PyErr) -> SourceError {
        let message = error.to_string();
        if self.error.is_none() {
            self.error = Some(error);
        }
        SourceError::Io(message)
    }

    /// Appends what a call to `method(arg)` returned; the number of bytes appended.
    fn append_call(&mut self, method: &Bound<'py, PyAny>, arg: Option<usize>) -> Result<usize, SourceError> {
        let result = match arg {
            Some(n) => method.call1((n,)),
            None => method.call0(),
        };
        let chunk = match result {
            Ok(chunk) => chunk,
            Err(error) => return Err(self.fail(error)),
        };
        let before = self.buf.len();
        if let Ok(bytes) = chunk.downcast::<PyBytes>() {
            self.buf.extend_from_slice(bytes.as_bytes());
        } else if let Ok(array) = chunk.downcast::<PyByteArray>() {
            self.buf.extend_from_slice(&array.to_vec());
        } else if chunk.is_none() {
            // A non-blocking stream with nothing ready; CPython treats it as the end too.
        } else {
            let what = chunk
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            return Err(self.fail(PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{what}'"
            ))));
        }
        Ok(self.buf.len() - before)
    }

    fn compact(&mut self) {
        if !self.exact() && self.head > 0 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    /// Makes at least `n` unread bytes available if the file has them; returns how many are.
    fn ensure(&mut self, n: usize) -> Result<usize, SourceError> {
        while self.avail() < n && !self.eof {
            self.compact();
            let missing = n - self.avail();
            let want = if self.exact() {
                missing
            } else {
                missing.max(self.next_read_ahead())
            };
            let read = self.read.clone();
            if self.append_call(&read, Some(want))? == 0 {
                self.eof = true;
            }
        }
        Ok(self.avail().min(n))
    }

    fn next_read_ahead(&mut self) -> usize {
        let want = self.read_ahead;
        self.read_ahead = (want * 2).min(CHUNK);
        want
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        self.pos += n as u64;
    }

    fn seek_to(&mut self, absolute: u64) -> Result<(), SourceError> {
        let Some(seek) = self.seek.clone() else {
            return Ok(());
        };
        match seek.call1((absolute,)) {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn file_size(&mut self) -> Result<u64, SourceError> {
        let Some(seek) = self.seek.clone() else {
            return Ok(0);
        };
        match seek.call1((0, 2)).and_then(|end| end.extract::<u64>()) {
            Ok(size) => Ok(size),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Index (relative to `head`) of the next newline, reading more until there is one.
    fn find_newline(&mut self, from: usize) -> Result<usize, SourceError> {
        let mut searched = from;
        loop {
            if let Some(i) = self
                .buf
                .get(self.head + searched..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            {
                return Ok(searched + i);
            }
            searched = self.avail();
            if searched > MAX_LINE {
                return Err(SourceError::LineTooLong {
                    limit: MAX_LINE as u64,
                });
            }
            if self.eof {
                return Err(SourceError::NoNewline);
            }
            let got = match self.readline.clone() {
                Some(readline) if self.exact() => self.append_call(&readline, None)?,
                _ => {
                    self.compact();
                    let want = if self.exact() { 1 } else { self.next_read_ahead() };
                    let read = self.read.clone();
                    self.append_call(&read, Some(want))?
                }
            };
            if got == 0 {
                self.eof = true;
            }
        }
    }

    fn into_result(self) -> PyResult<Vec<u8>> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.buf),
        }
    }
}

impl Source for FileSource<'_> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn next_byte(&mut self) -> Result<Option<u8>, SourceError> {
        let byte = match self.buf.get(self.head) {
            Some(&byte) => Some(byte),
            None => {
                if self.ensure(1)? == 0 {
                    return Ok(None);
                }
                self.buf.get(self.head).copied()
            }
        };
        self.consume(1);
        // The decoder asks for single bytes only to read opcodes.
        self.frame_pending = byte == Some(FRAME_OPCODE);
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        if std::mem::take(&mut self.frame_pending) && n == 8 && self.exact() && self.ensure(8)? == 8 {
            let len = self.buf.get(self.head..self.head + 8).map_or(0, |b| {
                b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
            });
            if len <= MAX_FRAME_PREFETCH {
                // CPython reads the whole frame before running any of it.
                self.ensure(8 + len as usize)?;
            }
        }
        let got = if self.avail() >= n { n } else { self.ensure(n)? };
        if got < n {
            let available = got as u64;
            self.consume(got);
            return Err(SourceError::Short { available });
        }
        let start = self.head;
        self.consume(n);
        Ok(Cow::Borrowed(self.buf.get(start..start + n).unwrap_or_default()))
    }

    fn take_line(&mut self) -> Result<&[u8], SourceError> {
        let end = self.find_newline(0)?;
        let start = self.head;
        self.consume(end + 1);
        Ok(self.buf.get(start..start + end).unwrap_or_default())
    }

    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError> {
        let first = self.find_newline(0)?;
        let second = self.find_newline(first + 1)?;
        let start = self.head;
        self.consume(second + 1);
        let a = self.buf.get(start..start + first).unwrap_or_default();
        let b = self
            .buf
            .get(start + first + 1..start + second)
            .unwrap_or_default();
        Ok((a, b))
    }

    fn keeps(&self, n: u64) -> bool {
        n <= StreamLimits::default().keep_payload as u64
    }

    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        let mut left = n;
        loop {
            let here = usize::try_from(left).unwrap_or(usize::MAX).min(self.avail());
            if here > 0 {
                if let Some(chunk) = self.buf.get(self.head..self.head + here) {
                    inspect(chunk);
                }
                self.consume(here);
                left -= here as u64;
            }
            if left == 0 {
                return Ok(());
            }
            if !self.exact() && left > SEEK_OVER {
                // Skip by seeking; reading the last byte proves the file holds the payload.
                let target = self.start + self.pos + left;
                self.buf.clear();
                self.head = 0;
                self.read_ahead = FIRST_CHUNK;
                self.seek_to(target - 1)?;
                let read = self.read.clone();
                if self.append_call(&read, Some(1))? == 1 {
                    self.buf.clear();
                    self.pos += left;
                    return Ok(());
                }
                self.eof = true;
                let size = self.file_size()?;
                let available = size.saturating_sub(self.start + self.pos);
                return Err(SourceError::Short {
                    available: n - left + available.min(left),
                });
            }
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            if self.ensure(want)? == 0 {
                return Err(SourceError::Short { available: n - left });
            }
        }
    }

    fn remaining(&self) -> Option<u64> {
        None
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
fn prescan_file(
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

/// A `std::io::Read` over a Python file object (for the core's reader-based analyses). Keeps
/// every byte read when `copy` is set; a Python exception is kept to be re-raised.
struct PyReader<'py> {
    read: Bound<'py, PyAny>,
    copy: Option<Vec<u8>>,
    error: Option<PyErr>,
}

impl std::io::Read for PyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let fail = |this: &mut Self, error: PyErr| {
            let message = error.to_string();
            if this.error.is_none() {
                this.error = Some(error);
            }
            std::io::Error::other(message)
        };
        let chunk = match self.read.call1((buf.len(),)) {
            Ok(chunk) => chunk,
            Err(error) => return Err(fail(self, error)),
        };
        let got: Vec<u8> = if let Ok(bytes) = chunk.downcast::<PyBytes>() {
            bytes.as_bytes().to_vec()
        } else if let Ok(array) = chunk.downcast::<PyByteArray>() {
            array.to_vec()
        } else if chunk.is_none() {
            Vec::new()
        } else {
            return Err(fail(
                self,
                PyTypeError::new_err("a bytes-like object is required"),
            ));
        };
        let Some(target) = buf.get_mut(..got.len()) else {
            return Err(fail(
                self,
                PyValueError::new_err(format!(
                    "read() returned {} bytes, more than the {} asked for",
                    got.len(),
                    buf.len()
                )),
            ));
        };
        target.copy_from_slice(&got);
        if let Some(copy) = self.copy.as_mut() {
            copy.extend_from_slice(&got);
        }
        Ok(got.len())
    }
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
fn prescan_joblib_file(
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

/// Lends a [`FileSource`] to a decoder, so that it can be taken back after the analysis.
struct ByRef<'a, 'py>(&'a mut FileSource<'py>);

impl Source for ByRef<'_, '_> {
    fn position(&self) -> u64 {
        self.0.position()
    }
    fn next_byte(&mut self) -> Result<Option<u8>, SourceError> {
        self.0.next_byte()
    }
    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        self.0.take(n)
    }
    fn take_line(&mut self) -> Result<&[u8], SourceError> {
        self.0.take_line()
    }
    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError> {
        self.0.take_line_pair()
    }
    fn keeps(&self, n: u64) -> bool {
        self.0.keeps(n)
    }
    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        self.0.skip(n, inspect)
    }
    fn remaining(&self) -> Option<u64> {
        self.0.remaining()
    }
}

/// `danger_reason(module, name)`: why importing `module.name` is known to be dangerous, if it is.
#[pyfunction]
fn danger_reason(module: Cow<'_, str>, name: Cow<'_, str>) -> Option<&'static str> {
    picklefence::danger_reason(&module, &name)
}

/// Panics inside Rust, so that tests can check that a panic reaches Python as
/// `PanicException` and that the package fails closed on it.
#[pyfunction]
#[allow(clippy::panic)]
fn _panic_for_tests(message: &str) {
    panic!("{message}");
}

/// Runs the `picklefence` command with `argv` (without the program name); its exit code.
#[cfg(feature = "cli")]
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let mut args = vec!["picklefence".to_string()];
    args.extend(argv);
    py.allow_threads(|| picklefence_cli::run(args))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()?;
    m.add_class::<walk::NativeStateWalker>()?;
    m.add_function(wrap_pyfunction!(prescan_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(prescan_file, m)?)?;
    m.add_function(wrap_pyfunction!(prescan_joblib_file, m)?)?;
    m.add_function(wrap_pyfunction!(prescan_joblib_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(prefix_kind, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan_file, m)?)?;
    m.add_function(wrap_pyfunction!(danger_reason, m)?)?;
    m.add_function(wrap_pyfunction!(check_tree_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(check_predictor_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(predictor_feature_counts, m)?)?;
    m.add_function(wrap_pyfunction!(native_state_classes, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    #[cfg(feature = "cli")]
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("PanicException", m.py().get_type_bound::<PanicException>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
