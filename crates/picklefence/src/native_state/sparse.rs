//! scipy sparse matrices and arrays inside a pickle: what scipy's own full format check
//! (`check_format(full_check=True)`, COO's `_check`) verifies, which unpickling never runs and
//! the C++ kernels trust: `indptr` from 0, non-decreasing, within `indices`; indices and
//! coordinates inside the shape; index and data arrays of one length.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{array_of, array_shape, built_before, first_outside, int_items, state_array};
use super::pickled::outcome;
use super::PickledOutcome;

/// Which compressed layout: the axis `indptr` runs over, and BSR's blocks.
#[derive(Clone, Copy)]
pub(super) enum Compressed {
    Rows,
    Columns,
    Blocks,
}

/// The instance dict a sparse object is given (one BUILD with a dict) and where it got it.
fn fields(object: &Object) -> Result<(Val, u64), String> {
    if object.rebuilt {
        return Err("a sparse object given its state twice".into());
    }
    match (object.state, object.built_at) {
        (Some(state @ Val::Dict(_)), Some(at)) => Ok((state, at)),
        _ => Err("a sparse object without its state dict".into()),
    }
}

fn shape(heap: &Heap, state: Val) -> Result<Vec<i64>, String> {
    let shape = heap
        .get(state, "_shape")
        .and_then(|v| heap.tuple(v))
        .ok_or("a sparse object without its _shape tuple")?;
    shape
        .iter()
        .map(|d| heap.int(*d).filter(|n| *n >= 0))
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| "a _shape that is not non-negative ints".into())
}

/// The first of the state's arrays that was built after the matrix was given its state: the
/// matrix holds what it was then, which the pickle does not show (broken).
fn built_late(heap: &Heap, state: Val, read_at: u64, keys: &[&str]) -> Option<String> {
    let arrays = keys.iter().filter_map(|k| Some((*k, heap.get(state, k)?)));
    let coords = heap
        .get(state, "coords")
        .and_then(|c| heap.tuple(c))
        .unwrap_or_default()
        .iter()
        .map(|v| ("coords", *v));
    arrays
        .chain(coords)
        .find_map(|(key, value)| built_before(heap, value, read_at, key).err())
}

/// CSR, CSC, BSR.
pub(super) fn check_compressed(
    heap: &Heap,
    data: &[u8],
    matrix: &Object,
    layout: Compressed,
) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let (state, read_at) = fields(matrix)?;
        if let Some(late) = built_late(heap, state, read_at, &["data", "indptr", "indices"]) {
            return Ok(Err(late));
        }
        let shape = shape(heap, state)?;
        let values = heap.get(state, "data").ok_or("a state without data")?;
        let data_shape = array_shape(heap, values)?;
        let (major, minor) = match (layout, &shape[..]) {
            (Compressed::Rows, [n]) => (1, *n),
            (Compressed::Rows, [m, n]) => (*m, *n),
            (Compressed::Columns, [m, n]) => (*n, *m),
            (Compressed::Blocks, [m, n]) => {
                let [_, r, c] = data_shape[..] else {
                    return Ok(Err(format!("data of shape {data_shape:?}, not three dimensions")));
                };
                let (r, c) = (i64::try_from(r).unwrap_or(0), i64::try_from(c).unwrap_or(0));
                if r == 0 || c == 0 {
                    return Ok(Err(format!("blocks of {r}x{c}")));
                }
                (m / r, n / c)
            }
            _ => return Ok(Err(format!("a shape of {} dimensions", shape.len()))),
        };
        if data_shape.len()
            != if matches!(layout, Compressed::Blocks) {
                3
            } else {
                1
            }
        {
            return Ok(Err(format!("data of shape {data_shape:?}")));
        }
        let indptr_array = state_array(heap, data, state, "indptr")?;
        let indices_array = state_array(heap, data, state, "indices")?;
        let indptr = int_items(&indptr_array)?;
        let stored = int_items(&indices_array)?.len();
        let expected = usize::try_from(major).unwrap_or(usize::MAX).saturating_add(1);
        if indptr.len() != expected {
            return Ok(Err(format!(
                "indptr has {} items for {major} rows of the index",
                indptr.len()
            )));
        }
        if data_shape.first().copied() != Some(stored as u64) {
            return Ok(Err(format!("{stored} indices for data of shape {data_shape:?}")));
        }
        let mut nnz = 0;
        for (i, pointer) in indptr.enumerate() {
            if i == 0 && pointer != 0 {
                return Ok(Err(format!("indptr[0] is {pointer}, not 0")));
            }
            if pointer < nnz {
                return Ok(Err(format!(
                    "indptr[{i}] is {pointer}, below indptr[{}]: indptr must not decrease",
                    i - 1
                )));
            }
            nnz = pointer;
        }
        let Some(used) = usize::try_from(nnz).ok().filter(|n| *n <= stored) else {
            return Ok(Err(format!("indptr ends at {nnz}, past the {stored} indices")));
        };
        Ok(match first_outside(&indices_array, used, 0, minor)? {
            Some((i, v)) => Err(format!("indices[{i}] is {v}, outside [0, {minor})")),
            None => Ok(()),
        })
    };
    outcome(run())
}

/// COO: each coordinate array inside its axis, all of the data's length.
pub(super) fn check_coo(heap: &Heap, data: &[u8], matrix: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let (state, read_at) = fields(matrix)?;
        if let Some(late) = built_late(heap, state, read_at, &["data", "row", "col"]) {
            return Ok(Err(late));
        }
        let shape = shape(heap, state)?;
        // `coords` (scipy >= 1.13), `row` and `col` before.
        let keys: Vec<(String, Val)> = match heap.get(state, "coords") {
            Some(coords) => heap
                .tuple(coords)
                .ok_or("coords that are not a tuple")?
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("coords[{i}]"), *v))
                .collect(),
            None => ["row", "col"]
                .iter()
                .map(|k| {
                    Ok((
                        (*k).to_owned(),
                        heap.get(state, k).ok_or_else(|| format!("a state without {k}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        };
        if keys.len() != shape.len() {
            return Ok(Err(format!(
                "{} coordinate arrays for a shape of {} dimensions",
                keys.len(),
                shape.len()
            )));
        }
        let values = heap.get(state, "data").ok_or("a state without data")?;
        let nnz = array_shape(heap, values)?.first().copied().unwrap_or(0);
        for ((name, value), bound) in keys.iter().zip(&shape) {
            let array = array_of(heap, data, *value)?;
            let items = int_items(&array)?.len();
            if items as u64 != nnz {
                return Ok(Err(format!("{name} has {items} items for {nnz} stored values")));
            }
            if let Some((i, v)) = first_outside(&array, items, 0, *bound)? {
                return Ok(Err(format!("{name}[{i}] is {v}, outside [0, {bound})")));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}
