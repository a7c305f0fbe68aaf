//! NumPy bit generators inside a pickle (the guard's `_check_random_generator`): a state setter
//! copies the state and keeps the position in it unchecked, and each draw reads `key[pos++]`
//! (MT19937: 624 words, regenerated when pos reaches 624) or `buffer[buffer_pos++]` (Philox: 4
//! words) with it. The position in [0, 624] or [0, 4], as seeding and drawing keep it; the state
//! a bit generator is built with, and the one a `RandomState` or `Generator` over it sets.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::int_value;
use super::pickled::outcome;
use super::PickledOutcome;

/// The position a bit generator's state dict (`{"bit_generator": name, "state": ...}`) keeps:
/// its field, its value and the end of its range; None for a generator that keeps none.
fn position(
    heap: &Heap,
    data: &[u8],
    state: Val,
    built: u64,
) -> Result<Option<(&'static str, i64, i64)>, String> {
    let name = heap
        .get(state, "bit_generator")
        .and_then(|n| heap.str(n))
        .ok_or("a state without the bit generator's name")?;
    let (holder, key, field, end) = match name {
        "MT19937" => (
            heap.get(state, "state").ok_or("an MT19937 state without state")?,
            "pos",
            "state.pos",
            624,
        ),
        "Philox" => (state, "buffer_pos", "state.buffer_pos", 4),
        _ => return Ok(None), // PCG64, PCG64DXSM and SFC64 keep no position
    };
    if heap.changed_after(holder, built) {
        return Err("a state dict changed after the BUILD that read it".into());
    }
    let value = heap
        .get(holder, key)
        .and_then(|v| int_value(heap, data, v))
        .ok_or_else(|| format!("a state whose {key} is not an int"))?;
    Ok(Some((field, value, end)))
}

/// A bit generator (`__bit_generator_ctor(cls)`), or a `RandomState`/`Generator` over one: the
/// state its BUILD sets (a dict, a dict and a seed sequence, or `RandomState`'s legacy tuple
/// `(name, key, pos, has_gauss, gauss)`) keeps its position in range.
pub(super) fn check_random_generator(heap: &Heap, data: &[u8], generator: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        if generator.rebuilt {
            return Err("a generator given its state twice".into());
        }
        let (Some(state), Some(built)) = (generator.state, generator.built_at) else {
            return Ok(Ok(())); // seeded by its constructor
        };
        let found = match heap.tuple(state) {
            Some([Val::Str(name), _, pos, ..]) => {
                let pos = int_value(heap, data, *pos).ok_or("a legacy state whose pos is not an int")?;
                (heap.str(Val::Str(*name)) == Some("MT19937")).then_some(("state.pos", pos, 624))
            }
            Some([dict, ..]) => position(heap, data, *dict, built)?,
            Some([]) => return Err("an empty state tuple".into()),
            None => position(heap, data, state, built)?,
        };
        Ok(match found {
            Some((field, value, end)) if !(0..=end).contains(&value) => Err(format!(
                "{field} is {value}, outside [0, {end}] (the words of its state)"
            )),
            _ => Ok(()),
        })
    };
    outcome(run())
}
