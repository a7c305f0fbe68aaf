//! pandas inside a pickle: a `Categorical`'s codes must index its categories
//! (`categories.take(codes)` runs unchecked), an `IntervalArray`'s left and right bounds pair
//! up, and a block manager's placements must lie inside its items axis
//! (`_rebuild_blknos_and_blklocs` writes at each one with bounds checks off).
//! Lengths are read from what the pickle makes of the categories and axes: an `Index` or
//! `RangeIndex` through `_new_Index`, an array, or an extension array (`NDArrayBacked`).
//! Masked arrays' masks must match their data, a `MultiIndex`'s codes index its levels, a
//! `SparseArray` stores a value per point of its index.
//! Anything else is left to the guard.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{array_of, array_shape, built_before, first_outside};
use super::arrow::{array_data, RESTORE_ARRAY};
use super::pickled::{class_of, dict_state, outcome};
use super::PickledOutcome;

const NDARRAY_BACKED: (&str, &str) = ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked");
/// `_new_Index(cls, d)` and `_new_DatetimeIndex(cls, d)`: `cls` made from the fields `d`.
const NEW_INDEX: [(&str, &str); 2] = [
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
];
const CATEGORICAL_DTYPE: [(&str, &str); 2] = [
    ("pandas", "CategoricalDtype"),
    ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
];
const RANGE_INDEX: [(&str, &str); 2] = [
    ("pandas", "RangeIndex"),
    ("pandas.core.indexes.range", "RangeIndex"),
];
/// pandas' Arrow-backed arrays: a pyarrow array rebuilt by `_restore_array` in their state
/// dict's `_pa_array`.
const ARROW_BACKED: [(&str, &str); 4] = [
    ("pandas.arrays", "ArrowStringArray"),
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
    ("pandas.arrays", "ArrowExtensionArray"),
    ("pandas.core.arrays.arrow.array", "ArrowExtensionArray"),
];
const SPARSE_ARRAY: [(&str, &str); 2] = [
    ("pandas.arrays", "SparseArray"),
    ("pandas.core.arrays.sparse.array", "SparseArray"),
];
const INTERVAL_ARRAY: [(&str, &str); 2] = [
    ("pandas.arrays", "IntervalArray"),
    ("pandas.core.arrays.interval", "IntervalArray"),
];
const MULTI_INDEX: [(&str, &str); 2] = [
    ("pandas", "MultiIndex"),
    ("pandas.core.indexes.multi", "MultiIndex"),
];
const SLICE: [(&str, &str); 2] = [("builtins", "slice"), ("__builtin__", "slice")];
const UNPICKLE_BLOCK: (&str, &str) = ("pandas._libs.internals", "_unpickle_block");
/// The key of the fields a block manager's state (pandas < 2, `SingleBlockManager`) keeps.
const MANAGER_FIELDS: &str = "0.14.1";
/// Indexes of indexes read at most (pandas makes one level; the reading recurses).
const MAX_NESTING: usize = 4;
/// Index classes whose length is their data's.
const DATA_INDEX: [(&str, &str); 6] = [
    ("pandas", "Index"),
    ("pandas.core.indexes.base", "Index"),
    ("pandas", "DatetimeIndex"),
    ("pandas.core.indexes.datetimes", "DatetimeIndex"),
    ("pandas", "TimedeltaIndex"),
    ("pandas.core.indexes.timedeltas", "TimedeltaIndex"),
];

/// The two things an `NDArrayBacked` object holds, as its `__setstate__` (or Cython's state
/// argument) gives them: its dtype (None when a dict state names categories instead) and its
/// array, with where it read them and the state dict, if any.
struct Backed {
    dtype: Option<Val>,
    array: Val,
    read_at: u64,
    dict: Option<Val>,
}

