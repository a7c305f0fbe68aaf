//! The joblib reader (pickles with raw array bytes between opcodes), as a slice and as a stream
//! of random short reads: never panics, and both readings agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::formats::joblib::{analyze_joblib_reader, analyze_joblib_slice};
use picklefence::{FindingKind, Options, Policy};
use picklefence_fuzz::{has_overlong_frame, StreamConfig};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::ml_default();
    let options = Options::default();
    let sliced = analyze_joblib_slice(data, &policy, &options);
    assert!(sliced.consumed <= data.len() as u64);
    // The one legitimate difference: a slice knows that a FRAME is longer than what remains
    // (also one that starts after array bytes, which the plain decoder does not reach).
    let overlong = |m: &str| m.contains("FRAME at offset") && m.contains("is truncated");
    if has_overlong_frame(data) || sliced.findings.iter().any(|f| overlong(&f.message)) {
        return;
    }
    let config = StreamConfig::for_input(data);
    let streamed = analyze_joblib_reader(config.reader(data), &policy, &options);
    // Both readings judge the file alike. After the stream breaks (a malformed pickle, already
    // a violation) the two readers may stop at different places; before that they agree exactly.
    assert_eq!(
        sliced.is_safe(),
        streamed.is_safe(),
        "{:?}\n{:?}",
        sliced.findings,
        streamed.findings
    );
    let broken =
        |r: &picklefence::PickleReport| r.findings.iter().any(|f| f.kind == FindingKind::MalformedPickle);
    if !broken(&sliced) && !broken(&streamed) {
        assert_eq!(sliced.findings, streamed.findings);
        assert_eq!(sliced.imports, streamed.imports);
    }
});
