//! POSIX tar (v7, ustar, GNU long names, pax `path`/`size`), read the way Python's `tarfile`
//! reads it: header by header, up to the first zero block.

use std::io::Read;

use thiserror::Error;

/// Size of a tar block in bytes: headers take one block, member data is padded to whole blocks.
pub const BLOCK: u64 = 512;

/// Why a tar could not be walked to its end. Offsets count from the start of the tar stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TarError {
    /// A block where a header should be is not a header with a valid checksum.
    #[error("tar header at offset {offset} has a bad checksum")]
    Checksum {
        /// Offset of the block.
        offset: u64,
    },
    /// A header that cannot be read, an oversized extended header, or more members than the limit.
    #[error("tar header at offset {offset}: {what}")]
    Bad {
        /// Offset of the header.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The input ends inside a header, an extended header or member data.
    #[error("the tar input ends at offset {offset} inside {what}")]
    Truncated {
        /// Offset where the cut-short part starts.
        offset: u64,
        /// Which part it is.
        what: &'static str,
    },
    /// The underlying reader failed.
    #[error("read error at offset {offset}: {message}")]
    Io {
        /// Offset of the header or member data being read.
        offset: u64,
        /// The I/O error's message.
        message: String,
    },
}

/// One member as `tarfile` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    /// The member's path (ustar prefix, GNU long name or pax `path` applied).
    pub name: String,
    /// Size of the member's data in bytes (pax `size` applied); 0 unless a regular, contiguous
    /// or sparse file, as `tarfile` reads it.
    pub size: u64,
    /// `b'0'`/`0` regular, `b'5'` directory, `b'1'`/`b'2'` links, ...
    pub kind: u8,
    /// The link target (GNU long link or pax `linkpath` applied); empty when the header gives none.
    pub link: String,
    /// Offset of the header.
    pub header_offset: u64,
    /// Offset of the data.
    pub data_offset: u64,
}

impl TarMember {
    /// Whether the member is a regular file (type `0`, NUL or `7`, contiguous).
    pub fn is_file(&self) -> bool {
        matches!(self.kind, b'0' | 0 | b'7')
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for large values.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field.first()? & 0x7f);
        for &b in field.get(1..)? {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let text = std::str::from_utf8(&text).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).into_owned()
}

/// Whether `block` is a header with a valid checksum (what `tarfile.open` requires).
pub fn is_header(block: &[u8]) -> bool {
    let Some(stored) = block.get(148..156).and_then(octal) else {
        return false;
    };
    if block.len() < BLOCK as usize || block.iter().all(|&b| b == 0) {
        return false;
    }
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// Pax extended header records (`<len> <key>=<value>\n`).
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(rest.get(..space).unwrap_or_default())
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
        else {
            break;
        };
        let Some(record) = rest.get(space + 1..len) else {
            break;
        };
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(record.get(..eq).unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(record.get(eq + 1..).unwrap_or_default()).into_owned(),
            ));
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    out
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// Overrides from pax and GNU long-name headers for the next member.
#[derive(Default)]
struct Pending {
    name: Option<String>,
    size: Option<u64>,
    link: Option<String>,
}

/// Reads members from a block source; `read_data` supplies the content of metadata members.
struct Walker {
    pending: Pending,
    offset: u64,
}

impl Walker {
    /// Interprets one header; `Ok(None)` for metadata headers (their content is consumed via
    /// `meta`), `Err` on a bad header.
    fn header(
        &mut self,
        block: &[u8],
        meta: &mut dyn FnMut(u64) -> Result<Vec<u8>, TarError>,
    ) -> Result<Option<TarMember>, TarError> {
        let at = self.offset;
        if !is_header(block) {
            return Err(TarError::Checksum { offset: at });
        }
        let field = |r: std::ops::Range<usize>| block.get(r).unwrap_or_default();
        let size = octal(field(124..136)).ok_or_else(|| TarError::Bad {
            offset: at,
            what: "the size field is not octal".into(),
        })?;
        let kind = block.get(156).copied().unwrap_or(0);
        let mut name = cstr(field(0..100));
        if field(257..262) == b"ustar" {
            let prefix = cstr(field(345..500));
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let data_offset = at + BLOCK;
        self.offset = data_offset;
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                let content = meta(size)?;
                self.offset = data_offset + padded(size);
                match kind {
                    b'x' => {
                        for (key, value) in pax_records(&content) {
                            match key.as_str() {
                                "path" => self.pending.name = Some(value),
                                "linkpath" => self.pending.link = Some(value),
                                "size" => self.pending.size = value.parse().ok(),
                                _ => {}
                            }
                        }
                    }
                    b'L' => self.pending.name = Some(cstr(&content)),
                    b'K' => self.pending.link = Some(cstr(&content)),
                    _ => {}
                }
                Ok(None)
            }
            _ => {
                let pending = std::mem::take(&mut self.pending);
                let size = pending.size.unwrap_or(size);
                // Only regular files carry data (tarfile ignores the size of others).
                let size = if matches!(kind, b'0' | 0 | b'7' | b'S') {
                    size
                } else {
                    0
                };
                let member = TarMember {
                    name: pending.name.unwrap_or(name),
                    size,
                    kind,
                    link: pending.link.unwrap_or_else(|| cstr(field(157..257))),
                    header_offset: at,
                    data_offset,
                };
                self.offset = data_offset.saturating_add(padded(size));
                Ok(Some(member))
            }
        }
    }
}

