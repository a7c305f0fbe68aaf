//! scikit-learn estimators inside a pickle: a decision tree estimator's `Tree` must be built for
//! as many features as the estimator checks its input for (`predict` checks `X`'s width against
//! `n_features_in_`, then the `Tree` reads `X[i, feature]` for features below its own
//! `n_features`, the first argument of its constructor), and a forest's estimators' trees for
//! the forest's input width (it hands them `X` unchecked); gradient boosting's stages (an object
//! array) as wide as its raw predictions (`boosting.rs`). Ensembles that pick columns per
//! estimator (bagging) are left to the guard.
//! k-means centers and nearest-neighbor training data as wide as the input; vectorizers'
//! vocabularies map terms to distinct columns below their size. SVMs' counts and shapes as
//! libsvm reads them; a one-hot encoder's codes below its output counts; Birch's norms one per
//! center and a bisecting k-means tree's node centers as wide as the input.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{
    array_of, array_shape, first_outside, int_items, int_value, kind, object_items, shape_if_array, AS_HELD,
};
use super::pickled::{class_of, dict_state, outcome};
use super::PickledOutcome;
use boosting::boosting_stages;
use categories::sorted_categories;
pub(super) use hdbscan::check_hdbscan;
pub(super) use linear::{check_multilabel_binarizer, check_sgd, check_vocabulary};

mod boosting;
mod categories;
mod hdbscan;
mod linear;

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
        // Gradient boosting's: an object array of stages, checked against its predictions.
        let boosting = matches!(class_of(heap, ensemble), Some(("sklearn.ensemble._gb", _)));
        let items = if boosting {
            match boosting_stages(heap, data, ensemble, state, estimators)? {
                Ok(items) => items,
                Err(broken) => return Ok(Err(broken)),
            }
        } else {
            // As the ensemble ends up holding them: a list changed by SETITEM is not read.
            heap.list(estimators, u64::MAX)
                .ok_or("estimators_ is not a list the pickle made")?
        };
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

/// k-means (`KMeans`, `MiniBatchKMeans`, `BisectingKMeans`): `cluster_centers_`
/// two-dimensional, as wide as the input `predict` checks for; the Cython assignment reads each
/// center row that wide. A bisecting tree's node centers too (its `predict` walks them).
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
        // MiniBatchKMeans.partial_fit adds each center's weight into _counts, unchecked.
        let centers = shape.first().copied().unwrap_or(0);
        if let Some(counts) = state_shape(heap, state, "_counts")? {
            if counts != [centers] {
                return Ok(Err(format!("_counts has shape {counts:?} for {centers} centers")));
            }
        }
        // OpenMP's thread count for predict: libgomp ends the process asked for a negative one.
        match heap.get(state, "_n_threads") {
            None | Some(Val::None) => {}
            Some(Val::Int(threads)) if (1..=MAX_THREADS).contains(&threads) => {}
            Some(_) => {
                return Ok(Err(format!(
                    "_n_threads is not a thread count in [1, {MAX_THREADS}]"
                )))
            }
        }
        match heap.get(state, "_bisecting_tree") {
            None | Some(Val::None) => Ok(Ok(())),
            Some(root) => check_bisecting_tree(heap, root, width),
        }
    };
    outcome(run())
}

/// The most OpenMP threads a model may ask for (the guard's `_MAX_THREADS`): the cores of the
/// largest machines (a model keeps the count of the machine that fitted it).
const MAX_THREADS: i64 = 4096;

