//! The state one scan carries through every container it opens: the policy and options, the
//! report being built, the decompression budget, and (for a walk) the pickles kept with their
//! bytes.

use crate::analyzer::{Mode, NestedFile, Options, PickleReport};
use crate::decoder::{Decoder, SliceSource, Source};
use crate::findings::{Finding, FindingKind, Severity};
use crate::policy::Policy;
use crate::report::{PickleStream, ScanOptions, ScanReport};

use super::compress::Budget;
use super::{scan_slice, Format};

/// `parent!member`, or `member` at the top level.
pub(crate) fn join(parent: &str, member: &str) -> String {
    if parent.is_empty() {
        member.to_string()
    } else {
        format!("{parent}!{member}")
    }
}

/// State shared by one scan.
pub(crate) struct Ctx<'a> {
    /// What is allowed.
    pub policy: &'a Policy,
    /// The scan's bounds.
    pub options: ScanOptions,
    /// What was found so far.
    pub report: ScanReport,
    /// What all decompression of the scan may still produce.
    pub budget: Budget,
    /// The pickles found, with their bytes, when the scan keeps them ([`crate::scan::walk_bytes`]):
    /// streams are then read into memory (bounded) so that each pickle has bytes to keep.
    pub kept: Option<Vec<PickleStream>>,
}

impl<'a> Ctx<'a> {
    /// A scan's state before anything is read; `format` names the input until it is identified.
    pub fn new(policy: &'a Policy, options: &ScanOptions, format: Format) -> Self {
        Ctx {
            policy,
            options: *options,
            report: ScanReport::new(format.name()),
            budget: Budget::new(options.max_decompressed, options.max_ratio, options.ratio_floor),
            kept: None,
        }
    }

    /// Options for analysing one pickle in `mode`, within the scan's limits.
    pub fn analysis(&self, mode: Mode) -> Options {
        Options {
            limits: self.options.limits,
            mode,
            ..Options::default()
        }
    }

    /// Adds a finding about a container (no import) at `location`.
    pub fn finding(
        &mut self,
        location: &str,
        kind: FindingKind,
        severity: Severity,
        offset: u64,
        message: String,
    ) {
        self.report.add_finding(
            location,
            Finding {
                kind,
                severity,
                offset,
                import: None,
                message,
            },
        );
    }

    /// Reports a decompression limit hit since the last call, if any.
    pub fn note_budget(&mut self, location: &str) {
        if let Some(message) = self.budget.take_tripped() {
            self.finding(
                location,
                FindingKind::LimitExceeded,
                Severity::High,
                0,
                format!("{message}; what lies beyond was not analysed"),
            );
        }
    }

    /// Adds a pickle's report, then scans each file nested in its bytes constants
    /// (`torch.storage._load_from_bytes`) as a file of its own, from `held`: the bytes the
    /// report's offsets point into, and where the pickle starts in them. Without them (a
    /// stream) a nested file is a finding: it was not analysed.
    pub fn add_pickle(
        &mut self,
        location: &str,
        format: &str,
        report: PickleReport,
        held: Option<(&[u8], u64)>,
        depth: usize,
    ) {
        let nested = report.nested.clone();
        if let (Some(kept), Some((data, start))) = (&mut self.kept, held) {
            kept.push(PickleStream {
                location: location.to_string(),
                format: format.to_string(),
                data: data.to_vec(),
                start,
            });
        }
        let data = held.map(|(data, _)| data);
        self.report.add_entry_as(location, format, report);
        for file in nested {
            let at = join(
                location,
                &format!("<nested torch file at offset {}>", file.offset),
            );
            match nested_bytes(data.unwrap_or_default(), &file) {
                Some(bytes) => {
                    scan_slice(self, &bytes, &at, depth + 1);
                }
                None => self.finding(
                    location,
                    FindingKind::Container,
                    Severity::High,
                    file.offset,
                    format!(
                        "the call at offset {} loads a nested torch file ({} bytes) that the scanner could not read back from this stream, so it was not analysed",
                        file.offset, file.len
                    ),
                ),
            }
        }
    }

    /// Whether `depth` is past `max_depth`; if so, a limit finding says the content was not read.
    pub fn too_deep(&mut self, location: &str, depth: usize) -> bool {
        if depth <= self.options.max_depth {
            return false;
        }
        let max = self.options.max_depth;
        self.finding(
            location,
            FindingKind::LimitExceeded,
            Severity::High,
            0,
            format!("containers are nested more than {max} deep here (an archive bomb or a crafted file); the content was not analysed"),
        );
        true
    }
}

/// The bytes of a nested file: the constant as written, or the latin-1 text it was written as.
fn nested_bytes<'d>(data: &'d [u8], file: &'d NestedFile) -> Option<std::borrow::Cow<'d, [u8]>> {
    if let Some(inline) = &file.inline {
        return Some(std::borrow::Cow::Borrowed(inline));
    }
    let start = usize::try_from(file.at).ok()?;
    let end = start.checked_add(usize::try_from(file.len).ok()?)?;
    let raw = data.get(start..end)?;
    if !file.latin1_text {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    let text = std::str::from_utf8(raw).ok()?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(std::borrow::Cow::Owned)
}

/// A decoder over `data` starting at `start`, reporting offsets from the start of `data`.
pub(crate) fn decoder_at(data: &[u8], start: u64) -> Decoder<SliceSource<'_>> {
    let mut source = SliceSource::new(data);
    let _ = source.skip(start.min(data.len() as u64), &mut |_| {});
    Decoder::new(source)
}
