//! A temp directory with its own `SEALRS_ROOT`, and helpers to run the binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest as _, Sha256};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("sealrs-it-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        Env { dir, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parents) relative to the temp directory.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    pub fn write_mode(&self, rel: &str, content: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.write(rel, content);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealrs"));
        cmd.args(args)
            .env("SEALRS_ROOT", &self.root)
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sealrs {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sealrs {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "panic: {out:?}"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Builds `context` (relative) and returns the manifest digest printed.
    pub fn build(&self, tag: &str, context: &str) -> String {
        self.ok(&["build", "-q", "--no-images", "-t", tag, context])
            .trim()
            .to_string()
    }

    pub fn layout(&self) -> PathBuf {
        self.root.join("oci")
    }

    pub fn oci_ref(&self, name: &str) -> String {
        format!("oci:{}:{}", self.layout().display(), name)
    }

    /// Every file name under the store's blobs and a fingerprint of index.json:
    /// what must not change when a command fails.
    pub fn store_state(&self) -> (Vec<String>, String) {
        let mut blobs = Vec::new();
        let dir = self.layout().join("blobs/sha256");
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries {
                blobs.push(e.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        blobs.sort();
        let index = fs::read_to_string(self.layout().join("index.json")).unwrap_or_default();
        (blobs, index)
    }

    /// Every blob in the layout hashes to its name: no half-written blob is visible.
    pub fn assert_blobs_intact(&self) {
        let dir = self.layout().join("blobs/sha256");
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let mut hasher = Sha256::new();
            let mut file = fs::File::open(e.path()).unwrap();
            std::io::copy(&mut file, &mut hasher).unwrap();
            assert_eq!(
                hex::encode(hasher.finalize()),
                name,
                "blob {name} does not match its digest"
            );
        }
    }
}

/// Runs `cmd` with `stdin` on its standard input, capturing stdout and stderr.
/// A command that exits before reading it all is judged by its output.
pub fn with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

pub fn tool(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} could not start ({e}); run scripts/test.sh, which installs it")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn skopeo_inspect(reference: &str) -> serde_json::Value {
    let out = tool("skopeo", &["inspect", reference]);
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn skopeo_config(reference: &str) -> serde_json::Value {
    let out = tool("skopeo", &["inspect", "--config", reference]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a tree holds, comparable across two directories: path → (kind, mode, content hash or link target).
pub fn tree(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let value = if ft.is_symlink() {
            (
                'l',
                0,
                fs::read_link(entry.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if ft.is_dir() {
            ('d', mode, String::new())
        } else {
            let data = fs::read(entry.path()).unwrap();
            ('f', mode, hex::encode(Sha256::digest(&data)))
        };
        out.insert(rel, value);
    }
    out
}