/// The nodes of a bisecting tree (`_BisectingTree`: center, left, right): each center a row of
/// `width` values (an `np.matrix` of one row when fitted on sparse data), no node reached twice.
fn check_bisecting_tree(heap: &Heap, root: Val, width: i64) -> Result<Result<(), String>, String> {
    let mut pending = vec![root];
    let mut seen = std::collections::HashSet::new();
    while let Some(node) = pending.pop() {
        let Val::Obj(index) = node else {
            return Err("a bisecting tree node that is not an object the pickle made".into());
        };
        if !seen.insert(index) {
            return Ok(Err("_bisecting_tree: a node reached twice".into()));
        }
        let object = heap
            .object(node)
            .ok_or("a bisecting tree node that is not an object the pickle made")?;
        let Some(fields) = dict_state(object, "a bisecting tree node")? else {
            continue; // no instance dict: the guard reads no center and no children
        };
        if let Some(center) = heap.get(fields, "center").filter(|c| *c != Val::None) {
            let shape = array_shape(heap, center)?;
            let size = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
            let row = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok()) == Some(width);
            if !row(size) || !row(shape.last().copied()) {
                return Ok(Err(format!(
                    "_bisecting_tree: a node center of shape {shape:?} for {width} features"
                )));
            }
        }
        for side in ["left", "right"] {
            if let Some(child) = heap.get(fields, side).filter(|c| *c != Val::None) {
                pending.push(child);
            }
        }
    }
    Ok(Ok(()))
}

