//! Hostile inputs: each ends in a finding or a typed error naming the limit it hits, in memory
//! bounded by twice the input plus a fixed amount, in time linear in the input.
//!
//! Memory and time are measured in a child process: a test re-executes this test binary with
//! `PICKLEFENCE_HOSTILE_CASE=<test>:<scale>`, and the child builds the input, runs the analysis and
//! prints its peak resident memory (`VmHWM`) and the CPU time of the analysis (this thread's
//! `schedstat`, which other processes on the machine do not inflate). Linearity compares scale 1
//! with scale 4 against a generous ratio, so a loaded machine does not make it flaky.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use common::stored_zip;

use picklefence::{
    analyze_reader, analyze_slice, DecodeError, Decoder, FindingKind, Limits, Mode, Opcode, Options,
    PickleReport, Policy, Severity, StreamLimits,
};

const CASE_ENV: &str = "PICKLEFENCE_HOSTILE_CASE";
const RESULT_TAG: &str = "HOSTILE-RESULT";

/// What the analysis may use beyond twice its input, with the default limits. Measured worst
/// cases (release or debug alike): the symbolic stack at `max_stack` (4M values) about 100 MB; the
/// memo at `max_memo` (4M entries) about 100 MB when its keys are dense (as picklers write them)
/// and about 420 MB when every key is a huge, distinct one (a hash table entry each); the import
/// table at `max_records` (100k distinct imports) about 55 MB; plus the capped records and findings
/// and the process itself.
const FIXED_BOUND: u64 = 640 << 20;

/// Scale-4 CPU time over scale-1 CPU time must stay under this (linear is 4, quadratic 16).
const MAX_TIME_RATIO: f64 = 8.0;

// --- measurement -------------------------------------------------------------------------------

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// `analyze_slice`, all pickles.
    Slice,
    /// `analyze_reader` over the bytes, default stream limits.
    Stream,
    /// `analyze_reader` holding every payload whatever its size (`keep_payload` = `usize::MAX`).
    StreamKeepAll,
}

#[derive(Debug)]
struct Measured {
    input_len: u64,
    baseline_kib: u64,
    peak_kib: u64,
    cpu_ns: u64,
    safe: bool,
    /// `kind|severity|message` of each finding.
    findings: Vec<String>,
}

impl Measured {
    fn has(&self, kind: FindingKind, needle: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.starts_with(kind.as_str()) && f.contains(needle))
    }

    fn extra_bytes(&self) -> u64 {
        (self.peak_kib.saturating_sub(self.baseline_kib)) * 1024
    }
}

fn analyze(entry: Entry, data: &[u8]) -> PickleReport {
    let policy = Policy::default();
    match entry {
        Entry::Slice => analyze_slice(data, &policy, &Options::default()),
        Entry::Stream => analyze_reader(data, &policy, &Options::default()),
        Entry::StreamKeepAll => {
            let mut options = Options::default();
            options.limits.stream = StreamLimits {
                max_line: usize::MAX,
                keep_payload: usize::MAX,
            };
            analyze_reader(data, &policy, &options)
        }
    }
}

/// In the child: build the input, analyse it, print the measurement.
fn child(entry: Entry, make: fn(usize) -> Vec<u8>, scale: usize) {
    let baseline_kib = status_kib("VmHWM:");
    let data = make(scale);
    let start = thread_cpu_ns();
    let report = analyze(entry, &data);
    let cpu_ns = thread_cpu_ns() - start;
    let peak_kib = status_kib("VmHWM:");
    let findings: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}|{}|{}", f.kind.as_str(), f.severity.as_str(), f.message))
        .collect();
    let line = serde_json::json!({
        "input_len": data.len(),
        "baseline_kib": baseline_kib,
        "peak_kib": peak_kib,
        "cpu_ns": cpu_ns,
        "safe": report.is_safe(),
        "findings": findings,
    });
    println!("{RESULT_TAG} {line}");
}

/// In the parent: run `test` in a child process at `scale` and read its measurement.
fn spawn(test: &str, scale: usize) -> Measured {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, format!("{test}:{scale}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {test}:{scale} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_TAG).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child {test}:{scale} printed no result:\n{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    Measured {
        input_len: v["input_len"].as_u64().unwrap(),
        baseline_kib: v["baseline_kib"].as_u64().unwrap(),
        peak_kib: v["peak_kib"].as_u64().unwrap(),
        cpu_ns: v["cpu_ns"].as_u64().unwrap(),
        safe: v["safe"].as_bool().unwrap(),
        findings: v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect(),
    }
}

/// Runs a hostile case: as the child when this process was started for it, else as the parent,
/// which measures scale 1 and scale 4 and checks memory and time. Returns the scale-1 and
/// scale-4 measurements (`None` in the child).
fn hostile(test: &str, entry: Entry, make: fn(usize) -> Vec<u8>) -> Option<(Measured, Measured)> {
    if let Ok(case) = std::env::var(CASE_ENV) {
        let (name, scale) = case.split_once(':').unwrap();
        if name == test {
            child(entry, make, scale.parse().unwrap());
        }
        return None;
    }
    let small = spawn(test, 1);
    let large = spawn(test, 4);
    for m in [&small, &large] {
        let bound = 2 * m.input_len + FIXED_BOUND;
        eprintln!(
            "{test}: input {} bytes, peak {} KiB over a {} KiB baseline, {:.1} ms CPU",
            m.input_len,
            m.peak_kib - m.baseline_kib.min(m.peak_kib),
            m.baseline_kib,
            m.cpu_ns as f64 / 1e6
        );
        assert!(
            m.extra_bytes() <= bound,
            "{test}: peak {} bytes over the baseline for {} input bytes (bound {bound})",
            m.extra_bytes(),
            m.input_len
        );
    }
    assert!(
        large.input_len >= 3 * small.input_len,
        "scale 4 is not 4x the input"
    );
    // Below ~20 ms the ratio is noise; such a case is linear enough by any measure.
    if small.cpu_ns > 20_000_000 {
        let ratio = large.cpu_ns as f64 / small.cpu_ns as f64;
        assert!(
            ratio < MAX_TIME_RATIO,
            "{test}: 4x input took {ratio:.1}x the time"
        );
    }
    Some((small, large))
}

