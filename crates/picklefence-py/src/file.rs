//! [`PyFile`]: the one `std::io::Read + Seek` adapter over a Python file object.
//!
//! The core's reader-based analyses take it as `&mut PyFile` (std's `impl Read for &mut R`), and
//! so does the read-ahead engine ([`crate::read_ahead::ReadAhead`]): after the analysis the
//! caller still holds it, with the bytes read (exact mode) and the Python exception to re-raise.

use std::io::{self, Read, Seek, SeekFrom};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// A Python file object read through its `read` (and, in exact mode, `readline`) and `seek`.
///
/// Seekable mode: `seek` is used, nothing is kept. Exact mode (a file that cannot be read twice):
/// never seeks, keeps every byte the file returned (the caller unpickles from that copy).
///
/// A call may return more than asked for: CPython's unpickler takes the extra bytes as the
/// next ones of the stream, and so does this adapter (the read-ahead engine appends them; a
/// `Read::read` serves them on the next calls). `None` (a non-blocking stream with nothing
/// ready) reads as the end, as in CPython. The first Python exception is kept to be re-raised
/// ([`PyFile::finish`]); the analysis sees an I/O error with its text.
pub(crate) struct PyFile<'py> {
    read: Bound<'py, PyAny>,
    readline: Option<Bound<'py, PyAny>>,
    seek: Option<Bound<'py, PyAny>>,
    /// Every byte the file returned (exact mode).
    copy: Option<Vec<u8>>,
    /// Bytes a call returned beyond what a `Read::read` asked for, served first by the next.
    pending: Vec<u8>,
    error: Option<PyErr>,
}

impl<'py> PyFile<'py> {
    /// `seekable`: the file's position can be set back after the analysis (the caller does).
    pub(crate) fn new(file: &Bound<'py, PyAny>, seekable: bool) -> PyResult<Self> {
        Ok(PyFile {
            read: file.getattr("read")?,
            readline: if seekable {
                None
            } else {
                file.getattr("readline").ok()
            },
            seek: if seekable {
                Some(file.getattr("seek")?)
            } else {
                None
            },
            copy: (!seekable).then(Vec::new),
            pending: Vec::new(),
            error: None,
        })
    }

    /// Exact mode: the file is read exactly as far as the unpickler would read it.
    pub(crate) fn exact(&self) -> bool {
        self.seek.is_none()
    }

    /// Whether [`PyFile::read_line_into`] calls the file's own `readline`.
    pub(crate) fn has_readline(&self) -> bool {
        self.readline.is_some()
    }

    /// Appends what one call to `read(n)` returned (all of it) to `out`; how many bytes.
    pub(crate) fn read_into(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let got = self.pending.len();
            out.append(&mut self.pending);
            return Ok(got);
        }
        let read = self.read.clone();
        self.call_into(&read, Some(n), out)
    }

    /// Appends what one call to `readline()` returned to `out` (falls back to `read(1)` for a
    /// file without `readline`); how many bytes.
    pub(crate) fn read_line_into(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let got = self.pending.len();
            out.append(&mut self.pending);
            return Ok(got);
        }
        match self.readline.clone() {
            Some(readline) => self.call_into(&readline, None, out),
            None => self.read_into(1, out),
        }
    }

    fn call_into(
        &mut self,
        method: &Bound<'py, PyAny>,
        arg: Option<usize>,
        out: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let result = match arg {
            Some(n) => method.call1((n,)),
            None => method.call0(),
        };
        let chunk = result.map_err(|error| self.fail(error))?;
        let before = out.len();
        if let Ok(bytes) = chunk.downcast::<PyBytes>() {
            out.extend_from_slice(bytes.as_bytes());
        } else if let Ok(array) = chunk.downcast::<PyByteArray>() {
            out.extend_from_slice(&array.to_vec());
        } else if !chunk.is_none() {
            let what = chunk
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            return Err(self.fail(PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{what}'"
            ))));
        }
        let got = out.get(before..).unwrap_or_default();
        if let Some(copy) = self.copy.as_mut() {
            copy.extend_from_slice(got);
        }
        Ok(got.len())
    }

    fn fail(&mut self, error: PyErr) -> io::Error {
        let message = error.to_string();
        if self.error.is_none() {
            self.error = Some(error);
        }
        io::Error::other(message)
    }

    /// The Python exception a call raised, or the bytes read (exact mode).
    pub(crate) fn finish(self) -> PyResult<Option<Vec<u8>>> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.copy),
        }
    }
}

impl Read for PyFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            let mut chunk = std::mem::take(&mut self.pending);
            let read = self.read.clone();
            self.call_into(&read, Some(buf.len()), &mut chunk)?;
            self.pending = chunk;
        }
        let n = self.pending.len().min(buf.len());
        if let (Some(target), Some(source)) = (buf.get_mut(..n), self.pending.get(..n)) {
            target.copy_from_slice(source);
        }
        self.pending.drain(..n);
        Ok(n)
    }
}

impl Seek for PyFile<'_> {
    /// `seek(offset, whence)`; the position it returns (for an absolute seek, the target when it
    /// returns none). Pending bytes are dropped.
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pending.clear();
        let Some(seek) = self.seek.clone() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the file is read without seeking",
            ));
        };
        let result = match pos {
            SeekFrom::Start(n) => seek.call1((n,)),
            SeekFrom::End(delta) => seek.call1((delta, 2)),
            SeekFrom::Current(delta) => seek.call1((delta, 1)),
        };
        let returned = result.map_err(|error| self.fail(error))?;
        match (returned.extract::<u64>(), pos) {
            (Ok(position), _) => Ok(position),
            (Err(_), SeekFrom::Start(n)) => Ok(n),
            (Err(error), _) => Err(self.fail(error)),
        }
    }
}
