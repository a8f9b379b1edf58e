//! Push and pull: which blobs move, in what order, and what the store sees.
//!
//! Order matters for safety. Push sends blobs first and the manifest last, so
//! a registry never holds a tag whose blobs are missing. Pull writes blobs
//! (each verified while it streams into a temp file, under a store write
//! session so `prune` leaves them alone), makes them visible only when all are
//! verified, then writes the manifest, and tags last: a failure at any point leaves the old
//! tag as it was.

use std::sync::{Arc, Mutex};

use crate::digest::sha256_digest;
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType, Platform as OciPlatform};

use super::auth;
use super::client::{retry, Access, Mount, RawManifest, Session};
use super::error::RegistryError;
use super::platform::{self, Platform};
use super::sources::{destination_options, Sources};
use super::RegistryOptions;
use crate::progress::{Progress, Task};
use crate::reference::Reference;
use crate::store::{BlobWriter, Store, StoreError};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Pushes the stored image `source_name` to `dest`; returns the manifest
/// digest, which is the digest of the stored manifest (bytes are sent as-is).
pub async fn push(
    store: &Store,
    source_name: &str,
    dest: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Digest, RegistryError> {
    let (name, desc) = lookup_local(store, source_name)?;
    let media_type = desc.media_type().to_string();
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(StoreError::NotAnImage { name, media_type }.into());
    }
    let manifest_bytes = store.read_verified(desc.digest())?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| StoreError::InvalidJson {
            what: "image manifest",
            digest: desc.digest().clone(),
            reason: e.to_string(),
        })?;
    let mut blobs: Vec<Descriptor> = Vec::new();
    for b in std::iter::once(manifest.config()).chain(manifest.layers()) {
        if !blobs.iter().any(|x| x.digest() == b.digest()) {
            blobs.push(b.clone());
        }
        if !store.has_blob(b.digest()) {
            return Err(StoreError::BlobNotFound {
                digest: b.digest().clone(),
            }
            .into());
        }
    }
    if let Some(d) = &dest.digest {
        if d != desc.digest().as_ref() {
            return Err(RegistryError::InvalidManifest {
                registry: dest.registry.clone(),
                repository: dest.repository.clone(),
                reason: format!(
                    "the destination names digest {d} but the image's manifest is {}",
                    desc.digest()
                ),
            });
        }
    }
    // An image pulled from another repository of the same registry can be
    // mounted from there instead of uploaded again.
    let mount_from: Vec<String> = Reference::parse(&name)
        .ok()
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| vec![r.repository])
        .unwrap_or_default();
    let opts = &destination_options(&format!("{}/{}", dest.registry, dest.repository), opts)?;
    let creds = auth::lookup(&dest.registry, &dest.repository, opts)?;
    let session = Session::open(
        &dest.registry,
        &dest.repository,
        Access::Push {
            mount_from: mount_from.clone(),
        },
        creds,
        opts,
    )
    .await?;
    let total = shared(progress.begin(&format!("push {dest}"), Some(total_size(&blobs))));
    let from = mount_from.first().map(String::as_str);
    stream::iter(
        blobs
            .iter()
            .map(|b| push_blob(&session, store, b, from, progress, &total)),
    )
    .buffer_unordered(opts.max_concurrent.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    let reference = dest
        .tag
        .clone()
        .unwrap_or_else(|| desc.digest().to_string());
    let returned = retry(session.retries, || {
        session.put_manifest(&reference, &manifest_bytes, &media_type)
    })
    .await?;
    if let Some(returned) = returned {
        if returned != desc.digest().as_ref() {
            return Err(RegistryError::Protocol {
                registry: dest.registry.clone(),
                action: "push the manifest".into(),
                detail: format!(
                    "it stored the manifest as {returned}, not {}",
                    desc.digest()
                ),
            });
        }
    }
    lock(&total).finish("");
    progress.message(&format!("Pushed {dest}@{}", desc.digest()));
    Ok(desc.digest().clone())
}

/// Finds a stored image by the name as given, then by its normalized form.
fn lookup_local(store: &Store, source_name: &str) -> Result<(String, Descriptor), RegistryError> {
    if let Some(d) = store.lookup(source_name)? {
        return Ok((source_name.to_string(), d));
    }
    if let Ok(norm) = crate::reference::normalize(source_name) {
        if let Some(d) = store.lookup(&norm)? {
            return Ok((norm, d));
        }
    }
    Err(StoreError::ImageNotFound {
        name: source_name.to_string(),
    }
    .into())
}

