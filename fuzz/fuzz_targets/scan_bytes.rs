//! Whole-input scanning, which identifies the format by content and dispatches to the container
//! readers (zip, tar, legacy torch, npy/npz, joblib, gzip/bz2/xz/zstd): never panics, and the
//! verdict follows the findings.
//!
//! The decompression budget is cut from the default 16 GiB (ratio checked past 64 MiB) to 1 MiB
//! (ratio checked past 128 KiB), and analysis to 250,000 opcodes per scan: with the defaults, a
//! 1.4 KB bzip2 stream that expands to 4 MB of opcodes takes 0.6 s of CPU to analyse (a 2.3 KB one
//! expanding to 64 MB, 3.6 s), and the fuzzer would keep reporting that known amplification as a
//! timeout instead of looking further. Small budgets still reach every budget check; the bombs
//! themselves are tested with the real defaults in `tests/hostile.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::{scan_bytes, Policy, ScanOptions, Verdict};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::ml_default();
    let options = ScanOptions {
        limits: picklefence::Limits {
            max_opcodes: 250_000,
            ..picklefence::Limits::default()
        },
        max_decompressed: 1 << 20,
        ratio_floor: 128 << 10,
        ..ScanOptions::default()
    };
    let report = scan_bytes(data, &policy, &options);
    let violation = report.findings.iter().any(|f| f.finding.is_violation());
    assert_eq!(report.verdict == Verdict::Unsafe, violation);
    for entry in &report.entries {
        for finding in entry.report.findings.iter().filter(|f| f.is_violation()) {
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| f.location == entry.location && &f.finding == finding),
                "an entry's violation is missing from the scan's findings"
            );
        }
    }
});
