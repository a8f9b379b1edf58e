//! Hosts pulling an image's layers straight from its registry: what the
//! operator hands a host's installer (on stdin, never argv) and the blob
//! stream the installer unpacks from. The same client as `sealrs pull`:
//! TLS with the CAs the operator trusts for the registry, retries to open,
//! and the mirrors the operator's registries.conf names for it, tried in
//! order before the registry. A host switches to the next source only
//! before a blob's first byte (the bytes stream into the unpacker as they
//! arrive, so they cannot be taken back): a mirror that is down or answers
//! with an error is passed over; one that sends bytes that are not the blob
//! fails the host's pull: its last bytes never reach the unpacker, which
//! refuses the blob as short, with nothing placed.

use std::io::{self, Read, Write as _};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::{Buf as _, Bytes};
use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::client::{retry, Access, Session};
use super::error::RegistryError;
use super::{auth, sources, tls, Credentials, RegistryOptions};
use crate::digest::Hashing;
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
    /// Mirrors to try first, in order, each with its own access (their
    /// own `mirrors` empty). Absent in tickets of earlier operators.
    #[serde(default)]
    pub mirrors: Vec<PullTicket>,
}

impl PullTicket {
    /// The ticket for `repository` of `registry` as the operator reaches it
    /// with `opts`: under token auth with a pull token the operator gets
    /// with its credentials; under basic auth with its credentials only
    /// when `with_credentials`. A registry the operator cannot open a
    /// session with gets a ticket without either (hosts may still reach it).
    /// The ticket carries the mirrors registries.conf names for the
    /// repository, as for a pull by digest (hosts fetch blobs by digest),
    /// and names the registry's remapped location if it has one.
    pub async fn new(
        registry: &str,
        repository: &str,
        opts: &RegistryOptions,
        with_credentials: bool,
    ) -> Result<PullTicket, RegistryError> {
        let endpoints = sources::load(opts)?.repository_sources(registry, repository)?;
        let mut tickets = Vec::new();
        for endpoint in &endpoints {
            let opts = sources::endpoint_options(endpoint, opts);
            let r = &endpoint.reference;
            tickets.push(
                PullTicket::grant(&r.registry, &r.repository, &opts, with_credentials).await?,
            );
        }
        let mut origin = tickets.pop().expect("the origin is the last source");
        origin.mirrors = tickets;
        Ok(origin)
    }

    /// The ticket for one registry, without mirrors.
    async fn grant(
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
            mirrors: Vec::new(),
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
/// from the first of `ticket`'s mirrors, then its registry, that serves
/// them. The first source that opens and has the first blob is chosen
/// before any byte, so a registry the host cannot reach or is refused by
/// fails here; a blob that fails later ends the stream with that error.
/// Each blob is hashed as it arrives, and its last chunk reaches the reader
/// only once it matched its digest: a wrong blob ends the stream short.
pub fn blob_stream(
    ticket: &PullTicket,
    wanted: Vec<(Digest, u64)>,
) -> Result<BlobStream, RegistryError> {
    let runtime = super::operator::current_thread(&ticket.registry)?;
    let mut chain: Vec<Slot> = ticket
        .mirrors
        .iter()
        .chain(std::iter::once(ticket))
        .map(|t| {
            Slot::Untried(PullTicket {
                mirrors: Vec::new(),
                ..t.clone()
            })
        })
        .collect();
    // Access is known at the first request: ask for the first blob now, so
    // that a refusal comes before any byte.
    let last = chain.len() - 1;
    let mut start = 0;
    for (i, slot) in chain.iter_mut().enumerate() {
        match runtime.block_on(slot.open(wanted.first().map(|(d, _)| d))) {
            Ok(()) => {
                start = i;
                break;
            }
            Err(e) if i < last => note(slot, &e),
            Err(e) => return Err(e),
        }
    }
    let (sender, chunks) = mpsc::sync_channel(CHUNKS);
    let feeder = std::thread::spawn(move || {
        let silent = crate::progress::Silent.begin("", None);
        runtime.block_on(async {
            for (digest, size) in &wanted {
                let mut i = start;
                let resp = loop {
                    let slot = &mut chain[i];
                    if matches!(slot, Slot::Failed(_)) && i < last {
                        i += 1;
                        continue;
                    }
                    let answer = match slot.open(None).await {
                        Ok(()) => slot.blob_response(digest).await,
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok(resp) => break resp,
                        Err(e) if i < last => note(slot, &e),
                        Err(e) => return Err(e),
                    }
                    i += 1;
                };
                let Slot::Open { session, .. } = &chain[i] else {
                    unreachable!("a source that answered is open")
                };
                // Named before its bytes flow: should they not be the blob,
                // the unpacker's refusal then says where they came from.
                if i < last {
                    eprintln!("blob {digest} through mirror {}", session.registry);
                }
                let mut blob = Vouching::new(&sender);
                session
                    .stream_blob(resp, digest, *size, |c| blob.put(c), silent.as_ref())
                    .await?;
                let found = blob.found();
                if &found != digest {
                    return Err(RegistryError::BlobRefused {
                        registry: session.registry.clone(),
                        repository: session.repository.clone(),
                        digest: digest.to_string(),
                        found: found.to_string(),
                    });
                }
                blob.release().map_err(|e| RegistryError::Network {
                    registry: session.registry.clone(),
                    action: format!("hand blob {digest} to the unpacker"),
                    detail: e.to_string(),
                })?;
            }
            Ok(())
        })
    });
    Ok(BlobStream {
        chunks,
        current: Bytes::new(),
        feeder: Some(feeder),
        failed: None,
    })
}

/// Chunks received and not yet read: the bound on what a host holds in
/// memory ahead of its unpacker.
const CHUNKS: usize = 32;

/// The feeder's end of a [`BlobStream`]: each chunk as received, in memory
/// and uncopied (a pipe cost a copy through the kernel and a system call
/// each way).
fn hand_over(sender: &mpsc::SyncSender<Bytes>, chunk: Bytes) -> io::Result<()> {
    sender
        .send(chunk)
        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the unpacker stopped reading"))
}

/// One blob's chunks on their way to the unpacker, hashed as they pass (on
/// the receiving thread, beside the unpacking); the last is held back until
/// [`Vouching::release`], which the blob's digest must allow first: the
/// unpacker never gets the whole of a blob that is not what its digest says.
struct Vouching<'a> {
    sender: &'a mpsc::SyncSender<Bytes>,
    hashing: Hashing<io::Sink>,
    held: Option<Bytes>,
}

impl<'a> Vouching<'a> {
    fn new(sender: &'a mpsc::SyncSender<Bytes>) -> Self {
        Vouching {
            sender,
            hashing: Hashing::new(io::sink()),
            held: None,
        }
    }

