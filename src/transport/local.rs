//! This machine as a host: commands run directly (no shell at all, so argv and
//! env are passed as they are), files are written with temp + rename.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};

use super::{Capture, Output, Transport, TransportError, OUTPUT_LIMIT};
use crate::atomic_file;

/// Runs on this machine, as the current user.
#[derive(Debug, Clone)]
pub struct Local {
    address: String,
}

impl Local {
    pub fn new() -> Local {
        Local {
            address: "localhost".to_string(),
        }
    }

    fn io(&self, action: String, source: std::io::Error) -> TransportError {
        TransportError::Io {
            host: self.address.clone(),
            action,
            source,
        }
    }

    /// Writes what `fill` produces to a temp file beside `remote`, sets the mode
    /// and renames it into place (durably, as every atomic write).
    fn write_atomic(
        &self,
        remote: &str,
        mode: u32,
        fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
    ) -> Result<(), TransportError> {
        let dest = Path::new(remote);
        if dest.file_name().is_none() {
            return Err(TransportError::InvalidArgument {
                host: self.address.clone(),
                detail: format!("{remote} names no file"),
            });
        }
        let result = (|| {
            if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let mut tmp = atomic_file::temp_beside(dest)?;
            fill(tmp.as_file_mut())?;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))?;
            atomic_file::persist(tmp, dest)
        })();
        result.map_err(|e| self.io(format!("write {remote}"), e))
    }
}

/// Writes a command's stdin (while other threads read its output).
type Feed<'a> = Box<dyn FnOnce(&mut ChildStdin) -> std::io::Result<()> + 'a>;

impl Local {
    fn spawn(
        &self,
        argv: &[String],
        env: &[(String, String)],
        feed: Option<Feed<'_>>,
    ) -> Result<Output, TransportError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(TransportError::InvalidArgument {
                host: self.address.clone(),
                detail: "empty command".to_string(),
            });
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if feed.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            // As a shell would: 127, and a message on stderr.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Output {
                    code: Some(127),
                    signal: None,
                    stdout: Vec::new(),
                    stderr: format!("{program}: not found\n").into_bytes(),
                })
            }
            Err(e) => return Err(self.io(format!("run {program}"), e)),
        };
        let mut out_pipe = child.stdout.take().expect("piped");
        let mut err_pipe = child.stderr.take().expect("piped");
        let stdin_pipe = child.stdin.take();
        let (stdout, stderr) = std::thread::scope(|s| {
            let err = s.spawn(move || drain(&mut err_pipe));
            let out = s.spawn(move || drain(&mut out_pipe));
            if let (Some(mut pipe), Some(feed)) = (stdin_pipe, feed) {
                // A command that exits without reading all of stdin is not an
                // error; dropping the pipe closes it.
                let _ = feed(&mut pipe);
            }
            (
                out.join().expect("stdout reader"),
                err.join().expect("stderr reader"),
            )
        });
        let status = child
            .wait()
            .map_err(|e| self.io(format!("wait for {program}"), e))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(Output {
            code: status.code(),
            signal: status.signal().map(signal_name),
            stdout,
            stderr,
        })
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl Transport for Local {
    fn address(&self) -> &str {
        &self.address
    }

    fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<Output, TransportError> {
        let feed = stdin
            .map(|bytes| Box::new(move |pipe: &mut ChildStdin| pipe.write_all(bytes)) as Feed<'_>);
        self.spawn(argv, env, feed)
    }

    fn run_with_files(
        &self,
        argv: &[String],
        files: &[PathBuf],
        progress: &dyn Fn(u64),
    ) -> Result<Output, TransportError> {
        // The files are opened here, so that a missing one is our error, not
        // a command that saw its stdin end early.
        let mut opened = Vec::new();
        for path in files {
            let file =
                fs::File::open(path).map_err(|e| self.io(format!("open {}", path.display()), e))?;
            opened.push(file);
        }
        let feed: Feed<'_> = Box::new(move |pipe: &mut ChildStdin| send(opened, pipe, progress));
        self.spawn(argv, &[], Some(feed))
    }

    fn upload(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        progress: &dyn Fn(u64),
    ) -> Result<(), TransportError> {
        let src =
            fs::File::open(local).map_err(|e| self.io(format!("open {}", local.display()), e))?;
        self.write_atomic(remote, mode, |dst| send(vec![src], dst, progress))
    }

    fn upload_bytes(&self, bytes: &[u8], remote: &str, mode: u32) -> Result<(), TransportError> {
        self.write_atomic(remote, mode, |dst| dst.write_all(bytes))
    }

    fn download_small(&self, remote: &str, max: u64) -> Result<Vec<u8>, TransportError> {
        let file = match fs::File::open(remote) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(TransportError::NotFound {
                    host: self.address.clone(),
                    path: remote.to_string(),
                })
            }
            Err(e) => return Err(self.io(format!("open {remote}"), e)),
        };
        let mut bytes = Vec::new();
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(format!("read {remote}"), e))?;
        if bytes.len() as u64 > max {
            return Err(TransportError::TooLarge {
                host: self.address.clone(),
                path: remote.to_string(),
                max,
            });
        }
        Ok(bytes)
    }

    fn exists(&self, remote: &str) -> Result<bool, TransportError> {
        match fs::symlink_metadata(remote) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(format!("stat {remote}"), e)),
        }
    }
}

/// Copies `files` one after another to `dst`, calling `progress` with the
/// bytes sent so far.
fn send(files: Vec<fs::File>, dst: &mut impl Write, progress: &dyn Fn(u64)) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    let mut sent = 0u64;
    for mut file in files {
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n])?;
            sent += n as u64;
            progress(sent);
        }
    }
    Ok(())
}

fn drain(pipe: &mut impl Read) -> Vec<u8> {
    let mut capture = Capture::new(OUTPUT_LIMIT);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => capture.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    capture.finish()
}

/// SSH's names for signals (RFC 4254 6.10), so both transports say the same.
pub(super) fn signal_name(sig: i32) -> String {
    match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        6 => "ABRT",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        _ => return sig.to_string(),
    }
    .to_string()
}
