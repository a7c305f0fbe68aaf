//! The compiled classes of the policy and what is done about their state (validate at load
//! time, or safe with the reason): data (`policies/native_state.txt`), parsed once. It sits with
//! the policy because the analyzer reads it while judging imports, and the checks themselves
//! (`crate::native_state`) read the analyzer's joblib layout: here neither depends on the other.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../../policies/native_state.txt");

/// What picklefence does about a compiled class's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The guard checks every instance a load makes.
    Validate,
    /// Nothing to check (the reason is in the data).
    Safe,
}

/// One line of the data: `MODULE:NAME` (`NAME` may be `*`: every class of the module), the
/// verdict, and what is checked or why nothing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The module.
    pub module: &'static str,
    /// The class, or `*`.
    pub name: &'static str,
    /// Validate or safe.
    pub verdict: Verdict,
    /// What is checked, or why nothing is.
    pub reason: &'static str,
}

fn parse(line: &'static str) -> Option<Entry> {
    let (qualified, rest) = line.split_once(char::is_whitespace)?;
    let (module, name) = qualified.split_once(':')?;
    let (verdict, reason) = rest.trim_start().split_once(char::is_whitespace)?;
    let verdict = match verdict {
        "validate" => Verdict::Validate,
        "safe" => Verdict::Safe,
        _ => return None,
    };
    Some(Entry {
        module,
        name,
        verdict,
        reason: reason.trim(),
    })
}

fn table() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let mut entries: Vec<Entry> = TABLE
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse)
            .collect();
        entries.sort_unstable_by_key(|e| (e.module, e.name));
        entries
    })
}

fn validated() -> &'static HashMap<(&'static str, &'static str), &'static str> {
    static VALIDATED: OnceLock<HashMap<(&'static str, &'static str), &'static str>> = OnceLock::new();
    VALIDATED.get_or_init(|| {
        table()
            .iter()
            .filter(|e| e.verdict == Verdict::Validate)
            .map(|e| ((e.module, e.name), e.reason))
            .collect()
    })
}

/// What the guard checks in the state of `module.name` after a load, if it is such a class.
pub fn load_time_check(module: &str, name: &str) -> Option<&'static str> {
    validated().get(&(module, name)).copied()
}

/// Every line of the data, sorted by name.
pub fn entries() -> &'static [Entry] {
    table()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_line_parses() {
        let lines = TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(entries().len(), lines);
        assert!(load_time_check("sklearn.tree._tree", "Tree").is_some());
        assert!(load_time_check("pandas._libs.sparse", "IntIndex").is_none());
        assert!(load_time_check("builtins", "dict").is_none());
    }

    #[test]
    fn every_listed_class_is_on_the_default_policy_or_a_named_one() {
        let mut policies = vec![crate::Policy::default()];
        for name in crate::Policy::named_policies() {
            policies.extend(crate::Policy::named(name).ok());
        }
        for e in entries()
            .iter()
            .filter(|e| e.name != "*" && e.module != "torch._utils")
        {
            assert!(
                policies.iter().any(|p| p.roles(e.module, e.name).is_some()),
                "{}:{} is not allowed",
                e.module,
                e.name
            );
        }
    }
}
