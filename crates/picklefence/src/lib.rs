//! picklefence core: decode pickles, analyse what they import and call, judge them by a policy.
//!
//! No PyO3 and no file-system policy here: callers hand in bytes or readers.

#![deny(missing_docs)]

pub mod analyzer;
pub mod compat;
pub mod convert;
pub mod decoder;
pub mod error;
mod evaluate;
pub mod findings;
pub mod formats;
#[cfg(target_os = "linux")]
mod mapped;
pub mod native_state;
pub mod opcodes;
pub mod policy;
mod report;
pub mod scan;
pub mod text;

pub use analyzer::ArrayRead;
pub use analyzer::{
    analyze_reader, analyze_slice, Analyzer, CallSite, Callee, Detail, Flow, Import, Limits, Mode, Options,
    PersistentId, PickleInfo, PickleReport, Sym,
};
pub use decoder::{Arg, Decoder, Op, Payload, StreamLimits};
pub use error::DecodeError;
pub use findings::{Finding, FindingKind, ImportName, Severity};
pub use formats::joblib::{analyze_joblib_reader, analyze_joblib_slice};
pub use formats::{identify, Format};
pub use opcodes::Opcode;
pub use policy::{danger_reason, Policy, PolicyError};
pub use scan::{
    scan_bytes, scan_path, scan_reader, walk_bytes, Entry, LocatedFinding, PickleStream, ScanError,
    ScanOptions, ScanReport, Verdict,
};
