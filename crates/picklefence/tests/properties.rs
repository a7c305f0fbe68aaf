//! Property tests: decoding and analysis never panic on any bytes; a pickle analysed as a slice
//! and as a stream of random short reads (with any keep-payload limit) gives the same report;
//! analysis is deterministic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{self, Read};

use picklefence::{
    analyze_reader, analyze_slice, scan_bytes, Arg, DecodeError, Decoder, Limits, Mode, Op, Options,
    PickleReport, Policy, ScanOptions, StreamLimits,
};
use proptest::prelude::*;

/// A reader that returns 1..=`max_chunk` bytes per call and, when `interrupts`, sometimes fails
/// with `Interrupted` (which readers must retry).
struct ShortReads<'a> {
    data: &'a [u8],
    pos: usize,
    state: u64,
    max_chunk: usize,
    interrupts: bool,
}

impl<'a> ShortReads<'a> {
    fn new(data: &'a [u8], seed: u64, max_chunk: usize, interrupts: bool) -> Self {
        ShortReads {
            data,
            pos: 0,
            state: seed | 1,
            max_chunk: max_chunk.max(1),
            interrupts,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupts && self.next().is_multiple_of(5) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "try again"));
        }
        let want = 1 + (self.next() % self.max_chunk as u64) as usize;
        let rest = &self.data[self.pos..];
        let n = want.min(buf.len()).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

// --- a grammar of pickle fragments ---------------------------------------------------------

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("os".to_string()),
        Just("system".to_string()),
        Just("builtins".to_string()),
        Just("eval".to_string()),
        Just("collections".to_string()),
        Just("OrderedDict".to_string()),
        Just("torch._utils".to_string()),
        Just("_rebuild_tensor_v2".to_string()),
        "[a-z_.]{0,12}",
        "\\PC{0,6}",
        // Crosses every keep-payload limit used below.
        Just("n".repeat(300)),
    ]
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just(("os", "system")),
        Just(("posix", "system")),
        Just(("builtins", "getattr")),
        Just(("__builtin__", "eval")),
        Just(("collections", "OrderedDict")),
        Just(("numpy.core.multiarray", "_reconstruct")),
        Just(("torch._utils", "_rebuild_tensor_v2")),
        Just(("copy_reg", "_reconstructor")),
    ];
    prop_oneof![
        // constants
        Just(b"N".to_vec()),
        any::<u8>().prop_map(|v| vec![b'K', v]),
        any::<i32>().prop_map(|v| format!("I{v}\n").into_bytes()),
        any::<i32>().prop_map(|v| {
            let mut out = vec![b'J'];
            out.extend_from_slice(&v.to_le_bytes());
            out
        }),
        text_strategy().prop_map(|s| {
            let mut out = if s.len() < 256 {
                vec![0x8c, s.len() as u8]
            } else {
                let mut out = vec![b'X'];
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out
            };
            out.extend_from_slice(s.as_bytes());
            out
        }),
        text_strategy().prop_map(|s| {
            let mut out = vec![0x8d];
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out
        }),
        "[a-z]{0,8}".prop_map(|s| format!("V{s}\n").into_bytes()),
        "[a-z]{0,8}".prop_map(|s| format!("S'{s}'\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
            let mut out = vec![b'B'];
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
            out
        }),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(|b| {
            let mut out = vec![0x8a, b.len() as u8];
            out.extend_from_slice(&b);
            out
        }),
        // invalid UTF-8 in a counted string
        Just(b"\x8c\x02\xff\xfe".to_vec()),
        // imports
        name.clone()
            .prop_map(|(m, n)| format!("c{m}\n{n}\n").into_bytes()),
        name.prop_map(|(m, n)| format!("(i{m}\n{n}\n").into_bytes()),
        Just(b"\x93".to_vec()),
        any::<u8>().prop_map(|c| vec![0x82, c]),
        // calls and state
        Just(b"R".to_vec()),
        Just(b"\x81".to_vec()),
        Just(b"\x92".to_vec()),
        Just(b"o".to_vec()),
        Just(b"b".to_vec()),
        // containers
        Just(b"(".to_vec()),
        Just(b")".to_vec()),
        Just(b"t".to_vec()),
        Just(b"\x85".to_vec()),
        Just(b"\x86".to_vec()),
        Just(b"\x87".to_vec()),
        Just(b"]".to_vec()),
        Just(b"}".to_vec()),
        Just(b"l".to_vec()),
        Just(b"d".to_vec()),
        Just(b"a".to_vec()),
        Just(b"e".to_vec()),
        Just(b"s".to_vec()),
        Just(b"u".to_vec()),
        Just(b"\x8f".to_vec()),
        Just(b"\x90".to_vec()),
        Just(b"\x91".to_vec()),
        Just(b"0".to_vec()),
        Just(b"1".to_vec()),
        Just(b"2".to_vec()),
        // memo
        (0u8..4).prop_map(|i| vec![b'q', i]),
        (0u8..4).prop_map(|i| vec![b'h', i]),
        (0u8..4).prop_map(|i| format!("p{i}\n").into_bytes()),
        (0u8..4).prop_map(|i| format!("g{i}\n").into_bytes()),
        Just(b"\x94".to_vec()),
        // persistent ids, buffers, protocol, stop
        "[a-z0-9]{0,6}".prop_map(|s| format!("P{s}\n").into_bytes()),
        Just(b"Q".to_vec()),
        Just(b"\x97".to_vec()),
        Just(b"\x98".to_vec()),
        (0u8..7).prop_map(|p| vec![0x80, p]),
        Just(b".".to_vec()),
    ]
}

