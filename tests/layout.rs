//! Rootfs layouts: every runtime's example built with stand-in binaries
//! holds its layout; broken ones are refused with every problem
//! listed and the store's index untouched; `--skip-validation` lets them
//! through; `inspect` shows the verdict; big files are shared between images.

use std::fs;
use std::io::Write as _;

use serde_json::Value;

use sealrs::layout::Layouts;

use crate::common::{tool, Env};

const STANDINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/standins");

/// A docker-archive (`manifest.json`) of about `pad` bytes, zstd-compressed
/// when `zstd` is true: what k3s's airgap archive looks like.
fn image_archive(oci: bool, pad: usize, zstd: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    let filler: Vec<u8> = (0..pad as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    if oci {
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("blobs/sha256/filler", &filler);
        add("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
    } else {
        add("filler/layer.tar", &filler);
        add(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["docker.io/rancher/mirrored-pause:3.6"],"Layers":["filler/layer.tar"]}]"#,
        );
    }
    let tar = builder.into_inner().unwrap();
    if zstd {
        zstd::encode_all(&tar[..], 3).unwrap()
    } else {
        tar
    }
}

fn standin(env: &Env, name: &str, dest: &str) {
    let src = format!("{STANDINS}/{name}");
    let dst = env.path(dest);
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    tool("cp", &["-p", &src, dst.to_str().unwrap()]);
}

/// Makes the k3s stand-in of the example `dir` (from [`example`]) the
/// binary of k3s `version`: what `k3s --version` says and its node reports,
/// as a newer k3s would be another binary.
pub fn standin_version(env: &Env, dir: &str, version: &str) {
    let path = env.path(&format!("{dir}/bin/k3s"));
    let text = fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("STANDIN_VERSION="))
        .expect("the k3s stand-in names its version")
        .to_string();
    fs::write(
        &path,
        text.replacen(&line, &format!("STANDIN_VERSION={version}"), 1),
    )
    .unwrap();
}

/// Copies `Kubefile-examples/<runtime>` to the temp dir as `dir` and fills
/// bin/ and images/ the way scripts/fetch-<runtime>.sh would, with stand-ins.
pub fn example(env: &Env, runtime: &str, dir: &str) -> String {
    let src = format!("{}/Kubefile-examples/{runtime}", env!("CARGO_MANIFEST_DIR"));
    tool("cp", &["-a", &src, env.path(dir).to_str().unwrap()]);
    match runtime {
        "k3s" => {
            standin(env, "k3s", &format!("{dir}/bin/k3s"));
            std::os::unix::fs::symlink("k3s", env.path(&format!("{dir}/bin/kubectl"))).unwrap();
            env.write(
                &format!("{dir}/images/k3s-airgap-images-amd64.tar.zst"),
                image_archive(false, 64 << 10, true),
            );
        }
        "kubeadm" => {
            for b in [
                "kubeadm",
                "kubelet",
                "kubectl",
                "crictl",
                "containerd",
                "containerd-shim-runc-v2",
                "ctr",
                "runc",
            ] {
                standin(env, b, &format!("{dir}/bin/{b}"));
            }
            for plugin in ["bridge", "host-local", "loopback", "portmap"] {
                standin(env, "cni-plugin", &format!("{dir}/bin/cni/{plugin}"));
            }
            env.write(
                &format!("{dir}/images/shim/kubeadm-images"),
                "registry.k8s.io/kube-apiserver:v1.30.2\nregistry.k8s.io/pause:3.9\n",
            );
        }
        "k0s" => {
            standin(env, "k0s", &format!("{dir}/bin/k0s"));
            env.write(
                &format!("{dir}/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64.tar"),
                image_archive(true, 16 << 10, false),
            );
        }
        other => panic!("no example for {other}"),
    }
    dir.to_string()
}

fn build_args(tag: &str, ctx: &str) -> Vec<String> {
    [
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        tag,
        ctx,
    ]
    .map(String::from)
    .to_vec()
}

fn inspect_json(env: &Env, image: &str) -> Value {
    serde_json::from_str(&env.ok(&["inspect", image])).unwrap()
}

fn index_of(env: &Env) -> String {
    env.store_state().1
}

