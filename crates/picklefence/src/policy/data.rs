//! Policy data files and user entries: the line format of `policies/*.txt`
//! (`module:qualified.name ROLE  # reason`) and the `module.name[=ROLE]` entries a user adds,
//! with the checks that a name is a plausible Python module or attribute path.

use super::roles::parse_role;
use super::{Entries, PolicyError, Roles};

/// One line of a policy data file: an entry and one of its roles.
#[derive(Debug, Clone)]
pub struct DataLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// The module, as `find_class` receives it.
    pub module: String,
    /// The qualified name inside the module (`Outer.Inner` for a nested class).
    pub name: String,
    /// The role this line gives the entry (the comment of a `call` line is its reason).
    pub roles: Roles,
}

/// Why a line of a policy data file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct DataError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with the line.
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
pub(super) fn add_data(allowed: &mut Entries, text: &str) {
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
pub(super) fn dotted_problem(part: &str) -> Option<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
