//! Inputs the integration tests build: zips (a stored one, or one with knobs for every trick), a
//! gzip stream and a ustar archive (one writer each, shared by the test files that need them).

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses some of them; test code.

use std::io::Write;

/// A zip member with knobs for every trick: a different local name, flags, a wrong CRC,
/// deflate.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub data: Vec<u8>,
    pub local_name: Option<String>,
    pub flags: u16,
    pub local_flags: u16,
    pub crc: Option<u32>,
    pub deflate: bool,
}

/// A plain stored member.
pub fn member(name: &str, data: &[u8]) -> Member {
    Member {
        name: name.into(),
        data: data.to_vec(),
        local_name: None,
        flags: 0,
        local_flags: 0,
        crc: None,
        deflate: false,
    }
}

/// A zip archive of `members`.
pub fn zip(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let stored = if m.deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&m.data).unwrap();
            e.finish().unwrap()
        } else {
            m.data.clone()
        };
        let crc = m.crc.unwrap_or_else(|| crc32fast::hash(&m.data));
        let method: u16 = if m.deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        let local_name = m.local_name.clone().unwrap_or_else(|| m.name.clone());
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(m.local_flags.to_le_bytes());
        out.extend(method.to_le_bytes());
        out.extend([0, 0, 0x21, 0]);
        out.extend(crc.to_le_bytes());
        out.extend((stored.len() as u32).to_le_bytes());
        out.extend((m.data.len() as u32).to_le_bytes());
        out.extend((local_name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(local_name.as_bytes());
        out.extend(&stored);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes());
        central.extend(20u16.to_le_bytes());
        central.extend(m.flags.to_le_bytes());
        central.extend(method.to_le_bytes());
        central.extend([0, 0, 0x21, 0]);
        central.extend(crc.to_le_bytes());
        central.extend((stored.len() as u32).to_le_bytes());
        central.extend((m.data.len() as u32).to_le_bytes());
        central.extend((m.name.len() as u16).to_le_bytes());
        central.extend([0u8; 8]);
        central.extend(0u32.to_le_bytes());
        central.extend(offset.to_le_bytes());
        central.extend(m.name.as_bytes());
    }
    let cd = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A zip archive, stored (no compression), of `members`.
pub fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let members: Vec<Member> = members.iter().map(|(name, data)| member(name, data)).collect();
    zip(&members)
}

/// `data` as a gzip stream.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A ustar archive of regular files.
pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
