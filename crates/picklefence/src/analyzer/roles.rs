//! The one place where every use of an import is checked against its role: calls (REDUCE,
//! OBJ, INST), constructions (NEWOBJ, NEWOBJ_EX), arguments, BUILD, item-setting, and storing
//! (container items, object state, the pickle's result). The pre-scan before a load and the
//! scanner run exactly these checks.
//!
//! Objects the pickle makes are tracked in a table: what made them, whether they may receive
//! a BUILD or items, and whether they already did. Dicts and lists the pickle makes are tracked
//! too, just enough to judge them as state (special and watched keys, emptiness).

use std::rc::Rc;

use foldhash::HashMap;

use super::joblib::CallArgs;
use super::{Analyzer, TupleMeta, Value, KEPT_TUPLE_DEPTH, KEPT_TUPLE_LEN};
use crate::findings::{FindingKind, Severity};
use crate::opcodes::Opcode;
use crate::policy::roles::{ArgSpec, Args, Check, Kind, Reconstruct, ResultSpec, StateShape};
use crate::policy::state_rules::{is_special_key, KeyRule, StateRule};
use crate::policy::{CallSchema, Roles};

/// No import made the object (an indirect call, an unknown callee).
pub(super) const NO_CLASS: u32 = u32::MAX;

/// An object made by a call or a reconstruction.
#[derive(Debug, Clone)]
pub(super) struct Obj<'p> {
    /// Where the call was made.
    pub offset: u64,
    /// The import called, or the class reconstructed (`NO_CLASS` when unknown).
    pub class: u32,
    /// The reconstructor function that made it, when not the class itself (`NO_CLASS`).
    maker: u32,
    /// The schema of the call that made it (its result spec says what the object may receive).
    schema: Option<&'p CallSchema>,
    /// How a reconstructed object may be built (from its class's role).
    reconstruct: Option<Reconstruct>,
    flags: u16,
    /// An array's element count, once known (`u64::MAX`: not known).
    numel: u64,
}

/// The text behind an object, kept aside (few objects have one): where the str that
/// `_codecs.encode` made into bytes lies and its length, or a call's first str argument (a
/// `numpy.dtype`'s kind and size).
#[derive(Debug, Clone, Default)]
struct ObjText {
    at: Option<u64>,
    len: u64,
    text: Option<Rc<str>>,
}

impl Obj<'_> {
    const BUILT: u16 = 1;
    const HAS_ITEMS: u16 = 1 << 1;
    const MAY_BUILD: u16 = 1 << 2;
    const MAY_ITEMS: u16 = 1 << 3;
    const CALLABLE: u16 = 1 << 4;
    /// Made by a call that was already refused: anything goes, nothing more is reported.
    const POISONED: u16 = 1 << 5;
    /// `OrderedDict()` with no arguments (and no items since).
    const EMPTY_ODICT: u16 = 1 << 6;
    /// Made by a trusted entry: any plain-data state.
    const TRUSTED: u16 = 1 << 7;
    /// Every item it received is an object of a class a `hooks` state rule names.
    const HOOK_ITEMS: u16 = 1 << 8;
    /// Judged as part of an object's state, or passed to a call that may keep it: it may not
    /// change any more.
    const FROZEN: u16 = 1 << 9;
    /// May be a str (a subclass made at load time: numpy's `str_` scalar, a reconstructed str
    /// subclass), whose text the scanner cannot see.
    const STR_LIKE: u16 = 1 << 10;
    /// A numpy dtype whose items are Python objects (its BUILD state set the object flags).
    const HOLDS_OBJECTS: u16 = 1 << 11;

    fn new(offset: u64, class: u32, flags: u16) -> Self {
        Obj {
            offset,
            class,
            maker: NO_CLASS,
            schema: None,
            reconstruct: None,
            flags,
            numel: u64::MAX,
        }
    }
}

/// A dict the pickle made.
#[derive(Debug, Clone, Copy)]
pub(super) struct DictInfo {
    flags: u16,
    /// Its last watched entry in `Tables::watched` (`NO_ENTRY`: none); entries link backwards.
    last_watched: u32,
}

impl Default for DictInfo {
    fn default() -> Self {
        DictInfo {
            flags: 0,
            last_watched: NO_ENTRY,
        }
    }
}

/// No entry of `Tables::watched`.
const NO_ENTRY: u32 = u32::MAX;

/// A watched key set in a dict: the rule's key (shipped, so `'static`), the value, and the
/// dict's previous watched entry.
#[derive(Debug, Clone)]
struct Watched {
    rule: &'static KeyRule,
    value: Value,
    previous: u32,
}

impl DictInfo {
    const NONEMPTY: u16 = 1;
    /// A key starting with `__`.
    const SPECIAL_KEY: u16 = 1 << 1;
    /// A key that is not a str constant.
    const OPAQUE_KEY: u16 = 1 << 2;
    /// A key that has a state rule (recorded in `watched`).
    const WATCHED: u16 = 1 << 3;
    /// Judged as an object's state, or passed to a call: it may not change any more.
    const FROZEN: u16 = 1 << 4;
    /// A key made at load time (a call result): it may compare equal to any str.
    const MADE_KEY: u16 = 1 << 5;
    /// A value is `(dtype, ...)` with a dtype whose items are objects (a structured dtype's
    /// fields).
    const DTYPE_OBJECTS: u16 = 1 << 6;
    /// A value is `(dtype, ...)` with a dtype not built yet: its flags could change after the
    /// dict was judged.
    const DTYPE_OPEN: u16 = 1 << 7;
    /// A str key that is not on the keyword list of the `keys-in` rules.
    const UNLISTED_KEY: u16 = 1 << 8;
}

/// A list the pickle made.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ListInfo {
    len: u32,
    /// Its items are all str constants, kept in `list_strs` (short lists only).
    strs: bool,
    /// Judged as a value of an object's state: it may not change any more.
    frozen: bool,
}

/// Lists of str constants keep their items (dispatch lists such as `stack_method_`, one
/// per estimator) up to this length, and this many items in all; past either, a list's
/// items are unknown.
const MAX_STR_LIST_LEN: u32 = 1024;
const MAX_STR_ITEMS: usize = 1 << 18;
/// Watched dict entries kept in all.
const MAX_WATCHED: usize = 1 << 20;

/// The tables behind `Value::Obj`, `Value::Dict` and `Value::List`.
#[derive(Debug, Default)]
pub(super) struct Tables<'p> {
    pub objects: Vec<Obj<'p>>,
    pub dicts: Vec<DictInfo>,
    pub lists: Vec<ListInfo>,
    list_strs: HashMap<u32, Vec<Value>>,
    /// Items ever kept in `list_strs` (bounded by `MAX_STR_ITEMS`).
    list_str_items: usize,
    /// The text behind some objects, by object id.
    texts: HashMap<u32, ObjText>,
    /// Watched keys set in dicts, linked per dict from `DictInfo::last_watched`.
    watched: Vec<Watched>,
    /// dict id -> its first special key.
    special: HashMap<u32, Box<str>>,
}

impl Tables<'_> {
    pub fn clear(&mut self) {
        self.objects.clear();
        self.dicts.clear();
        self.lists.clear();
        self.list_strs.clear();
        self.list_str_items = 0;
        self.watched.clear();
        self.texts.clear();
        self.special.clear();
    }
}

/// Why an argument does not fit.
enum Misfit {
    /// An import used against its role.
    Role(u32, &'static str),
    /// Anything else, in words.
    Shape(String),
}

/// A `decimal.Decimal` string as `str(Decimal)` writes it, with bounded digits and exponent:
/// `Decimal('1e999999999')` is cheap, but `int()` or arithmetic on it is not.
fn is_bounded_decimal(text: &str) -> bool {
    const MAX_DIGITS: usize = 1000;
    const MAX_EXPONENT_DIGITS: usize = 4;
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(body, "NaN" | "sNaN" | "Infinity" | "Inf") {
        return true;
    }
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int_part.len() + frac_part.len();
    let digits_ok = digits > 0
        && digits <= MAX_DIGITS
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= MAX_EXPONENT_DIGITS && e.bytes().all(|b| b.is_ascii_digit())
    });
    digits_ok && exponent_ok
}

