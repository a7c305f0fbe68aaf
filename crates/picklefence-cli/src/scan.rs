//! `picklefence scan`: collect the files, scan them in parallel, report, and pick the exit code.
//!
//! The results it hands the writers (`text`, `json`, `sarif`) are in [`crate::results`], so
//! the writers depend on those types and never on this module.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use picklefence::{scan_path, scan_reader, Policy, ScanError, ScanOptions, ScanReport};
use rayon::prelude::*;

use crate::cli::{ScanArgs, ScanFormat};
use crate::hf::{self, HfFile};
use crate::results::{Counts, FileResult, Outcome, RenderOptions};
use crate::walk::{self, Found, Source};
use crate::{finish, json, policy_cmd, sarif, text, usage_error, Io, EXIT_CLEAN};

/// Paths scanned in parallel at a time. Results are handed on batch by batch, in order, so a
/// scan of many files holds the reports of one batch, not of every file.
const BATCH: usize = 1024;

/// Where results go as they are made.
enum Sink {
    /// Written at once.
    Text,
    /// Each file's object, written at once (the document's summary and exit code follow them);
    /// `files`: how many were written.
    Json { files: usize },
    /// Each file's object on a line, written at once.
    Jsonl,
    /// Each file's results, written at once (the invocation follows them).
    Sarif(sarif::SarifWriter),
}

pub fn run(args: &ScanArgs, io: &mut Io<'_>) -> i32 {
    let policy = match policy_cmd::load(&args.policy) {
        Ok(policy) => policy,
        Err(message) => return usage_error(io, &message),
    };
    if args.jobs == Some(0) {
        return usage_error(io, "--jobs must be at least 1");
    }
    // Own pool: honours --jobs, and gives deep directory walks room on the stack.
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .stack_size(8 << 20)
        .build()
    {
        Ok(pool) => pool,
        Err(e) => return usage_error(io, &format!("cannot start the worker threads: {e}")),
    };
    let progress = io.interactive && args.format == ScanFormat::Text && !args.quiet && !args.no_progress;
    let mut options = RenderOptions {
        quiet: args.quiet,
        show_imports: args.show_imports,
        verbose: args.verbose,
        policy_name: policy.name().to_string(),
        exit_code: EXIT_CLEAN,
    };
    let mut sink = match args.format {
        ScanFormat::Text => Sink::Text,
        ScanFormat::Json => Sink::Json { files: 0 },
        ScanFormat::Jsonl => Sink::Jsonl,
        ScanFormat::Sarif => Sink::Sarif(sarif::SarifWriter::new()),
    };
    let jobs = match jobs(args, &pool) {
        Ok(jobs) => jobs,
        Err(message) => return usage_error(io, &message),
    };
    let mut counts = Counts::default();
    let mut written = match &mut sink {
        Sink::Json { .. } => json::write_head(io.out, &options),
        Sink::Sarif(writer) => writer.write_head(io.out, &options),
        _ => Ok(()),
    };
    scan_all(jobs, &policy, progress, &pool, |result| {
        counts.add(&result);
        match &mut sink {
            Sink::Text => {
                if written.is_ok() {
                    written = text::write_file(io.out, &result, &options);
                }
            }
            Sink::Json { files } => {
                if written.is_ok() {
                    written = json::write_file(io.out, &result, &options, *files == 0);
                }
                *files += 1;
            }
            Sink::Jsonl => {
                if written.is_ok() {
                    written = json::write_line(io.out, &result, &options);
                }
            }
            Sink::Sarif(writer) => {
                if written.is_ok() {
                    written = writer.write_file(io.out, &result);
                }
            }
        }
    });
    let code = counts.exit_code();
    options.exit_code = code;
    let written = written.and_then(|()| match sink {
        Sink::Text => text::write_summary(io.out, &counts, &options),
        Sink::Json { files } => json::write_tail(io.out, &counts, &options, files > 0),
        Sink::Jsonl => Ok(()),
        Sink::Sarif(writer) => writer.finish(io.out, &options),
    });
    finish(code, written, io)
}

/// One input to scan and the files it is (a blob of the Hugging Face cache is the content of
/// every snapshot file that links to it: scanned once, reported for each).
struct Job {
    found: Found,
    origins: Vec<HfFile>,
}

