//! Turning command-line paths into the list of files to scan: directories walked recursively
//! (in parallel), symbolic links judged, and every path that is not scanned said so.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

/// Deeper directory trees are reported, not walked: each level costs stack.
const MAX_DEPTH: usize = 256;

/// What a scanned path is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

/// One path the walk found, in the order it is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Scan {
        display: String,
        source: Source,
    },
    /// A path that could not be read or walked.
    Failed {
        display: String,
        error: String,
    },
    /// A path deliberately not read. `unverified`: it may hold something a loader would
    /// read, so the run cannot call everything clean.
    Skipped {
        display: String,
        reason: String,
        unverified: bool,
    },
}

fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Everything to scan for the command-line `paths`, in argument order, each directory's
/// entries sorted by name.
pub fn collect(paths: &[PathBuf], follow_symlinks: bool) -> Vec<Found> {
    paths
        .iter()
        .flat_map(|path| collect_one(path, follow_symlinks))
        .collect()
}

fn collect_one(path: &Path, follow_symlinks: bool) -> Vec<Found> {
    if path.as_os_str() == "-" {
        return vec![Found::Scan {
            display: "-".into(),
            source: Source::Stdin,
        }];
    }
    let display = shown(path);
    // Named on the command line: followed whatever it is, like `find -H`.
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match fs::canonicalize(path) {
            Ok(root) => walk(
                path,
                &display,
                &root,
                std::slice::from_ref(&root),
                follow_symlinks,
            ),
            Err(e) => vec![Found::Failed {
                display,
                error: format!("cannot resolve the directory: {e}"),
            }],
        },
        Ok(_) => vec![Found::Scan {
            display,
            source: Source::File(path.to_path_buf()),
        }],
        Err(e) => {
            let error = if fs::symlink_metadata(path).is_ok() {
                format!("broken symbolic link: {e}")
            } else {
                format!("cannot read: {e}")
            };
            vec![Found::Failed { display, error }]
        }
    }
}

/// Walks `dir` (shown as `display`). `root` is the canonical directory named on the command
/// line; `ancestors` the canonical directories being walked, to stop symbolic link loops.
fn walk(dir: &Path, display: &str, root: &Path, ancestors: &[PathBuf], follow: bool) -> Vec<Found> {
    if ancestors.len() > MAX_DEPTH {
        return vec![Found::Failed {
            display: display.to_string(),
            error: format!("directory nesting deeper than {MAX_DEPTH} levels"),
        }];
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return vec![Found::Failed {
                display: display.to_string(),
                error: format!("cannot read the directory: {e}"),
            }]
        }
    };
    let mut children = Vec::new();
    let mut failures = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => children.push(entry.file_name()),
            Err(e) => failures.push(Found::Failed {
                display: display.to_string(),
                error: format!("cannot list the directory: {e}"),
            }),
        }
    }
    children.sort();
    let mut found: Vec<Found> = children
        .par_iter()
        .map(|name| {
            let path = dir.join(name);
            let shown = Path::new(display).join(name).to_string_lossy().into_owned();
            entry(&path, shown, root, ancestors, follow)
        })
        .collect::<Vec<_>>()
        .concat();
    found.extend(failures);
    found
}

fn entry(path: &Path, display: String, root: &Path, ancestors: &[PathBuf], follow: bool) -> Vec<Found> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![Found::Failed {
                display,
                error: format!("cannot read: {e}"),
            }]
        }
    };
    let kind = meta.file_type();
    if kind.is_file() {
        return vec![Found::Scan {
            display,
            source: Source::File(path.to_path_buf()),
        }];
    }
    if kind.is_dir() {
        return match fs::canonicalize(path) {
            Ok(real) => descend(path, display, real, root, ancestors, follow),
            Err(e) => vec![Found::Failed {
                display,
                error: format!("cannot resolve the directory: {e}"),
            }],
        };
    }
    if kind.is_symlink() {
        return symlink(path, display, root, ancestors, follow);
    }
    vec![Found::Skipped {
        display,
        reason: format!("not a regular file ({})", special_kind(&meta)),
        unverified: false,
    }]
}

fn descend(
    path: &Path,
    display: String,
    real: PathBuf,
    root: &Path,
    ancestors: &[PathBuf],
    follow: bool,
) -> Vec<Found> {
    if ancestors.contains(&real) {
        // Its files get their verdicts where the loop leads back to.
        return vec![Found::Skipped {
            display,
            reason: format!("symbolic link loop back to {}", real.display()),
            unverified: false,
        }];
    }
    let mut chain = ancestors.to_vec();
    chain.push(real);
    walk(path, &display, root, &chain, follow)
}

fn symlink(path: &Path, display: String, root: &Path, ancestors: &[PathBuf], follow: bool) -> Vec<Found> {
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) => {
            return vec![Found::Failed {
                display,
                error: format!("broken symbolic link: {e}"),
            }]
        }
    };
    if !follow && !target.starts_with(root) {
        return vec![Found::Skipped {
            display,
            reason: format!(
                "symbolic link to {}, outside the scanned directory (pass --follow-symlinks to scan it)",
                target.display()
            ),
            unverified: true,
        }];
    }
    match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => descend(path, display, target, root, ancestors, follow),
        Ok(meta) if meta.is_file() => vec![Found::Scan {
            display,
            source: Source::File(path.to_path_buf()),
        }],
        Ok(meta) => vec![Found::Skipped {
            display,
            reason: format!(
                "symbolic link to something that is not a regular file ({})",
                special_kind(&meta)
            ),
            unverified: false,
        }],
        Err(e) => vec![Found::Failed {
            display,
            error: format!("cannot read the link's target: {e}"),
        }],
    }
}

#[cfg(unix)]
fn special_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_meta: &fs::Metadata) -> &'static str {
    "a special file"
}
