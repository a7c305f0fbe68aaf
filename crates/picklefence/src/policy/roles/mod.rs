//! Roles: how a pickle may use an allowed name.
//!
//! A name is safe only in the way its real pickles use it. Every allowlist entry carries one
//! or more roles, written in the policy data after the name:
//!
//! - `reconstruct` — the class operand of NEWOBJ/NEWOBJ_EX, `copyreg._reconstructor`,
//!   `copyreg.__newobj__`/`__newobj_ex__` (or a reconstructor schema's class slot). The fresh
//!   object may receive one BUILD of plain state. Options: `reconstruct(state=any)` (its
//!   `__setstate__` takes a tuple), `reconstruct(items)` (SETITEMS/APPENDS before the BUILD),
//!   `reconstruct(newargs)` (`__new__` arguments of plain data).
//! - `value` — referenced and stored, never called, never built. `value(key=a|b)`: stored only
//!   under those dict keys (a compiled helper the library calls with arguments it computes);
//!   `value(item)`: only as an item of a tuple or list (never under an attribute a library
//!   reads and calls).
//! - `call(ARGS) -> RESULT` — called with arguments of the given kinds; see [`Kind`].
//! - `argument` — only where a call schema names it (`class{...}`, `callable{...}`): never
//!   called, constructed or stored on its own.
//! - `trusted` — an entry a user added without a role: any data arguments, any use. The
//!   state rules still apply.
//!
//! The schema text is data: `call(str<=64, bool, true) -> fresh(state=tuple(int, str<=4))`.
//! This file holds the role types and how they print; `parse.rs` reads the text.

use std::fmt;
use std::sync::Arc;

mod parse;

pub use parse::parse_role;

/// A parse error of a role, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {at:?} in role {text:?})")]
pub struct RoleError {
    /// What was expected or is wrong.
    pub message: String,
    /// The rest of the text where parsing stopped.
    pub at: String,
    /// The whole role text.
    pub text: String,
}

/// What may be done with an allowed name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// `reconstruct`: the class a NEWOBJ or reconstructor makes, with its options.
    pub reconstruct: Option<Reconstruct>,
    /// `value`: referenced and stored, never called or built.
    pub value: Option<ValueRole>,
    /// `call(...)`: called with arguments that fit the schema.
    pub call: Option<Arc<CallSchema>>,
    /// Only where a call schema names it.
    pub argument: bool,
    /// Added by a user without a role: called, constructed, built or stored with plain data.
    pub trusted: bool,
}

impl Roles {
    /// The roles of a name a user added without a role: any use.
    pub fn trusted() -> Roles {
        Roles {
            trusted: true,
            ..Roles::default()
        }
    }

    /// Adds `other`'s roles (a later line of the same entry).
    pub fn merge(&mut self, other: Roles) {
        if other.reconstruct.is_some() {
            self.reconstruct = other.reconstruct;
        }
        if other.value.is_some() {
            self.value = other.value;
        }
        if other.call.is_some() {
            self.call = other.call;
        }
        self.argument |= other.argument;
        self.trusted |= other.trusted;
    }

    /// Whether no role at all is given.
    pub fn is_empty(&self) -> bool {
        self.reconstruct.is_none()
            && self.value.is_none()
            && self.call.is_none()
            && !self.argument
            && !self.trusted
    }

    /// The roles in words, for messages: "a reconstructed class", "a value or a call".
    pub fn describe(&self) -> String {
        if self.trusted {
            return "any use (trusted)".into();
        }
        let mut parts = Vec::new();
        if self.reconstruct.is_some() {
            parts.push("a reconstructed class");
        }
        if self.call.is_some() {
            parts.push("a call with checked arguments");
        }
        if let Some(value) = &self.value {
            parts.push(if value.only_under.is_some() {
                "a value stored under named keys"
            } else {
                "a stored value"
            });
        }
        if self.argument {
            parts.push("an argument of the calls that name it");
        }
        match parts.as_slice() {
            [] => "nothing".into(),
            [one] => (*one).into(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }

    /// The role lines as a policy file writes them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.trusted {
            lines.push("trusted".into());
        }
        if let Some(r) = &self.reconstruct {
            lines.push(r.to_string());
        }
        if let Some(v) = &self.value {
            lines.push(v.to_string());
        }
        if let Some(c) = &self.call {
            lines.push(c.text.clone());
        }
        if self.argument {
            lines.push("argument".into());
        }
        lines
    }
}

