//! The tar family: the oldest `torch.save` format (a tar with `sys_info`, `pickle`, `storages`,
//! `tensors`) and any other tar, read from memory or as it streams. The member list is read
//! once, when the tar is identified, and that list is what the scan reads. The parser is
//! [`crate::formats::tar`].

use std::collections::{HashMap, HashSet};
use std::io::Read;

use crate::analyzer::Mode;
use crate::findings::{FindingKind, Severity};

use super::super::tar::{self, TarError, TarMember};
use super::super::{compress, join, torch};
use super::pickle::scan_named_pickle;
use super::{scan_reader, scan_slice, Container, Ctx, Format, Parsed, Probe, Stream, IDENTIFY_MEMBERS};

/// Tar archives of every kind.
pub(crate) struct TarFamily;

/// Members and where the archive ends.
type Listing = Result<(Vec<TarMember>, u64), TarError>;

/// A tar and its member list (read to the scan's member limit), kept for the scan.
struct Members<'d> {
    data: &'d [u8],
    format: Format,
    /// `None` when only a stream's first bytes were seen: read when scanned.
    listing: Option<Listing>,
}

impl Container for TarFamily {
    fn identify<'d>(&self, data: &'d [u8], probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        if data.len() < tar::BLOCK as usize || !data.get(..tar::BLOCK as usize).is_some_and(tar::is_header) {
            return None;
        }
        if !probe.whole {
            return Some(Box::new(Members {
                data,
                format: Format::Tar,
                listing: None,
            }));
        }
        let listing = tar::members(data, probe.max_members);
        let format = match &listing {
            // Identification reads up to IDENTIFY_MEMBERS members: a list read whole below that
            // (or with that very limit) tells the same kind; otherwise the kind is read as
            // identify() reads it.
            Ok((members, _)) if members.len() < IDENTIFY_MEMBERS || probe.max_members == IDENTIFY_MEMBERS => {
                tar_kind_of(members)
            }
            _ => tar_kind(data),
        };
        Some(Box::new(Members {
            data,
            format,
            listing: Some(listing),
        }))
    }

    fn scan_stream(&self, ctx: &mut Ctx<'_>, stream: Stream<'_>, location: &str, depth: usize) -> Format {
        if ctx.kept.is_some() {
            return stream.buffered(ctx, location, depth);
        }
        scan_tar_stream(ctx, stream.reader, location, depth);
        stream.format
    }
}

impl<'d> Parsed<'d> for Members<'d> {
    fn format(&self) -> Format {
        self.format
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> Format {
        let Members {
            data,
            format,
            listing,
        } = *self;
        let listing = listing.unwrap_or_else(|| tar::members(data, ctx.options.max_members));
        scan_tar(ctx, data, listing, location, depth, format);
        format
    }
}

/// A PyTorch tar when the members torch writes are there, any tar otherwise.
fn tar_kind_of(members: &[TarMember]) -> Format {
    let has = |n: &str| members.iter().any(|m| m.name == n);
    if has("pickle") && (has("storages") || has("tensors")) {
        Format::PytorchTar
    } else {
        Format::Tar
    }
}

/// The kind of tar `data` is, read as [`crate::formats::identify`] reads it.
fn tar_kind(data: &[u8]) -> Format {
    match tar::members(data, IDENTIFY_MEMBERS) {
        Ok((members, _)) => tar_kind_of(&members),
        Err(_) => Format::Tar,
    }
}

