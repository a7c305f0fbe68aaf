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

/// HDBSCAN's linkage record dtype, its first two fields named `first` and `second`.
fn linkage_record(first: &'static str, second: &'static str) -> impl Fn(Asm) -> Asm {
    move |asm: Asm| {
        let mut asm = dtype_call(asm, "V32")
            .op(b'(')
            .int(3)
            .text("|")
            .op(b'N')
            .op(b'(')
            .text(first)
            .text(second)
            .text("value")
            .text("cluster_size")
            .op(b't')
            .op(b'}');
        for (name, offset, descr) in [
            (first, 0, "i8"),
            (second, 8, "i8"),
            ("value", 16, "f8"),
            ("cluster_size", 24, "i8"),
        ] {
            asm = plain(asm.text(name), descr).int(offset).op(0x86).op(b's');
        }
        asm.int(32).int(1).int(16).op(b't').op(b'b')
    }
}

/// An HDBSCAN whose single linkage tree merges `rows` (left, right) into the next ids.
fn hdbscan(rows: &[(i64, i64)], record: &dyn Fn(Asm) -> Asm) -> Vec<u8> {
    let bytes: Vec<u8> = rows.iter().flat_map(|&(l, r)| ints(&[l, r, 0, 2])).collect();
    let count = i32::try_from(rows.len()).unwrap();
    let asm = Asm::default()
        .op(0x80)
        .op(2)
        .global("sklearn.cluster._hdbscan.hdbscan", "HDBSCAN")
        .op(b')')
        .op(0x81)
        .op(b'}')
        .text("_single_linkage_tree_");
    array(asm, &[count], record, &bytes).op(b's').op(b'b').op(b'.').0
}

#[test]
fn an_hdbscan_linkage_tree_merges_samples_and_earlier_merges() {
    let record = linkage_record("left_node", "right_node");
    // 4 samples: row 0 makes 4, row 1 makes 5, row 2 makes 6.
    let intact = hdbscan(&[(0, 1), (2, 4), (3, 5)], &record);
    assert_eq!(outcome_for(&intact, "HDBSCAN"), PickledOutcome::Intact);
    let later = hdbscan(&[(0, 5), (2, 4), (3, 5)], &record);
    assert_eq!(
        broken(outcome_for(&later, "HDBSCAN")),
        "_single_linkage_tree_[0].right_node is 5, not a sample or an earlier merge (the row makes 4)"
    );
    let negative = hdbscan(&[(0, 1), (-5, 4), (3, 5)], &record);
    assert!(broken(outcome_for(&negative, "HDBSCAN")).contains("[1].left_node is -5"));
    // The Cython struct reads by position: fields of other names are not its layout.
    let renamed = hdbscan(
        &[(0, 1), (2, 4), (3, 5)],
        &linkage_record("right_node", "left_node"),
    );
    assert!(broken(outcome_for(&renamed, "HDBSCAN")).contains("is not a linkage tree"));
}

/// `ctor(cls)` of numpy's pickle helpers, built with `state` (appended by `state`).
fn generator(ctor: &str, class: (&str, &str), state: &dyn Fn(Asm) -> Asm) -> Vec<u8> {
    let asm = Asm::default()
        .op(0x80)
        .op(2)
        .global("numpy.random._pickle", ctor)
        .global(class.0, class.1)
        .op(0x85)
        .op(b'R');
    state(asm).op(b'b').op(b'.').0
}

/// `{"bit_generator": name, ...}` with MT19937's `state.pos` or Philox's `buffer_pos`.
fn generator_state(name: &'static str, position: i32) -> impl Fn(Asm) -> Asm {
    move |asm: Asm| {
        let asm = asm.op(b'}').text("bit_generator").text(name).op(b's');
        match name {
            "MT19937" => asm
                .text("state")
                .op(b'}')
                .text("pos")
                .int(position)
                .op(b's')
                .op(b's'),
            _ => asm.text("buffer_pos").int(position).op(b's'),
        }
    }
}

#[test]
fn a_bit_generators_position_lies_inside_its_state() {
    const MT: (&str, &str) = ("numpy.random._mt19937", "MT19937");
    const PHILOX: (&str, &str) = ("numpy.random._philox", "Philox");
    for (class, name, end) in [(MT, "MT19937", 624), (PHILOX, "Philox", 4)] {
        for ctor in ["__bit_generator_ctor", "__randomstate_ctor", "__generator_ctor"] {
            let intact = generator(ctor, class, &generator_state(name, end));
            assert_eq!(outcome_for(&intact, name), PickledOutcome::Intact, "{ctor}");
            // A bit generator's state with its seed sequence: (dict, seed).
            let tupled = generator(ctor, class, &|asm| {
                generator_state(name, -5)(asm).op(b'N').op(0x86)
            });
            let why = broken(outcome_for(&tupled, name));
            assert!(
                why.ends_with(&format!("is -5, outside [0, {end}] (the words of its state)")),
                "{why}"
            );
        }
    }
    // RandomState's legacy tuple: (name, key, pos, has_gauss, gauss).
    let legacy = generator("__randomstate_ctor", MT, &|asm| {
        asm.op(b'(')
            .text("MT19937")
            .op(b'N')
            .int(10_000_000)
            .int(0)
            .int(0)
            .op(b't')
    });
    assert_eq!(
        broken(outcome_for(&legacy, "MT19937")),
        "state.pos is 10000000, outside [0, 624] (the words of its state)"
    );
}
