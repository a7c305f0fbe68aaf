//! Known-dangerous imports: why a `(module, name)` reaches code execution, the system,
//! imports, attribute lookup or nested unpickling ([`danger_reason`]).
//!
//! The families are data (`policies/danger.txt`, compiled in and parsed once), beside the
//! allowlist; this file holds only the parser and the rules that walk dotted names. The
//! verdicts are used for severity, messages and refusing user entries without
//! `allow_dangerous`: they never allow anything.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::data::dotted_problem;

/// The shipped danger families.
pub const DANGER_FILE: &str = include_str!("../../policies/danger.txt");

/// The reason of a dotted name through a special attribute (`f.__globals__`).
const DOTTED_REASON: &str = "$DOTTED";
/// The reason of a traversal module that has no module or builtins line of its own.
const TRAVERSAL_REASON: &str = "$INTERP";
/// Only for a data file with a missing reason (the tests require none): the rule is kept,
/// so a mistake in the file can only make a verdict vaguer, never lose it.
const UNKNOWN_REASON: &str = "is on picklefence's list of dangerous imports";

/// The parsed danger families. Every string borrows from the `'static` file text, so
/// [`danger_reason`] hands out `&'static str` without allocating.
#[derive(Debug, Default)]
struct Danger {
    /// Modules (and their submodules) every attribute of which is dangerous, in file order:
    /// the first match wins.
    modules: Vec<(&'static str, &'static str)>,
    /// Submodules of a dangerous module that are not dangerous themselves.
    safe: Vec<&'static str>,
    /// Module -> name -> reason.
    names: HashMap<&'static str, HashMap<&'static str, &'static str>>,
    /// Names dangerous in whatever module holds them.
    anywhere: HashMap<&'static str, &'static str>,
    /// Top-level modules a dotted name may walk into.
    traversal: Vec<&'static str>,
    /// The traversal modules that also count inside a module path.
    traversal_in_module_path: Vec<&'static str>,
    dotted: &'static str,
    interp: &'static str,
}

/// A line of the danger file that does not parse (the tests require none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineError {
    line: usize,
    message: String,
}

/// One identifier, no dots (`anywhere` and `traversal` subjects).
fn plain_name_problem(name: &str) -> Option<&'static str> {
    if name.contains('.') {
        return Some("it must be a single name, without dots");
    }
    dotted_problem(name)
}

/// Parses the danger file: the families and every line that does not parse. A line that does
/// not parse is skipped; one whose `$NAME` is unknown keeps its rule with a generic reason.
fn parse(text: &'static str) -> (Danger, Vec<LineError>) {
    let mut errors = Vec::new();
    // (line, kind, subject, rest) of every rule; reasons first, so rules may name any.
    let mut rules = Vec::new();
    let mut reasons: HashMap<&'static str, &'static str> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let body = raw.split_once('#').map_or(raw, |(body, _)| body).trim();
        if body.is_empty() {
            continue;
        }
        let (kind, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let (subject, rest) = rest
            .trim()
            .split_once(char::is_whitespace)
            .map_or((rest.trim(), ""), |(subject, rest)| (subject, rest.trim()));
        if subject.is_empty() {
            errors.push(LineError {
                line,
                message: format!("{kind:?} has no subject"),
            });
        } else if kind == "reason" {
            if rest.is_empty() || rest.starts_with('$') {
                errors.push(LineError {
                    line,
                    message: format!("reason {subject} has no phrase"),
                });
            } else if reasons.contains_key(subject) {
                errors.push(LineError {
                    line,
                    message: format!("reason {subject} is defined twice"),
                });
            } else {
                reasons.insert(subject, rest);
            }
        } else {
            rules.push((line, kind, subject, rest));
        }
    }

    let mut danger = Danger::default();
    for (line, kind, subject, rest) in rules {
        let mut problems = Vec::new();
        add_rule(&mut danger, &reasons, (kind, subject, rest), &mut problems);
        errors.extend(problems.into_iter().map(|message| LineError { line, message }));
    }
    // Line 0: the reasons the code itself uses.
    let mut problems = Vec::new();
    danger.dotted = resolve(&reasons, DOTTED_REASON, &mut problems);
    danger.interp = resolve(&reasons, TRAVERSAL_REASON, &mut problems);
    errors.extend(problems.into_iter().map(|message| LineError { line: 0, message }));
    errors.sort_by_key(|error| error.line);
    (danger, errors)
}