/// The shape a reconstructed object's BUILD state may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateShape {
    /// A dict, or a `(dict | None, dict)` pair: merged into the instance's attributes.
    Dict,
    /// Any plain data (the class's `__setstate__` takes a tuple).
    Any,
}

/// The `reconstruct` role's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconstruct {
    /// The shape its BUILD state may have.
    pub state: StateShape,
    /// SETITEMS/APPENDS/ADDITEMS before the BUILD (dict and list subclasses).
    pub items: bool,
    /// `__new__` takes plain-data arguments (NEWOBJ args, `__newobj__(cls, *args)`).
    pub newargs: bool,
    /// Its instances are callable (the class defines `__call__`).
    pub callable: bool,
}

impl Default for Reconstruct {
    fn default() -> Self {
        Reconstruct {
            state: StateShape::Dict,
            items: false,
            newargs: false,
            callable: false,
        }
    }
}

impl fmt::Display for Reconstruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut opts = Vec::new();
        if self.state == StateShape::Any {
            opts.push("state=any");
        }
        if self.items {
            opts.push("items");
        }
        if self.newargs {
            opts.push("newargs");
        }
        if self.callable {
            opts.push("callable");
        }
        if opts.is_empty() {
            write!(f, "reconstruct")
        } else {
            write!(f, "reconstruct({})", opts.join(", "))
        }
    }
}

/// The `value` role's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueRole {
    /// The dict keys it may be stored under; `None`: anywhere.
    pub only_under: Option<Vec<Box<str>>>,
    /// With `only_under`: also as an item of a tuple or list or as a pickle's result, never
    /// under an attribute (`value(item)`: legacy torch records hold storage classes so).
    pub as_item: bool,
}

impl fmt::Display for ValueRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.only_under {
            None => write!(f, "value"),
            Some(keys) if keys.is_empty() && self.as_item => write!(f, "value(item)"),
            Some(keys) if self.as_item => write!(f, "value(item, key={})", keys.join("|")),
            Some(keys) => write!(f, "value(key={})", keys.join("|")),
        }
    }
}

/// A `module:qualified.name` inside a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// The module.
    pub module: Box<str>,
    /// The qualified name inside it.
    pub name: Box<str>,
}

impl Name {
    /// Whether this is `module` + `name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        &*self.module == module && &*self.name == name
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.module, self.name)
    }
}

/// One kind an argument may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A str constant of at most `max` bytes; `one_of`: exactly one of these.
    Str {
        /// Most bytes.
        max: usize,
        /// The only values allowed, if limited to a set.
        one_of: Option<Vec<Box<str>>>,
    },
    /// A bytes constant of at most `max` bytes (protocol < 3: `_codecs.encode(str, 'latin1')`).
    Bytes {
        /// Most bytes.
        max: u64,
    },
    /// An int constant within bounds (inclusive).
    Int {
        /// Least value.
        min: i64,
        /// Greatest value.
        max: i64,
    },
    /// An int of at most `max` bytes (an `i64`, or a LONG that size): bounded arithmetic.
    BigInt {
        /// Most bytes.
        max: u64,
    },
    /// Any str constant, of any length (latin-1 text of bytes at protocol < 3).
    Text,
    /// A `Fraction` as an old `str(Fraction)` writes it: `-12/34`, bounded, no exponent.
    FractionStr,
    /// numpy's array state `(version, shape, dtype, is_fortran, rawdata, ...)`: a list of
    /// objects must hold exactly the shape's element count (numpy reads past a short one).
    NdarrayState,
    /// numpy's dtype state: flags that match the dtype's kind (numpy trusts them).
    DtypeState,
    /// True (or int 1) / False (or int 0).
    Bool(Option<bool>),
    /// A float constant.
    Float,
    /// None.
    None,
    /// A tuple of at most `max` non-negative int constants (shapes, strides).
    Ints {
        /// Most items.
        max: usize,
    },
    /// A decimal number string as `str(Decimal)` writes it: bounded digits and exponent.
    Decimal,
    /// A list / dict / set the pickle made (not a call result).
    List,
    /// A dict the pickle made (not a call result).
    Dict,
    /// An empty tuple, list or dict.
    Empty,
    /// An `OrderedDict()` the pickle made that received no items (backward hooks).
    EmptyOrderedDict,
    /// Any plain data: constants, containers, objects the pickle built, `value` imports.
    Data,
    /// An object a call or a reconstruction made (not a constant, not an import).
    Object,
    /// An object's state: plain data whose dicts follow the state rules (no dunder keys...).
    State,
    /// A persistent id (what the loader's `persistent_load` returns).
    Pid,
    /// One of these imports, passed as a class.
    Class(Vec<Name>),
    /// Any import with the `reconstruct` role, passed as the class to make.
    Reconstructable,
    /// One of these imports, passed to be called by the callee.
    Callable(Vec<Name>),
    /// The object returned by a call of one of these.
    Result(Vec<Name>),
    /// A tuple: the arguments of the callable in argument `n`, checked against its schema.
    ArgsOf(usize),
    /// A tuple whose items follow a schema of their own.
    Tuple(Arc<Args>),
    /// A bytes constant holding a `torch.save` file, checked as a nested file by the scanner.
    TorchFile,
}

