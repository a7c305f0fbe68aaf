//! Container readers on inputs built here in Rust: zip tricks, `.npy` header edge cases,
//! joblib array layouts, the legacy torch layout, decompression and nesting bombs, and garbage.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;

use common::{gzip, member, zip, Member};
use picklefence::formats::joblib::analyze_joblib_slice;
use picklefence::{
    analyze_joblib_reader, identify, scan_bytes, scan_path, FindingKind, Format, Options, Policy, ScanError,
    ScanOptions, ScanReport, Severity,
};

const PAYLOAD: &[u8] = b"cposix\nsystem\n(Vtouch /tmp/x\ntR.";

fn scan(data: &[u8]) -> ScanReport {
    scan_bytes(data, &Policy::default(), &ScanOptions::default())
}

fn flagged(report: &ScanReport) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.finding.is_violation())
        .filter_map(|f| f.finding.import.as_ref().map(|i| format!("{}@{}", i, f.location)))
        .collect()
}

fn has(report: &ScanReport, kind: FindingKind, severity: Severity) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.finding.kind == kind && f.finding.severity == severity)
}

fn show(report: &ScanReport) -> String {
    report
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {}: {}\n",
                f.finding.kind.as_str(),
                f.finding.severity.as_str(),
                f.location,
                f.finding.message
            )
        })
        .collect()
}

/// A torch-like checkpoint: `archive/data.pkl` with one storage, and its data record.
fn torch_members() -> Vec<Member> {
    let pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storageq\x01ctorch\nFloatStorage\nq\x02X\x01\x00\x00\x000q\x03X\x03\x00\x00\x00cpuq\x04K\x02tq\x05QK\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\nq\x06)Rq\x07tq\x08Rq\x09.";
    vec![
        member("archive/data.pkl", pkl),
        member("archive/byteorder", b"little"),
        // Raw storage bytes that happen to spell an import: never read.
        member("archive/data/0", b"cos\nsystem\n"),
        member("archive/version", b"3\n"),
    ]
}

#[test]
fn a_benign_torch_zip_is_clean_and_its_storage_is_not_read() {
    let report = scan(&zip(&torch_members()));
    assert_eq!(report.format, "pytorch-zip");
    assert!(report.is_safe(), "{}", show(&report));
    assert_eq!(report.entries.len(), 1);
    assert_eq!(report.entries[0].location, "archive/data.pkl");
    assert_eq!(identify(&zip(&torch_members())), Format::PytorchZip);
}

#[test]
fn zip_tricks_are_findings() {
    let cases: Vec<(&str, Vec<Member>)> = vec![
        ("duplicate", {
            let mut m = torch_members();
            m.push(member("archive/data.pkl", PAYLOAD));
            m
        }),
        ("case duplicate", {
            let mut m = torch_members();
            m.push(member("archive/DATA.PKL", PAYLOAD));
            m
        }),
        ("local name", {
            let mut m = torch_members();
            m.push(Member {
                local_name: Some("archive/x.pkl".into()),
                ..member("archive/notes.txt", PAYLOAD)
            });
            m
        }),
        ("local encryption", {
            let mut m = torch_members();
            m[0].local_flags = 1;
            m.push(member("archive/p.pkl", PAYLOAD));
            m
        }),
        ("crc", {
            let mut m = torch_members();
            m.push(Member {
                crc: Some(1),
                ..member("archive/p.pkl", PAYLOAD)
            });
            m
        }),
    ];
    for (what, members) in cases {
        let report = scan(&zip(&members));
        assert!(!report.is_safe(), "{what}: {}", show(&report));
        assert!(
            has(&report, FindingKind::Container, Severity::High),
            "{what}: {}",
            show(&report)
        );
        assert!(
            flagged(&report).iter().any(|f| f.starts_with("posix.system@")),
            "{what}: {}",
            show(&report)
        );
    }
}

#[test]
fn members_are_found_by_content_and_deflated_pickles_are_read() {
    let mut m = torch_members();
    m.push(member("archive/extra/readme.txt", PAYLOAD));
    let report = scan(&zip(&m));
    assert_eq!(flagged(&report), vec!["posix.system@archive/extra/readme.txt"]);

    let mut m = torch_members();
    m[0].deflate = true;
    let report = scan(&zip(&m));
    assert!(report.is_safe(), "{}", show(&report));
    assert!(
        has(&report, FindingKind::Container, Severity::Warning),
        "{}",
        show(&report)
    );
    m.push(Member {
        deflate: true,
        ..member("archive/hook.pkl", PAYLOAD)
    });
    assert_eq!(flagged(&scan(&zip(&m))), vec!["posix.system@archive/hook.pkl"]);
    // Without the persistent id naming it, data/0 is not a storage: its content is analysed.
    m[0] = member("archive/data.pkl", b"\x80\x02N.");
    m.pop();
    assert_eq!(flagged(&scan(&zip(&m))), vec!["os.system@archive/data/0"]);
}

