//! `picklefence disasm`: an annotated listing of a pickle's opcodes, each import marked
//! allowed or blocked by the same analysis `scan` runs.

use std::collections::HashMap;
use std::io::{self, Write};

use picklefence::{
    analyze_slice, identify, walk_bytes, Arg, Decoder, Finding, FindingKind, Format, Import, Opcode, Options,
    Payload, PickleReport, PickleStream, Policy, ScanOptions,
};

use crate::cli::DisasmArgs;
use crate::render::{import_label, import_verdict, plural};
use crate::{finish, policy_cmd, usage_error, Io, EXIT_CLEAN, EXIT_UNSAFE};

/// Longest argument text shown; longer ones are cut and their length given.
const PREVIEW: usize = 60;

pub fn run(args: &DisasmArgs, io: &mut Io<'_>) -> i32 {
    let policy = match policy_cmd::load(&args.policy) {
        Ok(policy) => policy,
        Err(message) => return usage_error(io, &message),
    };
    let display = args.file.to_string_lossy().into_owned();
    let data = match std::fs::read(&args.file) {
        Ok(data) => data,
        Err(e) => return usage_error(io, &format!("{display}: cannot read: {e}")),
    };
    let (mut streams, notes) = match pickle_streams(&data, &policy) {
        Ok(found) => found,
        Err(message) => return usage_error(io, &format!("{display}: {message}")),
    };
    if let Some(member) = &args.member {
        let names: Vec<String> = streams.iter().map(|s| s.location.clone()).collect();
        streams.retain(|s| &s.location == member);
        if streams.is_empty() {
            let known = if names.iter().all(String::is_empty) {
                "it is a plain pickle, which has no members".to_string()
            } else {
                format!("its pickle members are: {}", names.join(", "))
            };
            return usage_error(io, &format!("{display}: no pickle member {member:?}; {known}"));
        }
    }
    let mut code = EXIT_CLEAN;
    let mut written = notes.iter().try_for_each(|note| writeln!(io.out, "note: {note}"));
    for stream in &streams {
        if written.is_err() {
            break;
        }
        let bytes = usize::try_from(stream.start)
            .ok()
            .and_then(|start| stream.data.get(start..))
            .unwrap_or_default();
        let report = analyze_slice(bytes, &policy, &Options::default());
        if !report.is_safe() {
            code = EXIT_UNSAFE;
        }
        let mut shown = crate::render::location(&display, &stream.location);
        if stream.start > 0 {
            shown.push_str(&format!(" (the pickle from byte {} on)", stream.start));
        }
        written = write_listing(io.out, &shown, bytes, &report, &policy);
    }
    finish(code, written, io)
}

/// The pickles of a file as `scan` finds them (the core's walk: same containers, members and
/// limits), and notes on what the scan could not read. A file that is no known format is
/// listed whole: disasm shows how its bytes decode.
fn pickle_streams(data: &[u8], policy: &Policy) -> Result<(Vec<PickleStream>, Vec<String>), String> {
    let (report, mut streams) = walk_bytes(data, policy, &ScanOptions::default());
    let notes = report
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.finding.kind,
                FindingKind::Container | FindingKind::LimitExceeded | FindingKind::Unsupported
            )
        })
        .map(|f| {
            let place = if f.location.is_empty() {
                "the file"
            } else {
                &f.location
            };
            format!("{place}: {}", f.finding.message)
        })
        .collect();
    if streams.is_empty() {
        match identify(data) {
            Format::Unknown | Format::Empty => streams.push(PickleStream {
                location: String::new(),
                format: "pickle".into(),
                data: data.to_vec(),
                start: 0,
            }),
            format => {
                return Err(format!(
                    "a {format} file that holds no pickle the scanner reads; `picklefence scan` reports what it holds"
                ))
            }
        }
    }
    Ok((streams, notes))
}

