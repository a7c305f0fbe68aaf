//! `scan --hf-cache`: the Hugging Face hub cache as `huggingface_hub` lays it out:
//! `<cache>/{models,datasets,spaces}--<org>--<name>/` with `blobs/<hash>` (the files' content),
//! `snapshots/<commit>/<path>` (links into `blobs`) and `refs/<name>` (a commit per branch or
//! tag). Every file of every snapshot is reported as `org/name@commit:path`; a blob that several
//! snapshots share is scanned once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where a scanned file sits in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfFile {
    /// `model`, `dataset` or `space`.
    pub repo_type: String,
    /// `org/name`.
    pub repo_id: String,
    /// The snapshot's commit.
    pub revision: String,
    /// The refs (branches, tags, `pr/N`) that point at that commit.
    pub refs: Vec<String>,
    /// The file's path in the repository.
    pub path: String,
    /// The file in the snapshot (a link into `blobs`).
    pub file: PathBuf,
}

impl HfFile {
    /// `org/name@commit:path`, as the scan reports the file.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.repo_id, self.revision, self.path)
    }
}

/// The cache `huggingface_hub` uses: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else
/// `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub` (`~/.cache` by default).
pub fn default_cache() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(cache) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Some(cache);
    }
    let home = var("HF_HOME").or_else(|| {
        let cache = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|home| home.join(".cache")))?;
        Some(cache.join("huggingface"))
    })?;
    Some(home.join("hub"))
}

/// Every snapshot file of the cache, grouped by the blob it resolves to (in order of first
/// appearance: repositories, revisions and paths sorted).
pub fn collect(cache: &Path) -> Result<Vec<(PathBuf, Vec<HfFile>)>, String> {
    let entries =
        fs::read_dir(cache).map_err(|e| format!("{}: cannot read the cache: {e}", cache.display()))?;
    let mut repos: Vec<(String, String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((kind, id)) = name.split_once("--") else {
            continue;
        };
        let repo_type = match kind {
            "models" => "model",
            "datasets" => "dataset",
            "spaces" => "space",
            _ => continue,
        };
        if entry.path().is_dir() {
            repos.push((repo_type.to_owned(), id.replace("--", "/"), entry.path()));
        }
    }
    repos.sort();
    let mut groups: Vec<(PathBuf, Vec<HfFile>)> = Vec::new();
    let mut by_blob: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for (repo_type, repo_id, dir) in repos {
        let refs = read_refs(&dir.join("refs"));
        let mut revisions: Vec<PathBuf> = match fs::read_dir(dir.join("snapshots")) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect(),
            Err(_) => continue,
        };
        revisions.sort();
        for snapshot in revisions {
            let revision = snapshot
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            list_files(&snapshot, &snapshot, 0, &mut files);
            files.sort();
            for (path, file) in files {
                let blob = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                let found = HfFile {
                    repo_type: repo_type.clone(),
                    repo_id: repo_id.clone(),
                    revision: revision.clone(),
                    refs: refs.get(&revision).cloned().unwrap_or_default(),
                    path,
                    file,
                };
                match by_blob.get(&blob) {
                    Some(&index) => {
                        if let Some((_, group)) = groups.get_mut(index) {
                            group.push(found);
                        }
                    }
                    None => {
                        by_blob.insert(blob.clone(), groups.len());
                        groups.push((blob, vec![found]));
                    }
                }
            }
        }
    }
    Ok(groups)
}

/// `refs/<name>` files (nested for `refs/pr/1`): commit -> the names pointing at it.
fn read_refs(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    list_files(dir, dir, 0, &mut files);
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, file) in files {
        if let Ok(commit) = fs::read_to_string(&file) {
            refs.entry(commit.trim().to_owned()).or_default().push(name);
        }
    }
    refs.values_mut().for_each(|names| names.sort());
    refs
}

/// Files under `dir` (links followed, as the hub client reads them) with their paths relative
/// to `root`, `/`-separated.
fn list_files(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if depth < 64 {
                list_files(root, &path, depth + 1, out);
            }
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((parts.join("/"), path));
        }
    }
}
