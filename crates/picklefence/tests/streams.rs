//! `scan_reader`: inputs that are streams (standard input, pipes, devices) are scanned in
//! bounded memory and time, with the verdicts `scan_bytes` gives the same bytes.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // Test code.

mod common;

use std::io::Read;

use picklefence::{scan_bytes, scan_reader, FindingKind, Policy, ScanOptions, Verdict};

/// A protocol-4 pickle: `payload` bytes in one BINBYTES8, then `os.system` imported by
/// STACK_GLOBAL when `evil`.
fn pickle_with_payload(payload: usize, evil: bool) -> Vec<u8> {
    let mut out = vec![0x80, 4, 0x8e];
    out.extend_from_slice(&(payload as u64).to_le_bytes());
    out.resize(out.len() + payload, b'x');
    out.push(b'0'); // POP
    if evil {
        out.extend_from_slice(b"\x8c\x02os\x8c\x06system\x93");
    } else {
        out.push(b'N');
    }
    out.push(b'.');
    out
}

/// A reader that hands out its bytes in small, uneven pieces, as a pipe does.
struct Pipe<'a> {
    data: &'a [u8],
    turn: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.turn += 1;
        let n = buf
            .len()
            .min(self.data.len())
            .min(1 + (self.turn * 7919) % 65_536);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn short_and_long_streams_get_the_verdicts_of_their_bytes() {
    let policy = Policy::default();
    let options = ScanOptions::default();
    // Under and over the 16 MiB read whole: the second is scanned as it streams.
    for payload in [1_000, 20 << 20] {
        for evil in [false, true] {
            let data = pickle_with_payload(payload, evil);
            let from_bytes = scan_bytes(&data, &policy, &options);
            let from_stream = scan_reader(Pipe { data: &data, turn: 0 }, &policy, &options);
            assert_eq!(
                from_stream.verdict, from_bytes.verdict,
                "payload {payload}, evil {evil}"
            );
            assert_eq!(from_stream.format, from_bytes.format);
            let kinds = |r: &picklefence::ScanReport| -> Vec<FindingKind> {
                r.findings.iter().map(|f| f.finding.kind).collect()
            };
            let mut streamed = kinds(&from_stream);
            if payload > 16 << 20 {
                // The one finding streaming adds: what it cannot look for (an appended archive).
                let said = from_stream.findings.iter().any(|f| {
                    f.finding.kind == FindingKind::Container && f.finding.message.contains("not looked for")
                });
                assert!(said, "{:#?}", from_stream.findings);
                streamed.retain(|k| *k != FindingKind::Container);
            }
            assert_eq!(streamed, kinds(&from_bytes), "payload {payload}, evil {evil}");
            assert_eq!(from_stream.verdict == Verdict::Unsafe, evil);
        }
    }
}

#[test]
fn a_stream_that_never_ends_stops_at_the_byte_budget() {
    let policy = Policy::default();
    let options = ScanOptions {
        max_decompressed: 64 << 20,
        ..ScanOptions::default()
    };
    // A payload that claims 2^62 bytes and a source that never runs out: the decoder skips
    // the payload as it streams until the budget ends it.
    let mut head = vec![0x80, 4, 0x8e];
    head.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let endless = std::io::Cursor::new(head).chain(std::io::repeat(b'x'));
    let report = scan_reader(endless, &policy, &options);
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert!(
        report.findings.iter().any(
            |f| f.finding.kind == FindingKind::LimitExceeded && f.finding.message.contains("byte budget")
        ),
        "{:#?}",
        report.findings
    );
    // Endless zeros are no format; the rest is read on to the budget, so an input that never
    // ends is not called clean.
    let zeros = scan_reader(std::io::repeat(0), &policy, &options);
    assert_eq!(zeros.format, "unknown");
    assert_eq!(zeros.verdict, Verdict::Unsafe);
    assert!(zeros
        .findings
        .iter()
        .any(|f| f.finding.message.contains("byte budget")));
    // A finite input of no format is read to its end and clean.
    let finite = scan_reader(std::io::repeat(0).take(40 << 20), &policy, &options);
    assert_eq!(finite.verdict, Verdict::Clean, "{:#?}", finite.findings);
}

