//! The native-state checks the Python validators call: node records of scikit-learn trees and
//! HistGradientBoosting predictors, checked in Rust, and the table of validated classes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use picklefence::native_state::TreeShape;

/// Checks the node records of scikit-learn trees laid end to end in `nodes` (see
/// `picklefence::native_state::check_tree_nodes`); `node_counts`, `n_features` and `max_depths`
/// hold one item per tree (lists of ints, not a tuple per tree: a tuple per tree is an object
/// the garbage collector tracks, and 900 of them set off collections of the whole model just
/// loaded). Returns None, or `(tree, node, field, value, why)` for the first broken node (field
/// `max_depth`: the tree's, not below the depth of its nodes or above their count).
#[pyfunction]
#[pyo3(signature = (nodes, itemsize, left, right, feature, node_counts, n_features, max_depths))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_tree_nodes(
    nodes: &Bound<'_, PyBytes>,
    itemsize: usize,
    left: usize,
    right: usize,
    feature: usize,
    node_counts: Vec<u64>,
    n_features: Vec<i64>,
    max_depths: Vec<i64>,
) -> PyResult<Option<BrokenNode>> {
    if node_counts.len() != n_features.len() || node_counts.len() != max_depths.len() {
        return Err(PyValueError::new_err(
            "one feature count and one max_depth per node count",
        ));
    }
    let layout = picklefence::native_state::NodeLayout {
        itemsize,
        left,
        right,
        feature,
    };
    let trees: Vec<TreeShape> = node_counts
        .into_iter()
        .zip(n_features)
        .zip(max_depths)
        .map(|((nodes, n_features), max_depth)| TreeShape {
            nodes,
            n_features,
            max_depth,
        })
        .collect();
    Ok(
        picklefence::native_state::check_tree_nodes(nodes.as_bytes(), layout, &trees)
            .err()
            .map(broken_node),
    )
}

/// `check_trees(trees, dtype, itemsize, left, right, feature)`: the node records of scikit-learn
/// `Tree`s, each read through `__getstate__()` (`nodes`, which must be of `dtype` and hold
/// `node_count` records, and `max_depth`) and `n_features`, laid end to end and checked as by
/// [`check_tree_nodes`]. The loop over the trees is here, not in Python: the trees are cold
/// after a load, and a gradient-boosting model holds 900 of them. TypeError when a tree's nodes
/// are of another dtype (the caller then reads them field by field). Returns None, or `(tree,
/// node, field, value, why)` for the first broken node (field `nodes`: not `node_count`
/// records; `max_depth`: the tree's).
#[pyfunction]
#[pyo3(signature = (trees, dtype, itemsize, left, right, feature))]
pub(crate) fn check_trees(
    py: Python<'_>,
    trees: &Bound<'_, PyList>,
    dtype: &Bound<'_, PyAny>,
    itemsize: usize,
    left: usize,
    right: usize,
    feature: usize,
) -> PyResult<Option<BrokenNode>> {
    let mut arrays = Vec::with_capacity(trees.len());
    let mut shapes = Vec::with_capacity(trees.len());
    for (which, tree) in trees.iter().enumerate() {
        let state = tree.call_method0(intern!(py, "__getstate__"))?;
        let nodes = state.get_item(intern!(py, "nodes"))?;
        let declared: i64 = state.get_item(intern!(py, "node_count"))?.extract()?;
        let node_dtype = nodes.getattr(intern!(py, "dtype"))?;
        if !node_dtype.is(dtype) && !node_dtype.eq(dtype)? {
            return Err(PyTypeError::new_err("trees of another node dtype"));
        }
        let records = nodes.len()?;
        if i64::try_from(records).ok() != Some(declared) {
            let value = i64::try_from(records).unwrap_or(i64::MAX);
            return Ok(Some((which, 0, "nodes", value, "not node_count records".into())));
        }
        shapes.push(TreeShape {
            nodes: records as u64,
            n_features: tree.getattr(intern!(py, "n_features"))?.extract()?,
            max_depth: state.get_item(intern!(py, "max_depth"))?.extract()?,
        });
        arrays.push(nodes);
    }
    // bytes.join reads each array's buffer (BufferError for one that is not contiguous).
    let joined = PyBytes::new_bound(py, b"").call_method1(intern!(py, "join"), (arrays,))?;
    let layout = picklefence::native_state::NodeLayout {
        itemsize,
        left,
        right,
        feature,
    };
    Ok(
        picklefence::native_state::check_tree_nodes(
            joined.downcast::<PyBytes>()?.as_bytes(),
            layout,
            &shapes,
        )
        .err()
        .map(broken_node),
    )
}

