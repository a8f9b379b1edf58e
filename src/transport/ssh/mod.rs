//! SSH to a host with russh: one connection per host, one channel per command,
//! several commands at once on the same connection, closed on `Drop`.
//!
//! A pure-Rust client takes a password from memory: no `sshpass`, no askpass
//! helper, nothing in any argv; its async API stays behind a synchronous
//! [`Transport`] (see `bridge`).
//!
//! Submodules: `bridge` (the tokio runtime behind the synchronous calls),
//! `connect` (TCP, handshake, timeout), `host_keys` (known_hosts), `login`
//! (password or keys), `exec` (a command on its own channel), `quickack` (the
//! socket that acknowledges at once).

mod bridge;
mod connect;
mod exec;
mod host_keys;
mod login;
mod quickack;

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use russh::{client, Disconnect};
use tokio::sync::Semaphore;

use super::{
    script_argv, Output, Transport, TransportError, DOWNLOAD_MISSING, DOWNLOAD_SCRIPT,
    EXISTS_SCRIPT, UPLOAD_SCRIPT,
};
use exec::Input;

/// Commands at once on one connection: below sshd's default `MaxSessions` (10).
const MAX_CHANNELS: usize = 8;

type Handle = client::Handle<host_keys::Client>;

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

    fn run_watching(
        &self,
        argv: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        on_line: &dyn Fn(&str),
    ) -> Result<Output, TransportError> {
        let (command, mut header) = self.prepare(argv, env)?;
        header.extend_from_slice(stdin.unwrap_or_default());
        self.exec_watching(command, Input::Bytes(header), &|_| {}, Some(on_line))
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
        self.run_with_files(&argv, &[local.to_path_buf()], progress)?
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
        self.run(&argv, &[], Some(bytes))?
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
        bridge::runtime().spawn(async move {
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
    use crate::transport::{ConnectOptions, Secret};

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
