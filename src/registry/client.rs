//! A session with one repository of one registry over the distribution API,
//! written on reqwest rather than on oci-client.
//!
//! Why not oci-client (0.18): its blob calls report failures as strings or
//! URLs without the HTTP status and digest that our errors must name; its
//! HEAD/mount calls hide the 202-instead-of-201 answer that tells us a mount
//! became an upload; it has no retry hook, so a retry would restart a whole
//! image; and `pull_manifest_raw` does not return the content type, which we
//! need to tell an index from a manifest before parsing. What we need is a
//! dozen requests, so we own them: each one streams (files in, files out),
//! names the registry, repository, digest and status when it fails, and is
//! safe to retry as a unit.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use oci_spec::image::Digest;
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{parse_challenges, Challenge, Credentials};
use super::error::RegistryError;
use super::tls::{self, Scheme};
use super::RegistryOptions;
use crate::progress::Task;
use crate::secret::Secret;

/// Media types we accept for a manifest, in order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest we read into memory (the distribution spec's own limit is 4 MiB).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// What a session will do, which decides the token scopes it asks for.
#[derive(Debug, Clone)]
pub enum Access {
    Pull,
    /// Push, plus pull on the repositories we may mount blobs from.
    Push {
        mount_from: Vec<String>,
    },
}

/// A manifest as the registry sent it.
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, when the registry sent one.
    pub digest_header: Option<String>,
}

/// The answer to a mount request.
pub enum Mount {
    Mounted,
    /// The registry started an ordinary upload instead.
    Upload(Url),
}

/// An authenticated session with one repository.
pub struct Session {
    pub registry: String,
    pub repository: String,
    base: Url,
    http: reqwest::Client,
    creds: Option<Credentials>,
    scopes: Vec<String>,
    challenge: Option<Challenge>,
    /// The current `Authorization` value; replaced when a token expires.
    header: Mutex<Option<String>>,
    /// A bearer token handed over by the operator, used instead of asking
    /// the token server (a host pulling for the operator has no credentials).
    token: Option<Secret>,
    pub retries: u32,
}

impl Session {
    /// Finds the endpoint (HTTPS, or HTTP where the rules allow it), reads
    /// its challenge and authenticates for `access`.
    pub async fn open(
        registry: &str,
        repository: &str,
        access: Access,
        creds: Option<Credentials>,
        opts: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        Session::open_as(registry, repository, access, creds, None, opts).await
    }

    /// [`Session::open`] for pulling with a bearer `token` the operator
    /// obtained for the repository, under token auth.
    pub async fn open_with_token(
        registry: &str,
        repository: &str,
        token: Secret,
        opts: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        Session::open_as(registry, repository, Access::Pull, None, Some(token), opts).await
    }

    /// The bearer token this session holds under token auth (scoped as it
    /// was opened: a pull session's token can only pull).
    pub fn bearer_token(&self) -> Option<Secret> {
        let header = self.header.lock().unwrap_or_else(|e| e.into_inner());
        header
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(Secret::new)
    }

    async fn open_as(
        registry: &str,
        repository: &str,
        access: Access,
        creds: Option<Credentials>,
        token: Option<Secret>,
        opts: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        let http = tls::http_client(registry, opts)?;
        let (base, challenge) = retry(opts.retries, || ping(&http, registry, opts)).await?;
        let mut scopes = vec![match &access {
            Access::Pull => format!("repository:{repository}:pull"),
            Access::Push { .. } => format!("repository:{repository}:pull,push"),
        }];
        if let Access::Push { mount_from } = &access {
            scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
        }
        let session = Session {
            registry: registry.to_string(),
            repository: repository.to_string(),
            base,
            http,
            creds,
            scopes,
            challenge,
            header: Mutex::new(None),
            token,
            retries: opts.retries,
        };
        retry(opts.retries, || session.authorize()).await?;
        Ok(session)
    }

