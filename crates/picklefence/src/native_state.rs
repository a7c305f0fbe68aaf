//! Classes whose compiled code trusts indices in their state (a tree's child indices, a sparse
//! matrix's `indptr`, a frame's block placements). Their arrays are data to the analyzer; the
//! guard validates every instance a load makes, and the scanner notes that a file relies on
//! that load-time validation. The list is data (`policies/native_state.txt`), parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../policies/native_state.txt");

/// What picklefence does about a compiled class's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The guard checks every instance a load makes.
    Validate,
    /// Nothing to check (the reason is in the data).
    Safe,
}

/// One line of the data: `MODULE:NAME` (`NAME` may be `*`: every class of the module), the
/// verdict, and what is checked or why nothing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The module.
    pub module: &'static str,
    /// The class, or `*`.
    pub name: &'static str,
    /// Validate or safe.
    pub verdict: Verdict,
    /// What is checked, or why nothing is.
    pub reason: &'static str,
}

fn parse(line: &'static str) -> Option<Entry> {
    let (qualified, rest) = line.split_once(char::is_whitespace)?;
    let (module, name) = qualified.split_once(':')?;
    let (verdict, reason) = rest.trim_start().split_once(char::is_whitespace)?;
    let verdict = match verdict {
        "validate" => Verdict::Validate,
        "safe" => Verdict::Safe,
        _ => return None,
    };
    Some(Entry {
        module,
        name,
        verdict,
        reason: reason.trim(),
    })
}

fn table() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let mut entries: Vec<Entry> = TABLE
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse)
            .collect();
        entries.sort_unstable_by_key(|e| (e.module, e.name));
        entries
    })
}

fn validated() -> &'static HashMap<(&'static str, &'static str), &'static str> {
    static VALIDATED: OnceLock<HashMap<(&'static str, &'static str), &'static str>> = OnceLock::new();
    VALIDATED.get_or_init(|| {
        table()
            .iter()
            .filter(|e| e.verdict == Verdict::Validate)
            .map(|e| ((e.module, e.name), e.reason))
            .collect()
    })
}

/// What the guard checks in the state of `module.name` after a load, if it is such a class.
pub fn load_time_check(module: &str, name: &str) -> Option<&'static str> {
    validated().get(&(module, name)).copied()
}

/// Every line of the data, sorted by name.
pub fn entries() -> &'static [Entry] {
    table()
}

/// Where the fields a tree walk follows sit in a node record of scikit-learn's `Tree` (native
/// little-endian int64 each; the record is `itemsize` bytes).
#[derive(Debug, Clone, Copy)]
pub struct NodeLayout {
    /// Bytes per node record.
    pub itemsize: usize,
    /// Offset of `left_child`.
    pub left: usize,
    /// Offset of `right_child`.
    pub right: usize,
    /// Offset of `feature`.
    pub feature: usize,
}

/// A node that breaks what `Tree.apply` assumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree {tree}, node {node}: {field} is {value}, {why}")]
pub struct TreeNodeError {
    /// Which tree of the batch.
    pub tree: usize,
    /// The node's index in its tree.
    pub node: u64,
    /// `left_child`, `right_child`, `feature` or `nodes` (the record array itself).
    pub field: &'static str,
    /// The offending value.
    pub value: i64,
    /// The broken invariant.
    pub why: &'static str,
}

/// The node records of a batch of trees laid end to end: each tree's records in turn, or the
/// error saying the bytes are not what `counts` declare (`fields_fit`: the layout's fields lie
/// inside a record).
fn tree_records<'a>(
    nodes: &'a [u8],
    itemsize: usize,
    fields_fit: bool,
    counts: impl Iterator<Item = u64>,
) -> Result<std::slice::ChunksExact<'a, u8>, TreeNodeError> {
    let total: Option<u64> = counts
        .into_iter()
        .try_fold(0u64, |acc, count| acc.checked_add(count));
    let expected = total
        .and_then(|t| usize::try_from(t).ok())
        .and_then(|t| t.checked_mul(itemsize));
    if !fields_fit || itemsize == 0 || expected != Some(nodes.len()) {
        return Err(TreeNodeError {
            tree: 0,
            node: 0,
            field: "nodes",
            value: i64::try_from(nodes.len()).unwrap_or(i64::MAX),
            why: "not the records the trees declare",
        });
    }
    Ok(nodes.chunks_exact(itemsize))
}

/// Checks the node records of several trees laid end to end in `nodes`; `trees` gives each
/// tree's node count and feature count. Internal nodes: both children in (own index,
/// node_count) (the builders append children after their parent: anything else reads out of
/// bounds or loops) and a feature in [0, n_features); leaves: both children -1.
pub fn check_tree_nodes(nodes: &[u8], layout: NodeLayout, trees: &[(u64, i64)]) -> Result<(), TreeNodeError> {
    let bad = |tree, node, field, value, why| TreeNodeError {
        tree,
        node,
        field,
        value,
        why,
    };
    let fields_fit = [layout.left, layout.right, layout.feature]
        .iter()
        .all(|&at| at.checked_add(8).is_some_and(|end| end <= layout.itemsize));
    let mut records = tree_records(nodes, layout.itemsize, fields_fit, trees.iter().map(|t| t.0))?;
    for (tree, &(count, n_features)) in trees.iter().enumerate() {
        let count_i64 = i64::try_from(count).unwrap_or(i64::MAX);
        for node in 0..count {
            let Some(record) = records.next() else {
                return Err(bad(tree, node, "nodes", 0, "missing"));
            };
            let field = |offset| {
                IntField {
                    offset,
                    width: 8,
                    signed: true,
                }
                .read(record)
            };
            let (left, right) = (field(layout.left), field(layout.right));
            let own = i64::try_from(node).unwrap_or(i64::MAX);
            if left == -1 || right == -1 {
                if left != right {
                    let (name, value) = if left == -1 {
                        ("right_child", right)
                    } else {
                        ("left_child", left)
                    };
                    return Err(bad(
                        tree,
                        node,
                        name,
                        value,
                        "while the other child is -1 (a half leaf)",
                    ));
                }
                continue;
            }
            for (name, child) in [("left_child", left), ("right_child", right)] {
                if child <= own || child >= count_i64 {
                    return Err(bad(
                        tree,
                        node,
                        name,
                        child,
                        "not a node after it below node_count",
                    ));
                }
            }
            let feature = field(layout.feature);
            if feature < 0 || feature >= n_features {
                return Err(bad(
                    tree,
                    node,
                    "feature",
                    feature,
                    "not a feature below n_features",
                ));
            }
        }
    }
    Ok(())
}

