//! pyarrow inside a pickle: `_restore_array((type, length, null_count, offset, buffers,
//! children, dictionary))` rebuilds an array without checking its numbers against its buffers,
//! so reading it reads wherever they point. For the flat types pandas writes (strings, binary,
//! fixed-width numbers), whose buffers are bytes in the pickle, the scanner checks what
//! pyarrow's full validation checks of them: each buffer large enough for `offset + length`
//! items, the null count the validity bitmap's, and string offsets non-decreasing and inside
//! the data. Other types are left to the guard, which runs that validation at load time.

use crate::evaluate::{Heap, Object, Val};
use crate::policy::arrow::{layout, Layout};

use super::arrays::bytes_of;
use super::pickled::outcome;
use super::PickledOutcome;

/// The call whose arrays are checked (pandas reads an Arrow-backed array's length from it too).
pub(super) const RESTORE_ARRAY: (&str, &str) = ("pyarrow.lib", "_restore_array");
const TYPE_FOR_ALIAS: (&str, &str) = ("pyarrow.lib", "type_for_alias");
const PY_BUFFER: (&str, &str) = ("pyarrow.lib", "py_buffer");
const BYTEARRAY: [(&str, &str); 2] = [("builtins", "bytearray"), ("__builtin__", "bytearray")];

/// `_restore_array(...)`: its buffers hold what its type, offset and length say.
pub(super) fn check_arrow_array(heap: &Heap, data: &[u8], restored: &Object) -> PickledOutcome {
    outcome(check(heap, data, restored))
}

/// The array data `_restore_array` was given: `(type, length, null_count, offset, buffers,
/// children, dictionary)`.
pub(super) fn array_data<'h>(heap: &'h Heap, restored: &Object) -> Result<&'h [Val], String> {
    let [fields] = heap.tuple(restored.args).unwrap_or_default() else {
        return Err("_restore_array without its one argument".into());
    };
    heap.tuple(*fields)
        .ok_or_else(|| "an array's data that is not a tuple".into())
}

fn check(heap: &Heap, data: &[u8], restored: &Object) -> Result<Result<(), String>, String> {
    let [kind, length, nulls, offset, buffers, ..] = array_data(heap, restored)? else {
        return Err("an array's data that is not a tuple of seven".into());
    };
    let alias = heap
        .object(*kind)
        .filter(|made| heap.global(made.callee) == Some(TYPE_FOR_ALIAS))
        .and_then(|made| heap.str(*heap.tuple(made.args)?.first()?))
        .ok_or("a type not named by type_for_alias")?;
    let layout =
        layout(alias).ok_or_else(|| format!("a {alias} array (not a flat type the scanner reads)"))?;
    let count = |value: Val, what: &str| {
        heap.int(value)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("an array whose {what} is not a non-negative int"))
    };
    let items = count(*length, "length")?.checked_add(count(*offset, "offset")?);
    let Some(items) = items else {
        return Ok(Err("offset + length overflows".into()));
    };
    let buffers = heap
        .list(*buffers, restored.offset)
        .ok_or("buffers that are not a list as written")?;
    let buffer = |index: usize| -> Result<Option<std::borrow::Cow<'_, [u8]>>, String> {
        match buffers.get(index) {
            None | Some(Val::None) => Ok(None),
            Some(value) => buffer_bytes(heap, data, *value).map(Some),
        }
    };
    // Bytes `bits` per item take; None (too many to hold) is short of any buffer.
    let short = |len: usize, bits: u64| {
        items
            .checked_mul(bits)
            .is_none_or(|b| (len as u64) < b.div_ceil(8))
    };
    let nulls = heap
        .int(*nulls)
        .ok_or("an array whose null count is not an int")?;
    let (first, length) = (count(*offset, "offset")?, count(*length, "length")?);
    // -1: unknown, counted by pyarrow from the bitmap.
    if nulls < -1 || nulls > 0 && nulls as u64 > length {
        return Ok(Err(format!("null count {nulls} for {length} items")));
    }
    match buffer(0)? {
        Some(validity) => {
            if short(validity.len(), 1) {
                return Ok(Err(format!(
                    "validity bitmap of {} bytes for {items} items",
                    validity.len()
                )));
            }
            // pyarrow drops the bitmap of an array given 0 nulls.
            let counted = length - set_bits(&validity, first, length);
            if nulls > 0 && nulls as u64 != counted {
                return Ok(Err(format!(
                    "null count {nulls} for {counted} nulls in the validity bitmap"
                )));
            }
        }
        None if nulls > 0 => {
            return Ok(Err(format!("null count {nulls} without a validity bitmap")));
        }
        None => {}
    }
    match layout {
        Layout::Fixed(bits) => {
            let values = buffer(1)?.ok_or("an array without its data buffer")?;
            if short(values.len(), bits) {
                return Ok(Err(format!(
                    "data buffer of {} bytes for {items} items",
                    values.len()
                )));
            }
        }
        Layout::Offsets { width, text } => {
            let offsets = buffer(1)?.ok_or("an array without its offsets buffer")?;
            let data_buffer = buffer(2)?;
            let values = data_buffer.as_ref().map_or(0, |v| v.len() as u64);
            let entries = items.checked_add(1).and_then(|n| n.checked_mul(width));
            if entries.is_none_or(|e| (offsets.len() as u64) < e) {
                return Ok(Err(format!(
                    "offsets buffer of {} bytes for {items} items",
                    offsets.len()
                )));
            }
            let read = |i: u64| -> Option<i64> {
                let at = usize::try_from(i.checked_mul(width)?).ok()?;
                let bytes = offsets.get(at..at.checked_add(width as usize)?)?;
                Some(match width {
                    4 => i64::from(i32::from_le_bytes(bytes.try_into().ok()?)),
                    _ => i64::from_le_bytes(bytes.try_into().ok()?),
                })
            };
            let mut previous = read(first).ok_or("offsets unreadable")?;
            if previous < 0 {
                return Ok(Err(format!("offset[{first}] is {previous}")));
            }
            for i in first + 1..=items {
                let next = read(i).ok_or("offsets unreadable")?;
                if next < previous || u64::try_from(next).map_or(true, |n| n > values) {
                    return Ok(Err(format!(
                        "offset[{i}] is {next}, after {previous}, outside the {values} data bytes"
                    )));
                }
                previous = next;
            }
            // A decoder leaves the buffer only past the last value's bytes (as the guard checks).
            let end = usize::try_from(previous).unwrap_or(0);
            let tail = data_buffer
                .as_deref()
                .and_then(|d| d.get(end.saturating_sub(4)..end));
            if text && tail.is_some_and(ends_inside_utf8) {
                return Ok(Err("the text ends inside a UTF-8 sequence".into()));
            }
        }
    }
    Ok(Ok(()))
}

