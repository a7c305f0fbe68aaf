//! The slice analyzer runs common opcodes on a fast path; the general loop (`analyzer::run`)
//! and the stream analyzer never do. All must produce the same report for any opcode sequence,
//! limits included. (Slice and stream differ by design on a FRAME longer than the rest of the
//! input: only a slice knows that up front, as CPython's `loads` does.)

use picklefence::analyzer::run;
use picklefence::formats::joblib::{analyze_joblib_reader, analyze_joblib_slice};
use picklefence::{analyze_reader, analyze_slice, Decoder, Detail, Limits, Mode, Options, Policy};
use proptest::prelude::*;

/// Opcodes (with arguments) that the fast path handles, plus some it must hand back.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u8>().prop_map(|v| vec![b'K', v]),
        any::<u16>().prop_map(|v| [vec![b'M'], v.to_le_bytes().to_vec()].concat()),
        any::<i32>().prop_map(|v| [vec![b'J'], v.to_le_bytes().to_vec()].concat()),
        Just(b"G@\x00\x00\x00\x00\x00\x00\x00".to_vec()),
        Just(vec![b'N']),
        Just(vec![0x88]),
        Just(vec![b']']),
        Just(vec![b'}']),
        Just(vec![b')']),
        Just(vec![b'(']),
        Just(vec![b'(']),
        Just(vec![b'e']),
        Just(vec![b'e']),
        Just(vec![b'u']),
        Just(vec![b's']),
        Just(vec![b'a']),
        Just(vec![b't']),
        (0x85u8..=0x87).prop_map(|b| vec![b]),
        Just(vec![0x94]),
        (0u8..6).prop_map(|k| vec![b'q', k]),
        (0u8..6).prop_map(|k| vec![b'r', k, 0, 0, 0]),
        (0u8..6).prop_map(|k| vec![b'h', k]),
        (0u8..6).prop_map(|k| vec![b'j', k, 0, 0, 0]),
        Just(vec![b'0']),
        Just(vec![b'2']),
        Just(b"C\x02ab".to_vec()),
        Just(b"B\x01\x00\x00\x00z".to_vec()),
        Just(b"\x8c\x02os".to_vec()),
        Just(b"\x8c\x06system".to_vec()),
        Just(b"\x8c\x0bcollections".to_vec()),
        Just(b"\x8c\x0bOrderedDict".to_vec()),
        Just(b"X\x02\x00\x00\x00os".to_vec()),
        Just(b"X\x06\x00\x00\x00system".to_vec()),
        // A lone surrogate: not strict UTF-8.
        Just(b"X\x03\x00\x00\x00\xed\xa0\x80".to_vec()),
        Just(b"X\x05\x00\x00\x00ab".to_vec()),
        Just(vec![b'Q']),
        Just(b"Pid\n".to_vec()),
        Just(vec![0x93]),
        Just(vec![b'R']),
        Just(vec![b'b']),
        Just(vec![b'.']),
        (1u8..12).prop_map(|n| vec![0x95, n, 0, 0, 0, 0, 0, 0, 0]),
        Just(vec![0x80, 4]),
    ]
}

fn pickle() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(token(), 0..60).prop_map(|tokens| {
        let mut out = vec![0x80, 4];
        out.extend(tokens.concat());
        out
    })
}

