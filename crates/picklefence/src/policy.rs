//! The allowlist: an immutable map of exact `(module, qualified name)` pairs to their roles
//! (how a pickle may use each, see [`roles`]), EXT codes, and the state rules.
//!
//! The default ML allowlist is data (`policies/*.txt`, compiled in and parsed once), never
//! code. Extending a policy builds a new one; nothing mutates the default.
//! [`danger_reason`] explains why an import is dangerous (its families are data too,
//! `policies/danger.txt`); names it knows are never added by a user without an explicit
//! `allow_dangerous` opt-in.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

mod danger;
pub mod roles;
pub mod state_rules;

pub use danger::{danger_reason, DANGER_FILE};
pub use roles::{parse_role, CallSchema, Roles};
pub use state_rules::{StateRule, StateRules};

/// The files of the default ML allowlist, as `(family, text)`.
pub const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[
    ("builtins", include_str!("../policies/builtins.txt")),
    ("numpy", include_str!("../policies/numpy.txt")),
    ("torch", include_str!("../policies/torch.txt")),
    ("sklearn", include_str!("../policies/sklearn.txt")),
    ("joblib", include_str!("../policies/joblib.txt")),
    ("pandas", include_str!("../policies/pandas.txt")),
    ("scipy", include_str!("../policies/scipy.txt")),
    ("transformers", include_str!("../policies/transformers.txt")),
    ("calls", include_str!("../policies/calls.txt")),
];

/// Named policies beyond the default: each is the default plus the entries of its file.
pub const NAMED_POLICY_FILES: &[(&str, &str)] = &[
    ("xgboost", include_str!("../policies/xgboost.txt")),
    ("lightgbm", include_str!("../policies/lightgbm.txt")),
    ("catboost", include_str!("../policies/catboost.txt")),
];

const NAMED_POLICIES: &[&str] = &["default", "empty", "xgboost", "lightgbm", "catboost"];

/// Valid `copyreg` extension codes (`copyreg.add_extension` accepts `1..=0x7fffffff`).
const EXT_CODE_RANGE: std::ops::RangeInclusive<i64> = 1..=0x7fff_ffff;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An allowlist entry that is not `module.name` or `module:qualified.name`.
    #[error(
        "malformed allowlist entry {entry:?}: {reason} \
         (expected \"module.name\" or \"module:qualified.name\", optionally \"=role\")"
    )]
    MalformedEntry { entry: String, reason: &'static str },
    /// An entry whose role does not parse.
    #[error("allowlist entry {entry:?} has an invalid role: {error}")]
    MalformedRole { entry: String, error: roles::RoleError },
    /// A user entry that reaches code execution, files, processes, the network, imports,
    /// attribute lookup or nested unpickling, added without `allow_dangerous`.
    #[error(
        "refusing to allow {entry:?}: it {reason}; a policy extension may add such a name only \
         with an explicit allow_dangerous=True (--allow-dangerous), and only if every file it \
         loads is trusted"
    )]
    Dangerous { entry: String, reason: &'static str },
    /// A named policy that does not exist.
    #[error("unknown named policy {name:?}; known policies: {}", known.join(", "))]
    UnknownPolicy { name: String, known: Vec<&'static str> },
    /// A TOML policy that does not parse or has the wrong shape (unknown keys included).
    #[error("{}", TomlLocation(*line, *column, message))]
    Toml {
        message: String,
        /// 1-based line of the error, when toml reports a position.
        line: Option<usize>,
        /// 1-based column (in characters) of the error.
        column: Option<usize>,
    },
    /// An `allow_ext_codes` value outside `copyreg`'s range.
    #[error("extension code {code} is outside copyreg's range 1..=2147483647")]
    ExtCodeOutOfRange { code: i64 },
}

struct TomlLocation<'a>(Option<usize>, Option<usize>, &'a str);

impl fmt::Display for TomlLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(
                f,
                "invalid policy file at line {line}, column {column}: {}",
                self.2
            ),
            _ => write!(f, "invalid policy file: {}", self.2),
        }
    }
}

