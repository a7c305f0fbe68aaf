//! NumPy `.npy` headers (versions 1.0, 2.0, 3.0). An object-dtype array is stored as a pickle
//! right after the header (`np.load(allow_pickle=True)` unpickles it); any other dtype is raw
//! bytes that are never read.

use thiserror::Error;

use super::pylit::{self, Lit};

/// The magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why a `.npy` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NpyError {
    /// The input ends before the header does.
    #[error("the .npy header is truncated: it needs {needed} bytes, {available} are there")]
    Truncated {
        /// Bytes the header needs from the start of the input.
        needed: u64,
        /// Bytes the input holds.
        available: u64,
    },
    /// The input does not start with [`MAGIC`].
    #[error("not a .npy file (no magic string at offset 0)")]
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor} at offset 6")]
    Version {
        /// Major version byte (offset 6).
        major: u8,
        /// Minor version byte (offset 7).
        minor: u8,
    },
    /// The header text is not the dict numpy writes (descr, fortran_order, shape).
    #[error("the .npy header at offset {offset} is not what numpy accepts: {what}")]
    Header {
        /// Offset of the header text from the start of the input (10 or 12).
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
}

/// What the header's dtype makes numpy do with the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Raw array bytes.
    Raw,
    /// A pickle (the dtype holds Python objects).
    Pickle,
    /// The descr is not one the scanner can classify.
    Unknown(String),
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version as (major, minor).
    pub version: (u8, u8),
    /// Offset of the array data (or pickle) from the start of the file.
    pub data_offset: u64,
    /// The header's `descr` (the dtype), as the `Debug` form of its parsed literal, for display.
    pub descr: String,
    /// The `descr` when it is one type string (`<f4`, `|b1`), not a structured or subarray dtype.
    pub type_str: Option<String>,
    /// The header's `fortran_order`: whether the array is stored column-major.
    pub fortran_order: bool,
    /// The header's `shape`: the length of each dimension.
    pub shape: Vec<u64>,
    /// What numpy does with the bytes after the header, from `descr`.
    pub payload: Payload,
}

