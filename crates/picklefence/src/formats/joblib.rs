//! joblib files: a pickle whose `NumpyArrayWrapper` objects are each followed by the array they
//! stand for, outside the pickle's opcodes. joblib's `NumpyUnpickler` reads that array right after
//! the wrapper's BUILD: raw bytes (after a padding-length byte and padding, joblib ≥ 1.2), or, for
//! object arrays, a nested pickle read by a fresh unpickler. The driver here does the same: it
//! steps the analyzer, skips raw arrays by their declared size, analyses nested pickles, and goes
//! on with the opcodes after them (where a payload would otherwise hide).

use std::io::Read;

use crate::analyzer::{Analyzer, ArrayRead, Flow, Mode, Options, PickleReport};
use crate::decoder::{Decoder, Op, Source, SourceError};
use crate::findings::{Finding, FindingKind, Severity};
use crate::opcodes::Opcode;
use crate::policy::Policy;
use crate::Sym;

/// What one run of the driver found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analysis {
    pub report: PickleReport,
    /// Arrays joblib would read between opcodes (raw or nested pickles).
    pub arrays: u64,
    /// What the last complete pickle returned.
    pub last: Option<Sym>,
    /// Whether the last pickle ended with STOP.
    pub complete: bool,
    /// Raw array bytes joblib reads between opcodes: from where (the end of a BUILD) to where
    /// the opcodes go on.
    pub skips: Vec<(u64, u64)>,
    /// Where reading stopped.
    pub end: u64,
}

/// Pre-scan a joblib stream the way `joblib.load` reads it, before it runs.
///
/// `reader` yields the *decompressed* file content (joblib opens its compressors first). The
/// outer pickle is analysed up to and including its STOP, exactly as far as joblib's
/// `NumpyUnpickler` reads: the raw bytes of each `NumpyArrayWrapper` array are skipped by the
/// wrapper's declared shape and dtype (never held), object arrays' nested pickles are analysed
/// like any pickle, and the opcodes after each array are analysed as the unpickler would run
/// them. Where an array's layout cannot be recovered from the pickle, the report carries a
/// violation and nothing after that point is analysed. `options.mode` is ignored: joblib reads
/// one outer pickle.
///
/// The reader is read byte-exactly (never past the outer STOP); wrap an unbuffered reader in a
/// `BufReader` for speed when that does not matter.
pub fn analyze_joblib_reader<R: Read>(reader: R, policy: &Policy, options: &Options) -> PickleReport {
    let options = Options {
        mode: Mode::FirstPickle,
        ..*options
    };
    let decoder = Decoder::from_reader(reader, options.limits.stream);
    drive(decoder, policy, &options, true, None).0.report
}

/// [`analyze_joblib_reader`] over bytes in memory.
pub fn analyze_joblib_slice(data: &[u8], policy: &Policy, options: &Options) -> PickleReport {
    let options = Options {
        mode: Mode::FirstPickle,
        ..*options
    };
    drive(Decoder::from_slice(data), policy, &options, true, None)
        .0
        .report
}

fn container(severity: Severity, offset: u64, message: String) -> Finding {
    Finding {
        kind: FindingKind::Container,
        severity,
        offset,
        import: None,
        message,
    }
}

/// Appends `other`'s records and findings to `report`.
pub(crate) fn merge(report: &mut PickleReport, other: PickleReport) {
    report.pickles.extend(other.pickles);
    report.imports.extend(other.imports);
    report.calls.extend(other.calls);
    report.persistent_ids.extend(other.persistent_ids);
    report.findings.extend(other.findings);
    report.records_dropped += other.records_dropped;
    report.findings_dropped += other.findings_dropped;
    report.consumed = report.consumed.max(other.consumed);
}

fn skip_array<S: Source>(source: &mut S, nbytes: u64, padded: bool) -> Result<(), String> {
    let short = |e: SourceError, what: &str| match e {
        SourceError::Short { available } => format!("the input ends {available} bytes into the {what}"),
        SourceError::Io(message) => format!("reading the {what} failed: {message}"),
        _ => format!("the {what} cannot be read"),
    };
    if padded {
        match source.next_byte() {
            Ok(Some(pad)) => source
                .skip(u64::from(pad), &mut |_| {})
                .map_err(|e| short(e, "array padding"))?,
            Ok(None) => return Err("the input ends before the array's padding byte".into()),
            Err(e) => return Err(short(e, "array padding byte")),
        }
    }
    source
        .skip(nbytes, &mut |_| {})
        .map_err(|e| short(e, "array data"))
}