// --- input builders ------------------------------------------------------------------------------

/// `prefix`, then `unit` `count` times, then `suffix`, allocated once.
fn repeat(prefix: &[u8], unit: &[u8], count: usize, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + unit.len() * count + suffix.len());
    out.extend_from_slice(prefix);
    for _ in 0..count {
        out.extend_from_slice(unit);
    }
    out.extend_from_slice(suffix);
    out
}

const MILLION: usize = 1_000_000;

fn violations(report: &PickleReport) -> Vec<(FindingKind, String)> {
    report.violations().map(|f| (f.kind, f.message.clone())).collect()
}

fn has_limit(report: &PickleReport, needle: &str) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::LimitExceeded && f.is_violation() && f.message.contains(needle))
}

// --- truncation ----------------------------------------------------------------------------------

/// `[1, 'a', {'b': (2.5, None)}, b'x', posix.system('id')]`-like pickles of every protocol
/// (made by CPython 3.11), and a few model-shaped ones.
fn sample_pickles() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("protocol 0", b"(lp0\nI1\naVa\np1\na(dp2\nVb\np3\n(F2.5\nNtp4\nsac_codecs\nencode\np5\n(Vx\np6\nVlatin1\np7\ntp8\nRp9\na.".to_vec()),
        ("protocol 1", b"]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03(G@\x04\x00\x00\x00\x00\x00\x00Ntq\x04sc_codecs\nencode\nq\x05(X\x01\x00\x00\x00xq\x06X\x06\x00\x00\x00latin1q\x07tq\x08Rq\x09e.".to_vec()),
        ("protocol 2", b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03G@\x04\x00\x00\x00\x00\x00\x00N\x86q\x04sc_codecs\nencode\nq\x05X\x01\x00\x00\x00xq\x06X\x06\x00\x00\x00latin1q\x07\x86q\x08Rq\x09e.".to_vec()),
        ("protocol 3", b"\x80\x03]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03G@\x04\x00\x00\x00\x00\x00\x00N\x86q\x04sC\x01xq\x05e.".to_vec()),
        ("protocol 4", b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94}\x94\x8c\x01b\x94G@\x04\x00\x00\x00\x00\x00\x00N\x86\x94sC\x01x\x94e.".to_vec()),
        ("protocol 5", b"\x80\x05\x95\x22\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94}\x94\x8c\x01b\x94G@\x04\x00\x00\x00\x00\x00\x00N\x86\x94sC\x01x\x94e.".to_vec()),
        ("os.system protocol 0", b"cposix\nsystem\np0\n(Vid\np1\ntp2\nRp3\n.".to_vec()),
        ("os.system protocol 2", b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.".to_vec()),
        ("os.system protocol 4", b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.".to_vec()),
        ("OrderedDict protocol 4", b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.".to_vec()),
        ("long strings protocol 4", {
            let mut p = b"\x80\x04".to_vec();
            p.push(b'X');
            p.extend_from_slice(&300u32.to_le_bytes());
            p.extend_from_slice(&[b'y'; 300]);
            p.push(0x8d);
            p.extend_from_slice(&3u64.to_le_bytes());
            p.extend_from_slice(b"abc");
            p.push(0x8e);
            p.extend_from_slice(&2u64.to_le_bytes());
            p.extend_from_slice(b"\x00\xff");
            p.extend_from_slice(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00z\x8b\x02\x00\x00\x00\x01\x02\x87.");
            p
        }),
    ]
}

#[test]
fn truncation_at_every_offset_is_a_malformed_pickle_or_a_truncation_error() {
    for (label, pickle) in sample_pickles() {
        let full = analyze_slice(&pickle, &Policy::default(), &Options::default());
        assert_eq!(full.pickles.len(), 1, "{label}");
        assert_eq!(full.pickles[0].end, Some(pickle.len() as u64), "{label}");
        for cut in 0..pickle.len() {
            let prefix = &pickle[..cut];
            // The decoder ends in a truncation error, or cleanly at an opcode boundary.
            let mut decoder = Decoder::from_slice(prefix);
            let mut boundary = 0;
            let ending = loop {
                match decoder.next_op() {
                    Ok(Some(op)) => boundary = op.end(),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            match &ending {
                None => assert_eq!(boundary, cut as u64, "{label} cut at {cut}"),
                Some(e) => assert!(e.is_truncation(), "{label} cut at {cut}: {e}"),
            }
            // The analysis says the pickle breaks (no STOP): never a clean report.
            for report in [
                analyze_slice(prefix, &Policy::default(), &Options::default()),
                analyze_reader(prefix, &Policy::default(), &Options::default()),
            ] {
                assert!(!report.is_safe(), "{label} cut at {cut} is reported safe");
                assert!(
                    report
                        .findings
                        .iter()
                        .any(|f| f.kind == FindingKind::MalformedPickle && f.severity == Severity::High),
                    "{label} cut at {cut}: {:?}",
                    report.findings
                );
                assert!(
                    report.pickles.iter().all(|p| p.end.is_none()),
                    "{label} cut at {cut}"
                );
            }
        }
    }
}

// --- length fields ------------------------------------------------------------------------------

fn counted_header(opcode: u8, width: usize, len: u64) -> Vec<u8> {
    let mut out = vec![0x80, 4, opcode];
    out.extend_from_slice(&len.to_le_bytes()[..width]);
    out.extend_from_slice(b"only a few bytes follow");
    out
}

#[test]
fn length_fields_claiming_up_to_2_pow_64_bytes_are_typed_errors() {
    let cases: &[(u8, &str, usize, &[u64])] = &[
        (
            0x8d,
            "BINUNICODE8",
            8,
            &[u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40, (1 << 32) + 5],
        ),
        (0x8e, "BINBYTES8", 8, &[u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40]),
        (
            0x96,
            "BYTEARRAY8",
            8,
            &[u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40],
        ),
        (0x95, "FRAME", 8, &[u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40]),
        (0x8b, "LONG4", 4, &[u32::MAX as u64, 1 << 31, (1 << 31) - 1]),
        (b'X', "BINUNICODE", 4, &[u32::MAX as u64, 1 << 31]),
        (b'B', "BINBYTES", 4, &[u32::MAX as u64]),
        (b'T', "BINSTRING", 4, &[u32::MAX as u64, (1 << 31) - 1]),
    ];
    for &(opcode, name, width, lengths) in cases {
        for &len in lengths {
            let data = counted_header(opcode, width, len);
            let keep_all = StreamLimits {
                max_line: usize::MAX,
                keep_payload: usize::MAX,
            };
            let mut errors = Vec::new();
            let mut slice = Decoder::from_slice(&data);
            errors.push(loop {
                match slice.next_op() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{name} {len}: no error"),
                    Err(e) => break e,
                }
            });
            // A stream cannot know up front that a frame is longer than its input (it reads
            // the opcodes inside it); only the analysis below is checked for it.
            let stream_limits: &[StreamLimits] = if name == "FRAME" && len <= i64::MAX as u64 {
                &[]
            } else {
                &[StreamLimits::default(), keep_all]
            };
            for &limits in stream_limits {
                let mut stream = Decoder::from_reader(&data[..], limits);
                errors.push(loop {
                    match stream.next_op() {
                        Ok(Some(_)) => {}
                        Ok(None) => panic!("{name} {len}: no error from the stream"),
                        Err(e) => break e,
                    }
                });
            }
            for error in &errors {
                match error {
                    DecodeError::Truncated { opcode, needed, .. } if opcode == &name => {
                        assert_eq!(*needed, len, "{name} {len}");
                    }
                    DecodeError::LengthOverflow { opcode, declared, .. } if opcode == &name => {
                        assert_eq!(*declared, len, "{name} {len}");
                        assert!(len > i64::MAX as u64 || width == 4, "{name} {len}: {error}");
                    }
                    other => panic!("{name} {len}: unexpected {other:?}"),
                }
            }
            for report in [
                analyze_slice(&data, &Policy::default(), &Options::default()),
                analyze_reader(&data[..], &Policy::default(), &Options::default()),
            ] {
                assert!(!report.is_safe(), "{name} {len}");
                assert!(
                    report
                        .findings
                        .iter()
                        .any(|f| f.kind == FindingKind::MalformedPickle),
                    "{name} {len}: {:?}",
                    report.findings
                );
            }
        }
    }
}

/// A stream told to hold every payload whatever its size, given a length of 2^40 with 4 MiB
/// behind it per scale: it buffers what arrives, never the declared length.
#[test]
fn claimed_length_with_a_keep_everything_stream() {
    fn make(scale: usize) -> Vec<u8> {
        let mut header = vec![0x80, 4, 0x8e];
        header.extend_from_slice(&(1u64 << 40).to_le_bytes());
        repeat(&header, &[0x5a; 4096], scale * 1024, b"")
    }
    let Some((small, large)) = hostile(
        "claimed_length_with_a_keep_everything_stream",
        Entry::StreamKeepAll,
        make,
    ) else {
        return;
    };
    for m in [small, large] {
        assert!(
            m.has(FindingKind::MalformedPickle, "BINBYTES8"),
            "{:?}",
            m.findings
        );
        assert!(!m.safe);
    }
}

// --- nesting ------------------------------------------------------------------------------------

#[test]
fn a_million_marks_hit_the_mark_limit() {
    fn make(scale: usize) -> Vec<u8> {
        repeat(b"\x80\x02", b"(", scale * MILLION, b"N.")
    }
    let Some((small, large)) = hostile("a_million_marks_hit_the_mark_limit", Entry::Slice, make) else {
        return;
    };
    for m in [small, large] {
        assert!(
            m.has(FindingKind::LimitExceeded, "more than 100000 open MARKs"),
            "{:?}",
            m.findings
        );
        assert!(!m.safe);
    }
}

#[test]
fn deeply_nested_lists_tuples_and_dicts() {
    // A million lists each appended into the one below it (no MARKs), a million TUPLE1 wrapped
    // around each other, a million dicts each set as a value in the one below.
    fn make(scale: usize) -> Vec<u8> {
        let n = scale * MILLION / 8;
        let mut out = Vec::with_capacity(n * 6 + 16);
        out.extend_from_slice(b"\x80\x02");
        out.extend(std::iter::repeat_n(b']', n));
        out.extend(std::iter::repeat_n(b'a', n - 1));
        out.push(b'N');
        out.extend(std::iter::repeat_n(0x85, n));
        out.push(b'}');
        for _ in 0..n {
            out.extend_from_slice(b"K\x00}");
        }
        out.extend(std::iter::repeat_n(b's', n));
        out.extend_from_slice(b"\x87.");
        out
    }
    let Some((small, large)) = hostile("deeply_nested_lists_tuples_and_dicts", Entry::Slice, make) else {
        return;
    };
    for m in [small, large] {
        assert!(m.safe, "plain nested data: {:?}", m.findings);
    }
}

#[test]
fn nested_tuples_by_marks_under_the_limit_are_clean() {
    let data = repeat(b"", b"(", 90_000, b"N")
        .into_iter()
        .chain(std::iter::repeat_n(b't', 90_000))
        .chain(*b".")
        .collect::<Vec<u8>>();
    let report = analyze_slice(&data, &Policy::default(), &Options::default());
    assert!(report.is_safe(), "{:?}", report.findings);
}

// --- memo -----------------------------------------------------------------------------------------

#[test]
fn huge_memo_indices() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff.",
            "CPython would allocate",
        ),
        (
            b"\x80\x02j\xff\xff\xff\xff.",
            "memo key 4294967295 was never stored",
        ),
        (b"Np99999999999999999999999999\n.", "invalid memo index"),
        (b"g99999999999999999999999999\n.", "invalid memo index"),
        (b"Np-1\n.", "invalid memo index"),
        (b"g18446744073709551615\n.", "invalid memo index"),
        (
            b"Np9223372036854775807\ng9223372036854775807\n.",
            "CPython would allocate",
        ),
        (b"Np3\ng3\n.", ""),
    ];
    for (data, needle) in cases {
        let report = analyze_slice(data, &Policy::default(), &Options::default());
        if needle.is_empty() {
            assert!(report.is_safe(), "{data:?}: {:?}", report.findings);
        } else {
            assert!(
                violations(&report).iter().any(|(k, m)| matches!(
                    k,
                    FindingKind::MalformedPickle | FindingKind::LimitExceeded
                ) && m.contains(needle)),
                "{data:?}: {:?}",
                report.findings
            );
        }
    }
}

#[test]
fn distinct_huge_memo_indices() {
    fn make(scale: usize) -> Vec<u8> {
        let n = scale * MILLION / 4;
        let mut out = Vec::with_capacity(n * 5 + 8);
        out.extend_from_slice(b"\x80\x02N");
        for i in 0..n as u32 {
            out.push(b'r');
            out.extend_from_slice(&(u32::MAX - i).to_le_bytes());
        }
        out.push(b'.');
        out
    }
    let Some((small, large)) = hostile("distinct_huge_memo_indices", Entry::Slice, make) else {
        return;
    };
    // Each key would make CPython allocate gigabytes: flagged, in bounded memory.
    assert!(!small.safe && !large.safe, "{:?}", small.findings);
}

#[test]
fn memoize_bomb_hits_the_memo_limit() {
    fn make(scale: usize) -> Vec<u8> {
        // Scale 4 is one past the limit of four million entries.
        repeat(b"\x80\x04N", b"\x94", scale * (MILLION + 1), b".")
    }
    let Some((small, large)) = hostile("memoize_bomb_hits_the_memo_limit", Entry::Slice, make) else {
        return;
    };
    assert!(small.safe, "{:?}", small.findings);
    assert!(
        large.has(FindingKind::LimitExceeded, "more than 4000000 memo entries"),
        "{:?}",
        large.findings
    );
}

#[test]
fn dup_bomb_hits_the_stack_limit() {
    fn make(scale: usize) -> Vec<u8> {
        // Scale 4 is one past the limit of four million values.
        repeat(b"\x80\x02N", b"2", scale * (MILLION + 1), b".")
    }
    let Some((small, large)) = hostile("dup_bomb_hits_the_stack_limit", Entry::Slice, make) else {
        return;
    };
    assert!(small.safe, "{:?}", small.findings);
    assert!(
        large.has(
            FindingKind::LimitExceeded,
            "the stack holds more than 4000000 values"
        ),
        "{:?}",
        large.findings
    );
}

#[test]
fn memo_get_expansion_bomb_stays_linear() {
    // Billion laughs: each list holds ten references to the one before; CPython would share
    // them, and the analysis never expands them.
    fn make(scale: usize) -> Vec<u8> {
        let mut unit = b"(".to_vec();
        for _ in 0..10 {
            unit.extend_from_slice(b"h\x00");
        }
        unit.extend_from_slice(b"lq\x00");
        repeat(b"\x80\x02]q\x00", &unit, scale * MILLION / 32, b".")
    }
    let Some((small, large)) = hostile("memo_get_expansion_bomb_stays_linear", Entry::Stream, make) else {
        return;
    };
    assert!(small.safe && large.safe, "{:?}", small.findings);
}

#[test]
fn self_referencing_structures() {
    let cases: &[&[u8]] = &[
        // l = []; l.append(l)
        b"\x80\x02]q\x00h\x00a.",
        // d = {}; d['self'] = d
        b"\x80\x02}q\x00X\x04\x00\x00\x00selfq\x01h\x00s.",
        // a list holding a tuple holding the list
        b"\x80\x02]q\x00h\x00\x85q\x01a.",
        // protocol 0: l = [l, l]
        b"(lp0\ng0\nag0\na.",
        // a set containing a frozenset of itself is impossible; a dict of lists of itself
        b"\x80\x04}\x94(\x8c\x01a\x94]\x94(h\x00h\x02eu.",
    ];
    for data in cases {
        let report = analyze_slice(data, &Policy::default(), &Options::default());
        assert!(report.is_safe(), "{data:?}: {:?}", report.findings);
        assert_eq!(report.pickles.len(), 1);
        let streamed = analyze_reader(*data, &Policy::default(), &Options::default());
        assert_eq!(report.findings, streamed.findings);
    }
    // An object whose state is itself: a state that is not a dict of attributes is refused
    // (and analysis does not loop).
    let data = b"\x80\x02ccollections\nOrderedDict\n)Rq\x00h\x00b.";
    let report = analyze_slice(data, &Policy::default(), &Options::default());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::StateViolation),
        "{:?}",
        report.findings
    );
}

