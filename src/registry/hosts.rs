//! Hosts pulling an image's layers straight from its registry: what the
//! operator hands a host's installer (on stdin, never argv) and the blob
//! stream the installer unpacks from. The same client as `sealrs pull`:
//! TLS with the CAs the operator trusts for the registry, retries to open.

use std::io::{self, Read};
use std::path::Path;
use std::thread::JoinHandle;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::client::{Access, Session};
use super::error::RegistryError;
use super::{auth, tls, Credentials, RegistryOptions};
use crate::progress::Progress as _;
use crate::secret::Secret;

/// How a host's installer says that it cannot pull from the registry (not
/// reached, refused, TLS): the operator then sends the layers itself.
pub const UNREACHED: &str = "cannot pull from the registry";

/// Where a host pulls the layers from, and with what. `Debug` never shows
/// a password or token ([`Secret`]); serialized, they travel on stdin only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullTicket {
    pub registry: String,
    pub repository: String,
    /// As the operator's `--tls-verify`.
    pub tls_verify: Option<bool>,
    /// The CA certificates (PEM, `*.crt`) the operator trusts for the registry.
    pub ca_pem: Vec<String>,
    /// Under token auth: a token the operator obtained, scoped to pulling
    /// this repository and short-lived as the token server makes it.
    pub bearer: Option<Secret>,
    /// Basic-auth user and password, only when the user allowed it.
    pub credentials: Option<(String, Secret)>,
}

impl PullTicket {
    /// The ticket for `repository` of `registry` as the operator reaches it
    /// with `opts`: under token auth with a pull token the operator gets
    /// with its credentials; under basic auth with its credentials only
    /// when `with_credentials`. A registry the operator cannot open a
    /// session with gets a ticket without either (hosts may still reach it).
    pub async fn new(
        registry: &str,
        repository: &str,
        opts: &RegistryOptions,
        with_credentials: bool,
    ) -> Result<PullTicket, RegistryError> {
        let mut ca_pem = Vec::new();
        for dir in tls::cert_dirs(registry, opts) {
            ca_pem.extend(read_cas(&dir)?);
        }
        let creds = auth::lookup(registry, repository, opts)?;
        let session = Session::open(registry, repository, Access::Pull, creds.clone(), opts).await;
        let bearer = session.ok().and_then(|s| s.bearer_token());
        let credentials = creds
            .filter(|_| with_credentials && bearer.is_none())
            .map(|c| (c.username.clone(), Secret::new(c.password())));
        Ok(PullTicket {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tls_verify: opts.tls_verify,
            ca_pem,
            bearer,
            credentials,
        })
    }
}

/// The `*.crt` files of a certs.d directory (none when it does not exist).
fn read_cas(dir: &Path) -> Result<Vec<String>, RegistryError> {
    let bad = |reason: String| RegistryError::CertDir {
        path: dir.to_path_buf(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display()))))
        .collect()
}