/// Alternatives for one argument; `optional` ones may be left out (only at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    /// The kinds it may have (`A|B`).
    pub kinds: Vec<Kind>,
    /// It may be left out (`A?`).
    pub optional: bool,
}

/// Positional arguments; `rest`: any number of further arguments of the last kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Each argument in turn.
    pub items: Vec<ArgSpec>,
    /// Further arguments of the last kind may follow (`, ...`).
    pub rest: bool,
}

impl Args {
    /// The spec of argument `i`, if there may be one.
    pub fn spec(&self, i: usize) -> Option<&ArgSpec> {
        match self.items.get(i) {
            Some(spec) => Some(spec),
            None if self.rest => self.items.last(),
            None => None,
        }
    }

    /// How many arguments must be present.
    pub fn required(&self) -> usize {
        self.items.iter().take_while(|a| !a.optional).count()
    }

    /// Whether `n` arguments fit the count.
    pub fn accepts_count(&self, n: usize) -> bool {
        n >= self.required() && (self.rest || n <= self.items.len())
    }
}

/// Cross-argument checks done in code, named in the schema after `where`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `(storage, offset, size, stride)` in arguments 0-3: the view lies inside the storage.
    TensorView,
    /// `__newobj__(cls, *args)`: arguments only for a class whose role takes `newargs`.
    NewArgs,
    /// `Tree(n_features, n_classes, n_outputs)`: `n_classes` holds `n_outputs` elements.
    TreeArgs,
    /// The result is an array of the shape in argument `n` (its element count is known).
    ShapeOf(usize),
    /// `_reconstructor(cls, dict, state)`: the state's entries become the object's items, so
    /// its keys are constants and no special names.
    BaseItems,
    /// `_restore_array((type, length, nulls, offset, buffers, ...))`: as many buffers as the
    /// type's layout has.
    ArrowBuffers,
    /// The buffer in argument `n` becomes the memory of the result without a copy: it must be
    /// an object the analysis can name (a bytes or bytearray constant, an out-of-band buffer,
    /// what `bytearray`/`_codecs.encode` made), and no other array or buffer may have the same
    /// memory unless every one of them is read-only.
    OwnBuffer(usize),
    /// `range(start, stop, step)` has at most `n` items: a constructor or the library may
    /// materialise any range a pickle holds.
    RangeLen(u64),
    /// `numpy.dtype(str, ...)`: the descr's item size (`'U500000000'`: 2 GB an element) is at
    /// most `n` bytes; arrays of it allocate that per element when the library fills them.
    DtypeSize(u64),
    /// `_new_Index(RangeIndex, {start, stop, step, ...})`: at most `n` items, as `range-len`.
    RangeState(u64),
}

/// What a call returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultSpec {
    /// A value that may be stored, but never built or added to (it may be shared).
    Value,
    /// A fresh object: at most one BUILD whose state fits `state` (default: a plain dict),
    /// and, with `items`, SETITEMS/APPENDS before it.
    Fresh {
        /// The state its BUILD may have; `None`: a plain dict.
        state: Option<ArgSpec>,
        /// SETITEMS/APPENDS may come before the BUILD.
        items: bool,
    },
    /// A fresh instance of the class in argument `slot`, judged as that class's reconstruction;
    /// `state` overrides the state it may be built with.
    New {
        /// The argument that holds the class.
        slot: usize,
        /// The state it may be built with, instead of the class's own.
        state: Option<ArgSpec>,
    },
    /// `getattr(class, "name")`: the attribute, judged as the import `module:Class.name`.
    Attribute,
}