fn write_listing(
    w: &mut dyn Write,
    shown: &str,
    data: &[u8],
    report: &PickleReport,
    policy: &Policy,
) -> io::Result<()> {
    let verdict = if report.is_safe() { "clean" } else { "UNSAFE" };
    writeln!(
        w,
        "{shown}: {}, {}; {verdict} under policy {}",
        plural(data.len(), "byte", "bytes"),
        plural(report.pickles.len(), "pickle", "pickles"),
        policy.name()
    )?;
    let imports: HashMap<u64, &Import> = report.imports.iter().map(|i| (i.offset, i)).collect();
    let mut findings: HashMap<u64, Vec<&Finding>> = HashMap::new();
    for finding in &report.findings {
        findings.entry(finding.offset).or_default().push(finding);
    }
    writeln!(
        w,
        "{:>10}  {:<16} {:<34} stack effect",
        "offset", "opcode", "argument"
    )?;
    let mut decoder = Decoder::from_slice(data);
    let mut last = None;
    loop {
        match decoder.next_op() {
            Ok(Some(op)) => {
                last = Some(op.opcode);
                writeln!(
                    w,
                    "{:>10}  {:<16} {:<34} {}",
                    op.offset,
                    op.opcode.name(),
                    arg_text(&op.arg),
                    op.opcode.stack_effect()
                )?;
                if let Some(import) = imports.get(&op.offset) {
                    let written = match &import.written_as {
                        Some(raw) => format!(" (written as {raw})"),
                        None => String::new(),
                    };
                    writeln!(
                        w,
                        "{:>10}  -> import {}{written}: {}",
                        "",
                        import_label(import),
                        import_verdict(import)
                    )?;
                }
                for finding in findings.get(&op.offset).into_iter().flatten() {
                    writeln!(
                        w,
                        "{:>10}  !! [{}] {}",
                        "",
                        finding.severity.as_str(),
                        finding.kind.as_str()
                    )?;
                }
            }
            Ok(None) => {
                if last != Some(Opcode::Stop) {
                    writeln!(w, "{:>10}  <end of input>", decoder.position())?;
                }
                break;
            }
            Err(error) => {
                writeln!(w, "{:>10}  <cannot decode: {error}>", error.offset())?;
                break;
            }
        }
    }
    if report.records_dropped > 0 {
        writeln!(
            w,
            "({} more imports and calls were checked but are not annotated)",
            report.records_dropped
        )?;
    }
    if report.findings.is_empty() {
        writeln!(w, "findings: none")?;
    } else {
        writeln!(w, "findings:")?;
        for finding in &report.findings {
            let import = match &finding.import {
                Some(name) => format!(": {name}"),
                None => String::new(),
            };
            writeln!(
                w,
                "  [{}] {} at offset {}{import}",
                finding.severity.as_str(),
                finding.kind.as_str(),
                finding.offset
            )?;
            writeln!(w, "      {}", finding.message)?;
        }
    }
    writeln!(w, "verdict: {verdict}")?;
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg_text(arg: &Arg<'_>) -> String {
    match arg {
        Arg::None => String::new(),
        Arg::Int(value) => value.to_string(),
        Arg::U64(value) => value.to_string(),
        Arg::Bool(value) => if *value { "True" } else { "False" }.to_string(),
        Arg::Decimal(text) | Arg::FloatText(text) => lossy(text),
        Arg::Float(value) => format!("{value:?}"),
        Arg::Long(payload) => long_text(payload),
        Arg::Str(payload) => payload_repr("", payload),
        Arg::BadStr(text) => format!("invalid string {}", bytes_repr("", text, text.len() as u64)),
        Arg::Bytes(payload) => payload_repr("b", payload),
        Arg::Unicode(payload) => match payload.bytes() {
            Some(bytes) => str_repr(bytes, payload.len),
            None => format!("<str, {} bytes>", payload.len),
        },
        Arg::BadUnicode(payload) => format!(
            "<invalid UTF-8, {}>",
            plural(payload.len as usize, "byte", "bytes")
        ),
        Arg::Line(text) => bytes_repr("", text, text.len() as u64),
        Arg::Pair(module, name) => format!("{} {}", lossy(module), lossy(name)),
    }
}

/// LONG1/LONG4: little-endian two's complement, shown as a number when it fits in 128 bits.
fn long_text(payload: &Payload<'_>) -> String {
    match payload.bytes() {
        Some([]) => "0".to_string(),
        Some(bytes) if bytes.len() <= 16 => {
            let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
            let mut raw = if negative { [0xffu8; 16] } else { [0u8; 16] };
            for (slot, byte) in raw.iter_mut().zip(bytes) {
                *slot = *byte;
            }
            i128::from_le_bytes(raw).to_string()
        }
        _ => format!("<{}-byte integer>", payload.len),
    }
}

fn payload_repr(prefix: &str, payload: &Payload<'_>) -> String {
    match payload.bytes() {
        Some(bytes) => bytes_repr(prefix, bytes, payload.len),
        None => format!("<{} bytes>", payload.len),
    }
}

/// Python-style `b'...'`, cut after `PREVIEW` characters.
fn bytes_repr(prefix: &str, bytes: &[u8], len: u64) -> String {
    let mut body = String::new();
    let mut cut = false;
    for &byte in bytes {
        if body.len() >= PREVIEW {
            cut = true;
            break;
        }
        match byte {
            b'\\' => body.push_str("\\\\"),
            b'\'' => body.push_str("\\'"),
            b'\n' => body.push_str("\\n"),
            b'\r' => body.push_str("\\r"),
            b'\t' => body.push_str("\\t"),
            0x20..=0x7e => body.push(char::from(byte)),
            _ => body.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if cut {
        format!("{prefix}'{body}'... ({len} bytes)")
    } else {
        format!("{prefix}'{body}'")
    }
}

fn str_repr(bytes: &[u8], len: u64) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut body = String::new();
    let mut cut = false;
    for c in text.chars() {
        if body.chars().count() >= PREVIEW {
            cut = true;
            break;
        }
        match c {
            '\'' => body.push_str("\\'"),
            c => body.extend(c.escape_debug()),
        }
    }
    if cut {
        format!("'{body}'... ({len} bytes)")
    } else {
        format!("'{body}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn held(bytes: &[u8]) -> Payload<'_> {
        Payload {
            len: bytes.len() as u64,
            data: Some(Cow::Borrowed(bytes)),
        }
    }

    #[test]
    fn longs_decode_as_twos_complement() {
        assert_eq!(long_text(&held(&[])), "0");
        assert_eq!(long_text(&held(&[0xff])), "-1");
        assert_eq!(long_text(&held(&[0x00, 0x01])), "256");
        assert_eq!(long_text(&held(&[0xff, 0x00])), "255");
        assert_eq!(long_text(&held(&[0u8; 17])), "<17-byte integer>");
    }

    #[test]
    fn bytes_are_escaped_and_cut() {
        assert_eq!(bytes_repr("b", b"a'\x00\n", 4), "b'a\\'\\x00\\n'");
        let long = vec![b'x'; 100];
        assert_eq!(
            bytes_repr("b", &long, 100),
            format!("b'{}'... (100 bytes)", "x".repeat(60))
        );
    }

    #[test]
    fn strings_are_quoted() {
        assert_eq!(str_repr("é'\n".as_bytes(), 4), "'é\\'\\n'");
    }
}
