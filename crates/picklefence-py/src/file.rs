//! A `std::io::Read` over a Python file object.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// A `std::io::Read` over a Python file object (for the core's reader-based analyses). Keeps
/// every byte read when `copy` is set; a Python exception is kept to be re-raised.
pub(crate) struct PyReader<'py> {
    pub(crate) read: Bound<'py, PyAny>,
    pub(crate) copy: Option<Vec<u8>>,
    pub(crate) error: Option<PyErr>,
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