/// The width and signedness of an integer field, as NumPy spells it (`<i8`, `|u1`, ...;
/// little-endian or one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntField {
    /// Offset in the record.
    pub offset: usize,
    /// Bytes: 1, 2, 4 or 8.
    pub width: usize,
    /// Signed or not.
    pub signed: bool,
}

impl IntField {
    /// The field at `offset` with NumPy type string `code`; None for any other kind or a
    /// big-endian one.
    pub fn from_numpy(offset: usize, code: &str) -> Option<Self> {
        let (order, rest) = code.split_at_checked(1)?;
        if order != "<" && order != "|" {
            return None;
        }
        let (kind, width) = rest.split_at_checked(1)?;
        let width: usize = width.parse().ok()?;
        let signed = match kind {
            "i" => true,
            "u" => false,
            _ => return None,
        };
        (matches!(width, 1 | 2 | 4 | 8) && (width == 1 || order != "|")).then_some(Self {
            offset,
            width,
            signed,
        })
    }

    fn fits(&self, itemsize: usize) -> bool {
        self.offset
            .checked_add(self.width)
            .is_some_and(|end| end <= itemsize)
    }

    /// The value in `record` (an unsigned one above `i64::MAX` reads as `i64::MAX`; a field
    /// outside the record reads as `i64::MIN`).
    #[inline]
    fn read(&self, record: &[u8]) -> i64 {
        fn bytes<const N: usize>(record: &[u8], offset: usize) -> Option<[u8; N]> {
            record.get(offset..)?.get(..N)?.try_into().ok()
        }
        let value = match (self.width, self.signed) {
            (1, true) => bytes(record, self.offset).map(|b| i64::from(i8::from_le_bytes(b))),
            (1, false) => bytes(record, self.offset).map(|b| i64::from(u8::from_le_bytes(b))),
            (2, true) => bytes(record, self.offset).map(|b| i64::from(i16::from_le_bytes(b))),
            (2, false) => bytes(record, self.offset).map(|b| i64::from(u16::from_le_bytes(b))),
            (4, true) => bytes(record, self.offset).map(|b| i64::from(i32::from_le_bytes(b))),
            (4, false) => bytes(record, self.offset).map(|b| i64::from(u32::from_le_bytes(b))),
            (8, true) => bytes(record, self.offset).map(i64::from_le_bytes),
            (8, false) => {
                bytes(record, self.offset).map(|b| i64::try_from(u64::from_le_bytes(b)).unwrap_or(i64::MAX))
            }
            _ => None,
        };
        value.unwrap_or(i64::MIN)
    }
}

/// The fields of a HistGradientBoosting `TreePredictor` node record that its Cython
/// predictor follows.
#[derive(Debug, Clone, Copy)]
pub struct PredictorLayout {
    /// Bytes per node record.
    pub itemsize: usize,
    /// `left`.
    pub left: IntField,
    /// `right`.
    pub right: IntField,
    /// `feature_idx`.
    pub feature: IntField,
    /// `is_leaf`.
    pub is_leaf: IntField,
    /// `is_categorical`.
    pub is_categorical: IntField,
    /// `bitset_idx`.
    pub bitset_idx: IntField,
}

/// One predictor of a batch: its node count, the model's feature count and the rows of its
/// categorical bitsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictorShape {
    /// Node records.
    pub nodes: u64,
    /// Features of the model that holds it (`i64::MAX`: not known).
    pub n_features: i64,
    /// Rows of both bitset arrays (the fewer of the two).
    pub bitset_rows: i64,
}

