//! The legacy PyTorch readers (sequential pickles with storage bytes between them; the tar
//! format's storages and tensors members): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::formats::torch::{is_legacy, scan_legacy, scan_tar_storages, scan_tar_tensors};
use picklefence::{Decoder, Options, Policy};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::ml_default();
    let options = Options::default();
    let _ = is_legacy(data);
    let report = scan_legacy(Decoder::from_slice(data), &policy, &options);
    assert!(report.consumed <= data.len() as u64);
    let _ = scan_tar_storages(data, &policy, &options);
    let _ = scan_tar_tensors(data, &policy, &options);
});