/// Pickle-shaped byte strings: fragment sequences, sometimes framed, usually ending in STOP,
/// sometimes several in a row.
fn pickle_like() -> impl Strategy<Value = Vec<u8>> {
    let one = (
        proptest::collection::vec(fragment(), 0..40),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(fragments, framed, stop)| {
            let mut body: Vec<u8> = fragments.concat();
            if stop {
                body.push(b'.');
            }
            if framed {
                let mut out = vec![0x80, 4, 0x95];
                out.extend_from_slice(&(body.len() as u64).to_le_bytes());
                out.extend_from_slice(&body);
                out
            } else {
                body
            }
        });
    proptest::collection::vec(one, 1..3).prop_map(|parts| parts.concat())
}

/// Real pickles (CPython 3.11 `pickle.dumps`), one per protocol and a few model-shaped ones.
fn real_pickles() -> Vec<Vec<u8>> {
    vec![
        // [1, 'a', {'b': (2.5, None)}, b'x'] with protocols 0..5
        b"(lp0\nI1\naVa\np1\na(dp2\nVb\np3\n(F2.5\nNtp4\nsac_codecs\nencode\np5\n(Vx\np6\nVlatin1\np7\ntp8\nRp9\na.".to_vec(),
        b"]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03(G@\x04\x00\x00\x00\x00\x00\x00Ntq\x04sc_codecs\nencode\nq\x05(X\x01\x00\x00\x00xq\x06X\x06\x00\x00\x00latin1q\x07tq\x08Rq\x09e.".to_vec(),
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03G@\x04\x00\x00\x00\x00\x00\x00N\x86q\x04sc_codecs\nencode\nq\x05X\x01\x00\x00\x00xq\x06X\x06\x00\x00\x00latin1q\x07\x86q\x08Rq\x09e.".to_vec(),
        b"\x80\x03]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00bq\x03G@\x04\x00\x00\x00\x00\x00\x00N\x86q\x04sC\x01xq\x05e.".to_vec(),
        b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94}\x94\x8c\x01b\x94G@\x04\x00\x00\x00\x00\x00\x00N\x86\x94sC\x01x\x94e.".to_vec(),
        b"\x80\x05\x95\x22\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94}\x94\x8c\x01b\x94G@\x04\x00\x00\x00\x00\x00\x00N\x86\x94sC\x01x\x94e.".to_vec(),
        // os.system('id') by REDUCE, protocols 0, 2 and 4
        b"cposix\nsystem\np0\n(Vid\np1\ntp2\nRp3\n.".to_vec(),
        b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.".to_vec(),
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.".to_vec(),
        // collections.OrderedDict([('a', 1)]) protocol 4
        b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.".to_vec(),
        // a torch-like persistent-id tensor rebuild, protocol 2
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storageq\x01ctorch\nFloatStorage\nq\x02X\x01\x00\x00\x000q\x03X\x03\x00\x00\x00cpuq\x04K\x04tq\x05QK\x00K\x04\x85q\x06K\x01\x85q\x07\x89ccollections\nOrderedDict\nq\x08)Rq\ttq\nRq\x0b.".to_vec(),
    ]
}

