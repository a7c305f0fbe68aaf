//! A data-only reading of a pickle: what its values would be, with every call and
//! reconstruction recorded (callee, arguments, BUILD state) and none of them made. Enough to
//! find the arrays inside a pickle and the objects that hold them, so that the scanner can check
//! the state of classes whose compiled code trusts it (see [`crate::native_state`]).
//!
//! Values live in one arena and refer to each other by index, so cycles cost nothing and
//! nothing leaks; the arena has a fixed budget, past which the reading gives up.

use crate::decoder::{Arg, Op, Payload};
use crate::opcodes::Opcode;
use memo::Memo;

mod memo;

/// Values pushed at most (each costs at most a few dozen bytes); a pickle that needs more is
/// not evaluated to its end.
const MAX_VALUES: usize = 1 << 22;

/// A value of the pickle. Containers and objects are indices into the [`Heap`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An int that fits in `i64`.
    Int(i64),
    /// A float.
    Float(f64),
    /// An int beyond `i64`, a buffer...: nothing checked reads it.
    Other,
    /// What a persistent id resolves to: an index into the heap's persistent ids (read the id
    /// with [`Heap::persistent_id`]).
    PersId(u32),
    /// A str: an index into the heap's strs (read it with [`Heap::str`]).
    Str(u32),
    /// A bytes (or bytearray) constant: where its payload lies in the input.
    Bytes {
        /// Offset of the payload's first byte from the start of the input.
        start: u64,
        /// Length of the payload in bytes.
        len: u64,
    },
    /// A tuple: an index into the heap's tuples (read it with [`Heap::tuple`]).
    Tuple(u32),
    /// A list: an index into the heap's lists.
    List(u32),
    /// A dict: an index into the heap's dicts (look keys up with [`Heap::get`]).
    Dict(u32),
    /// A set or frozenset: an index into the heap's lists (read it with [`Heap::set`]).
    Set(u32),
    /// An imported name (GLOBAL, STACK_GLOBAL, INST): an index into the heap's globals (read it
    /// with [`Heap::global`]).
    Global(u32),
    /// What a call or reconstruction made: an index into [`Heap::objects`].
    Obj(u32),
}

/// What a call or a reconstruction made.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// What was called (REDUCE, OBJ, INST) or reconstructed (NEWOBJ).
    pub callee: Val,
    /// The arguments: the value REDUCE, NEWOBJ or NEWOBJ_EX popped (a tuple when well formed;
    /// NEWOBJ_EX's keyword arguments are not kept), or the marked items as a tuple (OBJ, INST).
    pub args: Val,
    /// The last BUILD's state (a dict as it was at that BUILD: the object copied its items).
    pub state: Option<Val>,
    /// BUILD ran more than once on it (its state changed after others may have read it).
    pub rebuilt: bool,
    /// Where its last BUILD was (an object that read it before then saw it unbuilt).
    pub built_at: Option<u64>,
    /// Where it was made.
    pub offset: u64,
    /// Bytes joblib read right after this object's BUILD (a `NumpyArrayWrapper`'s data).
    pub trailing: Option<(u64, u64)>,
    /// Items SETITEM(S) gave it (an `OrderedDict`'s): a dict value.
    pub items: Option<Val>,
    /// What the nested pickle joblib read right after this object's BUILD made (the object
    /// array a `NumpyArrayWrapper` stands for).
    pub nested: Option<Val>,
}

/// Everything the pickle made.
#[derive(Debug, Default)]
pub(crate) struct Heap {
    /// Every str's text, one after the other; `strs` gives each one's range.
    text: String,
    strs: Vec<(usize, usize)>,
    /// Every tuple's items, one after the other (tuples never change); `tuples` gives ranges.
    tuple_items: Vec<Val>,
    tuples: Vec<(usize, usize)>,
    lists: Vec<Vec<Val>>,
    dicts: Vec<Vec<(Val, Val)>>,
    /// Where each list and dict last changed after it was made (0: never). A list given items
    /// by SETITEM (`list[i] = v`, which is not followed) changed at `u64::MAX`.
    list_changed: Vec<u64>,
    dict_changed: Vec<u64>,
    globals: Vec<(Box<str>, Box<str>)>,
    /// The value each persistent id was given as (PERSID's line as a str).
    persistent: Vec<Val>,
    /// Every object made, in the order made ([`Val::Obj`] indexes it).
    pub objects: Vec<Object>,
    values: usize,
}

