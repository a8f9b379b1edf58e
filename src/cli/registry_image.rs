//! `run` and `upgrade` with an image that is only in a registry: its
//! manifest and config are fetched and the cluster checked against them
//! first; only an image that fits is pulled into the store (templates and
//! Configs are made from its layers), and hosts pull the layers themselves.

use anyhow::{bail, Context as _, Result};

use super::args::{HostPullFlags, RegistryFlags};
use super::registry_cmds::{options, runtime};
use crate::apply;
use crate::cluster::Cluster;
use crate::progress::Progress;
use crate::reference::{Reference, DEFAULT_REGISTRY};
use crate::registry;
use crate::store::Store;

/// Brings each of `images` (the cluster image first) that the store lacks
/// from its registry, once the cluster image's manifest and config show that
/// it fits `cluster`. An image in neither place is an error naming both.
/// Docker Hub is asked only through `sealrs pull`. Returns whether the
/// cluster image came from its registry.
pub(super) fn fetch_missing(
    store: &Store,
    images: &[String],
    cluster: &Cluster,
    flags: &RegistryFlags,
    progress: &dyn Progress,
) -> Result<bool> {
    let mut first_pulled = false;
    let opts = options(flags);
    let mut async_runtime = None;
    for (i, name) in images.iter().enumerate() {
        if store.lookup(name)?.is_some() {
            continue;
        }
        // Only a registry the name spells out is asked: a mistyped local
        // name must not turn into a request to Docker Hub.
        let reference = Reference::parse(name)
            .ok()
            .filter(|r| r.registry != DEFAULT_REGISTRY)
            .with_context(|| {
                format!("no such image: {name} is not in the local store (see `sealrs images`); an image in a registry is named with it: REGISTRY/REPO:TAG")
            })?;
        let rt = match &async_runtime {
            Some(rt) => rt,
            None => async_runtime.insert(runtime()?),
        };
        let remote = rt
            .block_on(registry::fetch_metadata(&reference, &opts))
            .map_err(|e| neither(name, &reference.registry, &e))?;
        let digest = remote.digest.to_string();
        let image = apply::pull::remote_image(name, &digest, &remote.manifest, &remote.config)?;
        if i == 0 {
            apply::pull::check_cluster_image(cluster, &image)?;
        }
        progress.message(&format!(
            "{name} is not in the local store: its manifest and config from {} fit cluster {}; pulling its layers",
            reference.registry, cluster.name
        ));
        let pulled = rt.block_on(registry::pull(store, &reference, &opts, progress))?;
        first_pulled |= i == 0;
        if pulled.digest() != &remote.digest {
            bail!(
                "{name} moved in {} while it was checked (from {digest} to {}); run again to check the new image",
                reference.registry,
                pulled.digest()
            );
        }
    }
    Ok(first_pulled)
}

/// Where hosts pull the layers of `image` (the cluster image) from: its
/// registry when asked, or by default when it came from there this run,
/// layers are not kept inside SSH and the registry is not this machine's
/// loopback.
pub(super) fn layers_from(
    image: Option<&String>,
    came_from_registry: bool,
    over_ssh: bool,
    flags: &RegistryFlags,
    pull: &HostPullFlags,
) -> Result<Option<registry::hosts::PullTicket>> {
    let Some(image) = image else { return Ok(None) };
    if !pull.layers_from_registry && (!came_from_registry || over_ssh) {
        return Ok(None);
    }
    let reference = Reference::parse(image)
        .ok()
        .filter(|r| r.registry != DEFAULT_REGISTRY)
        .with_context(|| {
            format!("--layers-from-registry: {image} names no registry to pull from (REGISTRY/REPO:TAG)")
        })?;
    // A host's loopback is its own: it would only try and fall back.
    if !pull.layers_from_registry && registry::tls::is_loopback(&reference.registry) {
        return Ok(None);
    }
    let ticket = runtime()?.block_on(registry::hosts::PullTicket::new(
        &reference.registry,
        &reference.repository,
        &options(flags),
        pull.registry_credentials_to_hosts,
    ))?;
    Ok(Some(ticket))
}

fn neither(name: &str, registry: &str, error: &registry::RegistryError) -> anyhow::Error {
    anyhow::anyhow!(
        "no such image: {name} is not in the local store, and its registry {registry} did not serve it ({error}); check the name, log in with `sealrs login {registry}` if it needs credentials, or put the image in the store with `sealrs pull` or `sealrs build`"
    )
}
