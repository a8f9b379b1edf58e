//! How commands and bytes reach a host: [`Local`] (this machine) and [`Ssh`].
//!
//! Both implement one small, synchronous [`Transport`] so that the processor can
//! drive many hosts from plain threads, and tests can swap a real SSH host for
//! this machine. The SSH side is async inside (russh on a private tokio
//! runtime, see the `ssh` module), but nothing of that leaks out: no caller
//! needs a runtime, and calling from inside one does not panic.
//!
//! # Values reach the host byte for byte
//!
//! SSH carries one command *string* that the remote login shell parses. So an
//! argv is turned into that string by quoting every word with [`sh_quote`]
//! (POSIX single quotes, the one form no shell expands), never by pasting words
//! together. Environment values do not travel in the command string at all,
//! because the string is visible in the remote `ps` and in sshd's logs: they go
//! first on the command's stdin as a block of quoted `export` lines that a fixed
//! wrapper reads with `dd` and evaluates, and the caller's stdin follows. So a
//! password given as an env value never appears in any argv, local or remote.

pub mod direct;
mod local;
mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::secret::Secret;
pub use crate::shell::{env_script, sh_command, sh_quote};
pub use local::Local;
pub use ssh::Ssh;

/// Output kept per stream of a command: past this, only the last bytes stay
/// (the tail is what a report needs; memory stays bounded).
pub const OUTPUT_LIMIT: usize = 16 << 20;

/// How commands and bytes reach one host.
pub trait Transport: Send + Sync {
    /// The host as the user named it (an IP or a name), for messages.
    fn address(&self) -> &str;

    /// Runs `argv` with extra environment `env` and `stdin` bytes (none: stdin
    /// is empty). Returns the exit status with stdout and stderr; a non-zero
    /// exit is an `Ok` [`Output`] (see [`Output::check`]). `argv[0]` is looked
    /// up in the host's `PATH`; a missing command exits 127, as in a shell.
    fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<Output, TransportError>;

    /// [`Transport::run`], calling `on_line` with each line the command
    /// writes to stderr as it comes, where the transport can (a live status
    /// while a host works); by default only when it ends.
    fn run_watching(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        on_line: &dyn Fn(&str),
    ) -> Result<Output, TransportError> {
        let output = self.run(argv, env, stdin)?;
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .for_each(on_line);
        Ok(output)
    }

    /// Streams the local file `local` to `remote` (temp file + rename, parents
    /// created, `mode` set before the rename), calling `progress` with the
    /// bytes sent so far. Memory stays flat whatever the size.
    fn upload(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        progress: &dyn Fn(u64),
    ) -> Result<(), TransportError>;

    /// Runs `argv` (no extra env) with the `files`' bytes, one after another,
    /// as its stdin, calling `progress` with the bytes sent so far: many blobs
    /// reach a host through one command that unpacks them as they arrive.
    fn run_with_files(
        &self,
        argv: &[String],
        files: &[PathBuf],
        progress: &dyn Fn(u64),
    ) -> Result<Output, TransportError>;

    /// Writes `bytes` to `remote` atomically, as [`Transport::upload`] does.
    fn upload_bytes(&self, bytes: &[u8], remote: &str, mode: u32) -> Result<(), TransportError>;

    /// Reads a remote file of at most `max` bytes (a token, a kubeconfig).
    fn download_small(&self, remote: &str, max: u64) -> Result<Vec<u8>, TransportError>;

    /// Whether `remote` exists (a dangling symlink counts: it is there).
    fn exists(&self, remote: &str) -> Result<bool, TransportError>;

    /// This machine's address as the host may reach it for bulk data
    /// ([`direct`]), when the connection allows that: the local end of an SSH
    /// connection. `None` keeps bulk data on [`Transport::run_with_files`].
    fn data_address(&self) -> Option<std::net::IpAddr> {
        None
    }

    /// Which of `remotes` exist, in one round trip.
    fn existing(&self, remotes: &[String]) -> Result<Vec<bool>, TransportError> {
        if remotes.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .run(&script_argv(EXISTING_SCRIPT, remotes), &[], None)?
            .check_as(self.address(), "a check for files")?;
        let answers: Vec<bool> = out.stdout_text().lines().map(|l| l == "1").collect();
        if answers.len() != remotes.len() {
            return Err(TransportError::InvalidArgument {
                host: self.address().to_string(),
                detail: format!(
                    "a check for {} files answered {} lines",
                    remotes.len(),
                    answers.len()
                ),
            });
        }
        Ok(answers)
    }
}