/// The phrase of a reason: itself, or the phrase of the `reason` line `$NAME` names.
fn resolve(
    reasons: &HashMap<&'static str, &'static str>,
    reason: &'static str,
    problems: &mut Vec<String>,
) -> &'static str {
    match reason.strip_prefix('$') {
        None => reason,
        Some(key) => reasons.get(key).copied().unwrap_or_else(|| {
            problems.push(format!("unknown reason ${key}"));
            UNKNOWN_REASON
        }),
    }
}

/// Adds one rule line (`kind subject rest`) to the tables, or says why it does not parse.
fn add_rule(
    danger: &mut Danger,
    reasons: &HashMap<&'static str, &'static str>,
    (kind, subject, rest): (&'static str, &'static str, &'static str),
    problems: &mut Vec<String>,
) {
    let takes_reason = matches!(kind, "module" | "name" | "anywhere");
    if takes_reason && rest.is_empty() {
        problems.push(format!("{kind} {subject} has no reason"));
        return;
    }
    if !takes_reason && !rest.is_empty() {
        problems.push(format!("{kind} {subject} takes no reason, found {rest:?}"));
        return;
    }
    match kind {
        "module" | "safe" => {
            if let Some(why) = dotted_problem(subject) {
                problems.push(format!("bad module {subject:?}: {why}"));
            } else if kind == "module" {
                let reason = resolve(reasons, rest, problems);
                danger.modules.push((subject, reason));
            } else {
                danger.safe.push(subject);
            }
        }
        "name" => {
            let Some((module, name)) = subject.split_once(':') else {
                problems.push(format!("name {subject:?} is not MODULE:NAME"));
                return;
            };
            if let Some(why) = dotted_problem(module).or_else(|| dotted_problem(name)) {
                problems.push(format!("bad name {subject:?}: {why}"));
                return;
            }
            let reason = resolve(reasons, rest, problems);
            let names = danger.names.entry(module).or_default();
            if names.contains_key(name) {
                problems.push(format!("name {subject} is listed twice"));
            } else {
                names.insert(name, reason);
            }
        }
        "anywhere" => {
            if let Some(why) = plain_name_problem(subject) {
                problems.push(format!("bad name {subject:?}: {why}"));
            } else if danger.anywhere.contains_key(subject) {
                problems.push(format!("anywhere {subject} is listed twice"));
            } else {
                let reason = resolve(reasons, rest, problems);
                danger.anywhere.insert(subject, reason);
            }
        }
        "traversal" | "traversal-in-module-path" => {
            if let Some(why) = plain_name_problem(subject) {
                problems.push(format!("bad module {subject:?}: {why}"));
            } else if kind == "traversal" {
                danger.traversal.push(subject);
            } else {
                danger.traversal_in_module_path.push(subject);
            }
        }
        _ => problems.push(format!("unknown kind {kind:?}")),
    }
}

/// The shipped families, parsed once. A line that does not parse is skipped (the tests
/// require every line to parse).
fn danger() -> &'static Danger {
    static DANGER: OnceLock<Danger> = OnceLock::new();
    DANGER.get_or_init(|| parse(DANGER_FILE).0)
}

fn in_module(module: &str, prefix: &str) -> bool {
    module == prefix
        || module
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

impl Danger {
    fn module_reason(&self, module: &str) -> Option<&'static str> {
        if self.safe.iter().any(|safe| in_module(module, safe)) {
            return None;
        }
        self.modules
            .iter()
            .find(|(prefix, _)| in_module(module, prefix))
            .map(|&(_, reason)| reason)
    }

    fn name_reason(&self, module: &str, name: &str) -> Option<&'static str> {
        self.names.get(module).and_then(|names| names.get(name)).copied()
    }

    fn anywhere_reason(&self, name: &str) -> Option<&'static str> {
        self.anywhere.get(name).copied()
    }

    fn traversal_reason(&self, component: &str) -> Option<&'static str> {
        self.traversal
            .contains(&component)
            .then(|| {
                self.module_reason(component)
                    .or_else(|| self.name_reason("builtins", component))
            })
            .map(|reason| reason.unwrap_or(self.interp))
    }

    fn judge(&self, module: &str, name: &str) -> Option<&'static str> {
        if let Some(reason) = self
            .name_reason(module, name)
            .or_else(|| self.module_reason(module))
        {
            return Some(reason);
        }
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 1 {
            // `module:a.b.c` walks module.a, module.a.b...: judge each step as module + name.
            let mut walked = module.to_string();
            if let Some(reason) = parts.first().and_then(|first| self.name_reason(module, first)) {
                return Some(reason);
            }
            for pair in parts.windows(2) {
                if let [part, next] = pair {
                    walked.push('.');
                    walked.push_str(part);
                    if let Some(reason) = self
                        .name_reason(&walked, next)
                        .or_else(|| self.module_reason(&walked))
                    {
                        return Some(reason);
                    }
                }
            }
            // Special attributes (`f.__globals__`, `Cls.__init__`, `x.__class__`).
            if parts
                .iter()
                .any(|part| part.len() > 4 && part.starts_with("__") && part.ends_with("__"))
            {
                return Some(self.dotted);
            }
        }
        // A dangerous top-level module reached inside a longer path (`a:os.system`). Inside the
        // module path only the unambiguous ones count: submodules called `_pickle` or `code`
        // are common and harmless (`numpy.random._pickle`).
        module
            .split('.')
            .skip(1)
            .filter(|part| self.traversal_in_module_path.contains(part))
            .chain(parts.iter().copied())
            .find_map(|component| self.traversal_reason(component))
            .or_else(|| parts.iter().copied().find_map(|part| self.anywhere_reason(part)))
    }
}

