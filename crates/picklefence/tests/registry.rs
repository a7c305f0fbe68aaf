//! The container registry: a scan names its input as `identify` does, including when the scan's
//! member limit is below the one identification parses a zip's directory to (the kept parse is
//! truncated, and the kind must still be the one `identify` tells).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{gzip, stored_zip};
use picklefence::{identify, scan_bytes, FindingKind, Policy, ScanOptions};

const PICKLE: &[u8] = b"\x80\x04K\x01.";

/// joblib's old `ZF` format: the length as `hex()` padded to 19 characters, then zlib.
fn joblib_zf(pickle: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = format!("ZF{:<19}", format!("{:#x}", pickle.len())).into_bytes();
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(pickle).unwrap();
    out.extend(encoder.finish().unwrap());
    out
}

#[test]
fn a_joblib_zf_file_is_read_through_its_zlib_stream() {
    let evil = b"\x80\x02cos\nsystem\nq\x00.";
    let report = scan_bytes(&joblib_zf(evil), &Policy::default(), &ScanOptions::default());
    assert_eq!(report.format, "joblib-zf");
    let finding = report
        .findings
        .iter()
        .find(|f| f.finding.kind == FindingKind::DangerousImport)
        .expect("the import inside is found");
    assert_eq!(finding.location, "<joblib-zf>");
    // joblib 0.8 wrote one more space after the length field; read_zfile skips it.
    let mut older = joblib_zf(PICKLE);
    older.insert(21, b' ');
    let report = scan_bytes(&older, &Policy::default(), &ScanOptions::default());
    assert_eq!(
        (report.format.as_str(), report.is_safe()),
        ("joblib-zf", true),
        "{report:?}"
    );
}

#[test]
fn a_scan_names_its_input_as_identify_does() {
    let npy = {
        let mut header = b"\x93NUMPY\x01\x00".to_vec();
        let dict = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
        // The header (magic, version, length, dict) is padded to a multiple of 64 bytes.
        let total = (10 + dict.len() + 1).next_multiple_of(64);
        header.extend(((total - 10) as u16).to_le_bytes());
        header.extend(dict);
        header.resize(total - 1, b' ');
        header.push(b'\n');
        header.extend([0u8; 8]);
        header
    };
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("pickle", PICKLE.to_vec()),
        ("gzip", gzip(PICKLE)),
        ("npy", npy),
        ("zip", stored_zip(&[("a.txt", b"hello")])),
        (
            "pytorch-zip",
            stored_zip(&[("archive/data.pkl", PICKLE), ("archive/version", b"3\n")]),
        ),
        ("7z", b"7z\xbc\xaf\x27\x1c\x00\x04".to_vec()),
        ("joblib-zf", joblib_zf(PICKLE)),
        // A ZF header whose length field joblib cannot read stays unsupported.
        ("joblib-compat", b"ZF????????????????????xyz".to_vec()),
        ("unknown", b"hello, world".to_vec()),
    ];
    for (name, data) in inputs {
        let report = scan_bytes(&data, &Policy::default(), &ScanOptions::default());
        assert_eq!(identify(&data).name(), name);
        assert_eq!(report.format, name);
    }
}

#[test]
fn a_member_limit_below_identifications_still_tells_the_zip_kind() {
    // data.pkl is the third member: a directory read to two members does not list it.
    let data = stored_zip(&[
        ("archive/byteorder", b"little"),
        ("archive/version", b"3\n"),
        ("archive/data.pkl", PICKLE),
    ]);
    let options = ScanOptions {
        max_members: 2,
        ..ScanOptions::default()
    };
    let report = scan_bytes(&data, &Policy::default(), &options);
    assert_eq!(identify(&data).name(), "pytorch-zip");
    assert_eq!(report.format, "pytorch-zip");
    assert!(report
        .findings
        .iter()
        .any(|f| f.finding.kind == FindingKind::LimitExceeded));
}
