//! The allowlist: an immutable map of exact `(module, qualified name)` pairs to their roles
//! (how a pickle may use each, see [`roles`]), EXT codes, and the state rules.
//!
//! The default ML allowlist is data (`policies/*.txt`, compiled in and parsed once), never
//! code. Extending a policy builds a new one; nothing mutates the default.
//! [`danger_reason`] explains why an import is dangerous (its families are data too,
//! `policies/danger.txt`); names it knows are never added by a user without an explicit
//! `allow_dangerous` opt-in.
//!
//! Files by concern: the named policies and their data files (`named.rs`), the data
//! line format and user entries (`data.rs`), TOML policy files (`toml_file.rs`), the danger
//! families (`danger.rs`), roles and state rules. Every item keeps its `policy::` path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub(crate) mod arrow;
mod danger;
mod data;
mod named;
pub mod native_state;
pub mod roles;
pub mod state_rules;
mod toml_file;

pub use danger::{danger_reason, DANGER_FILE};
pub use data::{parse_data, parse_entry, parse_user_entry, DataError, DataLine};
pub use named::{DEFAULT_POLICY_FILES, NAMED_POLICY_FILES};
pub use roles::{parse_role, CallSchema, Roles};
pub use state_rules::{StateRule, StateRules};

use toml_file::TomlLocation;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An allowlist entry that is not `module.name` or `module:qualified.name`.
    #[error(
        "malformed allowlist entry {entry:?}: {reason} \
         (expected \"module.name\" or \"module:qualified.name\", optionally \"=role\")"
    )]
    MalformedEntry {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry whose role does not parse.
    #[error("allowlist entry {entry:?} has an invalid role: {error}")]
    MalformedRole {
        /// The entry as written.
        entry: String,
        /// Why its role does not parse.
        error: roles::RoleError,
    },
    /// A user entry that reaches code execution, files, processes, the network, imports,
    /// attribute lookup or nested unpickling, added without `allow_dangerous`.
    #[error(
        "refusing to allow {entry:?}: it {reason}; a policy extension may add such a name only \
         with an explicit allow_dangerous=True (--allow-dangerous), and only if every file it \
         loads is trusted"
    )]
    Dangerous {
        /// The entry, as `module:name`.
        entry: String,
        /// What it reaches ([`danger_reason`]).
        reason: &'static str,
    },
    /// A named policy that does not exist.
    #[error("unknown named policy {name:?}; known policies: {}", known.join(", "))]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The names that exist ([`Policy::named_policies`]).
        known: Vec<&'static str>,
    },
    /// A TOML policy that does not parse or has the wrong shape (unknown keys included).
    #[error("{}", TomlLocation(*line, *column, message))]
    Toml {
        /// What toml says is wrong.
        message: String,
        /// 1-based line of the error, when toml reports a position.
        line: Option<usize>,
        /// 1-based column (in characters) of the error.
        column: Option<usize>,
    },
    /// An `allow_ext_codes` value outside `copyreg`'s range.
    #[error("extension code {code} is outside copyreg's range 1..=2147483647")]
    ExtCodeOutOfRange {
        /// The code as written.
        code: i64,
    },
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