    /// Checks `creds` against the registry without touching any repository.
    pub async fn login(
        registry: &str,
        creds: Credentials,
        opts: &RegistryOptions,
    ) -> Result<(), RegistryError> {
        let http = tls::http_client(registry, opts)?;
        let (base, challenge) = retry(opts.retries, || ping(&http, registry, opts)).await?;
        let session = Session {
            registry: registry.to_string(),
            repository: String::new(),
            base,
            http,
            creds: Some(creds),
            scopes: Vec::new(),
            challenge,
            header: Mutex::new(None),
            token: None,
            retries: opts.retries,
        };
        retry(opts.retries, || session.authorize()).await?;
        // A token server proves the password by issuing a token; with basic
        // auth only the registry itself can tell, so ask it.
        if matches!(session.challenge, Some(Challenge::Basic)) {
            let url = session.url("v2/")?;
            let resp = retry(opts.retries, || async {
                let resp = session
                    .send("check the login", |h| Ok(h.get(url.clone())))
                    .await?;
                session.check(resp, "check the login", None).await
            })
            .await?;
            drop(resp);
        }
        Ok(())
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            action: "build a URL".into(),
            detail: format!("{path}: {e}"),
        })
    }

    fn repo_url(&self, rest: &str) -> Result<Url, RegistryError> {
        self.url(&format!("v2/{}/{rest}", self.repository))
    }

    /// Sets the `Authorization` header for the challenge the registry gave.
    async fn authorize(&self) -> Result<(), RegistryError> {
        let value = match &self.challenge {
            None => None,
            Some(Challenge::Basic) => self.creds.as_ref().map(Credentials::basic_header),
            Some(Challenge::Bearer { .. }) if self.token.is_some() => self
                .token
                .as_ref()
                .map(|t| format!("Bearer {}", t.expose())),
            Some(Challenge::Bearer { realm, service, .. }) => Some(format!(
                "Bearer {}",
                self.fetch_token(realm, service.as_deref()).await?
            )),
        };
        *self.header.lock().unwrap_or_else(|e| e.into_inner()) = value;
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            action: "authenticate".into(),
            detail: format!("the token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for scope in &self.scopes {
                q.append_pair("scope", scope);
            }
        }
        let mut req = self.http.get(url);
        if let Some(c) = &self.creds {
            req = req.basic_auth(&c.username, Some(c.password()));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| tls::classify(&self.registry, "get a token", &e))?;
        let resp = self.check(resp, "get a token", None).await?;
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| tls::classify(&self.registry, "get a token", &e))?;
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: self.registry.clone(),
                action: "get a token".into(),
                detail: format!("the token server's answer is not token JSON: {e}"),
            })?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry.clone(),
                action: "get a token".into(),
                detail: "the token server sent no token".into(),
            })
    }

    /// Sends a request with our credentials. A 401 under token auth gets one
    /// new token (it may have expired) and one more try. `make` builds the
    /// request afresh each time: a streamed body cannot be replayed.
    async fn send(
        &self,
        action: &str,
        mut make: impl FnMut(&reqwest::Client) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut refreshed = false;
        loop {
            let mut req = make(&self.http)?;
            let header = self
                .header
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(h) = header {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| tls::classify(&self.registry, action, &e))?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !refreshed
                && matches!(self.challenge, Some(Challenge::Bearer { .. }))
            {
                refreshed = true;
                self.authorize().await?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Turns an unsuccessful answer into an error naming what failed.
    async fn check(
        &self,
        resp: Response,
        action: &str,
        digest: Option<&Digest>,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let repository = (!self.repository.is_empty()).then(|| self.repository.clone());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let hint = if self.repository.is_empty() {
                "the user name or password is wrong".to_string()
            } else if self.creds.is_some() {
                format!(
                    "the stored credentials are wrong or may not {action}; log in again with `sealrs login {}`",
                    self.registry
                )
            } else {
                format!("log in first with `sealrs login {}`", self.registry)
            };
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                repository,
                status: status.as_u16(),
                hint,
            });
        }
        let throttled = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if let Some(secs) = retry_after(resp.headers()).filter(|_| throttled) {
            return Err(RegistryError::Throttled {
                registry: self.registry.clone(),
                action: action.to_string(),
                status: status.as_u16(),
                retry_after: secs,
                detail: error_detail(resp).await,
            });
        }
        let detail = error_detail(resp).await;
        Err(RegistryError::Status {
            registry: self.registry.clone(),
            repository,
            digest: digest.map(ToString::to_string),
            action: action.to_string(),
            status: status.as_u16(),
            detail,
        })
    }

    /// HEAD: does the repository already have this blob?
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let action = format!("check for blob {digest}");
        let resp = self.send(&action, |h| Ok(h.head(url.clone()))).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp, &action, Some(digest)).await?;
        Ok(true)
    }

    /// Asks the registry to link a blob from another repository of its own.
    pub async fn mount(&self, digest: &Digest, from: &str) -> Result<Mount, RegistryError> {
        let mut url = self.repo_url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_ref())
            .append_pair("from", from);
        let action = format!("mount blob {digest} from {from}");
        let resp = self.post_empty(url, &action, digest).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Upload(
            self.location(resp.headers(), "mount a blob")?,
        ))
    }

    /// Starts an upload; returns where to send the bytes.
    pub async fn start_upload(&self, digest: &Digest) -> Result<Url, RegistryError> {
        let url = self.repo_url("blobs/uploads/")?;
        let action = format!("start the upload of blob {digest}");
        let resp = self.post_empty(url, &action, digest).await?;
        self.location(resp.headers(), "start a blob upload")
    }

    /// An empty POST to the uploads endpoint (a mount or a new upload), checked.
    async fn post_empty(
        &self,
        url: Url,
        action: &str,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let resp = self
            .send(action, |h| {
                Ok(h.post(url.clone()).header(CONTENT_LENGTH, 0))
            })
            .await?;
        self.check(resp, action, Some(digest)).await
    }

    fn location(&self, headers: &HeaderMap, action: &str) -> Result<Url, RegistryError> {
        let loc = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry.clone(),
                action: action.into(),
                detail: "no Location header".into(),
            })?;
        // Relative locations are relative to the endpoint; absolute ones are kept.
        self.base.join(loc).map_err(|e| RegistryError::Protocol {
            registry: self.registry.clone(),
            action: action.into(),
            detail: format!("bad Location {loc:?}: {e}"),
        })
    }

    /// Sends a whole blob in one streamed PUT (a monolithic upload after
    /// POST): the file is read in chunks as the socket takes them, so memory
    /// stays flat, and the registry checks the digest before it commits.
    pub async fn put_blob(
        &self,
        location: Url,
        digest: &Digest,
        size: u64,
        file: std::fs::File,
        task: Arc<Mutex<Box<dyn Task>>>,
    ) -> Result<(), RegistryError> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest.as_ref());
        let mut file = Some(file);
        let action = format!("upload blob {digest}");
        let resp = self
            .send(&action, |h| {
                let f = file.take().ok_or_else(|| RegistryError::Protocol {
                    registry: self.registry.clone(),
                    action: "upload a blob".into(),
                    detail: "the registry asked for credentials again in the middle of an upload"
                        .into(),
                })?;
                let task = task.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(f),
                    256 * 1024,
                )
                .inspect(move |chunk| {
                    if let Ok(c) = chunk {
                        task.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .advance(c.len() as u64);
                    }
                });
                Ok(h.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)))
            })
            .await?;
        self.check(resp, &action, Some(digest)).await?;
        Ok(())
    }

    /// Streams a blob into `out`, failing as soon as it is longer than `size`
    /// (a registry must not fill the disk). The caller verifies the digest.
    pub async fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut impl std::io::Write,
        task: &dyn Task,
    ) -> Result<u64, RegistryError> {
        let resp = self.blob_response(digest).await?;
        self.copy_blob(resp, digest, size, out, task).await
    }

    /// Asks for a blob and returns the successful answer before any byte of
    /// its body is read: a caller that streams elsewhere may still choose
    /// another source when this one fails here.
    pub async fn blob_response(&self, digest: &Digest) -> Result<Response, RegistryError> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let action = format!("download blob {digest}");
        let resp = self.send(&action, |h| Ok(h.get(url.clone()))).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: "blob",
                reference: digest.to_string(),
                detail: error_detail(resp).await,
            });
        }
        self.check(resp, &action, Some(digest)).await
    }

    /// The body of [`Session::blob_response`]'s answer into `out`, at most `size` bytes.
    pub async fn copy_blob(
        &self,
        resp: Response,
        digest: &Digest,
        size: u64,
        out: &mut impl std::io::Write,
        task: &dyn Task,
    ) -> Result<u64, RegistryError> {
        self.stream_blob(resp, digest, size, |chunk| out.write_all(&chunk), task)
            .await
    }

    /// [`Session::copy_blob`], each chunk handed to `put` as it was received.
    pub async fn stream_blob(
        &self,
        resp: Response,
        digest: &Digest,
        size: u64,
        mut put: impl FnMut(bytes::Bytes) -> std::io::Result<()>,
        task: &dyn Task,
    ) -> Result<u64, RegistryError> {
        let action = format!("download blob {digest}");
        let mut stream = resp.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| tls::classify(&self.registry, &action, &e))?;
            written += chunk.len() as u64;
            if written > size {
                return Err(RegistryError::SizeMismatch {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    what: "blob",
                    digest: digest.to_string(),
                    expected: size,
                    found: written,
                });
            }
            let len = chunk.len() as u64;
            put(chunk).map_err(|e| RegistryError::Network {
                registry: self.registry.clone(),
                action: "write a downloaded blob to the store".into(),
                detail: e.to_string(),
            })?;
            task.advance(len);
        }
        if written != size {
            return Err(RegistryError::SizeMismatch {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: "blob",
                digest: digest.to_string(),
                expected: size,
                found: written,
            });
        }
        Ok(written)
    }

    /// GETs a manifest by tag or digest, at most [`MAX_MANIFEST`] bytes.
    pub async fn get_manifest(&self, reference: &str) -> Result<RawManifest, RegistryError> {
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let resp = self
            .send("get the manifest", |h| {
                Ok(h.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: "manifest",
                reference: reference.to_string(),
                detail: error_detail(resp).await,
            });
        }
        let resp = self.check(resp, "get a manifest", None).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
        };
        let content_type = header(CONTENT_TYPE.as_str());
        let digest_header = header("docker-content-digest");
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| tls::classify(&self.registry, "get a manifest", &e))?;
            if bytes.len() + chunk.len() > MAX_MANIFEST {
                return Err(RegistryError::InvalidManifest {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    reason: format!("manifest {reference} is larger than {MAX_MANIFEST} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(RawManifest {
            bytes,
            content_type,
            digest_header,
        })
    }

    /// PUTs a manifest under `reference` (a tag or its digest); returns the
    /// registry's `Docker-Content-Digest`, if any.
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let resp = self
            .send("push the manifest", |h| {
                Ok(h.request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })
            .await?;
        let resp = self.check(resp, "push the manifest", None).await?;
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }
}

