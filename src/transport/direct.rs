//! Bulk bytes over a direct TLS connection from a host back to the operator.
//!
//! One SSH stream per host is the slow part of a first apply: the operator and
//! every sshd spend their CPU on the SSH channel, and a 400 MB layer takes
//! seconds per host. So commands stay on SSH, and layers may take a shorter
//! road: the operator listens on a port of its own ([`Server`]), on the
//! addresses its SSH connections come from and no other, and hands
//! each host, on the stdin of an SSH command, a [`Ticket`]: where to connect,
//! the SHA-256 of a certificate made for this run alone, and a one-time token.
//! The host pins that certificate, proves itself with the token, and reads its
//! blobs ([`fetch`]). So the network gains no trust: it can only fail to carry
//! the bytes.
//!
//! Each file's bytes are followed by [`DIGEST_LEN`] bytes: its SHA-256 as the
//! operator found it, hashing its copy once per run however many hosts it
//! goes to, on a thread of its own that runs ahead of the sends. A host keeps
//! a blob only when that equals the digest it asked for. TLS guarantees the
//! host reads what the operator wrote, so hashing again on every host (each
//! one 16% of a first apply's CPU, measured) would check nothing more.
//!
//! A server may also be given a [`Trailer`]: what the caller makes of a
//! file's bytes in that same read (for a layer, the size and SHA-256 of each
//! file in it), sent after the digest as a 4-byte big-endian length and the
//! bytes, and said so in the [`Ticket`]. So work that every host would do
//! again on the same bytes is done once, here (a layer's file sums were 68%
//! of each host's installer CPU in a first apply, measured).
//!
//! A host that cannot reach the operator (NAT, a firewall) never claims its
//! token; [`Offer::claimed`] tells the operator to send over SSH instead.
//!
//! One offer may go without TLS ([`Server::offer_plain`]): the installer
//! layer, which a host fetches before it has the installer's TLS client,
//! with bash. It is the sealrs binary, public code, and the host keeps it
//! only if its sha256 is the one the SSH command named; the token, sent as
//! a line, still makes the offer one host's, once.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::Hashing;

use crate::secret::Secret;

/// How long a host tries to reach the operator before it gives up (and the
/// operator falls back to SSH): long enough for a slow link, short enough
/// that a dropped SYN behind a firewall costs little.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A stalled peer is given up on after this long without a byte, on either side.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection must show its token this soon after it is accepted.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once, tokens not shown yet included: a stranger
/// who opens many can delay the hosts by [`TOKEN_TIMEOUT`], not exhaust us.
const MAX_CONNECTIONS: usize = 64;

/// Bytes per read of a blob file and per write to the TLS stream.
const CHUNK: usize = 256 << 10;

/// The length of the SHA-256 that follows each file over TLS.
pub const DIGEST_LEN: usize = 32;

/// Token bytes (sent as hex): unguessable, and one offer's only.
const TOKEN_BYTES: usize = 32;

/// The server name both sides use; the certificate is pinned, so it is a label.
const NAME: &str = "sealrs-operator";

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("cannot listen for hosts on {address}: {source}")]
    Listen { address: IpAddr, source: io::Error },
    #[error("cannot make a certificate for this run: {0}")]
    Certificate(String),
    #[error("cannot reach the operator at {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("TLS with the operator at {address} failed: {detail}")]
    Tls { address: SocketAddr, detail: String },
}

/// What a host needs to fetch its offer; travels on an SSH command's stdin,
/// never in an argv.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// The operator's address as the host should reach it.
    pub address: SocketAddr,
    /// SHA-256 of the operator's certificate, lowercase hex.
    pub fingerprint: String,
    /// Names the offer and proves the host is the one it was made for.
    pub token: Secret,
    /// Each file's digest is followed by its [`Trailer`] ([`read_trailer`]).
    /// Left out when false, so that installers from before it read the
    /// ticket; one that refuses the field fails before claiming the offer,
    /// and the operator sends over SSH instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trailers: bool,
}

