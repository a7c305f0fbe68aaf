//! SARIF 2.1.0 output of `scan`, shaped for GitHub code scanning: one rule per finding kind,
//! one result per finding, read errors and skipped paths as tool execution notifications.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use picklefence::{FindingKind, LocatedFinding, Severity};
use serde_json::{json, Map, Value};

use crate::results::{FileResult, Outcome, RenderOptions};

const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
const SRCROOT: &str = "%SRCROOT%";

/// Every finding kind, in rule-index order.
pub const KINDS: [FindingKind; 24] = [
    FindingKind::DangerousImport,
    FindingKind::DisallowedImport,
    FindingKind::UnresolvableImport,
    FindingKind::ExtensionCode,
    FindingKind::IndirectCall,
    FindingKind::StateInjection,
    FindingKind::UnsafeBuild,
    FindingKind::MalformedPickle,
    FindingKind::AmbiguousFraming,
    FindingKind::TrailingData,
    FindingKind::LimitExceeded,
    FindingKind::PersistentId,
    FindingKind::NativeState,
    FindingKind::OutOfBandBuffer,
    FindingKind::Container,
    FindingKind::EmbeddedCode,
    FindingKind::NonPickleFormat,
    FindingKind::Unsupported,
    FindingKind::RoleViolation,
    FindingKind::ArgumentViolation,
    FindingKind::BuildViolation,
    FindingKind::StateViolation,
    FindingKind::EarlierMemo,
    FindingKind::SharedBuffer,
];

struct Rule {
    short: &'static str,
    help: &'static str,
    /// The severity findings of this kind usually have (GitHub shows it per rule).
    usual: Severity,
}