/// The set bits (least significant first) of `bitmap` at positions `[first, first + count)`;
/// bits past its end count as clear.
fn set_bits(bitmap: &[u8], first: u64, count: u64) -> u64 {
    let bit = |i: u64| {
        usize::try_from(i / 8)
            .ok()
            .and_then(|at| bitmap.get(at))
            .map_or(0, |byte| u64::from(byte >> (i % 8) & 1))
    };
    let end = first.saturating_add(count);
    let whole = (first.div_ceil(8), end / 8);
    if whole.0 >= whole.1 {
        return (first..end).map(bit).sum();
    }
    let bytes = usize::try_from(whole.0)
        .ok()
        .zip(usize::try_from(whole.1).ok())
        .and_then(|(from, to)| bitmap.get(from..to))
        .unwrap_or_default();
    (first..whole.0 * 8).map(bit).sum::<u64>()
        + bytes.iter().map(|b| u64::from(b.count_ones())).sum::<u64>()
        + (whole.1 * 8..end).map(bit).sum::<u64>()
}

/// Whether `tail` (the last bytes of a text) ends before its last UTF-8 sequence does.
fn ends_inside_utf8(tail: &[u8]) -> bool {
    for (back, byte) in tail.iter().rev().enumerate() {
        if byte & 0xC0 != 0x80 {
            let needed = match byte {
                0x00..=0x7F => 1,
                _ if byte >> 5 == 0x6 => 2,
                _ if byte >> 4 == 0xE => 3,
                _ => 4,
            };
            return needed > back + 1;
        }
    }
    false
}

