//! CPython's text decodings that pickle arguments go through, byte for byte.
//!
//! Strings are kept as "WTF-8": UTF-8 in which lone surrogates (which `surrogatepass` and
//! `raw_unicode_escape` let through) are encoded as ordinary three-byte sequences. A string that
//! holds a surrogate is never valid `str` in Rust and so can never match a policy entry.

/// Incremental validator for UTF-8 decoded with `errors="surrogatepass"` (what `_pickle.c` uses
/// for BINUNICODE and friends). Feed it chunks; `finish` says whether the whole was valid.
#[derive(Debug, Default, Clone)]
pub struct Utf8SurrogatePass {
    /// Continuation bytes still expected for the current sequence.
    pending: u8,
    /// Allowed range of the next continuation byte (narrowed after a lead byte).
    low: u8,
    high: u8,
    failed: bool,
}

impl Utf8SurrogatePass {
    /// A validator that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk (sequences may span chunks).
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        for &byte in chunk {
            if self.pending > 0 {
                if byte < self.low || byte > self.high {
                    self.failed = true;
                    return;
                }
                self.pending -= 1;
                self.low = 0x80;
                self.high = 0xBF;
                continue;
            }
            let (pending, low, high) = match byte {
                0x00..=0x7F => continue,
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                // 0xED would lead to surrogates; surrogatepass accepts them.
                0xE1..=0xEF => (2, 0x80, 0xBF),
                0xF0 => (3, 0x90, 0xBF),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => {
                    self.failed = true;
                    return;
                }
            };
            self.pending = pending;
            self.low = low;
            self.high = high;
        }
    }

    /// Whether everything fed was valid and no sequence is left open.
    pub fn finish(&self) -> bool {
        !self.failed && self.pending == 0
    }
}

/// Whether `bytes` decode as UTF-8 with `errors="surrogatepass"`.
pub fn is_valid_utf8_surrogatepass(bytes: &[u8]) -> bool {
    let mut validator = Utf8SurrogatePass::new();
    validator.feed(bytes);
    validator.finish()
}

/// Appends code point `cp` (which may be a lone surrogate) as WTF-8.
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    // Truncating casts are the encoding itself: each byte takes six bits.
    #[allow(clippy::cast_possible_truncation)]
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => {
            out.push(0xC0 | (cp >> 6) as u8);
            out.push(0x80 | (cp & 0x3F) as u8);
        }
        0x800..=0xFFFF => {
            out.push(0xE0 | (cp >> 12) as u8);
            out.push(0x80 | ((cp >> 6) & 0x3F) as u8);
            out.push(0x80 | (cp & 0x3F) as u8);
        }
        _ => {
            out.push(0xF0 | (cp >> 18) as u8);
            out.push(0x80 | ((cp >> 12) & 0x3F) as u8);
            out.push(0x80 | ((cp >> 6) & 0x3F) as u8);
            out.push(0x80 | (cp & 0x3F) as u8);
        }
    }
}

/// `codecs.raw_unicode_escape_decode`, as `load_unicode` applies it to the UNICODE line: hands
/// each decoded code point to `emit`. `None` where CPython raises `UnicodeDecodeError`.
fn raw_unicode_escape_code_points(input: &[u8], mut emit: impl FnMut(u32)) -> Option<()> {
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        i += 1;
        if byte != b'\\' {
            emit(u32::from(byte));
            continue;
        }
        let Some(&next) = input.get(i) else {
            emit(u32::from(b'\\'));
            continue;
        };
        i += 1;
        let digits = match next {
            b'u' => 4,
            b'U' => 8,
            _ => {
                emit(u32::from(b'\\'));
                emit(u32::from(next));
                continue;
            }
        };
        let mut cp: u32 = 0;
        for _ in 0..digits {
            let digit = char::from(*input.get(i)?).to_digit(16)?;
            cp = (cp << 4) | digit;
            i += 1;
        }
        if cp > 0x10FFFF {
            return None;
        }
        emit(cp);
    }
    Some(())
}

/// The UNICODE line decoded, as WTF-8; `None` where CPython raises.
pub fn decode_raw_unicode_escape(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    raw_unicode_escape_code_points(input, |cp| push_code_point(&mut out, cp))?;
    Some(out)
}

/// The length of what [`decode_raw_unicode_escape`] returns, without building it.
pub fn raw_unicode_escape_len(input: &[u8]) -> Option<u64> {
    let mut len = 0u64;
    raw_unicode_escape_code_points(input, |cp| {
        len += match cp {
            0..=0x7F => 1,
            0x80..=0x7FF => 2,
            0x800..=0xFFFF => 3,
            _ => 4,
        }
    })?;
    Some(len)
}