/// Checks the node records of several `TreePredictor`s laid end to end: internal nodes have
/// `left` and `right` after themselves and below the node count, `feature_idx` in
/// [0, n_features) and, when the split is categorical, `bitset_idx` below the bitset rows
/// (the predictor reads all of them unchecked). Leaves are not followed.
pub fn check_predictor_nodes(
    nodes: &[u8],
    layout: PredictorLayout,
    predictors: &[PredictorShape],
) -> Result<(), TreeNodeError> {
    let fields = [
        layout.left,
        layout.right,
        layout.feature,
        layout.is_leaf,
        layout.is_categorical,
        layout.bitset_idx,
    ];
    let fields_fit = fields.iter().all(|f| f.fits(layout.itemsize));
    let mut records = tree_records(
        nodes,
        layout.itemsize,
        fields_fit,
        predictors.iter().map(|p| p.nodes),
    )?;
    for (tree, shape) in predictors.iter().enumerate() {
        let count = i64::try_from(shape.nodes).unwrap_or(i64::MAX);
        for node in 0..shape.nodes {
            let bad = |field, value, why| TreeNodeError {
                tree,
                node,
                field,
                value,
                why,
            };
            let Some(record) = records.next() else {
                return Err(bad("nodes", 0, "missing"));
            };
            if layout.is_leaf.read(record) != 0 {
                continue;
            }
            let own = i64::try_from(node).unwrap_or(i64::MAX);
            for (name, field) in [("left", layout.left), ("right", layout.right)] {
                let child = field.read(record);
                if child <= own || child >= count {
                    return Err(bad(name, child, "not a node after it below the node count"));
                }
            }
            let feature = layout.feature.read(record);
            if feature < 0 || feature >= shape.n_features {
                return Err(bad("feature_idx", feature, "not a feature of the model"));
            }
            if layout.is_categorical.read(record) != 0 {
                let row = layout.bitset_idx.read(record);
                if row < 0 || row >= shape.bitset_rows {
                    return Err(bad("bitset_idx", row, "beyond the categorical bitsets"));
                }
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The same invariants, checked by the scanner where the arrays are inside the pickle.

use crate::analyzer::joblib::{DTYPE_CLASSES, WRAPPER_MODULE, WRAPPER_NAME};
use crate::evaluate::{Heap, Object, Trailing, Val};

const RECONSTRUCT: [(&str, &str); 2] = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
];
const FROMBUFFER: [(&str, &str); 2] = [
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
];
/// joblib's array wrapper: its data follows its BUILD in the stream.
const JOBLIB_WRAPPER: (&str, &str) = (WRAPPER_MODULE, WRAPPER_NAME);

/// How the scanner checks one class's instances inside a pickle.
type Check = fn(&Heap, &[u8], &Object) -> PickledOutcome;

/// The classes the scanner checks inside pickles, with their checks.
const CHECKED: [((&str, &str), Check); 4] = [
    (("sklearn.tree._tree", "Tree"), check_tree),
    (
        (
            "sklearn.ensemble._hist_gradient_boosting.predictor",
            "TreePredictor",
        ),
        check_predictor,
    ),
    (("sklearn.neighbors._kd_tree", "KDTree"), check_binary_tree),
    (("sklearn.neighbors._ball_tree", "BallTree"), check_binary_tree),
];

/// Whether the scanner checks instances of `module.name` inside pickles ([`check_pickled`]).
pub(crate) fn checked_in_pickles(module: &str, name: &str) -> bool {
    CHECKED.iter().any(|(class, _)| *class == (module, name))
}

/// What joblib reads after the BUILD of `object`: a wrapper's raw bytes, or the nested pickle of
/// an object array (dtype `O`).
pub(crate) fn joblib_trailing(heap: &Heap, object: &Object) -> Trailing {
    if heap.global(object.callee) != Some(JOBLIB_WRAPPER) {
        return Trailing::Nothing;
    }
    let object_items = object
        .state
        .and_then(|state| heap.get(state, "dtype"))
        .and_then(|dtype| dtype_of(heap, dtype, false).ok())
        .and_then(|dtype| dtype.code)
        .is_some_and(|code| code.get(1..2) == Some("O"));
    if object_items {
        Trailing::Pickle
    } else {
        Trailing::Bytes
    }
}
/// What the scanner concluded about one instance of a validated class inside a pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickledState {
    /// Where the instance was made.
    pub offset: u64,
    /// Its class.
    pub module: &'static str,
    /// Its class.
    pub name: &'static str,
    /// Intact, broken (the invariant and the value), or not checkable here (why).
    pub outcome: PickledOutcome,
}

/// See [`PickledState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickledOutcome {
    /// The invariant holds.
    Intact,
    /// The invariant is broken: which field, which value.
    Broken(String),
    /// The arrays are not in a form the scanner reads (left to the guard).
    Unchecked(String),
}

/// A dtype as far as the checks need it.
struct Dtype {
    itemsize: u64,
    /// A plain type: its NumPy type string (`<i8`).
    code: Option<String>,
    /// A record type: each field's offset and type string.
    fields: Vec<(String, u64, Option<String>)>,
}

/// An array inside the pickle: its bytes, shape and dtype.
struct Array<'d> {
    bytes: std::borrow::Cow<'d, [u8]>,
    shape: Vec<u64>,
    dtype: Dtype,
}

impl Dtype {
    fn field(&self, name: &str) -> Option<IntField> {
        let (_, offset, code) = self.fields.iter().find(|(n, _, _)| n == name)?;
        IntField::from_numpy(usize::try_from(*offset).ok()?, code.as_deref()?)
    }
}

impl Array<'_> {
    /// Items in all dimensions (the guard counts a predictor's records so too).
    fn size(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .unwrap_or(u64::MAX)
    }

    /// An integer field of the records.
    fn field(&self, name: &str) -> Result<IntField, String> {
        self.dtype
            .field(name)
            .ok_or_else(|| format!("a record dtype without the integer field {name}"))
    }

    fn itemsize(&self) -> Result<usize, String> {
        usize::try_from(self.dtype.itemsize).map_err(|e| e.to_string())
    }
}

fn is(heap: &Heap, value: Val, names: &[(&str, &str)]) -> bool {
    heap.global(value).is_some_and(|g| names.contains(&g))
}

/// Record dtypes with more fields are not read (numpy's node records have about a dozen).
const MAX_FIELDS: usize = 256;

