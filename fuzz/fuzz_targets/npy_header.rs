//! The `.npy` header reader and the Python-literal parser under it: never panic. The input is
//! read as it is and, so that the literal parser sees every input, also wrapped in a valid
//! version 1.0 preamble.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::formats::npy;

fn check(data: &[u8]) {
    match npy::header_end(data) {
        Ok(end) => {
            if let Ok(header) = npy::parse_header(data) {
                assert_eq!(header.data_offset, end);
            }
        }
        Err(_) => assert!(npy::parse_header(data).is_err()),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() <= usize::from(u16::MAX) {
        let mut wrapped = b"\x93NUMPY\x01\x00".to_vec();
        wrapped.extend_from_slice(&(data.len() as u16).to_le_bytes());
        wrapped.extend_from_slice(data);
        check(&wrapped);
    }
});
