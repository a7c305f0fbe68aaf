//! Peak heap while scanning inputs that decompress to far more than they hold: a deflated zip
//! member and a gzip stream of 1 GiB each are analysed as they inflate, never held. The heap is
//! measured by this test binary's own allocator, so the figure is exact and not timing-bound.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// Test code.
// A counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to `System`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compress, Compression, FlushCompress};
use picklefence::{scan_bytes, FindingKind, Policy, ScanOptions, Severity, Verdict};

/// The system allocator, counting the bytes live now and the most ever live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// The pickle of `streams.rs`: a BINBYTES8 of `payload` zero bytes, then `os.system`.
fn pickle_head(payload: usize) -> Vec<u8> {
    let mut head = vec![0x80, 4, 0x8e];
    head.extend_from_slice(&(payload as u64).to_le_bytes());
    head
}
const PICKLE_TAIL: &[u8] = b"0\x8c\x02os\x8c\x06system\x93.";

/// Raw deflate of `head`, `zeros` zero bytes and `tail`, without ever holding the zeros: one
/// fully flushed block of 1 MiB of zeros is repeated (a full flush resets the window, so every
/// copy decodes alike). Returns the stream and the CRC-32 of what it inflates to.
fn deflate_zeros(head: &[u8], zeros: usize, tail: &[u8]) -> (Vec<u8>, u32) {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(zeros / 1000 + 4096);
    let run = |compress: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>| {
        let mut input = input;
        loop {
            out.reserve(64 << 10);
            let before = compress.total_in();
            compress.compress_vec(input, out, flush).expect("deflate");
            input = &input[(compress.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    };
    run(&mut compress, head, FlushCompress::Full, &mut out);
    let start = out.len();
    run(&mut compress, &vec![0; MIB], FlushCompress::Full, &mut out);
    let block = out[start..].to_vec();
    for _ in 1..zeros / MIB {
        out.extend_from_slice(&block);
    }
    run(
        &mut compress,
        &vec![0; zeros % MIB],
        FlushCompress::None,
        &mut out,
    );
    run(&mut compress, tail, FlushCompress::Finish, &mut out);
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    let zero_block = vec![0; MIB];
    for _ in 0..zeros / MIB {
        crc.update(&zero_block);
    }
    crc.update(&zero_block[..zeros % MIB]);
    crc.update(tail);
    (out, crc.finalize())
}

/// A torch zip whose `data.pkl` is deflated: `comp` inflating to `size` bytes with `crc`.
fn deflated_torch_zip(comp: &[u8], size: usize, crc: u32) -> Vec<u8> {
    let name = b"archive/data.pkl";
    let fields = |out: &mut Vec<u8>| {
        out.extend([8, 0]); // deflate
        out.extend([0u8; 4]); // time, date
        out.extend(crc.to_le_bytes());
        out.extend((comp.len() as u32).to_le_bytes());
        out.extend((size as u32).to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
    };
    let mut out = Vec::new();
    out.extend(0x0403_4b50u32.to_le_bytes());
    out.extend([20, 0, 0, 0]);
    fields(&mut out);
    out.extend(name);
    out.extend(comp);
    let central_at = out.len();
    out.extend(0x0201_4b50u32.to_le_bytes());
    out.extend([20, 0, 20, 0, 0, 0]);
    fields(&mut out);
    out.extend([0u8; 14]); // comment length, disk, attributes, local header at 0
    out.extend(name);
    let central_len = out.len() - central_at;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend((central_len as u32).to_le_bytes());
    out.extend((central_at as u32).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// `comp` (raw deflate of `size` bytes with `crc`) framed as gzip.
fn gzip_frame(comp: &[u8], size: usize, crc: u32) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(comp);
    out.extend(crc.to_le_bytes());
    out.extend((size as u32).to_le_bytes());
    out
}

/// Scans `data`, returning the report and the most heap live during the scan beyond `data`.
fn scan_measured(data: &[u8]) -> (picklefence::ScanReport, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let report = scan_bytes(data, &Policy::default(), &ScanOptions::default());
    (report, PEAK.load(Ordering::SeqCst) - base)
}

// One test: the peak is process-wide, so the cases run one after another.
#[test]
fn inputs_inflating_to_a_gibibyte_are_analysed_in_bounded_heap() {
    let head = pickle_head(GIB);
    let (comp, crc) = deflate_zeros(&head, GIB, PICKLE_TAIL);
    let size = head.len() + GIB + PICKLE_TAIL.len();
    let cases = [
        ("deflated torch zip member", deflated_torch_zip(&comp, size, crc)),
        ("gzip stream", gzip_frame(&comp, size, crc)),
    ];
    drop(comp);
    for (what, data) in cases {
        let (report, peak) = scan_measured(&data);
        assert_eq!(report.verdict, Verdict::Unsafe, "{what}");
        let system = report
            .findings
            .iter()
            .find(|f| f.finding.kind == FindingKind::DangerousImport)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: os.system after the 1 GiB payload was not found: {:#?}",
                    report.findings
                )
            });
        assert!(
            system.finding.offset > GIB as u64,
            "{what}: {}",
            system.finding.offset
        );
        assert!(
            // The one warning: torch writes its pickles stored, not deflated.
            !report
                .findings
                .iter()
                .any(|f| f.finding.kind == FindingKind::LimitExceeded
                    || (f.finding.kind == FindingKind::Container && f.finding.severity != Severity::Warning)),
            "{what}: {:#?}",
            report.findings
        );
        assert!(peak < 16 * MIB, "{what}: {} MiB of heap at peak", peak / MIB);
    }
}
