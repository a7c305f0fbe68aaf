//! What `picklefence scan` found, path by path, and how the writers are to show it: the types
//! `scan` produces and the output formats (`text`, `json`, `sarif`) read. They live apart from
//! `scan` so that the dependency goes one way: scan -> writers -> results, never back.

use picklefence::ScanReport;

/// What became of one path.
#[derive(Debug)]
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
}

impl Counts {
    /// The counts of a run's results.
    pub fn of(results: &[FileResult]) -> Counts {
        let mut counts = Counts::default();
        for result in results {
            match &result.outcome {
                Outcome::Scanned(report) if report.is_safe() => counts.clean += 1,
                Outcome::Scanned(_) => counts.unsafe_ += 1,
                Outcome::Failed(_) => counts.errors += 1,
                Outcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
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
    /// The policy's name, as the reports give it.
    pub policy_name: String,
    /// The run's exit code, as the reports give it.
    pub exit_code: i32,
}