/// What to scan: the command line's paths, or the files of a Hugging Face cache.
fn jobs(args: &ScanArgs, pool: &rayon::ThreadPool) -> Result<Vec<Job>, String> {
    let Some(cache) = &args.hf_cache else {
        let found = pool.install(|| walk::collect(&args.paths, args.follow_symlinks));
        return Ok(found
            .into_iter()
            .map(|found| Job {
                found,
                origins: Vec::new(),
            })
            .collect());
    };
    let cache = match cache {
        Some(dir) => dir.clone(),
        None => hf::default_cache()
            .ok_or("--hf-cache: no cache directory given and none can be found (set HF_HOME)")?,
    };
    let groups = hf::collect(&cache)?;
    Ok(groups
        .into_iter()
        .map(|(blob, origins)| Job {
            found: Found::Scan {
                display: origins.first().map(HfFile::display).unwrap_or_default(),
                source: Source::File(blob),
            },
            origins,
        })
        .collect())
}

/// Scans every job, handing each result to `sink` in the order found (a job's result once per
/// file it is).
fn scan_all(
    jobs: Vec<Job>,
    policy: &Policy,
    progress: bool,
    pool: &rayon::ThreadPool,
    mut sink: impl FnMut(FileResult),
) {
    let found = jobs;
    let bar = if progress {
        let bar = ProgressBar::with_draw_target(Some(found.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("scanning {bar:30} {pos}/{len} files {elapsed}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let options = ScanOptions::default();
    let mut rest = found.into_iter();
    loop {
        let batch: Vec<Job> = rest.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        let results: Vec<(FileResult, Vec<HfFile>)> = pool.install(|| {
            batch
                .into_par_iter()
                .map(|job| {
                    let result = scan_found(job.found, policy, &options);
                    bar.inc(1);
                    (result, job.origins)
                })
                .collect()
        });
        for (result, origins) in results {
            if origins.is_empty() {
                sink(result);
                continue;
            }
            for origin in origins {
                sink(FileResult {
                    display: origin.display(),
                    outcome: result.outcome.clone(),
                    origin: Some(origin),
                });
            }
        }
    }
    bar.finish_and_clear();
}

fn scan_found(found: Found, policy: &Policy, options: &ScanOptions) -> FileResult {
    match found {
        Found::Scan { display, source } => {
            let outcome = match source {
                Source::File(path) => scan_file(&path, policy, options),
                Source::Stdin => scan_stdin(policy, options),
            };
            FileResult {
                display,
                outcome: match outcome {
                    Ok(report) => Outcome::Scanned(report),
                    Err(error) => Outcome::Failed(error),
                },
                origin: None,
            }
        }
        Found::Failed { display, error } => FileResult {
            display,
            outcome: Outcome::Failed(error),
            origin: None,
        },
        Found::Skipped {
            display,
            reason,
            unverified,
        } => FileResult {
            display,
            outcome: Outcome::Skipped { reason, unverified },
            origin: None,
        },
    }
}

/// The one place a file is scanned. `scan_path` reads a small file and maps a large one, and
/// analyses only its pickles;
/// what is not a regular file (a named pipe, `<(...)`) was named on the command line and is
/// read as a stream.
pub fn scan_file(path: &Path, policy: &Policy, options: &ScanOptions) -> Result<ScanReport, String> {
    match scan_path(path, policy, options) {
        Ok(report) => Ok(report),
        Err(ScanError::NotAFile { .. }) => {
            let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
            Ok(scan_reader(file, policy, options))
        }
        Err(ScanError::Open { source, .. } | ScanError::Read { source, .. }) => {
            Err(format!("cannot read: {source}"))
        }
        Err(ScanError::Map { source, .. }) => Err(format!("cannot map into memory: {source}")),
        Err(ScanError::Truncated { .. }) => Err(picklefence::scan::TRUNCATED.into()),
    }
}

/// Standard input, read as a stream in bounded memory (see `picklefence::scan_reader`).
fn scan_stdin(policy: &Policy, options: &ScanOptions) -> Result<ScanReport, String> {
    Ok(scan_reader(std::io::stdin().lock(), policy, options))
}
