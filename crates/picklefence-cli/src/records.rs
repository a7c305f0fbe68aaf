//! One file's scan as a record: the object `scan --format jsonl` writes for it (imports
//! included) and the file's size, for callers that list and scan files themselves and collect
//! the records (the Python package's `picklefence.ray`). Listing and scanning are the command's
//! own (`walk`, `scan`), so a record and the command's object for the same file agree.

use std::path::{Path, PathBuf};

use picklefence::{scan_bytes, Policy, ScanOptions};
use serde_json::{json, Value};

use crate::results::{FileResult, Outcome, RenderOptions};
use crate::walk::{self, Found, Source};
use crate::{json, scan};

/// One path of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// A file to scan, named as the command would name it.
    File(String),
    /// A path that is not scanned (unreadable, a link not followed, ...): its finished record.
    Record(Value),
}

/// Every file `picklefence scan PATHS` would scan, in its order (directories walked, links
/// judged the same way); the paths it would not scan come with their records.
pub fn list(paths: &[PathBuf], follow_symlinks: bool) -> Vec<Listed> {
    walk::collect(paths, follow_symlinks)
        .into_iter()
        .map(|found| match found {
            Found::Scan {
                display,
                source: Source::File(_),
            } => Listed::File(display),
            Found::Scan {
                display,
                source: Source::Stdin,
            } => unscanned(
                display,
                Outcome::Failed("standard input is not a file to list".into()),
            ),
            Found::Failed { display, error } => unscanned(display, Outcome::Failed(error)),
            Found::Skipped {
                display,
                reason,
                unverified,
            } => unscanned(display, Outcome::Skipped { reason, unverified }),
        })
        .collect()
}

/// The record of the file at `path`, scanned as `picklefence scan` scans it.
pub fn scan_file_record(path: &str, policy: &Policy) -> Value {
    let file = Path::new(path);
    let meta = std::fs::metadata(file).ok();
    let outcome = if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
        // The command walks a directory; a record is one file's.
        Outcome::Failed("is a directory: list it first".into())
    } else {
        match scan::scan_file(file, policy, &ScanOptions::default()) {
            Ok(report) => Outcome::Scanned(report),
            Err(error) => Outcome::Failed(error),
        }
    };
    let size = meta.map(|meta| meta.len());
    let result = FileResult {
        display: path.to_string(),
        outcome,
        origin: None,
    };
    render(&result, size)
}

/// The record of a file's content read by someone else (`path` names it in the record).
pub fn scan_bytes_record(path: &str, data: &[u8], policy: &Policy) -> Value {
    let result = FileResult {
        display: path.to_string(),
        outcome: Outcome::Scanned(scan_bytes(data, policy, &ScanOptions::default())),
        origin: None,
    };
    render(&result, Some(data.len() as u64))
}

fn unscanned(display: String, outcome: Outcome) -> Listed {
    let record = render(
        &FileResult {
            display,
            outcome,
            origin: None,
        },
        None,
    );
    Listed::Record(record)
}

fn render(result: &FileResult, size: Option<u64>) -> Value {
    let options = RenderOptions {
        quiet: false,
        show_imports: true,
        verbose: true,
        policy_name: String::new(),
        exit_code: crate::EXIT_CLEAN,
    };
    let mut object = json::file_json(result, &options);
    if let Value::Object(map) = &mut object {
        map.insert("size".into(), json!(size));
    }
    object
}
