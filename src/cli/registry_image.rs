//! `run`, `upgrade` and `add` with an image that is only in a registry: its
//! manifest and config are fetched and the cluster checked against them
//! first; its layers stay there. Hosts pull them themselves, and this
//! machine reads only the few it needs ([`apply::pull::RegistryLayers`]).

use anyhow::{bail, Context as _, Result};

use super::args::{HostPullFlags, RegistryFlags};
use super::registry_cmds::{options, runtime};
use crate::apply;
use crate::apply::pull::RegistryLayers;
use crate::cluster::Cluster;
use crate::progress::Progress;
use crate::reference::{Reference, DEFAULT_REGISTRY};
use crate::registry;
use crate::store::{Digest, Store};

/// How a command reaches its hosts, which decides whether they pull.
#[derive(Clone, Copy)]
pub(super) struct Route<'a> {
    /// Nothing reaches a host (nor the registry for them).
    pub dry_run: bool,
    /// `--layers-over-ssh`: layers are kept inside SSH.
    pub over_ssh: bool,
    pub pull: &'a HostPullFlags,
}

/// Resolves each of `images` (the cluster image first) that the store
/// lacks from its registry. The cluster image: by its manifest and config
/// only, which must show that it fits `cluster`; its layers stay in the
/// registry. Application images are pulled into the store. An image in
/// neither place is an error naming both; Docker Hub is asked only through
/// `sealrs pull`. Returns where the cluster image's layers are read from
/// when that is its registry (it came from there, or `--layers-from-registry`).
pub(super) fn fetch_missing(
    store: &Store,
    images: &[String],
    cluster: &Cluster,
    flags: &RegistryFlags,
    route: Route<'_>,
    progress: &dyn Progress,
) -> Result<Option<RegistryLayers>> {
    let opts = options(flags);
    let mut async_runtime = None;
    let mut served = None;
    for (i, name) in images.iter().enumerate() {
        if store.lookup(name)?.is_some() {
            continue;
        }
        let reference = registry_reference(name).with_context(|| {
            format!("no such image: {name} is not in the local store (see `sealrs images`); an image in a registry is named with it: REGISTRY/REPO:TAG")
        })?;
        let rt = match &async_runtime {
            Some(rt) => rt,
            None => async_runtime.insert(runtime()?),
        };
        let remote = rt
            .block_on(registry::fetch_metadata(&reference, &opts, progress))
            .map_err(|e| neither(name, &reference.registry, &e))?;
        let digest = remote.digest.to_string();
        if i == 0 {
            let image = apply::pull::remote_image(name, &digest, &remote.manifest, &remote.config)?;
            apply::pull::check_cluster_image(cluster, &image)?;
            progress.message(&format!(
                "{name} is not in the local store: its manifest and config from {} fit cluster {}; its layers are read from there as they are needed",
                reference.registry, cluster.name
            ));
            served = Some(remote);
            continue;
        }
        progress.message(&format!(
            "{name} is not in the local store: pulling it from {}",
            reference.registry
        ));
        let pulled = rt.block_on(registry::pull(store, &reference, &opts, progress))?;
        if pulled.digest() != &remote.digest {
            bail!(
                "{name} moved in {} while it was checked (from {digest} to {}); run again to check the new image",
                reference.registry,
                pulled.digest()
            );
        }
    }
    let Some(image) = images.first() else {
        return Ok(None);
    };
    if served.is_none() && !route.pull.layers_from_registry {
        return Ok(None);
    }
    let layers = layers_from(store, image, flags, route)?;
    Ok(Some(match served {
        Some(remote) => layers.serving(&normalized(image), remote),
        None => layers,
    }))
}

/// Where the layers of a saved cluster's image (`add`) are read from: its
/// registry when the store lacks the image the cluster pins (it came from
/// there) or when asked; `None`: the store.
pub(super) fn saved_image_layers(
    store: &Store,
    cluster: &Cluster,
    flags: &RegistryFlags,
    route: Route<'_>,
) -> Result<Option<RegistryLayers>> {
    let Some(image) = cluster.images.first() else {
        return Ok(None);
    };
    let name = normalized(image);
    let pinned = cluster.status.images.iter().find(|i| i.name == name);
    let in_store = pinned
        .and_then(|p| p.digest.parse::<Digest>().ok())
        .is_some_and(|d| store.has_blob(&d));
    let from_registry = !in_store && pinned.is_some() && registry_reference(&name).is_some();
    if !from_registry && !route.pull.layers_from_registry {
        return Ok(None);
    }
    layers_from(store, &name, flags, route).map(Some)
}

/// The layers of `image` in its registry, with what hosts pull them: by
/// default unless layers are kept inside SSH or the registry is this
/// machine's loopback (a host's loopback is its own: it would only try and
/// fall back); always with `--layers-from-registry`. Holds a write session
/// on `store` for as long as they are used: blobs pulled for them stay untagged.
fn layers_from(
    store: &Store,
    image: &str,
    flags: &RegistryFlags,
    route: Route<'_>,
) -> Result<RegistryLayers> {
    let reference = registry_reference(image).with_context(|| {
        format!(
            "--layers-from-registry: {image} names no registry to pull from (REGISTRY/REPO:TAG)"
        )
    })?;
    // Waits for a running prune, as a pull does; a prune from now on fails.
    let writing = store.write_session()?;
    let opts = options(flags);
    let hosts_pull = !route.dry_run
        && (route.pull.layers_from_registry
            || !(route.over_ssh || registry::tls::is_loopback(&reference.registry)));
    let ticket = match hosts_pull {
        true => Some(runtime()?.block_on(registry::hosts::PullTicket::new(
            &reference.registry,
            &reference.repository,
            &opts,
            route.pull.registry_credentials_to_hosts,
        ))?),
        false => None,
    };
    Ok(RegistryLayers::new(reference, opts, ticket, writing))
}

/// `name` as a reference to a registry it spells out: a mistyped local
/// name must not turn into a request to Docker Hub.
fn registry_reference(name: &str) -> Option<Reference> {
    Reference::parse(name)
        .ok()
        .filter(|r| r.registry != DEFAULT_REGISTRY)
}

/// `name` as the phases resolve it.
fn normalized(name: &str) -> String {
    crate::reference::normalize(name).unwrap_or_else(|_| name.to_string())
}

fn neither(name: &str, registry: &str, error: &registry::RegistryError) -> anyhow::Error {
    anyhow::anyhow!(
        "no such image: {name} is not in the local store, and its registry {registry} did not serve it ({error}); check the name, log in with `sealrs login {registry}` if it needs credentials, or put the image in the store with `sealrs pull` or `sealrs build`"
    )
}
