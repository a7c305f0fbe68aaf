//! The container registry: a scan names its input as `identify` does, including when the scan's
//! member limit is below the one identification parses a zip's directory to (the kept parse is
//! truncated, and the kind must still be the one `identify` tells).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{gzip, stored_zip};
use picklefence::{identify, scan_bytes, FindingKind, Policy, ScanOptions};

const PICKLE: &[u8] = b"\x80\x04K\x01.";

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