// --- imports -------------------------------------------------------------------------------------

#[test]
fn distinct_imports() {
    // Every GLOBAL names a different module: each is a finding (capped by max_findings), an
    // import record (capped by max_records) and an entry of the analyzer's import table, which
    // max_records also bounds: past 100k distinct imports analysis stops.
    fn make(scale: usize) -> Vec<u8> {
        let n = scale * MILLION / 4;
        let mut out = Vec::with_capacity(n * 16 + 8);
        out.extend_from_slice(b"\x80\x02");
        for i in 0..n {
            out.extend_from_slice(format!("cm{i:x}\nn\n0").as_bytes());
        }
        out.extend_from_slice(b"N.");
        out
    }
    let Some((small, large)) = hostile("distinct_imports", Entry::Slice, make) else {
        return;
    };
    for m in [small, large] {
        assert!(!m.safe);
        assert!(
            m.has(FindingKind::DisallowedImport, "m0.n"),
            "{:?}",
            &m.findings[..3]
        );
        assert!(m.has(FindingKind::LimitExceeded, "more than 100000 distinct imports"));
    }
}

#[test]
fn distinct_extension_codes() {
    fn make(scale: usize) -> Vec<u8> {
        let n = scale * MILLION / 4;
        let mut out = Vec::with_capacity(n * 6 + 8);
        out.extend_from_slice(b"\x80\x02");
        for i in 0..n as u32 {
            out.push(0x84);
            out.extend_from_slice(&(i + 1).to_le_bytes());
            out.push(b'0');
        }
        out.extend_from_slice(b"N.");
        out
    }
    let Some((small, large)) = hostile("distinct_extension_codes", Entry::Slice, make) else {
        return;
    };
    for m in [small, large] {
        assert!(!m.safe);
        assert!(
            m.has(FindingKind::ExtensionCode, "extension code 1 "),
            "{:?}",
            &m.findings[..3]
        );
        assert!(m.has(FindingKind::LimitExceeded, "more than 100000 distinct imports"));
    }
}