/// `PyBytes_DecodeEscape` (`codecs.escape_decode`), as `load_string` applies it to the quoted
/// STRING argument. `None` where CPython raises.
pub fn decode_escape(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        i += 1;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        // A trailing backslash is an error ("Trailing \ in string").
        let next = *input.get(i)?;
        i += 1;
        match next {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0B),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match input.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // CPython keeps the low byte of an octal escape above \377.
                out.push((value & 0xFF) as u8);
            }
            b'x' => {
                let high = char::from(*input.get(i)?).to_digit(16)?;
                let low = char::from(*input.get(i + 1)?).to_digit(16)?;
                i += 2;
                out.push(((high << 4) | low) as u8);
            }
            other => {
                // Unknown escapes are kept as they are (with a DeprecationWarning).
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// The value of a newline-terminated decimal the way `int(text, base)` reads it
/// (surrounding whitespace, a sign, single underscores between digits).
/// `None` where Python raises or the value does not fit in an `i64`.
pub fn parse_python_int(text: &[u8], base: u32) -> Option<i64> {
    let text = trim_ascii_whitespace(text);
    let (negative, mut digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let mut radix = base;
    if base == 0 {
        radix = 10;
        if let [b'0', marker, rest @ ..] = digits {
            match marker.to_ascii_lowercase() {
                b'x' => (radix, digits) = (16, rest),
                b'o' => (radix, digits) = (8, rest),
                b'b' => (radix, digits) = (2, rest),
                _ => {}
            }
        }
        let strip_prefix_underscore = radix != 10;
        if strip_prefix_underscore {
            if let Some((b'_', rest)) = digits.split_first() {
                digits = rest;
            }
        }
    }
    if digits.is_empty() || digits.first() == Some(&b'_') || digits.last() == Some(&b'_') {
        return None;
    }
    let mut value: i128 = 0;
    let mut previous_underscore = false;
    for &byte in digits {
        if byte == b'_' {
            if previous_underscore {
                return None;
            }
            previous_underscore = true;
            continue;
        }
        previous_underscore = false;
        let digit = char::from(byte).to_digit(radix)?;
        value = value
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(digit))?;
        if value > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    if base == 0 && radix == 10 && digits.len() > 1 && digits.first() == Some(&b'0') && value != 0 {
        // Python rejects "010" in base 0 (ambiguous octal).
        return None;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// `text` without the ASCII whitespace Python's `int()`/`float()` strip from both ends.
pub fn trim_ascii_whitespace(text: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C);
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !is_space(b)).map_or(start, |p| p + 1);
    text.get(start..end).unwrap_or_default()
}

/// Decimal rendering of a little-endian two's-complement integer (LONG1/LONG4 arguments).
pub fn long_le_to_decimal(bytes: &[u8]) -> String {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    // Magnitude as little-endian base-2^32 limbs.
    let mut magnitude: Vec<u32> = Vec::with_capacity(bytes.len() / 4 + 1);
    let mut limb = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let b = if negative { !b } else { b };
        limb |= u32::from(b) << (8 * (i % 4));
        if i % 4 == 3 {
            magnitude.push(limb);
            limb = 0;
        }
    }
    if !bytes.len().is_multiple_of(4) {
        if negative {
            // Bits past the end of a negative number are ones; inverted they are zeros already.
        }
        magnitude.push(limb);
    }
    if negative {
        // Two's complement: magnitude = !x + 1.
        let mut carry = true;
        for limb in magnitude.iter_mut() {
            if !carry {
                break;
            }
            let (sum, overflow) = limb.overflowing_add(1);
            *limb = sum;
            carry = overflow;
        }
        if carry {
            magnitude.push(1);
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|&l| l != 0) {
        let mut remainder: u64 = 0;
        for limb in magnitude.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / 1_000_000_000) as u32;
            remainder = current % 1_000_000_000;
        }
        digits.push(remainder as u32);
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    match digits.split_last() {
        None => out.push('0'),
        Some((most, rest)) => {
            out.push_str(&most.to_string());
            for chunk in rest.iter().rev() {
                out.push_str(&format!("{chunk:09}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_decimal() {
        assert_eq!(long_le_to_decimal(&[]), "0");
        assert_eq!(long_le_to_decimal(&[0xff]), "-1");
        assert_eq!(long_le_to_decimal(&[0x80]), "-128");
        assert_eq!(long_le_to_decimal(&[0xff, 0x00]), "255");
        assert_eq!(
            long_le_to_decimal(&[0, 0, 0, 0, 0, 0, 0, 0x80]),
            "-9223372036854775808"
        );
        assert_eq!(
            long_le_to_decimal(&[0, 0, 0, 0, 0, 0, 0, 0, 1]),
            "18446744073709551616"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(decode_escape(b"a\\x41\\101\\n\\q").unwrap(), b"aAA\n\\q");
        assert!(decode_escape(b"abc\\").is_none());
        assert!(decode_escape(b"\\x4").is_none());
        assert_eq!(
            decode_raw_unicode_escape(b"\\u0041\\\\u0041").unwrap(),
            b"A\\\\u0041"
        );
        assert_eq!(decode_raw_unicode_escape(b"\xe9").unwrap(), "é".as_bytes());
        assert!(decode_raw_unicode_escape(b"\\U00110000").is_none());
        assert_eq!(decode_raw_unicode_escape(b"\\ud800").unwrap(), b"\xed\xa0\x80");
    }

    #[test]
    fn utf8_surrogatepass() {
        assert!(is_valid_utf8_surrogatepass("héllo €𝄞".as_bytes()));
        assert!(is_valid_utf8_surrogatepass(b"\xed\xa0\x80"));
        assert!(!is_valid_utf8_surrogatepass(b"\xc0\x80"));
        assert!(!is_valid_utf8_surrogatepass(b"\xe2\x82"));
        assert!(!is_valid_utf8_surrogatepass(b"\xf4\x90\x80\x80"));
    }

    #[test]
    fn python_ints() {
        assert_eq!(parse_python_int(b" 1_000 ", 10), Some(1000));
        assert_eq!(parse_python_int(b"-12", 10), Some(-12));
        assert_eq!(parse_python_int(b"0x10", 0), Some(16));
        assert_eq!(parse_python_int(b"010", 0), None);
        assert_eq!(parse_python_int(b"1__0", 10), None);
        assert_eq!(parse_python_int(b"", 10), None);
    }
}