#[test]
fn both_readings_of_a_pickle_zip_polyglot_are_analysed() {
    let mut data = b"\x80\x02cbuiltins\nexec\nX\x01\x00\x00\x00x\x85R.".to_vec();
    let mut inner = torch_members();
    inner.push(member("archive/p.pkl", PAYLOAD));
    data.extend(zip(&inner));
    let report = scan(&data);
    let found = flagged(&report);
    assert!(found.contains(&"builtins.exec@".to_string()), "{found:?}");
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("posix.system@<appended zip>!archive/p.pkl")),
        "{found:?}"
    );
    assert!(has(&report, FindingKind::Container, Severity::High));

    // A zip in front of a zip: the prefix is scanned as its own reading.
    let mut data = zip(&[member("a.pkl", PAYLOAD)]);
    data.extend(zip(&torch_members()));
    let report = scan(&data);
    assert!(
        flagged(&report).iter().any(|f| f.contains("<prepended>")),
        "{}",
        show(&report)
    );
}

#[test]
fn overlapping_members_and_hidden_headers_are_findings() {
    let data = zip(&[member("a.bin", b"0123456789")]);
    // Point a second central entry at the first local header (a Fifield zip bomb).
    let cd = u32::from_le_bytes(data[data.len() - 6..data.len() - 2].try_into().unwrap()) as usize;
    let entry = data[cd..data.len() - 22].to_vec();
    let mut twin = entry.clone();
    twin[46] = b'b';
    let mut rebuilt = data[..cd].to_vec();
    rebuilt.extend(&entry);
    rebuilt.extend(&twin);
    rebuilt.extend(0x0605_4b50u32.to_le_bytes());
    rebuilt.extend([0u8; 4]);
    rebuilt.extend(2u16.to_le_bytes());
    rebuilt.extend(2u16.to_le_bytes());
    rebuilt.extend(((entry.len() * 2) as u32).to_le_bytes());
    rebuilt.extend((cd as u32).to_le_bytes());
    rebuilt.extend(0u16.to_le_bytes());
    let report = scan(&rebuilt);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.finding.message.contains("overlaps")),
        "{}",
        show(&report)
    );

    // A local header no central entry lists.
    let mut hidden = zip(&[member("a.bin", b"x")]);
    let cd = u32::from_le_bytes(hidden[hidden.len() - 6..hidden.len() - 2].try_into().unwrap()) as usize;
    let secret = zip(&[member("s.pkl", PAYLOAD)]);
    let local_len = 30 + 5 + PAYLOAD.len();
    let mut data = hidden[..cd].to_vec();
    data.extend(&secret[..local_len]);
    let new_cd = data.len() as u32;
    data.extend(&hidden[cd..hidden.len() - 6]);
    data.extend(new_cd.to_le_bytes());
    data.extend(0u16.to_le_bytes());
    hidden = data;
    let report = scan(&hidden);
    assert!(!report.is_safe());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.finding.message.contains("not listed")),
        "{}",
        show(&report)
    );
}

#[test]
fn broken_zips_are_findings_not_errors() {
    let good = zip(&torch_members());
    for cut in [4usize, 30, 100, good.len() / 2, good.len() - 10, good.len() - 1] {
        let mut data = good[..cut].to_vec();
        if cut > 30 {
            data.extend(&good[good.len() - 22..]);
        }
        let report = scan(&data);
        assert!(!report.findings.is_empty(), "cut {cut}");
    }
    // Encrypted in both headers: cannot be read, never clean.
    let mut m = torch_members();
    m.push(Member {
        flags: 1,
        local_flags: 1,
        ..member("archive/secret.pkl", b"xxxx")
    });
    let report = scan(&zip(&m));
    assert!(
        has(&report, FindingKind::Unsupported, Severity::High),
        "{}",
        show(&report)
    );
}

