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
use super::sklearn::{
    check_birch, check_kmeans, check_libsvm, check_neighbors, check_one_hot_encoder, check_tree_ensemble,
    check_tree_estimator, check_vocabulary,
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
/// `__pyx_unpickle_NDArrayBacked` and `__pyx_unpickle_IntervalMixin` (extension arrays) and
/// `_new_Index` (indexes).
pub(super) fn class_of<'h>(heap: &'h Heap, object: &Object) -> Option<(&'h str, &'h str)> {
    let callee = heap.global(object.callee)?;
    match callee {
        ("copyreg" | "copy_reg", "_reconstructor" | "__newobj__" | "__newobj_ex__")
        | ("sklearn.neighbors._kd_tree" | "sklearn.neighbors._ball_tree", "newObj")
        | ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")
        | ("pandas._libs.interval", "__pyx_unpickle_IntervalMixin")
        | ("pandas.core.indexes.base", "_new_Index") => heap.global(*heap.tuple(object.args)?.first()?),
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
pub(super) mod tests {
    use super::*;
    use crate::evaluate::tests::{evaluate, Asm};

    /// `(left_child, right_child, feature)` of each node.
    type Nodes = [(i64, i64, i64)];

    /// A field dtype: numpy.dtype("i8") with its state (byte order `<`).
    fn int64(asm: Asm) -> Asm {
        plain(asm, "i8")
    }

    /// `numpy.dtype(descr, False, True)`, as numpy pickles a dtype (its state follows).
    fn dtype_call(asm: Asm, descr: &str) -> Asm {
        asm.global("numpy", "dtype")
            .text(descr)
            .op(0x89)
            .op(0x88)
            .op(0x87)
            .op(b'R')
    }

    /// numpy.dtype(descr) of a plain little-endian type, with its state.
    fn plain(asm: Asm, descr: &str) -> Asm {
        dtype_call(asm, descr)
            .op(b'(')
            .int(3)
            .text("<")
            .op(b'N')
            .op(b'N')
            .op(b'N')
            .int(-1)
            .int(-1)
            .int(0)
            .op(b't')
            .op(b'b')
    }

    /// `Tree(n_features=2, ...)` whose state holds `nodes` (records of left_child, right_child,
    /// feature as int64) read through a `_reconstruct` array and `max_depth` 1; `field_dtype`
    /// writes each field's dtype.
    fn tree_pickle(nodes: &Nodes, field_dtype: &dyn Fn(Asm) -> Asm) -> Vec<u8> {
        tree_pickle_with(nodes, field_dtype, &|asm: Asm| asm.int(1))
    }

    /// [`tree_pickle`] with the `max_depth` value `max_depth` writes.
    fn tree_pickle_with(
        nodes: &Nodes,
        field_dtype: &dyn Fn(Asm) -> Asm,
        max_depth: &dyn Fn(Asm) -> Asm,
    ) -> Vec<u8> {
        let records: Vec<u8> = nodes
            .iter()
            .flat_map(|&(l, r, f)| [l, r, f].into_iter().flat_map(i64::to_le_bytes))
            .collect();
        // The record dtype, memoized as 9.
        let record = |asm: Asm| {
            let mut asm = dtype_call(asm, "V24")
                .put(9)
                .op(b'(')
                .int(3)
                .text("|")
                .op(b'N')
                .text("left_child")
                .text("right_child")
                .text("feature")
                .op(0x87)
                .op(b'}');
            for (name, offset) in [("left_child", 0), ("right_child", 8), ("feature", 16)] {
                asm = field_dtype(asm.text(name)).int(offset).op(0x86).op(b's');
            }
            asm.int(24).int(1).int(16).op(b't').op(b'b')
        };
        let count = i32::try_from(nodes.len()).unwrap();
        let asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.tree._tree", "Tree")
            .int(2)
            .op(0x85)
            .op(b'R')
            .op(b'}')
            .text("node_count")
            .int(count)
            .op(b's');
        let asm = max_depth(asm.text("max_depth")).op(b's').text("nodes");
        array(asm, &[count], &record, &records)
            .op(b's')
            .op(b'b')
            .op(b'.')
            .0
    }

    fn outcome_of(data: &[u8]) -> Vec<PickledOutcome> {
        let evaluator = evaluate(data, 1 << 20);
        check_pickled(&evaluator.heap, data)
            .into_iter()
            .map(|s| s.outcome)
            .collect()
    }

    #[test]
    fn trees_inside_a_pickle_are_checked() {
        let good: &Nodes = &[(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        assert_eq!(outcome_of(&tree_pickle(good, &int64)), [PickledOutcome::Intact]);
        let broken: &Nodes = &[(1, 9, 0), (-1, -1, -2), (-1, -1, -2)];
        let [PickledOutcome::Broken(why)] = &outcome_of(&tree_pickle(broken, &int64))[..] else {
            panic!("not broken")
        };
        assert!(why.contains("nodes[0].right_child is 9"), "{why}");
        let wide_feature: &Nodes = &[(1, 2, 5), (-1, -1, -2), (-1, -1, -2)];
        assert!(matches!(
            &outcome_of(&tree_pickle(wide_feature, &int64))[..],
            [PickledOutcome::Broken(_)]
        ));
    }

    /// A LONG1 int (the opcode a pickle writes an int beyond 32 bits with).
    fn long(asm: Asm, value: i64) -> Asm {
        value.to_le_bytes().into_iter().fold(asm.op(0x8a).op(8), Asm::op)
    }

    #[test]
    fn a_tree_max_depth_below_the_depth_of_its_nodes_is_broken() {
        // Depth 2: the root splits into a leaf and node 2, which splits into two leaves.
        let deep: &Nodes = &[(1, 2, 0), (-1, -1, -2), (3, 4, 1), (-1, -1, -2), (-1, -1, -2)];
        let with = |max_depth: &dyn Fn(Asm) -> Asm| outcome_of(&tree_pickle_with(deep, &int64, max_depth));
        assert_eq!(with(&|asm: Asm| asm.int(2)), [PickledOutcome::Intact]);
        assert_eq!(with(&|asm: Asm| asm.int(5)), [PickledOutcome::Intact]);
        let broken = |max_depth: &dyn Fn(Asm) -> Asm| match &with(max_depth)[..] {
            [PickledOutcome::Broken(why)] => why.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            broken(&|asm: Asm| asm.int(0)),
            "max_depth 0 is below the depth 2 of the nodes; decision_path writes past its buffer"
        );
        assert!(broken(&|asm: Asm| asm.int(-1)).starts_with("max_depth -1 is below the depth 2"));
        assert!(broken(&|asm: Asm| asm.int(6)).starts_with("max_depth 6 is above node_count 5"));
        let huge = broken(&|asm: Asm| long(asm, i64::MAX));
        assert!(
            huge.starts_with(&format!("max_depth {} is above node_count 5", i64::MAX)),
            "{huge}"
        );
        // A NumPy integer scalar, read as the int it holds.
        let scalar = |value: i64| {
            move |asm: Asm| {
                plain(asm.global("numpy.core.multiarray", "scalar"), "i8")
                    .bytes(&value.to_le_bytes())
                    .op(0x86)
                    .op(b'R')
            }
        };
        assert_eq!(with(&scalar(2)), [PickledOutcome::Intact]);
        assert!(broken(&scalar(1)).starts_with("max_depth 1 is below the depth 2"));
        // Not an int: left to the guard.
        let [PickledOutcome::Unchecked(why)] = &with(&|asm: Asm| asm.text("2"))[..] else {
            panic!("checked")
        };
        assert!(why.contains("max_depth"), "{why}");
    }

    #[test]
    fn a_dtype_that_holds_itself_is_read_once() {
        // Each field's dtype is the record dtype itself (memo 9): no int64 fields, no loop.
        let good: &Nodes = &[(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        let data = tree_pickle(good, &|asm: Asm| asm.get(9));
        let [PickledOutcome::Unchecked(why)] = &outcome_of(&data)[..] else {
            panic!("checked")
        };
        assert!(why.contains("int64 left_child"), "{why}");
    }

    /// `_reconstruct(ndarray, (0,), b"b")` built with `shape`, the dtype `dtype` writes and
    /// `data`.
    fn array(asm: Asm, shape: &[i32], dtype: &dyn Fn(Asm) -> Asm, data: &[u8]) -> Asm {
        let mut asm = asm
            .global("numpy.core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .int(0)
            .op(0x85)
            .text("b")
            .op(0x87)
            .op(b'R')
            .op(b'(')
            .int(1)
            .op(b'(');
        for &d in shape {
            asm = asm.int(d);
        }
        dtype(asm.op(b't')).op(0x89).bytes(data).op(b't').op(b'b')
    }

    /// A value a test pickle builds: what it appends to the assembler.
    pub(in crate::native_state) type Value<'a> = Box<dyn Fn(Asm) -> Asm + 'a>;

    /// A one-dimensional integer array (`descr`: `i4` or `i8`) of `values`.
    pub(in crate::native_state) fn int_array<'a>(values: &'a [i64], descr: &'a str) -> Value<'a> {
        Box::new(move |asm| {
            let bytes: Vec<u8> = match descr {
                "i4" => values
                    .iter()
                    .flat_map(|&v| i32::try_from(v).unwrap().to_le_bytes())
                    .collect(),
                _ => ints(values),
            };
            let count = i32::try_from(values.len()).unwrap();
            array(asm, &[count], &|a| plain(a, descr), &bytes)
        })
    }

    /// A float64 array of `values` in the shape `shape`.
    pub(in crate::native_state) fn floats<'a>(shape: &'a [i32], values: &'a [f64]) -> Value<'a> {
        Box::new(move |asm| {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            array(asm, shape, &|a| plain(a, "f8"), &bytes)
        })
    }

    /// A float64 array of zeros in the shape `shape`.
    pub(in crate::native_state) fn zeros(shape: &[i32]) -> Value<'_> {
        Box::new(move |asm| {
            let size: usize = shape.iter().map(|&d| usize::try_from(d).unwrap()).product();
            array(asm, shape, &|a| plain(a, "f8"), &vec![0; 8 * size])
        })
    }

    /// `numpy.dtype(descr)` of a plain little-endian type.
    pub(in crate::native_state) fn dtype(descr: &str) -> Value<'_> {
        Box::new(move |asm| plain(asm, descr))
    }

    /// An int.
    pub(in crate::native_state) fn int<'a>(n: i32) -> Value<'a> {
        Box::new(move |asm| asm.int(n))
    }

    /// A str.
    pub(in crate::native_state) fn text(value: &str) -> Value<'_> {
        Box::new(move |asm| asm.text(value))
    }

    /// None.
    pub(in crate::native_state) fn none<'a>() -> Value<'a> {
        Box::new(|asm| asm.op(b'N'))
    }

    /// A list (`list: true`) or tuple of `items`.
    pub(in crate::native_state) fn sequence(items: Vec<Value<'_>>, list: bool) -> Value<'_> {
        Box::new(move |asm| {
            let asm = if list { asm.op(b']').op(b'(') } else { asm.op(b'(') };
            let asm = items.iter().fold(asm, |asm, item| item(asm));
            asm.op(if list { b'e' } else { b't' })
        })
    }

    /// A one-dimensional object array (`_reconstruct` with dtype `O8`) of `items`, as numpy
    /// pickles it: the items as a list in its state.
    pub(in crate::native_state) fn object_array(items: Vec<Value<'_>>) -> Value<'_> {
        Box::new(move |asm| {
            let count = i32::try_from(items.len()).unwrap();
            let asm = asm
                .global("numpy.core.multiarray", "_reconstruct")
                .global("numpy", "ndarray")
                .int(0)
                .op(0x85)
                .text("b")
                .op(0x87)
                .op(b'R')
                .op(b'(')
                .int(1)
                .int(count)
                .op(0x85);
            let asm = plain(asm, "O8").op(0x89).op(b']').op(b'(');
            let asm = items.iter().fold(asm, |asm, item| item(asm));
            asm.op(b'e').op(b't').op(b'b')
        })
    }

    /// An instance of `module.name` (NEWOBJ) built with a dict of `fields`.
    pub(in crate::native_state) fn instance<'a>(
        module: &'a str,
        name: &'a str,
        fields: Vec<(&'a str, Value<'a>)>,
    ) -> Value<'a> {
        Box::new(move |asm| {
            let asm = asm.global(module, name).op(b')').op(0x81).op(b'}');
            let asm = fields
                .iter()
                .fold(asm, |asm, (key, value)| value(asm.text(key)).op(b's'));
            asm.op(b'b')
        })
    }

    /// A protocol 2 pickle of `value`.
    pub(in crate::native_state) fn pickle(value: &Value<'_>) -> Vec<u8> {
        value(Asm::default().op(0x80).op(2)).op(b'.').0
    }

    /// The outcome for the one instance of the class `name` in `data`.
    pub(in crate::native_state) fn outcome_for(data: &[u8], name: &str) -> PickledOutcome {
        let evaluator = evaluate(data, 1 << 20);
        let found: Vec<_> = check_pickled(&evaluator.heap, data)
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        let [state] = &found[..] else {
            panic!("{} instances of {name}", found.len())
        };
        state.outcome.clone()
    }

    /// The reason an outcome is broken (a panic when it is not).
    pub(in crate::native_state) fn broken(outcome: PickledOutcome) -> String {
        match outcome {
            PickledOutcome::Broken(why) => why,
            other => panic!("not broken: {other:?}"),
        }
    }

    /// node_data's record dtype: idx_start, idx_end, is_leaf (int64), radius (float64).
    fn node_record(asm: Asm) -> Asm {
        let mut asm = dtype_call(asm, "V32")
            .op(b'(')
            .int(3)
            .text("|")
            .op(b'N')
            .op(b'(')
            .text("idx_start")
            .text("idx_end")
            .text("is_leaf")
            .text("radius")
            .op(b't')
            .op(b'}');
        for (name, offset, descr) in [
            ("idx_start", 0, "i8"),
            ("idx_end", 8, "i8"),
            ("is_leaf", 16, "i8"),
            ("radius", 24, "f8"),
        ] {
            asm = plain(asm.text(name), descr).int(offset).op(0x86).op(b's');
        }
        asm.int(32).int(1).int(16).op(b't').op(b'b')
    }

    fn ints(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// What a KD tree's state holds after its arrays (scikit-learn's 13 items).
    struct TreeTail {
        leaf_size: i32,
        /// None: the node count of `node_data`.
        n_nodes: Option<i32>,
        sample_weights: Option<usize>,
    }

    const TAIL: TreeTail = TreeTail {
        leaf_size: 40,
        n_nodes: None,
        sample_weights: None,
    };

    /// A KDTree over 4 samples of 2 features with 3 nodes (a root and two leaves).
    fn kd_tree_pickle(idx: &[i64], nodes: &[(i64, i64, i64)], bounds_shape: &[i32]) -> Vec<u8> {
        kd_tree_pickle_with(idx, nodes, bounds_shape, TAIL)
    }

    fn kd_tree_pickle_with(
        idx: &[i64],
        nodes: &[(i64, i64, i64)],
        bounds_shape: &[i32],
        tail: TreeTail,
    ) -> Vec<u8> {
        let records: Vec<u8> = nodes
            .iter()
            .flat_map(|&(start, end, leaf)| ints(&[start, end, leaf, 0]))
            .collect();
        let bounds = vec![0u8; 8 * bounds_shape.iter().map(|&d| d as usize).product::<usize>()];
        let f8 = |asm: Asm| plain(asm, "f8");
        let i8 = |asm: Asm| plain(asm, "i8");
        let mut asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.neighbors._kd_tree", "newObj")
            .global("sklearn.neighbors._kd_tree", "KDTree")
            .op(0x85)
            .op(b'R')
            .op(b'(');
        asm = array(asm, &[4, 2], &f8, &[0; 64]);
        asm = array(asm, &[i32::try_from(idx.len()).unwrap()], &i8, &ints(idx));
        asm = array(
            asm,
            &[i32::try_from(nodes.len()).unwrap()],
            &node_record,
            &records,
        );
        asm = array(asm, bounds_shape, &f8, &bounds);
        let n_nodes = tail.n_nodes.unwrap_or(i32::try_from(nodes.len()).unwrap());
        // leaf_size, n_levels, n_nodes, n_trims, n_leaves, n_splits, n_calls, dist_metric.
        asm = asm
            .int(tail.leaf_size)
            .int(2)
            .int(n_nodes)
            .int(0)
            .int(2)
            .int(1)
            .int(0)
            .op(b'N');
        asm = match tail.sample_weights {
            Some(count) => array(asm, &[i32::try_from(count).unwrap()], &f8, &vec![0u8; 8 * count]),
            None => asm.op(b'N'),
        };
        asm.op(b't').op(b'b').op(b'.').0
    }

    #[test]
    fn kd_trees_inside_a_pickle_are_checked() {
        let nodes = [(0, 4, 0), (0, 2, 1), (2, 4, 1)];
        let good = kd_tree_pickle(&[3, 1, 0, 2], &nodes, &[2, 3, 2]);
        assert_eq!(outcome_of(&good), [PickledOutcome::Intact]);
        let cases: [(Vec<u8>, &str); 5] = [
            (
                kd_tree_pickle(&[3, 1, 4, 2], &nodes, &[2, 3, 2]),
                "idx_array[2] is 4",
            ),
            (
                kd_tree_pickle(&[3, 1, -1, 2], &nodes, &[2, 3, 2]),
                "idx_array[2] is -1",
            ),
            (
                kd_tree_pickle(&[3, 1, 0], &nodes, &[2, 3, 2]),
                "idx_array has shape [3]",
            ),
            (
                kd_tree_pickle(&[3, 1, 0, 2], &[(0, 4, 0), (0, 9, 1), (2, 4, 1)], &[2, 3, 2]),
                "node_data[1] is [0, 9)",
            ),
            (
                kd_tree_pickle(&[3, 1, 0, 2], &nodes, &[2, 2, 2]),
                "node_bounds has shape [2, 2, 2]",
            ),
        ];
        for (data, expected) in cases {
            let [PickledOutcome::Broken(why)] = &outcome_of(&data)[..] else {
                panic!("{expected}: not broken")
            };
            assert!(why.contains(expected), "{why}");
        }
        // What __setstate__ stores besides the arrays.
        let tails = [
            (
                TreeTail { leaf_size: 0, ..TAIL },
                "leaf_size is not a positive int",
            ),
            (
                TreeTail {
                    n_nodes: Some(9),
                    ..TAIL
                },
                "n_nodes is Some(9) for 3 nodes",
            ),
            (
                TreeTail {
                    sample_weights: Some(1),
                    ..TAIL
                },
                "sample_weight has shape [1] for 4 samples",
            ),
        ];
        for (tail, expected) in tails {
            let data = kd_tree_pickle_with(&[3, 1, 0, 2], &nodes, &[2, 3, 2], tail);
            let [PickledOutcome::Broken(why)] = &outcome_of(&data)[..] else {
                panic!("{expected}: not broken")
            };
            assert!(why.contains(expected), "{why}");
        }
        let weighted = kd_tree_pickle_with(
            &[3, 1, 0, 2],
            &nodes,
            &[2, 3, 2],
            TreeTail {
                sample_weights: Some(4),
                ..TAIL
            },
        );
        assert_eq!(outcome_of(&weighted), [PickledOutcome::Intact]);
        // A KD tree's bounds are two slabs.
        let one_slab = kd_tree_pickle(&[3, 1, 0, 2], &nodes, &[1, 3, 2]);
        let [PickledOutcome::Broken(why)] = &outcome_of(&one_slab)[..] else {
            panic!("one slab: not broken")
        };
        assert!(why.contains("node_bounds has shape [1, 3, 2]"), "{why}");
        // The root internal with children beyond the nodes.
        let short = kd_tree_pickle(&[3, 1, 0, 2], &[(0, 4, 0), (0, 2, 1)], &[2, 2, 2]);
        let [PickledOutcome::Broken(why)] = &outcome_of(&short)[..] else {
            panic!("not broken")
        };
        assert!(why.contains("node_data[0].is_leaf is 0"), "{why}");
    }
}
