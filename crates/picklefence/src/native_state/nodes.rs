//! The load-time node checks: a tree's or a HistGradientBoosting predictor's node records,
//! checked where the guard has the arrays (`check_tree_nodes`, `check_predictor_nodes`) and
//! where the scanner reads them from a pickle. Compiled code follows these indices unchecked.

use std::borrow::Cow;

/// Where the fields a tree walk follows sit in a node record of scikit-learn's `Tree` (native
/// little-endian int64 each; the record is `itemsize` bytes).
#[derive(Debug, Clone, Copy)]
pub struct NodeLayout {
    /// Bytes per node record.
    pub itemsize: usize,
    /// Offset of `left_child`.
    pub left: usize,
    /// Offset of `right_child`.
    pub right: usize,
    /// Offset of `feature`.
    pub feature: usize,
}

/// A node that breaks what `Tree.apply` assumes, or a `max_depth` that breaks what
/// `Tree.decision_path` assumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree {tree}, node {node}: {field} is {value}, {why}")]
pub struct TreeNodeError {
    /// Which tree of the batch.
    pub tree: usize,
    /// The node's index in its tree (for `max_depth`: the first of the deepest nodes).
    pub node: u64,
    /// `left_child`, `right_child`, `feature`, `nodes` (the record array itself), `node_count`
    /// or `max_depth` (of the tree, not of a node).
    pub field: &'static str,
    /// The offending value.
    pub value: i64,
    /// The broken invariant.
    pub why: Cow<'static, str>,
}

/// One tree of a batch, as its state declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeShape {
    /// `node_count`: its node records.
    pub nodes: u64,
    /// `n_features`: the width of the `X` that `apply` reads `X[i, feature]` in.
    pub n_features: i64,
    /// `max_depth`: `decision_path` writes a path of up to `1 + max_depth` nodes per sample
    /// into a buffer it sizes by it.
    pub max_depth: i64,
}

/// The node records of a batch of trees laid end to end: each tree's records in turn, or the
/// error saying the bytes are not what `counts` declare (`fields_fit`: the layout's fields lie
/// inside a record).
fn tree_records<'a>(
    nodes: &'a [u8],
    itemsize: usize,
    fields_fit: bool,
    counts: impl Iterator<Item = u64>,
) -> Result<std::slice::ChunksExact<'a, u8>, TreeNodeError> {
    let total: Option<u64> = counts
        .into_iter()
        .try_fold(0u64, |acc, count| acc.checked_add(count));
    let expected = total
        .and_then(|t| usize::try_from(t).ok())
        .and_then(|t| t.checked_mul(itemsize));
    if !fields_fit || itemsize == 0 || expected != Some(nodes.len()) {
        return Err(TreeNodeError {
            tree: 0,
            node: 0,
            field: "nodes",
            value: i64::try_from(nodes.len()).unwrap_or(i64::MAX),
            why: "not the records the trees declare".into(),
        });
    }
    Ok(nodes.chunks_exact(itemsize))
}

