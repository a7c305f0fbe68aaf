use super::*;
use crate::evaluate::tests::{evaluate, Asm};
use crate::native_state::pickled::tests::{broken, floats, outcome_for};

#[test]
fn range_lengths_are_python_s() {
    // (start, stop, step, len(range(start, stop, step))) as Python gives them.
    let cases = [
        (0, 10, 1, 10),
        (0, 10, 3, 4),
        (10, 0, -3, 4),
        (10, 0, -5, 2),
        (0, 10, -1, 0),
        (10, 0, 1, 0),
        (-5, 5, 5, 2),
        (5, -6, -5, 3),
        (0, 0, 7, 0),
        (i64::MIN, i64::MAX, 1, u64::MAX),
    ];
    for (start, stop, step, expected) in cases {
        assert_eq!(
            range_length(start, stop, step),
            Some(expected),
            "{start} {stop} {step}"
        );
    }
    assert_eq!(range_length(0, 1, 0), None);
}

/// `_new_Index(RangeIndex, {"stop": stop})`.
fn range_index(asm: Asm, stop: i32) -> Asm {
    asm.global("pandas.core.indexes.base", "_new_Index")
        .global("pandas", "RangeIndex")
        .op(b'}')
        .text("stop")
        .int(stop)
        .op(b's')
        .op(0x86)
        .op(b'R')
}

/// A `SingleBlockManager` given pandas' "0.14.1" state: `values` float64 values placed at
/// `slice(0, placed)` for each of `axes` indexes of `labels` labels.
fn series(values: i32, labels: i32, placed: i32, axes: usize) -> Vec<u8> {
    let asm = Asm::default()
        .op(0x80)
        .op(2)
        .global("pandas.core.internals.managers", "SingleBlockManager")
        .op(b')')
        .op(0x81)
        .op(b'(')
        .op(b']')
        .op(b']')
        .op(b']')
        .op(b'}')
        .text(MANAGER_FIELDS)
        .op(b'}')
        .text("axes")
        .op(b']')
        .op(b'(');
    let asm = (0..axes).fold(asm, |asm, _| range_index(asm, labels));
    let asm = asm
        .op(b'e')
        .op(b's')
        .text("blocks")
        .op(b']')
        .op(b'}')
        .text("values");
    let values = usize::try_from(values).unwrap();
    let shape = [i32::try_from(values).unwrap()];
    let asm = floats(&shape, &vec![1.0; values])(asm);
    asm.op(b's')
        .text("mgr_locs")
        .global("builtins", "slice")
        .int(0)
        .int(placed)
        .op(0x86)
        .op(b'R')
        .op(b's')
        .op(b'a')
        .op(b's')
        .op(b's')
        .op(b't')
        .op(b'b')
        .op(b'.')
        .0
}

#[test]
fn a_series_values_are_as_long_as_its_index() {
    assert_eq!(
        outcome_for(&series(3, 3, 3, 1), "SingleBlockManager"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(&series(1, 10_000_000, 1, 1), "SingleBlockManager"));
    assert_eq!(why, "blocks[0].values has shape [1] for placement [10000000]");
    let why = broken(outcome_for(&series(300, 2, 1, 1), "SingleBlockManager"));
    assert_eq!(why, "blocks[0].values has shape [300] for placement [2]");
    // Two axes make its block two-dimensional: not a series' block.
    let why = broken(outcome_for(&series(3, 3, 3, 2), "SingleBlockManager"));
    assert_eq!(why, "blocks[0] has 2 dimensions in a manager of 1");
}

#[test]
fn indexes_of_indexes_are_read_to_a_bound() {
    // _new_Index(Index, {"data": _new_Index(Index, {"data": ...})}), 100,000 deep: no
    // stack grows with the pickle.
    let mut asm = Asm::default().op(0x80).op(2);
    let depth = 100_000;
    for _ in 0..depth {
        asm = asm
            .global("pandas.core.indexes.base", "_new_Index")
            .global("pandas", "Index")
            .op(b'}')
            .text("data");
    }
    asm = asm.op(b'N');
    for _ in 0..depth {
        asm = asm.op(b's').op(0x86).op(b'R');
    }
    let data = asm.op(b'.').0;
    let evaluator = evaluate(&data, 1 << 24);
    assert_eq!(evaluator.gave_up, None);
    let outermost = evaluator.heap.objects.len() - 1;
    let value = Val::Obj(u32::try_from(outermost).unwrap());
    let why = length_of(&evaluator.heap, value, u64::MAX, 0).unwrap_err();
    assert!(why.contains("nested too deep"), "{why}");
}
