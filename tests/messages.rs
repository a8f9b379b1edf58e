//! What people read: counts in the singular when there is one, one unit for
//! sizes, digests cut where a line would wrap, each thing said once.

use crate::common::Env;
use crate::layout::example;

/// Lines of `text` that hold a full 64-digit hex digest.
fn lines_with_full_digests(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_hexdigit())
                .any(|run| run.len() == 64)
        })
        .collect()
}

#[test]
fn a_rootfs_build_counts_the_installer_layer_says_its_layout_once_and_cuts_digests() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    let args = [
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k3s-cluster:1",
        &dir,
    ];
    let first = env.run(&args);
    assert!(first.status.success(), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    // bin, images, manifests, etc and the installer.
    assert!(
        stderr.contains("(5 layers, 0 from cache; holds layouts/k3s.toml)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("layouts/k3s.toml").count(), 1, "{stderr}");
    assert!(lines_with_full_digests(&stderr).is_empty(), "{stderr}");
    assert!(!stderr.contains(" bytes)"), "sizes in one unit: {stderr}");
    assert!(stderr.contains("installer → "), "{stderr}");

    let again = env.run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("(5 layers, 5 from cache;"), "{stderr}");
}

#[test]
fn one_of_a_thing_is_singular() {
    let env = Env::new();
    env.write("app/Kubefile", "FROM scratch\nCOPY a.yaml /manifests/\n");
    env.write("app/a.yaml", "kind: List\n");
    let out = env.run(&["build", "--no-images", "-t", "app:1", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(1 layer, 0 from cache"), "{stderr}");
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.starts_with("checked 1 image, 3 blobs"), "{fsck}");
}