/// What a command did.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `None` when the command was killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it (`"KILL"`, `"TERM"`…), if any.
    pub signal: Option<String>,
    /// Standard output; only its last [`OUTPUT_LIMIT`] bytes if it was longer.
    pub stdout: Vec<u8>,
    /// Standard error, bounded the same way.
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `n` lines of stderr, or of stdout when stderr is empty: what a
    /// failure report shows.
    pub fn tail(&self, n: usize) -> String {
        let text = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &self.stderr
        } else {
            &self.stdout
        };
        last_lines(&String::from_utf8_lossy(text), n)
    }

    /// `Ok(self)` if the command succeeded, else [`TransportError::Failed`]
    /// naming the host, the command and the last lines of its output.
    pub fn check(self, host: &str, argv: &[String]) -> Result<Output, TransportError> {
        let command = sh_command(argv).unwrap_or_else(|_| argv.join(" "));
        self.check_as(host, &command)
    }

    /// [`Output::check`] with the command described in words ("upload of X").
    pub fn check_as(self, host: &str, what: &str) -> Result<Output, TransportError> {
        if self.success() {
            return Ok(self);
        }
        Err(TransportError::Failed {
            host: host.to_string(),
            command: what.to_string(),
            status: self.status_text(),
            tail: self.tail(20),
        })
    }

    /// "exit code 3" or "killed by signal KILL".
    pub fn status_text(&self) -> String {
        match (&self.code, &self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_string(),
        }
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("code", &self.code)
            .field("signal", &self.signal)
            .field("stdout", &String::from_utf8_lossy(&self.stdout))
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .finish()
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How to reach and log in to SSH hosts. `Default` is root on port 22 with the
/// default keys and `~/.ssh/known_hosts`, new host keys refused, 10 s timeout.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub user: String,
    pub port: u16,
    /// A private key; `None` tries `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    /// Ignored when a password is given.
    pub key: Option<PathBuf>,
    /// Password authentication instead of a key.
    pub password: Option<Secret>,
    /// `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Trust a host seen for the first time and record its key. A key that
    /// differs from the recorded one is refused regardless.
    pub accept_new_host_keys: bool,
    /// For the TCP connection, the handshake and the login together.
    pub connect_timeout: Duration,
    /// Let the host fetch bulk data straight from this machine over TLS
    /// ([`direct`]); `false` keeps every byte inside the SSH connection.
    pub direct_data: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            user: "root".to_string(),
            port: 22,
            key: None,
            password: None,
            known_hosts: None,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            direct_data: true,
        }
    }
}

impl TransportError {
    /// Whether the host answered and refused us (its host key, the login,
    /// our key or known_hosts file), rather than being down or cut off: a
    /// refusal is never "cannot reach", and `--force` never skips it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            TransportError::UnknownHostKey { .. }
                | TransportError::HostKeyChanged { .. }
                | TransportError::KnownHosts { .. }
                | TransportError::Key { .. }
                | TransportError::NoKey { .. }
                | TransportError::AuthFailed { .. }
        )
    }
}

