//! What analysis reports: findings with a kind, a severity, a byte offset and a sentence.

use std::sync::Arc;

use serde::Serialize;

/// How bad a finding is. `High` and `Critical` are violations: the file is unsafe to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing runs because of it.
    Info,
    /// Unusual, not unsafe by itself.
    Warning,
    /// Unsafe: a loader would run something the policy does not allow, or could not be checked.
    High,
    /// Unsafe, and known to run code, reach the system or corrupt memory.
    Critical,
}

impl Severity {
    /// `High` and `Critical`: the file is unsafe to load.
    pub fn is_violation(self) -> bool {
        self >= Severity::High
    }

    /// The name used in reports (`info`, `warning`, `high`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding is about; `as_str()` is its stable name in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An import the policy does not allow.
    DisallowedImport,
    /// An import of something known to run code or touch the system.
    DangerousImport,
    /// STACK_GLOBAL whose module or name is not a plain string constant.
    UnresolvableImport,
    /// EXT1/EXT2/EXT4: an import through the copyreg extension registry.
    ExtensionCode,
    /// REDUCE/NEWOBJ/OBJ calling something that is not an import.
    IndirectCall,
    /// BUILD or an item-setting opcode applied to an imported module, class or function.
    StateInjection,
    /// BUILD on something the pickle did not produce by a call.
    UnsafeBuild,
    /// An allowed import used in a way its role forbids (called, constructed or stored).
    RoleViolation,
    /// A call whose arguments break the callee's argument schema (kinds, bounds, callables).
    ArgumentViolation,
    /// BUILD or items on an object that may not receive them (shared, or built already).
    BuildViolation,
    /// An object state that breaks a state rule (special keys, dispatch strings, hooks).
    StateViolation,
    /// One buffer object made the memory of more than one array or Arrow buffer, one of them
    /// writable (`_frombuffer`/`py_buffer` over one memoised bytearray, an array BUILT over the
    /// bytes another array reads): a write through one rewrites what was checked in the other.
    SharedBuffer,
    /// A memo key this pickle never stored, read by an unpickler that loaded before (a stream
    /// of pickles): it is an object of an earlier pickle, whose use here cannot be checked.
    EarlierMemo,
    /// The stream breaks (bad opcode, truncation, stack underflow, missing memo key, no STOP):
    /// CPython has run everything before the break.
    MalformedPickle,
    /// Frames laid out so that CPython's readers could disagree about the opcodes.
    AmbiguousFraming,
    /// Bytes after the last pickle that are not a pickle.
    TrailingData,
    /// An analysis limit was hit; what lies beyond it was not analysed.
    LimitExceeded,
    /// A persistent id: the loader's `persistent_load` decides what it becomes.
    PersistentId,
    /// An allowed class whose compiled code trusts indices in its state: the file relies on
    /// the guard's validation of that state at load time.
    NativeState,
    /// Protocol 5 out-of-band buffer.
    OutOfBandBuffer,
    /// Container-level findings (archives, compression, embedded code).
    Container,
    /// TorchScript code that runs when the model runs.
    EmbeddedCode,
    /// A file format that is not pickle-based (reported, never silently skipped).
    NonPickleFormat,
    /// A format or archive the scanner cannot open.
    Unsupported,
}

impl FindingKind {
    /// The kind's stable name in reports (`dangerous-import`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DisallowedImport => "disallowed-import",
            FindingKind::DangerousImport => "dangerous-import",
            FindingKind::UnresolvableImport => "unresolvable-import",
            FindingKind::ExtensionCode => "extension-code",
            FindingKind::IndirectCall => "indirect-call",
            FindingKind::StateInjection => "state-injection",
            FindingKind::UnsafeBuild => "unsafe-build",
            FindingKind::RoleViolation => "role-violation",
            FindingKind::ArgumentViolation => "argument-violation",
            FindingKind::BuildViolation => "build-violation",
            FindingKind::StateViolation => "state-violation",
            FindingKind::SharedBuffer => "shared-buffer",
            FindingKind::EarlierMemo => "earlier-memo",
            FindingKind::MalformedPickle => "malformed-pickle",
            FindingKind::AmbiguousFraming => "ambiguous-framing",
            FindingKind::TrailingData => "trailing-data",
            FindingKind::LimitExceeded => "limit-exceeded",
            FindingKind::PersistentId => "persistent-id",
            FindingKind::NativeState => "native-state",
            FindingKind::OutOfBandBuffer => "out-of-band-buffer",
            FindingKind::Container => "container",
            FindingKind::EmbeddedCode => "embedded-code",
            FindingKind::NonPickleFormat => "non-pickle-format",
            FindingKind::Unsupported => "unsupported",
        }
    }
}

/// A `(module, qualified name)` pair as the unpickler would import it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ImportName {
    // Shared: every call of an import is recorded with its name.
    /// The module, as the pickle names it.
    pub module: Arc<str>,
    /// The (possibly dotted) name within the module.
    pub name: Arc<str>,
}

impl std::fmt::Display for ImportName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// One thing analysis found: what, how bad, where, and a sentence that says why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// How bad it is.
    pub severity: Severity,
    /// Byte offset within the pickle stream (or container member) it was found in.
    pub offset: u64,
    /// The import involved, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportName>,
    /// A sentence for people: what was found and why it matters.
    pub message: String,
}

impl Finding {
    /// Whether it makes the file unsafe (severity `High` or `Critical`).
    pub fn is_violation(&self) -> bool {
        self.severity.is_violation()
    }
}
