//! Errors of the registry client. Each variant names the registry, and where
//! it applies the repository, the blob and the HTTP status, because "push
//! failed" alone sends people to a packet capture. Messages say what to do.
//!
//! No variant holds a password or an `Authorization` header: credentials live
//! only in [`Credentials`](super::auth::Credentials), whose `Debug` redacts them.

use std::path::PathBuf;

use crate::store::StoreError;

/// Everything that can go wrong talking to a registry or to the auth files.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP answer at all: refused, reset, timed out, DNS. Transient: retried.
    #[error("cannot reach registry {registry} ({action}): {detail}")]
    Network {
        registry: String,
        action: String,
        detail: String,
    },

    /// A registry asked over TLS answered in plain HTTP.
    #[error("registry {registry} answers in plain HTTP, not TLS, which sealrs uses without asking only for localhost and 127.0.0.0/8; mark it `insecure = true` in registries.conf (containers-registries.conf(5), --registries-conf) or pass --tls-verify=false if you trust the network")]
    PlainHttp { registry: String },

    /// The server's certificate was not trusted (or TLS failed otherwise).
    #[error("TLS connection to registry {registry} failed: {detail}; put the registry's CA certificate in {cert_dir}/ca.crt or pass --cert-dir DIR with a ca.crt, or --tls-verify=false if you trust the network")]
    Tls {
        registry: String,
        detail: String,
        /// Where the CA would be looked up by default (`/etc/containers/certs.d/HOST:PORT`).
        cert_dir: String,
    },

    /// The registry refused the credentials (or wants some and we have none).
    #[error("registry {registry} refused access{} (HTTP {status} {}): {hint}", repo_suffix(.repository), reason(*.status))]
    Unauthorized {
        registry: String,
        repository: Option<String>,
        status: u16,
        hint: String,
    },

    /// The manifest (image name or tag) or a blob does not exist.
    #[error("{} not found in registry {registry} (HTTP 404 Not Found){}", missing(.what, .repository, .reference), detail_suffix(.detail))]
    NotFound {
        registry: String,
        repository: String,
        /// "manifest" or "blob".
        what: &'static str,
        /// The tag or digest asked for.
        reference: String,
        detail: String,
    },

    /// Any other unexpected HTTP status. 5xx and 429 are transient: retried.
    #[error("registry {registry} answered HTTP {status} {} to {action}{}{}", reason(*.status), blob_suffix(.digest), detail_suffix(.detail))]
    Status {
        registry: String,
        repository: Option<String>,
        digest: Option<String>,
        action: String,
        status: u16,
        detail: String,
    },

    /// HTTP 429 (or 503) with a `Retry-After` in seconds: transient, and
    /// the next try waits as long as the registry asks, up to a bound.
    #[error("registry {registry} answered HTTP {status} {} to {action} and asks to retry after {retry_after} s{}", reason(*.status), detail_suffix(.detail))]
    Throttled {
        registry: String,
        action: String,
        status: u16,
        retry_after: u32,
        detail: String,
    },

    /// A transient failure that persisted through every retry.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<RegistryError>,
    },

    /// Pulled content does not hash to the digest that names it.
    #[error("{what} {expected} from {registry}/{repository} is corrupt: its content hashes to {found}; nothing was written to the local store")]
    DigestMismatch {
        registry: String,
        repository: String,
        what: &'static str,
        expected: String,
        found: String,
    },

    /// A host's pull: the blob's bytes do not hash to its digest, so their
    /// last part was never handed to the unpacker, which keeps nothing of it.
    #[error("blob {digest} from {registry}/{repository} is corrupt: its content hashes to {found}; refused before its last byte")]
    BlobRefused {
        registry: String,
        repository: String,
        digest: String,
        found: String,
    },

    /// Pulled content is longer or shorter than its descriptor says.
    #[error("{what} {digest} from {registry}/{repository} has {found} bytes but its descriptor says {expected}; nothing was written to the local store")]
    SizeMismatch {
        registry: String,
        repository: String,
        what: &'static str,
        digest: String,
        expected: u64,
        found: u64,
    },

    /// A manifest we cannot use (bad JSON, schema 1, too large…).
    #[error("invalid manifest for {registry}/{repository}: {reason}")]
    InvalidManifest {
        registry: String,
        repository: String,
        reason: String,
    },

    /// No entry of an image index matches the wanted platform.
    #[error("{registry}/{repository} has no image for platform {wanted}; it has: {}; pass --platform", .available.join(", "))]
    NoMatchingPlatform {
        registry: String,
        repository: String,
        wanted: String,
        available: Vec<String>,
    },

    #[error("invalid platform {input:?}: {reason} (expected OS/ARCH[/VARIANT], e.g. linux/arm64)")]
    InvalidPlatform { input: String, reason: String },

    #[error("invalid registry {input:?}: {reason}")]
    InvalidRegistry { input: String, reason: String },

    /// The registry broke the distribution protocol (no Location header, bad token JSON…).
    #[error("registry {registry} sent an unexpected answer to {action}: {detail}")]
    Protocol {
        registry: String,
        action: String,
        detail: String,
    },

    /// An auth file exists but cannot be used.
    #[error("auth file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },

    #[error("cannot {action} auth file {path}: {source}")]
    AuthFileIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A certs.d directory (or a file in it) cannot be used.
    #[error("certificate directory {path}: {reason}")]
    CertDir { path: PathBuf, reason: String },

    /// `docker-credential-NAME get` failed. Its output is not quoted: it may hold the secret.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        registry: String,
        reason: String,
    },

    #[error("not logged in to {registry} (no entry in {path})")]
    NotLoggedIn { registry: String, path: PathBuf },

    /// A registries.conf file (or drop-in directory) cannot be read.
    #[error("registries.conf {path}: {reason}")]
    RegistriesConf { path: PathBuf, reason: String },

    /// A registries.conf says something that cannot be used, or blocks the image.
    #[error(transparent)]
    Mirrors(#[from] super::mirrors::MirrorsError),

    /// The local store failed (boxed: it is large, and errors travel by value).
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Store(Box::new(e))
    }
}

