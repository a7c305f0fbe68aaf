//! A small zip reader that keeps what zip libraries hide: it reads the central directory the way
//! Python's `zipfile` and miniz (PyTorch's reader) do, then checks every local header against it
//! and reports each place where readers could disagree (duplicate names, names or flags that
//! differ between the two headers, data prepended to the archive, members that overlap, bytes
//! no member accounts for).

use thiserror::Error;

use crate::findings::Severity;

const LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const EOCD64_SIG: &[u8; 4] = b"PK\x06\x06";
const LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const DESCRIPTOR_SIG: &[u8; 4] = b"PK\x07\x08";
const EOCD_LEN: u64 = 22;
const EOCD64_LEN: u64 = 56;
const LOCATOR_LEN: u64 = 20;
const CENTRAL_LEN: u64 = 46;
const LOCAL_LEN: u64 = 30;

/// General purpose flag bits that make a member unreadable without a key.
pub const FLAG_ENCRYPTED: u16 = 0x0001 | 0x0040;
/// General purpose flag bit: the CRC and sizes follow the data in a data descriptor, not the
/// local header.
pub const FLAG_DESCRIPTOR: u16 = 0x0008;

/// Why the input could not be parsed as a zip archive at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZipError {
    /// No end-of-central-directory signature in the last 64 KiB + 22 bytes.
    #[error("no end-of-central-directory record")]
    NoEndRecord,
    /// A record or field does not fit in the input.
    #[error("the zip structure at offset {offset} is truncated: {what}")]
    Truncated {
        /// Absolute offset (in the input) of the record or field that is cut short.
        offset: u64,
        /// Which record or field it is.
        what: &'static str,
    },
    /// A record is present but inconsistent (wrong signature, does not fit where it is declared).
    #[error("bad zip structure at offset {offset}: {what}")]
    Bad {
        /// Absolute offset (in the input) of the bad record.
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
}

/// A place where zip readers could read the archive differently, or that no reader can read.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipIssue {
    /// Absolute offset in the input where the issue is.
    pub offset: u64,
    /// How serious the issue is.
    pub severity: Severity,
    /// Index into `ZipArchive::entries` when the issue is about one member.
    pub member: Option<usize>,
    /// A human-readable description of the issue.
    pub message: String,
}

/// The local header of a member, as a streaming reader would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHeader {
    /// The name as the local header gives it (raw bytes).
    pub name: Vec<u8>,
    /// General purpose flag bits of the local header.
    pub flags: u16,
    /// Compression method of the local header (0 stored, 8 deflate, ...).
    pub method: u16,
    /// CRC-32 of the uncompressed data, as the local header gives it.
    pub crc32: u32,
    /// Size of the stored data in bytes, zip64 extra field applied.
    pub compressed_size: u64,
    /// Size of the data once decompressed, in bytes, zip64 extra field applied.
    pub uncompressed_size: u64,
}

/// Bytes of a local header before its name, signature included.
pub const LOCAL_HEADER_LEN: usize = LOCAL_LEN as usize;

impl LocalHeader {
    /// Lengths of the name and the extra field that follow `fixed`, a local header's first
    /// [`LOCAL_HEADER_LEN`] bytes; `None` when they are not a local header.
    pub fn tail_lengths(fixed: &[u8]) -> Option<(usize, usize)> {
        if !sig_at(fixed, 0, LOCAL_SIG) {
            return None;
        }
        Some((usize::from(u16_at(fixed, 26)?), usize::from(u16_at(fixed, 28)?)))
    }

    /// The header made of `fixed` (its first [`LOCAL_HEADER_LEN`] bytes), `name` and `extra`,
    /// the zip64 extra field applied; `None` when `fixed` is not a local header.
    pub fn from_parts(fixed: &[u8], name: &[u8], extra: &[u8]) -> Option<LocalHeader> {
        if !sig_at(fixed, 0, LOCAL_SIG) {
            return None;
        }
        let csize32 = u32_at(fixed, 18)?;
        let usize32 = u32_at(fixed, 22)?;
        let (u, c, _) = zip64_extra(extra, usize32 == u32::MAX, csize32 == u32::MAX, false);
        Some(LocalHeader {
            name: name.to_vec(),
            flags: u16_at(fixed, 6)?,
            method: u16_at(fixed, 8)?,
            crc32: u32_at(fixed, 14)?,
            compressed_size: c.unwrap_or(u64::from(csize32)),
            uncompressed_size: u.unwrap_or(u64::from(usize32)),
        })
    }
}

