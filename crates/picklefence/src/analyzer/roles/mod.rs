//! The one place where every use of an import is checked against its role: calls (REDUCE,
//! OBJ, INST), constructions (NEWOBJ, NEWOBJ_EX), arguments, BUILD, item-setting, and storing
//! (container items, object state, the pickle's result). The pre-scan before a load and the
//! scanner run exactly these checks.
//!
//! Objects the pickle makes are tracked in a table: what made them, whether they may receive
//! a BUILD or items, and whether they already did. Dicts and lists the pickle makes are tracked
//! too, just enough to judge them as state (special and watched keys, emptiness).
//!
//! This file holds the tables and the import roles; storing and items, calls and argument
//! kinds, BUILD and state each have a file of their own, and the value predicates another.

use std::rc::Rc;

use foldhash::HashMap;

use super::joblib::CallArgs;
use super::{Analyzer, TupleMeta, Value, KEPT_TUPLE_DEPTH, KEPT_TUPLE_LEN};
use crate::findings::{FindingKind, Severity};
use crate::opcodes::Opcode;
use crate::policy::roles::{ArgSpec, Args, Check, Kind, Reconstruct, ResultSpec, StateShape};
use crate::policy::state_rules::{is_special_key, KeyRule, StateRule};
use crate::policy::{CallSchema, Roles};

mod build;
mod calls;
mod checks;
mod kinds;
mod partial;
mod shared;
mod store;

pub(super) use checks::shape_numel;
use checks::*;
pub(super) use partial::Partial;

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
    /// An array's element count, or a dtype's item size, once known (`u64::MAX`: not known).
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
    /// The furthest byte its `(dtype, offset[, title])` values reach: as a structured dtype's
    /// fields, all must end inside the dtype's items (numpy reads and writes them unchecked).
    field_end: u64,
}

impl Default for DictInfo {
    fn default() -> Self {
        DictInfo {
            flags: 0,
            last_watched: NO_ENTRY,
            field_end: 0,
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
    /// A value is not `(dtype, offset[, title])` with a dtype of known size and an offset of
    /// at least 0: as a structured dtype's fields, where they end cannot be told.
    const UNREAD_FIELD: u16 = 1 << 9;
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

/// A kept dict's items, by str key.
type KeptItems = Vec<(Box<str>, Value)>;

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
    /// The `functools.partial` objects the pickle made, by object id.
    partials: HashMap<u32, Partial>,
    /// Partials made and not built yet: while any is, new dicts keep their items.
    open_partials: u32,
    /// dict id -> its items (str keys), `None` once they cannot be kept.
    kept_dicts: HashMap<u32, Option<KeptItems>>,
    /// Dict items ever kept (bounded).
    kept_items: usize,
    /// Every memory an array or Arrow buffer was made over without a copy: where the first
    /// was made, and whether any of them is writable.
    buffer_uses: HashMap<Memory, BufferUse>,
    /// The memory of objects made over a buffer (`_frombuffer`, `py_buffer`, an array BUILT
    /// over large bytes), by object id: an object passed on as a buffer is that memory again.
    memory_of: HashMap<u32, (Memory, bool)>,
}

/// A memory the pickle can make arrays over, named by the object that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Memory {
    /// A bytes or bytearray constant (its payload's offset) or an out-of-band buffer (its
    /// NEXT_BUFFER's offset).
    Stream(u64),
    /// What a call made (`bytearray(...)`, `_codecs.encode(...)`), by object id.
    Made(u32),
    /// What the loader's `persistent_load` returned: it may return one object for any number
    /// of ids, so they are all one memory.
    Persistent,
}

/// The arrays and buffers made over one memory so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct BufferUse {
    /// Where the first was made.
    offset: u64,
    /// One of them can be written.
    writable: bool,
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
        self.partials.clear();
        self.open_partials = 0;
        self.kept_dicts.clear();
        self.kept_items = 0;
        self.buffer_uses.clear();
        self.memory_of.clear();
    }
}

/// Why an argument does not fit.
enum Misfit {
    /// An import used against its role.
    Role(u32, &'static str),
    /// Anything else, in words.
    Shape(String),
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
        self.keep_dict_if_partial_open(id);
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
        let mut field_end = 0;
        for pair in items.chunks(2) {
            let [key, value] = pair else {
                flags |= DictInfo::OPAQUE_KEY;
                continue;
            };
            flags |= self.value_flags(value);
            match self.field_end(value) {
                Some(end) => field_end = field_end.max(end),
                None => flags |= DictInfo::UNREAD_FIELD,
            }
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
            dict.field_end = dict.field_end.max(field_end);
        }
        if !self.tables.kept_dicts.is_empty() {
            self.keep_dict_items(id, items);
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
}
