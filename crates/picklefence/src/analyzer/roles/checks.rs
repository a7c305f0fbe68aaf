//! Checks of constant values the role checks share: decimal and fraction strings, dtype
//! descrs and flags, shapes, time zone names, regular expressions, attribute paths.

use super::*;

/// A `decimal.Decimal` string as `str(Decimal)` writes it, with bounded digits and exponent:
/// `Decimal('1e999999999')` is cheap, but `int()` or arithmetic on it is not.
pub(super) fn is_bounded_decimal(text: &str) -> bool {
    const MAX_DIGITS: usize = 1000;
    const MAX_EXPONENT_DIGITS: usize = 4;
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(body, "NaN" | "sNaN" | "Infinity" | "Inf") {
        return true;
    }
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int_part.len() + frac_part.len();
    let digits_ok = digits > 0
        && digits <= MAX_DIGITS
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= MAX_EXPONENT_DIGITS && e.bytes().all(|b| b.is_ascii_digit())
    });
    digits_ok && exponent_ok
}

/// A `Fraction` as `str(Fraction)` writes it: `-12/34` or `7`, at most 2000 digits.
pub(super) fn is_fraction_str(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (num, den) = body.split_once('/').unwrap_or((body, "1"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    body.len() <= 2000 && digits(num) && digits(den)
}

/// The flags numpy writes in a dtype's state for a kind (`'f8'` -> 0, `'O8'` -> 63): numpy
/// trusts them, and object flags on a kind that holds no objects make it read raw bytes as
/// object pointers.
pub(super) fn dtype_flags_ok(descr: &str, flags: i64, objects_inside: bool) -> bool {
    // NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE | NPY_ITEM_IS_POINTER: "the items are objects".
    const OBJECT_BITS: i64 = 0x07;
    // NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE: a structured dtype with an object field (27).
    const REFCOUNTED: i64 = 0x03;
    if !(0..=0xff).contains(&flags) {
        return false;
    }
    if descr.starts_with('O') {
        flags == 63
    } else if objects_inside {
        flags & REFCOUNTED == REFCOUNTED
    } else {
        flags & OBJECT_BITS == 0
    }
}

/// A dtype descr as numpy writes it in a pickle: a kind and a size (`'f8'`, `'O8'`, `'V16'`,
/// `'M8'`); byte order and units travel in the state. Other spellings (`'object'`, `'|O'`)
/// would hide the kind from the flag rule.
pub(super) fn is_canonical_descr(descr: &str) -> bool {
    let mut chars = descr.chars();
    matches!(
        chars.next(),
        Some('b' | 'i' | 'u' | 'f' | 'c' | 'O' | 'S' | 'U' | 'V' | 'M' | 'm')
    ) && chars.all(|c| c.is_ascii_digit())
}

/// The item size of a dtype made from a canonical `descr` whose state gives `state_size`:
/// flexible kinds (bytes, str, void) take the state's size when it gives one, the others
/// their own (a str's descr counts characters of 4 bytes).
pub(super) fn descr_item_size(descr: &str, state_size: Option<i64>) -> u64 {
    let flexible = descr.starts_with(['S', 'U', 'V']);
    if let Some(size) = state_size.filter(|s| flexible && *s >= 0) {
        return size as u64;
    }
    let digits: u64 = descr[1..].parse().unwrap_or(0);
    if descr.starts_with('U') {
        digits.saturating_mul(4)
    } else {
        digits
    }
}

/// The dimensions of a shape (or stride) tuple, all of them non-negative int constants (read in
/// place: tensor views and arrays are checked by the thousand).
#[derive(Clone, Copy)]
pub(super) struct Dims<'a>(pub(super) &'a [Value]);

impl Dims<'_> {
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|v| match v {
            Value::Int(n) => *n as u64,
            _ => 0, // never: `dims` admits non-negative ints only
        })
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Dims<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