async fn push_blob(
    session: &Session,
    store: &Store,
    blob: &Descriptor,
    mount_from: Option<&str>,
    progress: &dyn Progress,
    total: &SharedTask,
) -> Result<(), RegistryError> {
    let digest = blob.digest();
    let task = shared(Box::new(BlobTask {
        blob: progress.begin(&format!("push {}", short(digest)), Some(blob.size())),
        total: total.clone(),
    }));
    let result = retry(session.retries, || async {
        if session.blob_exists(digest).await? {
            return Ok("exists");
        }
        let location = match mount_from {
            Some(from) => match session.mount(digest, from).await? {
                Mount::Mounted => return Ok("mounted"),
                Mount::Upload(url) => url,
            },
            None => session.start_upload(digest).await?,
        };
        let file = store.open_blob(digest)?;
        session
            .put_blob(location, digest, blob.size(), file, task.clone())
            .await?;
        Ok("pushed")
    })
    .await;
    let task = lock(&task);
    if let Ok("exists" | "mounted") = result {
        // Nothing was sent, but the total should still reach 100 %.
        task.advance(blob.size());
    }
    task.finish("");
    result.map(|_| ())
}

/// Pulls `reference` into the store and tags it as `reference.to_string()`;
/// returns the stored manifest's descriptor.
pub async fn pull(
    store: &Store,
    reference: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Descriptor, RegistryError> {
    let wanted = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let sources = Sources::new(reference, opts, progress)?;
    let _writing = store.write_session()?;
    let (
        from,
        Resolved {
            raw,
            digest,
            media_type,
            manifest,
            platform: chosen_platform,
        },
    ) = sources
        .first(0, "serve the manifest", async |session, r| {
            resolve_manifest(session, r, &wanted).await
        })
        .await?;
    let mut blobs: Vec<Descriptor> = Vec::new();
    for b in std::iter::once(manifest.config()).chain(manifest.layers()) {
        if !blobs.iter().any(|x| x.digest() == b.digest()) {
            blobs.push(b.clone());
        }
    }
    let total = shared(progress.begin(&format!("pull {reference}"), Some(total_size(&blobs))));
    let staged = stream::iter(
        blobs
            .iter()
            .map(|b| fetch_blob(&sources, from, store, b, progress, &total)),
    )
    .buffer_unordered(opts.max_concurrent.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    for (writer, digest) in staged.into_iter().flatten() {
        writer.finish_expecting(&digest)?;
    }
    let (stored, size) = store.put_bytes(&raw.bytes)?;
    debug_assert_eq!(stored, digest);
    let mut desc = Descriptor::new(MediaType::from(media_type.as_str()), size, digest.clone());
    if let Some(p) = chosen_platform {
        let platform: Option<OciPlatform> = serde_json::from_value(serde_json::json!({
            "os": p.os, "architecture": p.architecture, "variant": p.variant,
        }))
        .ok();
        desc.set_platform(platform);
    }
    store.tag(&reference.to_string(), &desc)?;
    lock(&total).finish("");
    let via = sources.summary();
    match via.is_empty() {
        true => progress.message(&format!("Pulled {reference}@{digest}")),
        false => progress.message(&format!("Pulled {reference}@{digest} {via}")),
    }
    Ok(desc)
}

/// Pulls those of `blobs` (of `reference`'s repository) that the store
/// lacks into it, untagged: the operator's copy of some layers of an image
/// whose layers otherwise stay in the registry. Each is checked against its
/// digest while it streams, and none becomes visible until all are.
/// Returns the bytes pulled.
pub async fn pull_blobs(
    store: &Store,
    reference: &Reference,
    blobs: &[Descriptor],
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<u64, RegistryError> {
    let missing: Vec<&Descriptor> = blobs
        .iter()
        .filter(|b| !store.has_blob(b.digest()))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let sources = Sources::new(reference, opts, progress)?;
    let _writing = store.write_session()?;
    let size: u64 = missing.iter().map(|b| b.size()).sum();
    let label = format!("pull {} of {reference}", missing.len());
    let total = shared(progress.begin(&label, Some(size)));
    let staged = stream::iter(
        missing
            .iter()
            .map(|b| fetch_blob(&sources, 0, store, b, progress, &total)),
    )
    .buffer_unordered(opts.max_concurrent.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    for (writer, digest) in staged.into_iter().flatten() {
        writer.finish_expecting(&digest)?;
    }
    lock(&total).finish("");
    Ok(size)
}

/// An image manifest as the registry serves it for a reference, chosen from
/// an index for the wanted platform, checked against its digest.
struct Resolved {
    raw: RawManifest,
    digest: Digest,
    media_type: String,
    manifest: ImageManifest,
    platform: Option<platform::EntryPlatform>,
}

async fn resolve_manifest(
    session: &Session,
    reference: &Reference,
    wanted: &Platform,
) -> Result<Resolved, RegistryError> {
    let by = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".to_string());
    let expected = reference.digest.as_deref().map(parse_digest).transpose()?;
    // No retry here: the caller retries the whole resolution per source.
    let raw = session.get_manifest(&by).await?;
    let (mut raw, mut digest) = verify_manifest(session, raw, expected.as_ref())?;
    let mut media_type = media_type_of(session, &raw)?;
    let mut chosen_platform = None;
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<platform::IndexEntry>,
        }
        let index: Index = serde_json::from_slice(&raw.bytes)
            .map_err(|e| invalid(session, format!("bad image index: {e}")))?;
        let entry = platform::select(&index.manifests, wanted).map_err(|available| {
            RegistryError::NoMatchingPlatform {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                wanted: wanted.to_string(),
                available,
            }
        })?;
        let child_digest = parse_digest(&entry.digest)?;
        let child = session.get_manifest(&entry.digest).await?;
        (raw, digest) = verify_manifest(session, child, Some(&child_digest))?;
        if raw.bytes.len() as u64 != entry.size {
            return Err(RegistryError::SizeMismatch {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                what: "manifest",
                digest: child_digest.to_string(),
                expected: entry.size,
                found: raw.bytes.len() as u64,
            });
        }
        media_type = media_type_of(session, &raw)?;
        chosen_platform = entry.platform.clone();
    }
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(invalid(
            session,
            format!(
                "unsupported manifest type {media_type} (schema 1 and artifacts cannot be pulled)"
            ),
        ));
    }
    let manifest: ImageManifest = serde_json::from_slice(&raw.bytes)
        .map_err(|e| invalid(session, format!("bad image manifest {digest}: {e}")))?;
    Ok(Resolved {
        raw,
        digest,
        media_type,
        manifest,
        platform: chosen_platform,
    })
}

/// An image's manifest and config as a registry serves them, each checked
/// against its digest; its layers stay in the registry.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    pub digest: Digest,
    pub manifest: ImageManifest,
    /// The manifest as served: the bytes `digest` is the digest of.
    pub manifest_bytes: Vec<u8>,
    pub config: Vec<u8>,
    /// The mirrors passed over while fetching them (each noted once).
    pub passed_over: Vec<String>,
}

