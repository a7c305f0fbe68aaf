//! The value model: the stand-ins the symbolic stack holds in place of CPython's objects.
//! Kept to 24 bytes a value, so that a dataset's million items cost no allocation.

use std::rc::Rc;

/// A stand-in for what CPython would have on its stack.
#[derive(Debug, Clone)]
pub(super) enum Value {
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
    /// A bytes or bytearray constant: where its payload starts in the stream (which also names
    /// the object: every bytes opcode makes a new one, memo reads and DUP share it), its length,
    /// and whether it is a bytearray (`mutable`; or the read-only view READONLY_BUFFER makes of
    /// one, which keeps its `at`).
    Bytes {
        at: u64,
        len: u64,
        mutable: bool,
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
    /// An out-of-band buffer (NEXT_BUFFER): where that opcode is (which names the buffer: each
    /// NEXT_BUFFER takes a fresh one, memo reads and DUP share it), and whether READONLY_BUFFER
    /// made a read-only view of it.
    Buffer {
        at: u64,
        readonly: bool,
    },
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
pub(super) struct TupleMeta {
    pub(super) depth: u8,
    /// Every import inside (at any depth) may be stored as a plain value.
    pub(super) storable: bool,
}

/// A str of at most `ShortName::CAPACITY` bytes, stored inline; `Value` stays 24 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShortName {
    len: u8,
    bytes: [u8; ShortName::CAPACITY],
}

impl ShortName {
    const CAPACITY: usize = 22;

    pub(super) fn new(text: &str) -> Option<ShortName> {
        let mut bytes = [0; ShortName::CAPACITY];
        bytes.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
        Some(ShortName {
            len: u8::try_from(text.len()).ok()?,
            bytes,
        })
    }

    /// UTF-8, as it was built from a `&str`.
    pub(super) fn as_bytes(&self) -> &[u8] {
        let len = usize::from(self.len).min(ShortName::CAPACITY);
        self.bytes.get(..len).unwrap_or_default()
    }
}

const _: () = assert!(std::mem::size_of::<Value>() == 24);

/// Tuples keep their items only when small and shallow: call arguments, shapes, persistent
/// ids. Larger ones are opaque; one holding an import that may not be stored is refused when
/// it is made.
pub(super) const KEPT_TUPLE_LEN: usize = 256;
pub(super) const KEPT_TUPLE_DEPTH: u8 = 8;

impl Value {
    pub(super) fn what(&self) -> &'static str {
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
            Value::Buffer { .. } => "buffer",
            Value::Tuple(..) | Value::EmptyTuple | Value::OpaqueTuple => "tuple",
            Value::Import(_) => "import",
            Value::Obj(_) => "call result",
            Value::Persistent | Value::Storage(_) => "persistent object",
            Value::Unknown => "unknown",
        }
    }

    /// The text of a str constant that can be a name.
    pub(super) fn as_name(&self) -> Option<&str> {
        match self {
            Value::Name(text) => Some(text),
            Value::ShortName(text) => std::str::from_utf8(text.as_bytes()).ok(),
            _ => None,
        }
    }

    /// The same as bytes, for comparisons that need no `&str`.
    pub(super) fn name_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Name(text) => Some(text.as_bytes()),
            Value::ShortName(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    pub(super) fn depth(&self) -> u8 {
        match self {
            Value::Tuple(_, meta) => meta.depth,
            _ => 0,
        }
    }

    /// Plain constants: a tuple of only these may stay opaque.
    pub(super) fn is_scalar(&self) -> bool {
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
pub(super) const PLAIN_VALUES: [Value; 10] = [
    Value::Text,
    Value::Bool(false),
    Value::Bool(true),
    Value::None,
    Value::Set,
    Value::FrozenSet,
    Value::OpaqueTuple,
    Value::Persistent,
    Value::Unknown,
    Value::EmptyTuple,
];

/// Where `Value::OpaqueTuple` is in `PLAIN_VALUES`.
pub(super) const OPAQUE_TUPLE_SLOT: u32 = match plain_index(&Value::OpaqueTuple) {
    Some(slot) => slot,
    None => panic!("OpaqueTuple is a plain value"),
};

#[inline]
pub(super) const fn plain_index(value: &Value) -> Option<u32> {
    let index = match value {
        Value::Text => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::None => 3,
        Value::Set => 4,
        Value::FrozenSet => 5,
        Value::OpaqueTuple => 6,
        Value::Persistent => 7,
        Value::Unknown => 8,
        Value::EmptyTuple => 9,
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
