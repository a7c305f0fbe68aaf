//! The loaded value of a checkpoint, walked as `torch.load` would return it: tensors by dotted
//! path (dict keys and list indices joined with `.`), plain leaves as JSON metadata, modules as
//! `state_dict()` names their parameters and buffers; in a pickle or joblib file, NumPy arrays
//! as tensors. Nothing is called.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write as _;

use crate::evaluate::{Heap, Object, Val};

use super::numpy::{self, Layout};
use super::storages::{tar_key, Found};
use super::tensor::{Dtype, TensorSpec};
use super::{ConvertError, Converted, Dropped};
use crate::native_state::{array_of, makes_array};

/// Containers nested deeper than this are refused (a cycle ends here too).
const MAX_DEPTH: usize = 200;
/// Values visited at most (shared containers are visited once per reference).
const MAX_VISITS: usize = 1 << 22;

/// A checkpoint's tensors, in order, and the records of its NumPy arrays (numbered after the
/// found records).
type Walked<'a> = (Vec<TensorSpec>, Vec<Cow<'a, [u8]>>);

/// Walks the checkpoint. Plain leaves go to `converted.metadata`, everything else to
/// `converted.dropped`.
pub(super) fn walk<'a>(found: &Found<'a>, converted: &mut Converted) -> Result<Walked<'a>, ConvertError> {
    let mut walker = Walker {
        found,
        heap: &found.heap,
        converted,
        tensors: Vec::new(),
        names: HashSet::new(),
        visits: 0,
        records: found.record_count(),
        arrays: RefCell::new(Vec::new()),
    };
    walker.value("", found.root, 0)?;
    if !walker.converted.metadata.contains_key("format") {
        walker.converted.metadata.insert("format".into(), "pt".into());
    }
    Ok((walker.tensors, walker.arrays.into_inner()))
}

struct Walker<'w, 'a> {
    found: &'w Found<'a>,
    heap: &'w Heap,
    converted: &'w mut Converted,
    tensors: Vec<TensorSpec>,
    names: HashSet<String>,
    visits: usize,
    /// Records found before the walk (arrays' records are numbered after them).
    records: usize,
    /// Each NumPy array's bytes, a record of its own.
    arrays: RefCell<Vec<Cow<'a, [u8]>>>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Walker<'_, 'a> {
    /// Offset of a pickle offset in the input.
    fn at(&self, offset: u64) -> u64 {
        self.found.pickle_at.saturating_add(offset)
    }

