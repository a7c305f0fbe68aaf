//! Just enough of Python's literal syntax (`ast.literal_eval`) to read `.npy` headers: dicts,
//! lists, tuples, str (with escapes), int, True/False/None. Bounded depth; never panics.

/// A Python literal as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A str, escapes decoded.
    Str(String),
    /// A decimal int (a Python 2 `L` suffix is accepted).
    Int(i128),
    /// `True` or `False`.
    Bool(bool),
    /// `None`.
    None,
    /// A tuple (`()`, `(x,)`, `(x, y)`; `(x)` is just `x`).
    Tuple(Vec<Lit>),
    /// A list.
    List(Vec<Lit>),
    /// A dict's items in source order (duplicate keys are kept).
    Dict(Vec<(Lit, Lit)>),
}

const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a [char],
    pos: usize,
}

/// Parses one literal; `Err` holds the character offset and what went wrong.
pub fn parse(text: &str) -> Result<Lit, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut parser = Parser { text: &chars, pos: 0 };
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != chars.len() {
        return Err((parser.pos, "unexpected text after the literal".into()));
    }
    Ok(value)
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, (usize, String)> {
        Err((self.pos, what.to_string()))
    }

    fn value(&mut self, depth: usize) -> Result<Lit, (usize, String)> {
        if depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        self.skip_ws();
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(Lit::Dict(items));
                    }
                    let key = self.value(depth + 1)?;
                    self.skip_ws();
                    if self.peek() != Some(':') {
                        return self.err("expected ':'");
                    }
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    items.push((key, value));
                    self.skip_ws();
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some('}') => {}
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(open @ ('(' | '[')) => {
                self.pos += 1;
                let close = if open == '(' { ')' } else { ']' };
                let mut items = Vec::new();
                let mut trailing_comma = false;
                loop {
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    trailing_comma = false;
                    match self.peek() {
                        Some(',') => {
                            self.pos += 1;
                            trailing_comma = true;
                        }
                        Some(c) if c == close => {}
                        _ => return self.err("expected ',' or a closing bracket"),
                    }
                }
                if open == '[' {
                    return Ok(Lit::List(items));
                }
                // `(x)` is just x; `(x,)` and `()` are tuples.
                if items.len() == 1 && !trailing_comma {
                    return Ok(items.pop().unwrap_or(Lit::None));
                }
                Ok(Lit::Tuple(items))
            }
            Some(quote @ ('\'' | '"')) => self.string(quote),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.int(),
            Some(c) if c.is_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let word: String = self
                    .text
                    .get(start..self.pos)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                match word.as_str() {
                    "True" => Ok(Lit::Bool(true)),
                    "False" => Ok(Lit::Bool(false)),
                    "None" => Ok(Lit::None),
                    _ => Err((start, format!("{word:?} is not a literal"))),
                }
            }
            _ => self.err("expected a literal"),
        }
    }

    fn int(&mut self) -> Result<Lit, (usize, String)> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_ws();
        let mut value: i128 = 0;
        let mut digits = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(d)))
                .ok_or((start, "int too large".to_string()))?;
            self.pos += 1;
            digits += 1;
            if self.peek() == Some('_') {
                self.pos += 1;
            }
        }
        if digits == 0 {
            return Err((start, "expected digits".into()));
        }
        // numpy strips Python 2 long suffixes before evaluating.
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        Ok(Lit::Int(if negative { -value } else { value }))
    }

    fn hex(&mut self, n: usize) -> Result<char, (usize, String)> {
        let mut value: u32 = 0;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or((self.pos, "bad escape".to_string()))?;
            value = value * 16 + d;
            self.pos += 1;
        }
        char::from_u32(value).ok_or((self.pos, "escape is not a character".into()))
    }

    fn string(&mut self, quote: char) -> Result<Lit, (usize, String)> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            self.pos += 1;
            match c {
                c if c == quote => return Ok(Lit::Str(out)),
                '\n' => return self.err("newline in string"),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        '\n' => {}
                        '\\' | '\'' | '"' => out.push(e),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        'x' => out.push(self.hex(2)?),
                        'u' => out.push(self.hex(4)?),
                        'U' => out.push(self.hex(8)?),
                        '0'..='7' => {
                            let mut value = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match self.peek().and_then(|c| c.to_digit(8)) {
                                    Some(d) => {
                                        value = value * 8 + d;
                                        self.pos += 1;
                                    }
                                    None => break,
                                }
                            }
                            out.push(
                                char::from_u32(value).ok_or((self.pos, "bad octal escape".to_string()))?,
                            );
                        }
                        'N' => return self.err("named escapes are not supported"),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_npy_headers() {
        let lit = parse("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }").unwrap();
        let Lit::Dict(items) = lit else { panic!() };
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].1, Lit::Tuple(vec![Lit::Int(3), Lit::Int(4)]));
        assert_eq!(parse("(5,)").unwrap(), Lit::Tuple(vec![Lit::Int(5)]));
        assert_eq!(parse("(5)").unwrap(), Lit::Int(5));
        assert_eq!(parse("'\\x4f'").unwrap(), Lit::Str("O".into()));
        assert_eq!(parse("3L").unwrap(), Lit::Int(3));
        assert!(parse("{'a': foo}").is_err());
        assert!(parse(&"[".repeat(1000)).is_err());
    }
}