impl Heap {
    /// The text of a str value.
    pub fn str(&self, value: Val) -> Option<&str> {
        match value {
            Val::Str(i) => {
                let &(start, end) = self.strs.get(i as usize)?;
                self.text.get(start..end)
            }
            _ => None,
        }
    }

    /// The value of an int, or of a bool as 0 or 1.
    pub fn int(&self, value: Val) -> Option<i64> {
        match value {
            Val::Int(i) => Some(i),
            Val::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// The items of a tuple value.
    pub fn tuple(&self, value: Val) -> Option<&[Val]> {
        match value {
            Val::Tuple(i) => {
                let &(start, end) = self.tuples.get(i as usize)?;
                self.tuple_items.get(start..end)
            }
            _ => None,
        }
    }

    /// The call or reconstruction an object value refers to.
    pub fn object(&self, value: Val) -> Option<&Object> {
        match value {
            Val::Obj(i) => self.objects.get(i as usize),
            _ => None,
        }
    }

    /// The id a persistent-id value was loaded from.
    pub fn persistent_id(&self, value: Val) -> Option<Val> {
        match value {
            Val::PersId(i) => self.persistent.get(i as usize).copied(),
            _ => None,
        }
    }

    /// Every persistent id the pickle loaded, in order.
    pub fn persistent_ids(&self) -> &[Val] {
        &self.persistent
    }

    /// The items of a dict value, in the order they were set (a key set twice appears twice;
    /// the last one wins, as in Python).
    pub fn dict_items(&self, value: Val) -> Option<&[(Val, Val)]> {
        match value {
            Val::Dict(i) => self.dicts.get(i as usize).map(Vec::as_slice),
            _ => None,
        }
    }

    /// `(module, name)` of an imported value.
    pub fn global(&self, value: Val) -> Option<(&str, &str)> {
        match value {
            Val::Global(i) => self.globals.get(i as usize).map(|(m, n)| (&**m, &**n)),
            _ => None,
        }
    }

    fn new_tuple(&mut self, items: impl IntoIterator<Item = Val>) -> Val {
        let from = self.tuple_items.len();
        self.tuple_items.extend(items);
        self.tuples.push((from, self.tuple_items.len()));
        Val::Tuple(index(self.tuples.len()))
    }

    /// The items of a list value as a reader at offset `read_at` saw them: None when the list
    /// changed after that (a reader that kept it would see other items than these).
    pub fn list(&self, value: Val, read_at: u64) -> Option<&[Val]> {
        match value {
            Val::List(i) if !self.changed_after(value, read_at) => {
                self.lists.get(i as usize).map(Vec::as_slice)
            }
            _ => None,
        }
    }

    /// The items of a set value (as added; duplicates are not removed).
    pub fn set(&self, value: Val) -> Option<&[Val]> {
        match value {
            Val::Set(i) => self.lists.get(i as usize).map(Vec::as_slice),
            _ => None,
        }
    }

    /// Whether a list or dict changed after offset `at` (other values never change).
    pub fn changed_after(&self, value: Val, at: u64) -> bool {
        let changed = match value {
            Val::List(i) => self.list_changed.get(i as usize),
            Val::Dict(i) => self.dict_changed.get(i as usize),
            _ => return false,
        };
        changed.is_some_and(|&c| c > at)
    }

    /// The item of a dict under a str key (the last one set wins, as in Python).
    pub fn get(&self, dict: Val, key: &str) -> Option<Val> {
        let Val::Dict(i) = dict else { return None };
        self.dicts
            .get(i as usize)?
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }
}

/// Why a pickle was not evaluated to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// More values than the budget ([`MAX_VALUES`]).
    TooLarge,
    /// An opcode on an empty stack and the like: CPython raises there.
    Broken(u64),
}

/// What joblib reads right after an object's BUILD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trailing {
    /// Nothing: the unpickler goes on with the next opcode.
    Nothing,
    /// Raw array bytes (recorded as the object's `trailing`).
    Bytes,
    /// A nested pickle (an object array's items), read by a fresh unpickler.
    Pickle,
}

