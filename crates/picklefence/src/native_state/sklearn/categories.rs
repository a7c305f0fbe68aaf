//! Whether a `OneHotEncoder` feature's categories are as `fit` sorts them (the guard's
//! `_sorted_categories`): a value's code is its index in the categories only then (a numeric
//! input is encoded with `searchsorted`, which gives a known value of unsorted categories the
//! code `len(categories)`).

use std::cmp::Ordering;

use crate::evaluate::{Heap, Val};

use super::super::arrays::{array_of, int_items, kind, object_items, Array, AS_HELD};

/// Whether `values` are strictly increasing, then the missing values (numbers: one NaN or NaT;
/// objects: None, then NaN), as scikit-learn's `_unique` makes categories. An error when they
/// are not read here (their data out of the file, items of types not compared here).
pub(super) fn sorted_categories(heap: &Heap, data: &[u8], values: Val) -> Result<bool, String> {
    if let Some(items) = heap.list(values, AS_HELD).or_else(|| heap.tuple(values)) {
        // np.asarray gives a list of one type an array of it, ordered as Python orders them.
        return python_sorted(heap, items);
    }
    if let Ok((shape, items)) = object_items(heap, values) {
        return Ok(shape.len() == 1 && python_sorted(heap, items)?);
    }
    let array = array_of(heap, data, values)?;
    if array.shape.len() != 1 {
        return Ok(false);
    }
    let code = array.dtype.code.clone().unwrap_or_default();
    match kind(&array) {
        Some('i') | Some('u') if code.get(1..) != Some("u8") => {
            let items: Vec<i64> = int_items(&array)?.collect();
            Ok(increasing(&items, |a, b| a.cmp(b)))
        }
        Some('b') => Ok(increasing(&array.bytes, |a, b| a.cmp(b))),
        Some('f') => {
            let items = floats(&array, &code)?;
            let present = without_last_missing(&items, |v| v.is_nan());
            Ok(present.is_some_and(|items| increasing(items, |a, b| a.total_cmp(b))))
        }
        Some('M' | 'm') if code.starts_with("<") && array.dtype.itemsize == 8 => {
            let items: Vec<i64> = array
                .bytes
                .chunks_exact(8)
                .filter_map(|b| <[u8; 8]>::try_from(b).ok().map(i64::from_le_bytes))
                .collect();
            let present = without_last_missing(&items, |v| *v == i64::MIN); // NaT
            Ok(present.is_some_and(|items| increasing(items, |a, b| a.cmp(b))))
        }
        Some('S') => Ok(increasing(&chunks(&array)?, |a, b| a.cmp(b))),
        Some('U') if code.starts_with("<") => {
            // UCS-4 code points, NUL-padded: numpy's order is theirs.
            let items = chunks(&array)?;
            let points = |b: &&[u8]| {
                b.chunks_exact(4)
                    .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_le_bytes))
                    .collect::<Vec<_>>()
            };
            let items: Vec<Vec<u32>> = items.iter().map(points).collect();
            Ok(increasing(&items, |a, b| a.cmp(b)))
        }
        Some('c' | 'V') => Ok(false), // fit never makes them; the guard refuses them
        _ => Err(format!("categories of type {code:?} not read here")),
    }
}

/// Every item less than the next.
fn increasing<T>(items: &[T], order: impl Fn(&T, &T) -> Ordering) -> bool {
    items
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if order(a, b) == Ordering::Less))
}

/// The items before the missing value, when there is at most one and it is last.
fn without_last_missing<T>(items: &[T], missing: impl Fn(&T) -> bool) -> Option<&[T]> {
    match items.split_last() {
        Some((last, rest)) if missing(last) => (!rest.iter().any(&missing)).then_some(rest),
        _ => (!items.iter().any(&missing)).then_some(items),
    }
}

fn floats(array: &Array<'_>, code: &str) -> Result<Vec<f64>, String> {
    match code {
        "<f8" => Ok(array
            .bytes
            .chunks_exact(8)
            .filter_map(|b| <[u8; 8]>::try_from(b).ok().map(f64::from_le_bytes))
            .collect()),
        "<f4" => Ok(array
            .bytes
            .chunks_exact(4)
            .filter_map(|b| {
                <[u8; 4]>::try_from(b)
                    .ok()
                    .map(|b| f64::from(f32::from_le_bytes(b)))
            })
            .collect()),
        _ => Err(format!("categories of type {code:?} not read here")),
    }
}

/// The items of a fixed-width array, one slice each.
fn chunks<'a>(array: &'a Array<'_>) -> Result<Vec<&'a [u8]>, String> {
    let width = array.itemsize()?;
    if width == 0 {
        return Ok(vec![&[]; usize::try_from(array.size()).unwrap_or(0).min(2)]);
    }
    Ok(array.bytes.chunks_exact(width).collect())
}

/// Python's `a < b` of two items, for the types compared here: None when Python raises
/// (`TypeError`: a str and a number, None and anything), an error for other types.
fn less(heap: &Heap, a: Val, b: Val) -> Result<Option<bool>, String> {
    let number = |v: Val| match v {
        Val::Int(i) => Some(i as f64),
        Val::Bool(b) => Some(f64::from(u8::from(b))),
        Val::Float(f) => Some(f),
        _ => None,
    };
    Ok(match (a, b) {
        (Val::Int(a), Val::Int(b)) => Some(a < b),
        (Val::Str(_), Val::Str(_)) => Some(heap.str(a) < heap.str(b)),
        (Val::Str(_), Val::Int(_) | Val::Float(_) | Val::Bool(_) | Val::None)
        | (Val::Int(_) | Val::Float(_) | Val::Bool(_) | Val::None, Val::Str(_))
        | (Val::None, Val::Int(_) | Val::Float(_) | Val::Bool(_) | Val::None)
        | (Val::Int(_) | Val::Float(_) | Val::Bool(_), Val::None) => None,
        _ => match (number(a), number(b)) {
            (Some(a), Some(b)) => Some(a < b),
            _ => return Err("categories of objects not compared here".into()),
        },
    })
}

/// Python's `all(a < b for a, b in zip(items, items[1:]))` after a last NaN and then a last None
/// are set aside; False where Python raises.
fn python_sorted(heap: &Heap, items: &[Val]) -> Result<bool, String> {
    let mut items = items;
    if let Some((Val::Float(f), rest)) = items.split_last() {
        if f.is_nan() {
            items = rest;
        }
    }
    if let Some((Val::None, rest)) = items.split_last() {
        items = rest;
    }
    for pair in items.windows(2) {
        if let [a, b] = pair {
            if less(heap, *a, *b)? != Some(true) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
