//! scikit-learn estimators inside a pickle: a decision tree estimator's `Tree` must be built for
//! as many features as the estimator checks its input for (`predict` checks `X`'s width against
//! `n_features_in_`, then the `Tree` reads `X[i, feature]` for features below its own
//! `n_features`, the first argument of its constructor), and a forest's estimators' trees for
//! the forest's input width (it hands them `X` unchecked). Ensembles whose estimators sit in an
//! array (gradient boosting) or that pick columns per estimator (bagging) are left to the guard.
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
/// of a sparse matrix unchecked; a dense output writes at them.
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
        for (feature, (&values, &count)) in categories.iter().zip(&counts).enumerate() {
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

    use crate::native_state::pickled::tests::{
        broken, instance, int, int_array, none, object_array, outcome_for, pickle, sequence, text, zeros,
        Value,
    };

    const SVM: &str = "sklearn.svm._classes";

    /// Fields of a test estimator replaced (None: left out) or added.
    type Changes<'a> = Vec<(&'a str, Option<Value<'a>>)>;

    /// A fitted SVM of `class` with `fields` (3 classes, 5 support vectors of 2 features), each
    /// replaced by or added from `changes` (None: left out).
    fn svm<'a>(class: &'a str, changes: Changes<'a>) -> Vec<u8> {
        let mut fields: Vec<(&str, Option<Value<'_>>)> = vec![
            ("kernel", Some(text("rbf"))),
            ("support_", Some(int_array(&[0, 1, 2, 3, 4], "i4"))),
            ("support_vectors_", Some(zeros(&[5, 2]))),
            ("_n_support", Some(int_array(&[2, 2, 1], "i4"))),
            ("_dual_coef_", Some(zeros(&[2, 5]))),
            ("_intercept_", Some(zeros(&[3]))),
            ("_probA", Some(zeros(&[0]))),
            ("_probB", Some(zeros(&[0]))),
        ];
        for (key, value) in changes {
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(field) => field.1 = value,
                None => fields.push((key, value)),
            }
        }
        let fields = fields.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
        pickle(&instance(SVM, class, fields))
    }

    /// A CSR matrix of `shape` holding `stored` values (its indices are not needed here).
    fn csr<'a>(shape: &'a [i32], stored: &'a [i32]) -> Value<'a> {
        instance(
            "scipy.sparse._csr",
            "csr_matrix",
            vec![
                ("_shape", sequence(shape.iter().map(|&d| int(d)).collect(), false)),
                ("data", zeros(stored)),
            ],
        )
    }

    #[test]
    fn an_svms_counts_agree_with_its_vectors() {
        for class in ["SVC", "NuSVC"] {
            assert_eq!(outcome_for(&svm(class, vec![]), class), PickledOutcome::Intact);
        }
        // Unfitted: no support_.
        assert_eq!(
            outcome_for(&svm("SVC", vec![("support_", None)]), "SVC"),
            PickledOutcome::Intact
        );
        // Probability estimates: one per class pair.
        let probability = svm(
            "SVC",
            vec![("_probA", Some(zeros(&[3]))), ("_probB", Some(zeros(&[3])))],
        );
        assert_eq!(outcome_for(&probability, "SVC"), PickledOutcome::Intact);
        let cases: Vec<(Changes<'_>, &str)> = vec![
            (
                vec![("support_", Some(int_array(&[0; 2000], "i4")))],
                "support_ has 2000 indices for 5 support vectors",
            ),
            (
                vec![("_n_support", Some(int_array(&[7, -3, 1], "i4")))],
                "_n_support is [7, -3, 1] for 5 support vectors",
            ),
            (
                vec![("_n_support", Some(int_array(&[2, 2, 2], "i4")))],
                "_n_support is [2, 2, 2]",
            ),
            (
                vec![("_n_support", Some(int_array(&[5], "i4")))],
                "_n_support has 1 classes",
            ),
            (
                vec![("_n_support", Some(zeros(&[3])))],
                "not one-dimensional integer arrays",
            ),
            (
                vec![("_dual_coef_", Some(zeros(&[1, 5])))],
                "_dual_coef_ has shape [1, 5] for 3 classes and 5 vectors",
            ),
            (vec![("_dual_coef_", None)], "_dual_coef_ has shape []"),
            (
                vec![("_intercept_", Some(zeros(&[1])))],
                "_intercept_ has 1 values for 3 class pairs",
            ),
            (
                vec![("_probA", Some(zeros(&[2])))],
                "_probA has 2 values for 3 class pairs",
            ),
        ];
        for (changes, expected) in cases {
            let why = broken(outcome_for(&svm("SVC", changes), "SVC"));
            assert!(why.contains(expected), "{expected}: {why}");
        }
    }

    #[test]
    fn regression_and_one_class_svms_have_two_count_entries() {
        for class in ["SVR", "NuSVR", "OneClassSVM"] {
            let two = svm(
                class,
                vec![
                    ("_n_support", Some(int_array(&[0, 0], "i4"))),
                    ("_dual_coef_", Some(zeros(&[1, 5]))),
                    ("_intercept_", Some(zeros(&[1]))),
                ],
            );
            assert_eq!(outcome_for(&two, class), PickledOutcome::Intact, "{class}");
            let why = broken(outcome_for(&svm(class, vec![]), class));
            assert!(
                why.contains("3 entries for a regression or one-class model"),
                "{why}"
            );
        }
        // The instance dict's _impl shadows the class's.
        let shadowed = svm("SVR", vec![("_impl", Some(text("c_svc")))]);
        assert_eq!(outcome_for(&shadowed, "SVR"), PickledOutcome::Intact);
    }

    #[test]
    fn a_sparse_svm_is_read_through_its_matrices() {
        let sparse = |rows: i32, stored: &'static [i32]| {
            svm(
                "SVC",
                vec![
                    ("support_vectors_", Some(csr(vec![rows, 2].leak(), &[10]))),
                    ("_dual_coef_", Some(csr(&[2, 5], stored))),
                ],
            )
        };
        assert_eq!(outcome_for(&sparse(5, &[10]), "SVC"), PickledOutcome::Intact);
        let why = broken(outcome_for(&sparse(7, &[10]), "SVC"));
        assert!(
            why.contains("support_ has 5 indices for 7 support vectors"),
            "{why}"
        );
        let why = broken(outcome_for(&sparse(5, &[3]), "SVC"));
        assert!(why.contains("_dual_coef_ holds 3 stored coefficients"), "{why}");
    }

    #[test]
    fn a_precomputed_svms_support_lies_inside_its_training_samples() {
        let precomputed = |support: &'static [i64], fit: Option<Value<'static>>| {
            svm(
                "SVC",
                vec![
                    ("kernel", Some(text("precomputed"))),
                    ("support_", Some(int_array(support, "i4"))),
                    ("support_vectors_", Some(zeros(&[0, 0]))),
                    ("shape_fit_", fit),
                ],
            )
        };
        let samples = || Some(sequence(vec![int(10), int(10)], false));
        assert_eq!(
            outcome_for(&precomputed(&[0, 1, 2, 3, 9], samples()), "SVC"),
            PickledOutcome::Intact
        );
        let why = broken(outcome_for(&precomputed(&[0, 1, 2, 3, 10], samples()), "SVC"));
        assert!(why.contains("support_[4] is 10, outside [0, 10)"), "{why}");
        let why = broken(outcome_for(&precomputed(&[0, 1, 2, 3, 4], None), "SVC"));
        assert!(why.contains("shape_fit_ is missing"), "{why}");
    }

    /// A OneHotEncoder of two features with `fields`.
    fn encoder(fields: Vec<(&str, Value<'_>)>) -> Vec<u8> {
        pickle(&instance(
            "sklearn.preprocessing._encoders",
            "OneHotEncoder",
            fields,
        ))
    }

    fn counts(counts: &[i32]) -> Value<'_> {
        sequence(counts.iter().map(|&n| int(n)).collect(), true)
    }

    /// `categories_`: two features of 4 values each (the second of `second`).
    fn categories(second: i32) -> Value<'static> {
        sequence(
            vec![zeros(&[4]), Box::new(move |asm| zeros(&[second])(asm))],
            true,
        )
    }

    #[test]
    fn a_one_hot_encoders_codes_lie_below_its_output_counts() {
        let plain = |second: i32, outs: &'static [i32]| {
            encoder(vec![
                ("categories_", categories(second)),
                ("_n_features_outs", counts(outs)),
            ])
        };
        assert_eq!(
            outcome_for(&plain(4, &[4, 4]), "OneHotEncoder"),
            PickledOutcome::Intact
        );
        // Unfitted.
        assert_eq!(
            outcome_for(&encoder(vec![]), "OneHotEncoder"),
            PickledOutcome::Intact
        );
        let why = broken(outcome_for(&plain(54, &[4, 4]), "OneHotEncoder"));
        assert!(
            why.contains("_n_features_outs[1]: item 4 is 4, outside [0, 4)"),
            "{why}"
        );
        let why = broken(outcome_for(&plain(4, &[4]), "OneHotEncoder"));
        assert!(why.contains("1 counts for 2 features"), "{why}");
        let why = broken(outcome_for(&plain(4, &[4, -1]), "OneHotEncoder"));
        assert!(why.contains("not a list of counts"), "{why}");
        let as_array = encoder(vec![
            ("categories_", categories(4)),
            ("_n_features_outs", int_array(&[4, 4], "i8")),
        ]);
        let why = broken(outcome_for(&as_array, "OneHotEncoder"));
        assert!(why.contains("not a list of counts"), "{why}");
    }

    #[test]
    fn a_one_hot_encoders_codes_are_shifted_past_the_dropped_one() {
        let dropped = |outs: &'static [i32]| {
            encoder(vec![
                ("categories_", categories(4)),
                ("_drop_idx_after_grouping", object_array(vec![int(0), none()])),
                ("_n_features_outs", counts(outs)),
            ])
        };
        assert_eq!(
            outcome_for(&dropped(&[3, 4]), "OneHotEncoder"),
            PickledOutcome::Intact
        );
        let why = broken(outcome_for(&dropped(&[3, 3]), "OneHotEncoder"));
        assert!(why.contains("_n_features_outs[1]: item 3 is 3"), "{why}");
        // Every feature dropping one: an integer array.
        let all = encoder(vec![
            ("categories_", categories(4)),
            ("_drop_idx_after_grouping", int_array(&[3, 1], "i8")),
            ("_n_features_outs", counts(&[3, 3])),
        ]);
        assert_eq!(outcome_for(&all, "OneHotEncoder"), PickledOutcome::Intact);
    }

    #[test]
    fn a_one_hot_encoders_infrequent_categories_map_into_its_outputs() {
        let mapped = |enabled: bool, mapping: Value<'static>, outs: &'static [i32]| {
            encoder(vec![
                ("categories_", categories(4)),
                (
                    "_infrequent_enabled",
                    Box::new(move |asm| asm.op(if enabled { 0x88 } else { 0x89 })),
                ),
                (
                    "_default_to_infrequent_mappings",
                    sequence(vec![none(), mapping], true),
                ),
                ("_n_features_outs", counts(outs)),
            ])
        };
        let grouped = || int_array(&[0, 0, 1, 2], "i8");
        assert_eq!(
            outcome_for(&mapped(true, grouped(), &[4, 3]), "OneHotEncoder"),
            PickledOutcome::Intact
        );
        let why = broken(outcome_for(
            &mapped(true, int_array(&[0, 0, 1, 5], "i8"), &[4, 3]),
            "OneHotEncoder",
        ));
        assert!(why.contains("item 3 is 5, outside [0, 3)"), "{why}");
        let why = broken(outcome_for(&mapped(true, zeros(&[4]), &[4, 3]), "OneHotEncoder"));
        assert!(
            why.contains("_default_to_infrequent_mappings[1] is not integers"),
            "{why}"
        );
        // Not enabled: the mappings are not used, the categories' own codes are.
        let why = broken(outcome_for(&mapped(false, grouped(), &[4, 3]), "OneHotEncoder"));
        assert!(why.contains("item 3 is 3, outside [0, 3)"), "{why}");
    }

    fn birch(centers: &[i32], norms: &[i32]) -> Vec<u8> {
        pickle(&instance(
            "sklearn.cluster._birch",
            "Birch",
            vec![
                ("n_features_in_", int(2)),
                ("subcluster_centers_", zeros(centers)),
                ("_subcluster_norms", zeros(norms)),
            ],
        ))
    }

    #[test]
    fn birch_keeps_one_norm_per_center_as_wide_as_its_input() {
        assert_eq!(
            outcome_for(&birch(&[3, 2], &[3]), "Birch"),
            PickledOutcome::Intact
        );
        let why = broken(outcome_for(&birch(&[3, 2], &[1]), "Birch"));
        assert!(
            why.contains("_subcluster_norms has shape [1] for 3 centers"),
            "{why}"
        );
        let why = broken(outcome_for(&birch(&[3, 5], &[3]), "Birch"));
        assert!(
            why.contains("subcluster_centers_ has shape [3, 5] for 2 features"),
            "{why}"
        );
        let why = broken(outcome_for(&birch(&[6], &[6]), "Birch"));
        assert!(why.contains("subcluster_centers_ has shape [6]"), "{why}");
    }

    const BISECTING: (&str, &str) = ("sklearn.cluster._bisect_k_means", "_BisectingTree");

    /// A bisecting tree node with a center of shape `center` and children.
    fn node<'a>(center: &'a [i32], left: Value<'a>, right: Value<'a>) -> Value<'a> {
        instance(
            BISECTING.0,
            BISECTING.1,
            vec![("center", zeros(center)), ("left", left), ("right", right)],
        )
    }

    fn bisecting(tree: Value<'_>) -> Vec<u8> {
        pickle(&instance(
            "sklearn.cluster._bisect_k_means",
            "BisectingKMeans",
            vec![
                ("n_features_in_", int(3)),
                ("cluster_centers_", zeros(&[2, 3])),
                ("_bisecting_tree", tree),
            ],
        ))
    }

    #[test]
    fn a_bisecting_trees_centers_are_as_wide_as_the_input() {
        // Dense centers are rows of 3; fitted on sparse data, np.matrix rows of (1, 3).
        let tree =
            |left: &'static [i32]| node(&[3], node(left, none(), none()), node(&[1, 3], none(), none()));
        assert_eq!(
            outcome_for(&bisecting(tree(&[3])), "BisectingKMeans"),
            PickledOutcome::Intact
        );
        for (center, shape) in [(&[1][..], "[1]"), (&[3, 1], "[3, 1]"), (&[], "[]")] {
            let why = broken(outcome_for(&bisecting(tree(center)), "BisectingKMeans"));
            assert!(
                why.contains(&format!("a node center of shape {shape} for 3 features")),
                "{why}"
            );
        }
        // The same node as both children.
        let shared = node(
            &[3],
            Box::new(|asm| node(&[3], none(), none())(asm).put(7)),
            Box::new(|asm| asm.get(7)),
        );
        let why = broken(outcome_for(&bisecting(shared), "BisectingKMeans"));
        assert!(why.contains("a node reached twice"), "{why}");
    }
}
