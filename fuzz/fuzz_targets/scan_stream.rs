//! Scanning a stream (`scan_reader` over a reader that hands out random short pieces) never
//! panics, its verdict follows its findings, and it is never more lenient than scanning the same
//! bytes in memory: whatever `scan_bytes` finds unsafe, the stream scan finds unsafe too.
//!
//! The windows that decide between reading a stream whole and reading it as it streams (16 MiB
//! for an input, 32 MiB for a zip stream) are cut to bytes for the stream scan, so that small
//! inputs take the streaming paths: pickles, joblib, `.npy`, tar, compressed wrappers and zips
//! read member after member; the in-memory scan keeps them. Both identify decompressed streams
//! from one window of 4-8 KiB (64 KiB by default): protocol 0 and 1 pickles are told apart from
//! text by what their first 4 KiB decode to, and a shorter window would change what the input
//! is, not how it is read. Budgets
//! are cut as in `scan_bytes.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::{scan_bytes, scan_reader, Limits, Policy, ScanOptions, Verdict};
use picklefence_fuzz::{fnv, StreamConfig};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::ml_default();
    let h = fnv(data);
    // Both scans identify decompressed streams from the same window: a stream not recognised
    // there is not read further by either (what lies past it is not compared).
    let bytes_options = ScanOptions {
        limits: Limits {
            max_opcodes: 250_000,
            ..Limits::default()
        },
        max_decompressed: 1 << 20,
        ratio_floor: 128 << 10,
        stream_prefix: 4096 + (h >> 8) as usize % 4096,
        ..ScanOptions::default()
    };
    let stream_options = ScanOptions {
        read_whole_up_to: h % 64,
        zip_stream_held: (h >> 20) % 1024,
        ..bytes_options
    };
    let streamed = scan_reader(StreamConfig::for_input(data).reader(data), &policy, &stream_options);
    let violation = streamed.findings.iter().any(|f| f.finding.is_violation());
    assert_eq!(streamed.verdict == Verdict::Unsafe, violation);

    // A zip appended after a stream's start is not looked for (the stream says so in a
    // warning): that reading is left out of the comparison.
    let in_memory = scan_bytes(data, &policy, &bytes_options);
    // A decoder that fails drops the output of the call that failed, so where a corrupt stream
    // first fails depends on how its input arrived: in memory it may fail inside the window,
    // from a stream after it, where an unrecognised stream is no longer analysed (and says so).
    let stopped_reading = |location: &str| {
        streamed
            .findings
            .iter()
            .any(|g| g.location == location && g.finding.message.ends_with("the rest was not analysed"))
    };
    let unsafe_in_memory = in_memory.findings.iter().any(|f| {
        f.finding.is_violation()
            && !f.location.contains("<appended zip>")
            && !f.finding.message.starts_with("a zip archive starts at offset")
            && !(f.finding.message.starts_with("the stream cannot be read") && stopped_reading(&f.location))
    });
    if unsafe_in_memory {
        assert_eq!(
            streamed.verdict,
            Verdict::Unsafe,
            "unsafe in memory, clean as a stream: {:#?}",
            in_memory.findings
        );
    }
});