/// What an unpickler was doing when a nested pickle started, and the object whose BUILD the
/// nested pickle follows.
type Frame = (Vec<Val>, Vec<usize>, Memo, u32);

/// Runs over the opcodes of one input (several pickles in a row share the heap).
#[derive(Debug)]
pub(crate) struct Evaluator {
    /// Everything made so far (by every pickle of the input).
    pub heap: Heap,
    /// Values pushed at most before giving up.
    budget: usize,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: Memo,
    /// The object whose BUILD joblib follows with array data, and where that BUILD ended.
    awaiting_data: Option<(u32, u64)>,
    /// A nested pickle starts with the next opcode, after the BUILD of this object.
    awaiting_pickle: Option<u32>,
    /// The outer unpicklers' state while a nested pickle is read.
    frames: Vec<Frame>,
    /// Why the reading stopped early; `None` while it has not.
    pub gave_up: Option<GaveUp>,
    /// What the last outermost STOP returned (what `load` gives its caller).
    pub result: Option<Val>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator::with_budget(MAX_VALUES)
    }
}

impl Evaluator {
    /// An evaluator that gives up once the values it holds count more than `budget` (`Default`
    /// allows `MAX_VALUES`).
    pub fn with_budget(budget: usize) -> Self {
        Evaluator {
            heap: Heap::default(),
            budget,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Memo::default(),
            awaiting_data: None,
            awaiting_pickle: None,
            frames: Vec::new(),
            gave_up: None,
            result: None,
        }
    }

    /// `trailing(obj)`: what joblib reads after BUILD of this object (the caller knows, from
    /// the import): raw bytes (the gap up to the next opcode is recorded as its data) or a
    /// nested pickle (read with its own stack and memo).
    pub fn step(&mut self, op: &Op<'_>, trailing: &dyn Fn(&Heap, &Object) -> Trailing) {
        if self.gave_up.is_some() {
            return;
        }
        if let Some(object) = self.awaiting_pickle.take() {
            let frame = (
                std::mem::take(&mut self.stack),
                std::mem::take(&mut self.marks),
                std::mem::take(&mut self.memo),
                object,
            );
            self.frames.push(frame);
        }
        if let Some((object, build_end)) = self.awaiting_data.take() {
            if let Some(o) = self.heap.objects.get_mut(object as usize) {
                o.trailing = Some((build_end, op.offset.saturating_sub(build_end)));
            }
        }
        if self.apply(op, trailing).is_none() && self.gave_up.is_none() {
            self.gave_up = Some(GaveUp::Broken(op.offset));
        }
        if self.heap.values > self.budget {
            self.gave_up = Some(GaveUp::TooLarge);
        }
    }

    /// Every value pushed counts against the budget (containers hold only pushed values).
    fn push(&mut self, value: Val) {
        self.heap.values += 1;
        self.stack.push(value);
    }

    fn pop(&mut self) -> Option<Val> {
        let floor = self.marks.last().copied().unwrap_or(0);
        (self.stack.len() > floor).then(|| self.stack.pop()).flatten()
    }

    fn pop_mark(&mut self) -> Option<Vec<Val>> {
        let mark = self.marks.pop()?;
        Some(self.stack.split_off(mark.min(self.stack.len())))
    }

