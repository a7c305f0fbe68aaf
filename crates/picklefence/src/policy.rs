//! The allowlist: an immutable set of exact `(module, qualified name)` pairs (and EXT codes).
//!
//! The default ML allowlist is data (`policies/*.txt`, compiled in), never code. Extending a
//! policy builds a new one; nothing mutates the default.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use thiserror::Error;

/// Files of the default ML allowlist.
const DEFAULT_FILES: &[(&str, &str)] = &[
    ("builtins", include_str!("../policies/builtins.txt")),
    ("numpy", include_str!("../policies/numpy.txt")),
    ("torch", include_str!("../policies/torch.txt")),
    ("sklearn", include_str!("../policies/sklearn.txt")),
    ("joblib", include_str!("../policies/joblib.txt")),
    ("pandas", include_str!("../policies/pandas.txt")),
    ("scipy", include_str!("../policies/scipy.txt")),
    ("transformers", include_str!("../policies/transformers.txt")),
];

/// Named policies: the default plus the entries of these files.
const NAMED: &[(&str, &str)] = &[
    ("xgboost", include_str!("../policies/xgboost.txt")),
    ("lightgbm", include_str!("../policies/lightgbm.txt")),
    ("catboost", include_str!("../policies/catboost.txt")),
];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    #[error("malformed allowlist entry {entry:?}: {reason} (expected \"module.name\" or \"module:qualified.name\")")]
    MalformedEntry { entry: String, reason: &'static str },
    #[error("unknown named policy {name:?}; known policies: {known}")]
    UnknownPolicy { name: String, known: String },
    #[error("invalid policy file: {0}")]
    Toml(String),
}

#[derive(Debug)]
struct Inner {
    name: String,
    allowed: HashMap<Box<str>, HashSet<Box<str>>>,
    ext_codes: BTreeSet<u32>,
}

/// An immutable allowlist; cheap to clone.
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::ml_default()
    }
}

/// Parses a data file's `module:qualname` lines (`#` starts a comment).
fn data_entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
}

