//! Whole-input scanning: identify what the bytes are, analyse every pickle they hold, and
//! gather the findings with the place each was found at.

use serde::Serialize;

use crate::analyzer::{analyze_slice, Limits, Mode, Options, PickleReport};
use crate::findings::Finding;
use crate::policy::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation: the policy allows everything found.
    Clean,
    /// At least one violation.
    Unsafe,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Unsafe => "unsafe",
        }
    }
}

/// One analysed pickle stream and where it was found (`""` for the input itself,
/// `archive/data.pkl` for a member, nested members joined with `!`).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub location: String,
    pub report: PickleReport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocatedFinding {
    pub location: String,
    #[serde(flatten)]
    pub finding: Finding,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// What the input was identified as (by content), e.g. `pickle`, `pytorch-zip`.
    pub format: String,
    pub verdict: Verdict,
    pub entries: Vec<Entry>,
    /// Every finding: the container's own and each entry's.
    pub findings: Vec<LocatedFinding>,
}

impl ScanReport {
    pub fn new(format: impl Into<String>) -> Self {
        ScanReport {
            format: format.into(),
            verdict: Verdict::Clean,
            entries: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn add_finding(&mut self, location: impl Into<String>, finding: Finding) {
        if finding.is_violation() {
            self.verdict = Verdict::Unsafe;
        }
        self.findings.push(LocatedFinding {
            location: location.into(),
            finding,
        });
    }

    pub fn add_entry(&mut self, location: impl Into<String>, report: PickleReport) {
        let location = location.into();
        for finding in &report.findings {
            self.add_finding(location.clone(), finding.clone());
        }
        self.entries.push(Entry { location, report });
    }

    pub fn is_safe(&self) -> bool {
        self.verdict == Verdict::Clean
    }
}

/// Bounds for a whole scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    pub limits: Limits,
}

/// Scan bytes of any supported kind.
pub fn scan_bytes(data: &[u8], policy: &Policy, options: &ScanOptions) -> ScanReport {
    let mut report = ScanReport::new("pickle");
    let analysis = Options {
        limits: options.limits,
        mode: Mode::AllPickles,
    };
    report.add_entry("", analyze_slice(data, policy, &analysis));
    report
}
