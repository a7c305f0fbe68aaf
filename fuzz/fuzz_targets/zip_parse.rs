//! The zip reader over any bytes: never panics, and every member it lists lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::formats::zip::{find_end_record, ZipArchive};

fuzz_target!(|data: &[u8]| {
    if let Some(end) = find_end_record(data) {
        assert!(end < data.len() as u64);
    }
    let Ok(archive) = ZipArchive::parse(data, 64) else {
        return;
    };
    assert!(archive.entries.len() <= 64);
    for entry in &archive.entries {
        let _ = entry.display_name();
        let _ = entry.is_encrypted();
        if let Some(raw) = entry.raw(data) {
            assert_eq!(raw.len() as u64, entry.compressed_size);
        }
        if let Some(offset) = entry.data_offset {
            assert!(offset <= data.len() as u64, "data offset past the input");
        }
    }
});
