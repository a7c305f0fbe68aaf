//! Classes whose compiled code trusts indices in their state (a tree's child indices, a sparse
//! matrix's `indptr`, a frame's block placements). Their arrays are data to the analyzer; the
//! guard validates every instance a load makes, and the scanner notes that a file relies on
//! that load-time validation. The list is data (`policies/native_state.txt`), parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../policies/native_state.txt");

/// What picklefence does about a compiled class's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The guard checks every instance a load makes.
    Validate,
    /// Nothing to check (the reason is in the data).
    Safe,
}

/// One line of the data: `MODULE:NAME` (`NAME` may be `*`: every class of the module), the
/// verdict, and what is checked or why nothing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The module.
    pub module: &'static str,
    /// The class, or `*`.
    pub name: &'static str,
    /// Validate or safe.
    pub verdict: Verdict,
    /// What is checked, or why nothing is.
    pub reason: &'static str,
}

fn parse(line: &'static str) -> Option<Entry> {
    let (qualified, rest) = line.split_once(char::is_whitespace)?;
    let (module, name) = qualified.split_once(':')?;
    let (verdict, reason) = rest.trim_start().split_once(char::is_whitespace)?;
    let verdict = match verdict {
        "validate" => Verdict::Validate,
        "safe" => Verdict::Safe,
        _ => return None,
    };
    Some(Entry {
        module,
        name,
        verdict,
        reason: reason.trim(),
    })
}

fn table() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let mut entries: Vec<Entry> = TABLE
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse)
            .collect();
        entries.sort_unstable_by_key(|e| (e.module, e.name));
        entries
    })
}

fn validated() -> &'static HashMap<(&'static str, &'static str), &'static str> {
    static VALIDATED: OnceLock<HashMap<(&'static str, &'static str), &'static str>> = OnceLock::new();
    VALIDATED.get_or_init(|| {
        table()
            .iter()
            .filter(|e| e.verdict == Verdict::Validate)
            .map(|e| ((e.module, e.name), e.reason))
            .collect()
    })
}

/// What the guard checks in the state of `module.name` after a load, if it is such a class.
pub fn load_time_check(module: &str, name: &str) -> Option<&'static str> {
    validated().get(&(module, name)).copied()
}

/// Every line of the data, sorted by name.
pub fn entries() -> &'static [Entry] {
    table()
}

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

/// A node that breaks what `Tree.apply` assumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree {tree}, node {node}: {field} is {value}, {why}")]
pub struct TreeNodeError {
    /// Which tree of the batch.
    pub tree: usize,
    /// The node's index in its tree.
    pub node: u64,
    /// `left_child`, `right_child`, `feature` or `nodes` (the record array itself).
    pub field: &'static str,
    /// The offending value.
    pub value: i64,
    /// The broken invariant.
    pub why: &'static str,
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let raw: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(i64::from_le_bytes(raw))
}

/// Checks the node records of several trees laid end to end in `nodes`; `trees` gives each
/// tree's node count and feature count. Internal nodes: both children in (own index,
/// node_count) (the builders append children after their parent: anything else reads out of
/// bounds or loops) and a feature in [0, n_features); leaves: both children -1.
pub fn check_tree_nodes(nodes: &[u8], layout: NodeLayout, trees: &[(u64, i64)]) -> Result<(), TreeNodeError> {
    let bad = |tree, node, field, value, why| TreeNodeError {
        tree,
        node,
        field,
        value,
        why,
    };
    let fields_fit = [layout.left, layout.right, layout.feature]
        .iter()
        .all(|&at| at.checked_add(8).is_some_and(|end| end <= layout.itemsize));
    let total: Option<u64> = trees
        .iter()
        .try_fold(0u64, |acc, (count, _)| acc.checked_add(*count));
    let expected = total
        .and_then(|t| usize::try_from(t).ok())
        .and_then(|t| t.checked_mul(layout.itemsize));
    if !fields_fit || expected != Some(nodes.len()) {
        return Err(bad(
            0,
            0,
            "nodes",
            i64::try_from(nodes.len()).unwrap_or(i64::MAX),
            "not the records the trees declare",
        ));
    }
    let mut records = nodes.chunks_exact(layout.itemsize);
    for (tree, &(count, n_features)) in trees.iter().enumerate() {
        let count_i64 = i64::try_from(count).unwrap_or(i64::MAX);
        for node in 0..count {
            let Some(record) = records.next() else {
                return Err(bad(tree, node, "nodes", 0, "missing"));
            };
            let field = |at| read_i64(record, at).unwrap_or(i64::MIN);
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
            if feature < 0 || feature >= n_features {
                return Err(bad(
                    tree,
                    node,
                    "feature",
                    feature,
                    "not a feature below n_features",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_line_parses() {
        let lines = TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(entries().len(), lines);
        assert!(load_time_check("sklearn.tree._tree", "Tree").is_some());
        assert!(load_time_check("pandas._libs.sparse", "IntIndex").is_none());
        assert!(load_time_check("builtins", "dict").is_none());
    }

    #[test]
    fn every_listed_class_is_on_the_default_policy() {
        let policy = crate::Policy::default();
        for e in entries()
            .iter()
            .filter(|e| e.name != "*" && e.module != "torch._utils")
        {
            assert!(
                policy.roles(e.module, e.name).is_some(),
                "{}:{} is not allowed",
                e.module,
                e.name
            );
        }
    }

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

    #[test]
    fn tree_nodes_are_checked_per_tree() {
        let good = [(1, 2, 0), (-1, -1, -2), (-1, -1, -2)];
        let mut both = records(&good);
        both.extend(records(&good));
        assert_eq!(check_tree_nodes(&both, LAYOUT, &[(3, 1), (3, 1)]), Ok(()));
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
            let error = check_tree_nodes(&bytes, LAYOUT, &[(3, 1), (3, 1)]).unwrap_err();
            assert_eq!((error.tree, error.node, error.field), (1, 0, field), "{nodes:?}");
        }
        assert_eq!(
            check_tree_nodes(&both, LAYOUT, &[(3, 1), (2, 1)])
                .unwrap_err()
                .field,
            "nodes"
        );
        let short = NodeLayout {
            itemsize: 16,
            ..LAYOUT
        };
        assert_eq!(
            check_tree_nodes(&both[..16], short, &[(1, 1)]).unwrap_err().field,
            "nodes"
        );
    }
}