fn rule(kind: FindingKind) -> Rule {
    let (short, help, usual) = match kind {
        FindingKind::DangerousImport => (
            "Import of something that runs code or touches the system",
            "The pickle imports a function or class that executes code, starts processes, or reaches the file system, the network or the import machinery. Loading the file runs it. Do not load the file; obtain the model from a trusted source or in a format that holds no code (e.g. safetensors).",
            Severity::Critical,
        ),
        FindingKind::DisallowedImport => (
            "Import not on the allowlist",
            "The pickle imports something the policy does not allow. It may be harmless, but loading the file would let it run. If you trust the library and the file, allow the exact name with --allow module.name or a policy file.",
            Severity::High,
        ),
        FindingKind::UnresolvableImport => (
            "Import whose name cannot be determined statically",
            "A STACK_GLOBAL takes its module or name from something other than string constants, so what it imports cannot be known without running the pickle. Data pickles never do this; treat the file as hostile.",
            Severity::Critical,
        ),
        FindingKind::ExtensionCode => (
            "Import through the copyreg extension registry",
            "EXT1/EXT2/EXT4 import whatever the loading process registered under a numeric code. The policy names no such code as allowed.",
            Severity::High,
        ),
        FindingKind::IndirectCall => (
            "Call of something that is not an imported callable",
            "REDUCE, NEWOBJ or OBJ calls the result of an earlier call or a value the pickle built. Data pickles never do this; it is a way to reach code the imports do not show.",
            Severity::High,
        ),
        FindingKind::StateInjection => (
            "State set on an imported module, class or function",
            "BUILD, SETITEM or similar opcodes modify an imported object itself, which can change how code behaves after loading.",
            Severity::Critical,
        ),
        FindingKind::UnsafeBuild => (
            "BUILD on an object the pickle did not create by a call",
            "BUILD sets state on a value that no call produced, which data pickles never do.",
            Severity::High,
        ),
        FindingKind::RoleViolation => (
            "Allowed name used against its role",
            "Every allowed name has a role: a class the pickle may only reconstruct (NEWOBJ + one BUILD), a function it may call with checked arguments, or a value it may only store. This pickle calls, constructs or stores the name in another way, which is how gadget chains through allowed names run code, read files or corrupt memory. Do not load the file.",
            Severity::Critical,
        ),
        FindingKind::ArgumentViolation => (
            "Call with arguments outside its schema",
            "An allowed function is called with arguments its real pickles never have: the wrong kinds, sizes beyond its bounds, a callable not on its short list, or a tensor view outside its storage. Such calls allocate without bound, read out of bounds or reach other code.",
            Severity::Critical,
        ),
        FindingKind::BuildViolation => (
            "BUILD or items on an object that may not receive them",
            "BUILD targets a shared object (a singleton or cached instance, whose state would change for the whole process), or an object already built once (the second BUILD calls a __setstate__ the first may have planted), or items are added to an object that takes none.",
            Severity::Critical,
        ),
        FindingKind::StateViolation => (
            "Object state that breaks a state rule",
            "The state given to an object sets a special attribute (__setstate__, __reduce_ex__...), a dispatch string outside its allowed set (a scorer's response method, a vectorizer's input), non-empty hooks, or a callable under a method name: things the library later calls during normal use.",
            Severity::Critical,
        ),
        FindingKind::SharedBuffer => (
            "One buffer under two arrays",
            "The pickle makes more than one array or Arrow buffer over one memory (one bytearray read twice from the memo, an array BUILT over bytes another array reads), one of them writable. Real pickles give every array its own buffer; here a write through one array after the load (an ordinary assignment to a frame column) rewrites the other, which may be state the loader validated (index codes, string offsets): out-of-bounds reads and crashes. Do not load the file.",
            Severity::Critical,
        ),
        FindingKind::EarlierMemo => (
            "Memo key from an earlier pickle",
            "A pickle after the first in a stream reads a memo key it never stored. An unpickler that reads the stream keeps its memo from one load() to the next, so the key names an object of an earlier pickle, and this pickle's use of it (a call, a BUILD) cannot be checked.",
            Severity::Critical,
        ),
        FindingKind::MalformedPickle => (
            "Malformed or truncated pickle",
            "The pickle breaks (bad opcode, truncation, stack underflow, missing memo entry, no STOP). CPython would have run every opcode before the break, so the file is rejected.",
            Severity::High,
        ),
        FindingKind::AmbiguousFraming => (
            "Frames that different unpicklers read differently",
            "Protocol 4+ frames are laid out so that CPython's C and Python unpicklers could disagree about the opcodes; a way to hide opcodes from scanners.",
            Severity::High,
        ),
        FindingKind::TrailingData => (
            "Bytes after the last pickle",
            "Data follows the last pickle and is not a pickle. Loaders ignore it, but it is worth knowing about.",
            Severity::Warning,
        ),
        FindingKind::LimitExceeded => (
            "Analysis limit reached",
            "The scan hit one of its limits (stack, memo, opcodes, size); what lies beyond was not analysed, so the file is not called clean.",
            Severity::High,
        ),
        FindingKind::PersistentId => (
            "Persistent id",
            "The pickle refers to objects by persistent id; the loader's persistent_load decides what they become (PyTorch uses this for tensor storages).",
            Severity::Info,
        ),
        FindingKind::NativeState => (
            "Native state validated at load time",
            "The file holds an object whose compiled code trusts indices in its state (a tree's child indices, a sparse matrix's indptr, a frame's block placements). The scanner cannot read those arrays; the picklefence guard validates them when it loads the file.",
            Severity::Info,
        ),
        FindingKind::OutOfBandBuffer => (
            "Out-of-band buffer",
            "The pickle takes protocol 5 out-of-band buffers; they come from the loader, not from the file.",
            Severity::Info,
        ),
        FindingKind::Container => (
            "Container problem",
            "Something about the archive or compression layer around the pickles (e.g. a member that cannot be read).",
            Severity::High,
        ),
        FindingKind::EmbeddedCode => (
            "Embedded code",
            "The model carries code (e.g. TorchScript) that runs when the model runs, whatever its pickles import.",
            Severity::High,
        ),
        FindingKind::NonPickleFormat => (
            "Not a pickle-based format",
            "The file is in a format that holds no pickle; it was identified and reported, not skipped.",
            Severity::Info,
        ),
        FindingKind::Unsupported => (
            "Format the scanner cannot open",
            "The file is in a format picklefence cannot analyse, so it cannot be called clean.",
            Severity::High,
        ),
    };
    Rule { short, help, usual }
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// GitHub's `security-severity` scale (over 9 critical, 7-9 high, 4-7 medium).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.8",
        Severity::High => "8.0",
        Severity::Warning => "5.0",
        Severity::Info => "1.0",
    }
}

