//! Whole-input scans for `picklefence.scan_bytes` / `picklefence.scan_file`: the core's
//! `ScanReport` as JSON, the same data the `picklefence scan --format json` command prints.
//!
//! Both go straight to the core's `scan_bytes` / `scan_path` (content sniffing, every container
//! format the core knows; files are memory-mapped, so only their pickles and headers are read).

use std::path::{Path, PathBuf};

use picklefence::{Policy as CorePolicy, ScanError, ScanOptions, ScanReport};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::Policy;

fn scan_slice(data: &[u8], policy: &CorePolicy) -> ScanReport {
    picklefence::scan_bytes(data, policy, &ScanOptions::default())
}

fn scan_path(path: &Path, policy: &CorePolicy) -> Result<ScanReport, ScanError> {
    picklefence::scan_path(path, policy, &ScanOptions::default())
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
        Err(
            ScanError::Open { source, .. } | ScanError::Read { source, .. } | ScanError::Map { source, .. },
        ) => Err(PyOSError::new_err((
            source.raw_os_error().unwrap_or(0),
            source.to_string(),
            path.display().to_string(),
        ))),
        Err(ScanError::Truncated { .. }) => Err(PyOSError::new_err((
            5, // EIO: what was read is not the file
            picklefence::scan::TRUNCATED,
            path.display().to_string(),
        ))),
        Err(error @ ScanError::NotAFile { .. }) => Err(PyOSError::new_err((
            21, // EISDIR and the like: not something scan_file can read
            error.to_string(),
            path.display().to_string(),
        ))),
    }
}
