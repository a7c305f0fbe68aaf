//! JSON output of `scan`: one document with a summary and an object per path, or (JSON Lines)
//! the objects alone, one per line.

use std::io::{self, Write};

use picklefence::ScanReport;
use serde_json::{json, Map, Value};

use crate::render::{block_reason, import_label, location};
use crate::results::{Counts, FileResult, Outcome, RenderOptions};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
const FORMAT_VERSION: u32 = 1;

/// One path's object in the document's `files` array, written as soon as the path is scanned
/// (`first`: no comma before it), so that a scan of millions of files holds none of them.
pub fn write_file(
    w: &mut dyn Write,
    result: &FileResult,
    options: &RenderOptions,
    first: bool,
) -> io::Result<()> {
    w.write_all(if first { b"\n" } else { b",\n" })?;
    w.write_all(FILE_INDENT.as_bytes())?;
    write_indented(w, &file_json(result, options), FILE_INDENT)
}

/// Writes `value` pretty-printed, its lines after the first indented by `indent` (where the
/// value sits in a document written piece by piece).
pub(crate) fn write_indented(w: &mut dyn Write, value: &Value, indent: &str) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    w.write_all(text.replace('\n', &format!("\n{indent}")).as_bytes())
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

/// The document's head, up to the opening of its `files` array: what is known before any file
/// is scanned. The files follow ([`write_file`]), then [`write_tail`].
pub fn write_head(w: &mut dyn Write, options: &RenderOptions) -> io::Result<()> {
    let head = json!({
        "format_version": FORMAT_VERSION,
        "tool": {"name": "picklefence", "version": env!("CARGO_PKG_VERSION")},
        "policy": options.policy_name,
    });
    let text = serde_json::to_string_pretty(&head).map_err(io::Error::other)?;
    // The pretty printer's closing brace gives way to the files array.
    let open = text
        .strip_suffix("\n}")
        .or_else(|| text.strip_suffix('}'))
        .unwrap_or(&text);
    w.write_all(open.as_bytes())?;
    w.write_all(b",\n  \"files\": [")
}

/// The document's end, after the files (`any_file`: the array is not empty): the summary and the
/// exit code, known only once every file is scanned.
pub fn write_tail(
    w: &mut dyn Write,
    counts: &Counts,
    options: &RenderOptions,
    any_file: bool,
) -> io::Result<()> {
    w.write_all(if any_file { b"\n  ],\n" } else { b"],\n" })?;
    let tail = json!({
        "summary": {
            "scanned": counts.scanned(),
            "clean": counts.clean,
            "unsafe": counts.unsafe_,
            "errors": counts.errors,
            "skipped": counts.skipped,
        },
        "exit_code": options.exit_code,
    });
    let text = serde_json::to_string_pretty(&tail).map_err(io::Error::other)?;
    // Its members, inside the document's braces.
    let members = text.strip_prefix("{\n").unwrap_or(&text);
    w.write_all(members.as_bytes())?;
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