fn backed(heap: &Heap, object: &Object) -> Result<Backed, String> {
    if object.rebuilt {
        return Err("an array built twice".into());
    }
    let cython_state = heap
        .tuple(object.args)
        .filter(|_| heap.global(object.callee) == Some(NDARRAY_BACKED))
        .and_then(|args| args.get(2).copied())
        .filter(|state| *state != Val::None);
    let (state, read_at) = match (cython_state, object.state, object.built_at) {
        // Cython's own state tuple: (_dtype, _ndarray[, __dict__]), set at the call.
        (Some(state), None, _) => {
            let items = heap.tuple(state).ok_or("a Cython state that is not a tuple")?;
            return match items {
                [dtype, array] => Ok(Backed {
                    dtype: Some(*dtype),
                    array: *array,
                    read_at: object.offset,
                    dict: None,
                }),
                _ => Err(format!("a Cython state of {} items", items.len())),
            };
        }
        (None, Some(state), Some(at)) => (state, at),
        (Some(_), Some(_), _) => return Err("state given twice".into()),
        _ => return Err("an extension array without its state".into()),
    };
    let state = match heap.tuple(state) {
        // A dict inside a tuple is not copied at the BUILD: as it ends up, unless it changed.
        Some([only]) if matches!(only, Val::Dict(_)) => {
            if heap.changed_after(*only, read_at) {
                return Err("a state dict changed after the BUILD that read it".into());
            }
            *only
        }
        Some(items) => {
            let (first, second, extra) = match items {
                [a, b] => (*a, *b, None),
                [a, b, extra] => (*a, *b, Some(*extra)),
                _ => return Err(format!("a state tuple of {} items", items.len())),
            };
            // Attributes set one by one: the array and dtype are read-only there.
            if extra.is_some_and(|d| !matches!(d, Val::Dict(_))) {
                return Err("a state tuple whose third item is not a dict".into());
            }
            // `data, dtype = state[:2]`, swapped when the second is the array.
            let (array, dtype) = if is_array(heap, second) {
                (second, first)
            } else {
                (first, second)
            };
            return Ok(Backed {
                dtype: Some(dtype),
                array,
                read_at,
                dict: None,
            });
        }
        None => state,
    };
    // A dict: `_data`, else `_ndarray`, else (Categorical's own) `_codes`.
    let array = ["_data", "_ndarray", "_codes"]
        .iter()
        .find_map(|key| heap.get(state, key))
        .ok_or("a state dict without its array")?;
    Ok(Backed {
        dtype: heap.get(state, "_dtype"),
        array,
        read_at,
        dict: Some(state),
    })
}

fn is_array(heap: &Heap, value: Val) -> bool {
    array_shape(heap, value).is_ok()
}

/// How many items a one-dimensional value read at `read_at` has: an array, an extension array,
/// or an index made by `_new_Index`.
/// Outer error: not readable here; inner: broken.
fn length_of(heap: &Heap, value: Val, read_at: u64, depth: usize) -> Result<Result<u64, String>, String> {
    if depth > MAX_NESTING {
        return Err("indexes nested too deep".into());
    }
    if let Err(broken) = built_before(heap, value, read_at, "the values") {
        return Ok(Err(broken));
    }
    let one_dimension = |shape: Vec<u64>| match shape[..] {
        [n] => Ok(Ok(n)),
        _ => Err(format!("values of shape {shape:?}")),
    };
    if let Ok(shape) = array_shape(heap, value) {
        return one_dimension(shape);
    }
    let object = heap.object(value).ok_or("values not made in the pickle")?;
    if heap.global(object.callee).is_some_and(|f| NEW_INDEX.contains(&f)) {
        return index_length(heap, object, depth);
    }
    let class = class_of(heap, object);
    if class.is_some_and(|class| ARROW_BACKED.contains(&class)) {
        return arrow_length(heap, object).map(Ok);
    }
    // A sparse array is as long as its index says; an interval array as its left bounds.
    if class.is_some_and(|class| SPARSE_ARRAY.contains(&class)) {
        let state = dict_state(object, "a sparse array")?.ok_or("a sparse array without its state")?;
        let index = heap
            .get(state, "_sparse_index")
            .and_then(|v| heap.object(v))
            .filter(|made| heap.global(made.callee) == Some(INT_INDEX) && made.state.is_none())
            .ok_or("a sparse index that is not an IntIndex the pickle called")?;
        let length = heap
            .tuple(index.args)
            .and_then(|args| heap.int(*args.first()?))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or("an IntIndex called without its length")?;
        return Ok(Ok(length));
    }
    if class.is_some_and(|class| INTERVAL_ARRAY.contains(&class)) {
        let (fields, built) = interval_fields(heap, object)?;
        let left = heap.get(fields, "_left").ok_or("a state without _left")?;
        return length_of(heap, left, built, depth + 1);
    }
    let inner = backed(heap, object)?;
    if let Err(broken) = built_before(heap, inner.array, inner.read_at, "an extension array's data") {
        return Ok(Err(broken));
    }
    one_dimension(array_shape(heap, inner.array)?)
}