/// The total header length (magic, version, length field and header text), from the first
/// 12 bytes.
pub fn header_end(data: &[u8]) -> Result<u64, NpyError> {
    if data.len() < 8 {
        return Err(NpyError::Truncated {
            needed: 8,
            available: data.len() as u64,
        });
    }
    if data.get(..6) != Some(MAGIC.as_slice()) {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (
        data.get(6).copied().unwrap_or(0),
        data.get(7).copied().unwrap_or(0),
    );
    let field = |n: usize| -> Result<u64, NpyError> {
        let bytes = data.get(8..8 + n).ok_or(NpyError::Truncated {
            needed: 8 + n as u64,
            available: data.len() as u64,
        })?;
        Ok(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    match (major, minor) {
        (1, 0) => Ok(10 + field(2)?),
        (2, 0) | (3, 0) => Ok(12 + field(4)?),
        _ => Err(NpyError::Version { major, minor }),
    }
}

/// Parses the header; `data` must hold at least `header_end(data)` bytes.
pub fn parse_header(data: &[u8]) -> Result<NpyHeader, NpyError> {
    let end = header_end(data)?;
    let version = (
        data.get(6).copied().unwrap_or(0),
        data.get(7).copied().unwrap_or(0),
    );
    let start: u64 = if version.0 == 1 { 10 } else { 12 };
    let text = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| data.get(s..e))
        .ok_or(NpyError::Truncated {
            needed: end,
            available: data.len() as u64,
        })?;
    let header_err = |what: String| NpyError::Header { offset: start, what };
    // Versions 1 and 2 are latin-1, version 3 is UTF-8.
    let text: String = if version.0 == 3 {
        std::str::from_utf8(text)
            .map_err(|e| header_err(format!("not UTF-8: {e}")))?
            .to_string()
    } else {
        text.iter().map(|&b| char::from(b)).collect()
    };
    let lit = pylit::parse(&text).map_err(|(at, what)| header_err(format!("{what} at character {at}")))?;
    let Lit::Dict(items) = lit else {
        return Err(header_err("the header is not a dict".into()));
    };
    let key = |name: &str| {
        items.iter().find_map(|(k, v)| match k {
            Lit::Str(k) if k == name => Some(v),
            _ => None,
        })
    };
    if items.len() != 3 {
        return Err(header_err(format!(
            "the header has {} keys, not descr, fortran_order and shape",
            items.len()
        )));
    }
    let (Some(descr), Some(fortran), Some(shape)) = (key("descr"), key("fortran_order"), key("shape")) else {
        return Err(header_err(
            "the header lacks descr, fortran_order or shape".into(),
        ));
    };
    let Lit::Bool(fortran_order) = fortran else {
        return Err(header_err("fortran_order is not a bool".into()));
    };
    let Lit::Tuple(dims) = shape else {
        return Err(header_err("shape is not a tuple".into()));
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Lit::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| header_err("shape is not a tuple of non-negative ints".into()))?;
    Ok(NpyHeader {
        version,
        data_offset: end,
        descr: format!("{descr:?}"),
        type_str: match descr {
            Lit::Str(text) => Some(text.clone()),
            _ => None,
        },
        fortran_order: *fortran_order,
        shape,
        payload: classify(descr, 0),
    })
}

/// A simple dtype string as numpy's `dtype.str` writes it: `<f8`, `|b1`, `<U5`, `<M8[ns]`.
fn simple_kind(spec: &str) -> Option<char> {
    let body = spec.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = body.chars();
    let kind = chars.next()?;
    let rest: String = chars.collect();
    let (size, unit) = match rest.find('[') {
        Some(open) => (rest.get(..open)?, Some(rest.get(open..)?)),
        None => (rest.as_str(), None),
    };
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(unit) = unit {
        let inner = unit.strip_prefix('[')?.strip_suffix(']')?;
        if !inner.bytes().all(|b| b.is_ascii_alphanumeric()) || !matches!(kind, 'M' | 'm') {
            return None;
        }
    }
    kind.is_ascii_alphabetic()
        .then_some(kind)
        .or((kind == '?').then_some('?'))
}

fn classify(descr: &Lit, depth: usize) -> Payload {
    if depth > 32 {
        return Payload::Unknown("the dtype nests too deeply".into());
    }
    match descr {
        Lit::Str(spec) => {
            let mut verdict = Payload::Raw;
            for part in spec.split(',') {
                match simple_kind(part.trim()) {
                    Some('O') => return Payload::Pickle,
                    Some(k) if "?bBhHiIlLqQpPefdgFDGSaUVmMucsT".contains(k) => {}
                    _ => verdict = Payload::Unknown(format!("dtype {spec:?} is not a form numpy writes")),
                }
            }
            verdict
        }
        // Structured: [(name, descr[, shape]), ...] (name may be (title, name)).
        Lit::List(fields) => {
            let mut verdict = Payload::Raw;
            for field in fields {
                let sub = match field {
                    Lit::Tuple(parts) if (2..=3).contains(&parts.len()) => match parts.get(1) {
                        Some(d) => classify(d, depth + 1),
                        None => Payload::Unknown("an empty field".into()),
                    },
                    _ => Payload::Unknown("a structured field is not a (name, dtype[, shape]) tuple".into()),
                };
                match sub {
                    Payload::Pickle => return Payload::Pickle,
                    Payload::Unknown(why) => verdict = Payload::Unknown(why),
                    Payload::Raw => {}
                }
            }
            verdict
        }
        // Subarray: (descr, shape).
        Lit::Tuple(parts) if parts.len() == 2 => match parts.first() {
            Some(d) => classify(d, depth + 1),
            None => Payload::Unknown("an empty dtype tuple".into()),
        },
        other => Payload::Unknown(format!("dtype {other:?} is not a form numpy writes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out
    }

    #[test]
    fn classifies_dtypes() {
        let h = parse_header(&npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n",
        ))
        .unwrap();
        assert_eq!(h.payload, Payload::Raw);
        assert_eq!(h.shape, vec![2, 3]);
        let h = parse_header(&npy(
            2,
            "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
        ))
        .unwrap();
        assert_eq!(h.payload, Payload::Pickle);
        let h = parse_header(&npy(
            3,
            "{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, 'shape': ()}",
        ))
        .unwrap();
        assert_eq!(h.payload, Payload::Pickle);
        // An escaped 'O' is still object.
        let h = parse_header(&npy(1, "{'descr': '\\x4f', 'fortran_order': False, 'shape': ()}")).unwrap();
        assert_eq!(h.payload, Payload::Pickle);
        let h = parse_header(&npy(
            1,
            "{'descr': 'object', 'fortran_order': False, 'shape': ()}",
        ))
        .unwrap();
        assert!(matches!(h.payload, Payload::Unknown(_)));
        let h = parse_header(&npy(
            1,
            "{'descr': '<M8[ns]', 'fortran_order': True, 'shape': (1,)}",
        ))
        .unwrap();
        assert_eq!(h.payload, Payload::Raw);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(matches!(
            parse_header(b"\x93NUMPY\x04\x00\x00\x00"),
            Err(NpyError::Version { .. })
        ));
        assert!(matches!(
            parse_header(b"\x93NUMPY\x01\x00\xff\xff{"),
            Err(NpyError::Truncated { .. })
        ));
        assert!(matches!(
            parse_header(&npy(1, "{'descr': '<f8'}")),
            Err(NpyError::Header { .. })
        ));
        assert!(matches!(
            parse_header(&npy(1, "{'descr': '<f8', 'fortran_order': 0, 'shape': ()}")),
            Err(NpyError::Header { .. })
        ));
        assert!(matches!(
            parse_header(&npy(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"
            )),
            Err(NpyError::Header { .. })
        ));
        assert!(matches!(
            parse_header(b"\x93NUMP"),
            Err(NpyError::Truncated { .. })
        ));
    }
}
