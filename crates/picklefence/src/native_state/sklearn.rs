//! scikit-learn estimators inside a pickle: a decision tree estimator's `Tree` must be built for
//! as many features as the estimator checks its input for (`predict` checks `X`'s width against
//! `n_features_in_`, then the `Tree` reads `X[i, feature]` for features below its own
//! `n_features`, the first argument of its constructor), and a forest's estimators' trees for
//! the forest's input width (it hands them `X` unchecked). Ensembles whose estimators sit in an
//! array (gradient boosting) or that pick columns per estimator (bagging) are left to the guard.
//! k-means centers and nearest-neighbor training data as wide as the input; vectorizers'
//! vocabularies map terms to distinct columns below their size.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{array_shape, int_value};
use super::pickled::{class_of, dict_state, outcome};
use super::PickledOutcome;

const TREE: (&str, &str) = ("sklearn.tree._tree", "Tree");

/// The feature count an estimator's state says `predict` checks its input against
/// (`n_features_in_`; scikit-learn before 1.2 also kept `n_features_`): an int or a NumPy
/// integer; None when it keeps neither (a bool is not one, as for the guard).
fn input_width(heap: &Heap, data: &[u8], state: Val) -> Result<Option<i64>, String> {
    for name in ["n_features_in_", "n_features_"] {
        match heap.get(state, name) {
            None | Some(Val::Bool(_)) => {}
            Some(value) => {
                return int_value(heap, data, value)
                    .map(Some)
                    .ok_or_else(|| format!("{name} is not an int"))
            }
        }
    }
    Ok(None)
}

const MISSING_WIDTH: &str = "n_features_in_ is missing: predict would not check its input's width";

/// `n_features` of the `Tree` a `tree_` value is: the first argument of its constructor.
fn tree_width(heap: &Heap, tree: Val) -> Result<i64, String> {
    let object = heap
        .object(tree)
        .ok_or("tree_ is not an object the pickle made")?;
    if class_of(heap, object) != Some(TREE) {
        return Err("tree_ is not a Tree".into());
    }
    heap.tuple(object.args)
        .and_then(|args| heap.int(*args.first()?))
        .ok_or_else(|| "a Tree called without n_features".into())
}

