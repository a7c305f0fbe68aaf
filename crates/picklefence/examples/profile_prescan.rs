//! Runs the load pre-scan of one file N times, for callgrind:
//! `profile_prescan FILE [RUNS] [pickle|joblib]` (a pickle as `pickle.load` reads it, or a joblib
//! stream as `joblib.load` does; default: joblib).

use picklefence::{analyze_joblib_slice, analyze_slice, Detail, Mode, Options, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: profile_prescan FILE [RUNS] [pickle|joblib]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);
    let joblib = match args.next().as_deref() {
        None | Some("joblib") => true,
        Some("pickle") => false,
        Some(other) => return Err(format!("unknown kind {other:?}: pickle or joblib").into()),
    };
    let data = std::fs::read(&path)?;
    let policy = Policy::default();
    // As the load pre-scan runs it.
    let options = Options {
        mode: Mode::FirstPickle,
        detail: Detail::Verdict,
        ..Options::default()
    };
    let mut imports = 0;
    for _ in 0..runs {
        let report = if joblib {
            analyze_joblib_slice(&data, &policy, &options)
        } else {
            analyze_slice(&data, &policy, &options)
        };
        imports += report.imports.len();
    }
    println!("{imports} import records");
    Ok(())
}
