//! A real registry for tests: Debian's `docker-registry` (distribution 2.8)
//! on 127.0.0.1 and a free port, with its storage and log in a temp dir,
//! optionally with TLS (a test CA signs a cert for IP:127.0.0.1) and bcrypt
//! htpasswd basic auth. Stopped by pid when dropped; never any other address.
//!
//! Also a small TCP proxy that counts the bytes a client sends and can run
//! an action once a threshold is crossed (used to kill the registry in the
//! middle of a push, deterministically).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USER: &str = "tester";
pub const PASSWORD: &str = "correct-horse-battery";

#[derive(Default, Clone, Copy)]
pub struct Options {
    pub tls: bool,
    pub auth: bool,
}

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub opts: Options,
    /// The address it listens on, 127.0.0.1 unless [`Registry::start_on`].
    ip: String,
    /// `proxy.remoteurl`: a pull-through cache of that registry.
    proxy: Option<String>,
    child: Mutex<Option<Child>>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(opts: Options) -> Registry {
        Registry::start_on(opts, "127.0.0.1")
    }

    /// Listening on `ip` (test hosts reach the operator side of their
    /// links), which the TLS certificate names too.
    pub fn start_on(opts: Options, ip: &str) -> Registry {
        Registry::start_with(opts, ip, None)
    }

    /// A plain-HTTP pull-through cache of `upstream` (distribution's
    /// `proxy.remoteurl`, one upstream) listening on `ip`.
    pub fn start_mirror_of(upstream: &Registry, ip: &str) -> Registry {
        let scheme = if upstream.opts.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", upstream.host());
        Registry::start_with(Options::default(), ip, Some(url))
    }

    fn start_with(opts: Options, ip: &str, proxy: Option<String>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("sealrs-registry-")
            .tempdir()
            .unwrap();
        let reg = Registry {
            dir,
            port: free_port(),
            opts,
            ip: ip.to_string(),
            proxy,
            child: Mutex::new(None),
        };
        std::fs::create_dir_all(reg.storage()).unwrap();
        if opts.tls {
            make_certs(reg.dir.path(), &reg.ip());
        }
        if opts.auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(out.status.success());
            std::fs::write(reg.dir.path().join("htpasswd"), out.stdout).unwrap();
        }
        reg.write_config();
        reg.spawn();
        reg
    }

    /// `IP:PORT`, 127.0.0.1 unless [`Registry::start_on`]
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip(), self.port)
    }

    fn ip(&self) -> String {
        self.ip.clone()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The directory with `ca.crt` for `--cert-dir`.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of requests whose method and path start like `prefix`,
    /// e.g. `PUT /v2/team/app/blobs/uploads/`.
    pub fn requests(&self, prefix: &str) -> usize {
        let needle = format!("\"{prefix}");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            self.storage().display(),
            self.host()
        );
        if self.opts.tls {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
        }
        if self.opts.auth {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: sealrs-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        if let Some(url) = &self.proxy {
            config += &format!("proxy:\n  remoteurl: {url}\n");
        }
        std::fs::write(d.join("config.yml"), config).unwrap();
    }

    fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(self.host()).is_err() {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's pid, for killing it from another thread.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().as_ref().unwrap().id()
    }

    /// SIGKILL, as a crash would be.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same storage.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    /// The file holding a blob in the registry's filesystem storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of the stored blob `digest`: the same
    /// size, not what its digest says.
    pub fn damage_blob(&self, digest: &str) {
        let data = self.blob_data(digest);
        let mut bytes = std::fs::read(&data).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&data, bytes).unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test CA and a server certificate it signs for IP:127.0.0.1 and `ip`
/// (rustls refuses a self-signed CA certificate used directly as a server cert).
fn make_certs(dir: &Path, ip: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=sealrs test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName=IP:127.0.0.1,IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    std::fs::create_dir_all(dir.join("certs.d")).unwrap();
    std::fs::copy(dir.join("ca.crt"), dir.join("certs.d/ca.crt")).unwrap();
}

/// Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`, counting the bytes
/// clients send; `trigger` runs once when the count passes `after` bytes.
pub struct Proxy {
    pub port: u16,
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

type Trigger = Box<dyn FnOnce() + Send>;

impl Proxy {
    pub fn start(upstream: u16, trigger: Option<(u64, Trigger)>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let trigger = Arc::new(Mutex::new(trigger));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let (sent, trigger) = (sent2.clone(), trigger.clone());
                        std::thread::spawn(move || pump(client, server, Some((sent, trigger))));
                        std::thread::spawn(move || pump(s2, c2, None));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        Proxy { port, sent, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

type Counting = (Arc<AtomicU64>, Arc<Mutex<Option<(u64, Trigger)>>>);

fn pump(mut from: TcpStream, mut to: TcpStream, counting: Option<Counting>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some((sent, trigger)) = &counting {
            let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let mut t = trigger.lock().unwrap();
            if t.as_ref().is_some_and(|(after, _)| total > *after) {
                let (_, action) = t.take().unwrap();
                action();
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
