//! SSH to a host with russh: one connection per host, one channel per command,
//! several commands at once on the same connection, closed on `Drop`.
//!
//! # Why russh and a private runtime
//!
//! A pure-Rust client takes a password from memory: no `sshpass`, no askpass
//! helper, nothing in any argv. Its async API runs on a small tokio runtime owned
//! by this module (never dropped), and each blocking method spawns its work there
//! and waits on a std channel. That keeps [`Transport`] synchronous for callers
//! on plain threads, and does not panic when called from inside another runtime
//! (as `Runtime::block_on` would).
//!
//! # Host keys
//!
//! The key a host offers is checked against known_hosts (plain and hashed
//! entries, `[host]:port` for other ports). Unknown: refused with its fingerprint
//! unless `accept_new_host_keys`, which records it. Different from a recorded key
//! of the same type, or of a type the host no longer offers: always refused. Key
//! types recorded for a host are preferred in the handshake, so a host recorded
//! with only its RSA key is asked for that key.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use russh::keys::known_hosts::{known_host_keys_path, learn_known_hosts_path};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{client, ChannelMsg, Disconnect, Preferred};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::{
    env_script, script_argv, sh_command, Capture, ConnectOptions, Output, Secret, Transport,
    TransportError, DOWNLOAD_MISSING, DOWNLOAD_SCRIPT, EXISTS_SCRIPT, OUTPUT_LIMIT, UPLOAD_SCRIPT,
};

/// Commands at once on one connection: below sshd's default `MaxSessions` (10).
const MAX_CHANNELS: usize = 8;
/// Bytes read from a local file per `data_bytes` call; russh cuts each into
/// packets of the host's maximum size (32 KiB for OpenSSH's sshd).
const CHUNK: usize = 256 << 10;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealrs-ssh")
            .enable_all()
            .build()
            .expect("start the SSH runtime")
    })
}

enum Event<T> {
    Progress(u64),
    Done(T),
}

/// Reports progress from inside a task to the waiting caller.
#[derive(Clone)]
struct Reporter<T>(std_mpsc::Sender<Event<T>>);

impl<T> Reporter<T> {
    fn progress(&self, bytes: u64) {
        let _ = self.0.send(Event::Progress(bytes));
    }
}

/// Runs the future made by `make` on the SSH runtime and waits for it, calling
/// `progress` on this thread for each progress event.
fn drive<T, F, Fut>(host: &str, progress: &dyn Fn(u64), make: F) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce(Reporter<Result<T, TransportError>>) -> Fut,
    Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
{
    let (tx, rx) = std_mpsc::channel();
    let fut = make(Reporter(tx.clone()));
    runtime().spawn(async move {
        let result = fut.await;
        let _ = tx.send(Event::Done(result));
    });
    loop {
        match rx.recv() {
            Ok(Event::Progress(n)) => progress(n),
            Ok(Event::Done(result)) => return result,
            Err(_) => {
                return Err(TransportError::Ssh {
                    host: host.to_string(),
                    action: "running a task".to_string(),
                    detail: "the SSH task ended without a result".to_string(),
                })
            }
        }
    }
}

/// What the host-key check decided, kept for the error message: russh itself
/// only reports "unknown key".
#[derive(Debug, Clone)]
enum KeyVerdict {
    Unknown {
        key_type: String,
        fingerprint: String,
    },
    Changed {
        key_type: String,
        fingerprint: String,
        line: Option<usize>,
    },
    Unusable(String),
}

struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl Client {
    fn judge(&self, key: &PublicKey) -> Result<(), KeyVerdict> {
        let key_type = key.algorithm().to_string();
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let recorded = match known_host_keys_path(&self.host, self.port, &self.known_hosts) {
            Ok(recorded) => recorded,
            Err(e) => return Err(KeyVerdict::Unusable(e.to_string())),
        };
        if recorded.iter().any(|(_, k)| k == key) {
            return Ok(());
        }
        if let Some((line, _)) = recorded
            .iter()
            .find(|(_, k)| k.algorithm() == key.algorithm())
        {
            return Err(KeyVerdict::Changed {
                key_type,
                fingerprint,
                line: Some(*line),
            });
        }
        if !recorded.is_empty() {
            // Recorded keys of other types only: the host no longer offers any
            // of them (they were preferred in the handshake). OpenSSH calls this
            // a changed key too.
            return Err(KeyVerdict::Changed {
                key_type,
                fingerprint,
                line: recorded.first().map(|(l, _)| *l),
            });
        }
        if !self.accept_new {
            return Err(KeyVerdict::Unknown {
                key_type,
                fingerprint,
            });
        }
        learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
            .map_err(|e| KeyVerdict::Unusable(format!("cannot record the host key: {e}")))
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.judge(key),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => Err(KeyVerdict::Unusable(
                "the host offered a certificate; host certificates are not supported".into(),
            )),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(v) => {
                *self.verdict.lock().unwrap() = Some(v);
                Ok(false)
            }
        }
    }
}

type Handle = client::Handle<Client>;

/// An SSH connection to one host. Cheap to share between threads (`&Ssh`):
/// each command opens its own channel on the one connection.
pub struct Ssh {
    address: String,
    /// `host` or `host:port`, for messages.
    label: String,
    handle: Option<Arc<Handle>>,
    channels: Arc<Semaphore>,
    /// The local end of the connection, when direct data is allowed.
    data_address: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Ssh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh").field("host", &self.label).finish()
    }
}

/// Keys to try, each loaded before any connection so that a bad key is
/// reported as such rather than as a refused login.
enum Login {
    Password(Secret),
    Keys(Vec<(PathBuf, PrivateKey)>),
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn load_key(path: &Path) -> Result<PrivateKey, TransportError> {
    russh::keys::load_secret_key(path, None).map_err(|e| TransportError::Key {
        path: path.to_path_buf(),
        detail: match e {
            russh::keys::Error::KeyIsEncrypted => {
                "the key is encrypted and sealrs does not ask for passphrases; use an unencrypted deploy key or password login".to_string()
            }
            other => other.to_string(),
        },
    })
}

fn login(host: &str, opts: &ConnectOptions) -> Result<Login, TransportError> {
    if let Some(password) = &opts.password {
        return Ok(Login::Password(password.clone()));
    }
    if let Some(path) = &opts.key {
        return Ok(Login::Keys(vec![(path.clone(), load_key(path)?)]));
    }
    let tried: Vec<PathBuf> = match home() {
        Some(home) => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| home.join(".ssh").join(name))
            .collect(),
        None => Vec::new(),
    };
    let mut keys = Vec::new();
    for path in &tried {
        if path.exists() {
            keys.push((path.clone(), load_key(path)?));
        }
    }
    if keys.is_empty() {
        return Err(TransportError::NoKey {
            host: host.to_string(),
            tried,
        });
    }
    Ok(Login::Keys(keys))
}

/// Host-key algorithms, those recorded for this host first.
/// AES-GCM first where the CPU has AES instructions: there it costs both ends
/// a fraction of chacha20-poly1305 (russh's and OpenSSH's first choice), and
/// layer blobs are most of what a run sends.
fn preferred_ciphers() -> Vec<russh::cipher::Name> {
    use russh::cipher::{AES_256_GCM, CHACHA20_POLY1305};
    let mut order: Vec<_> = Preferred::DEFAULT.cipher.to_vec();
    if hardware_aes() {
        order.retain(|c| *c != AES_256_GCM);
        let at = order
            .iter()
            .position(|c| *c == CHACHA20_POLY1305)
            .unwrap_or(0);
        order.insert(at, AES_256_GCM);
    }
    order
}

fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn preferred_key_algorithms(
    host: &str,
    port: u16,
    known_hosts: &Path,
) -> Vec<russh::keys::Algorithm> {
    let recorded: Vec<russh::keys::Algorithm> = known_host_keys_path(host, port, known_hosts)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, k)| k.algorithm())
        .collect();
    let mut algos: Vec<russh::keys::Algorithm> = Preferred::DEFAULT.key.to_vec();
    let known = |a: &russh::keys::Algorithm| {
        recorded
            .iter()
            .any(|r| r == a || (r.clone().is_rsa() && a.clone().is_rsa()))
    };
    algos.sort_by_key(|a| !known(a));
    algos
}

