//! Runs the joblib pre-scan of one file N times, for callgrind: `profile_joblib FILE [RUNS]`.

use picklefence::{analyze_joblib_slice, Detail, Mode, Options, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: profile_joblib FILE [RUNS]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);
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
        imports += analyze_joblib_slice(&data, &policy, &options).imports.len();
    }
    println!("{imports} import records");
    Ok(())
}
