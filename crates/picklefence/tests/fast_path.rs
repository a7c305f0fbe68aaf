//! The slice analyzer runs common opcodes on a fast path; the general loop (`analyzer::run`)
//! and the stream analyzer never do. All must produce the same report for any opcode sequence,
//! limits included. (Slice and stream differ by design on a FRAME longer than the rest of the
//! input: only a slice knows that up front, as CPython's `loads` does.)

use picklefence::analyzer::run;
use picklefence::formats::joblib::{analyze_joblib_reader, analyze_joblib_slice};
use picklefence::{analyze_reader, analyze_slice, Decoder, Limits, Mode, Options, Policy};
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
    }
    Options { limits, mode }
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