/// Why importing `module` + `name` is known to be dangerous: a short verb phrase ("runs
/// shell commands", "evaluates Python code", "loads a nested pickle"), or `None` when it is
/// merely unknown. Used only for severity and messages; it never allows anything.
///
/// Whole modules match by prefix (`os`, `subprocess`, `ctypes.*`), others by exact name;
/// Python 2 spellings are judged as CPython would import them (`__builtin__.eval`). The
/// families are the data file `policies/danger.txt`.
pub fn danger_reason(module: &str, name: &str) -> Option<&'static str> {
    let danger = danger();
    danger.judge(module, name).or_else(|| {
        let (mapped_module, mapped_name) = crate::compat::map_python2_import(module, name);
        if mapped_module == module && mapped_name == name {
            None
        } else {
            danger.judge(&mapped_module, &mapped_name)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `danger_reason` for a set of names before the families became data, generated from the
    /// old compiled-in tables: every module, name and reason they held, the same walked into
    /// dotted names, submodules and look-alikes, every allowlist entry and every Python 2
    /// spelling. `MODULE<TAB>NAME<TAB>REASON`, `-` when not dangerous.
    const VERDICTS: &str = include_str!("../../tests/data/danger_verdicts.txt");

    #[test]
    fn every_line_of_the_shipped_file_parses() {
        let (danger, errors) = parse(DANGER_FILE);
        assert_eq!(errors, Vec::new());
        assert_eq!(danger.dotted, "reaches special attributes through a dotted name");
        assert_eq!(danger.interp, "reaches the interpreter's internal state");
        assert!(danger.modules.len() > 100 && danger.names.len() > 20 && danger.anywhere.len() > 10);
    }

    #[test]
    fn verdicts_and_messages_are_those_of_the_old_tables() {
        let mut checked = 0;
        let mut changed = Vec::new();
        for line in VERDICTS.lines().filter(|line| !line.starts_with('#')) {
            let mut fields = line.split('\t');
            let (module, name, expected) = match (fields.next(), fields.next(), fields.next(), fields.next())
            {
                (Some(module), Some(name), Some(expected), None) => (module, name, expected),
                _ => {
                    changed.push(format!("malformed verdict line {line:?}"));
                    continue;
                }
            };
            let expected = (expected != "-").then_some(expected);
            let got = danger_reason(module, name);
            if got != expected {
                changed.push(format!("{module}:{name}: {expected:?} -> {got:?}"));
            }
            checked += 1;
        }
        assert!(checked > 10_000, "{checked}");
        assert!(
            changed.is_empty(),
            "{} changed:\n{}",
            changed.len(),
            changed.join("\n")
        );
    }

    #[test]
    fn malformed_lines_are_reported() {
        let text = "reason A  does a\nreason A  again\nmodule os $B\nname os  $A\nanywhere a.b  $A\n\
                    frobnicate x\nsafe torch  extra\nreason C\nmodule  \nname os:sys.x  $A\n\
                    traversal 1os\n";
        let (danger, errors) = parse(text);
        let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
        // Line 0: the file does not define DOTTED and INTERP.
        assert_eq!(lines, vec![0, 0, 2, 3, 4, 5, 6, 7, 8, 9, 11], "{errors:?}");
        // The rule with an unknown reason is kept, with the generic reason.
        assert_eq!(danger.module_reason("os.path"), Some(UNKNOWN_REASON));
        assert_eq!(danger.name_reason("os", "sys.x"), Some("does a"));
    }
}