    fn put(&mut self, chunk: Bytes) -> io::Result<()> {
        self.hashing.write_all(&chunk)?;
        match self.held.replace(chunk) {
            Some(before) => hand_over(self.sender, before),
            None => Ok(()),
        }
    }

    /// The digest of what was put.
    fn found(&self) -> Digest {
        self.hashing.digest()
    }

    fn release(self) -> io::Result<()> {
        match self.held {
            Some(last) => hand_over(self.sender, last),
            None => Ok(()),
        }
    }
}

/// A host's stderr reaches the operator's report: say which mirror was passed over.
fn note(slot: &Slot, error: &RegistryError) {
    eprintln!(
        "mirror {} cannot be used: {error}; trying the next source",
        slot.registry()
    );
}

/// One source of a host's pull: not yet opened, opened, or failed to open.
enum Slot {
    Untried(PullTicket),
    Open {
        ticket: PullTicket,
        session: Box<Session>,
        /// The CAs as a certs.d directory of the run's own, 0700, gone with it.
        _certs: tempfile::TempDir,
    },
    Failed(PullTicket),
}

impl Slot {
    fn registry(&self) -> &str {
        match self {
            Slot::Untried(t) | Slot::Open { ticket: t, .. } | Slot::Failed(t) => &t.registry,
        }
    }

    /// Opens the session once (`probe`: a blob it must have); a source that
    /// failed stays failed.
    async fn open(&mut self, probe: Option<&Digest>) -> Result<(), RegistryError> {
        let ticket = match self {
            Slot::Open { .. } => return Ok(()),
            Slot::Failed(t) => {
                return Err(RegistryError::Network {
                    registry: t.registry.clone(),
                    action: "connect".into(),
                    detail: "it failed earlier in this pull".into(),
                })
            }
            Slot::Untried(t) => t.clone(),
        };
        match open_session(&ticket, probe).await {
            Ok((session, certs)) => {
                *self = Slot::Open {
                    ticket,
                    session: Box::new(session),
                    _certs: certs,
                };
                Ok(())
            }
            Err(e) => {
                *self = Slot::Failed(ticket);
                Err(e)
            }
        }
    }

