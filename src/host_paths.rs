//! Where sealrs keeps its things on a host, and how an image marks the layer
//! that carries the installer: the names both sides agree on, the operator
//! (`apply`, `build`) and the host (`installer`, the runtimes' plans), so they
//! live below both.

/// A path under [`HOST_DIR`] as a `&'static str`: every host path, here and
/// in the runtimes' plans (their markers), is written from the one prefix.
#[macro_export]
macro_rules! host_path {
    ($rest:literal) => {
        concat!("/var/lib/sealrs-host", $rest)
    };
}

/// Where sealrs keeps its things on a host: a directory of its own, apart
/// from `/var/lib/sealrs`, root's default image store, so that a reset on a
/// host that is also the operator removes this and never the store (a reset
/// refuses a `HOST_DIR` that holds a store, whatever `--root` points to).
pub const HOST_DIR: &str = host_path!("");

/// Unpacked layers on a host, by their blob's digest: a layer is sent to a
/// host once.
pub const HOST_LAYERS: &str = host_path!("/layers/sha256");

/// Where the installer unpacks the image's rootfs on a host (the layout
/// places files from there).
pub const DEFAULT_ROOTFS_DIR: &str = host_path!("/rootfs");

/// Marker files that make otherwise unobservable steps idempotent.
pub const MARKER_DIR: &str = host_path!("/markers");

/// Where init-hook markers live (under [`MARKER_DIR`]); its presence tells
/// uninstall to run `clean`.
pub const HOOK_MARKER_DIR: &str = host_path!("/markers/hooks");

/// What the installer placed on a host, one `<role>.json` per role.
pub const PLACED_DIR: &str = host_path!("/placed");

/// The secrets a host last joined with (the installer's `SecretsSpec` as
/// JSON, 0600).
pub const JOINED: &str = host_path!("/joined.json");

/// Where the installer lands in the rootfs (relative: inside an image's
/// layer, and under the unpacked layer on a host).
pub const INSTALLER_PATH: &str = "opt/sealrs/sealrs";

/// Annotation that marks the layer holding the embedded installer.
pub const INSTALLER_ANNOTATION: &str = "sealrs.io/installer";

/// Annotation that marks a layer holding only the image's `registry/` tree
/// (its value: that directory): only the hosts that serve the in-cluster
/// registry get it.
pub const REGISTRY_TREE_ANNOTATION: &str = "sealrs.io/registry-tree";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_live_under_the_host_dir() {
        for path in [
            HOST_LAYERS,
            DEFAULT_ROOTFS_DIR,
            MARKER_DIR,
            PLACED_DIR,
            JOINED,
        ] {
            assert!(path.starts_with(&format!("{HOST_DIR}/")), "{path}");
        }
        assert!(HOOK_MARKER_DIR.starts_with(&format!("{MARKER_DIR}/")));
        assert!(!INSTALLER_PATH.starts_with('/'));
    }
}