/// The dtype a value is; `records`: read its fields (a field's own dtype is read without
/// them, so a dtype that holds itself ends).
fn dtype_of(heap: &Heap, value: Val, records: bool) -> Result<Dtype, String> {
    let object = heap
        .object(value)
        .filter(|o| is(heap, o.callee, &DTYPE_CLASSES))
        .ok_or("a dtype that is not a numpy.dtype call")?;
    let descr = heap
        .tuple(object.args)
        .and_then(|args| heap.str(*args.first()?))
        .ok_or("a dtype without its type string")?;
    let state = object.state.and_then(|s| heap.tuple(s)).unwrap_or(&[]);
    let order = state.get(1).and_then(|v| heap.str(*v)).unwrap_or("|");
    let declared = state.get(5).and_then(|v| heap.int(*v)).filter(|&n| n > 0);
    let from_descr = descr.get(1..).and_then(|n| n.parse::<i64>().ok());
    let itemsize = declared
        .or(from_descr)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("a dtype {descr:?} of unknown size"))?;
    let mut fields = Vec::new();
    if let (true, Some(names), Some(table)) =
        (records, state.get(3).and_then(|v| heap.tuple(*v)), state.get(4))
    {
        if names.len() > MAX_FIELDS {
            return Err(format!("a record dtype of {} fields", names.len()));
        }
        for name in names {
            let name = heap
                .str(*name)
                .ok_or("a record dtype with a field name that is not a str")?;
            let entry = heap
                .get(*table, name)
                .and_then(|v| heap.tuple(v))
                .ok_or_else(|| format!("a record dtype without its field {name:?}"))?;
            let offset = entry
                .get(1)
                .and_then(|v| heap.int(*v))
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("the field {name:?} without its offset"))?;
            let code = entry
                .first()
                .and_then(|v| dtype_of(heap, *v, false).ok())
                .and_then(|d| d.code);
            fields.push((name.to_owned(), offset, code));
        }
    }
    let is_record = state.get(3).is_some_and(|v| *v != Val::None);
    let code = (!is_record).then(|| format!("{order}{descr}"));
    Ok(Dtype {
        itemsize,
        code,
        fields,
    })
}

fn shape_of(heap: &Heap, value: Val) -> Option<Vec<u64>> {
    if let Some(n) = heap.int(value) {
        return u64::try_from(n).ok().map(|n| vec![n]);
    }
    heap.tuple(value)?
        .iter()
        .map(|d| heap.int(*d).and_then(|n| u64::try_from(n).ok()))
        .collect()
}

fn slice(data: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// The bytes an array's data value stands for: a bytes constant; a str (a Python 2 pickle,
/// which numpy encodes as latin-1); `_codecs.encode(text, "latin1")` and `bytes()` (how
/// protocols 0-2 write bytes under Python 3).
fn bytes_of<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Option<std::borrow::Cow<'d, [u8]>> {
    let latin1 =
        |text: &str| -> Option<Vec<u8>> { text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect() };
    match value {
        Val::Bytes { start, len } => slice(data, start, len).map(std::borrow::Cow::Borrowed),
        Val::Str(_) => latin1(heap.str(value)?).map(std::borrow::Cow::Owned),
        Val::Obj(_) => {
            let object = heap.object(value)?;
            let args = heap.tuple(object.args)?;
            let callee = heap.global(object.callee)?;
            if matches!(callee, ("__builtin__" | "builtins", "bytes")) && args.is_empty() {
                return Some(std::borrow::Cow::Borrowed(&[])); // how protocol 2 writes b""
            }
            if callee != ("_codecs", "encode") {
                return None;
            }
            let encoding = args.get(1).and_then(|v| heap.str(*v))?;
            if !matches!(encoding, "latin1" | "latin-1" | "iso-8859-1") {
                return None;
            }
            latin1(heap.str(*args.first()?)?).map(std::borrow::Cow::Owned)
        }
        _ => None,
    }
}

/// The array a value is, when its data is inside the input: `_reconstruct` + BUILD, protocol
/// 5's `_frombuffer`, or joblib's wrapper followed by its bytes.
fn array_of<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Result<Array<'d>, String> {
    let object = heap.object(value).ok_or("not an array made in the pickle")?;
    if object.rebuilt {
        return Err("an array built twice".into());
    }
    let (shape, dtype, bytes) = if is(heap, object.callee, &RECONSTRUCT) {
        let state = object
            .state
            .and_then(|s| heap.tuple(s))
            .ok_or("an array without its state")?;
        let raw = state.get(4).and_then(|v| bytes_of(heap, data, *v));
        (
            state.get(1).and_then(|v| shape_of(heap, *v)),
            state.get(2).map(|v| dtype_of(heap, *v, true)),
            raw.ok_or("array data that is not bytes (an object array)")?,
        )
    } else if is(heap, object.callee, &FROMBUFFER) {
        let args = heap.tuple(object.args).ok_or("_frombuffer without arguments")?;
        let raw = args.first().and_then(|v| bytes_of(heap, data, *v));
        (
            args.get(2).and_then(|v| shape_of(heap, *v)),
            args.get(1).map(|v| dtype_of(heap, *v, true)),
            raw.ok_or("array data out of band")?,
        )
    } else if heap.global(object.callee) == Some(JOBLIB_WRAPPER) {
        joblib_array(heap, data, object)?
    } else {
        return Err("an array made some other way".into());
    };
    let shape = shape.ok_or("an array of unknown shape")?;
    let dtype = dtype.ok_or("an array without a dtype")??;
    let expected = shape
        .iter()
        .try_fold(dtype.itemsize, |acc, d| acc.checked_mul(*d))
        .and_then(|n| usize::try_from(n).ok());
    if expected != Some(bytes.len()) {
        return Err(format!("{} data bytes for shape {shape:?}", bytes.len()));
    }
    Ok(Array { bytes, shape, dtype })
}

type Parts<'d> = (
    Option<Vec<u64>>,
    Option<Result<Dtype, String>>,
    std::borrow::Cow<'d, [u8]>,
);

fn joblib_array<'d>(heap: &Heap, data: &'d [u8], wrapper: &Object) -> Result<Parts<'d>, String> {
    let state = wrapper.state.ok_or("a joblib array without its state")?;
    let (start, len) = wrapper.trailing.ok_or("a joblib array whose data was not read")?;
    let padded = heap
        .get(state, "numpy_array_alignment_bytes")
        .is_some_and(|v| v != Val::None);
    let (start, len) = if padded {
        let pad = u64::from(
            *slice(data, start, 1)
                .and_then(|b| b.first())
                .ok_or("no padding byte")?,
        );
        (
            start + 1 + pad,
            len.checked_sub(1 + pad).ok_or("padding beyond the data")?,
        )
    } else {
        (start, len)
    };
    Ok((
        heap.get(state, "shape").and_then(|v| shape_of(heap, v)),
        heap.get(state, "dtype").map(|v| dtype_of(heap, v, true)),
        std::borrow::Cow::Borrowed(slice(data, start, len).ok_or("joblib array data beyond the input")?),
    ))
}

