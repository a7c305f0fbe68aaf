//! Real model files, made by `scripts/make_model_fixtures.py` with torch, numpy, joblib,
//! scikit-learn and pandas: every benign one must scan clean under the default policy and every
//! one with an injected payload or container trick must be flagged as its manifest says.
//!
//! Needs `python3` (or `$PYTHON`) with those libraries: without them this test fails, it does
//! not skip.

#![allow(clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;

use picklefence::{analyze_joblib_reader, identify, scan_path, Options, Policy, ScanOptions, Verdict};
use serde_json::Value;

fn make_fixtures(out: &Path) -> Value {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make_model_fixtures.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(out)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (set PYTHON to a Python with the ML libraries): {e}")
        });
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}\n{}",
        python,
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&manifest).expect("manifest.json is JSON")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn every_fixture_scans_as_its_manifest_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = make_fixtures(dir.path());
    let files = manifest["files"].as_array().expect("files");
    assert!(files.len() > 60, "only {} fixtures", files.len());
    let policy = Policy::default();
    let options = ScanOptions::default();
    let mut failures = Vec::new();
    let (mut clean, mut unsafe_) = (0, 0);
    for file in files {
        let rel = file["path"].as_str().expect("path");
        let path: PathBuf = dir.path().join(rel);
        let report = match scan_path(&path, &policy, &options) {
            Ok(report) => report,
            Err(e) => {
                failures.push(format!("{rel}: scan error {e}"));
                continue;
            }
        };
        let expect = file["expect"].as_str().expect("expect");
        let verdict = report.verdict.as_str();
        let violations: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.finding.is_violation())
            .map(|f| {
                format!(
                    "{} [{}] {}: {}",
                    f.finding.kind.as_str(),
                    f.finding.severity.as_str(),
                    f.location,
                    f.finding.message
                )
            })
            .collect();
        if verdict != expect {
            failures.push(format!(
                "{rel}: verdict {verdict}, expected {expect}; violations: {violations:#?}"
            ));
        }
        match expect {
            "clean" => clean += 1,
            _ => unsafe_ += 1,
        }
        if let Some(format) = file["format"].as_str() {
            if report.format != format {
                failures.push(format!(
                    "{rel}: identified as {}, expected {format}",
                    report.format
                ));
            }
            let data = std::fs::read(&path).expect("read fixture");
            let identified = identify(&data).name();
            let upgraded = identified == "pickle" && format == "joblib";
            if identified != format && !upgraded {
                failures.push(format!("{rel}: identify() says {identified}, expected {format}"));
            }
        }
        for import in strings(&file["imports"]) {
            let flagged = report.findings.iter().any(|f| {
                f.finding.is_violation() && f.finding.import.as_ref().is_some_and(|i| i.to_string() == import)
            });
            if !flagged {
                failures.push(format!(
                    "{rel}: import {import} not flagged; violations: {violations:#?}"
                ));
            }
        }
        for kind in strings(&file["kinds"]) {
            if !report.findings.iter().any(|f| f.finding.kind.as_str() == kind) {
                let all: Vec<String> = report
                    .findings
                    .iter()
                    .map(|f| format!("{} {}", f.finding.kind.as_str(), f.finding.message))
                    .collect();
                failures.push(format!("{rel}: no {kind} finding; findings: {all:#?}"));
            }
        }
        if expect == "unsafe" && report.verdict == Verdict::Unsafe {
            // The member path of each finding is part of the contract (e.g. `archive/data.pkl`).
            assert!(
                report.findings.iter().all(|f| !f.location.contains("!!")),
                "{rel}: bad location"
            );
        }
    }
    assert!(
        clean >= 30 && unsafe_ >= 30,
        "{clean} benign and {unsafe_} malicious fixtures"
    );
    // The hook's joblib pre-scan reads real joblib files exactly to their end.
    for (rel, safe) in [
        ("benign/dict.joblib", true),
        ("benign/random_forest.joblib", true),
        ("malicious/joblib_after_array.joblib", false),
        ("malicious/joblib_object_array.joblib", false),
    ] {
        let data = std::fs::read(dir.path().join(rel)).expect("fixture");
        let mut reader = std::io::Cursor::new(&data);
        let report = analyze_joblib_reader(&mut reader, &policy, &Options::default());
        if report.is_safe() != safe {
            failures.push(format!(
                "{rel}: analyze_joblib_reader says safe={}, expected {safe}",
                report.is_safe()
            ));
        }
        if safe && reader.position() != data.len() as u64 {
            failures.push(format!(
                "{rel}: analyze_joblib_reader stopped at {} of {}",
                reader.position(),
                data.len()
            ));
        }
    }
    let markers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("MARKER"))
        .collect();
    assert!(markers.is_empty(), "a payload ran: {markers:?}");
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