#[test]
fn every_example_builds_with_stand_ins_and_holds_its_layout() {
    let env = Env::new();
    for runtime in sealrs::runtime::names() {
        let layout = Layouts::embedded().rootfs(runtime).unwrap();
        let binary = layout.marker.as_deref().unwrap();
        let ctx = example(&env, runtime, runtime);
        let tag = format!("{runtime}:test");
        let args = build_args(&tag, &ctx);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{runtime}: {stderr}");
        assert!(
            stderr.contains(&format!("holds layouts/{runtime}.toml")),
            "{stderr}"
        );

        let doc = inspect_json(&env, &tag);
        let cluster = &doc["cluster"];
        assert_eq!(cluster["holds"], true, "{runtime}: {cluster:#}");
        assert_eq!(cluster["type"]["value"], "rootfs");
        assert_eq!(cluster["runtime"]["value"], runtime);
        assert_eq!(cluster["runtime"]["source"]["from"], "label");
        assert!(cluster["version"]["value"]
            .as_str()
            .unwrap()
            .starts_with("v1.30.2"));
        assert_eq!(cluster["problems"], serde_json::json!([]));
        let components = cluster["components"].as_array().unwrap();
        let binary_row = components
            .iter()
            .find(|c| c["path"] == binary)
            .unwrap_or_else(|| panic!("{binary} not among {components:#?}"));
        assert!(binary_row["size"].as_u64().unwrap() > 0);
        assert_eq!(binary_row["detail"], "script", "a stand-in is a script");
    }
    // Archives are components too, with what they hold.
    let k3s = inspect_json(&env, "k3s:test");
    let archive = k3s["cluster"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "image-archive")
        .cloned()
        .unwrap();
    assert_eq!(archive["detail"], "docker-archive, zstd");

    let table = env.ok(&["inspect", "--format", "table", "k0s:test"]);
    for expected in [
        "Type:       rootfs (label sealrs.io/type)",
        "Runtime:    k0s (label sealrs.io/runtime)",
        "Version:    v1.30.2+k0s.0",
        "bin/k0s",
        "oci-archive",
        "Layout:     holds layouts/k0s.toml",
    ] {
        assert!(table.contains(expected), "{expected:?} not in\n{table}");
    }
}

/// The k3s example broken in every way validation knows.
fn broken_k3s(env: &Env) -> String {
    let ctx = example(env, "k3s", "broken");
    fs::remove_file(env.path("broken/bin/k3s")).unwrap();
    // Without bin/k3s the runtime label must carry the runtime; it does.
    env.write_mode("broken/bin/helm", b"#!/bin/sh\n", 0o644);
    env.write("broken/bin/notes", b"not a program");
    env.write_mode("broken/bin/notes", b"not a program", 0o755);
    env.write(
        "broken/manifests/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   bad: indent\n",
    );
    env.write("broken/images/fake.tar.zst", "this is not an archive\n");
    env.write("broken/images/shim/list", "nginx:1.25\nNOT A REFERENCE\n");
    // No version label.
    env.write(
        "broken/Kubefile",
        "FROM scratch\nLABEL sealrs.io/type=rootfs sealrs.io/runtime=k3s\nCOPY . .\n",
    );
    env.write("broken/.kubefileignore", "Kubefile\nREADME.md\n");
    ctx
}