/// Birch: `predict` hands `_subcluster_norms` to the Cython nearest-center reduction as one
/// squared norm per subcluster center, read for every center unchecked: centers
/// two-dimensional and as wide as the input, one norm per center.
pub(super) fn check_birch(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(centers) = heap.get(state, "subcluster_centers_").filter(|c| *c != Val::None) else {
            return Ok(Ok(())); // not fitted
        };
        let width = input_width(heap, data, state)?;
        let shape = shape_if_array(heap, centers)?;
        let rows = match shape.as_deref() {
            Some(&[rows, columns]) if width.is_none_or(|w| i64::try_from(columns).ok() == Some(w)) => rows,
            _ => {
                let shape = shape.map_or_else(|| "none (not an array)".into(), |s| format!("{s:?}"));
                let width = width.map_or_else(|| "any number of".into(), |w| w.to_string());
                return Ok(Err(format!(
                    "subcluster_centers_ has shape {shape} for {width} features"
                )));
            }
        };
        let Some(norms) = heap.get(state, "_subcluster_norms").filter(|n| *n != Val::None) else {
            return Ok(Ok(()));
        };
        // A number has shape (); a list's shape is not read here.
        let norms_shape = match norms {
            Val::Int(_) | Val::Float(_) | Val::Bool(_) => Some(Vec::new()),
            Val::Obj(_) => Some(array_shape(heap, norms)?),
            _ => None,
        }
        .ok_or("_subcluster_norms that is not an array")?;
        if norms_shape != [rows] {
            return Ok(Err(format!(
                "_subcluster_norms has shape {norms_shape:?} for {rows} centers"
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// The shape of an array or of a scipy sparse matrix (its `_shape`).
fn shape_of_any(heap: &Heap, value: Val) -> Result<Vec<u64>, String> {
    if let Ok(shape) = array_shape(heap, value) {
        return Ok(shape);
    }
    let sparse = heap
        .object(value)
        .filter(|o| class_of(heap, o).is_some_and(|(module, _)| module.starts_with("scipy.sparse")));
    sparse
        .and_then(|o| dict_state(o, "a sparse matrix").ok().flatten())
        .and_then(|state| heap.tuple(heap.get(state, "_shape")?))
        .and_then(|dims| dims.iter().map(|d| u64::try_from(heap.int(*d)?).ok()).collect())
        .ok_or_else(|| "neither an array nor a sparse matrix".into())
}

/// How many items `np.asarray(value)` has: 1 for a number, an array's size.
fn size_of(heap: &Heap, value: Val) -> Result<u64, String> {
    match value {
        Val::Int(_) | Val::Float(_) | Val::Bool(_) => Ok(1),
        _ => Ok(array_shape(heap, value)?
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .unwrap_or(u64::MAX)),
    }
}

/// An SVM (`SVC`, `NuSVC`, `SVR`, `NuSVR`, `OneClassSVM`): libsvm's `set_model` takes the
/// number of support vectors from `support_` and the number of classes from `_n_support`, and
/// reads the vectors, coefficients and intercepts by those counts unchecked. As the guard
/// checks them: `support_` one per support vector, `_n_support` (classifiers: non-negative,
/// summing to the vectors; else two entries), `_dual_coef_` of (classes - 1) rows, one value
/// per class pair in `_intercept_` (`_probA`, `_probB`: none or one per pair), and a
/// precomputed or callable kernel's `support_` inside the training samples.
pub(super) fn check_libsvm(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let field = |name: &str| heap.get(state, name).filter(|v| *v != Val::None);
        let (Some(support), Some(counts)) = (field("support_"), field("_n_support")) else {
            return Ok(Ok(())); // not fitted: predict raises first
        };
        let support_shape = array_shape(heap, support)?;
        let counts = array_of(heap, data, counts)?;
        if support_shape.len() != 1 || counts.shape.len() != 1 || !matches!(kind(&counts), Some('i' | 'u')) {
            return Ok(Err(
                "_n_support: support_ and _n_support are not one-dimensional integer arrays".into(),
            ));
        }
        let indices = support_shape.first().copied().unwrap_or(0);
        // A callable kernel (a function or an object the pickle makes) predicts through libsvm's
        // precomputed kernel too, on its matrix of the input against the kept training data.
        let kernel = field("kernel");
        let callable_kernel = matches!(kernel, Some(Val::Global(_) | Val::Obj(_)));
        let precomputed = callable_kernel || kernel.and_then(|k| heap.str(k)) == Some("precomputed");
        let vectors = match field("support_vectors_") {
            Some(vectors) if !precomputed => match shape_of_any(heap, vectors)?.first() {
                Some(&rows) => rows,
                None => return Ok(Err("support_vectors_ has no rows".into())),
            },
            _ => indices,
        };
        if indices != vectors {
            return Ok(Err(format!(
                "support_ has {indices} indices for {vectors} support vectors"
            )));
        }
        let items: Vec<i64> = int_items(&counts)?.collect();
        let classes = items.len() as u64;
        if classes < 2 {
            return Ok(Err(format!("_n_support has {classes} classes")));
        }
        // libsvm's model type: a class attribute, which the instance dict may shadow.
        let classifier = match heap.get(state, "_impl") {
            Some(implementation) => matches!(heap.str(implementation), Some("c_svc" | "nu_svc")),
            None => matches!(class_of(heap, model), Some((_, "SVC" | "NuSVC"))),
        };
        if classifier {
            let total: i128 = items.iter().map(|&n| i128::from(n)).sum();
            if items.iter().any(|&n| n < 0) || total != i128::from(vectors) {
                return Ok(Err(format!(
                    "_n_support is {:?} for {vectors} support vectors",
                    items.get(..8).unwrap_or(&items)
                )));
            }
        } else if classes != 2 {
            return Ok(Err(format!(
                "_n_support has {classes} entries for a regression or one-class model"
            )));
        }
        let pairs = classes.saturating_mul(classes - 1) / 2;
        let coefficients = field("_dual_coef_");
        let shape = match coefficients {
            Some(coefficients) => shape_of_any(heap, coefficients)?,
            None => Vec::new(), // None has no shape: the guard refuses it too
        };
        if shape != [classes - 1, vectors] {
            return Ok(Err(format!(
                "_dual_coef_ has shape {shape:?} for {classes} classes and {vectors} vectors"
            )));
        }
        // A sparse model's coefficients: a CSR matrix whose stored values libsvm reads.
        if let Some(matrix) = coefficients.filter(|c| array_shape(heap, *c).is_err()) {
            let values = heap
                .object(matrix)
                .and_then(|o| heap.get(o.state?, "data"))
                .ok_or("a sparse matrix without data")?;
            let stored = size_of(heap, values)?;
            if stored != (classes - 1).saturating_mul(vectors) {
                return Ok(Err(format!("_dual_coef_ holds {stored} stored coefficients")));
            }
        }
        for (name, optional) in [("_intercept_", false), ("_probA", true), ("_probB", true)] {
            let Some(value) = field(name) else {
                continue;
            };
            let size = size_of(heap, value)?;
            if size != pairs && !(optional && size == 0) {
                return Ok(Err(format!("{name} has {size} values for {pairs} class pairs")));
            }
        }
        if callable_kernel {
            let training = match field("_BaseLibSVM__Xfit") {
                Some(training) => array_shape(heap, training)?,
                None => Vec::new(),
            };
            let [rows, _] = training[..] else {
                return Ok(Err(
                    "_BaseLibSVM__Xfit is not the two-dimensional training data a callable kernel needs"
                        .into(),
                ));
            };
            let rows = i64::try_from(rows).unwrap_or(i64::MAX);
            let support = array_of(heap, data, support)?;
            if let Some((i, v)) = first_outside(&support, usize::MAX, 0, rows)? {
                return Ok(Err(format!(
                    "support_[{i}] is {v}, outside [0, {rows}) (the training samples)"
                )));
            }
        } else if precomputed {
            let rows = field("shape_fit_")
                .map(|v| match v {
                    Val::Tuple(_) => Ok(heap.tuple(v).and_then(|t| t.first().copied())),
                    _ => Err("shape_fit_ that is not a tuple".to_owned()),
                })
                .transpose()?
                .flatten();
            let Some(rows) = rows else {
                return Ok(Err("shape_fit_ is missing for a precomputed kernel".into()));
            };
            let rows = int_value(heap, data, rows).ok_or("shape_fit_ that is not ints")?;
            let support = array_of(heap, data, support)?;
            if let Some((i, v)) = first_outside(&support, usize::MAX, 0, rows)? {
                return Ok(Err(format!(
                    "support_[{i}] is {v}, outside [0, {rows}) (the training samples)"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// The items of a list, tuple or one-dimensional array (object or integer) the guard indexes
/// per feature; an error when not read here.
fn per_feature(heap: &Heap, data: &[u8], value: Val, what: &str) -> Result<Vec<Val>, String> {
    if let Some(items) = heap.list(value, AS_HELD).or_else(|| heap.tuple(value)) {
        return Ok(items.to_vec());
    }
    if let Ok((_, items)) = object_items(heap, value) {
        return Ok(items.to_vec());
    }
    let array = array_of(heap, data, value).map_err(|why| format!("{what}: {why}"))?;
    let items = int_items(&array)?.map(Val::Int).collect();
    Ok(items)
}

/// How many values `len()` gives for a feature's categories: an array's rows or a list's items.
fn categories_length(heap: &Heap, value: Val) -> Result<Result<u64, String>, String> {
    if let Some(items) = heap.list(value, AS_HELD).or_else(|| heap.tuple(value)) {
        return Ok(Ok(items.len() as u64));
    }
    Ok(match shape_if_array(heap, value)? {
        Some(shape) => shape
            .first()
            .copied()
            .ok_or_else(|| "a zero-dimensional array".into()),
        None => Err("not a sequence".into()),
    })
}

/// OneHotEncoder: every code `transform` can make for feature i (its categories, mapped to the
/// infrequent group and shifted past the dropped one, as scikit-learn does) lies in
/// [0, `_n_features_outs[i]`). The codes plus the running sum of the counts become the columns
/// of a sparse matrix unchecked; a dense output writes at them. Each feature's categories sorted
/// as `fit` sorts them (`categories.rs`): a value's code is its index in them only then.
pub(super) fn check_one_hot_encoder(heap: &Heap, data: &[u8], encoder: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(encoder, "an estimator")? else {
            return Ok(Ok(()));
        };
        let field = |name: &str| heap.get(state, name).filter(|v| *v != Val::None);
        let (Some(outputs), Some(categories)) = (field("_n_features_outs"), field("categories_")) else {
            return Ok(Ok(())); // not fitted as scikit-learn reads it: transform raises first
        };
        // A list of non-negative ints (a bool, a NumPy integer or an array is refused).
        let outputs = match outputs {
            Val::List(_) => heap
                .list(outputs, AS_HELD)
                .ok_or("_n_features_outs changed in a way not followed")?,
            _ => return Ok(Err("_n_features_outs is not a list of counts".into())),
        };
        let mut counts = Vec::with_capacity(outputs.len());
        for count in outputs {
            match count {
                Val::Int(n) if *n >= 0 => counts.push(*n),
                Val::Other => return Err("a count not read here".into()),
                _ => return Ok(Err("_n_features_outs is not a list of counts".into())),
            }
        }
        let categories = per_feature(heap, data, categories, "categories_")?;
        if counts.len() != categories.len() {
            return Ok(Err(format!(
                "_n_features_outs has {} counts for {} features",
                counts.len(),
                categories.len()
            )));
        }
        let drops = field("_drop_idx_after_grouping")
            .map(|d| per_feature(heap, data, d, "_drop_idx_after_grouping"))
            .transpose()?;
        let infrequent = match field("_infrequent_enabled") {
            None => false,
            Some(Val::Bool(enabled)) => enabled,
            Some(Val::Int(enabled)) => enabled != 0,
            Some(_) => return Err("_infrequent_enabled that is not a bool".into()),
        };
        let mappings = match field("_default_to_infrequent_mappings") {
            Some(mappings) if infrequent => Some(per_feature(
                heap,
                data,
                mappings,
                "_default_to_infrequent_mappings",
            )?),
            _ => None,
        };
        // Categories whose order is not read here still have their codes checked.
        let mut unread = None;
        for (feature, (&values, &count)) in categories.iter().zip(&counts).enumerate() {
            match sorted_categories(heap, data, values) {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Err(format!(
                        "categories_[{feature}] is not strictly increasing with missing values last (as fit sorts them)"
                    )))
                }
                Err(why) => {
                    unread.get_or_insert(format!("categories_[{feature}]: {why}"));
                }
            }
            let values = match categories_length(heap, values)? {
                Ok(values) => values,
                Err(why) => return Ok(Err(format!("categories_[{feature}] is {why}"))),
            };
            let mapping = mappings
                .as_ref()
                .and_then(|m| m.get(feature).copied())
                .filter(|m| *m != Val::None);
            let mapped;
            let codes: Box<dyn Iterator<Item = i64>> = match mapping {
                None => Box::new((0..values).map(|c| i64::try_from(c).unwrap_or(i64::MAX))),
                Some(mapping) => {
                    mapped = array_of(heap, data, mapping)?;
                    if mapped.shape.len() != 1 {
                        return Err(format!("a mapping of shape {:?}", mapped.shape));
                    }
                    if mapped.size() > 0 && values > 0 && !matches!(kind(&mapped), Some('i' | 'u')) {
                        return Ok(Err(format!(
                            "_default_to_infrequent_mappings[{feature}] is not integers"
                        )));
                    }
                    Box::new(int_items(&mapped)?.take(usize::try_from(values).unwrap_or(usize::MAX)))
                }
            };
            let drop = match drops.as_ref().and_then(|d| d.get(feature).copied()) {
                None | Some(Val::None) => None,
                Some(drop) => {
                    Some(int_value(heap, data, drop).ok_or("a dropped category that is not an int")?)
                }
            };
            // As scikit-learn shifts them: the dropped code removed, the codes above it one down.
            let shifted = codes.filter_map(|code| match drop {
                Some(drop) if code == drop => None,
                Some(drop) if code > drop => Some(code - 1),
                _ => Some(code),
            });
            for (item, code) in shifted.enumerate() {
                if !(0..count).contains(&code) {
                    return Ok(Err(format!(
                        "_n_features_outs[{feature}]: item {item} is {code}, outside [0, {count}) (its output columns)"
                    )));
                }
            }
        }
        unread.map_or(Ok(Ok(())), Err)
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
        // A KD/ball tree's neighbours index the training data: built on it.
        if let Some(tree) = heap.get(state, "_tree").and_then(|t| heap.object(t)) {
            if let Some(&built_on) = tree.state.and_then(|s| heap.tuple(s)).and_then(|s| s.first()) {
                let tree_shape = array_shape(heap, built_on)?;
                if tree_shape != shape {
                    return Ok(Err(format!(
                        "_tree.data has shape {tree_shape:?} for training data of shape {shape:?}"
                    )));
                }
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests;
