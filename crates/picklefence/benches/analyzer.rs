//! Decoder and analyzer throughput on pickles shaped like what CPython writes.
//! Run: `cargo bench -p picklefence --bench analyzer`.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use picklefence::{analyze_reader, analyze_slice, Decoder, Mode, Options, Policy};

/// A tiny protocol-4 writer: enough to lay out the workloads the way `pickle.dumps` does.
struct Writer {
    out: Vec<u8>,
    memo: u32,
}

impl Writer {
    fn new() -> Self {
        Writer {
            out: vec![0x80, 4],
            memo: 0,
        }
    }
    fn op(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
    fn memoize(&mut self) {
        self.out.push(0x94);
        self.memo += 1;
    }
    fn int(&mut self, v: u32) {
        if v < 256 {
            self.op(&[b'K', v as u8]);
        } else if v < 65536 {
            self.op(b"M");
            self.op(&(v as u16).to_le_bytes());
        } else {
            self.op(b"J");
            self.op(&v.to_le_bytes());
        }
    }
    fn str(&mut self, s: &str) {
        self.op(&[0x8c, s.len() as u8]);
        self.op(s.as_bytes());
        self.memoize();
    }
    fn global(&mut self, module: &str, name: &str) {
        self.str(module);
        self.str(name);
        self.op(&[0x93]);
        self.memoize();
    }
    fn list_of(&mut self, n: u32, mut item: impl FnMut(&mut Writer, u32)) {
        self.op(b"]");
        self.memoize();
        let mut i = 0;
        while i < n {
            self.op(b"(");
            for j in i..(i + 1000).min(n) {
                item(self, j);
            }
            self.op(b"e");
            i += 1000;
        }
    }
    fn finish(mut self) -> Vec<u8> {
        self.op(b".");
        self.out
    }
}

fn ints() -> Vec<u8> {
    let mut w = Writer::new();
    w.list_of(1_000_000, |w, i| w.int(i));
    w.finish()
}

fn tuples() -> Vec<u8> {
    let mut w = Writer::new();
    w.list_of(1_000_000, |w, i| {
        w.int(i);
        w.int(i + 1);
        w.op(&[0x86]);
        w.memoize();
    });
    w.finish()
}

fn strings() -> Vec<u8> {
    let mut w = Writer::new();
    w.list_of(1_000_000, |w, i| w.str(&format!("s{i}")));
    w.finish()
}

fn ndarray(bytes: usize) -> Vec<u8> {
    let mut w = Writer::new();
    w.global("numpy.core.multiarray", "_reconstruct");
    w.global("numpy", "ndarray");
    w.int(0);
    w.op(&[0x85]);
    w.memoize();
    w.op(b"C\x01b");
    w.memoize();
    w.op(&[0x87]);
    w.memoize();
    w.op(b"R");
    w.memoize();
    w.op(b"(K\x01");
    w.int((bytes / 8) as u32);
    w.op(&[0x85]);
    w.memoize();
    w.global("numpy", "dtype");
    w.str("f8");
    w.op(&[0x89, 0x88, 0x87]);
    w.memoize();
    w.op(b"R");
    w.memoize();
    w.op(b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t");
    w.op(b"b");
    w.op(&[0x89, 0x8e]);
    w.op(&(bytes as u64).to_le_bytes());
    w.out.resize(w.out.len() + bytes, 0x3f);
    w.op(b"tb");
    w.finish()
}

fn state_dict(tensors: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.global("collections", "OrderedDict");
    w.op(b")R");
    w.memoize();
    w.op(b"(");
    for i in 0..tensors {
        w.str(&format!("layer{i}.weight"));
        w.global("torch._utils", "_rebuild_tensor_v2");
        w.op(b"(");
        w.str("storage");
        w.global("torch", "FloatStorage");
        w.str(&i.to_string());
        w.str("cpu");
        w.int(4096);
        w.op(b"tQ");
        w.int(0);
        w.int(64);
        w.int(64);
        w.op(&[0x86]);
        w.int(64);
        w.int(1);
        w.op(&[0x86, 0x89]);
        w.global("collections", "OrderedDict");
        w.op(b")R");
        w.op(b"tR");
        w.memoize();
    }
    w.op(b"u");
    w.finish()
}

fn nested(depth: usize) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    for _ in 0..depth {
        out.extend_from_slice(b"](");
    }
    for _ in 0..depth {
        out.extend_from_slice(b"e");
    }
    out.push(b'.');
    out
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let options = Options::default();
    let workloads: Vec<(&str, Vec<u8>)> = vec![
        ("1M ints", ints()),
        ("1M 2-tuples", tuples()),
        ("1M short strings", strings()),
        ("50 MB ndarray", ndarray(50 << 20)),
        ("500-tensor state_dict", state_dict(500)),
        ("nested 50k", nested(50_000)),
    ];
    let mut group = c.benchmark_group("analyze");
    group.sample_size(20);
    for (name, data) in &workloads {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", name), data, |b, data| {
            b.iter(|| {
                let mut decoder = Decoder::from_slice(data);
                let mut count = 0u64;
                while let Ok(Some(_)) = decoder.next_op() {
                    count += 1;
                }
                count
            })
        });
        group.bench_with_input(BenchmarkId::new("analyze_slice", name), data, |b, data| {
            b.iter(|| analyze_slice(data, &policy, &options))
        });
        group.bench_with_input(BenchmarkId::new("analyze_reader", name), data, |b, data| {
            let first = Options {
                mode: Mode::FirstPickle,
                ..options
            };
            b.iter(|| analyze_reader(std::io::BufReader::new(&data[..]), &policy, &first))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
