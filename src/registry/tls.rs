//! How we connect: which schemes we may try, which CAs we trust.
//!
//! The rules follow docker and containers/image, minus their one surprise:
//! - HTTPS with verification is the default, against the system's CA store
//!   plus `*.crt` files in a certs.d directory (`--cert-dir DIR`, else
//!   `/etc/containers/certs.d/HOST:PORT/` and `/etc/docker/certs.d/HOST:PORT/`).
//!   A `NAME.cert` + `NAME.key` pair there is a client certificate.
//! - A loopback registry (`localhost`, 127.0.0.0/8, `::1`) may fall back to
//!   plain HTTP without being asked, because the traffic never leaves the
//!   machine. Unlike docker we do *not* also stop verifying certificates for
//!   them: a loopback registry that speaks TLS must present a trusted one.
//! - `tls_verify: Some(false)` is the explicit opt-out: certificates are not
//!   checked and plain HTTP is allowed, for any host.
//! - `tls_verify: Some(true)` forbids the HTTP fallback even on loopback.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::RegistryError;
use super::RegistryOptions;

/// Whether `registry` (`host[:port]`) names this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]`, without IPv6 brackets.
fn host_of(registry: &str) -> &str {
    if registry.parse::<IpAddr>().is_ok() {
        return registry;
    }
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// A scheme to try, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// The schemes we may use for `registry`, best first.
pub fn schemes(registry: &str, tls_verify: Option<bool>) -> Vec<Scheme> {
    match tls_verify {
        Some(false) => vec![Scheme::Https, Scheme::Http],
        Some(true) => vec![Scheme::Https],
        None if is_loopback(registry) => vec![Scheme::Https, Scheme::Http],
        None => vec![Scheme::Https],
    }
}

/// The host the HTTP API lives on: Docker Hub's API is not at `docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// The certs.d directories that apply to `registry`.
pub fn cert_dirs(registry: &str, opts: &RegistryOptions) -> Vec<PathBuf> {
    if let Some(dir) = &opts.cert_dir {
        return vec![dir.clone()];
    }
    ["/etc/containers/certs.d", "/etc/docker/certs.d"]
        .iter()
        .map(|base| Path::new(base).join(registry))
        .filter(|d| d.is_dir())
        .collect()
}

/// The directory named in TLS error messages.
pub fn suggested_cert_dir(registry: &str) -> String {
    format!("/etc/containers/certs.d/{registry}")
}

/// Builds the HTTP client for `registry` with its CAs and client certificate.
pub fn http_client(
    registry: &str,
    opts: &RegistryOptions,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("sealrs/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // No overall timeout: a layer may take minutes. A stalled connection
        // is caught by the read timeout instead.
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(60));
    if opts.tls_verify == Some(false) {
        builder = builder.danger_accept_invalid_certs(true);
    }
    for dir in cert_dirs(registry, opts) {
        let (cas, identity) = load_cert_dir(&dir)?;
        for ca in cas {
            builder = builder.add_root_certificate(ca);
        }
        if let Some(id) = identity {
            builder = builder.identity(id);
        }
    }
    builder.build().map_err(|e| RegistryError::Tls {
        registry: registry.to_string(),
        detail: format!("cannot set up the HTTP client: {e}"),
        cert_dir: suggested_cert_dir(registry),
    })
}

/// `*.crt` are CAs; `X.cert` with `X.key` is a client identity (containers' convention).
fn load_cert_dir(
    dir: &Path,
) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), RegistryError> {
    let bad = |path: &Path, reason: String| RegistryError::CertDir {
        path: path.to_path_buf(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(dir, "the certificate directory does not exist".into()))
        }
        Err(e) => {
            return Err(bad(
                dir,
                format!("cannot read the certificate directory: {e}"),
            ))
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut cas = Vec::new();
    let mut identity = None;
    for path in &paths {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "crt" {
            let pem = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(path, format!("not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(bad(path, "no PEM certificate in it".into()));
            }
            cas.extend(certs);
        } else if ext == "cert" && identity.is_none() {
            let key_path = path.with_extension("key");
            let mut pem = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
            let key = std::fs::read(&key_path).map_err(|_| {
                bad(
                    path,
                    format!("client certificate without its key {}", key_path.display()),
                )
            })?;
            pem.push(b'\n');
            pem.extend(key);
            identity = Some(
                reqwest::Identity::from_pem(&pem)
                    .map_err(|e| bad(path, format!("invalid client certificate or key: {e}")))?,
            );
        }
    }
    Ok((cas, identity))
}

/// Turns a transport error into a TLS or a network error.
pub fn classify(registry: &str, action: &str, err: &reqwest::Error) -> RegistryError {
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    let mut tls = false;
    while let Some(s) = source {
        let text = s.to_string();
        let lower = text.to_ascii_lowercase();
        // rustls's word for a reply that is not a TLS record: plain HTTP.
        if lower.contains("invalidcontenttype") {
            return RegistryError::PlainHttp {
                registry: registry.to_string(),
            };
        }
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            tls = true;
        }
        if !detail.contains(&text) {
            detail = format!("{detail}: {text}");
        }
        source = s.source();
    }
    if tls {
        RegistryError::Tls {
            registry: registry.to_string(),
            detail,
            cert_dir: suggested_cert_dir(registry),
        }
    } else {
        RegistryError::Network {
            registry: registry.to_string(),
            action: action.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_localhost_127_8_and_ipv6_one() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.2.1",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "10.0.0.1:5000",
            "example.com",
            "localhost.example.com",
            "128.0.0.1",
            "[::2]:80",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_asked() {
        use Scheme::*;
        assert_eq!(schemes("reg.example.com", None), vec![Https]);
        assert_eq!(schemes("127.0.0.1:5000", None), vec![Https, Http]);
        assert_eq!(schemes("127.0.0.1:5000", Some(true)), vec![Https]);
        assert_eq!(schemes("reg.example.com", Some(false)), vec![Https, Http]);
    }

    #[test]
    fn cert_dir_option_replaces_the_system_directories() {
        let opts = RegistryOptions {
            cert_dir: Some(PathBuf::from("/tmp/x")),
            ..Default::default()
        };
        assert_eq!(cert_dirs("r:1", &opts), vec![PathBuf::from("/tmp/x")]);
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn a_bad_cert_dir_is_an_error_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "not pem").unwrap();
        let opts = RegistryOptions {
            cert_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let err = http_client("r:1", &opts).unwrap_err().to_string();
        assert!(err.contains("ca.crt"), "{err}");
        let opts = RegistryOptions {
            cert_dir: Some(dir.path().join("missing")),
            ..Default::default()
        };
        assert!(http_client("r:1", &opts).is_err());
    }

    #[test]
    fn a_plain_http_answer_to_tls_is_named_as_plain_http_not_as_a_network_error() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let registry = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.read(&mut [0u8; 1024]);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(async {
                let http = http_client(&registry, &RegistryOptions::default()).unwrap();
                http.get(format!("https://{registry}/v2/")).send().await
            })
            .unwrap_err();
        let err = classify(&registry, "connect", &err);
        assert!(matches!(err, RegistryError::PlainHttp { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("insecure = true"), "{err}");
    }
}
