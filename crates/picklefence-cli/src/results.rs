//! What `picklefence scan` found, path by path, and how the writers are to show it: the types
//! `scan` produces and the output formats (`text`, `json`, `sarif`) read. They live apart from
//! `scan` so that the dependency goes one way: scan -> writers -> results, never back.

use picklefence::ScanReport;

/// What became of one path.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Scanned: the report.
    Scanned(ScanReport),
    /// Could not be read or scanned: why.
    Failed(String),
    /// Not scanned (not a file, a symlink not followed...): why, and whether that leaves the
    /// run unverified.
    Skipped { reason: String, unverified: bool },
}

/// One path and what became of it.
#[derive(Debug)]
pub struct FileResult {
    /// The path as the user would recognise it (`-` for standard input).
    pub display: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Where it sits in the Hugging Face cache (`scan --hf-cache`).
    pub origin: Option<crate::hf::HfFile>,
}

/// How many paths ended which way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Scanned and safe.
    pub clean: usize,
    /// Scanned and unsafe.
    pub unsafe_: usize,
    /// Could not be read or scanned.
    pub errors: usize,
    /// Not scanned.
    pub skipped: usize,
    /// Not scanned, and so not verified (a symlink out of the tree, ...).
    pub unverified: usize,
}

impl Counts {
    /// Counts one more result.
    pub fn add(&mut self, result: &FileResult) {
        match &result.outcome {
            Outcome::Scanned(report) if report.is_safe() => self.clean += 1,
            Outcome::Scanned(_) => self.unsafe_ += 1,
            Outcome::Failed(_) => self.errors += 1,
            Outcome::Skipped { unverified, .. } => {
                self.skipped += 1;
                self.unverified += usize::from(*unverified);
            }
        }
    }

    /// 1 if anything is unsafe; else 2 if anything could not be verified; else 0.
    pub fn exit_code(&self) -> i32 {
        if self.unsafe_ > 0 {
            crate::EXIT_UNSAFE
        } else if self.errors > 0 || self.unverified > 0 {
            crate::EXIT_ERROR
        } else {
            crate::EXIT_CLEAN
        }
    }

    /// Paths scanned, safe or not.
    pub fn scanned(&self) -> usize {
        self.clean + self.unsafe_
    }
}

/// Options the renderers need.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// `--quiet`: text lists only unsafe files, errors and skipped paths, without a summary.
    pub quiet: bool,
    /// `--show-imports`: list every import each file makes, allowed or not.
    pub show_imports: bool,
    /// `--verbose`: text shows `info` findings too (persistent ids, notes on what was checked).
    pub verbose: bool,
    /// The policy's name, as the reports give it.
    pub policy_name: String,
    /// The run's exit code, as the reports give it.
    pub exit_code: i32,
}