/// The signature a data descriptor may start with.
pub const DESCRIPTOR_SIGNATURE: &[u8; 4] = DESCRIPTOR_SIG;

/// One member of the archive, as the central directory lists it, with its local header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The name as the central directory gives it.
    pub name: Vec<u8>,
    /// General purpose flag bits of the central directory entry.
    pub flags: u16,
    /// Compression method of the central directory entry (0 stored, 8 deflate, ...).
    pub method: u16,
    /// CRC-32 of the uncompressed data, as the central directory gives it.
    pub crc32: u32,
    /// Size of the stored data in bytes, zip64 extra field applied.
    pub compressed_size: u64,
    /// Size of the data once decompressed, in bytes, zip64 extra field applied.
    pub uncompressed_size: u64,
    /// Absolute offset of the local header in the input.
    pub local_offset: u64,
    /// Absolute offset of the data; `None` when the local header is missing or broken.
    pub data_offset: Option<u64>,
    /// The member's local header; `None` when it is missing or truncated.
    pub local: Option<LocalHeader>,
}

impl ZipEntry {
    /// The name for display (UTF-8, lossy).
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Whether either of the member's headers sets an encryption flag ([`FLAG_ENCRYPTED`]).
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0 || self.local.as_ref().is_some_and(|l| l.flags & FLAG_ENCRYPTED != 0)
    }

    /// The member's stored bytes (compressed when `method` is not 0).
    pub fn raw<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.data_offset?).ok()?;
        let len = usize::try_from(self.compressed_size).ok()?;
        data.get(start..start.checked_add(len)?)
    }
}

/// A parsed zip archive: its members in central directory order and the issues found.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipArchive {
    /// The members in central directory order (at most the caller's `max_entries`).
    pub entries: Vec<ZipEntry>,
    /// Where the archive starts: bytes before it were prepended (Python's `concat`).
    pub start: u64,
    /// Absolute offset of the central directory in the input.
    pub central_offset: u64,
    /// Absolute offset of the end-of-central-directory record in the input.
    pub end_record: u64,
    /// Whether the entry count was cut at the caller's limit.
    pub truncated_entries: bool,
    /// Every place where readers could disagree, or that no reader can read.
    pub issues: Vec<ZipIssue>,
    /// Members behind local headers that no central directory entry points to (in the bytes no
    /// listed member accounts for): streaming readers see them, zipfile and torch do not.
    pub hidden: Vec<ZipEntry>,
}