/// The blobs `wanted` (digest and size, in order) read one after the other
/// from the registry `ticket` names. The session is opened first, so a
/// registry the host cannot reach or is refused by fails here, before any
/// byte; a blob that fails later ends the stream with that error. Checking
/// each blob against its digest is the reader's job (as for any stream).
pub fn blob_stream(
    ticket: &PullTicket,
    wanted: Vec<(Digest, u64)>,
) -> Result<BlobStream, RegistryError> {
    // The CAs as a certs.d directory of the run's own, 0700, gone with it.
    let certs = tempfile::Builder::new()
        .prefix("sealrs-certs-")
        .tempdir()
        .map_err(|e| RegistryError::CertDir {
            path: std::env::temp_dir(),
            reason: e.to_string(),
        })?;
    for (i, pem) in ticket.ca_pem.iter().enumerate() {
        let path = certs.path().join(format!("ca-{i}.crt"));
        std::fs::write(&path, pem).map_err(|e| RegistryError::CertDir {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    let opts = RegistryOptions {
        tls_verify: ticket.tls_verify,
        cert_dir: Some(certs.path().to_path_buf()),
        // One more try, not three: a host that cannot reach the registry
        // gets its layers from the operator instead, so it should know soon.
        retries: 1,
        ..RegistryOptions::default()
    };
    let creds = ticket
        .credentials
        .as_ref()
        .map(|(user, password)| Credentials::new(user, password.expose()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::Protocol {
            registry: ticket.registry.clone(),
            action: "start the async runtime".into(),
            detail: e.to_string(),
        })?;
    let session = runtime.block_on(async {
        match &ticket.bearer {
            Some(token) => {
                Session::open_with_token(&ticket.registry, &ticket.repository, token.clone(), &opts)
                    .await
            }
            None => {
                Session::open(
                    &ticket.registry,
                    &ticket.repository,
                    Access::Pull,
                    creds,
                    &opts,
                )
                .await
            }
        }
    })?;
    // Access is known at the first request: ask for the first blob now, so
    // that a refusal comes before any byte.
    if let Some((digest, _)) = wanted.first() {
        if !runtime.block_on(session.blob_exists(digest))? {
            return Err(RegistryError::NotFound {
                registry: ticket.registry.clone(),
                repository: ticket.repository.clone(),
                what: "blob",
                reference: digest.to_string(),
                detail: String::new(),
            });
        }
    }
    let (reader, mut writer) = io::pipe().map_err(|e| RegistryError::Protocol {
        registry: ticket.registry.clone(),
        action: "make a pipe".into(),
        detail: e.to_string(),
    })?;
    let feeder = std::thread::spawn(move || {
        let _certs = certs;
        let silent = crate::progress::Silent.begin("", None);
        runtime.block_on(async {
            for (digest, size) in &wanted {
                session
                    .get_blob(digest, *size, &mut writer, silent.as_ref())
                    .await?;
            }
            Ok(())
        })
    });
    Ok(BlobStream {
        reader,
        feeder: Some(feeder),
    })
}

/// The pipe the blobs come through; at its end, the feeder's error if any.
pub struct BlobStream {
    reader: io::PipeReader,
    feeder: Option<JoinHandle<Result<(), RegistryError>>>,
}

impl BlobStream {
    /// Streams `wanted` from `session` on a thread of its own, which keeps
    /// `guard` (what must live as long as the reads) until it is done.
    pub(super) fn feed(
        runtime: tokio::runtime::Runtime,
        session: Session,
        wanted: Vec<(Digest, u64)>,
        guard: impl Send + 'static,
    ) -> Result<BlobStream, RegistryError> {
        let (reader, mut writer) = io::pipe().map_err(|e| RegistryError::Protocol {
            registry: session.registry.clone(),
            action: "make a pipe".into(),
            detail: e.to_string(),
        })?;
        let feeder = std::thread::spawn(move || {
            let _guard = guard;
            let silent = crate::progress::Silent.begin("", None);
            runtime.block_on(async {
                for (digest, size) in &wanted {
                    session
                        .get_blob(digest, *size, &mut writer, silent.as_ref())
                        .await?;
                }
                Ok(())
            })
        });
        Ok(BlobStream {
            reader,
            feeder: Some(feeder),
        })
    }

    /// Why the blobs stopped, once a reader gave up on the stream (its own
    /// error says only that the input ended).
    pub fn failure(mut self) -> Option<RegistryError> {
        drop(self.reader);
        match self.feeder.take()?.join() {
            Ok(result) => result.err(),
            Err(_) => None,
        }
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(feeder) = self.feeder.take() {
                match feeder.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(io::Error::other(e)),
                    Err(_) => return Err(io::Error::other("the registry reader panicked")),
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickets_debug_never_shows_the_password_or_token() {
        let ticket = PullTicket {
            registry: "r:5000".into(),
            repository: "edge/k3s".into(),
            tls_verify: None,
            ca_pem: vec!["-----BEGIN CERTIFICATE-----".into()],
            bearer: Some(Secret::new("t0ken-value")),
            credentials: Some(("user".into(), Secret::new("s3cret-pass"))),
        };
        let shown = format!("{ticket:?}");
        assert!(
            !shown.contains("s3cret-pass") && !shown.contains("t0ken-value"),
            "{shown}"
        );
        assert!(
            shown.contains("<redacted>") && shown.contains("r:5000"),
            "{shown}"
        );
    }

    #[test]
    fn the_cas_of_a_certs_d_directory_are_its_crt_files_and_none_when_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.crt"), "B").unwrap();
        std::fs::write(dir.path().join("a.crt"), "A").unwrap();
        std::fs::write(dir.path().join("client.key"), "KEY").unwrap();
        assert_eq!(read_cas(dir.path()).unwrap(), vec!["A", "B"]);
        assert!(read_cas(&dir.path().join("none")).unwrap().is_empty());
    }
}
