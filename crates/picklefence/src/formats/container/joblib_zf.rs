//! joblib's old single-file compressed format (`joblib.dump(..., compress=...)` up to joblib 0.9,
//! read by `numpy_pickle_compat.read_zfile`, which `joblib.load` still uses): `ZF`, the
//! decompressed length as Python's `hex()` left-justified to 19 characters, an optional space
//! (older writers), then one zlib stream holding the pickle. The pickle is scanned as it
//! decompresses, at `location!<joblib-zf>`, within the scan's budget.

use super::super::compress::Codec;
use super::compressed::{scan_wrapped, Wrapped};
use super::{Container, Ctx, Format, Parsed, Probe};

const MAGIC: &[u8] = b"ZF";
/// `len(hex(2 ** 64))`: the width joblib pads the length to.
const LENGTH_WIDTH: usize = 19;

/// joblib's `ZF` files.
pub(crate) struct JoblibZf;

/// A `ZF` header read: where its zlib stream starts.
struct Recognised<'d> {
    data: &'d [u8],
    zlib_start: usize,
}

/// Where the zlib stream starts, if `data` opens with a `ZF` header `read_zfile` accepts: the
/// length field parses as `int(field, 16)` does for what joblib writes (`0x` and hex digits,
/// padded with spaces). Anything else starting with `ZF` is left to the unsupported formats.
fn zlib_start(data: &[u8]) -> Option<usize> {
    let end = MAGIC.len() + LENGTH_WIDTH;
    let field = data.strip_prefix(MAGIC)?.get(..LENGTH_WIDTH)?;
    let text = std::str::from_utf8(field).ok()?.trim_matches(' ');
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // read_zfile skips one space after the field when there is one.
    Some(if data.get(end) == Some(&b' ') {
        end + 1
    } else {
        end
    })
}

impl Container for JoblibZf {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        let zlib_start = zlib_start(data)?;
        Some(Box::new(Recognised { data, zlib_start }))
    }
}

impl Parsed<'_> for Recognised<'_> {
    fn format(&self) -> Format {
        Format::JoblibZf
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let stream = Wrapped {
            label: "<joblib-zf>",
            offset: self.zlib_start as u64,
            what: "zlib stream of a joblib ZF file",
        };
        let input = self.data.get(self.zlib_start..).unwrap_or_default();
        scan_wrapped(ctx, Codec::Zlib, input, location, &stream, depth);
        Format::JoblibZf
    }
}
