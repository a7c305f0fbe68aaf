//! Containers: the opcodes that make or fill lists, dicts, sets and tuples (EMPTY_LIST,
//! EMPTY_DICT, APPEND, APPENDS, LIST, SETITEM, SETITEMS, DICT, ADDITEMS, FROZENSET, TUPLE,
//! TUPLE1-3). What an item may be stored in is judged by the role checks (`roles`).

use super::value::Value;
use super::{Analyzer, Flow};
use crate::decoder::Op;
use crate::opcodes::Opcode;

impl Analyzer<'_> {
    /// EMPTY_LIST.
    pub(super) fn load_empty_list(&mut self, offset: u64) -> Flow {
        let value = self.new_list(offset);
        self.push(value);
        Flow::Continue
    }

    /// EMPTY_DICT.
    pub(super) fn load_empty_dict(&mut self, offset: u64) -> Flow {
        let value = self.new_dict(offset, &[]);
        self.push(value);
        Flow::Continue
    }

    /// APPEND: one item onto the object below it.
    pub(super) fn load_append(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let value = self.pop(offset, opcode);
        let target = self.top(offset, opcode);
        self.add_items(offset, opcode, &target, std::slice::from_ref(&value));
        Flow::Continue
    }

    /// SETITEM: one key and value into the object below them.
    pub(super) fn load_setitem(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let value = self.pop(offset, opcode);
        let key = self.pop(offset, opcode);
        let target = self.top(offset, opcode);
        self.add_items(offset, opcode, &target, &[key, value]);
        Flow::Continue
    }

    /// APPENDS, SETITEMS, ADDITEMS: the items above the mark into the object below it.
    pub(super) fn load_add_items(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let (target, items) = self.mark_target(offset, opcode);
        if opcode == Opcode::SetItems && !items.len().is_multiple_of(2) {
            self.break_stream(offset, "SETITEMS has an odd number of items");
        }
        self.add_items(offset, opcode, &target, &items);
        Flow::Continue
    }

    /// LIST: the items above the mark as a new list (filled as APPENDS would).
    pub(super) fn load_list(&mut self, op: &Op<'_>) -> Flow {
        let items = self.pop_mark(op.offset, op.opcode);
        let list = self.new_list(op.offset);
        self.add_items(op.offset, Opcode::Appends, &list, &items);
        self.push(list);
        Flow::Continue
    }

    /// DICT: the pairs above the mark as a new dict (filled as SETITEMS would).
    pub(super) fn load_dict(&mut self, op: &Op<'_>) -> Flow {
        let offset = op.offset;
        let items = self.pop_mark(offset, op.opcode);
        if !items.len().is_multiple_of(2) {
            self.break_stream(offset, "DICT has an odd number of items");
        }
        let dict = self.new_dict(offset, &[]);
        self.add_items(offset, Opcode::SetItems, &dict, &items);
        self.push(dict);
        Flow::Continue
    }

    /// FROZENSET: every item is stored, then only the set's kind is kept.
    pub(super) fn load_frozenset(&mut self, op: &Op<'_>) -> Flow {
        let items = self.pop_mark(op.offset, op.opcode);
        for item in &items {
            self.store(op.offset, item, None);
        }
        self.push(Value::FrozenSet);
        Flow::Continue
    }

    /// TUPLE: the items above the mark.
    pub(super) fn load_tuple(&mut self, op: &Op<'_>) -> Flow {
        let items = self.pop_mark(op.offset, op.opcode);
        let value = self.make_tuple(op.offset, items);
        self.push(value);
        Flow::Continue
    }

    /// TUPLE1, TUPLE2, TUPLE3: that many items off the stack.
    pub(super) fn load_small_tuple(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let n = match opcode {
            Opcode::Tuple1 => 1,
            Opcode::Tuple2 => 2,
            _ => 3,
        };
        let mut items: Vec<Value> = (0..n).map(|_| self.pop(offset, opcode)).collect();
        items.reverse();
        let value = self.make_tuple(offset, items);
        self.push(value);
        Flow::Continue
    }
}