impl RegistryError {
    /// Whether trying again may help: the network, a 5xx or a 429.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Network { .. } | RegistryError::Throttled { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// How long the registry asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RegistryError::Throttled { retry_after, .. } => {
                Some(std::time::Duration::from_secs(u64::from(*retry_after)))
            }
            _ => None,
        }
    }

    /// The HTTP status behind this error, if the registry answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            RegistryError::Unauthorized { status, .. } | RegistryError::Status { status, .. } => {
                Some(*status)
            }
            RegistryError::NotFound { .. } => Some(404),
            RegistryError::Throttled { status, .. } => Some(*status),
            RegistryError::GaveUp { last, .. } => last.http_status(),
            _ => None,
        }
    }
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn repo_suffix(repository: &Option<String>) -> String {
    repository
        .as_ref()
        .map(|r| format!(" to {r}"))
        .unwrap_or_default()
}

fn blob_suffix(digest: &Option<String>) -> String {
    digest
        .as_ref()
        .map(|d| format!(" (blob {d})"))
        .unwrap_or_default()
}

fn missing(what: &str, repository: &str, reference: &str) -> String {
    match what {
        "manifest" if reference.contains(':') => format!("image {repository}@{reference}"),
        "manifest" => format!("image {repository}:{reference}"),
        _ => format!("{what} {reference} of {repository}"),
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_registry_status_and_blob() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let e = RegistryError::Status {
            registry: "127.0.0.1:5000".into(),
            repository: Some("x".into()),
            digest: Some(digest.clone()),
            action: "upload of a blob".into(),
            status: 503,
            detail: String::new(),
        };
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:5000"), "{text}");
        // Errors are returned by value everywhere: keep them small.
        assert!(std::mem::size_of::<RegistryError>() <= 128);
        assert!(text.contains("503 Service Unavailable"), "{text}");
        assert!(text.contains(&digest.to_string()), "{text}");
        assert!(e.is_transient());
        let e = RegistryError::Unauthorized {
            registry: "r.example".into(),
            repository: Some("team/app".into()),
            status: 401,
            hint: "log in".into(),
        };
        assert!(e.to_string().contains("HTTP 401 Unauthorized"), "{e}");
        assert!(!e.is_transient());
    }
}