// --- a million opcodes of each kind -----------------------------------------------------------

/// One opcode with the operands it needs, to repeat (operands pushed by other opcodes first).
fn unit_for(opcode: Opcode) -> Vec<u8> {
    let code = opcode.code();
    let with = |before: &[u8], after: &[u8]| {
        let mut out = before.to_vec();
        out.push(code);
        out.extend_from_slice(after);
        out
    };
    match opcode {
        Opcode::Int => with(b"", b"1\n"),
        Opcode::Long => with(b"", b"12345678901234567890L\n"),
        Opcode::Float => with(b"", b"1.5\n"),
        Opcode::String => with(b"", b"'a\\x41'\n"),
        Opcode::Unicode => with(b"", b"\\u00e9\n"),
        Opcode::Get => with(b"", b"0\n"),
        Opcode::Put => with(b"N", b"0\n0"),
        Opcode::PersId => with(b"", b"pid\n"),
        Opcode::Global => with(b"", b"collections\nOrderedDict\n"),
        Opcode::Inst => with(b"(", b"collections\nOrderedDict\n"),
        Opcode::BinInt1 | Opcode::BinGet => with(b"", b"\x00"),
        Opcode::BinPut => with(b"N", b"\x000"),
        Opcode::LongBinPut => with(b"N", b"\x00\x00\x00\x000"),
        Opcode::BinInt2 => with(b"", b"\x00\x01"),
        Opcode::BinInt | Opcode::LongBinGet => with(b"", b"\x00\x00\x00\x00"),
        Opcode::Ext1 => with(b"", b"\x01"),
        Opcode::Ext2 => with(b"", b"\x01\x00"),
        Opcode::Ext4 => with(b"", b"\x01\x00\x00\x00"),
        Opcode::Proto => with(b"", b"\x04"),
        Opcode::Frame => with(b"", &[0; 8]),
        Opcode::BinFloat => with(b"", &[0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        Opcode::ShortBinString | Opcode::ShortBinBytes | Opcode::ShortBinUnicode => with(b"", b"\x01a"),
        Opcode::BinString | Opcode::BinBytes | Opcode::BinUnicode => with(b"", b"\x01\x00\x00\x00a"),
        Opcode::BinUnicode8 | Opcode::BinBytes8 | Opcode::ByteArray8 => {
            with(b"", b"\x01\x00\x00\x00\x00\x00\x00\x00a")
        }
        Opcode::Long1 => with(b"", b"\x01\x7f"),
        Opcode::Long4 => with(b"", b"\x01\x00\x00\x00\x7f"),
        // Consumers get what they consume.
        Opcode::Pop | Opcode::Dup | Opcode::Memoize | Opcode::ReadonlyBuffer => with(b"N", b""),
        Opcode::PopMark => with(b"(N", b""),
        Opcode::Stop => with(b"N", b""),
        Opcode::Append => with(b"N", b""),
        Opcode::SetItem => with(b"NN", b""),
        Opcode::Appends | Opcode::SetItems => with(b"(NN", b""),
        Opcode::AddItems => with(b"(N", b""),
        Opcode::Tuple | Opcode::List | Opcode::Dict | Opcode::FrozenSet => with(b"(NN", b"0"),
        Opcode::Tuple1 => with(b"N", b"0"),
        Opcode::Tuple2 => with(b"NN", b"0"),
        Opcode::Tuple3 => with(b"NNN", b"0"),
        Opcode::StackGlobal => with(b"\x8c\x0bcollections\x8c\x0bOrderedDict", b"0"),
        Opcode::Reduce => with(b"h\x00)", b"0"),
        Opcode::NewObj => with(b"h\x00)", b"0"),
        Opcode::NewObjEx => with(b"h\x00)}", b"0"),
        Opcode::Obj => with(b"(h\x00", b"0"),
        Opcode::Build => with(b"N", b""),
        Opcode::BinPersId => with(b"K\x01", b"0"),
        Opcode::Mark => with(b"", b""),
        // Pushes with no argument: pop each right away so that the stack stays flat.
        _ => with(b"", b"0"),
    }
}

fn each_opcode_input(opcode: Opcode, count: usize) -> Vec<u8> {
    // The prologue leaves a list (for APPEND and friends to target) and a call result in memo 0
    // (for the calls to call: an indirect call each, a finding each, capped by max_findings).
    let prologue: &[u8] = match opcode {
        Opcode::Append | Opcode::Appends => b"\x80\x04]",
        Opcode::SetItem | Opcode::SetItems => b"\x80\x04}",
        Opcode::AddItems => b"\x80\x04\x8f",
        Opcode::Build => b"\x80\x04ccollections\nOrderedDict\n)R",
        Opcode::Reduce | Opcode::NewObj | Opcode::NewObjEx | Opcode::Obj => {
            b"\x80\x04ccollections\nOrderedDict\nq\x00"
        }
        Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => b"\x80\x04N\x940",
        _ => b"\x80\x04",
    };
    let suffix: &[u8] = match opcode {
        Opcode::Stop => b"",
        _ => b"N.",
    };
    repeat(prologue, &unit_for(opcode), count, suffix)
}

#[test]
fn a_million_opcodes_of_each_kind() {
    const TEST: &str = "a_million_opcodes_of_each_kind";
    if let Ok(case) = std::env::var(CASE_ENV) {
        let Some(rest) = case.strip_prefix(TEST).and_then(|r| r.strip_prefix(':')) else {
            return;
        };
        // The child: every opcode in turn, a million times each (the input of one is freed
        // before the next is built); prints one line per opcode and the overall peak.
        let count: usize = rest.parse().unwrap();
        let baseline_kib = status_kib("VmHWM:");
        let mut largest = 0usize;
        for &opcode in Opcode::ALL {
            let data = each_opcode_input(opcode, count);
            largest = largest.max(data.len());
            let start = thread_cpu_ns();
            let report = analyze_slice(&data, &Policy::default(), &Options::default());
            let cpu_ns = thread_cpu_ns() - start;
            let limit = report
                .findings
                .iter()
                .find(|f| f.kind == FindingKind::LimitExceeded)
                .map(|f| f.message.clone())
                .unwrap_or_default();
            println!(
                "OPCODE {} {} {} {} {}",
                opcode.name(),
                data.len(),
                cpu_ns,
                report.is_safe(),
                limit
            );
        }
        println!(
            "{RESULT_TAG} {}",
            serde_json::json!({"largest": largest, "baseline_kib": baseline_kib, "peak_kib": status_kib("VmHWM:")})
        );
        return;
    }
    // A million of each in a release build (`cargo test --release --test hostile`); a debug
    // build, some 30 times slower, runs a tenth of that.
    // (One past 100k, so that MARK and STOP still reach their limits.)
    let count = if cfg!(debug_assertions) {
        MILLION / 10 + 1
    } else {
        MILLION
    };
    let output = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, format!("{TEST}:{count}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = 0;
    for line in stdout
        .lines()
        .filter_map(|l| l.split_once("OPCODE ").map(|(_, rest)| rest))
    {
        let mut parts = line.splitn(5, ' ');
        let name = parts.next().unwrap();
        let _len: u64 = parts.next().unwrap().parse().unwrap();
        let _cpu: u64 = parts.next().unwrap().parse().unwrap();
        let safe: bool = parts.next().unwrap().parse().unwrap();
        let limit = parts.next().unwrap_or_default();
        eprintln!("{line}");
        // MARK hits its limit and STOP the pickle count; EXT codes are never allowed by default;
        // everything else here is plain data or calls of an allowed class: clean.
        match name {
            "MARK" => assert!(limit.contains("open MARKs") && !safe, "{line}"),
            "STOP" => assert!(limit.contains("pickles in one stream") && !safe, "{line}"),
            "EXT1" | "EXT2" | "EXT4" => assert!(!safe, "{line}"),
            // An object may receive one BUILD: the second is a violation (the rest are quiet).
            "BUILD" => assert!(!safe && limit.is_empty(), "{line}"),
            // OrderedDict is a call, never cls.__new__: each NEWOBJ is a role violation.
            "NEWOBJ" | "NEWOBJ_EX" => assert!(!safe && !limit.contains("analysis stopped"), "{line}"),
            _ => assert!(safe && limit.is_empty(), "{line}"),
        }
        seen += 1;
    }
    assert_eq!(seen, Opcode::ALL.len());
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_TAG).map(|(_, rest)| rest))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let largest = v["largest"].as_u64().unwrap();
    let extra = (v["peak_kib"].as_u64().unwrap() - v["baseline_kib"].as_u64().unwrap()) * 1024;
    eprintln!(
        "{TEST}: largest input {largest} bytes, peak {} KiB over the baseline",
        extra / 1024
    );
    assert!(
        extra <= 2 * largest + FIXED_BOUND,
        "peak {extra} for inputs up to {largest}"
    );
}

// --- text opcodes -------------------------------------------------------------------------------

#[test]
fn invalid_utf8_non_ascii_nul_and_crlf_in_names_are_violations() {
    let cases: &[(&[u8], FindingKind)] = &[
        (b"c\xff\xfe\nsystem\n.", FindingKind::UnresolvableImport),
        (b"cos\nsys\xc3\x28tem\n.", FindingKind::UnresolvableImport),
        (
            b"\x80\x04\x8c\x02\xff\xfe\x8c\x06system\x93.",
            FindingKind::MalformedPickle,
        ),
        (b"c\xc3\xa9os\nsystem\n.", FindingKind::DisallowedImport),
        (b"cos\x00\nsystem\n.", FindingKind::DisallowedImport),
        (b"cbuiltins\nlen\x00\n.", FindingKind::DisallowedImport),
        (
            b"\x80\x04\x8c\x03os\x00\x8c\x06system\x93.",
            FindingKind::DisallowedImport,
        ),
        // CPython keeps the \r: "os\r" is not "os", and not allowed either.
        (b"cos\r\nsystem\r\n.", FindingKind::DisallowedImport),
        (
            b"ccollections\r\nOrderedDict\r\n)R.",
            FindingKind::DisallowedImport,
        ),
        (b"(S'id'\r\nios\r\nsystem\r\n.", FindingKind::DisallowedImport),
    ];
    for (data, kind) in cases {
        for report in [
            analyze_slice(data, &Policy::default(), &Options::default()),
            analyze_reader(*data, &Policy::default(), &Options::default()),
        ] {
            assert!(!report.is_safe(), "{data:?}");
            // Whether a name counts as merely disallowed or as dangerous is the policy's call.
            let import_kinds = [FindingKind::DisallowedImport, FindingKind::DangerousImport];
            assert!(
                report
                    .violations()
                    .any(|f| f.kind == *kind
                        || (import_kinds.contains(kind) && import_kinds.contains(&f.kind))),
                "{data:?}: expected {kind:?}, got {:?}",
                report.findings
            );
        }
    }
    // \r\n in data opcodes: int("1\r") is 1 to CPython, and a clean pickle stays clean.
    let data = b"I1\r\nF2.5\r\nI3\r\n\x87.";
    let report = analyze_slice(data, &Policy::default(), &Options::default());
    assert!(report.is_safe(), "{:?}", report.findings);
}

#[test]
fn lines_longer_than_the_stream_line_limit_are_a_typed_error() {
    let mut data = b"c".to_vec();
    data.extend(std::iter::repeat_n(b'm', 5000));
    data.extend_from_slice(b"\nname\n.");
    let mut options = Options::default();
    options.limits.stream.max_line = 4096;
    let mut decoder = Decoder::from_reader(&data[..], options.limits.stream);
    assert!(matches!(
        decoder.next_op(),
        Err(DecodeError::LineTooLong { limit: 4096, .. })
    ));
    let report = analyze_reader(&data[..], &Policy::default(), &options);
    assert!(!report.is_safe());
    assert!(report
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::LimitExceeded && f.message.contains("4096")));
}

