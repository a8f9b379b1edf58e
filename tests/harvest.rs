//! Harvesting images into a rootfs, against a real `docker-registry` on
//! 127.0.0.1: the images are built and pushed with the sealrs binary, then
//! harvested through the library; skopeo reads what was written, and a second
//! `docker-registry` serves the registry-format tree.

use std::fs;
use std::path::Path;

use sealrs::build::{harvested_layers, LayerOptions};
use sealrs::compression::Compression;
use sealrs::harvest::{self, ArchiveFormat, HarvestError, HarvestRequest};
use sealrs::progress::Silent;
use sealrs::store::Store;
use sha2::{Digest as _, Sha256};

use crate::common::{skopeo_inspect, tool, Env};
use crate::registry_server::{Options, Registry};

/// Builds and pushes `{registry}/team/{name}:1`; returns (reference, manifest digest).
fn push_image(env: &Env, reg: &Registry, name: &str) -> (String, String) {
    let dir = format!("src-{name}");
    env.write(&format!("{dir}/Kubefile"), "FROM scratch\nCOPY f /f\n");
    env.write(&format!("{dir}/f"), format!("content of {name}\n"));
    let reference = format!("{}/team/{name}:1", reg.host());
    let built = env.build(&reference, &dir);
    let pushed = env.ok(&["push", "-q", &reference]).trim().to_string();
    assert_eq!(built, pushed);
    (reference, pushed)
}

/// A context that names `a` in a shim list and `b` (and `a` again) in a manifest.
fn context(env: &Env, dir: &str, a: &str, b: &str) {
    env.write(
        &format!("{dir}/images/shim/list"),
        format!("# images the cluster needs\n{a}\n\n"),
    );
    env.write(
        &format!("{dir}/manifests/app.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n---\n\
apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n      - image: {a}\n      containers:\n      - name: b\n        image: \"{b}\"\n"
        ),
    );
}

fn sha_file(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn manifest_gets(reg: &Registry) -> usize {
    reg.requests("GET /v2/team/a/manifests/") + reg.requests("GET /v2/team/b/manifests/")
}

#[test]
fn harvest_writes_archives_skopeo_reads_and_a_rebuild_pulls_nothing() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, a_digest) = push_image(&env, &reg, "a");
    let (b, b_digest) = push_image(&env, &reg, "b");
    context(&env, "ctx", &a, &b);

    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let req = HarvestRequest::new(&ctx, "images/shim/*", "images/", ArchiveFormat::OciArchive);
    let before = manifest_gets(&reg);
    let out = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(out.images.len(), 2);
    assert_eq!(out.pulled(), 2);
    assert!(manifest_gets(&reg) > before);
    let a_file = format!("images/127.0.0.1_{}_team_a_1.tar", reg.port);
    let b_file = format!("images/127.0.0.1_{}_team_b_1.tar", reg.port);
    assert_eq!(out.files, vec![a_file.clone(), b_file.clone()]);
    // `a` is named in two files; its first origin is the shim list.
    let a_img = out.images.iter().find(|i| i.name == a).unwrap();
    assert_eq!(a_img.origins.len(), 2);
    assert_eq!(a_img.origins[0].to_string(), "images/shim/list:2");
    assert_eq!(a_img.digest.to_string(), a_digest);

    let staged = out.staging_dir().unwrap().to_path_buf();
    for (file, name, digest) in [(&a_file, &a, &a_digest), (&b_file, &b, &b_digest)] {
        let path = staged.join(file);
        let seen = skopeo_inspect(&format!("oci-archive:{}", path.display()));
        assert_eq!(seen["Digest"], digest.as_str(), "{file}");
        // By the name containerd and skopeo both see.
        let seen = skopeo_inspect(&format!("oci-archive:{}:{name}", path.display()));
        assert_eq!(seen["Digest"], digest.as_str());
        let index = archive_index(&path);
        let ann = &index["manifests"][0]["annotations"];
        assert_eq!(ann["io.containerd.image.name"], name.as_str());
        assert_eq!(ann["org.opencontainers.image.ref.name"], name.as_str());
    }
    let first_a = sha_file(&staged.join(&a_file));
    let opts = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let layers = harvested_layers(&store, &out, &opts, &Silent).unwrap();
    assert_eq!(layers.len(), 1);
    let entries = layer_entries(&store, &layers[0]);
    assert!(
        entries.contains(&a_file) && entries.contains(&b_file),
        "{entries:?}"
    );

    // Again: nothing is asked of the registry, and the bytes are the same.
    let before = manifest_gets(&reg);
    let blobs_before = reg.requests("GET /v2/team/");
    let again = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(again.pulled(), 0);
    assert_eq!(manifest_gets(&reg), before);
    assert_eq!(reg.requests("GET /v2/team/"), blobs_before);
    assert_eq!(
        sha_file(&again.staging_dir().unwrap().join(&a_file)),
        first_a
    );
    assert_eq!(
        harvested_layers(&store, &again, &opts, &Silent).unwrap(),
        layers
    );

    // Another store pulls the same digests and writes the same archives.
    let other = Store::open(env.path("other-root")).unwrap();
    let third = harvest::harvest(&other, &req, &Silent).unwrap();
    assert_eq!(third.pulled(), 2);
    assert_eq!(
        sha_file(&third.staging_dir().unwrap().join(&a_file)),
        first_a
    );
    assert_eq!(
        harvested_layers(&other, &third, &opts, &Silent).unwrap(),
        layers
    );
    drop(out);
    assert!(
        !staged.exists(),
        "the staging directory goes with the outcome"
    );
}

