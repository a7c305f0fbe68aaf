//! The symbolic stack machine: runs a pickle's opcodes over stand-in values, the way CPython's
//! `_pickle.c` would run them, and records every import, call, persistent id and violation.
//!
//! This file holds the machine's state ([`Analyzer`]), its primitives (stack, marks, findings,
//! limits), the report types and the entry points. Each area is an `impl Analyzer` block of its
//! own file: the value model and the memo, the opcode handlers by family, the fast path.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use crate::decoder::{Decoder, Op, Source};
use crate::findings::{Finding, FindingKind, ImportName, Severity};
use crate::opcodes::Opcode;
use crate::policy::{Policy, Roles};

mod calls;
mod containers;
pub(crate) mod driver;
mod fast_path;
mod framing;
pub(crate) mod joblib;
mod memo;
mod options;
mod persistent;
mod roles;
mod scalars;
mod stack;
mod value;

pub use joblib::ArrayRead;
use memo::Memo;
pub use options::{Detail, Limits, Mode, Options};
pub use persistent::element_size;
use persistent::LegacyStorages;
use roles::Tables;
use value::Value;
// The role checks and the joblib tracker reach these through `super::`.
use value::{TupleMeta, KEPT_TUPLE_DEPTH, KEPT_TUPLE_LEN};

/// Memo entries reserved at most before a pickle is read (64 KiB of keys).
const MEMO_RESERVE_MAX: usize = 1 << 14;

/// One import as the unpickler would perform it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    /// Where the importing opcode is.
    pub offset: u64,
    /// The importing opcode's name (GLOBAL, STACK_GLOBAL, INST, EXT1...).
    pub opcode: &'static str,
    /// What would be imported (after Python 2 name mapping). `None` when unresolvable or an EXT code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<ImportName>,
    /// The names as written, when Python 2 mapping changed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_as: Option<ImportName>,
    /// The extension code an EXT opcode imports through the copyreg registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_code: Option<i64>,
    /// Whether the policy allows the import.
    pub allowed: bool,
    /// Index of the pickle in the stream.
    pub pickle: usize,
}

/// What a call site calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Callee {
    /// An imported name.
    Import {
        /// What was imported.
        target: ImportName,
    },
    /// What an extension code imported.
    ExtCode {
        /// The copyreg extension code.
        code: i64,
    },
    /// The result of an earlier call (made at `offset`).
    CallResult {
        /// Where the earlier call is.
        offset: u64,
    },
    /// An import that could not be resolved, or a value CPython would already have failed on.
    Unresolved,
    /// Some other value (a str, a list...): not a callable a data pickle calls.
    Other {
        /// What kind of value it is.
        what: &'static str,
    },
}

/// One call (REDUCE, OBJ, INST, NEWOBJ, NEWOBJ_EX, BUILD) as the unpickler would make it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSite {
    /// Where the calling opcode is.
    pub offset: u64,
    /// The calling opcode's name.
    pub opcode: &'static str,
    /// What it calls.
    pub callee: Callee,
    /// Index of the pickle in the stream.
    pub pickle: usize,
}

/// A bounded, plain-data picture of a stand-in value (persistent ids are shown this way).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Sym {
    /// A str constant.
    Str(String),
    /// An int constant that fits `i64`.
    Int(i64),
    /// An imported name.
    Import(ImportName),
    /// A tuple, item by item.
    Tuple(Vec<Sym>),
    /// Any other value, by its kind.
    Other(&'static str),
}

impl std::fmt::Display for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sym::Str(s) => write!(f, "{s:?}"),
            Sym::Int(i) => write!(f, "{i}"),
            Sym::Import(name) => write!(f, "{name}"),
            Sym::Tuple(items) => {
                write!(f, "(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() == 1 {
                    write!(f, ",")?;
                }
                write!(f, ")")
            }
            Sym::Other(what) => write!(f, "<{what}>"),
        }
    }
}

/// A persistent id the pickle hands to its loader's `persistent_load`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersistentId {
    /// Where the PERSID or BINPERSID is.
    pub offset: u64,
    /// Index of the pickle in the stream.
    pub pickle: usize,
    /// The id.
    pub value: Sym,
}

/// One pickle of a stream: where it lies and what it declared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PickleInfo {
    /// Offset of its first opcode.
    pub start: u64,
    /// Offset just past its STOP; `None` if the stream ended or broke first.
    pub end: Option<u64>,
    /// The last PROTO seen (0 when there was none).
    pub protocol: u8,
    /// Opcodes run.
    pub opcodes: u64,
}

