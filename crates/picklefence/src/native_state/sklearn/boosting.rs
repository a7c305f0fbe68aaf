//! Gradient boosting's stages inside a pickle: `predict_stages` adds the trees of each stage (a
//! row of `estimators_`) into as many columns of the raw predictions, unchecked; those have
//! `n_trees_per_iteration_` columns (`init_="zero"`) or as many as the init estimator's
//! predictions. The guard's `_check_boosting_stages`, read from the file.

use crate::evaluate::{Heap, Object, Val};

use super::super::arrays::{array_shape, int_value, object_items};
use super::super::pickled::{class_of, dict_state};
use super::size_of;

const DUMMY_CLASSIFIER: (&str, &str) = ("sklearn.dummy", "DummyClassifier");
const DUMMY_REGRESSOR: (&str, &str) = ("sklearn.dummy", "DummyRegressor");
/// The losses whose `is_multiclass` (a class attribute) is true.
const MULTICLASS_LOSSES: [(&str, &str); 2] = [
    ("sklearn._loss.loss", "HalfMultinomialLoss"),
    ("sklearn._loss.loss", "HalfMultinomialLossArrayAPI"),
];

/// The estimators of a gradient boosting model (`estimators_`, an object array of shape
/// (stages, trees per stage)), checked against `n_trees_per_iteration_` and the width of the
/// init estimator's predictions. Outer error: not readable here; inner: broken.
pub(super) fn boosting_stages<'h>(
    heap: &'h Heap,
    data: &[u8],
    ensemble: &Object,
    state: Val,
    estimators: Val,
) -> Result<Result<&'h [Val], String>, String> {
    if heap.list(estimators, u64::MAX).is_some() || heap.tuple(estimators).is_some() {
        return Ok(Err(
            "estimators_ is not an array of (stages, trees per stage)".into()
        ));
    }
    let (shape, items) = object_items(heap, estimators).map_err(|why| format!("estimators_: {why}"))?;
    let [_, trees] = shape[..] else {
        return Ok(Err(format!(
            "estimators_ has shape {shape:?}: not (stages, trees per stage)"
        )));
    };
    match heap.get(state, "n_trees_per_iteration_") {
        None | Some(Val::None) => {}
        Some(value) => {
            let per_stage = int_value(heap, data, value).ok_or("n_trees_per_iteration_ is not an int")?;
            if u64::try_from(per_stage).ok() != Some(trees) {
                return Ok(Err(format!(
                    "estimators_ holds {trees} trees per stage for n_trees_per_iteration_ {per_stage}"
                )));
            }
        }
    }
    let field = |name: &str| heap.get(state, name).filter(|v| *v != Val::None);
    let (Some(init), Some(loss)) = (field("init_"), field("_loss")) else {
        return Ok(Ok(items)); // predict reads n_trees_per_iteration_ (checked above), or raises first
    };
    if heap.str(init) == Some("zero") {
        return Ok(Ok(items));
    }
    let classifier = matches!(class_of(heap, ensemble), Some((_, "GradientBoostingClassifier")));
    let width = match prediction_width(heap, init, loss, classifier)? {
        Some(width) => width,
        None => return Err("init_ predicts a number of columns not read here".into()),
    };
    if width < trees {
        return Ok(Err(format!(
            "init_ predicts {width} column(s) for {trees} trees per stage"
        )));
    }
    Ok(Ok(items))
}

/// How many columns gradient boosting's initial raw predictions from `init` have, as the guard's
/// `_init_prediction_width` reads them: a binary classifier's are its probabilities of one
/// class; scikit-learn's dummy estimators predict as many columns as their fitted state holds.
/// None for any other estimator.
fn prediction_width(heap: &Heap, init: Val, loss: Val, classifier: bool) -> Result<Option<u64>, String> {
    let loss = heap.object(loss).ok_or("a _loss not made in the pickle")?;
    let multiclass = match dict_state(loss, "a loss")?.and_then(|s| heap.get(s, "is_multiclass")) {
        Some(value) => value == Val::Bool(true),
        None => class_of(heap, loss).is_some_and(|class| MULTICLASS_LOSSES.contains(&class)),
    };
    if classifier && !multiclass {
        return Ok(Some(1));
    }
    let Some(init) = heap.object(init) else {
        return Ok(None);
    };
    let Some(fields) = dict_state(init, "an init estimator")? else {
        return Ok(None);
    };
    let outputs = heap.get(fields, "n_outputs_");
    let class = class_of(heap, init);
    if class == Some(DUMMY_CLASSIFIER) && outputs == Some(Val::Int(1)) {
        if !classifier {
            return Ok(Some(1)); // its predicted labels, one column
        }
        let classes = heap.get(fields, "n_classes_");
        let priors = heap.get(fields, "class_prior_").filter(|p| *p != Val::None);
        if let (Some(Val::Int(classes)), Some(priors)) = (classes, priors) {
            let priors = size_of(heap, priors)?;
            return Ok(Some(u64::try_from(classes).unwrap_or(0).min(priors)));
        }
    }
    if class == Some(DUMMY_REGRESSOR) {
        if let Some(Val::Int(outputs)) = outputs {
            let shape = heap
                .get(fields, "constant_")
                .and_then(|c| array_shape(heap, c).ok());
            let outputs = u64::try_from(outputs).ok();
            if outputs.is_some_and(|n| shape == Some(vec![1, n])) {
                return Ok(outputs);
            }
        }
    }
    Ok(None)
}
