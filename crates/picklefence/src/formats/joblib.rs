//! joblib files: a pickle whose `NumpyArrayWrapper` objects are each followed by the array they
//! stand for, outside the pickle's opcodes. joblib's `NumpyUnpickler` reads that array right after
//! the wrapper's BUILD: raw bytes (after a padding-length byte and padding, joblib ≥ 1.2), or, for
//! object arrays, a nested pickle read by a fresh unpickler. The driver here does the same: it
//! steps the analyzer, skips raw arrays by their declared size, analyses nested pickles, and goes
//! on with the opcodes after them (where a payload would otherwise hide).

use std::io::Read;

use crate::analyzer::driver::{self, Between, End};
use crate::analyzer::{Analyzer, ArrayRead, Mode, Options, PickleReport};
use crate::decoder::{Decoder, Op, Source, SourceError};
use crate::findings::{Finding, FindingKind, Severity};
use crate::opcodes::Opcode;
use crate::policy::Policy;
use crate::Sym;

/// What one run of the driver found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analysis {
    /// The analyzer's report, with the records and findings of nested (object array) pickles
    /// merged in.
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

/// What joblib's `NumpyUnpickler` reads between opcodes, for the one driver loop: the array
/// after each `NumpyArrayWrapper`'s BUILD, and what the run found on the way.
struct ArrayReads<'a, 'o> {
    policy: &'a Policy,
    options: &'a Options,
    observe: Option<&'o mut dyn FnMut(&Op<'_>)>,
    extra: Vec<Finding>,
    nested: Vec<PickleReport>,
    arrays: u64,
    skips: Vec<(u64, u64)>,
    complete: bool,
}

impl<S: Source> Between<S> for ArrayReads<'_, '_> {
    fn see(&mut self, op: &Op<'_>) {
        if let Some(observe) = self.observe.as_mut() {
            observe(op);
        }
        self.complete = op.opcode == Opcode::Stop;
    }

    fn after(
        &mut self,
        machine: &mut Analyzer<'_>,
        mut decoder: Decoder<S>,
        op_end: u64,
    ) -> (Decoder<S>, bool) {
        let Some(read) = machine.take_array_read() else {
            return (decoder, true);
        };
        self.arrays += 1;
        self.complete = false;
        // The analyzer's frame state: the fast path runs FRAME opcodes the driver never sees.
        if let Some(end) = machine.frame_end().filter(|&end| op_end < end) {
            self.extra.push(Finding {
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
            return (decoder, false);
        }
        match read {
            ArrayRead::Raw { nbytes, padded } => {
                let mut source = decoder.into_source();
                let skipped = skip_array(&mut source, nbytes, padded);
                decoder = Decoder::new(source);
                self.skips.push((op_end, decoder.position()));
                if let Err(why) = skipped {
                    self.extra.push(Finding {
                        kind: FindingKind::MalformedPickle,
                        severity: Severity::High,
                        offset: op_end,
                        import: None,
                        message: format!(
                            "joblib reads a {nbytes}-byte array after offset {op_end} and fails: {why}; \
                             everything before this point has run"
                        ),
                    });
                    return (decoder, false);
                }
                (decoder, true)
            }
            ArrayRead::Pickled => {
                let inner = Options {
                    mode: Mode::FirstPickle,
                    ..*self.options
                };
                let (sub, rest) = drive(decoder, self.policy, &inner, false, None);
                self.skips.extend(sub.skips);
                let finished = sub.complete;
                self.nested.push(sub.report);
                (rest, finished)
            }
            ArrayRead::Unknown { reason } => {
                self.extra.push(container(
                    Severity::High,
                    op_end,
                    format!(
                        "joblib reads array data after the BUILD ending at offset {op_end}, but {reason}; the \
                         data's length is unknown, so the rest of the stream was not analysed"
                    ),
                ));
                (decoder, false)
            }
        }
    }
}

/// Runs the analyzer over `decoder`, reading joblib arrays between opcodes when `joblib` is set.
/// `observe` sees every opcode. Returns the decoder positioned where reading stopped.
pub(crate) fn drive<S: Source>(
    decoder: Decoder<S>,
    policy: &Policy,
    options: &Options,
    joblib: bool,
    observe: Option<&mut dyn FnMut(&Op<'_>)>,
) -> (Analysis, Decoder<S>) {
    let mut machine = Analyzer::new(policy, options);
    let mut decoder = decoder;
    machine.reserve_for(decoder.source_mut().remaining());
    if joblib {
        machine.track_joblib();
    }
    // Data opcodes between the wrappers run straight from the bytes; BUILD never does, so
    // every array read is still seen. An observer must see every opcode: no fast path then.
    let fast = observe.is_none();
    let mut reads = ArrayReads {
        policy,
        options,
        observe,
        extra: Vec::new(),
        nested: Vec::new(),
        arrays: 0,
        skips: Vec::new(),
        complete: false,
    };
    let (decoder, ended) = driver::drive(&mut machine, decoder, fast, &mut reads);
    if ended == End::Error {
        reads.complete = false;
    }
    let last = machine.last_result().cloned();
    let end = decoder.position();
    let mut report = machine.finish(end);
    for sub in reads.nested {
        merge(&mut report, sub);
    }
    report.findings.extend(reads.extra);
    (
        Analysis {
            report,
            arrays: reads.arrays,
            last,
            complete: reads.complete,
            skips: reads.skips,
            end,
        },
        decoder,
    )
}
