//! User policy files: a TOML policy (a base policy, entries with roles, EXT codes, the
//! `allow_dangerous` opt-in) read into a [`Policy`], with the error's line and column.

use std::fmt;

use serde::Deserialize;

use super::data::{parse_entry, parse_user_entry};
use super::roles::parse_role;
use super::{Policy, PolicyError};

/// Valid `copyreg` extension codes (`copyreg.add_extension` accepts `1..=0x7fffffff`).
const EXT_CODE_RANGE: std::ops::RangeInclusive<i64> = 1..=0x7fff_ffff;

/// A TOML error with its position, as [`PolicyError::Toml`] prints it.
pub(super) struct TomlLocation<'a>(
    pub(super) Option<usize>,
    pub(super) Option<usize>,
    pub(super) &'a str,
);

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
}