    /// A str past what the budget holds is kept unread (a protocol 2 array's latin-1 text): the
    /// reading goes on, and what holds it (its shape, its owner's state) is still read.
    fn text(&mut self, payload: &Payload<'_>) -> Val {
        match payload.bytes().map(std::str::from_utf8) {
            Some(Ok(text)) if self.heap.values.saturating_add(text.len() / 16) <= self.budget => {
                self.new_str(text)
            }
            _ => Val::Other,
        }
    }

    fn new_str(&mut self, text: &str) -> Val {
        self.heap.values += text.len() / 16;
        let start = self.heap.text.len();
        self.heap.text.push_str(text);
        self.heap.strs.push((start, self.heap.text.len()));
        Val::Str(index(self.heap.strs.len()))
    }

    /// A tuple of the stack's items from `start` on (taken off the stack).
    fn tuple_from_stack(&mut self, start: usize) -> Val {
        self.heap.new_tuple(self.stack.drain(start..))
    }

    fn new_list(&mut self, items: Vec<Val>) -> Val {
        self.heap.lists.push(items);
        self.heap.list_changed.push(0);
        Val::List(index(self.heap.lists.len()))
    }

    fn new_dict(&mut self, items: Vec<(Val, Val)>) -> Val {
        self.heap.values += 2 * items.len(); // a BUILD's snapshot copies them
        self.heap.dicts.push(items);
        self.heap.dict_changed.push(0);
        Val::Dict(index(self.heap.dicts.len()))
    }

    fn push_persistent(&mut self, id: Val) {
        self.heap.persistent.push(id);
        let value = Val::PersId(index(self.heap.persistent.len()));
        self.push(value);
    }

    fn new_global(&mut self, module: &str, name: &str) -> Val {
        self.heap.globals.push((module.into(), name.into()));
        Val::Global(index(self.heap.globals.len()))
    }

    fn new_object(&mut self, callee: Val, args: Val, offset: u64) -> Val {
        self.heap.objects.push(Object {
            callee,
            args,
            state: None,
            rebuilt: false,
            built_at: None,
            offset,
            trailing: None,
            items: None,
            nested: None,
        });
        Val::Obj(index(self.heap.objects.len()))
    }

    /// `args` with each dict among its items copied as it is now: the call read it now, and a
    /// later SETITEM (on a memoized dict) must not change what the reading says it read.
    fn snapshot_dicts(&mut self, args: Val) -> Option<Val> {
        let Some(items) = self.heap.tuple(args) else {
            return Some(args);
        };
        if !items.iter().any(|v| matches!(v, Val::Dict(_))) {
            return Some(args);
        }
        let mut items = items.to_vec();
        for item in &mut items {
            if let Val::Dict(d) = *item {
                let pairs = self.heap.dicts.get(d as usize)?.clone();
                *item = self.new_dict(pairs);
            }
        }
        Some(self.heap.new_tuple(items))
    }

    /// SETITEM(S) and DICT at `offset`: the stack's items from `start` on, as key/value pairs,
    /// into `target` (a list's or an object's `__setitem__` is not followed: the list is marked
    /// as changed in a way not known), then off the stack.
    fn set_items(&mut self, target: Val, start: usize, offset: u64) -> Option<()> {
        let items = self.stack.get(start..)?;
        if !items.len().is_multiple_of(2) {
            return None;
        }
        match target {
            Val::Dict(i) => {
                let pairs = items.chunks_exact(2).filter_map(|pair| match pair {
                    [k, v] => Some((*k, *v)),
                    _ => None,
                });
                self.heap.dicts.get_mut(i as usize)?.extend(pairs);
                let changed = self.heap.dict_changed.get_mut(i as usize)?;
                *changed = (*changed).max(offset);
            }
            Val::List(i) if !items.is_empty() => {
                *self.heap.list_changed.get_mut(i as usize)? = u64::MAX;
            }
            Val::Obj(i) if !items.is_empty() => {
                let pairs: Vec<(Val, Val)> = items
                    .chunks_exact(2)
                    .filter_map(|pair| match pair {
                        [k, v] => Some((*k, *v)),
                        _ => None,
                    })
                    .collect();
                let held = match self.heap.objects.get(i as usize)?.items {
                    Some(Val::Dict(d)) => d,
                    _ => {
                        let Val::Dict(d) = self.new_dict(Vec::new()) else {
                            return None;
                        };
                        self.heap.objects.get_mut(i as usize)?.items = Some(Val::Dict(d));
                        d
                    }
                };
                self.heap.values += pairs.len();
                self.heap.dicts.get_mut(held as usize)?.extend(pairs);
            }
            _ => {}
        }
        self.stack.truncate(start);
        Some(())
    }

