//! The analyzer over any bytes, with the default limits and with tiny ones: never panics,
//! and its report keeps to its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::{analyze_slice, FindingKind, Limits, Mode, Options, Policy};
use picklefence_fuzz::tight_limits;

fn check(data: &[u8], policy: &Policy, options: &Options) {
    let report = analyze_slice(data, policy, options);
    let limits = &options.limits;
    assert!(report.consumed <= data.len() as u64);
    // Past max_findings: the limit that stopped analysis, and the note of what was dropped.
    assert!(report.findings.len() <= limits.max_findings + 2);
    assert!(
        report
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::LimitExceeded && f.message.starts_with("analysis stopped"))
            .count()
            <= 1
    );
    assert!(report.imports.len() <= limits.max_records);
    assert!(report.calls.len() <= limits.max_records);
    assert!(report.persistent_ids.len() <= limits.max_records);
    assert!(report.pickles.len() <= limits.max_pickles.max(1));
    if report.findings_dropped > 0 {
        assert!(report
            .findings
            .last()
            .is_some_and(|f| f.kind == FindingKind::LimitExceeded));
    }
    // Every disallowed import is a violation, listed or not: fail closed.
    if report.imports.iter().any(|i| !i.allowed) {
        assert!(!report.is_safe(), "a disallowed import left the report safe");
    }
    let mut previous = 0;
    for pickle in &report.pickles {
        assert!(pickle.start >= previous, "pickles out of order");
        if let Some(end) = pickle.end {
            assert!(end > pickle.start && end <= data.len() as u64);
            previous = end;
        }
    }
    if options.mode == Mode::FirstPickle {
        assert!(report.pickles.len() <= 1);
        if let Some(end) = report.pickles.first().and_then(|p| p.end) {
            assert_eq!(report.consumed, end, "FirstPickle reads exactly up to STOP");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let policy = Policy::ml_default();
    for mode in [Mode::AllPickles, Mode::FirstPickle] {
        check(
            data,
            &policy,
            &Options {
                limits: Limits::default(),
                mode,
                ..Options::default()
            },
        );
    }
    check(
        data,
        &Policy::empty(),
        &Options {
            limits: tight_limits(data),
            mode: Mode::AllPickles,
            ..Options::default()
        },
    );
});
