//! Reaching a host: TCP, the handshake (ciphers, host-key algorithms, the
//! host-key check) and the login, under one timeout.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::{client, Preferred};
use tokio::sync::Semaphore;

use super::bridge::drive;
use super::host_keys::{key_error, preferred_key_algorithms, Client};
use super::login::{authenticate, home, login};
use super::{Handle, Ssh, MAX_CHANNELS};
use crate::transport::{ConnectOptions, TransportError};

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
