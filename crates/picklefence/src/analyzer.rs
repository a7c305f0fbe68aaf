//! The symbolic stack machine: runs a pickle's opcodes over stand-in values, the way CPython's
//! `_pickle.c` would run them, and records every import, call, persistent id and violation.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use crate::compat::map_python2_import;
use crate::decoder::{Arg, Decoder, Op, Source, StreamLimits};
use crate::error::DecodeError;
use crate::findings::{Finding, FindingKind, ImportName, Severity};
use crate::opcodes::Opcode;
use crate::policy::{danger_reason, Policy, Roles};

pub(crate) mod joblib;
mod roles;
pub use joblib::ArrayRead;
use joblib::CallArgs;
use roles::Tables;

/// Bounds on analysis. Hitting one ends analysis with a `LimitExceeded` violation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_stack: usize,
    pub max_marks: usize,
    pub max_memo: usize,
    pub max_opcodes: u64,
    /// Longer strings are not kept; used as a name they make the import unresolvable.
    pub max_name_len: usize,
    /// Import and call occurrences recorded in the report (all are still checked). Also the
    /// number of distinct imports analysis keeps track of: more ends analysis (a limit finding),
    /// since the table of imports would otherwise grow with the input.
    pub max_records: usize,
    pub max_findings: usize,
    pub max_pickles: usize,
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

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub limits: Limits,
    pub mode: Mode,
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

/// Bytes per element of a storage class.
pub fn element_size(storage: &str) -> Option<u64> {
    Some(match storage {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage"
        | "QUInt4x2Storage" | "QUInt2x4Storage" | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// The distinct storages the legacy torch persistent ids of a stream declare, and their bytes.
#[derive(Debug, Default)]
struct LegacyStorages {
    keys: HashSet<Box<str>>,
    bytes: u64,
    reported: bool,
}

/// Distinct legacy storage keys counted; past it every new key is taken as unbounded.
const MAX_LEGACY_STORAGES: usize = 1 << 16;
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

/// A stand-in for what CPython would have on its stack.
#[derive(Debug, Clone)]
enum Value {
    /// A str constant usable as a module or attribute name.
    Name(Rc<str>),
    /// The same, short enough to live in the value itself: a dataset's million strings cost no
    /// allocation.
    ShortName(ShortName),
    /// Any other text: Python 2 `str` (its meaning depends on the unpickler's encoding),
    /// too long, or holding surrogates.
    Text,
    /// A str constant too long to be a name: where its UTF-8 payload lies in the stream.
    TextAt {
        at: u64,
        len: u64,
    },
    /// A bytes constant: where its payload starts in the stream, and its length.
    Bytes {
        at: u64,
        len: u64,
    },
    Int(i64),
    /// An int too large for `i64`: its two's-complement size in bytes.
    Long(u64),
    Float(f64),
    Bool(bool),
    None,
    /// A list / dict the pickle made; index into the machine's list / dict table.
    List(u32),
    Dict(u32),
    Set,
    FrozenSet,
    Buffer,
    Tuple(Rc<[Value]>, TupleMeta),
    EmptyTuple,
    /// A tuple of plain constants, kept as a count only (datasets of tuples cost nothing).
    OpaqueTuple,
    /// An imported object; index into the machine's import table.
    Import(u32),
    /// What a call or a reconstruction returned; index into the machine's object table.
    Obj(u32),
    Persistent,
    /// A persistent id that names a torch storage of `numel` elements.
    Storage(u64),
    /// What is left after CPython would already have raised.
    Unknown,
}

/// What a kept tuple holds, computed once when it is made.
#[derive(Debug, Clone, Copy)]
struct TupleMeta {
    depth: u8,
    /// Every import inside (at any depth) may be stored as a plain value.
    storable: bool,
}

/// A str of at most `ShortName::CAPACITY` bytes, stored inline; `Value` stays 24 bytes.
#[derive(Debug, Clone, Copy)]
struct ShortName {
    len: u8,
    bytes: [u8; ShortName::CAPACITY],
}

impl ShortName {
    const CAPACITY: usize = 22;

    fn new(text: &str) -> Option<ShortName> {
        let mut bytes = [0; ShortName::CAPACITY];
        bytes.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
        Some(ShortName {
            len: u8::try_from(text.len()).ok()?,
            bytes,
        })
    }

    /// UTF-8, as it was built from a `&str`.
    fn as_bytes(&self) -> &[u8] {
        let len = usize::from(self.len).min(ShortName::CAPACITY);
        self.bytes.get(..len).unwrap_or_default()
    }
}

const _: () = assert!(std::mem::size_of::<Value>() == 24);

/// Tuples keep their items only when small and shallow: call arguments, shapes, persistent
/// ids. Larger ones are opaque; one holding an import that may not be stored is refused when
/// it is made.
const KEPT_TUPLE_LEN: usize = 256;
const KEPT_TUPLE_DEPTH: u8 = 8;

impl Value {
    fn what(&self) -> &'static str {
        match self {
            Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } => "str",
            Value::Bytes { .. } => "bytes",
            Value::Int(_) | Value::Long(_) => "int",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::None => "None",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set => "set",
            Value::FrozenSet => "frozenset",
            Value::Buffer => "buffer",
            Value::Tuple(..) | Value::EmptyTuple | Value::OpaqueTuple => "tuple",
            Value::Import(_) => "import",
            Value::Obj(_) => "call result",
            Value::Persistent | Value::Storage(_) => "persistent object",
            Value::Unknown => "unknown",
        }
    }

    /// The text of a str constant that can be a name.
    fn as_name(&self) -> Option<&str> {
        match self {
            Value::Name(text) => Some(text),
            Value::ShortName(text) => std::str::from_utf8(text.as_bytes()).ok(),
            _ => None,
        }
    }

    /// The same as bytes, for comparisons that need no `&str`.
    fn name_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Name(text) => Some(text.as_bytes()),
            Value::ShortName(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    fn depth(&self) -> u8 {
        match self {
            Value::Tuple(_, meta) => meta.depth,
            _ => 0,
        }
    }

    /// Plain constants: a tuple of only these may stay opaque.
    fn is_scalar(&self) -> bool {
        matches!(
            self,
            Value::Name(_)
                | Value::ShortName(_)
                | Value::Text
                | Value::TextAt { .. }
                | Value::Int(_)
                | Value::Long(_)
                | Value::Float(_)
                | Value::Bool(_)
                | Value::None
                | Value::EmptyTuple
                | Value::OpaqueTuple
        )
    }
}

/// The values without a payload, stored once each at the start of `Memo::values`.
const PLAIN_VALUES: [Value; 11] = [
    Value::Text,
    Value::Bool(false),
    Value::Bool(true),
    Value::None,
    Value::Set,
    Value::FrozenSet,
    Value::Buffer,
    Value::OpaqueTuple,
    Value::Persistent,
    Value::Unknown,
    Value::EmptyTuple,
];

/// Where `Value::OpaqueTuple` is in `PLAIN_VALUES`.
const OPAQUE_TUPLE_SLOT: u32 = match plain_index(&Value::OpaqueTuple) {
    Some(slot) => slot,
    None => panic!("OpaqueTuple is a plain value"),
};

#[inline]
const fn plain_index(value: &Value) -> Option<u32> {
    let index = match value {
        Value::Text => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::None => 3,
        Value::Set => 4,
        Value::FrozenSet => 5,
        Value::Buffer => 6,
        Value::OpaqueTuple => 7,
        Value::Persistent => 8,
        Value::Unknown => 9,
        Value::EmptyTuple => 10,
        _ => return None,
    };
    Some(index)
}

#[cfg(test)]
#[test]
fn plain_values_are_where_plain_index_says() {
    for (slot, value) in PLAIN_VALUES.iter().enumerate() {
        assert_eq!(plain_index(value), u32::try_from(slot).ok());
    }
    assert_eq!(plain_index(&Value::OpaqueTuple), Some(OPAQUE_TUPLE_SLOT));
}

/// The memo. Picklers number entries 0, 1, 2, ...: those keys live in a vector, any other key
/// in a map. The vector holds 4-byte indexes into `values`, where each value without a payload
/// is stored once: a list of a million containers or tuples memoizes a million of those, and
/// costs 4 MB and no per-entry drop. A key given a payload gets a slot of its own, which later
/// stores to that key reuse, so `values` never outgrows the keys. Keys below `dense.len()` are
/// never in `sparse`.
#[derive(Debug)]
struct Memo {
    dense: Vec<u32>,
    values: Vec<Value>,
    sparse: HashMap<i64, Value>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            dense: Vec::new(),
            values: PLAIN_VALUES.to_vec(),
            sparse: HashMap::new(),
        }
    }
}