/// What a server makes of each file it serves over TLS, from the same bytes
/// it hashes (read once per run), sent after the file's digest.
pub type Trailer = fn(&mut dyn Read) -> io::Result<Vec<u8>>;

/// The longest trailer a host reads.
pub const MAX_TRAILER: usize = 256 << 20;

/// The operator's side: serves each [`Offer`]'s files, once, to the host
/// that shows its token. Stops listening when dropped.
pub struct Server {
    /// The port for each address listened on.
    ports: Vec<(IpAddr, u16)>,
    fingerprint: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    trailer: Option<Trailer>,
}

struct Shared {
    config: Arc<rustls::ServerConfig>,
    provider: Arc<CryptoProvider>,
    /// Offers not claimed yet, by token.
    offers: Mutex<HashMap<String, Arc<OfferState>>>,
    stop: AtomicBool,
    /// Connections being served.
    serving: AtomicUsize,
    /// Each file offered over TLS, hashed once for every host it goes to.
    hashed: Mutex<HashMap<PathBuf, Arc<Hashed>>>,
}

struct OfferState {
    files: Vec<PathBuf>,
    /// The operator's hash of each of `files` (none for a plain offer).
    hashes: Vec<Arc<Hashed>>,
    /// What follows each file's digest, if anything.
    trailer: Option<Trailer>,
    /// Served over plain TCP (see the module docs), not over TLS.
    plain: bool,
    claimed: AtomicBool,
    sent: AtomicU64,
    /// Why serving stopped early, for the operator's report.
    error: Mutex<Option<String>>,
}

/// Files offered to one host.
pub struct Offer {
    token: Secret,
    state: Arc<OfferState>,
    shared: Arc<Shared>,
}

impl Server {
    /// Listens on each of `addresses` (this machine's, as hosts reach it), on
    /// ports the system picks, with a certificate made now and never written
    /// to disk. An address that cannot be listened on is left out (its hosts
    /// get no ticket); none at all is an error.
    pub fn start(addresses: &[IpAddr]) -> Result<Server, DirectError> {
        let provider = Arc::new(crypto_provider());
        let certified = rcgen::generate_simple_self_signed(vec![NAME.to_string()])
            .map_err(|e| DirectError::Certificate(e.to_string()))?;
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| DirectError::Certificate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .map_err(|e| DirectError::Certificate(e.to_string()))?;
        config.send_tls13_tickets = 0; // one connection per offer: nothing to resume
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        let mut failed = None;
        for &address in addresses {
            if ports.iter().any(|(a, _)| *a == address) {
                continue;
            }
            // A blocking accept could not be woken to stop; a short poll
            // costs nothing next to the transfers it starts.
            let bound = TcpListener::bind((address, 0)).and_then(|listener| {
                listener.set_nonblocking(true)?;
                Ok((listener.local_addr()?.port(), listener))
            });
            match bound {
                Ok((port, listener)) => {
                    ports.push((address, port));
                    listeners.push(listener);
                }
                Err(source) => failed = Some(DirectError::Listen { address, source }),
            }
        }
        if let (true, Some(err)) = (listeners.is_empty(), failed) {
            return Err(err);
        }
        let shared = Arc::new(Shared {
            config: Arc::new(config),
            provider,
            offers: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            serving: AtomicUsize::new(0),
            hashed: Mutex::new(HashMap::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listeners, shared))
        };
        Ok(Server {
            ports,
            fingerprint: hex::encode(Sha256::digest(cert.as_ref())),
            shared,
            accept: Some(accept),
            trailer: None,
        })
    }

    /// Follows each file served over TLS, after its digest, with what
    /// `trailer` makes of its bytes; before any offer.
    pub fn with_trailer(mut self, trailer: Trailer) -> Server {
        self.trailer = Some(trailer);
        self
    }