impl Ssh {
    /// Connects and logs in to `host` (an IP or a name). Fails with a message
    /// that names the host: unreachable, timed out, unknown or changed host
    /// key, login refused.
    pub fn connect(host: &str, opts: &ConnectOptions) -> Result<Ssh, TransportError> {
        let label = if opts.port == 22 {
            host.to_string()
        } else {
            format!("{host}:{}", opts.port)
        };
        let known_hosts = match &opts.known_hosts {
            Some(path) => path.clone(),
            None => home()
                .map(|h| h.join(".ssh").join("known_hosts"))
                .ok_or_else(|| TransportError::KnownHosts {
                    path: PathBuf::from("~/.ssh/known_hosts"),
                    detail: "HOME is not set; pass a known_hosts file".to_string(),
                })?,
        };
        let login = login(&label, opts)?;
        let verdict = Arc::new(Mutex::new(None));
        let handler = Client {
            host: host.to_string(),
            port: opts.port,
            known_hosts: known_hosts.clone(),
            accept_new: opts.accept_new_host_keys,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            // Detects a host that vanished in the middle of a long command.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            nodelay: true,
            window_size: 8 << 20,
            preferred: Preferred {
                key: preferred_key_algorithms(host, opts.port, &known_hosts).into(),
                cipher: preferred_ciphers().into(),
                ..Preferred::DEFAULT
            },
            ..Default::default()
        });
        let timeout = opts.connect_timeout;
        let user = opts.user.clone();
        let addr = (host.to_string(), opts.port);
        let lbl = label.clone();
        let result: Result<Connected, _> = drive(&label, &|_| {}, move |_| async move {
            let stage = Arc::new(Mutex::new("TCP connect and handshake"));
            let s = stage.clone();
            let work = async move {
                let socket = tokio::net::TcpStream::connect(addr).await?;
                socket.set_nodelay(true)?;
                let local = socket.local_addr()?.ip();
                let socket = super::quickack::QuickAck(socket);
                let handle = client::connect_stream(config, socket, handler).await;
                *s.lock().unwrap() = "login";
                let mut handle = handle?;
                let outcome = authenticate(&mut handle, &user, login).await?;
                Ok::<_, russh::Error>((handle, outcome, local))
            };
            let res = tokio::time::timeout(timeout, work).await;
            match res {
                Err(_) => Err(TransportError::Timeout {
                    host: lbl,
                    after: timeout,
                    during: *stage.lock().unwrap(),
                }),
                Ok(Err(e)) => Err(TransportError::Ssh {
                    host: lbl,
                    action: "connecting".to_string(),
                    detail: e.to_string(),
                }),
                Ok(Ok(v)) => Ok(v),
            }
        });
        let (handle, outcome, local) = match result {
            Ok(v) => v,
            Err(err) => {
                // A refused host key shows up as a handshake error: say why.
                if let Some(v) = verdict.lock().unwrap().take() {
                    return Err(key_error(&label, &known_hosts, v));
                }
                return Err(connect_error(err));
            }
        };
        if let Err((method, allowed)) = outcome {
            return Err(TransportError::AuthFailed {
                host: label,
                user: opts.user.clone(),
                method,
                allowed,
            });
        }
        Ok(Ssh {
            address: host.to_string(),
            label,
            handle: Some(Arc::new(handle)),
            channels: Arc::new(Semaphore::new(MAX_CHANNELS)),
            data_address: opts.direct_data.then_some(local),
        })
    }

    fn handle(&self) -> Arc<Handle> {
        self.handle.clone().expect("connection open until drop")
    }

    fn invalid(&self, detail: String) -> TransportError {
        TransportError::InvalidArgument {
            host: self.label.clone(),
            detail,
        }
    }

    /// The command string and the stdin header for `argv` with `env`.
    fn prepare(
        &self,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<(String, Vec<u8>), TransportError> {
        let command = sh_command(argv).map_err(|e| self.invalid(e))?;
        if env.is_empty() {
            return Ok((command, Vec::new()));
        }
        let header = env_script(env).map_err(|e| self.invalid(e))?.into_bytes();
        // Reads exactly the header from stdin (dd with 1-byte blocks never reads
        // ahead), evaluates its quoted exports, then runs argv with the rest of
        // stdin. Only the byte count varies; values never enter the string.
        let wrapper = format!(
            "eval \"$(dd bs=1 count={} 2>/dev/null)\" || exit 125; exec \"$@\"",
            header.len()
        );
        let mut wrapped = vec![
            "sh".to_string(),
            "-c".to_string(),
            wrapper,
            "sealrs".to_string(),
        ];
        wrapped.extend(argv.iter().cloned());
        let command = sh_command(&wrapped).map_err(|e| self.invalid(e))?;
        Ok((command, header))
    }

    fn exec(
        &self,
        command: String,
        input: Input,
        progress: &dyn Fn(u64),
    ) -> Result<Output, TransportError> {
        let handle = self.handle();
        let channels = self.channels.clone();
        let host = self.label.clone();
        drive(&self.label, progress, move |reporter| {
            exec(handle, channels, host, command, input, reporter)
        })
    }
}

