//! The evaluator's tests, and the pickle assembler other tests of the crate use.

use super::*;
use crate::decoder::Decoder;

/// A tiny pickle assembler for tests (protocol 2 opcodes plus SHORT_BINUNICODE).
#[derive(Default)]
pub(crate) struct Asm(pub Vec<u8>);

impl Asm {
    pub fn op(mut self, code: u8) -> Self {
        self.0.push(code);
        self
    }
    pub fn text(mut self, text: &str) -> Self {
        self.0.push(0x8c);
        self.0.push(u8::try_from(text.len()).unwrap());
        self.0.extend(text.as_bytes());
        self
    }
    pub fn int(mut self, n: i32) -> Self {
        self.0.push(b'J');
        self.0.extend(n.to_le_bytes());
        self
    }
    pub fn bytes(mut self, data: &[u8]) -> Self {
        self.0.push(b'B');
        self.0.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
        self.0.extend(data);
        self
    }
    pub fn global(mut self, module: &str, name: &str) -> Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    pub fn put(self, index: u8) -> Self {
        self.op(b'q').op(index)
    }
    pub fn get(self, index: u8) -> Self {
        self.op(b'h').op(index)
    }
}

pub(crate) fn evaluate(data: &[u8], budget: usize) -> Evaluator {
    let mut evaluator = Evaluator::with_budget(budget);
    let mut decoder = Decoder::from_slice(data);
    while let Ok(Some(op)) = decoder.next_op() {
        evaluator.step(&op, &|_, _| Trailing::Nothing);
    }
    evaluator
}

#[test]
fn containers_memo_and_calls() {
    // [1, {"a": b"xy"}] memoized, then f(*(memo[0],)) built with {"k": 2}.
    let data = Asm::default()
        .op(0x80)
        .op(2)
        .op(b']')
        .put(0)
        .op(b'(')
        .int(1)
        .op(b'}')
        .text("a")
        .bytes(b"xy")
        .op(b's')
        .op(b'e')
        .op(b'0')
        .global("m", "f")
        .get(0)
        .op(0x85)
        .op(b'R')
        .op(b'}')
        .text("k")
        .int(2)
        .op(b's')
        .op(b'b')
        .op(b'.');
    let evaluator = evaluate(&data.0, MAX_VALUES);
    assert_eq!(evaluator.gave_up, None);
    let heap = &evaluator.heap;
    let object = &heap.objects[0];
    assert_eq!(heap.global(object.callee), Some(("m", "f")));
    let args = heap.tuple(object.args).unwrap();
    let Val::List(list) = args[0] else {
        panic!("{args:?}")
    };
    let items = &heap.lists[list as usize];
    assert_eq!(heap.int(items[0]), Some(1));
    let Val::Bytes { start, len } = heap.get(items[1], "a").unwrap() else {
        panic!()
    };
    assert_eq!(&data.0[start as usize..(start + len) as usize], b"xy");
    assert_eq!(heap.int(heap.get(object.state.unwrap(), "k").unwrap()), Some(2));
}

#[test]
fn a_build_state_is_the_dict_as_it_was() {
    // d = {"k": 1}; f() BUILD d; d["k"] = 2 (through the memo): the object keeps 1.
    let data = Asm::default()
        .global("m", "f")
        .op(b')')
        .op(b'R')
        .op(b'}')
        .put(0)
        .text("k")
        .int(1)
        .op(b's')
        .op(b'b')
        .get(0)
        .text("k")
        .int(2)
        .op(b's')
        .op(b'0')
        .op(b'.');
    let evaluator = evaluate(&data.0, MAX_VALUES);
    let heap = &evaluator.heap;
    assert_eq!(
        heap.int(heap.get(heap.objects[0].state.unwrap(), "k").unwrap()),
        Some(1)
    );
    assert!(!heap.objects[0].rebuilt);
}

#[test]
fn where_cpython_raises_the_reading_stops() {
    for data in [&b"0."[..], b"(t0t.", b"s.", b"h\x05."] {
        let evaluator = evaluate(data, MAX_VALUES);
        assert!(matches!(evaluator.gave_up, Some(GaveUp::Broken(_))), "{data:?}");
    }
}

#[test]
fn the_budget_ends_the_reading() {
    let mut data = Asm::default().op(b']');
    for _ in 0..1000 {
        data = data.int(7).op(b'a');
    }
    let data = data.op(b'.');
    assert_eq!(evaluate(&data.0, 5000).gave_up, None);
    assert_eq!(evaluate(&data.0, 500).gave_up, Some(GaveUp::TooLarge));
}