type Entries = HashMap<Box<str>, HashMap<Box<str>, Roles>>;

#[derive(Debug)]
struct Inner {
    name: String,
    /// Module -> qualified names -> roles: one borrowed-key lookup per question, no allocation.
    allowed: Entries,
    ext_codes: BTreeSet<u32>,
}

/// An immutable allowlist of exact `(module, qualified name)` imports with their roles, and
/// EXT codes. Cloning is cheap (shared, reference-counted); every "change" returns a new policy.
#[derive(Clone, Debug)]
pub struct Policy {
    inner: Arc<Inner>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::ml_default()
    }
}

impl PartialEq for Policy {
    /// Same entries, roles and EXT codes (names aside).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.allowed == other.inner.allowed && self.inner.ext_codes == other.inner.ext_codes)
    }
}

impl Eq for Policy {}

/// One line of a policy data file: an entry and one of its roles.
#[derive(Debug, Clone)]
pub struct DataLine {
    pub line: usize,
    pub module: String,
    pub name: String,
    pub roles: Roles,
}

/// Why a line of a policy data file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct DataError {
    pub line: usize,
    pub error: PolicyError,
}

/// The entries of a data file: `module:qualified.name ROLE  # comment` per line (the comment
/// of a `call` line is its reviewed reason). An entry may have several lines, one per role.
pub fn parse_data(text: &str) -> Vec<Result<DataLine, DataError>> {
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| {
            let (body, comment) = match raw.split_once('#') {
                Some((body, comment)) => (body.trim(), comment.trim()),
                None => (raw.trim(), ""),
            };
            if body.is_empty() {
                return None;
            }
            let line = index + 1;
            let fail = |error| Some(Err(DataError { line, error }));
            let (entry, role) = match body.split_once(char::is_whitespace) {
                Some((entry, role)) => (entry, role.trim()),
                None => (body, ""),
            };
            let (module, name) = match parse_entry(entry) {
                Ok(pair) => pair,
                Err(error) => return fail(error),
            };
            match parse_role(role, comment) {
                Ok(roles) => Some(Ok(DataLine {
                    line,
                    module,
                    name,
                    roles,
                })),
                Err(error) => fail(PolicyError::MalformedRole {
                    entry: entry.to_string(),
                    error,
                }),
            }
        })
        .collect()
}

/// Adds a data file's entries. A malformed line is skipped, which can only make the policy
/// stricter; the tests require every line of every shipped file to parse.
fn add_data(allowed: &mut Entries, text: &str) {
    for line in parse_data(text).into_iter().flatten() {
        allowed
            .entry(line.module.into())
            .or_default()
            .entry(line.name.into())
            .or_default()
            .merge(line.roles);
    }
}

/// Why a dotted part is not a plausible Python module or attribute path.
pub(crate) fn dotted_problem(part: &str) -> Option<&'static str> {
    if part.is_empty() {
        return Some("a part is empty");
    }
    if part.starts_with('.') || part.ends_with('.') {
        return Some("it has a leading or trailing dot");
    }
    for piece in part.split('.') {
        if piece.is_empty() {
            return Some("it has an empty component (\"..\")");
        }
        if piece.starts_with(|c: char| c.is_ascii_digit()) {
            return Some("a component starts with a digit");
        }
        // Python identifiers: ASCII letters, digits, underscore, or non-ASCII letters.
        if piece
            .chars()
            .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '_'))
        {
            return Some("it contains a character that cannot appear in a Python name");
        }
    }
    None
}

/// Splits an entry into `(module, qualified name)`: `module:qualified.name` explicitly, or
/// `module.name` at the last dot.
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
        Some((_, name)) if name.contains(':') => return Err(malformed("it has more than one ':'")),
        Some(parts) => parts,
        None => {
            if entry.starts_with('.') || entry.ends_with('.') {
                return Err(malformed("it has a leading or trailing dot"));
            }
            entry.rsplit_once('.').ok_or_else(|| malformed("it has no dot"))?
        }
    };
    if let Some(reason) = dotted_problem(module).or_else(|| dotted_problem(name)) {
        return Err(malformed(reason));
    }
    Ok((module.to_string(), name.to_string()))
}

