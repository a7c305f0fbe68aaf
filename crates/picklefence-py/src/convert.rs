//! `picklefence.convert`: the core's checkpoint conversion, GIL released. The result (or the
//! refusing scan report) as JSON; other failures raise.

use std::path::PathBuf;

use picklefence::convert::{convert_path, ConvertError};
use picklefence::{ScanError, ScanOptions};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use crate::{package_error, Policy};

/// Converts the checkpoint at `input` to the safetensors file `output`. Returns JSON:
/// `{"converted": {...}}`, or `{"unsafe": <scan report>}` when the scan refuses the file.
#[pyfunction]
pub(crate) fn convert_file(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    policy: &Policy,
) -> PyResult<String> {
    let core = policy.core();
    let result = py.allow_threads(|| convert_path(&input, &output, core, &ScanOptions::default()));
    let json = match result {
        Ok(converted) => serde_json::to_string(&serde_json::json!({ "converted": converted })),
        Err(ConvertError::Unsafe(report)) => serde_json::to_string(&serde_json::json!({ "unsafe": report })),
        Err(ConvertError::Input(error)) => {
            let (errno, source) = match &error {
                ScanError::Open { source, .. }
                | ScanError::Read { source, .. }
                | ScanError::Map { source, .. } => (source.raw_os_error().unwrap_or(0), source.to_string()),
                ScanError::Truncated { .. } => (5, picklefence::scan::TRUNCATED.to_string()),
                ScanError::NotAFile { .. } => (21, error.to_string()),
            };
            return Err(PyOSError::new_err((errno, source, input.display().to_string())));
        }
        Err(error) => {
            return Err(package_error(
                py,
                "ConvertError",
                format!("{}: not converted: {error}", input.display()),
            ))
        }
    };
    json.map_err(|e| PyRuntimeError::new_err(format!("cannot serialise the conversion result: {e}")))
}