/// Scans the members of a tar in memory from its listing; `format` says whether the PyTorch tar
/// members are read as torch reads them.
fn scan_tar(ctx: &mut Ctx<'_>, data: &[u8], listing: Listing, location: &str, depth: usize, format: Format) {
    let (members, end) = match listing {
        Ok(listing) => listing,
        Err(e) => {
            ctx.finding(
                location,
                FindingKind::Container,
                Severity::High,
                0,
                format!("the tar archive cannot be read ({e}); its members were not analysed"),
            );
            return;
        }
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, member) in members.iter().enumerate() {
        if let Some(first) = seen.insert(member.name.as_str(), index) {
            ctx.finding(&join(location, &member.name), FindingKind::Container, Severity::High, member.header_offset, format!("member {:?} (entry {index}) has the same name as entry {first}: tarfile takes the last one", member.name));
        }
    }
    for member in &members {
        let at = join(location, &member.name);
        if member.kind == b'S' {
            ctx.finding(
                &at,
                FindingKind::Unsupported,
                Severity::High,
                member.header_offset,
                format!(
                    "member {:?} is a sparse file, which the scanner cannot read",
                    member.name
                ),
            );
            continue;
        }
        if matches!(member.kind, b'1' | b'2') && format == Format::PytorchTar {
            ctx.finding(
                &at,
                FindingKind::Container,
                Severity::Warning,
                member.header_offset,
                format!(
                    "member {:?} is a link to {:?}: torch reads the target",
                    member.name, member.link
                ),
            );
        }
        if !member.is_file() {
            continue;
        }
        let Some(bytes) = usize::try_from(member.data_offset)
            .ok()
            .zip(usize::try_from(member.size).ok())
            .and_then(|(s, n)| data.get(s..s.checked_add(n)?))
        else {
            continue;
        };
        if format == Format::PytorchTar {
            if let Some(report) = torch_member(ctx, &member.name, bytes) {
                ctx.add_pickle(&at, "pickle", report, Some((bytes, 0)), depth);
                continue;
            }
        }
        scan_slice(ctx, bytes, &at, depth + 1);
    }
    let trailing = usize::try_from(end)
        .ok()
        .and_then(|e| data.get(e..))
        .unwrap_or_default();
    if let Some(pos) = trailing.iter().position(|&b| b != 0) {
        let offset = end + pos as u64;
        ctx.finding(
            location,
            FindingKind::TrailingData,
            Severity::Warning,
            offset,
            format!("bytes at offset {offset} follow the end of the tar archive; tarfile never reads them"),
        );
    }
}

/// The members torch's tar format reads.
const TORCH_MEMBERS: [&str; 4] = ["sys_info", "pickle", "storages", "tensors"];

/// A member of a PyTorch tar read as torch reads it (its pickles, and the raw storage bytes
/// between them skipped by their declared sizes); `None` for members torch does not read.
fn torch_member(ctx: &Ctx<'_>, name: &str, bytes: &[u8]) -> Option<crate::analyzer::PickleReport> {
    let options = ctx.analysis(Mode::AllPickles);
    match name {
        "storages" => Some(torch::scan_tar_storages(bytes, ctx.policy, &options)),
        "tensors" => Some(torch::scan_tar_tensors(bytes, ctx.policy, &options)),
        "pickle" | "sys_info" => Some(scan_named_pickle(ctx, bytes)),
        _ => None,
    }
}

/// Scans a tar as it streams, each member as a stream of its own. The members a PyTorch tar
/// holds are read as torch reads them (held, up to `max_buffered`: which members the tar has
/// is only known at its end, and a storage record's pickle follows raw bytes that analysis by
/// content would stop at).
fn scan_tar_stream(ctx: &mut Ctx<'_>, reader: impl Read, location: &str, depth: usize) {
    let max = ctx.options.max_members;
    let mut names: HashSet<String> = HashSet::new();
    let result = tar::walk(reader, max, &mut |member, content| {
        let at = join(location, &member.name);
        if !names.insert(member.name.clone()) {
            ctx.finding(
                &at,
                FindingKind::Container,
                Severity::High,
                member.header_offset,
                format!(
                    "member {:?} appears more than once: tarfile takes the last one",
                    member.name
                ),
            );
        }
        if member.kind == b'S' {
            ctx.finding(
                &at,
                FindingKind::Unsupported,
                Severity::High,
                member.header_offset,
                format!(
                    "member {:?} is a sparse file, which the scanner cannot read",
                    member.name
                ),
            );
        } else if member.is_file() && TORCH_MEMBERS.contains(&member.name.as_str()) {
            match compress::read_bounded(content, ctx.options.max_buffered) {
                Ok(Ok(bytes)) => {
                    if let Some(report) = torch_member(ctx, &member.name, &bytes) {
                        ctx.add_pickle(&at, "pickle", report, Some((&bytes, 0)), depth);
                    }
                }
                Ok(Err(max)) => ctx.finding(&at, FindingKind::LimitExceeded, Severity::High, member.header_offset, format!("member {:?} is over {max} bytes; torch reads it whole, and held whole it was not analysed", member.name)),
                Err((e, read)) => ctx.finding(&at, FindingKind::Container, Severity::High, member.header_offset, format!("member {:?} cannot be read past byte {read} of its content: {e}", member.name)),
            }
        } else if member.is_file() {
            scan_reader(ctx, content, &at, depth + 1);
        }
    });
    ctx.note_budget(location);
    if let Err(e) = result {
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            0,
            format!("the tar stream cannot be read further ({e}); later members were not analysed"),
        );
    }
}
