//! The operator's part of the in-cluster registry (`runtime::hub`): the
//! password, made once per cluster from the operating system's random
//! source and kept in the saved cluster's status (a 0600 file), so that
//! every later command hands hosts the same one in their requests; which
//! host serves, and which layers the other hosts do without (those `build`
//! marked as holding only the registry tree); and the merge of application
//! images' trees into the served one.

use std::borrow::Cow;

use oci_spec::image::Descriptor;

use super::image::AppliedImage;
use super::ApplyError;
use crate::cluster::{Address, Cluster, Host, Secret};
use crate::host_paths::REGISTRY_TREE_ANNOTATION;
use crate::runtime::hub::{serving_host, HUB_DATA};
use crate::transport::Transport;

/// Random bytes of a new password (hex: 32 characters, no character that
/// any config file or header would need to quote).
const PASSWORD_BYTES: usize = 16;

/// Gives `cluster` a hub password unless it has one.
pub(super) fn ensure_password(cluster: &mut Cluster) -> Result<(), ApplyError> {
    if cluster.status.hub_password.is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApplyError::Unsupported(format!(
            "cannot make the in-cluster registry's password: the operating system's random source failed: {e}"
        ))
    })?;
    cluster.status.hub_password = Some(Secret::new(hex::encode(bytes)));
    Ok(())
}

/// `sh -c` text: `$1` (an application image's tree) merged into `$2` (the
/// hub's data) with hard links, as the rootfs' tree is; nothing when either
/// is missing (the image has no tree, or the cluster no hub).
const MERGE_APP_TREE: &str =
    r#"[ -d "$1" ] && [ -d "$2" ] || exit 0; exec cp -a -l --remove-destination "$1" "$2""#;

/// Merges the registry tree of an application image unpacked at `dir` on
/// `host` (the first master, which serves the hub) into the hub, so that
/// the images it holds are pulled through `sealos.hub:5000` too (nodes
/// mirror every registry through containerd's `_default` and k3s' `*`).
pub(super) fn merge_app_tree(
    transport: &dyn Transport,
    host: &Host,
    dir: &str,
) -> Result<(), ApplyError> {
    let tree = format!("{}/registry/docker", dir.trim_end_matches('/'));
    let argv: Vec<String> = [
        "sh",
        "-c",
        MERGE_APP_TREE,
        "sealrs-hub-merge",
        &tree,
        HUB_DATA,
    ]
    .map(String::from)
    .to_vec();
    let output = transport
        .run(&argv, &[], None)
        .map_err(ApplyError::transport(host.key()))?;
    if output.success() {
        Ok(())
    } else {
        Err(ApplyError::command(
            host.key(),
            format!("cp -a -l --remove-destination {tree} {HUB_DATA}"),
            &output,
            10,
        ))
    }
}

/// The host that serves the in-cluster registry of `cluster`.
pub(super) fn serving(cluster: &Cluster) -> Option<Address> {
    serving_host(cluster).map(|h| h.address.clone())
}

/// Whether `layer` holds only a registry tree (build marks it).
fn tree_only(layer: &Descriptor) -> bool {
    layer
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(REGISTRY_TREE_ANNOTATION))
}

/// Whether `image` has layers that hold only a registry tree.
pub(super) fn has_tree_layers(image: &AppliedImage) -> bool {
    image.layers.iter().any(tree_only)
}

/// `image` as `host` gets it: without the layers that hold only the
/// registry tree unless it serves the registry (`hub_host`); unknown
/// (`None`), it gets every layer.
pub(super) fn for_host<'a>(
    image: &'a AppliedImage,
    hub_host: Option<&Address>,
    host: &Host,
) -> Cow<'a, AppliedImage> {
    if hub_host.is_none_or(|h| *h == host.address) || !has_tree_layers(image) {
        return Cow::Borrowed(image);
    }
    let mut withheld = image.clone();
    withheld.layers.retain(|l| !tree_only(l));
    Cow::Owned(withheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(byte: &str, tree: bool) -> Descriptor {
        let digest: oci_spec::image::Digest =
            format!("sha256:{}", byte.repeat(64)).parse().unwrap();
        let mut d =
            oci_spec::image::Descriptor::new(oci_spec::image::MediaType::ImageLayerGzip, 1, digest);
        if tree {
            d.set_annotations(Some(
                [(
                    REGISTRY_TREE_ANNOTATION.to_string(),
                    "registry/".to_string(),
                )]
                .into(),
            ));
        }
        d
    }

    #[test]
    fn only_the_serving_host_gets_the_registry_trees_layers() {
        let cluster = Cluster::from_args(&crate::cluster::ClusterArgs {
            masters: vec!["10.0.0.1".into()],
            nodes: vec!["10.0.0.2".into()],
            ..Default::default()
        })
        .unwrap();
        let image = AppliedImage {
            name: "x".into(),
            digest: "sha256:00".into(),
            layers: vec![layer("a", false), layer("b", true), layer("c", false)],
            info: Default::default(),
            arch: "amd64".into(),
            installer: None,
            app_trees: false,
            host_files: Default::default(),
            deferred_files: None,
            pull_from: None,
        };
        let hub = serving(&cluster);
        assert_eq!(hub, Some(cluster.hosts[0].address.clone()));
        let master = for_host(&image, hub.as_ref(), &cluster.hosts[0]);
        assert_eq!(master.layers.len(), 3);
        let worker = for_host(&image, hub.as_ref(), &cluster.hosts[1]);
        let digests: Vec<String> = worker
            .layers
            .iter()
            .map(|l| l.digest().digest().to_string())
            .collect();
        assert_eq!(digests, ["a".repeat(64), "c".repeat(64)]);
        // Not knowing who serves, every host gets everything.
        assert_eq!(for_host(&image, None, &cluster.hosts[1]).layers.len(), 3);
    }

    #[test]
    fn a_cluster_gets_one_password_and_keeps_it() {
        let mut a = Cluster::new("a");
        ensure_password(&mut a).unwrap();
        let first = a.status.hub_password.clone().unwrap();
        assert_eq!(first.expose().len(), 2 * PASSWORD_BYTES);
        ensure_password(&mut a).unwrap();
        assert_eq!(a.status.hub_password.as_ref(), Some(&first));
        let mut b = Cluster::new("b");
        ensure_password(&mut b).unwrap();
        assert_ne!(b.status.hub_password, Some(first));
    }
}
