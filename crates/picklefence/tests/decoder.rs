//! Targeted decoder tests: truncation, hostile lengths, frames, text validity, protocol-0
//! quirks, and how much of a reader the streaming decoder consumes.

#![allow(
    unsafe_code, // the allocation-measuring global allocator below
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use picklefence::decoder::Source;
use picklefence::opcodes::ArgKind;
use picklefence::{Arg, DecodeError, Decoder, Opcode, Payload, StreamLimits};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The system allocator, remembering the largest single request it saw.
struct Measuring;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// Every opcode up to and including the first error, over a slice.
fn slice_ops(data: &[u8]) -> (Vec<(u64, Opcode, Arg<'static>)>, Option<DecodeError>) {
    collect(Decoder::from_slice(data))
}

/// The same over a reader.
fn reader_ops(data: &[u8], limits: StreamLimits) -> (Vec<(u64, Opcode, Arg<'static>)>, Option<DecodeError>) {
    collect(Decoder::from_reader(Cursor::new(data.to_vec()), limits))
}

fn collect<S: Source>(mut decoder: Decoder<S>) -> (Vec<(u64, Opcode, Arg<'static>)>, Option<DecodeError>) {
    let mut ops = Vec::new();
    loop {
        match decoder.next_op() {
            Ok(Some(op)) => ops.push((op.offset, op.opcode, owned(op.arg))),
            Ok(None) => return (ops, None),
            Err(e) => {
                // Errors are final: nothing is read past them.
                assert!(matches!(decoder.next_op(), Ok(None)));
                return (ops, Some(e));
            }
        }
    }
}

/// `Arg` detached from the input (line arguments leak: tests only).
fn owned(arg: Arg<'_>) -> Arg<'static> {
    let leak = |bytes: &[u8]| -> &'static [u8] { Box::leak(bytes.to_vec().into_boxed_slice()) };
    match arg {
        Arg::None => Arg::None,
        Arg::Int(v) => Arg::Int(v),
        Arg::U64(v) => Arg::U64(v),
        Arg::Bool(v) => Arg::Bool(v),
        Arg::Decimal(t) => Arg::Decimal(leak(t)),
        Arg::FloatText(t) => Arg::FloatText(leak(t)),
        Arg::Float(v) => Arg::Float(v),
        Arg::Long(p) => Arg::Long(p.into_owned()),
        Arg::Str(p) => Arg::Str(p.into_owned()),
        Arg::BadStr(t) => Arg::BadStr(leak(t)),
        Arg::Bytes(p) => Arg::Bytes(p.into_owned()),
        Arg::Unicode(p) => Arg::Unicode(p.into_owned()),
        Arg::BadUnicode(p) => Arg::BadUnicode(p.into_owned()),
        Arg::Line(t) => Arg::Line(leak(t)),
        Arg::Pair(m, n) => Arg::Pair(leak(m), leak(n)),
    }
}

fn held(bytes: &[u8]) -> Payload<'static> {
    Payload {
        len: bytes.len() as u64,
        data: Some(Cow::Owned(bytes.to_vec())),
    }
}

/// The only argument of a one-opcode pickle (`<opcode><arg>.`), in both modes.
fn single_arg(data: &[u8]) -> Arg<'static> {
    let (ops, error) = slice_ops(data);
    assert_eq!(error, None, "{data:?}");
    assert_eq!(ops.len(), 2, "{data:?}: {ops:?}");
    assert_eq!(ops[1].1, Opcode::Stop);
    let (stream, error) = reader_ops(data, StreamLimits::default());
    assert_eq!(error, None);
    assert_eq!(stream, ops, "reader and slice disagree on {data:?}");
    ops[0].2.clone()
}

/// Size of the fixed-width field an opcode starts its argument with.
fn fixed_width(kind: ArgKind) -> Option<usize> {
    Some(match kind {
        ArgKind::Uint1 | ArgKind::Bytes1 | ArgKind::String1 | ArgKind::Unicode1 | ArgKind::Long1 => 1,
        ArgKind::Uint2 => 2,
        ArgKind::Uint4
        | ArgKind::Int4
        | ArgKind::Bytes4
        | ArgKind::String4
        | ArgKind::Unicode4
        | ArgKind::Long4 => 4,
        ArgKind::Uint8 | ArgKind::Float8 | ArgKind::Bytes8 | ArgKind::Unicode8 | ArgKind::ByteArray8 => 8,
        _ => return None,
    })
}

/// The pickle is truncated at `offset` in every mode: slice, reader holding payloads, reader
/// skipping them.
fn assert_truncated(data: &[u8], offset: u64, opcode: Opcode, needed: u64, available: u64) {
    let expected = DecodeError::Truncated {
        offset,
        opcode: opcode.name(),
        needed,
        available,
    };
    for (mode, (_, error)) in [
        ("slice", slice_ops(data)),
        ("reader", reader_ops(data, StreamLimits::default())),
        (
            "skipping reader",
            reader_ops(
                data,
                StreamLimits {
                    keep_payload: 0,
                    ..Default::default()
                },
            ),
        ),
    ] {
        assert_eq!(error.as_ref(), Some(&expected), "{mode}: {data:?}");
        assert!(expected.is_truncation());
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation and lengths

#[test]
fn truncated_fixed_size_arguments() {
    let prefix = b"\x80\x05N"; // PROTO 5, NONE: the failing opcode is at offset 3
    let mut checked = 0;
    for &opcode in Opcode::ALL {
        let Some(width) = fixed_width(opcode.arg_kind()) else {
            continue;
        };
        for available in 0..width {
            let mut data = prefix.to_vec();
            data.push(opcode.code());
            data.extend(vec![0x01; available]);
            assert_truncated(&data, 3, opcode, width as u64, available as u64);
            checked += 1;
        }
    }
    // 9 opcodes with one-byte fields, 2 with two-byte, 8 with four-byte and 5 with eight-byte.
    assert_eq!(checked, 9 + 2 * 2 + 8 * 4 + 5 * 8);
}

#[test]
fn truncated_payloads() {
    for &opcode in Opcode::ALL {
        let Some(width) = fixed_width(opcode.arg_kind()) else {
            continue;
        };
        if !matches!(
            opcode.arg_kind(),
            ArgKind::Bytes1
                | ArgKind::Bytes4
                | ArgKind::Bytes8
                | ArgKind::String1
                | ArgKind::String4
                | ArgKind::Unicode1
                | ArgKind::Unicode4
                | ArgKind::Unicode8
                | ArgKind::ByteArray8
                | ArgKind::Long1
                | ArgKind::Long4
        ) {
            continue;
        }
        let mut data = vec![b'N', opcode.code()];
        let mut length = vec![0u8; width];
        length[0] = 5;
        data.extend(length);
        data.extend(b"ab");
        assert_truncated(&data, 1, opcode, 5, 2);
    }
}

#[test]
fn huge_lengths_fail_without_allocating() {
    LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
    let greedy = StreamLimits {
        keep_payload: usize::MAX,
        ..Default::default()
    };
    for opcode in [Opcode::BinBytes8, Opcode::BinUnicode8, Opcode::ByteArray8] {
        // 2^63 - 1: addressable, but the input does not hold it.
        let mut data = vec![b'N', opcode.code()];
        data.extend((i64::MAX as u64).to_le_bytes());
        data.extend(b"abc.");
        assert_truncated(&data, 1, opcode, i64::MAX as u64, 4);
        // Even a reader told to keep payloads of any size must not size a buffer from it.
        let (_, error) = reader_ops(&data, greedy);
        assert!(
            matches!(
                error,
                Some(DecodeError::Truncated {
                    offset: 1,
                    available: 4,
                    ..
                })
            ),
            "{error:?}"
        );

        // 2^64 - 1: more than CPython (PY_SSIZE_T_MAX) or pickletools (sys.maxsize) accept.
        let mut data = vec![b'N', opcode.code()];
        data.extend(u64::MAX.to_le_bytes());
        data.extend(b"abc.");
        let expected = DecodeError::LengthOverflow {
            offset: 1,
            opcode: opcode.name(),
            declared: u64::MAX,
        };
        assert_eq!(slice_ops(&data).1, Some(expected.clone()));
        assert_eq!(
            reader_ops(&data, StreamLimits::default()).1,
            Some(expected.clone())
        );
        assert_eq!(reader_ops(&data, greedy).1, Some(expected));
    }
    // 4-byte lengths at their maximum.
    for opcode in [Opcode::BinBytes, Opcode::BinUnicode] {
        let mut data = vec![opcode.code()];
        data.extend(u32::MAX.to_le_bytes());
        data.extend(b"x.");
        assert_truncated(&data, 0, opcode, u64::from(u32::MAX), 2);
        assert!(matches!(
            reader_ops(&data, greedy).1,
            Some(DecodeError::Truncated { .. })
        ));
    }
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(largest < 1 << 20, "an allocation of {largest} bytes was made");
}

#[test]
fn signed_lengths_are_rejected_when_negative() {
    // BINSTRING and LONG4 counts are signed in CPython ("negative byte count").
    for opcode in [Opcode::BinString, Opcode::Long4] {
        let data = [opcode.code(), 0xff, 0xff, 0xff, 0xff, b'.'];
        let expected = DecodeError::LengthOverflow {
            offset: 0,
            opcode: opcode.name(),
            declared: 0xffff_ffff,
        };
        assert_eq!(slice_ops(&data).1, Some(expected.clone()));
        assert_eq!(reader_ops(&data, StreamLimits::default()).1, Some(expected));
    }
    // BINBYTES and BINUNICODE counts are unsigned: merely truncated.
    assert_truncated(b"B\xff\xff\xff\xff.", 0, Opcode::BinBytes, 0xffff_ffff, 1);
}

#[test]
fn frame_larger_than_the_rest_fails_at_the_frame() {
    let mut data = b"\x80\x04".to_vec();
    data.push(Opcode::Frame.code());
    data.extend(100u64.to_le_bytes());
    data.extend(b"K\x01.");
    let (ops, error) = slice_ops(&data);
    assert_eq!(ops, vec![(0, Opcode::Proto, Arg::Int(4))]);
    assert_eq!(
        error,
        Some(DecodeError::Truncated {
            offset: 2,
            opcode: "FRAME",
            needed: 100,
            available: 3,
        })
    );

    // A frame that fits exactly is fine.
    let mut data = b"\x80\x04\x95".to_vec();
    data.extend(3u64.to_le_bytes());
    data.extend(b"K\x01.");
    let (ops, error) = slice_ops(&data);
    assert_eq!(error, None);
    assert_eq!(ops[1], (2, Opcode::Frame, Arg::U64(3)));

    // Past PY_SSIZE_T_MAX CPython raises OverflowError without reading on, in both modes.
    let mut data = b"\x80\x04\x95".to_vec();
    data.extend((1u64 << 63).to_le_bytes());
    data.extend(b"N.");
    let expected = DecodeError::LengthOverflow {
        offset: 2,
        opcode: "FRAME",
        declared: 1 << 63,
    };
    assert_eq!(slice_ops(&data).1, Some(expected.clone()));
    assert_eq!(reader_ops(&data, StreamLimits::default()).1, Some(expected));
}

// ---------------------------------------------------------------------------------------------
// Text

#[test]
fn invalid_utf8_is_bad_unicode() {
    let bad: [&[u8]; 7] = [
        b"\xff",
        b"\xc0\x80",         // overlong
        b"\xe2\x82",         // truncated sequence
        b"abc\x80",          // stray continuation byte
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xed\xa0",         // truncated surrogate
        b"\xf8\x88\x80\x80\x80",
    ];
    for text in bad {
        let n = u8::try_from(text.len()).unwrap();
        let mut short = vec![Opcode::ShortBinUnicode.code(), n];
        short.extend(text);
        short.push(b'.');
        let mut long = vec![b'X', n, 0, 0, 0];
        long.extend(text);
        long.push(b'.');
        let mut long8 = vec![Opcode::BinUnicode8.code(), n, 0, 0, 0, 0, 0, 0, 0];
        long8.extend(text);
        long8.push(b'.');
        for data in [short, long, long8] {
            assert_eq!(single_arg(&data), Arg::BadUnicode(held(text)), "{data:?}");
            // Validated while skipped, too.
            let (ops, error) = reader_ops(
                &data,
                StreamLimits {
                    keep_payload: 0,
                    ..Default::default()
                },
            );
            assert_eq!(error, None);
            assert_eq!(
                ops[0].2,
                Arg::BadUnicode(Payload {
                    len: text.len() as u64,
                    data: None
                })
            );
        }
    }
    // surrogatepass: lone surrogates are valid, as CPython writes them.
    assert_eq!(
        single_arg(b"X\x03\x00\x00\x00\xed\xa0\x80."),
        Arg::Unicode(held(b"\xed\xa0\x80"))
    );
    let mut euro = b"X\x03\x00\x00\x00".to_vec();
    euro.extend("€.".as_bytes());
    assert_eq!(single_arg(&euro), Arg::Unicode(held("€".as_bytes())));
    // UNICODE: raw-unicode-escape failures, and escapes (a lone surrogate included).
    assert!(matches!(single_arg(b"V\\u12\n."), Arg::BadUnicode(_)));
    assert!(matches!(single_arg(b"V\\U00110000\n."), Arg::BadUnicode(_)));
    let mut expected = "€".as_bytes().to_vec();
    expected.extend(b"\xed\xa0\x80");
    expected.extend("é".as_bytes());
    assert_eq!(
        single_arg(b"V\\u20ac\\ud800\xe9\n."),
        Arg::Unicode(held(&expected))
    );
}

#[test]
fn int_booleans_and_decimals() {
    assert_eq!(single_arg(b"I00\n."), Arg::Bool(false));
    assert_eq!(single_arg(b"I01\n."), Arg::Bool(true));
    assert_eq!(single_arg(b"I0\n."), Arg::Decimal(b"0"));
    assert_eq!(single_arg(b"I1\n."), Arg::Decimal(b"1"));
    assert_eq!(single_arg(b"I001\n."), Arg::Decimal(b"001"));
    assert_eq!(single_arg(b"I-12\n."), Arg::Decimal(b"-12"));
    // LONG loses one trailing L, nothing else.
    assert_eq!(single_arg(b"L12L\n."), Arg::Decimal(b"12"));
    assert_eq!(single_arg(b"L12\n."), Arg::Decimal(b"12"));
    assert_eq!(single_arg(b"L12LL\n."), Arg::Decimal(b"12L"));
    // Memo keys are never booleans: load_get reads "01" as 1.
    let (ops, error) = slice_ops(b"(lp01\ng01\na.");
    assert_eq!(error, None);
    assert_eq!(ops[2], (2, Opcode::Put, Arg::Decimal(b"01")));
    assert_eq!(ops[3], (6, Opcode::Get, Arg::Decimal(b"01")));
    assert_eq!(ops[3].2.as_index(), Some(1));
}

#[test]
fn string_quoting_and_escapes() {
    let string = |bytes: &[u8]| Arg::Str(held(bytes));
    assert_eq!(single_arg(b"S'abc'\n."), string(b"abc"));
    assert_eq!(single_arg(b"S\"abc\"\n."), string(b"abc"));
    assert_eq!(single_arg(b"S''\n."), string(b""));
    assert_eq!(
        single_arg(b"S'a\\x00\\n\\r\\t\\\\\\'\\101\\q'\n."),
        string(b"a\x00\n\r\t\\'A\\q")
    );
    // load_string: "the STRING opcode argument must be quoted".
    assert_eq!(single_arg(b"Sabc\n."), Arg::BadStr(b"abc"));
    assert_eq!(single_arg(b"S'abc\"\n."), Arg::BadStr(b"'abc\""));
    assert_eq!(single_arg(b"S'\n."), Arg::BadStr(b"'"));
    assert_eq!(single_arg(b"S\n."), Arg::BadStr(b""));
    // Escapes PyBytes_DecodeEscape rejects.
    assert_eq!(single_arg(b"S'\\x4'\n."), Arg::BadStr(b"'\\x4'"));
    assert_eq!(single_arg(b"S'abc\\'\n."), Arg::BadStr(b"'abc\\'"));
}

#[test]
fn crlf_line_endings_keep_the_cr() {
    // CPython strips only the '\n'; int() tolerates the '\r', the rest do not.
    assert_eq!(single_arg(b"I12\r\n."), Arg::Decimal(b"12\r"));
    assert_eq!(single_arg(b"I01\r\n."), Arg::Decimal(b"01\r"));
    assert_eq!(single_arg(b"L12L\r\n."), Arg::Decimal(b"12L\r"));
    assert_eq!(single_arg(b"F1.5\r\n."), Arg::FloatText(b"1.5\r"));
    assert_eq!(single_arg(b"Vabc\r\n."), Arg::Unicode(held(b"abc\r")));
    assert_eq!(single_arg(b"Pkey\r\n."), Arg::Line(b"key\r"));
    assert_eq!(single_arg(b"S'abc'\r\n."), Arg::BadStr(b"'abc'\r"));
    assert_eq!(single_arg(b"cmod\r\nname\r\n."), Arg::Pair(b"mod\r", b"name\r"));
    let (ops, error) = slice_ops(b"(imod\r\nname\r\n.");
    assert_eq!(error, None);
    assert_eq!(ops[1], (1, Opcode::Inst, Arg::Pair(b"mod\r", b"name\r")));
    let (ops, error) = slice_ops(b"(lp0\r\ng0\r\na.");
    assert_eq!(error, None);
    assert_eq!(ops[2], (2, Opcode::Put, Arg::Decimal(b"0\r")));
    assert_eq!(ops[3], (6, Opcode::Get, Arg::Decimal(b"0\r")));
}

#[test]
fn fixed_width_values() {
    assert_eq!(single_arg(b"G\x3f\xf8\x00\x00\x00\x00\x00\x00."), Arg::Float(1.5));
    assert_eq!(single_arg(b"J\xff\xff\xff\xff."), Arg::Int(-1));
    assert_eq!(single_arg(b"J\x00\x00\x00\x80."), Arg::Int(-2_147_483_648));
    assert_eq!(single_arg(b"M\xff\xff."), Arg::Int(65535));
    assert_eq!(single_arg(b"\x84\xff\xff\xff\xff."), Arg::Int(-1)); // EXT4 is signed
    assert_eq!(single_arg(b"j\xff\xff\xff\xff."), Arg::Int(0xffff_ffff)); // LONG_BINGET is not
    assert_eq!(single_arg(b"\x8a\x02\xff\x7f."), Arg::Long(held(b"\xff\x7f")));
}

#[test]
fn unterminated_lines() {
    for data in [&b"I12"[..], b"S'a'", b"cmod\nname", b"cmod", b"Vabc", b"P"] {
        let (ops, error) = slice_ops(data);
        assert!(ops.is_empty());
        assert!(
            matches!(error, Some(DecodeError::UnterminatedLine { offset: 0, .. })),
            "{data:?}"
        );
        let (_, stream_error) = reader_ops(data, StreamLimits::default());
        assert_eq!(stream_error, error);
    }
}

// ---------------------------------------------------------------------------------------------
// How much of a reader is consumed

/// A `Cursor` that publishes its position after every read.
struct Watched {
    cursor: Cursor<Vec<u8>>,
    position: Rc<Cell<u64>>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.cursor.read(buf)?;
        self.position.set(self.cursor.position());
        Ok(n)
    }
}

fn framed(protocol: u8, body: &[u8]) -> Vec<u8> {
    let mut data = vec![0x80, protocol, Opcode::Frame.code()];
    data.extend((body.len() as u64).to_le_bytes());
    data.extend(body);
    data
}

fn exactness_corpus() -> Vec<Vec<u8>> {
    let protocol0 = b"(lp0\nI1\naI01\naL5L\naF1.5\naS'x\\n'\naVy\\u20ac\nacbuiltins\nset\n(tRag0\na(i__main__\nC\nPpid\na.".to_vec();
    let protocol2 = b"\x80\x02]q\x00(K\x01M\x00\x01J\xff\xff\xff\xffG?\xf8\x00\x00\x00\x00\x00\x00U\x03abcT\x02\x00\x00\x00hiX\x02\x00\x00\x00\xc3\xa9\x8a\x02\xff\x7f\x8b\x01\x00\x00\x00\x05\x82\x01\x83\x01\x01\x84\x01\x01\x01\x00r\x05\x00\x00\x00h\x00j\x05\x00\x00\x00\x88\x89N\x85\x86\x87e.".to_vec();
    let mut body = b"]\x94(\x8c\x03abc\x94C\x02\xff\x00B\x03\x00\x00\x00xyz".to_vec();
    body.extend(b"\x8e\x04\x00\x00\x00\x00\x00\x00\x00wxyz\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi");
    body.extend(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00\x00\x97\x98\x8f\x94(K\x01\x90\x93e.");
    let protocol5 = framed(5, &body);
    let mut big = b"\x80\x04B".to_vec();
    big.extend(200_000u32.to_le_bytes());
    big.extend(vec![b'z'; 200_000]);
    big.push(b'.');
    vec![protocol0, protocol2, protocol5, big]
}

#[test]
fn reader_stops_exactly_at_the_end_of_each_opcode() {
    let trailing = b"TRAILING BYTES\n.";
    for (i, pickle) in exactness_corpus().into_iter().enumerate() {
        // The pickle decodes cleanly up to its STOP.
        let (ops, error) = slice_ops(&pickle);
        assert_eq!(error, None, "pickle {i}");
        assert_eq!(ops.last().map(|op| op.1), Some(Opcode::Stop), "pickle {i}");

        for keep_payload in [0, 3, usize::MAX] {
            let mut input = pickle.clone();
            input.extend(trailing);
            let position = Rc::new(Cell::new(0));
            let reader = Watched {
                cursor: Cursor::new(input),
                position: Rc::clone(&position),
            };
            let limits = StreamLimits {
                keep_payload,
                ..Default::default()
            };
            let mut decoder = Decoder::from_reader(reader, limits);
            let mut count = 0;
            loop {
                let op = decoder.next_op().unwrap().expect("an opcode before STOP");
                let (end, opcode) = (op.end(), op.opcode);
                count += 1;
                assert_eq!(position.get(), end, "pickle {i}, {opcode:?}: reader position");
                assert_eq!(decoder.position(), end);
                if opcode == Opcode::Stop {
                    break;
                }
            }
            assert_eq!(count, ops.len(), "pickle {i}");
            let mut cursor = decoder.into_source().into_inner().cursor;
            assert_eq!(cursor.position(), pickle.len() as u64);
            let mut rest = Vec::new();
            cursor.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, trailing, "pickle {i}: the bytes after STOP are left unread");
        }
    }
}

#[test]
fn slice_and_reader_agree_on_payloads() {
    for pickle in exactness_corpus() {
        let (ops, error) = slice_ops(&pickle);
        assert_eq!(error, None);
        let (stream, error) = reader_ops(&pickle, StreamLimits::default());
        assert_eq!(error, None);
        assert_eq!(ops.len(), stream.len());
        for (a, b) in ops.iter().zip(&stream) {
            match (&a.2, &b.2) {
                // Over the default keep limit the reader reports the length only.
                (Arg::Bytes(x), Arg::Bytes(y)) if y.data.is_none() => {
                    assert_eq!(x.len, y.len);
                    assert!(y.len > StreamLimits::default().keep_payload as u64);
                }
                _ => assert_eq!(a, b),
            }
        }
    }
}