/// The length an Arrow-backed array declares: `_restore_array((type, length, ...))`'s. Whether
/// its buffers hold that many items is the guard's check at load time (pyarrow's full
/// validation); the scanner notes that the file relies on it.
fn arrow_length(heap: &Heap, object: &Object) -> Result<u64, String> {
    if object.rebuilt {
        return Err("an array built twice".into());
    }
    let state = object.state.ok_or("an Arrow array without its state")?;
    let array = heap
        .get(state, "_pa_array")
        .ok_or("an Arrow array state without _pa_array")?;
    let restored = heap
        .object(array)
        .filter(|made| heap.global(made.callee) == Some(RESTORE_ARRAY))
        .ok_or("an Arrow array not made by _restore_array")?;
    array_data(heap, restored)?
        .get(1)
        .and_then(|length| heap.int(*length))
        .and_then(|length| u64::try_from(length).ok())
        .ok_or_else(|| "an Arrow array without a length".into())
}

/// An index made by `_new_Index(cls, d)` (`cls(**d)`, d as it was at the call) or
/// `_new_DatetimeIndex`, never given a state after.
fn index_length(heap: &Heap, index: &Object, depth: usize) -> Result<Result<u64, String>, String> {
    if index.state.is_some() {
        return Err("an index given a state".into());
    }
    let [class, fields] = heap.tuple(index.args).unwrap_or_default() else {
        return Err("an index made without its two arguments".into());
    };
    let class = heap.global(*class).ok_or("an index of a class not imported")?;
    let int = |key: &str, default: Option<i64>| {
        heap.get(*fields, key)
            .map_or(default, |v| heap.int(v))
            .ok_or_else(|| format!("a RangeIndex without an int {key}"))
    };
    if RANGE_INDEX.contains(&class) {
        let (start, stop, step) = (int("start", Some(0))?, int("stop", None)?, int("step", Some(1))?);
        return match range_length(start, stop, step) {
            Some(length) => Ok(Ok(length)),
            None => Err("a RangeIndex with step 0".into()),
        };
    }
    if MULTI_INDEX.contains(&class) {
        // As long as its codes (check_multi_index checks they are of one length).
        let codes = heap.get(*fields, "codes").ok_or("a MultiIndex without codes")?;
        let first = heap
            .list(codes, index.offset)
            .or_else(|| heap.tuple(codes))
            .and_then(|codes| codes.first().copied())
            .ok_or("a MultiIndex without code arrays")?;
        return match array_shape(heap, first)?[..] {
            [length] => Ok(Ok(length)),
            ref shape => Err(format!("MultiIndex codes of shape {shape:?}")),
        };
    }
    if !DATA_INDEX.contains(&class) {
        return Err(format!("values in a {}.{}", class.0, class.1));
    }
    let data = heap.get(*fields, "data").ok_or("an index without data")?;
    length_of(heap, data, index.offset, depth + 1)
}