/// The `call` role: the arguments a call may take, what it returns, and the checks done in
/// code across its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSchema {
    /// The positional arguments.
    pub args: Args,
    /// The keyword arguments it may be given (`*, name=kinds`), by name; only a call of a
    /// `functools.partial` passes any.
    pub keywords: Vec<(Box<str>, ArgSpec)>,
    /// What the call returns.
    pub result: ResultSpec,
    /// Checks across arguments (`where ...`).
    pub checks: Vec<Check>,
    /// The result is callable (`-> fresh(callable)`, `-> value(callable)`).
    pub callable_result: bool,
    /// The reviewed reason why the call is safe with these arguments.
    pub reason: String,
    /// The schema as written.
    pub text: String,
}

impl CallSchema {
    /// A trusted entry's schema: any number of plain-data arguments, a fresh result.
    pub fn trusted() -> CallSchema {
        CallSchema {
            args: Args {
                items: vec![ArgSpec {
                    kinds: vec![Kind::Data],
                    optional: true,
                }],
                rest: true,
            },
            keywords: Vec::new(),
            result: ResultSpec::Fresh {
                state: None,
                items: true,
            },
            checks: Vec::new(),
            callable_result: true,
            reason: "added by the user".into(),
            text: "call(data, ...) -> fresh(items)".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Display (messages and `picklefence policy`)
// ---------------------------------------------------------------------------------------

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |f: &mut fmt::Formatter<'_>, word: &str, names: &[Name]| {
            let list: Vec<String> = names.iter().map(Name::to_string).collect();
            write!(f, "{word}{{{}}}", list.join(", "))
        };
        match self {
            Kind::Str {
                one_of: Some(set), ..
            } => write!(f, "str{{{}}}", set.join(",")),
            Kind::Str { max, .. } => write!(f, "str<={max}"),
            Kind::Bytes { max: u64::MAX } => write!(f, "bytes"),
            Kind::Bytes { max } => write!(f, "bytes<={max}"),
            Kind::Int {
                min: i64::MIN,
                max: i64::MAX,
            } => write!(f, "int"),
            Kind::Int { min, max: i64::MAX } => write!(f, "int[{min}..]"),
            Kind::Int { min, max } => write!(f, "int[{min}..{max}]"),
            Kind::BigInt { max } => write!(f, "bigint<={max}"),
            Kind::Text => write!(f, "text"),
            Kind::FractionStr => write!(f, "fraction"),
            Kind::NdarrayState => write!(f, "ndarray-state"),
            Kind::DtypeState => write!(f, "dtype-state"),
            Kind::Bool(None) => write!(f, "bool"),
            Kind::Bool(Some(true)) => write!(f, "true"),
            Kind::Bool(Some(false)) => write!(f, "false"),
            Kind::Float => write!(f, "float"),
            Kind::None => write!(f, "none"),
            Kind::Ints { max } => write!(f, "ints<={max}"),
            Kind::Decimal => write!(f, "decimal"),
            Kind::List => write!(f, "list"),
            Kind::Dict => write!(f, "dict"),
            Kind::Empty => write!(f, "empty"),
            Kind::EmptyOrderedDict => write!(f, "empty-odict"),
            Kind::Data => write!(f, "data"),
            Kind::Object => write!(f, "object"),
            Kind::State => write!(f, "state"),
            Kind::Pid => write!(f, "pid"),
            Kind::Class(n) => names(f, "class", n),
            Kind::Reconstructable => write!(f, "reconstructable"),
            Kind::Callable(n) => names(f, "callable", n),
            Kind::Result(n) => names(f, "result", n),
            Kind::ArgsOf(n) => write!(f, "args-of({n})"),
            Kind::Tuple(args) => write!(f, "tuple({args})"),
            Kind::TorchFile => write!(f, "torchfile"),
        }
    }
}

impl fmt::Display for ArgSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, kind) in self.kinds.iter().enumerate() {
            if i > 0 {
                write!(f, "|")?;
            }
            write!(f, "{kind}")?;
        }
        if self.optional {
            write!(f, "?")?;
        }
        Ok(())
    }
}

impl fmt::Display for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.items.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{arg}")?;
        }
        if self.rest {
            write!(f, ", ...")?;
        }
        Ok(())
    }
}