/// The connect task's result: the handle, and whether login worked (or the
/// method tried and what the server would accept instead).
type Connected = (Handle, Result<(), (String, Vec<String>)>, std::net::IpAddr);

fn connect_error(err: TransportError) -> TransportError {
    match err {
        TransportError::Ssh { host, detail, .. } => TransportError::Connect { host, detail },
        other => other,
    }
}

fn key_error(host: &str, known_hosts: &Path, verdict: KeyVerdict) -> TransportError {
    match verdict {
        KeyVerdict::Unknown {
            key_type,
            fingerprint,
        } => TransportError::UnknownHostKey {
            host: host.to_string(),
            key_type,
            fingerprint,
            known_hosts: known_hosts.to_path_buf(),
        },
        KeyVerdict::Changed {
            key_type,
            fingerprint,
            line,
        } => TransportError::HostKeyChanged {
            host: host.to_string(),
            key_type,
            fingerprint,
            known_hosts: known_hosts.to_path_buf(),
            line,
        },
        KeyVerdict::Unusable(detail) => TransportError::KnownHosts {
            path: known_hosts.to_path_buf(),
            detail,
        },
    }
}

async fn authenticate(
    handle: &mut Handle,
    user: &str,
    login: Login,
) -> Result<Result<(), (String, Vec<String>)>, russh::Error> {
    let methods = |r: &client::AuthResult| -> Vec<String> {
        match r {
            client::AuthResult::Success => Vec::new(),
            client::AuthResult::Failure {
                remaining_methods, ..
            } => remaining_methods.iter().map(String::from).collect(),
        }
    };
    match login {
        Login::Password(password) => {
            let r = handle
                .authenticate_password(user, password.expose())
                .await?;
            if r.success() {
                Ok(Ok(()))
            } else {
                Ok(Err(("password".to_string(), methods(&r))))
            }
        }
        Login::Keys(keys) => {
            let mut tried = Vec::new();
            let mut allowed = Vec::new();
            for (path, key) in keys {
                let hash = handle.best_supported_rsa_hash().await?.flatten();
                let r = handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await?;
                if r.success() {
                    return Ok(Ok(()));
                }
                tried.push(path.display().to_string());
                allowed = methods(&r);
            }
            Ok(Err((format!("publickey ({})", tried.join(", ")), allowed)))
        }
    }
}

/// Stdin for a command: the env header, then bytes or files, one after another.
enum Input {
    Bytes(Vec<u8>),
    Files {
        header: Vec<u8>,
        paths: Vec<PathBuf>,
    },
    /// The same but fails the download early: at most `max` stdout bytes.
    Limited {
        header: Vec<u8>,
        max: usize,
    },
}