/// `len(range(start, stop, step))`; None for step 0.
fn range_length(start: i64, stop: i64, step: i64) -> Option<u64> {
    let (mut span, mut step) = (i128::from(stop) - i128::from(start), i128::from(step));
    if step == 0 {
        return None;
    }
    if step < 0 {
        (span, step) = (-span, -step);
    }
    // ceil(span / step), nothing when the range runs the other way.
    let length = (span + step - 1).div_euclid(step).max(0);
    Some(u64::try_from(length).unwrap_or(u64::MAX))
}

/// `Categorical`: codes in [-1, len(categories)).
pub(super) fn check_categorical(heap: &Heap, data: &[u8], categorical: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let state = backed(heap, categorical)?;
        let categories = match state.dtype {
            Some(dtype) => {
                let dtype_object = heap.object(dtype).ok_or("a dtype not made in the pickle")?;
                if !class_of(heap, dtype_object).is_some_and(|c| CATEGORICAL_DTYPE.contains(&c)) {
                    return Err("a dtype that is not a CategoricalDtype".into());
                }
                if dtype_object.rebuilt {
                    return Err("a CategoricalDtype given its state twice".into());
                }
                let fields = dtype_object
                    .state
                    .filter(|s| matches!(s, Val::Dict(_)))
                    .ok_or("a CategoricalDtype without its state dict")?;
                heap.get(fields, "categories")
                    .ok_or("a CategoricalDtype without categories")?
            }
            // An old state: the dtype is made from `_categories` at the BUILD.
            None => state
                .dict
                .and_then(|d| heap.get(d, "_categories"))
                .ok_or("a state without its dtype or categories")?,
        };
        // The dtype's categories are read when the categorical is used: as they end up.
        let count = match length_of(heap, categories, u64::MAX, 0)? {
            Ok(count) => count,
            Err(broken) => return Ok(Err(broken)),
        };
        if let Err(broken) = built_before(heap, state.array, state.read_at, "the codes") {
            return Ok(Err(broken));
        }
        let codes = array_of(heap, data, state.array)?;
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let broken = first_outside(&codes, usize::MAX, -1, count)?;
        Ok(match broken {
            Some((i, code)) => Err(format!(
                "codes[{i}] is {code}, outside [-1, {count}) (the categories)"
            )),
            None => Ok(()),
        })
    };
    outcome(run())
}

/// `IntervalArray` (`__pyx_unpickle_IntervalMixin`, then a BUILD whose state, a dict or a dict in
/// a 1-tuple, sets `_left` and `_right`): both of one length (the interval tree and the
/// comparisons pair them up by position).
pub(super) fn check_intervals(heap: &Heap, _data: &[u8], intervals: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let (fields, built) = interval_fields(heap, intervals)?;
        let mut lengths = [0; 2];
        for (length, key) in lengths.iter_mut().zip(["_left", "_right"]) {
            let bound = heap
                .get(fields, key)
                .ok_or_else(|| format!("a state without {key}"))?;
            *length = match length_of(heap, bound, built, 0)? {
                Ok(n) => n,
                Err(broken) => return Ok(Err(broken)),
            };
        }
        Ok(match lengths {
            [left, right] if left != right => {
                Err(format!("_right holds {right} bounds for {left} left bounds"))
            }
            _ => Ok(()),
        })
    };
    outcome(run())
}

/// The state dict of an interval array and the BUILD that gave it.
fn interval_fields(heap: &Heap, intervals: &Object) -> Result<(Val, u64), String> {
    if intervals.rebuilt {
        return Err("an interval array given its state twice".into());
    }
    let (Some(state), Some(built)) = (intervals.state, intervals.built_at) else {
        return Err("an interval array without its state".into());
    };
    match heap.tuple(state) {
        Some([only]) if !heap.changed_after(*only, built) => Ok((*only, built)),
        Some(_) => Err("a state tuple other than one unchanged dict".into()),
        None => Ok((state, built)),
    }
}

