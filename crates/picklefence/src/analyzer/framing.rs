//! Framing and the life of one pickle in a stream: FRAME windows, the end of a pickle (STOP),
//! and how the stream ends (end of input, a decode error).

use super::{Analyzer, Flow, Mode, PickleInfo};
use crate::decoder::{Arg, Op};
use crate::error::DecodeError;
use crate::findings::{FindingKind, Severity};
use crate::opcodes::Opcode;

impl Analyzer<'_> {
    /// PROTO: an unknown protocol breaks the pickle; analysis goes on as the highest.
    pub(super) fn load_proto(&mut self, op: &Op<'_>) -> Flow {
        let version = op.arg.as_index().unwrap_or(-1);
        match u8::try_from(version) {
            Ok(v) if v <= Opcode::HIGHEST_PROTOCOL => self.protocol = v,
            _ => {
                self.break_stream(op.offset, &format!("unsupported pickle protocol {version}"));
                self.protocol = Opcode::HIGHEST_PROTOCOL;
            }
        }
        Flow::Continue
    }

    /// FRAME: where the frame ends (`check_framing` judges the opcodes inside it).
    pub(super) fn load_frame(&mut self, op: &Op<'_>) -> Flow {
        if let Arg::U64(len) = op.arg {
            self.frame_end = Some(op.end().saturating_add(len));
        }
        Flow::Continue
    }

    /// STOP: the result is stored (as anything the pickle returns), and the pickle ends.
    pub(super) fn load_stop(&mut self, op: &Op<'_>) -> Flow {
        let value = self.pop(op.offset, op.opcode);
        self.store(op.offset, &value, None);
        self.last_result = Some(self.sym(&value));
        self.end_pickle(op.end())
    }

    pub(super) fn check_framing(&mut self, op: &Op<'_>) {
        let Some(frame_end) = self.frame_end else {
            return;
        };
        if op.offset >= frame_end {
            self.frame_end = None;
            return;
        }
        let problem = if op.end() > frame_end {
            Some(format!(
                "{} at offset {} runs past the end of its frame at offset {frame_end}",
                op.opcode.name(),
                op.offset
            ))
        } else if op.opcode == Opcode::Frame {
            Some(format!(
                "FRAME at offset {} starts before the current frame ends at offset {frame_end}",
                op.offset
            ))
        } else if op.opcode == Opcode::Stop && op.end() != frame_end {
            Some(format!(
                "STOP at offset {} ends the pickle before its frame ends at offset {frame_end}",
                op.offset
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.finding(
                FindingKind::AmbiguousFraming,
                Severity::High,
                op.offset,
                None,
                format!("{problem}; CPython's C and Python unpicklers and file and memory inputs read this differently"),
            );
        }
    }

    pub(super) fn reset_pickle(&mut self) {
        self.tables.clear();
        self.keep_tuples = false;
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.protocol = 0;
        self.pickle_opcodes = 0;
        self.frame_end = None;
        self.broken = false;
        self.active = false;
        self.persistent_noted = false;
    }

    pub(super) fn end_pickle(&mut self, end: u64) -> Flow {
        self.report.pickles.push(PickleInfo {
            start: self.pickle_start,
            end: Some(end),
            protocol: self.protocol,
            opcodes: self.pickle_opcodes,
        });
        self.reset_pickle();
        // One unpickler reading on keeps its memo: keys of this pickle stay readable.
        self.memo_inherited = true;
        match self.mode {
            Mode::FirstPickle => Flow::Stop,
            Mode::AllPickles => Flow::Continue,
        }
    }

    /// The stream ended or broke inside a pickle (`what` says how).
    pub(super) fn unfinished(&mut self, offset: u64, what: String) {
        if self.report.pickles.is_empty() || self.active {
            let started = self.pickle_opcodes > 0;
            self.break_stream(offset, &what);
            if started {
                self.report.pickles.push(PickleInfo {
                    start: self.pickle_start,
                    end: None,
                    protocol: self.protocol,
                    opcodes: self.pickle_opcodes,
                });
            }
        } else {
            self.finding(
                FindingKind::TrailingData,
                Severity::Warning,
                self.pickle_start.min(offset),
                None,
                format!(
                    "bytes from offset {} on follow the last pickle and are not a pickle ({what})",
                    self.pickle_start.min(offset)
                ),
            );
        }
    }

    /// Where the frame the last opcode ran in ends, while one is open (cleared lazily: an
    /// opcode ending at or after it is outside).
    pub(crate) fn frame_end(&self) -> Option<u64> {
        self.frame_end
    }

    /// The input ended at `offset`: inside a pickle that is a break, after one it is the end.
    pub fn end_of_input(&mut self, offset: u64) {
        if self.pickle_opcodes == 0 {
            if self.report.pickles.is_empty() {
                self.break_stream(offset, "the input holds no pickle (CPython raises EOFError)");
            }
            return;
        }
        self.pickle_start = self.pickle_start.min(offset);
        self.report.ran_out_at.get_or_insert(offset);
        self.unfinished(offset, "the input ends before STOP".into());
    }

    /// The decoder failed: the pickle breaks there (a line over our bound is a limit instead).
    pub fn decode_error(&mut self, error: &DecodeError) {
        if self.pickle_opcodes == 0 {
            self.pickle_start = error.offset();
        }
        if let DecodeError::LineTooLong { .. } = error {
            // Our bound, not a break in the stream: CPython would read on.
            self.limit(error.offset(), &error.to_string());
            return;
        }
        if let DecodeError::Io { .. } = error {
            self.report.read_failed = true;
        }
        // An argument or a line (protocol 0's) cut by the end of the input: ran out, not broken.
        if let DecodeError::Truncated { .. } | DecodeError::UnterminatedLine { .. } = error {
            if self.report.ran_out_at.is_none() {
                self.report.ran_out_at = Some(error.offset());
                if let DecodeError::Truncated { needed, .. } = error {
                    self.report.ran_out_claiming = *needed;
                }
            }
        }
        self.unfinished(error.offset(), error.to_string());
    }
}
