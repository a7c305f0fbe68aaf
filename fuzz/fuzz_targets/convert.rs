//! Checkpoint conversion over arbitrary bytes: the scan, the data-only evaluation of the pickle,
//! the views checked against their storages and the safetensors bytes written in memory. Never
//! panics; what it writes is a valid safetensors file with one tensor per name it reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::convert::plan;
use picklefence::{Policy, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let options = ScanOptions {
        limits: picklefence::Limits {
            max_opcodes: 250_000,
            ..picklefence::Limits::default()
        },
        max_decompressed: 1 << 20,
        ratio_floor: 128 << 10,
        ..ScanOptions::default()
    };
    let Ok(planned) = plan(data, &Policy::ml_default(), &options) else {
        return;
    };
    // Planning checked every view; writing is exercised on outputs of up to 1 MiB (a 16 KiB
    // input may plan an expanded view of up to 256 MiB, which only costs time here).
    if planned.summary().tensor_bytes > 1 << 20 {
        return;
    }
    let names = planned.summary().tensors.clone();
    let written = planned.to_bytes().expect("a checked plan serialises");
    let file = safetensors::SafeTensors::deserialize(&written).expect("the output is safetensors");
    assert_eq!(file.len(), names.len());
    for name in &names {
        assert!(file.tensor(name).is_ok(), "{name} is missing");
    }
});
