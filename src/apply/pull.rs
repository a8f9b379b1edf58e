//! An image that is only in a registry: the cluster is checked against its
//! manifest and config (runtime, labels, version, installer) before any of
//! its layers moves, so a wrong image costs two small requests, not a pull;
//! then hosts pull the layers straight from the registry, and this machine
//! reads only what a host cannot give it ([`RegistryLayers`]).

use std::sync::{Arc, Mutex};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::image::{applied, AppliedImage};
use super::ApplyError;
use crate::cluster::Cluster;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::hosts::{BlobStream, PullTicket, UNREACHED};
use crate::registry::{RegistryError, RegistryOptions};
use crate::runtime;
use crate::store::{Store, WriteSession};
use crate::transport::{Output, Transport};

/// The cluster image's layers as they stay in its registry: hosts pull
/// them, and this machine reads only what it needs itself, each blob checked
/// against its digest: the installer layer for a host that lacks it
/// ([`RegistryLayers::pull_into`]), the layers a host that cannot reach the
/// registry gets from it, and those that may hold templates and Config
/// targets when no host can read them (a dry run, an installer from before
/// `installer originals`: streamed, never kept, [`RegistryLayers::stream`]).
#[derive(Debug, Clone)]
pub struct RegistryLayers {
    /// What each host's installer pulls with (on stdin); `None`: this
    /// machine sends every host its layers (a dry run sends none).
    pub hosts: Option<PullTicket>,
    /// The image's repository, as this machine reaches it with `opts`.
    reference: Reference,
    opts: RegistryOptions,
    /// The image as the registry served it, when the store lacks it.
    served: Option<Arc<Served>>,
    /// One pull into the store at a time: hosts that fall back together
    /// wait for the first, then find the blobs there.
    pulling: Arc<Mutex<()>>,
    /// Held until the last copy of these layers is dropped (the run's end):
    /// the blobs pulled for the installer and for hosts that fall back are
    /// untagged, so `prune` must wait until no host can be sent them.
    _writing: Arc<WriteSession>,
}

/// An image's manifest and config as a registry served them, each checked
/// against its digest: what the phases use instead of the store's copy.
#[derive(Debug)]
struct Served {
    name: String,
    remote: crate::registry::RemoteImage,
}

impl RegistryLayers {
    /// The layers of `reference`'s repository, read with `opts`; `hosts`:
    /// what hosts pull with, if they do; `writing`: the store's write
    /// session, held as long as these layers are.
    pub fn new(
        reference: Reference,
        opts: RegistryOptions,
        hosts: Option<PullTicket>,
        writing: WriteSession,
    ) -> Self {
        RegistryLayers {
            hosts,
            reference,
            opts,
            served: None,
            pulling: Arc::new(Mutex::new(())),
            _writing: Arc::new(writing),
        }
    }

    /// With the image `name` as its registry served it (`remote`), which the
    /// store does not hold: the phases resolve `name` to it. The mirrors
    /// passed over (and said so) for it are not asked again by this
    /// machine; hosts still try them (they may reach what it cannot).
    pub fn serving(mut self, name: &str, remote: crate::registry::RemoteImage) -> Self {
        self.opts.skip_mirrors = remote.passed_over.clone();
        self.served = Some(Arc::new(Served {
            name: name.to_string(),
            remote,
        }));
        self
    }

    /// The image `name` as the registry served it, if these layers are its.
    pub(super) fn image(&self, name: &str) -> Option<Result<AppliedImage, ApplyError>> {
        let served = self.served.as_ref().filter(|s| s.name == name)?;
        let remote = &served.remote;
        let digest = remote.digest.to_string();
        Some(remote_image(
            name,
            &digest,
            &remote.manifest,
            &remote.config,
        ))
    }

    /// The manifest and config of the image of `digest`, as served.
    pub(super) fn metadata(&self, digest: &str) -> Option<(&[u8], &[u8])> {
        let remote = &self.served.as_ref()?.remote;
        (remote.digest.as_ref() == digest).then_some((&remote.manifest_bytes, &remote.config))
    }

    /// Pulls those of `layers` the store lacks into it (untagged, each
    /// checked against its digest): for what this machine sends a host
    /// itself. Returns the bytes pulled.
    pub(super) fn pull_into(
        &self,
        store: &Store,
        layers: &[Descriptor],
        progress: &dyn Progress,
    ) -> Result<u64, ApplyError> {
        let _one = self.pulling.lock().unwrap_or_else(|e| e.into_inner());
        if layers.iter().all(|l| store.has_blob(l.digest())) {
            return Ok(0);
        }
        let pull =
            crate::registry::pull_blobs(store, &self.reference, layers, &self.opts, progress);
        crate::registry::operator::current_thread(&self.reference.registry)
            .and_then(|runtime| runtime.block_on(pull))
            .map_err(|e| self.failed(e))
    }

