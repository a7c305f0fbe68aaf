//! `convert::plan` on hand-written torch archives: what it writes, and that views, records and
//! shapes an attacker controls end in an error (never a panic, a hang or a huge allocation).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use picklefence::convert::{plan, ConvertError};
use picklefence::{Policy, ScanOptions};

/// A protocol 2 pickle, written opcode by opcode.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, text: &str) -> Self {
        let mut op = vec![b'X'];
        op.extend((text.len() as u32).to_le_bytes());
        op.extend(text.as_bytes());
        self.op(&op)
    }
    fn int(self, value: i64) -> Self {
        let mut op = vec![b'J'];
        op.extend((value as i32).to_le_bytes());
        self.op(&op)
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(mut self, values: &[i64]) -> Self {
        self = self.op(b"(");
        for &v in values {
            self = self.int(v);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride,
    /// False, OrderedDict())`.
    fn tensor(self, key: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn archive(pickle: &[u8], records: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut members: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pickle.to_vec())];
    members.push(("archive/byteorder".into(), b"little".to_vec()));
    for (key, bytes) in records {
        members.push((format!("archive/data/{key}"), bytes.clone()));
    }
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    common::stored_zip(&refs)
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn one_tensor(numel: i64, offset: i64, size: &[i64], stride: &[i64], record: Vec<u8>) -> Vec<u8> {
    let pickle = Pickle::new()
        .op(b"}(")
        .str("w")
        .tensor("0", numel, offset, size, stride)
        .op(b"u")
        .stop();
    archive(&pickle, &[("0", record)])
}

fn convert(data: &[u8]) -> Result<(Vec<String>, Vec<u8>), ConvertError> {
    let planned = plan(data, &Policy::default(), &ScanOptions::default())?;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let converted = planned.write(&out)?;
    Ok((converted.tensors, std::fs::read(out).unwrap()))
}

fn tensor_bytes(file: &[u8], name: &str) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(file).unwrap();
    st.tensor(name).unwrap().data().to_vec()
}

#[test]
fn a_view_is_written_as_its_elements_in_order() {
    let record = floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // The transpose of a 2x3 matrix stored from element 0: [[0, 3], [1, 4], [2, 5]].
    let data = one_tensor(6, 0, &[3, 2], &[1, 3], record.clone());
    let (names, file) = convert(&data).unwrap();
    assert_eq!(names, ["w"]);
    assert_eq!(tensor_bytes(&file, "w"), floats(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]));
    // A slice with an offset and a step.
    let data = one_tensor(6, 1, &[2], &[2], record);
    assert_eq!(tensor_bytes(&convert(&data).unwrap().1, "w"), floats(&[1.0, 3.0]));
}

#[test]
fn views_past_their_storage_are_refused() {
    let record = floats(&[0.0; 4]);
    for (offset, size, stride) in [
        (1, vec![4], vec![1]),
        (0, vec![2, 2], vec![3, 1]),
        (4, vec![1], vec![1]),
        (0, vec![i64::from(i32::MAX)], vec![1]),
    ] {
        let data = one_tensor(4, offset, &size, &stride, record.clone());
        let result = convert(&data);
        assert!(
            matches!(
                result,
                Err(ConvertError::Malformed { .. } | ConvertError::Unsafe(_))
            ),
            "offset {offset} size {size:?} stride {stride:?}: {result:?}"
        );
    }
}

#[test]
fn a_record_shorter_than_its_storage_is_refused() {
    let data = one_tensor(4, 0, &[4], &[1], floats(&[0.0; 3]));
    let result = convert(&data);
    assert!(
        matches!(
            result,
            Err(ConvertError::Malformed { .. } | ConvertError::Unsafe(_))
        ),
        "{result:?}"
    );
    let data = one_tensor(4, 0, &[4], &[1], floats(&[0.0; 4]));
    let missing = archive(
        &Pickle::new()
            .op(b"}(")
            .str("w")
            .tensor("7", 4, 0, &[4], &[1])
            .op(b"u")
            .stop(),
        &[("0", floats(&[0.0; 4]))],
    );
    assert!(convert(&data).is_ok());
    assert!(matches!(
        convert(&missing),
        Err(ConvertError::Malformed { .. } | ConvertError::Unsafe(_))
    ));
}

#[test]
fn an_expanded_view_that_would_fill_a_disk_is_refused_before_anything_is_written() {
    let data = one_tensor(1, 0, &[1 << 30], &[0], floats(&[1.0]));
    let result = plan(&data, &Policy::default(), &ScanOptions::default());
    assert!(
        matches!(
            result,
            Err(ConvertError::TooLarge { .. } | ConvertError::Unsafe(_))
        ),
        "{result:?}"
    );
    // A small one is materialised.
    let data = one_tensor(1, 0, &[3], &[0], floats(&[2.5]));
    assert_eq!(tensor_bytes(&convert(&data).unwrap().1, "w"), floats(&[2.5; 3]));
}

#[test]
fn names_that_clash_once_joined_are_refused() {
    let pickle = Pickle::new()
        .op(b"}(")
        .str("a.b")
        .tensor("0", 1, 0, &[1], &[1])
        .str("a")
        .op(b"}(")
        .str("b")
        .tensor("0", 1, 0, &[1], &[1])
        .op(b"u")
        .op(b"u")
        .stop();
    let data = archive(&pickle, &[("0", floats(&[1.0]))]);
    assert!(matches!(convert(&data), Err(ConvertError::NameClash { name }) if name == "a.b"));
}

#[test]
fn shared_and_cyclic_containers_end_quickly() {
    // A list that holds itself, next to a tensor.
    let cyclic = Pickle::new()
        .op(b"}(")
        .str("w")
        .tensor("0", 1, 0, &[1], &[1])
        .str("loop")
        .op(b"]q\x01h\x01a")
        .op(b"u")
        .stop();
    let data = archive(&cyclic, &[("0", floats(&[1.0]))]);
    assert!(matches!(convert(&data), Err(ConvertError::Unsupported { .. })));
    // Sixty lists each holding the one before twice: 2^60 leaves if walked naively.
    let mut doubling = Pickle::new()
        .op(b"}(")
        .str("w")
        .tensor("0", 1, 0, &[1], &[1])
        .str("deep");
    doubling = doubling.op(b"]q\x010");
    for i in 1u8..60 {
        doubling = doubling.op(&[b'(', b'h', i, b'h', i, b'l', b'q', i + 1, b'0']);
    }
    let data = archive(&doubling.op(b"h\x3cu").stop(), &[("0", floats(&[1.0]))]);
    let started = std::time::Instant::now();
    let result = convert(&data);
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
    match result {
        Ok((names, _)) => assert_eq!(names, ["w"]),
        Err(e) => assert!(matches!(e, ConvertError::Unsupported { .. }), "{e:?}"),
    }
}

#[test]
fn an_unsafe_archive_is_refused_before_it_is_evaluated() {
    let pickle = Pickle::new()
        .op(b"}(")
        .str("w")
        .tensor("0", 1, 0, &[1], &[1])
        .str("x")
        .global("os", "system")
        .str("true")
        .op(b"\x85R")
        .op(b"u")
        .stop();
    let data = archive(&pickle, &[("0", floats(&[1.0]))]);
    assert!(matches!(convert(&data), Err(ConvertError::Unsafe(report)) if !report.findings.is_empty()));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let good = one_tensor(6, 0, &[3, 2], &[1, 3], floats(&[0.0; 6]));
    // Every single-byte change and every cut of a valid archive.
    for i in 0..good.len() {
        for value in [0u8, 0x7f, 0xff] {
            let mut data = good.clone();
            data[i] = value;
            let _ = plan(&data, &Policy::default(), &ScanOptions::default());
        }
        let _ = plan(&good[..i], &Policy::default(), &ScanOptions::default());
    }
}

/// The tar format of torch < 0.4: one storage of four floats, one tensor viewing it as 2x2.
fn tar_checkpoint() -> Vec<u8> {
    let sys_info = Pickle::new().op(b"}").stop();
    let mut storages = Pickle::new().int(1).stop();
    storages.extend(
        Pickle::new()
            .op(b"(")
            .int(101)
            .str("cpu")
            .global("torch", "FloatStorage")
            .op(b"t")
            .stop(),
    );
    storages.extend(4i64.to_le_bytes());
    storages.extend(floats(&[1.0, 2.0, 3.0, 4.0]));
    storages.extend(Pickle::new().op(b"]").stop());
    let mut tensors = Pickle::new().int(1).stop();
    tensors.extend(
        Pickle::new()
            .op(b"(")
            .int(1)
            .int(101)
            .global("torch", "FloatTensor")
            .op(b"t")
            .stop(),
    );
    tensors.extend(2i32.to_le_bytes());
    tensors.extend([0u8; 4]);
    for v in [2i64, 2, 1, 2, 0] {
        tensors.extend(v.to_le_bytes());
    }
    let pickle = Pickle::new().op(b"}").str("w").op(b"P1\ns").stop();
    common::tar(&[
        ("sys_info", sys_info.as_slice()),
        ("pickle", pickle.as_slice()),
        ("storages", storages.as_slice()),
        ("tensors", tensors.as_slice()),
    ])
}

#[test]
fn the_tar_format_is_read_and_its_mutations_never_panic() {
    let good = tar_checkpoint();
    let (names, file) = convert(&good).unwrap();
    assert_eq!(names, ["w"]);
    // Stride (1, 2): the transpose of [[1, 2], [3, 4]].
    assert_eq!(tensor_bytes(&file, "w"), floats(&[1.0, 3.0, 2.0, 4.0]));
    for i in (0..good.len()).step_by(3) {
        for value in [0u8, 0x7f, 0xff] {
            let mut data = good.clone();
            data[i] = value;
            if let Ok(planned) = plan(&data, &Policy::default(), &ScanOptions::default()) {
                if planned.summary().tensor_bytes <= 1 << 20 {
                    planned.to_bytes().unwrap();
                }
            }
        }
    }
}

/// A `.npy` file of `values` as float32 with `shape` (Fortran order when asked).
fn npy(shape: &str, fortran: bool, values: &[f32]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(floats(values));
    out
}

#[test]
fn npy_arrays_are_read_from_their_header_and_mutations_never_panic() {
    let row_major = npy("(2, 2)", false, &[1.0, 2.0, 3.0, 4.0]);
    let (names, file) = convert(&row_major).unwrap();
    assert_eq!(names, ["array"]);
    assert_eq!(tensor_bytes(&file, "array"), floats(&[1.0, 2.0, 3.0, 4.0]));
    // Column-major storage of [[1, 2], [3, 4]] is 1, 3, 2, 4; written row-major.
    let fortran = npy("(2, 2)", true, &[1.0, 3.0, 2.0, 4.0]);
    assert_eq!(
        tensor_bytes(&convert(&fortran).unwrap().1, "array"),
        floats(&[1.0, 2.0, 3.0, 4.0])
    );
    // A shape larger than the data is refused.
    let short = npy("(3, 2)", false, &[1.0, 2.0, 3.0, 4.0]);
    assert!(matches!(
        convert(&short),
        Err(ConvertError::Malformed { .. } | ConvertError::Unsafe(_))
    ));
    for i in 0..row_major.len() {
        for value in [0u8, b'9', 0xff] {
            let mut data = row_major.clone();
            data[i] = value;
            if let Ok(planned) = plan(&data, &Policy::default(), &ScanOptions::default()) {
                if planned.summary().tensor_bytes <= 1 << 20 {
                    planned.to_bytes().unwrap();
                }
            }
        }
    }
}
