//! Example pickles and a sandbox to run the `picklefence` binary in.
#![allow(dead_code, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // Test helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `{'a': [1, 2, 3], 'od': collections.OrderedDict()}`, protocol 2: one allowed import.
pub const CLEAN: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02K\x03eX\x02\x00\x00\x00odq\x03ccollections\nOrderedDict\nq\x04)Rq\x05u.";

/// `os.system('touch PWNED')` through GLOBAL + REDUCE, protocol 0.
pub const REDUCE: &[u8] = b"cos\nsystem\n(S'touch PWNED'\ntR.";

/// `posix.system('id')` through STACK_GLOBAL, protocol 4 with a frame.
pub const STACK_GLOBAL: &[u8] =
    b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.";

/// STACK_GLOBAL whose module name is the result of a call: unresolvable without running it.
pub const OBFUSCATED: &[u8] = b"\x80\x04cbuiltins\nstr\n\x8c\x05posix\x85R\x8c\x06system\x93\x8c\x02id\x85R.";

/// A list pickle cut off before its end.
pub const TRUNCATED: &[u8] = b"\x80\x02]q\x00(K\x01K\x02";

/// An instance of `mypkg.Model` (not on any allowlist) with state `{'w': 1}`.
pub const CUSTOM: &[u8] = b"\x80\x02cmypkg\nModel\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00wq\x03K\x01sb.";

// The archive and stream writers of the core crate's tests (one of each for the workspace).
#[path = "../../../picklefence/tests/common/mod.rs"]
mod inputs;
#[allow(unused_imports)] // Each test file uses some of them.
pub use inputs::{gzip, stored_zip, tar};

/// A PyTorch-style zip whose `archive/data.pkl` is `pickle`.
pub fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    stored_zip(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &[0u8; 16]),
        ("archive/version", b"3\n"),
    ])
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A temporary working directory; the binary runs inside it with relative paths.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// The example tree the directory snapshots use.
    pub fn example_tree(&self) {
        self.write("models/clean.pkl", CLEAN);
        self.write("models/evil/reduce.pkl", REDUCE);
        self.write("models/evil/nested/stack_global.pkl", STACK_GLOBAL);
        self.write("models/obfuscated.pkl", OBFUSCATED);
        self.write("models/truncated.pkl", TRUNCATED);
        self.write("models/torch/evil.pt", &torch_zip(REDUCE));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, &[])
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let raw = self.run_raw(args, stdin);
        Output {
            code: raw.code,
            stdout: self.normalize(&raw.stdout),
            stderr: self.normalize(&raw.stderr),
        }
    }

    /// Runs the binary and returns its output as it is.
    pub fn run_raw(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_picklefence"))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn picklefence");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).expect("stdin");
        }
        let output = child.wait_with_output().expect("wait");
        Output {
            code: output.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Replaces what differs between machines and releases: the sandbox path and the version.
    pub fn normalize(&self, text: &str) -> String {
        let mut text = text.to_string();
        let mut dirs = vec![self.dir.path().to_path_buf()];
        if let Ok(real) = self.dir.path().canonicalize() {
            dirs.insert(0, real);
        }
        for dir in dirs {
            text = text.replace(&dir.to_string_lossy().into_owned(), "[DIR]");
        }
        text.replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
    }
}