#[test]
fn nesting_is_bounded() {
    let mut data = zip(&[member("evil.pkl", PAYLOAD)]);
    for i in 0..20 {
        data = zip(&[member(&format!("n{i}.zip"), &data)]);
    }
    let report = scan(&data);
    assert!(
        has(&report, FindingKind::LimitExceeded, Severity::High),
        "{}",
        show(&report)
    );
    let mut gz = PAYLOAD.to_vec();
    for _ in 0..20 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&gz).unwrap();
        gz = e.finish().unwrap();
    }
    let report = scan(&gz);
    assert!(
        has(&report, FindingKind::LimitExceeded, Severity::High),
        "{}",
        show(&report)
    );
}

// --- compression and bombs -------------------------------------------------------------------

#[test]
fn compressed_pickles_are_read_through() {
    let report = scan(&gzip(PAYLOAD));
    assert_eq!(report.format, "gzip");
    assert_eq!(flagged(&report), vec!["posix.system@<gzip>"]);
    // Concatenated gzip members are one stream to Python's GzipFile.
    let mut two = gzip(b"\x80\x02N.");
    two.extend(gzip(PAYLOAD));
    assert_eq!(flagged(&scan(&two)), vec!["posix.system@<gzip>"]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(PAYLOAD).unwrap();
    assert_eq!(flagged(&scan(&z.finish().unwrap())), vec!["posix.system@<zlib>"]);
    let mut b = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    b.write_all(PAYLOAD).unwrap();
    assert_eq!(flagged(&scan(&b.finish().unwrap())), vec!["posix.system@<bzip2>"]);
    // A protocol 0 pickle whose first import comes after 100 KB of harmless opcodes.
    let mut late = b"(l".to_vec();
    for _ in 0..20_000 {
        late.extend(b"I1\na");
    }
    late.extend(b"0");
    late.extend(PAYLOAD);
    assert_eq!(flagged(&scan(&late)), vec!["posix.system@"]);
    assert_eq!(flagged(&scan(&gzip(&late))), vec!["posix.system@<gzip>"]);
    let lz4 = {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(PAYLOAD).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(flagged(&scan(&lz4)), vec!["posix.system@<lz4>"]);
}

#[test]
fn decompression_bombs_are_findings() {
    // A pickle of 64 MiB of zeros (one BINBYTES8) gzip-compresses about 1000:1.
    let mut big = b"\x80\x04\x8e".to_vec();
    big.extend((64u64 << 20).to_le_bytes());
    big.resize(big.len() + (64 << 20), 0);
    big.push(b'.');
    let compressed = gzip(&big);
    let report = scan(&compressed);
    assert!(report.is_safe(), "{}", show(&report));
    let tight = ScanOptions {
        max_ratio: 100,
        ratio_floor: 1 << 20,
        ..ScanOptions::default()
    };
    let report = scan_bytes(&compressed, &Policy::default(), &tight);
    assert!(
        has(&report, FindingKind::LimitExceeded, Severity::High),
        "{}",
        show(&report)
    );
    let small_budget = ScanOptions {
        max_decompressed: 1 << 20,
        ..ScanOptions::default()
    };
    let report = scan_bytes(&compressed, &Policy::default(), &small_budget);
    assert!(
        has(&report, FindingKind::LimitExceeded, Severity::High),
        "{}",
        show(&report)
    );
    // The same in a deflated zip member.
    let m = Member {
        deflate: true,
        ..member("big.pkl", &big)
    };
    let report = scan_bytes(&zip(&[m]), &Policy::default(), &tight);
    assert!(
        has(&report, FindingKind::LimitExceeded, Severity::High),
        "{}",
        show(&report)
    );
}

#[test]
fn unsupported_archives_are_never_clean() {
    for data in [
        &b"7z\xbc\xaf\x27\x1c\x00\x04rest"[..],
        b"Rar!\x1a\x07\x01\x00",
        b"!<arch>\nfoo",
    ] {
        let report = scan(data);
        assert!(!report.is_safe());
        assert!(has(&report, FindingKind::Unsupported, Severity::High));
    }
}

// --- NumPy ------------------------------------------------------------------------------------

fn npy(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

#[test]
fn npy_object_arrays_are_analysed_and_plain_ones_are_not_read() {
    let object = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n";
    for version in [1, 2, 3] {
        let report = scan(&npy(version, object, PAYLOAD));
        assert_eq!(report.format, "npy");
        assert_eq!(flagged(&report), vec!["posix.system@"], "v{version}");
    }
    // Plain dtype: the bytes after the header are array data, whatever they look like.
    let report = scan(&npy(
        1,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }\n",
        PAYLOAD,
    ));
    assert!(report.is_safe(), "{}", show(&report));
    assert!(report.entries.is_empty());
    // Structured with an object field.
    let report = scan(&npy(
        1,
        "{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, 'shape': (1,)}",
        PAYLOAD,
    ));
    assert_eq!(flagged(&report), vec!["posix.system@"]);
    // A descr the scanner does not know: the data is analysed if it is a pickle.
    let report = scan(&npy(
        1,
        "{'descr': 'object', 'fortran_order': False, 'shape': (1,)}",
        PAYLOAD,
    ));
    assert_eq!(flagged(&report), vec!["posix.system@"]);
    // Data of an unknown descr that breaks before importing or calling anything is not a
    // violation, in memory and as a stream (gzip, past the 64 KiB identification window).
    let mut inert = b"\x80\x04".to_vec(); // PROTO, so it looks like a pickle; then it breaks:
    inert.push(b'1'); // POP_MARK with no MARK
    inert.resize(100_000, b'N');
    let unknown = npy(
        1,
        "{'descr': 'zO', 'fortran_order': False, 'shape': (3,)}",
        &inert,
    );
    for data in [unknown.clone(), gzip(&unknown)] {
        let report = scan(&data);
        assert!(report.is_safe(), "{}", show(&report));
    }
    let acting = npy(
        1,
        "{'descr': 'zO', 'fortran_order': False, 'shape': (3,)}",
        PAYLOAD,
    );
    assert_eq!(flagged(&scan(&acting)), vec!["posix.system@"]);
    // Broken headers are reported, not errors.
    for bad in [
        npy(4, object, b""),
        npy(1, "{'descr': '|O'", b""),
        b"\x93NUMPY\x01\x00\xff\xff{".to_vec(),
        npy(3, "{'descr': '\u{ff}\u{fe}'}", b""),
    ] {
        let report = scan(&bad);
        assert!(!report.findings.is_empty());
    }
    // Through gzip, only the header is needed for plain arrays.
    let report = scan(&gzip(&npy(1, object, PAYLOAD)));
    assert_eq!(flagged(&report), vec!["posix.system@<gzip>"]);
}

// --- joblib -----------------------------------------------------------------------------------

fn su(out: &mut Vec<u8>, s: &str) {
    out.push(0x8c);
    out.push(s.len() as u8);
    out.extend(s.as_bytes());
}

/// A joblib-style stream: `[array]` where the array is `shape` of `descr` with state flags
/// `flags`, followed by `data`, then `after` ops, then the list's end.
fn joblib_stream(descr: &str, shape: &[u32], flags: u8, padded: bool, data: &[u8], after: &[u8]) -> Vec<u8> {
    joblib_stream_with(descr, shape, flags, padded, data, after, false)
}

/// The same, the wrapper's state set one SETITEM per key (`setitem`) instead of one SETITEMS.
fn joblib_stream_with(
    descr: &str,
    shape: &[u32],
    flags: u8,
    padded: bool,
    data: &[u8],
    after: &[u8],
    setitem: bool,
) -> Vec<u8> {
    let text = |s: &str| {
        let mut out = Vec::new();
        su(&mut out, s);
        out
    };
    let mut state: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut subclass = text("numpy");
    subclass.extend(text("ndarray"));
    subclass.push(0x93);
    state.push((text("subclass"), subclass));
    let mut dims = vec![b'('];
    for d in shape {
        dims.push(b'J');
        dims.extend(d.to_le_bytes());
    }
    dims.push(b't');
    state.push((text("shape"), dims));
    state.push((text("order"), text("C")));
    let mut dtype = text("numpy");
    dtype.extend(text("dtype"));
    dtype.push(0x93);
    dtype.extend(text(descr));
    dtype.extend(b"\x89\x88\x87R(K\x03");
    dtype.extend(text("<"));
    dtype.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK");
    dtype.push(flags);
    dtype.extend(b"tb");
    state.push((text("dtype"), dtype));
    state.push((text("allow_mmap"), vec![0x88]));
    if padded {
        state.push((text("numpy_array_alignment_bytes"), b"K\x10".to_vec()));
    }
    let mut p = b"\x80\x04]\x94".to_vec();
    su(&mut p, "joblib.numpy_pickle");
    su(&mut p, "NumpyArrayWrapper");
    p.extend(b"\x93\x94)\x81\x94}\x94");
    if !setitem {
        p.push(b'(');
    }
    for (key, value) in state {
        p.extend(key);
        p.extend(value);
        if setitem {
            p.push(b's');
        }
    }
    if !setitem {
        p.push(b'u');
    }
    p.push(b'b');
    // joblib reads padding only before raw data, not before an object array's pickle.
    if padded && flags & 1 == 0 {
        p.push(3);
        p.extend([0xff; 3]);
    }
    p.extend(data);
    p.extend(after);
    p.extend(b"a.");
    p
}

#[test]
fn joblib_arrays_are_skipped_and_what_follows_is_analysed() {
    let data = b"cos\nsystem\n(S'x'\ntR.\0\0\0\0"; // 24 bytes of "array data"
    assert_eq!(data.len(), 24);
    let benign = joblib_stream("f8", &[3], 0, true, data, b"");
    let report = scan(&benign);
    assert_eq!(report.format, "joblib");
    assert!(report.is_safe(), "{}", show(&report));
    // The wrapper's state set key by key: the same reading, as slice and as stream.
    let keyed = joblib_stream_with("f8", &[3], 0, true, data, b"", true);
    let report = scan(&keyed);
    assert!(report.is_safe(), "{}", show(&report));
    let streamed = analyze_joblib_reader(&keyed[..], &Policy::default(), &Options::default());
    assert!(streamed.is_safe(), "{:?}", streamed.findings);
    let evil = joblib_stream("f8", &[3], 0, true, data, b"cposix\nsystem\n(Vx\ntR0");
    let report = scan(&evil);
    assert!(
        flagged(&report).contains(&"posix.system@".to_string()),
        "{}",
        show(&report)
    );
    // Without padding (joblib < 1.2), and with a 2-d shape.
    let report = scan(&joblib_stream(
        "i4",
        &[2, 3],
        0,
        false,
        data,
        b"cposix\nsystem\n(Vx\ntR0",
    ));
    assert!(
        flagged(&report).contains(&"posix.system@".to_string()),
        "{}",
        show(&report)
    );
    // The hook's pre-scan reads exactly through the outer STOP.
    let mut stream = evil.clone();
    stream.extend(b"trailing bytes joblib never reads");
    let mut reader = std::io::Cursor::new(stream);
    let report = analyze_joblib_reader(&mut reader, &Policy::default(), &Options::default());
    assert!(!report.is_safe());
    assert_eq!(reader.position(), evil.len() as u64);
    assert_eq!(report.consumed, evil.len() as u64);
    // Compressed, as joblib writes it.
    let report = scan(&gzip(&evil));
    assert!(
        flagged(&report).contains(&"posix.system@<gzip>".to_string()),
        "{}",
        show(&report)
    );
}

#[test]
fn joblib_arrays_after_a_build_inside_a_frame_are_ambiguous_as_slice_and_stream() {
    let data = [0u8; 24];
    let plain = joblib_stream("f8", &[3], 0, true, &data, b"");
    // The wrapper's BUILD ends before the padding byte, the array data and "a.".
    let build_end = plain.len() - (4 + data.len() + 2);
    assert_eq!(plain[build_end - 1], b'b');
    let framed = |frame_end: usize| {
        let mut out = plain[..2].to_vec();
        out.push(0x95);
        out.extend_from_slice(&((frame_end - 2) as u64).to_le_bytes());
        out.extend_from_slice(&plain[2..]);
        out
    };
    let ambiguous = |report: &picklefence::PickleReport| {
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::AmbiguousFraming && f.message.contains("joblib reads an array"))
    };
    let (policy, options) = (Policy::default(), Options::default());
    // A frame holding everything: joblib reads the array from after the frame, the unpickler
    // goes on inside it. The fast path runs that FRAME; the finding must not depend on it.
    let inside = framed(plain.len());
    let sliced = analyze_joblib_slice(&inside, &policy, &options);
    let streamed = analyze_joblib_reader(&inside[..], &policy, &options);
    assert!(ambiguous(&sliced), "{:?}", sliced.findings);
    assert!(ambiguous(&streamed), "{:?}", streamed.findings);
    assert!(!sliced.is_safe() && !streamed.is_safe());
    // A frame ending with the BUILD: the array follows it, as joblib writes it.
    let after = framed(build_end);
    let sliced = analyze_joblib_slice(&after, &policy, &options);
    let streamed = analyze_joblib_reader(&after[..], &policy, &options);
    assert!(sliced.is_safe(), "{:?}", sliced.findings);
    assert_eq!(sliced.findings, streamed.findings);
}

#[test]
fn joblib_arrays_read_by_pickle_load_flag_names_known_to_run_code() {
    // pickle.load reads an array's raw bytes as opcodes (no padding byte here to stop it).
    let array = |ops: &[u8]| {
        let mut data = ops.to_vec();
        data.resize(24, b'N');
        data
    };
    let evil = joblib_stream("f8", &[3], 0, false, &array(b"cposix\nsystem\n(Vx\ntR0"), b"");
    let report = scan(&evil);
    assert_eq!(report.format, "joblib");
    assert_eq!(flagged(&report), vec!["posix.system@"], "{}", show(&report));
    assert!(report
        .findings
        .iter()
        .any(|f| f.finding.message.contains("read by pickle.load")));
    // A name the policy does not list but that is not known to run code is listed as a warning:
    // benign object arrays read this way join unrelated names of the outer pickle.
    let odd = joblib_stream("f8", &[3], 0, false, &array(b"cnumpy\nscalar_ish\n0"), b"");
    let report = scan(&odd);
    assert!(report.is_safe(), "{}", show(&report));
    assert!(report
        .findings
        .iter()
        .any(|f| f.finding.severity == picklefence::Severity::Warning
            && f.finding
                .import
                .as_ref()
                .is_some_and(|i| i.to_string() == "numpy.scalar_ish")));
}

#[test]
fn joblib_object_arrays_are_nested_pickles() {
    // Object dtype (hasobject via the state's flags, as numpy trusts them): a nested pickle.
    let nested = b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.";
    let report = analyze_joblib_slice(
        &joblib_stream("O8", &[1], 63, true, nested, b""),
        &Policy::default(),
        &Options::default(),
    );
    assert!(report.violations().any(|f| f
        .import
        .as_ref()
        .is_some_and(|i| i.to_string() == "builtins.eval")));
    // An 'f8' dtype whose flags claim objects is read as a pickle too.
    let report = analyze_joblib_slice(
        &joblib_stream("f8", &[1], 1, true, nested, b""),
        &Policy::default(),
        &Options::default(),
    );
    assert!(report.violations().any(|f| f
        .import
        .as_ref()
        .is_some_and(|i| i.to_string() == "builtins.eval")));
}

#[test]
fn joblib_layouts_the_scanner_cannot_follow_fail_closed() {
    // A descr numpy never writes: the array length is unknown.
    let report = scan(&joblib_stream("float64", &[3], 0, true, &[0u8; 24], b""));
    assert!(!report.is_safe());
    assert!(
        has(&report, FindingKind::Container, Severity::High),
        "{}",
        show(&report)
    );
    // Item size 0.
    let report = scan(&joblib_stream("V0", &[3], 0, true, &[], b""));
    assert!(!report.is_safe(), "{}", show(&report));
    // Array data cut short.
    let mut cut = joblib_stream("f8", &[1000], 0, true, &[0u8; 16], b"");
    cut.truncate(cut.len() - 2);
    let report = scan(&cut);
    assert!(
        has(&report, FindingKind::MalformedPickle, Severity::High),
        "{}",
        show(&report)
    );
}

// --- legacy torch, identification, paths --------------------------------------------------------

#[test]
fn legacy_torch_storages_are_skipped_by_declared_size() {
    let (f, storage_at) = common::legacy_torch();
    assert_eq!(identify(&f), Format::PytorchLegacy);
    let report = scan(&f);
    assert_eq!(report.format, "pytorch-legacy");
    assert!(report.is_safe(), "{}", show(&report));
    // Bytes after the storages are reported; a pickle there is analysed.
    let mut trailing = f.clone();
    trailing.extend(PAYLOAD);
    let report = scan(&trailing);
    assert!(
        has(&report, FindingKind::TrailingData, Severity::Warning),
        "{}",
        show(&report)
    );
    assert!(!report.is_safe());
    // A storage whose size disagrees with its persistent id.
    let mut wrong = f.clone();
    wrong[storage_at] = 7;
    let report = scan(&wrong);
    assert!(
        report
            .findings
            .iter()
            .any(|x| x.finding.message.contains("declares")),
        "{}",
        show(&report)
    );
}

#[test]
fn identification_by_magic() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "empty"),
        (b"\x80\x05N.", "pickle"),
        (b"(lp0\nI1\na.", "pickle"),
        (b"cposix\nsystem\n", "pickle"),
        (b"hello world", "unknown"),
        (b"GGUF\x03\x00\x00\x00", "gguf"),
        (b"\x89HDF\r\n\x1a\n\0\0", "hdf5"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"BZh91AY&SY", "bzip2"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x28\xb5\x2f\xfd\x00", "zstd"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x5d\x00\x00\x80\x00", "lzma"),
        (b"\x78\x9c\x03\x00", "zlib"),
        (b"\x93NUMPY\x01\x00", "npy"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
    ];
    for (data, name) in cases {
        assert_eq!(identify(data).name(), name, "{data:?}");
    }
    let mut st = 2u64.to_le_bytes().to_vec();
    st.extend(b"{}");
    assert_eq!(identify(&st), Format::Safetensors);
    let report = scan(&st);
    assert!(report.is_safe());
    assert!(has(&report, FindingKind::NonPickleFormat, Severity::Info));
    let mut bad = 20u64.to_le_bytes().to_vec();
    bad.extend(b"{\"a\": 1}            ");
    assert!(has(&scan(&bad), FindingKind::NonPickleFormat, Severity::Warning));
}

