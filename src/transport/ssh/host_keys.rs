//! Host keys: the key a host offers is checked against known_hosts (plain and
//! hashed entries, `[host]:port` for other ports). Unknown: refused with its
//! fingerprint unless `accept_new_host_keys`, which records it. Different from
//! a recorded key of the same type, or of a type the host no longer offers:
//! always refused. Key types recorded for a host are preferred in the
//! handshake, so a host recorded with only its RSA key is asked for that key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::known_hosts::{known_host_keys_path, learn_known_hosts_path};
use russh::keys::{HashAlg, PublicKey};
use russh::{client, Preferred};

use crate::transport::TransportError;

/// What the host-key check decided, kept for the error message: russh itself
/// only reports "unknown key".
#[derive(Debug, Clone)]
pub(super) enum KeyVerdict {
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

pub(super) struct Client {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) known_hosts: PathBuf,
    pub(super) accept_new: bool,
    pub(super) verdict: Arc<Mutex<Option<KeyVerdict>>>,
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

/// Host-key algorithms, those recorded for this host first.
pub(super) fn preferred_key_algorithms(
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

pub(super) fn key_error(host: &str, known_hosts: &Path, verdict: KeyVerdict) -> TransportError {
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
}
