//! JSON output of `scan`: one document with a summary and an object per path, or (JSON Lines)
//! the objects alone, one per line.

use std::io::{self, Write};

use picklefence::ScanReport;
use serde_json::{json, Map, Value};

use crate::render::{block_reason, import_label, location};
use crate::results::{Counts, FileResult, Outcome, RenderOptions};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
const FORMAT_VERSION: u32 = 1;

/// One path's object as it appears in the document's `files` array (indented for it), made as
/// soon as the path is scanned so that its report need not be kept.
pub fn file_text(result: &FileResult, options: &RenderOptions) -> String {
    let text = serde_json::to_string_pretty(&file_json(result, options)).unwrap_or_default();
    text.replace('\n', &format!("\n{FILE_INDENT}"))
}

/// One path's object on a line of its own (`--format jsonl`).
pub fn write_line(w: &mut dyn Write, result: &FileResult, options: &RenderOptions) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &file_json(result, options)).map_err(io::Error::other)?;
    writeln!(w)
}

/// Where a file sits in the Hugging Face cache (JSON and SARIF give it alike).
pub fn hf_json(origin: &crate::hf::HfFile) -> Value {
    json!({
        "repo_type": origin.repo_type,
        "repo_id": origin.repo_id,
        "revision": origin.revision,
        "refs": origin.refs,
        "path": origin.path,
        "file": origin.file.to_string_lossy(),
    })
}

/// Where a file's object sits in the pretty-printed document.
const FILE_INDENT: &str = "    ";

/// The document: the summary and the files' objects ([`file_text`]), in the order scanned.
pub fn write_document(
    w: &mut dyn Write,
    files: &[String],
    counts: &Counts,
    options: &RenderOptions,
) -> io::Result<()> {
    let document = json!({
        "format_version": FORMAT_VERSION,
        "tool": {"name": "picklefence", "version": env!("CARGO_PKG_VERSION")},
        "policy": options.policy_name,
        "exit_code": options.exit_code,
        "summary": {
            "scanned": counts.scanned(),
            "clean": counts.clean,
            "unsafe": counts.unsafe_,
            "errors": counts.errors,
            "skipped": counts.skipped,
        },
        "files": [],
    });
    let text = serde_json::to_string_pretty(&document).map_err(io::Error::other)?;
    // The files are spliced in where the pretty printer wrote the empty array.
    let (head, tail) = text
        .split_once("\"files\": []")
        .ok_or_else(|| io::Error::other("no files array"))?;
    w.write_all(head.as_bytes())?;
    if files.is_empty() {
        w.write_all(b"\"files\": []")?;
    } else {
        w.write_all(b"\"files\": [")?;
        for (index, file) in files.iter().enumerate() {
            w.write_all(if index == 0 { b"\n" } else { b",\n" })?;
            w.write_all(FILE_INDENT.as_bytes())?;
            w.write_all(file.as_bytes())?;
        }
        w.write_all(b"\n  ]")?;
    }
    w.write_all(tail.as_bytes())?;
    writeln!(w)
}

pub(crate) fn file_json(result: &FileResult, options: &RenderOptions) -> Value {
    let mut object = Map::new();
    object.insert("path".into(), json!(result.display));
    if let Some(origin) = &result.origin {
        object.insert("hf".into(), hf_json(origin));
    }
    match &result.outcome {
        Outcome::Scanned(report) => {
            object.insert("status".into(), json!(report.verdict.as_str()));
            object.insert("format".into(), json!(report.format));
            object.insert("entries".into(), entries_json(report));
            object.insert(
                "findings".into(),
                report
                    .findings
                    .iter()
                    .map(|located| {
                        let finding = &located.finding;
                        json!({
                            "location": location(&result.display, &located.location),
                            "member": member(&located.location),
                            "kind": finding.kind.as_str(),
                            "severity": finding.severity.as_str(),
                            "violation": finding.is_violation(),
                            "offset": finding.offset,
                            "import": finding.import.as_ref().map(ToString::to_string),
                            "module": finding.import.as_ref().map(|i| &*i.module),
                            "name": finding.import.as_ref().map(|i| &*i.name),
                            "message": finding.message,
                        })
                    })
                    .collect(),
            );
            if options.show_imports {
                object.insert("imports".into(), imports_json(&result.display, report));
            }
        }
        Outcome::Failed(error) => {
            object.insert("status".into(), json!("error"));
            object.insert("error".into(), json!(error));
        }
        Outcome::Skipped { reason, unverified } => {
            object.insert("status".into(), json!("skipped"));
            object.insert("reason".into(), json!(reason));
            object.insert("unverified".into(), json!(unverified));
        }
    }
    Value::Object(object)
}

fn member(location: &str) -> Value {
    if location.is_empty() {
        Value::Null
    } else {
        json!(location)
    }
}

fn entries_json(report: &ScanReport) -> Value {
    report
        .entries
        .iter()
        .map(|entry| {
            json!({
                "member": member(&entry.location),
                "pickles": entry.report.pickles.len(),
                "imports": entry.report.imports.len(),
                "records_dropped": entry.report.records_dropped,
            })
        })
        .collect()
}

fn imports_json(display: &str, report: &ScanReport) -> Value {
    let mut imports = Vec::new();
    for entry in &report.entries {
        for import in &entry.report.imports {
            imports.push(json!({
                "location": location(display, &entry.location),
                "member": member(&entry.location),
                "offset": import.offset,
                "opcode": import.opcode,
                "import": import_label(import),
                "module": import.target.as_ref().map(|t| &*t.module),
                "name": import.target.as_ref().map(|t| &*t.name),
                "written_as": import.written_as.as_ref().map(ToString::to_string),
                "ext_code": import.ext_code,
                "allowed": import.allowed,
                "reason": block_reason(import),
            }));
        }
    }
    Value::Array(imports)
}
