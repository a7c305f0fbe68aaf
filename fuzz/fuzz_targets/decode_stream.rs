//! The streaming decoder, fed in random short reads with spurious `Interrupted` errors and a
//! random keep-payload limit, agrees with the slice decoder opcode for opcode, and never reads
//! past the opcodes it returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::{DecodeError, Decoder};
use picklefence_fuzz::{same_op, StreamConfig};

fuzz_target!(|data: &[u8]| {
    let config = StreamConfig::for_input(data);
    // A line limit the input cannot reach: the streaming decoder then differs from the slice
    // decoder only in payloads it skips and in FRAME lengths it cannot check up front.
    let reader = config.reader(data);
    let consumed = reader.consumed();
    let mut stream = Decoder::from_reader(reader, config.stream_limits(data.len() + 1));
    let mut slice = Decoder::from_slice(data);
    loop {
        let expected = slice.next_op();
        let got = stream.next_op();
        match (&expected, &got) {
            (Ok(Some(a)), Ok(Some(b))) => {
                assert!(same_op(a, b), "slice {a:?} vs stream {b:?}");
                assert_eq!(consumed.get(), b.end(), "stream read past the opcode it returned");
            }
            (Ok(None), Ok(None)) => break,
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "different errors");
                break;
            }
            // The slice decoder knows how much input remains and refuses a FRAME longer than
            // that at once; a stream finds out when it runs dry. Nothing to compare past here.
            (Err(DecodeError::Truncated { opcode: "FRAME", .. }), Ok(Some(_))) => break,
            (a, b) => panic!("slice {a:?} vs stream {b:?}"),
        }
    }
});