fn any_pickle() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => pickle_like(),
        1 => proptest::sample::select(real_pickles()),
        // a real pickle with a few bytes overwritten
        1 => (proptest::sample::select(real_pickles()), proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(mut data, edits)| {
                for (at, byte) in edits {
                    let len = data.len();
                    data[at % len] = byte;
                }
                data
            }),
    ]
}

// --- helpers -----------------------------------------------------------------------------------

/// Whether the slice decoder refuses a FRAME longer than the input holds (which a stream only
/// finds out later): the one place the two legitimately differ.
fn has_overlong_frame(data: &[u8]) -> bool {
    let mut decoder = Decoder::from_slice(data);
    loop {
        match decoder.next_op() {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(e) => return matches!(e, DecodeError::Truncated { opcode: "FRAME", .. }),
        }
    }
}

fn same_arg(slice: &Arg<'_>, stream: &Arg<'_>) -> bool {
    if slice == stream {
        return true;
    }
    match (slice, stream) {
        (Arg::Float(a), Arg::Float(b)) => a.to_bits() == b.to_bits(),
        (Arg::Long(a), Arg::Long(b))
        | (Arg::Str(a), Arg::Str(b))
        | (Arg::Bytes(a), Arg::Bytes(b))
        | (Arg::Unicode(a), Arg::Unicode(b))
        | (Arg::BadUnicode(a), Arg::BadUnicode(b)) => a.len == b.len && b.data.is_none(),
        _ => false,
    }
}

fn same_op(slice: &Op<'_>, stream: &Op<'_>) -> bool {
    slice.offset == stream.offset
        && slice.len == stream.len
        && slice.opcode == stream.opcode
        && same_arg(&slice.arg, &stream.arg)
}

/// Everything in a report but `consumed` (which, after a decode error, says how far each
/// source had read, and a stream reads the short tail a slice only measures).
fn assert_same_report(sliced: &PickleReport, streamed: &PickleReport) {
    assert_eq!(sliced.findings, streamed.findings);
    assert_eq!(sliced.imports, streamed.imports);
    assert_eq!(sliced.calls, streamed.calls);
    assert_eq!(sliced.persistent_ids, streamed.persistent_ids);
    assert_eq!(sliced.pickles, streamed.pickles);
    assert_eq!(sliced.records_dropped, streamed.records_dropped);
    assert_eq!(sliced.findings_dropped, streamed.findings_dropped);
}

