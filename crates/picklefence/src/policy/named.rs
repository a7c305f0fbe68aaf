//! The named policies: the default ML allowlist (`policies/*.txt`, compiled in and parsed
//! once), the empty policy, and the library policies (the default plus one library's
//! data-only classes).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::data::add_data;
use super::{Entries, Policy, PolicyError};

/// The files of the default ML allowlist, as `(family, text)`.
pub const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[
    ("builtins", include_str!("../../policies/builtins.txt")),
    ("numpy", include_str!("../../policies/numpy.txt")),
    ("torch", include_str!("../../policies/torch.txt")),
    ("sklearn", include_str!("../../policies/sklearn.txt")),
    ("joblib", include_str!("../../policies/joblib.txt")),
    ("pandas", include_str!("../../policies/pandas.txt")),
    ("scipy", include_str!("../../policies/scipy.txt")),
    ("transformers", include_str!("../../policies/transformers.txt")),
    ("calls", include_str!("../../policies/calls.txt")),
];

/// Named policies beyond the default: each is the default plus the entries of its file.
pub const NAMED_POLICY_FILES: &[(&str, &str)] = &[
    ("xgboost", include_str!("../../policies/xgboost.txt")),
    ("lightgbm", include_str!("../../policies/lightgbm.txt")),
    ("catboost", include_str!("../../policies/catboost.txt")),
];

/// The names [`Policy::named`] accepts, aliases aside.
const NAMED_POLICIES: &[&str] = &["default", "empty", "xgboost", "lightgbm", "catboost"];

impl Policy {
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
}
