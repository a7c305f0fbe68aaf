//! File-by-file scanning for engines that distribute the files themselves
//! (`picklefence.ray`): the command's listing, and a batch of files' records, each the object
//! `picklefence scan --format jsonl --show-imports` writes for the file plus its size, handed
//! over as columns (so that Python builds Arrow arrays from lists, not row dicts). The GIL is
//! released while the batch is scanned.

use std::path::PathBuf;

use picklefence_cli::records::{self, Listed};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::Value;

use crate::Policy;

/// Records as columns. A row: `path`, `size`, `format`, `verdict` (the record's `status`),
/// `error` (its `error`, or a skipped path's `reason`), `violations` (findings that are
/// violations), and the `findings` and `imports` lists, each given as offsets into flat
/// columns of the fields Python asked for.
struct Columns<'a> {
    path: Vec<Value>,
    size: Vec<Value>,
    format: Vec<Value>,
    verdict: Vec<Value>,
    error: Vec<Value>,
    violations: Vec<Value>,
    findings: Nested<'a>,
    imports: Nested<'a>,
}

/// A list column: row `i`'s items are `offsets[i]..offsets[i + 1]` of each field's values.
struct Nested<'a> {
    key: &'static str,
    offsets: Vec<usize>,
    fields: Vec<(&'a str, Vec<Value>)>,
}

impl<'a> Nested<'a> {
    fn new(key: &'static str, fields: &'a [String]) -> Self {
        Nested {
            key,
            offsets: vec![0],
            fields: fields.iter().map(|f| (f.as_str(), Vec::new())).collect(),
        }
    }

    fn push(&mut self, record: &Value) {
        let items = record.get(self.key).and_then(Value::as_array);
        for item in items.into_iter().flatten() {
            for (field, values) in &mut self.fields {
                values.push(item.get(*field).cloned().unwrap_or(Value::Null));
            }
        }
        let end = self.offsets.last().copied().unwrap_or(0) + items.map_or(0, Vec::len);
        self.offsets.push(end);
    }

    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<(Vec<usize>, Bound<'py, PyDict>)> {
        let fields = PyDict::new_bound(py);
        for (field, values) in &self.fields {
            fields.set_item(*field, values_list(py, values)?)?;
        }
        Ok((self.offsets.clone(), fields))
    }
}

impl<'a> Columns<'a> {
    fn new(finding_fields: &'a [String], import_fields: &'a [String]) -> Self {
        Columns {
            path: Vec::new(),
            size: Vec::new(),
            format: Vec::new(),
            verdict: Vec::new(),
            error: Vec::new(),
            violations: Vec::new(),
            findings: Nested::new("findings", finding_fields),
            imports: Nested::new("imports", import_fields),
        }
    }

    fn push(&mut self, record: &Value) {
        let field = |name: &str| record.get(name).cloned().unwrap_or(Value::Null);
        let status = field("status");
        let error = if status == "skipped" {
            field("reason")
        } else {
            field("error")
        };
        let violations = record
            .get("findings")
            .and_then(Value::as_array)
            .map_or(0, |findings| {
                findings
                    .iter()
                    .filter(|f| f.get("violation") == Some(&Value::Bool(true)))
                    .count()
            });
        self.path.push(field("path"));
        self.size.push(field("size"));
        self.format.push(field("format"));
        self.verdict.push(status);
        self.error.push(error);
        self.violations.push(Value::from(violations));
        self.findings.push(record);
        self.imports.push(record);
    }

    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new_bound(py);
        for (name, values) in [
            ("path", &self.path),
            ("size", &self.size),
            ("format", &self.format),
            ("verdict", &self.verdict),
            ("error", &self.error),
            ("violations", &self.violations),
        ] {
            out.set_item(name, values_list(py, values)?)?;
        }
        out.set_item("findings", self.findings.to_python(py)?)?;
        out.set_item("imports", self.imports.to_python(py)?)?;
        Ok(out)
    }
}

/// A Python list of JSON scalars (a nested value, which the record's fields never are, as its
/// JSON text).
fn values_list<'py>(py: Python<'py>, values: &[Value]) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<PyObject> = values
        .iter()
        .map(|value| match value {
            Value::Null => py.None(),
            Value::Bool(b) => b.into_py(py),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.into_py(py),
                (None, Some(u)) => u.into_py(py),
                _ => n.as_f64().unwrap_or(f64::NAN).into_py(py),
            },
            Value::String(s) => s.into_py(py),
            nested => nested.to_string().into_py(py),
        })
        .collect();
    Ok(PyList::new_bound(py, items))
}

fn columns<'py>(
    py: Python<'py>,
    records: &[Value],
    finding_fields: &[String],
    import_fields: &[String],
) -> PyResult<Bound<'py, PyDict>> {
    let mut columns = Columns::new(finding_fields, import_fields);
    for record in records {
        columns.push(record);
    }
    columns.to_python(py)
}

/// The files `picklefence scan PATHS` would scan, and the columns of the paths it would not
/// scan (their records, as the command reports them).
#[pyfunction]
pub(crate) fn list_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    follow_symlinks: bool,
    finding_fields: Vec<String>,
    import_fields: Vec<String>,
) -> PyResult<(Vec<String>, Bound<'py, PyDict>)> {
    let (files, unscanned) = py.allow_threads(|| {
        let mut files = Vec::new();
        let mut unscanned = Vec::new();
        for listed in records::list(&paths, follow_symlinks) {
            match listed {
                Listed::File(path) => files.push(path),
                Listed::Record(record) => unscanned.push(record),
            }
        }
        (files, unscanned)
    });
    Ok((files, columns(py, &unscanned, &finding_fields, &import_fields)?))
}

/// The columns of the files at `paths`, each scanned as the command scans it.
#[pyfunction]
pub(crate) fn scan_file_rows<'py>(
    py: Python<'py>,
    paths: Vec<String>,
    policy: &Policy,
    finding_fields: Vec<String>,
    import_fields: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let core = policy.core();
    let records: Vec<Value> = py.allow_threads(|| {
        paths
            .iter()
            .map(|path| records::scan_file_record(path, core))
            .collect()
    });
    columns(py, &records, &finding_fields, &import_fields)
}

/// The columns of contents read elsewhere, each named by the path beside it.
#[pyfunction]
pub(crate) fn scan_bytes_rows<'py>(
    py: Python<'py>,
    paths: Vec<String>,
    contents: Vec<Bound<'py, PyBytes>>,
    policy: &Policy,
    finding_fields: Vec<String>,
    import_fields: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    if paths.len() != contents.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{} paths for {} contents",
            paths.len(),
            contents.len()
        )));
    }
    let core = policy.core();
    let slices: Vec<&[u8]> = contents.iter().map(|content| content.as_bytes()).collect();
    let records: Vec<Value> = py.allow_threads(|| {
        paths
            .iter()
            .zip(&slices)
            .map(|(path, data)| records::scan_bytes_record(path, data, core))
            .collect()
    });
    columns(py, &records, &finding_fields, &import_fields)
}