/// Fetches `reference`'s manifest (for `opts.platform`, else this host's)
/// and config, not its layers: enough to check what the image is before
/// any layer moves. A mirror passed over is noted on `progress`.
pub async fn fetch_metadata(
    reference: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<RemoteImage, RegistryError> {
    let wanted = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let sources = Sources::new(reference, opts, progress)?;
    let (from, resolved) = sources
        .first(0, "serve the manifest", async |session, r| {
            resolve_manifest(session, r, &wanted).await
        })
        .await?;
    let blob = resolved.manifest.config();
    let silent = crate::progress::Silent.begin("", None);
    let (_, config) = sources
        .first(from, "serve the config", async |session, _| {
            let mut out = Vec::new();
            session
                .get_blob(blob.digest(), blob.size(), &mut out, silent.as_ref())
                .await?;
            let found = sha256_digest(&out);
            if &found != blob.digest() {
                return Err(RegistryError::DigestMismatch {
                    registry: session.registry.clone(),
                    repository: session.repository.clone(),
                    what: "config",
                    expected: blob.digest().to_string(),
                    found: found.to_string(),
                });
            }
            Ok(out)
        })
        .await?;
    Ok(RemoteImage {
        digest: resolved.digest,
        manifest: resolved.manifest,
        manifest_bytes: resolved.raw.bytes,
        config,
        passed_over: sources.passed_over(),
    })
}

/// Downloads one blob into a store temp file and checks its digest while it
/// streams. The file is returned unfinished: [`pull`] makes blobs visible only
/// once every one of them has been verified, so a corrupt layer leaves the
/// store exactly as it was. `None`: the store already has it.
async fn fetch_blob(
    sources: &Sources<'_>,
    from: usize,
    store: &Store,
    blob: &Descriptor,
    progress: &dyn Progress,
    total: &SharedTask,
) -> Result<Option<(BlobWriter, Digest)>, RegistryError> {
    let digest = blob.digest();
    if digest.algorithm().as_ref() != "sha256" {
        return Err(StoreError::UnsupportedDigest {
            digest: digest.clone(),
        }
        .into());
    }
    if store.has_blob(digest) {
        lock(total).advance(blob.size());
        return Ok(None);
    }
    let task = BlobTask {
        blob: progress.begin(&format!("pull {}", short(digest)), Some(blob.size())),
        total: total.clone(),
    };
    let what = format!("serve blob {}", short(digest));
    let result = sources
        .first(from, &what, async |session, _| {
            // A fresh temp file per attempt; dropping a failed one removes it.
            // The store's writer hashes what it writes: each byte is hashed once.
            let mut out = store.blob_writer()?;
            session
                .get_blob(digest, blob.size(), &mut out, &task)
                .await?;
            let found = out.digest();
            if &found != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: session.registry.clone(),
                    repository: session.repository.clone(),
                    what: "blob",
                    expected: digest.to_string(),
                    found: found.to_string(),
                });
            }
            Ok(out)
        })
        .await;
    task.finish("");
    result.map(|(_, w)| Some((w, digest.clone())))
}

