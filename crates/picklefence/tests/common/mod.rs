//! Inputs the integration tests build: zips (a stored one, or one with knobs for every trick), a
//! gzip stream, a ustar archive and a legacy torch file (one writer each, shared by the test files
//! that need them, the CLI crate's too).

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

/// A legacy (`_use_new_zipfile_serialization=False`) torch file holding one two-float storage
/// `k` whose raw bytes are `cos\nsys.`; returns the file and the offset of the storage's
/// element count.
pub fn legacy_torch() -> (Vec<u8>, usize) {
    let mut f = Vec::new();
    f.extend(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.");
    f.extend(b"\x80\x02M\xe9\x03.");
    f.extend(b"\x80\x02}q\x00.");
    f.extend(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuK\x02NtQK\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.");
    f.extend(b"\x80\x02]q\x00X\x01\x00\x00\x00kq\x01a.");
    let storage_at = f.len();
    f.extend(2i64.to_le_bytes());
    f.extend(b"cos\nsys."); // 8 raw bytes: two floats
    (f, storage_at)
}
