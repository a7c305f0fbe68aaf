//! `picklefence policy suggest FILES...`: the smallest additions to a base policy under which
//! trusted files scan clean, each name with the narrowest role that clears it (tried in order:
//! value, argument, reconstruct, then any use), checked by scanning the files again. Names in
//! a danger family are never suggested; they are listed, with why, as comments.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use picklefence::{danger_reason, scan_path, Policy, ScanOptions, ScanReport};

use crate::cli::SuggestArgs;
use crate::policy_cmd::{entry_text, load};
use crate::{finish, usage_error, Io, EXIT_CLEAN, EXIT_UNSAFE};

/// Roles tried for a name, narrowest first; `None` is any use (a bare entry: trusted).
const ROLES: [Option<&str>; 4] = [Some("value"), Some("argument"), Some("reconstruct"), None];

pub fn run(args: &SuggestArgs, io: &mut Io<'_>) -> i32 {
    // The TOML written names its base: a named policy (with the --allow entries given).
    let base_name = args.policy.policy.clone().unwrap_or_else(|| "default".into());
    if Policy::named(&base_name).is_err() {
        let known = Policy::named_policies().join(", ");
        return usage_error(
            io,
            &format!("policy suggest extends a named policy ({known}), not {base_name:?}"),
        );
    }
    let base = match load(&args.policy) {
        Ok(policy) => policy,
        Err(message) => return usage_error(io, &message),
    };
    let scan_all = |policy: &Policy| -> Result<Vec<(PathBuf, ScanReport)>, String> {
        args.files
            .iter()
            .map(|path| {
                scan_path(path, policy, &ScanOptions::default())
                    .map(|report| (path.clone(), report))
                    .map_err(|e| e.to_string())
            })
            .collect()
    };
    let mut reports = match scan_all(&base) {
        Ok(reports) => reports,
        Err(message) => return usage_error(io, &message),
    };
    let mut added: Vec<String> = args.policy.allow.clone();
    let mut dangerous: BTreeMap<(String, String), (&'static str, Vec<String>)> = BTreeMap::new();
    let mut policy = base.clone();
    // Each pass clears one name; a file can need more once an earlier finding is cleared.
    for _ in 0..256 {
        let Some((module, name)) = next_name(&reports, &dangerous) else {
            break;
        };
        if let Some(reason) = danger_reason(&module, &name) {
            let files = files_naming(&reports, &module, &name);
            dangerous.insert((module, name), (reason, files));
            continue;
        }
        let entry = entry_text(&module, &name);
        let mut chosen = None;
        for role in ROLES {
            let line = match role {
                Some(role) => format!("{entry}={role}"),
                None => entry.clone(),
            };
            let Ok(candidate) = policy.extend([line.as_str()], false) else {
                continue;
            };
            let Ok(rescanned) = scan_all(&candidate) else {
                continue;
            };
            if files_naming(&rescanned, &module, &name).is_empty() {
                chosen = Some((line, candidate, rescanned));
                break;
            }
        }
        match chosen {
            Some((line, candidate, rescanned)) => {
                added.push(line);
                policy = candidate;
                reports = rescanned;
            }
            None => {
                let files = files_naming(&reports, &module, &name);
                dangerous.insert(
                    (module, name),
                    ("no role clears it (its use breaks a state rule)", files),
                );
            }
        }
    }
    let unsafe_files: Vec<&PathBuf> = reports
        .iter()
        .filter(|(_, r)| !r.is_safe())
        .map(|(p, _)| p)
        .collect();
    let written = write_toml(io.out, args, &base_name, &added, &dangerous, &unsafe_files);
    finish(
        if unsafe_files.is_empty() {
            EXIT_CLEAN
        } else {
            EXIT_UNSAFE
        },
        written,
        io,
    )
}

/// The first name a violation of some report involves that is not set aside yet.
fn next_name(
    reports: &[(PathBuf, ScanReport)],
    set_aside: &BTreeMap<(String, String), (&'static str, Vec<String>)>,
) -> Option<(String, String)> {
    reports.iter().flat_map(|(_, r)| &r.findings).find_map(|located| {
        let finding = &located.finding;
        let import = finding.import.as_ref().filter(|_| finding.is_violation())?;
        let key = (import.module.to_string(), import.name.to_string());
        (!set_aside.contains_key(&key)).then_some(key)
    })
}

/// The files whose violations involve `module.name`.
fn files_naming(reports: &[(PathBuf, ScanReport)], module: &str, name: &str) -> Vec<String> {
    reports
        .iter()
        .filter(|(_, report)| {
            report.findings.iter().any(|located| {
                located.finding.is_violation()
                    && located
                        .finding
                        .import
                        .as_ref()
                        .is_some_and(|i| &*i.module == module && &*i.name == name)
            })
        })
        .map(|(path, _)| path.to_string_lossy().into_owned())
        .collect()
}

fn write_toml(
    w: &mut dyn Write,
    args: &SuggestArgs,
    base: &str,
    added: &[String],
    set_aside: &BTreeMap<(String, String), (&'static str, Vec<String>)>,
    unsafe_files: &[&PathBuf],
) -> io::Result<()> {
    let files: Vec<String> = args
        .files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    writeln!(w, "# picklefence policy suggested for: {}", files.join(", "))?;
    writeln!(
        w,
        "# each name with the narrowest role under which these files scan clean"
    )?;
    let toml_string = |text: &str| serde_json::to_string(text).unwrap_or_default();
    writeln!(w, "base = {}", toml_string(base))?;
    if added.is_empty() {
        writeln!(w, "allow = []")?;
    } else {
        writeln!(w, "allow = [")?;
        for line in added {
            writeln!(w, "    {},", toml_string(line))?;
        }
        writeln!(w, "]")?;
    }
    if !set_aside.is_empty() {
        writeln!(
            w,
            "# not suggested: these names would let the files run code or reach the system"
        )?;
        for ((module, name), (reason, files)) in set_aside {
            writeln!(
                w,
                "#   {}: {reason} (in {})",
                entry_text(module, name),
                files.join(", ")
            )?;
        }
    }
    if !unsafe_files.is_empty() {
        let names: Vec<String> = unsafe_files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        writeln!(w, "# still unsafe under this policy: {}", names.join(", "))?;
    }
    Ok(())
}
