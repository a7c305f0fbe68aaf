//! What joblib's `NumpyUnpickler` reads between opcodes: after a BUILD that finishes a
//! `joblib.numpy_pickle.NumpyArrayWrapper`, it reads the array from the stream (raw bytes, or a
//! nested pickle for object arrays). The layout comes from the wrapper's attributes, so this
//! tracks just enough of them: small str-keyed dicts, the wrapper calls and `numpy.dtype` calls.
//!
//! Off unless a caller asks for it ([`Analyzer::track_joblib`]); dicts are tracked only once the
//! stream has imported the wrapper class. Anything not recovered exactly is reported as
//! [`ArrayRead::Unknown`], so the caller fails closed.

use std::rc::Rc;

use foldhash::{HashMap, HashSet};

use serde::Serialize;

use super::roles::shape_numel;
use super::{Analyzer, Value};
use crate::findings::ImportName;

/// What joblib reads from the stream right after a BUILD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ArrayRead {
    /// Raw array bytes; when `padded`, preceded by one byte giving a padding length and that
    /// many padding bytes (joblib ≥ 1.2, `numpy_array_alignment_bytes` set).
    Raw {
        /// The array's bytes.
        nbytes: u64,
        /// A padding-length byte and padding come first.
        padded: bool,
    },
    /// An object array: a nested pickle, read up to its STOP by a fresh (plain) unpickler.
    Pickled,
    /// joblib reads array data here, but its layout cannot be recovered statically.
    Unknown {
        /// Why the layout is unknown.
        reason: String,
    },
}

pub(crate) const WRAPPER_MODULE: &str = "joblib.numpy_pickle";
pub(crate) const WRAPPER_NAME: &str = "NumpyArrayWrapper";
/// `numpy.dtype` as pickles name it.
pub(crate) const DTYPE_CLASSES: [(&str, &str); 4] = [
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "dtype"),
    ("numpy._core.multiarray", "dtype"),
    ("numpy._core._multiarray_umath", "dtype"),
];
/// joblib's default `numpy_array_alignment_bytes` when `__init__` runs.
const DEFAULT_ALIGNMENT: i64 = 16;

const MAX_DICTS: usize = 1 << 16;
const MAX_OBJECTS: usize = 1 << 16;

/// The wrapper's attributes, in `NumpyArrayWrapper.__init__`'s parameter order. Only these
/// decide what joblib reads, so tracked dicts keep only these keys.
const ATTR_NAMES: [&str; 6] = [
    "subclass",
    "shape",
    "order",
    "dtype",
    "allow_mmap",
    "numpy_array_alignment_bytes",
];
const SHAPE: usize = 1;
const DTYPE: usize = 3;
const ALIGNMENT: usize = 5;

/// Values of the [`ATTR_NAMES`] keys of a dict or an instance.
#[derive(Debug, Default, Clone)]
struct Attrs([Option<Value>; ATTR_NAMES.len()]);

impl Attrs {
    /// Where `key` goes, if it is one of the keys that matter.
    fn index_of(key: &[u8]) -> Option<usize> {
        ATTR_NAMES.iter().position(|name| name.as_bytes() == key)
    }

    fn set(&mut self, index: usize, value: &Value) {
        if let Some(slot) = self.0.get_mut(index) {
            *slot = Some(value.clone());
        }
    }

    fn get(&self, index: usize) -> Option<&Value> {
        self.0.get(index).and_then(Option::as_ref)
    }

    /// `self.update(other)`.
    fn update(&mut self, other: &Attrs) {
        for (slot, value) in self.0.iter_mut().zip(&other.0) {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
    }
}

#[derive(Debug)]
struct DictTrack {
    /// Boxed, and only once a key that matters is set: most dicts have none.
    attrs: Option<Box<Attrs>>,
    /// False once a key was not a plain str constant.
    known: bool,
}

#[derive(Debug)]
enum Tracked {
    Wrapper {
        attrs: Attrs,
        known: bool,
    },
    Dtype {
        descr: Option<Rc<str>>,
        state: Option<Value>,
    },
}

#[derive(Debug, Default)]
pub(super) struct Tracker {
    wrapper_imports: HashSet<u32>,
    dtype_imports: HashSet<u32>,
    /// By the analyzer's dict id; only dicts made once the wrapper class was imported.
    dicts: HashMap<u32, DictTrack>,
    objects: HashMap<u64, Tracked>,
    /// Call results that may be wrappers made some other way (e.g. `copyreg._reconstructor`).
    suspects: HashSet<u64>,
    pending: Option<ArrayRead>,
}

impl Tracker {
    /// Items set into tracked dict `id`: key, value, key, value...
    fn dict_set(&mut self, id: u32, items: &[Value]) {
        let Some(dict) = self.dicts.get_mut(&id) else {
            return;
        };
        let pairs = items.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            dict.known = false;
        }
        for pair in pairs {
            match pair {
                [key, value] => match key.name_bytes() {
                    Some(key) => {
                        if let Some(index) = Attrs::index_of(key) {
                            dict.attrs.get_or_insert_with(Box::default).set(index, value);
                        }
                    }
                    None => dict.known = false,
                },
                _ => dict.known = false,
            }
        }
    }
}