/// Every member of a tar held in memory. Members whose data runs past the input are an error.
pub fn members(data: &[u8], max_members: usize) -> Result<(Vec<TarMember>, u64), TarError> {
    let mut walker = Walker {
        pending: Pending::default(),
        offset: 0,
    };
    let mut out = Vec::new();
    loop {
        let at = walker.offset;
        let Some(block) = usize::try_from(at)
            .ok()
            .and_then(|a| data.get(a..a + BLOCK as usize))
        else {
            // tarfile accepts a missing end-of-archive marker.
            return Ok((out, at.min(data.len() as u64)));
        };
        if block.iter().all(|&b| b == 0) {
            return Ok((out, at));
        }
        if out.len() >= max_members {
            return Err(TarError::Bad {
                offset: at,
                what: format!("more than {max_members} members"),
            });
        }
        let mut meta = |size: u64| -> Result<Vec<u8>, TarError> {
            let start = at + BLOCK;
            let bytes = usize::try_from(start)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(s, n)| data.get(s..s.checked_add(n)?))
                .filter(|_| size <= 1 << 20)
                .ok_or(TarError::Truncated {
                    offset: start,
                    what: "an extended header",
                })?;
            Ok(bytes.to_vec())
        };
        if let Some(member) = walker.header(block, &mut meta)? {
            if member.data_offset.saturating_add(member.size) > data.len() as u64 {
                return Err(TarError::Truncated {
                    offset: member.data_offset,
                    what: "member data",
                });
            }
            out.push(member);
        }
    }
}

/// Streaming walk: calls `each(member, reader limited to its data)` for every member, then
/// reads past whatever `each` left of the data. Returns the number of members.
pub fn walk<R: Read>(
    mut reader: R,
    max_members: usize,
    each: &mut dyn FnMut(&TarMember, &mut dyn Read),
) -> Result<usize, TarError> {
    let mut walker = Walker {
        pending: Pending::default(),
        offset: 0,
    };
    let mut count = 0;
    let io = |offset: u64| {
        move |e: std::io::Error| TarError::Io {
            offset,
            message: e.to_string(),
        }
    };
    loop {
        let at = walker.offset;
        let mut block = vec![0u8; BLOCK as usize];
        let got = read_full(&mut reader, &mut block).map_err(io(at))?;
        if got == 0 {
            return Ok(count);
        }
        if got < block.len() {
            return Err(TarError::Truncated {
                offset: at,
                what: "a header",
            });
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(count);
        }
        if count >= max_members {
            return Err(TarError::Bad {
                offset: at,
                what: format!("more than {max_members} members"),
            });
        }
        let header = {
            let reader = &mut reader;
            let mut meta = |size: u64| -> Result<Vec<u8>, TarError> {
                if size > 1 << 20 {
                    return Err(TarError::Bad {
                        offset: at,
                        what: "an extended header over 1 MiB".into(),
                    });
                }
                let mut content = vec![0u8; usize::try_from(padded(size)).unwrap_or(0)];
                let got = read_full(reader, &mut content).map_err(io(at))?;
                if got < content.len() {
                    return Err(TarError::Truncated {
                        offset: at + BLOCK,
                        what: "an extended header",
                    });
                }
                content.truncate(usize::try_from(size).unwrap_or(0));
                Ok(content)
            };
            walker.header(&block, &mut meta)?
        };
        let Some(member) = header else {
            continue;
        };
        count += 1;
        let mut limited = (&mut reader).take(member.size);
        each(&member, &mut limited);
        std::io::copy(&mut limited, &mut std::io::sink()).map_err(io(member.data_offset))?;
        if limited.limit() > 0 {
            return Err(TarError::Truncated {
                offset: member.data_offset,
                what: "member data",
            });
        }
        let pad = padded(member.size) - member.size;
        std::io::copy(&mut (&mut reader).take(pad), &mut std::io::sink()).map_err(io(member.data_offset))?;
    }
}

fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(window) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(window) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut block = vec![0u8; 512];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..108].copy_from_slice(b"0000644\0");
        let size_field = format!("{size:011o}\0");
        block[124..136].copy_from_slice(size_field.as_bytes());
        block[156] = kind;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    #[test]
    fn lists_members_in_memory_and_streaming() {
        let mut tar = header("a.pkl", 3, b'0');
        tar.extend(b"abc");
        tar.resize(1024, 0);
        tar.extend(header("dir", 0, b'5'));
        tar.extend(vec![0u8; 1024]);
        let (members, end) = members(&tar, 10).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].name, "a.pkl");
        assert_eq!(members[0].data_offset, 512);
        assert_eq!(end, 1536);
        let mut seen = Vec::new();
        let n = walk(&tar[..], 10, &mut |m, r| {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            seen.push((m.name.clone(), buf));
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[0], ("a.pkl".to_string(), b"abc".to_vec()));
        assert!(is_header(&tar[..512]));
        let mut bad = tar.clone();
        bad[0] = b'b';
        assert!(matches!(super::members(&bad, 10), Err(TarError::Checksum { .. })));
        // Data past the end of input.
        assert!(matches!(
            super::members(&tar[..514], 10),
            Err(TarError::Truncated { .. })
        ));
    }
}
