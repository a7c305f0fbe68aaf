//! Whole-input scanning: identify what the bytes are, analyse every pickle they hold, and
//! gather the findings with the place each was found at.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::analyzer::{Limits, PickleReport};
use crate::findings::Finding;
use crate::formats::{self, Ctx, Format};
use crate::policy::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation: the policy allows everything found.
    Clean,
    /// At least one violation.
    Unsafe,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Unsafe => "unsafe",
        }
    }
}

/// One analysed pickle stream and where it was found (`""` for the input itself,
/// `archive/data.pkl` for a member, nested members joined with `!`).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub location: String,
    /// How the stream was read (`pickle`, `joblib`, `pytorch-legacy`, `npy`, ...).
    pub format: String,
    pub report: PickleReport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocatedFinding {
    pub location: String,
    #[serde(flatten)]
    pub finding: Finding,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// What the input was identified as (by content), e.g. `pickle`, `pytorch-zip`.
    pub format: String,
    pub verdict: Verdict,
    pub entries: Vec<Entry>,
    /// Every finding: the container's own and each entry's.
    pub findings: Vec<LocatedFinding>,
}

impl ScanReport {
    pub fn new(format: impl Into<String>) -> Self {
        ScanReport {
            format: format.into(),
            verdict: Verdict::Clean,
            entries: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn add_finding(&mut self, location: impl Into<String>, finding: Finding) {
        if finding.is_violation() {
            self.verdict = Verdict::Unsafe;
        }
        self.findings.push(LocatedFinding {
            location: location.into(),
            finding,
        });
    }

    pub fn add_entry(&mut self, location: impl Into<String>, report: PickleReport) {
        self.add_entry_as(location, "pickle", report);
    }

    /// Adds an analysed stream read as `format`.
    pub fn add_entry_as(&mut self, location: impl Into<String>, format: &str, report: PickleReport) {
        let location = location.into();
        for finding in &report.findings {
            self.add_finding(location.clone(), finding.clone());
        }
        self.entries.push(Entry {
            location,
            format: format.to_string(),
            report,
        });
    }

    pub fn is_safe(&self) -> bool {
        self.verdict == Verdict::Clean
    }
}

/// Bounds for a whole scan. Hitting one is a `LimitExceeded` violation, never an abort.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    pub limits: Limits,
    /// How deep archives and compressed streams may nest.
    pub max_depth: usize,
    /// Bytes all decompression of one scan may produce together.
    pub max_decompressed: u64,
    /// Largest output/input ratio of a compressed stream, checked once it has produced
    /// `ratio_floor` bytes.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    /// Largest stream held in memory (a zip inside a compressed stream, a deflated pickle member).
    pub max_buffered: u64,
    /// Members read from one archive.
    pub max_members: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            limits: Limits::default(),
            max_depth: 8,
            max_decompressed: 16 << 30,
            max_ratio: 10_000,
            ratio_floor: 64 << 20,
            max_buffered: 1 << 30,
            max_members: 100_000,
        }
    }
}

/// Why a path could not be scanned at all (its content never produces one: that is a finding).
#[derive(Debug, Error)]
pub enum ScanError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: cannot map into memory: {source}")]
    Map { path: PathBuf, source: std::io::Error },
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

/// A pickle an input holds, with the bytes it was analysed from ([`walk_bytes`]).
#[derive(Debug, Clone)]
pub struct PickleStream {
    /// Where it was found, as the scan's report names it.
    pub location: String,
    /// How it was read (`pickle`, `joblib`, `pytorch-legacy`, `npy`, ...).
    pub format: String,
    /// The bytes the report's offsets point into (a member's, a decompressed stream's, the
    /// input's).
    pub data: Vec<u8>,
    /// Where the pickle starts in `data` (after a `.npy` header; 0 otherwise).
    pub start: u64,
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
