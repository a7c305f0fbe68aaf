//! The zero-copy decoder over any bytes: never panics, and every opcode it returns lies
//! inside the input, right after the previous one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::decoder::HELD_TEXT_LINE;
use picklefence::{Arg, Decoder, Opcode};

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let mut decoder = Decoder::from_slice(data);
    let mut expected_offset = 0u64;
    loop {
        match decoder.next_op() {
            Ok(Some(op)) => {
                assert_eq!(op.offset, expected_offset, "opcodes are contiguous");
                assert!(op.len >= 1, "an opcode takes at least its own byte");
                assert!(op.end() <= len, "opcode ends past the input");
                if let Arg::Long(p) | Arg::Str(p) | Arg::Bytes(p) | Arg::Unicode(p) | Arg::BadUnicode(p) =
                    &op.arg
                {
                    // The slice decoder holds every payload (but UNICODE lines too long to be a
                    // name, which it only validates and measures), and holds exactly its length.
                    let held = p.bytes().map(|b| b.len() as u64);
                    let long_line = op.opcode == Opcode::Unicode && op.len > HELD_TEXT_LINE as u64;
                    if !long_line {
                        assert_eq!(
                            held,
                            Some(p.len),
                            "slice decoder skipped or misdeclared a payload"
                        );
                    }
                    // A counted payload lies inside its opcode (escape-decoded lines can grow).
                    if !matches!(op.opcode, Opcode::Unicode | Opcode::String) {
                        assert!(p.len < op.len, "payload longer than its opcode");
                    }
                }
                expected_offset = op.end();
            }
            Ok(None) => {
                break;
            }
            Err(error) => {
                assert!(error.offset() <= len, "error offset past the input");
                assert_eq!(error.offset(), expected_offset, "error at the opcode that failed");
                let _ = error.to_string();
                // Once broken, a decoder stays at the end.
                assert!(matches!(decoder.next_op(), Ok(None)));
                return;
            }
        }
    }
    assert_eq!(expected_offset, len, "clean end of input consumed it all");
    assert!(matches!(decoder.next_op(), Ok(None)));
});
