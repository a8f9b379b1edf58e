//! What the phases of one command share: where the blobs come from, who
//! reports progress, how hosts are reached, the images and their runtime,
//! and what the phases found and did so far.

use super::check::HostCheck;
use super::connect::{Connections, Connector};
use super::image::{resolve_with, AppliedImage};
use super::parallel::MaxParallel;
use super::{ApplyError, RunOptions, RunReport};
use crate::cluster::{Cluster, Host};
use crate::progress::Progress;
use crate::runtime::{self, Runtime, Version};
use crate::store::Store;
use crate::transport::Transport;

/// One command's run: what every phase reads, and what earlier phases left
/// for later ones. Dropping it closes the connections (each transport's
/// `Drop`), whichever phase stopped the command.
pub(super) struct RunContext<'a> {
    pub store: &'a Store,
    pub progress: &'a dyn Progress,
    pub connector: &'a dyn Connector,
    pub options: RunOptions,
    /// The cluster image: the first of the images named.
    pub image: AppliedImage,
    /// The application images that follow it (`sealrs run` only).
    pub apps: Vec<AppliedImage>,
    /// The cluster image's runtime.
    pub runtime: Box<dyn Runtime>,
    /// Filled by the connect phase.
    pub connections: Connections,
    /// What each checked host told, by host key; filled by the check phase.
    pub checks: Vec<(String, HostCheck)>,
    /// What the phases did.
    pub report: RunReport,
    /// The host that serves the in-cluster registry, once the command knows
    /// its cluster: the only one that gets the registry tree's layers.
    pub hub_host: Option<crate::cluster::Address>,
    /// Where the output of the images' hooks and commands is kept.
    pub logs: super::output_log::OutputLogs,
}

impl<'a> RunContext<'a> {
    /// Resolves `images` from the store and the runtime the first one names.
    pub fn new(
        store: &'a Store,
        connector: &'a dyn Connector,
        progress: &'a dyn Progress,
        images: &[String],
        options: RunOptions,
    ) -> Result<RunContext<'a>, ApplyError> {
        let images = resolve_with(store, images, options.layers_from.as_ref())?;
        Self::with_images(store, connector, progress, images, options)
    }

    /// The context for images already resolved (`resolve_images`, or the
    /// digests a saved cluster pins); the first is the cluster image.
    pub fn with_images(
        store: &'a Store,
        connector: &'a dyn Connector,
        progress: &'a dyn Progress,
        mut apps: Vec<AppliedImage>,
        options: RunOptions,
    ) -> Result<RunContext<'a>, ApplyError> {
        if apps.is_empty() {
            return Err(ApplyError::NoImage);
        }
        let mut image = apps.remove(0);
        image.app_trees = apps.iter().any(super::hub::has_tree_layers);
        super::apps::merge_hook_labels(&mut image, &apps);
        image.pull_from = options.layers_from.clone();
        let runtime =
            runtime::runtime_for(&image.info.runtime).ok_or_else(|| ApplyError::NoRuntime {
                image: image.name.clone(),
                runtime: image.info.runtime.clone(),
            })?;
        Ok(RunContext {
            store,
            progress,
            connector,
            options,
            image,
            apps,
            runtime,
            connections: Connections::new(),
            checks: Vec::new(),
            report: RunReport::default(),
            hub_host: None,
            logs: super::output_log::OutputLogs::new(store.root()),
        })
    }

    /// The Kubernetes version `cluster` is upgraded to: the image's, which
    /// verify already required (an upgrade without one is refused the same way).
    pub fn target_version(&self, cluster: &Cluster) -> Result<Version, ApplyError> {
        self.image
            .info
            .version
            .clone()
            .ok_or_else(|| ApplyError::Verify {
                cluster: cluster.name.clone(),
                violations: vec![runtime::Violation::MissingVersion],
            })
    }

    /// Fails when the cluster image has no installer to run on the hosts.
    pub fn require_installer(&self) -> Result<(), ApplyError> {
        self.image.installer_on_host().map(|_| ())
    }

    /// How many hosts a phase works on at once: the connector's
    /// `--max-parallel`.
    pub fn max_parallel(&self) -> MaxParallel {
        self.connector.max_parallel()
    }

    /// The open connection to `host`.
    pub fn connection(&self, host: &Host) -> Result<&dyn Transport, ApplyError> {
        self.connections
            .iter()
            .find(|(h, _)| h.address == host.address)
            .map(|(_, t)| t.as_ref())
            .ok_or_else(|| ApplyError::Unsupported(format!("no connection to {}", host.key())))
    }
}