/// A decision tree estimator: `tree_.n_features == n_features_in_`.
pub(super) fn check_tree_estimator(heap: &Heap, data: &[u8], estimator: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(estimator, "an estimator")? else {
            return Ok(Ok(())); // unfitted: predict raises first
        };
        let Some(tree) = heap.get(state, "tree_") else {
            return Ok(Ok(()));
        };
        let features = tree_width(heap, tree)?;
        let Some(width) = input_width(heap, data, state)? else {
            return Ok(Err(MISSING_WIDTH.into()));
        };
        if features != width {
            return Ok(Err(format!(
                "tree_.n_features is {features} for an input of {width} features"
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// A forest (or gradient boosting, bagging, isolation forest): every estimator's `Tree` built for
/// the ensemble's input width, where the estimators are a list of estimators the pickle made
/// and no columns are picked per estimator.
pub(super) fn check_tree_ensemble(heap: &Heap, data: &[u8], ensemble: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(ensemble, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(estimators) = heap.get(state, "estimators_") else {
            return Ok(Ok(())); // unfitted
        };
        if heap
            .get(state, "estimators_features_")
            .is_some_and(|f| f != Val::None)
        {
            return Err("columns picked per estimator (estimators_features_)".into());
        }
        // As the ensemble ends up holding them: a list changed by SETITEM is not read.
        let items = heap
            .list(estimators, u64::MAX)
            .ok_or("estimators_ is not a list the pickle made")?;
        let width = input_width(heap, data, state)?;
        for (number, &item) in items.iter().enumerate() {
            let estimator = heap
                .object(item)
                .ok_or("an estimator that is not an object the pickle made")?;
            let Some(tree) = dict_state(estimator, "an estimator")?.and_then(|s| heap.get(s, "tree_")) else {
                continue;
            };
            let features = tree_width(heap, tree)?;
            let Some(width) = width else {
                return Ok(Err(MISSING_WIDTH.into()));
            };
            if features != width {
                return Ok(Err(format!(
                    "estimators_[{number}].tree_.n_features is {features} for an input of {width} features"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// The shape of the array under `key` of an estimator's state, None when the state has none.
fn state_shape(heap: &Heap, state: Val, key: &str) -> Result<Option<Vec<u64>>, String> {
    match heap.get(state, key) {
        None | Some(Val::None) => Ok(None),
        Some(value) => array_shape(heap, value).map(Some),
    }
}

/// k-means (`KMeans`, `MiniBatchKMeans`): `cluster_centers_` two-dimensional, as wide as the
/// input `predict` checks for; the Cython assignment reads each center row that wide.
pub(super) fn check_kmeans(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let (Some(shape), Some(width)) = (
            state_shape(heap, state, "cluster_centers_")?,
            input_width(heap, data, state)?,
        ) else {
            return Ok(Ok(())); // not fitted as scikit-learn reads it: predict raises first
        };
        let columns = match shape[..] {
            [_, columns] => i64::try_from(columns).ok(),
            _ => None,
        };
        if columns != Some(width) {
            return Ok(Err(format!(
                "cluster_centers_ has shape {shape:?} for {width} features"
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// Nearest-neighbor estimators: `_fit_X` two-dimensional and as wide as the input `predict`
/// checks for (the brute-force reductions read each row that wide), `n_samples_fit_` its rows
/// (the neighbor graphs size their matrices by it).
pub(super) fn check_neighbors(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(shape) = state_shape(heap, state, "_fit_X")? else {
            return Ok(Ok(()));
        };
        let width = input_width(heap, data, state)?;
        let [rows, columns] = shape[..] else {
            return Ok(Err(format!("_fit_X has shape {shape:?}, not two dimensions")));
        };
        if let Some(width) = width.filter(|&w| i64::try_from(columns).ok() != Some(w)) {
            return Ok(Err(format!("_fit_X has shape {shape:?} for {width} features")));
        }
        if let Some(value) = heap.get(state, "n_samples_fit_") {
            let samples = int_value(heap, data, value).ok_or("n_samples_fit_ is not an int")?;
            if u64::try_from(samples).ok() != Some(rows) {
                return Ok(Err(format!(
                    "n_samples_fit_ is {samples} for {rows} training samples"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// Terms read at most from one vocabulary (a real one holds up to a few million).
const MAX_TERMS: usize = 1 << 24;

/// Text and dict vectorizers: `vocabulary_` maps each term to a distinct column in
/// `[0, len(vocabulary_))`, as scikit-learn's own vocabulary check requires; `transform` puts
/// the columns into a sparse matrix's indices unchecked. Read as the dict ends up (items set
/// after the estimator's BUILD change the dict it holds).
pub(super) fn check_vocabulary(heap: &Heap, data: &[u8], vectorizer: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(vectorizer, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(vocabulary) = heap.get(state, "vocabulary_").filter(|v| *v != Val::None) else {
            return Ok(Ok(()));
        };
        let items = heap
            .dict_items(vocabulary)
            .ok_or("vocabulary_ is not a dict the pickle made")?;
        if items.len() > MAX_TERMS {
            return Err("a vocabulary too large to read here".into());
        }
        // The last column set for each term wins, as in Python.
        let mut columns = std::collections::HashMap::with_capacity(items.len());
        for &(term, column) in items {
            let term = heap.str(term).ok_or("a term that is not a str")?;
            columns.insert(term, column);
        }
        let size = columns.len();
        let mut taken = vec![false; size];
        for (term, column) in columns {
            // A NumPy integer too (some analyzers keep them); another value is left to the guard.
            let column = int_value(heap, data, column)
                .ok_or_else(|| format!("vocabulary_[{term:?}] is not an int"))?;
            let Some(slot) = usize::try_from(column).ok().and_then(|c| taken.get_mut(c)) else {
                return Ok(Err(format!(
                    "vocabulary_[{term:?}] is {column}, outside [0, {size}) (the vocabulary's columns)"
                )));
            };
            if std::mem::replace(slot, true) {
                return Ok(Err(format!("vocabulary_: two terms share column {column}")));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests {
    use crate::evaluate::tests::{evaluate, Asm};
    use crate::native_state::{check_pickled, PickledOutcome};

    /// `DecisionTreeRegressor` (NEWOBJ) BUILT with `{n_features_in_: width, tree_: Tree(features)}`
    /// (the width left out when None).
    fn estimator(asm: Asm, width: Option<i32>, features: i32) -> Asm {
        let asm = asm
            .global("sklearn.tree._classes", "DecisionTreeRegressor")
            .op(b')')
            .op(0x81)
            .op(b'}');
        let asm = match width {
            Some(width) => asm.text("n_features_in_").int(width).op(b's'),
            None => asm,
        };
        asm.text("tree_")
            .global("sklearn.tree._tree", "Tree")
            .int(features)
            .op(0x85)
            .op(b'R')
            .op(b's')
            .op(b'b')
    }

    fn outcomes(data: &[u8]) -> Vec<(&'static str, PickledOutcome)> {
        let evaluator = evaluate(data, 1 << 20);
        check_pickled(&evaluator.heap, data)
            .into_iter()
            .filter(|s| s.name != "Tree") // its nodes: no state here
            .map(|s| (s.name, s.outcome))
            .collect()
    }

    fn lone(width: Option<i32>, features: i32) -> Vec<u8> {
        estimator(Asm::default().op(0x80).op(2), width, features)
            .op(b'.')
            .0
    }

    fn forest(width: i32, features: [i32; 2]) -> Vec<u8> {
        let asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.ensemble._forest", "RandomForestRegressor")
            .op(b')')
            .op(0x81)
            .op(b'}')
            .text("n_features_in_")
            .int(width)
            .op(b's')
            .text("estimators_")
            .op(b']')
            .op(b'(');
        let asm = features
            .into_iter()
            .fold(asm, |asm, f| estimator(asm, Some(f), f));
        asm.op(b'e').op(b's').op(b'b').op(b'.').0
    }

    #[test]
    fn a_tree_is_built_for_its_estimators_input_width() {
        assert_eq!(
            outcomes(&lone(Some(3), 3)),
            [("DecisionTreeRegressor", PickledOutcome::Intact)]
        );
        let [(_, PickledOutcome::Broken(why))] = &outcomes(&lone(Some(3), 100_000_000))[..] else {
            panic!("not broken")
        };
        assert!(
            why.contains("tree_.n_features is 100000000 for an input of 3"),
            "{why}"
        );
        let [(_, PickledOutcome::Broken(why))] = &outcomes(&lone(None, 3))[..] else {
            panic!("not broken")
        };
        assert!(why.contains("n_features_in_ is missing"), "{why}");
    }

    #[test]
    fn a_forests_trees_are_built_for_its_input_width() {
        let intact = outcomes(&forest(3, [3, 3]));
        assert!(
            intact.iter().all(|(_, o)| *o == PickledOutcome::Intact),
            "{intact:?}"
        );
        // Each estimator agrees with its own width; the forest hands them its narrower input.
        let found = outcomes(&forest(3, [3, 7]));
        let broken: Vec<_> = found
            .iter()
            .filter_map(|(name, o)| match o {
                PickledOutcome::Broken(why) => Some((*name, why.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            broken,
            [(
                "RandomForestRegressor",
                "estimators_[1].tree_.n_features is 7 for an input of 3 features"
            )]
        );
    }
}