fn u16_at(data: &[u8], at: u64) -> Option<u16> {
    let at = usize::try_from(at).ok()?;
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

fn u32_at(data: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn u64_at(data: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let b: [u8; 8] = data.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn bytes_at(data: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let at = usize::try_from(at).ok()?;
    let len = usize::try_from(len).ok()?;
    data.get(at..at.checked_add(len)?)
}

fn sig_at(data: &[u8], at: u64, sig: &[u8; 4]) -> bool {
    bytes_at(data, at, 4) == Some(sig.as_slice())
}

/// The end-of-central-directory record: the last signature in the final 64 KiB + 22 bytes whose
/// record fits (what both `zipfile` and miniz settle on).
pub fn find_end_record(data: &[u8]) -> Option<u64> {
    let len = data.len() as u64;
    if len < EOCD_LEN {
        return None;
    }
    let lowest = len.saturating_sub(EOCD_LEN + 0xffff);
    let mut at = len - EOCD_LEN;
    loop {
        if sig_at(data, at, EOCD_SIG) {
            return Some(at);
        }
        if at == lowest {
            return None;
        }
        at -= 1;
    }
}

/// The body of the extra field with header id `id`, if `extra` has one (cut at the end of
/// `extra` when its declared size runs past it).
fn extra_field(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut at = 0u64;
    while let (Some(field), Some(size)) = (u16_at(extra, at), u16_at(extra, at + 2)) {
        let body = at + 4;
        if field == id {
            let start = usize::try_from(body).ok()?;
            let end = start.saturating_add(usize::from(size)).min(extra.len());
            return Some(extra.get(start..end).unwrap_or_default());
        }
        at = body + u64::from(size);
    }
    None
}

/// Whether an extra field holds a zip64 record (id 1): a data descriptor then has 8-byte sizes.
pub fn has_zip64_field(extra: &[u8]) -> bool {
    extra_field(extra, 1).is_some()
}

/// Values of a zip64 extra field (id 1) for the fields that are saturated in the header.
fn zip64_extra(
    extra: &[u8],
    want_usize: bool,
    want_csize: bool,
    want_offset: bool,
) -> (Option<u64>, Option<u64>, Option<u64>) {
    let Some(body) = extra_field(extra, 1) else {
        return (None, None, None);
    };
    let mut field = 0u64;
    let mut next = |wanted: bool| {
        if !wanted {
            return None;
        }
        let value = u64_at(body, field);
        field += 8;
        value
    };
    let u = next(want_usize);
    let c = next(want_csize);
    let o = next(want_offset);
    (u, c, o)
}

impl ZipArchive {
    /// Parses the archive in `data` (the whole input). At most `max_entries` entries are read.
    pub fn parse(data: &[u8], max_entries: usize) -> Result<ZipArchive, ZipError> {
        let mut archive = ZipArchive::read_directory(data, 0, max_entries)?;
        archive.read_local_headers(data);
        archive.check_names();
        archive.check_layout(data);
        Ok(archive)
    }

    /// Reads the central directory from `tail`, the end of a stream that starts `base` bytes
    /// before it (offsets in the result are the stream's); local headers are not looked at.
    /// The directory must lie within `tail`.
    pub fn parse_directory(tail: &[u8], base: u64, max_entries: usize) -> Result<ZipArchive, ZipError> {
        ZipArchive::read_directory(tail, base, max_entries)
    }

    /// The central directory of `data`, whose first byte is at offset `base` of the input.
    fn read_directory(data: &[u8], base: u64, max_entries: usize) -> Result<ZipArchive, ZipError> {
        let eocd = find_end_record(data).ok_or(ZipError::NoEndRecord)?;
        let short = |what| ZipError::Truncated {
            offset: base + eocd,
            what,
        };
        let mut issues = Vec::new();
        let mut count = u64::from(u16_at(data, eocd + 10).ok_or_else(|| short("entry count"))?);
        let mut cd_size = u64::from(u32_at(data, eocd + 12).ok_or_else(|| short("directory size"))?);
        let mut cd_offset = u64::from(u32_at(data, eocd + 16).ok_or_else(|| short("directory offset"))?);
        let comment_len = u64::from(u16_at(data, eocd + 20).ok_or_else(|| short("comment length"))?);
        let record_end = eocd + EOCD_LEN + comment_len;
        let len = data.len() as u64;
        if record_end != len {
            issues.push(ZipIssue {
                offset: base + eocd,
                severity: Severity::Warning,
                member: None,
                message: format!(
                    "the end-of-central-directory record at offset {eocd} declares a {comment_len}-byte comment but \
                     {} bytes follow it",
                    len.saturating_sub(eocd + EOCD_LEN)
                ),
            });
        }
        // Python and miniz find the zip64 record just before its locator.
        let mut directory_end = eocd;
        if eocd >= LOCATOR_LEN && sig_at(data, eocd - LOCATOR_LEN, LOCATOR_SIG) {
            let locator = eocd - LOCATOR_LEN;
            let record = locator.checked_sub(EOCD64_LEN).ok_or(ZipError::Truncated {
                offset: base + locator,
                what: "zip64 end record",
            })?;
            if !sig_at(data, record, EOCD64_SIG) {
                return Err(ZipError::Bad {
                    offset: base + record,
                    what: "the zip64 locator is not preceded by a zip64 end record".into(),
                });
            }
            let bad = |what| ZipError::Truncated {
                offset: base + record,
                what,
            };
            count = u64_at(data, record + 32).ok_or_else(|| bad("zip64 entry count"))?;
            cd_size = u64_at(data, record + 40).ok_or_else(|| bad("zip64 directory size"))?;
            cd_offset = u64_at(data, record + 48).ok_or_else(|| bad("zip64 directory offset"))?;
            directory_end = record;
        }
        let misfit = || {
            ZipError::Bad {
            offset: base + eocd,
            what: format!("the central directory (offset {cd_offset}, size {cd_size}) does not fit before its end record"),
        }
        };
        let start = (base + directory_end)
            .checked_sub(cd_size)
            .and_then(|v| v.checked_sub(cd_offset))
            .ok_or_else(misfit)?;
        let central = start + cd_offset;
        let mut entries = Vec::new();
        // Positions in `data` from here on.
        let mut at = central.checked_sub(base).ok_or_else(misfit)?;
        let mut truncated_entries = false;
        while at < directory_end {
            if entries.len() >= max_entries {
                truncated_entries = true;
                break;
            }
            if !sig_at(data, at, CENTRAL_SIG) {
                return Err(ZipError::Bad {
                    offset: base + at,
                    what: "expected a central directory header".into(),
                });
            }
            let field = |off: u64, what| ZipError::Truncated {
                offset: base + at + off,
                what,
            };
            let flags = u16_at(data, at + 8).ok_or_else(|| field(8, "flags"))?;
            let method = u16_at(data, at + 10).ok_or_else(|| field(10, "method"))?;
            let crc32 = u32_at(data, at + 16).ok_or_else(|| field(16, "crc"))?;
            let csize32 = u32_at(data, at + 20).ok_or_else(|| field(20, "size"))?;
            let usize32 = u32_at(data, at + 24).ok_or_else(|| field(24, "size"))?;
            let name_len = u64::from(u16_at(data, at + 28).ok_or_else(|| field(28, "name length"))?);
            let extra_len = u64::from(u16_at(data, at + 30).ok_or_else(|| field(30, "extra length"))?);
            let comment_len = u64::from(u16_at(data, at + 32).ok_or_else(|| field(32, "comment length"))?);
            let offset32 = u32_at(data, at + 42).ok_or_else(|| field(42, "header offset"))?;
            let name =
                bytes_at(data, at + CENTRAL_LEN, name_len).ok_or_else(|| field(CENTRAL_LEN, "name"))?;
            let extra = bytes_at(data, at + CENTRAL_LEN + name_len, extra_len)
                .ok_or_else(|| field(CENTRAL_LEN, "extra field"))?;
            let (u64v, c64v, o64v) = zip64_extra(
                extra,
                usize32 == u32::MAX,
                csize32 == u32::MAX,
                offset32 == u32::MAX,
            );
            let entry_end = at + CENTRAL_LEN + name_len + extra_len + comment_len;
            if entry_end > directory_end {
                return Err(ZipError::Bad {
                    offset: base + at,
                    what: "a central directory entry runs past the directory's end".into(),
                });
            }
            let local_offset = start.saturating_add(o64v.unwrap_or(u64::from(offset32)));
            entries.push(ZipEntry {
                name: name.to_vec(),
                flags,
                method,
                crc32,
                compressed_size: c64v.unwrap_or(u64::from(csize32)),
                uncompressed_size: u64v.unwrap_or(u64::from(usize32)),
                local_offset,
                data_offset: None,
                local: None,
            });
            at = entry_end;
        }
        if !truncated_entries && entries.len() as u64 != count {
            issues.push(ZipIssue {
                offset: base + eocd,
                severity: Severity::High,
                member: None,
                message: format!(
                    "the end record declares {count} entries but the central directory holds {}; readers that trust \
                     one or the other see different members",
                    entries.len()
                ),
            });
        }
        Ok(ZipArchive {
            entries,
            start,
            central_offset: central,
            end_record: base + eocd,
            truncated_entries,
            issues,
            hidden: Vec::new(),
        })
    }

    fn issue(&mut self, offset: u64, severity: Severity, member: Option<usize>, message: String) {
        self.issues.push(ZipIssue {
            offset,
            severity,
            member,
            message,
        });
    }

    fn read_local_headers(&mut self, data: &[u8]) {
        let mut found = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let at = entry.local_offset;
            let shown = entry.display_name();
            if !sig_at(data, at, LOCAL_SIG) {
                found.push((
                    index,
                    None,
                    Some(format!("no local header at offset {at} for member {shown:?}")),
                ));
                continue;
            }
            let header = local_header_at(data, at);
            match header {
                Some((local, data_offset)) => found.push((index, Some((local, data_offset)), None)),
                None => found.push((
                    index,
                    None,
                    Some(format!(
                        "the local header of {shown:?} at offset {at} is truncated"
                    )),
                )),
            }
        }
        for (index, header, problem) in found {
            if let Some(problem) = problem {
                let offset = self.entries.get(index).map_or(0, |e| e.local_offset);
                self.issue(offset, Severity::High, Some(index), problem);
            }
            let Some((local, data_offset)) = header else {
                continue;
            };
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            entry.data_offset = Some(data_offset);
            let at = entry.local_offset;
            let shown = entry.display_name();
            let mut problems = Vec::new();
            if local.name != entry.name {
                problems.push(format!(
                    "its local header names it {:?}: readers that walk local headers see another member",
                    String::from_utf8_lossy(&local.name)
                ));
            }
            if (local.flags ^ entry.flags) & FLAG_ENCRYPTED != 0 {
                problems.push(format!(
                    "the encryption flag is set in only one of its headers (local {:#06x}, central {:#06x})",
                    local.flags, entry.flags
                ));
            }
            if local.method != entry.method {
                problems.push(format!(
                    "its local header says compression method {} but the central directory says {}",
                    local.method, entry.method
                ));
            }
            if local.flags & FLAG_DESCRIPTOR == 0
                && (local.crc32 != entry.crc32
                    || local.compressed_size != entry.compressed_size
                    || local.uncompressed_size != entry.uncompressed_size)
            {
                problems
                    .push("its local header gives a different CRC or size than the central directory".into());
            }
            entry.local = Some(local);
            for problem in problems {
                self.issue(
                    at,
                    Severity::High,
                    Some(index),
                    format!("member {shown:?} at offset {at}: {problem}"),
                );
            }
        }
    }

    fn check_names(&mut self) {
        let mut seen: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        let mut problems = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            // miniz looks names up case-insensitively, zipfile exactly: either clash is ambiguous.
            let key = entry.name.to_ascii_lowercase();
            if let Some(&first) = seen.get(&key) {
                let exact = self.entries.get(first).is_some_and(|f| f.name == entry.name);
                problems.push((index, first, exact));
            } else {
                seen.insert(key, index);
            }
        }
        for (index, first, exact) in problems {
            let Some(entry) = self.entries.get(index) else {
                continue;
            };
            let shown = entry.display_name();
            let how = if exact {
                "the same name"
            } else {
                "a name differing only in case"
            };
            let message = format!(
                "member {shown:?} (entry {index}) has {how} as entry {first}: zipfile takes the last one, miniz \
                 (PyTorch) may take either"
            );
            self.issue(entry.local_offset, Severity::High, Some(index), message);
        }
    }

    /// Members must tile the space between the archive start and the central directory.
    fn check_layout(&mut self, data: &[u8]) {
        if self.start > 0 {
            let start = self.start;
            self.issue(
                0,
                Severity::High,
                None,
                format!(
                    "{start} bytes precede the archive: readers that look at the start of the file (torch.load's \
                     zip check, pickle.load) read them instead of the archive"
                ),
            );
        }
        let mut spans: Vec<(u64, u64, usize)> = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let Some(data_offset) = entry.data_offset else {
                continue;
            };
            let mut end = data_offset.saturating_add(entry.compressed_size);
            if entry
                .local
                .as_ref()
                .is_some_and(|l| l.flags & FLAG_DESCRIPTOR != 0)
            {
                let wide = entry.compressed_size >= u64::from(u32::MAX)
                    || entry.uncompressed_size >= u64::from(u32::MAX);
                let body = if wide { 20 } else { 12 };
                end = end.saturating_add(if sig_at(data, end, DESCRIPTOR_SIG) {
                    body + 4
                } else {
                    body
                });
            }
            spans.push((entry.local_offset, end, index));
        }
        spans.sort_unstable();
        let mut problems = Vec::new();
        let mut cursor = self.start;
        for &(begin, end, index) in &spans {
            if data_end_past(end, self.central_offset, data.len() as u64) {
                problems.push((
                    begin,
                    Severity::High,
                    Some(index),
                    "its data runs past the central directory or the end of the input".to_string(),
                ));
            }
            if begin < cursor {
                problems.push((
                    begin,
                    Severity::High,
                    Some(index),
                    format!("it overlaps the member before it (a zip bomb shares data between members this way); it starts at {begin}, before offset {cursor}"),
                ));
            } else if begin > cursor {
                let gap = bytes_at(data, cursor, begin - cursor).unwrap_or_default();
                problems.push(gap_problem(gap, cursor));
            }
            cursor = cursor.max(end);
        }
        if cursor < self.central_offset {
            let gap = bytes_at(data, cursor, self.central_offset - cursor).unwrap_or_default();
            problems.push(gap_problem(gap, cursor));
        }
        self.hidden = hidden_members(data, &problems, self.central_offset);
        for (offset, severity, member, problem) in problems {
            let message = match member.and_then(|i| self.entries.get(i)) {
                Some(entry) => format!("member {:?} at offset {offset}: {problem}", entry.display_name()),
                None => problem,
            };
            self.issue(offset, severity, member, message);
        }
    }
}