    /// Offers `files`, in order, to the one host that shows the returned
    /// offer's token. The offer is withdrawn when dropped.
    pub fn offer(&self, files: Vec<PathBuf>) -> Offer {
        self.make_offer(files, false)
    }

    /// [`Server::offer`] over plain TCP: the host sends the token as a line
    /// and reads the files' bytes until the connection closes. Only for
    /// public files whose digest the host checks (see the module docs).
    pub fn offer_plain(&self, files: Vec<PathBuf>) -> Offer {
        self.make_offer(files, true)
    }

    fn make_offer(&self, files: Vec<PathBuf>, plain: bool) -> Offer {
        let mut bytes = [0u8; TOKEN_BYTES];
        self.shared
            .provider
            .secure_random
            .fill(&mut bytes)
            .expect("the system's random source works");
        let token = hex::encode(bytes);
        let (hashes, trailer) = if plain {
            (Vec::new(), None)
        } else {
            (self.hashes_of(&files), self.trailer)
        };
        let state = Arc::new(OfferState {
            files,
            hashes,
            trailer,
            plain,
            claimed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        self.shared
            .offers
            .lock()
            .unwrap()
            .insert(token.clone(), state.clone());
        Offer {
            token: Secret::new(token),
            state,
            shared: self.shared.clone(),
        }
    }

    /// The hash of each of `files`: the one made or being made for an earlier
    /// offer, else one a new thread makes now, in order (as they are sent).
    fn hashes_of(&self, files: &[PathBuf]) -> Vec<Arc<Hashed>> {
        let mut known = self.shared.hashed.lock().unwrap();
        let mut new = Vec::new();
        let hashes = files
            .iter()
            .map(|path| {
                known
                    .entry(path.clone())
                    .or_insert_with(|| {
                        let hashed = Arc::new(Hashed::default());
                        new.push((path.clone(), hashed.clone()));
                        hashed
                    })
                    .clone()
            })
            .collect();
        if !new.is_empty() {
            let trailer = self.trailer;
            std::thread::spawn(move || {
                for (path, hashed) in new {
                    hashed.get_or_init(|| sha256_of(&path, trailer));
                }
            });
        }
        hashes
    }

    /// The ticket for `offer`, for a host that reaches this machine at `ip`;
    /// `None` when the server does not listen there.
    pub fn ticket(&self, offer: &Offer, ip: IpAddr) -> Option<Ticket> {
        let (_, port) = self.ports.iter().find(|(a, _)| *a == ip)?;
        Some(Ticket {
            address: SocketAddr::new(ip, *port),
            fingerprint: self.fingerprint.clone(),
            token: offer.token.clone(),
            trailers: self.trailer.is_some(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("ports", &self.ports)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Offer {
    /// Whether a host showed the token: from then on the offer is that
    /// host's, and a failure is its failure, not a reason to try SSH.
    pub fn claimed(&self) -> bool {
        self.state.claimed.load(Ordering::Acquire)
    }

    /// Bytes of the files written to the host so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::Relaxed)
    }

    /// Why serving stopped before the end, if it did.
    pub fn error(&self) -> Option<String> {
        self.state.error.lock().unwrap().clone()
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        self.shared
            .offers
            .lock()
            .unwrap()
            .remove(self.token.expose());
    }
}

fn accept_loop(listeners: Vec<TcpListener>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for listener in &listeners {
            // WouldBlock (nobody waiting) or a connection reset before accept.
            let Ok((socket, _)) = listener.accept() else {
                continue;
            };
            idle = false;
            if shared.serving.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                shared.serving.fetch_sub(1, Ordering::AcqRel);
                continue; // dropped: its host, if any, retries over SSH
            }
            let shared = shared.clone();
            std::thread::spawn(move || {
                serve(socket, &shared);
                shared.serving.fetch_sub(1, Ordering::AcqRel);
            });
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One host's connection: its token, then its offer's files, in order.
fn serve(socket: TcpStream, shared: &Shared) {
    let setup = |s: &TcpStream| {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TOKEN_TIMEOUT))?;
        s.set_write_timeout(Some(IDLE_TIMEOUT))
    };
    if setup(&socket).is_err() {
        return;
    }
    // A TLS ClientHello starts with 0x16; a plain token line with a hex digit.
    let mut first = [0u8; 1];
    if matches!(socket.peek(&mut first), Ok(1) if first[0].is_ascii_hexdigit()) {
        return serve_plain(socket, shared);
    }
    let Ok(conn) = rustls::ServerConnection::new(shared.config.clone()) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, socket);
    // A stranger, a wrong certificate pin or a spent token ends here: the
    // offer stays for its host.
    let Some(state) = claim(&mut tls, shared, false) else {
        return;
    };
    let _ = tls.sock.set_read_timeout(Some(IDLE_TIMEOUT));
    let sent = send_files(&mut tls, &state).and_then(|()| {
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| format!("finishing: {e}"))
    });
    if let Err(e) = sent {
        *state.error.lock().unwrap() = Some(e);
    }
}

/// A plain offer's connection: the token as a line, then the bytes.
fn serve_plain(mut socket: TcpStream, shared: &Shared) {
    let Some(state) = claim(&mut socket, shared, true) else {
        return;
    };
    let sent = send_files(&mut socket, &state).and_then(|()| {
        socket
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("finishing: {e}"))
    });
    if let Err(e) = sent {
        *state.error.lock().unwrap() = Some(e);
    }
}

/// The offer whose token line `from` sends, taken (a token serves once),
/// when it is one to serve `plain` or not, as asked.
fn claim(from: &mut impl Read, shared: &Shared, plain: bool) -> Option<Arc<OfferState>> {
    let mut line = [0u8; 2 * TOKEN_BYTES + 1];
    from.read_exact(&mut line).ok()?;
    if line[2 * TOKEN_BYTES] != b'\n' {
        return None;
    }
    let token = std::str::from_utf8(&line[..2 * TOKEN_BYTES]).ok()?;
    let mut offers = shared.offers.lock().unwrap();
    if offers.get(token)?.plain != plain {
        return None;
    }
    let state = offers.remove(token)?;
    state.claimed.store(true, Ordering::Release);
    Some(state)
}

/// A file's SHA-256 and the identity of what was hashed. Whoever needs it
/// first makes it (the offer's thread, or a send that got ahead of it); the
/// others wait for that.
type Hashed = OnceLock<Result<Sha, String>>;

type Sha = ([u8; DIGEST_LEN], Identity, Arc<[u8]>);

/// What tells one content of a file from another without reading it: a write
/// in place changes the ctime (which no one can set back), a rename the inode.
/// So the bytes a send read are the bytes the hash read when the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
}

impl Identity {
    fn of(file: &File) -> io::Result<Identity> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The file's SHA-256 and, with `trailer`, what it makes of the same read.
fn sha256_of(path: &std::path::Path, trailer: Option<Trailer>) -> Result<Sha, String> {
    let read_err = |e: io::Error| format!("read {}: {e}", path.display());
    let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let before = Identity::of(&file).map_err(read_err)?;
    let mut hashing = Hashing::new(BufReader::with_capacity(CHUNK, file));
    let made = match trailer {
        Some(make) => make(&mut hashing).map_err(read_err)?,
        None => Vec::new(),
    };
    // What the trailer did not read is hashed all the same.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    let (file, digest, _) = hashing.into_parts();
    if Identity::of(file.get_ref()).map_err(read_err)? != before {
        return Err(changed(path));
    }
    let mut sha = [0u8; DIGEST_LEN];
    hex::decode_to_slice(digest.digest(), &mut sha).expect("a sha256 digest is 32 bytes of hex");
    Ok((sha, before, made.into()))
}

fn changed(path: &std::path::Path) -> String {
    format!(
        "{} changed while this run read it; blobs in a store are never written in place, \
         so check the store (sealrs fsck) and run again",
        path.display()
    )
}

fn send_files(out: &mut impl Write, state: &OfferState) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    for (i, path) in state.files.iter().enumerate() {
        let mut file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        let identity =
            |file: &File| Identity::of(file).map_err(|e| format!("read {}: {e}", path.display()));
        let opened = identity(&file)?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| format!("sending {}: {e}", path.display()))?;
            state.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(hashed) = state.hashes.get(i) {
            let (digest, of, made) = hashed
                .get_or_init(|| sha256_of(path, state.trailer))
                .clone()?;
            if opened != of || identity(&file)? != of {
                return Err(changed(path));
            }
            out.write_all(&digest)
                .map_err(|e| format!("sending the digest of {}: {e}", path.display()))?;
            if state.trailer.is_some() {
                let len = u32::try_from(made.len())
                    .ok()
                    .filter(|&n| n as usize <= MAX_TRAILER)
                    .ok_or_else(|| format!("{}: its trailer is too long", path.display()))?;
                out.write_all(&len.to_be_bytes())
                    .and_then(|()| out.write_all(&made))
                    .map_err(|e| format!("sending the trailer of {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The host's side of a [`Trailer`], read after a file's digest when the
/// ticket says `trailers`.
pub fn read_trailer(from: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_TRAILER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a trailer of {len} bytes (at most {MAX_TRAILER})"),
        ));
    }
    let mut bytes = vec![0u8; len];
    from.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The host's side: connects to the operator named in `ticket`, checks its
/// certificate against the pin, shows the token, and returns the stream of
/// the offered files' bytes (one TLS record per read: callers buffer).
pub fn fetch(ticket: &Ticket) -> Result<impl Read, DirectError> {
    let address = ticket.address;
    let connect = |source| DirectError::Connect { address, source };
    let tls_err = |detail: String| DirectError::Tls { address, detail };
    let socket = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(connect)?;
    socket.set_nodelay(true).map_err(connect)?;
    socket
        .set_read_timeout(Some(IDLE_TIMEOUT))
        .map_err(connect)?;
    socket
        .set_write_timeout(Some(IDLE_TIMEOUT))
        .map_err(connect)?;
    let provider = Arc::new(crypto_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: ticket.fingerprint.to_ascii_lowercase(),
            provider,
        }))
        .with_no_client_auth();
    let name = ServerName::try_from(NAME).expect("a valid DNS name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| tls_err(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, Buffered(BufReader::with_capacity(CHUNK, socket)));
    // The handshake first, so that the token goes only to the pinned peer.
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| tls_err(e.to_string()))?;
    }
    tls.write_all(format!("{}\n", ticket.token.expose()).as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| tls_err(e.to_string()))?;
    Ok(tls)
}

/// A socket read through a large buffer: rustls reads one record (16 KiB) at
/// a time, and a system call per record costs more than the copy it saves.
struct Buffered(BufReader<TcpStream>);

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

/// ring's suites with AES-128-GCM first: with AES instructions it is the
/// cheapest per byte, and both ends are ours.
fn crypto_provider() -> CryptoProvider {
    let mut provider = provider::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// Accepts exactly the certificate whose SHA-256 the ticket names; the
/// handshake signature is still checked, so the peer must hold its key.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if hex::encode(Sha256::digest(end_entity.as_ref())) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the operator's certificate is not the one named in the ticket".to_string(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn files(dir: &std::path::Path, contents: &[&[u8]]) -> Vec<PathBuf> {
        contents
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, c).unwrap();
                p
            })
            .collect()
    }

    const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn local(server: &Server, offer: &Offer) -> Ticket {
        server.ticket(offer, HERE).expect("listening on 127.0.0.1")
    }

    /// All a host reads of `offer`, however its stream ends.
    fn read_all(server: &Server, offer: &Offer) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = fetch(&local(server, offer)).unwrap().read_to_end(&mut got);
        got
    }

    /// What a host reads for `contents`: each file's bytes, then their SHA-256.
    fn served(contents: &[&[u8]]) -> Vec<u8> {
        let mut want = Vec::new();
        for c in contents {
            want.extend_from_slice(c);
            want.extend_from_slice(&Sha256::digest(c));
        }
        want
    }

    #[test]
    fn a_host_with_the_ticket_reads_the_offered_files_in_order_each_followed_by_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * CHUNK + 5];
        let contents: [&[u8]; 3] = [b"first|", &big, b"|last"];
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(files(dir.path(), &contents));
        let mut got = Vec::new();
        fetch(&local(&server, &offer))
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, served(&contents));
        assert!(offer.claimed());
        assert_eq!(offer.sent(), (6 + big.len() + 5) as u64);
        assert_eq!(offer.error(), None);
    }

    #[test]
    fn with_a_trailer_each_digest_is_followed_by_what_it_made_of_the_same_bytes_once_per_run() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        // Reads part of the file only: the digest still covers all of it.
        fn first_three(bytes: &mut dyn Read) -> io::Result<Vec<u8>> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            let mut head = vec![0u8; 3];
            bytes.read_exact(&mut head)?;
            Ok([b"head=", &head[..]].concat())
        }
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * CHUNK + 5];
        let contents: [&[u8]; 2] = [b"first|", &big];
        let paths = files(dir.path(), &contents);
        let server = Server::start(&[HERE]).unwrap().with_trailer(first_three);
        let mut want = Vec::new();
        for (c, trailer) in contents
            .iter()
            .zip([&b"head=fir"[..], b"head=\x07\x07\x07"])
        {
            want.extend_from_slice(c);
            want.extend_from_slice(&Sha256::digest(c));
            want.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
            want.extend_from_slice(trailer);
        }
        for _host in 0..3 {
            let offer = server.offer(paths.clone());
            let ticket = local(&server, &offer);
            assert!(ticket.trailers);
            let mut stream = fetch(&ticket).unwrap();
            let mut got = vec![0u8; want.len()];
            stream.read_exact(&mut got).unwrap();
            assert_eq!(got, want);
            assert_eq!(offer.error(), None);
        }
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            2,
            "once per file, not per host"
        );
        // The host's side reads one back.
        let one = [&5u32.to_be_bytes()[..], b"head=", b"rest"].concat();
        assert_eq!(read_trailer(&mut &one[..]).unwrap(), b"head=");
        let huge = ((MAX_TRAILER + 1) as u32).to_be_bytes();
        assert!(read_trailer(&mut &huge[..]).is_err());
        // A server without one says so: installers from before read its tickets.
        let plain = Server::start(&[HERE]).unwrap();
        let offer = plain.offer(paths);
        let json = serde_json::to_string(&local(&plain, &offer)).unwrap();
        assert!(!json.contains("trailers"), "{json}");
    }

    #[test]
    fn a_file_offered_to_several_hosts_is_hashed_once_from_the_operators_copy() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), &[b"layer as stored"]);
        let server = Server::start(&[HERE]).unwrap();
        let first = server.offer(paths.clone());
        assert_eq!(read_all(&server, &first), served(&[b"layer as stored"]));
        // A later offer of the same file reuses the hash made for the run.
        let second = server.offer(paths.clone());
        assert!(Arc::ptr_eq(&first.state.hashes[0], &second.state.hashes[0]));
        assert_eq!(server.shared.hashed.lock().unwrap().len(), 1);
        // Written in place since: its bytes go without a digest, and the
        // operator is told why.
        std::thread::sleep(Duration::from_millis(20)); // a new ctime tick
        std::fs::write(&paths[0], b"layer as damaged").unwrap();
        assert_eq!(read_all(&server, &second), b"layer as damaged");
        let error = second.error().expect("the send stopped");
        assert!(error.contains("changed while this run read it"), "{error}");
        // A new server (a new run) hashes the file as it is now: a damaged
        // copy is served with the digest of its bytes, which the host refuses.
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(paths);
        assert_eq!(read_all(&server, &offer), served(&[b"layer as damaged"]));
    }

    #[test]
    fn a_plain_offer_is_served_raw_to_its_token_line_and_never_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[HERE]).unwrap();
        let plain = server.offer_plain(files(dir.path(), &[b"installer|", b"layer"]));
        let ticket = local(&server, &plain);
        // Over TLS, its token claims nothing.
        let mut got = Vec::new();
        let _ = fetch(&ticket).map(|mut r| r.read_to_end(&mut got));
        assert!(got.is_empty() && !plain.claimed());
        // A TLS offer's token does not serve plain.
        let other = tempfile::tempdir().unwrap();
        let tls = server.offer(files(other.path(), &[b"secret"]));
        let read_plain = |token: &str| {
            let mut socket = TcpStream::connect(ticket.address).unwrap();
            socket.write_all(format!("{token}\n").as_bytes()).unwrap();
            let mut got = Vec::new();
            let _ = socket.read_to_end(&mut got);
            got
        };
        assert!(read_plain(local(&server, &tls).token.expose()).is_empty());
        assert!(!tls.claimed());
        // Its own token, as a line: the bytes, then the end.
        assert_eq!(read_plain(ticket.token.expose()), b"installer|layer");
        assert!(plain.claimed());
        assert_eq!(plain.sent(), 15);
        // Once.
        assert!(read_plain(ticket.token.expose()).is_empty());
    }

    #[test]
    fn a_token_serves_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(files(dir.path(), &[b"secret layer"]));
        let ticket = local(&server, &offer);
        let mut got = Vec::new();
        fetch(&ticket).unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, served(&[b"secret layer"]));
        // The second connection gets past TLS, but the server drops it.
        let mut again = Vec::new();
        let _ = fetch(&ticket).unwrap().read_to_end(&mut again);
        assert!(again.is_empty(), "a spent token got {again:?}");
    }

    #[test]
    fn a_wrong_pin_is_refused_before_the_token_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(files(dir.path(), &[b"x"]));
        let mut ticket = local(&server, &offer);
        ticket.fingerprint = "00".repeat(32);
        let err = fetch(&ticket).err().expect("a wrong pin must fail");
        assert!(
            err.to_string().contains("not the one named in the ticket"),
            "{err}"
        );
        // The real host can still claim it.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!offer.claimed());
    }

    #[test]
    fn an_unknown_token_claims_nothing_and_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(files(dir.path(), &[b"x"]));
        let mut ticket = local(&server, &offer);
        ticket.token = Secret::new("ab".repeat(TOKEN_BYTES));
        let mut got = Vec::new();
        let _ = fetch(&ticket).unwrap().read_to_end(&mut got);
        assert!(got.is_empty());
        assert!(!offer.claimed());
    }

    #[test]
    fn nobody_listening_is_a_connect_error_naming_the_address() {
        // Bind then drop: the port is very likely closed now.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ticket = Ticket {
            address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            fingerprint: "00".repeat(32),
            token: Secret::new("ab".repeat(TOKEN_BYTES)),
            trailers: false,
        };
        let err = fetch(&ticket).err().expect("nobody listens");
        assert!(matches!(err, DirectError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn no_ticket_for_an_address_not_listened_on() {
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(Vec::new());
        assert!(server
            .ticket(&offer, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .is_none());
    }

    #[test]
    fn a_dropped_offer_is_withdrawn() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&[HERE]).unwrap();
        let offer = server.offer(files(dir.path(), &[b"x"]));
        let ticket = local(&server, &offer);
        drop(offer);
        let mut got = Vec::new();
        let _ = fetch(&ticket).unwrap().read_to_end(&mut got);
        assert!(got.is_empty());
    }
}