    /// `layers` read one after the other from the registry, unchecked: the
    /// reader checks each against its digest.
    pub(super) fn stream(&self, layers: &[&Descriptor]) -> Result<BlobStream, ApplyError> {
        let wanted = layers
            .iter()
            .map(|l| (l.digest().clone(), l.size()))
            .collect();
        crate::registry::operator::blob_stream(
            &self.reference.registry,
            &self.reference.repository,
            &self.opts,
            wanted,
        )
        .map_err(|e| self.failed(e))
    }

    fn failed(&self, error: RegistryError) -> ApplyError {
        ApplyError::RegistryLayers {
            repository: format!("{}/{}", self.reference.registry, self.reference.repository),
            source: Box::new(error),
        }
    }
}

/// The image as the phases would use it, from what a registry served.
pub fn remote_image(
    name: &str,
    digest: &str,
    manifest: &ImageManifest,
    config: &[u8],
) -> Result<AppliedImage, ApplyError> {
    let config: ImageConfiguration = serde_json::from_slice(config).map_err(|e| {
        ApplyError::Unsupported(format!(
            "image {name}: its config is not an image config: {e}"
        ))
    })?;
    Ok(applied(
        name.to_string(),
        digest.to_string(),
        manifest,
        &config,
    ))
}

/// Whether `image` can be the cluster image of `cluster`: a runtime sealrs
/// knows, that accepts the cluster as asked, and an installer to run on the
/// hosts. Every violation at once, as the run's verify phase reports them.
pub fn check_cluster_image(cluster: &Cluster, image: &AppliedImage) -> Result<(), ApplyError> {
    let runtime =
        runtime::runtime_for(&image.info.runtime).ok_or_else(|| ApplyError::NoRuntime {
            image: image.name.clone(),
            runtime: image.info.runtime.clone(),
        })?;
    runtime
        .verify(cluster, &image.info)
        .map_err(|violations| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations,
        })?;
    image.installer_on_host().map(|_| ())
}

/// Has the host's installer pull the incoming layers of `argv` (an
/// `installer unpack` command) from `ticket`'s registry, the ticket on
/// stdin. `Ok(Err(why))`: the host cannot use the registry and nothing
/// changed, so the operator sends the layers; a failure after that (a blob
/// that is not what its digest says) is the host's output, for the caller
/// to report.
pub(super) fn from_registry(
    transport: &dyn Transport,
    ticket: &PullTicket,
    argv: &[String],
) -> Result<Result<Output, String>, ApplyError> {
    let mut pull = argv.to_vec();
    pull.push("--from-registry".to_string());
    let stdin = serde_json::to_string(ticket).expect("a ticket serializes");
    let output = transport
        .run(&pull, &[], Some(stdin.as_bytes()))
        .map_err(ApplyError::transport(transport.address()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.success() {
        if let Some(line) = stderr.lines().find(|l| l.contains(UNREACHED)) {
            return Ok(Err(line.trim().to_string()));
        }
        // The installer is the image's: one built before this cannot pull.
        if stderr.contains("unexpected argument '--from-registry'") {
            return Ok(Err(
                "the image's installer predates pulling from a registry".into(),
            ));
        }
    }
    Ok(Ok(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_layers_resolve_only_their_own_image_and_digest() {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"sealrs.io/runtime":"k3s"}}}"#;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
            crate::digest::sha256_digest(config),
            config.len()
        );
        let digest = crate::digest::sha256_digest(manifest.as_bytes());
        let remote = crate::registry::RemoteImage {
            digest: digest.clone(),
            manifest: serde_json::from_str(&manifest).unwrap(),
            manifest_bytes: manifest.clone().into_bytes(),
            config: config.to_vec(),
            passed_over: Vec::new(),
        };
        let name = "r.example:5000/edge/k3s:1";
        let reference = Reference::parse(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writing = store.write_session().unwrap();
        let layers = RegistryLayers::new(reference, RegistryOptions::default(), None, writing)
            .serving(name, remote);
        let image = layers.image(name).unwrap().unwrap();
        assert_eq!(image.digest, digest.to_string());
        assert_eq!(image.info.runtime, "k3s");
        assert!(layers.image("r.example:5000/edge/k3s:2").is_none());
        let (m, c) = layers.metadata(digest.as_ref()).unwrap();
        assert_eq!((m, c), (manifest.as_bytes(), &config[..]));
        assert!(layers.metadata("sha256:00").is_none());
    }
}
