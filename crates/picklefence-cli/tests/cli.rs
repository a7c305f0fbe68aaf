//! End-to-end tests of the `picklefence` binary: snapshots of every output format and the
//! exit codes.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // Test code: failing loudly is the point.

mod common;

use common::{Sandbox, CLEAN, CUSTOM, OBFUSCATED, REDUCE, STACK_GLOBAL, TRUNCATED};
use insta::assert_snapshot;
use picklefence_cli::{EXIT_CLEAN, EXIT_ERROR, EXIT_UNSAFE};

fn sandbox_with(files: &[(&str, &[u8])]) -> Sandbox {
    let sandbox = Sandbox::new();
    for (name, bytes) in files {
        sandbox.write(name, bytes);
    }
    sandbox
}

// ---- scan, text ----

#[test]
fn scan_text_clean() {
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    let out = sandbox.run(&["scan", "clean.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_eq!(out.stderr, "");
    assert_snapshot!(out.stdout);
}

#[test]
fn info_findings_show_only_with_verbose() {
    // A persistent id: an info finding (the loader decides what it becomes).
    let persistent: &[u8] = b"\x80\x02X\x01\x00\x00\x00aQ.";
    let sandbox = sandbox_with(&[("pid.pkl", persistent)]);
    let quiet = sandbox.run(&["scan", "pid.pkl"]);
    assert_eq!(quiet.code, EXIT_CLEAN);
    assert!(!quiet.stdout.contains("[info]"), "{}", quiet.stdout);
    let verbose = sandbox.run(&["scan", "-v", "pid.pkl"]);
    assert_eq!(verbose.code, EXIT_CLEAN);
    assert!(
        verbose.stdout.contains("[info] persistent-id"),
        "{}",
        verbose.stdout
    );
    let json = sandbox.run(&["scan", "--format", "json", "pid.pkl"]);
    assert!(json.stdout.contains("persistent-id"), "{}", json.stdout);
}

#[test]
fn policy_suggest_writes_the_narrowest_roles_and_never_a_dangerous_name() {
    // A custom class made by NEWOBJ and given one BUILD of plain state.
    let custom: &[u8] = b"\x80\x02cmypkg.models\nNet\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00wK\x01sb.";
    let sandbox = sandbox_with(&[("net.pkl", custom), ("evil.pkl", REDUCE)]);
    let out = sandbox.run(&["policy", "suggest", "net.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN, "{}", out.stderr);
    assert!(
        out.stdout.contains("\"mypkg.models.Net=reconstruct\","),
        "{}",
        out.stdout
    );
    std::fs::write(sandbox.path().join("suggested.toml"), &out.stdout).unwrap();
    let rescan = sandbox.run(&["scan", "--policy", "./suggested.toml", "net.pkl"]);
    assert_eq!(rescan.code, EXIT_CLEAN, "{}", rescan.stdout);

    let both = sandbox.run(&["policy", "suggest", "net.pkl", "evil.pkl"]);
    assert_eq!(both.code, EXIT_UNSAFE);
    assert!(both.stdout.contains("#   os.system: "), "{}", both.stdout);
    assert!(
        both.stdout.contains("# still unsafe under this policy: evil.pkl"),
        "{}",
        both.stdout
    );
    assert!(!both.stdout.contains("\"os.system"), "{}", both.stdout);

    let from_file = sandbox.run(&["policy", "suggest", "--policy", "./suggested.toml", "net.pkl"]);
    assert_eq!(from_file.code, 2);
}

#[test]
fn scan_text_reduce() {
    let sandbox = sandbox_with(&[("reduce.pkl", REDUCE)]);
    let out = sandbox.run(&["scan", "reduce.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_text_stack_global() {
    let sandbox = sandbox_with(&[("stack_global.pkl", STACK_GLOBAL), ("obfuscated.pkl", OBFUSCATED)]);
    let out = sandbox.run(&["scan", "stack_global.pkl", "obfuscated.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_text_truncated() {
    let sandbox = sandbox_with(&[("truncated.pkl", TRUNCATED)]);
    let out = sandbox.run(&["scan", "truncated.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_text_directory() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let out = sandbox.run(&["scan", "models"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_eq!(out.stderr, "");
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_text_show_imports() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let out = sandbox.run(&["scan", "--show-imports", "models"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_text_quiet_lists_only_problems() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let out = sandbox.run(&["scan", "--quiet", "models", "missing.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_quiet_prints_nothing_when_all_clean() {
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    let out = sandbox.run(&["scan", "-q", "clean.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_eq!(out.stdout, "");
}

// ---- scan, JSON and SARIF ----

#[test]
fn scan_json_directory() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let out = sandbox.run(&[
        "scan",
        "--format",
        "json",
        "--show-imports",
        "models",
        "missing.pkl",
    ]);
    assert_eq!(out.code, EXIT_UNSAFE);
    // Machine formats never draw progress or notes on stderr.
    assert_eq!(out.stderr, "");
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(parsed["exit_code"], EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_jsonl_is_the_documents_files_one_per_line() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let args = ["models", "missing.pkl", "--show-imports"];
    let lines = sandbox.run(&[&["scan", "--format", "jsonl"], &args[..]].concat());
    let document = sandbox.run(&[&["scan", "--format", "json"], &args[..]].concat());
    assert_eq!(lines.code, EXIT_UNSAFE);
    assert_eq!(lines.code, document.code);
    assert_eq!(lines.stderr, "");
    let parsed: serde_json::Value = serde_json::from_str(&document.stdout).expect("valid JSON");
    let objects: Vec<serde_json::Value> = lines
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(parsed["files"].as_array().expect("files"), &objects);
    assert!(objects.len() >= 3);
}

#[test]
fn scan_sarif_directory() {
    let sandbox = Sandbox::new();
    sandbox.example_tree();
    let out = sandbox.run(&["scan", "--format", "sarif", "models", "missing.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_eq!(out.stderr, "");
    assert_snapshot!(out.stdout);
}

#[test]
fn scan_sarif_clean_has_no_results() {
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    let out = sandbox.run(&["scan", "--format", "sarif", "clean.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN);
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(sarif["runs"][0]["results"], serde_json::json!([]));
    assert_eq!(sarif["runs"][0]["invocations"][0]["executionSuccessful"], true);
}

// ---- exit codes ----

#[test]
fn exit_0_when_everything_is_clean() {
    let sandbox = sandbox_with(&[("a.pkl", CLEAN), ("d/b.pkl", CLEAN)]);
    assert_eq!(sandbox.run(&["scan", "a.pkl", "d"]).code, EXIT_CLEAN);
}

#[test]
fn exit_1_when_anything_is_unsafe() {
    let sandbox = sandbox_with(&[("a.pkl", CLEAN), ("b.pkl", REDUCE)]);
    assert_eq!(sandbox.run(&["scan", "a.pkl", "b.pkl"]).code, EXIT_UNSAFE);
    assert_eq!(
        sandbox.run(&["scan", "--format", "json", "b.pkl"]).code,
        EXIT_UNSAFE
    );
    assert_eq!(
        sandbox.run(&["scan", "--format", "sarif", "b.pkl"]).code,
        EXIT_UNSAFE
    );
}

#[test]
fn exit_2_when_a_file_cannot_be_read_and_nothing_is_unsafe() {
    let sandbox = sandbox_with(&[("a.pkl", CLEAN)]);
    let out = sandbox.run(&["scan", "a.pkl", "missing.pkl"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(
        out.stdout.contains("ERROR    missing.pkl: cannot read:"),
        "{}",
        out.stdout
    );
}

#[test]
fn unsafe_wins_over_read_errors() {
    let sandbox = sandbox_with(&[("b.pkl", REDUCE)]);
    let out = sandbox.run(&["scan", "missing.pkl", "b.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert!(out.stdout.contains("missing.pkl"), "{}", out.stdout);
}

#[test]
fn usage_errors_exit_2_and_scan_nothing() {
    let sandbox = sandbox_with(&[("b.pkl", REDUCE)]);
    for args in [
        vec!["scan", "--no-such-flag", "b.pkl"],
        vec!["scan"],
        vec!["scan", "--format", "xml", "b.pkl"],
        vec!["scan", "--allow", "nodot", "b.pkl"],
        vec!["scan", "--policy", "no-such-policy.toml", "b.pkl"],
        vec!["scan", "--jobs", "0", "b.pkl"],
        vec!["frobnicate"],
    ] {
        let out = sandbox.run(&args);
        assert_eq!(out.code, EXIT_ERROR, "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn usage_error_messages_name_the_problem() {
    let sandbox = sandbox_with(&[("b.pkl", REDUCE)]);
    let out = sandbox.run(&["scan", "--allow", "nodot", "b.pkl"]);
    assert_snapshot!("usage_error_allow", out.stderr);
    let out = sandbox.run(&["scan", "--policy", "nope.toml", "b.pkl"]);
    assert!(out.stderr.contains("--policy nope.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("xgboost"), "{}", out.stderr);
}

#[test]
fn help_and_version_exit_0() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["--version"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_eq!(out.stdout, "picklefence [VERSION]\n");
    let out = sandbox.run(&["scan", "--help"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_snapshot!("scan_help", out.stdout);
}

// ---- policies ----

#[test]
fn allow_makes_an_import_acceptable() {
    let sandbox = sandbox_with(&[("custom.pkl", CUSTOM)]);
    let out = sandbox.run(&["scan", "custom.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert!(out.stdout.contains("disallowed-import"), "{}", out.stdout);
    let out = sandbox.run(&["scan", "--allow", "mypkg.Model", "custom.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN, "{}", out.stdout);
    let out = sandbox.run(&[
        "scan",
        "--allow",
        "mypkg:Model",
        "--allow",
        "other.Thing",
        "custom.pkl",
    ]);
    assert_eq!(out.code, EXIT_CLEAN, "{}", out.stdout);
}

#[test]
fn policy_file_and_named_policies() {
    let sandbox = sandbox_with(&[
        ("custom.pkl", CUSTOM),
        ("policy.toml", b"allow = [\"mypkg.Model\"]\n"),
        ("bad.toml", b"allow = 3\n"),
    ]);
    assert_eq!(
        sandbox
            .run(&["scan", "--policy", "policy.toml", "custom.pkl"])
            .code,
        EXIT_CLEAN
    );
    let out = sandbox.run(&["scan", "--policy", "bad.toml", "custom.pkl"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(out.stderr.contains("--policy bad.toml"), "{}", out.stderr);
    let out = sandbox.run(&["scan", "--format", "json", "--policy", "xgboost", "custom.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(parsed["policy"], "xgboost");
    // The empty policy blocks even what the default allows.
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    assert_eq!(
        sandbox.run(&["scan", "--policy", "empty", "clean.pkl"]).code,
        EXIT_UNSAFE
    );
}

#[test]
fn policy_text_lists_sorted_entries() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["policy"]);
    assert_eq!(out.code, EXIT_CLEAN);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let entries = &lines[1..];
    let policy = picklefence::Policy::default();
    let expected = policy.entries().len();
    let role_lines: usize = policy
        .entries_with_roles()
        .iter()
        .map(|(_, _, roles)| roles.lines().len())
        .sum();
    assert_eq!(entries.len(), role_lines);
    assert!(entries.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    assert!(entries.contains(&"collections.OrderedDict=value"));
    assert!(entries
        .iter()
        .any(|e| e.starts_with("collections.OrderedDict=call(")));
    assert!(!entries
        .iter()
        .any(|e| e.starts_with("os.") || e.starts_with("posix.")));
    // Every line reads back as the entry it shows.
    let sandbox = sandbox_with(&[("custom.pkl", CUSTOM)]);
    assert_eq!(
        sandbox.run(&["scan", "--allow", entries[0], "custom.pkl"]).code,
        EXIT_UNSAFE
    );
    let header = lines[0].replace(&expected.to_string(), "[N]");
    assert_snapshot!(
        "policy_text_head",
        format!("{header}\n{}", entries[..5].join("\n"))
    );
}

#[test]
fn policy_allow_and_json() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&[
        "policy",
        "--policy",
        "empty",
        "--allow",
        "mypkg.Model",
        "--allow",
        "collections:OrderedDict.fromkeys",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_snapshot!(out.stdout);
    let out = sandbox.run(&[
        "policy",
        "--policy",
        "empty",
        "--allow",
        "collections:OrderedDict.fromkeys",
    ]);
    assert_snapshot!("policy_text_dotted", out.stdout);
}

#[test]
fn policy_list() {
    let out = Sandbox::new().run(&["policy", "--list"]);
    assert_eq!(out.code, EXIT_CLEAN);
    for name in picklefence::Policy::named_policies() {
        assert!(out.stdout.lines().any(|l| l == *name), "{name}");
    }
}

// ---- disasm ----

#[test]
fn disasm_reduce() {
    let sandbox = sandbox_with(&[("reduce.pkl", REDUCE)]);
    let out = sandbox.run(&["disasm", "reduce.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn disasm_clean() {
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    let out = sandbox.run(&["disasm", "clean.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert_snapshot!(out.stdout);
}

#[test]
fn disasm_stack_global_and_obfuscated() {
    let sandbox = sandbox_with(&[("stack_global.pkl", STACK_GLOBAL), ("obfuscated.pkl", OBFUSCATED)]);
    let out = sandbox.run(&["disasm", "stack_global.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!("disasm_stack_global", out.stdout);
    let out = sandbox.run(&["disasm", "obfuscated.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!("disasm_obfuscated", out.stdout);
}

#[test]
fn disasm_truncated() {
    let sandbox = sandbox_with(&[("truncated.pkl", TRUNCATED)]);
    let out = sandbox.run(&["disasm", "truncated.pkl"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn disasm_errors() {
    let sandbox = sandbox_with(&[("clean.pkl", CLEAN)]);
    let out = sandbox.run(&["disasm", "missing.pkl"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(out.stderr.contains("missing.pkl: cannot read"), "{}", out.stderr);
    let out = sandbox.run(&["disasm", "--member", "archive/data.pkl", "clean.pkl"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(
        out.stderr.contains("it is a plain pickle, which has no members"),
        "{}",
        out.stderr
    );
}

#[test]
fn disasm_honours_allow() {
    let sandbox = sandbox_with(&[("custom.pkl", CUSTOM)]);
    let out = sandbox.run(&["disasm", "--allow", "mypkg.Model", "custom.pkl"]);
    assert_eq!(out.code, EXIT_CLEAN);
    assert!(
        out.stdout.contains("-> import mypkg.Model: allowed"),
        "{}",
        out.stdout
    );
}

// ---- paths ----

#[test]
fn stdin_is_scanned_with_a_dash() {
    let sandbox = Sandbox::new();
    let out = sandbox.run_with_stdin(&["scan", "-"], REDUCE);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert!(out.stdout.starts_with("UNSAFE   -  [pickle]"), "{}", out.stdout);
    let out = sandbox.run_with_stdin(&["scan", "--format", "sarif", "-"], REDUCE);
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let artifact = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(artifact["description"]["text"], "standard input");
}

#[test]
fn every_file_in_a_tree_gets_a_verdict() {
    let sandbox = Sandbox::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let name = format!("tree/d{}/e{}/f{i}.pkl", i % 3, i % 5);
        sandbox.write(&name, if i == 17 { REDUCE } else { CLEAN });
        expected.push(name);
    }
    sandbox.write("tree/empty.pkl", b"");
    expected.push("tree/empty.pkl".into());
    expected.sort();
    let out = sandbox.run(&["scan", "--format", "json", "--jobs", "3", "tree"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let paths: Vec<String> = parsed["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    // Sorted by directory entry name at each level, which is the plain sort for these names.
    assert_eq!(paths, expected);
    let unsafe_paths: Vec<&str> = parsed["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["status"] == "unsafe")
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert!(unsafe_paths.contains(&"tree/d2/e2/f17.pkl"), "{unsafe_paths:?}");
}

#[cfg(unix)]
mod symlinks {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_out_of_the_tree_are_skipped_and_not_verified() {
        let sandbox = sandbox_with(&[("outside/evil.pkl", REDUCE), ("tree/clean.pkl", CLEAN)]);
        symlink(
            sandbox.path().join("outside/evil.pkl"),
            sandbox.path().join("tree/link.pkl"),
        )
        .expect("symlink");
        let out = sandbox.run(&["scan", "tree"]);
        assert_eq!(out.code, EXIT_ERROR, "{}", out.stdout);
        assert_snapshot!("symlink_out_of_tree", out.stdout);
        let out = sandbox.run(&["scan", "--follow-symlinks", "tree"]);
        assert_eq!(out.code, EXIT_UNSAFE, "{}", out.stdout);
        assert!(out.stdout.contains("UNSAFE   tree/link.pkl"), "{}", out.stdout);
    }

    #[test]
    fn links_inside_the_tree_are_followed() {
        let sandbox = sandbox_with(&[("tree/real/evil.pkl", REDUCE)]);
        symlink("real/evil.pkl", sandbox.path().join("tree/alias.pkl")).expect("symlink");
        symlink("real", sandbox.path().join("tree/alias_dir")).expect("symlink");
        let out = sandbox.run(&["scan", "tree"]);
        assert_eq!(out.code, EXIT_UNSAFE);
        for path in ["tree/alias.pkl", "tree/alias_dir/evil.pkl", "tree/real/evil.pkl"] {
            assert!(
                out.stdout.contains(&format!("UNSAFE   {path}")),
                "{path}: {}",
                out.stdout
            );
        }
    }

    #[test]
    fn loops_are_reported_once_and_do_not_fail_the_run() {
        let sandbox = sandbox_with(&[("tree/sub/clean.pkl", CLEAN)]);
        symlink("..", sandbox.path().join("tree/sub/up")).expect("symlink");
        for args in [vec!["scan", "tree"], vec!["scan", "--follow-symlinks", "tree"]] {
            let out = sandbox.run(&args);
            assert_eq!(out.code, EXIT_CLEAN, "{}", out.stdout);
            assert!(
                out.stdout.contains("SKIPPED  tree/sub/up: symbolic link loop"),
                "{}",
                out.stdout
            );
        }
    }

    #[test]
    fn broken_links_are_errors_naming_the_file() {
        let sandbox = sandbox_with(&[("tree/clean.pkl", CLEAN)]);
        symlink("nowhere.pkl", sandbox.path().join("tree/dangling.pkl")).expect("symlink");
        let out = sandbox.run(&["scan", "tree"]);
        assert_eq!(out.code, EXIT_ERROR);
        assert!(
            out.stdout
                .contains("ERROR    tree/dangling.pkl: broken symbolic link"),
            "{}",
            out.stdout
        );
        let out = sandbox.run(&["scan", "tree/dangling.pkl"]);
        assert_eq!(out.code, EXIT_ERROR);
        assert!(
            out.stdout
                .contains("ERROR    tree/dangling.pkl: broken symbolic link"),
            "{}",
            out.stdout
        );
    }

    #[test]
    fn special_files_are_reported() {
        let sandbox = sandbox_with(&[("tree/clean.pkl", CLEAN)]);
        let status = std::process::Command::new("mkfifo")
            .arg(sandbox.path().join("tree/pipe"))
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let out = sandbox.run(&["scan", "tree"]);
        assert_eq!(out.code, EXIT_CLEAN, "{}", out.stdout);
        assert!(
            out.stdout
                .contains("SKIPPED  tree/pipe: not a regular file (a named pipe)"),
            "{}",
            out.stdout
        );
    }
}

// ---- the library entry point ----

#[test]
fn run_with_is_the_same_command_in_process() {
    let sandbox = sandbox_with(&[("reduce.pkl", REDUCE), ("clean.pkl", CLEAN)]);
    let run = |args: &[&str]| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = picklefence_cli::Io {
            out: &mut out,
            err: &mut err,
            interactive: false,
        };
        let mut argv = vec!["picklefence".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let code = picklefence_cli::run_with(argv, &mut io);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    };
    let path = |name: &str| sandbox.path().join(name).to_string_lossy().into_owned();
    let (code, out, _) = run(&["scan", &path("reduce.pkl")]);
    assert_eq!(code, EXIT_UNSAFE);
    assert!(out.contains("dangerous-import"));
    assert_eq!(run(&["scan", &path("clean.pkl")]).0, EXIT_CLEAN);
    let (code, out, err) = run(&["--bogus"]);
    assert_eq!((code, out.as_str()), (EXIT_ERROR, ""));
    assert!(err.contains("--bogus"));
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, EXIT_CLEAN);
    assert!(out.contains("scan"));
}

// ---- containers ----

#[test]
fn scan_text_torch_zip_names_the_member() {
    let sandbox = sandbox_with(&[
        ("evil.pt", &common::torch_zip(REDUCE)),
        ("clean.pt", &common::torch_zip(CLEAN)),
    ]);
    let out = sandbox.run(&["scan", "evil.pt", "clean.pt"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert_snapshot!(out.stdout);
}

#[test]
fn disasm_lists_the_pickle_members_of_a_zip() {
    let sandbox = sandbox_with(&[("evil.pt", &common::torch_zip(REDUCE))]);
    let out = sandbox.run(&["disasm", "evil.pt"]);
    assert_eq!(out.code, EXIT_UNSAFE);
    assert!(
        out.stdout.starts_with("evil.pt!archive/data.pkl: 30 bytes"),
        "{}",
        out.stdout
    );
    let member = sandbox.run(&["disasm", "--member", "archive/data.pkl", "evil.pt"]);
    assert_eq!(member.code, EXIT_UNSAFE);
    assert_eq!(member.stdout, out.stdout);
    let out = sandbox.run(&["disasm", "--member", "archive/other.pkl", "evil.pt"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(
        out.stderr.contains("its pickle members are: archive/data.pkl"),
        "{}",
        out.stderr
    );
}

#[test]
fn disasm_refuses_formats_it_cannot_list() {
    let sandbox = sandbox_with(&[("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")]);
    let out = sandbox.run(&["disasm", "model.safetensors"]);
    assert_eq!(out.code, EXIT_ERROR);
    assert!(out.stderr.contains("picklefence scan"), "{}", out.stderr);
}

// ---- disasm and scan read the same pickles ----

/// The members `scan --format json` analysed (`""`: the file itself).
fn scanned_members(sandbox: &Sandbox, name: &str) -> Vec<String> {
    let out = sandbox.run(&["scan", "--format", "json", name]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("scan --format json");
    let mut members: Vec<String> = json["files"][0]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["member"].as_str().unwrap_or_default().to_string())
        .collect();
    members.sort();
    members
}

/// The members `disasm` listed: each listing starts with `NAME[!MEMBER][ (the pickle from byte
/// N on)]: N bytes, ...`.
fn listed_members(sandbox: &Sandbox, name: &str) -> Vec<String> {
    let out = sandbox.run(&["disasm", name]);
    let mut members: Vec<String> = out
        .stdout
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(" bytes, "))
        .filter_map(|line| line.split(": ").next())
        .map(|head| head.split(" (the pickle from byte").next().unwrap_or(head))
        .map(|shown| shown.strip_prefix(name).unwrap_or(shown))
        .map(|rest| rest.strip_prefix('!').unwrap_or(rest).to_string())
        .collect();
    members.sort();
    members
}

/// A zip whose only member, `name`, holds `inner`.
fn zip_of(name: &str, inner: &[u8]) -> Vec<u8> {
    common::stored_zip(&[(name, inner)])
}

/// An object-dtype .npy file: its header, then the pickle numpy.load unpickles.
fn object_npy(pickle: &[u8]) -> Vec<u8> {
    let mut header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(pickle);
    out
}

#[test]
fn disasm_and_scan_read_the_same_pickles_in_every_container() {
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("plain.pkl".into(), REDUCE.to_vec()),
        ("torch.pt".into(), common::torch_zip(REDUCE)),
        ("upper.pt".into(), zip_of("ARCHIVE/DATA.PKL", REDUCE)),
        (
            "upper_named.zip".into(),
            common::stored_zip(&[("MODEL.PKL", REDUCE), ("notes.txt", b"hello")]),
        ),
        ("object.npy".into(), object_npy(REDUCE)),
        ("arrays.npz".into(), zip_of("a.npy", &object_npy(REDUCE))),
        ("model.tar".into(), common::tar(&[("model.pkl", REDUCE)])),
        ("model.pkl.gz".into(), common::gzip(REDUCE)),
        ("zip_in_gzip".into(), common::gzip(&common::torch_zip(REDUCE))),
        (
            "polyglot.pkl".into(),
            [CLEAN, &common::torch_zip(REDUCE)].concat(),
        ),
    ];
    // Zips nested 1 to 10 deep, past the scanner's depth limit (8), with upper-case names.
    let mut nested = REDUCE.to_vec();
    for depth in 1..=10 {
        nested = zip_of(&format!("LEVEL{depth}.ZIP"), &nested);
        cases.push((format!("nested{depth}.zip"), nested.clone()));
    }
    let sandbox = Sandbox::new();
    for (name, bytes) in &cases {
        sandbox.write(name, bytes);
    }
    for (name, _) in &cases {
        let scanned = scanned_members(&sandbox, name);
        let listed = listed_members(&sandbox, name);
        assert_eq!(
            listed, scanned,
            "{name}: disasm lists {listed:?}, scan analysed {scanned:?}"
        );
        let deep = name.strip_prefix("nested").and_then(|n| n.strip_suffix(".zip"));
        match deep.and_then(|n| n.parse::<usize>().ok()) {
            // Within the limit the pickle is found at the bottom, beyond it by neither.
            Some(depth) if depth <= 8 => assert_eq!(scanned.len(), 1, "{name}: {scanned:?}"),
            Some(_) => assert!(scanned.is_empty(), "{name}: {scanned:?}"),
            None => assert!(!scanned.is_empty(), "{name}: no pickle found"),
        }
    }
}
