//! Bringing collected images into the local store, through the registry
//! client (digests verified, blobs streamed), several images at once.
//!
//! The cache is the store itself: a harvested image stays tagged under its
//! normalized name (`sealrs images` lists it), so a rebuild finds it and asks
//! no registry anything. An image counts as cached when its tag is there, all
//! its blobs are present, and its config is for the wanted platform (a
//! `--platform linux/arm64` build does not reuse the amd64 image of a
//! previous build). A by-digest reference whose manifest blob is already in
//! the store (say, pulled under another tag) is tagged from it without a
//! request. A mutable tag (`:latest`) is therefore *not* refreshed; use
//! [`PullPolicy::Always`] (or `sealrs pull`) for that.

use futures_util::{stream, StreamExt as _};
use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};

use super::collect::CollectedImage;
use super::error::HarvestError;
use crate::progress::Progress;
use crate::registry::{self, Platform, RegistryOptions};
use crate::store::Store;

/// When to ask the registry for an image the store already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only what the store lacks (for this platform).
    #[default]
    Missing,
    /// Pull every image again (mutable tags move).
    Always,
}

/// One image in the store, ready to be written out.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub image: CollectedImage,
    /// The stored (single-platform) manifest.
    pub manifest: Descriptor,
    /// False when the store already had it.
    pub pulled: bool,
    /// Set when the registry had this image only for another platform
    /// (`os/arch` of what was stored): the image is used as is, and asked
    /// for again at the next build.
    pub other_platform: Option<String>,
}

/// Pulls what is missing, `jobs` images at a time; every failure is
/// reported, each with the image and the file that named it.
pub async fn fetch(
    store: &Store,
    images: &[CollectedImage],
    opts: &RegistryOptions,
    policy: PullPolicy,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Fetched>, HarvestError> {
    let wanted = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let results: Vec<Result<Fetched, HarvestError>> = stream::iter(images.iter().map(|image| {
        let wanted = &wanted;
        async move {
            if policy == PullPolicy::Missing {
                if let Some(manifest) = cached(store, image, wanted) {
                    progress.message(&format!("Image {} is in the store", image.name));
                    return Ok(Fetched {
                        image: image.clone(),
                        manifest,
                        pulled: false,
                        other_platform: None,
                    });
                }
            }
            match registry::pull(store, &image.reference, opts, progress).await {
                Ok(manifest) => Ok(Fetched {
                    other_platform: match platform_of(store, &manifest) {
                        Some((os, arch, variant))
                            if !wanted.matches(&os, &arch, variant.as_deref()) =>
                        {
                            Some(format!("{os}/{arch}"))
                        }
                        _ => None,
                    },
                    image: image.clone(),
                    manifest,
                    pulled: true,
                }),
                Err(source) => Err(HarvestError::Pull {
                    reference: image.written.clone(),
                    origin: image.origins[0].clone(),
                    also: image.origins.len() - 1,
                    source: Box::new(source),
                }),
            }
        }
    }))
    .buffered(jobs.max(1))
    .collect()
    .await;
    let mut fetched = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(f) => fetched.push(f),
            Err(e) => errors.push(e),
        }
    }
    match HarvestError::combine(errors) {
        Some(e) => Err(e),
        None => Ok(fetched),
    }
}

/// The stored manifest for `image`, if the store can serve it as is. Any
/// doubt (a damaged blob, an unreadable config) is a miss: the pull repairs it.
fn cached(store: &Store, image: &CollectedImage, wanted: &Platform) -> Option<Descriptor> {
    if let Ok(Some(desc)) = store.lookup(&image.name) {
        return usable(store, &desc, wanted).then_some(desc);
    }
    // By digest: the manifest may be in the store under another name.
    let digest: Digest = image.reference.digest.as_deref()?.parse().ok()?;
    if !store.has_blob(&digest) {
        return None;
    }
    let bytes = store.read_verified(&digest).ok()?;
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(&bytes).ok()?;
    probe.config.as_ref()?;
    let media_type = probe
        .media_type
        .unwrap_or_else(|| MediaType::ImageManifest.to_string());
    let desc = Descriptor::new(
        MediaType::from(media_type.as_str()),
        bytes.len() as u64,
        digest,
    );
    if !usable(store, &desc, wanted) {
        return None;
    }
    store.tag(&image.name, &desc).ok()?;
    Some(desc)
}

fn usable(store: &Store, desc: &Descriptor, wanted: &Platform) -> bool {
    let Ok(manifest): Result<ImageManifest, _> = store.read_manifest(desc) else {
        return false;
    };
    if !std::iter::once(manifest.config())
        .chain(manifest.layers())
        .all(|b| store.has_blob(b.digest()))
    {
        return false;
    }
    match platform_of(store, desc) {
        Some((os, arch, variant)) => wanted.matches(&os, &arch, variant.as_deref()),
        // An image whose config names no platform fits any.
        None => store.read_verified(manifest.config().digest()).is_ok(),
    }
}

/// `(os, architecture, variant)` from a stored image's config.
fn platform_of(store: &Store, desc: &Descriptor) -> Option<(String, String, Option<String>)> {
    let manifest = store.read_manifest(desc).ok()?;
    let bytes = store.read_verified(manifest.config().digest()).ok()?;
    #[derive(serde::Deserialize)]
    struct PlatformOf {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let p: PlatformOf = serde_json::from_slice(&bytes).ok()?;
    Some((p.os?, p.architecture?, p.variant))
}