#[test]
fn by_digest_references_are_served_from_the_store() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, a_digest) = push_image(&env, &reg, "a");
    let by_digest = format!("{}/team/a@{a_digest}", reg.host());
    env.write("ctx/images/shim/list", format!("{a}\n{by_digest}\n"));
    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let req = HarvestRequest::new(&ctx, "images/shim/*", "images", ArchiveFormat::OciArchive);
    let out = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(out.images.len(), 2);
    assert!(out.images.iter().all(|i| i.digest.to_string() == a_digest));
    // One of the two may have been served by the other's manifest blob.
    assert!(reg.requests(&format!("GET /v2/team/a/manifests/{a_digest}")) <= 1);
    let before = reg.requests("GET /v2/");
    let again = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(again.pulled(), 0);
    assert_eq!(reg.requests("GET /v2/"), before);
}

#[test]
fn a_missing_image_names_the_image_and_the_file() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, _) = push_image(&env, &reg, "a");
    let missing = format!("{}/team/missing:1", reg.host());
    env.write("ctx/images/shim/list", format!("{a}\n{missing}\n"));
    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let req = HarvestRequest::new(&ctx, "images/shim/*", "images/", ArchiveFormat::OciArchive);
    let err = harvest::harvest(&store, &req, &Silent).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HarvestError::Pull { .. }), "{err:?}");
    assert!(text.contains(&missing), "{text}");
    assert!(text.contains("images/shim/list:2"), "{text}");
    assert!(text.contains("not found"), "{text}");
}

#[test]
fn bad_input_is_reported_before_any_pull() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    env.write(
        "ctx/images/shim/list",
        format!("{}/team/a:1\nUPPER/case:1\n", reg.host()),
    );
    env.write("ctx/manifests/broken.yaml", "spec:\n  containers: [\n");
    env.write(
        "ctx/charts/web/values.yaml",
        "image:\n  repository: web\n  tag: \"{{ .Chart.AppVersion }}\"\n",
    );
    // Excluded by the context's ignore file: never read.
    env.write("ctx/manifests/skip/x.yaml", "image: [[[\n");
    env.write("ctx/.kubefileignore", "manifests/skip\n");
    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let req = HarvestRequest::new(&ctx, "images/shim/*", "images/", ArchiveFormat::OciArchive);
    let err = harvest::harvest(&store, &req, &Silent).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems().len(), 3, "{text}");
    assert!(text.contains("images/shim/list:2"), "{text}");
    assert!(text.contains("manifests/broken.yaml:"), "{text}");
    assert!(text.contains("charts/web/values.yaml:2"), "{text}");
    assert!(text.contains(".imageignore"), "{text}");
    assert_eq!(reg.requests("GET /v2/"), 0, "nothing was pulled");

    // Silenced by .imageignore, the rest is pulled.
    env.write("ctx/.imageignore", "# rendered by helm\nweb:*\nUPPER/*\n");
    env.write("ctx/manifests/broken.yaml", "kind: Namespace\n");
    let (a, _) = push_image(&env, &reg, "a");
    let out = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(out.images.iter().map(|i| &i.name).collect::<Vec<_>>(), [&a]);
    assert_eq!(out.excluded.len(), 1);
}

