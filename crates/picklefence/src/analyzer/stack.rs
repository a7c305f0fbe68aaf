//! Marks and the stack itself: MARK, POP, POP_MARK, DUP.

use super::{Analyzer, Flow};
use crate::decoder::Op;

impl Analyzer<'_> {
    /// MARK, up to `max_marks` open at once.
    pub(super) fn load_mark(&mut self, offset: u64) -> Flow {
        if self.marks.len() >= self.limits.max_marks {
            return self.limit(offset, &format!("more than {} open MARKs", self.limits.max_marks));
        }
        self.marks.push(self.stack.len());
        Flow::Continue
    }

    /// POP: `load_pop` takes a mark off when one sits on top of the stack.
    pub(super) fn load_pop(&mut self, op: &Op<'_>) -> Flow {
        if self.marks.last() == Some(&self.stack.len()) && !self.marks.is_empty() {
            self.marks.pop();
        } else {
            self.pop(op.offset, op.opcode);
        }
        Flow::Continue
    }

    /// POP_MARK: the mark and everything above it.
    pub(super) fn load_pop_mark(&mut self, op: &Op<'_>) -> Flow {
        self.pop_mark(op.offset, op.opcode);
        Flow::Continue
    }

    /// DUP: the top again.
    pub(super) fn load_dup(&mut self, op: &Op<'_>) -> Flow {
        let value = self.top(op.offset, op.opcode);
        self.push(value);
        Flow::Continue
    }
}