/// A `Fraction` as `str(Fraction)` writes it: `-12/34` or `7`, at most 2000 digits.
fn is_fraction_str(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (num, den) = body.split_once('/').unwrap_or((body, "1"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    body.len() <= 2000 && digits(num) && digits(den)
}

/// The flags numpy writes in a dtype's state for a kind (`'f8'` -> 0, `'O8'` -> 63): numpy
/// trusts them, and object flags on a kind that holds no objects make it read raw bytes as
/// object pointers.
fn dtype_flags_ok(descr: &str, flags: i64, objects_inside: bool) -> bool {
    // NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE | NPY_ITEM_IS_POINTER: "the items are objects".
    const OBJECT_BITS: i64 = 0x07;
    // NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE: a structured dtype with an object field (27).
    const REFCOUNTED: i64 = 0x03;
    if !(0..=0xff).contains(&flags) {
        return false;
    }
    if descr.starts_with('O') {
        flags == 63
    } else if objects_inside {
        flags & REFCOUNTED == REFCOUNTED
    } else {
        flags & OBJECT_BITS == 0
    }
}

/// A dtype descr as numpy writes it in a pickle: a kind and a size (`'f8'`, `'O8'`, `'V16'`,
/// `'M8'`); byte order and units travel in the state. Other spellings (`'object'`, `'|O'`)
/// would hide the kind from the flag rule.
fn is_canonical_descr(descr: &str) -> bool {
    let mut chars = descr.chars();
    matches!(
        chars.next(),
        Some('b' | 'i' | 'u' | 'f' | 'c' | 'O' | 'S' | 'U' | 'V' | 'M' | 'm')
    ) && chars.all(|c| c.is_ascii_digit())
}

/// The dimensions of a shape (or stride) tuple, all of them non-negative int constants (read in
/// place: tensor views and arrays are checked by the thousand).
#[derive(Clone, Copy)]
struct Dims<'a>(&'a [Value]);

impl Dims<'_> {
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|v| match v {
            Value::Int(n) => *n as u64,
            _ => 0, // never: `dims` admits non-negative ints only
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Dims<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn dims(value: &Value) -> Option<Dims<'_>> {
    let items: &[Value] = match value {
        Value::EmptyTuple => &[],
        Value::Tuple(items, _) => items,
        _ => return None,
    };
    items
        .iter()
        .all(|v| matches!(v, Value::Int(n) if *n >= 0))
        .then_some(Dims(items))
}

/// The element count of a shape tuple of non-negative int constants.
pub(super) fn shape_numel(shape: &Value) -> Option<u64> {
    match shape {
        Value::EmptyTuple => Some(1),
        Value::Tuple(dims, _) => dims.iter().try_fold(1u64, |acc, d| match d {
            Value::Int(n) if *n >= 0 => acc.checked_mul(*n as u64),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether a value is of a kind `rule` could refuse (a dtype object under `tz-name`, a number
/// under `one-of`... never are).
fn could_break(rule: &StateRule, value: &Value) -> bool {
    match rule {
        StateRule::TzName => matches!(
            value,
            Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } | Value::Obj(_)
        ),
        StateRule::Bounded(_) | StateRule::BoundedProduct(_) | StateRule::BoundedGrowth(_) => {
            !matches!(value, Value::None | Value::Bool(_))
        }
        StateRule::NoneOnly => !matches!(value, Value::None),
        _ => true,
    }
}

/// A time zone name or dtype string that names no file: pandas resolves `dateutil/<path>` by
/// opening that path.
fn is_safe_tz_name(text: &str) -> bool {
    !text.contains("dateutil/") && !text.starts_with('/') && !text.contains("..") && !text.contains('\\')
}

/// A regular expression Python's backtracking engine matches in polynomial time of low
/// degree: no quantified group that holds a quantifier or an alternation (`(a+)+`, `(a|a)*`),
/// no backreference, at most two unbounded repeats (`\w*\w*\w*...` is a polynomial of high
/// degree) and at most 256 characters.
fn is_simple_regex(pattern: &str) -> bool {
    const MAX_UNBOUNDED: usize = 2;
    let bytes = pattern.as_bytes();
    if bytes.len() > 256 || pattern.contains("(?P=") {
        return false;
    }
    // Per open group: whether it holds a quantifier or an alternation.
    let mut groups: Vec<bool> = vec![false];
    let mut unbounded = 0;
    // Whether the atom just closed was a group holding a quantifier or an alternation.
    let mut risky_atom = false;
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let mut atom_risky = false;
        match c {
            b'\\' => {
                if bytes.get(i + 1).is_some_and(|d| (b'1'..=b'9').contains(d)) {
                    return false;
                }
                i += 2;
                risky_atom = false;
                continue;
            }
            b'[' => {
                // A character class is one atom: skip to its unescaped closing bracket.
                i += 1;
                if bytes.get(i) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    i += 1;
                }
                while let Some(&b) = bytes.get(i).filter(|&&b| b != b']') {
                    i += if b == b'\\' { 2 } else { 1 };
                }
            }
            b'(' => groups.push(false),
            b')' => {
                let Some(inner) = groups.pop() else {
                    return false;
                };
                let Some(outer) = groups.last_mut() else {
                    return false;
                };
                *outer |= inner;
                atom_risky = inner;
            }
            b'|' => {
                if let Some(current) = groups.last_mut() {
                    *current = true;
                }
            }
            b'*' | b'+' | b'?' | b'{' => {
                let previous = i.checked_sub(1).and_then(|j| bytes.get(j)).copied();
                let lazy = c == b'?' && matches!(previous, Some(b'*' | b'+' | b'?' | b'}'));
                let group_flag = c == b'?' && previous == Some(b'(');
                if !lazy && !group_flag {
                    let is_unbounded = match c {
                        b'*' | b'+' => true,
                        b'{' => {
                            let rest = pattern.get(i + 1..).unwrap_or("");
                            let body = rest.split('}').next().unwrap_or("");
                            i += body.len() + 1;
                            body.ends_with(',')
                        }
                        _ => false,
                    };
                    if risky_atom {
                        return false;
                    }
                    if is_unbounded {
                        unbounded += 1;
                        if unbounded > MAX_UNBOUNDED {
                            return false;
                        }
                    }
                    if let Some(current) = groups.last_mut() {
                        *current = true;
                    }
                }
            }
            _ => {}
        }
        risky_atom = atom_risky;
        i += 1;
    }
    groups.len() == 1
}

/// A public attribute path: `coef_`, `named_steps.clf.coef_`, `auto`.
fn is_attribute_path(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with('_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

impl<'p> Analyzer<'p> {
    // -----------------------------------------------------------------------------------
    // Tables

    fn table_limit(&mut self, offset: u64, len: usize, what: &str) -> bool {
        if len < self.limits.max_memo {
            return false;
        }
        self.limit(offset, &format!("more than {} {what}", self.limits.max_memo));
        true
    }

    pub(super) fn new_obj(&mut self, obj: Obj<'p>) -> Value {
        if self.table_limit(obj.offset, self.tables.objects.len(), "objects") {
            return Value::Unknown;
        }
        let id = u32::try_from(self.tables.objects.len()).unwrap_or(u32::MAX);
        self.tables.objects.push(obj);
        Value::Obj(id)
    }

    /// A refused call's result: further uses are not judged (the file is already unsafe).
    fn poisoned(&mut self, offset: u64, class: u32) -> Value {
        self.new_obj(Obj::new(offset, class, Obj::POISONED))
    }

    pub(super) fn new_list(&mut self, offset: u64) -> Value {
        if self.table_limit(offset, self.tables.lists.len(), "lists") {
            return Value::Unknown;
        }
        let id = u32::try_from(self.tables.lists.len()).unwrap_or(u32::MAX);
        self.tables.lists.push(ListInfo {
            len: 0,
            strs: true,
            frozen: false,
        });
        Value::List(id)
    }

    /// The value an EMPTY_DICT or DICT pushes (`items`: key, value, key, value...).
    pub(super) fn new_dict(&mut self, offset: u64, items: &[Value]) -> Value {
        if self.table_limit(offset, self.tables.dicts.len(), "dicts") {
            return Value::Unknown;
        }
        let id = u32::try_from(self.tables.dicts.len()).unwrap_or(u32::MAX);
        self.tables.dicts.push(DictInfo::default());
        self.joblib_new_dict(id);
        if !items.is_empty() {
            self.dict_set(id, items);
        }
        Value::Dict(id)
    }

    /// Records `key, value` pairs set in dict `id` (no finding is made here: keys are judged
    /// when the dict becomes state, values were judged as they were stored).
    pub(super) fn dict_set(&mut self, id: u32, items: &[Value]) {
        let rules = self.policy.state_rules();
        let mut flags = DictInfo::NONEMPTY;
        for pair in items.chunks(2) {
            let [key, value] = pair else {
                flags |= DictInfo::OPAQUE_KEY;
                continue;
            };
            flags |= self.value_flags(value);
            let Some(name) = key.name_bytes() else {
                flags |= DictInfo::OPAQUE_KEY;
                if matches!(key, Value::Obj(_) | Value::Unknown) {
                    flags |= DictInfo::MADE_KEY;
                }
                continue;
            };
            if !rules.is_keyword(name) {
                flags |= DictInfo::UNLISTED_KEY;
            }
            if is_special_key(name) {
                if flags & DictInfo::SPECIAL_KEY == 0 {
                    let key: Box<str> = String::from_utf8_lossy(name).into();
                    self.tables.special.entry(id).or_insert(key);
                }
                flags |= DictInfo::SPECIAL_KEY;
            } else if let Some(rule) = rules.get(name) {
                // Only what the rule could refuse is kept for the state check.
                if !could_break(&rule.rule, value) {
                    continue;
                }
                flags |= DictInfo::WATCHED;
                let previous = self
                    .tables
                    .dicts
                    .get(id as usize)
                    .map_or(NO_ENTRY, |d| d.last_watched);
                match u32::try_from(self.tables.watched.len())
                    .ok()
                    .filter(|_| self.tables.watched.len() < MAX_WATCHED)
                {
                    Some(entry) => {
                        self.tables.watched.push(Watched {
                            rule,
                            value: value.clone(),
                            previous,
                        });
                        if let Some(dict) = self.tables.dicts.get_mut(id as usize) {
                            dict.last_watched = entry;
                        }
                    }
                    // Past the bound a watched key cannot be judged: treat it as unreadable.
                    None => flags |= DictInfo::OPAQUE_KEY,
                }
            }
        }
        if let Some(dict) = self.tables.dicts.get_mut(id as usize) {
            dict.flags |= flags;
        }
        self.joblib_dict_set(id, items);
    }

    /// What a dict value tells the dict: a dtype field (`(dtype, offset)`).
    #[inline]
    fn value_flags(&self, value: &Value) -> u16 {
        match value {
            Value::Tuple(items, _) if items.len() <= 3 => match items.first() {
                Some(Value::Obj(id)) if self.is_dtype_obj(*id) => {
                    let mut flags = 0;
                    if self.dtype_holds_objects(*id) {
                        flags |= DictInfo::DTYPE_OBJECTS;
                    }
                    if self.obj_flags(*id) & Obj::BUILT == 0 {
                        flags |= DictInfo::DTYPE_OPEN;
                    }
                    flags
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    fn obj_flags(&self, id: u32) -> u16 {
        self.tables.objects.get(id as usize).map_or(0, |o| o.flags)
    }

    /// Records items appended to list `id`.
    pub(super) fn list_extend(&mut self, id: u32, items: &[Value]) {
        let Some(info) = self.tables.lists.get_mut(id as usize) else {
            return;
        };
        let added = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let len = info.len.saturating_add(added);
        info.len = len;
        if !info.strs {
            return;
        }
        let all_names = items.iter().all(|v| v.name_bytes().is_some());
        let kept = self.tables.list_str_items.saturating_add(items.len());
        if !all_names || len > MAX_STR_LIST_LEN || kept > MAX_STR_ITEMS {
            info.strs = false;
            self.tables.list_strs.remove(&id);
            return;
        }
        self.tables.list_str_items = kept;
        self.tables
            .list_strs
            .entry(id)
            .or_default()
            .extend_from_slice(items);
    }

    /// Adds `n` items known to be numbers or other non-names to list `id` (the fast path).
    pub(super) fn list_grow(&mut self, id: u32, n: usize) {
        if let Some(info) = self.tables.lists.get_mut(id as usize) {
            info.len = info.len.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            if info.strs && n > 0 {
                info.strs = false;
                self.tables.list_strs.remove(&id);
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Imports and their roles

    fn roles_of(&self, index: u32) -> Option<&'p Roles> {
        self.table.get(index as usize).and_then(|e| e.roles)
    }

    /// Allowed and usable in any way (an EXT code the policy allows: its name is not known).
    fn is_trusted(&self, index: u32) -> bool {
        self.table
            .get(index as usize)
            .is_some_and(|e| e.allowed && e.roles.is_none_or(|r| r.trusted))
    }

    fn is_refused(&self, index: u32) -> bool {
        self.table.get(index as usize).is_none_or(|e| !e.allowed)
    }

    fn shown(&self, index: u32) -> String {
        self.import_name(index)
            .map_or_else(|| "an extension-code import".to_string(), |n| n.to_string())
    }

    /// The roles of an import in words, for "which the policy allows only as ...".
    fn role_words(&self, index: u32) -> String {
        self.roles_of(index)
            .map_or_else(|| "any use".to_string(), Roles::describe)
    }

    /// Whether an import may be stored anywhere as a plain value.
    pub(super) fn import_storable(&self, index: u32) -> bool {
        self.is_refused(index)
            || self.is_trusted(index)
            || self
                .roles_of(index)
                .and_then(|r| r.value.as_ref())
                .is_some_and(|v| v.only_under.is_none())
    }

    fn role_finding(&mut self, offset: u64, index: u32, message: String) {
        let name = self.import_name(index);
        self.finding(
            FindingKind::RoleViolation,
            Severity::Critical,
            offset,
            name,
            message,
        );
    }

    /// A kept tuple's stand-in (items already checked against the size bounds).
    pub(super) fn tuple_value(&self, items: Vec<Value>) -> Value {
        let meta = self.tuple_meta(&items);
        Value::Tuple(Rc::from(items), meta)
    }

    /// What a kept tuple of `items` records about them.
    pub(super) fn tuple_meta(&self, items: &[Value]) -> TupleMeta {
        let depth = items
            .iter()
            .map(Value::depth)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let storable = items.iter().all(|v| match v {
            Value::Import(index) => self.import_storable(*index),
            Value::Tuple(_, meta) => meta.storable,
            _ => true,
        });
        TupleMeta { depth, storable }
    }

    /// A tuple's stand-in: items are kept when the pickle imports anything (call arguments,
    /// shapes, persistent ids), or when an item is more than a plain constant; plain data
    /// of a pickle that imports nothing stays opaque, at no allocation. Tuples too large or
    /// deep to keep are opaque; an import inside one is judged as stored there and then.
    pub(super) fn make_tuple(&mut self, offset: u64, items: Vec<Value>) -> Value {
        if items.is_empty() {
            return Value::EmptyTuple;
        }
        let scalar = items.iter().all(Value::is_scalar);
        if scalar && !self.keep_tuples && self.joblib.is_none() {
            return Value::OpaqueTuple;
        }
        let too_deep = items.iter().any(|v| v.depth() >= KEPT_TUPLE_DEPTH);
        if items.len() > KEPT_TUPLE_LEN || too_deep {
            for item in &items {
                self.store(offset, item, None);
            }
            return Value::OpaqueTuple;
        }
        self.tuple_value(items)
    }

    /// The watched entries of dict `id`, the last set first.
    fn watched_of(&self, id: u32) -> impl Iterator<Item = &Watched> {
        let mut next = self
            .tables
            .dicts
            .get(id as usize)
            .map_or(NO_ENTRY, |d| d.last_watched);
        std::iter::from_fn(move || {
            let entry = self.tables.watched.get(next as usize)?;
            next = entry.previous;
            Some(entry)
        })
    }

    /// Whether a container was judged as (part of) an object's state and may not change.
    pub(super) fn is_frozen(&self, value: &Value) -> bool {
        match value {
            Value::Dict(id) => self
                .tables
                .dicts
                .get(*id as usize)
                .is_some_and(|d| d.flags & DictInfo::FROZEN != 0),
            Value::List(id) => self.tables.lists.get(*id as usize).is_some_and(|l| l.frozen),
            Value::Obj(id) => self
                .tables
                .objects
                .get(*id as usize)
                .is_some_and(|o| o.flags & Obj::FROZEN != 0),
            _ => false,
        }
    }

    /// Freezes what a state check judged: the state's dicts and the values of their watched
    /// keys (a hook container, a dispatch list). A class may keep them, so later items would
    /// change what was judged.
    fn freeze_state(&mut self, state: &Value) {
        match state {
            Value::Dict(id) => self.freeze_state_dict(*id),
            Value::Tuple(items, _) => {
                for item in items.iter() {
                    if let Value::Dict(id) = item {
                        self.freeze_state_dict(*id);
                    }
                }
            }
            _ => {}
        }
    }

    fn freeze_state_dict(&mut self, id: u32) {
        let Some(dict) = self.tables.dicts.get_mut(id as usize) else {
            return;
        };
        dict.flags |= DictInfo::FROZEN;
        if dict.flags & DictInfo::WATCHED == 0 {
            return;
        }
        let mut next = dict.last_watched;
        while let Some(entry) = self.tables.watched.get(next as usize) {
            next = entry.previous;
            let value = entry.value.clone();
            self.freeze(&value);
        }
    }

    // -----------------------------------------------------------------------------------
    // Storing

    /// `value` is stored (a container item, object state, the pickle's result) under `key`
    /// when it is a dict value: an import must be allowed as a value there.
    pub(super) fn store(&mut self, offset: u64, value: &Value, key: Option<&[u8]>) {
        match value {
            Value::Import(index) => {
                let index = *index;
                if self.import_storable(index) {
                    return;
                }
                let value_role = self.roles_of(index).and_then(|r| r.value.as_ref());
                let as_item = value_role.is_some_and(|v| v.as_item);
                if let Some(keys) = value_role.and_then(|v| v.only_under.as_ref()) {
                    match key {
                        Some(key) if keys.iter().any(|k| k.as_bytes() == key) => return,
                        None if as_item => return,
                        _ => {}
                    }
                    let place = match (as_item, keys.is_empty()) {
                        (true, true) => {
                            "as an item of a tuple or list (never under an attribute)".to_string()
                        }
                        (true, false) => format!("as a tuple or list item or under {}", keys.join(", ")),
                        (false, _) => format!(
                            "under {} (where its library calls it with arguments it computes)",
                            keys.join(", ")
                        ),
                    };
                    let under = key.map_or_else(
                        || "outside an attribute".to_string(),
                        |k| format!("under the key {:?}", String::from_utf8_lossy(k)),
                    );
                    let message = format!(
                        "offset {offset}: the pickle stores {} {under}; the policy allows it only as a value stored \
                         {place}",
                        self.shown(index)
                    );
                    self.role_finding(offset, index, message);
                    return;
                }
                let message = format!(
                    "offset {offset}: the pickle stores {} as a value, which the policy allows only as {}; \
                     a stored value may be called later by the library with any arguments",
                    self.shown(index),
                    self.role_words(index)
                );
                self.role_finding(offset, index, message);
            }
            Value::Tuple(items, meta) if !meta.storable => {
                // Only the items that hold the offending import are walked.
                let items = Rc::clone(items);
                for item in items.iter() {
                    let bad = match item {
                        Value::Import(index) => !self.import_storable(*index),
                        Value::Tuple(_, meta) => !meta.storable,
                        _ => false,
                    };
                    if bad {
                        self.store(offset, item, None);
                        return;
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether a value needs `store` at all (the fast path leaves those to the general one).
    #[inline]
    pub(super) fn needs_store_check(&self, value: &Value) -> bool {
        match value {
            Value::Import(index) => !self.import_storable(*index),
            Value::Tuple(_, meta) => !meta.storable,
            _ => false,
        }
    }

    // -----------------------------------------------------------------------------------
    // Items

    /// SETITEM(S), APPEND(S), ADDITEMS: `items` go into `target`.
    pub(super) fn add_items(&mut self, offset: u64, opcode: Opcode, target: &Value, items: &[Value]) {
        let pairs = matches!(opcode, Opcode::SetItem | Opcode::SetItems);
        if pairs {
            for pair in items.chunks(2) {
                if let [key, value] = pair {
                    self.store(offset, key, None);
                    self.store(offset, value, key.name_bytes());
                }
            }
        } else {
            for item in items {
                self.store(offset, item, None);
            }
        }
        if self.is_frozen(target) {
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                None,
                format!(
                    "{} at offset {offset} changes a {} after it was judged as an object's state (the object may \
                     hold it, so the change would bypass the state rules)",
                    opcode.name(),
                    target.what()
                ),
            );
            return;
        }
        match target {
            Value::Import(index) => self.state_injection(offset, *index, opcode.name(), "modifies"),
            Value::Dict(id) if pairs => self.dict_set(*id, items),
            Value::List(id) if !pairs => self.list_extend(*id, items),
            Value::Obj(id) => {
                let hooks = pairs
                    && items
                        .chunks(2)
                        .all(|pair| pair.get(1).is_some_and(|v| self.is_hook_object(v)));
                let bad_key = if pairs {
                    items
                        .chunks(2)
                        .find_map(|pair| pair.first().and_then(item_key_problem))
                } else {
                    None
                };
                self.obj_items(offset, opcode, *id, hooks, bad_key);
            }
            _ => {}
        }
    }

    /// An object of a class that a `hooks` state rule accepts in a hook container.
    fn is_hook_object(&self, value: &Value) -> bool {
        let Value::Obj(id) = value else {
            return false;
        };
        let rules = self.policy.state_rules();
        self.tables
            .objects
            .get(*id as usize)
            .filter(|o| o.class != NO_CLASS && o.flags & Obj::POISONED == 0)
            .and_then(|o| self.table.get(o.class as usize))
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| rules.is_hook_class(&t.module, &t.name))
    }

    fn obj_items(&mut self, offset: u64, opcode: Opcode, id: u32, hooks: bool, bad_key: Option<String>) {
        let Some(obj) = self.tables.objects.get(id as usize) else {
            return;
        };
        let flags = obj.flags;
        let class = obj.class;
        if flags & Obj::POISONED != 0 {
            return;
        }
        // APPENDS and ADDITEMS call `append`/`extend`/`add` looked up on the instance: after
        // its BUILD that may be anything the state put there.
        let calls_method = !matches!(opcode, Opcode::SetItem | Opcode::SetItems);
        let problem = if flags & Obj::MAY_ITEMS == 0 {
            Some("which may not receive items (its role allows no SETITEMS/APPENDS)".to_string())
        } else if let Some(key) = bad_key {
            // A mapping class may answer attribute lookups from its items (`__getattr__`),
            // so BUILD, copy and deepcopy would find a special method among them.
            Some(format!(
                "with the key {key}: an item may be what a lookup of a special method finds"
            ))
        } else if calls_method && flags & Obj::BUILT != 0 {
            Some(
                "after its BUILD: the items would be added through a method looked up on the instance"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            let made_by = self.made_by(class);
            let name = (class != NO_CLASS).then(|| self.import_name(class)).flatten();
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                name,
                format!(
                    "{} at offset {offset} adds items to the object made by {made_by} at offset {}, {problem}",
                    opcode.name(),
                    self.tables.objects.get(id as usize).map_or(0, |o| o.offset),
                ),
            );
            self.poison(id);
            return;
        }
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            // Hook items only: set by the first items, kept while every later one is one too.
            let first = obj.flags & Obj::HAS_ITEMS == 0;
            if hooks && (first || obj.flags & Obj::HOOK_ITEMS != 0) {
                obj.flags |= Obj::HOOK_ITEMS;
            } else {
                obj.flags &= !Obj::HOOK_ITEMS;
            }
            obj.flags |= Obj::HAS_ITEMS;
            obj.flags &= !Obj::EMPTY_ODICT;
        }
    }

    pub(super) fn set_numel(&mut self, id: u32, numel: u64) {
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.numel = numel;
        }
    }

    fn obj_text(&self, id: u32) -> Option<&ObjText> {
        self.tables.texts.get(&id)
    }

    fn poison(&mut self, id: u32) {
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.flags |= Obj::POISONED;
        }
    }

    fn made_by(&self, class: u32) -> String {
        if class == NO_CLASS {
            "a call".into()
        } else {
            self.shown(class)
        }
    }

    // -----------------------------------------------------------------------------------
    // Calls and constructions

    /// REDUCE, OBJ, INST (a call of `callable`), NEWOBJ, NEWOBJ_EX (`cls.__new__`): checks the
    /// use against the callee's role and returns the result.
    pub(super) fn call_op(
        &mut self,
        offset: u64,
        opcode: Opcode,
        callable: &Value,
        args: CallArgs<'_>,
        kwargs: Option<&Value>,
    ) -> Value {
        let index = match callable {
            Value::Import(index) => *index,
            Value::Unknown => return self.poisoned(offset, NO_CLASS),
            _ => {
                // Calling something that is not an import: reported by `call`.
                return self.poisoned(offset, NO_CLASS);
            }
        };
        if self.is_refused(index) {
            return self.poisoned(offset, index);
        }
        let new_object = match args {
            CallArgs::New(_) => true,
            // OBJ/INST without arguments is `cls.__new__(cls)`.
            CallArgs::Items(items) => items.is_empty(),
            CallArgs::Reduce(_) => false,
        };
        let positional: Option<&[Value]> = match args {
            CallArgs::Reduce(Value::Tuple(items, _)) | CallArgs::New(Value::Tuple(items, _)) => Some(items),
            CallArgs::Reduce(Value::EmptyTuple) | CallArgs::New(Value::EmptyTuple) => Some(&[]),
            CallArgs::Reduce(_) | CallArgs::New(_) => None,
            CallArgs::Items(items) => Some(items),
        };
        if self.is_trusted(index) {
            for arg in positional.into_iter().flatten() {
                self.store(offset, arg, None);
            }
            let flags = Obj::MAY_BUILD | Obj::MAY_ITEMS | Obj::CALLABLE | Obj::TRUSTED;
            return self.new_obj(Obj::new(offset, index, flags));
        }
        let Some(roles) = self.roles_of(index) else {
            return self.poisoned(offset, index);
        };
        if new_object {
            if let Some(role) = roles.reconstruct {
                return self.construct(offset, opcode, index, role, positional, kwargs);
            }
            if opcode == Opcode::NewObj || opcode == Opcode::NewObjEx {
                let message = format!(
                    "{} at offset {offset} constructs {} (cls.__new__), which the policy allows only as {}",
                    opcode.name(),
                    self.shown(index),
                    self.role_words(index)
                );
                self.role_finding(offset, index, message);
                return self.poisoned(offset, index);
            }
        }
        let Some(schema) = roles.call.as_deref() else {
            let message = format!(
                "{} at offset {offset} calls {}, which the policy allows only as {}",
                opcode.name(),
                self.shown(index),
                self.role_words(index)
            );
            self.role_finding(offset, index, message);
            return self.poisoned(offset, index);
        };
        let Some(args) = positional else {
            self.argument_finding(
                offset,
                opcode,
                index,
                "its arguments are not a tuple the scanner can read (too large, or not a tuple)".into(),
            );
            return self.poisoned(offset, index);
        };
        match self.check_call(offset, opcode, index, schema, args) {
            Ok(()) => self.call_result(offset, index, schema, args),
            Err(()) => self.poisoned(offset, index),
        }
    }

    fn argument_finding(&mut self, offset: u64, opcode: Opcode, index: u32, problem: String) {
        let name = self.import_name(index);
        let shown = self.shown(index);
        self.finding(
            FindingKind::ArgumentViolation,
            Severity::Critical,
            offset,
            name,
            format!(
                "{} at offset {offset} calls {shown} with arguments its schema does not allow: {problem}",
                opcode.name()
            ),
        );
    }

    /// `cls.__new__(cls, *args)` of a class with the reconstruct role.
    fn construct(
        &mut self,
        offset: u64,
        opcode: Opcode,
        class: u32,
        role: Reconstruct,
        args: Option<&[Value]>,
        kwargs: Option<&Value>,
    ) -> Value {
        let no_kwargs = kwargs.is_none_or(|k| match k {
            Value::Dict(id) => self
                .tables
                .dicts
                .get(*id as usize)
                .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
            Value::None => true,
            _ => false,
        });
        let plain_args = match args {
            Some([]) => no_kwargs,
            Some(items) => role.newargs && items.iter().all(|v| !self.needs_store_check(v)),
            None => false,
        };
        if !plain_args || (!no_kwargs && !role.newargs) {
            let message = format!(
                "{} at offset {offset} passes arguments to {}.__new__; the policy allows it only as a class \
                 reconstructed without arguments",
                opcode.name(),
                self.shown(class)
            );
            self.role_finding(offset, class, message);
            return self.poisoned(offset, class);
        }
        let mut obj = Obj::new(offset, class, Obj::MAY_BUILD);
        if args.unwrap_or_default().iter().any(|a| self.is_str_like(a)) {
            obj.flags |= Obj::STR_LIKE;
        }
        for arg in args.unwrap_or_default() {
            self.freeze(arg);
        }
        obj.reconstruct = Some(role);
        if role.items {
            obj.flags |= Obj::MAY_ITEMS;
        }
        if role.callable {
            obj.flags |= Obj::CALLABLE;
        }
        self.new_obj(obj)
    }

    /// Checks `args` against `schema`; reports the first misfit.
    fn check_call(
        &mut self,
        offset: u64,
        opcode: Opcode,
        index: u32,
        schema: &CallSchema,
        args: &[Value],
    ) -> Result<(), ()> {
        if let Err(misfit) = self.match_args(offset, &schema.args, args, &schema.checks) {
            match misfit {
                Misfit::Role(import, why) => {
                    let message = format!(
                        "{} at offset {offset} passes {} to {} {why}, which the policy allows only as {}",
                        opcode.name(),
                        self.shown(import),
                        self.shown(index),
                        self.role_words(import)
                    );
                    self.role_finding(offset, import, message);
                }
                Misfit::Shape(problem) => self.argument_finding(offset, opcode, index, problem),
            }
            return Err(());
        }
        Ok(())
    }

    fn match_args(
        &mut self,
        offset: u64,
        spec: &Args,
        args: &[Value],
        checks: &[Check],
    ) -> Result<(), Misfit> {
        if !spec.accepts_count(args.len()) {
            let expected = if spec.rest {
                format!("at least {}", spec.required())
            } else if spec.required() == spec.items.len() {
                format!("{}", spec.items.len())
            } else {
                format!("{} to {}", spec.required(), spec.items.len())
            };
            return Err(Misfit::Shape(format!(
                "{} arguments, where it takes {expected} ({spec})",
                args.len()
            )));
        }
        for (i, arg) in args.iter().enumerate() {
            let Some(arg_spec) = spec.spec(i) else {
                return Err(Misfit::Shape(format!("argument {i} is not expected")));
            };
            self.match_arg(offset, arg_spec, arg, args)
                .map_err(|misfit| match misfit {
                    Misfit::Shape(why) => {
                        Misfit::Shape(format!("argument {i} is {why}; expected {arg_spec}"))
                    }
                    role => role,
                })?;
        }
        for check in checks {
            match check {
                Check::TensorView => self.check_tensor_view(args).map_err(Misfit::Shape)?,
                Check::NewArgs => self.check_newargs(args)?,
                Check::TreeArgs => self.check_tree_args(args).map_err(Misfit::Shape)?,
                Check::ShapeOf(_) => {}
                Check::BaseItems => self.check_base_items(args).map_err(Misfit::Shape)?,
                Check::RangeLen(max) => check_range_len(args, *max).map_err(Misfit::Shape)?,
                Check::RangeState(max) => self.check_range_state(args, *max).map_err(Misfit::Shape)?,
                Check::DtypeSize(max) => match args.first().and_then(Value::as_name).and_then(dtype_itemsize) {
                    Some(size) if size > *max => {
                        return Err(Misfit::Shape(format!(
                            "a dtype of {size} bytes an element (at most {max}): arrays of it allocate that much \
                             per element when they are made or filled"
                        )))
                    }
                    _ => {}
                },
            }
        }
        // The callee may keep what it was given: nothing judged here may change afterwards.
        for arg in args {
            self.freeze(arg);
        }
        Ok(())
    }

    /// `copyreg._reconstructor(cls, dict, state)`: `dict.__init__(obj, state)` makes the state's
    /// entries the object's items, where a special name would answer a lookup of a special method.
    fn check_base_items(&self, args: &[Value]) -> Result<(), String> {
        let dict_base = matches!(args.get(1), Some(Value::Import(base)) if self.import_is_named(*base, "builtins", "dict"));
        if !dict_base {
            return Ok(());
        }
        // dict.__init__ takes any iterable of pairs; copyreg writes a dict (or None).
        let id = match args.get(2) {
            Some(Value::Dict(id)) => id,
            None | Some(Value::None) => return Ok(()),
            Some(other) => {
                return Err(format!(
                    "the items of a dict subclass are {}, not a dict whose keys can be judged",
                    self.describe_value(other)
                ))
            }
        };
        let flags = self.tables.dicts.get(*id as usize).map_or(0, |d| d.flags);
        if flags & DictInfo::SPECIAL_KEY != 0 {
            let key = self.tables.special.get(id).map_or("__?", |k| &**k);
            return Err(format!(
                "the items of a dict subclass include the special name {key:?}"
            ));
        }
        if flags & DictInfo::MADE_KEY != 0 {
            return Err(
                "the items of a dict subclass have keys made at load time (which may equal a special name)"
                    .into(),
            );
        }
        Ok(())
    }

    /// `_new_Index(RangeIndex, state)`: the range the state's start, stop and step make is
    /// bounded like `range` itself (the index materialises it when the library uses it).
    fn check_range_state(&self, args: &[Value], max: u64) -> Result<(), String> {
        let range_class = matches!(args.first(), Some(Value::Import(class))
            if ["pandas", "pandas.core.indexes.range"]
                .iter()
                .any(|module| self.import_is_named(*class, module, "RangeIndex")));
        let Some(Value::Dict(id)) = args.get(1).filter(|_| range_class) else {
            return Ok(());
        };
        // Newest first: the first value seen for a key is the one the dict keeps.
        let mut bounds: [Option<Value>; 3] = [None, None, None];
        for watched in self.watched_of(*id) {
            let slot = match &*watched.rule.key {
                "start" => 0,
                "stop" => 1,
                "step" => 2,
                _ => continue,
            };
            if let Some(bound @ None) = bounds.get_mut(slot) {
                *bound = Some(watched.value.clone());
            }
        }
        let [start, stop, step] = bounds.map(|b| b.filter(|v| !matches!(v, Value::None)));
        let args = [
            start.unwrap_or(Value::Int(0)),
            stop.unwrap_or(Value::Int(0)),
            step.unwrap_or(Value::Int(1)),
        ];
        check_range_len(&args, max)
    }

    /// Marks a container (or the containers in a tuple) as judged: later items or BUILDs on it
    /// are refused.
    fn freeze(&mut self, value: &Value) {
        match value {
            Value::Dict(id) => {
                if let Some(dict) = self.tables.dicts.get_mut(*id as usize) {
                    dict.flags |= DictInfo::FROZEN;
                }
            }
            Value::List(id) => {
                if let Some(list) = self.tables.lists.get_mut(*id as usize) {
                    list.frozen = true;
                }
            }
            Value::Obj(id) => {
                if let Some(obj) = self.tables.objects.get_mut(*id as usize) {
                    obj.flags |= Obj::FROZEN;
                }
            }
            Value::Tuple(items, _) => {
                for item in items.iter() {
                    self.freeze(item);
                }
            }
            _ => {}
        }
    }

    /// `__newobj__(cls, *args)` / `__newobj_ex__(cls, args, kwargs)`: arguments to `__new__`
    /// only for a class whose role takes them.
    fn check_newargs(&self, args: &[Value]) -> Result<(), Misfit> {
        let Some(Value::Import(class)) = args.first() else {
            return Ok(());
        };
        let class = *class;
        if self.is_refused(class) || self.is_trusted(class) {
            return Ok(());
        }
        let newargs = self
            .roles_of(class)
            .and_then(|r| r.reconstruct)
            .is_some_and(|r| r.newargs);
        let empty = |v: &Value| match v {
            Value::EmptyTuple | Value::None => true,
            Value::Dict(id) => self
                .tables
                .dicts
                .get(*id as usize)
                .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
            _ => false,
        };
        let rest = args.get(1..).unwrap_or_default();
        // `__newobj_ex__` passes (args, kwargs); `__newobj__` the arguments themselves.
        let no_args = rest.iter().all(empty);
        if no_args || newargs {
            Ok(())
        } else {
            Err(Misfit::Role(class, "with arguments for its __new__"))
        }
    }

    /// `Tree(n_features, n_classes, n_outputs)` copies `n_outputs` entries of `n_classes`.
    fn check_tree_args(&self, args: &[Value]) -> Result<(), String> {
        let n_outputs = match args.get(2) {
            Some(Value::Int(n)) => *n,
            _ => return Err("n_outputs is not an int".into()),
        };
        let numel = match args.get(1) {
            Some(Value::Obj(id)) => self
                .tables
                .objects
                .get(*id as usize)
                .map(|o| o.numel)
                .filter(|n| *n != u64::MAX),
            _ => None,
        };
        match numel {
            Some(numel) if i64::try_from(numel).is_ok_and(|n| n == n_outputs) => Ok(()),
            Some(numel) => Err(format!(
                "n_classes holds {numel} elements but n_outputs is {n_outputs} (Tree reads n_outputs of them)"
            )),
            None => Err("n_classes is not an array whose size the scanner knows".into()),
        }
    }

    fn match_arg(
        &mut self,
        offset: u64,
        spec: &ArgSpec,
        value: &Value,
        args: &[Value],
    ) -> Result<(), Misfit> {
        let mut first = None;
        for kind in &spec.kinds {
            match self.match_kind(offset, kind, value, args) {
                Ok(()) => return Ok(()),
                Err(misfit) => {
                    // A role misfit is the most telling; otherwise the first kind's reason.
                    let replace = matches!(
                        (&first, &misfit),
                        (None, _) | (Some(Misfit::Shape(_)), Misfit::Role(..))
                    );
                    if replace {
                        first = Some(misfit);
                    }
                }
            }
        }
        Err(first.unwrap_or_else(|| Misfit::Shape("not any kind the schema names".into())))
    }

    fn describe_value(&self, value: &Value) -> String {
        match value {
            Value::Import(index) => format!("the import {}", self.shown(*index)),
            Value::Obj(id) => {
                let class = self
                    .tables
                    .objects
                    .get(*id as usize)
                    .map_or(NO_CLASS, |o| o.class);
                format!("the result of {}", self.made_by(class))
            }
            Value::Int(v) => format!("the int {v}"),
            Value::Long(n) => format!("an int of {n} bytes"),
            Value::Bytes { len, .. } => format!("{len} bytes"),
            Value::Name(_) | Value::ShortName(_) => {
                let text = value.as_name().unwrap_or_default();
                let shown: String = text.chars().take(60).collect();
                format!("the str {shown:?}")
            }
            Value::Tuple(items, _) => format!("a tuple of {}", items.len()),
            other => format!("a {}", other.what()),
        }
    }

    fn import_is(&self, index: u32, names: &[crate::policy::roles::Name]) -> bool {
        self.table
            .get(index as usize)
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| names.iter().any(|n| n.is(&t.module, &t.name)))
    }

    fn obj_class_is(&self, id: u32, module: &str, name: &str) -> bool {
        self.tables
            .objects
            .get(id as usize)
            .filter(|o| o.class != NO_CLASS && o.flags & Obj::POISONED == 0)
            .and_then(|o| self.table.get(o.class as usize))
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| &*t.module == module && &*t.name == name)
    }

    fn match_kind(&mut self, offset: u64, kind: &Kind, value: &Value, args: &[Value]) -> Result<(), Misfit> {
        let shape = |this: &Self| Err(Misfit::Shape(this.describe_value(value)));
        match kind {
            Kind::Str { max, one_of } => match value.name_bytes() {
                Some(text) if text.len() <= *max => match one_of {
                    Some(set) if !set.iter().any(|s| s.as_bytes() == text) => shape(self),
                    _ => Ok(()),
                },
                _ => shape(self),
            },
            Kind::Bytes { max } => match value {
                Value::Bytes { len, .. } if len <= max => Ok(()),
                Value::Obj(id) if self.obj_class_is(*id, "_codecs", "encode") => {
                    let len = self.obj_text(*id).map_or(u64::MAX, |t| t.len);
                    if len <= *max {
                        Ok(())
                    } else {
                        shape(self)
                    }
                }
                _ => shape(self),
            },
            Kind::BigInt { max } => match value {
                Value::Int(_) | Value::Bool(_) => Ok(()),
                Value::Long(len) if len <= max => Ok(()),
                _ => shape(self),
            },
            Kind::Text => match value {
                Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } => Ok(()),
                _ => shape(self),
            },
            Kind::FractionStr => match value.as_name() {
                Some(text) if is_fraction_str(text) => Ok(()),
                _ => shape(self),
            },
            // Judged against the object they are the state of (see `build_obj`).
            Kind::NdarrayState | Kind::DtypeState => shape(self),
            Kind::Int { min, max } => {
                let v = match value {
                    Value::Int(v) => Some(*v),
                    Value::Bool(b) => Some(i64::from(*b)),
                    _ => None,
                };
                match v {
                    Some(v) if v >= *min && v <= *max => Ok(()),
                    _ => shape(self),
                }
            }
            Kind::Bool(want) => {
                let v = match value {
                    Value::Bool(b) => Some(*b),
                    Value::Int(0) => Some(false),
                    Value::Int(1) => Some(true),
                    _ => None,
                };
                match (v, want) {
                    (Some(_), None) => Ok(()),
                    (Some(v), Some(w)) if v == *w => Ok(()),
                    _ => shape(self),
                }
            }
            Kind::Float => match value {
                Value::Float(_) | Value::Int(_) => Ok(()),
                _ => shape(self),
            },
            Kind::None => match value {
                Value::None => Ok(()),
                _ => shape(self),
            },
            Kind::Ints { max } => match value {
                Value::EmptyTuple => Ok(()),
                Value::Tuple(items, _)
                    if items.len() <= *max && items.iter().all(|v| matches!(v, Value::Int(n) if *n >= 0)) =>
                {
                    Ok(())
                }
                _ => shape(self),
            },
            Kind::Decimal => match value.as_name() {
                Some(text) if is_bounded_decimal(text) => Ok(()),
                _ => shape(self),
            },
            Kind::List => match value {
                Value::List(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Dict => match value {
                Value::Dict(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Empty => {
                let empty = match value {
                    Value::EmptyTuple => true,
                    Value::List(id) => self.tables.lists.get(*id as usize).is_some_and(|l| l.len == 0),
                    Value::Dict(id) => self
                        .tables
                        .dicts
                        .get(*id as usize)
                        .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                    _ => false,
                };
                if empty {
                    Ok(())
                } else {
                    shape(self)
                }
            }
            Kind::EmptyOrderedDict => match value {
                Value::Obj(id)
                    if self
                        .tables
                        .objects
                        .get(*id as usize)
                        .is_some_and(|o| o.flags & Obj::EMPTY_ODICT != 0) =>
                {
                    Ok(())
                }
                _ => Err(Misfit::Shape(format!(
                    "{} (hooks must be an empty OrderedDict(): real files hold none)",
                    self.describe_value(value)
                ))),
            },
            Kind::Data => self.match_data(value),
            Kind::Object => match value {
                Value::Obj(_) => Ok(()),
                _ => shape(self),
            },
            Kind::State => match self.state_problem(value, StateShape::Any) {
                Some(problem) => Err(Misfit::Shape(problem)),
                None => {
                    self.freeze_state(value);
                    Ok(())
                }
            },
            Kind::Pid => match value {
                Value::Persistent | Value::Storage(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Class(names) | Kind::Callable(names) => match value {
                Value::Import(index) if !self.is_refused(*index) && self.import_is(*index, names) => Ok(()),
                Value::Import(index) if self.is_refused(*index) => Ok(()),
                _ => shape(self),
            },
            Kind::Reconstructable => match value {
                Value::Import(index) => {
                    let index = *index;
                    let ok = self.is_refused(index)
                        || self.is_trusted(index)
                        || self.roles_of(index).is_some_and(|r| r.reconstruct.is_some());
                    if ok {
                        Ok(())
                    } else {
                        Err(Misfit::Role(index, "as the class to reconstruct"))
                    }
                }
                _ => shape(self),
            },
            Kind::Result(names) => match value {
                Value::Obj(id) => {
                    let ok = self.tables.objects.get(*id as usize).is_some_and(|o| {
                        o.flags & Obj::POISONED != 0
                            || (o.class != NO_CLASS && self.import_is(o.class, names))
                            || (o.maker != NO_CLASS && self.import_is(o.maker, names))
                    });
                    if ok {
                        Ok(())
                    } else {
                        shape(self)
                    }
                }
                _ => shape(self),
            },
            Kind::ArgsOf(slot) => {
                let callee = match args.get(*slot) {
                    Some(Value::Import(index)) => *index,
                    _ => {
                        return Err(Misfit::Shape(
                            "arguments for a callee the scanner cannot see".into(),
                        ))
                    }
                };
                if self.is_refused(callee) {
                    return Ok(());
                }
                let items: Vec<Value> = match value {
                    Value::Tuple(items, _) => items.to_vec(),
                    Value::EmptyTuple => Vec::new(),
                    _ => return shape(self),
                };
                if self.is_trusted(callee) {
                    return items.iter().try_for_each(|v| self.match_data(v));
                }
                let Some(schema) = self.roles_of(callee).and_then(|r| r.call.as_deref()) else {
                    return Err(Misfit::Role(callee, "to be called by it"));
                };
                self.match_args(offset, &schema.args, &items, &schema.checks)
                    .map_err(|misfit| match misfit {
                        Misfit::Shape(why) => Misfit::Shape(format!(
                            "arguments for {} that its schema does not allow: {why}",
                            self.shown(callee)
                        )),
                        role => role,
                    })
            }
            Kind::Tuple(inner) => {
                let items: Vec<Value> = match value {
                    Value::Tuple(items, _) => items.to_vec(),
                    Value::EmptyTuple => Vec::new(),
                    _ => return shape(self),
                };
                self.match_args(offset, inner, &items, &[])
            }
            Kind::TorchFile => match value {
                Value::Bytes { at, len } => {
                    self.note_nested(offset, *at, *len, false, None);
                    Ok(())
                }
                Value::Obj(id) if self.obj_class_is(*id, "_codecs", "encode") => {
                    let (at, len, text) = self.obj_text(*id).map_or((u64::MAX, 0, None), |t| {
                        (t.at.unwrap_or(u64::MAX), t.len, t.text.clone())
                    });
                    // A short str has no position kept, but its text.
                    let inline =
                        text.and_then(|t| t.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect());
                    self.note_nested(offset, at, len, true, inline);
                    Ok(())
                }
                _ => shape(self),
            },
        }
    }

    /// Plain data: no import that may not be stored, nothing the scanner cannot see into.
    fn match_data(&self, value: &Value) -> Result<(), Misfit> {
        match value {
            Value::Import(index) if !self.import_storable(*index) => {
                Err(Misfit::Role(*index, "as a plain-data argument"))
            }
            Value::Tuple(items, meta) if !meta.storable => {
                for item in items.iter() {
                    self.match_data(item)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `(storage, offset, size, stride)`: the elements the view reaches lie in the storage.
    fn check_tensor_view(&self, args: &[Value]) -> Result<(), String> {
        let numel = match args.first() {
            Some(Value::Storage(numel)) => Some(*numel),
            // A storage the loader makes from nested bytes: its size is checked there.
            _ => None,
        };
        let offset = match args.get(1) {
            Some(Value::Int(v)) if *v >= 0 => *v as u64,
            _ => return Err("the storage offset is not a non-negative int".into()),
        };
        let (Some(size), Some(stride)) = (args.get(2).and_then(dims), args.get(3).and_then(dims)) else {
            return Err("the size and stride are not tuples of non-negative ints".into());
        };
        if size.len() != stride.len() {
            return Err(format!(
                "the size has {} dimensions and the stride {}",
                size.len(),
                stride.len()
            ));
        }
        let Some(numel) = numel else {
            return Ok(());
        };
        if size.iter().any(|n| n == 0) {
            return if offset <= numel {
                Ok(())
            } else {
                Err(format!(
                    "the storage offset {offset} lies beyond its {numel} elements"
                ))
            };
        }
        // The last element the view reaches: offset + sum((size - 1) * stride).
        let last = size.iter().zip(stride.iter()).try_fold(offset, |acc, (n, s)| {
            (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
        });
        match last {
            Some(last) if last < numel => Ok(()),
            _ => Err(format!(
                "the view (offset {offset}, size {size:?}, stride {stride:?}) reaches beyond the storage's \
                 {numel} elements (an out-of-bounds read)"
            )),
        }
    }

    fn call_result(&mut self, offset: u64, index: u32, schema: &'p CallSchema, args: &[Value]) -> Value {
        let result = self.call_result_object(offset, index, schema, args);
        for check in &schema.checks {
            if let (Check::ShapeOf(slot), Value::Obj(id)) = (check, &result) {
                if let Some(numel) = args.get(*slot).and_then(shape_numel) {
                    self.set_numel(*id, numel);
                }
            }
        }
        result
    }

    fn call_result_object(
        &mut self,
        offset: u64,
        index: u32,
        schema: &'p CallSchema,
        args: &[Value],
    ) -> Value {
        let callable = if schema.callable_result { Obj::CALLABLE } else { 0 };
        match &schema.result {
            ResultSpec::Value => {
                let mut obj = Obj::new(offset, index, callable | self.result_flags(index));
                obj.schema = Some(schema);
                let text = match args.first() {
                    _ if !self.import_is_named(index, "_codecs", "encode") => None,
                    Some(Value::TextAt { at, len }) => Some(ObjText {
                        at: Some(*at),
                        len: *len,
                        text: None,
                    }),
                    Some(other) => other.as_name().map(|text| ObjText {
                        at: None,
                        len: text.chars().count() as u64,
                        text: Some(Rc::from(text)),
                    }),
                    None => None,
                };
                let value = self.new_obj(obj);
                if let (Some(text), Value::Obj(id)) = (text, &value) {
                    self.tables.texts.insert(*id, text);
                }
                value
            }
            ResultSpec::Fresh { items, .. } => {
                let mut flags = Obj::MAY_BUILD | callable;
                if *items {
                    flags |= Obj::MAY_ITEMS;
                }
                if args.is_empty() && self.import_is_named(index, "collections", "OrderedDict") {
                    flags |= Obj::EMPTY_ODICT;
                }
                let mut obj = Obj::new(offset, index, flags);
                obj.schema = Some(schema);
                // `numpy.dtype(numpy.record, ...)`: a structured (void) dtype, kind 'V'.
                let text = match args.first() {
                    Some(Value::Import(class)) if self.is_record_class(*class) => Some("V"),
                    other => other.and_then(Value::as_name),
                }
                .map(|text| ObjText {
                    text: Some(Rc::from(text)),
                    ..ObjText::default()
                });
                let value = self.new_obj(obj);
                if let (Some(text), Value::Obj(id)) = (text, &value) {
                    self.tables.texts.insert(*id, text);
                }
                value
            }
            ResultSpec::New { slot, .. } => {
                let class = match args.get(*slot) {
                    Some(Value::Import(class)) => *class,
                    _ => return self.poisoned(offset, index),
                };
                if self.is_refused(class) || self.is_trusted(class) {
                    let flags = Obj::MAY_BUILD | Obj::MAY_ITEMS | Obj::CALLABLE | Obj::TRUSTED;
                    return self.new_obj(Obj::new(offset, class, flags));
                }
                let role = self.roles_of(class).and_then(|r| r.reconstruct);
                let mut flags = Obj::MAY_BUILD;
                if role.is_some_and(|r| r.items) {
                    flags |= Obj::MAY_ITEMS;
                }
                if role.is_some_and(|r| r.callable) {
                    flags |= Obj::CALLABLE;
                }
                // `_reconstructor(cls, str, text)`, `__newobj__(cls, text)`: a str subclass.
                if args
                    .get(1..)
                    .unwrap_or_default()
                    .iter()
                    .any(|a| self.is_str_like(a))
                {
                    flags |= Obj::STR_LIKE;
                }
                let mut obj = Obj::new(offset, class, flags);
                obj.maker = index;
                obj.schema = Some(schema);
                obj.reconstruct = role;
                self.new_obj(obj)
            }
            ResultSpec::Attribute => {
                let (Some(Value::Import(owner)), Some(attribute)) =
                    (args.first(), args.get(1).and_then(Value::as_name))
                else {
                    return self.poisoned(offset, index);
                };
                let Some(owner) = self.import_name(*owner) else {
                    return self.poisoned(offset, index);
                };
                let dotted = format!("{}.{attribute}", owner.name);
                self.import(offset, Opcode::Reduce, &owner.module, &dotted)
            }
        }
    }

    /// Flags a value-returning call gives its result: numpy's `scalar` may return a `str_`.
    fn result_flags(&self, index: u32) -> u16 {
        let Some(target) = self.table.get(index as usize).and_then(|e| e.target.as_ref()) else {
            return 0;
        };
        match (&*target.module, &*target.name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Obj::STR_LIKE,
            _ => 0,
        }
    }

    /// A str, or something made at load time that may be one.
    fn is_str_like(&self, value: &Value) -> bool {
        match value {
            Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } => true,
            Value::Import(index) => self.import_is_named(*index, "builtins", "str"),
            Value::Obj(id) => self.obj_flags(*id) & Obj::STR_LIKE != 0,
            _ => false,
        }
    }

    fn import_is_named(&self, index: u32, module: &str, name: &str) -> bool {
        self.table
            .get(index as usize)
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| &*t.module == module && &*t.name == name)
    }

    /// `numpy.record`, the scalar type of structured arrays, under any of its module paths.
    fn is_record_class(&self, index: u32) -> bool {
        ["numpy", "numpy._core.records", "numpy.core.records"]
            .iter()
            .any(|module| self.import_is_named(index, module, "record"))
    }

    // -----------------------------------------------------------------------------------
    // BUILD

    /// An opcode that changes an imported object itself (a class or function the process shares).
    fn state_injection(&mut self, offset: u64, index: u32, opcode: &str, verb: &str) {
        let name = self.import_name(index);
        let shown = self.shown(index);
        self.finding(
            FindingKind::StateInjection,
            Severity::Critical,
            offset,
            name,
            format!("{opcode} at offset {offset} {verb} the imported object {shown} (state injection)"),
        );
    }

    pub(super) fn build_op(&mut self, offset: u64, target: &Value, state: &Value) {
        match target {
            Value::Obj(id) => self.build_obj(offset, *id, state),
            Value::Import(index) => self.state_injection(offset, *index, "BUILD", "sets the state of"),
            Value::Unknown => {}
            other => {
                let what = other.what();
                self.finding(
                    FindingKind::UnsafeBuild,
                    Severity::High,
                    offset,
                    None,
                    format!("BUILD at offset {offset} sets the state of a {what}, which the pickle did not make by a call"),
                );
            }
        }
    }

    fn build_obj(&mut self, offset: u64, id: u32, state: &Value) {
        let Some(obj) = self.tables.objects.get(id as usize).cloned() else {
            return;
        };
        if obj.flags & Obj::POISONED != 0 {
            return;
        }
        // Names for messages, made only when there is something to report.
        let made_by = |this: &Self| this.made_by(obj.class);
        let name = |this: &Self| {
            (obj.class != NO_CLASS)
                .then(|| this.import_name(obj.class))
                .flatten()
        };
        let problem = if obj.flags & Obj::BUILT != 0 {
            let made_by = made_by(self);
            Some(format!(
                "a second BUILD of the object made by {made_by} at offset {}: after the first, BUILD calls a \
                 __setstate__ the state may have put on the instance",
                obj.offset
            ))
        } else if obj.flags & Obj::FROZEN != 0 {
            let made_by = made_by(self);
            Some(format!(
                "BUILD of the object made by {made_by} at offset {} after it was passed to a call or judged as \
                 part of a state (what was judged would change)",
                obj.offset
            ))
        } else if obj.flags & Obj::MAY_BUILD == 0 {
            let made_by = made_by(self);
            Some(format!(
                "BUILD of the result of {made_by} at offset {}, which may be a shared object (a singleton or \
                 cached instance): its state would change for the whole process",
                obj.offset
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            let name = name(self);
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                name,
                format!("offset {offset}: {problem}"),
            );
            self.poison(id);
            return;
        }
        if let Some(o) = self.tables.objects.get_mut(id as usize) {
            o.flags |= Obj::BUILT;
        }
        // The state the object may receive: the call's result spec, else its class's role.
        let spec = obj.schema.and_then(|s| match &s.result {
            ResultSpec::Fresh { state, .. } | ResultSpec::New { state, .. } => state.clone(),
            _ => None,
        });
        let special = spec.as_ref().and_then(|spec| {
            spec.kinds
                .iter()
                .find(|k| matches!(k, Kind::NdarrayState | Kind::DtypeState))
                .cloned()
        });
        let problem = match (special, spec) {
            (Some(Kind::NdarrayState), _) => self.ndarray_state(id, state).err(),
            (Some(_), _) => self.dtype_state(id, state).err(),
            (None, Some(spec)) => match self.match_arg(offset, &spec, state, &[]) {
                Ok(()) => self.state_problem(state, StateShape::Any),
                Err(Misfit::Shape(why)) => Some(format!("the state is {why}; expected {spec}")),
                Err(Misfit::Role(import, why)) => Some(format!(
                    "the state holds {} {why}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                )),
            },
            (None, None) => {
                let shape = if obj.flags & Obj::TRUSTED != 0 {
                    StateShape::Any
                } else {
                    obj.reconstruct.map_or(StateShape::Dict, |r| r.state)
                };
                self.state_problem(state, shape)
            }
        };
        if let Some(problem) = problem {
            let (name, made_by) = (name(self), made_by(self));
            self.finding(
                FindingKind::StateViolation,
                Severity::Critical,
                offset,
                name,
                format!(
                    "BUILD at offset {offset} gives the object made by {made_by} at offset {} a state the policy \
                     refuses: {problem}",
                    obj.offset
                ),
            );
            self.poison(id);
        } else {
            self.freeze_state(state);
        }
    }

    /// numpy's `ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata, ...))`:
    /// records the element count; a list of objects must hold exactly that many.
    fn ndarray_state(&mut self, id: u32, state: &Value) -> Result<(), String> {
        let items: Vec<Value> = match state {
            Value::Tuple(items, _) => items.to_vec(),
            other => {
                return Err(format!(
                    "{}, not numpy's array state tuple",
                    self.describe_value(other)
                ))
            }
        };
        // (shape, dtype, is_fortran, rawdata) or (version, shape, ...), masked arrays add items.
        let first = usize::from(matches!(items.first(), Some(Value::Int(_))));
        let Some(shape) = items.get(first).and_then(dims) else {
            return Err("the array shape is not a tuple of non-negative ints".into());
        };
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d))
            .filter(|n| *n <= 1 << 48)
            .ok_or_else(|| format!("the array shape {shape:?} has too many elements"))?;
        let rest = items.get(first + 1..).unwrap_or_default();
        if rest.len() < 3 {
            return Err("numpy's array state has too few items".into());
        }
        for item in rest {
            self.match_data(item).map_err(|m| match m {
                Misfit::Role(import, _) => format!(
                    "it holds {}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                ),
                Misfit::Shape(why) => why,
            })?;
        }
        if let Some(Value::List(list)) = rest.get(2) {
            let len = self
                .tables
                .lists
                .get(*list as usize)
                .map_or(0, |l| u64::from(l.len));
            if len != numel {
                return Err(format!(
                    "the array of shape {shape:?} ({numel} elements) is given {len} objects: numpy reads past the list (memory corruption)"
                ));
            }
        }
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.numel = numel;
        }
        Ok(())
    }

    /// numpy's `dtype.__setstate__`: the flags must be the ones numpy writes for the kind.
    fn dtype_state(&mut self, id: u32, state: &Value) -> Result<(), String> {
        let Value::Tuple(items, _) = state else {
            return Err(format!(
                "{}, not numpy's dtype state tuple",
                self.describe_value(state)
            ));
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        };
        let version_ok = matches!((int(0), items.len()), (Some(3), 8) | (Some(4), 9));
        if !version_ok {
            return Err("the dtype state has a version or length numpy does not write".into());
        }
        for item in items.iter() {
            self.match_data(item)
                .map_err(|_| "the dtype state holds an import it may not".to_string())?;
        }
        let Some(flags) = int(7) else {
            return Err("the dtype flags are not an int".into());
        };
        let descr = self.obj_text(id).and_then(|t| t.text.clone());
        let descr = descr.as_deref().unwrap_or("");
        if !is_canonical_descr(descr) {
            return Err(format!(
                "the dtype was made from {descr:?}, not a kind and size as numpy writes it, so its flags \
                 cannot be judged"
            ));
        }
        let objects_inside = self.dtype_parts_hold_objects(items)?;
        if !dtype_flags_ok(descr, flags, objects_inside) {
            return Err(format!(
                "flags {flags} on a {descr:?} dtype{}: numpy trusts them, and would read raw bytes as object \
                 pointers or objects as raw bytes",
                if objects_inside { " with object fields" } else { "" }
            ));
        }
        if objects_inside || descr.starts_with('O') {
            if let Some(obj) = self.tables.objects.get_mut(id as usize) {
                obj.flags |= Obj::HOLDS_OBJECTS;
            }
        }
        Ok(())
    }

    /// Whether a dtype state's subarray base or fields hold objects; an error when the
    /// scanner cannot tell (parts that are not dtypes, or dtypes that could still change).
    fn dtype_parts_hold_objects(&self, items: &[Value]) -> Result<bool, String> {
        let subarray = match items.get(2) {
            None | Some(Value::None) => false,
            Some(Value::Tuple(parts, _)) => match parts.first() {
                Some(Value::Obj(base)) if parts.len() == 2 && self.is_dtype_obj(*base) => {
                    if self.obj_flags(*base) & Obj::BUILT == 0 && !self.dtype_holds_objects(*base) {
                        return Err(
                            "the subarray's dtype is not built yet (its flags could still change)".into(),
                        );
                    }
                    self.dtype_holds_objects(*base)
                }
                _ => return Err("the subarray is not (dtype, shape)".into()),
            },
            Some(other) => return Err(format!("the subarray is {}", self.describe_value(other))),
        };
        let fields = match items.get(4) {
            None | Some(Value::None) => false,
            Some(Value::Dict(id)) => {
                let flags = self.tables.dicts.get(*id as usize).map_or(0, |d| d.flags);
                if flags & DictInfo::DTYPE_OPEN != 0 {
                    return Err("a field's dtype is not built yet (its flags could still change)".into());
                }
                flags & DictInfo::DTYPE_OBJECTS != 0
            }
            Some(other) => return Err(format!("the fields are {}", self.describe_value(other))),
        };
        Ok(subarray || fields)
    }

    /// An object made by `numpy.dtype(...)` (its state is judged as a dtype state).
    fn is_dtype_obj(&self, id: u32) -> bool {
        self.tables
            .objects
            .get(id as usize)
            .and_then(|o| o.schema)
            .is_some_and(|schema| match &schema.result {
                ResultSpec::Fresh {
                    state: Some(spec), ..
                } => spec.kinds.iter().any(|k| matches!(k, Kind::DtypeState)),
                _ => false,
            })
    }

    /// Whether a dtype object's items are Python objects: an object kind, object fields, or a
    /// descr the scanner cannot read.
    fn dtype_holds_objects(&self, id: u32) -> bool {
        if self.obj_flags(id) & Obj::HOLDS_OBJECTS != 0 {
            return true;
        }
        let descr = self.obj_text(id).and_then(|t| t.text.as_deref()).unwrap_or("");
        descr.starts_with('O') || !is_canonical_descr(descr)
    }

    // -----------------------------------------------------------------------------------
    // State

    /// What is wrong with `state` as an object's state, if anything.
    fn state_problem(&self, state: &Value, shape: StateShape) -> Option<String> {
        let dict_problem = |value: &Value| -> Option<Option<String>> {
            match value {
                Value::Dict(id) => Some(self.dict_state_problem(*id)),
                Value::None => Some(None),
                _ => None,
            }
        };
        // `(state, slotstate)`: both dicts become attributes.
        if let Value::Tuple(items, _) = state {
            if let [first, second] = &items[..] {
                if let (Some(a), Some(b)) = (dict_problem(first), dict_problem(second)) {
                    return a.or(b);
                }
                if let Some(problem) = self.mapping_state(first).or_else(|| self.mapping_state(second)) {
                    return Some(problem);
                }
            }
        }
        if let Some(problem) = self.mapping_state(state) {
            return Some(problem);
        }
        if let Some(problem) = dict_problem(state) {
            return problem;
        }
        match shape {
            StateShape::Dict => Some(format!(
                "{}, where the class's role takes a dict of attributes",
                self.describe_value(state)
            )),
            StateShape::Any => self.match_data(state).err().map(|misfit| match misfit {
                Misfit::Role(import, _) => format!(
                    "it holds {}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                ),
                Misfit::Shape(why) => why,
            }),
        }
    }

    /// A state that is a mapping object the pickle filled (an OrderedDict, a dict subclass):
    /// `setattr`/`**kwargs` take its items like a dict's, but they were never judged as one.
    fn mapping_state(&self, state: &Value) -> Option<String> {
        let Value::Obj(id) = state else {
            return None;
        };
        let obj = self.tables.objects.get(*id as usize)?;
        let mapping = obj.flags & Obj::MAY_ITEMS != 0 && obj.flags & (Obj::TRUSTED | Obj::POISONED) == 0;
        mapping.then(|| {
            format!(
                "{}, a mapping object: its items would become attributes or keyword arguments without the \
                 state rules (a state is a dict)",
                self.describe_value(state)
            )
        })
    }

    /// A dict that becomes attributes: no special keys, only str keys, watched keys by rule.
    fn dict_state_problem(&self, id: u32) -> Option<String> {
        let flags = self.tables.dicts.get(id as usize).map_or(0, |d| d.flags);
        if flags & DictInfo::SPECIAL_KEY != 0 {
            let key = self.tables.special.get(&id).map_or("__?", |k| &**k);
            return Some(format!(
                "it sets the attribute {key:?}; special names are looked up on the instance by pickle, copy and \
                 deepcopy, so a stored value would be called"
            ));
        }
        if flags & DictInfo::OPAQUE_KEY != 0 {
            return Some("it has keys that are not str constants (or too many to follow)".into());
        }
        if flags & DictInfo::WATCHED == 0 {
            return None;
        }
        for Watched { rule, value, .. } in self.watched_of(id) {
            if let Some(why) = self.rule_problem(&rule.rule, value) {
                return Some(format!(
                    "the attribute {:?} is {why}, where it must be {} ({})",
                    rule.key, rule.rule, rule.reason
                ));
            }
        }
        None
    }

    fn rule_problem(&self, rule: &StateRule, value: &Value) -> Option<String> {
        let ok = match rule {
            StateRule::NoneOnly => matches!(value, Value::None),
            StateRule::OneOf(set) => {
                let in_set = |v: &Value| {
                    v.name_bytes()
                        .is_some_and(|t| set.iter().any(|s| s.as_bytes() == t))
                };
                match value {
                    Value::None => true,
                    Value::Tuple(items, _) => items.iter().all(in_set),
                    Value::List(id) => {
                        let known = self
                            .tables
                            .lists
                            .get(*id as usize)
                            .is_some_and(|l| l.strs || l.len == 0);
                        known
                            && self
                                .tables
                                .list_strs
                                .get(id)
                                .is_none_or(|items| items.iter().all(in_set))
                    }
                    other => in_set(other),
                }
            }
            StateRule::Empty => match value {
                Value::None | Value::EmptyTuple => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                Value::List(id) => self.tables.lists.get(*id as usize).is_some_and(|l| l.len == 0),
                Value::Obj(id) => self.tables.objects.get(*id as usize).is_some_and(|o| {
                    o.flags & Obj::EMPTY_ODICT != 0
                        || (o.flags & Obj::HAS_ITEMS == 0 && self.obj_class_is(*id, "builtins", "set"))
                }),
                _ => false,
            },
            StateRule::NoCallable => match value {
                Value::Import(_) => false,
                Value::Obj(id) => self
                    .tables
                    .objects
                    .get(*id as usize)
                    .is_some_and(|o| o.flags & Obj::CALLABLE == 0),
                Value::Tuple(_, meta) => meta.storable && !self.tuple_holds_callable(value),
                _ => true,
            },
            StateRule::AttributePath => match value {
                Value::None => true,
                other => other.as_name().is_some_and(is_attribute_path),
            },
            StateRule::Bounded(max) => {
                let small = |v: &Value| match v {
                    Value::Int(n) => (*n as f64).abs() <= *max,
                    Value::Float(x) => x.abs() <= *max,
                    Value::Bool(_) | Value::None | Value::Name(_) | Value::ShortName(_) => true,
                    _ => false,
                };
                match value {
                    Value::Tuple(items, _) => items.iter().all(small),
                    Value::EmptyTuple => true,
                    other => small(other),
                }
            }
            StateRule::KeysIn(_) => match value {
                Value::None => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & (DictInfo::UNLISTED_KEY | DictInfo::OPAQUE_KEY) == 0),
                _ => false,
            },
            StateRule::BoundedProduct(max) => {
                let dim = |v: &Value| match v {
                    Value::Int(n) if *n >= 0 => Some(*n as f64),
                    Value::None => Some(1.0),
                    _ => None,
                };
                let product = match value {
                    Value::None | Value::EmptyTuple => Some(1.0),
                    Value::Tuple(items, _) => items.iter().try_fold(1.0, |acc, v| dim(v).map(|d| acc * d)),
                    other => dim(other),
                };
                product.is_some_and(|p| p <= *max)
            }
            StateRule::BoundedGrowth(max) => {
                let growth = |v: &Value| match v {
                    Value::Int(n) if *n >= 0 => Some(1.0 + *n as f64),
                    Value::Float(x) if *x >= 0.0 => Some(1.0 + x),
                    Value::None | Value::Name(_) | Value::ShortName(_) => Some(1.0),
                    _ => None,
                };
                let product = match value {
                    Value::EmptyTuple => Some(1.0),
                    Value::Tuple(items, _) => items.iter().try_fold(1.0, |acc, v| growth(v).map(|g| acc * g)),
                    // One number applies to every spatial dimension: counted for two.
                    other => growth(other).map(|g| g * g),
                };
                product.is_some_and(|p| p <= *max)
            }
            StateRule::SimpleRegex => match value {
                Value::None => true,
                other => other.as_name().is_some_and(is_simple_regex),
            },
            StateRule::TzName => match value {
                // The same key holds dtype strings ("U8"): their item size is bounded too.
                Value::Name(_) | Value::ShortName(_) => value.as_name().is_some_and(|text| {
                    is_safe_tz_name(text)
                        && dtype_itemsize(text).is_none_or(|size| size <= MAX_DTYPE_ITEMSIZE)
                }),
                Value::Text | Value::TextAt { .. } => false,
                // A str made at load time is a name the scanner cannot read.
                Value::Obj(id) => self.obj_flags(*id) & Obj::STR_LIKE == 0,
                _ => true,
            },
            StateRule::Hooks(_) => match value {
                Value::None | Value::EmptyTuple => true,
                hook if self.is_hook_object(hook) => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                Value::Obj(id) => self.tables.objects.get(*id as usize).is_some_and(|o| {
                    o.flags & Obj::EMPTY_ODICT != 0
                        || (self.obj_class_is(*id, "collections", "OrderedDict")
                            && o.flags & Obj::HOOK_ITEMS != 0)
                }),
                _ => false,
            },
        };
        (!ok).then(|| self.describe_value(value))
    }

    fn tuple_holds_callable(&self, value: &Value) -> bool {
        match value {
            Value::Tuple(items, _) => items.iter().any(|v| match v {
                Value::Import(_) => true,
                Value::Obj(id) => self
                    .tables
                    .objects
                    .get(*id as usize)
                    .is_none_or(|o| o.flags & Obj::CALLABLE != 0),
                Value::Tuple(..) => self.tuple_holds_callable(v),
                _ => false,
            }),
            _ => false,
        }
    }

    // -----------------------------------------------------------------------------------
    // Nested files

    fn note_nested(&mut self, offset: u64, at: u64, len: u64, latin1_text: bool, inline: Option<Vec<u8>>) {
        if self.report.nested.len() < self.limits.max_records {
            self.report.nested.push(super::NestedFile {
                offset,
                at,
                len,
                latin1_text,
                pickle: self.pickle_index(),
                inline,
            });
        }
    }
}

/// `range(stop)`, `range(start, stop[, step])`: at most `max` items.
/// The item size a dtype string under a `tz-name` key may name (as `dtype-size` in calls.txt).
const MAX_DTYPE_ITEMSIZE: u64 = 1 << 26;

/// The bytes an element of a dtype string takes (`'U8'`: 32, `'<S5'`: 5, `'V16'`: 16), when
/// it names its size; a unicode character is 4 bytes.
fn dtype_itemsize(descr: &str) -> Option<u64> {
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let digits_at = body.find(|c: char| c.is_ascii_digit())?;
    let (kind, rest) = body.split_at(digits_at);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let count = digits.parse::<u64>().unwrap_or(u64::MAX);
    let unit = if kind.ends_with('U') || kind == "str" {
        4
    } else {
        1
    };
    Some(count.saturating_mul(unit))
}

fn check_range_len(args: &[Value], max: u64) -> Result<(), String> {
    let int = |i: usize| match args.get(i) {
        Some(Value::Int(v)) => Ok(i128::from(*v)),
        Some(Value::Bool(b)) => Ok(i128::from(*b)),
        _ => Err(format!(
            "argument {i} of range is not an int the scanner can read"
        )),
    };
    let (start, stop, step) = match args.len() {
        1 => (0, int(0)?, 1),
        2 => (int(0)?, int(1)?, 1),
        _ => (int(0)?, int(1)?, int(2)?),
    };
    if step == 0 {
        return Err("a range with step 0".into());
    }
    let len = if step > 0 {
        (stop - start + step - 1).div_euclid(step)
    } else {
        (start - stop - step - 1).div_euclid(-step)
    }
    .max(0);
    if len > i128::from(max) {
        return Err(format!(
            "a range of {len} items (at most {max}): whatever iterates it would materialise it"
        ));
    }
    Ok(())
}

/// Why `key` may not be an item key of a reconstructed object: a special name, or a value made
/// at load time that could be one (a numpy `str_` scalar hashes and compares as its text).
fn item_key_problem(key: &Value) -> Option<String> {
    match key {
        Value::Obj(_) | Value::Unknown => Some(format!("made at load time ({})", key.what())),
        _ => key
            .name_bytes()
            .filter(|name| is_special_key(name))
            .map(|name| format!("{:?}", String::from_utf8_lossy(name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_are_bounded() {
        for ok in [
            "1.5",
            "-0",
            "1.5E+10",
            "1E-9999",
            "NaN",
            "-Infinity",
            "sNaN",
            "123456789.000001",
        ] {
            assert!(is_bounded_decimal(ok), "{ok}");
        }
        for bad in ["1e99999", "1E+100000", "", "1.5e", "abc", "1__0", "0x10", "1e1e1"] {
            assert!(!is_bounded_decimal(bad), "{bad}");
        }
        assert!(!is_bounded_decimal(&"9".repeat(1001)));
    }

    #[test]
    fn attribute_paths_are_public_names() {
        assert!(is_attribute_path("coef_"));
        assert!(is_attribute_path("named_steps.clf.feature_importances_"));
        for bad in ["", "_private", "a.__class__", "a..b", "a.b()", "a b"] {
            assert!(!is_attribute_path(bad), "{bad}");
        }
    }
}