/// A user's entry: `module.name` (trusted: any use) or `module.name=ROLE`.
pub fn parse_user_entry(entry: &str, reason: &str) -> Result<(String, String, Roles), PolicyError> {
    let (name_part, role) = match entry.split_once('=') {
        Some((name, role)) => (name.trim(), Some(role.trim())),
        None => (entry, None),
    };
    let (module, name) = parse_entry(name_part)?;
    let roles = match role {
        None => Roles::trusted(),
        Some(role) => {
            let reason = if reason.is_empty() {
                "added by the user"
            } else {
                reason
            };
            parse_role(role, reason).map_err(|error| PolicyError::MalformedRole {
                entry: entry.to_string(),
                error,
            })?
        }
    };
    Ok((module, name, roles))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    base: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    entry: Vec<PolicyFileEntry>,
    #[serde(default)]
    allow_ext_codes: Vec<i64>,
    #[serde(default)]
    allow_dangerous: bool,
}

/// `[[entry]] name = "module:Class"  role = "reconstruct"  reason = "..."`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFileEntry {
    name: String,
    role: String,
    #[serde(default)]
    reason: String,
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

impl Policy {
    fn build(name: String, allowed: Entries, ext_codes: BTreeSet<u32>) -> Policy {
        Policy {
            inner: Arc::new(Inner {
                name,
                allowed,
                ext_codes,
            }),
        }
    }