fn compare_slice_and_stream(data: &[u8], seed: u64, max_chunk: usize, keep: usize, mode: Mode) {
    let stream_limits = Limits {
        stream: StreamLimits {
            max_line: data.len() + 1,
            keep_payload: keep,
        },
        ..Limits::default()
    };
    // `analyze_reader` holds every string that could be a name, whatever the keep limit.
    let slice_limits = stream_limits;
    let policy = Policy::default();
    let sliced = analyze_slice(
        data,
        &policy,
        &Options {
            limits: slice_limits,
            mode,
            ..Options::default()
        },
    );
    let reader = ShortReads::new(data, seed, max_chunk, seed.is_multiple_of(3));
    let streamed = analyze_reader(
        reader,
        &policy,
        &Options {
            limits: stream_limits,
            mode,
            ..Options::default()
        },
    );
    assert_same_report(&sliced, &streamed);
    if mode == Mode::FirstPickle {
        if let Some(end) = sliced.pickles.first().and_then(|p| p.end) {
            assert_eq!(sliced.consumed, end);
            assert_eq!(streamed.consumed, end);
        }
    }
}

proptest! {
    // A fixed seed: the same cases on every run; no
    // regression files are written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7069_636b_6c65),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoding_any_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut decoder = Decoder::from_slice(&data);
        let mut count = 0usize;
        while let Ok(Some(_)) = decoder.next_op() {
            count += 1;
        }
        prop_assert!(count <= data.len());
        let mut decoder = Decoder::from_reader(ShortReads::new(&data, 7, 5, true), StreamLimits { max_line: 16, keep_payload: 3 });
        while let Ok(Some(_)) = decoder.next_op() {}
    }

    #[test]
    fn decoding_pickle_like_bytes_never_panics(data in any_pickle()) {
        let mut decoder = Decoder::from_slice(&data);
        let mut end = 0;
        loop {
            match decoder.next_op() {
                Ok(Some(op)) => {
                    prop_assert_eq!(op.offset, end);
                    end = op.end();
                }
                Ok(None) => {
                    prop_assert_eq!(end, data.len() as u64);
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(e.offset(), end);
                    break;
                }
            }
        }
    }

    #[test]
    fn analysing_any_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let report = analyze_slice(&data, &Policy::default(), &Options::default());
        prop_assert!(report.consumed <= data.len() as u64);
        let report = scan_bytes(&data, &Policy::empty(), &ScanOptions::default());
        // With nothing allowed, any import at all makes the verdict unsafe.
        if report.entries.iter().any(|e| !e.report.imports.is_empty()) {
            prop_assert!(!report.is_safe());
        }
    }

    #[test]
    fn stream_decoding_matches_slice_decoding(
        data in any_pickle(),
        seed in any::<u64>(),
        max_chunk in 1usize..64,
        keep in prop_oneof![Just(0usize), Just(1), Just(7), Just(64 << 10)],
    ) {
        let mut slice = Decoder::from_slice(&data);
        let mut stream = Decoder::from_reader(
            ShortReads::new(&data, seed, max_chunk, seed.is_multiple_of(2)),
            StreamLimits { max_line: data.len() + 1, keep_payload: keep },
        );
        loop {
            match (slice.next_op(), stream.next_op()) {
                (Ok(Some(a)), Ok(Some(b))) => prop_assert!(same_op(&a, &b), "{:?} vs {:?}", a, b),
                (Ok(None), Ok(None)) => break,
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a, b);
                    break;
                }
                (Err(DecodeError::Truncated { opcode: "FRAME", .. }), Ok(Some(_))) => break,
                (a, b) => prop_assert!(false, "slice {:?} vs stream {:?}", a, b),
            }
        }
    }

    #[test]
    fn analysis_is_the_same_for_a_slice_and_a_stream_of_short_reads(
        data in any_pickle(),
        seed in any::<u64>(),
        max_chunk in 1usize..64,
        first_only in any::<bool>(),
    ) {
        prop_assume!(!has_overlong_frame(&data));
        let mode = if first_only { Mode::FirstPickle } else { Mode::AllPickles };
        compare_slice_and_stream(&data, seed, max_chunk, 64 << 10, mode);
    }

    #[test]
    fn analysis_is_the_same_with_a_tiny_keep_payload_limit(
        data in any_pickle(),
        seed in any::<u64>(),
        max_chunk in 1usize..16,
        keep in 0usize..8,
        first_only in any::<bool>(),
    ) {
        prop_assume!(!has_overlong_frame(&data));
        let mode = if first_only { Mode::FirstPickle } else { Mode::AllPickles };
        compare_slice_and_stream(&data, seed, max_chunk, keep, mode);
    }

    #[test]
    fn raw_unicode_escape_length_matches_decoding(
        text in proptest::collection::vec(prop_oneof![
            4 => any::<u8>(),
            1 => Just(b'\\'),
            1 => Just(b'u'),
            1 => Just(b'U'),
            1 => proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()),
        ], 0..64),
    ) {
        let decoded = picklefence::text::decode_raw_unicode_escape(&text);
        let len = picklefence::text::raw_unicode_escape_len(&text);
        prop_assert_eq!(decoded.map(|d| d.len() as u64), len);
    }

    #[test]
    fn findings_are_deterministic(data in any_pickle()) {
        let policy = Policy::default();
        let first = analyze_slice(&data, &policy, &Options::default());
        let second = analyze_slice(&data, &policy.clone(), &Options::default());
        prop_assert_eq!(&first, &second);
        if !has_overlong_frame(&data) {
            let again = analyze_reader(&data[..], &Policy::default(), &Options::default());
            prop_assert_eq!(&first.findings, &again.findings);
        }
        let scanned = scan_bytes(&data, &policy, &ScanOptions::default());
        let rescanned = scan_bytes(&data, &policy, &ScanOptions::default());
        prop_assert_eq!(&scanned.findings, &rescanned.findings);
        prop_assert_eq!(scanned.verdict, rescanned.verdict);
    }
}