#[test]
fn scan_path_maps_files_and_reports_what_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.pt");
    std::fs::write(&file, zip(&torch_members())).unwrap();
    let report = scan_path(&file, &Policy::default(), &ScanOptions::default()).unwrap();
    assert_eq!(report.format, "pytorch-zip");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(
        scan_path(&empty, &Policy::default(), &ScanOptions::default())
            .unwrap()
            .format,
        "empty"
    );
    assert!(matches!(
        scan_path(dir.path(), &Policy::default(), &ScanOptions::default()),
        Err(ScanError::NotAFile { .. })
    ));
    let missing = scan_path(
        dir.path().join("nope"),
        &Policy::default(),
        &ScanOptions::default(),
    );
    assert!(matches!(missing, Err(ScanError::Open { .. })));
    assert!(missing.unwrap_err().to_string().contains("nope"));
}

#[test]
fn small_files_are_read_and_large_ones_mapped_with_the_same_result() {
    // A malicious pickle whose bytes payload puts the file just under, at and over the 256 KiB
    // bound between reading and mapping, and with the import after the payload.
    let dir = tempfile::tempdir().unwrap();
    let bound = 256 << 10;
    for size in [bound - 1, bound, bound + 1, 4 * bound] {
        let tail = b"cposix\nsystem\n(Vx\ntR.";
        let head = 1 + 4;
        let payload = size - head - 1 - tail.len();
        let mut data = vec![b'B'];
        data.extend((payload as u32).to_le_bytes());
        data.resize(head + payload, b'x');
        data.push(b'0');
        data.extend(tail);
        assert_eq!(data.len(), size);
        let file = dir.path().join(format!("f{size}.pkl"));
        std::fs::write(&file, &data).unwrap();
        let from_file = scan_path(&file, &Policy::default(), &ScanOptions::default()).unwrap();
        let from_bytes = scan_bytes(&data, &Policy::default(), &ScanOptions::default());
        assert_eq!(flagged(&from_file), vec!["posix.system@"], "{size}");
        assert_eq!(from_file.findings, from_bytes.findings, "{size}");
    }
}

#[test]
fn garbage_after_every_magic_never_panics() {
    let magics: [&[u8]; 14] = [
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"\x93NUMPY\x01\x00",
        b"\x93NUMPY\x02\x00",
        b"\x1f\x8b\x08\x00",
        b"BZh9",
        b"\xfd7zXZ\x00",
        b"\x28\xb5\x2f\xfd",
        b"\x04\x22\x4d\x18",
        b"\x5d\x00\x00\x80\x00",
        b"\x78\x9c",
        b"\x80\x02",
        b"GGUF",
        b"\xff\xff\xff\xff\x00\x00\x00\x00{",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for magic in magics {
        for len in [0usize, 1, 7, 30, 100, 600, 5000] {
            let mut data = magic.to_vec();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                data.push((state >> 24) as u8);
            }
            let _ = scan(&data);
            // Also with a zip end record glued on.
            let mut z = data.clone();
            z.extend(&zip(&[member("a", b"b")])[..]);
            let _ = scan(&z);
        }
    }
}
