//! NumPy `.npy` files, from memory and as they stream, in one place: raw arrays are never read;
//! an object array is the pickle after the header (what `numpy.load(allow_pickle=True)`
//! unpickles), analysed like one; a dtype the scanner does not know is analysed when it is a
//! pickle. The header parser is [`crate::formats::npy`].

use std::io::{Cursor, Read};

use crate::analyzer::{Mode, PickleReport};
use crate::decoder::{Decoder, Source};
use crate::findings::{FindingKind, Severity};

use super::super::{decoder_at, joblib, npy};
use super::{Container, Ctx, Format, Parsed, Probe, Stream};

/// `.npy` files.
pub(crate) struct NpyArray;

/// Bytes that start with the `.npy` magic string.
struct Recognised<'d> {
    data: &'d [u8],
}

impl Container for NpyArray {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        data.starts_with(npy::MAGIC)
            .then(|| Box::new(Recognised { data }) as Box<dyn Parsed<'d> + 'd>)
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        scan_npy_stream(ctx, stream.reader, location, depth);
        Format::Npy
    }
}

impl<'d> Parsed<'d> for Recognised<'d> {
    fn format(&self) -> Format {
        Format::Npy
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        scan_npy_slice(ctx, self.data, location, depth);
        Format::Npy
    }
}

/// The pickle an object-dtype .npy holds after its header (what `numpy.load` unpickles).
fn npy_pickle(ctx: &Ctx<'_>, data: &[u8], offset: u64) -> PickleReport {
    joblib::drive(
        decoder_at(data, offset),
        ctx.policy,
        &ctx.analysis(Mode::FirstPickle),
        false,
        None,
    )
    .0
    .report
}

/// A `.npy` in memory: its header parsed, then the pickle after it (if any) analysed.
fn scan_npy_slice(ctx: &mut Ctx<'_>, data: &[u8], location: &str, depth: usize) {
    match npy::parse_header(data) {
        Ok(header) => match header.payload {
            npy::Payload::Raw => {}
            npy::Payload::Pickle => {
                let report = npy_pickle(ctx, data, header.data_offset);
                ctx.add_pickle(location, "npy", report, Some((data, header.data_offset)), depth);
            }
            npy::Payload::Unknown(why) => {
                unknown_dtype(ctx, location, &why);
                let mut report = npy_pickle(ctx, data, header.data_offset);
                unless_it_acts(&mut report);
                ctx.add_pickle(location, "npy", report, Some((data, header.data_offset)), depth);
            }
        },
        Err(e) => rejected(ctx, location, e),
    }
}

/// A dtype the scanner does not know: the data after the header is analysed as a pickle all the
/// same, in case some reader unpickles it.
fn unknown_dtype(ctx: &mut Ctx<'_>, location: &str, why: &str) {
    ctx.finding(
        location,
        FindingKind::Container,
        Severity::Warning,
        8,
        format!("the .npy dtype is not one the scanner knows ({why}); the data is analysed as a pickle"),
    );
}

/// The data of an unknown dtype is likely not a pickle at all: where it breaks before it
/// imports or calls anything, nothing could have run, so the break is not reported.
fn unless_it_acts(report: &mut PickleReport) {
    if report.imports.is_empty() && report.calls.is_empty() {
        report.findings.retain(|f| f.kind != FindingKind::MalformedPickle);
    }
}

/// A header numpy rejects: a warning (numpy.load raises before anything is unpickled).
fn rejected(ctx: &mut Ctx<'_>, location: &str, error: impl std::fmt::Display) {
    ctx.finding(
        location,
        FindingKind::Container,
        Severity::Warning,
        0,
        format!("{error}; numpy rejects the file"),
    );
}

/// A `.npy` stream: its header read (bounded), then the pickle after it (if any) analysed as
/// it streams.
fn scan_npy_stream(ctx: &mut Ctx<'_>, mut reader: impl Read, location: &str, depth: usize) {
    let mut head = vec![0u8; 12];
    if reader.read_exact(&mut head).is_err() {
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::Warning,
            0,
            "the .npy stream ends inside its header".into(),
        );
        return;
    }
    let end = match npy::header_end(&head) {
        Ok(end) if end <= 1 << 24 => end,
        Ok(end) => {
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::High,
                8,
                format!("the .npy header is {end} bytes long; it was not analysed"),
            );
            return;
        }
        Err(e) => {
            rejected(ctx, location, e);
            return;
        }
    };
    let mut rest = Vec::new();
    if (&mut reader)
        .take(end.saturating_sub(12))
        .read_to_end(&mut rest)
        .is_err()
    {
        ctx.note_budget(location);
        return;
    }
    head.extend(rest);
    let payload = match npy::parse_header(&head) {
        Ok(header) => header.payload,
        Err(e) => {
            rejected(ctx, location, e);
            return;
        }
    };
    if let npy::Payload::Unknown(why) = &payload {
        unknown_dtype(ctx, location, why);
    }
    if payload == npy::Payload::Raw {
        return;
    }
    // Offsets from the start of the file: the header bytes are fed again through the decoder's
    // source and skipped.
    let chained = Cursor::new(head).chain(reader);
    let options = ctx.analysis(Mode::FirstPickle);
    let mut source = crate::decoder::ReaderSource::new(chained, options.limits.stream);
    let _ = source.skip(end, &mut |_| {});
    let (analysis, _) = joblib::drive(Decoder::new(source), ctx.policy, &options, false, None);
    let mut report = analysis.report;
    if matches!(payload, npy::Payload::Unknown(_)) {
        unless_it_acts(&mut report);
    }
    ctx.add_pickle(location, "npy", report, None, depth);
    ctx.note_budget(location);
}
