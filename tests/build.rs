//! `sealrs build`: what lands in the store, as skopeo and umoci see it.

use std::fs;
use std::os::unix::fs::symlink;

use crate::common::{skopeo_config, skopeo_inspect, tool, tree, Env};

fn example_context(env: &Env) -> String {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/Kubefile-examples/hello-app");
    let dst = env.path("hello-app");
    tool("cp", &["-a", src, dst.to_str().unwrap()]);
    "hello-app".into()
}

#[test]
fn example_image_is_readable_by_skopeo_with_the_digest_we_printed() {
    let env = Env::new();
    let ctx = example_context(&env);
    let digest = env.build("hello:1.0", &ctx);
    assert!(digest.starts_with("sha256:"), "{digest}");

    let inspected = skopeo_inspect(&env.oci_ref("docker.io/library/hello:1.0"));
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Labels"]["sealrs.io/type"], "application");

    let config = skopeo_config(&env.oci_ref("docker.io/library/hello:1.0"));
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["kubectl apply -n $(NAMESPACE) -f manifests/"])
    );
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("NAMESPACE=hello")));
}

#[test]
fn umoci_unpacks_a_tree_equal_to_the_context() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nCOPY . /\n");
    env.write("ctx/.kubefileignore", "Kubefile\n.kubefileignore\n");
    env.write_mode("ctx/bin/k3s", b"#!/bin/sh\necho k3s\n", 0o755);
    env.write_mode("ctx/etc/config.yaml", b"token: x\n", 0o600);
    env.write_mode("ctx/scripts/init.sh", b"#!/bin/sh\n", 0o750);
    env.write("ctx/manifests/a/b/c/deep.yaml", "kind: ConfigMap\n");
    env.write("ctx/images/shim/list", "nginx:1\n");
    fs::create_dir_all(env.path("ctx/empty-dir")).unwrap();
    symlink("k3s", env.path("ctx/bin/kubectl")).unwrap();
    symlink("../manifests/a", env.path("ctx/etc/link-to-dir")).unwrap();
    symlink("/usr/local/bin/k3s", env.path("ctx/bin/absolute")).unwrap();

    // Debian's umoci 0.4.7 predates zstd layers, hence gzip here.
    env.ok(&[
        "build",
        "-q",
        "--compression",
        "gzip",
        "-t",
        "tree:1",
        "ctx",
    ]);
    let bundle = env.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:docker.io/library/tree:1", env.layout().display()),
            bundle.to_str().unwrap(),
        ],
    );
    let mut expected = tree(&env.path("ctx"));
    expected.remove("Kubefile");
    expected.remove(".kubefileignore");
    let got = tree(&bundle.join("rootfs"));
    assert_eq!(got, expected);
}

#[test]
fn rebuilding_the_same_context_gives_the_same_digest_even_in_a_fresh_store() {
    let env = Env::new();
    let ctx = example_context(&env);
    let first = env.build("same:1", &ctx);
    let again = env.build("same:1", &ctx);
    assert_eq!(first, again);

    // Touch every file: mtimes are clamped, so nothing changes.
    for entry in walkdir::WalkDir::new(env.path(&ctx)) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let f = fs::File::options().append(true).open(entry.path()).unwrap();
            f.set_modified(std::time::SystemTime::now()).unwrap();
        }
    }
    let other = Env::new();
    let ctx2 = example_context(&other);
    assert_eq!(other.build("same:1", &ctx2), first);
    assert_eq!(env.build("same:1", &ctx), first);
}

#[test]
fn source_date_epoch_sets_the_created_time_and_changes_the_digest() {
    let env = Env::new();
    let ctx = example_context(&env);
    let plain = env.build("epoch:1", &ctx);
    let out = env
        .cmd(&["build", "-q", "--no-images", "-t", "epoch:2", &ctx])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dated = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_ne!(plain, dated);
    let config = skopeo_config(&env.oci_ref("docker.io/library/epoch:2"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn compression_choice_sets_the_layer_media_type() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nCOPY f /f\n");
    env.write("ctx/f", "hello\n".repeat(1000));
    for (choice, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let tag = format!("c:{choice}");
        env.ok(&["build", "-q", "--compression", choice, "-t", &tag, "ctx"]);
        let out = tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &env.oci_ref(&format!("docker.io/library/{tag}")),
            ],
        );
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], media_type, "{choice}");
    }
}

#[test]
fn a_big_binary_gets_its_own_layer_shared_by_two_images() {
    let env = Env::new();
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for (ctx, manifest) in [("a", "kind: A\n"), ("b", "kind: B\n")] {
        env.write(&format!("{ctx}/Kubefile"), "FROM scratch\nCOPY . /\n");
        env.write_mode(&format!("{ctx}/bin/k3s"), &big, 0o755);
        env.write(&format!("{ctx}/manifests/m.yaml"), manifest);
    }
    let layers = |tag: &str| -> Vec<String> {
        env.ok(&[
            "build",
            "-q",
            "--split-threshold",
            "1M",
            "-t",
            tag,
            &tag[..1],
        ]);
        let raw = tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &env.oci_ref(&format!("docker.io/library/{tag}")),
            ],
        );
        let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let a = layers("a:1");
    let b = layers("b:1");
    assert!(
        a.len() >= 2,
        "the big file should have a layer of its own: {a:?}"
    );
    let shared: Vec<_> = a.iter().filter(|d| b.contains(d)).collect();
    assert_eq!(
        shared.len(),
        1,
        "exactly the binary's layer is shared: {a:?} {b:?}"
    );
}

#[test]
fn unchanged_rebuild_reuses_every_layer_from_the_cache() {
    let env = Env::new();
    let ctx = example_context(&env);
    env.build("cached:1", &ctx);
    let out = env.run(&["build", "--no-images", "-t", "cached:1", &ctx]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 layer, 1 from cache"), "{stderr}");
}