// --- findings over the limit ----------------------------------------------------------------------

#[test]
fn a_violation_past_max_findings_still_makes_the_report_unsafe() {
    // 2000 pickles, each noting an (informational) persistent id, then os.system.
    let mut data = repeat(b"", b"P0\n.", 2000, b"");
    data.extend_from_slice(b"cos\nsystem\n(S'id'\ntR.");
    let report = analyze_slice(&data, &Policy::default(), &Options::default());
    assert!(report.findings_dropped > 0);
    assert!(
        !report.is_safe(),
        "the dropped os.system import left the report safe"
    );
    let summary = report.findings.last().unwrap();
    assert_eq!(summary.kind, FindingKind::LimitExceeded);
    assert!(
        summary.is_violation() && summary.message.contains("violations"),
        "{summary:?}"
    );
    // Only informational findings dropped: the summary stays informational.
    let data = repeat(b"", b"P0\n.", 2000, b"");
    let report = analyze_slice(&data, &Policy::default(), &Options::default());
    assert!(report.is_safe(), "{:?}", report.findings.last());
}

// --- limits with small values name themselves -------------------------------------------------------

#[test]
fn every_limit_names_itself() {
    let small = Limits {
        max_stack: 10,
        max_marks: 3,
        max_memo: 2,
        max_opcodes: 50,
        max_name_len: 4,
        max_records: 2,
        max_findings: 3,
        max_pickles: 2,
        stream: StreamLimits::default(),
    };
    let cases: &[(&[u8], &str)] = &[
        (b"NNNNNNNNNNNNNNN.", "the stack holds more than 10 values"),
        (b"((((N.", "more than 3 open MARKs"),
        (b"N\x94\x94\x94.", "more than 2 memo entries"),
        (
            b"N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0N0.",
            "more than 50 opcodes",
        ),
        (b"N.N.N.", "more than 2 pickles"),
        (
            b"ca\nb\n0cc\nd\n0ca\nb\n0ce\nf\n0N.",
            "more than 2 distinct imports",
        ),
        (b"\x82\x01\x82\x01\x82\x01N.", "more than 2 distinct imports"),
    ];
    for (data, needle) in cases {
        let options = Options {
            limits: small,
            mode: Mode::AllPickles,
            ..Options::default()
        };
        let report = analyze_slice(data, &Policy::default(), &options);
        assert!(has_limit(&report, needle), "{needle}: {:?}", report.findings);
        assert!(!report.is_safe());
        let streamed = analyze_reader(*data, &Policy::default(), &options);
        assert_eq!(report.findings, streamed.findings);
    }
    // A name longer than max_name_len cannot be resolved: fail closed.
    let options = Options {
        limits: small,
        mode: Mode::AllPickles,
        ..Options::default()
    };
    let report = analyze_slice(
        b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93.",
        &Policy::default(),
        &options,
    );
    assert!(report
        .violations()
        .any(|f| f.kind == FindingKind::UnresolvableImport));
}

