//! What a scan produces and the bounds it runs under: the report (verdict, entries, located
//! findings), the options, and the pickles a walk keeps. Its own module so that the scan entry
//! points (`scan`) and the container readers (`formats`) both use it without depending on each
//! other.

use serde::Serialize;

use crate::analyzer::{Limits, PickleReport};
use crate::findings::Finding;

/// Whether a scan found anything the policy does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation: the policy allows everything found.
    Clean,
    /// At least one violation.
    Unsafe,
}

impl Verdict {
    /// `clean` or `unsafe`, as reports spell it.
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
    /// Where the stream was found.
    pub location: String,
    /// How the stream was read (`pickle`, `joblib`, `pytorch-legacy`, `npy`, ...).
    pub format: String,
    /// What the analysis of the stream found.
    pub report: PickleReport,
}

/// A finding and the place (as [`Entry::location`] names it) it was found at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocatedFinding {
    /// Where it was found.
    pub location: String,
    /// The finding itself.
    #[serde(flatten)]
    pub finding: Finding,
}

/// Everything one scan found.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// What the input was identified as (by content), e.g. `pickle`, `pytorch-zip`.
    pub format: String,
    /// Unsafe when any finding is a violation.
    pub verdict: Verdict,
    /// The pickle streams analysed.
    pub entries: Vec<Entry>,
    /// Every finding: the container's own and each entry's.
    pub findings: Vec<LocatedFinding>,
}

impl ScanReport {
    /// An empty, clean report for an input identified as `format`.
    pub fn new(format: impl Into<String>) -> Self {
        ScanReport {
            format: format.into(),
            verdict: Verdict::Clean,
            entries: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Adds a finding; a violation makes the verdict unsafe.
    pub fn add_finding(&mut self, location: impl Into<String>, finding: Finding) {
        if finding.is_violation() {
            self.verdict = Verdict::Unsafe;
        }
        self.findings.push(LocatedFinding {
            location: location.into(),
            finding,
        });
    }

    /// Adds an analysed stream read as a plain pickle.
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

    /// Whether the verdict is clean.
    pub fn is_safe(&self) -> bool {
        self.verdict == Verdict::Clean
    }
}

/// Bounds for a whole scan. Hitting one is a `LimitExceeded` violation, never an abort.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Bounds for the analysis of each pickle.
    pub limits: Limits,
    /// How deep archives and compressed streams may nest.
    pub max_depth: usize,
    /// Bytes all decompression of one scan may produce together.
    pub max_decompressed: u64,
    /// Largest output/input ratio of a compressed stream, checked once it has produced
    /// `ratio_floor` bytes. The default, 2,000:1, is above what deflate (1,032:1 at most) and
    /// lz4 (255:1) can reach, so those stop at `max_decompressed`; xz, zstd and bzip2 expand
    /// zeros 6,500:1 and more, and xz decodes such data at 0.2-0.3 GB/s (Python's own reader
    /// too), so a small xz file claiming 16 GiB would otherwise hold a scan for over a minute.
    pub max_ratio: u64,
    /// Output a compressed stream may produce before its ratio is checked.
    pub ratio_floor: u64,
    /// Largest stream held in memory: a container not read as it streams (a zip that is itself
    /// a stream, inside a compressed stream or piped in: zip readers start from its end), and
    /// every stream of a walk ([`crate::walk_bytes`] keeps the pickles' bytes).
    pub max_buffered: u64,
    /// Members read from one archive.
    pub max_members: usize,
    /// An input read from a stream ([`crate::scan_reader`]) that ends within this many bytes is
    /// read whole and scanned as bytes; a longer one is scanned as it streams.
    pub read_whole_up_to: u64,
    /// Bytes of a stream (decompressed data, a deflated member) read to tell what it is; a
    /// stream that ends within them is scanned as bytes.
    pub stream_prefix: usize,
    /// A pickle in a stream (a compressed joblib file) that ends within this many bytes is held
    /// and scanned as bytes, so that the native-state checks read its arrays; a longer one is
    /// scanned as it streams, and the guard's checks at load time are noted instead.
    pub hold_pickles_up_to: u64,
    /// A zip that is itself a stream and ends within this many bytes is held and read from its
    /// central directory, as a file is; a longer one is read member after member as streaming
    /// readers read it, and its directory checked against them.
    pub zip_stream_held: u64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            limits: Limits::default(),
            max_depth: 8,
            max_decompressed: 16 << 30,
            max_ratio: 2_000,
            ratio_floor: 64 << 20,
            max_buffered: 1 << 30,
            max_members: 100_000,
            read_whole_up_to: 16 << 20,
            stream_prefix: 64 << 10,
            hold_pickles_up_to: 8 << 20,
            zip_stream_held: 32 << 20,
        }
    }
}

/// A pickle an input holds, with the bytes it was analysed from ([`crate::walk_bytes`]).
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
