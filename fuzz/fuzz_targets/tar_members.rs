//! The tar reader over any bytes: never panics; every member header lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::formats::tar::{is_header, members};

fuzz_target!(|data: &[u8]| {
    let _ = is_header(data);
    let Ok((list, _end)) = members(data, 64) else {
        return;
    };
    assert!(list.len() <= 64);
    for member in &list {
        assert!(member.header_offset < data.len() as u64);
        assert!(member.data_offset >= member.header_offset);
        let _ = member.is_file();
    }
});