/// Checks the node records of several trees laid end to end in `nodes`; `trees` gives each
/// tree's node count, feature count and `max_depth`. Internal nodes: both children in (own
/// index, node_count) (the builders append children after their parent: anything else reads out
/// of bounds or loops) and a feature in [0, n_features); leaves: both children -1. Then
/// `max_depth` in [depth, node_count], where depth is the most splits on a path from the root
/// (0 for a root alone; a tree without a root is refused): `decision_path` allocates `n_samples * (1 + max_depth)`
/// node ids and writes each sample's path there unchecked, so a lower one writes past the
/// buffer, and a higher one than any tree of node_count nodes has lets that product overflow.
/// Every child comes after its parent, so one forward pass gives each node its depth; a node
/// that two parents claim gets the deeper of the two (what a walk through either reaches), and
/// nodes the root does not reach count for none.
pub fn check_tree_nodes(nodes: &[u8], layout: NodeLayout, trees: &[TreeShape]) -> Result<(), TreeNodeError> {
    let bad = |tree, node, field, value, why: &'static str| TreeNodeError {
        tree,
        node,
        field,
        value,
        why: why.into(),
    };
    let fields_fit = [layout.left, layout.right, layout.feature]
        .iter()
        .all(|&at| at.checked_add(8).is_some_and(|end| end <= layout.itemsize));
    let mut records = tree_records(nodes, layout.itemsize, fields_fit, trees.iter().map(|t| t.nodes))?;
    // 1 + the depth of each node the root reaches, 0 for the others; one buffer for all trees.
    let mut depths: Vec<u32> = Vec::new();
    for (tree, shape) in trees.iter().enumerate() {
        let count = shape.nodes;
        let count_i64 = i64::try_from(count).unwrap_or(i64::MAX);
        // apply and predict start at node 0 whatever the count: a tree without one reads the
        // empty node buffer (a predict that never returns). Every fitted tree has its root.
        if count == 0 {
            return Err(bad(tree, 0, "node_count", 0, "no root node"));
        }
        let slots = usize::try_from(count)
            .ok()
            .filter(|&n| n < u32::MAX as usize)
            .ok_or_else(|| {
                bad(
                    tree,
                    0,
                    "node_count",
                    count_i64,
                    "more nodes than the depth check counts",
                )
            })?;
        depths.clear();
        depths.resize(slots, 0);
        if let Some(root) = depths.first_mut() {
            *root = 1;
        }
        for node in 0..count {
            let Some(record) = records.next() else {
                return Err(bad(tree, node, "nodes", 0, "missing"));
            };
            let field = |offset| {
                IntField {
                    offset,
                    width: 8,
                    signed: true,
                }
                .read(record)
            };
            let (left, right) = (field(layout.left), field(layout.right));
            let own = i64::try_from(node).unwrap_or(i64::MAX);
            if left == -1 || right == -1 {
                if left != right {
                    let (name, value) = if left == -1 {
                        ("right_child", right)
                    } else {
                        ("left_child", left)
                    };
                    return Err(bad(
                        tree,
                        node,
                        name,
                        value,
                        "while the other child is -1 (a half leaf)",
                    ));
                }
                continue;
            }
            for (name, child) in [("left_child", left), ("right_child", right)] {
                if child <= own || child >= count_i64 {
                    return Err(bad(
                        tree,
                        node,
                        name,
                        child,
                        "not a node after it below node_count",
                    ));
                }
            }
            let feature = field(layout.feature);
            if feature < 0 || feature >= shape.n_features {
                return Err(bad(
                    tree,
                    node,
                    "feature",
                    feature,
                    "not a feature below n_features",
                ));
            }
            // Below u32::MAX: at most 1 + the node's index, which is below count.
            let reached = usize::try_from(node)
                .ok()
                .and_then(|at| depths.get(at))
                .copied()
                .unwrap_or(0);
            if reached != 0 {
                for (name, child) in [("left_child", left), ("right_child", right)] {
                    if let Some(depth) = usize::try_from(child).ok().and_then(|at| depths.get_mut(at)) {
                        // A node the root reaches twice (two parents, or both children one node)
                        // makes the nodes a graph whose paths double at each such node: the
                        // depth-first partial dependence and export_text visit every path.
                        if *depth != 0 {
                            return Err(bad(tree, node, name, child, "a node the root already reaches"));
                        }
                        *depth = reached + 1;
                    }
                }
            }
        }
        check_max_depth(tree, shape, &depths)?;
    }
    Ok(())
}

/// `max_depth` in [depth, node_count], given `depths` (1 + each reached node's depth).
fn check_max_depth(tree: usize, shape: &TreeShape, depths: &[u32]) -> Result<(), TreeNodeError> {
    let deepest = depths.iter().copied().max().unwrap_or(0);
    let depth = i64::from(deepest.saturating_sub(1));
    let node_count = i64::try_from(shape.nodes).unwrap_or(i64::MAX);
    let why = if shape.max_depth < depth {
        format!("below the depth {depth} of the nodes; decision_path writes past its buffer")
    } else if shape.max_depth > node_count {
        format!(
            "above node_count {node_count}, deeper than any tree of its nodes; decision_path's \
             buffer of n_samples * (1 + max_depth) node ids can overflow its size"
        )
    } else {
        return Ok(());
    };
    let node = depths.iter().position(|&d| d == deepest).unwrap_or(0);
    Err(TreeNodeError {
        tree,
        node: u64::try_from(node).unwrap_or(u64::MAX),
        field: "max_depth",
        value: shape.max_depth,
        why: why.into(),
    })
}

/// The width and signedness of an integer field, as NumPy spells it (`<i8`, `|u1`, ...;
/// little-endian or one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntField {
    /// Offset in the record.
    pub offset: usize,
    /// Bytes: 1, 2, 4 or 8.
    pub width: usize,
    /// Signed or not.
    pub signed: bool,
}

