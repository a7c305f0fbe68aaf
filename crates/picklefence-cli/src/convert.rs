//! `picklefence convert`: a pickle checkpoint to safetensors, after a clean scan, without
//! running it.

use std::io::{self, Write};

use picklefence::convert::{convert_path, ConvertError, Converted};
use picklefence::ScanOptions;

use crate::cli::ConvertArgs;
use crate::render::plural;
use crate::results::{FileResult, Outcome, RenderOptions};
use crate::{finish, policy_cmd, text, usage_error, Io, EXIT_CLEAN, EXIT_ERROR, EXIT_UNSAFE};

pub fn run(args: &ConvertArgs, io: &mut Io<'_>) -> i32 {
    let policy = match policy_cmd::load(&args.policy) {
        Ok(policy) => policy,
        Err(message) => return usage_error(io, &message),
    };
    let input = args.input.to_string_lossy().into_owned();
    let output = args.output.to_string_lossy().into_owned();
    match convert_path(&args.input, &args.output, &policy, &ScanOptions::default()) {
        Ok(converted) => {
            let written = write_summary(io.out, &input, &output, &converted, args.verbose);
            finish(EXIT_CLEAN, written, io)
        }
        Err(ConvertError::Unsafe(report)) => {
            let result = FileResult {
                display: input.clone(),
                outcome: Outcome::Scanned(*report),
                origin: None,
            };
            let options = RenderOptions {
                quiet: false,
                show_imports: false,
                verbose: args.verbose,
                policy_name: policy.name().to_string(),
                exit_code: EXIT_UNSAFE,
            };
            let written = text::write_file(io.out, &result, &options).and_then(|()| {
                writeln!(
                    io.out,
                    "not converted: {input} is unsafe under the policy; {output} was not written"
                )
            });
            finish(EXIT_UNSAFE, written, io)
        }
        Err(e) => {
            let _ = writeln!(io.err, "picklefence: {input}: not converted: {e}");
            EXIT_ERROR
        }
    }
}

fn write_summary(
    w: &mut dyn Write,
    input: &str,
    output: &str,
    c: &Converted,
    verbose: bool,
) -> io::Result<()> {
    writeln!(w, "converted {input} -> {output}  [{}]", c.format)?;
    writeln!(
        w,
        "  {} ({} bytes), {}",
        plural(c.tensors.len(), "tensor", "tensors"),
        c.tensor_bytes,
        plural(c.metadata.len(), "metadata entry", "metadata entries"),
    )?;
    if verbose {
        for name in &c.tensors {
            writeln!(w, "  tensor   {name}")?;
        }
        for (key, value) in &c.metadata {
            writeln!(w, "  metadata {key} = {value}")?;
        }
    }
    for (tensor, first) in &c.shared {
        writeln!(
            w,
            "  shared   {tensor} uses the storage of {first} (written with its own bytes)"
        )?;
    }
    for dropped in &c.dropped {
        let path = if dropped.path.is_empty() {
            "(the checkpoint)"
        } else {
            &dropped.path
        };
        writeln!(w, "  dropped  {path}: {}", dropped.what)?;
    }
    Ok(())
}
