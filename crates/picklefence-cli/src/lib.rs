//! The `picklefence` command line. It is a library too, so that the Python package can offer the
//! very same command through its native module: [`run`] takes the arguments (program name
//! first), writes to stdout and stderr, and returns the exit code.

mod cli;
mod convert;
mod disasm;
mod hf;
mod json;
mod policy_cmd;
pub mod records;
mod render;
mod results;
mod sarif;
mod scan;
mod suggest;
mod text;
mod walk;

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};

use clap::Parser;

pub use cli::Cli;

/// Every file was scanned and found clean.
pub const EXIT_CLEAN: i32 = 0;
/// At least one file is unsafe.
pub const EXIT_UNSAFE: i32 = 1;
/// A usage error, or a file that could not be read (with nothing unsafe found).
pub const EXIT_ERROR: i32 = 2;

/// Where a command writes. `interactive` allows a progress bar on the process's own stderr.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub interactive: bool,
}

/// Runs the command line on `args` (the first is the program name) against the process's
/// stdout and stderr, and returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut out = io::BufWriter::new(io::stdout());
    // Unlocked: the progress bar writes to stderr from worker threads.
    let mut err = io::stderr();
    let interactive = io::stderr().is_terminal();
    let code = run_with(
        args,
        &mut Io {
            out: &mut out,
            err: &mut err,
            interactive,
        },
    );
    match out.flush() {
        Ok(()) => code,
        // A reader that went away (`| head`) has what it wanted; the verdict still stands.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "picklefence: cannot write the output: {e}");
            EXIT_ERROR
        }
    }
}

/// Runs the command line on `args`, writing to the given streams.
pub fn run_with<I, T>(args: I, io: &mut Io<'_>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let rendered = e.render().to_string();
            let written = if e.use_stderr() {
                io.err.write_all(rendered.as_bytes())
            } else {
                io.out.write_all(rendered.as_bytes())
            };
            return match written {
                Ok(()) => e.exit_code(),
                Err(_) => EXIT_ERROR,
            };
        }
    };
    match &cli.command {
        cli::Command::Scan(args) => scan::run(args, io),
        cli::Command::Disasm(args) => disasm::run(args, io),
        cli::Command::Policy(args) => policy_cmd::run(args, io),
        cli::Command::Convert(args) => convert::run(args, io),
    }
}

/// The exit code once the output is written (or failed to be).
pub(crate) fn finish(code: i32, written: io::Result<()>, io: &mut Io<'_>) -> i32 {
    match written {
        Ok(()) => code,
        // A reader that went away (`| head`) has what it wanted; the verdict still stands.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            let _ = writeln!(io.err, "picklefence: cannot write the output: {e}");
            EXIT_ERROR
        }
    }
}

/// Reports a usage error (bad policy, option or file) and returns [`EXIT_ERROR`].
pub(crate) fn usage_error(io: &mut Io<'_>, message: &str) -> i32 {
    let _ = writeln!(io.err, "picklefence: error: {message}");
    EXIT_ERROR
}
