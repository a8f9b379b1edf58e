use super::*;
use crate::cluster::{Cluster, ClusterArgs};
use crate::plan::Action;
use crate::runtime::{ImageInfo, JoinSecrets, K0s, K3s, Kubeadm, Runtime};

const PASSWORD: &str = "0123456789abcdef0123456789abcdef";

fn cluster(with_password: bool) -> Cluster {
    let mut c = Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into()],
        nodes: vec!["10.0.0.2".into()],
        ..ClusterArgs::default()
    })
    .unwrap();
    if with_password {
        c.status.hub_password = Some(Secret::new(PASSWORD));
    }
    c
}

const CONTAINERD_WITH_CONFIG_PATH: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";

/// A host context whose rootfs holds a registry tree and an image list.
fn ctx<'a>(c: &'a Cluster, i: usize, img: &'a ImageInfo, tree: bool) -> HostContext<'a> {
    let mut ctx = HostContext::new(c, &c.hosts[i], img, secrets()).unwrap();
    ctx.rootfs = "/var/lib/sealrs-host/rootfs/abc123".into();
    ctx.rootfs_files = vec!["bin/registry".into(), "images/shim/images.txt".into()];
    if tree {
        ctx.rootfs_files.push(format!(
            "{TREE}repositories/library/app/_manifests/tags/1/current/link"
        ));
    }
    ctx.rootfs_texts.insert(
        "images/shim/images.txt".into(),
        "# comment\ndocker.io/library/app:1\nregistry.k8s.io/pause:3.9\n\nquay.io/x/y:2\n".into(),
    );
    ctx.rootfs_texts.insert(
        "etc/containerd/config.toml".into(),
        CONTAINERD_WITH_CONFIG_PATH.into(),
    );
    ctx
}

fn secrets() -> JoinSecrets {
    JoinSecrets {
        token: Some(Secret::new("K10abc::server:s3cret")),
        controller_token: Some(Secret::new("ctrl")),
        ca_cert_hash: Some(format!("sha256:{}", "ab".repeat(32))),
        certificate_key: Some(Secret::new("cd".repeat(32))),
    }
}

fn hub_ids(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| id.starts_with("hub-"))
        .collect()
}

fn written(plan: &Plan, id: &str) -> (String, String, u32, bool) {
    match &plan.step(id).unwrap_or_else(|| panic!("no {id}")).action {
        Action::WriteFile {
            path,
            content: FileContent::Bytes { bytes },
            mode,
            sensitive,
            ..
        } => (
            path.clone(),
            String::from_utf8(bytes.clone()).unwrap(),
            *mode,
            *sensitive,
        ),
        Action::InstallUnit { name, content } => (name.clone(), content.clone(), 0o644, false),
        other => panic!("{id} is {other:?}"),
    }
}

