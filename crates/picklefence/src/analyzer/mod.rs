//! The symbolic stack machine: runs a pickle's opcodes over stand-in values, the way CPython's
//! `_pickle.c` would run them, and records every import, call, persistent id and violation.
//!
//! This file holds the machine's state ([`Analyzer`]), its primitives (stack, marks, findings,
//! limits), the report types and the entry points. Each area is an `impl Analyzer` block of its
//! own file: the value model and the memo, the opcode handlers by family, the fast path.

use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use crate::decoder::{Arg, Decoder, Op, Source};
use crate::findings::{Finding, FindingKind, ImportName, Severity};
use crate::opcodes::Opcode;
use crate::policy::{Policy, Roles};

mod calls;
mod fast_path;
mod framing;
pub(crate) mod joblib;
mod memo;
mod options;
mod persistent;
mod roles;
mod value;

pub use joblib::ArrayRead;
use joblib::CallArgs;
use memo::Memo;
pub use options::{Detail, Limits, Mode, Options};
pub use persistent::element_size;
use persistent::LegacyStorages;
use roles::Tables;
use value::{decimal_int, le_signed, ShortName, Value};
// The role checks and the joblib tracker reach these through `super::`.
use value::{TupleMeta, KEPT_TUPLE_DEPTH, KEPT_TUPLE_LEN};

/// Memo entries reserved at most before a pickle is read (64 KiB of keys).
const MEMO_RESERVE_MAX: usize = 1 << 14;

/// One import as the unpickler would perform it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    pub offset: u64,
    pub opcode: &'static str,
    /// What would be imported (after Python 2 name mapping). `None` when unresolvable or an EXT code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<ImportName>,
    /// The names as written, when Python 2 mapping changed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_as: Option<ImportName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_code: Option<i64>,
    pub allowed: bool,
    /// Index of the pickle in the stream.
    pub pickle: usize,
}

/// What a call site calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Callee {
    Import {
        target: ImportName,
    },
    ExtCode {
        code: i64,
    },
    /// The result of an earlier call (made at `offset`).
    CallResult {
        offset: u64,
    },
    Unresolved,
    Other {
        what: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSite {
    pub offset: u64,
    pub opcode: &'static str,
    pub callee: Callee,
    pub pickle: usize,
}

/// A bounded, plain-data picture of a stand-in value (persistent ids are shown this way).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Sym {
    Str(String),
    Int(i64),
    Import(ImportName),
    Tuple(Vec<Sym>),
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersistentId {
    pub offset: u64,
    pub pickle: usize,
    pub value: Sym,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PickleInfo {
    pub start: u64,
    /// Offset just past its STOP; `None` if the stream ended or broke first.
    pub end: Option<u64>,
    /// The last PROTO seen (0 when there was none).
    pub protocol: u8,
    pub opcodes: u64,
}

/// Everything analysis learned about one byte stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PickleReport {
    pub pickles: Vec<PickleInfo>,
    pub imports: Vec<Import>,
    pub calls: Vec<CallSite>,
    pub persistent_ids: Vec<PersistentId>,
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
}

/// A file nested in a bytes constant of the pickle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NestedFile {
    /// The call that loads it.
    pub offset: u64,
    /// Where its bytes lie in the stream (`u64::MAX`: not known).
    pub at: u64,
    pub len: u64,
    /// The bytes are written as a latin-1 str (`_codecs.encode(str, 'latin1')`, protocol < 3):
    /// the stream holds the UTF-8 of that str.
    pub latin1_text: bool,
    pub pickle: usize,
    /// The bytes themselves, when short enough to be kept while analysing (a short latin-1
    /// str has no position kept).
    #[serde(skip)]
    pub inline: Option<Vec<u8>>,
}

impl PickleReport {
    pub fn is_safe(&self) -> bool {
        !self.findings.iter().any(Finding::is_violation)
    }

    pub fn violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_violation())
    }
}