impl Memo {
    fn len(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    fn get(&self, key: &i64) -> Option<&Value> {
        match usize::try_from(*key) {
            Ok(i) if i < self.dense.len() => {
                self.dense.get(i).and_then(|&slot| self.values.get(slot as usize))
            }
            _ if self.sparse.is_empty() => None,
            _ => self.sparse.get(key),
        }
    }

    fn contains_key(&self, key: &i64) -> bool {
        self.get(key).is_some()
    }

    /// Appends the entry for key `dense.len()`; gives the value back when `values` is full.
    #[inline]
    fn push_dense(&mut self, value: Value) -> Result<(), Value> {
        let slot = match plain_index(&value) {
            Some(slot) => slot,
            None => {
                let Ok(slot) = u32::try_from(self.values.len()) else {
                    return Err(value);
                };
                self.values.push(value);
                slot
            }
        };
        self.dense.push(slot);
        Ok(())
    }

    fn insert(&mut self, key: i64, value: Value) {
        match usize::try_from(key) {
            Ok(i) if i < self.dense.len() => {
                let Some(slot) = self.dense.get_mut(i) else { return };
                if (*slot as usize) >= PLAIN_VALUES.len() {
                    if let Some(owned) = self.values.get_mut(*slot as usize) {
                        *owned = value;
                    }
                } else if let Some(plain) = plain_index(&value) {
                    *slot = plain;
                } else if let Ok(owned) = u32::try_from(self.values.len()) {
                    *slot = owned;
                    self.values.push(value);
                }
            }
            Ok(i) if i == self.dense.len() => {
                if !self.sparse.is_empty() {
                    self.sparse.remove(&key);
                }
                if let Err(value) = self.push_dense(value) {
                    self.sparse.insert(key, value);
                }
            }
            _ => {
                self.sparse.insert(key, value);
            }
        }
    }

    /// Drops the dense entries from key `len` on (they were all appended after it).
    fn truncate_dense(&mut self, len: usize) {
        let first_owned = self.dense.get(len..).and_then(|tail| {
            tail.iter()
                .copied()
                .find(|&slot| slot as usize >= PLAIN_VALUES.len())
        });
        if let Some(first_owned) = first_owned {
            self.values.truncate(first_owned as usize);
        }
        self.dense.truncate(len);
    }

    fn clear(&mut self) {
        self.dense.clear();
        self.values.truncate(PLAIN_VALUES.len());
        self.sparse.clear();
    }
}

/// A memo key so far past the entries written that CPython's memo array would take over a
/// gigabyte for it (`_Unpickler_MemoPut` resizes to twice the key, 8 bytes a slot).
fn sparse_memo_index(key: i64, entries: usize) -> bool {
    const HUGE: i64 = 1 << 26;
    key >= HUGE && key > i64::try_from(entries).unwrap_or(i64::MAX).saturating_mul(2)
}

/// An INT or LONG written in decimal: its value, or its size when it does not fit `i64`.
fn decimal_int(text: &[u8]) -> Value {
    match crate::text::parse_python_int(text, 0) {
        Some(v) => Value::Int(v),
        None => Value::Long((text.len() as u64).div_ceil(2)),
    }
}

/// A LONG1/LONG4 payload (little-endian two's complement) that fits `i64`.
fn le_signed(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xff; 8] } else { [0; 8] };
    buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