/// The array under `key` in a state dict.
fn state_array<'d>(heap: &Heap, data: &'d [u8], state: Val, key: &str) -> Result<Array<'d>, String> {
    array_of(
        heap,
        data,
        heap.get(state, key)
            .ok_or_else(|| format!("a state without {key}"))?,
    )
}

fn check_tree(heap: &Heap, data: &[u8], tree: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let n_features = heap
            .tuple(tree.args)
            .and_then(|a| heap.int(*a.first()?))
            .ok_or("Tree called without n_features")?;
        let state = tree.state.ok_or("a Tree without state")?;
        let node_count = heap
            .get(state, "node_count")
            .and_then(|v| heap.int(v))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or("a Tree state without node_count")?;
        let nodes = state_array(heap, data, state, "nodes")?;
        let field = |name: &str| {
            nodes
                .field(name)
                .ok()
                .filter(|f| f.width == 8 && f.signed)
                .map(|f| f.offset)
                .ok_or_else(|| format!("a node dtype without an int64 {name}"))
        };
        let layout = NodeLayout {
            itemsize: nodes.itemsize()?,
            left: field("left_child")?,
            right: field("right_child")?,
            feature: field("feature")?,
        };
        if nodes.shape.first() != Some(&node_count) {
            return Ok(Err(format!(
                "nodes holds {:?} records for node_count {node_count}",
                nodes.shape
            )));
        }
        Ok(
            check_tree_nodes(&nodes.bytes, layout, &[(node_count, n_features)])
                .map_err(|e| format!("nodes[{}].{} is {}, {}", e.node, e.field, e.value, e.why)),
        )
    };
    outcome(run())
}

fn check_predictor(heap: &Heap, data: &[u8], predictor: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let state = predictor.state.ok_or("a TreePredictor without state")?;
        let nodes = state_array(heap, data, state, "nodes")?;
        let layout = PredictorLayout {
            itemsize: nodes.itemsize()?,
            left: nodes.field("left")?,
            right: nodes.field("right")?,
            feature: nodes.field("feature_idx")?,
            is_leaf: nodes.field("is_leaf")?,
            is_categorical: nodes.field("is_categorical")?,
            bitset_idx: nodes.field("bitset_idx")?,
        };
        let mut rows = i64::MAX;
        for name in ["binned_left_cat_bitsets", "raw_left_cat_bitsets"] {
            let count = state_array(heap, data, state, name)?
                .shape
                .first()
                .copied()
                .unwrap_or(0);
            rows = rows.min(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let shape = PredictorShape {
            nodes: nodes.size(),
            n_features: i64::MAX,
            bitset_rows: rows,
        };
        Ok(check_predictor_nodes(&nodes.bytes, layout, &[shape])
            .map_err(|e| format!("nodes[{}].{} is {}, {}", e.node, e.field, e.value, e.why)))
    };
    outcome(run())
}

/// The class an object is an instance of: what was called or reconstructed, or the class
/// operand of `copyreg._reconstructor` / `copyreg.__newobj__` (protocols 0-1 and explicit
/// reductions), or of scikit-learn's `newObj` (KD and ball trees).
fn class_of<'h>(heap: &'h Heap, object: &Object) -> Option<(&'h str, &'h str)> {
    let callee = heap.global(object.callee)?;
    match callee {
        ("copyreg" | "copy_reg", "_reconstructor" | "__newobj__" | "__newobj_ex__")
        | ("sklearn.neighbors._kd_tree" | "sklearn.neighbors._ball_tree", "newObj") => {
            heap.global(*heap.tuple(object.args)?.first()?)
        }
        _ => Some(callee),
    }
}

/// The int64 items of an array (native little-endian `<i8`, or `|`-less `i8` of a record field).
fn int64_items(array: &Array<'_>) -> Result<Vec<i64>, String> {
    if array.dtype.code.as_deref() != Some("<i8") {
        return Err(format!("an index array of type {:?}", array.dtype.code));
    }
    Ok(array
        .bytes
        .chunks_exact(8)
        .filter_map(|b| b.try_into().ok().map(i64::from_le_bytes))
        .collect())
}