fn rule_index(kind: FindingKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

fn rules_json() -> Value {
    KINDS
        .iter()
        .map(|&kind| {
            let rule = rule(kind);
            json!({
                "id": kind.as_str(),
                "name": kind.as_str(),
                "shortDescription": {"text": rule.short},
                "fullDescription": {"text": rule.help},
                "help": {"text": rule.help},
                "defaultConfiguration": {"level": level(rule.usual)},
                "properties": {
                    "tags": ["security", "deserialization", "pickle"],
                    "precision": "high",
                    "security-severity": security_severity(rule.usual),
                },
            })
        })
        .collect()
}

/// A SARIF document written as the scan goes: the run's tool and properties first, then each
/// file's results as soon as it is scanned ([`SarifWriter::write_file`]), then the invocation,
/// whose exit code and notifications are known only at the end ([`SarifWriter::finish`]). A
/// scan of millions of files holds their notifications (read errors and skipped paths), not
/// their reports.
pub struct SarifWriter {
    cwd: Option<PathBuf>,
    any_result: bool,
    failed: bool,
    /// Each notification as its pretty-printed JSON text.
    notifications: Vec<String>,
}

/// Where a result sits in the pretty-printed document, and the run's members.
const RESULT_INDENT: &str = "        ";
const RUN_INDENT: &str = "      ";

impl SarifWriter {
    /// A writer for a scan run in the current directory (relative paths are relative to it).
    pub fn new() -> Self {
        SarifWriter {
            cwd: std::env::current_dir().ok(),
            any_result: false,
            failed: false,
            notifications: Vec::new(),
        }
    }

    /// Writes the document's head, up to the opening of the run's `results` array.
    pub fn write_head(&mut self, w: &mut dyn Write, options: &RenderOptions) -> io::Result<()> {
        write!(
            w,
            "{{\n  \"$schema\": \"{SCHEMA}\",\n  \"version\": \"2.1.0\",\n  \"runs\": [\n    {{"
        )?;
        let tool = json!({"driver": {
            "name": "picklefence",
            "version": env!("CARGO_PKG_VERSION"),
            "semanticVersion": env!("CARGO_PKG_VERSION"),
            "rules": rules_json(),
        }});
        let mut members = vec![("tool", tool)];
        if let Some(cwd) = &self.cwd {
            members.push((
                "originalUriBaseIds",
                json!({SRCROOT: {"uri": format!("{}/", file_uri(cwd).trim_end_matches('/'))}}),
            ));
        }
        members.push(("properties", json!({"policy": options.policy_name})));
        for (key, value) in members {
            write!(w, "\n{RUN_INDENT}\"{key}\": ")?;
            crate::json::write_indented(w, &value, RUN_INDENT)?;
            w.write_all(b",")?;
        }
        write!(w, "\n{RUN_INDENT}\"results\": [")
    }

    /// Writes one file's results (a finding each), or keeps its notification.
    pub fn write_file(&mut self, w: &mut dyn Write, result: &FileResult) -> io::Result<()> {
        // A file of the Hugging Face cache is located at its snapshot path; its repository,
        // revision and path in it are properties of each result.
        let artifact = match &result.origin {
            Some(origin) => artifact_location(&origin.file.to_string_lossy(), self.cwd.as_deref()),
            None => artifact_location(&result.display, self.cwd.as_deref()),
        };
        let notification = match &result.outcome {
            Outcome::Scanned(report) => {
                // Bytes analysed of the file itself: its size, for a plain pickle.
                let file_size = report
                    .entries
                    .iter()
                    .find(|entry| entry.location.is_empty())
                    .map(|entry| entry.report.consumed);
                for located in &report.findings {
                    let mut one = result_json(&result.display, &artifact, located, file_size);
                    if let (Some(origin), Some(properties)) = (&result.origin, one.get_mut("properties")) {
                        if let Some(properties) = properties.as_object_mut() {
                            properties.insert("hf".into(), crate::json::hf_json(origin));
                        }
                    }
                    w.write_all(if self.any_result { b",\n" } else { b"\n" })?;
                    w.write_all(RESULT_INDENT.as_bytes())?;
                    crate::json::write_indented(w, &one, RESULT_INDENT)?;
                    self.any_result = true;
                }
                return Ok(());
            }
            Outcome::Failed(error) => {
                self.failed = true;
                notification(
                    "error",
                    "read-error",
                    &artifact,
                    &format!("{}: {error}", result.display),
                )
            }
            Outcome::Skipped { reason, unverified } => {
                let level = if *unverified { "warning" } else { "note" };
                notification(
                    level,
                    "skipped",
                    &artifact,
                    &format!("{}: {reason}", result.display),
                )
            }
        };
        let text = serde_json::to_string_pretty(&notification).map_err(io::Error::other)?;
        self.notifications.push(text);
        Ok(())
    }

    /// Closes the results and writes the invocation and the document's end.
    pub fn finish(self, w: &mut dyn Write, options: &RenderOptions) -> io::Result<()> {
        if self.any_result {
            write!(w, "\n{RUN_INDENT}")?;
        }
        let member = format!("{RUN_INDENT}    ");
        write!(
            w,
            "],\n{RUN_INDENT}\"invocations\": [\n{RUN_INDENT}  {{\n{member}\"executionSuccessful\": {},\n\
             {member}\"exitCode\": {},\n{member}\"toolExecutionNotifications\": [",
            !self.failed, options.exit_code
        )?;
        let item = format!("{member}  ");
        for (index, text) in self.notifications.iter().enumerate() {
            w.write_all(if index == 0 { b"\n" } else { b",\n" })?;
            w.write_all(item.as_bytes())?;
            w.write_all(text.replace('\n', &format!("\n{item}")).as_bytes())?;
        }
        if !self.notifications.is_empty() {
            write!(w, "\n{member}")?;
        }
        write!(w, "]\n{RUN_INDENT}  }}\n{RUN_INDENT}]\n    }}\n  ]\n}}\n")
    }
}

fn result_json(display: &str, artifact: &Value, located: &LocatedFinding, file_size: Option<u64>) -> Value {
    let finding = &located.finding;
    // GitHub requires `startLine`. A pickle has no lines: the byte region is the real place,
    // and it is given only when the offset is into the file itself, not into a member.
    let mut region = Map::new();
    region.insert("startLine".into(), json!(1));
    if located.location.is_empty() {
        // The opcode byte; nothing when the finding is at the end of the file.
        let length = u64::from(file_size.is_none_or(|size| finding.offset < size));
        region.insert("byteOffset".into(), json!(finding.offset));
        region.insert("byteLength".into(), json!(length));
    }
    let mut location = Map::new();
    location.insert(
        "physicalLocation".into(),
        json!({"artifactLocation": artifact, "region": region}),
    );
    let mut properties = Map::new();
    properties.insert("severity".into(), json!(finding.severity.as_str()));
    properties.insert("offset".into(), json!(finding.offset));
    if !located.location.is_empty() {
        location.insert(
            "logicalLocations".into(),
            json!([{
                "name": located.location,
                "fullyQualifiedName": format!("{display}!{}", located.location),
            }]),
        );
        properties.insert("member".into(), json!(located.location));
    }
    let import = finding.import.as_ref().map(ToString::to_string);
    let fingerprint = fnv1a(&[
        finding.kind.as_str(),
        display,
        &located.location,
        import.as_deref().unwrap_or(""),
        &finding.offset.to_string(),
    ]);
    if let Some(import) = import {
        properties.insert("import".into(), json!(import));
    }
    json!({
        "ruleId": finding.kind.as_str(),
        "ruleIndex": rule_index(finding.kind),
        "level": level(finding.severity),
        "message": {"text": finding.message},
        "locations": [location],
        "partialFingerprints": {"picklefenceFinding/v1": format!("{fingerprint:016x}")},
        "properties": properties,
    })
}

fn notification(level: &str, id: &str, artifact: &Value, text: &str) -> Value {
    json!({
        "level": level,
        "descriptor": {"id": id},
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": artifact}}],
    })
}

/// A relative URI (against `%SRCROOT%`, the working directory) when the path lies under the
/// working directory, an absolute `file:` URI otherwise.
pub fn artifact_location(display: &str, cwd: Option<&Path>) -> Value {
    if display == "-" {
        return json!({"description": {"text": "standard input"}});
    }
    let path = Path::new(display);
    let relative: Option<PathBuf> = if path.is_absolute() {
        cwd.and_then(|cwd| path.strip_prefix(cwd).ok())
            .map(Path::to_path_buf)
    } else {
        Some(path.to_path_buf())
    };
    match relative {
        Some(relative) => json!({"uri": relative_uri(&relative), "uriBaseId": SRCROOT}),
        None => json!({"uri": file_uri(path)}),
    }
}

fn relative_uri(path: &Path) -> String {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(encode(part)),
            Component::ParentDir => parts.push("..".to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                uri.push('/');
                uri.push_str(&encode(part));
            }
            Component::ParentDir => uri.push_str("/.."),
            // A Windows drive (`C:`) becomes `file:///C:`.
            Component::Prefix(prefix) => {
                uri.push('/');
                uri.push_str(&prefix.as_os_str().to_string_lossy());
            }
            Component::RootDir | Component::CurDir => {}
        }
    }
    if uri == "file://" {
        uri.push('/');
    }
    uri
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(part: &std::ffi::OsStr) -> String {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        part.as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = part.to_string_lossy().into_owned().into_bytes();
    let mut out = String::with_capacity(bytes.len());
    for byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// 64-bit FNV-1a over the parts, separated so that ("ab","c") and ("a","bc") differ.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(std::iter::once(&0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_relative_uris() {
        let location = artifact_location("./models/my model#1.pkl", None);
        assert_eq!(location["uri"], "models/my%20model%231.pkl");
        assert_eq!(location["uriBaseId"], SRCROOT);
    }

    #[test]
    fn absolute_paths_under_the_working_directory_become_relative() {
        let location = artifact_location("/work/repo/a/b.pkl", Some(Path::new("/work/repo")));
        assert_eq!(location["uri"], "a/b.pkl");
    }

    #[test]
    fn other_absolute_paths_become_file_uris() {
        let location = artifact_location("/tmp/x y.pkl", Some(Path::new("/work")));
        assert_eq!(location["uri"], "file:///tmp/x%20y.pkl");
        assert!(location.get("uriBaseId").is_none());
    }

    #[test]
    fn every_kind_has_a_distinct_rule() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(rule_index(*kind), i);
            assert!(!rule(*kind).short.is_empty());
        }
    }
}