/// `GET /v2/` on each allowed scheme. An endpoint counts only if it answers
/// like a registry (200 or 401): a TLS port answering plain HTTP with 400
/// must not turn a certificate error into a confusing HTTP one.
async fn ping(
    http: &reqwest::Client,
    registry: &str,
    opts: &RegistryOptions,
) -> Result<(Url, Option<Challenge>), RegistryError> {
    let host = tls::api_host(registry);
    let mut first_err: Option<RegistryError> = None;
    for scheme in tls::schemes(registry, opts.tls_verify) {
        let base = Url::parse(&format!("{}://{host}/", scheme.as_str())).map_err(|e| {
            RegistryError::InvalidRegistry {
                input: registry.to_string(),
                reason: e.to_string(),
            }
        })?;
        let v2 = base.join("v2/").expect("static path");
        match http.get(v2).send().await {
            Ok(resp)
                if resp.status() == StatusCode::OK || resp.status() == StatusCode::UNAUTHORIZED =>
            {
                let challenges: Vec<Challenge> = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect();
                // Prefer tokens: they carry scopes, and a password sent once is better than on every request.
                let challenge = challenges
                    .iter()
                    .find(|c| matches!(c, Challenge::Bearer { .. }))
                    .or_else(|| challenges.first())
                    .cloned();
                let challenge = match (resp.status(), challenge) {
                    (StatusCode::OK, _) => None,
                    (_, Some(c)) => Some(c),
                    (_, None) => {
                        return Err(RegistryError::Protocol {
                            registry: registry.to_string(),
                            action: "ping /v2/".into(),
                            detail: "HTTP 401 without a usable WWW-Authenticate challenge".into(),
                        })
                    }
                };
                return Ok((base, challenge));
            }
            Ok(resp) if scheme == Scheme::Https => {
                let status = resp.status().as_u16();
                return Err(RegistryError::Status {
                    registry: registry.to_string(),
                    repository: None,
                    digest: None,
                    action: "ping /v2/ (is this a registry?)".into(),
                    status,
                    detail: error_detail(resp).await,
                });
            }
            Ok(_) => {}
            Err(e) => {
                let err = tls::classify(registry, "connect", &e);
                first_err.get_or_insert(err);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| RegistryError::Network {
        registry: registry.to_string(),
        action: "connect".into(),
        detail: "no endpoint answered like a registry".into(),
    }))
}

/// The registry's own words from an error body (`{"errors":[{"code","message"}]}`),
/// or a short excerpt of whatever it sent.
async fn error_detail(resp: Response) -> String {
    let text = match resp.text().await {
        Ok(t) => t,
        Err(_) => return String::new(),
    };
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_str::<Envelope>(&text) {
        return env
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let trimmed = text.trim();
    trimmed.chars().take(200).collect()
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3); the HTTP-date form is
/// not read (registries send seconds), and the backoff applies instead.
fn retry_after(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The longest `Retry-After` we wait for; a registry asking for more gets
/// its error reported at once, to be tried again later.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `op` again after a transient failure (no answer, a reset, 5xx,
/// 429), up to `retries` more times, waiting 0.25 s, 0.5 s, 1 s … (at most
/// 4 s) in between, or as long as a `Retry-After` asks, up to [`MAX_RETRY_AFTER`].
pub async fn retry<T, F, Fut>(retries: u32, mut op: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.retry_after().is_some_and(|d| d > MAX_RETRY_AFTER) => return Err(e),
            Err(e) if e.is_transient() && attempt < retries => {
                let backoff = std::time::Duration::from_millis(250u64 << attempt.min(4));
                let delay = e.retry_after().map_or(backoff, |asked| asked.max(backoff));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) if e.is_transient() && attempt > 0 => {
                return Err(RegistryError::GaveUp {
                    attempts: attempt + 1,
                    last: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_with_the_count_and_keeps_permanent_errors() {
        let mut calls = 0;
        let err = retry(2, || {
            calls += 1;
            async {
                Err::<(), _>(RegistryError::Network {
                    registry: "r".into(),
                    action: "x".into(),
                    detail: "refused".into(),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
        let mut calls = 0;
        let err = retry(5, || {
            calls += 1;
            async {
                Err::<(), _>(RegistryError::Status {
                    registry: "r".into(),
                    repository: None,
                    digest: None,
                    action: "x".into(),
                    status: 400,
                    detail: String::new(),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.http_status(), Some(400));
        let mut calls = 0;
        let ok = retry(3, || {
            calls += 1;
            let fail = calls < 3;
            async move {
                if fail {
                    Err(RegistryError::Status {
                        registry: "r".into(),
                        repository: None,
                        digest: None,
                        action: "x".into(),
                        status: 503,
                        detail: String::new(),
                    })
                } else {
                    Ok(7)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(ok, 7);
    }

    fn throttled(retry_after: u32) -> RegistryError {
        RegistryError::Throttled {
            registry: "r".into(),
            action: "get the manifest".into(),
            status: 429,
            retry_after,
            detail: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_as_long_as_retry_after_asks_and_refuses_to_wait_past_the_bound() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let ok = retry(3, || {
            calls += 1;
            let fail = calls < 3;
            async move {
                if fail {
                    Err(throttled(5))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(ok.is_ok());
        // Two waits of 5 s each, not the 0.25 s and 0.5 s of the backoff.
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));

        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let err = retry(3, || {
            calls += 1;
            async { Err::<(), _>(throttled(3600)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(start.elapsed(), std::time::Duration::ZERO);
        assert!(
            err.to_string().contains("asks to retry after 3600 s"),
            "{err}"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(7));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
