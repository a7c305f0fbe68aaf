//! Classes whose compiled code trusts indices in their state (a tree's child indices, a sparse
//! matrix's `indptr`, a frame's block placements). Their arrays are data to the analyzer; the
//! guard validates every instance a load makes; the scanner checks those whose arrays are in
//! the file and notes that the file relies on that load-time validation for the rest. Which
//! classes these are is policy data ([`crate::policy::native_state`], re-exported here).
//!
//! `nodes.rs` holds the node checks the guard runs at load time, `pickled.rs` the same
//! invariants checked by the scanner inside a pickle (`pandas.rs` and `sparse.rs` those of
//! categoricals and sparse matrices, `sklearn.rs` those of estimators, `interpolate.rs` those of splines), reading arrays and dtypes through `arrays.rs`. Every
//! item keeps its `native_state::` path.

mod arrays;
mod arrow;
mod interpolate;
mod nodes;
mod pandas;
mod pickled;
mod random;
mod sklearn;
mod sparse;

pub use crate::policy::native_state::{entries, load_time_check, Entry, Verdict};
pub(crate) use arrays::{array_of, makes_array};
pub use nodes::{
    check_predictor_nodes, check_tree_nodes, IntField, NodeLayout, PredictorLayout, PredictorShape,
    TreeNodeError, TreeShape,
};
pub(crate) use pickled::{check_pickled, checked_in_pickles, evaluate_as_read};
pub use pickled::{PickledOutcome, PickledState};