impl IntField {
    /// The field at `offset` with NumPy type string `code`; None for any other kind or a
    /// big-endian one.
    pub fn from_numpy(offset: usize, code: &str) -> Option<Self> {
        let (order, rest) = code.split_at_checked(1)?;
        if order != "<" && order != "|" {
            return None;
        }
        let (kind, width) = rest.split_at_checked(1)?;
        let width: usize = width.parse().ok()?;
        let signed = match kind {
            "i" => true,
            "u" => false,
            _ => return None,
        };
        (matches!(width, 1 | 2 | 4 | 8) && (width == 1 || order != "|")).then_some(Self {
            offset,
            width,
            signed,
        })
    }

    fn fits(&self, itemsize: usize) -> bool {
        self.offset
            .checked_add(self.width)
            .is_some_and(|end| end <= itemsize)
    }

    /// The value in `record` (an unsigned one above `i64::MAX` reads as `i64::MAX`; a field
    /// outside the record reads as `i64::MIN`).
    #[inline]
    pub(super) fn read(&self, record: &[u8]) -> i64 {
        fn bytes<const N: usize>(record: &[u8], offset: usize) -> Option<[u8; N]> {
            record.get(offset..)?.get(..N)?.try_into().ok()
        }
        let value = match (self.width, self.signed) {
            (1, true) => bytes(record, self.offset).map(|b| i64::from(i8::from_le_bytes(b))),
            (1, false) => bytes(record, self.offset).map(|b| i64::from(u8::from_le_bytes(b))),
            (2, true) => bytes(record, self.offset).map(|b| i64::from(i16::from_le_bytes(b))),
            (2, false) => bytes(record, self.offset).map(|b| i64::from(u16::from_le_bytes(b))),
            (4, true) => bytes(record, self.offset).map(|b| i64::from(i32::from_le_bytes(b))),
            (4, false) => bytes(record, self.offset).map(|b| i64::from(u32::from_le_bytes(b))),
            (8, true) => bytes(record, self.offset).map(i64::from_le_bytes),
            (8, false) => {
                bytes(record, self.offset).map(|b| i64::try_from(u64::from_le_bytes(b)).unwrap_or(i64::MAX))
            }
            _ => None,
        };
        value.unwrap_or(i64::MIN)
    }
}

/// The fields of a HistGradientBoosting `TreePredictor` node record that its Cython
/// predictor follows.
#[derive(Debug, Clone, Copy)]
pub struct PredictorLayout {
    /// Bytes per node record.
    pub itemsize: usize,
    /// `left`.
    pub left: IntField,
    /// `right`.
    pub right: IntField,
    /// `feature_idx`.
    pub feature: IntField,
    /// `is_leaf`.
    pub is_leaf: IntField,
    /// `is_categorical`.
    pub is_categorical: IntField,
    /// `bitset_idx`.
    pub bitset_idx: IntField,
}

/// One predictor of a batch: its node count, the model's feature count and the rows of its
/// categorical bitsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictorShape {
    /// Node records.
    pub nodes: u64,
    /// Features of the model that holds it (`i64::MAX`: not known).
    pub n_features: i64,
    /// Rows of both bitset arrays (the fewer of the two).
    pub bitset_rows: i64,
}

