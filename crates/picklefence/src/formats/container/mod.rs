//! The container formats behind one trait and one registry (the shape of pydantic-core's
//! `src/validators/`: one file per kind, one list).
//!
//! A [`Container`] recognises bytes by content only (never by name) and hands back what it
//! parsed to tell ([`Parsed`]: a zip's central directory, a tar's member list, ...), which is
//! then what the scan reads: nothing is parsed twice. It also reads a stream whose first bytes
//! it recognised. [`REGISTRY`] lists the containers in the order they are tried; [`scan_slice`]
//! and [`scan_reader`] dispatch through it, and so does the public [`super::identify`].
//!
//! Adding a container format: one new file here implementing [`Container`], and one line in
//! [`REGISTRY`] (plus its `Format` variant when it is a new kind of input).

mod compressed;
mod joblib_zf;
mod non_pickle;
mod npy_array;
mod pickle;
mod tar_family;
mod torch_legacy;
mod unknown;
mod unsupported;
mod zip_family;
mod zip_stream;

use std::io::{BufReader, Chain, Cursor, Read};

use crate::findings::{FindingKind, Severity};

use super::compress;
use super::{Ctx, Format};

/// Members a directory is parsed to when only identifying ([`super::identify`]); a scan parses
/// to its own `max_members`.
pub(crate) const IDENTIFY_MEMBERS: usize = 100_000;

/// How bytes are being identified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// The bytes are the whole input; otherwise only a stream's first bytes, and zip subtypes
    /// are not told apart (nothing is parsed).
    pub whole: bool,
    /// Members an archive directory is parsed to (the parse is kept for the scan).
    pub max_members: usize,
}

impl Probe {
    /// The whole input, parsed for a scan bounded by `max_members`.
    pub fn whole(max_members: usize) -> Self {
        Probe {
            whole: true,
            max_members,
        }
    }

    /// The first bytes of a stream.
    fn prefix() -> Self {
        Probe {
            whole: false,
            max_members: IDENTIFY_MEMBERS,
        }
    }
}

/// A container format: recognised by content, scanned from memory or from a stream.
pub(crate) trait Container: Sync {
    /// Whether `data` is this container, by content only; if so, what was parsed to tell, kept
    /// for the scan.
    fn identify<'d>(&self, data: &'d [u8], probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>>;

    /// Reads a stream whose first bytes [`Container::identify`] recognised (`probe.whole`
    /// false). By default the stream is read into memory (bounded) and scanned as a slice;
    /// containers that can be read as they stream override this.
    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        stream.buffered(ctx, location, depth)
    }
}

/// What a container parsed to recognise its bytes: told apart ([`Parsed::format`]) and then
/// scanned from that parse.
pub(crate) trait Parsed<'d> {
    /// What the bytes were identified as.
    fn format(&self) -> Format;

    /// Scans the bytes (already checked for depth); returns what they turned out to be (a
    /// `joblib`-looking pickle with no arrays is a `pickle`).
    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format;
}

/// The containers, tried in this order; the first that recognises the bytes reads them, and
/// [`unknown::Unknown`] reads what none recognises. The order matters where magics could
/// overlap (a zip before anything else, pickles last: protocol 0 and 1 have no magic).
static REGISTRY: [&dyn Container; 10] = [
    &unknown::Empty,
    &zip_family::ZipFamily,
    &npy_array::NpyArray,
    &compressed::Compressed,
    &joblib_zf::JoblibZf,
    &unsupported::Unsupported,
    &tar_family::TarFamily,
    &non_pickle::NonPickle,
    &torch_legacy::TorchLegacy,
    &pickle::PickleFile,
];

/// A recognised input: the container that reads it and what it parsed.
pub(crate) struct Found<'d> {
    container: &'static dyn Container,
    parsed: Box<dyn Parsed<'d> + 'd>,
}

impl<'d> Found<'d> {
    /// What the bytes were identified as.
    pub fn format(&self) -> Format {
        self.parsed.format()
    }

    /// Scans the bytes from what was parsed to identify them.
    pub fn scan(self, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        if ctx.too_deep(location, depth) {
            return Format::Unknown;
        }
        self.parsed.scan(ctx, location, depth)
    }
}

/// Identifies `data` through the registry.
pub(crate) fn find(data: &[u8], probe: Probe) -> Found<'_> {
    for &container in &REGISTRY {
        if let Some(parsed) = container.identify(data, probe) {
            return Found { container, parsed };
        }
    }
    Found {
        container: &unknown::Unknown,
        parsed: unknown::Unknown.parsed(data),
    }
}

/// Scans bytes held in memory (the input, or a stored member); returns what they were.
pub(crate) fn scan_slice(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) -> Format {
    if ctx.too_deep(location, depth) {
        return Format::Unknown;
    }
    find(data, Probe::whole(ctx.options.max_members)).scan(ctx, location, depth)
}

