//! Small pieces every output format shares.

use picklefence::{danger_reason, Import};

/// `file` for the file itself, `file!member` for a member of a container.
pub fn location(display: &str, member: &str) -> String {
    if member.is_empty() {
        display.to_string()
    } else {
        format!("{display}!{member}")
    }
}

/// What an import names: `module.name`, `ext:CODE`, or `<unresolvable>`.
pub fn import_label(import: &Import) -> String {
    match (&import.target, import.ext_code) {
        (Some(target), _) => target.to_string(),
        (None, Some(code)) => format!("ext:{code}"),
        (None, None) => "<unresolvable>".to_string(),
    }
}

/// Why an import is blocked (`None` when allowed).
pub fn block_reason(import: &Import) -> Option<String> {
    if import.allowed {
        return None;
    }
    Some(match (&import.target, import.ext_code) {
        (Some(target), _) => match danger_reason(&target.module, &target.name) {
            Some(reason) => reason.to_string(),
            None => "not on the allowlist".to_string(),
        },
        (None, Some(code)) => format!("extension code {code} is not on the allowlist"),
        (None, None) => "cannot be resolved statically".to_string(),
    })
}

/// `allowed` or `BLOCKED: reason`.
pub fn import_verdict(import: &Import) -> String {
    match block_reason(import) {
        None => "allowed".to_string(),
        Some(reason) => format!("BLOCKED: {reason}"),
    }
}

/// `1 file`, `2 files`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}