/// The bytes of `py_buffer(bytes)` or `py_buffer(bytearray(bytes))` (protocols < 5).
fn buffer_bytes<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Result<std::borrow::Cow<'d, [u8]>, String> {
    let made = heap
        .object(value)
        .filter(|made| heap.global(made.callee) == Some(PY_BUFFER))
        .ok_or("a buffer not made by py_buffer")?;
    let mut inner = *heap
        .tuple(made.args)
        .and_then(|args| args.first())
        .ok_or("py_buffer without its argument")?;
    if let Some(copy) = heap
        .object(inner)
        .filter(|o| heap.global(o.callee).is_some_and(|c| BYTEARRAY.contains(&c)))
    {
        inner = *heap
            .tuple(copy.args)
            .and_then(|args| args.first())
            .ok_or("bytearray without its argument")?;
    }
    bytes_of(heap, data, inner).ok_or_else(|| "a buffer whose bytes are not in the pickle".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests::{evaluate, Asm};
    use crate::native_state::check_pickled;

    /// `_restore_array((type_for_alias(alias), length, 0, offset, [None, py_buffer(b1), ...], [], None))`.
    fn restored(alias: &str, length: i32, offset: i32, buffers: &[&[u8]]) -> Vec<u8> {
        restored_with_nulls(alias, length, 0, offset, None, buffers)
    }

    /// The same with a null count and a validity bitmap.
    fn restored_with_nulls(
        alias: &str,
        length: i32,
        nulls: i32,
        offset: i32,
        validity: Option<&[u8]>,
        buffers: &[&[u8]],
    ) -> Vec<u8> {
        let mut asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("pyarrow.lib", "_restore_array")
            .op(b'(')
            .global("pyarrow.lib", "type_for_alias")
            .text(alias)
            .op(0x85)
            .op(b'R')
            .int(length)
            .int(nulls)
            .int(offset)
            .op(b']')
            .op(b'(');
        asm = match validity {
            Some(bitmap) => asm
                .global("pyarrow.lib", "py_buffer")
                .bytes(bitmap)
                .op(0x85)
                .op(b'R'),
            None => asm.op(b'N'),
        };
        for buffer in buffers {
            asm = asm
                .global("pyarrow.lib", "py_buffer")
                .bytes(buffer)
                .op(0x85)
                .op(b'R');
        }
        asm.op(b'e')
            .op(b']')
            .op(b'N')
            .op(b't')
            .op(0x85)
            .op(b'R')
            .op(b'.')
            .0
    }

    fn outcome(data: &[u8]) -> PickledOutcome {
        let evaluator = evaluate(data, 1 << 20);
        let found = check_pickled(&evaluator.heap, data);
        assert_eq!(found.len(), 1);
        found[0].outcome.clone()
    }

    fn offsets(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn strings_whose_offsets_stay_in_their_data_are_intact() {
        let data = restored("large_string", 3, 0, &[&offsets(&[0, 1, 1, 4]), b"accc"]);
        assert_eq!(outcome(&data), PickledOutcome::Intact);
        // A slice: items 1..3 of the same buffers.
        let data = restored("large_string", 2, 1, &[&offsets(&[0, 1, 1, 4]), b"accc"]);
        assert_eq!(outcome(&data), PickledOutcome::Intact);
    }

    #[test]
    fn offsets_past_the_data_or_backwards_are_broken() {
        for bad in [[0, 1, 1, 5], [0, 2, 1, 4], [-1, 1, 1, 4]] {
            let data = restored("large_string", 3, 0, &[&offsets(&bad), b"accc"]);
            assert!(matches!(outcome(&data), PickledOutcome::Broken(_)), "{bad:?}");
        }
        // Too few offsets for the length, or a length and offset that overflow.
        let data = restored("large_string", 9, 0, &[&offsets(&[0, 1, 1, 4]), b"accc"]);
        assert!(matches!(outcome(&data), PickledOutcome::Broken(_)));
        let data = restored("large_string", i32::MAX, i32::MAX, &[&offsets(&[0]), b""]);
        assert!(matches!(outcome(&data), PickledOutcome::Broken(_)));
    }

    #[test]
    fn text_ending_inside_a_utf8_sequence_is_broken_but_binary_is_not() {
        let four = 4_i32.to_le_bytes();
        let offsets32: Vec<u8> = [0_i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let data = restored("string", 1, 0, &[&offsets32, b"a\xe2"]);
        assert!(matches!(outcome(&data), PickledOutcome::Broken(why) if why.contains("UTF-8")));
        let data = restored("binary", 1, 0, &[&offsets32, b"a\xe2"]);
        assert_eq!(outcome(&data), PickledOutcome::Intact);
        // Fixed width: four int32 need 16 bytes.
        let data = restored("int32", 4, 0, &[&four]);
        assert!(matches!(outcome(&data), PickledOutcome::Broken(_)));
        let data = restored("int32", 1, 0, &[&four]);
        assert_eq!(outcome(&data), PickledOutcome::Intact);
    }

    #[test]
    fn the_null_count_is_the_bitmaps() {
        let eight = [0_u8; 80];
        // Items 0..10 of 0b1111_0110, 0b0000_0010: nulls at 0, 3, 8; a slice from 2 has 2.
        let bitmap: &[u8] = &[0b1111_0110, 0b0000_0010];
        for (nulls, offset, length, intact) in [
            (3, 0, 10, true),
            (2, 2, 8, true),
            (1, 8, 2, true),
            (-1, 0, 10, true),
            (0, 0, 10, true),
            (2, 0, 10, false),
            (4, 0, 10, false),
            (11, 0, 10, false),
            (-2, 0, 10, false),
        ] {
            let data = restored_with_nulls("int64", length, nulls, offset, Some(bitmap), &[&eight[..]]);
            assert_eq!(
                outcome(&data) == PickledOutcome::Intact,
                intact,
                "{nulls} nulls in {offset}..+{length}"
            );
        }
        let data = restored_with_nulls("int64", 1, 1, 0, None, &[&eight[..]]);
        assert!(
            matches!(outcome(&data), PickledOutcome::Broken(why) if why.contains("without a validity bitmap"))
        );
    }

    #[test]
    fn set_bits_counts_any_range() {
        let bitmap = [0b1010_1010_u8, 0xFF, 0b0000_0001];
        for first in 0..24 {
            for count in 0..=24 - first {
                let slow = (first..first + count)
                    .filter(|i| bitmap[(i / 8) as usize] >> (i % 8) & 1 == 1)
                    .count();
                assert_eq!(set_bits(&bitmap, first, count), slow as u64, "{first}..+{count}");
            }
        }
    }

    #[test]
    fn types_the_scanner_does_not_lay_out_are_left_to_the_guard() {
        let data = restored("string_view", 1, 0, &[&[0; 16]]);
        assert!(matches!(outcome(&data), PickledOutcome::Unchecked(_)));
    }
}
