//! scikit-learn estimators whose compiled code indexes weights or columns by what their state
//! says: vectorizers' vocabularies and a multi-label binarizer's cached columns (the column
//! indices of a sparse matrix built unchecked), SGD models' weights (read and written at the
//! input's features by the Cython SGD loop).

use std::collections::HashMap;

use crate::evaluate::{Heap, Object, Val};

use super::super::arrays::{int_value, shape_if_array};
use super::super::pickled::{dict_state, outcome};
use super::super::PickledOutcome;
use super::input_width;

/// Keys read at most from one mapping (a real vocabulary holds up to a few million).
const MAX_TERMS: usize = 1 << 24;

/// A mapping's key as Python tells keys apart, for the keys read here.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key<'h> {
    Str(&'h str),
    Int(i64),
}

/// `mapping` (a dict the pickle made, as it ends up) maps its keys to distinct integer columns
/// in [0, len(mapping)) (the guard's `_check_columns`). `keys`: what they are ("labels" may be
/// ints too, "terms" only strs).
fn check_columns(
    heap: &Heap,
    data: &[u8],
    mapping: Val,
    field: &str,
    keys: &str,
    columns_are: &str,
) -> Result<Result<(), String>, String> {
    let ints = keys == "labels";
    if heap.list(mapping, u64::MAX).is_some() || heap.tuple(mapping).is_some() {
        return Ok(Err(format!("{field} is not a dict")));
    }
    let items = heap
        .dict_items(mapping)
        .ok_or_else(|| format!("{field} is not a dict the pickle made"))?;
    if items.len() > MAX_TERMS {
        return Err(format!("{field} too large to read here"));
    }
    // The last column set for each key wins, as in Python.
    let mut columns = HashMap::with_capacity(items.len());
    for &(key, column) in items {
        // Labels fit from an array are NumPy integers.
        let key = match key {
            Val::Str(_) => heap.str(key).map(Key::Str),
            _ if ints => int_value(heap, data, key).map(Key::Int),
            _ => None,
        }
        .ok_or_else(|| format!("{field}: a key of a type not read here"))?;
        columns.insert(key, column);
    }
    let size = columns.len();
    let mut taken = vec![false; size];
    for (key, column) in columns {
        let name = match key {
            Key::Str(text) => format!("{text:?}"),
            Key::Int(i) => i.to_string(),
        };
        // A NumPy integer too (some analyzers keep them); a str is no column (the guard refuses
        // it); another value is left to the guard.
        let Some(column) = int_value(heap, data, column) else {
            if matches!(column, Val::Str(_)) {
                return Ok(Err(format!("{field}[{name}] is a str, not a column")));
            }
            return Err(format!("{field}[{name}] is not an int"));
        };
        let Some(slot) = usize::try_from(column).ok().and_then(|c| taken.get_mut(c)) else {
            return Ok(Err(format!(
                "{field}[{name}] is {column}, outside [0, {size}) ({columns_are})"
            )));
        };
        if std::mem::replace(slot, true) {
            return Ok(Err(format!("{field}: two {keys} share column {column}")));
        }
    }
    Ok(Ok(()))
}

/// Text and dict vectorizers: `vocabulary_` maps each term to a distinct column in
/// `[0, len(vocabulary_))`, as scikit-learn's own vocabulary check requires; `transform` puts
/// the columns into a sparse matrix's indices unchecked. Read as the dict ends up (items set
/// after the estimator's BUILD change the dict it holds).
pub(in crate::native_state) fn check_vocabulary(
    heap: &Heap,
    data: &[u8],
    vectorizer: &Object,
) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(vectorizer, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(vocabulary) = heap.get(state, "vocabulary_").filter(|v| *v != Val::None) else {
            return Ok(Ok(()));
        };
        check_columns(
            heap,
            data,
            vocabulary,
            "vocabulary_",
            "terms",
            "the vocabulary's columns",
        )
    };
    outcome(run())
}

/// MultiLabelBinarizer: `transform` makes a sparse matrix of `len(_cached_dict)` columns whose
/// column indices are `_cached_dict`'s values, unchecked (dense outputs then write there).
pub(in crate::native_state) fn check_multilabel_binarizer(
    heap: &Heap,
    data: &[u8],
    binarizer: &Object,
) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(binarizer, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(cached) = heap.get(state, "_cached_dict").filter(|v| *v != Val::None) else {
            return Ok(Ok(())); // made by the first transform
        };
        check_columns(
            heap,
            data,
            cached,
            "_cached_dict",
            "labels",
            "the output's columns",
        )
    };
    outcome(run())
}

/// SGD linear models: `fit`/`partial_fit` hand `coef_` (or `_standard_coef` and
/// `_average_coef` when averaging) to the Cython SGD loop, which reads and writes every weight at
/// the input's feature indices unchecked: each of the three an array of one or two dimensions,
/// as wide as `n_features_in_`, of `coef_`'s size.
pub(in crate::native_state) fn check_sgd(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let field = |name: &str| heap.get(state, name).filter(|v| *v != Val::None);
        let Some(coefficients) = field("coef_") else {
            return Ok(Ok(())); // not fitted: partial_fit allocates all three
        };
        let Some(width) = input_width(heap, data, state)? else {
            return Ok(Err(super::MISSING_WIDTH.into()));
        };
        let size = |shape: &[u64]| shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
        let coef_shape = shape_if_array(heap, coefficients)?;
        let described = |shape: &Option<Vec<u64>>| match shape {
            Some(shape) => format!("{shape:?}"),
            None => "none (not an array)".to_owned(),
        };
        for name in ["coef_", "_standard_coef", "_average_coef"] {
            let Some(weights) = field(name) else {
                continue;
            };
            let shape = shape_if_array(heap, weights)?;
            let fits = shape.as_deref().is_some_and(|shape| {
                (1..=2).contains(&shape.len())
                    && shape.last().and_then(|&w| i64::try_from(w).ok()) == Some(width)
                    && Some(size(shape)) == coef_shape.as_deref().map(size)
            });
            if !fits {
                return Ok(Err(format!(
                    "{name} has shape {} for {width} features (coef_ of shape {})",
                    described(&shape),
                    described(&coef_shape)
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}
