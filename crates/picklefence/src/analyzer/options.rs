//! What the caller asks of an analysis: its bounds, how much of the input to read and how
//! much detail to report.

use crate::decoder::StreamLimits;

/// Bounds on analysis. Hitting one ends analysis with a `LimitExceeded` violation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Values on the stack at once.
    pub max_stack: usize,
    /// MARKs open at once.
    pub max_marks: usize,
    /// Memo entries (and lists, dicts and objects the pickle makes).
    pub max_memo: usize,
    /// Opcodes in the whole stream.
    pub max_opcodes: u64,
    /// Longer strings are not kept; used as a name they make the import unresolvable.
    pub max_name_len: usize,
    /// Import and call occurrences recorded in the report (all are still checked). Also the
    /// number of distinct imports analysis keeps track of: more ends analysis (a limit finding),
    /// since the table of imports would otherwise grow with the input.
    pub max_records: usize,
    /// Findings listed; more are counted (`PickleReport::findings_dropped`).
    pub max_findings: usize,
    /// Pickles in one stream.
    pub max_pickles: usize,
    /// The decoder's bounds.
    pub stream: StreamLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stack: 4_000_000,
            max_marks: 100_000,
            max_memo: 4_000_000,
            max_opcodes: 2_000_000_000,
            max_name_len: 4096,
            max_records: 100_000,
            max_findings: 1_000,
            max_pickles: 100_000,
            stream: StreamLimits::default(),
        }
    }
}

/// How much of the input to analyse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One pickle, up to and including its STOP (what one `pickle.load` reads).
    FirstPickle,
    /// Every pickle in the input, one after another, then whatever trails them.
    AllPickles,
}

/// What a report lists besides its findings and imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every call and persistent id too (what a scan shows).
    Full,
    /// Findings and imports only: all a verdict needs (the pre-scan before a load).
    Verdict,
}

/// How to analyse: bounds, how much of the input, and how much detail to report.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bounds on analysis.
    pub limits: Limits,
    /// One pickle or all of them.
    pub mode: Mode,
    /// What the report lists besides findings and imports.
    pub detail: Detail,
    /// The unpickler has loaded before (`load()` again on one `Unpickler`): it keeps its memo,
    /// so a memo key this pickle never stored is an object the analysis never saw.
    pub memo_inherited: bool,
    /// The bytes from the start of the analysed pickle to the end of its stream, when known
    /// (a seekable file). torch's legacy format allocates every storage a persistent id
    /// declares while the pickle loads and reads its data from after the pickle: declared
    /// storages larger than what follows are refused.
    pub stream_remaining: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            mode: Mode::AllPickles,
            detail: Detail::Full,
            memo_inherited: false,
            stream_remaining: None,
        }
    }
}