// --- containers ---------------------------------------------------------------------------------

#[test]
fn truncated_containers_with_a_malicious_pickle_are_never_clean() {
    let evil = sample_pickles()[8].1.clone();
    let benign = sample_pickles()[4].1.clone();
    let archive = stored_zip(&[
        ("archive/version", b"3\n"),
        ("archive/data.pkl", &evil),
        ("archive/extra.pkl", &benign),
    ]);
    let policy = Policy::default();
    let full = picklefence::scan_bytes(&archive, &policy, &picklefence::ScanOptions::default());
    assert!(!full.is_safe(), "{:?}", full.findings);
    let mut clean_cuts = Vec::new();
    for cut in 0..archive.len() {
        let report = picklefence::scan_bytes(&archive[..cut], &policy, &picklefence::ScanOptions::default());
        if report.is_safe() {
            clean_cuts.push((cut, report.format.clone()));
        }
    }
    // Fewer than the four bytes of the zip magic are no archive and no pickle (formats "empty"
    // and "unknown"); every longer prefix holds part of an archive whose pickle imports
    // os.system, and must not pass, whether the pickle is still readable or the archive is not.
    assert!(
        clean_cuts.iter().all(|(cut, _)| *cut < 4),
        "prefixes reported clean: {clean_cuts:?}"
    );
    assert_eq!(clean_cuts.len(), 4, "{clean_cuts:?}");
}

