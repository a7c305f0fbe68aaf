//! scipy sparse matrices and arrays inside a pickle: what scipy's own full format check
//! (`check_format(full_check=True)`, COO's `_check`) verifies, which unpickling never runs and
//! the C++ kernels trust: `indptr` from 0, non-decreasing, within `indices`; indices and
//! coordinates inside the shape; index and data arrays of one length. DIA and LIL matrices as
//! their constructors leave them: one data row per distinct offset; per row, increasing
//! columns inside the shape and as many values.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{
    array_of, array_shape, built_before, first_outside, int_items, kind, object_items, state_array, AS_HELD,
};
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

/// DIA: one row of `data` per offset, offsets distinct (what the constructor checks); the C++
/// kernels walk `len(offsets)` rows of `data`.
pub(super) fn check_dia(heap: &Heap, data: &[u8], matrix: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let (state, read_at) = fields(matrix)?;
        if let Some(late) = built_late(heap, state, read_at, &["data", "offsets"]) {
            return Ok(Err(late));
        }
        let values = heap.get(state, "data").ok_or("a state without data")?;
        let diagonals = match array_shape(heap, values)?[..] {
            [diagonals, _] => diagonals,
            ref shape => return Ok(Err(format!("data has shape {shape:?}, not two dimensions"))),
        };
        let offsets = state_array(heap, data, state, "offsets")?;
        if offsets.shape.len() != 1 || !matches!(kind(&offsets), Some('i' | 'u')) {
            return Ok(Err("offsets is not a one-dimensional integer array".into()));
        }
        let mut items: Vec<i64> = int_items(&offsets)?.collect();
        if items.len() as u64 != diagonals {
            return Ok(Err(format!(
                "offsets holds {} offsets for {diagonals} diagonals",
                items.len()
            )));
        }
        items.sort_unstable();
        if let Some(&[offset, _]) = items.windows(2).find(|pair| pair.first() == pair.get(1)) {
            return Ok(Err(format!("offsets repeats the offset {offset}")));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// LIL: `rows` and `data` object arrays of one list per row, each row's columns ints
/// increasing inside the shape with as many values (`tocsr` copies them into a CSR matrix
/// unchecked).
pub(super) fn check_lil(heap: &Heap, _data: &[u8], matrix: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let (state, read_at) = fields(matrix)?;
        if let Some(late) = built_late(heap, state, read_at, &["rows", "data"]) {
            return Ok(Err(late));
        }
        let [height, width] = shape(heap, state)?[..] else {
            return Ok(Err("a shape that is not two dimensions".into()));
        };
        let rows = heap.get(state, "rows").ok_or("a state without rows")?;
        let values = heap.get(state, "data").ok_or("a state without data")?;
        let rows_shape = array_shape(heap, rows)?;
        if rows_shape.len() != 1 || rows_shape.first().and_then(|&n| i64::try_from(n).ok()) != Some(height) {
            return Ok(Err(format!("rows has shape {rows_shape:?}, not {height} rows")));
        }
        let values_shape = array_shape(heap, values)?;
        if values_shape != rows_shape {
            return Ok(Err(format!("data has shape {values_shape:?} for {height} rows")));
        }
        if height == 0 {
            return Ok(Ok(()));
        }
        let (_, rows) = object_items(heap, rows)?;
        let (_, values) = object_items(heap, values)?;
        for (number, (&columns, &items)) in rows.iter().zip(values).enumerate() {
            // A list the pickle made (one changed by SETITEM is not read); a tuple, a number...
            // is no list, which the guard refuses.
            let list = |value: Val| match value {
                Val::List(_) => heap
                    .list(value, AS_HELD)
                    .map(Some)
                    .ok_or_else(|| "a row changed in a way not followed".to_owned()),
                Val::Obj(_) | Val::Global(_) | Val::PersId(_) => Err("a row not read here".to_owned()),
                _ => Ok(None),
            };
            let (Some(columns), Some(items)) = (list(columns)?, list(items)?) else {
                return Ok(Err(format!(
                    "rows[{number}] is not a list of as many columns as values"
                )));
            };
            if columns.len() != items.len() {
                return Ok(Err(format!(
                    "rows[{number}] holds {} columns for {} values",
                    columns.len(),
                    items.len()
                )));
            }
            // Python ints only (a bool or a NumPy integer is refused too), increasing in [0, width).
            let mut previous = -1;
            for (item, column) in columns.iter().enumerate() {
                let column = match *column {
                    Val::Int(c) if c > previous && c < width => {
                        previous = c;
                        continue;
                    }
                    Val::Int(c) => c.to_string(),
                    _ => "not an int".to_owned(),
                };
                return Ok(Err(format!(
                    "rows[{number}][{item}] is {column}: columns not increasing inside [0, {width})"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests {
    use crate::native_state::pickled::tests::{
        broken, dtype, instance, int, int_array, object_array, outcome_for, pickle, sequence, text, zeros,
        Value,
    };
    use crate::native_state::PickledOutcome;

    fn shape(rows: i32, columns: i32) -> Value<'static> {
        sequence(vec![int(rows), int(columns)], false)
    }

    fn matrix<'a>(module: &'a str, name: &'a str, fields: Vec<(&'a str, Value<'a>)>) -> Vec<u8> {
        pickle(&instance(module, name, fields))
    }

    fn dia(diagonals: i32, offsets: &[i64]) -> Vec<u8> {
        let data: &[i32] = vec![diagonals, 5].leak();
        matrix(
            "scipy.sparse._dia",
            "dia_matrix",
            vec![
                ("_shape", shape(5, 5)),
                ("data", zeros(data)),
                ("offsets", int_array(offsets, "i4")),
            ],
        )
    }

    #[test]
    fn a_dia_matrix_has_one_data_row_per_distinct_offset() {
        assert_eq!(
            outcome_for(&dia(3, &[0, -1, 2]), "dia_matrix"),
            PickledOutcome::Intact
        );
        assert_eq!(outcome_for(&dia(0, &[]), "dia_matrix"), PickledOutcome::Intact);
        let why = broken(outcome_for(&dia(1, &[0, 1, 2, 3]), "dia_matrix"));
        assert!(why.contains("offsets holds 4 offsets for 1 diagonals"), "{why}");
        let why = broken(outcome_for(&dia(3, &[2, -1, 2]), "dia_matrix"));
        assert!(why.contains("offsets repeats the offset 2"), "{why}");
        let flat = matrix(
            "scipy.sparse._dia",
            "dia_array",
            vec![
                ("_shape", shape(5, 5)),
                ("data", zeros(&[5])),
                ("offsets", int_array(&[0], "i4")),
            ],
        );
        let why = broken(outcome_for(&flat, "dia_array"));
        assert!(why.contains("data has shape [5], not two dimensions"), "{why}");
        let float_offsets = matrix(
            "scipy.sparse._dia",
            "dia_matrix",
            vec![
                ("_shape", shape(5, 5)),
                ("data", zeros(&[1, 5])),
                ("offsets", zeros(&[1])),
            ],
        );
        let why = broken(outcome_for(&float_offsets, "dia_matrix"));
        assert!(
            why.contains("offsets is not a one-dimensional integer array"),
            "{why}"
        );
    }

    /// A list of ints.
    fn ints(items: &[i32]) -> Value<'_> {
        sequence(items.iter().map(|&n| int(n)).collect(), true)
    }

    /// A LIL matrix of 3 x 4 whose rows hold `columns` (values: as many, or `values`).
    fn lil<'a>(rows: Vec<Value<'a>>, values: Vec<Value<'a>>) -> Vec<u8> {
        matrix(
            "scipy.sparse._lil",
            "lil_matrix",
            vec![
                ("_shape", shape(3, 4)),
                ("rows", object_array(rows)),
                ("data", object_array(values)),
            ],
        )
    }

    #[test]
    fn a_lil_matrixs_rows_hold_increasing_columns_inside_its_shape() {
        let good = || vec![ints(&[0, 3]), ints(&[]), ints(&[1])];
        let values = || vec![ints(&[1, 1]), ints(&[]), ints(&[1])];
        assert_eq!(
            outcome_for(&lil(good(), values()), "lil_matrix"),
            PickledOutcome::Intact
        );
        let cases: Vec<(Vec<Value<'_>>, &str)> = vec![
            (
                vec![ints(&[0, 100_000_000]), ints(&[]), ints(&[1])],
                "rows[0][1] is 100000000: columns not increasing inside [0, 4)",
            ),
            (vec![ints(&[3, 0]), ints(&[]), ints(&[1])], "rows[0][1] is 0"),
            (vec![ints(&[0, 3]), ints(&[]), ints(&[-1])], "rows[2][0] is -1"),
            (
                vec![ints(&[0, 3]), ints(&[]), sequence(vec![int(1)], false)],
                "rows[2] is not a list",
            ),
        ];
        for (rows, expected) in cases {
            let why = broken(outcome_for(&lil(rows, values()), "lil_matrix"));
            assert!(why.contains(expected), "{expected}: {why}");
        }
        let why = broken(outcome_for(
            &lil(good(), vec![ints(&[1]), ints(&[]), ints(&[1])]),
            "lil_matrix",
        ));
        assert!(why.contains("rows[0] holds 2 columns for 1 values"), "{why}");
        let why = broken(outcome_for(
            &lil(vec![ints(&[0]), ints(&[])], vec![ints(&[1]), ints(&[])]),
            "lil_matrix",
        ));
        assert!(why.contains("rows has shape [2], not 3 rows"), "{why}");
    }

    /// A joblib wrapper of a one-dimensional object array of `count` items (its shape as
    /// declared), followed by the nested pickle of the array itself: `items`.
    fn wrapped<'a>(count: i32, items: Vec<Value<'a>>) -> Value<'a> {
        let wrapper = instance(
            "joblib.numpy_pickle",
            "NumpyArrayWrapper",
            vec![
                ("shape", sequence(vec![int(count)], false)),
                ("order", text("C")),
                ("dtype", dtype("O8")),
            ],
        );
        let array = object_array(items);
        Box::new(move |asm| array(wrapper(asm).op(0x80).op(2)).op(b'.'))
    }

    fn joblib_outcome(data: &[u8]) -> PickledOutcome {
        let evaluator = crate::native_state::evaluate_as_read(data, true, &[]);
        let found = crate::native_state::check_pickled(&evaluator.heap, data);
        let [state] = &found[..] else {
            panic!("{} checked", found.len())
        };
        state.outcome.clone()
    }

    #[test]
    fn a_lil_matrix_in_a_joblib_file_is_read_through_the_arrays_joblib_pickles_apart() {
        let joblib = |declared: i32, rows: Vec<Value<'static>>, values: Vec<Value<'static>>| {
            matrix(
                "scipy.sparse._lil",
                "lil_matrix",
                vec![
                    ("_shape", shape(3, 4)),
                    ("rows", wrapped(declared, rows)),
                    ("data", wrapped(declared, values)),
                ],
            )
        };
        let rows = |last: i32| {
            vec![
                ints(&[0, 3]),
                ints(&[]),
                Box::new(move |asm| ints(&[last])(asm)) as Value<'static>,
            ]
        };
        let values = || vec![ints(&[1, 1]), ints(&[]), ints(&[1])];
        assert_eq!(
            joblib_outcome(&joblib(3, rows(1), values())),
            PickledOutcome::Intact
        );
        let why = broken(joblib_outcome(&joblib(3, rows(4), values())));
        assert!(why.contains("rows[2][0] is 4"), "{why}");
        // joblib returns the pickled array, whatever shape its wrapper declares.
        let why = broken(joblib_outcome(&joblib(3, vec![ints(&[0])], vec![ints(&[1])])));
        assert!(why.contains("rows has shape [1], not 3 rows"), "{why}");
    }
}