/// The first broken node of a batch of trees: `(tree, node, field, value, why)`.
type BrokenNode = (usize, u64, &'static str, i64, String);

fn broken_node(e: picklefence::native_state::TreeNodeError) -> BrokenNode {
    (e.tree, e.node, e.field, e.value, e.why.into_owned())
}

/// `check_predictor_nodes(records, itemsize, fields, shapes, predictors, bitset_rows)`: the node
/// records of HistGradientBoosting `TreePredictor`s laid end to end in `records` (see
/// `picklefence::native_state::check_predictor_nodes`). `fields`: `(offset, numpy type string)`
/// of `left`, `right`, `feature_idx`, `is_leaf`, `is_categorical`, `bitset_idx`; `shapes`:
/// `(nodes, n_features)` per predictor; `bitset_rows(predictor)`: called only for a predictor
/// with a categorical split, which is then checked again with them. Returns None or
/// `(predictor, node, field, value, why)` for the first broken node. ValueError for a field
/// that is not a little-endian integer.
#[pyfunction]
pub(crate) fn check_predictor_nodes(
    records: &Bound<'_, PyBytes>,
    itemsize: usize,
    fields: [(usize, String); 6],
    shapes: Vec<(u64, i64)>,
    predictors: Vec<Bound<'_, PyAny>>,
    bitset_rows: &Bound<'_, PyAny>,
) -> PyResult<Option<BrokenNode>> {
    use picklefence::native_state::{check_predictor_nodes, IntField, PredictorLayout, PredictorShape};
    let [left, right, feature, is_leaf, is_categorical, bitset_idx] = fields.map(|(offset, code)| {
        IntField::from_numpy(offset, &code).ok_or_else(|| {
            PyValueError::new_err(format!(
                "a node field of type {code:?} is not a little-endian integer"
            ))
        })
    });
    let layout = PredictorLayout {
        itemsize,
        left: left?,
        right: right?,
        feature: feature?,
        is_leaf: is_leaf?,
        is_categorical: is_categorical?,
        bitset_idx: bitset_idx?,
    };
    if predictors.len() != shapes.len() {
        return Err(PyValueError::new_err("one shape per predictor"));
    }
    let mut shapes: Vec<PredictorShape> = shapes
        .into_iter()
        .map(|(nodes, n_features)| PredictorShape {
            nodes,
            n_features,
            // No rows until a categorical split asks for them (then they are read).
            bitset_rows: 0,
        })
        .collect();
    let records = records.as_bytes();
    // Checked from `first` on; a predictor that needs its bitset rows is checked again with them.
    let (mut first, mut offset) = (0, 0);
    loop {
        let rest = records.get(offset..).unwrap_or_default();
        let batch = shapes.get(first..).unwrap_or_default();
        let Err(e) = check_predictor_nodes(rest, layout, batch) else {
            return Ok(None);
        };
        let which = first + e.tree;
        let broken = Some((which, e.node, e.field, e.value, e.why.into_owned()));
        let (Some(shape), Some(predictor)) = (shapes.get_mut(which), predictors.get(which)) else {
            return Ok(broken);
        };
        if e.field != "bitset_idx" || shape.bitset_rows != 0 {
            return Ok(broken);
        }
        shape.bitset_rows = bitset_rows.call1((predictor,))?.extract()?;
        if shape.bitset_rows == 0 {
            return Ok(broken);
        }
        let before: u64 = shapes
            .get(first..which)
            .unwrap_or_default()
            .iter()
            .map(|s| s.nodes)
            .sum();
        offset = offset.saturating_add(
            usize::try_from(before)
                .unwrap_or(usize::MAX)
                .saturating_mul(itemsize),
        );
        first = which;
    }
}

/// `predictor_feature_counts(predictors, models)`: for each predictor, the feature count of
/// the model that holds it (`models`: `(model._predictors, n_features_in_)`, a list of lists of
/// predictors each), `2**63 - 1` for a predictor no model holds. Matched by identity in Rust:
/// a dict of `id()`s cost more than checking the predictors (it made HistGradientBoosting's
/// validation miss its 2% target).
#[pyfunction]
pub(crate) fn predictor_feature_counts(
    predictors: Vec<Bound<'_, PyAny>>,
    models: Vec<(Bound<'_, PyAny>, i64)>,
) -> PyResult<Vec<i64>> {
    let mut features = std::collections::HashMap::new();
    // Held until the lookups are done, so that no address is reused meanwhile.
    let mut held = Vec::new();
    for (stages, count) in &models {
        for stage in stages.iter()? {
            for predictor in stage?.iter()? {
                let predictor = predictor?;
                features.insert(predictor.as_ptr(), *count);
                held.push(predictor);
            }
        }
    }
    Ok(predictors
        .iter()
        .map(|p| features.get(&p.as_ptr()).copied().unwrap_or(i64::MAX))
        .collect())
}

/// Every compiled class of the policy data and what is done about its state:
/// `(module, name, "validate" | "safe", what is checked or why nothing is)`.
#[pyfunction]
pub(crate) fn native_state_classes() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    use picklefence::native_state::{entries, Verdict};
    entries()
        .iter()
        .map(|e| {
            let verdict = match e.verdict {
                Verdict::Validate => "validate",
                Verdict::Safe => "safe",
            };
            (e.module, e.name, verdict, e.reason)
        })
        .collect()
}