/// The members behind the hidden local headers among `problems` (those [`gap_problem`] found),
/// read from their local headers as a streaming reader reads them. A deflated member whose
/// sizes only a data descriptor gives runs to the central directory (deflate ends itself).
fn hidden_members(
    data: &[u8],
    problems: &[(u64, Severity, Option<usize>, String)],
    central: u64,
) -> Vec<ZipEntry> {
    let mut hidden = Vec::new();
    for &(first, _, member, ref message) in problems {
        if member.is_some() || !message.starts_with(HIDDEN_HEADER) {
            continue;
        }
        // A streaming reader goes on from one hidden member to the local header after it.
        let mut at = first;
        while at < central && sig_at(data, at, LOCAL_SIG) && hidden.len() < MAX_HIDDEN {
            let Some(entry) = hidden_member(data, at, central) else {
                break;
            };
            let mut end = entry
                .data_offset
                .unwrap_or(at)
                .saturating_add(entry.compressed_size);
            if entry.flags & FLAG_DESCRIPTOR != 0 {
                end = end.saturating_add(if sig_at(data, end, DESCRIPTOR_SIG) { 16 } else { 12 });
            }
            hidden.push(entry);
            if end <= at {
                break;
            }
            at = end;
        }
    }
    hidden
}

/// The local header at `at` and where its data starts; `None` when there is none or it is cut
/// short.
fn local_header_at(data: &[u8], at: u64) -> Option<(LocalHeader, u64)> {
    let fixed = bytes_at(data, at, LOCAL_LEN)?;
    let (name_len, extra_len) = LocalHeader::tail_lengths(fixed)?;
    let (name_len, extra_len) = (name_len as u64, extra_len as u64);
    let name = bytes_at(data, at + LOCAL_LEN, name_len)?;
    let extra = bytes_at(data, at + LOCAL_LEN + name_len, extra_len)?;
    let local = LocalHeader::from_parts(fixed, name, extra)?;
    Some((local, at + LOCAL_LEN + name_len + extra_len))
}