/// `BlockManager` and `SingleBlockManager`: every block's placement inside the items axis
/// (`axes[0]`), every block of the manager's dimensions, and its values of the shape the guard
/// requires: a series' values as long as its index (pandas' take and groupby kernels index them
/// by the index's positions, unchecked), a frame's block as many columns as its placement, each
/// as long as the index (`axes[1]`). Two forms: `BlockManager(blocks, axes)` with each block
/// `_unpickle_block(values, placement, ndim)` (pandas >= 2), and a state given by BUILD,
/// `(axes, values, items, {"0.14.1": {"axes": [...], "blocks": [{"values", "mgr_locs"}]}})`
/// (older frames, every series), which replaces what a call gave; its blocks have as many
/// dimensions as it has axes.
pub(super) fn check_block_manager(heap: &Heap, data: &[u8], manager: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        if manager.rebuilt {
            return Err("a block manager given its state twice".into());
        }
        let (axes, read_at, blocks) = match (manager.state, manager.built_at) {
            (Some(state), Some(built)) => manager_state(heap, state, built)?,
            (None, _) => manager_call(heap, manager)?,
            (Some(_), None) => return Err("a block manager with a state but no BUILD".into()),
        };
        let axes = sequence(heap, axes, read_at).ok_or("axes that are not a list")?;
        let dimensions = match class_of(heap, manager) {
            Some((_, "SingleBlockManager")) => 1,
            _ => 2,
        };
        let mut lengths = Vec::with_capacity(2);
        for axis in axes.iter().take(2) {
            match length_of(heap, *axis, read_at, 0)? {
                Ok(length) => lengths.push(length),
                Err(broken) => return Ok(Err(broken)),
            }
        }
        let Some(&index) = lengths.first() else {
            return Err("a block manager without axes".into());
        };
        let items = i64::try_from(index).unwrap_or(i64::MAX);
        for (number, block) in blocks.into_iter().enumerate() {
            let placed = match placed(heap, data, block.placement, block.at, items)? {
                Ok(placed) => placed,
                Err(broken) => return Ok(Err(format!("blocks[{number}]: {broken}"))),
            };
            if let Some(item) = placed.outside {
                return Ok(Err(format!(
                    "blocks[{number}] is placed at item {item}, outside [0, {items}) (the items axis)"
                )));
            }
            // The state's blocks take as many dimensions as it has axes.
            let ndim = block
                .ndim
                .unwrap_or_else(|| i64::try_from(axes.len()).unwrap_or(i64::MAX));
            if ndim != dimensions {
                return Ok(Err(format!(
                    "blocks[{number}] has {ndim} dimensions in a manager of {dimensions}"
                )));
            }
            let expected = match (dimensions, lengths.get(1)) {
                (1, _) => vec![index],
                (_, Some(&rows)) => vec![placed.count, rows],
                (_, None) => return Ok(Err("a frame's manager with one axis".into())),
            };
            let shape = match block_shape(heap, block.values, block.at, placed.count, dimensions)? {
                Ok(shape) => shape,
                Err(broken) => return Ok(Err(format!("blocks[{number}]: {broken}"))),
            };
            if shape != expected {
                return Ok(Err(format!(
                    "blocks[{number}].values has shape {shape:?} for placement {expected:?}"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// A block as its manager is given it: values, placement, dimensions (None: the manager's
/// axes), and where it was read.
struct Block {
    values: Val,
    placement: Val,
    ndim: Option<i64>,
    at: u64,
}

/// The shape the guard reads of a block whose values were taken at `at`: a NumPy array's or a
/// two-dimensional extension array's own; a one-dimensional extension array's in a frame is
/// `(placed, len)` (pandas' `ExtensionBlock.shape`). Outer error: not readable here.
fn block_shape(
    heap: &Heap,
    values: Val,
    at: u64,
    placed: u64,
    dimensions: i64,
) -> Result<Result<Vec<u64>, String>, String> {
    if let Err(broken) = built_before(heap, values, at, "the values") {
        return Ok(Err(broken));
    }
    if let Ok(shape) = array_shape(heap, values) {
        return Ok(Ok(shape));
    }
    // A datetime block's values: an NDArrayBacked array of two dimensions.
    let object = heap.object(values).ok_or("values not made in the pickle")?;
    if let Ok(inner) = backed(heap, object) {
        if let Ok(shape) = array_shape(heap, inner.array) {
            if shape.len() == 2 {
                return Ok(
                    match built_before(heap, inner.array, inner.read_at, "the values") {
                        Ok(()) => Ok(shape),
                        Err(broken) => Err(broken),
                    },
                );
            }
        }
    }
    Ok(length_of(heap, values, at, 0)?.map(|length| match dimensions {
        1 => vec![length],
        _ => vec![placed, length],
    }))
}

/// `BlockManager(blocks, axes[, verify])`: the axes, where the call read them, the blocks.
fn manager_call(heap: &Heap, manager: &Object) -> Result<(Val, u64, Vec<Block>), String> {
    let [blocks, axes, ..] = heap.tuple(manager.args).unwrap_or_default() else {
        return Err("a block manager called without blocks and axes".into());
    };
    let blocks = sequence(heap, *blocks, manager.offset).ok_or("blocks that are not a tuple")?;
    let mut made = Vec::with_capacity(blocks.len());
    for block in blocks {
        let object = heap.object(*block).ok_or("a block not made in the pickle")?;
        if heap.global(object.callee) != Some(UNPICKLE_BLOCK) || object.state.is_some() {
            return Err("a block not made by _unpickle_block".into());
        }
        let [values, placement, ndim] = heap.tuple(object.args).unwrap_or_default() else {
            return Err("a block made without values, placement and ndim".into());
        };
        let ndim = heap.int(*ndim).ok_or("a block whose ndim is not an int")?;
        made.push(Block {
            values: *values,
            placement: *placement,
            ndim: Some(ndim),
            at: object.offset,
        });
    }
    Ok((*axes, manager.offset, made))
}

/// The state `__setstate__` reads at the BUILD at `built`: the axes and blocks of its
/// "0.14.1" fields, none of them changed after that BUILD.
fn manager_state(heap: &Heap, state: Val, built: u64) -> Result<(Val, u64, Vec<Block>), String> {
    let as_built = |value: Option<Val>, what: &str| match value {
        Some(v) if heap.changed_after(v, built) => {
            Err(format!("{what} changed after the BUILD that read it"))
        }
        Some(v) => Ok(v),
        None => Err(format!("a block manager state without {what}")),
    };
    let extra = heap.tuple(state).and_then(|items| items.get(3).copied());
    let fields = as_built(
        heap.get(as_built(extra, "its fourth item")?, MANAGER_FIELDS),
        "its fields",
    )?;
    let axes = as_built(heap.get(fields, "axes"), "axes")?;
    let blocks = as_built(heap.get(fields, "blocks"), "blocks")?;
    let blocks = sequence(heap, blocks, built).ok_or("blocks that are not a list")?;
    let mut made = Vec::with_capacity(blocks.len());
    for block in blocks {
        let block = as_built(Some(*block), "a block")?;
        made.push(Block {
            values: as_built(heap.get(block, "values"), "a block's values")?,
            placement: as_built(heap.get(block, "mgr_locs"), "a block's mgr_locs")?,
            ndim: None,
            at: built,
        });
    }
    Ok((axes, built, made))
}

/// The items of a tuple, or of a list as read at `read_at`.
fn sequence(heap: &Heap, value: Val, read_at: u64) -> Option<&[Val]> {
    heap.tuple(value).or_else(|| heap.list(value, read_at))
}

/// What a placement places: how many items, and the first outside [0, items) if any.
struct Placed {
    count: u64,
    outside: Option<i64>,
}

/// What a placement read at `at` places: a slice (as Python's range), an int array, a list of
/// ints or one int. Outer error: not readable here; inner: broken otherwise (an array given
/// its state after the block took it).
fn placed(
    heap: &Heap,
    data: &[u8],
    placement: Val,
    at: u64,
    items: i64,
) -> Result<Result<Placed, String>, String> {
    let outside = |item: i64| !(0..items).contains(&item);
    if let Some(item) = heap.int(placement) {
        return Ok(Ok(Placed {
            count: 1,
            outside: outside(item).then_some(item),
        }));
    }
    if let Some(list) = heap.list(placement, at) {
        let mut first = None;
        for item in list {
            let item = heap.int(*item).ok_or("a placement list of other than ints")?;
            if outside(item) && first.is_none() {
                first = Some(item);
            }
        }
        return Ok(Ok(Placed {
            count: list.len() as u64,
            outside: first,
        }));
    }
    let object = heap
        .object(placement)
        .ok_or("a placement not made in the pickle")?;
    let Some(callee) = heap.global(object.callee) else {
        return Err("a placement made by a call of something not imported".into());
    };
    if !SLICE.contains(&callee) {
        if let Err(broken) = built_before(heap, placement, at, "a placement") {
            return Ok(Err(broken));
        }
        let array = array_of(heap, data, placement)?;
        return Ok(Ok(Placed {
            count: array.size(),
            outside: first_outside(&array, usize::MAX, 0, items)?.map(|(_, item)| item),
        }));
    }
    if object.state.is_some() {
        return Err("a slice given a state".into());
    }
    let bound = |v: &Val| match *v {
        Val::None => Ok(None),
        v => heap.int(v).map(Some).ok_or("a slice of other than ints"),
    };
    let (start, stop, step) = match heap.tuple(object.args).unwrap_or_default() {
        [stop] => (None, bound(stop)?, None),
        [start, stop] => (bound(start)?, bound(stop)?, None),
        [start, stop, step] => (bound(start)?, bound(stop)?, bound(step)?),
        _ => return Err("a slice of other than one to three bounds".into()),
    };
    // As pandas' slice_canonize: no start counts from 0 upwards; no stop runs down to 0.
    let step = step.unwrap_or(1);
    let (Some(start), Some(stop)) = (
        start.or((step > 0).then_some(0)),
        stop.or((step < 0).then_some(-1)),
    ) else {
        return Err("an unbounded slice".into());
    };
    let count = range_length(start, stop, step).ok_or("a slice of step 0")?;
    if count == 0 {
        return Ok(Ok(Placed { count, outside: None }));
    }
    let last = i128::from(start) + (i128::from(count) - 1) * i128::from(step);
    let last = i64::try_from(last).unwrap_or(i64::MAX);
    Ok(Ok(Placed {
        count,
        outside: [start, last].into_iter().find(|&item| outside(item)),
    }))
}

/// A `MultiIndex` made by `_new_Index(MultiIndex, d)`, which skips pandas' integrity check
/// (`verify_integrity=False`): one codes array per level, all as long as the first, each code
/// in [-1, len(level)) (a level's values are taken at its codes with bounds checks off).
pub(super) fn check_multi_index(heap: &Heap, data: &[u8], index: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        if index.state.is_some() {
            return Err("an index given a state".into());
        }
        let [_, fields] = heap.tuple(index.args).unwrap_or_default() else {
            return Err("an index made without its two arguments".into());
        };
        // `cls(**d)` reads the lists at the call.
        let list = |key: &str| {
            let value = heap
                .get(*fields, key)
                .ok_or_else(|| format!("a MultiIndex without {key}"))?;
            heap.list(value, index.offset)
                .or_else(|| heap.tuple(value))
                .ok_or_else(|| format!("{key} is not a list the pickle made"))
        };
        let (levels, codes) = (list("levels")?, list("codes")?);
        if levels.len() != codes.len() {
            return Ok(Err(format!(
                "{} code arrays for {} levels",
                codes.len(),
                levels.len()
            )));
        }
        let mut length = None;
        for (number, (&level, &level_codes)) in levels.iter().zip(codes).enumerate() {
            let values = match length_of(heap, level, index.offset, 0)? {
                Ok(values) => i64::try_from(values).unwrap_or(i64::MAX),
                Err(broken) => return Ok(Err(format!("levels[{number}]: {broken}"))),
            };
            if let Err(broken) = built_before(heap, level_codes, index.offset, "the codes") {
                return Ok(Err(broken));
            }
            let array = array_of(heap, data, level_codes)?;
            let [count] = array.shape[..] else {
                return Ok(Err(format!("codes[{number}] has shape {:?}", array.shape)));
            };
            if *length.get_or_insert(count) != count {
                return Ok(Err(format!(
                    "codes[{number}] holds {count} codes where codes[0] holds {}",
                    length.unwrap_or_default()
                )));
            }
            if let Some((i, code)) = first_outside(&array, usize::MAX, -1, values)? {
                return Ok(Err(format!(
                    "codes[{number}][{i}] is {code}, outside [-1, {values}) (the level's values)"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

const INT_INDEX: (&str, &str) = ("pandas._libs.sparse", "IntIndex");

/// A `SparseArray`: one stored value per point of its sparse index (the Cython sparse kernels
/// read `sp_values[i]` for every point unchecked). An `IntIndex(length, indices)` has one point
/// per index, which it checks against its length when the pickle calls it.
pub(super) fn check_sparse_array(heap: &Heap, _data: &[u8], array: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let state = dict_state(array, "a sparse array")?.ok_or("a sparse array without its state")?;
        let index = heap
            .get(state, "_sparse_index")
            .and_then(|v| heap.object(v))
            .filter(|made| heap.global(made.callee) == Some(INT_INDEX) && made.state.is_none())
            .ok_or("a sparse index that is not an IntIndex the pickle called")?;
        let indices = heap
            .tuple(index.args)
            .and_then(|args| args.get(1).copied())
            .ok_or("an IntIndex called without its indices")?;
        let points = match array_shape(heap, indices)?[..] {
            [points] => points,
            ref shape => return Ok(Err(format!("_sparse_index's indices have shape {shape:?}"))),
        };
        let values = heap
            .get(state, "_sparse_values")
            .ok_or("a state without _sparse_values")?;
        if let Err(broken) = built_before(heap, values, array.built_at.unwrap_or(u64::MAX), "the values") {
            return Ok(Err(broken));
        }
        match array_shape(heap, values)?[..] {
            [stored] if stored == points => Ok(Ok(())),
            ref shape => Ok(Err(format!(
                "_sparse_values has shape {shape:?} for the {points} points of its index"
            ))),
        }
    };
    outcome(run())
}

/// A masked array (`IntegerArray`, `FloatingArray`, `BooleanArray`): a boolean `_mask` of
/// exactly `_data`'s shape, data of the kind the class holds (what its constructor requires;
/// pandas' Cython kernels read `mask[i]` for every item of the data with bounds checks off).
pub(super) fn check_masked(heap: &Heap, data: &[u8], array: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let state = dict_state(array, "a masked array")?.ok_or("a masked array without its state")?;
        let kinds = match class_of(heap, array).map(|(_, name)| name) {
            Some("IntegerArray") => "iu",
            Some("FloatingArray") => "f",
            Some("BooleanArray") => "b",
            _ => return Err("not a masked array class".into()),
        };
        let kind = |a: &super::arrays::Array<'_>| {
            a.dtype
                .code
                .as_deref()
                .and_then(|c| c.get(1..2))
                .map(str::to_owned)
        };
        let values = array_of(
            heap,
            data,
            heap.get(state, "_data").ok_or("a state without _data")?,
        )?;
        let mask = array_of(
            heap,
            data,
            heap.get(state, "_mask").ok_or("a state without _mask")?,
        )?;
        if values.shape.is_empty() {
            return Ok(Err("_data is not an array of values".into()));
        }
        match kind(&values) {
            Some(k) if kinds.contains(k.as_str()) => {}
            other => return Ok(Err(format!("_data has kind {other:?}, not one this array holds"))),
        }
        if kind(&mask).as_deref() != Some("b") {
            return Ok(Err("_mask is not a boolean array".into()));
        }
        if mask.shape != values.shape {
            return Ok(Err(format!(
                "_mask has shape {:?} for data of shape {:?}",
                mask.shape, values.shape
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests;