async fn exec(
    handle: Arc<Handle>,
    channels: Arc<Semaphore>,
    host: String,
    command: String,
    input: Input,
    reporter: Reporter<Result<Output, TransportError>>,
) -> Result<Output, TransportError> {
    let ssh_err = |action: &str, e: russh::Error| TransportError::Ssh {
        host: host.clone(),
        action: action.to_string(),
        detail: e.to_string(),
    };
    let _permit = channels.acquire_owned().await.expect("never closed");
    // sshd frees a session slot only when our close of a finished channel
    // arrives, so a burst of commands can briefly find none: retry a little.
    let mut attempt = 0;
    let channel = loop {
        match handle.channel_open_session().await {
            Ok(channel) => break channel,
            Err(russh::Error::ChannelOpenFailure(_)) if attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25 * attempt.min(8))).await;
            }
            Err(e) => return Err(ssh_err("opening a channel", e)),
        }
    };
    channel
        .exec(true, command.into_bytes())
        .await
        .map_err(|e| ssh_err("starting a command", e))?;
    let (mut read, write) = channel.split();
    let stdout_limit = match &input {
        Input::Limited { max, .. } => max.saturating_add(1),
        _ => OUTPUT_LIMIT,
    };

    // Stdin is written by its own task, so that output is read while it goes:
    // a command that writes a lot before reading all its input cannot block us.
    let writer_host = host.clone();
    let writer = tokio::spawn(async move {
        let err = |action: String, e: std::io::Error| TransportError::Io {
            host: writer_host.clone(),
            action,
            source: e,
        };
        let (header, body) = match input {
            Input::Bytes(bytes) => (bytes, Vec::new()),
            Input::Files { header, paths } => (header, paths),
            Input::Limited { header, .. } => (header, Vec::new()),
        };
        // Owned buffers go to `data_bytes`, which sends packets of the host's
        // maximum size (32 KiB for sshd). `data(&[u8])` copies through tokio's
        // 8 KiB `io::copy` buffer, so each packet carried only 8 KiB, and that
        // is what stalled the first bulk transfer on a connection: sshd queues
        // what runs ahead of the command's pipe (up to its 2 MiB window) in a
        // buffer that it grows per packet by a fresh allocation and a copy of
        // the whole queue. On a fresh sshd those allocations are new mmaps
        // faulted in page by page (glibc serves them from its heap only after
        // freeing one that size), so the first 20 MB took ~0.9 s, not ~0.15 s.
        // 4x larger packets make 4x fewer of those copies, as OpenSSH's ssh does.
        if !header.is_empty() && write.data_bytes(header).await.is_err() {
            return Ok(false);
        }
        let mut sent = 0u64;
        for path in body {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| err(format!("open {}", path.display()), e))?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| err(format!("read {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if write.data_bytes(buf).await.is_err() {
                    return Ok(false);
                }
                sent += n as u64;
                reporter.progress(sent);
            }
        }
        let _ = write.eof().await;
        Ok::<bool, TransportError>(true)
    });

    let mut stdout = Capture::new(stdout_limit);
    let mut stderr = Capture::new(OUTPUT_LIMIT);
    let mut received = 0usize;
    let mut code = None;
    let mut signal = None;
    let mut closed = false;
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                received += data.len();
                stdout.push(&data);
                if received > stdout_limit && stdout_limit != OUTPUT_LIMIT {
                    break; // a download past its limit: no need to read on
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                signal = Some(format!("{signal_name:?}").to_uppercase())
            }
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let over_limit = received > stdout_limit && stdout_limit != OUTPUT_LIMIT;
    if !writer.is_finished() {
        writer.abort();
    }
    if let Ok(Err(e)) = writer.await {
        return Err(e); // the local file could not be read
    }
    if over_limit {
        return Ok(Output {
            code: None,
            signal: None,
            stdout: stdout.finish(),
            stderr: Vec::new(),
        });
    }
    if code.is_none() && signal.is_none() && !closed {
        return Err(TransportError::Ssh {
            host,
            action: "running a command".to_string(),
            detail: "the connection was lost before the command finished".to_string(),
        });
    }
    Ok(Output {
        code,
        signal,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    })
}

impl Transport for Ssh {
    fn address(&self) -> &str {
        &self.address
    }

    fn data_address(&self) -> Option<std::net::IpAddr> {
        self.data_address
    }

    fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<Output, TransportError> {
        let (command, mut header) = self.prepare(argv, env)?;
        if let Some(bytes) = stdin {
            header.extend_from_slice(bytes);
        }
        self.exec(command, Input::Bytes(header), &|_| {})
    }

    fn upload(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        progress: &dyn Fn(u64),
    ) -> Result<(), TransportError> {
        let size = std::fs::metadata(local)
            .map_err(|e| TransportError::Io {
                host: self.label.clone(),
                action: format!("open {}", local.display()),
                source: e,
            })?
            .len();
        let argv = upload_argv(remote, size, mode);
        let (command, header) = self.prepare(&argv, &[])?;
        let input = Input::Files {
            header,
            paths: vec![local.to_path_buf()],
        };
        self.exec(command, input, progress)?
            .check_as(&self.label, &format!("upload of {remote}"))
            .map(|_| ())
    }