#[test]
fn truncated_gzip_of_a_malicious_pickle_is_never_clean() {
    use std::io::Write;
    let evil = sample_pickles()[8].1.clone();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&evil).unwrap();
    let wrapped = encoder.finish().unwrap();
    let policy = Policy::default();
    for cut in 2..=wrapped.len() {
        let report = picklefence::scan_bytes(&wrapped[..cut], &policy, &picklefence::ScanOptions::default());
        assert!(
            !report.is_safe(),
            "gzip cut at {cut} of {} is clean: {}",
            wrapped.len(),
            report.format
        );
    }
}

#[test]
fn long_text_lines_in_a_slice() {
    // A UNICODE line of bytes >= 0x80 decodes (raw-unicode-escape, as latin-1) to twice its
    // length; a STRING line with escapes to less than its length.
    fn make(scale: usize) -> Vec<u8> {
        let n = scale * 4 * MILLION;
        let mut out = Vec::with_capacity(2 * n + 16);
        out.push(b'V');
        out.extend(std::iter::repeat_n(0xE9, n));
        out.extend_from_slice(b"\nS'");
        out.extend(std::iter::repeat_n(b'x', n / 2));
        out.extend_from_slice(b"'\n\x86.");
        out
    }
    let Some((small, large)) = hostile("long_text_lines_in_a_slice", Entry::Slice, make) else {
        return;
    };
    for m in [&small, &large] {
        assert!(m.safe, "{:?}", m.findings);
    }
    // Memory grows with the input at most twice as fast as the input itself (the input counts):
    // the decoder validates long UNICODE lines without decoding them into a copy.
    let slope = (large.extra_bytes() as f64 - small.extra_bytes() as f64)
        / (large.input_len - small.input_len) as f64;
    eprintln!("long_text_lines_in_a_slice: {slope:.2} bytes of memory per input byte");
    assert!(slope < 2.0, "{slope:.2} bytes per input byte");
}