fn options(tight: bool, mode: Mode) -> Options {
    let mut limits = Limits::default();
    if tight {
        limits.max_stack = 6;
        limits.max_marks = 3;
        limits.max_memo = 4;
        limits.max_opcodes = 40;
        limits.max_name_len = 4;
    }
    Options {
        limits,
        mode,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn slice_and_stream_agree(data in pickle(), tight in any::<bool>(), first in any::<bool>()) {
        let mode = if first { Mode::FirstPickle } else { Mode::AllPickles };
        let options = options(tight, mode);
        let policy = Policy::default();
        let fast = analyze_slice(&data, &policy, &options);
        let general = run(Decoder::from_slice(&data), &policy, &options);
        prop_assert_eq!(&fast, &general);
        if !data.contains(&0x95) {
            let from_stream = analyze_reader(&data[..], &policy, &options);
            prop_assert_eq!(fast, from_stream);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// The pre-scan's reports leave out calls and persistent ids, and nothing else.
    #[test]
    fn verdict_detail_keeps_every_finding(data in pickle(), tight in any::<bool>()) {
        let full = options(tight, Mode::FirstPickle);
        let verdict = Options { detail: Detail::Verdict, ..full };
        let policy = Policy::default();
        let listed = analyze_slice(&data, &policy, &full);
        let judged = analyze_slice(&data, &policy, &verdict);
        prop_assert!(judged.calls.is_empty() && judged.persistent_ids.is_empty());
        prop_assert_eq!(&judged.findings, &listed.findings);
        prop_assert_eq!(&judged.imports, &listed.imports);
        prop_assert_eq!(judged.consumed, listed.consumed);
        prop_assert_eq!(judged.is_safe(), listed.is_safe());
        let streamed = run(Decoder::from_slice(&data), &policy, &verdict);
        prop_assert_eq!(judged, streamed);
    }
}

/// The tokens above plus what joblib tracking follows: the wrapper class and its state keys.
fn joblib_pickle() -> impl Strategy<Value = Vec<u8>> {
    let joblib_token = prop_oneof![
        4 => token(),
        1 => Just(b"\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93".to_vec()),
        1 => Just(b"\x8c\x05shape".to_vec()),
        1 => Just(b"\x8c\x05dtype".to_vec()),
        1 => Just(b"\x8c\x05order".to_vec()),
    ];
    prop::collection::vec(joblib_token, 0..60).prop_map(|tokens| {
        let mut out = vec![0x80, 4];
        out.extend(tokens.concat());
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// With joblib tracking on, the slice takes dicts and SETITEM(S) on its fast path too.
    #[test]
    fn joblib_slice_and_stream_agree(data in joblib_pickle(), tight in any::<bool>()) {
        prop_assume!(!data.contains(&0x95));
        let options = options(tight, Mode::FirstPickle);
        let policy = Policy::default();
        let fast = analyze_joblib_slice(&data, &policy, &options);
        let general = analyze_joblib_reader(&data[..], &policy, &options);
        prop_assert_eq!(fast, general);
    }
}

/// The items of an APPENDS batch as CPython writes them (numbers, tuples of numbers, memo
/// stores), with the odd token the batch runner must refuse.
fn batch_item() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => any::<u8>().prop_map(|v| vec![b'K', v]),
        2 => any::<u16>().prop_map(|v| [vec![b'M'], v.to_le_bytes().to_vec()].concat()),
        2 => any::<i32>().prop_map(|v| [vec![b'J'], v.to_le_bytes().to_vec()].concat()),
        1 => Just(b"G@\x00\x00\x00\x00\x00\x00\x00".to_vec()),
        1 => Just(vec![b'N']),
        3 => (0x85u8..=0x87).prop_map(|b| vec![b]),
        4 => Just(vec![0x94]),
        1 => (0u8..8).prop_map(|k| vec![b'q', k]),
        1 => (0u8..8).prop_map(|k| vec![b'r', k, 0, 0, 0]),
        1 => Just(vec![b'h', 0]),
        1 => Just(vec![b'e']),
        1 => Just(vec![b'(']),
        1 => (1u8..40).prop_map(|n| vec![0x95, n, 0, 0, 0, 0, 0, 0, 0]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn append_batches_agree(
        batches in prop::collection::vec(prop::collection::vec(batch_item(), 0..30), 1..4),
        tight in any::<bool>(),
    ) {
        let mut data = vec![0x80, 4, b']', 0x94];
        for items in batches {
            data.push(b'(');
            data.extend(items.concat());
            data.push(b'e');
        }
        data.push(b'.');
        let options = options(tight, Mode::AllPickles);
        let policy = Policy::default();
        let fast = analyze_slice(&data, &policy, &options);
        let general = run(Decoder::from_slice(&data), &policy, &options);
        prop_assert_eq!(&fast, &general);
    }
}

#[test]
fn long_append_batches_agree() {
    // What CPython writes for lists of ints and of int pairs, in several protocols.
    let mut ints = vec![0x80, 4, b']', 0x94];
    let mut pairs = vec![0x80, 2, b']', b'q', 0];
    for batch in 0..5u32 {
        ints.push(b'(');
        pairs.push(b'(');
        for i in 0..1000u32 {
            let v = batch * 1000 + i;
            ints.push(b'J');
            ints.extend_from_slice(&v.to_le_bytes());
            pairs.extend_from_slice(&[b'K', (v % 256) as u8, b'M', 1, 2, 0x86, b'r']);
            pairs.extend_from_slice(&(v + 1).to_le_bytes());
        }
        ints.push(b'e');
        pairs.push(b'e');
    }
    // A payload after the batches, a GET of a memoized pair, and STOP.
    pairs.extend_from_slice(b"j\x05\x00\x00\x000cposix\nsystem\n(Vx\ntR.");
    ints.push(b'.');
    let policy = Policy::default();
    for data in [ints, pairs] {
        for mode in [Mode::FirstPickle, Mode::AllPickles] {
            let options = options(false, mode);
            let from_slice = analyze_slice(&data, &policy, &options);
            let from_stream = analyze_reader(&data[..], &policy, &options);
            assert_eq!(from_slice, from_stream);
        }
    }
}

/// `body` (a protocol 4 pickle without its PROTO) cut into frames at `cuts`.
fn framed(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    let (mut rest, mut start) = (body, 0);
    for &end in cuts.iter().chain(std::iter::once(&body.len())) {
        let (chunk, tail) = rest.split_at(end - start);
        out.push(0x95);
        out.extend_from_slice(&(chunk.len() as u64).to_le_bytes());
        out.extend_from_slice(chunk);
        (rest, start) = (tail, end);
    }
    out
}

#[test]
fn batches_that_run_across_frames_agree() {
    // A list of ints and one of int pairs, framed as CPython frames them (every ~4 KiB, between
    // opcodes), then cut mid-opcode, then with an empty frame, a frame that runs past the
    // input and a FRAME inside a frame.
    let mut ints = vec![b']', 0x94];
    let mut pairs = vec![b']', 0x94];
    let (mut int_cuts, mut pair_cuts) = (Vec::new(), Vec::new());
    for batch in 0..6u32 {
        ints.push(b'(');
        pairs.push(b'(');
        for i in 0..1000u32 {
            let v = batch * 100_000 + i * 97;
            if ints.len() >= 4096 * (int_cuts.len() + 1) {
                int_cuts.push(ints.len());
            }
            if pairs.len() >= 4096 * (pair_cuts.len() + 1) {
                pair_cuts.push(pairs.len());
            }
            ints.push(b'J');
            ints.extend_from_slice(&v.to_le_bytes());
            pairs.extend_from_slice(&[b'M', (v % 256) as u8, 1, b'J']);
            pairs.extend_from_slice(&v.to_le_bytes());
            pairs.extend_from_slice(&[0x86, 0x94]);
        }
        ints.push(b'e');
        pairs.push(b'e');
    }
    ints.push(b'.');
    pairs.extend_from_slice(b"\x8c\x05posix\x8c\x06system\x93.");
    let every = |n: usize, len: usize| (1..len / n).map(|i| i * n).collect::<Vec<_>>();
    let mut cases = vec![
        framed(&ints, &int_cuts),
        framed(&pairs, &pair_cuts),
        framed(&ints, &every(4093, ints.len())),
        framed(&pairs, &every(1000, pairs.len())),
    ];
    let mut with_empty = int_cuts.clone();
    with_empty.insert(1, int_cuts[1]);
    cases.push(framed(&ints, &with_empty));
    let mut overlong = framed(&pairs, &pair_cuts);
    // The last frame's length field: after PROTO, the frames before it, and its opcode.
    let length_at = 2 + 9 * pair_cuts.len() + pair_cuts.last().copied().unwrap_or(0) + 1;
    overlong[length_at] = overlong[length_at].wrapping_add(9);
    cases.push(overlong);
    let mut nested = framed(&ints, &int_cuts);
    nested.splice(20..20, *b"\x95\x00\x00\x00\x00\x00\x00\x00\x00");
    cases.push(nested);
    // A K whose argument byte is the next FRAME's opcode. Read on from just past that K, the
    // bytes look like an empty frame and then a frame holding the rest of the batch: only the
    // general path may take this (it reports the K crossing its frame's end).
    let mut straddling = framed(b"]\x94(K", &[]);
    let mut inner = vec![b'N'];
    inner.extend([b'K', 1].repeat(68));
    inner.extend(b"e.");
    let mut chunk = vec![0, 0x95];
    chunk.extend_from_slice(&(inner.len() as u64).to_le_bytes());
    chunk.extend(inner);
    straddling.push(0x95);
    straddling.extend_from_slice(&(chunk.len() as u64).to_le_bytes());
    straddling.extend(chunk);
    assert_eq!(straddling[15..17], [0x95, 0x95]);
    cases.push(straddling);
    let policy = Policy::default();
    for (index, data) in cases.iter().enumerate() {
        for mode in [Mode::FirstPickle, Mode::AllPickles] {
            let options = options(false, mode);
            let fast = analyze_slice(data, &policy, &options);
            let general = run(Decoder::from_slice(data), &policy, &options);
            assert_eq!(fast, general, "case {index}");
        }
    }
    let clean = analyze_slice(&cases[0], &policy, &options(false, Mode::AllPickles));
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    let unsafe_pairs = analyze_slice(&cases[1], &policy, &options(false, Mode::AllPickles));
    assert!(!unsafe_pairs.is_safe());
}