#[test]
fn a_zip_stream_walked_member_by_member_reads_as_its_directory_does() {
    let policy = Policy::default();
    let held = ScanOptions::default();
    let walked = ScanOptions {
        zip_stream_held: 0,
        ..ScanOptions::default()
    };
    let evil = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.".to_vec();
    let benign = b"\x80\x02}q\x00X\x01\x00\x00\x00wK\x01s.".to_vec();
    let names: Vec<String> = (0..20_000).map(|i| format!("archive/data/{i}")).collect();
    for pickle in [evil, benign] {
        // A torch zip with 20,000 storages: the kind is known from the first name on, and
        // tracking it costs the same per member however many came before.
        let mut members: Vec<(&str, &[u8])> = vec![("archive/data.pkl", &pickle)];
        members.extend(names.iter().map(|n| (n.as_str(), &b"\0\0\0\0"[..])));
        let zip = common::gzip(&common::stored_zip(&members));
        let from_directory = scan_bytes(&zip, &policy, &held);
        let from_walk = scan_bytes(&zip, &policy, &walked);
        assert_eq!(
            from_walk.verdict, from_directory.verdict,
            "{:#?}",
            from_walk.findings
        );
        let imports = |r: &picklefence::ScanReport| -> Vec<String> {
            r.entries
                .iter()
                .flat_map(|e| {
                    e.report
                        .imports
                        .iter()
                        .filter_map(|i| i.target.as_ref().map(ToString::to_string))
                })
                .collect()
        };
        assert_eq!(imports(&from_walk), imports(&from_directory));
        assert!(from_walk
            .findings
            .iter()
            .any(|f| f.finding.message.contains("read as streaming readers read it")));
    }
}

#[test]
fn a_frame_longer_than_the_identification_window_is_still_a_pickle() {
    // An opcode whose argument runs past the 64 KiB a stream is identified from, then an
    // os.system import: CPython loads each; so must a stream scan read them. The FRAME after
    // protocol-0 MARKs and PROTO, a bare FRAME (CPython needs no PROTO for it), a bare
    // BINBYTES8 payload before the import, and protocol 0's line opcodes (STRING, UNICODE)
    // whose line ends past the window.
    let mut framed = vec![b'N'; 100_000];
    framed.extend_from_slice(b"0\x8c\x02os\x8c\x06system\x93.");
    let mut payload = vec![b'x'; 100_000];
    payload.extend_from_slice(b"0\x8c\x02os\x8c\x06system\x93.");
    let long = |head: &[u8], len: usize, rest: &[u8]| {
        let mut data = head.to_vec();
        data.extend_from_slice(&(len as u64).to_le_bytes());
        data.extend_from_slice(rest);
        data
    };
    let policy = Policy::default();
    let options = ScanOptions::default();
    for data in [
        long(b"((\x80\x04\x95", framed.len(), &framed),
        long(b"\x95", framed.len(), &framed),
        long(b"\x8e", 100_000, &payload),
        [b"S'", &payload[..100_000], b"'\n0cos\nsystem\n(S'true'\ntR."].concat(),
        [b"V", &payload[..100_000], b"\n0cos\nsystem\n(S'true'\ntR."].concat(),
    ] {
        for input in [data.clone(), common::gzip(&data)] {
            let report = scan_bytes(&input, &policy, &options);
            assert_eq!(report.verdict, Verdict::Unsafe);
            assert_dangerous_import(&report);
        }
    }
}

#[test]
fn a_torch_tar_stream_reads_its_storages_as_torch_does() {
    // The oldest torch.save format: after the first storage's raw bytes comes a second
    // record whose pickle imports os.system. Analysis by content stops at the raw bytes; the
    // member must be followed as torch follows it, in a .tar.gz as in a .tar.
    let record = b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\n\x87.";
    let mut storages = b"\x80\x02K\x02.".to_vec();
    storages.extend_from_slice(record);
    storages.extend_from_slice(&4i64.to_le_bytes());
    storages.extend_from_slice(&[0x11; 16]);
    storages.extend_from_slice(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.");
    let pickle = b"\x80\x02}q\x00.".to_vec();
    let archive = common::tar(&[
        ("sys_info", b"\x80\x02}q\x00."),
        ("pickle", &pickle),
        ("storages", &storages),
        ("tensors", b"\x80\x02K\x00."),
    ]);
    let policy = Policy::default();
    let streamed = ScanOptions {
        stream_prefix: 4096,
        hold_pickles_up_to: 0,
        ..ScanOptions::default()
    };
    for input in [archive.clone(), common::gzip(&archive)] {
        for options in [ScanOptions::default(), streamed] {
            assert_dangerous_import(&scan_bytes(&input, &policy, &options));
        }
    }
}

/// Asserts that the report flags a dangerous import (the test payloads' os.system).
fn assert_dangerous_import(report: &picklefence::ScanReport) {
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.finding.kind == FindingKind::DangerousImport),
        "{:#?}",
        report.findings
    );
}

