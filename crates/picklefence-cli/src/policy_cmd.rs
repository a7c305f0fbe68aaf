//! Building the effective policy from `--policy`/`--allow`, and `picklefence policy`.

use std::io::{self, Write};

use picklefence::Policy;
use serde_json::json;

use crate::cli::{ListFormat, PolicyArgs, PolicyOpts};
use crate::render::plural;
use crate::{finish, usage_error, Io, EXIT_CLEAN};

/// The policy the options ask for: a named policy, else a TOML file; then `--allow` entries.
pub fn load(opts: &PolicyOpts) -> Result<Policy, String> {
    let base = match opts.policy.as_deref() {
        None => Policy::default(),
        Some(value) => match Policy::named(value) {
            Ok(policy) => policy,
            Err(_) => from_file(value)?,
        },
    };
    base.extend(&opts.allow, opts.allow_dangerous)
        .map_err(|e| format!("--allow: {e}"))
}

fn from_file(path: &str) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "--policy {path}: not a named policy ({}) and cannot read it as a policy file: {e}",
            Policy::named_policies().join(", ")
        )
    })?;
    Policy::from_toml_str(&text).map_err(|e| format!("--policy {path}: {e}"))
}

/// How an entry is written so that `--allow` reads it back as the same pair: `module.name`,
/// or `module:qual.name` when the name itself has a dot.
pub fn entry_text(module: &str, name: &str) -> String {
    if name.contains('.') {
        format!("{module}:{name}")
    } else {
        format!("{module}.{name}")
    }
}

pub fn run(args: &PolicyArgs, io: &mut Io<'_>) -> i32 {
    if let Some(crate::cli::PolicyAction::Suggest(suggest)) = &args.action {
        return crate::suggest::run(suggest, io);
    }
    if args.list {
        let written = write_list(io.out, args.format);
        return finish(EXIT_CLEAN, written, io);
    }
    let policy = match load(&args.policy) {
        Ok(policy) => policy,
        Err(message) => return usage_error(io, &message),
    };
    let written = write_policy(io.out, &policy, args.format);
    finish(EXIT_CLEAN, written, io)
}

fn write_list(w: &mut dyn Write, format: ListFormat) -> io::Result<()> {
    let names = Policy::named_policies();
    match format {
        ListFormat::Text => {
            for name in names {
                writeln!(w, "{name}")?;
            }
            Ok(())
        }
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *w, &json!({ "named_policies": names }))?;
            writeln!(w)
        }
    }
}

fn write_policy(w: &mut dyn Write, policy: &Policy, format: ListFormat) -> io::Result<()> {
    let entries = policy.entries_with_roles();
    let mut lines: Vec<String> = entries
        .iter()
        .flat_map(|(module, name, roles)| {
            let entry = entry_text(module, name);
            roles
                .lines()
                .into_iter()
                .map(move |role| format!("{entry}={role}"))
        })
        .collect();
    lines.sort();
    let codes = policy.ext_codes();
    match format {
        ListFormat::Text => {
            writeln!(
                w,
                "# policy {}: {} allowed, {}",
                policy.name(),
                plural(entries.len(), "import", "imports"),
                plural(codes.len(), "extension code", "extension codes")
            )?;
            for line in &lines {
                writeln!(w, "{line}")?;
            }
            for code in &codes {
                writeln!(w, "ext:{code}")?;
            }
            Ok(())
        }
        ListFormat::Json => {
            let entries: Vec<_> = entries
                .into_iter()
                .map(|(module, name, roles)| {
                    let reasons: Vec<&str> = roles.call.iter().map(|c| c.reason.as_str()).collect();
                    json!({
                        "entry": entry_text(&module, &name),
                        "module": module,
                        "name": name,
                        "roles": roles.lines(),
                        "call_reason": reasons.first(),
                    })
                })
                .collect();
            let document = json!({
                "policy": policy.name(),
                "entries": entries,
                "ext_codes": codes,
            });
            serde_json::to_writer_pretty(&mut *w, &document)?;
            writeln!(w)
        }
    }
}
