//! A zip that is itself a stream (inside gzip or a tar, or piped in) and too long to hold:
//! its members are analysed as streaming readers meet them, local header after local header,
//! and the central directory at its end is then checked against what was met. A member the
//! directory lists at an offset no local header in sequence starts at (hidden from streaming
//! readers) is reported, not analysed: a stream cannot be read back.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Cursor, Read};

use crate::findings::{FindingKind, Severity};

use super::super::compress::{self, Unread};
use super::super::join;
use super::super::zip::{
    has_zip64_field, LocalHeader, ZipArchive, DESCRIPTOR_SIGNATURE, FLAG_DESCRIPTOR, FLAG_ENCRYPTED,
    LOCAL_HEADER_LEN,
};
use super::pickle::stream_named_pickle;
use super::zip_family::{add_member_pickle, is_pickle_name, record, NamesSeen};
use super::{find, scan_reader, Ctx, Format, Probe};

/// Bytes of central directory (with its end records and comment) read after the last member.
const MAX_DIRECTORY: u64 = 64 << 20;

/// Scans a zip stream that starts with a local header; returns its kind, from the names met.
pub(super) fn scan_zip_stream(
    ctx: &mut Ctx<'_>,
    input: impl BufRead,
    location: &str,
    depth: usize,
) -> Format {
    let mut walk = Walk {
        input: Unread::new(input),
        offset: 0,
        met: Vec::new(),
        seen: NamesSeen::default(),
        storage_keys: HashSet::new(),
        format: Format::Zip,
    };
    if walk.members(ctx, location, depth) {
        walk.check_directory(ctx, location);
    }
    walk.format
}

/// The walk's state.
struct Walk<R> {
    input: Unread<R>,
    /// Offset of the next unread byte of the stream.
    offset: u64,
    /// The local headers met, in order: where each is and the name it gives.
    met: Vec<(u64, String)>,
    /// What the names met so far say about the kind.
    seen: NamesSeen,
    /// Storages torch's pickle names: their `data/` records are tensor bytes, not analysed.
    storage_keys: HashSet<String>,
    /// The kind, from the names met so far.
    format: Format,
}