// --- files that change while they are scanned ----------------------------------------------------

#[test]
fn a_file_truncated_while_it_is_scanned_is_an_error_of_that_file() {
    // A large file is scanned through a memory map. Another process truncating it meanwhile made
    // the scanner's next read past the new end raise SIGBUS, which ended the whole process (a
    // directory scan, or the Python process that called the scanner). Now that scan alone fails,
    // with ScanError::Truncated; the process goes on.
    use picklefence::{scan_path, ScanError, ScanOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rewritten.pkl");
    // Every opcode is read: 32 MB of them take tens of milliseconds to scan.
    let data = repeat(b"\x80\x02", b"N0", 16 * MILLION, b"N.");
    let (policy, options) = (Policy::default(), ScanOptions::default());
    std::fs::write(&path, &data).unwrap();
    assert!(scan_path(&path, &policy, &options).unwrap().is_safe());
    let mut cut_short = 0;
    for delay in [1, 2, 4, 8, 16, 32] {
        std::fs::write(&path, &data).unwrap();
        let truncate = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(delay));
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(4096).unwrap();
            })
        };
        match scan_path(&path, &policy, &options) {
            Ok(_) => {}
            Err(ScanError::Truncated { path: named }) => {
                assert_eq!(named, path);
                cut_short += 1;
            }
            Err(other) => panic!("{other}"),
        }
        truncate.join().unwrap();
    }
    assert!(cut_short > 0, "no scan was under way when its file was truncated");
}