    /// APPEND(S) at `offset`: the stack's items from `start` on into `target`, then off the
    /// stack.
    fn append(&mut self, target: Val, start: usize, offset: u64) {
        if let Val::List(i) = target {
            if let (Some(list), Some(items)) = (self.heap.lists.get_mut(i as usize), self.stack.get(start..))
            {
                if !items.is_empty() {
                    list.extend_from_slice(items);
                    if let Some(changed) = self.heap.list_changed.get_mut(i as usize) {
                        *changed = (*changed).max(offset);
                    }
                }
            }
        }
        self.stack.truncate(start);
    }

    /// The stack's length above the innermost mark, at least `n` items: where those `n` start.
    fn last_n(&self, n: usize) -> Option<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        self.stack.len().checked_sub(n).filter(|&start| start >= floor)
    }

    /// One opcode; None where CPython would raise.
    fn apply(&mut self, op: &Op<'_>, trailing: &dyn Fn(&Heap, &Object) -> Trailing) -> Option<()> {
        use Opcode as O;
        match op.opcode {
            O::Proto | O::Frame => {}
            O::Stop => {
                let top = self.pop()?;
                if self.frames.is_empty() {
                    self.result = Some(top);
                }
                // The end of a nested pickle gives the outer unpickler back its state, and the
                // object it follows what it made.
                match self.frames.pop() {
                    Some((stack, marks, memo, object)) => {
                        (self.stack, self.marks, self.memo) = (stack, marks, memo);
                        if let Some(o) = self.heap.objects.get_mut(object as usize) {
                            o.nested = Some(top);
                        }
                    }
                    None => (self.stack, self.marks, self.memo) = Default::default(),
                }
            }
            O::Mark => self.marks.push(self.stack.len()),
            O::Pop => {
                if self.stack.len() == self.marks.last().copied().unwrap_or(usize::MAX) {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            O::PopMark => {
                self.pop_mark()?;
            }
            O::Dup => {
                let top = *self.stack.last()?;
                self.push(top);
            }
            O::None => self.push(Val::None),
            O::NewTrue => self.push(Val::Bool(true)),
            O::NewFalse => self.push(Val::Bool(false)),
            O::Int | O::BinInt | O::BinInt1 | O::BinInt2 | O::Long | O::Long1 | O::Long4 => {
                let value = match &op.arg {
                    Arg::Int(i) => Val::Int(*i),
                    Arg::Bool(b) => Val::Bool(*b),
                    Arg::Decimal(text) => std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.trim_end_matches('L').parse::<i64>().ok())
                        .map_or(Val::Other, Val::Int),
                    Arg::Long(payload) => payload
                        .bytes()
                        .and_then(little_endian)
                        .map_or(Val::Other, Val::Int),
                    _ => Val::Other,
                };
                self.push(value);
            }
            O::Float | O::BinFloat => {
                let value = match &op.arg {
                    Arg::Float(f) => Val::Float(*f),
                    Arg::FloatText(text) => std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.trim().parse::<f64>().ok())
                        .map_or(Val::Other, Val::Float),
                    _ => Val::Other,
                };
                self.push(value);
            }
            O::String | O::BinString | O::ShortBinString => {
                // A Python 2 str: text when ASCII (names); otherwise raw bytes (array data, which
                // numpy reads back as latin-1), where the payload is raw.
                let value = match &op.arg {
                    Arg::Str(payload) if payload.bytes().is_some_and(<[u8]>::is_ascii) => self.text(payload),
                    Arg::Str(payload) if op.opcode != O::String => Val::Bytes {
                        start: op.end().checked_sub(payload.len)?,
                        len: payload.len,
                    },
                    _ => Val::Other,
                };
                self.push(value);
            }
            O::Unicode | O::ShortBinUnicode | O::BinUnicode | O::BinUnicode8 => {
                let value = match &op.arg {
                    Arg::Unicode(payload) => self.text(payload),
                    _ => Val::Other,
                };
                self.push(value);
            }
            O::BinBytes | O::ShortBinBytes | O::BinBytes8 | O::ByteArray8 => {
                let len = match &op.arg {
                    Arg::Bytes(payload) => payload.len,
                    _ => return None,
                };
                self.push(Val::Bytes {
                    start: op.end().checked_sub(len)?,
                    len,
                });
            }
            O::NextBuffer => self.push(Val::Other),
            O::ReadonlyBuffer => {}
            O::EmptyList => {
                let list = self.new_list(Vec::new());
                self.push(list);
            }
            O::EmptyTuple => {
                let tuple = self.heap.new_tuple([]);
                self.push(tuple);
            }
            O::EmptyDict => {
                let dict = self.new_dict(Vec::new());
                self.push(dict);
            }
            O::EmptySet => {
                let Val::List(i) = self.new_list(Vec::new()) else {
                    return None;
                };
                self.push(Val::Set(i));
            }
            O::List => {
                let mark = self.marks.pop()?.min(self.stack.len());
                let items = self.stack.split_off(mark);
                let list = self.new_list(items);
                self.push(list);
            }
            O::Tuple => {
                let mark = self.marks.pop()?;
                let tuple = self.tuple_from_stack(mark.min(self.stack.len()));
                self.push(tuple);
            }
            O::Tuple1 | O::Tuple2 | O::Tuple3 => {
                let n = match op.opcode {
                    O::Tuple1 => 1,
                    O::Tuple2 => 2,
                    _ => 3,
                };
                let tuple = self.tuple_from_stack(self.last_n(n)?);
                self.push(tuple);
            }
            O::Dict => {
                let mark = self.marks.pop()?.min(self.stack.len());
                let dict = self.new_dict(Vec::new());
                self.set_items(dict, mark, op.offset)?;
                self.push(dict);
            }
            O::SetItem => {
                let start = self.last_n(2)?;
                let target = *self.stack.get(start.checked_sub(1)?)?;
                self.set_items(target, start, op.offset)?;
            }
            O::SetItems => {
                let mark = self.marks.pop()?.min(self.stack.len());
                let target = *self.stack.get(mark.checked_sub(1)?)?;
                self.set_items(target, mark, op.offset)?;
            }
            O::Append => {
                let start = self.last_n(1)?;
                let target = *self.stack.get(start.checked_sub(1)?)?;
                self.append(target, start, op.offset);
            }
            O::Appends => {
                let mark = self.marks.pop()?.min(self.stack.len());
                let target = *self.stack.get(mark.checked_sub(1)?)?;
                self.append(target, mark, op.offset);
            }
            O::AddItems => {
                let items = self.pop_mark()?;
                if let Val::Set(i) = *self.stack.last()? {
                    self.heap.lists.get_mut(i as usize)?.extend(items);
                }
            }
            O::FrozenSet => {
                let items = self.pop_mark()?;
                let Val::List(i) = self.new_list(items) else {
                    return None;
                };
                self.push(Val::Set(i));
            }
            O::Get | O::BinGet | O::LongBinGet => {
                let value = self.memo.get(memo_key(&op.arg)?)?;
                self.push(value);
            }
            O::Put | O::BinPut | O::LongBinPut => {
                let top = *self.stack.last()?;
                self.heap.values += 1 + self.memo.insert(memo_key(&op.arg)?, top);
            }
            O::Memoize => {
                let top = *self.stack.last()?;
                self.heap.values += 1 + self.memo.insert(self.memo.len(), top);
            }
            O::Global => {
                let Arg::Pair(module, name) = &op.arg else {
                    return None;
                };
                let (module, name) = (std::str::from_utf8(module).ok()?, std::str::from_utf8(name).ok()?);
                let global = self.new_global(module, name);
                self.push(global);
            }
            O::StackGlobal => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = (self.heap.str(module)?.to_owned(), self.heap.str(name)?.to_owned());
                let global = self.new_global(&module, &name);
                self.push(global);
            }
            O::Ext1 | O::Ext2 | O::Ext4 => self.push(Val::Other),
            O::Reduce | O::NewObj => {
                let args = self.pop()?;
                let args = self.snapshot_dicts(args)?;
                let callee = self.pop()?;
                let made = self.new_object(callee, args, op.offset);
                self.push(made);
            }
            O::NewObjEx => {
                self.pop()?;
                let args = self.pop()?;
                let callee = self.pop()?;
                let made = self.new_object(callee, args, op.offset);
                self.push(made);
            }
            O::Obj => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return None;
                }
                let callee = items.remove(0);
                let args = self.heap.new_tuple(items);
                let made = self.new_object(callee, args, op.offset);
                self.push(made);
            }
            O::Inst => {
                let Arg::Pair(module, name) = &op.arg else {
                    return None;
                };
                let (module, name) = (std::str::from_utf8(module).ok()?, std::str::from_utf8(name).ok()?);
                let items = self.pop_mark()?;
                let callee = self.new_global(module, name);
                let args = self.heap.new_tuple(items);
                let made = self.new_object(callee, args, op.offset);
                self.push(made);
            }
            O::Build => {
                let state = self.pop()?;
                let target = *self.stack.last()?;
                if let Val::Obj(i) = target {
                    let state = match state {
                        Val::Dict(d) => {
                            let items = self.heap.dicts.get(d as usize)?.clone();
                            self.new_dict(items)
                        }
                        other => other,
                    };
                    let object = self.heap.objects.get_mut(i as usize)?;
                    object.rebuilt = object.state.is_some();
                    object.state = Some(state);
                    object.built_at = Some(op.offset);
                    let object = self.heap.objects.get(i as usize)?;
                    // Inside a nested pickle a plain unpickler reads: nothing trails a BUILD.
                    if self.frames.is_empty() {
                        match trailing(&self.heap, object) {
                            Trailing::Nothing => {}
                            Trailing::Bytes => self.awaiting_data = Some((i, op.end())),
                            Trailing::Pickle => self.awaiting_pickle = Some(i),
                        }
                    }
                }
            }
            O::PersId => {
                let id = match &op.arg {
                    Arg::Line(line) => std::str::from_utf8(line).map_or(Val::Other, |t| self.new_str(t)),
                    _ => Val::Other,
                };
                self.push_persistent(id);
            }
            O::BinPersId => {
                let id = self.pop()?;
                self.push_persistent(id);
            }
        }
        Some(())
    }
}

/// The index of the last item of an arena of `len` items (arenas stay below `u32::MAX` items:
/// the value budget is far smaller).
fn index(len: usize) -> u32 {
    u32::try_from(len.saturating_sub(1)).unwrap_or(u32::MAX)
}

fn memo_key(arg: &Arg<'_>) -> Option<u64> {
    match arg {
        Arg::Int(i) => u64::try_from(*i).ok(),
        Arg::Decimal(text) => std::str::from_utf8(text).ok()?.parse().ok(),
        _ => None,
    }
}

/// A little-endian two's-complement int of at most 8 bytes.
fn little_endian(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut raw = [if negative { 0xff } else { 0 }; 8];
    raw.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(i64::from_le_bytes(raw))
}

#[cfg(test)]
pub(crate) mod tests;