/// `KDTree`/`BallTree` (state: data, idx_array, node_data, node_bounds, ...): queries read
/// `data[idx_array[i]]` for i in each node's [idx_start, idx_end) and visit children 2i+1, 2i+2
/// of internal nodes.
fn check_binary_tree(heap: &Heap, data: &[u8], tree: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let state = tree
            .state
            .and_then(|s| heap.tuple(s))
            .ok_or("a tree without its state tuple")?;
        let array = |index: usize, name: &str| {
            array_of(
                heap,
                data,
                *state
                    .get(index)
                    .ok_or_else(|| format!("a state without {name}"))?,
            )
        };
        let samples_array = array(0, "data")?;
        let [samples, features] = samples_array.shape[..] else {
            return Ok(Err(format!(
                "data has shape {:?}, not two dimensions",
                samples_array.shape
            )));
        };
        let idx_array = array(1, "idx_array")?;
        if idx_array.shape != [samples] {
            return Ok(Err(format!(
                "idx_array has shape {:?} for {samples} samples",
                idx_array.shape
            )));
        }
        let samples = i64::try_from(samples).unwrap_or(i64::MAX);
        if let Some((i, v)) = int64_items(&idx_array)?
            .into_iter()
            .enumerate()
            .find(|(_, v)| !(0..samples).contains(v))
        {
            return Ok(Err(format!(
                "idx_array[{i}] is {v}, outside the {samples} samples"
            )));
        }
        let nodes = array(2, "node_data")?;
        let (start, end, leaf) = (
            nodes.field("idx_start")?,
            nodes.field("idx_end")?,
            nodes.field("is_leaf")?,
        );
        let count = nodes.shape.first().copied().unwrap_or(0);
        for (node, record) in nodes.bytes.chunks_exact(nodes.itemsize()?.max(1)).enumerate() {
            let (from, to) = (start.read(record), end.read(record));
            if from < 0 || from > to || to > samples {
                return Ok(Err(format!(
                    "node_data[{node}] is [{from}, {to}), not a range of the {samples} samples"
                )));
            }
            let children = u64::try_from(node)
                .unwrap_or(u64::MAX)
                .saturating_mul(2)
                .saturating_add(2);
            if leaf.read(record) == 0 && children >= count {
                return Ok(Err(format!(
                    "node_data[{node}].is_leaf is 0, with children beyond the {count} nodes"
                )));
            }
        }
        let bounds = array(3, "node_bounds")?;
        if bounds.shape.len() != 3
            || bounds.shape.get(1) != Some(&count)
            || bounds.shape.get(2) != Some(&features)
        {
            return Ok(Err(format!(
                "node_bounds has shape {:?} for {count} nodes of {features} features",
                bounds.shape
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

fn outcome(result: Result<Result<(), String>, String>) -> PickledOutcome {
    match result {
        Ok(Ok(())) => PickledOutcome::Intact,
        Ok(Err(broken)) => PickledOutcome::Broken(broken),
        Err(why) => PickledOutcome::Unchecked(why),
    }
}

/// Every instance of a class the scanner checks ([`CHECKED`]) that the pickle makes, checked
/// against its invariant where its arrays are in `data`.
pub(crate) fn check_pickled(heap: &Heap, data: &[u8]) -> Vec<PickledState> {
    let mut found = Vec::new();
    for object in &heap.objects {
        let checked = class_of(heap, object).and_then(|class| CHECKED.iter().find(|(c, _)| *c == class));
        let Some(&((module, name), check)) = checked else {
            continue;
        };
        found.push(PickledState {
            offset: object.offset,
            module,
            name,
            outcome: check(heap, data, object),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_line_parses() {
        let lines = TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(entries().len(), lines);
        assert!(load_time_check("sklearn.tree._tree", "Tree").is_some());
        assert!(load_time_check("pandas._libs.sparse", "IntIndex").is_none());
        assert!(load_time_check("builtins", "dict").is_none());
    }

    #[test]
    fn every_listed_class_is_on_the_default_policy() {
        let policy = crate::Policy::default();
        for e in entries()
            .iter()
            .filter(|e| e.name != "*" && e.module != "torch._utils")
        {
            assert!(
                policy.roles(e.module, e.name).is_some(),
                "{}:{} is not allowed",
                e.module,
                e.name
            );
        }
    }

    /// `(left_child, right_child, feature)` of each node.
    type Nodes = [(i64, i64, i64)];

    fn records(nodes: &Nodes) -> Vec<u8> {
        nodes
            .iter()
            .flat_map(|&(l, r, f)| [l, r, f, 0].into_iter().flat_map(i64::to_le_bytes))
            .collect()
    }

    const LAYOUT: NodeLayout = NodeLayout {
        itemsize: 32,
        left: 0,
        right: 8,
        feature: 16,
    };

    #[test]
    fn tree_nodes_are_checked_per_tree() {
        let good = [(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        let mut both = records(&good);
        both.extend(records(&good));
        assert_eq!(check_tree_nodes(&both, LAYOUT, &[(3, 1), (3, 1)]), Ok(()));
        let cases: [(&Nodes, &str); 5] = [
            (&[(1, 3, 0), (-1, -1, -2), (-1, -1, -2)], "right_child"),
            (&[(0, 2, 0), (-1, -1, -2), (-1, -1, -2)], "left_child"),
            (&[(1, -1, 0), (-1, -1, -2), (-1, -1, -2)], "left_child"),
            (&[(1, 2, 1), (-1, -1, -2), (-1, -1, -2)], "feature"),
            (&[(1, 2, -5), (-1, -1, -2), (-1, -1, -2)], "feature"),
        ];
        for (nodes, field) in cases {
            let mut bytes = records(&good);
            bytes.extend(records(nodes));
            let error = check_tree_nodes(&bytes, LAYOUT, &[(3, 1), (3, 1)]).unwrap_err();
            assert_eq!((error.tree, error.node, error.field), (1, 0, field), "{nodes:?}");
        }
        assert_eq!(
            check_tree_nodes(&both, LAYOUT, &[(3, 1), (2, 1)])
                .unwrap_err()
                .field,
            "nodes"
        );
        let short = NodeLayout {
            itemsize: 16,
            ..LAYOUT
        };
        assert_eq!(
            check_tree_nodes(&both[..16], short, &[(1, 1)]).unwrap_err().field,
            "nodes"
        );
    }
    fn predictor_layout() -> PredictorLayout {
        let field = |offset, code| IntField::from_numpy(offset, code).unwrap();
        PredictorLayout {
            itemsize: 20,
            left: field(0, "<u4"),
            right: field(4, "<u4"),
            feature: field(8, "<i8"),
            is_leaf: field(16, "|u1"),
            is_categorical: field(17, "|u1"),
            bitset_idx: field(18, "<u2"),
        }
    }

    /// `(left, right, feature_idx, is_leaf, is_categorical, bitset_idx)` of a node.
    type PredictorNode = (u32, u32, i64, u8, u8, u16);

    fn predictor_records(nodes: &[PredictorNode]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(left, right, feature, leaf, categorical, bitset) in nodes {
            bytes.extend(left.to_le_bytes());
            bytes.extend(right.to_le_bytes());
            bytes.extend(feature.to_le_bytes());
            bytes.extend([leaf, categorical]);
            bytes.extend(bitset.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn numpy_integer_codes() {
        assert_eq!(
            IntField::from_numpy(3, "<u4"),
            Some(IntField {
                offset: 3,
                width: 4,
                signed: false
            })
        );
        for code in [">i8", "<f8", "|u4", "<i3", "<", "", "|b1"] {
            assert_eq!(IntField::from_numpy(0, code), None, "{code}");
        }
        let record = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(IntField::from_numpy(0, "<i4").unwrap().read(&record), -1);
        assert_eq!(IntField::from_numpy(0, "<u4").unwrap().read(&record), 0xffff_ffff);
        assert_eq!(IntField::from_numpy(0, "<u8").unwrap().read(&record), i64::MAX);
        assert_eq!(IntField::from_numpy(6, "<i4").unwrap().read(&record), i64::MIN);
    }

    #[test]
    fn predictor_nodes_are_checked_per_predictor() {
        let shape = PredictorShape {
            nodes: 3,
            n_features: 2,
            bitset_rows: 1,
        };
        let good = [(1, 2, 1, 0, 1, 0), (0, 0, -9, 1, 0, 7), (9, 9, 9, 1, 1, 9)];
        let mut both = predictor_records(&good);
        both.extend(predictor_records(&good));
        assert_eq!(
            check_predictor_nodes(&both, predictor_layout(), &[shape, shape]),
            Ok(())
        );
        let cases: [(&[PredictorNode], &str); 6] = [
            (
                &[(0, 2, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "left",
            ),
            (
                &[(1, 3, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "right",
            ),
            (
                &[(1, u32::MAX, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "right",
            ),
            (
                &[(1, 2, 2, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "feature_idx",
            ),
            (
                &[(1, 2, -1, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "feature_idx",
            ),
            (
                &[(1, 2, 0, 0, 1, 1), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "bitset_idx",
            ),
        ];
        for (nodes, field) in cases {
            let mut bytes = predictor_records(&good);
            bytes.extend(predictor_records(nodes));
            let error = check_predictor_nodes(&bytes, predictor_layout(), &[shape, shape]).unwrap_err();
            assert_eq!((error.tree, error.node, error.field), (1, 0, field), "{nodes:?}");
        }
        let unknown = PredictorShape {
            n_features: i64::MAX,
            ..shape
        };
        let wide = predictor_records(&[(1, 2, 1000, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)]);
        assert_eq!(
            check_predictor_nodes(&wide, predictor_layout(), &[unknown]),
            Ok(())
        );
        assert_eq!(
            check_predictor_nodes(&both[..40], predictor_layout(), &[shape])
                .unwrap_err()
                .field,
            "nodes"
        );
        let overlapping = PredictorLayout {
            itemsize: 18,
            ..predictor_layout()
        };
        assert_eq!(
            check_predictor_nodes(&[0; 54], overlapping, &[shape])
                .unwrap_err()
                .field,
            "nodes"
        );
    }

    use crate::evaluate::tests::{evaluate, Asm};

    /// A field dtype: numpy.dtype("i8") with its state (byte order `<`).
    fn int64(asm: Asm) -> Asm {
        plain(asm, "i8")
    }

    /// `numpy.dtype(descr, False, True)`, as numpy pickles a dtype (its state follows).
    fn dtype_call(asm: Asm, descr: &str) -> Asm {
        asm.global("numpy", "dtype")
            .text(descr)
            .op(0x89)
            .op(0x88)
            .op(0x87)
            .op(b'R')
    }

    /// numpy.dtype(descr) of a plain little-endian type, with its state.
    fn plain(asm: Asm, descr: &str) -> Asm {
        dtype_call(asm, descr)
            .op(b'(')
            .int(3)
            .text("<")
            .op(b'N')
            .op(b'N')
            .op(b'N')
            .int(-1)
            .int(-1)
            .int(0)
            .op(b't')
            .op(b'b')
    }

    /// `Tree(n_features=2, ...)` whose state holds `nodes` (records of left_child, right_child,
    /// feature as int64) read through a `_reconstruct` array; `field_dtype` writes each field's
    /// dtype.
    fn tree_pickle(nodes: &Nodes, field_dtype: &dyn Fn(Asm) -> Asm) -> Vec<u8> {
        let records: Vec<u8> = nodes
            .iter()
            .flat_map(|&(l, r, f)| [l, r, f].into_iter().flat_map(i64::to_le_bytes))
            .collect();
        // The record dtype, memoized as 9.
        let record = |asm: Asm| {
            let mut asm = dtype_call(asm, "V24")
                .put(9)
                .op(b'(')
                .int(3)
                .text("|")
                .op(b'N')
                .text("left_child")
                .text("right_child")
                .text("feature")
                .op(0x87)
                .op(b'}');
            for (name, offset) in [("left_child", 0), ("right_child", 8), ("feature", 16)] {
                asm = field_dtype(asm.text(name)).int(offset).op(0x86).op(b's');
            }
            asm.int(24).int(1).int(16).op(b't').op(b'b')
        };
        let count = i32::try_from(nodes.len()).unwrap();
        let asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.tree._tree", "Tree")
            .int(2)
            .op(0x85)
            .op(b'R')
            .op(b'}')
            .text("node_count")
            .int(count)
            .op(b's')
            .text("nodes");
        array(asm, &[count], &record, &records)
            .op(b's')
            .op(b'b')
            .op(b'.')
            .0
    }

    fn outcome_of(data: &[u8]) -> Vec<PickledOutcome> {
        let evaluator = evaluate(data, 1 << 20);
        check_pickled(&evaluator.heap, data)
            .into_iter()
            .map(|s| s.outcome)
            .collect()
    }

    #[test]
    fn trees_inside_a_pickle_are_checked() {
        let good: &Nodes = &[(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        assert_eq!(outcome_of(&tree_pickle(good, &int64)), [PickledOutcome::Intact]);
        let broken: &Nodes = &[(1, 9, 0), (-1, -1, -2), (-1, -1, -2)];
        let [PickledOutcome::Broken(why)] = &outcome_of(&tree_pickle(broken, &int64))[..] else {
            panic!("not broken")
        };
        assert!(why.contains("nodes[0].right_child is 9"), "{why}");
        let wide_feature: &Nodes = &[(1, 2, 5), (-1, -1, -2), (-1, -1, -2)];
        assert!(matches!(
            &outcome_of(&tree_pickle(wide_feature, &int64))[..],
            [PickledOutcome::Broken(_)]
        ));
    }

    #[test]
    fn a_dtype_that_holds_itself_is_read_once() {
        // Each field's dtype is the record dtype itself (memo 9): no int64 fields, no loop.
        let good: &Nodes = &[(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        let data = tree_pickle(good, &|asm: Asm| asm.get(9));
        let [PickledOutcome::Unchecked(why)] = &outcome_of(&data)[..] else {
            panic!("checked")
        };
        assert!(why.contains("int64 left_child"), "{why}");
    }

    /// `_reconstruct(ndarray, (0,), b"b")` built with `shape`, the dtype `dtype` writes and
    /// `data`.
    fn array(asm: Asm, shape: &[i32], dtype: &dyn Fn(Asm) -> Asm, data: &[u8]) -> Asm {
        let mut asm = asm
            .global("numpy.core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .int(0)
            .op(0x85)
            .text("b")
            .op(0x87)
            .op(b'R')
            .op(b'(')
            .int(1)
            .op(b'(');
        for &d in shape {
            asm = asm.int(d);
        }
        dtype(asm.op(b't')).op(0x89).bytes(data).op(b't').op(b'b')
    }

    /// node_data's record dtype: idx_start, idx_end, is_leaf (int64), radius (float64).
    fn node_record(asm: Asm) -> Asm {
        let mut asm = dtype_call(asm, "V32")
            .op(b'(')
            .int(3)
            .text("|")
            .op(b'N')
            .op(b'(')
            .text("idx_start")
            .text("idx_end")
            .text("is_leaf")
            .text("radius")
            .op(b't')
            .op(b'}');
        for (name, offset, descr) in [
            ("idx_start", 0, "i8"),
            ("idx_end", 8, "i8"),
            ("is_leaf", 16, "i8"),
            ("radius", 24, "f8"),
        ] {
            asm = plain(asm.text(name), descr).int(offset).op(0x86).op(b's');
        }
        asm.int(32).int(1).int(16).op(b't').op(b'b')
    }

    fn ints(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A KDTree over 4 samples of 2 features with 3 nodes (a root and two leaves).
    fn kd_tree_pickle(idx: &[i64], nodes: &[(i64, i64, i64)], bounds_shape: &[i32]) -> Vec<u8> {
        let records: Vec<u8> = nodes
            .iter()
            .flat_map(|&(start, end, leaf)| ints(&[start, end, leaf, 0]))
            .collect();
        let bounds = vec![0u8; 8 * bounds_shape.iter().map(|&d| d as usize).product::<usize>()];
        let f8 = |asm: Asm| plain(asm, "f8");
        let i8 = |asm: Asm| plain(asm, "i8");
        let mut asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.neighbors._kd_tree", "newObj")
            .global("sklearn.neighbors._kd_tree", "KDTree")
            .op(0x85)
            .op(b'R')
            .op(b'(');
        asm = array(asm, &[4, 2], &f8, &[0; 64]);
        asm = array(asm, &[i32::try_from(idx.len()).unwrap()], &i8, &ints(idx));
        asm = array(
            asm,
            &[i32::try_from(nodes.len()).unwrap()],
            &node_record,
            &records,
        );
        asm = array(asm, bounds_shape, &f8, &bounds);
        asm.int(40).op(b't').op(b'b').op(b'.').0
    }

    #[test]
    fn kd_trees_inside_a_pickle_are_checked() {
        let nodes = [(0, 4, 0), (0, 2, 1), (2, 4, 1)];
        let good = kd_tree_pickle(&[3, 1, 0, 2], &nodes, &[2, 3, 2]);
        assert_eq!(outcome_of(&good), [PickledOutcome::Intact]);
        let cases: [(Vec<u8>, &str); 5] = [
            (
                kd_tree_pickle(&[3, 1, 4, 2], &nodes, &[2, 3, 2]),
                "idx_array[2] is 4",
            ),
            (
                kd_tree_pickle(&[3, 1, -1, 2], &nodes, &[2, 3, 2]),
                "idx_array[2] is -1",
            ),
            (
                kd_tree_pickle(&[3, 1, 0], &nodes, &[2, 3, 2]),
                "idx_array has shape [3]",
            ),
            (
                kd_tree_pickle(&[3, 1, 0, 2], &[(0, 4, 0), (0, 9, 1), (2, 4, 1)], &[2, 3, 2]),
                "node_data[1] is [0, 9)",
            ),
            (
                kd_tree_pickle(&[3, 1, 0, 2], &nodes, &[2, 2, 2]),
                "node_bounds has shape [2, 2, 2]",
            ),
        ];
        for (data, expected) in cases {
            let [PickledOutcome::Broken(why)] = &outcome_of(&data)[..] else {
                panic!("{expected}: not broken")
            };
            assert!(why.contains(expected), "{why}");
        }
        // The root internal with children beyond the nodes.
        let short = kd_tree_pickle(&[3, 1, 0, 2], &[(0, 4, 0), (0, 2, 1)], &[2, 2, 2]);
        let [PickledOutcome::Broken(why)] = &outcome_of(&short)[..] else {
            panic!("not broken")
        };
        assert!(why.contains("node_data[0].is_leaf is 0"), "{why}");
    }
}