    fn claim(&mut self, name: &str) -> Result<(), ConvertError> {
        if self.names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(ConvertError::NameClash {
                name: name.to_owned(),
            })
        }
    }

    fn drop_value(&mut self, path: &str, what: String) {
        self.converted.dropped.push(Dropped {
            path: path.to_owned(),
            what,
        });
    }

    fn value(&mut self, path: &str, value: Val, depth: usize) -> Result<(), ConvertError> {
        self.visits += 1;
        if depth > MAX_DEPTH || self.visits > MAX_VISITS {
            return Err(ConvertError::Unsupported {
                offset: self.found.pickle_at,
                what: format!("the checkpoint nests or repeats values too deeply to convert (at {path:?})"),
            });
        }
        if let Some(spec) = self.tensor(path, value)? {
            self.claim(path)?;
            self.tensors.push(spec);
            return Ok(());
        }
        let mut text = String::new();
        match json(self.heap, value, &mut text, 0) {
            Json::Written => {
                self.claim(path)?;
                self.converted.metadata.insert(path.to_owned(), text);
                return Ok(());
            }
            Json::TooLarge => {
                let what = format!("a plain value whose JSON is larger than {MAX_JSON} bytes");
                self.drop_value(path, what);
                return Ok(());
            }
            Json::NotPlain => {}
        }
        if let Some(items) = mapping(self.heap, value) {
            for (key, item) in items {
                match key_text(self.heap, key) {
                    Some(key) => self.value(&join(path, &key), item, depth + 1)?,
                    None => self.drop_value(path, "an item whose key is not a str or an int".into()),
                }
            }
            if let Some(object) = self.heap.object(value) {
                if object.state.is_some() {
                    let what =
                        "the attributes of an OrderedDict (for a state dict: torch's module version record \
                                `_metadata`)";
                    self.drop_value(path, what.into());
                }
            }
            return Ok(());
        }
        if let Some(items) = sequence(self.heap, value) {
            for (i, item) in items.iter().enumerate() {
                self.value(&join(path, &i.to_string()), *item, depth + 1)?;
            }
            return Ok(());
        }
        if let Some(object) = self.heap.object(value) {
            if let Some(state) = module_state(self.heap, object) {
                self.claim(path)?;
                self.module(path, state, depth)?;
                let class = self.class_name(object);
                let what = format!(
                    "a torch module ({class}): its parameters and buffers are written under the names its \
                     state_dict() gives; its class and configuration are not"
                );
                self.drop_value(path, what);
                return Ok(());
            }
            let class = self.class_name(object);
            let what = match class.as_str() {
                // How protocols 0-2 write bytes and bytearrays.
                "_codecs.encode" | "builtins.bytes" | "__builtin__.bytes" => "a bytes value".to_owned(),
                "builtins.bytearray" | "__builtin__.bytearray" => "a bytearray".to_owned(),
                "builtins.set" | "__builtin__.set" | "builtins.frozenset" | "__builtin__.frozenset" => {
                    "a set".to_owned()
                }
                _ => format!("an object made by {class}"),
            };
            self.drop_value(path, what);
            return Ok(());
        }
        self.drop_value(path, describe(value).into());
        Ok(())
    }

    fn class_name(&self, object: &Object) -> String {
        // The legacy format saves a module's class as ('module', class, file, source).
        let legacy_class = self
            .heap
            .persistent_id(object.callee)
            .and_then(|id| self.heap.tuple(id)?.get(1).copied());
        let callee = self.heap.global(legacy_class.unwrap_or(object.callee));
        // copyreg's helpers name the class in their first argument.
        let class = match callee {
            Some(("copyreg", "_reconstructor" | "__newobj__" | "__newobj_ex__")) => self
                .heap
                .tuple(object.args)
                .and_then(|args| args.first())
                .and_then(|class| self.heap.global(*class)),
            other => other,
        };
        class.map_or_else(|| "an unknown callee".to_owned(), |(m, n)| format!("{m}.{n}"))
    }

    /// A module's parameters, persistent buffers and submodules, as `state_dict()` orders them.
    fn module(&mut self, path: &str, state: Val, depth: usize) -> Result<(), ConvertError> {
        let heap = self.heap;
        let skipped: Vec<&str> = heap
            .get(state, "_non_persistent_buffers_set")
            .map(|set| set_items(heap, set).iter().filter_map(|v| heap.str(*v)).collect())
            .unwrap_or_default();
        for field in ["_parameters", "_buffers"] {
            let Some(items) = heap.get(state, field).and_then(|v| mapping(heap, v)) else {
                continue;
            };
            for (key, item) in items {
                let Some(key) = key_text(heap, key) else { continue };
                if item == Val::None || (field == "_buffers" && skipped.contains(&key.as_str())) {
                    continue;
                }
                let name = join(path, &key);
                match self.tensor(&name, item)? {
                    Some(spec) => {
                        self.claim(&name)?;
                        self.tensors.push(spec);
                    }
                    None => {
                        return Err(ConvertError::Unsupported {
                            offset: self.at(heap.object(item).map_or(0, |o| o.offset)),
                            what: format!("{field} entry {name:?} of a module is not a tensor"),
                        })
                    }
                }
            }
        }
        if let Some(children) = heap.get(state, "_modules").and_then(|v| mapping(heap, v)) {
            for (key, child) in children {
                let Some(key) = key_text(heap, key) else { continue };
                let child_state = heap.object(child).and_then(|o| module_state(heap, o));
                match child_state {
                    Some(child_state) if depth < MAX_DEPTH => {
                        self.module(&join(path, &key), child_state, depth + 1)?
                    }
                    Some(_) => {
                        return Err(ConvertError::Unsupported {
                            offset: self.found.pickle_at,
                            what: format!("modules nest too deeply to convert (at {path:?})"),
                        })
                    }
                    None if child == Val::None => {}
                    None => {
                        return Err(ConvertError::Unsupported {
                            offset: self.found.pickle_at,
                            what: format!("submodule {:?} is not a module state", join(path, &key)),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// The tensor a value is, if it is one; an error for tensors the converter cannot write.
    fn tensor(&self, path: &str, value: Val) -> Result<Option<TensorSpec>, ConvertError> {
        let heap = self.heap;
        // The tar format's data pickle names tensors by key.
        if let Some(id) = heap.persistent_id(value) {
            let tensor = tar_key(heap, id).and_then(|key| self.found.tar_tensors.get(&key));
            return match tensor {
                Some(tensor) => TensorSpec::from_tar(tensor, path, self.found.big_endian)
                    .map(Some)
                    .map_err(|what| ConvertError::Unsupported {
                        offset: tensor.at,
                        what: format!("{path}: {what}"),
                    }),
                None => Ok(None),
            };
        }
        let Some(object) = heap.object(value) else {
            return Ok(None);
        };
        if let Some(data) = self.found.arrays_in.filter(|_| makes_array(heap, value)) {
            return self.array(path, data, value, object.offset).map(Some);
        }
        let Some(callee) = heap.global(object.callee) else {
            return Ok(None);
        };
        let args = heap.tuple(object.args).unwrap_or_default();
        self.rebuild(path, callee, args, object.offset, 0)
    }

    /// A NumPy array (`_reconstruct` and BUILD, `_frombuffer`, joblib's wrapper and the bytes
    /// after it) whose data is in the input.
    fn array(&self, path: &str, data: &'a [u8], value: Val, offset: u64) -> Result<TensorSpec, ConvertError> {
        let array = array_of(self.heap, data, value).map_err(|why| ConvertError::Unsupported {
            offset: self.at(offset),
            what: format!("{path}: a NumPy array the converter cannot write: {why}"),
        })?;
        let layout = Layout {
            shape: array.shape,
            fortran: array.fortran,
            offset_bytes: 0,
            bytes: array.bytes.len() as u64,
        };
        let code = array.dtype.code.as_deref();
        let shown = code.unwrap_or("with fields");
        let mut arrays = self.arrays.borrow_mut();
        let spec = numpy::spec(
            path,
            self.at(offset),
            code,
            shown,
            layout,
            self.records + arrays.len(),
        )?;
        arrays.push(array.bytes);
        Ok(spec)
    }

    /// A call of a torch rebuild function (`callee`) with `args`.
    fn rebuild(
        &self,
        path: &str,
        callee: (&str, &str),
        args: &[Val],
        offset: u64,
        depth: usize,
    ) -> Result<Option<TensorSpec>, ConvertError> {
        let heap = self.heap;
        let unsupported = |what: String| ConvertError::Unsupported {
            offset: self.at(offset),
            what,
        };
        let malformed = |what: String| ConvertError::Malformed {
            offset: self.at(offset),
            what,
        };
        match callee {
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => {
                let explicit = if callee.1 == "_rebuild_tensor_v3" {
                    let dtype = args.get(6).and_then(|d| heap.global(*d));
                    match dtype {
                        Some(("torch", name)) => Some(Dtype::from_torch(name).ok_or_else(|| {
                            unsupported(format!(
                                "{path}: dtype torch.{name} has no safetensors counterpart"
                            ))
                        })?),
                        _ => {
                            return Err(malformed(format!(
                                "{path}: _rebuild_tensor_v3 without a torch dtype"
                            )))
                        }
                    }
                } else {
                    None
                };
                let spec = TensorSpec::from_args(heap, self.found, args, explicit, path, self.at(offset))
                    .map_err(|why| malformed(format!("{path}: {why}")))?;
                Ok(Some(spec))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                let data = args.first().copied().unwrap_or(Val::None);
                match self.tensor(path, data)? {
                    Some(spec) => Ok(Some(spec)),
                    None => Err(malformed(format!(
                        "{path}: a parameter whose data is not a tensor"
                    ))),
                }
            }
            ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") if depth == 0 => {
                let inner = args.first().and_then(|f| heap.global(*f));
                let inner_args = args.get(2).and_then(|a| heap.tuple(*a)).unwrap_or_default();
                match inner {
                    Some(inner) => match self.rebuild(path, inner, inner_args, offset, depth + 1)? {
                        Some(spec) => Ok(Some(spec)),
                        None => Err(unsupported(format!(
                            "{path}: a tensor subclass rebuilt by {}.{}",
                            inner.0, inner.1
                        ))),
                    },
                    None => Err(malformed(format!(
                        "{path}: {}.{} without a rebuild function",
                        callee.0, callee.1
                    ))),
                }
            }
            ("torch._utils" | "torch._tensor", name) if name.starts_with("_rebuild") => {
                Err(unsupported(format!(
                "{path}: a tensor rebuilt by torch._utils.{name} (quantized, sparse, nested, meta or device \
                 tensors have no safetensors form)"
            )))
            }
            _ => Ok(None),
        }
    }
}

/// The state dict of a module object: a BUILD state with `_parameters` and `_modules`.
fn module_state(heap: &Heap, object: &Object) -> Option<Val> {
    let state = object.state?;
    (heap.get(state, "_parameters").is_some() && heap.get(state, "_modules").is_some()).then_some(state)
}

/// A dict's or an `OrderedDict`'s items, in the order Python keeps them (a key set again keeps
/// its first place and takes the last value).
fn mapping(heap: &Heap, value: Val) -> Option<Vec<(Val, Val)>> {
    let items = match value {
        Val::Dict(_) => heap.dict_items(value)?,
        Val::Obj(_) => {
            let object = heap.object(value)?;
            let class = heap.global(object.callee)?;
            if class != ("collections", "OrderedDict")
                || heap.tuple(object.args).is_none_or(|a| !a.is_empty())
            {
                return None;
            }
            match object.items {
                Some(items) => heap.dict_items(items)?,
                None => &[],
            }
        }
        _ => return None,
    };
    let mut ordered: Vec<(Val, Val)> = Vec::with_capacity(items.len());
    let mut places: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for &(key, item) in items {
        match key_text(heap, key) {
            Some(text) => match places.get(&text) {
                Some(&at) => {
                    if let Some(slot) = ordered.get_mut(at) {
                        slot.1 = item;
                    }
                }
                None => {
                    places.insert(text, ordered.len());
                    ordered.push((key, item));
                }
            },
            None => ordered.push((key, item)),
        }
    }
    Some(ordered)
}

fn sequence(heap: &Heap, value: Val) -> Option<&[Val]> {
    match value {
        Val::List(_) => heap.list(value, u64::MAX),
        Val::Tuple(_) => heap.tuple(value),
        _ => None,
    }
}

/// A set's items: a set value, or `builtins.set([...])` as protocol 2 writes one.
fn set_items(heap: &Heap, value: Val) -> Vec<Val> {
    if let Some(items) = heap.set(value) {
        return items.to_vec();
    }
    let Some(object) = heap.object(value) else {
        return Vec::new();
    };
    if heap.global(object.callee) != Some(("builtins", "set"))
        && heap.global(object.callee) != Some(("__builtin__", "set"))
    {
        return Vec::new();
    }
    match heap.tuple(object.args).and_then(|a| a.first()) {
        Some(&items) => sequence(heap, items).map(<[Val]>::to_vec).unwrap_or_default(),
        None => Vec::new(),
    }
}

fn key_text(heap: &Heap, key: Val) -> Option<String> {
    match key {
        Val::Str(_) => heap.str(key).map(str::to_owned),
        Val::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn describe(value: Val) -> &'static str {
    match value {
        Val::Bytes { .. } => "a bytes value",
        Val::Set(_) => "a set",
        Val::Global(_) => "a class or function reference",
        Val::PersId(_) => "a storage with no tensor",
        _ => "a value JSON cannot hold (a big int, a buffer, a str too long to read, ...)",
    }
}

/// Bytes of JSON one metadata value takes at most.
const MAX_JSON: usize = 1 << 20;

/// What [`json`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Json {
    Written,
    /// The value holds something JSON cannot (a tensor, an object, bytes, ...).
    NotPlain,
    /// Its JSON passed [`MAX_JSON`] bytes.
    TooLarge,
}

/// Writes `value` as JSON (Python's `json.dumps` spelling of floats, NaN and infinities), when
/// it holds only None, bools, ints, floats, strs, and lists, tuples and dicts of them. Every
/// value visited writes at least one byte, so the size bound bounds the work too (shared
/// containers included).
fn json(heap: &Heap, value: Val, out: &mut String, depth: usize) -> Json {
    if out.len() > MAX_JSON {
        return Json::TooLarge;
    }
    if depth > MAX_DEPTH {
        return Json::NotPlain;
    }
    match plain_json(heap, value, out, depth) {
        false if out.len() > MAX_JSON => Json::TooLarge,
        false => Json::NotPlain,
        true => Json::Written,
    }
}

fn plain_json(heap: &Heap, value: Val, out: &mut String, depth: usize) -> bool {
    match value {
        Val::None => out.push_str("null"),
        Val::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Float(f) => out.push_str(&float_text(f)),
        Val::Str(_) => match heap.str(value).and_then(|s| serde_json::to_string(s).ok()) {
            Some(text) => out.push_str(&text),
            None => return false,
        },
        Val::List(_) | Val::Tuple(_) => {
            let Some(items) = sequence(heap, value) else {
                return false;
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if json(heap, *item, out, depth + 1) != Json::Written {
                    return false;
                }
            }
            out.push(']');
        }
        Val::Dict(_) | Val::Obj(_) => {
            let Some(items) = mapping(heap, value) else {
                return false;
            };
            if heap.object(value).is_some_and(|o| o.state.is_some()) {
                return false;
            }
            out.push('{');
            for (i, (key, item)) in items.iter().enumerate() {
                let Some(key) = key_text(heap, *key).and_then(|k| serde_json::to_string(&k).ok()) else {
                    return false;
                };
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&key);
                out.push_str(": ");
                if json(heap, *item, out, depth + 1) != Json::Written {
                    return false;
                }
            }
            out.push('}');
        }
        _ => return false,
    }
    true
}

/// A float as Python's `json.dumps` writes it (`repr`, with `NaN` and `Infinity`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Debug is the shortest text that reads back to the same float, as Python's repr.
        format!("{f:?}")
    }
}