/// Everything that can go wrong reaching a host. Each variant names the host;
/// messages say what to do. No variant holds a password or an env value.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No SSH connection: refused, unreachable, reset before login.
    #[error("cannot connect to {host}: {detail}; check that the host is up, that sshd listens on the port and that no firewall blocks it")]
    Connect { host: String, detail: String },

    #[error("connecting to {host} timed out after {}s ({during}); check that the host is up and reachable, or give it longer with --ssh-timeout SECONDS", .after.as_secs_f32())]
    Timeout {
        host: String,
        after: Duration,
        during: &'static str,
    },

    #[error("host key of {host} is not known ({key_type} {fingerprint}, not in {}); compare the fingerprint with the host's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it), then pass --accept-new-host-keys to record it, or add it to known_hosts yourself", .known_hosts.display())]
    UnknownHostKey {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("HOST KEY OF {host} HAS CHANGED: it offers {key_type} {fingerprint}, which differs from the key recorded in {}{}; someone may be intercepting the connection, or the host was reinstalled. If you know the new key is right, remove the old one (ssh-keygen -R {host} -f {0}) and connect again", .known_hosts.display(), line_suffix(.line))]
    HostKeyChanged {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: Option<usize>,
    },

    #[error("cannot use known_hosts file {}: {detail}", .path.display())]
    KnownHosts { path: PathBuf, detail: String },

    #[error("cannot load SSH key {}: {detail}", .path.display())]
    Key { path: PathBuf, detail: String },

    #[error("no SSH key to log in to {host} with: none of {} exists; pass --ssh-key FILE or a password", list_paths(.tried))]
    NoKey { host: String, tried: Vec<PathBuf> },

    #[error("{host} refused login as {user} with {method}{}; check the user, the key or password{}", allowed_suffix(.allowed), if .method.starts_with("password") { " (and PasswordAuthentication in the host's sshd_config)" } else { " (and the host's authorized_keys)" })]
    AuthFailed {
        host: String,
        user: String,
        /// "publickey (FILE)" or "password".
        method: String,
        /// What the server said it would take instead.
        allowed: Vec<String>,
    },

    /// The SSH session broke (protocol error, connection lost).
    #[error("SSH to {host} failed while {action}: {detail}")]
    Ssh {
        host: String,
        action: String,
        detail: String,
    },

    /// Local I/O: the file to upload, a local command, this machine's disk.
    #[error("{host}: {action}: {source}")]
    Io {
        host: String,
        action: String,
        #[source]
        source: std::io::Error,
    },

    /// A value that cannot be passed as given (NUL byte, bad env name).
    #[error("cannot run on {host}: {detail}")]
    InvalidArgument { host: String, detail: String },

    /// A command that the transport itself runs (or [`Output::check`]) failed.
    #[error("{host}: `{command}` failed with {status}{}", tail_suffix(.tail))]
    Failed {
        host: String,
        command: String,
        status: String,
        tail: String,
    },

    #[error("{host}: {path} not found")]
    NotFound { host: String, path: String },

    #[error("{host}: {path} is larger than {max} bytes")]
    TooLarge {
        host: String,
        path: String,
        max: u64,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn allowed_suffix(allowed: &[String]) -> String {
    if allowed.is_empty() {
        String::new()
    } else {
        format!(" (it accepts: {})", allowed.join(", "))
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n{tail}")
    }
}

/// Output bytes kept from one stream: everything up to a limit, then the tail.
struct Capture {
    buf: Vec<u8>,
    limit: usize,
}

impl Capture {
    fn new(limit: usize) -> Capture {
        Capture {
            buf: Vec::new(),
            limit,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Trim in steps of `limit` so that the copy is amortized.
        if self.buf.len() > self.limit.saturating_mul(2) {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
        self.buf
    }
}

/// The remote side of an atomic upload: one fixed script, the path and size as
/// its arguments. It writes next to the destination (same filesystem, so the
/// rename is atomic), refuses a short file (a connection lost midway closes
/// stdin early, which `cat` cannot tell from the end), sets the mode and
/// renames. The temp file is removed on any failure.
const UPLOAD_SCRIPT: &str = r#"set -e
dest=$1; size=$2; mode=$3
case $dest in */*) dir=${dest%/*}; [ -n "$dir" ] || dir=/ ;; *) dir=. ;; esac
mkdir -p -- "$dir"
tmp="$dest.sealrs-tmp.$$"
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 129' HUP INT TERM PIPE
cat > "$tmp"
got=$(wc -c < "$tmp")
if [ "$got" -ne "$size" ]; then echo "upload of $dest stopped at $got of $size bytes" >&2; exit 1; fi
chmod "$mode" "$tmp"
mv -f -- "$tmp" "$dest"
"#;

/// Exit code of [`DOWNLOAD_SCRIPT`] for a missing file.
const DOWNLOAD_MISSING: i32 = 44;
const DOWNLOAD_SCRIPT: &str = r#"[ -e "$1" ] || exit 44
exec head -c "$2" -- "$1"
"#;

const EXISTING_SCRIPT: &str =
    r#"for f; do if [ -e "$f" ] || [ -L "$f" ]; then echo 1; else echo 0; fi; done"#;

const EXISTS_SCRIPT: &str = r#"if [ -e "$1" ] || [ -L "$1" ]; then exit 0; else exit 1; fi"#;

fn script_argv(script: &str, args: &[String]) -> Vec<String> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "sealrs".to_string(),
    ];
    argv.extend(args.iter().cloned());
    argv
}