/// Hidden members read at most.
const MAX_HIDDEN: usize = 1 << 16;

/// The member behind the local header at `at`, as a streaming reader reads it.
fn hidden_member(data: &[u8], at: u64, central: u64) -> Option<ZipEntry> {
    let (local, data_offset) = local_header_at(data, at)?;
    let mut compressed_size = local.compressed_size;
    if local.flags & FLAG_DESCRIPTOR != 0 && compressed_size == 0 && local.method == 8 {
        compressed_size = central.saturating_sub(data_offset);
    }
    Some(ZipEntry {
        name: local.name.clone(),
        flags: local.flags,
        method: local.method,
        crc32: local.crc32,
        compressed_size,
        uncompressed_size: local.uncompressed_size,
        local_offset: at,
        data_offset: Some(data_offset),
        local: Some(local),
    })
}

fn data_end_past(end: u64, central: u64, len: u64) -> bool {
    end > central || end > len
}

/// How the finding about a hidden local header starts.
const HIDDEN_HEADER: &str = "a local file header at offset";

fn gap_problem(gap: &[u8], at: u64) -> (u64, Severity, Option<usize>, String) {
    let hidden = memchr::memmem::find(gap, LOCAL_SIG);
    match hidden {
        Some(pos) => (
            at + pos as u64,
            Severity::High,
            None,
            format!(
                "{HIDDEN_HEADER} {} is not listed in the central directory: a hidden member that streaming \
                 readers see and others do not (analysed as they read it)",
                at + pos as u64
            ),
        ),
        None => (
            at,
            Severity::Warning,
            None,
            format!(
                "{} bytes at offset {at} belong to no member of the archive",
                gap.len()
            ),
        ),
    }
}
