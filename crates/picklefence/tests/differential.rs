//! Differential test against CPython: for every pickle of the corpus that
//! `scripts/gen_differential_corpus.py` writes (>= 10,000 pickles, protocols 0-5, their
//! `pickletools.optimize` versions, NumPy / scikit-learn / PyTorch objects, handcrafted
//! protocol-0 forms), the decoder's `(offset, opcode, argument)` sequence must equal
//! `pickletools.genops` exactly:
//!
//! - over a slice;
//! - over a reader that hands out the bytes in random small chunks (with the odd
//!   `Interrupted`), keeping every payload; the reader must be left just past STOP;
//! - over the same kind of reader with `keep_payload: 16`, where offsets, opcodes, lengths,
//!   argument kinds and payload lengths must still match and every payload held must too.
//!
//! The canonical argument encoding is the one the script's docstring defines. Needs CPython 3
//! (`python3`, or the interpreter named by `PYTHON`); without one the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use picklefence::decoder::Source;
use picklefence::text::{decode_escape, long_le_to_decimal, trim_ascii_whitespace};
use picklefence::{Arg, Decoder, Op, Opcode, Payload, StreamLimits};
use serde::Deserialize;
use serde_json::{json, Value};

const MIN_PICKLES: usize = 10_000;
const LIMITED_KEEP: usize = 16;
const MAX_REPORTED: usize = 20;

#[derive(Deserialize)]
struct Case {
    id: String,
    pickle: String,
    ops: Vec<(u64, String, Value)>,
}

/// One decoded opcode, detached from the decoder's borrow.
#[derive(Debug, Clone)]
struct Got {
    offset: u64,
    len: u64,
    opcode: Opcode,
    /// The canonical JSON of the argument (see the script's docstring).
    arg: Value,
    /// The `Arg` variant.
    kind: &'static str,
    /// Length and, when held, bytes of a payload argument.
    payload: Option<(u64, Option<Vec<u8>>)>,
}