/// Checks the node records of several `TreePredictor`s laid end to end: internal nodes have
/// `left` and `right` after themselves and below the node count, `feature_idx` in
/// [0, n_features) and, when the split is categorical, `bitset_idx` below the bitset rows
/// (the predictor reads all of them unchecked). Leaves are not followed.
pub fn check_predictor_nodes(
    nodes: &[u8],
    layout: PredictorLayout,
    predictors: &[PredictorShape],
) -> Result<(), TreeNodeError> {
    let fields = [
        layout.left,
        layout.right,
        layout.feature,
        layout.is_leaf,
        layout.is_categorical,
        layout.bitset_idx,
    ];
    let fields_fit = fields.iter().all(|f| f.fits(layout.itemsize));
    let mut records = tree_records(
        nodes,
        layout.itemsize,
        fields_fit,
        predictors.iter().map(|p| p.nodes),
    )?;
    // Whether each node of the predictor is a child already (the predictors are built as trees:
    // a node of two parents makes the depth-first partial dependence visit every path).
    let mut has_parent: Vec<bool> = Vec::new();
    for (tree, shape) in predictors.iter().enumerate() {
        let count = i64::try_from(shape.nodes).unwrap_or(i64::MAX);
        has_parent.clear();
        has_parent.resize(usize::try_from(shape.nodes).unwrap_or(0), false);
        for node in 0..shape.nodes {
            let bad = |field, value, why: &'static str| TreeNodeError {
                tree,
                node,
                field,
                value,
                why: why.into(),
            };
            let Some(record) = records.next() else {
                return Err(bad("nodes", 0, "missing"));
            };
            if layout.is_leaf.read(record) != 0 {
                continue;
            }
            let own = i64::try_from(node).unwrap_or(i64::MAX);
            for (name, field) in [("left", layout.left), ("right", layout.right)] {
                let child = field.read(record);
                if child <= own || child >= count {
                    return Err(bad(name, child, "not a node after it below the node count"));
                }
                if let Some(seen) = usize::try_from(child).ok().and_then(|at| has_parent.get_mut(at)) {
                    if *seen {
                        return Err(bad(name, child, "a node with another parent"));
                    }
                    *seen = true;
                }
            }
            let feature = layout.feature.read(record);
            if feature < 0 || feature >= shape.n_features {
                return Err(bad("feature_idx", feature, "not a feature of the model"));
            }
            if layout.is_categorical.read(record) != 0 {
                let row = layout.bitset_idx.read(record);
                if row < 0 || row >= shape.bitset_rows {
                    return Err(bad("bitset_idx", row, "beyond the categorical bitsets"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(left_child, right_child, feature)` of each node.
    type Nodes = [(i64, i64, i64)];

    fn records(nodes: &Nodes) -> Vec<u8> {
        nodes
            .iter()
            .flat_map(|&(l, r, f)| [l, r, f, 0].into_iter().flat_map(i64::to_le_bytes))
            .collect()
    }

    const LAYOUT: NodeLayout = NodeLayout {
        itemsize: 32,
        left: 0,
        right: 8,
        feature: 16,
    };

    /// A tree of `nodes` node records for 1 feature, with `max_depth`.
    fn shape(nodes: u64, max_depth: i64) -> TreeShape {
        TreeShape {
            nodes,
            n_features: 1,
            max_depth,
        }
    }

    #[test]
    fn a_node_the_root_reaches_twice_is_refused_and_an_unreached_one_is_not() {
        let shared = [(1, 2, 0), (3, 3, 0), (3, 4, 0), (-1, -1, -2), (-1, -1, -2)];
        let err = check_tree_nodes(&records(&shared), LAYOUT, &[shape(5, 2)]).unwrap_err();
        assert_eq!((err.node, err.field, err.value), (1, "right_child", 3));
        // Node 1 made a leaf by hand: its old subtree, unreached, may share nodes.
        let pruned = [(1, 2, 0), (-1, -1, -2), (-1, -1, -2), (4, 4, 0), (-1, -1, -2)];
        assert_eq!(
            check_tree_nodes(&records(&pruned), LAYOUT, &[shape(5, 1)]),
            Ok(())
        );
    }

    #[test]
    fn tree_nodes_are_checked_per_tree() {
        let good = [(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        let mut both = records(&good);
        both.extend(records(&good));
        assert_eq!(
            check_tree_nodes(&both, LAYOUT, &[shape(3, 1), shape(3, 1)]),
            Ok(())
        );
        let cases: [(&Nodes, &str); 5] = [
            (&[(1, 3, 0), (-1, -1, -2), (-1, -1, -2)], "right_child"),
            (&[(0, 2, 0), (-1, -1, -2), (-1, -1, -2)], "left_child"),
            (&[(1, -1, 0), (-1, -1, -2), (-1, -1, -2)], "left_child"),
            (&[(1, 2, 1), (-1, -1, -2), (-1, -1, -2)], "feature"),
            (&[(1, 2, -5), (-1, -1, -2), (-1, -1, -2)], "feature"),
        ];
        for (nodes, field) in cases {
            let mut bytes = records(&good);
            bytes.extend(records(nodes));
            let error = check_tree_nodes(&bytes, LAYOUT, &[shape(3, 1), shape(3, 1)]).unwrap_err();
            assert_eq!((error.tree, error.node, error.field), (1, 0, field), "{nodes:?}");
        }
        assert_eq!(
            check_tree_nodes(&both, LAYOUT, &[shape(3, 1), shape(2, 1)])
                .unwrap_err()
                .field,
            "nodes"
        );
        let short = NodeLayout {
            itemsize: 16,
            ..LAYOUT
        };
        assert_eq!(
            check_tree_nodes(&both[..16], short, &[shape(1, 0)])
                .unwrap_err()
                .field,
            "nodes"
        );
    }

    /// A chain of `depth` splits: node 2k splits into 2k+1 (a leaf) and 2k+2.
    fn chain(depth: i64) -> Vec<(i64, i64, i64)> {
        let mut nodes: Vec<_> = (0..depth)
            .flat_map(|k| [(2 * k + 1, 2 * k + 2, 0), (-1, -1, -2)])
            .collect();
        nodes.push((-1, -1, -2));
        nodes
    }

    fn max_depth_error(nodes: &Nodes, max_depth: i64) -> Option<(u64, i64, String)> {
        let count = u64::try_from(nodes.len()).unwrap();
        check_tree_nodes(&records(nodes), LAYOUT, &[shape(count, max_depth)])
            .err()
            .map(|e| {
                assert_eq!((e.tree, e.field), (0, "max_depth"), "{e}");
                (e.node, e.value, e.why.into_owned())
            })
    }

    #[test]
    fn a_tree_without_a_root_is_refused() {
        // predict starts at node 0: with none it reads the empty buffer (and never returned).
        let error = check_tree_nodes(&records(&[]), LAYOUT, &[shape(0, 0)]).unwrap_err();
        assert_eq!((error.field, error.value), ("node_count", 0), "{error}");
    }

    #[test]
    fn max_depth_is_at_least_the_depth_of_the_nodes() {
        // A root alone: depth 0.
        assert_eq!(max_depth_error(&[(-1, -1, -2)], 0), None);
        for depth in [1, 2, 47] {
            let nodes = chain(depth);
            assert_eq!(max_depth_error(&nodes, depth), None, "{depth}");
            let (node, value, why) = max_depth_error(&nodes, depth - 1).unwrap();
            assert_eq!((node, value), (2 * depth as u64 - 1, depth - 1));
            assert_eq!(
                why,
                format!("below the depth {depth} of the nodes; decision_path writes past its buffer")
            );
            assert!(max_depth_error(&nodes, 0).is_some());
        }
        // Negative: below the depth 0 of a root alone, below any depth.
        for max_depth in [-1, i64::MIN] {
            let (_, value, why) = max_depth_error(&[(-1, -1, -2)], max_depth).unwrap();
            assert_eq!(value, max_depth);
            assert!(why.starts_with("below the depth 0"), "{why}");
            assert!(max_depth_error(&chain(3), max_depth).is_some());
        }
        // The second tree of a batch, after an intact one.
        let mut bytes = records(&chain(2));
        bytes.extend(records(&chain(3)));
        let error = check_tree_nodes(&bytes, LAYOUT, &[shape(5, 2), shape(7, 2)]).unwrap_err();
        assert_eq!((error.tree, error.field, error.value), (1, "max_depth", 2));
        assert_eq!(
            check_tree_nodes(&bytes, LAYOUT, &[shape(5, 2), shape(7, 3)]),
            Ok(())
        );
    }

    #[test]
    fn max_depth_is_at_most_node_count() {
        let nodes = chain(3);
        // Higher than the depth is harmless (a larger buffer) up to node_count.
        assert_eq!(max_depth_error(&nodes, 4), None);
        assert_eq!(max_depth_error(&nodes, 7), None);
        for max_depth in [8, 1 << 62, i64::MAX] {
            let (_, value, why) = max_depth_error(&nodes, max_depth).unwrap();
            assert_eq!(value, max_depth);
            assert!(why.starts_with("above node_count 7"), "{why}");
        }
    }

    #[test]
    fn depth_skips_unreached_nodes_and_a_node_reached_twice_is_refused() {
        let shared: &Nodes = &[
            (1, 3, 0),
            (-1, -1, -2),
            (-1, -1, -2),
            (4, 5, 0),
            (-1, -1, -2),
            (-1, -1, -2),
        ];
        // Node 3 claimed by the root and by node 1: refused at node 1, whatever max_depth says.
        let mut dag = shared.to_vec();
        dag[1] = (2, 3, 0);
        let err = check_tree_nodes(&records(&dag), LAYOUT, &[shape(6, 3)]).unwrap_err();
        assert_eq!((err.node, err.field, err.value), (1, "right_child", 3));
        // Without node 1's split, node 2 is unreached: depth 2.
        assert_eq!(max_depth_error(shared, 2), None);
        // Nodes no parent reaches (a tree pruned by setting a split to -1, -1) count for none,
        // however deep their own subtree.
        let mut pruned = chain(5);
        pruned[2] = (-1, -1, -2);
        assert_eq!(max_depth_error(&pruned, 1), None);
        assert_eq!(
            max_depth_error(&pruned, 0).unwrap().2.split(';').next(),
            Some("below the depth 1 of the nodes")
        );
    }

    fn predictor_layout() -> PredictorLayout {
        let field = |offset, code| IntField::from_numpy(offset, code).unwrap();
        PredictorLayout {
            itemsize: 20,
            left: field(0, "<u4"),
            right: field(4, "<u4"),
            feature: field(8, "<i8"),
            is_leaf: field(16, "|u1"),
            is_categorical: field(17, "|u1"),
            bitset_idx: field(18, "<u2"),
        }
    }

    /// `(left, right, feature_idx, is_leaf, is_categorical, bitset_idx)` of a node.
    type PredictorNode = (u32, u32, i64, u8, u8, u16);

    fn predictor_records(nodes: &[PredictorNode]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(left, right, feature, leaf, categorical, bitset) in nodes {
            bytes.extend(left.to_le_bytes());
            bytes.extend(right.to_le_bytes());
            bytes.extend(feature.to_le_bytes());
            bytes.extend([leaf, categorical]);
            bytes.extend(bitset.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn numpy_integer_codes() {
        assert_eq!(
            IntField::from_numpy(3, "<u4"),
            Some(IntField {
                offset: 3,
                width: 4,
                signed: false
            })
        );
        for code in [">i8", "<f8", "|u4", "<i3", "<", "", "|b1"] {
            assert_eq!(IntField::from_numpy(0, code), None, "{code}");
        }
        let record = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(IntField::from_numpy(0, "<i4").unwrap().read(&record), -1);
        assert_eq!(IntField::from_numpy(0, "<u4").unwrap().read(&record), 0xffff_ffff);
        assert_eq!(IntField::from_numpy(0, "<u8").unwrap().read(&record), i64::MAX);
        assert_eq!(IntField::from_numpy(6, "<i4").unwrap().read(&record), i64::MIN);
    }

    #[test]
    fn predictor_nodes_are_checked_per_predictor() {
        let shape = PredictorShape {
            nodes: 3,
            n_features: 2,
            bitset_rows: 1,
        };
        let good = [(1, 2, 1, 0, 1, 0), (0, 0, -9, 1, 0, 7), (9, 9, 9, 1, 1, 9)];
        let mut both = predictor_records(&good);
        both.extend(predictor_records(&good));
        assert_eq!(
            check_predictor_nodes(&both, predictor_layout(), &[shape, shape]),
            Ok(())
        );
        let cases: [(&[PredictorNode], &str); 7] = [
            (
                &[(0, 2, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "left",
            ),
            // Both children one node: every path through it doubles.
            (
                &[(2, 2, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "right",
            ),
            (
                &[(1, 3, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "right",
            ),
            (
                &[(1, u32::MAX, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "right",
            ),
            (
                &[(1, 2, 2, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "feature_idx",
            ),
            (
                &[(1, 2, -1, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "feature_idx",
            ),
            (
                &[(1, 2, 0, 0, 1, 1), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)],
                "bitset_idx",
            ),
        ];
        for (nodes, field) in cases {
            let mut bytes = predictor_records(&good);
            bytes.extend(predictor_records(nodes));
            let error = check_predictor_nodes(&bytes, predictor_layout(), &[shape, shape]).unwrap_err();
            assert_eq!((error.tree, error.node, error.field), (1, 0, field), "{nodes:?}");
        }
        let unknown = PredictorShape {
            n_features: i64::MAX,
            ..shape
        };
        let wide = predictor_records(&[(1, 2, 1000, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 1, 0, 0)]);
        assert_eq!(
            check_predictor_nodes(&wide, predictor_layout(), &[unknown]),
            Ok(())
        );
        assert_eq!(
            check_predictor_nodes(&both[..40], predictor_layout(), &[shape])
                .unwrap_err()
                .field,
            "nodes"
        );
        let overlapping = PredictorLayout {
            itemsize: 18,
            ..predictor_layout()
        };
        assert_eq!(
            check_predictor_nodes(&[0; 54], overlapping, &[shape])
                .unwrap_err()
                .field,
            "nodes"
        );
    }
}