/// Everything analysis learned about one byte stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PickleReport {
    /// The pickles read, in order.
    pub pickles: Vec<PickleInfo>,
    /// Every import (up to `Limits::max_records`).
    pub imports: Vec<Import>,
    /// Every call (up to `Limits::max_records`; none with `Detail::Verdict`).
    pub calls: Vec<CallSite>,
    /// Every persistent id (up to `Limits::max_records`; none with `Detail::Verdict`).
    pub persistent_ids: Vec<PersistentId>,
    /// What analysis found, violations and notes.
    pub findings: Vec<Finding>,
    /// Bytes read: after `Mode::FirstPickle`, just past the STOP.
    pub consumed: u64,
    /// Imports and calls checked but not listed (over `Limits::max_records`).
    pub records_dropped: u64,
    /// Findings not listed (over `Limits::max_findings`); the report holds a note of it.
    pub findings_dropped: u64,
    /// Files held in bytes constants that a call turns into objects (`torch.storage.
    /// _load_from_bytes`): a scanner analyses each as a nested file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nested: Vec<NestedFile>,
    /// Where the input ran out inside a pickle (an opcode cut short, or no STOP before the end),
    /// if it did: at the end of a prefix of a longer stream, that is not a break.
    #[serde(skip)]
    pub ran_out_at: Option<u64>,
    /// How many bytes the opcode that ran out claimed for its argument (0 for a line, which
    /// any later newline ends): a claim no input could meet is a break wherever it is cut.
    #[serde(skip)]
    pub ran_out_claiming: u64,
    /// Reading stopped on an error of the source (a corrupt compressed stream, a budget), not
    /// on the bytes: what followed was never seen.
    #[serde(skip)]
    pub read_failed: bool,
}

/// A file nested in a bytes constant of the pickle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NestedFile {
    /// The call that loads it.
    pub offset: u64,
    /// Where its bytes lie in the stream (`u64::MAX`: not known).
    pub at: u64,
    /// How many bytes.
    pub len: u64,
    /// The bytes are written as a latin-1 str (`_codecs.encode(str, 'latin1')`, protocol < 3):
    /// the stream holds the UTF-8 of that str.
    pub latin1_text: bool,
    /// Index of the pickle in the stream.
    pub pickle: usize,
    /// The bytes themselves, when short enough to be kept while analysing (a short latin-1
    /// str has no position kept).
    #[serde(skip)]
    pub inline: Option<Vec<u8>>,
}

impl PickleReport {
    /// No finding is a violation.
    pub fn is_safe(&self) -> bool {
        !self.findings.iter().any(Finding::is_violation)
    }

    /// The findings that are violations.
    pub fn violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_violation())
    }
}

/// Analyse a byte slice (zero-copy). The opcodes that make up the bulk of data pickles run
/// straight from the bytes ([`Analyzer::fast_forward`]); everything else goes through the decoder.
pub fn analyze_slice(data: &[u8], policy: &Policy, options: &Options) -> PickleReport {
    let mut machine = Analyzer::new(policy, options);
    machine.reserve_for(u64::try_from(data.len()).ok());
    let (decoder, _) = driver::drive(&mut machine, Decoder::from_slice(data), true, &mut driver::Plain);
    machine.finish(decoder.position())
}

/// Analyse a stream. With `Mode::FirstPickle` the reader is left just past the STOP.
pub fn analyze_reader<R: Read>(reader: R, policy: &Policy, options: &Options) -> PickleReport {
    // Imports are judged by the text of string constants: hold every payload that could be a
    // name, or a keep limit under `max_name_len` would make a stream's imports unresolvable
    // where the same bytes as a slice resolve.
    let mut stream = options.limits.stream;
    stream.keep_payload = stream.keep_payload.max(options.limits.max_name_len);
    run(Decoder::from_reader(reader, stream), policy, options)
}

/// Analyse what a decoder yields, whatever it reads from.
pub fn run<S: Source>(decoder: Decoder<S>, policy: &Policy, options: &Options) -> PickleReport {
    let mut machine = Analyzer::new(policy, options);
    // The general path only, even over a slice: `tests/fast_path.rs` holds the fast path to it.
    let (decoder, _) = driver::drive(&mut machine, decoder, false, &mut driver::Plain);
    machine.finish(decoder.position())
}

