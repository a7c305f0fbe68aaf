//! The command-line grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Scan pickle-based ML model files for code they would run when loaded";

const LONG_ABOUT: &str = "\
Scan pickle-based ML model files for code they would run when loaded.

A pickle is a program: loading it imports and calls whatever its author wrote. picklefence
checks every import a file makes against an allowlist (deny by default) without running any
of it.";

const SCAN_AFTER: &str = "\
Exit status:
  0  every file was scanned and is clean
  1  at least one file is unsafe; this wins over read errors in other files, so that
     `exit 1` always means \"something dangerous was found\"
  2  a usage error (bad option, policy file or --allow entry; nothing is scanned), or no
     file is unsafe but some file could not be read, or a symbolic link leading out of a
     scanned directory was skipped (it was not verified)

Directories are walked recursively and every regular file in them gets a verdict.
Symbolic links inside a directory are followed when their target lies inside that
directory; links leading out of it are reported as skipped unless --follow-symlinks
is given. Paths named on the command line are always read, whatever they are; `-`
reads standard input.

Examples:
  picklefence scan model.pkl
  picklefence scan --format sarif models/ > picklefence.sarif
  picklefence scan --policy xgboost --allow mypkg.MyConfig model.pkl";

const DISASM_AFTER: &str = "\
Each line: offset, opcode, argument, and what the opcode does to the stack. Imports are
marked allowed or BLOCKED with the reason; findings are marked with `!!` at their offset.

Exit status: 0 when the file is clean, 1 when it is unsafe, 2 on usage or read errors.";

const POLICY_AFTER: &str = "\
Each line is one allowed import and one of its roles, `ENTRY=ROLE`: reconstruct (a class made
by NEWOBJ and one BUILD of plain state), value (stored, never called), argument (passed only
to a call that names it), call(ARGS) -> RESULT (called with arguments of those kinds). Entries
whose qualified name contains a dot are written `module:qual.name`, so every line can be
passed back to --allow as it is.";

const CONVERT_AFTER: &str = "\
Reads torch.save files (the zip format, the legacy one and the tar format of torch < 0.4): state dicts, nested dicts and lists
(keys joined with '.'), and whole pickled modules (named as state_dict() names them). Nothing in
the file is run and torch is not needed. NumPy .npy and .npz arrays convert too, and NumPy arrays
in a pickle or a joblib file (plain or compressed). The file is
scanned first; an unsafe one is refused.
Plain leaves (epoch, step, hyper-parameters) are written to the safetensors metadata as JSON;
anything else is listed as dropped. Tensors that share a storage are each written with their
own bytes.

Exit status: 0 converted, 1 the file is unsafe (nothing written), 2 it cannot be converted or
read (nothing written).

Example:
  picklefence convert pytorch_model.bin model.safetensors";

#[derive(Debug, Parser)]
#[command(name = "picklefence", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan files and directories; report a verdict and the findings for each file
    #[command(after_help = SCAN_AFTER)]
    Scan(ScanArgs),
    /// Disassemble a pickle, marking each import allowed or blocked
    #[command(after_help = DISASM_AFTER)]
    Disasm(DisasmArgs),
    /// Print the effective allowlist
    #[command(after_help = POLICY_AFTER)]
    Policy(PolicyArgs),
    /// Convert a PyTorch checkpoint to safetensors without running it (only a clean file)
    #[command(after_help = CONVERT_AFTER)]
    Convert(ConvertArgs),
}

/// Which allowlist to judge imports by.
#[derive(Debug, Clone, Args)]
pub struct PolicyOpts {
    /// A named policy (e.g. `xgboost`; `picklefence policy --list` shows them) or a TOML
    /// policy file. A known name wins over a file of the same name: write `./NAME` for the
    /// file. Default: the ML allowlist
    #[arg(long, value_name = "NAME|FILE")]
    pub policy: Option<String>,

    /// Also allow this import, written `module.name` or `module:qual.name` (any use: the
    /// file is trusted), or `module.name=ROLE` for one role (repeatable)
    #[arg(long = "allow", value_name = "IMPORT[=ROLE]")]
    pub allow: Vec<String>,

    /// Let --allow add names that reach code execution, files, processes, the network,
    /// imports, attribute lookup or nested unpickling (only for files you trust)
    #[arg(long = "allow-dangerous")]
    pub allow_dangerous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// Verdicts and findings for people
    Text,
    /// One JSON document
    Json,
    /// JSON Lines: one object per file (as in the document's `files`), each written as soon as
    /// its file is scanned; no summary (the exit status gives the verdict). For scans of
    /// millions of files
    Jsonl,
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF consumers
    Sarif,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan (`-` for standard input)
    #[arg(
        required_unless_present = "hf_cache",
        conflicts_with = "hf_cache",
        value_name = "PATH"
    )]
    pub paths: Vec<PathBuf>,

    /// Scan a Hugging Face hub cache (default: the one huggingface_hub uses: HF_HUB_CACHE, or
    /// HF_HOME/hub, or ~/.cache/huggingface/hub): every file of every snapshot, reported as
    /// org/name@revision:path, each blob scanned once
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub hf_cache: Option<Option<PathBuf>>,

    /// Output format
    #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
    pub format: ScanFormat,

    #[command(flatten)]
    pub policy: PolicyOpts,

    /// Text output: list only unsafe files, errors and skipped paths; no summary
    #[arg(short, long)]
    pub quiet: bool,

    /// List every import each file makes, allowed or not (text and JSON)
    #[arg(long)]
    pub show_imports: bool,

    /// Text output: also show `info` findings (persistent ids, notes on what was checked and
    /// what is left to load-time validation); JSON and SARIF always carry them
    #[arg(short, long)]
    pub verbose: bool,

    /// Follow symbolic links that lead out of the scanned directories
    #[arg(long)]
    pub follow_symlinks: bool,

    /// Number of files scanned in parallel (default: one per core)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Never show a progress bar (it is shown only for text output on a terminal)
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct DisasmArgs {
    /// The file to disassemble
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Disassemble only this pickle member of a container (e.g. `archive/data.pkl`)
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,

    #[command(flatten)]
    pub policy: PolicyOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: Option<PolicyAction>,

    #[command(flatten)]
    pub policy: PolicyOpts,

    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,

    /// List the named policies instead
    #[arg(long, conflicts_with_all = ["policy", "allow"])]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The checkpoint to convert
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// The safetensors file to write (replaced atomically once complete)
    #[arg(value_name = "OUT")]
    pub output: PathBuf,

    #[command(flatten)]
    pub policy: PolicyOpts,

    /// List every tensor and metadata entry written (and, for a refused file, its `info`
    /// findings)
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Write the smallest policy (TOML, with roles) under which trusted FILES scan clean
    #[command(after_help = SUGGEST_AFTER)]
    Suggest(SuggestArgs),
}

const SUGGEST_AFTER: &str = "\
Each name a file needs is added with the narrowest role that clears it (value, argument,
reconstruct, then any use), checked by scanning the files again. Names that reach code
execution, files, processes, the network, imports, attribute lookup or nested unpickling are
never suggested: they are listed as comments, with why.

Exit status: 0 when the files scan clean under the suggestion, 1 when some stay unsafe (a
dangerous name), 2 on usage or read errors.

Example:
  picklefence policy suggest model.pkl other.joblib > policy.toml
  picklefence scan --policy policy.toml model.pkl other.joblib";

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Files you trust
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// The base the suggestion extends (default: the ML allowlist)
    #[command(flatten)]
    pub policy: PolicyOpts,
}