/// The `n`-byte little-endian number at `at`.
fn le_at(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Where the frame of a FRAME opcode at `pos` ends, if the decoder reads that FRAME without
/// error (its length is in range and the frame is all there).
fn frame_opened_at(data: &[u8], pos: usize) -> Option<usize> {
    if data.get(pos) != Some(&0x95) {
        return None;
    }
    let declared = le_at(data, pos + 1, 8)?;
    let body = pos + 9;
    usize::try_from(declared)
        .ok()
        .filter(|&n| declared <= i64::MAX as u64 && n <= data.len().saturating_sub(body))
        .map(|n| body + n)
}

/// The stand-in a scalar or tuple opcode at `at` pushes (the run in `append_run` checked it).
fn scalar_value(data: &[u8], at: usize) -> Value {
    let arg = |n: usize| {
        data.get(at + 1..at + 1 + n)
            .map(|b| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            .unwrap_or(0)
    };
    match data.get(at) {
        Some(b'K') => Value::Int(arg(1) as i64),
        Some(b'M') => Value::Int(arg(2) as i64),
        Some(b'J') => Value::Int(i64::from(arg(4) as u32 as i32)),
        Some(b'G') => Value::Float(f64::from_bits(
            data.get(at + 1..at + 9)
                .map_or(0, |b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))),
        )),
        Some(b'N') => Value::None,
        Some(0x88) => Value::Bool(true),
        Some(0x89) => Value::Bool(false),
        _ => Value::OpaqueTuple,
    }
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

    fn import_name(&self, index: u32) -> Option<ImportName> {
        self.table.get(index as usize).and_then(|e| e.target.clone())
    }

    fn record_import(&mut self, import: Import) {
        self.active = true;
        if self.report.imports.len() >= self.limits.max_records {
            self.report.records_dropped += 1;
        } else {
            self.report.imports.push(import);
        }
    }

    fn record_call(&mut self, call: CallSite) {
        self.active = true;
        if self.detail == Detail::Verdict {
            return;
        }
        if self.report.calls.len() >= self.limits.max_records {
            self.report.records_dropped += 1;
        } else {
            self.report.calls.push(call);
        }
    }

    /// Checks and records an import of `module.name`, returning the stand-in to push.
    fn import(&mut self, offset: u64, opcode: Opcode, module: &str, name: &str) -> Value {
        let (mapped_module, mapped_name) = if self.protocol < 3 {
            map_python2_import(module, name)
        } else {
            (module.into(), name.into())
        };
        let written_as = (mapped_module != module || mapped_name != name).then(|| ImportName {
            module: module.into(),
            name: name.into(),
        });
        let known = self
            .interned
            .get(mapped_module.as_ref())
            .and_then(|names| names.get(mapped_name.as_ref()))
            .copied();
        let index = match known {
            Some(index) => index,
            None => {
                if self.table_full(offset) {
                    return Value::Unknown;
                }
                let index = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
                let target = ImportName {
                    module: mapped_module.as_ref().into(),
                    name: mapped_name.as_ref().into(),
                };
                let roles = self.policy.roles(&target.module, &target.name);
                let allowed = roles.is_some();
                if allowed {
                    self.note_native_state(offset, &target);
                }
                self.interned
                    .entry(target.module.clone())
                    .or_default()
                    .insert(target.name.clone(), index);
                self.table.push(ImportEntry {
                    target: Some(target),
                    ext_code: None,
                    allowed,
                    roles,
                });
                index
            }
        };
        self.keep_tuples = true;
        let (target, allowed) = match self.table.get(index as usize) {
            Some(ImportEntry {
                target: Some(target),
                allowed,
                ..
            }) => (target.clone(), *allowed),
            _ => return Value::Unknown,
        };
        if !allowed {
            let via = match &written_as {
                Some(raw) => format!(" (written as {raw})"),
                None => String::new(),
            };
            match danger_reason(&target.module, &target.name) {
                Some(reason) => self.finding(
                    FindingKind::DangerousImport,
                    Severity::Critical,
                    offset,
                    Some(target.clone()),
                    format!("{} imports {target}{via}, which {reason}", opcode.name()),
                ),
                None => self.finding(
                    FindingKind::DisallowedImport,
                    Severity::High,
                    offset,
                    Some(target.clone()),
                    format!(
                        "{} imports {target}{via}, which the policy does not allow",
                        opcode.name()
                    ),
                ),
            }
        }
        self.joblib_note_import(index, &target);
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: Some(target),
            written_as,
            ext_code: None,
            allowed,
            pickle: self.pickle_index(),
        });
        Value::Import(index)
    }

    /// An allowed class whose state its compiled code trusts: noted once per name and pickle.
    fn note_native_state(&mut self, offset: u64, target: &ImportName) {
        if let Some(checked) = crate::native_state::load_time_check(&target.module, &target.name) {
            self.finding(
                FindingKind::NativeState,
                Severity::Info,
                offset,
                Some(target.clone()),
                format!(
                    "{target} keeps state its compiled code trusts ({checked}); the scanner cannot read those \
                     arrays: the guard validates them when it loads the file"
                ),
            );
        }
    }

    fn unresolvable(&mut self, offset: u64, opcode: Opcode, why: String) -> Value {
        self.finding(
            FindingKind::UnresolvableImport,
            Severity::Critical,
            offset,
            None,
            format!(
                "{} at offset {offset} imports a name that cannot be resolved statically: {why}",
                opcode.name()
            ),
        );
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: None,
            written_as: None,
            ext_code: None,
            allowed: false,
            pickle: self.pickle_index(),
        });
        Value::Unknown
    }

    /// Whether the import table is at its bound (`max_records` distinct imports); if so,
    /// analysis stops here with a limit finding.
    fn table_full(&mut self, offset: u64) -> bool {
        if self.table.len() < self.limits.max_records {
            return false;
        }
        self.limit(
            offset,
            &format!("more than {} distinct imports", self.limits.max_records),
        );
        true
    }

    fn ext_import(&mut self, offset: u64, opcode: Opcode, code: i64) -> Value {
        if self.table_full(offset) {
            return Value::Unknown;
        }
        if code <= 0 {
            self.break_stream(offset, "EXT specifies a code <= 0");
        }
        let allowed = u32::try_from(code).is_ok_and(|c| self.policy.is_ext_code_allowed(c));
        if !allowed {
            self.finding(
                FindingKind::ExtensionCode,
                Severity::High,
                offset,
                None,
                format!(
                    "{} at offset {offset} imports extension code {code} from the copyreg registry; the policy names no extension codes it allows",
                    opcode.name()
                ),
            );
        }
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: None,
            written_as: None,
            ext_code: Some(code),
            allowed,
            pickle: self.pickle_index(),
        });
        let index = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(ImportEntry {
            target: None,
            ext_code: Some(code),
            allowed,
            roles: None,
        });
        self.keep_tuples = true;
        Value::Import(index)
    }

    fn callee(&self, value: &Value) -> Callee {
        match value {
            Value::Import(index) => match self.table.get(*index as usize) {
                Some(ImportEntry {
                    target: Some(target), ..
                }) => Callee::Import {
                    target: target.clone(),
                },
                Some(ImportEntry {
                    ext_code: Some(code), ..
                }) => Callee::ExtCode { code: *code },
                _ => Callee::Unresolved,
            },
            Value::Obj(id) => Callee::CallResult {
                offset: self.tables.objects.get(*id as usize).map_or(0, |o| o.offset),
            },
            Value::Unknown => Callee::Unresolved,
            other => Callee::Other { what: other.what() },
        }
    }

    /// Records a call of `callable`, reports calls of what is not an import, then checks the
    /// call against the callee's role and returns its result.
    fn call(
        &mut self,
        offset: u64,
        opcode: Opcode,
        callable: &Value,
        args: CallArgs<'_>,
        kwargs: Option<&Value>,
    ) -> Value {
        let callee = self.callee(callable);
        match &callee {
            Callee::Import { .. } | Callee::ExtCode { .. } | Callee::Unresolved => {}
            Callee::CallResult { offset: made } => {
                let made = *made;
                self.finding(
                    FindingKind::IndirectCall,
                    Severity::High,
                    offset,
                    None,
                    format!(
                        "{} at offset {offset} calls the result of the call at offset {made}; pickles of data never do this",
                        opcode.name()
                    ),
                );
            }
            Callee::Other { what } => {
                let what = *what;
                if !self.broken {
                    self.finding(
                        FindingKind::IndirectCall,
                        Severity::High,
                        offset,
                        None,
                        format!(
                            "{} at offset {offset} calls a {what}, which is not an imported callable",
                            opcode.name()
                        ),
                    );
                }
            }
        }
        self.record_call(CallSite {
            offset,
            opcode: opcode.name(),
            callee,
            pickle: self.pickle_index(),
        });
        let result = self.call_op(offset, opcode, callable, args, kwargs);
        self.track_call(&result, callable, args);
        result
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

    /// A persistent id: noted once a pickle, listed (up to `max_records`) in full detail.
    fn persistent(&mut self, offset: u64, pid: &Value) {
        self.active = true;
        let listed = self.detail == Detail::Full;
        if listed || !self.persistent_noted {
            let pid = self.sym(pid);
            self.persistent_finding(offset, &pid);
            if listed && self.report.persistent_ids.len() < self.limits.max_records {
                self.report.persistent_ids.push(PersistentId {
                    offset,
                    pickle: self.pickle_index(),
                    value: pid,
                });
            } else if listed {
                self.report.records_dropped += 1;
            }
        }
        // torch's `('storage', StorageClass, key, location, numel, ...)`: the storage's size
        // bounds the tensor views made over it.
        let storage = match pid {
            Value::Tuple(items, _) if items.first().and_then(Value::name_bytes) == Some(b"storage") => {
                match items.get(4) {
                    Some(Value::Int(numel)) if *numel >= 0 => Some(*numel as u64),
                    _ => None,
                }
            }
            _ => None,
        };
        if self.stream_remaining.is_some() {
            self.count_legacy_storage(offset, pid);
        }
        self.push(storage.map_or(Value::Persistent, Value::Storage));
    }

    /// torch's legacy `('storage', StorageClass, key, location, numel, view_metadata)`: the
    /// loader allocates `numel` elements for each new key while the pickle loads.
    fn count_legacy_storage(&mut self, offset: u64, pid: &Value) {
        let Value::Tuple(items, _) = pid else {
            return;
        };
        let [tag, class, key, _, numel, _] = &**items else {
            return;
        };
        if tag.name_bytes() != Some(b"storage") {
            return;
        }
        let element = match class {
            Value::Import(index) => self
                .table
                .get(*index as usize)
                .and_then(|e| e.target.as_ref())
                .and_then(|t| element_size(&t.name)),
            _ => None,
        };
        let bytes = match numel {
            Value::Int(n) if *n >= 0 => (*n as u64).saturating_mul(element.unwrap_or(1)),
            _ => u64::MAX,
        };
        let storages = self.legacy_storages.get_or_insert_with(Box::default);
        let new_key = match key.as_name() {
            Some(key) if storages.keys.len() < MAX_LEGACY_STORAGES => storages.keys.insert(key.into()),
            _ => true,
        };
        if new_key {
            storages.bytes = storages.bytes.saturating_add(bytes);
        }
        let (declared, available) = (storages.bytes, self.stream_remaining.unwrap_or(u64::MAX));
        if declared > available && !storages.reported {
            storages.reported = true;
            self.finding(
                FindingKind::Container,
                Severity::High,
                offset,
                None,
                format!(
                    "the legacy torch storages declared up to offset {offset} hold {declared} bytes, but only \
                     {available} bytes follow the start of the pickle: torch allocates every declared storage \
                     while loading, before it reads any data"
                ),
            );
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

    fn memo_key(&mut self, op: &Op<'_>) -> Option<i64> {
        match op.arg.as_index() {
            Some(key) if key >= 0 => Some(key),
            _ => {
                self.break_stream(
                    op.offset,
                    &format!("{} has an invalid memo index", op.opcode.name()),
                );
                None
            }
        }
    }

    fn memo_put(&mut self, offset: u64, key: i64, value: Value) -> Flow {
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            return self.limit(
                offset,
                &format!("more than {} memo entries", self.limits.max_memo),
            );
        }
        self.memo.insert(key, value);
        Flow::Continue
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

    /// `data` up to the end of the frame `pos` is in (all of it outside frames).
    fn frame_window<'d>(&mut self, data: &'d [u8], pos: usize) -> &'d [u8] {
        if let Some(frame_end) = self.frame_end {
            let frame_end = usize::try_from(frame_end).unwrap_or(usize::MAX);
            if pos < frame_end {
                return data.get(..frame_end).unwrap_or(data);
            }
            self.frame_end = None;
        }
        data
    }

    /// Runs a FRAME at `pos`, outside any frame, as `step` would: the window of the new frame,
    /// or None (nothing changed) when the general path must take it.
    fn open_frame<'d>(&mut self, data: &'d [u8], pos: usize) -> Option<&'d [u8]> {
        let end = frame_opened_at(data, pos)?;
        self.frame_end = Some(end as u64);
        data.get(..end)
    }

    /// Runs, straight from the bytes, the opcodes that make up the bulk of data pickles (numbers,
    /// empty containers, marks, appends, small tuples, memo traffic, byte payloads), with exactly
    /// the effect `step` would have. It returns at the first opcode it does not handle, whose
    /// preconditions do not plainly hold, or that would cross a frame end or a limit: the general
    /// path takes that one, so every finding is still made by `step`.
    pub fn fast_forward(&mut self, data: &[u8], mut pos: usize) -> usize {
        if self.pickle_opcodes == 0 || self.broken || self.stopped {
            return pos;
        }
        let full = data;
        // What may be read from `pos` on: up to the end of the current frame.
        let mut data = self.frame_window(full, pos);
        let budget = self.limits.max_opcodes.saturating_sub(self.opcodes);
        let (max_stack, max_marks, max_memo) =
            (self.limits.max_stack, self.limits.max_marks, self.limits.max_memo);
        let plain = self.joblib.is_none();
        let mut count: u64 = 0;
        // Each arm checks that its whole opcode lies within `data` (the frame) before it acts.
        macro_rules! push {
            ($size:expr, $value:expr) => {{
                let size: usize = $size;
                if pos + size > data.len() {
                    break;
                }
                self.stack.push($value);
                pos += size;
            }};
        }
        while count < budget && self.stack.len() < max_stack {
            let Some(&byte) = data.get(pos) else {
                // The end of a frame: read on outside it (the next FRAME, as a rule, opens the
                // next one), as `step` does.
                if pos != data.len() || data.len() == full.len() {
                    break;
                }
                data = self.frame_window(full, pos);
                continue;
            };
            match byte {
                0x95 if self.frame_end.is_none() => match self.open_frame(full, pos) {
                    Some(window) => {
                        data = window;
                        pos += 9;
                    }
                    None => break,
                },
                b'K' => match data.get(pos + 1) {
                    Some(&v) => push!(2, Value::Int(i64::from(v))),
                    None => break,
                },
                b'M' => match data.get(pos + 1..pos + 3) {
                    Some(&[a, b]) => push!(3, Value::Int(i64::from(u16::from_le_bytes([a, b])))),
                    _ => break,
                },
                b'J' => match data.get(pos + 1..pos + 5) {
                    Some(&[a, b, c, d]) => push!(5, Value::Int(i64::from(i32::from_le_bytes([a, b, c, d])))),
                    _ => break,
                },
                b'G' => match data.get(pos + 1..pos + 9) {
                    Some(&[a, b, c, d, e, f, g, h]) => {
                        push!(9, Value::Float(f64::from_be_bytes([a, b, c, d, e, f, g, h])))
                    }
                    _ => break,
                },
                b'N' => push!(1, Value::None),
                0x88 => push!(1, Value::Bool(true)),
                0x89 => push!(1, Value::Bool(false)),
                b']' => {
                    // At the table bound the general path reports the limit.
                    if self.tables.lists.len() >= max_memo || pos + 1 > data.len() {
                        break;
                    }
                    let list = self.new_list(pos as u64);
                    push!(1, list)
                }
                b'}' => {
                    if self.tables.dicts.len() >= max_memo || pos + 1 > data.len() {
                        break;
                    }
                    let dict = self.new_dict(pos as u64, &[]);
                    push!(1, dict)
                }
                b')' => push!(1, Value::EmptyTuple),
                b'C' | b'B' | 0x8e | 0x96 => {
                    let (prefix, declared) = match byte {
                        b'C' => (1, le_at(data, pos + 1, 1)),
                        b'B' => (4, le_at(data, pos + 1, 4)),
                        _ => (8, le_at(data, pos + 1, 8)),
                    };
                    match declared
                        .and_then(|n| usize::try_from(n).ok())
                        .and_then(|n| n.checked_add(1 + prefix))
                        .filter(|size| pos.checked_add(*size).is_some())
                    {
                        Some(size) => push!(
                            size,
                            Value::Bytes {
                                at: (pos + 1 + prefix) as u64,
                                len: (size - 1 - prefix) as u64,
                            }
                        ),
                        None => break,
                    }
                }
                0x8c | b'X' => {
                    // SHORT_BINUNICODE / BINUNICODE, as `name_value` makes them; text that is
                    // not strict UTF-8 (surrogates, or an error) or too long to be a name goes
                    // to the general path.
                    let prefix = if byte == 0x8c { 1 } else { 4 };
                    let Some(n) = le_at(data, pos + 1, prefix)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= self.limits.max_name_len)
                    else {
                        break;
                    };
                    let start = pos + 1 + prefix;
                    let Some(Ok(text)) = data.get(start..start + n).map(std::str::from_utf8) else {
                        break;
                    };
                    push!(1 + prefix + n, self.name_of(text))
                }
                b'(' => {
                    if self.marks.len() >= max_marks || pos + 1 > data.len() {
                        break;
                    }
                    if let (true, Some(&Value::List(list))) = (plain, self.stack.last()) {
                        if self.is_frozen(&Value::List(list)) {
                            break;
                        }
                        let room = max_stack.saturating_sub(self.stack.len());
                        if let Some((next, ops, items)) =
                            self.append_run(full, data, pos + 1, budget - count, room)
                        {
                            self.list_grow(list, items);
                            pos = next;
                            count += ops;
                            data = self.frame_window(full, pos);
                            continue;
                        }
                    }
                    self.marks.push(self.stack.len());
                    pos += 1;
                }
                b'e' | b'u' => {
                    // APPENDS onto a list / SETITEMS into a dict, both made by the pickle; an
                    // item that may need a finding goes to the general path.
                    let Some(&mark) = self.marks.last() else { break };
                    let len = self.stack.len();
                    let target = match (byte, mark.checked_sub(1).and_then(|i| self.stack.get(i))) {
                        (b'e', Some(&Value::List(id))) => Value::List(id),
                        (b'u', Some(&Value::Dict(id))) if len.saturating_sub(mark).is_multiple_of(2) => {
                            Value::Dict(id)
                        }
                        _ => break,
                    };
                    let items = self.stack.get(mark..).unwrap_or_default();
                    if pos + 1 > data.len()
                        || self.is_frozen(&target)
                        || items.iter().any(|v| self.needs_store_check(v))
                    {
                        break;
                    }
                    // The items are read from the stack while the tables change.
                    let stack = std::mem::take(&mut self.stack);
                    let items = stack.get(mark..).unwrap_or_default();
                    match target {
                        Value::List(id) => self.list_extend(id, items),
                        Value::Dict(id) => self.dict_set(id, items),
                        _ => {}
                    }
                    self.stack = stack;
                    self.stack.truncate(mark);
                    self.marks.pop();
                    pos += 1;
                }
                b's' | b'a' => {
                    // SETITEM into a dict / APPEND onto a list made by the pickle.
                    let n = if byte == b's' { 2 } else { 1 };
                    let len = self.stack.len();
                    let fence = self.marks.last().copied().unwrap_or(0);
                    if len < fence + n + 1 || pos + 1 > data.len() {
                        break;
                    }
                    let target = match (byte, self.stack.get(len - n - 1)) {
                        (b's', Some(&Value::Dict(id))) => Value::Dict(id),
                        (b'a', Some(&Value::List(id))) => Value::List(id),
                        _ => break,
                    };
                    let items = self.stack.get(len - n..).unwrap_or_default();
                    if self.is_frozen(&target) || items.iter().any(|v| self.needs_store_check(v)) {
                        break;
                    }
                    let stack = std::mem::take(&mut self.stack);
                    let items = stack.get(len - n..).unwrap_or_default();
                    match target {
                        Value::List(id) => self.list_extend(id, items),
                        Value::Dict(id) => self.dict_set(id, items),
                        _ => {}
                    }
                    self.stack = stack;
                    self.stack.truncate(len - n);
                    pos += 1;
                }
                0x85..=0x87 | b't' => {
                    let len = self.stack.len();
                    let fence = self.marks.last().copied().unwrap_or(0);
                    // TUPLE takes everything above its MARK; TUPLE1-3 that many above the fence.
                    let n = if byte == b't' {
                        let Some(&mark) = self.marks.last() else { break };
                        len.saturating_sub(mark)
                    } else {
                        let n = usize::from(byte - 0x84);
                        if len < fence + n {
                            break;
                        }
                        n
                    };
                    if pos + 1 > data.len() {
                        break;
                    }
                    let items = self.stack.get(len - n..).unwrap_or_default();
                    let opaque = plain && !self.keep_tuples && items.iter().all(Value::is_scalar);
                    // Tuples too large or deep to keep go the general way (they may need a finding).
                    if !opaque && (n > KEPT_TUPLE_LEN || items.iter().any(|v| v.depth() >= KEPT_TUPLE_DEPTH))
                    {
                        break;
                    }
                    if byte == b't' {
                        self.marks.pop();
                    }
                    let tuple = if n == 0 {
                        Value::EmptyTuple
                    } else if opaque {
                        self.stack.truncate(len - n);
                        Value::OpaqueTuple
                    } else {
                        let meta = self.tuple_meta(self.stack.get(len - n..).unwrap_or_default());
                        // One allocation: the Rc is filled from the stack in place.
                        Value::Tuple(self.stack.drain(len - n..).collect(), meta)
                    };
                    push!(1, tuple);
                }
                0x94 | b'q' | b'r' => {
                    let (size, key) = match byte {
                        0x94 => (1, Some(self.memo.len() as u64)),
                        b'q' => (2, data.get(pos + 1).map(|&k| u64::from(k))),
                        _ => (5, le_at(data, pos + 1, 4)),
                    };
                    let Some(key) = key.and_then(|k| i64::try_from(k).ok()) else {
                        break;
                    };
                    let fence = self.marks.last().copied().unwrap_or(0);
                    let room = (self.memo.len() < max_memo || self.memo.contains_key(&key))
                        && !sparse_memo_index(key, self.memo.len());
                    if self.stack.len() <= fence || !room || pos + size > data.len() {
                        break;
                    }
                    let Some(top) = self.stack.last().cloned() else {
                        break;
                    };
                    self.memo.insert(key, top);
                    pos += size;
                }
                b'h' | b'j' => {
                    let (size, key) = if byte == b'h' {
                        (2, data.get(pos + 1).map(|&k| u64::from(k)))
                    } else {
                        (5, le_at(data, pos + 1, 4))
                    };
                    match key
                        .and_then(|k| i64::try_from(k).ok())
                        .and_then(|k| self.memo.get(&k))
                    {
                        Some(value) => {
                            let value = value.clone();
                            push!(size, value)
                        }
                        None => break,
                    }
                }
                b'0' => {
                    let len = self.stack.len();
                    if pos + 1 > data.len() {
                        break;
                    }
                    if self.marks.last() == Some(&len) {
                        self.marks.pop();
                    } else if len > self.marks.last().copied().unwrap_or(0) {
                        self.stack.pop();
                    } else {
                        break;
                    }
                    pos += 1;
                }
                b'2' => {
                    let fence = self.marks.last().copied().unwrap_or(0);
                    match self.stack.last() {
                        Some(top) if self.stack.len() > fence => {
                            let top = top.clone();
                            push!(1, top)
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
            count += 1;
        }
        self.opcodes += count;
        self.pickle_opcodes += count;
        pos
    }

    /// `MARK <numbers, tuples of numbers, memo stores> APPENDS` onto a list: the batches a list
    /// of numbers or of number tuples is pickled in. Runs the batch over a depth count and the
    /// top value instead of a stack, ending after the APPENDS; `None` (with nothing changed)
    /// when the batch holds anything else, so that the general loop takes it.
    /// `start` is just past the MARK; returns where the batch ends, the opcode count (MARK and
    /// APPENDS included) and the number of items appended.
    fn append_run<'d>(
        &mut self,
        full: &'d [u8],
        mut data: &'d [u8],
        start: usize,
        budget: u64,
        room: usize,
    ) -> Option<(usize, u64, usize)> {
        let dense_before = self.memo.dense.len();
        let max_memo = self.limits.max_memo;
        // With no sparse keys the memo's size is its dense part's, the next key MEMOIZE takes.
        let appendable = self.memo.sparse.is_empty();
        let mut pos = start;
        let mut depth = 0usize;
        // The general loop checks the depth and the opcode count before every opcode; both
        // only grow, so checking their highest values once the batch is read is the same.
        let mut max_depth = 0usize;
        // Where the op that made the top value is: its value is only needed for a memo store.
        let mut top_at = start;
        let mut ops: u64 = 2;
        // An opcode cut off by the end of `data` fails the next read at `pos`.
        // A run of one scalar opcode of `$size` bytes (a list of numbers). Each opcode's size
        // is a constant of its arm and a run is stepped over with the opcode byte only
        // compared: the next position never waits on a load.
        macro_rules! scalars {
            ($byte:ident, $size:literal) => {{
                let mut run = 1;
                while data.get(pos + run * $size) == Some(&$byte) {
                    run += 1;
                }
                pos += (run - 1) * $size;
                top_at = pos;
                depth += run;
                max_depth = max_depth.max(depth);
                pos += $size;
                ops += run as u64;
                continue;
            }};
        }
        // The end of the last frame the batch opened (set on success only).
        let mut opened = None;
        let outcome = loop {
            let Some(&byte) = data.get(pos) else {
                // The end of a frame: batches run on into the next one. (Past the end, an
                // opcode crossed it: the general path reports that.)
                match frame_opened_at(full, pos).filter(|_| pos == data.len()) {
                    Some(end) => {
                        data = full.get(..end).unwrap_or(full);
                        opened = Some(end);
                        pos += 9;
                        ops += 1;
                        continue;
                    }
                    None => break None,
                }
            };
            match byte {
                b'K' => scalars!(byte, 2),
                b'M' => scalars!(byte, 3),
                b'J' => scalars!(byte, 5),
                b'G' => scalars!(byte, 9),
                b'N' | 0x88 | 0x89 => scalars!(byte, 1),
                0x85..=0x87 => {
                    let n = usize::from(byte - 0x84);
                    // Once the pickle imports anything its tuples are kept (the general path).
                    if depth < n || self.keep_tuples {
                        break None;
                    }
                    depth -= n - 1;
                    top_at = pos;
                    pos += 1;
                    // Picklers memoize a tuple right after making it: take that MEMOIZE here
                    // (the general arm below would do the same).
                    if data.get(pos) == Some(&0x94) && appendable && self.memo.dense.len() < max_memo {
                        self.memo.dense.push(OPAQUE_TUPLE_SLOT);
                        pos += 1;
                        ops += 1;
                    }
                }
                0x94 | b'q' | b'r' => {
                    let (size, key) = match byte {
                        0x94 => (1, Some(self.memo.dense.len() as u64)),
                        b'q' => (2, data.get(pos + 1).map(|&k| u64::from(k))),
                        _ => (
                            5,
                            data.get(pos + 1..pos + 5)
                                .and_then(|b| b.try_into().ok())
                                .map(|b| u64::from(u32::from_le_bytes(b))),
                        ),
                    };
                    let fresh = appendable && key == Some(self.memo.dense.len() as u64);
                    if depth == 0 || !fresh || self.memo.dense.len() >= max_memo || pos + size > data.len() {
                        break None;
                    }
                    if matches!(data.get(top_at), Some(0x85..=0x87)) {
                        self.memo.dense.push(OPAQUE_TUPLE_SLOT);
                    } else if self.memo.push_dense(scalar_value(data, top_at)).is_err() {
                        break None;
                    }
                    pos += size;
                }
                b'e' => break Some((pos + 1, depth)),
                _ => break None,
            }
            ops += 1;
        };
        match outcome {
            Some((next, items)) if ops < budget && max_depth < room => {
                if let Some(end) = opened {
                    self.frame_end = Some(end as u64);
                }
                Some((next, ops, items))
            }
            _ => {
                // Undo the memo stores: the general loop makes them again.
                self.memo.truncate_dense(dense_before);
                None
            }
        }
    }

    /// CPython keeps the memo as an array indexed by key and grows it to twice the largest key
    /// written: a huge key far beyond the entries written makes the loader allocate gigabytes.
    fn check_memo_index(&mut self, offset: u64, opcode: Opcode, key: i64) {
        if sparse_memo_index(key, self.memo.len()) {
            let gib = key.saturating_mul(16) >> 30;
            self.finding(
                FindingKind::LimitExceeded,
                Severity::High,
                offset,
                None,
                format!(
                    "{} at offset {offset} stores memo key {key} with {} entries written: CPython would allocate \
                     about {gib} GiB for its memo (memory exhaustion); picklers number keys densely",
                    opcode.name(),
                    self.memo.len()
                ),
            );
        }
    }

    fn check_framing(&mut self, op: &Op<'_>) {
        let Some(frame_end) = self.frame_end else {
            return;
        };
        if op.offset >= frame_end {
            self.frame_end = None;
            return;
        }
        let problem = if op.end() > frame_end {
            Some(format!(
                "{} at offset {} runs past the end of its frame at offset {frame_end}",
                op.opcode.name(),
                op.offset
            ))
        } else if op.opcode == Opcode::Frame {
            Some(format!(
                "FRAME at offset {} starts before the current frame ends at offset {frame_end}",
                op.offset
            ))
        } else if op.opcode == Opcode::Stop && op.end() != frame_end {
            Some(format!(
                "STOP at offset {} ends the pickle before its frame ends at offset {frame_end}",
                op.offset
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.finding(
                FindingKind::AmbiguousFraming,
                Severity::High,
                op.offset,
                None,
                format!("{problem}; CPython's C and Python unpicklers and file and memory inputs read this differently"),
            );
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

    fn persistent_finding(&mut self, offset: u64, pid: &Sym) {
        // One note per pickle: container readers judge the ids themselves.
        if self.persistent_noted {
            return;
        }
        self.persistent_noted = true;
        self.finding(
            FindingKind::PersistentId,
            Severity::Info,
            offset,
            None,
            format!("persistent id {pid} at offset {offset}: the loader's persistent_load decides what it becomes"),
        );
    }

    fn reset_pickle(&mut self) {
        self.tables.clear();
        self.keep_tuples = false;
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.protocol = 0;
        self.pickle_opcodes = 0;
        self.frame_end = None;
        self.broken = false;
        self.active = false;
        self.persistent_noted = false;
    }

    fn end_pickle(&mut self, end: u64) -> Flow {
        self.report.pickles.push(PickleInfo {
            start: self.pickle_start,
            end: Some(end),
            protocol: self.protocol,
            opcodes: self.pickle_opcodes,
        });
        self.reset_pickle();
        // One unpickler reading on keeps its memo: keys of this pickle stay readable.
        self.memo_inherited = true;
        match self.mode {
            Mode::FirstPickle => Flow::Stop,
            Mode::AllPickles => Flow::Continue,
        }
    }

    /// The stream ended or broke inside a pickle (`what` says how).
    fn unfinished(&mut self, offset: u64, what: String) {
        if self.report.pickles.is_empty() || self.active {
            let started = self.pickle_opcodes > 0;
            self.break_stream(offset, &what);
            if started {
                self.report.pickles.push(PickleInfo {
                    start: self.pickle_start,
                    end: None,
                    protocol: self.protocol,
                    opcodes: self.pickle_opcodes,
                });
            }
        } else {
            self.finding(
                FindingKind::TrailingData,
                Severity::Warning,
                self.pickle_start.min(offset),
                None,
                format!(
                    "bytes from offset {} on follow the last pickle and are not a pickle ({what})",
                    self.pickle_start.min(offset)
                ),
            );
        }
    }

    /// Where the frame the last opcode ran in ends, while one is open (cleared lazily: an
    /// opcode ending at or after it is outside).
    pub(crate) fn frame_end(&self) -> Option<u64> {
        self.frame_end
    }

    /// The value the last completed pickle returned (what its STOP popped), as far as kept.
    pub fn last_result(&self) -> Option<&Sym> {
        self.last_result.as_ref()
    }

    pub fn end_of_input(&mut self, offset: u64) {
        if self.pickle_opcodes == 0 {
            if self.report.pickles.is_empty() {
                self.break_stream(offset, "the input holds no pickle (CPython raises EOFError)");
            }
            return;
        }
        self.pickle_start = self.pickle_start.min(offset);
        self.unfinished(offset, "the input ends before STOP".into());
    }

    pub fn decode_error(&mut self, error: &DecodeError) {
        if self.pickle_opcodes == 0 {
            self.pickle_start = error.offset();
        }
        if let DecodeError::LineTooLong { .. } = error {
            // Our bound, not a break in the stream: CPython would read on.
            self.limit(error.offset(), &error.to_string());
            return;
        }
        self.unfinished(error.offset(), error.to_string());
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
