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
    /// The file shrank while it was scanned through a memory map (another process truncated
    /// or rewrote it): what was read is not the file, so no report is given.
    #[error("{path}: {}", TRUNCATED)]
    Truncated {
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

/// What [`ScanError::Truncated`] says of its file (the command and the Python binding say it
/// without the path).
pub const TRUNCATED: &str = "the file was truncated while it was scanned; scan it again once it is written";

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

/// Scan a stream that cannot be mapped (standard input, a pipe, a character device), in
/// bounded memory: an input that ends within 16 MiB (`read_whole_up_to`) is read whole and scanned exactly as
/// [`scan_bytes`] scans it; a longer one is scanned as it streams (pickles, `.npy`, tar and
/// compressed streams as they are read, other containers held up to `max_buffered`), so an
/// input that never ends stops at the scan's byte budget (`max_decompressed`, shared with
/// decompression) with a limit finding instead of filling memory or running on. Read errors are
/// findings.
pub fn scan_reader<R: Read>(reader: R, policy: &Policy, options: &ScanOptions) -> ScanReport {
    let mut ctx = Ctx::new(policy, options, Format::Unknown);
    let mut reader = crate::formats::compress::BudgetedInput::new(reader, &ctx.budget);
    let mut head = Vec::new();
    let whole_up_to = options.read_whole_up_to;
    let read = (&mut reader).take(whole_up_to).read_to_end(&mut head);
    if read.is_ok() && (head.len() as u64) < whole_up_to {
        return scan_bytes(&head, policy, options);
    }
    let format = match read {
        Ok(_) => {
            // A zip appended to the end is found only where the end can be read back (a file
            // scanned by path): said, never silently skipped.
            ctx.finding(
                "",
                crate::findings::FindingKind::Container,
                crate::findings::Severity::Warning,
                whole_up_to,
                format!(
                    "a stream longer than {whole_up_to} bytes is scanned as it is read: an archive appended after \
                     its start (a pickle/zip polyglot) is not looked for; scan the file by path to check that"
                ),
            );
            let format = formats::scan_reader(&mut ctx, std::io::Cursor::new(head).chain(&mut reader), "", 0);
            if format == Format::Unknown {
                // Nothing recognised its start: the rest is read to its end or to the byte
                // budget, so that an input that never ends is reported as such.
                drain(&mut reader);
            }
            format
        }
        Err(e) => {
            let offset = head.len() as u64;
            ctx.finding(
                "",
                crate::findings::FindingKind::Container,
                crate::findings::Severity::High,
                offset,
                format!("the input cannot be read past offset {offset}: {e}; what it holds was not analysed"),
            );
            formats::scan_slice(&mut ctx, &head, "", 0)
        }
    };
    ctx.note_budget("");
    let mut report = ctx.report;
    report.format = format.name().to_string();
    report
}

/// Reads `reader` to its end (or its first error: a budgeted input's limit), discarding it.
fn drain(reader: &mut impl Read) {
    let mut buffer = vec![0; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return,
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => return,
            _ => {}
        }
    }
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
    with_file(path.as_ref(), |data, _| scan_bytes(data, policy, options))
}

/// Lets a reader of a mapped file give back the pages of the parts it is done with.
pub(crate) struct Pages<'w> {
    #[cfg(target_os = "linux")]
    watched: Option<&'w crate::mapped::Watched>,
    #[cfg(not(target_os = "linux"))]
    watched: std::marker::PhantomData<&'w ()>,
}

impl Pages<'_> {
    /// For bytes that are not a mapped file's: releasing does nothing.
    pub(crate) fn none() -> Self {
        Pages {
            #[cfg(target_os = "linux")]
            watched: None,
            #[cfg(not(target_os = "linux"))]
            watched: std::marker::PhantomData,
        }
    }

    /// Drops the whole pages of `part` from the resident set when it lies in the mapped file;
    /// a later read reads them again. Bytes held in memory are never touched.
    pub(crate) fn release(&self, part: &[u8]) {
        #[cfg(target_os = "linux")]
        if let Some(watched) = self.watched {
            watched.release(part);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = part;
    }
}

/// Runs `read` over the bytes of the file at `path`: read into memory when small, mapped
/// otherwise (`Pages` gives the pages of a mapped file back). A file truncated while `read`
/// runs is an error, whatever `read` returned.
pub(crate) fn with_file<T>(path: &Path, read: impl FnOnce(&[u8], &Pages<'_>) -> T) -> Result<T, ScanError> {
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
            return Ok(read(&data, &Pages::none()));
        }
    }
    let map = map_file(&file).map_err(|source| ScanError::Map {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(target_os = "linux")]
    let watched = crate::mapped::Watched::new(&map);
    let pages = Pages {
        #[cfg(target_os = "linux")]
        watched: Some(&watched),
        #[cfg(not(target_os = "linux"))]
        watched: std::marker::PhantomData,
    };
    let result = read(&map, &pages);
    #[cfg(target_os = "linux")]
    if watched.truncated() {
        return Err(ScanError::Truncated {
            path: path.to_path_buf(),
        });
    }
    Ok(result)
}

// Mapping is the one unsafe operation here. A file truncated by another process while the scan
// runs makes reads of the map past its new end raise SIGBUS; on Linux `mapped` turns those into
// reads of zeros and the scan into `ScanError::Truncated` (elsewhere the signal ends the process,
// as it would for any reader of a map).
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and lives only for the scan; see above for concurrent truncation.
    unsafe { memmap2::Mmap::map(file) }
}