#[test]
fn the_first_master_serves_the_tree_and_every_host_pulls_through_it() {
    let c = cluster(true);
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let first = Kubeadm.install(&ctx(&c, 0, &img, true)).unwrap();
    first.validate().unwrap();
    assert_eq!(
        hub_ids(&first),
        [
            "hub-dir",
            "hub-data",
            "hub-merge",
            "hub-merged",
            "hub-config",
            "hub-htpasswd",
            "hub-unit",
            "hub-enable",
            "hub-restart",
            "hub-start",
            "hub-wait",
            "hub-hosts-line",
            "hub-mirror-0",
            "hub-mirror-1",
            "hub-mirror-2",
            "hub-mirror-3",
            "hub-mirror-4",
        ]
    );
    // The hub is up before the runtime's own steps (containerd, kubeadm init).
    let pos = |id: &str| first.steps.iter().position(|s| s.id == id).unwrap();
    assert!(pos("hub-mirror-4") < pos("place-rootfs"));

    let Action::Run { argv, .. } = &first.step("hub-merge").unwrap().action else {
        panic!()
    };
    assert_eq!(
        argv,
        &[
            "cp",
            "-a",
            "-l",
            "--remove-destination",
            "/var/lib/sealrs-host/rootfs/abc123/registry/docker",
            HUB_DATA
        ]
    );
    assert_eq!(
        first.step("hub-merge").unwrap().check,
        Check::Creates {
            path: format!("{HUB_MERGED}/abc123")
        }
    );
    let (_, unit, _, _) = written(&first, "hub-unit");
    assert!(
        unit.contains(&format!(
            "ExecStart=/var/lib/sealrs-host/rootfs/abc123/bin/registry serve {HUB_CONFIG}\n"
        )),
        "{unit}"
    );
    let (path, htpasswd, mode, sensitive) = written(&first, "hub-htpasswd");
    assert_eq!(
        (path.as_str(), mode, sensitive),
        (HUB_HTPASSWD, 0o600, true)
    );
    let (user, hash) = htpasswd.trim_end().split_once(':').unwrap();
    assert_eq!(user, HUB_USER);
    assert!(bcrypt::verify(PASSWORD, hash).unwrap());
    let (_, config, _, _) = written(&first, "hub-config");
    assert!(!config.contains(PASSWORD));
    assert!(
        config.contains(&format!("rootdirectory: {HUB_DATA}")),
        "{config}"
    );

    // Every listed registry, the fallback and the hub itself, each 0600
    // (the header carries the credentials).
    let mirrors: Vec<(String, String, u32, bool)> = (0..5)
        .map(|i| written(&first, &format!("hub-mirror-{i}")))
        .collect();
    let paths: Vec<&str> = mirrors.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "/etc/containerd/certs.d/quay.io/hosts.toml",
            "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
            "/etc/containerd/certs.d/_default/hosts.toml",
            "/etc/containerd/certs.d/sealos.hub:5000/hosts.toml",
        ]
    );
    assert!(mirrors.iter().all(|m| m.2 == 0o600 && m.3));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{HUB_USER}:{PASSWORD}"));
    let quay: toml::Table = mirrors[1].1.parse().unwrap();
    assert_eq!(quay["server"].as_str(), Some("https://quay.io"));
    let host = &quay["host"]["http://sealos.hub:5000"];
    assert_eq!(
        host["capabilities"].as_array().unwrap().len(),
        2,
        "{}",
        mirrors[1].1
    );
    assert_eq!(
        host["header"]["Authorization"].as_str(),
        Some(format!("Basic {auth}").as_str())
    );
    let fallback: toml::Table = mirrors[3].1.parse().unwrap();
    assert!(fallback.get("server").is_none());

    // A worker names the hub and mirrors, and serves nothing.
    let worker = Kubeadm.join(&ctx(&c, 1, &img, true)).unwrap();
    assert_eq!(hub_ids(&worker)[0], "hub-hosts-line");
    assert!(worker.step("hub-unit").is_none());
    let Action::Run { argv, .. } = &worker.step("hub-hosts-line").unwrap().action else {
        panic!()
    };
    assert_eq!(&argv[3..], ["hub-hosts", "10.0.0.1", "sealos.hub"]);
}

#[test]
fn no_tree_or_no_password_means_no_hub() {
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let with = cluster(true);
    let without = cluster(false);
    for (c, tree) in [(&with, false), (&without, true)] {
        let plan = Kubeadm.install(&ctx(c, 0, &img, tree)).unwrap();
        assert!(hub_ids(&plan).is_empty(), "{:?}", hub_ids(&plan));
    }
}

#[test]
fn the_htpasswd_line_is_the_same_for_the_same_password() {
    let p = Secret::new(PASSWORD);
    assert_eq!(htpasswd_line(&p), htpasswd_line(&p));
    assert_ne!(htpasswd_line(&p), htpasswd_line(&Secret::new("other")));
}

#[test]
fn k3s_registries_yaml_mirrors_the_listed_registries_with_the_credentials() {
    let c = cluster(true);
    let img = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
    let plan = K3s.join(&ctx(&c, 1, &img, true)).unwrap();
    plan.validate().unwrap();
    let step = plan.step("hub-registries-yaml").unwrap();
    let Action::WriteFile {
        path,
        content: FileContent::YamlMerge { base, overlay, .. },
        mode,
        sensitive,
        ..
    } = &step.action
    else {
        panic!("{step:?}")
    };
    assert_eq!(
        (path.as_str(), *mode, *sensitive),
        (K3S_REGISTRIES, 0o600, true)
    );
    assert_eq!(
        base.as_deref(),
        Some("/var/lib/sealrs-host/rootfs/abc123/etc/registries.yaml")
    );
    let yaml: Value = serde_yaml_ng::from_str(overlay).unwrap();
    for registry in ["docker.io", "registry.k8s.io", "quay.io", "*"] {
        assert_eq!(
            yaml["mirrors"][registry]["endpoint"][0].as_str(),
            Some("http://sealos.hub:5000"),
            "{overlay}"
        );
    }
    let auth = &yaml["configs"]["sealos.hub:5000"]["auth"];
    assert_eq!(auth["username"].as_str(), Some(HUB_USER));
    assert_eq!(auth["password"].as_str(), Some(PASSWORD));
    assert!(plan.step("hub-mirror-0").is_none());
}

