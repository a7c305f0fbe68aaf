//! Analysis of a stream in random short reads equals analysis of the slice, for any keep-payload
//! limit (`analyze_reader` holds every string that could be a name, whatever the keep limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::{analyze_reader, analyze_slice, Limits, Mode, Options, Policy};
use picklefence_fuzz::{has_overlong_frame, StreamConfig};

fuzz_target!(|data: &[u8]| {
    if has_overlong_frame(data) {
        return;
    }
    let config = StreamConfig::for_input(data);
    let policy = Policy::ml_default();
    let mode = if config.seed & 1 == 0 {
        Mode::AllPickles
    } else {
        Mode::FirstPickle
    };
    let mut stream_limits = Limits::default();
    stream_limits.stream = config.stream_limits(data.len() + 1);
    let slice_limits = stream_limits;

    let reader = config.reader(data);
    let consumed = reader.consumed();
    let streamed = analyze_reader(
        reader,
        &policy,
        &Options {
            limits: stream_limits,
            mode,
            ..Options::default()
        },
    );
    let sliced = analyze_slice(
        data,
        &policy,
        &Options {
            limits: slice_limits,
            mode,
            ..Options::default()
        },
    );

    assert_eq!(sliced.findings, streamed.findings);
    assert_eq!(sliced.imports, streamed.imports);
    assert_eq!(sliced.calls, streamed.calls);
    assert_eq!(sliced.persistent_ids, streamed.persistent_ids);
    assert_eq!(sliced.pickles, streamed.pickles);
    assert_eq!(sliced.records_dropped, streamed.records_dropped);
    assert_eq!(sliced.findings_dropped, streamed.findings_dropped);
    if mode == Mode::FirstPickle {
        if let Some(end) = streamed.pickles.first().and_then(|p| p.end) {
            assert_eq!(streamed.consumed, end);
            assert_eq!(consumed.get(), end, "the reader was read past STOP");
        }
    }
});