#[test]
fn memo_keys_far_apart_count_against_the_budget() {
    // PUT 0, 4096, 8192, ...: each grows the memo by 4096 slots for one opcode.
    let mut data = Asm::default().op(b'N');
    for step in 0..64u32 {
        data.0.push(b'r');
        data.0.extend((step * 4096).to_le_bytes());
    }
    let data = data.op(b'.');
    assert_eq!(evaluate(&data.0, 1 << 20).gave_up, None);
    assert_eq!(evaluate(&data.0, 100_000).gave_up, Some(GaveUp::TooLarge));
    // Keys in order cost one value each, as before.
    let mut dense = Asm::default().op(b'N');
    for key in 0..64u8 {
        dense = dense.put(key);
    }
    assert_eq!(evaluate(&dense.op(b'.').0, 200).gave_up, None);
}

#[test]
fn long_ints_within_64_bits() {
    assert_eq!(little_endian(&[0xff]), Some(-1));
    assert_eq!(little_endian(&[0x00, 0x80]), Some(-32768));
    assert_eq!(little_endian(&[1, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(little_endian(&[]), Some(0));
}

#[test]
fn a_call_reads_its_dict_arguments_as_they_were() {
    // d = {"k": 1}; f(m.Cls, d); d["k"] = 2 (through the memo): the call read 1. Then the
    // object made by g() is built after f's call took it, which built_at tells.
    let data = Asm::default()
        .global("m", "f")
        .global("m", "Cls")
        .op(b'}')
        .put(0)
        .text("k")
        .int(1)
        .op(b's')
        .op(0x86)
        .op(b'R')
        .get(0)
        .text("k")
        .int(2)
        .op(b's')
        .op(b'0')
        .global("m", "g")
        .op(b')')
        .op(b'R')
        .op(b'}')
        .op(b'b')
        .op(b'.');
    let evaluator = evaluate(&data.0, MAX_VALUES);
    assert_eq!(evaluator.gave_up, None);
    let heap = &evaluator.heap;
    let args = heap.tuple(heap.objects[0].args).unwrap();
    assert_eq!(heap.int(heap.get(args[1], "k").unwrap()), Some(1));
    let made = &heap.objects[1];
    assert!(made
        .built_at
        .is_some_and(|at| at > heap.objects[0].offset && at > made.offset));
}

#[test]
fn lists_tell_when_they_changed_after_a_reader() {
    // l = [1]; f(l) at the REDUCE; then l.append(2), then SETITEM l[0] = 3 (CPython calls the
    // list's __setitem__; the evaluator does not follow it).
    let asm = Asm::default()
        .op(0x80)
        .op(2)
        .op(b']')
        .put(0)
        .int(1)
        .op(b'a')
        .op(b'0')
        .global("m", "f")
        .get(0)
        .op(0x85)
        .op(b'R')
        .op(b'0');
    let reduce_at = u64::try_from(asm.0.len() - 2).unwrap();
    let appended = asm.get(0).int(2).op(b'a');
    let append_at = u64::try_from(appended.0.len() - 1).unwrap();
    let mut ended = appended.0.clone();
    ended.push(b'.');
    let evaluator = evaluate(&ended, MAX_VALUES);
    let heap = &evaluator.heap;
    let list = heap.tuple(heap.objects[0].args).unwrap()[0];
    assert!(
        heap.list(list, reduce_at).is_none(),
        "appended after the call read it"
    );
    assert_eq!(heap.list(list, append_at).map(<[Val]>::len), Some(2));
    let assigned = appended.int(0).int(3).op(b's').op(b'.');
    let evaluator = evaluate(&assigned.0, MAX_VALUES);
    let heap = &evaluator.heap;
    let list = heap.tuple(heap.objects[0].args).unwrap()[0];
    assert!(
        heap.list(list, u64::MAX - 1).is_none(),
        "item assignment is not followed"
    );
    assert!(heap.changed_after(list, u64::MAX - 1));
}

#[test]
fn a_str_past_the_budget_is_kept_unread_and_the_reading_goes_on() {
    // [long, 7]: the str alone costs more than the budget; the list and the int are still read.
    let long = "x".repeat(240);
    let data = Asm::default()
        .op(b']')
        .text(&long)
        .op(b'a')
        .int(7)
        .op(b'a')
        .op(b'.');
    let evaluator = evaluate(&data.0, 10);
    assert_eq!(evaluator.gave_up, None);
    let result = evaluator.result.unwrap();
    assert_eq!(
        evaluator.heap.list(result, u64::MAX).unwrap(),
        [Val::Other, Val::Int(7)]
    );
    // Within the budget it is read.
    let evaluator = evaluate(&data.0, 100);
    let items = evaluator.heap.list(evaluator.result.unwrap(), u64::MAX).unwrap();
    assert_eq!(evaluator.heap.str(items[0]), Some(long.as_str()));
}