/// Checks a manifest against the digest we asked for, or else against the
/// one the registry claims; returns it with its digest.
fn verify_manifest(
    session: &Session,
    raw: RawManifest,
    expected: Option<&Digest>,
) -> Result<(RawManifest, Digest), RegistryError> {
    let found = sha256_digest(&raw.bytes);
    let claimed = match expected {
        Some(d) => Some(d.clone()),
        // Only a sha256 claim can be checked against our sha256.
        None => raw
            .digest_header
            .as_deref()
            .filter(|h| h.starts_with("sha256:"))
            .map(parse_digest)
            .transpose()?,
    };
    if let Some(expected) = claimed {
        if expected != found {
            return Err(RegistryError::DigestMismatch {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                what: "manifest",
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
    }
    Ok((raw, found))
}

/// The manifest's media type: its own `mediaType` field, else the
/// Content-Type header, else guessed from its shape (OCI makes the field optional).
fn media_type_of(session: &Session, raw: &RawManifest) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(&raw.bytes)
        .map_err(|e| invalid(session, format!("the manifest is not JSON: {e}")))?;
    if probe.schema_version == Some(1) {
        return Err(invalid(
            session,
            "it is a docker schema 1 manifest, which is not supported; push it again with a current tool".into(),
        ));
    }
    if let Some(mt) = probe.media_type.filter(|m| !m.is_empty()) {
        return Ok(mt);
    }
    if let Some(ct) = raw
        .content_type
        .as_ref()
        .filter(|c| c.starts_with("application/vnd."))
    {
        return Ok(ct.clone());
    }
    Ok(if probe.manifests.is_some() {
        OCI_INDEX.to_string()
    } else if probe.layers.is_some() {
        OCI_MANIFEST.to_string()
    } else {
        return Err(invalid(
            session,
            "neither an image manifest nor an index".into(),
        ));
    })
}

fn invalid(session: &Session, reason: String) -> RegistryError {
    RegistryError::InvalidManifest {
        registry: session.registry.clone(),
        repository: session.repository.clone(),
        reason,
    }
}

fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse().map_err(|e| RegistryError::InvalidManifest {
        registry: String::new(),
        repository: String::new(),
        reason: format!("invalid digest {s:?}: {e}"),
    })
}

/// A task shared between a blob's transfer and the body stream that reports it.
type SharedTask = Arc<Mutex<Box<dyn Task>>>;

fn shared(task: Box<dyn Task>) -> SharedTask {
    Arc::new(Mutex::new(task))
}

fn lock(task: &SharedTask) -> std::sync::MutexGuard<'_, Box<dyn Task>> {
    task.lock().unwrap_or_else(|e| e.into_inner())
}

/// A blob's own bar that also feeds the image's total. Finishing clears the
/// bar and prints nothing: in line mode the issue wants one line per image,
/// which [`push`] and [`pull`] print when they are done.
struct BlobTask {
    blob: Box<dyn Task>,
    total: SharedTask,
}

impl Task for BlobTask {
    fn advance(&self, bytes: u64) {
        self.blob.advance(bytes);
        lock(&self.total).advance(bytes);
    }
    fn finish(&self, summary: &str) {
        self.blob.finish(summary);
    }
}

fn total_size(blobs: &[Descriptor]) -> u64 {
    blobs.iter().map(|b| b.size()).sum()
}

/// `sha256:0123456789ab` for progress labels.
fn short(d: &Digest) -> String {
    let hex = d.digest();
    format!("{}:{}", d.algorithm(), &hex[..hex.len().min(12)])
}
