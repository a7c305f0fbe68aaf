//! `torch.save(..., _use_new_zipfile_serialization=False)`: sequential pickles and raw storages
//! ([`crate::formats::torch::scan_legacy`]), read from memory or as they stream.

use crate::analyzer::Mode;
use crate::decoder::Decoder;

use super::super::torch;
use super::zip_family::appended_archive;
use super::{Container, Ctx, Format, Parsed, Probe, Stream};

/// The PyTorch legacy format.
pub(crate) struct TorchLegacy;

/// Bytes that start with the legacy magic number.
struct Recognised<'d> {
    data: &'d [u8],
}

impl Container for TorchLegacy {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        torch::is_legacy(data).then(|| Box::new(Recognised { data }) as Box<dyn Parsed<'d> + 'd>)
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        let options = ctx.analysis(Mode::FirstPickle);
        let report = torch::scan_legacy(
            Decoder::from_reader(stream.reader, options.limits.stream),
            ctx.policy,
            &options,
        );
        ctx.add_pickle(location, stream.format.name(), report, None, depth);
        ctx.note_budget(location);
        stream.format
    }
}

impl<'d> Parsed<'d> for Recognised<'d> {
    fn format(&self) -> Format {
        Format::PytorchLegacy
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let report = torch::scan_legacy(
            Decoder::from_slice(self.data),
            ctx.policy,
            &ctx.analysis(Mode::FirstPickle),
        );
        ctx.add_pickle(
            location,
            Format::PytorchLegacy.name(),
            report,
            Some((self.data, 0)),
            depth,
        );
        appended_archive(ctx, self.data, location, depth);
        Format::PytorchLegacy
    }
}