/// Analyse a byte slice (zero-copy). The opcodes that make up the bulk of data pickles run
/// straight from the bytes ([`Analyzer::fast_forward`]); everything else goes through the decoder.
pub fn analyze_slice(data: &[u8], policy: &Policy, options: &Options) -> PickleReport {
    let mut machine = Analyzer::new(policy, options);
    machine.reserve_for(u64::try_from(data.len()).ok());
    let mut decoder = Decoder::from_slice(data);
    loop {
        let at = usize::try_from(decoder.position()).unwrap_or(usize::MAX);
        let resumed = machine.fast_forward(data, at);
        if resumed != at {
            decoder.source_mut().skip_to(resumed);
        }
        if machine.advance(&mut decoder) == Flow::Stop {
            break;
        }
    }
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
pub fn run<S: Source>(mut decoder: Decoder<S>, policy: &Policy, options: &Options) -> PickleReport {
    let mut machine = Analyzer::new(policy, options);
    while machine.advance(&mut decoder) == Flow::Continue {}
    machine.finish(decoder.position())
}
/// Whether analysis goes on after an opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
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

    fn name_value(&self, payload_text: Option<&[u8]>) -> Value {
        match payload_text {
            Some(bytes) if bytes.len() <= self.limits.max_name_len => match std::str::from_utf8(bytes) {
                Ok(text) => self.name_of(text),
                Err(_) => Value::Text,
            },
            _ => Value::Text,
        }
    }

    /// The stand-in for a str constant: a name unless it is too long to be one.
    fn name_of(&self, text: &str) -> Value {
        if text.len() > self.limits.max_name_len {
            Value::Text
        } else if let Some(short) = ShortName::new(text) {
            Value::ShortName(short)
        } else {
            Value::Name(Rc::from(text))
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
        let opcode = op.opcode;
        match opcode {
            Opcode::Proto => {
                let version = op.arg.as_index().unwrap_or(-1);
                match u8::try_from(version) {
                    Ok(v) if v <= Opcode::HIGHEST_PROTOCOL => self.protocol = v,
                    _ => {
                        self.break_stream(offset, &format!("unsupported pickle protocol {version}"));
                        self.protocol = Opcode::HIGHEST_PROTOCOL;
                    }
                }
            }
            Opcode::Frame => {
                if let Arg::U64(len) = op.arg {
                    self.frame_end = Some(op.end().saturating_add(len));
                }
            }
            Opcode::Stop => {
                let value = self.pop(offset, opcode);
                self.store(offset, &value, None);
                self.last_result = Some(self.sym(&value));
                return self.end_pickle(op.end());
            }
            Opcode::Int | Opcode::BinInt | Opcode::BinInt1 | Opcode::BinInt2 => {
                let value = match &op.arg {
                    Arg::Int(v) => Value::Int(*v),
                    Arg::Bool(b) => Value::Bool(*b),
                    Arg::Decimal(text) => decimal_int(text),
                    _ => Value::Long(0),
                };
                self.push(value);
            }
            Opcode::Long | Opcode::Long1 | Opcode::Long4 => {
                let value = match &op.arg {
                    Arg::Decimal(text) => decimal_int(text.strip_suffix(b"L").unwrap_or(text)),
                    Arg::Long(payload) => match payload.bytes() {
                        Some(bytes) => le_signed(bytes).map_or(Value::Long(payload.len), Value::Int),
                        None => Value::Long(payload.len),
                    },
                    _ => Value::Long(0),
                };
                self.push(value);
            }
            Opcode::Float | Opcode::BinFloat => {
                let value = match &op.arg {
                    Arg::Float(v) => *v,
                    Arg::FloatText(text) => std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(f64::NAN),
                    _ => f64::NAN,
                };
                self.push(Value::Float(value));
            }
            Opcode::String | Opcode::BinString | Opcode::ShortBinString => {
                let value = match &op.arg {
                    Arg::BadStr(_) => {
                        self.break_stream(
                            offset,
                            "the STRING argument is not a quoted, validly escaped string",
                        );
                        Value::Unknown
                    }
                    // Python 2 str: ASCII reads the same under every `encoding=`, so it can be
                    // a name (a special key in a state written by Python 2 is still one).
                    Arg::Str(payload) => match payload.bytes() {
                        Some(bytes) if bytes.is_ascii() => self.name_value(Some(bytes)),
                        _ => Value::Text,
                    },
                    _ => Value::Text,
                };
                self.push(value);
            }
            Opcode::BinBytes | Opcode::ShortBinBytes | Opcode::BinBytes8 | Opcode::ByteArray8 => {
                let len = match &op.arg {
                    Arg::Bytes(payload) => payload.len,
                    _ => 0,
                };
                self.push(Value::Bytes {
                    at: op.end().saturating_sub(len),
                    len,
                })
            }
            Opcode::Unicode | Opcode::ShortBinUnicode | Opcode::BinUnicode | Opcode::BinUnicode8 => {
                let value = match &op.arg {
                    Arg::Unicode(payload) => match self.name_value(payload.bytes()) {
                        // A long str keeps where it lies (the latin-1 text of nested bytes).
                        Value::Text if opcode != Opcode::Unicode => Value::TextAt {
                            at: op.end().saturating_sub(payload.len),
                            len: payload.len,
                        },
                        value => value,
                    },
                    _ => {
                        self.break_stream(offset, "the string is not valid UTF-8");
                        Value::Unknown
                    }
                };
                self.push(value);
            }
            Opcode::NextBuffer => {
                if !self.buffers_noted {
                    self.buffers_noted = true;
                    self.finding(
                        FindingKind::OutOfBandBuffer,
                        Severity::Info,
                        offset,
                        None,
                        "the pickle takes out-of-band buffers (protocol 5); they come from the loader, not the file".into(),
                    );
                }
                self.push(Value::Buffer);
            }
            Opcode::ReadonlyBuffer => {
                let value = self.pop(offset, opcode);
                self.push(value);
            }
            Opcode::None => self.push(Value::None),
            Opcode::NewTrue => self.push(Value::Bool(true)),
            Opcode::NewFalse => self.push(Value::Bool(false)),
            Opcode::EmptyList => {
                let value = self.new_list(offset);
                self.push(value);
            }
            Opcode::EmptyDict => {
                let value = self.new_dict(offset, &[]);
                self.push(value);
            }
            Opcode::EmptySet => self.push(Value::Set),
            Opcode::EmptyTuple => self.push(Value::EmptyTuple),
            Opcode::Append => {
                let value = self.pop(offset, opcode);
                let target = self.top(offset, opcode);
                self.add_items(offset, opcode, &target, std::slice::from_ref(&value));
            }
            Opcode::SetItem => {
                let value = self.pop(offset, opcode);
                let key = self.pop(offset, opcode);
                let target = self.top(offset, opcode);
                self.add_items(offset, opcode, &target, &[key, value]);
            }
            Opcode::Appends | Opcode::SetItems | Opcode::AddItems => {
                let (target, items) = self.mark_target(offset, opcode);
                if opcode == Opcode::SetItems && !items.len().is_multiple_of(2) {
                    self.break_stream(offset, "SETITEMS has an odd number of items");
                }
                self.add_items(offset, opcode, &target, &items);
            }
            Opcode::List => {
                let items = self.pop_mark(offset, opcode);
                let list = self.new_list(offset);
                self.add_items(offset, Opcode::Appends, &list, &items);
                self.push(list);
            }
            Opcode::Dict => {
                let items = self.pop_mark(offset, opcode);
                if !items.len().is_multiple_of(2) {
                    self.break_stream(offset, "DICT has an odd number of items");
                }
                let dict = self.new_dict(offset, &[]);
                self.add_items(offset, Opcode::SetItems, &dict, &items);
                self.push(dict);
            }
            Opcode::FrozenSet => {
                let items = self.pop_mark(offset, opcode);
                for item in &items {
                    self.store(offset, item, None);
                }
                self.push(Value::FrozenSet);
            }
            Opcode::Tuple => {
                let items = self.pop_mark(offset, opcode);
                let value = self.make_tuple(offset, items);
                self.push(value);
            }
            Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3 => {
                let n = match opcode {
                    Opcode::Tuple1 => 1,
                    Opcode::Tuple2 => 2,
                    _ => 3,
                };
                let mut items: Vec<Value> = (0..n).map(|_| self.pop(offset, opcode)).collect();
                items.reverse();
                let value = self.make_tuple(offset, items);
                self.push(value);
            }
            Opcode::Pop => {
                // `load_pop` takes a mark off when one sits on top of the stack.
                if self.marks.last() == Some(&self.stack.len()) && !self.marks.is_empty() {
                    self.marks.pop();
                } else {
                    self.pop(offset, opcode);
                }
            }
            Opcode::PopMark => {
                self.pop_mark(offset, opcode);
            }
            Opcode::Dup => {
                let value = self.top(offset, opcode);
                self.push(value);
            }
            Opcode::Mark => {
                if self.marks.len() >= self.limits.max_marks {
                    return self.limit(offset, &format!("more than {} open MARKs", self.limits.max_marks));
                }
                self.marks.push(self.stack.len());
            }
            Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => {
                let value = match self.memo_key(op) {
                    Some(key) => match self.memo.get(&key) {
                        Some(value) => value.clone(),
                        None if self.memo_inherited => {
                            self.finding(
                                FindingKind::EarlierMemo,
                                Severity::Critical,
                                offset,
                                None,
                                format!(
                                    "{} at offset {offset} reads memo key {key}, which this pickle never stored: an \
                                     unpickler that loaded before keeps its memo, so it is an object of an earlier \
                                     pickle, whose use here cannot be checked",
                                    opcode.name()
                                ),
                            );
                            Value::Unknown
                        }
                        None => {
                            self.break_stream(offset, &format!("memo key {key} was never stored"));
                            Value::Unknown
                        }
                    },
                    None => Value::Unknown,
                };
                self.push(value);
            }
            Opcode::Put | Opcode::BinPut | Opcode::LongBinPut => {
                let value = self.top(offset, opcode);
                if let Some(key) = self.memo_key(op) {
                    self.check_memo_index(offset, opcode, key);
                    if self.memo_put(offset, key, value) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
            }
            Opcode::Memoize => {
                let value = self.top(offset, opcode);
                let key = i64::try_from(self.memo.len()).unwrap_or(i64::MAX);
                if self.memo_put(offset, key, value) == Flow::Stop {
                    return Flow::Stop;
                }
            }
            Opcode::Ext1 | Opcode::Ext2 | Opcode::Ext4 => {
                let code = op.arg.as_index().unwrap_or(0);
                let value = self.ext_import(offset, opcode, code);
                self.push(value);
            }
            Opcode::Global | Opcode::Inst => {
                let value = match &op.arg {
                    Arg::Pair(module, name) => match (std::str::from_utf8(module), std::str::from_utf8(name))
                    {
                        (Ok(module), Ok(name)) => self.import(offset, opcode, module, name),
                        _ => {
                            self.unresolvable(offset, opcode, "the module or name is not valid UTF-8".into())
                        }
                    },
                    _ => Value::Unknown,
                };
                if opcode == Opcode::Inst {
                    let items = self.pop_mark(offset, opcode);
                    let result = self.call(offset, opcode, &value, CallArgs::Items(&items), None);
                    self.push(result);
                } else {
                    self.push(value);
                }
            }
            Opcode::StackGlobal => {
                let name = self.pop(offset, opcode);
                let module = self.pop(offset, opcode);
                let value = match (module.as_name(), name.as_name()) {
                    (Some(module), Some(name)) => self.import(offset, opcode, module, name),
                    _ => self.unresolvable(
                        offset,
                        opcode,
                        format!(
                            "its operands are a {} and a {}, not two str constants",
                            module.what(),
                            name.what()
                        ),
                    ),
                };
                self.push(value);
            }
            Opcode::Reduce => {
                let args = self.pop(offset, opcode);
                let callable = self.pop(offset, opcode);
                let result = self.call(offset, opcode, &callable, CallArgs::Reduce(&args), None);
                self.push(result);
            }
            Opcode::NewObj => {
                let args = self.pop(offset, opcode);
                let class = self.pop(offset, opcode);
                let result = self.call(offset, opcode, &class, CallArgs::New(&args), None);
                self.push(result);
            }
            Opcode::NewObjEx => {
                let kwargs = self.pop(offset, opcode);
                let args = self.pop(offset, opcode);
                let class = self.pop(offset, opcode);
                let result = self.call(offset, opcode, &class, CallArgs::New(&args), Some(&kwargs));
                self.push(result);
            }
            Opcode::Obj => {
                let items = self.pop_mark(offset, opcode);
                let class = match items.first() {
                    Some(class) => class.clone(),
                    None => {
                        self.break_stream(offset, "OBJ has no class after its MARK");
                        Value::Unknown
                    }
                };
                let args = items.get(1..).unwrap_or_default();
                let result = self.call(offset, opcode, &class, CallArgs::Items(args), None);
                self.push(result);
            }
            Opcode::Build => {
                let state = self.pop(offset, opcode);
                let target = self.top(offset, opcode);
                self.store(offset, &state, None);
                self.build_op(offset, &target, &state);
                self.track_build(&target, &state);
            }
            Opcode::PersId => {
                let pid = match &op.arg {
                    Arg::Line(line) if line.is_ascii() => self.name_value(Some(line)),
                    _ => {
                        self.break_stream(offset, "the PERSID argument is not ASCII");
                        Value::Unknown
                    }
                };
                self.persistent(offset, &pid);
            }
            Opcode::BinPersId => {
                let pid_value = self.pop(offset, opcode);
                self.persistent(offset, &pid_value);
                // Legacy torch saves name a module's class as `('module', cls, file, source)`
                // and its `persistent_load` returns `cls`: the object is that (checked) import.
                if let Value::Tuple(items, _) = &pid_value {
                    if let (Some(tag), Some(Value::Import(class))) =
                        (items.first().and_then(Value::as_name), items.get(1))
                    {
                        if tag == "module" {
                            if let Some(top) = self.stack.last_mut() {
                                *top = Value::Import(*class);
                            }
                        }
                    }
                }
            }
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