/// Every real pickle, every chunk size from 1 to 9 and every tiny keep limit: exhaustive, so a
/// regression does not depend on proptest finding it.
#[test]
fn real_pickles_analyse_the_same_in_every_chunking() {
    for data in real_pickles() {
        for max_chunk in 1..10 {
            for keep in [0, 1, 2, 5, 64 << 10] {
                for mode in [Mode::AllPickles, Mode::FirstPickle] {
                    compare_slice_and_stream(
                        &data,
                        max_chunk as u64 * 31 + keep as u64,
                        max_chunk,
                        keep,
                        mode,
                    );
                }
            }
        }
        let report = analyze_slice(&data, &Policy::default(), &Options::default());
        assert_eq!(report.pickles.len(), 1, "{data:?}");
        assert!(report.pickles[0].end.is_some());
    }
}

/// A UNICODE line over the held-text limit is validated and measured, not decoded; its findings
/// are those of the same line decoded.
#[test]
fn long_unicode_lines_are_measured_not_held() {
    let n = picklefence::decoder::HELD_TEXT_LINE + 10;
    for (body, valid) in [
        (vec![0xE9u8; n], true),
        (
            [b"\\u00e9".repeat(n / 6 + 1), b"\\U00110000".to_vec()].concat(),
            false,
        ),
    ] {
        let mut data = vec![b'V'];
        data.extend_from_slice(&body);
        data.extend_from_slice(b"\n.");
        let mut decoder = Decoder::from_slice(&data);
        let op = decoder.next_op().unwrap().unwrap();
        match (&op.arg, valid) {
            (Arg::Unicode(p), true) => {
                assert!(p.data.is_none());
                assert_eq!(
                    Some(p.len),
                    picklefence::text::decode_raw_unicode_escape(&body).map(|d| d.len() as u64)
                );
            }
            (Arg::BadUnicode(p), false) => assert!(p.data.is_none()),
            (other, _) => panic!("{other:?}"),
        }
        let sliced = analyze_slice(&data, &Policy::default(), &Options::default());
        let streamed = analyze_reader(&data[..], &Policy::default(), &Options::default());
        assert_eq!(sliced.findings, streamed.findings);
        assert_eq!(sliced.is_safe(), valid, "{:?}", sliced.findings);
    }
}