#[test]
fn a_broken_rootfs_is_refused_with_every_problem_and_the_index_untouched() {
    let env = Env::new();
    let good = example(&env, "k3s", "good");
    env.build("k3s:good", &good);
    let ctx = broken_k3s(&env);
    let before = index_of(&env);

    let stderr = env.fails(&["build", "--no-images", "-t", "k3s:broken", &ctx]);
    for expected in [
        "docker.io/library/k3s:broken does not hold the layouts/k3s.toml layout; 8 problems",
        "label sealrs.io/version is missing",
        "bin/k3s: missing; expected the k3s binary",
        "bin/helm: not executable (mode 0644)",
        "bin/notes: not a program",
        "bin/kubectl: a symlink to k3s, which is not in the image",
        "manifests/bad.yaml:5:",
        "not valid YAML",
        "images/fake.tar.zst: not an image archive",
        "images/shim/list:2: \"NOT A REFERENCE\" is not an image reference",
        "--skip-validation",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
    assert_eq!(
        index_of(&env),
        before,
        "a refused build must not touch the index"
    );
    let images = env.ok(&["images"]);
    assert!(!images.contains("broken"), "{images}");
    env.assert_blobs_intact();
}

#[test]
fn skip_validation_lets_a_broken_rootfs_through_and_inspect_shows_the_problems() {
    let env = Env::new();
    let ctx = broken_k3s(&env);
    let out = env.run(&[
        "build",
        "--no-images",
        "--skip-validation",
        "-t",
        "k3s:broken",
        &ctx,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = env.ok(&["inspect", "--format", "table", "k3s:broken"]);
    assert!(
        table.contains("does NOT hold layouts/k3s.toml: 8 problems"),
        "{table}"
    );
    assert!(table.contains("- bin/k3s: missing"), "{table}");
    assert!(table.contains("- manifests/bad.yaml:5:"), "{table}");
    let doc = inspect_json(&env, "k3s:broken");
    assert_eq!(doc["cluster"]["holds"], false);
    assert_eq!(doc["cluster"]["problems"].as_array().unwrap().len(), 8);
}

#[test]
fn a_missing_runtime_label_is_inferred_from_the_rootfs_written_and_shown() {
    let env = Env::new();
    let ctx = example(&env, "k3s", "k3s");
    env.write(
        "k3s/Kubefile",
        "FROM scratch\nLABEL sealos.io.type=rootfs version=v1.30.2+k3s1\nCOPY bin ./bin\nCOPY images ./images\nCOPY manifests ./manifests\nCOPY etc ./etc\n",
    );
    let build = |tag: &str, extra: &[&str]| {
        let mut args = vec!["build", "--no-images", "--platform", "linux/amd64"];
        args.extend(extra);
        args.extend(["-t", tag, &ctx]);
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let stderr = build("k3s:inferred", &[]);
    assert!(
        stderr.contains("note: runtime k3s inferred from bin/k3s"),
        "{stderr}"
    );
    // Build writes what it inferred, for run (tests/labels.rs) to read.
    let table = env.ok(&["inspect", "--format", "table", "k3s:inferred"]);
    assert!(
        table.contains("Runtime:    k3s (label sealrs.io/runtime)"),
        "{table}"
    );
    assert!(
        table.contains("Type:       rootfs (label sealos.io.type)"),
        "{table}"
    );
    assert!(
        table.contains("Version:    v1.30.2+k3s1 (label version)"),
        "{table}"
    );
    // Unchecked, nothing is written, and inspect shows the inference.
    build("k3s:unchecked", &["--skip-validation"]);
    let table = env.ok(&["inspect", "--format", "table", "k3s:unchecked"]);
    assert!(
        table.contains("Runtime:    k3s (inferred from bin/k3s)"),
        "{table}"
    );
    let doc = inspect_json(&env, "k3s:unchecked");
    assert_eq!(doc["cluster"]["runtime"]["source"]["from"], "inferred");
    assert_eq!(doc["cluster"]["runtime"]["source"]["key"], "bin/k3s");
}

#[test]
fn k0s_refuses_manifests_nested_below_a_stack_naming_the_path() {
    let env = Env::new();
    let k0s = example(&env, "k0s", "k0s");
    env.write("k0s/manifests/app/ok.yaml", "kind: ConfigMap\n");
    env.write("k0s/manifests/app/extra/deep.yaml", "kind: ConfigMap\n");
    let stderr = env.fails(&["build", "--no-images", "-t", "k0s:nested", &k0s]);
    assert!(
        stderr.contains("manifests/app/extra/deep.yaml: not allowed here"),
        "{stderr}"
    );
    assert!(stderr.contains("move the file up"), "{stderr}");
    assert!(stderr.contains("1 problem"), "{stderr}");
}

#[test]
fn k0s_refuses_manifests_outside_a_stack_and_kubeadm_needs_all_its_parts() {
    let env = Env::new();
    let k0s = example(&env, "k0s", "k0s");
    env.write("k0s/manifests/loose.yaml", "kind: ConfigMap\n");
    let stderr = env.fails(&[
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k0s:loose",
        &k0s,
    ]);
    assert!(
        stderr.contains("manifests/loose.yaml: not allowed here"),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem"), "{stderr}");

    let kubeadm = example(&env, "kubeadm", "kubeadm");
    fs::remove_file(env.path("kubeadm/bin/runc")).unwrap();
    fs::remove_file(env.path("kubeadm/etc/systemd/kubelet.service.d/10-kubeadm.conf")).unwrap();
    env.write("kubeadm/etc/containerd/config.toml", "version = \n");
    let stderr = env.fails(&[
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "kubeadm:bad",
        &kubeadm,
    ]);
    for expected in [
        "bin/runc: missing",
        "etc/systemd/kubelet.service.d/10-kubeadm.conf: missing",
        "etc/containerd/config.toml: not valid TOML",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
}

#[test]
fn images_without_a_type_label_are_built_unchecked_with_a_note() {
    let env = Env::new();
    env.write("plain/Kubefile", "FROM scratch\nCOPY . /\n");
    env.write_mode("plain/bin/k3s", b"no exec bit, not a program", 0o644);
    let out = env.run(&["build", "--no-images", "-t", "plain:1", "plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no sealrs.io/type label"), "{stderr}");
    let doc = inspect_json(&env, "plain:1");
    assert_eq!(doc["cluster"]["layout"], Value::Null);
    assert_eq!(doc["cluster"]["holds"], false);
}

#[test]
fn two_k3s_images_differing_only_in_manifests_share_the_binary_and_airgap_blobs() {
    let env = Env::new();
    let a = example(&env, "k3s", "a");
    let b = example(&env, "k3s", "b");
    env.write(
        "b/manifests/extra.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: extra\n",
    );
    let layers = |tag: &str, ctx: &str| -> Vec<(String, u64)> {
        env.ok(&[
            "build",
            "--no-images",
            "-q",
            "--platform",
            "linux/amd64",
            "--split-threshold",
            "1K",
            "-t",
            tag,
            ctx,
        ]);
        let doc = inspect_json(&env, tag);
        doc["manifest"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["digest"].as_str().unwrap().to_string(),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let la = layers("k3s:a", &a);
    let lb = layers("k3s:b", &b);
    let differing: Vec<_> = la.iter().filter(|l| !lb.contains(l)).collect();
    assert_eq!(
        differing.len(),
        1,
        "only the manifests layer differs: {la:?} {lb:?}"
    );
    // The binary and the airgap archive got layers of their own, in both images.
    let mut biggest = la.clone();
    biggest.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    for big in &biggest[..2] {
        assert!(lb.contains(big), "{big:?} not shared: {lb:?}");
    }
    let standin_size = fs::metadata(format!("{STANDINS}/k3s")).unwrap().len();
    assert!(
        standin_size > 1024,
        "the k3s stand-in must exceed the 1K threshold"
    );
    // Blobs in the store are shared, not copied.
    let blobs = env.store_state().0;
    for (digest, _) in &biggest[..2] {
        let hex = digest.trim_start_matches("sha256:");
        assert_eq!(blobs.iter().filter(|b| *b == hex).count(), 1);
    }
    let _ = std::io::stdout().flush();
}

/// `etc/kubeadm.yaml` is refused at build, with file:line, when it is not
/// YAML or holds a document kubeadm does not read (an old apiVersion).
#[test]
fn kubeadm_refuses_a_kubeadm_yaml_it_cannot_pass_to_kubeadm() {
    let env = Env::new();
    let kubeadm = example(&env, "kubeadm", "kubeadm");
    let build = |tag: &str| {
        env.fails(&[
            "build",
            "--no-images",
            "--platform",
            "linux/amd64",
            "-t",
            tag,
            &kubeadm,
        ])
    };
    env.write(
        "kubeadm/etc/kubeadm.yaml",
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n---\n# old\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n",
    );
    let stderr = build("kubeadm:old");
    assert!(
        stderr.contains("etc/kubeadm.yaml:4: apiVersion/kind kubeadm.k8s.io/v1beta2/ClusterConfiguration is not one"),
        "{stderr}"
    );
    env.write(
        "kubeadm/etc/kubeadm.yaml",
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: [10.244.0.0/16\n",
    );
    let stderr = build("kubeadm:broken");
    assert!(
        stderr.contains("etc/kubeadm.yaml:5:") && stderr.contains("not valid YAML"),
        "{stderr}"
    );
}

/// A kubeadm image whose `images/shim/*` lists images but not the pause
/// image of its version (`kubeadm config images list` prints
/// registry.k8s.io/pause:3.9 for v1.30): built, with a warning naming it;
/// with the pause image listed, no warning.
#[test]
fn kubeadm_warns_at_build_when_its_image_lists_lack_the_pause_image() {
    let env = Env::new();
    let kubeadm = example(&env, "kubeadm", "kubeadm");
    let build = |tag: &str| {
        let args = build_args(tag, &kubeadm);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&refs);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let stderr = build("kubeadm:listed");
    assert!(!stderr.contains("pause"), "{stderr}");
    env.write(
        "kubeadm/images/shim/kubeadm-images",
        "registry.k8s.io/kube-apiserver:v1.30.2\n# registry.k8s.io/pause:3.9\nregistry.k8s.io/pause:3.6\n",
    );
    let stderr = build("kubeadm:no-pause");
    assert!(
        stderr.contains("warning: images/shim/* lists images but not registry.k8s.io/pause:3.9, which kubeadm v1.30.2 needs to run without pulls"),
        "{stderr}"
    );
}
