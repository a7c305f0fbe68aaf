//! The two inputs no container reads: empty input (first in the registry) and bytes no
//! container recognises (the registry's fallback), which may still end in an appended zip.

use crate::findings::{FindingKind, Severity};

use super::zip_family::appended_archive;
use super::{Container, Ctx, Format, Parsed, Probe, Stream};

/// Empty input.
pub(crate) struct Empty;

/// Empty input, recognised.
struct Nothing;

impl Container for Empty {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        data.is_empty()
            .then(|| Box::new(Nothing) as Box<dyn Parsed<'d> + 'd>)
    }
}

impl Parsed<'_> for Nothing {
    fn format(&self) -> Format {
        Format::Empty
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, _depth: usize) -> Format {
        ctx.finding(
            location,
            FindingKind::NonPickleFormat,
            Severity::Info,
            0,
            "empty: nothing to load".into(),
        );
        Format::Empty
    }
}

/// What no container in the registry recognises; never in the registry itself.
pub(crate) struct Unknown;

/// Bytes no container recognises.
struct Unrecognised<'d> {
    data: &'d [u8],
}

impl Unknown {
    /// `data` as unknown bytes.
    pub fn parsed<'d>(&self, data: &'d [u8]) -> Box<dyn Parsed<'d> + 'd> {
        Box::new(Unrecognised { data })
    }
}

impl Container for Unknown {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        Some(self.parsed(data))
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, _stream: Stream<'_>, location: &str, _depth: usize) -> Format {
        // Not even a kept walk reads the rest: it is not a pickle.
        ctx.finding(location, FindingKind::NonPickleFormat, Severity::Info, 0, "not a recognised model format, and its start is not a pickle that would import or call anything; the rest was not analysed".into());
        Format::Unknown
    }
}

impl<'d> Parsed<'d> for Unrecognised<'d> {
    fn format(&self) -> Format {
        Format::Unknown
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        ctx.finding(
            location,
            FindingKind::NonPickleFormat,
            Severity::Info,
            0,
            "not a recognised model format, and not a pickle that would import or call anything".into(),
        );
        appended_archive(ctx, self.data, location, depth);
        Format::Unknown
    }
}
