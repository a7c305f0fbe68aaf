//! HDBSCAN inside a pickle: `dbscan_clustering` unions the nodes of `_single_linkage_tree_` in a
//! union-find table of 2 * rows + 1 entries unchecked (the guard's `_check_hdbscan`).

use crate::evaluate::{Heap, Object, Val};

use super::super::arrays::{array_of, shape_if_array};
use super::super::pickled::{dict_state, outcome};
use super::super::PickledOutcome;

/// The row layout of the single linkage tree (`HIERARCHY_dtype`), which the Cython code reads as
/// a packed struct: name, offset, type.
const HIERARCHY: [(&str, u64, &str); 4] = [
    ("left_node", 0, "<i8"),
    ("right_node", 8, "<i8"),
    ("value", 16, "<f8"),
    ("cluster_size", 24, "<i8"),
];

/// `_single_linkage_tree_` one-dimensional, of the linkage dtype; row i merges two nodes into
/// node `rows + 1 + i`: as `fit` builds it, both ids in [0, rows + 1 + i) (a sample, or an
/// earlier merge).
pub(in crate::native_state) fn check_hdbscan(heap: &Heap, data: &[u8], model: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = dict_state(model, "an estimator")? else {
            return Ok(Ok(()));
        };
        let Some(tree) = heap
            .get(state, "_single_linkage_tree_")
            .filter(|t| *t != Val::None)
        else {
            return Ok(Ok(()));
        };
        if shape_if_array(heap, tree)?.is_none() {
            return Ok(Err("_single_linkage_tree_ is not an array".into()));
        }
        let tree = array_of(heap, data, tree)?;
        let layout = tree.dtype.itemsize == 32
            && tree.dtype.code.is_none()
            && tree.dtype.fields.len() == HIERARCHY.len()
            && tree
                .dtype
                .fields
                .iter()
                .zip(HIERARCHY)
                .all(|((name, offset, code), (n, o, c))| {
                    name == n && *offset == o && code.as_deref() == Some(c)
                });
        if tree.shape.len() != 1 || !layout {
            return Ok(Err(
                "_single_linkage_tree_ is not a linkage tree (one dimension of the linkage dtype)".into(),
            ));
        }
        let rows = i64::try_from(tree.size()).unwrap_or(i64::MAX);
        let (left, right) = (tree.field("left_node")?, tree.field("right_node")?);
        for (row, record) in tree.bytes.chunks_exact(32).enumerate() {
            let merged = rows
                .saturating_add(1)
                .saturating_add(i64::try_from(row).unwrap_or(i64::MAX));
            for (field, node) in [
                ("left_node", left.read(record)),
                ("right_node", right.read(record)),
            ] {
                if !(0..merged).contains(&node) {
                    return Ok(Err(format!(
                        "_single_linkage_tree_[{row}].{field} is {node}, not a sample or an earlier merge (the row makes {merged})"
                    )));
                }
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}
