//! The scanner's in-pickle checks: the invariants the guard checks at load time
//! ([`super::check_tree_nodes`] and the others), checked where the arrays are inside the pickle.

use crate::decoder::Decoder;
use crate::evaluate::{Evaluator, Heap, Object, Trailing, Val};

use super::arrays::{array_of, array_shape, dtype_of, first_outside, int_value, state_array, JOBLIB_WRAPPER};
use super::arrow::{check_arrow_array, RESTORE_ARRAY};
use super::interpolate::check_bspline;
use super::pandas::{
    check_block_manager, check_categorical, check_intervals, check_masked, check_multi_index,
    check_sparse_array,
};
use super::random::check_random_generator;
use super::sklearn::{
    check_birch, check_hdbscan, check_kmeans, check_libsvm, check_multilabel_binarizer, check_neighbors,
    check_one_hot_encoder, check_sgd, check_tree_ensemble, check_tree_estimator, check_vocabulary,
};
use super::sparse::{check_compressed, check_coo, check_dia, check_lil, Compressed};
use super::{
    check_predictor_nodes, check_tree_nodes, NodeLayout, PredictorLayout, PredictorShape, TreeShape,
};

/// How the scanner checks one class's instances inside a pickle.
type Check = fn(&Heap, &[u8], &Object) -> PickledOutcome;

/// The classes the scanner checks inside pickles, with their checks.
const CHECKED: &[((&str, &str), Check)] = &[
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
    (("pandas", "Categorical"), check_categorical),
    (
        ("pandas.core.arrays.categorical", "Categorical"),
        check_categorical,
    ),
    (("pandas.arrays", "IntervalArray"), check_intervals),
    (RESTORE_ARRAY, check_arrow_array),
    (("pandas.core.arrays.interval", "IntervalArray"), check_intervals),
    (
        ("pandas.core.internals.managers", "BlockManager"),
        check_block_manager,
    ),
    (
        ("pandas.core.internals.managers", "SingleBlockManager"),
        check_block_manager,
    ),
    (("scipy.sparse._csr", "csr_matrix"), csr),
    (("scipy.sparse._csr", "csr_array"), csr),
    (("scipy.sparse.csr", "csr_matrix"), csr),
    (("scipy.sparse._csc", "csc_matrix"), csc),
    (("scipy.sparse._csc", "csc_array"), csc),
    (("scipy.sparse.csc", "csc_matrix"), csc),
    (("scipy.sparse._bsr", "bsr_matrix"), bsr),
    (("scipy.sparse._bsr", "bsr_array"), bsr),
    (("scipy.sparse.bsr", "bsr_matrix"), bsr),
    (("scipy.sparse._coo", "coo_matrix"), check_coo),
    (("scipy.sparse._coo", "coo_array"), check_coo),
    (("scipy.sparse.coo", "coo_matrix"), check_coo),
    (("scipy.sparse._dia", "dia_matrix"), check_dia),
    (("scipy.sparse._dia", "dia_array"), check_dia),
    (("scipy.sparse.dia", "dia_matrix"), check_dia),
    (("scipy.sparse._lil", "lil_matrix"), check_lil),
    (("scipy.sparse._lil", "lil_array"), check_lil),
    (("scipy.sparse.lil", "lil_matrix"), check_lil),
    (("scipy.interpolate._bsplines", "BSpline"), check_bspline),
    (
        ("sklearn.tree._classes", "DecisionTreeClassifier"),
        check_tree_estimator,
    ),
    (
        ("sklearn.tree._classes", "DecisionTreeRegressor"),
        check_tree_estimator,
    ),
    (
        ("sklearn.tree._classes", "ExtraTreeClassifier"),
        check_tree_estimator,
    ),
    (
        ("sklearn.tree._classes", "ExtraTreeRegressor"),
        check_tree_estimator,
    ),
    (
        ("sklearn.ensemble._forest", "RandomForestClassifier"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._forest", "RandomForestRegressor"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._forest", "ExtraTreesClassifier"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._forest", "ExtraTreesRegressor"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._forest", "RandomTreesEmbedding"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._gb", "GradientBoostingClassifier"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._gb", "GradientBoostingRegressor"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._bagging", "BaggingClassifier"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._bagging", "BaggingRegressor"),
        check_tree_ensemble,
    ),
    (
        ("sklearn.ensemble._iforest", "IsolationForest"),
        check_tree_ensemble,
    ),
    (("sklearn.cluster._kmeans", "KMeans"), check_kmeans),
    (("sklearn.cluster._kmeans", "MiniBatchKMeans"), check_kmeans),
    (
        ("sklearn.cluster._bisect_k_means", "BisectingKMeans"),
        check_kmeans,
    ),
    (("sklearn.cluster._birch", "Birch"), check_birch),
    (("sklearn.svm._classes", "SVC"), check_libsvm),
    (("sklearn.svm._classes", "NuSVC"), check_libsvm),
    (("sklearn.svm._classes", "SVR"), check_libsvm),
    (("sklearn.svm._classes", "NuSVR"), check_libsvm),
    (("sklearn.svm._classes", "OneClassSVM"), check_libsvm),
    (
        ("sklearn.preprocessing._encoders", "OneHotEncoder"),
        check_one_hot_encoder,
    ),
    (
        ("sklearn.neighbors._classification", "KNeighborsClassifier"),
        check_neighbors,
    ),
    (
        ("sklearn.neighbors._classification", "RadiusNeighborsClassifier"),
        check_neighbors,
    ),
    (
        ("sklearn.neighbors._graph", "KNeighborsTransformer"),
        check_neighbors,
    ),
    (
        ("sklearn.neighbors._graph", "RadiusNeighborsTransformer"),
        check_neighbors,
    ),
    (("sklearn.neighbors._lof", "LocalOutlierFactor"), check_neighbors),
    (
        ("sklearn.neighbors._regression", "KNeighborsRegressor"),
        check_neighbors,
    ),
    (
        ("sklearn.neighbors._regression", "RadiusNeighborsRegressor"),
        check_neighbors,
    ),
    (
        ("sklearn.neighbors._unsupervised", "NearestNeighbors"),
        check_neighbors,
    ),
    (
        ("sklearn.feature_extraction.text", "CountVectorizer"),
        check_vocabulary,
    ),
    (
        ("sklearn.feature_extraction.text", "TfidfVectorizer"),
        check_vocabulary,
    ),
    (
        ("sklearn.feature_extraction._dict_vectorizer", "DictVectorizer"),
        check_vocabulary,
    ),
    (
        ("sklearn.preprocessing._label", "MultiLabelBinarizer"),
        check_multilabel_binarizer,
    ),
    (
        ("sklearn.linear_model._stochastic_gradient", "SGDClassifier"),
        check_sgd,
    ),
    (
        ("sklearn.linear_model._stochastic_gradient", "SGDRegressor"),
        check_sgd,
    ),
    (
        ("sklearn.linear_model._stochastic_gradient", "SGDOneClassSVM"),
        check_sgd,
    ),
    (("sklearn.linear_model._perceptron", "Perceptron"), check_sgd),
    (
        (
            "sklearn.linear_model._passive_aggressive",
            "PassiveAggressiveClassifier",
        ),
        check_sgd,
    ),
    (
        (
            "sklearn.linear_model._passive_aggressive",
            "PassiveAggressiveRegressor",
        ),
        check_sgd,
    ),
    (("sklearn.cluster._hdbscan.hdbscan", "HDBSCAN"), check_hdbscan),
    (("numpy.random._mt19937", "MT19937"), check_random_generator),
    (("numpy.random._philox", "Philox"), check_random_generator),
    (("pandas.arrays", "SparseArray"), check_sparse_array),
    (
        ("pandas.core.arrays.sparse.array", "SparseArray"),
        check_sparse_array,
    ),
    (("pandas", "MultiIndex"), check_multi_index),
    (("pandas.core.indexes.multi", "MultiIndex"), check_multi_index),
    (("pandas.arrays", "IntegerArray"), check_masked),
    (("pandas.core.arrays.integer", "IntegerArray"), check_masked),
    (("pandas.arrays", "FloatingArray"), check_masked),
    (("pandas.core.arrays.floating", "FloatingArray"), check_masked),
    (("pandas.arrays", "BooleanArray"), check_masked),
    (("pandas.core.arrays.boolean", "BooleanArray"), check_masked),
];

