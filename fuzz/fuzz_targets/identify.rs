//! Format identification by content: never panics, and is a function of the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::identify;

fuzz_target!(|data: &[u8]| {
    let format = identify(data);
    assert!(!format.name().is_empty());
    assert_eq!(identify(data), format);
    let _ = format.carries_pickles();
});
