//! Logging in: a password from memory, or keys loaded before any connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::Handle;
use crate::transport::{ConnectOptions, Secret, TransportError};

/// Keys to try, each loaded before any connection so that a bad key is
/// reported as such rather than as a refused login.
pub(super) enum Login {
    Password(Secret),
    Keys(Vec<(PathBuf, PrivateKey)>),
}

pub(super) fn home() -> Option<PathBuf> {
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

pub(super) fn login(host: &str, opts: &ConnectOptions) -> Result<Login, TransportError> {
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

/// Logs in; `Ok(Err((method, allowed)))` when the host refused the login.
pub(super) async fn authenticate(
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