fn csr(heap: &Heap, data: &[u8], matrix: &Object) -> PickledOutcome {
    check_compressed(heap, data, matrix, Compressed::Rows)
}

fn csc(heap: &Heap, data: &[u8], matrix: &Object) -> PickledOutcome {
    check_compressed(heap, data, matrix, Compressed::Columns)
}

fn bsr(heap: &Heap, data: &[u8], matrix: &Object) -> PickledOutcome {
    check_compressed(heap, data, matrix, Compressed::Blocks)
}

/// Whether the scanner checks instances of `module.name` inside pickles ([`check_pickled`]).
pub(crate) fn checked_in_pickles(module: &str, name: &str) -> bool {
    CHECKED.iter().any(|(class, _)| *class == (module, name))
}

/// What joblib reads after the BUILD of `object`: a wrapper's raw bytes, or the nested pickle of
/// an object array (dtype `O`).
fn joblib_trailing(heap: &Heap, object: &Object) -> Trailing {
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
/// Evaluates the pickles of `data` as they are read: by `joblib.load` when `joblib` (the raw
/// array bytes `skips` gives, from the analysis, are skipped between opcodes and recorded on
/// each wrapper), else by `pickle.load`.
pub(crate) fn evaluate_as_read(data: &[u8], joblib: bool, skips: &[(u64, u64)]) -> Evaluator {
    let trailing = |heap: &Heap, object: &Object| {
        if joblib {
            joblib_trailing(heap, object)
        } else {
            Trailing::Nothing
        }
    };
    let mut evaluator = Evaluator::default();
    let mut skips = skips.iter().peekable();
    let mut decoder = Decoder::from_slice(data);
    while let Ok(Some(op)) = decoder.next_op() {
        evaluator.step(&op, &trailing);
        let end = op.end();
        if evaluator.gave_up.is_some() {
            break;
        }
        // The opcodes as joblib reads them: the array bytes the analysis skipped are skipped.
        while let Some(&&(from, to)) = skips.peek() {
            if from > end {
                break;
            }
            if from == end {
                decoder
                    .source_mut()
                    .skip_to(usize::try_from(to).unwrap_or(usize::MAX));
            }
            skips.next();
        }
    }
    evaluator
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
        let max_depth = heap
            .get(state, "max_depth")
            .and_then(|v| int_value(heap, data, v))
            .ok_or("a Tree state without an int max_depth")?;
        let shape = TreeShape {
            nodes: node_count,
            n_features,
            max_depth,
        };
        Ok(
            check_tree_nodes(&nodes.bytes, layout, &[shape]).map_err(|e| match e.field {
                "max_depth" => format!("max_depth {} is {}", e.value, e.why),
                _ => format!("nodes[{}].{} is {}, {}", e.node, e.field, e.value, e.why),
            }),
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
/// reductions), of scikit-learn's `newObj` (KD and ball trees) or of pandas'
/// `__pyx_unpickle_NDArrayBacked` and `__pyx_unpickle_IntervalMixin` (extension arrays),
/// `_new_Index` (indexes) and of numpy's bit generator, `RandomState` and `Generator`
/// constructors (the bit generator's class).
pub(super) fn class_of<'h>(heap: &'h Heap, object: &Object) -> Option<(&'h str, &'h str)> {
    let callee = heap.global(object.callee)?;
    match callee {
        ("copyreg" | "copy_reg", "_reconstructor" | "__newobj__" | "__newobj_ex__")
        | ("sklearn.neighbors._kd_tree" | "sklearn.neighbors._ball_tree", "newObj")
        | ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")
        | ("pandas._libs.interval", "__pyx_unpickle_IntervalMixin")
        | ("pandas.core.indexes.base", "_new_Index") => heap.global(*heap.tuple(object.args)?.first()?),
        // A bit generator, and a RandomState or Generator over one: the bit generator's class.
        ("numpy.random._pickle", "__bit_generator_ctor" | "__randomstate_ctor" | "__generator_ctor") => {
            let first = *heap.tuple(object.args)?.first()?;
            match heap.object(first) {
                Some(inner)
                    if heap.global(inner.callee)
                        == Some(("numpy.random._pickle", "__bit_generator_ctor")) =>
                {
                    heap.global(*heap.tuple(inner.args)?.first()?)
                }
                _ => heap.global(first),
            }
        }
        _ => Some(callee),
    }
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
        if let Some((i, v)) = first_outside(&idx_array, usize::MAX, 0, samples)? {
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
        if count == 0 {
            return Ok(Err("node_data holds no nodes".into()));
        }
        // A KD tree keeps lower and upper bounds, a ball tree its centroids.
        let slabs = match class_of(heap, tree) {
            Some(("sklearn.neighbors._kd_tree", _)) => 2,
            _ => 1,
        };
        let bounds = array(3, "node_bounds")?;
        if bounds.shape != [slabs, count, features] {
            return Ok(Err(format!(
                "node_bounds has shape {:?} for {slabs} bound(s) of {count} nodes of {features} features",
                bounds.shape
            )));
        }
        // What __setstate__ stores unchecked besides the arrays: the leaf size, the node count
        // the breadth-first density estimate sizes its arrays by, the sample weights kernel
        // density reads per sample (a state without them fails to load).
        if let (Some(&leaf_size), Some(&n_nodes)) = (state.get(4), state.get(6)) {
            if !matches!(leaf_size, Val::Int(size) if size >= 1) {
                return Ok(Err("leaf_size is not a positive int".into()));
            }
            let stored = int_value(heap, data, n_nodes);
            if stored != i64::try_from(count).ok() {
                return Ok(Err(format!(
                    "n_nodes is {stored:?} for {count} nodes in node_data"
                )));
            }
        }
        if let Some(&weights) = state.get(12).filter(|w| **w != Val::None) {
            let shape = array_shape(heap, weights)?;
            if shape != [u64::try_from(samples).unwrap_or(0)] {
                return Ok(Err(format!(
                    "sample_weight has shape {shape:?} for {samples} samples"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// The state dict the single BUILD of `object` (`what`, for messages) gave it: None when it was
/// never built; not readable here when built twice or given another state.
pub(super) fn dict_state(object: &Object, what: &str) -> Result<Option<Val>, String> {
    if object.rebuilt {
        return Err(format!("{what} built twice"));
    }
    match object.state {
        None => Ok(None),
        Some(state @ Val::Dict(_)) => Ok(Some(state)),
        Some(_) => Err(format!("{what} whose state is not a dict")),
    }
}

pub(super) fn outcome(result: Result<Result<(), String>, String>) -> PickledOutcome {
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
pub(super) mod tests;