/// Whether analysis goes on after an opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Run the next opcode.
    Continue,
    /// Analysis is over (the first pickle ended under `Mode::FirstPickle`, or a limit).
    Stop,
}

/// One import table entry: what it names and whether the policy allows it.
#[derive(Debug, Clone)]
struct ImportEntry<'p> {
    target: Option<ImportName>,
    ext_code: Option<i64>,
    allowed: bool,
    /// How the policy lets it be used (`None` for an allowed EXT code: any use).
    roles: Option<&'p Roles>,
}

/// The stack machine, for callers that drive the decoder themselves (container readers that
/// must skip data embedded between opcodes).
pub struct Analyzer<'p> {
    policy: &'p Policy,
    limits: Limits,
    mode: Mode,
    detail: Detail,
    report: PickleReport,
    // Per-pickle state.
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Memo,
    protocol: u8,
    pickle_start: u64,
    pickle_opcodes: u64,
    frame_end: Option<u64>,
    /// The first break of this pickle has been reported.
    broken: bool,
    /// An unpickler reading this pickle keeps the memo of earlier ones (`Options::memo_inherited`,
    /// or a pickle after the first in a stream).
    memo_inherited: bool,
    /// This pickle imported or called anything (decides how a break after a pickle is judged).
    active: bool,
    persistent_noted: bool,
    buffers_noted: bool,
    /// Objects, dicts and lists this pickle made.
    tables: Tables<'p>,
    /// This pickle imported something: tuples keep their items (call arguments are checked).
    keep_tuples: bool,
    // Whole-stream state.
    table: Vec<ImportEntry<'p>>,
    /// module → name → index into `table`; two levels so a lookup needs no allocation.
    interned: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    opcodes: u64,
    stopped: bool,
    /// The worst severity among findings dropped over `max_findings`: a dropped violation must
    /// still make the report unsafe.
    dropped_severity: Option<Severity>,
    /// joblib array tracking, when a caller turned it on.
    joblib: Option<Box<joblib::Tracker>>,
    /// The value the last STOP returned.
    last_result: Option<Sym>,
    /// See `Options::stream_remaining`.
    stream_remaining: Option<u64>,
    legacy_storages: Option<Box<LegacyStorages>>,
}

impl<'p> Analyzer<'p> {
    /// Sizes the memo for an input of `len` bytes up front (an entry takes at least one byte of
    /// pickle, and most pickles memoize every few bytes), so that growing it does not copy it
    /// again and again.
    pub(crate) fn reserve_for(&mut self, len: Option<u64>) {
        let entries = len.map_or(0, |len| usize::try_from(len / 8).unwrap_or(usize::MAX));
        let entries = entries.min(MEMO_RESERVE_MAX);
        self.memo.dense.reserve(entries);
        self.memo.values.reserve(entries / 2);
    }

    /// A machine judging by `policy`, within `options`.
    pub fn new(policy: &'p Policy, options: &Options) -> Self {
        Analyzer {
            policy,
            limits: options.limits,
            mode: options.mode,
            detail: options.detail,
            report: PickleReport::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Memo::default(),
            protocol: 0,
            pickle_start: 0,
            pickle_opcodes: 0,
            frame_end: None,
            broken: false,
            memo_inherited: options.memo_inherited,
            stream_remaining: options.stream_remaining,
            legacy_storages: None,
            active: false,
            persistent_noted: false,
            buffers_noted: false,
            tables: Tables::default(),
            keep_tuples: false,
            table: Vec::new(),
            interned: HashMap::default(),
            opcodes: 0,
            stopped: false,
            dropped_severity: None,
            joblib: None,
            last_result: None,
        }
    }

    fn pickle_index(&self) -> usize {
        self.report.pickles.len()
    }

    fn finding(
        &mut self,
        kind: FindingKind,
        severity: Severity,
        offset: u64,
        import: Option<ImportName>,
        message: String,
    ) {
        if self.report.findings.len() >= self.limits.max_findings {
            self.report.findings_dropped += 1;
            self.dropped_severity = self.dropped_severity.max(Some(severity));
            return;
        }
        self.report.findings.push(Finding {
            kind,
            severity,
            offset,
            import,
            message,
        });
    }

    /// CPython raises here: report the first such point of the pickle, then go on leniently so
    /// that anything a differing reader might still run is analysed too.
    fn break_stream(&mut self, offset: u64, what: &str) {
        if self.broken {
            return;
        }
        self.broken = true;
        self.finding(
            FindingKind::MalformedPickle,
            Severity::High,
            offset,
            None,
            format!("the pickle breaks at offset {offset}: {what}; CPython has run every opcode before this point"),
        );
    }

