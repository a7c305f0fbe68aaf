//! The one driver loop, shared by slices ([`analyze_slice`](super::analyze_slice)), streams
//! ([`run`](super::run), [`analyze_reader`](super::analyze_reader)) and joblib
//! (`formats::joblib::drive`, which reads arrays between opcodes): a rule added to `step` runs
//! wherever opcodes are analysed, and the fast path runs wherever a caller allows it.

use super::{Analyzer, Flow};
use crate::decoder::{Decoder, Op, Source};

/// Why [`drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The analyzer said stop (after the first pickle's STOP, or at a limit).
    Stopped,
    /// The input ended.
    Input,
    /// The decoder failed.
    Error,
    /// The caller's read between opcodes ([`Between::after`]) ended it.
    Caller,
}

/// What a caller does around each opcode the driver runs.
pub(crate) trait Between<S: Source> {
    /// Sees every opcode the decoder yields, before it runs.
    fn see(&mut self, _op: &Op<'_>) {}

    /// Runs after each opcode, which ended at `op_end`: reads what the loader would read from
    /// the stream before the next opcode. Returns the decoder to go on with and whether to.
    fn after(&mut self, machine: &mut Analyzer<'_>, decoder: Decoder<S>, op_end: u64) -> (Decoder<S>, bool);
}

/// Nothing between opcodes: a plain pickle.
pub(crate) struct Plain;

impl<S: Source> Between<S> for Plain {
    fn after(&mut self, _: &mut Analyzer<'_>, decoder: Decoder<S>, _: u64) -> (Decoder<S>, bool) {
        (decoder, true)
    }
}

/// Runs `machine` over `decoder` until analysis stops or the input ends. With `fast`, the
/// opcodes the fast path handles run straight from the source's bytes when it holds them all
/// ([`Source::window`]); `between` sees every opcode that goes through `step`. Returns the
/// decoder where reading stopped.
pub(crate) fn drive<S: Source>(
    machine: &mut Analyzer<'_>,
    mut decoder: Decoder<S>,
    fast: bool,
    between: &mut impl Between<S>,
) -> (Decoder<S>, End) {
    loop {
        if fast {
            if let Some((data, at)) = decoder.source().window() {
                let resumed = machine.fast_forward(data, at);
                if resumed != at {
                    decoder.source_mut().advance_to(resumed);
                }
            }
        }
        let position = decoder.position();
        let (flow, op_end) = match decoder.next_op() {
            Ok(Some(op)) => {
                between.see(&op);
                (machine.step(&op), op.end())
            }
            Ok(None) => {
                machine.end_of_input(position);
                return (decoder, End::Input);
            }
            Err(error) => {
                machine.decode_error(&error);
                return (decoder, End::Error);
            }
        };
        let (rest, go_on) = between.after(machine, decoder, op_end);
        decoder = rest;
        if !go_on {
            return (decoder, End::Caller);
        }
        if flow == Flow::Stop {
            return (decoder, End::Stopped);
        }
    }
}