/// Splits a user entry: `module:qual.name`, or `module.name` at the last dot.
pub fn parse_entry(entry: &str) -> Result<(String, String), PolicyError> {
    let malformed = |reason| PolicyError::MalformedEntry {
        entry: entry.to_string(),
        reason,
    };
    if entry.is_empty() {
        return Err(malformed("it is empty"));
    }
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed("it contains whitespace or control characters"));
    }
    let (module, name) = match entry.split_once(':') {
        Some(parts) => parts,
        None => entry.rsplit_once('.').ok_or_else(|| malformed("it has no dot"))?,
    };
    let dotted_ok = |part: &str| !part.is_empty() && part.split('.').all(|piece| !piece.is_empty());
    if !dotted_ok(module) {
        return Err(malformed("the module part is empty or has an empty component"));
    }
    if !dotted_ok(name) || name.contains(':') {
        return Err(malformed("the name part is empty or has an empty component"));
    }
    Ok((module.to_string(), name.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    base: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_ext_codes: Vec<u32>,
}

impl Policy {
    fn from_parts(
        name: String,
        allowed: HashMap<Box<str>, HashSet<Box<str>>>,
        ext_codes: BTreeSet<u32>,
    ) -> Self {
        Policy {
            inner: Arc::new(Inner {
                name,
                allowed,
                ext_codes,
            }),
        }
    }

    /// The curated ML allowlist.
    pub fn ml_default() -> Policy {
        static DEFAULT: OnceLock<Policy> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let mut allowed: HashMap<Box<str>, HashSet<Box<str>>> = HashMap::new();
                for (_, text) in DEFAULT_FILES {
                    for (module, name) in data_entries(text) {
                        allowed.entry(module.into()).or_default().insert(name.into());
                    }
                }
                Policy::from_parts("default".into(), allowed, BTreeSet::new())
            })
            .clone()
    }

    /// A policy that allows nothing.
    pub fn empty() -> Policy {
        Policy::from_parts("empty".into(), HashMap::new(), BTreeSet::new())
    }

    pub fn named_policies() -> &'static [&'static str] {
        &["default", "empty", "xgboost", "lightgbm", "catboost"]
    }

    pub fn named(name: &str) -> Result<Policy, PolicyError> {
        match name {
            "default" | "ml" => Ok(Policy::ml_default()),
            "empty" | "none" => Ok(Policy::empty()),
            _ => match NAMED.iter().find(|(named, _)| *named == name) {
                Some((named, text)) => {
                    let mut allowed = Policy::ml_default().inner.allowed.clone();
                    for (module, qualname) in data_entries(text) {
                        allowed.entry(module.into()).or_default().insert(qualname.into());
                    }
                    Ok(Policy::from_parts((*named).to_string(), allowed, BTreeSet::new()))
                }
                None => Err(PolicyError::UnknownPolicy {
                    name: name.to_string(),
                    known: Policy::named_policies().join(", "),
                }),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A new policy: this one plus `entries` ("module.name" or "module:qualified.name").
    pub fn with_allowed<I, S>(&self, entries: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = entries
            .into_iter()
            .map(|entry| parse_entry(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Ok(self.clone());
        }
        let mut allowed = self.inner.allowed.clone();
        let count = parsed.len();
        for (module, name) in parsed {
            allowed.entry(module.into()).or_default().insert(name.into());
        }
        let name = format!("{}+{count} entries", self.inner.name);
        Ok(Policy::from_parts(name, allowed, self.inner.ext_codes.clone()))
    }

    /// A new policy that also allows these copyreg extension codes.
    pub fn with_allowed_ext_codes<I: IntoIterator<Item = u32>>(&self, codes: I) -> Policy {
        let mut ext_codes = self.inner.ext_codes.clone();
        ext_codes.extend(codes);
        Policy::from_parts(self.inner.name.clone(), self.inner.allowed.clone(), ext_codes)
    }

    /// A policy from TOML: `base = "default"|"empty"|named`, `allow = [...]`, `allow_ext_codes = [...]`.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        let base = Policy::named(file.base.as_deref().unwrap_or("default"))?;
        let policy = base
            .with_allowed(&file.allow)?
            .with_allowed_ext_codes(file.allow_ext_codes);
        Ok(Policy::from_parts(
            format!("custom (base {})", base.name()),
            policy.inner.allowed.clone(),
            policy.inner.ext_codes.clone(),
        ))
    }

    /// Exact match of `(module, qualified name)`.
    pub fn is_allowed(&self, module: &str, name: &str) -> bool {
        self.inner
            .allowed
            .get(module)
            .is_some_and(|names| names.contains(name))
    }

    pub fn is_ext_code_allowed(&self, code: u32) -> bool {
        self.inner.ext_codes.contains(&code)
    }

    /// Every allowed pair, sorted.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = self
            .inner
            .allowed
            .iter()
            .flat_map(|(module, names)| {
                names
                    .iter()
                    .map(move |name| (module.to_string(), name.to_string()))
            })
            .collect();
        entries.sort();
        entries
    }

    pub fn ext_codes(&self) -> Vec<u32> {
        self.inner.ext_codes.iter().copied().collect()
    }
}

/// Modules every attribute of which reaches code execution, the system, or imports.
const DANGEROUS_MODULES: &[(&str, &str)] = &[
    (
        "os",
        "reaches the operating system (processes, files, environment)",
    ),
    (
        "posix",
        "reaches the operating system (processes, files, environment)",
    ),
    (
        "nt",
        "reaches the operating system (processes, files, environment)",
    ),
    ("subprocess", "runs processes"),
    ("_posixsubprocess", "runs processes"),
    ("pty", "runs processes"),
    ("commands", "runs shell commands"),
    ("popen2", "runs shell commands"),
    ("shutil", "reaches the file system"),
    ("socket", "opens network connections"),
    ("_socket", "opens network connections"),
    ("ssl", "opens network connections"),
    ("http", "opens network connections"),
    ("urllib", "opens network connections"),
    ("ftplib", "opens network connections"),
    ("smtplib", "opens network connections"),
    ("webbrowser", "opens a browser"),
    ("ctypes", "calls native code"),
    ("_ctypes", "calls native code"),
    ("cffi", "calls native code"),
    ("importlib", "imports arbitrary modules"),
    ("pkgutil", "imports arbitrary modules"),
    ("zipimport", "imports arbitrary modules"),
    ("imp", "imports arbitrary modules"),
    ("runpy", "runs Python code"),
    ("code", "runs Python code"),
    ("codeop", "compiles Python code"),
    ("pdb", "runs Python code"),
    ("bdb", "runs Python code"),
    ("timeit", "runs Python code"),
    ("cProfile", "runs Python code"),
    ("profile", "runs Python code"),
    ("trace", "runs Python code"),
    ("pydoc", "runs commands and imports modules"),
    ("marshal", "loads code objects"),
    ("types", "builds functions and code objects"),
    ("sys", "reaches the interpreter's state"),
    ("multiprocessing", "runs processes"),
    ("asyncio", "runs processes and opens connections"),
    ("pickle", "loads a nested pickle"),
    ("_pickle", "loads a nested pickle"),
    ("cPickle", "loads a nested pickle"),
    ("dill", "loads a nested pickle"),
    ("cloudpickle", "loads a nested pickle"),
    ("shelve", "loads nested pickles from files"),
    ("logging", "configures logging from files or sockets"),
    ("tempfile", "reaches the file system"),
    ("glob", "reaches the file system"),
    ("io", "opens files"),
    ("_io", "opens files"),
    ("fileinput", "opens files"),
    ("distutils", "runs build commands"),
    ("setuptools", "runs build commands"),
    ("_osx_support", "runs processes"),
    ("numpy.f2py", "compiles and runs code"),
    ("numpy.testing", "runs code"),
    ("numpy.distutils", "runs build commands"),
    ("torch.hub", "downloads and runs code"),
    ("torch.jit", "compiles and runs code"),
    ("torch.fx", "generates and runs code"),
    ("torch._C", "calls native code"),
    ("torch._dynamo", "compiles and runs code"),
    ("torch.serialization", "loads nested files"),
    ("torch.package", "imports packaged code"),
    ("picklefence", "reaches the guard itself"),
    ("joblib", "loads nested files"),
];

/// Single names that reach code execution or the system.
const DANGEROUS_NAMES: &[(&str, &str, &str)] = &[
    ("builtins", "eval", "evaluates Python code"),
    ("builtins", "exec", "runs Python code"),
    ("builtins", "compile", "compiles Python code"),
    ("builtins", "getattr", "looks up arbitrary attributes"),
    ("builtins", "setattr", "sets arbitrary attributes"),
    ("builtins", "delattr", "deletes arbitrary attributes"),
    ("builtins", "__import__", "imports arbitrary modules"),
    ("builtins", "open", "opens files"),
    ("builtins", "input", "reads from the terminal"),
    ("builtins", "breakpoint", "starts a debugger"),
    ("builtins", "globals", "reaches the interpreter's state"),
    ("builtins", "locals", "reaches the interpreter's state"),
    ("builtins", "vars", "reaches the interpreter's state"),
    ("builtins", "exit", "exits the process"),
    ("builtins", "quit", "exits the process"),
    ("builtins", "help", "runs the pager"),
    ("operator", "attrgetter", "looks up arbitrary attributes"),
    ("operator", "methodcaller", "calls arbitrary methods"),
    ("operator", "itemgetter", "composes calls"),
    ("functools", "partial", "composes calls"),
    ("functools", "reduce", "composes calls"),
    ("uuid", "_get_command_stdout", "runs processes"),
    ("numpy", "load", "loads a nested pickle"),
    ("numpy", "loads", "loads a nested pickle"),
    ("numpy", "fromfile", "reads files"),
    ("numpy.lib.npyio", "load", "loads a nested pickle"),
    ("numpy.lib._npyio_impl", "load", "loads a nested pickle"),
    ("torch", "load", "loads a nested file"),
    ("torch.storage", "_load_from_bytes", "loads a nested pickle"),
    ("pandas", "read_pickle", "loads a nested pickle"),
];

/// Why an import is known to be dangerous. Used for severity and messages only; never to allow.
pub fn danger_reason(module: &str, name: &str) -> Option<&'static str> {
    let root_matches = |prefix: &str| {
        module == prefix
            || module
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    // Python 2 spellings are judged like their Python 3 modules.
    let module_for_names = match module {
        "__builtin__" => "builtins",
        other => other,
    };
    DANGEROUS_NAMES
        .iter()
        .find(|(m, n, _)| *m == module_for_names && *n == name)
        .map(|(_, _, reason)| *reason)
        .or_else(|| {
            DANGEROUS_MODULES
                .iter()
                .find(|(prefix, _)| root_matches(prefix))
                .map(|(_, reason)| *reason)
        })
        .or_else(|| {
            // A dotted name reaching into module attributes (`torch` + `serialization.os.system`).
            name.split('.')
                .any(|part| {
                    matches!(
                        part,
                        "os" | "system" | "subprocess" | "__globals__" | "__builtins__" | "eval" | "exec"
                    )
                })
                .then_some("reaches dangerous attributes through a dotted name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_exact() {
        let policy = Policy::default();
        assert!(policy.is_allowed("collections", "OrderedDict"));
        assert!(!policy.is_allowed("collections", "OrderedDict.__init__"));
        assert!(!policy.is_allowed("os", "system"));
    }

    #[test]
    fn with_allowed_builds_a_new_policy() {
        let base = Policy::default();
        let extended = base
            .with_allowed(["mypkg.models.Net", "mypkg:Outer.Inner"])
            .unwrap();
        assert!(extended.is_allowed("mypkg.models", "Net"));
        assert!(extended.is_allowed("mypkg", "Outer.Inner"));
        assert!(!Policy::default().is_allowed("mypkg.models", "Net"));
        assert!(base.with_allowed(["nodot"]).is_err());
        assert!(base.with_allowed([".x"]).is_err());
    }

    #[test]
    fn toml() {
        let policy =
            Policy::from_toml_str("base = \"empty\"\nallow = [\"a.b\"]\nallow_ext_codes = [7]\n").unwrap();
        assert!(policy.is_allowed("a", "b"));
        assert!(policy.is_ext_code_allowed(7));
        assert!(!policy.is_allowed("collections", "OrderedDict"));
        assert!(Policy::from_toml_str("bogus = 1").is_err());
    }
}