    fn limit(&mut self, offset: u64, what: &str) -> Flow {
        // Listed even past `max_findings`: the report must say that analysis stopped, and where
        // (analysis ends here, so this adds at most one finding).
        if !self.stopped {
            self.report.findings.push(Finding {
                kind: FindingKind::LimitExceeded,
                severity: Severity::High,
                offset,
                import: None,
                message: format!(
                    "analysis stopped at offset {offset}: {what}; the rest of the stream was not analysed"
                ),
            });
        }
        self.stopped = true;
        Flow::Stop
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, value: Value) {
        self.stack.push(value);
    }

    fn pop(&mut self, offset: u64, opcode: Opcode) -> Value {
        if self.stack.len() <= self.fence() {
            self.break_stream(
                offset,
                &format!("{} pops from an empty stack (stack underflow)", opcode.name()),
            );
            return Value::Unknown;
        }
        self.stack.pop().unwrap_or(Value::Unknown)
    }

    fn top(&mut self, offset: u64, opcode: Opcode) -> Value {
        if self.stack.len() <= self.fence() {
            self.break_stream(
                offset,
                &format!("{} needs a value on the stack (stack underflow)", opcode.name()),
            );
            return Value::Unknown;
        }
        self.stack.last().cloned().unwrap_or(Value::Unknown)
    }

    /// Pops a mark and the values above it.
    fn pop_mark(&mut self, offset: u64, opcode: Opcode) -> Vec<Value> {
        match self.marks.pop() {
            Some(mark) => self.stack.split_off(mark.min(self.stack.len())),
            None => {
                self.break_stream(offset, &format!("{} finds no MARK", opcode.name()));
                Vec::new()
            }
        }
    }

    /// The object that APPENDS/SETITEMS/ADDITEMS update: the value just below the popped mark.
    fn mark_target(&mut self, offset: u64, opcode: Opcode) -> (Value, Vec<Value>) {
        let had_mark = !self.marks.is_empty();
        let items = self.pop_mark(offset, opcode);
        if !had_mark {
            return (Value::Unknown, items);
        }
        match self.stack.last() {
            Some(target) => (target.clone(), items),
            None => {
                self.break_stream(
                    offset,
                    &format!("{} has nothing to add to (stack underflow)", opcode.name()),
                );
                (Value::Unknown, items)
            }
        }
    }

    fn sym(&self, value: &Value) -> Sym {
        match value {
            Value::Name(_) | Value::ShortName(_) => match value.as_name() {
                Some(text) => Sym::Str(text.to_owned()),
                None => Sym::Other("str"),
            },
            Value::Int(i) => Sym::Int(*i),
            Value::Import(index) => match self.import_name(*index) {
                Some(name) => Sym::Import(name),
                None => Sym::Other("extension-code import"),
            },
            Value::Tuple(items, _) => Sym::Tuple(items.iter().map(|v| self.sym(v)).collect()),
            Value::EmptyTuple => Sym::Tuple(Vec::new()),
            other => Sym::Other(other.what()),
        }
    }

    /// Decodes and runs one opcode; `Flow::Stop` once analysis is over.
    pub fn advance<S: Source>(&mut self, decoder: &mut Decoder<S>) -> Flow {
        let position = decoder.position();
        match decoder.next_op() {
            Ok(Some(op)) => self.step(&op),
            Ok(None) => {
                self.end_of_input(position);
                Flow::Stop
            }
            Err(error) => {
                self.decode_error(&error);
                Flow::Stop
            }
        }
    }

