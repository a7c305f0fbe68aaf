//! Times the analysis of one file for `bench/core_speed.py`: prints the median of N runs in
//! nanoseconds and the peak resident memory of this process, as JSON.
//! Usage: `time_scan FILE [RUNS] [slice|stream]`.

use std::io::BufReader;
use std::time::Instant;

use picklefence::{analyze_reader, analyze_slice, Mode, Options, Policy};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: time_scan FILE [RUNS] [slice|stream]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let stream = args.next().as_deref() == Some("stream");
    let policy = Policy::default();
    let options = Options {
        mode: Mode::AllPickles,
        ..Options::default()
    };
    let mut times = Vec::with_capacity(runs);
    let mut safe = true;
    let mut data = Vec::new();
    if !stream {
        data = std::fs::read(&path)?;
    }
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let report = if stream {
            analyze_reader(BufReader::new(std::fs::File::open(&path)?), &policy, &options)
        } else {
            analyze_slice(&data, &policy, &options)
        };
        times.push(start.elapsed().as_nanos());
        safe = report.is_safe();
    }
    times.sort_unstable();
    let median = times.get(times.len() / 2).copied().unwrap_or(0);
    println!(
        "{{\"median_ns\": {median}, \"peak_rss_kib\": {}, \"safe\": {safe}}}",
        peak_rss_kib()
    );
    Ok(())
}