/// Runs the analyzer over `decoder`, reading joblib arrays between opcodes when `joblib` is set.
/// `observe` sees every opcode. Returns the decoder positioned where reading stopped.
pub(crate) fn drive<S: Source>(
    mut decoder: Decoder<S>,
    policy: &Policy,
    options: &Options,
    joblib: bool,
    mut observe: Option<&mut dyn FnMut(&Op<'_>)>,
) -> (Analysis, Decoder<S>) {
    let mut machine = Analyzer::new(policy, options);
    machine.reserve_for(decoder.source_mut().remaining());
    if joblib {
        machine.track_joblib();
    }
    let mut extra: Vec<Finding> = Vec::new();
    let mut nested: Vec<PickleReport> = Vec::new();
    let mut arrays = 0u64;
    let mut skips = Vec::new();
    let mut complete = false;
    loop {
        if observe.is_none() {
            // Data opcodes between the wrappers run straight from the bytes; BUILD never does,
            // so every array read below is still seen here.
            if let Some((data, at)) = decoder.source().window() {
                let resumed = machine.fast_forward(data, at);
                if resumed != at {
                    decoder.source_mut().advance_to(resumed);
                }
            }
        }
        let position = decoder.position();
        let (flow, op_end) = match decoder.next_op() {
            Ok(Some(op)) => {
                if let Some(observe) = observe.as_mut() {
                    observe(&op);
                }
                complete = op.opcode == Opcode::Stop;
                (machine.step(&op), op.end())
            }
            Ok(None) => {
                machine.end_of_input(position);
                break;
            }
            Err(error) => {
                machine.decode_error(&error);
                complete = false;
                break;
            }
        };
        if let Some(read) = machine.take_array_read() {
            arrays += 1;
            complete = false;
            // The analyzer's frame state: the fast path runs FRAME opcodes this loop never sees.
            if let Some(end) = machine.frame_end().filter(|&end| op_end < end) {
                extra.push(Finding {
                    kind: FindingKind::AmbiguousFraming,
                    severity: Severity::High,
                    offset: op_end,
                    import: None,
                    message: format!(
                        "joblib reads an array after the BUILD ending at offset {op_end}, but that BUILD is inside a \
                         frame ending at offset {end}: joblib reads the array from after the frame while the \
                         unpickler goes on inside it; the rest of the stream was not analysed"
                    ),
                });
                break;
            }
            match read {
                ArrayRead::Raw { nbytes, padded } => {
                    let mut source = decoder.into_source();
                    let skipped = skip_array(&mut source, nbytes, padded);
                    decoder = Decoder::new(source);
                    skips.push((op_end, decoder.position()));
                    if let Err(why) = skipped {
                        extra.push(Finding {
                            kind: FindingKind::MalformedPickle,
                            severity: Severity::High,
                            offset: op_end,
                            import: None,
                            message: format!(
                                "joblib reads a {nbytes}-byte array after offset {op_end} and fails: {why}; \
                                 everything before this point has run"
                            ),
                        });
                        break;
                    }
                }
                ArrayRead::Pickled => {
                    let inner = Options {
                        mode: Mode::FirstPickle,
                        ..*options
                    };
                    let (sub, rest) = drive(decoder, policy, &inner, false, None);
                    decoder = rest;
                    skips.extend(sub.skips);
                    let finished = sub.complete;
                    nested.push(sub.report);
                    if !finished {
                        break;
                    }
                }
                ArrayRead::Unknown { reason } => {
                    extra.push(container(
                        Severity::High,
                        op_end,
                        format!(
                            "joblib reads array data after the BUILD ending at offset {op_end}, but {reason}; the \
                             data's length is unknown, so the rest of the stream was not analysed"
                        ),
                    ));
                    break;
                }
            }
        }
        if flow == Flow::Stop {
            break;
        }
    }
    let last = machine.last_result().cloned();
    let end = decoder.position();
    let mut report = machine.finish(end);
    for sub in nested {
        merge(&mut report, sub);
    }
    report.findings.extend(extra);
    (
        Analysis {
            report,
            arrays,
            last,
            complete,
            skips,
            end,
        },
        decoder,
    )
}