pub(super) fn dims(value: &Value) -> Option<Dims<'_>> {
    let items: &[Value] = match value {
        Value::EmptyTuple => &[],
        Value::Tuple(items, _) => items,
        _ => return None,
    };
    items
        .iter()
        .all(|v| matches!(v, Value::Int(n) if *n >= 0))
        .then_some(Dims(items))
}

/// The element count of a shape tuple of non-negative int constants.
pub(in crate::analyzer) fn shape_numel(shape: &Value) -> Option<u64> {
    match shape {
        Value::EmptyTuple => Some(1),
        Value::Tuple(dims, _) => dims.iter().try_fold(1u64, |acc, d| match d {
            Value::Int(n) if *n >= 0 => acc.checked_mul(*n as u64),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether a value is of a kind `rule` could refuse (a dtype object under `tz-name`, a number
/// under `one-of`... never are).
pub(super) fn could_break(rule: &StateRule, value: &Value) -> bool {
    match rule {
        StateRule::TzName => matches!(
            value,
            Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } | Value::Obj(_)
        ),
        StateRule::Bounded(_) | StateRule::BoundedProduct(_) | StateRule::BoundedGrowth(_) => {
            !matches!(value, Value::None | Value::Bool(_))
        }
        StateRule::NoneOnly => !matches!(value, Value::None),
        _ => true,
    }
}

/// A time zone name or dtype string that names no file: pandas resolves `dateutil/<path>` by
/// opening that path.
pub(super) fn is_safe_tz_name(text: &str) -> bool {
    !text.contains("dateutil/") && !text.starts_with('/') && !text.contains("..") && !text.contains('\\')
}

/// A regular expression Python's backtracking engine matches in polynomial time of low
/// degree: no quantified group that holds a quantifier or an alternation (`(a+)+`, `(a|a)*`),
/// no backreference, at most two unbounded repeats (`\w*\w*\w*...` is a polynomial of high
/// degree) and at most 256 characters.
pub(super) fn is_simple_regex(pattern: &str) -> bool {
    const MAX_UNBOUNDED: usize = 2;
    let bytes = pattern.as_bytes();
    if bytes.len() > 256 || pattern.contains("(?P=") {
        return false;
    }
    // Per open group: whether it holds a quantifier or an alternation.
    let mut groups: Vec<bool> = vec![false];
    let mut unbounded = 0;
    // Whether the atom just closed was a group holding a quantifier or an alternation.
    let mut risky_atom = false;
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let mut atom_risky = false;
        match c {
            b'\\' => {
                if bytes.get(i + 1).is_some_and(|d| (b'1'..=b'9').contains(d)) {
                    return false;
                }
                i += 2;
                risky_atom = false;
                continue;
            }
            b'[' => {
                // A character class is one atom: skip to its unescaped closing bracket.
                i += 1;
                if bytes.get(i) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    i += 1;
                }
                while let Some(&b) = bytes.get(i).filter(|&&b| b != b']') {
                    i += if b == b'\\' { 2 } else { 1 };
                }
            }
            b'(' => groups.push(false),
            b')' => {
                let Some(inner) = groups.pop() else {
                    return false;
                };
                let Some(outer) = groups.last_mut() else {
                    return false;
                };
                *outer |= inner;
                atom_risky = inner;
            }
            b'|' => {
                if let Some(current) = groups.last_mut() {
                    *current = true;
                }
            }
            b'*' | b'+' | b'?' | b'{' => {
                let previous = i.checked_sub(1).and_then(|j| bytes.get(j)).copied();
                let lazy = c == b'?' && matches!(previous, Some(b'*' | b'+' | b'?' | b'}'));
                let group_flag = c == b'?' && previous == Some(b'(');
                if !lazy && !group_flag {
                    let is_unbounded = match c {
                        b'*' | b'+' => true,
                        b'{' => {
                            let rest = pattern.get(i + 1..).unwrap_or("");
                            let body = rest.split('}').next().unwrap_or("");
                            i += body.len() + 1;
                            body.ends_with(',')
                        }
                        _ => false,
                    };
                    if risky_atom {
                        return false;
                    }
                    if is_unbounded {
                        unbounded += 1;
                        if unbounded > MAX_UNBOUNDED {
                            return false;
                        }
                    }
                    if let Some(current) = groups.last_mut() {
                        *current = true;
                    }
                }
            }
            _ => {}
        }
        risky_atom = atom_risky;
        i += 1;
    }
    groups.len() == 1
}

/// A public attribute path: `coef_`, `named_steps.clf.coef_`, `auto`.
pub(super) fn is_attribute_path(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with('_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// `range(stop)`, `range(start, stop[, step])`: at most `max` items.
/// The item size a dtype string under a `tz-name` key may name (as `dtype-size` in calls.txt).
pub(super) const MAX_DTYPE_ITEMSIZE: u64 = 1 << 26;

/// The bytes an element of a dtype string takes (`'U8'`: 32, `'<S5'`: 5, `'V16'`: 16), when
/// it names its size; a unicode character is 4 bytes.
pub(super) fn dtype_itemsize(descr: &str) -> Option<u64> {
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let digits_at = body.find(|c: char| c.is_ascii_digit())?;
    let (kind, rest) = body.split_at(digits_at);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let count = digits.parse::<u64>().unwrap_or(u64::MAX);
    let unit = if kind.ends_with('U') || kind == "str" {
        4
    } else {
        1
    };
    Some(count.saturating_mul(unit))
}

pub(super) fn check_range_len(args: &[Value], max: u64) -> Result<(), String> {
    let int = |i: usize| match args.get(i) {
        Some(Value::Int(v)) => Ok(i128::from(*v)),
        Some(Value::Bool(b)) => Ok(i128::from(*b)),
        _ => Err(format!(
            "argument {i} of range is not an int the scanner can read"
        )),
    };
    let (start, stop, step) = match args.len() {
        1 => (0, int(0)?, 1),
        2 => (int(0)?, int(1)?, 1),
        _ => (int(0)?, int(1)?, int(2)?),
    };
    if step == 0 {
        return Err("a range with step 0".into());
    }
    let len = if step > 0 {
        (stop - start + step - 1).div_euclid(step)
    } else {
        (start - stop - step - 1).div_euclid(-step)
    }
    .max(0);
    if len > i128::from(max) {
        return Err(format!(
            "a range of {len} items (at most {max}): whatever iterates it would materialise it"
        ));
    }
    Ok(())
}

/// Why `key` may not be an item key of a reconstructed object: a special name, or a value made
/// at load time that could be one (a numpy `str_` scalar hashes and compares as its text).
pub(super) fn item_key_problem(key: &Value) -> Option<String> {
    match key {
        Value::Obj(_) | Value::Unknown => Some(format!("made at load time ({})", key.what())),
        _ => key
            .name_bytes()
            .filter(|name| is_special_key(name))
            .map(|name| format!("{:?}", String::from_utf8_lossy(name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_are_bounded() {
        for ok in [
            "1.5",
            "-0",
            "1.5E+10",
            "1E-9999",
            "NaN",
            "-Infinity",
            "sNaN",
            "123456789.000001",
        ] {
            assert!(is_bounded_decimal(ok), "{ok}");
        }
        for bad in ["1e99999", "1E+100000", "", "1.5e", "abc", "1__0", "0x10", "1e1e1"] {
            assert!(!is_bounded_decimal(bad), "{bad}");
        }
        assert!(!is_bounded_decimal(&"9".repeat(1001)));
    }

    #[test]
    fn attribute_paths_are_public_names() {
        assert!(is_attribute_path("coef_"));
        assert!(is_attribute_path("named_steps.clf.feature_importances_"));
        for bad in ["", "_private", "a.__class__", "a..b", "a.b()", "a b"] {
            assert!(!is_attribute_path(bad), "{bad}");
        }
    }
}
