//! Archives and compressors the scanner cannot open (7z, rar, cab, ar, cpio, lzip, unix
//! compress, and a `ZF` file whose header joblib_zf.rs cannot read): recognised by magic bytes
//! and reported, never skipped silently.

use crate::findings::{FindingKind, Severity};

use super::{Container, Ctx, Format, Parsed, Probe};

/// Archives and compressors the scanner cannot open, by magic bytes.
const UNSUPPORTED: [(&[u8], &str); 9] = [
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"MSCF\0\0\0\0", "cab"),
    (b"!<arch>\n", "ar"),
    (b"070701", "cpio"),
    (b"070707", "cpio"),
    (b"LZIP", "lzip"),
    (b"\x1f\x9d", "unix-compress"),
    (b"ZF", "joblib-compat"),
];

/// The archives and compressors in [`UNSUPPORTED`].
pub(crate) struct Unsupported;

/// An unsupported archive, by name.
struct Recognised {
    name: &'static str,
}

impl Container for Unsupported {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        let (_, name) = UNSUPPORTED.iter().find(|(magic, _)| data.starts_with(magic))?;
        Some(Box::new(Recognised { name }))
    }
}

impl Parsed<'_> for Recognised {
    fn format(&self) -> Format {
        Format::UnsupportedArchive(self.name)
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, _depth: usize) -> Format {
        let name = self.name;
        ctx.finding(
            location,
            FindingKind::Unsupported,
            Severity::High,
            0,
            format!(
                "a {name} archive or stream, which the scanner cannot open: its content was not analysed"
            ),
        );
        Format::UnsupportedArchive(name)
    }
}
