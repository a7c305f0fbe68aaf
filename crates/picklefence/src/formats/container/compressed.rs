//! Compressed streams (gzip, zlib, bzip2, xz, lzma, zstd, lz4): decompressed as they are read,
//! within the scan's budget ([`crate::formats::compress`]), and the content scanned as a stream
//! at `location!<codec>`.

use std::io::Read;

use crate::findings::{FindingKind, Severity};

use super::super::compress::{self, Codec};
use super::super::join;
use super::{scan_reader, Container, Ctx, Format, Parsed, Probe, Stream};

/// Compressed streams.
pub(crate) struct Compressed;

/// Bytes that start like a stream of `codec`.
struct Recognised<'d> {
    data: &'d [u8],
    codec: Codec,
}

impl Container for Compressed {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        let codec = Codec::sniff(data)?;
        Some(Box::new(Recognised { data, codec }))
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        // The stream was identified here, so its format names the codec.
        let Format::Compressed(codec) = stream.format else {
            return stream.buffered(ctx, location, depth);
        };
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        scan_compressed(ctx, codec, stream.reader, location, depth);
        stream.format
    }
}

impl<'d> Parsed<'d> for Recognised<'d> {
    fn format(&self) -> Format {
        Format::Compressed(self.codec)
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        scan_compressed(ctx, self.codec, self.data, location, depth);
        Format::Compressed(self.codec)
    }
}

/// A compressed stream, decompressed as it is read, scanned as `location!<codec>`.
fn scan_compressed<'a>(ctx: &mut Ctx<'_>, codec: Codec, input: impl Read + 'a, location: &str, depth: usize) {
    let stream = Wrapped {
        label: &format!("<{}>", codec.name()),
        offset: 0,
        what: &format!("{} stream", codec.name()),
    };
    scan_wrapped(ctx, codec, input, location, &stream, depth);
}

/// A compressed stream inside a container: what its content is scanned as, where it starts and
/// what to call it when it cannot be opened.
pub(super) struct Wrapped<'w> {
    /// The content's location below the container's (`<gzip>`, `<joblib-zf>`).
    pub label: &'w str,
    /// Where the stream starts in the container.
    pub offset: u64,
    /// What the stream is, for the finding when it cannot be opened.
    pub what: &'w str,
}

/// Decompresses `input` as it is read and scans the content as `location!label`.
pub(super) fn scan_wrapped<'a>(
    ctx: &mut Ctx<'_>,
    codec: Codec,
    input: impl Read + 'a,
    location: &str,
    stream: &Wrapped<'_>,
    depth: usize,
) {
    let inner = join(location, stream.label);
    match compress::open(codec, input, &ctx.budget) {
        Ok(reader) => {
            scan_reader(ctx, reader, &inner, depth + 1);
        }
        Err(e) => ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            stream.offset,
            format!("the {} cannot be opened: {e}", stream.what),
        ),
    }
    ctx.note_budget(&inner);
}
