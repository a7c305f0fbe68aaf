//! Text output of `scan`: one verdict line per path, its findings under it, a summary.

use std::io::{self, Write};

use picklefence::{ScanReport, Severity};

use crate::render::{import_label, import_verdict, location, plural};
use crate::results::{Counts, FileResult, Outcome, RenderOptions};

/// One path's verdict line and findings.
pub fn write_file(w: &mut dyn Write, result: &FileResult, options: &RenderOptions) -> io::Result<()> {
    match &result.outcome {
        Outcome::Scanned(report) => write_report(w, &result.display, report, options)?,
        Outcome::Failed(error) => writeln!(w, "ERROR    {}: {error}", result.display)?,
        Outcome::Skipped { reason, unverified } => {
            if *unverified || !options.quiet {
                writeln!(w, "SKIPPED  {}: {reason}", result.display)?;
            }
        }
    }
    Ok(())
}

/// The summary after the last path (none with `--quiet`).
pub fn write_summary(w: &mut dyn Write, counts: &Counts, options: &RenderOptions) -> io::Result<()> {
    if options.quiet {
        return Ok(());
    }
    let mut parts = vec![
        format!("{} clean", counts.clean),
        format!("{} unsafe", counts.unsafe_),
    ];
    if counts.errors > 0 {
        parts.push(plural(counts.errors, "error", "errors"));
    }
    if counts.skipped > 0 {
        parts.push(format!("{} skipped", counts.skipped));
    }
    writeln!(w)?;
    writeln!(
        w,
        "{} scanned: {}",
        plural(counts.scanned(), "file", "files"),
        parts.join(", ")
    )
}

fn write_report(
    w: &mut dyn Write,
    display: &str,
    report: &ScanReport,
    options: &RenderOptions,
) -> io::Result<()> {
    let safe = report.is_safe();
    if safe && options.quiet {
        return Ok(());
    }
    let verdict = if safe { "clean" } else { "UNSAFE" };
    writeln!(w, "{verdict:<8} {display}  [{}]", report.format)?;
    for located in &report.findings {
        let finding = &located.finding;
        if (options.quiet && !finding.is_violation())
            || (!options.verbose && finding.severity == Severity::Info)
        {
            continue;
        }
        let import = match &finding.import {
            Some(name) => format!(": {name}"),
            None => String::new(),
        };
        writeln!(
            w,
            "  [{}] {} at {}, offset {}{import}",
            finding.severity.as_str(),
            finding.kind.as_str(),
            location(display, &located.location),
            finding.offset,
        )?;
        writeln!(w, "      {}", finding.message)?;
    }
    if options.show_imports {
        write_imports(w, report)?;
    }
    Ok(())
}

fn write_imports(w: &mut dyn Write, report: &ScanReport) -> io::Result<()> {
    let total: usize = report.entries.iter().map(|e| e.report.imports.len()).sum();
    if total == 0 {
        return writeln!(w, "  imports: none");
    }
    writeln!(w, "  imports ({total}):")?;
    for entry in &report.entries {
        let member = if entry.location.is_empty() {
            String::new()
        } else {
            format!("{} ", entry.location)
        };
        for import in &entry.report.imports {
            let written = match &import.written_as {
                Some(raw) => format!(" (written as {raw})"),
                None => String::new(),
            };
            writeln!(
                w,
                "    {member}@{:<8} {:<13} {}{written}  {}",
                import.offset,
                import.opcode,
                import_label(import),
                import_verdict(import),
            )?;
        }
        if entry.report.records_dropped > 0 {
            writeln!(
                w,
                "    {member}... {} more imports and calls were checked but are not listed",
                entry.report.records_dropped
            )?;
        }
    }
    Ok(())
}
