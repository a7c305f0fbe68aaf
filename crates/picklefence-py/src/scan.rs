//! Whole-input scans for `picklefence.scan_bytes` / `picklefence.scan_file`: the core's
//! `ScanReport` as JSON, the same data the `picklefence scan --format json` command prints.
//!
//! SWITCH-OVER POINT: [`scan_path`] is the one place that decides how a file is scanned. The
//! core has `scan_bytes` (content sniffing, every container format it knows) but no
//! `scan_path` yet, so files are read whole and handed to `scan_bytes`; once the core offers a
//! path-based scan (reading only the pickle members of large archives), call it here.

use std::path::{Path, PathBuf};

use picklefence::{Policy as CorePolicy, ScanOptions, ScanReport};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::Policy;

fn scan_slice(data: &[u8], policy: &CorePolicy) -> ScanReport {
    picklefence::scan_bytes(data, policy, &ScanOptions::default())
}

fn scan_path(path: &Path, policy: &CorePolicy) -> std::io::Result<ScanReport> {
    let data = std::fs::read(path)?;
    Ok(scan_slice(&data, policy))
}

fn to_json(report: &ScanReport) -> PyResult<String> {
    serde_json::to_string(report)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot serialise the scan report: {e}")))
}

/// Scan a bytes object; the report as JSON text.
#[pyfunction]
pub(crate) fn scan_bytes(py: Python<'_>, data: &Bound<'_, PyBytes>, policy: &Policy) -> PyResult<String> {
    let bytes = data.as_bytes();
    let core = policy.core();
    let report = py.allow_threads(|| scan_slice(bytes, core));
    to_json(&report)
}

/// Scan a file by path; the report as JSON text.
#[pyfunction]
pub(crate) fn scan_file(py: Python<'_>, path: PathBuf, policy: &Policy) -> PyResult<String> {
    let core = policy.core();
    match py.allow_threads(|| scan_path(&path, core)) {
        Ok(report) => to_json(&report),
        Err(e) => Err(PyOSError::new_err((
            e.raw_os_error().unwrap_or(0),
            e.to_string(),
            path.display().to_string(),
        ))),
    }
}