#[test]
fn k0s_gets_the_hosts_files_and_a_drop_in_that_reads_them() {
    let c = cluster(true);
    let img = ImageInfo::new("k0s", "v1.30.2+k0s.0").unwrap();
    let plan = K0s.join(&ctx(&c, 1, &img, true)).unwrap();
    plan.validate().unwrap();
    let (path, text, _, _) = written(&plan, "hub-k0s-drop-in");
    assert_eq!(path, K0S_DROP_IN);
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(
        table["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"].as_str(),
        Some(CERTS_D)
    );
    assert!(plan.step("hub-mirror-4").is_some());
}

#[test]
fn uninstall_removes_the_unit_the_hosts_line_and_only_our_mirror_files() {
    let c = cluster(true);
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let plan = Kubeadm.uninstall(&ctx(&c, 0, &img, true)).unwrap();
    plan.validate().unwrap();
    let ids = hub_ids(&plan);
    for id in [
        "hub-stop",
        "hub-disable",
        "hub-remove-unit",
        "hub-remove-dir",
        "hub-remove-hosts-line",
        "hub-remove-mirror-0",
        "hub-remove-certs-d",
    ] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
    let remove = plan.step("hub-remove-mirror-0").unwrap();
    let Check::IfOutput { argv } = &remove.check else {
        panic!("{remove:?}")
    };
    assert_eq!(
        &argv[4..],
        [
            "# sealrs-hub",
            "/etc/containerd/certs.d/docker.io/hosts.toml"
        ]
    );
    let Action::Run { argv, .. } = &plan.step("hub-remove-hosts-line").unwrap().action else {
        panic!()
    };
    assert_eq!(&argv[3..], ["hub-hosts", "", "sealos.hub"]);
}

#[test]
fn kubeadm_refuses_a_containerd_config_without_config_path_when_it_has_a_hub() {
    let c = cluster(true);
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let mut context = ctx(&c, 1, &img, true);
    assert!(check_containerd_config(
        &context,
        "etc/containerd/config.toml",
        Some(CONTAINERD_WITH_CONFIG_PATH)
    )
    .is_ok());
    context.rootfs_texts.insert(
        "etc/containerd/config.toml".into(),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n".into(),
    );
    let err = Kubeadm.prerequisites(&context).unwrap_err().to_string();
    assert!(err.contains("etc/containerd/config.toml"), "{err}");
    assert!(err.contains("no config_path"), "{err}");
    assert!(
        err.contains("config_path = \"/etc/containerd/certs.d\""),
        "{err}"
    );
    // Without a tree nothing is asked of it.
    let plain = ctx(&c, 1, &img, false);
    assert!(check_containerd_config(&plain, "etc/containerd/config.toml", None).is_ok());
}

#[test]
fn a_first_master_named_by_hostname_cannot_be_put_in_etc_hosts() {
    let mut c = Cluster::from_args(&ClusterArgs {
        masters: vec!["master-0.example".into()],
        ..ClusterArgs::default()
    })
    .unwrap();
    c.status.hub_password = Some(Secret::new(PASSWORD));
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let err = Kubeadm
        .install(&ctx(&c, 0, &img, true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("master-0.example") && err.contains("by its IP"),
        "{err}"
    );
}

#[test]
fn a_host_with_the_registry_role_serves_instead_of_the_first_master() {
    let mut c = cluster(true);
    c.hosts[1].labels.push("registry".into());
    assert_eq!(serving_host(&c).unwrap().key(), "10.0.0.2");
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let first = Kubeadm.install(&ctx(&c, 0, &img, true)).unwrap();
    assert!(first.step("hub-unit").is_none());
    let registry = Kubeadm.join(&ctx(&c, 1, &img, true)).unwrap();
    assert!(registry.step("hub-unit").is_some());
    for plan in [&first, &registry] {
        let Action::Run { argv, .. } = &plan.step("hub-hosts-line").unwrap().action else {
            panic!()
        };
        assert_eq!(&argv[3..], ["hub-hosts", "10.0.0.2", "sealos.hub"]);
    }
}

#[test]
fn an_application_images_tree_alone_makes_the_hub_with_nothing_to_merge_at_install() {
    let c = cluster(true);
    let img = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
    let mut first = ctx(&c, 0, &img, false);
    first.hub_elsewhere = true;
    let plan = Kubeadm.install(&first).unwrap();
    plan.validate().unwrap();
    assert!(plan.step("hub-unit").is_some());
    assert!(plan.step("hub-merge").is_none());
    let mut worker = ctx(&c, 1, &img, false);
    worker.hub_elsewhere = true;
    let plan = Kubeadm.join(&worker).unwrap();
    assert!(plan.step("hub-hosts-line").is_some());
}