#[test]
fn a_stream_held_in_memory_that_fails_says_how_far_it_was_read() {
    // A joblib ZF stream (held whole to be read) whose source fails after 10,000 bytes: the
    // finding names that offset (it said 0).
    struct Fails;
    impl Read for Fails {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the disk went away"))
        }
    }
    let mut data = format!("ZF{:<19}", "0x10").into_bytes();
    data.resize(20_000, 0x5a);
    let options = ScanOptions {
        stream_prefix: 4096,
        hold_pickles_up_to: 0,
        read_whole_up_to: 0,
        ..ScanOptions::default()
    };
    let reader = std::io::Cursor::new(&data[..10_000]).chain(Fails);
    let report = scan_reader(reader, &Policy::default(), &options);
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.finding.message == "the stream cannot be read past offset 10000: the disk went away"),
        "{:#?}",
        report.findings
    );
}

#[test]
fn binary_data_that_starts_like_a_long_opcode_is_not_a_pickle() {
    // Raw bytes (a tensor, a weight file) whose first byte is BINBYTES8, FRAME or BINUNICODE8
    // and whose next eight claim about 10^18 bytes: no input holds that, so they break at
    // offset 0 and are no pickle, as a file (longer than the 1 MiB analysed) and as a stream.
    let policy = Policy::default();
    for opcode in [0x8e_u8, 0x95, 0x8d, 0x96] {
        let mut data = vec![opcode];
        data.extend_from_slice(&1_000_556_287_023_091_650_u64.to_le_bytes());
        data.resize(2 << 20, 0x41);
        for input in [data.clone(), common::gzip(&data)] {
            let report = scan_bytes(&input, &policy, &ScanOptions::default());
            assert_eq!(
                report.verdict,
                Verdict::Clean,
                "{opcode:#x}: {:#?}",
                report.findings
            );
        }
    }
}

