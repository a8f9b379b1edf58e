//! Push, pull, login and logout against OCI registries (the distribution API).
//!
//! - [`push`] and [`pull`] stream blobs between the local [`Store`](crate::store::Store) and a
//!   registry, several at once (bounded by `max_concurrent`), each transfer
//!   retried as a unit on a transient failure. Memory stays flat: a blob goes
//!   from file to socket and from socket to a store temp file in chunks.
//! - Every pulled blob and manifest is checked against its digest before it
//!   becomes visible in the store; a mismatch writes nothing and tags nothing.
//! - Push asks (HEAD) before it uploads, and mounts blobs from the source
//!   repository when it lives on the same registry.
//! - Credentials come from the containers auth file or docker's config
//!   ([`auth`]); connections follow the TLS rules in [`tls`].
//! - Pulls go through the mirrors registries.conf names ([`mirrors`]), in
//!   order, then the registry; pushes go to the registry only. A registry
//!   it marks `insecure` may be plain HTTP for pulls, pushes and logins.
//!
//! Everything here is `async` (tokio): the CLI runs it on a runtime.

pub mod auth;
mod client;
pub mod error;
pub mod hosts;
pub mod mirrors;
pub mod platform;
mod sources;
pub mod tls;
mod transfer;

// This machine's own reads of the blobs that hosts pull (`hosts`).
pub mod operator;

use std::path::PathBuf;

pub use auth::Credentials;
pub use error::RegistryError;
pub use platform::Platform;
pub use transfer::pull_blobs;
pub use transfer::{fetch_metadata, pull, push, RemoteImage};

/// How to reach registries. `Default` is what a user gets without flags.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `None`: verify TLS, allow plain HTTP for loopback registries only.
    /// `Some(false)`: do not verify, allow HTTP anywhere. `Some(true)`: never HTTP.
    pub tls_verify: Option<bool>,
    /// A certs.d-style directory (`ca.crt`, `*.crt`, `client.cert`/`.key`)
    /// used instead of `/etc/containers/certs.d/HOST:PORT/`.
    pub cert_dir: Option<PathBuf>,
    /// The containers auth file to read and write (`--authfile`).
    pub auth_file: Option<PathBuf>,
    /// docker's config directory; `None` means `$DOCKER_CONFIG` or `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// `os/arch[/variant]` to choose from an image index; `None` is this host.
    pub platform: Option<String>,
    /// Blobs transferred at once.
    pub max_concurrent: usize,
    /// Extra tries of a transfer after a transient failure.
    pub retries: u32,
    /// The registries.conf naming mirrors and remapped locations
    /// (`--registries-conf`); `None`: found as containers/image finds it.
    pub registries_conf: Option<PathBuf>,
    /// Mirrors (`host[:port]`) this process already passed over, each
    /// said once: its later reads go past them.
    pub skip_mirrors: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: None,
            cert_dir: None,
            auth_file: None,
            docker_config_dir: None,
            platform: None,
            max_concurrent: 4,
            retries: 3,
            registries_conf: None,
            skip_mirrors: Vec::new(),
        }
    }
}

/// Checks `username`/`password` against `registry`, then records them in the
/// auth file (mode 0600). Nothing is written if the registry refuses them.
pub async fn login(
    registry: &str,
    username: &str,
    password: &str,
    opts: &RegistryOptions,
) -> Result<(), RegistryError> {
    let registry = auth::normalize_registry(registry)?;
    let creds = Credentials::new(username, password);
    // Fail on a broken auth file before bothering the registry.
    let path = auth::auth_file_path(opts)?;
    let mut file = auth::AuthFile::load(&path)?;
    let opts = &sources::destination_options(&registry, opts)?;
    client::Session::login(&registry, creds.clone(), opts).await?;
    file.set(&registry, &creds);
    file.save()
}

/// Removes `registry`'s entry from the auth file.
pub fn logout(registry: &str, opts: &RegistryOptions) -> Result<(), RegistryError> {
    let registry = auth::normalize_registry(registry)?;
    let path = auth::auth_file_path(opts)?;
    let mut file = auth::AuthFile::load(&path)?;
    if !file.remove(&registry) {
        return Err(RegistryError::NotLoggedIn { registry, path });
    }
    file.save()
}