    fn run_with_files(
        &self,
        argv: &[String],
        files: &[PathBuf],
        progress: &dyn Fn(u64),
    ) -> Result<Output, TransportError> {
        let (command, header) = self.prepare(argv, &[])?;
        let input = Input::Files {
            header,
            paths: files.to_vec(),
        };
        self.exec(command, input, progress)
    }

    fn upload_bytes(&self, bytes: &[u8], remote: &str, mode: u32) -> Result<(), TransportError> {
        let argv = upload_argv(remote, bytes.len() as u64, mode);
        let (command, _) = self.prepare(&argv, &[])?;
        self.exec(command, Input::Bytes(bytes.to_vec()), &|_| {})?
            .check_as(&self.label, &format!("upload of {remote}"))
            .map(|_| ())
    }

    fn download_small(&self, remote: &str, max: u64) -> Result<Vec<u8>, TransportError> {
        let argv = script_argv(
            DOWNLOAD_SCRIPT,
            &[remote.to_string(), max.saturating_add(1).to_string()],
        );
        let (command, header) = self.prepare(&argv, &[])?;
        let max_usize = usize::try_from(max).unwrap_or(usize::MAX);
        let out = self.exec(
            command,
            Input::Limited {
                header,
                max: max_usize,
            },
            &|_| {},
        )?;
        if out.code == Some(DOWNLOAD_MISSING) {
            return Err(TransportError::NotFound {
                host: self.label.clone(),
                path: remote.to_string(),
            });
        }
        if out.stdout.len() as u64 > max {
            return Err(TransportError::TooLarge {
                host: self.label.clone(),
                path: remote.to_string(),
                max,
            });
        }
        Ok(out.check_as(&self.label, &format!("read {remote}"))?.stdout)
    }

    fn exists(&self, remote: &str) -> Result<bool, TransportError> {
        let argv = script_argv(EXISTS_SCRIPT, &[remote.to_string()]);
        let out = self.run(&argv, &[], None)?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => out
                .check_as(&self.label, &format!("check for {remote}"))
                .map(|_| false),
        }
    }
}

fn upload_argv(remote: &str, size: u64, mode: u32) -> Vec<String> {
    script_argv(
        UPLOAD_SCRIPT,
        &[remote.to_string(), size.to_string(), format!("{mode:o}")],
    )
}

impl Drop for Ssh {
    /// Says goodbye to the server and waits (briefly) until it is done, so that
    /// a host can be stopped or reset right after.
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let (tx, rx) = std_mpsc::channel();
        runtime().spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                handle.disconnect(Disconnect::ByApplication, "", "en"),
            )
            .await;
            drop(handle);
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_key_types_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(
            &kh,
            "10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
        )
        .unwrap();
        let algos = preferred_key_algorithms("10.0.0.1", 22, &kh);
        assert_eq!(algos[0], russh::keys::Algorithm::Ed25519);
        assert_eq!(algos.len(), Preferred::DEFAULT.key.len());
    }

    #[test]
    fn options_debug_redacts_the_password() {
        let opts = ConnectOptions {
            password: Some(Secret::new("pa$$w0rd")),
            ..Default::default()
        };
        let text = format!("{opts:?}");
        assert!(!text.contains("pa$$w0rd"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn env_values_stay_out_of_the_command_string() {
        // No connection is needed to build the command: use a dummy Ssh.
        let ssh = Ssh {
            address: "h".into(),
            label: "h".into(),
            handle: None,
            channels: Arc::new(Semaphore::new(1)),
            data_address: None,
        };
        let (cmd, header) = ssh
            .prepare(
                &["printenv".to_string(), "PASS".to_string()],
                &[("PASS".to_string(), "pa$$w0rd\"`x".to_string())],
            )
            .unwrap();
        assert!(!cmd.contains("pa$$"), "{cmd}");
        assert!(String::from_utf8(header).unwrap().contains("pa$$w0rd"));
    }
}