    /// The ML allowlist (the compiled-in data files), parsed once and shared.
    pub fn ml_default() -> Policy {
        static DEFAULT: OnceLock<Policy> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let mut allowed = Entries::new();
                for (_, text) in DEFAULT_POLICY_FILES {
                    add_data(&mut allowed, text);
                }
                Policy::build("default".into(), allowed, BTreeSet::new())
            })
            .clone()
    }

    /// A policy that allows no import and no EXT code at all (plain data only).
    pub fn empty() -> Policy {
        static EMPTY: OnceLock<Policy> = OnceLock::new();
        EMPTY
            .get_or_init(|| Policy::build("empty".into(), Entries::new(), BTreeSet::new()))
            .clone()
    }

    /// A curated policy by name: `default` (also `ml`), `empty` (also `none`), or a library
    /// policy (`xgboost`, `lightgbm`, `catboost`: the default plus that library's data-only
    /// classes).
    pub fn named(name: &str) -> Result<Policy, PolicyError> {
        match name {
            "default" | "ml" => return Ok(Policy::ml_default()),
            "empty" | "none" => return Ok(Policy::empty()),
            _ => {}
        }
        static NAMED: OnceLock<Vec<(&'static str, Policy)>> = OnceLock::new();
        let named = NAMED.get_or_init(|| {
            let default = Policy::ml_default();
            NAMED_POLICY_FILES
                .iter()
                .map(|&(policy_name, text)| {
                    let mut allowed = default.inner.allowed.clone();
                    add_data(&mut allowed, text);
                    let policy = Policy::build(policy_name.into(), allowed, BTreeSet::new());
                    (policy_name, policy)
                })
                .collect()
        });
        named
            .iter()
            .find(|(policy_name, _)| *policy_name == name)
            .map(|(_, policy)| policy.clone())
            .ok_or_else(|| PolicyError::UnknownPolicy {
                name: name.to_string(),
                known: NAMED_POLICIES.to_vec(),
            })
    }

    /// The names [`Policy::named`] accepts (aliases aside).
    pub fn named_policies() -> &'static [&'static str] {
        NAMED_POLICIES
    }

    /// A short description: `default`, `xgboost`, `default+2 entries`, `custom (base default)`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A new policy: this one plus `entries` (`module.name`, split at the last dot, or
    /// `module:qualified.name`; `=ROLE` after it gives the role, otherwise the entry is
    /// trusted: any use). Fails on the first malformed entry, naming it, and on a name that
    /// [`danger_reason`] knows (see [`Policy::with_allowed_dangerous`]). `self` and the
    /// default are never changed.
    pub fn with_allowed<I, S>(&self, entries: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.extend(entries, false)
    }

    /// [`Policy::with_allowed`], also accepting names that reach code execution, files,
    /// processes, the network, imports, attribute lookup or nested unpickling: the explicit
    /// opt-in for a user who trusts every file the policy will load.
    pub fn with_allowed_dangerous<I, S>(&self, entries: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.extend(entries, true)
    }

    /// `with_allowed` or `with_allowed_dangerous`.
    pub fn extend<I, S>(&self, entries: I, allow_dangerous: bool) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = entries
            .into_iter()
            .map(|entry| parse_user_entry(entry.as_ref(), ""))
            .collect::<Result<Vec<_>, _>>()?;
        self.extend_parsed(parsed, allow_dangerous)
    }

    fn extend_parsed(
        &self,
        parsed: Vec<(String, String, Roles)>,
        allow_dangerous: bool,
    ) -> Result<Policy, PolicyError> {
        if !allow_dangerous {
            for (module, name, _) in &parsed {
                if let Some(reason) = danger_reason(module, name) {
                    return Err(PolicyError::Dangerous {
                        entry: format!("{module}:{name}"),
                        reason,
                    });
                }
            }
        }
        let mut allowed = self.inner.allowed.clone();
        let mut count = 0;
        for (module, name, roles) in parsed {
            let current = allowed.get(module.as_str()).and_then(|n| n.get(name.as_str()));
            // A bare name already allowed keeps its roles; an explicit role is added.
            let changes = match current {
                None => true,
                Some(existing) => {
                    !roles.trusted && {
                        let mut merged = existing.clone();
                        merged.merge(roles.clone());
                        &merged != existing
                    }
                }
            };
            if !changes {
                continue;
            }
            count += 1;
            allowed
                .entry(module.into())
                .or_default()
                .entry(name.into())
                .or_default()
                .merge(roles);
        }
        if count == 0 {
            return Ok(self.clone());
        }
        // "+N entries" even for one: the CLI's snapshots spell it so.
        let name = format!("{}+{count} entries", self.inner.name);
        Ok(Policy::build(name, allowed, self.inner.ext_codes.clone()))
    }

    /// A new policy that also allows these `copyreg` extension codes (the names they stand
    /// for are then *not* checked again: only allow codes your own process registered).
    pub fn with_allowed_ext_codes<I: IntoIterator<Item = u32>>(&self, codes: I) -> Policy {
        let new: BTreeSet<u32> = codes
            .into_iter()
            .filter(|code| !self.inner.ext_codes.contains(code))
            .collect();
        if new.is_empty() {
            return self.clone();
        }
        let name = format!("{}+{} ext codes", self.inner.name, new.len());
        let mut ext_codes = self.inner.ext_codes.clone();
        ext_codes.extend(new);
        Policy::build(name, self.inner.allowed.clone(), ext_codes)
    }

    /// A policy from the text of a TOML policy file:
    ///
    /// ```toml
    /// base = "default"            # or "empty"/"none", or any named policy; default "default"
    /// allow = ["mypkg.models.Net", "mypkg:Outer.Inner=reconstruct"]
    /// allow_ext_codes = [240]
    /// allow_dangerous = false     # true: names that reach code/files/processes may be added
    ///
    /// [[entry]]
    /// name = "mypkg.models:make_net"
    /// role = "call(str<=64, int[1..64]) -> fresh"
    /// reason = "builds a Net from a config name and a layer count"
    /// ```
    ///
    /// Unknown keys are an error.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            PolicyError::Toml {
                message: e.message().trim().to_string(),
                line,
                column,
            }
        })?;
        let codes = file
            .allow_ext_codes
            .iter()
            .map(|&code| {
                u32::try_from(code)
                    .ok()
                    .filter(|_| EXT_CODE_RANGE.contains(&code))
                    .ok_or(PolicyError::ExtCodeOutOfRange { code })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let base_name = file.base.as_deref().unwrap_or("default");
        let base = Policy::named(base_name)?;
        let mut parsed = file
            .allow
            .iter()
            .map(|entry| parse_user_entry(entry, ""))
            .collect::<Result<Vec<_>, _>>()?;
        for entry in &file.entry {
            let (module, name) = parse_entry(&entry.name)?;
            let reason = if entry.reason.trim().is_empty() {
                "added by the policy file"
            } else {
                entry.reason.as_str()
            };
            let roles = parse_role(&entry.role, reason).map_err(|error| PolicyError::MalformedRole {
                entry: entry.name.clone(),
                error,
            })?;
            parsed.push((module, name, roles));
        }
        let extended = base
            .extend_parsed(parsed, file.allow_dangerous)?
            .with_allowed_ext_codes(codes);
        Ok(Policy::build(
            format!("custom (base {})", base.name()),
            extended.inner.allowed.clone(),
            extended.inner.ext_codes.clone(),
        ))
    }

    /// Whether `module` + `name` is allowed in some role: an exact match of the module and
    /// the full qualified name, nothing else (no prefixes, no wildcards, no attribute paths
    /// unless listed in full). This is the whole check where only names are seen (the
    /// `find_class` layers); the analyzer also checks each use against [`Policy::roles`].
    #[inline]
    pub fn is_allowed(&self, module: &str, name: &str) -> bool {
        self.roles(module, name).is_some()
    }

    /// Whether a name is allowed where only names are seen (the `find_class` layers, for an
    /// unpickler whose stream was not pre-scanned): every allowed name except those that reach
    /// code, files or attribute lookup and are allowed only as a call whose arguments the
    /// analyzer verified (`builtins.getattr` of one attribute of one class, for example).
    pub fn is_allowed_by_name(&self, module: &str, name: &str) -> bool {
        self.roles(module, name)
            .is_some_and(|roles| roles.trusted || danger_reason(module, name).is_none())
    }

    /// The roles of an allowed name.
    #[inline]
    pub fn roles(&self, module: &str, name: &str) -> Option<&Roles> {
        self.inner.allowed.get(module).and_then(|names| names.get(name))
    }

    /// Whether `copyreg` extension code `code` may be used.
    #[inline]
    pub fn is_ext_code_allowed(&self, code: u32) -> bool {
        self.inner.ext_codes.contains(&code)
    }

    /// Every allowed `(module, qualified name)`, sorted.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.entries_with_roles()
            .into_iter()
            .map(|(module, name, _)| (module, name))
            .collect()
    }

    /// Every allowed `(module, qualified name, roles)`, sorted by name.
    pub fn entries_with_roles(&self) -> Vec<(String, String, Roles)> {
        let mut entries: Vec<(String, String, Roles)> = self
            .inner
            .allowed
            .iter()
            .flat_map(|(module, names)| {
                names
                    .iter()
                    .map(move |(name, roles)| (module.to_string(), name.to_string(), roles.clone()))
            })
            .collect();
        entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        entries
    }

    /// Number of allowed `(module, qualified name)` pairs.
    pub fn len(&self) -> usize {
        self.inner.allowed.values().map(HashMap::len).sum()
    }

    /// Whether no import at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.inner.allowed.values().all(HashMap::is_empty)
    }

    /// Allowed extension codes, sorted.
    pub fn ext_codes(&self) -> Vec<u32> {
        self.inner.ext_codes.iter().copied().collect()
    }

    /// The rules every object state is checked against (shared by all policies).
    pub fn state_rules(&self) -> &'static StateRules {
        StateRules::shipped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
    }

    #[test]
    fn parse_entry_forms() {
        assert_eq!(
            parse_entry("a.b.C").unwrap(),
            ("a.b".to_string(), "C".to_string())
        );
        assert_eq!(
            parse_entry("a:B.c").unwrap(),
            ("a".to_string(), "B.c".to_string())
        );
        for bad in [
            "", "a", ".a", "a.", "a..b", "a:b:c", ":a", "a:", "a b.c", "a.1b", "a-b.c",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
    }
}