    async fn blob_response(&self, digest: &Digest) -> Result<reqwest::Response, RegistryError> {
        match self {
            Slot::Open { session, .. } => {
                retry(session.retries, || session.blob_response(digest)).await
            }
            _ => unreachable!("opened before use"),
        }
    }
}

/// A session with `ticket`'s registry, with its CAs and access; when
/// `probe` is given, the registry must have that blob.
async fn open_session(
    ticket: &PullTicket,
    probe: Option<&Digest>,
) -> Result<(Session, tempfile::TempDir), RegistryError> {
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
    let session = match &ticket.bearer {
        Some(token) => {
            Session::open_with_token(&ticket.registry, &ticket.repository, token.clone(), &opts)
                .await?
        }
        None => {
            let creds = ticket
                .credentials
                .as_ref()
                .map(|(user, password)| Credentials::new(user, password.expose()));
            Session::open(
                &ticket.registry,
                &ticket.repository,
                Access::Pull,
                creds,
                &opts,
            )
            .await?
        }
    };
    if let Some(digest) = probe {
        if !session.blob_exists(digest).await? {
            return Err(RegistryError::NotFound {
                registry: ticket.registry.clone(),
                repository: ticket.repository.clone(),
                what: "blob",
                reference: digest.to_string(),
                detail: String::new(),
            });
        }
    }
    Ok((session, certs))
}

/// The blobs' bytes as the feeder received them; at their end, the
/// feeder's error if any.
pub struct BlobStream {
    chunks: mpsc::Receiver<Bytes>,
    /// What is left of the chunk being read.
    current: Bytes,
    feeder: Option<JoinHandle<Result<(), RegistryError>>>,
    /// The feeder's error, once a read returned it.
    failed: Option<RegistryError>,
}

impl BlobStream {
    /// Why the blobs stopped, once a reader gave up on the stream (its own
    /// error says only that the input ended).
    pub fn failure(self) -> Option<RegistryError> {
        let BlobStream {
            chunks,
            feeder,
            failed,
            ..
        } = self;
        if failed.is_some() {
            return failed;
        }
        // A feeder waiting for room in the channel then stops.
        drop(chunks);
        match feeder?.join() {
            Ok(result) => result.err(),
            Err(_) => None,
        }
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = buf.len().min(self.current.len());
            if n > 0 || buf.is_empty() {
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Ok(n);
            }
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk,
                // The feeder ended: all of the blobs, or its error.
                Err(mpsc::RecvError) => break,
            }
        }
        if let Some(feeder) = self.feeder.take() {
            match feeder.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let error = io::Error::other(e.to_string());
                    self.failed = Some(e);
                    return Err(error);
                }
                Err(_) => return Err(io::Error::other("the registry reader panicked")),
            }
        }
        Ok(0)
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
            mirrors: Vec::new(),
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
    fn a_ticket_of_an_earlier_operator_has_no_mirrors_and_mirrors_travel_with_their_access() {
        let old = r#"{"registry":"r:5000","repository":"edge/k3s","tls_verify":null,"ca_pem":[],"bearer":null,"credentials":null}"#;
        let ticket: PullTicket = serde_json::from_str(old).unwrap();
        assert!(ticket.mirrors.is_empty());
        let mirror = PullTicket {
            registry: "m:5001".into(),
            tls_verify: Some(false),
            bearer: Some(Secret::new("mirror-t0ken")),
            ..ticket.clone()
        };
        let with = PullTicket {
            mirrors: vec![mirror],
            ..ticket
        };
        let back: PullTicket =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.mirrors[0].registry, "m:5001");
        assert_eq!(back.mirrors[0].tls_verify, Some(false));
        assert!(!format!("{with:?}").contains("mirror-t0ken"));
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

    /// A stream fed by `feed`, as [`blob_stream`] feeds one.
    fn fed(
        feed: impl FnOnce(&dyn Fn(&[u8]) -> io::Result<()>) -> Result<(), RegistryError>
            + Send
            + 'static,
    ) -> BlobStream {
        let (sender, chunks) = mpsc::sync_channel(CHUNKS);
        BlobStream {
            chunks,
            current: Bytes::new(),
            feeder: Some(std::thread::spawn(move || {
                feed(&|chunk| hand_over(&sender, Bytes::copy_from_slice(chunk)))
            })),
            failed: None,
        }
    }

    fn cut() -> RegistryError {
        RegistryError::Network {
            registry: "r.example".into(),
            action: "download blob".into(),
            detail: "connection reset".into(),
        }
    }

    #[test]
    fn a_reader_gets_every_chunk_in_order_then_the_feeders_error_not_an_end() {
        let mut stream = fed(|out| {
            for i in 0..100u8 {
                out(&[i; 1000]).unwrap();
            }
            Err(cut())
        });
        let mut read = Vec::new();
        let error = stream.read_to_end(&mut read).unwrap_err();
        assert!(error.to_string().contains("connection reset"), "{error}");
        assert_eq!(read.len(), 100_000);
        assert!(read
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 1000]));
    }

    #[test]
    fn a_blobs_last_chunk_reaches_the_reader_only_once_released() {
        let (sender, chunks) = mpsc::sync_channel(CHUNKS);
        let mut blob = Vouching::new(&sender);
        for part in ["first ", "second ", "last"] {
            blob.put(Bytes::from(part)).unwrap();
        }
        let passed: Vec<Bytes> = chunks.try_iter().collect();
        assert_eq!(passed, ["first ", "second "]);
        assert_eq!(
            blob.found(),
            crate::digest::sha256_digest(b"first second last")
        );
        blob.release().unwrap();
        assert_eq!(chunks.try_iter().collect::<Vec<_>>(), ["last"]);
    }

    #[test]
    fn a_reader_that_gives_up_stops_a_feeder_waiting_for_room_and_gets_why() {
        let mut stream = fed(|out| loop {
            out(&[7; 4096]).map_err(|e| RegistryError::Network {
                registry: "r.example".into(),
                action: "write".into(),
                detail: e.to_string(),
            })?;
        });
        let mut some = [0; 10];
        stream.read_exact(&mut some).unwrap();
        let why = stream.failure().expect("the feeder's error");
        assert!(why.to_string().contains("stopped reading"), "{why}");
    }
}