/// Scans a stream (decompressed data, deflated members): small ones are read whole, and so are
/// pickles up to `hold_pickles_up_to`; the container its first bytes name reads the rest
/// ([`Container::scan_stream`]).
pub(crate) fn scan_reader(ctx: &mut Ctx<'_>, reader: impl Read, location: &str, depth: usize) -> Format {
    let mut reader = reader;
    if ctx.too_deep(location, depth) {
        return Format::Unknown;
    }
    let window = ctx.options.stream_prefix;
    let (mut prefix, read) = hold(ctx, &mut reader, window as u64, location);
    if !read {
        if prefix.is_empty() {
            return Format::Unknown;
        }
        return scan_slice(ctx, &prefix, location, depth);
    }
    if prefix.len() < window {
        return scan_slice(ctx, &prefix, location, depth);
    }
    // Only the container and the format are kept: the prefix is read again as the stream's start.
    let (container, format) = {
        let found = find(&prefix, Probe::prefix());
        (found.container, found.format())
    };
    // A pickle's native-state checks read its arrays from its bytes, which a stream does not
    // keep: a pickle that ends within `hold_pickles_up_to` is held and read as bytes (a forest's
    // broken tree passed the scan of its compressed joblib file).
    let hold_up_to = ctx.options.hold_pickles_up_to;
    if matches!(format, Format::Pickle | Format::Joblib) && (prefix.len() as u64) < hold_up_to {
        let more = hold_up_to - prefix.len() as u64;
        prefix.reserve_exact(usize::try_from(more).unwrap_or(0));
        let read = hold_into(ctx, &mut reader, more, &mut prefix, location);
        if !read || (prefix.len() as u64) < hold_up_to {
            return scan_slice(ctx, &prefix, location, depth);
        }
    }
    let head_len = prefix.len() as u64;
    // The buffer is concrete, so the decoders' small reads stay static calls; only its
    // refills go through the caller's reader behind `dyn`.
    let rest: &mut dyn Read = &mut reader;
    let stream = Stream {
        reader: BufReader::with_capacity(64 << 10, Cursor::new(prefix).chain(rest)),
        format,
        head_len,
    };
    container.scan_stream(ctx, stream, location, depth)
}

/// Up to `n` bytes of `reader`, and whether they were read without an error; an error (a
/// decompression limit, a corrupt stream) is reported at `location` where it struck.
pub(crate) fn hold(ctx: &mut Ctx<'_>, reader: &mut impl Read, n: u64, location: &str) -> (Vec<u8>, bool) {
    let mut held = Vec::new();
    let read = hold_into(ctx, reader, n, &mut held, location);
    (held, read)
}

/// [`hold`], appending to `held` (the stream's bytes read before, which an error's offset
/// counts).
fn hold_into(ctx: &mut Ctx<'_>, reader: &mut impl Read, n: u64, held: &mut Vec<u8>, location: &str) -> bool {
    match reader.take(n).read_to_end(held) {
        Ok(_) => true,
        Err(e) => {
            unreadable(ctx, location, held.len() as u64, &e);
            false
        }
    }
}

/// A stream that failed at `offset` (a decompression limit, a corrupt stream): the limit if one
/// struck, and the error.
fn unreadable(ctx: &mut Ctx<'_>, location: &str, offset: u64, error: &std::io::Error) {
    ctx.note_budget(location);
    ctx.finding(
        location,
        FindingKind::Container,
        Severity::High,
        offset,
        format!("the stream cannot be read past offset {offset}: {error}"),
    );
}

/// A stream whose first bytes were identified, read again from its start.
pub(crate) struct Stream<'s> {
    /// The whole stream, the identified prefix included.
    pub reader: BufReader<Chain<Cursor<Vec<u8>>, &'s mut dyn Read>>,
    /// What the prefix was identified as.
    pub format: Format,
    /// How many bytes the prefix held.
    pub head_len: u64,
}

impl Stream<'_> {
    /// The stream read into memory (up to `max_buffered`) and scanned as a slice. Kept pickles
    /// need their bytes, so a walk ([`crate::walk_bytes`]) reads every stream this way.
    pub fn buffered(self, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let format = self.format;
        let max = ctx.options.max_buffered;
        match compress::read_bounded(self.reader, max) {
            Ok(Ok(buffer)) => scan_slice(ctx, &buffer, location, depth),
            Ok(Err(max)) => {
                ctx.finding(location, FindingKind::LimitExceeded, Severity::High, self.head_len, format!("a {format} stream larger than {max} bytes would have to be held in memory to be read; it was not analysed"));
                format
            }
            Err((e, read)) => {
                unreadable(ctx, location, read, &e);
                format
            }
        }
    }
}
