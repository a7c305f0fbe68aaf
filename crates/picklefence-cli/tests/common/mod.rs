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

/// A zip archive of `members`, stored (no compression), laid out the way `torch.save` writes.
pub fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        let mut fields = Vec::new();
        fields.extend_from_slice(&20u16.to_le_bytes()); // version needed
        fields.extend_from_slice(&0u16.to_le_bytes()); // flags
        fields.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        fields.extend_from_slice(&0u32.to_le_bytes()); // time, date
        fields.extend_from_slice(&crc.to_le_bytes());
        fields.extend_from_slice(&size.to_le_bytes());
        fields.extend_from_slice(&size.to_le_bytes());
        fields.extend_from_slice(&(name.len() as u16).to_le_bytes());
        fields.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&fields);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&fields);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&0u32.to_le_bytes()); // disk numbers
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

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