#[test]
fn registry_format_is_served_by_a_second_docker_registry() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, a_digest) = push_image(&env, &reg, "a");
    let (b, b_digest) = push_image(&env, &reg, "b");
    context(&env, "ctx", &a, &b);
    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let req = HarvestRequest::new(&ctx, "images/shim/*", "registry", ArchiveFormat::Registry);
    let out = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(out.images.len(), 2);
    assert!(out.files.contains(
        &"registry/docker/registry/v2/repositories/team/a/_manifests/tags/1/current/link"
            .to_string()
    ));
    let tree = out.staging_dir().unwrap().join("registry");

    let serving = Registry::start(Options::default());
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(tree.join("docker"))
        .arg(serving.storage())
        .status()
        .unwrap();
    assert!(status.success());
    for (name, digest) in [("a", &a_digest), ("b", &b_digest)] {
        let remote = format!("docker://{}/team/{name}:1", serving.host());
        let out = tool("skopeo", &["inspect", "--tls-verify=false", &remote]);
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["Digest"], digest.as_str());
        // Every blob is served (skopeo verifies each digest while copying).
        let dest = env.path(&format!("copied-{name}"));
        tool(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &remote,
                &format!("oci:{}:x", dest.display()),
            ],
        );
        // And by digest.
        let by_digest = format!("docker://{}/team/{name}@{digest}", serving.host());
        tool("skopeo", &["inspect", "--tls-verify=false", &by_digest]);
    }
}

fn archive_index(path: &Path) -> serde_json::Value {
    let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            assert_eq!(e.header().mtime().unwrap(), 0);
            return serde_json::from_reader(&mut e).unwrap();
        }
    }
    panic!("no index.json in {}", path.display());
}

fn layer_entries(store: &Store, layer: &sealrs::build::Layer) -> Vec<String> {
    let file = store.open_blob(layer.descriptor.digest()).unwrap();
    let mut ar = tar::Archive::new(file);
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn another_platform_is_not_a_cache_hit_and_is_reported() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, _) = push_image(&env, &reg, "a");
    env.write("ctx/images/shim/list", format!("{a}\n"));
    let store = Store::open(env.path("harvest-root")).unwrap();
    let ctx = env.path("ctx");
    let mut req = HarvestRequest::new(&ctx, "images/shim/*", "images", ArchiveFormat::OciArchive);
    let first = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(first.pulled(), 1);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);

    // The image was built for this host; ask for another architecture.
    let other = if cfg!(target_arch = "aarch64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    req.registry.platform = Some(other.to_string());
    let out = harvest::harvest(&store, &req, &Silent).unwrap();
    assert_eq!(
        out.pulled(),
        1,
        "the host's image is not reused for {other}"
    );
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains(&a) && out.warnings[0].contains(other),
        "{:?}",
        out.warnings
    );
    assert!(
        out.warnings[0].contains("images/shim/list:1"),
        "{:?}",
        out.warnings
    );

    req.registry.platform = Some("not a platform".to_string());
    let err = harvest::harvest(&store, &req, &Silent).unwrap_err();
    assert!(err.to_string().contains("invalid platform"), "{err}");
}

#[test]
fn sealrs_build_harvests_into_the_layout_and_a_rebuild_pulls_nothing() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let (a, digest_a) = push_image(&env, &reg, "pause");
    let (b, digest_b) = push_image(&env, &reg, "web");
    context(&env, "k3s", &a, &b);
    env.write(
        "k3s/Kubefile",
        "FROM scratch\nLABEL sealrs.io/type=rootfs sealrs.io/runtime=k3s sealrs.io/version=v1.30.2+k3s1\nCOPY . .\n",
    );
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standins/k3s");
    env.write_mode("k3s/bin/k3s", fs::read(standin).unwrap(), 0o755);

    let build = || {
        let out = env.run(&["build", "-t", "cluster:1", "k3s"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (first, stderr) = build();
    assert!(
        stderr.contains(&format!("harvested {a} ({digest_a})")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("harvested {b} ({digest_b})")),
        "{stderr}"
    );

    // The archives are in the image where k3s imports them, and hold the pushed images.
    let bundle = env.path("bundle");
    let store = Store::open(&env.root).unwrap();
    let image = store.image("docker.io/library/cluster:1").unwrap();
    // The last compressed layer: the installer's (uncompressed) comes after it.
    let layer = image
        .manifest
        .layers()
        .iter()
        .rfind(|l| l.media_type().to_string().ends_with("+zstd"))
        .unwrap()
        .clone();
    let blob = store.open_blob(layer.digest()).unwrap();
    let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(blob).unwrap());
    archive.unpack(&bundle).unwrap();
    for (reference, digest) in [(&a, &digest_a), (&b, &digest_b)] {
        let file = bundle
            .join("images")
            .join(harvest::archive_file_name(reference));
        let seen = skopeo_inspect(&format!("oci-archive:{}", file.display()));
        assert_eq!(seen["Digest"], digest.as_str(), "{}", file.display());
    }

    let requests_before = reg.requests("GET /v2/team/");
    let (second, _) = build();
    assert_eq!(first, second, "same context, same images: same digest");
    assert_eq!(
        reg.requests("GET /v2/team/"),
        requests_before,
        "a rebuild asked the registry again"
    );
}
