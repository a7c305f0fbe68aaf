//! Container scanning cost: a PyTorch zip checkpoint with ~2 MB and with ~2 GB of tensor data
//! (the same pickle; the big file is sparse), and, when the fixture script can run, an `.npz`
//! and a joblib RandomForest. Run: `cargo bench -p picklefence --bench containers`.
//!
//! The 2 GB / 2 MB ratio should stay near 1: only pickles and headers are read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use picklefence::{scan_path, Policy, ScanOptions};

const TENSORS: usize = 16;

fn binunicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn binint(out: &mut Vec<u8>, v: u32) {
    out.push(b'J');
    out.extend(v.to_le_bytes());
}

/// `data.pkl` of an OrderedDict of float tensors, laid out as `torch.save` writes it.
fn data_pkl(numel: u32) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(".to_vec();
    for i in 0..TENSORS {
        binunicode(&mut p, &format!("layer{i}.weight"));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        binunicode(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        binunicode(&mut p, &i.to_string());
        binunicode(&mut p, "cpu");
        binint(&mut p, numel);
        p.extend(b"tQK\x00(");
        binint(&mut p, numel);
        p.extend(b"tK\x01\x85\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u.");
    p
}

/// Writes a stored zip; large members are left as holes (sparse), CRCs of storages are not
/// computed (the scanner never reads storage members).
fn write_torch_zip(path: &Path, storage_bytes: u64) {
    let numel = u32::try_from(storage_bytes / TENSORS as u64 / 4).unwrap();
    let member_len = u64::from(numel) * 4;
    let mut file = File::create(path).unwrap();
    let mut central = Vec::new();
    let mut count = 0u16;
    let mut add = |file: &mut File, name: &str, data: Option<&[u8]>, len: u64| {
        let offset = file.stream_position().unwrap();
        let crc = data.map_or(0, crc32fast::hash);
        let header = |sig: u32| {
            let mut h = sig.to_le_bytes().to_vec();
            h.extend(20u16.to_le_bytes());
            h
        };
        let mut local = header(0x0403_4b50);
        local.extend(0u16.to_le_bytes()); // flags
        local.extend(0u16.to_le_bytes()); // stored
        local.extend([0, 0, 0x21, 0]); // time, date
        local.extend(crc.to_le_bytes());
        local.extend((len as u32).to_le_bytes());
        local.extend((len as u32).to_le_bytes());
        local.extend((name.len() as u16).to_le_bytes());
        local.extend(0u16.to_le_bytes());
        local.extend(name.as_bytes());
        file.write_all(&local).unwrap();
        match data {
            Some(d) => file.write_all(d).unwrap(),
            None => {
                file.seek(SeekFrom::Current(len as i64)).unwrap();
            }
        }
        let mut c = header(0x0201_4b50);
        c.extend(20u16.to_le_bytes());
        c.extend(0u16.to_le_bytes());
        c.extend(0u16.to_le_bytes());
        c.extend([0, 0, 0x21, 0]);
        c.extend(crc.to_le_bytes());
        c.extend((len as u32).to_le_bytes());
        c.extend((len as u32).to_le_bytes());
        c.extend((name.len() as u16).to_le_bytes());
        c.extend([0u8; 8]); // extra, comment, disk, internal attributes
        c.extend(0u32.to_le_bytes());
        c.extend((offset as u32).to_le_bytes());
        c.extend(name.as_bytes());
        central.extend(c);
        count += 1;
    };
    let pkl = data_pkl(numel);
    add(&mut file, "archive/data.pkl", Some(&pkl), pkl.len() as u64);
    add(&mut file, "archive/byteorder", Some(b"little"), 6);
    for i in 0..TENSORS {
        add(&mut file, &format!("archive/data/{i}"), None, member_len);
    }
    add(&mut file, "archive/version", Some(b"3\n"), 2);
    let cd_offset = file.stream_position().unwrap();
    file.write_all(&central).unwrap();
    let mut eocd = 0x0605_4b50u32.to_le_bytes().to_vec();
    eocd.extend([0u8; 4]);
    eocd.extend(count.to_le_bytes());
    eocd.extend(count.to_le_bytes());
    eocd.extend((central.len() as u32).to_le_bytes());
    eocd.extend((cd_offset as u32).to_le_bytes());
    eocd.extend(0u16.to_le_bytes());
    file.write_all(&eocd).unwrap();
}

/// Fixtures from the Python script, when it can run here.
fn python_fixtures(dir: &Path) -> Option<PathBuf> {
    if let Ok(existing) = std::env::var("PICKLEFENCE_FIXTURES") {
        return Some(PathBuf::from(existing));
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make_model_fixtures.py");
    let out = dir.join("fixtures");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg(&out)
        .output()
        .ok()?;
    status.status.success().then_some(out)
}

fn median_scan(path: &Path, runs: usize) -> Duration {
    let policy = Policy::default();
    let options = ScanOptions::default();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let report = scan_path(path, &policy, &options).unwrap();
            assert!(report.is_safe(), "{:?}", report.findings);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn containers(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.pt");
    let big = dir.path().join("big.pt");
    write_torch_zip(&small, 2 << 20);
    write_torch_zip(&big, 2 << 30);
    let policy = Policy::default();
    let options = ScanOptions::default();
    let mut group = c.benchmark_group("containers");
    group.bench_function("torch_zip_2MB", |b| {
        b.iter(|| scan_path(&small, &policy, &options).unwrap())
    });
    group.bench_function("torch_zip_2GB", |b| {
        b.iter(|| scan_path(&big, &policy, &options).unwrap())
    });
    if let Some(fixtures) = python_fixtures(dir.path()) {
        for name in [
            "arrays.npz",
            "arrays_compressed.npz",
            "random_forest.joblib",
            "random_forest.joblib.z",
        ] {
            let path = fixtures.join("benign").join(name);
            if path.exists() {
                group.bench_function(name, |b| b.iter(|| scan_path(&path, &policy, &options).unwrap()));
            }
        }
    } else {
        eprintln!("containers: python fixtures unavailable; npz and joblib benchmarks skipped");
    }
    group.finish();
    let (s, b) = (median_scan(&small, 51), median_scan(&big, 51));
    eprintln!(
        "containers: torch zip scan median {s:?} (2 MB of tensors) vs {b:?} (2 GB): ratio {:.2}",
        b.as_secs_f64() / s.as_secs_f64()
    );
}

criterion_group!(benches, containers);
criterion_main!(benches);