#[test]
fn bytes_after_the_last_legacy_torch_storage_are_analysed_in_a_stream_too() {
    // torch.load stops after the last storage; what follows is reported and analysed as
    // pickles, held in memory or streamed alike (a stream used to stop unread: clean where the
    // same bytes in memory were unsafe).
    let (clean, _) = common::legacy_torch();
    let policy = Policy::default();
    // Past the identification window, so that the stream is read as it streams.
    let streamed = ScanOptions {
        read_whole_up_to: 0,
        stream_prefix: 4096,
        hold_pickles_up_to: 0,
        ..ScanOptions::default()
    };
    let padding = b"\x80\x02N.".repeat(1100);
    for (tail, unsafe_) in [
        (&b""[..], false),
        (&b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."[..], true),
        // A memo key that only an earlier pickle stored.
        (&b"\x80\x02Nq\x07.\x80\x02h\x07."[..], true),
    ] {
        let mut data = clean.clone();
        data.extend_from_slice(tail);
        if !tail.is_empty() {
            data.extend_from_slice(&padding);
        }
        let in_memory = scan_bytes(&data, &policy, &ScanOptions::default());
        let from_stream = scan_reader(Pipe { data: &data, turn: 0 }, &policy, &streamed);
        assert_eq!(in_memory.format, "pytorch-legacy");
        assert_eq!(from_stream.format, "pytorch-legacy");
        for report in [&in_memory, &from_stream] {
            assert_eq!(
                report.verdict == Verdict::Unsafe,
                unsafe_,
                "{:#?}",
                report.findings
            );
            assert_eq!(
                report
                    .findings
                    .iter()
                    .any(|f| f.finding.kind == FindingKind::TrailingData),
                !tail.is_empty(),
                "{:#?}",
                report.findings
            );
        }
    }
}

#[test]
fn binary_data_that_starts_like_a_long_counted_opcode_and_then_breaks_is_not_a_pickle() {
    // BINBYTES, BINUNICODE or BINSTRING with a 4-byte length of about 1 GB: a stream of unknown
    // size (or a file that large) may hold it, so identification takes the start for a pickle;
    // read whole, the bytes after the payload break at once with nothing imported or called.
    // pickle.load runs nothing there: not a pickle (it was a broken, unsafe one: about 1 in 85
    // random streams). The same start followed by an import stays a pickle, and unsafe.
    let policy = Policy::default();
    let streamed = ScanOptions {
        read_whole_up_to: 0,
        stream_prefix: 4096,
        hold_pickles_up_to: 0,
        ..ScanOptions::default()
    };
    for opcode in [b'B', b'X', b'T'] {
        for payload in [8_000_usize, 1 << 20] {
            let mut data = vec![opcode];
            data.extend_from_slice(&u32::try_from(payload).unwrap().to_le_bytes());
            data.resize(1 + 4 + payload, 0x41);
            let mut inert = data.clone();
            inert.extend_from_slice(&[0xff; 64]); // not an opcode
            let mut evil = data;
            evil.extend_from_slice(b"0cos\nsystem\n(S'true'\ntR.");
            for (input, unsafe_) in [(inert, false), (evil, true)] {
                for bytes in [input.clone(), common::gzip(&input)] {
                    let reports = [
                        scan_bytes(&bytes, &policy, &ScanOptions::default()),
                        scan_reader(
                            Pipe {
                                data: &bytes,
                                turn: 0,
                            },
                            &policy,
                            &streamed,
                        ),
                    ];
                    for report in reports {
                        assert_eq!(
                            report.verdict == Verdict::Unsafe,
                            unsafe_,
                            "{opcode:#x} {payload}: {:#?}",
                            report.findings
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_stream_that_fails_to_read_is_never_taken_for_inert_data() {
    // A protocol 0 list with nothing imported or called, gzipped and cut off: the pickle stops
    // on a read error, not on its bytes, so what followed was never seen. In memory the gzip's
    // failure is reported; as a stream too (it was dropped with the rest as "not a pickle").
    let data: Vec<u8> = (0..3000).fold(b"(l".to_vec(), |mut out, i| {
        out.extend_from_slice(format!("I{i}\na").as_bytes());
        out
    });
    let gzip = common::gzip(&data);
    let cut = &gzip[..gzip.len() / 2];
    let policy = Policy::default();
    let streamed = ScanOptions {
        read_whole_up_to: 0,
        stream_prefix: 4096,
        hold_pickles_up_to: 0,
        ..ScanOptions::default()
    };
    let in_memory = scan_bytes(cut, &policy, &ScanOptions::default());
    let from_stream = scan_reader(Pipe { data: cut, turn: 0 }, &policy, &streamed);
    assert_eq!(in_memory.verdict, Verdict::Unsafe, "{:#?}", in_memory.findings);
    assert_eq!(
        from_stream.verdict,
        Verdict::Unsafe,
        "{:#?}",
        from_stream.findings
    );
}

#[test]
fn text_whose_first_line_reads_as_an_import_of_no_possible_module_is_not_a_pickle() {
    // A source file that begins with `c` reads as GLOBAL of a module named by the rest of its
    // first line: no module can have such a name, so pickle.load raises there and runs nothing.
    let policy = Policy::default();
    let streamed = ScanOptions {
        read_whole_up_to: 0,
        ..ScanOptions::default()
    };
    let texts: [&[u8]; 4] = [
        b"class Foo:\n    pass\n",
        b"cmake_minimum_required(VERSION 3.10)\nproject(demo)\nadd_executable(demo main.c)\n",
        b"changelog: 1.2 fixed\n- bug\n",
        b"cython: language_level=3\nimport numpy\n",
    ];
    for text in texts {
        for report in [
            scan_bytes(text, &policy, &ScanOptions::default()),
            picklefence::scan_reader(text, &policy, &streamed),
        ] {
            assert_eq!(
                report.verdict,
                Verdict::Clean,
                "{:?}: {:#?}",
                String::from_utf8_lossy(text),
                report.findings
            );
        }
    }
    // Names that are modules stay imports, whatever follows; so does an unimportable name that
    // is called (the call is still found) or one among real imports.
    let pickles: [&[u8]; 4] = [
        b"cos\nsystem\n",
        b"cnumpy.core\nlong text that breaks\n",
        b"cweird name\nx\n(tR.",
        b"cweird name\nx\ncos\nsystem\n",
    ];
    for data in pickles {
        let report = scan_bytes(data, &policy, &ScanOptions::default());
        assert_eq!(
            report.verdict,
            Verdict::Unsafe,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}