/// What a decoder produced up to and including STOP, and the input position after it.
struct Decoded {
    ops: Vec<Got>,
    error: Option<String>,
    end: u64,
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// Deletes the corpus file however the test ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn generate_corpus() -> (TempFile, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/gen_differential_corpus.py");
    assert!(
        script.is_file(),
        "{} is missing: the differential test cannot run",
        script.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "picklefence-differential-{}-{nanos}.jsonl",
        std::process::id()
    ));
    let file = TempFile(path);
    let output = Command::new(&python)
        .arg(&script)
        .arg(&file.0)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{python}` ({e}). The differential test needs CPython 3 to generate \
                 its corpus: install python3 or set PYTHON to an interpreter."
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{python} {} failed ({}):\n{stderr}",
        script.display(),
        output.status
    );
    eprint!("{stderr}");
    let text = std::fs::read_to_string(&file.0).expect("read the generated corpus");
    (file, text)
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert_eq!(hex.len() % 2, 0, "odd-length hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Canonical arguments, reproducing what each pickletools reader returns

fn int(decimal: String) -> Value {
    json!({ "int": decimal })
}

fn str_value(utf8: &[u8]) -> Value {
    json!({ "str": to_hex(utf8) })
}

/// `float.hex(x)`, and "nan" for every NaN.
fn float(x: f64) -> Value {
    let text = if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        let sign = if x.is_sign_negative() { "-" } else { "" };
        let bits = x.to_bits();
        let exponent = i32::try_from((bits >> 52) & 0x7ff).unwrap();
        let mantissa = bits & ((1u64 << 52) - 1);
        if exponent == 0 && mantissa == 0 {
            format!("{sign}0x0.0p+0")
        } else if exponent == 0 {
            format!("{sign}0x0.{mantissa:013x}p-1022")
        } else {
            format!("{sign}0x1.{mantissa:013x}p{:+}", exponent - 1023)
        }
    };
    json!({ "float": text })
}

/// `int(s)` on bytes (base 10): surrounding ASCII whitespace, a sign, single underscores between
/// digits, any number of digits. The normalized decimal, or `None` where Python raises.
fn python_int(text: &[u8]) -> Option<String> {
    let text = trim_ascii_whitespace(text);
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.first()?.is_ascii_digit() && digits.last()?.is_ascii_digit() {
        let mut clean = String::with_capacity(digits.len());
        let mut previous_underscore = false;
        for &b in digits {
            match b {
                b'_' if !previous_underscore => previous_underscore = true,
                b'0'..=b'9' => {
                    previous_underscore = false;
                    clean.push(char::from(b));
                }
                _ => return None,
            }
        }
        let trimmed = clean.trim_start_matches('0');
        return Some(match (trimmed.is_empty(), negative) {
            (true, _) => "0".to_owned(),
            (false, true) => format!("-{trimmed}"),
            (false, false) => trimmed.to_owned(),
        });
    }
    None
}

/// `float(s)` on bytes: surrounding whitespace, underscores between digits, inf/nan spellings.
fn python_float(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(trim_ascii_whitespace(text)).ok()?;
    let bytes = text.as_bytes();
    let mut clean = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
            let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(digit_before && digit_after) {
                return None;
            }
        } else {
            clean.push(char::from(b));
        }
    }
    clean.parse().ok()
}

/// genops' `read_stringnl(decode=True, stripquotes=False)` (GLOBAL, INST, PERSID): the line
/// escape-decoded, then ASCII-decoded.
fn genops_noescape(line: &[u8]) -> Option<Vec<u8>> {
    decode_escape(line).filter(|decoded| decoded.is_ascii())
}

fn latin1_to_utf8(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| char::from(b))
        .collect::<String>()
        .into_bytes()
}

fn skipped(payload: &Payload<'_>) -> Value {
    json!({ "payload not held": payload.len })
}

fn canonical(opcode: Opcode, arg: &Arg<'_>) -> Value {
    match arg {
        Arg::None => Value::Null,
        Arg::Int(value) => int(value.to_string()),
        Arg::U64(value) => int(value.to_string()),
        Arg::Bool(value) => json!({ "bool": value }),
        Arg::Decimal(text) => {
            // genops' read_decimalnl_short turns "00"/"01" into booleans for GET and PUT too.
            if matches!(opcode, Opcode::Get | Opcode::Put) && matches!(*text, b"00" | b"01") {
                return json!({ "bool": *text == b"01" });
            }
            python_int(text).map_or_else(|| json!({ "int() raises": String::from_utf8_lossy(text) }), int)
        }
        Arg::FloatText(text) => python_float(text).map_or_else(
            || json!({ "float() raises": String::from_utf8_lossy(text) }),
            float,
        ),
        Arg::Float(value) => float(*value),
        Arg::Long(payload) => payload
            .bytes()
            .map_or_else(|| skipped(payload), |b| int(long_le_to_decimal(b))),
        Arg::Str(payload) => match payload.bytes() {
            None => skipped(payload),
            // STRING: escape_decode(...).decode("ascii").
            Some(b) if opcode == Opcode::String => {
                if b.is_ascii() {
                    str_value(b)
                } else {
                    json!({ "ascii decode raises": to_hex(b) })
                }
            }
            // BINSTRING, SHORT_BINSTRING: .decode("latin-1").
            Some(b) => str_value(&latin1_to_utf8(b)),
        },
        Arg::BadStr(text) => json!({ "bad STRING": to_hex(text) }),
        Arg::Bytes(payload) => payload
            .bytes()
            .map_or_else(|| skipped(payload), |b| json!({ "bytes": to_hex(b) })),
        // WTF-8 is exactly `s.encode("utf-8", "surrogatepass")`.
        Arg::Unicode(payload) => payload.bytes().map_or_else(|| skipped(payload), str_value),
        Arg::BadUnicode(payload) => json!({
            "bad unicode": payload.bytes().map(to_hex),
            "len": payload.len,
        }),
        Arg::Line(line) => genops_noescape(line).map_or_else(
            || json!({ "genops raises": to_hex(line) }),
            |text| str_value(&text),
        ),
        Arg::Pair(module, name) => match (genops_noescape(module), genops_noescape(name)) {
            (Some(mut module), Some(name)) => {
                module.push(b' ');
                module.extend_from_slice(&name);
                str_value(&module)
            }
            _ => json!({ "genops raises": [to_hex(module), to_hex(name)] }),
        },
    }
}

fn kind_and_payload<'p>(arg: &'p Arg<'_>) -> (&'static str, Option<&'p Payload<'p>>) {
    match arg {
        Arg::None => ("None", None),
        Arg::Int(_) => ("Int", None),
        Arg::U64(_) => ("U64", None),
        Arg::Bool(_) => ("Bool", None),
        Arg::Decimal(_) => ("Decimal", None),
        Arg::FloatText(_) => ("FloatText", None),
        Arg::Float(_) => ("Float", None),
        Arg::Long(p) => ("Long", Some(p)),
        Arg::Str(p) => ("Str", Some(p)),
        Arg::BadStr(_) => ("BadStr", None),
        Arg::Bytes(p) => ("Bytes", Some(p)),
        Arg::Unicode(p) => ("Unicode", Some(p)),
        Arg::BadUnicode(p) => ("BadUnicode", Some(p)),
        Arg::Line(_) => ("Line", None),
        Arg::Pair(..) => ("Pair", None),
    }
}

fn detach(op: &Op<'_>) -> Got {
    let (kind, payload) = kind_and_payload(&op.arg);
    Got {
        offset: op.offset,
        len: op.len,
        opcode: op.opcode,
        arg: canonical(op.opcode, &op.arg),
        kind,
        payload: payload.map(|p| (p.len, p.bytes().map(<[u8]>::to_vec))),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn decode<S: Source>(mut decoder: Decoder<S>) -> (Decoded, S) {
    let mut ops = Vec::new();
    let mut error = None;
    loop {
        match decoder.next_op() {
            Ok(Some(op)) => {
                let stop = op.opcode == Opcode::Stop;
                ops.push(detach(&op));
                if stop {
                    break;
                }
            }
            Ok(None) => {
                error = Some("input ended before STOP".to_owned());
                break;
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let end = decoder.position();
    (Decoded { ops, error, end }, decoder.into_source())
}

/// xorshift64*: reproducible chunk sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Hands out the input in random chunks of 1 to 7 bytes (now and then up to 300), and now and
/// then fails with `Interrupted`, which readers may do and the decoder must retry.
struct ChunkReader<'a> {
    data: &'a [u8],
    pos: usize,
    rng: Rng,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.rng.next();
        let (interrupt, big) = (r % 23, r % 7);
        if interrupt == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let max = if big == 0 { 300 } else { 1 + (r >> 32) % 7 };
        let rest = &self.data[self.pos..];
        let n = buf.len().min(rest.len()).min(usize::try_from(max).unwrap());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

fn decode_chunked(data: &[u8], seed: u64, limits: StreamLimits) -> (Decoded, usize) {
    let reader = ChunkReader {
        data,
        pos: 0,
        rng: Rng(seed | 1),
    };
    let (decoded, source) = decode(Decoder::from_reader(reader, limits));
    (decoded, source.into_inner().pos)
}

// ---------------------------------------------------------------------------------------------
// Comparison

struct Report {
    id: String,
    problems: Vec<String>,
}

impl Report {
    fn push(&mut self, problem: String) {
        self.problems.push(problem);
    }
}

/// Checks a decoding against genops' listing, and that the opcode lengths tile the input.
fn check_against_genops(report: &mut Report, mode: &str, case: &Case, decoded: &Decoded) {
    for (i, expected) in case.ops.iter().enumerate() {
        let Some(got) = decoded.ops.get(i) else {
            report.push(format!(
                "{mode}: at offset {} expected {} {}, got {}",
                expected.0,
                expected.1,
                expected.2,
                decoded.error.as_deref().unwrap_or("nothing")
            ));
            return;
        };
        if (got.offset, got.opcode.name(), &got.arg) != (expected.0, expected.1.as_str(), &expected.2) {
            report.push(format!(
                "{mode}: op #{i}: expected ({}, {}, {}), got ({}, {}, {})",
                expected.0,
                expected.1,
                expected.2,
                got.offset,
                got.opcode.name(),
                got.arg
            ));
            return;
        }
        let next = case.ops.get(i + 1).map(|op| op.0);
        let expected_end = next.unwrap_or(got.offset + 1);
        if got.offset + got.len != expected_end {
            report.push(format!(
                "{mode}: {} at offset {} has length {}, but the next opcode starts at {expected_end}",
                got.opcode.name(),
                got.offset,
                got.len
            ));
            return;
        }
    }
    if decoded.ops.len() != case.ops.len() {
        report.push(format!(
            "{mode}: genops lists {} opcodes, the decoder {}",
            case.ops.len(),
            decoded.ops.len()
        ));
    }
    if let Some(last) = case.ops.last() {
        if decoded.end != last.0 + 1 {
            report.push(format!(
                "{mode}: decoder position after STOP is {}, expected {}",
                decoded.end,
                last.0 + 1
            ));
        }
    }
}

/// Checks a decoding with `keep_payload: LIMITED_KEEP` against the full one.
fn check_limited(report: &mut Report, full: &Decoded, limited: &Decoded) {
    if full.ops.len() != limited.ops.len() || full.error != limited.error {
        report.push(format!(
            "limited reader: {} opcodes ({:?}), the slice decoder {} ({:?})",
            limited.ops.len(),
            limited.error,
            full.ops.len(),
            full.error
        ));
    }
    for (a, b) in full.ops.iter().zip(&limited.ops) {
        let same_frame = (a.offset, a.len, a.opcode, a.kind) == (b.offset, b.len, b.opcode, b.kind);
        let same_arg = match (&a.payload, &b.payload) {
            (None, None) => a.arg == b.arg,
            (Some((len_a, data_a)), Some((len_b, data_b))) => {
                len_a == len_b
                    && match data_b {
                        Some(_) => data_a == data_b && a.arg == b.arg,
                        None => *len_b > LIMITED_KEEP as u64,
                    }
            }
            _ => false,
        };
        if !(same_frame && same_arg) {
            report.push(format!(
                "limited reader: at offset {}: slice decoder gives {} {} {} (len {}), limited \
                 reader {} {} {} (len {}, payload {:?})",
                a.offset,
                a.opcode.name(),
                a.kind,
                a.arg,
                a.len,
                b.opcode.name(),
                b.kind,
                b.arg,
                b.len,
                b.payload.as_ref().map(|(len, data)| (len, data.is_some()))
            ));
            return;
        }
    }
}

fn check_case(index: usize, case: &Case) -> Report {
    let data = from_hex(&case.pickle);
    let mut report = Report {
        id: case.id.clone(),
        problems: Vec::new(),
    };
    let (slice, _) = decode(Decoder::from_slice(&data));
    check_against_genops(&mut report, "slice", case, &slice);

    let seed = 0x9E37_79B9_7F4A_7C15 ^ (index as u64).wrapping_mul(0x1000_0000_01B3);
    let keep_all = StreamLimits {
        keep_payload: data.len(),
        ..Default::default()
    };
    let (chunked, consumed) = decode_chunked(&data, seed, keep_all);
    check_against_genops(&mut report, "reader", case, &chunked);
    if u64::try_from(consumed).unwrap() != chunked.end {
        report.push(format!(
            "reader: the decoder says it is at {}, but it consumed {consumed} bytes",
            chunked.end
        ));
    }

    let limited_limits = StreamLimits {
        keep_payload: LIMITED_KEEP,
        ..Default::default()
    };
    let (limited, consumed) = decode_chunked(&data, seed.rotate_left(17), limited_limits);
    check_limited(&mut report, &slice, &limited);
    if u64::try_from(consumed).unwrap() != limited.end || limited.end != slice.end {
        report.push(format!(
            "limited reader: consumed {consumed} bytes, position {}, slice decoder ended at {}",
            limited.end, slice.end
        ));
    }
    report
}

#[test]
fn decoder_matches_pickletools_genops() {
    let started = Instant::now();
    let (_file, corpus) = generate_corpus();
    let generated = started.elapsed();

    let cases: Vec<Case> = corpus
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).expect("corpus line"))
        .collect();
    drop(corpus);

    // Two halves on two threads: the test suite runs in debug builds.
    let (first, second) = cases.split_at(cases.len() / 2);
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            first
                .iter()
                .enumerate()
                .map(|(i, case)| check_case(i, case))
                .filter(|r| !r.problems.is_empty())
                .collect::<Vec<_>>()
        });
        let mut failed: Vec<Report> = second
            .iter()
            .enumerate()
            .map(|(i, case)| check_case(first.len() + i, case))
            .filter(|r| !r.problems.is_empty())
            .collect();
        let mut all = handle.join().expect("checker thread");
        all.append(&mut failed);
        all
    });

    let opcodes: usize = cases.iter().map(|c| c.ops.len()).sum();
    eprintln!(
        "differential: {} pickles ({opcodes} opcodes) compared with pickletools.genops in 3 \
         modes; corpus generated in {:.1?}, total {:.1?}",
        cases.len(),
        generated,
        started.elapsed()
    );

    if !reports.is_empty() {
        let mut message = format!(
            "{} of {} pickles differ from genops:\n",
            reports.len(),
            cases.len()
        );
        for report in reports.iter().take(MAX_REPORTED) {
            for problem in &report.problems {
                let _ = writeln!(message, "  {}: {problem}", report.id);
            }
        }
        if reports.len() > MAX_REPORTED {
            let _ = writeln!(message, "  ... and {} more", reports.len() - MAX_REPORTED);
        }
        panic!("{message}");
    }
    assert!(
        cases.len() >= MIN_PICKLES,
        "only {} pickles compared, the corpus must hold at least {MIN_PICKLES}",
        cases.len()
    );
}