/// The arguments a call opcode passed, as far as they matter for `__init__`.
#[derive(Clone, Copy)]
pub(super) enum CallArgs<'v> {
    /// REDUCE: `callable(*args)`.
    Reduce(&'v Value),
    /// OBJ / INST: `cls(*items)` when there are items, else `cls.__new__(cls)`.
    Items(&'v [Value]),
    /// NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, ...)`, no `__init__`.
    New(&'v Value),
}

/// Whether `value` holds the wrapper class anywhere inside, or cannot be seen into.
fn mentions(value: &Value, wrappers: &HashSet<u32>) -> bool {
    match value {
        Value::Import(index) => wrappers.contains(index),
        Value::Tuple(items, _) => items.iter().any(|v| mentions(v, wrappers)),
        _ => false,
    }
}

/// Item size and `hasobject` of a `numpy.dtype(descr, align, copy)` after `__setstate__(state)`,
/// the way numpy computes them: flexible kinds take the state's elsize, others the descr's size;
/// `hasobject` is the state's flags bit 0 (numpy trusts it).
fn dtype_layout(descr: &str, state: Option<&Value>) -> Result<(i64, bool), String> {
    let mut chars = descr.chars();
    let kind = chars.next().ok_or_else(|| "an empty dtype descr".to_string())?;
    let digits = chars.as_str();
    let size: Option<i64> = if digits.is_empty() {
        None
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        return Err(format!("dtype descr {descr:?} is not a kind and a size"));
    };
    let flexible = matches!(kind, 'S' | 'U' | 'V');
    let fixed = match (kind, size) {
        ('b', Some(1)) | ('i' | 'u', Some(1)) => Some(1),
        ('i' | 'u' | 'f', Some(2)) => Some(2),
        ('i' | 'u' | 'f', Some(4)) => Some(4),
        ('i' | 'u' | 'f' | 'm' | 'M', Some(8)) | ('c', Some(8)) => Some(8),
        ('f' | 'c', Some(16)) => Some(16),
        ('c', Some(32)) => Some(32),
        ('O', _) => Some(8),
        ('S' | 'V', Some(n)) => Some(n),
        ('U', Some(n)) => n.checked_mul(4),
        _ => None,
    };
    let Some(mut itemsize) = fixed else {
        return Err(format!("dtype descr {descr:?} is not one numpy writes"));
    };
    let mut hasobject = kind == 'O';
    if let Some(state) = state {
        let Value::Tuple(items, _) = state else {
            return Err(format!("the dtype state is a {}, not a tuple", state.what()));
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        };
        let version_ok = matches!((int(0), items.len()), (Some(3), 8) | (Some(4), 9));
        let (Some(elsize), Some(flags)) = (int(5), int(7)) else {
            return Err("the dtype state's size and flags are not int constants".into());
        };
        if !version_ok {
            return Err("the dtype state has a version or length numpy does not write".into());
        }
        if flexible {
            itemsize = elsize;
        }
        hasobject = flags & 1 != 0;
    }
    Ok((itemsize, hasobject))
}

impl Analyzer<'_> {
    /// Track what joblib's `NumpyUnpickler` would read after each BUILD; see
    /// [`Analyzer::take_array_read`]. Call before the first `step`.
    pub fn track_joblib(&mut self) {
        if self.joblib.is_none() {
            self.joblib = Some(Box::default());
        }
    }

    /// After a `step` that ran a BUILD on a `NumpyArrayWrapper`: what joblib reads from the
    /// stream before the next opcode. The caller reads (or skips) it, then goes on stepping.
    pub fn take_array_read(&mut self) -> Option<ArrayRead> {
        self.joblib.as_mut().and_then(|t| t.pending.take())
    }

    pub(super) fn joblib_note_import(&mut self, index: u32, target: &ImportName) {
        let Some(tracker) = self.joblib.as_mut() else {
            return;
        };
        if &*target.module == WRAPPER_MODULE && &*target.name == WRAPPER_NAME {
            tracker.wrapper_imports.insert(index);
        } else if DTYPE_CLASSES
            .iter()
            .any(|(m, n)| &*target.module == *m && &*target.name == *n)
        {
            tracker.dtype_imports.insert(index);
        }
    }

    /// The analyzer made dict `id`: tracked once the stream has imported the wrapper class.
    pub(super) fn joblib_new_dict(&mut self, id: u32) {
        let Some(tracker) = self.joblib.as_mut() else {
            return;
        };
        if tracker.wrapper_imports.is_empty() || tracker.dicts.len() >= MAX_DICTS {
            return;
        }
        tracker.dicts.insert(
            id,
            DictTrack {
                attrs: None,
                known: true,
            },
        );
    }

    /// SETITEM / SETITEMS / DICT set `items` (key, value, key, value...) in dict `id`.
    pub(super) fn joblib_dict_set(&mut self, id: u32, items: &[Value]) {
        if let Some(tracker) = self.joblib.as_mut() {
            tracker.dict_set(id, items);
        }
    }

    /// A call opcode made `result`.
    pub(super) fn track_call(&mut self, result: &Value, callable: &Value, args: CallArgs<'_>) {
        let offset = match result {
            Value::Obj(id) => self
                .tables
                .objects
                .get(*id as usize)
                .map_or(u64::MAX, |o| o.offset),
            _ => return,
        };
        let Some(tracker) = self.joblib.as_mut() else {
            return;
        };
        if tracker.objects.len() >= MAX_OBJECTS {
            return;
        }
        let callee = match callable {
            Value::Import(index) => Some(*index),
            _ => None,
        };
        // dtypes are often made before the wrapper class is first imported (an estimator's
        // attributes) and referenced from the memo later, so they are tracked from the start.
        if tracker.wrapper_imports.is_empty() && !callee.is_some_and(|i| tracker.dtype_imports.contains(&i)) {
            return;
        }
        if callee.is_some_and(|i| tracker.wrapper_imports.contains(&i)) {
            let positional: Option<&[Value]> = match args {
                CallArgs::Reduce(Value::Tuple(items, _)) => Some(items),
                CallArgs::Reduce(Value::EmptyTuple) => Some(&[]),
                CallArgs::Reduce(_) => None,
                CallArgs::Items(items) => Some(items),
                CallArgs::New(_) => Some(&[]),
            };
            let tracked = match positional {
                // `cls.__new__(cls)`: no attributes until BUILD.
                Some([]) => Tracked::Wrapper {
                    attrs: Attrs::default(),
                    known: true,
                },
                // `NumpyArrayWrapper(subclass, shape, order, dtype, allow_mmap=False,
                // numpy_array_alignment_bytes=16)`.
                Some(items) if (4..=ATTR_NAMES.len()).contains(&items.len()) => {
                    let mut attrs = Attrs::default();
                    for (slot, value) in attrs.0.iter_mut().zip(items) {
                        *slot = Some(value.clone());
                    }
                    if attrs.get(ALIGNMENT).is_none() {
                        attrs.0[ALIGNMENT] = Some(Value::Int(DEFAULT_ALIGNMENT));
                    }
                    Tracked::Wrapper { attrs, known: true }
                }
                _ => Tracked::Wrapper {
                    attrs: Attrs::default(),
                    known: false,
                },
            };
            tracker.objects.insert(offset, tracked);
            return;
        }
        if callee.is_some_and(|i| tracker.dtype_imports.contains(&i)) {
            let descr = match args {
                CallArgs::Reduce(Value::Tuple(items, _)) => {
                    items.first().and_then(Value::as_name).map(Rc::from)
                }
                _ => None,
            };
            tracker
                .objects
                .insert(offset, Tracked::Dtype { descr, state: None });
            return;
        }
        let seen_into = match args {
            CallArgs::Reduce(value) | CallArgs::New(value) => match value {
                Value::Tuple(..) | Value::EmptyTuple => !mentions(value, &tracker.wrapper_imports),
                _ => false,
            },
            CallArgs::Items(items) => !items.iter().any(|v| mentions(v, &tracker.wrapper_imports)),
        };
        if !seen_into {
            tracker.suspects.insert(offset);
        }
    }

    /// BUILD applied `state` to `target`.
    pub(super) fn track_build(&mut self, target: &Value, state: &Value) {
        let offset = match target {
            Value::Obj(id) => match self.tables.objects.get(*id as usize) {
                Some(obj) => obj.offset,
                None => return,
            },
            _ => return,
        };
        let offset = &offset;
        let Some(tracker) = self.joblib.as_mut() else {
            return;
        };
        let is_wrapper = match tracker.objects.get_mut(offset) {
            Some(Tracked::Dtype { state: slot, .. }) => {
                *slot = Some(state.clone());
                return;
            }
            Some(Tracked::Wrapper { .. }) => true,
            None => false,
        };
        if !is_wrapper {
            if tracker.suspects.contains(offset) {
                tracker.pending = Some(ArrayRead::Unknown {
                    reason: "BUILD sets the state of an object made from the NumpyArrayWrapper class by \
                             another callable; joblib reads array data after it if it is a wrapper"
                        .into(),
                });
            }
            return;
        }
        // `load_build` without `__setstate__`: a dict, or a (state, slotstate) pair, merged into
        // the instance's attributes.
        let dicts = &tracker.dicts;
        let dict_attrs = |value: &Value| -> Option<Attrs> {
            match value {
                Value::None => Some(Attrs::default()),
                Value::Dict(id) => dicts
                    .get(id)
                    .filter(|d| d.known)
                    .map(|d| d.attrs.as_deref().cloned().unwrap_or_default()),
                _ => None,
            }
        };
        let update = match state {
            Value::Tuple(pair, _) if pair.len() == 2 => match (pair.first(), pair.get(1)) {
                (Some(a), Some(b)) => dict_attrs(a).zip(dict_attrs(b)).map(|(mut a, b)| {
                    a.update(&b);
                    a
                }),
                _ => None,
            },
            other => dict_attrs(other),
        };
        if let Some(Tracked::Wrapper { attrs, known }) = tracker.objects.get_mut(offset) {
            match update {
                Some(update) => attrs.update(&update),
                None => *known = false,
            }
        }
        let read = self.array_read(*offset);
        // The array that replaces the wrapper: its element count, for checks that need it.
        let numel = self.wrapper_count(*offset);
        if let (Value::Obj(id), Some(numel)) = (target, numel) {
            self.set_numel(*id, numel);
        }
        if let Some(tracker) = self.joblib.as_mut() {
            tracker.pending = Some(read);
        }
    }

    /// The element count of a wrapper's array, when its shape is plain constants.
    fn wrapper_count(&self, wrapper: u64) -> Option<u64> {
        let tracker = self.joblib.as_ref()?;
        let Some(Tracked::Wrapper { attrs, known: true }) = tracker.objects.get(&wrapper) else {
            return None;
        };
        attrs.get(SHAPE).and_then(shape_numel)
    }

    fn array_read(&self, wrapper: u64) -> ArrayRead {
        let unknown = |reason: String| ArrayRead::Unknown { reason };
        let Some(tracker) = self.joblib.as_ref() else {
            return unknown("joblib tracking is off".into());
        };
        let Some(Tracked::Wrapper { attrs, known }) = tracker.objects.get(&wrapper) else {
            return unknown("the wrapper is not tracked".into());
        };
        if !known {
            return unknown("the wrapper's attributes are not plain constants the scanner can follow".into());
        }
        let dtype = match attrs.get(DTYPE) {
            Some(Value::Obj(id)) => self
                .tables
                .objects
                .get(*id as usize)
                .and_then(|obj| tracker.objects.get(&obj.offset)),
            _ => None,
        };
        let Some(Tracked::Dtype {
            descr: Some(descr),
            state,
        }) = dtype
        else {
            return unknown("the wrapper's dtype is not a numpy.dtype('<kind><size>') call".into());
        };
        let (itemsize, hasobject) = match dtype_layout(descr, state.as_ref()) {
            Ok(layout) => layout,
            Err(reason) => return unknown(reason),
        };
        if hasobject {
            return ArrayRead::Pickled;
        }
        let Some(count) = attrs
            .get(SHAPE)
            .and_then(shape_numel)
            .and_then(|n| i64::try_from(n).ok())
        else {
            return unknown("the wrapper's shape is not a tuple of non-negative int constants".into());
        };
        if itemsize <= 0 {
            return unknown(format!("the dtype's item size is {itemsize}"));
        }
        let Some(nbytes) = count.checked_mul(itemsize).and_then(|n| u64::try_from(n).ok()) else {
            return unknown("the array's byte size overflows".into());
        };
        let padded = !matches!(attrs.get(ALIGNMENT), None | Some(Value::None));
        ArrayRead::Raw { nbytes, padded }
    }
}