impl<R: BufRead> Walk<R> {
    /// Up to `n` bytes (fewer only at the end of the stream).
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        (&mut self.input).take(n as u64).read_to_end(&mut out)?;
        self.offset += out.len() as u64;
        Ok(out)
    }

    /// Skips up to `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let skipped = io::copy(&mut (&mut self.input).take(n), &mut io::sink())?;
        self.offset += skipped;
        Ok(skipped)
    }

    /// A finding that ends the walk.
    fn stop(&self, ctx: &mut Ctx<'_>, location: &str, message: String) -> bool {
        ctx.finding(
            location,
            FindingKind::Container,
            Severity::High,
            self.offset,
            message,
        );
        false
    }

    /// Walks the members; true when it ended at the central directory.
    fn members(&mut self, ctx: &mut Ctx<'_>, location: &str, depth: usize) -> bool {
        loop {
            let at = self.offset;
            let fixed = match self.take(LOCAL_HEADER_LEN) {
                Ok(fixed) => fixed,
                Err(e) => {
                    ctx.note_budget(location);
                    return self.stop(
                        ctx,
                        location,
                        format!("the zip stream cannot be read at offset {at}: {e}"),
                    );
                }
            };
            if [b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06"]
                .iter()
                .any(|sig| fixed.starts_with(*sig))
            {
                self.offset = at;
                self.input.put_back(fixed);
                return true;
            }
            let Some((name_len, extra_len)) = LocalHeader::tail_lengths(&fixed) else {
                let what = if fixed.is_empty() {
                    "ends"
                } else {
                    "holds neither a member nor the central directory"
                };
                return self.stop(ctx, location, format!("the zip stream {what} at offset {at}: zip readers cannot open it; the members before were analysed"));
            };
            let header = match self.take(name_len + extra_len) {
                Ok(tail) if tail.len() == name_len + extra_len => {
                    let (name, extra) = tail.split_at(name_len);
                    LocalHeader::from_parts(&fixed, name, extra).map(|h| (h, has_zip64_field(extra)))
                }
                _ => None,
            };
            let Some((header, zip64)) = header else {
                return self.stop(
                    ctx,
                    location,
                    format!("the local header at offset {at} is cut short"),
                );
            };
            if self.met.len() >= ctx.options.max_members {
                let max = ctx.options.max_members;
                ctx.finding(
                    location,
                    FindingKind::LimitExceeded,
                    Severity::High,
                    at,
                    format!("the archive has more than {max} members; the rest were not analysed"),
                );
                return false;
            }
            let name = String::from_utf8_lossy(&header.name).into_owned();
            self.seen.add(&name, false);
            self.format = self.seen.format();
            let going_on = self.member(ctx, &header, &name, zip64, location, depth);
            self.met.push((at, name));
            if !going_on {
                return false;
            }
        }
    }

    /// Analyses one member's data and reads past it and its data descriptor; false when the
    /// walk cannot go on.
    fn member(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: &LocalHeader,
        name: &str,
        zip64: bool,
        location: &str,
        depth: usize,
    ) -> bool {
        let at = join(location, name);
        let descriptor = header.flags & FLAG_DESCRIPTOR != 0;
        // With a data descriptor the local header's sizes are usually 0: only deflate ends itself.
        let sized = !descriptor || header.compressed_size > 0;
        let tensor_bytes = matches!(self.format, Format::PytorchZip | Format::TorchScript)
            && record(name)
                .strip_prefix("data/")
                .is_some_and(|key| self.storage_keys.contains(key));
        let readable = header.flags & FLAG_ENCRYPTED == 0 && matches!(header.method, 0 | 8);
        if header.flags & FLAG_ENCRYPTED != 0 {
            ctx.finding(
                &at,
                FindingKind::Unsupported,
                Severity::High,
                self.offset,
                format!("member {name:?} is encrypted: it cannot be analysed"),
            );
        } else if !readable {
            ctx.finding(&at, FindingKind::Unsupported, Severity::High, self.offset, format!("member {name:?} uses compression method {}, which the scanner cannot read: it was not analysed", header.method));
        }
        if !sized && (header.method != 8 || header.flags & FLAG_ENCRYPTED != 0) {
            return self.stop(ctx, location, format!("member {name:?} has a data descriptor and no size, and is not plain deflate: a streaming reader cannot tell where it ends (Java's ZipInputStream refuses it too); the rest was not analysed"));
        }
        let limit = if sized { header.compressed_size } else { u64::MAX };
        let start = self.offset;
        let left = {
            let mut data = (&mut self.input).take(limit);
            let format = self.format;
            let analysed = readable && !tensor_bytes;
            if header.method == 8 && (analysed || !sized) {
                let mut content = compress::open_deflate(&mut data, &ctx.budget);
                if analysed {
                    analyse_member(
                        ctx,
                        &mut content,
                        name,
                        &at,
                        format,
                        &mut self.storage_keys,
                        depth,
                    );
                }
                if !sized {
                    // Its end is where the next member starts: inflated to find it, even when
                    // its content (tensor bytes) is not analysed.
                    let _ = io::copy(&mut content, &mut io::sink());
                }
                ctx.note_budget(&at);
            } else if analysed {
                analyse_member(ctx, &mut data, name, &at, format, &mut self.storage_keys, depth);
            }
            data.limit()
        };
        self.offset = start + (limit - left);
        if sized && left > 0 && self.skip(left).unwrap_or(0) < left {
            return self.stop(
                ctx,
                location,
                format!("member {name:?} is cut short: the stream ends inside it"),
            );
        }
        if descriptor {
            self.skip_descriptor(zip64);
        }
        true
    }

    /// Skips a data descriptor: an optional signature, the CRC, and both sizes (8 bytes each
    /// when the local header has a zip64 field).
    fn skip_descriptor(&mut self, zip64: bool) {
        let Ok(head) = self.take(4) else {
            return;
        };
        if head.as_slice() != DESCRIPTOR_SIGNATURE {
            self.offset -= head.len() as u64;
            self.input.put_back(head);
        }
        let _ = self.skip(if zip64 { 20 } else { 12 });
    }

    /// Reads the central directory and reports where it and the members met disagree.
    fn check_directory(&mut self, ctx: &mut Ctx<'_>, location: &str) {
        let base = self.offset;
        let mut tail = Vec::new();
        if let Err(e) = (&mut self.input).take(MAX_DIRECTORY + 1).read_to_end(&mut tail) {
            ctx.note_budget(location);
            self.stop(
                ctx,
                location,
                format!("the central directory cannot be read at offset {base}: {e}"),
            );
            return;
        }
        if tail.len() as u64 > MAX_DIRECTORY {
            ctx.finding(location, FindingKind::LimitExceeded, Severity::High, base, format!("the central directory and what follows it are over {MAX_DIRECTORY} bytes; they were not checked against the members"));
            return;
        }
        let archive = match ZipArchive::parse_directory(&tail, base, ctx.options.max_members) {
            Ok(archive) => archive,
            Err(e) => {
                self.stop(ctx, location, format!("the central directory cannot be read ({e}): zipfile and torch cannot open the archive; the members were analysed as streaming readers see them"));
                return;
            }
        };
        for issue in &archive.issues {
            ctx.finding(
                location,
                FindingKind::Container,
                issue.severity,
                issue.offset,
                issue.message.clone(),
            );
        }
        let met: HashMap<u64, &str> = self
            .met
            .iter()
            .map(|(offset, name)| (*offset, name.as_str()))
            .collect();
        let mut listed = HashSet::new();
        for entry in &archive.entries {
            listed.insert(entry.local_offset);
            let central = entry.display_name();
            match met.get(&entry.local_offset) {
                None => ctx.finding(location, FindingKind::Container, Severity::High, entry.local_offset, format!("member {central:?}, which the central directory lists at offset {}, is not met walking the local headers: zipfile and torch read it, streaming readers do not, and it could not be analysed from a stream", entry.local_offset)),
                Some(&local) => {
                    if local != central {
                        ctx.finding(location, FindingKind::Container, Severity::High, entry.local_offset, format!("the member at offset {} is named {local:?} in its local header but {central:?} in the central directory: readers see different names", entry.local_offset));
                    }
                }
            }
        }
        for (offset, name) in &self.met {
            if !listed.contains(offset) && !archive.truncated_entries {
                ctx.finding(location, FindingKind::Container, Severity::High, *offset, format!("a local file header at offset {offset} ({name:?}) is not listed in the central directory: a hidden member that streaming readers see and others do not (analysed)"));
            }
        }
    }
}

/// Analyses a member's content as it streams: pickles as torch reads them, the rest by content
/// (torch's metadata records, which are neither, are passed over as the archive reader does).
pub(super) fn analyse_member(
    ctx: &mut Ctx<'_>,
    content: &mut dyn Read,
    name: &str,
    location: &str,
    format: Format,
    storage_keys: &mut HashSet<String>,
    depth: usize,
) {
    if is_pickle_name(name) {
        let report = stream_named_pickle(ctx, &mut *content);
        add_member_pickle(ctx, location, report, None, format, storage_keys, depth);
        return;
    }
    if matches!(format, Format::PytorchZip | Format::TorchScript) {
        let mut head = Vec::new();
        if content
            .take(ctx.options.stream_prefix as u64)
            .read_to_end(&mut head)
            .is_ok()
            && matches!(
                find(&head, Probe::prefix()).format(),
                Format::Unknown | Format::Empty
            )
        {
            return;
        }
        scan_reader(ctx, Cursor::new(head).chain(content), location, depth + 1);
        return;
    }
    scan_reader(ctx, content, location, depth + 1);
}
