//! Whole-input scanning: identify what the bytes are, analyse every pickle they hold, and
//! gather the findings with the place each was found at.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::formats::{self, Ctx, Format};
use crate::policy::Policy;
// The report types live in `report` (the container readers use them too); they stay public here.
pub use crate::report::{Entry, LocatedFinding, PickleStream, ScanOptions, ScanReport, Verdict};

/// Why a path could not be scanned at all (its content never produces one: that is a finding).
#[derive(Debug, Error)]
pub enum ScanError {
    /// The file could not be opened, or its metadata read.
    #[error("{path}: cannot open: {source}")]
    Open {
        /// The path given to [`scan_path`].
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading a small file into memory failed.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The path given to [`scan_path`].
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, a device, ...).
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path given to [`scan_path`].
        path: PathBuf,
    },
    /// Memory-mapping a large file failed.
    #[error("{path}: cannot map into memory: {source}")]
    Map {
        /// The path given to [`scan_path`].
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Scan bytes of any supported kind, identified by content.
pub fn scan_bytes(data: &[u8], policy: &Policy, options: &ScanOptions) -> ScanReport {
    run(data, policy, options, false).0
}

/// One scan of bytes; `keep`: the pickles found are returned with their bytes.
fn run(data: &[u8], policy: &Policy, options: &ScanOptions, keep: bool) -> (ScanReport, Vec<PickleStream>) {
    let mut ctx = Ctx::new(policy, options, Format::Unknown);
    if keep {
        ctx.kept = Some(Vec::new());
    }
    let format = formats::scan_slice(&mut ctx, data, "", 0);
    let kept = ctx.kept.take().unwrap_or_default();
    let mut report = ctx.report;
    report.format = format.name().to_string();
    (report, kept)
}

/// The pickles of an input exactly as [`scan_bytes`] finds them (same containers, members,
/// limits and locations: it is the same scan), each with its bytes, and the scan's report.
/// Compressed streams are read into memory here (up to `max_buffered` each) instead of
/// streamed, so that their pickles have bytes to return. For tools that show what a scan
/// read (`picklefence disasm`).
pub fn walk_bytes(data: &[u8], policy: &Policy, options: &ScanOptions) -> (ScanReport, Vec<PickleStream>) {
    run(data, policy, options, true)
}

/// Files up to this size are read; larger ones are mapped. For a small file, mapping costs more
/// system time (map, page faults, unmap) than copying it.
const READ_UP_TO: u64 = 256 << 10;

/// Scan one file. A large one is memory-mapped: only the pickles and headers in it are read, so
/// the cost does not grow with the tensor and array data it carries.
pub fn scan_path(
    path: impl AsRef<Path>,
    policy: &Policy,
    options: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| ScanError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let metadata = file.metadata().map_err(|source| ScanError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(ScanError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if metadata.len() <= READ_UP_TO {
        let mut data = Vec::new();
        (&file)
            .take(READ_UP_TO + 1)
            .read_to_end(&mut data)
            .map_err(|source| ScanError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        // A file that grew past the bound meanwhile is mapped like any large one.
        if data.len() as u64 <= READ_UP_TO {
            return Ok(scan_bytes(&data, policy, options));
        }
    }
    let map = map_file(&file).map_err(|source| ScanError::Map {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(scan_bytes(&map, policy, options))
}

// Mapping is the one unsafe operation here: the mapped file must not be truncated by another
// process while the scan runs (the scanner then sees SIGBUS, as any mmap reader would).
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and lives only for the scan; see above for concurrent truncation.
    unsafe { memmap2::Mmap::map(file) }
}