    /// Runs one decoded opcode: the counts and framing checks every opcode gets, then its
    /// handler (one per opcode family, as `_pickle.c`'s `load()` dispatches), then the stack
    /// bound. `Flow::Stop` once analysis is over.
    pub fn step(&mut self, op: &Op<'_>) -> Flow {
        self.opcodes += 1;
        self.pickle_opcodes += 1;
        if self.opcodes > self.limits.max_opcodes {
            return self.limit(
                op.offset,
                &format!("more than {} opcodes", self.limits.max_opcodes),
            );
        }
        if self.pickle_opcodes == 1 {
            self.pickle_start = op.offset;
            if self.report.pickles.len() >= self.limits.max_pickles {
                return self.limit(
                    op.offset,
                    &format!("more than {} pickles in one stream", self.limits.max_pickles),
                );
            }
        }
        self.check_framing(op);
        let offset = op.offset;
        let flow = match op.opcode {
            Opcode::Proto => self.load_proto(op),
            Opcode::Frame => self.load_frame(op),
            // STOP ends the pickle: what follows belongs to the next one.
            Opcode::Stop => return self.load_stop(op),
            Opcode::Int | Opcode::BinInt | Opcode::BinInt1 | Opcode::BinInt2 => self.load_int(op),
            Opcode::Long | Opcode::Long1 | Opcode::Long4 => self.load_long(op),
            Opcode::Float | Opcode::BinFloat => self.load_float(op),
            Opcode::String | Opcode::BinString | Opcode::ShortBinString => self.load_string(op),
            Opcode::BinBytes | Opcode::ShortBinBytes | Opcode::BinBytes8 | Opcode::ByteArray8 => {
                self.load_bytes(op)
            }
            Opcode::Unicode | Opcode::ShortBinUnicode | Opcode::BinUnicode | Opcode::BinUnicode8 => {
                self.load_unicode(op)
            }
            Opcode::NextBuffer => self.load_next_buffer(offset),
            Opcode::ReadonlyBuffer => self.load_readonly_buffer(op),
            Opcode::None => self.load_value(Value::None),
            Opcode::NewTrue => self.load_value(Value::Bool(true)),
            Opcode::NewFalse => self.load_value(Value::Bool(false)),
            Opcode::EmptyList => self.load_empty_list(offset),
            Opcode::EmptyDict => self.load_empty_dict(offset),
            Opcode::EmptySet => self.load_value(Value::Set),
            Opcode::EmptyTuple => self.load_value(Value::EmptyTuple),
            Opcode::Append => self.load_append(op),
            Opcode::SetItem => self.load_setitem(op),
            Opcode::Appends | Opcode::SetItems | Opcode::AddItems => self.load_add_items(op),
            Opcode::List => self.load_list(op),
            Opcode::Dict => self.load_dict(op),
            Opcode::FrozenSet => self.load_frozenset(op),
            Opcode::Tuple => self.load_tuple(op),
            Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3 => self.load_small_tuple(op),
            Opcode::Pop => self.load_pop(op),
            Opcode::PopMark => self.load_pop_mark(op),
            Opcode::Dup => self.load_dup(op),
            Opcode::Mark => self.load_mark(offset),
            Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => self.load_get(op),
            Opcode::Put | Opcode::BinPut | Opcode::LongBinPut => self.load_put(op),
            Opcode::Memoize => self.load_memoize(op),
            Opcode::Ext1 | Opcode::Ext2 | Opcode::Ext4 => self.load_ext(op),
            Opcode::Global | Opcode::Inst => self.load_global(op),
            Opcode::StackGlobal => self.load_stack_global(op),
            Opcode::Reduce => self.load_reduce(op),
            Opcode::NewObj => self.load_newobj(op),
            Opcode::NewObjEx => self.load_newobj_ex(op),
            Opcode::Obj => self.load_obj(op),
            Opcode::Build => self.load_build(op),
            Opcode::PersId => self.load_persid(op),
            Opcode::BinPersId => self.load_binpersid(op),
        };
        if flow == Flow::Stop {
            // A limit hit by the handler (marks, memo): analysis ends there.
            return Flow::Stop;
        }
        if self.stack.len() > self.limits.max_stack {
            return self.limit(
                offset,
                &format!("the stack holds more than {} values", self.limits.max_stack),
            );
        }
        if self.stopped {
            // A limit hit inside an opcode's handling (the import table's).
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// The value the last completed pickle returned (what its STOP popped), as far as kept.
    pub fn last_result(&self) -> Option<&Sym> {
        self.last_result.as_ref()
    }

    /// The report, once the driver has stopped after `consumed` bytes.
    pub fn finish(mut self, consumed: u64) -> PickleReport {
        if self.report.findings_dropped > 0 {
            let dropped = self.report.findings_dropped;
            let severity = self.dropped_severity.unwrap_or(Severity::Info);
            let what = if severity.is_violation() {
                ", violations among them"
            } else {
                ""
            };
            self.report.findings.push(Finding {
                kind: FindingKind::LimitExceeded,
                severity,
                offset: 0,
                import: None,
                message: format!("{dropped} more findings are not listed{what}"),
            });
        }
        let _ = self.stopped;
        self.report.consumed = consumed;
        self.report
    }
}
