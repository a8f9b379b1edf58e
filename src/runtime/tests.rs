use std::collections::BTreeMap;

use super::*;
use crate::cluster::{ClusterArgs, HostStatus};
use crate::plan::{Action, Check, FileContent, ServiceOp};

/// A cluster from `run`'s flags (the runtimes' own test modules use it too).
pub(super) fn cluster(masters: &str, nodes: &str, env: &[&str]) -> Cluster {
    Cluster::from_args(&ClusterArgs {
        masters: vec![masters.into()],
        nodes: vec![nodes.into()],
        env: env.iter().map(|s| s.to_string()).collect(),
        ..ClusterArgs::default()
    })
    .unwrap()
}

fn image(runtime: &str, version: &str) -> ImageInfo {
    ImageInfo::new(runtime, version).unwrap()
}

fn secrets() -> JoinSecrets {
    JoinSecrets {
        token: Some(Secret::new("K10abc::server:s3cret")),
        controller_token: Some(Secret::new("ctrl-t0ken")),
        ca_cert_hash: Some(format!("sha256:{}", "ab".repeat(32))),
        certificate_key: Some(Secret::new("cd".repeat(32))),
    }
}

fn ctx<'a>(c: &'a Cluster, i: usize, img: &'a ImageInfo) -> HostContext<'a> {
    HostContext::new(c, &c.hosts[i], img, secrets()).unwrap()
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.id.as_str()).collect()
}

fn argv(plan: &Plan, id: &str) -> Vec<String> {
    match &plan
        .step(id)
        .unwrap_or_else(|| panic!("no step {id}"))
        .action
    {
        Action::Run { argv, .. } => argv.clone(),
        other => panic!("{id} is {other:?}"),
    }
}

fn file_text(plan: &Plan, id: &str) -> (String, String, u32) {
    match &plan.step(id).unwrap().action {
        Action::WriteFile {
            path,
            content: FileContent::Bytes { bytes },
            mode,
            ..
        } => (
            path.clone(),
            String::from_utf8(bytes.clone()).unwrap(),
            *mode,
        ),
        Action::InstallUnit { name, content } => (name.clone(), content.clone(), 0o644),
        other => panic!("{id} is {other:?}"),
    }
}

#[test]
fn k3s_first_server() {
    let c = cluster(
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "10.0.0.4",
        &["POD_CIDR=10.42.0.0/16"],
    );
    let img = image("k3s", "v1.30.2+k3s1");
    let plan = K3s.install(&ctx(&c, 0, &img)).unwrap();
    plan.validate().unwrap();
    assert_eq!(
        ids(&plan),
        [
            "place-rootfs",
            "link-kubectl",
            "link-crictl",
            "link-ctr",
            "config-dir",
            "config",
            "env-file",
            "unit",
            "enable",
            "restart",
            "start",
            "wait-token",
            "read-token",
            "wait-kubeconfig",
            "read-kubeconfig"
        ]
    );
    let (_, unit, _) = file_text(&plan, "unit");
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(unit.contains("\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\n"));
    assert!(
        unit.ends_with("ExecStart=/usr/local/bin/k3s server --cluster-init\n"),
        "{unit}"
    );
    let (path, env, mode) = file_text(&plan, "env-file");
    assert_eq!(
        (path.as_str(), env.as_str(), mode),
        ("/etc/systemd/system/k3s.service.env", "", 0o600)
    );
    match &plan.step("config").unwrap().action {
        Action::WriteFile {
            path,
            content: FileContent::YamlMerge { base, overlay, .. },
            mode,
            ..
        } => {
            assert_eq!(path, "/etc/rancher/k3s/config.yaml");
            assert_eq!(
                base.as_deref(),
                Some("/var/lib/sealrs-host/rootfs/etc/config.yaml")
            );
            assert_eq!(
                overlay,
                "cluster-cidr: 10.42.0.0/16\nnode-taint:\n- node-role.kubernetes.io/control-plane:NoSchedule\nnode-ip: 10.0.0.1\n"
            );
            assert_eq!(*mode, 0o600);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plan.step("restart").unwrap().check,
        Check::IfChanged {
            steps: vec![
                "place-rootfs".into(),
                "config".into(),
                "env-file".into(),
                "unit".into()
            ],
            unit_active: Some("k3s.service".into())
        }
    );
    match &plan.step("read-token").unwrap().action {
        Action::ReadFile { path, capture } => {
            assert_eq!(path, "/var/lib/rancher/k3s/server/token");
            assert_eq!(capture.key, k3s::TOKEN_CAPTURE);
            assert!(capture.sensitive);
        }
        other => panic!("{other:?}"),
    }
    // Install is for the first master only.
    assert!(matches!(
        K3s.install(&ctx(&c, 1, &img)),
        Err(RuntimeError::WrongHost { .. })
    ));
}

#[test]
fn k3s_join_server_and_agent() {
    let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
    let img = image("k3s", "v1.30.2+k3s1");
    let server = K3s.join(&ctx(&c, 1, &img)).unwrap();
    server.validate().unwrap();
    let (_, unit, _) = file_text(&server, "unit");
    assert!(
        unit.ends_with("ExecStart=/usr/local/bin/k3s server --server https://10.0.0.1:6443\n"),
        "{unit}"
    );
    assert!(!unit.contains("s3cret"));
    let (_, env, mode) = file_text(&server, "env-file");
    assert_eq!(
        (env.as_str(), mode),
        ("K3S_TOKEN=\"K10abc::server:s3cret\"\n", 0o600)
    );
    assert_eq!(server.steps.last().unwrap().id, "wait-kubeconfig");

    let agent = K3s.join(&ctx(&c, 3, &img)).unwrap();
    agent.validate().unwrap();
    let (name, unit, _) = file_text(&agent, "unit");
    assert_eq!(name, "k3s-agent.service");
    // install.sh: agents are Type=notify too.
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    assert!(unit.contains("EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env"));
    assert!(
        unit.ends_with("ExecStart=/usr/local/bin/k3s agent\n"),
        "{unit}"
    );
    let (path, env, _) = file_text(&agent, "env-file");
    assert_eq!(path, "/etc/systemd/system/k3s-agent.service.env");
    assert_eq!(
        env,
        "K3S_TOKEN=\"K10abc::server:s3cret\"\nK3S_URL=\"https://10.0.0.1:6443\"\n"
    );
    assert_eq!(
        agent.step("start").unwrap().check,
        Check::UnitActive {
            unit: "k3s-agent.service".into()
        }
    );
    // Nothing in any argv or unit carries the token.
    let dry = agent.render_dry_run();
    assert!(!dry.contains("s3cret"), "{dry}");

    let mut no_secret = ctx(&c, 3, &img);
    no_secret.secrets = JoinSecrets::default();
    assert!(matches!(
        K3s.join(&no_secret),
        Err(RuntimeError::MissingSecret {
            secret: "token",
            ..
        })
    ));
    assert!(matches!(
        K3s.join(&ctx(&c, 0, &img)),
        Err(RuntimeError::WrongHost { .. })
    ));
}

#[test]
fn k3s_registers_through_the_control_plane_endpoint_and_signs_it() {
    let c = cluster(
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "10.0.0.4",
        &["CONTROL_PLANE_ENDPOINT=lb.example.com:7443"],
    );
    let img = image("k3s", "v1.30.2+k3s1");
    K3s.verify(&c, &img).unwrap();
    let first = K3s.install(&ctx(&c, 0, &img)).unwrap();
    let (_, unit, _) = file_text(&first, "unit");
    assert!(
        unit.ends_with(
            "ExecStart=/usr/local/bin/k3s server --cluster-init --tls-san lb.example.com\n"
        ),
        "{unit}"
    );
    let server = K3s.join(&ctx(&c, 1, &img)).unwrap();
    let (_, unit, _) = file_text(&server, "unit");
    assert!(
        unit.ends_with(
            "ExecStart=/usr/local/bin/k3s server --server https://lb.example.com:7443 --tls-san lb.example.com\n"
        ),
        "{unit}"
    );
    let agent = K3s.join(&ctx(&c, 3, &img)).unwrap();
    let (_, env, _) = file_text(&agent, "env-file");
    assert!(
        env.ends_with("K3S_URL=\"https://lb.example.com:7443\"\n"),
        "{env}"
    );
    let (_, unit, _) = file_text(&agent, "unit");
    assert!(!unit.contains("tls-san"), "{unit}");

    let v6 = cluster("10.0.0.1", "", &["CONTROL_PLANE_ENDPOINT=[fd00::9]:6443"]);
    K3s.verify(&v6, &img).unwrap();
    let (_, unit, _) = file_text(&K3s.install(&ctx(&v6, 0, &img)).unwrap(), "unit");
    assert!(unit.ends_with("--tls-san fd00::9\n"), "{unit}");
}

#[test]
fn k3s_refuses_a_bad_cidr_or_endpoint_naming_the_value_and_what_to_do() {
    let img = image("k3s", "v1.30.2+k3s1");
    for (pair, says) in [
        ("SERVICE_CIDR=not-a-cidr", "a CIDR such as 10.42.0.0/16"),
        ("POD_CIDR=10.42.0.0/33", "--cluster-cidr needs a CIDR"),
        ("CONTROL_PLANE_ENDPOINT=lb.example.com", "no port"),
        (
            "CONTROL_PLANE_ENDPOINT=https://lb:6443",
            "a scheme is not part of it",
        ),
        ("CONTROL_PLANE_ENDPOINT=fd00::9:6443", "in brackets"),
        ("CONTROL_PLANE_ENDPOINT=lb:0", "is not a port"),
        (
            "CONTROL_PLANE_ENDPOINT=bad host:6443",
            "neither an IP address nor a host name",
        ),
    ] {
        let c = cluster("10.0.0.1", "", &[pair]);
        let violations = K3s.verify(&c, &img).unwrap_err();
        let (key, value) = pair.split_once('=').unwrap();
        assert_eq!(violations.len(), 1, "{pair}: {violations:?}");
        let text = violations[0].to_string();
        assert!(
            text.starts_with(&format!("-e {key}={value:?}: ")) && text.contains(says),
            "{pair}: {text}"
        );
    }
    for ok in [
        "SERVICE_CIDR=10.43.0.0/16",
        "POD_CIDR=10.42.0.0/16,2001:cafe:42::/56",
        "CONTROL_PLANE_ENDPOINT=10.0.0.100:6443",
    ] {
        K3s.verify(&cluster("10.0.0.1", "", &[ok]), &img).unwrap();
    }
}

#[test]
fn k3s_env_file_carries_containerd_and_proxy_variables_as_install_sh_does() {
    let c = cluster(
        "10.0.0.1",
        "10.0.0.2",
        &[
            "HTTP_PROXY=http://proxy:3128",
            "https_proxy=http://p$x:3128",
            "NO_PROXY=127.0.0.0/8,10.0.0.0/8",
            "CONTAINERD_HTTP_PROXY=http://cproxy:3128",
            "POD_CIDR=10.42.0.0/16",
            "PROXY_NOT=1",
        ],
    );
    let img = image("k3s", "v1.30.2+k3s1");
    let (_, server_env, _) = file_text(&K3s.install(&ctx(&c, 0, &img)).unwrap(), "env-file");
    let (_, agent_env, _) = file_text(&K3s.join(&ctx(&c, 1, &img)).unwrap(), "env-file");
    let proxies = "CONTAINERD_HTTP_PROXY=\"http://cproxy:3128\"\n\
                   HTTP_PROXY=\"http://proxy:3128\"\n\
                   NO_PROXY=\"127.0.0.0/8,10.0.0.0/8\"\n\
                   https_proxy=\"http://p\\$x:3128\"\n";
    assert_eq!(server_env, proxies);
    assert!(agent_env.starts_with("K3S_TOKEN="), "{agent_env}");
    assert!(agent_env.ends_with(proxies), "{agent_env}");
}

#[test]
fn k3s_needs_flannels_vxlan_port_on_every_node_and_etcds_on_servers() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    let server = [2379, 2380, 6443, 10250].map(Port::Tcp);
    assert_eq!(
        K3s.ports(&c, &c.hosts[0]),
        [&server[..], &[Port::Udp(8472)]].concat()
    );
    assert_eq!(
        K3s.ports(&c, &c.hosts[1]),
        [Port::Tcp(10250), Port::Udp(8472)]
    );
    assert_eq!(Port::Udp(8472).to_string(), "8472/udp");
    assert_eq!(Port::Tcp(6443).to_string(), "6443");
}

#[test]
fn k3s_join_over_ipv6_brackets_the_url() {
    let c = cluster("fd00::1,fd00::2,fd00::3", "", &[]);
    let img = image("k3s", "v1.30.2+k3s1");
    let plan = K3s.join(&ctx(&c, 1, &img)).unwrap();
    let (_, unit, _) = file_text(&plan, "unit");
    assert!(
        unit.ends_with("--server https://[fd00::1]:6443\n"),
        "{unit}"
    );
}

#[test]
fn k3s_upgrade_and_uninstall() {
    let mut c = cluster("10.0.0.1", "10.0.0.2", &[]);
    c.status.hosts.insert(
        "10.0.0.2".into(),
        HostStatus {
            version: Some("v1.29.5+k3s1".into()),
            ..HostStatus::default()
        },
    );
    let img = image("k3s", "v1.30.2+k3s1");
    let to = img.version.clone().unwrap();
    let up = K3s.upgrade(&ctx(&c, 1, &img), &to).unwrap();
    up.validate().unwrap();
    assert_eq!(ids(&up), ["place-rootfs", "config", "restart", "start"]);
    let down = Version::parse("v1.29.1+k3s1").unwrap();
    assert!(
        matches!(K3s.upgrade(&ctx(&c, 1, &img), &down), Err(RuntimeError::Rejected(v)) if matches!(v[0], Violation::Downgrade { .. }))
    );
    let skip = Version::parse("v1.31.0+k3s1").unwrap();
    assert!(
        matches!(K3s.upgrade(&ctx(&c, 1, &img), &skip), Err(RuntimeError::Rejected(v)) if matches!(v[0], Violation::MinorSkip { .. }))
    );

    let un = K3s.uninstall(&ctx(&c, 0, &img)).unwrap();
    un.validate().unwrap();
    assert_eq!(
        un.steps[0].action,
        Action::Service {
            unit: "k3s.service".into(),
            op: ServiceOp::Stop
        }
    );
    let removed: Vec<&str> = un
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Remove { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    for p in [
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s.service.env",
        "/etc/rancher/k3s",
        "/var/lib/rancher/k3s",
    ] {
        assert!(removed.contains(&p), "{p} not removed: {removed:?}");
    }
    assert!(un
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::RemoveRootfs { role: Role::Master })));
}

fn plan_for(i: usize, c: &Cluster, img: &ImageInfo) -> Plan {
    let cx = ctx(c, i, img);
    if cx.is_first_master() {
        K3s.install(&cx).unwrap()
    } else {
        K3s.join(&cx).unwrap()
    }
}

/// Agents get only the keys `k3s agent` knows of the image's config;
/// servers all of it.
#[test]
fn k3s_agents_get_only_the_agent_keys_of_the_image_config() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    let img = image("k3s", "v1.30.2+k3s1");
    let content = |i: usize| match &plan_for(i, &c, &img).step("config").unwrap().action {
        Action::WriteFile { content, .. } => content.clone(),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        content(0),
        FileContent::YamlMerge { keep: None, .. }
    ));
    let FileContent::YamlMerge {
        keep: Some(keys),
        overlay,
        ..
    } = content(1)
    else {
        panic!("an agent's config keeps the agent's keys")
    };
    assert_eq!(overlay, "node-ip: 10.0.0.2\n");
    let base = "write-kubeconfig-mode: \"0600\"\ndisable:\n- traefik\ncluster-init: true\n\
                node-label:\n- a=b\nkubelet-arg+:\n- max-pods=50\nnode-taint:\n- t=v:NoSchedule\n";
    let merged = crate::plan::merge_yaml_keeping(Some(base), &overlay, &keys).unwrap();
    assert_eq!(
        merged,
        "node-label:\n- a=b\nkubelet-arg+:\n- max-pods=50\nnode-taint:\n- t=v:NoSchedule\nnode-ip: 10.0.0.2\n"
    );
    for key in [
        "token",
        "server",
        "node-ip",
        "kubelet-arg",
        "pause-image",
        "vpn-auth",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key}");
    }
    for key in [
        "cluster-init",
        "tls-san",
        "disable",
        "write-kubeconfig-mode",
        "service-cidr",
    ] {
        assert!(!keys.iter().any(|k| k == key), "{key} is the server's");
    }
}

/// Uninstall follows k3s-killall.sh: stop, then shims killed, mounts taken
/// down, interfaces and rules removed, and only then anything removed.
#[test]
fn k3s_uninstall_kills_unmounts_and_strips_before_it_removes() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    let img = image("k3s", "v1.30.2+k3s1");
    for i in 0..2 {
        let un = K3s.uninstall(&ctx(&c, i, &img)).unwrap();
        un.validate().unwrap();
        assert_eq!(
            ids(&un)[..9],
            [
                "stop",
                "disable",
                "kill-shims",
                "unmount-run",
                "unmount-pods",
                "unmount-plugins",
                "unmount-netns",
                "delete-interfaces",
                "strip-iptables"
            ]
        );
        let action = |id: &str| un.step(id).unwrap().action.clone();
        assert_eq!(
            action("kill-shims"),
            Action::KillProcessTrees {
                under: "/var/lib/rancher/k3s/data".into(),
                name_prefix: "containerd-shim".into()
            }
        );
        for (id, prefix) in [
            ("unmount-run", "/run/k3s"),
            ("unmount-pods", "/var/lib/kubelet/pods"),
            ("unmount-plugins", "/var/lib/kubelet/plugins"),
            ("unmount-netns", "/run/netns/cni-"),
        ] {
            assert_eq!(
                action(id),
                Action::UnmountUnder {
                    prefix: prefix.into()
                }
            );
        }
        assert_eq!(
            action("delete-interfaces"),
            Action::DeleteLinks {
                names: [
                    "cni0",
                    "flannel.1",
                    "flannel-v6.1",
                    "kube-ipvs0",
                    "flannel-wg",
                    "flannel-wg-v6"
                ]
                .map(String::from)
                .to_vec()
            }
        );
        assert_eq!(
            action("strip-iptables"),
            Action::StripIptables {
                tools: vec!["iptables".into(), "ip6tables".into()],
                contains: vec!["KUBE-".into(), "CNI-".into()],
                contains_ignore_case: vec!["flannel".into()],
            }
        );
        assert!(matches!(
            action("remove-cni"),
            Action::Remove { path, recursive: true } if path == "/var/lib/cni"
        ));
        // The script that sealrs never installs is not relied on.
        assert!(!un.to_json().contains("k3s-killall.sh"));
        let dry = un.render_dry_run();
        assert!(
            dry.contains("unmount: every mount point starting with /run/netns/cni-, deepest first"),
            "{dry}"
        );
    }
}

#[test]
fn kubeadm_plans() {
    let c = cluster(
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "10.0.0.4",
        &["POD_CIDR=10.244.0.0/16"],
    );
    let img = image("kubeadm", "v1.30.2");
    let init = Kubeadm.install(&ctx(&c, 0, &img)).unwrap();
    init.validate().unwrap();
    // Only flags kubeadm allows beside --config (isAllowedFlag, v1.30).
    assert_eq!(
        argv(&init, "init"),
        [
            "/usr/local/bin/kubeadm",
            "init",
            "--config",
            kubeadm::CONFIG_FILE,
            "--upload-certs",
        ]
    );
    // A half-done init (admin.conf, no answer, no done marker) is reset first.
    let ids: Vec<&str> = init.steps.iter().map(|s| s.id.as_str()).collect();
    let at = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(at("reset-failed-init") < at("init") && at("init") < at("init-done"));
    assert_eq!(
        argv(&init, "reset-failed-init"),
        ["/usr/local/bin/kubeadm", "reset", "-f"]
    );
    assert!(matches!(
        &init.step("reset-failed-init").unwrap().check,
        Check::IfExistsAndFails { path, unless_exists: Some(done), argv }
            if path == "/etc/kubernetes/admin.conf"
                && done == kubeadm::INIT_DONE
                && argv.ends_with(&["get".to_string(), "--raw=/readyz".to_string()])
    ));
    let (path, config, mode) = file_text(&init, "kubeadm-config");
    assert_eq!((path.as_str(), mode), (kubeadm::CONFIG_FILE, 0o600));
    for line in [
        "kind: InitConfiguration",
        "advertiseAddress: 10.0.0.1",
        "kind: ClusterConfiguration",
        "kubernetesVersion: v1.30.2",
        "controlPlaneEndpoint: 10.0.0.1:6443",
        "podSubnet: 10.244.0.0/16",
    ] {
        assert!(config.contains(line), "{line} not in {config}");
    }
    assert_eq!(
        init.step("init").unwrap().check,
        Check::Creates {
            path: "/etc/kubernetes/admin.conf".into()
        }
    );
    assert_eq!(
        argv(&init, "join-command")[1..4],
        ["token", "create", "--print-join-command"]
    );
    let keys: Vec<&str> = init.captures().iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            kubeadm::JOIN_COMMAND_CAPTURE,
            kubeadm::CERTIFICATE_KEY_CAPTURE,
            KUBECONFIG_CAPTURE
        ]
    );

    let master = Kubeadm.join(&ctx(&c, 1, &img)).unwrap();
    master.validate().unwrap();
    let hash = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        argv(&master, "join"),
        [
            "/usr/local/bin/kubeadm",
            "join",
            "--config",
            kubeadm::CONFIG_FILE
        ]
    );
    let (_, joined, mode) = match &master.step("kubeadm-config").unwrap().action {
        Action::WriteFile {
            path,
            content: FileContent::Bytes { bytes },
            mode,
            sensitive,
            ..
        } => {
            assert!(sensitive, "the join config holds the token");
            (
                path.clone(),
                String::from_utf8(bytes.clone()).unwrap(),
                *mode,
            )
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(mode, 0o600);
    for line in [
        "kind: JoinConfiguration",
        "apiServerEndpoint: 10.0.0.1:6443",
        "token: K10abc::server:s3cret",
        &format!("- {hash}"),
        &format!("certificateKey: {}", "cd".repeat(32)),
        "advertiseAddress: 10.0.0.2",
    ] {
        assert!(joined.contains(line), "{line} not in {joined}");
    }
    assert!(!joined.contains("ClusterConfiguration"), "{joined}");
    let dry = master.render_dry_run();
    assert!(
        !dry.contains("s3cret") && !dry.contains(&"cd".repeat(32)),
        "{dry}"
    );

    let worker = Kubeadm.join(&ctx(&c, 3, &img)).unwrap();
    let (_, w, _) = match &worker.step("kubeadm-config").unwrap().action {
        Action::WriteFile {
            path,
            content: FileContent::Bytes { bytes },
            mode,
            ..
        } => (
            path.clone(),
            String::from_utf8(bytes.clone()).unwrap(),
            *mode,
        ),
        other => panic!("{other:?}"),
    };
    assert!(!w.contains("controlPlane"), "{w}");
    assert_eq!(
        worker.step("join").unwrap().check,
        Check::Creates {
            path: "/etc/kubernetes/kubelet.conf".into()
        }
    );

    let to = Version::parse("v1.30.3").unwrap();
    let up0 = Kubeadm.upgrade(&ctx(&c, 0, &img), &to).unwrap();
    assert_eq!(
        argv(&up0, "upgrade"),
        [
            "/usr/local/bin/kubeadm",
            "upgrade",
            "apply",
            "v1.30.3",
            "--yes"
        ]
    );
    let up1 = Kubeadm.upgrade(&ctx(&c, 1, &img), &to).unwrap();
    assert_eq!(
        argv(&up1, "upgrade"),
        ["/usr/local/bin/kubeadm", "upgrade", "node"]
    );
    let up3 = Kubeadm.upgrade(&ctx(&c, 3, &img), &to).unwrap();
    up3.validate().unwrap();
    assert_eq!(
        up3.step("upgrade").unwrap().check,
        Check::Creates {
            path: "/var/lib/sealrs-host/markers/kubeadm-upgrade-node-v1.30.3".into()
        }
    );

    let reset = Kubeadm.uninstall(&ctx(&c, 3, &img)).unwrap();
    reset.validate().unwrap();
    assert_eq!(
        argv(&reset, "reset"),
        ["/usr/local/bin/kubeadm", "reset", "-f"]
    );
    // What kubeadm reset leaves (its output and the kubeadm-reset page):
    // cleaned after the reset and the stopped units, before any removal.
    assert_eq!(
        reset
            .steps
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()[..10],
        [
            "reset",
            "stop-kubelet",
            "disable-kubelet",
            "stop-containerd",
            "disable-containerd",
            "unmount-netns",
            "delete-interfaces",
            "strip-iptables",
            "clear-ipvs",
            "unlink-kubeconfig"
        ]
    );
    assert_eq!(
        reset.step("strip-iptables").unwrap().action,
        Action::StripIptables {
            tools: vec!["iptables".into(), "ip6tables".into()],
            contains: vec!["KUBE-".into(), "CNI-".into()],
            contains_ignore_case: vec!["flannel".into()],
        }
    );
    match &reset.step("delete-interfaces").unwrap().action {
        Action::DeleteLinks { names } => {
            for name in ["cni0", "flannel.1", "kube-ipvs0"] {
                assert!(names.iter().any(|n| n == name), "{names:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(argv(&reset, "clear-ipvs"), ["ipvsadm", "--clear"]);
    assert!(matches!(
        reset.step("clear-ipvs").unwrap().check,
        Check::IfOutput { .. }
    ));
}

#[test]
fn k0s_plans() {
    let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
    let img = image("k0s", "v1.30.2+k0s.0");
    let first = K0s.install(&ctx(&c, 0, &img)).unwrap();
    first.validate().unwrap();
    assert_eq!(
        argv(&first, "install"),
        [
            "/usr/local/bin/k0s",
            "install",
            "controller",
            "--config",
            "/etc/k0s/k0s.yaml"
        ]
    );
    assert_eq!(
        argv(&first, "worker-token"),
        [
            "/usr/local/bin/k0s",
            "token",
            "create",
            "--role=worker",
            "--expiry=10m"
        ]
    );
    assert_eq!(
        argv(&first, "controller-token"),
        [
            "/usr/local/bin/k0s",
            "token",
            "create",
            "--role=controller",
            "--expiry=20m"
        ]
    );
    assert_eq!(
        first.step("start").unwrap().check,
        Check::UnitActive {
            unit: "k0scontroller.service".into()
        }
    );

    let ctl = K0s.join(&ctx(&c, 1, &img)).unwrap();
    assert_eq!(
        file_text(&ctl, "token-file"),
        ("/etc/k0s/join-token".into(), "ctrl-t0ken\n".into(), 0o600)
    );
    assert_eq!(
        argv(&ctl, "install")[2..],
        [
            "controller",
            "--config",
            "/etc/k0s/k0s.yaml",
            "--token-file",
            "/etc/k0s/join-token"
        ]
    );
    let worker = K0s.join(&ctx(&c, 3, &img)).unwrap();
    worker.validate().unwrap();
    assert_eq!(
        file_text(&worker, "token-file").1,
        "K10abc::server:s3cret\n"
    );
    assert_eq!(
        argv(&worker, "install"),
        [
            "/usr/local/bin/k0s",
            "install",
            "worker",
            "--token-file",
            "/etc/k0s/join-token"
        ]
    );
    assert_eq!(
        worker.step("install").unwrap().check,
        Check::Creates {
            path: "/etc/systemd/system/k0sworker.service".into()
        }
    );

    let single = cluster("10.0.0.9", "", &[]);
    let p = K0s.install(&ctx(&single, 0, &img)).unwrap();
    assert_eq!(argv(&p, "install")[5..], ["--enable-worker", "--no-taints"]);

    let un = K0s.uninstall(&ctx(&c, 3, &img)).unwrap();
    assert_eq!(argv(&un, "stop"), ["/usr/local/bin/k0s", "stop"]);
    assert_eq!(
        argv(&un, "reset"),
        ["/usr/local/bin/k0s", "reset", "--data-dir=/var/lib/k0s"]
    );
    let up = K0s
        .upgrade(&ctx(&c, 3, &img), &Version::parse("v1.30.3+k0s.0").unwrap())
        .unwrap();
    up.validate().unwrap();
    assert_eq!(ids(&up), ["place-rootfs", "stop", "start"]);
}

#[test]
fn verify_reports_everything_at_once() {
    let mut c = cluster("10.0.0.1,10.0.0.2", "0.0.0.0,224.0.0.5", &[]);
    // A duplicate can only come from a hand-edited file; add it directly.
    c.hosts.push(c.hosts[0].clone());
    c.status.hosts.insert(
        "10.0.0.1".into(),
        HostStatus {
            runtime: Some("k3s".into()),
            version: Some("v1.31.0+k3s1".into()),
            ..Default::default()
        },
    );
    c.status.hosts.insert(
        "10.0.0.2".into(),
        HostStatus {
            version: Some("v1.28.0+k3s1".into()),
            ..Default::default()
        },
    );
    let img = image("k3s", "v1.30.2+k3s1");
    let v = K3s.verify(&c, &img).unwrap_err();
    let text: Vec<String> = v.iter().map(|v| v.to_string()).collect();
    assert!(
        v.contains(&Violation::EvenServers {
            runtime: "k3s".into(),
            count: 2
        }),
        "{text:#?}"
    );
    assert_eq!(v.len(), 6, "{text:#?}");
    for kind in [
        "downgrade",
        "skips a minor",
        "duplicate address 10.0.0.1",
        "0.0.0.0 means",
        "multicast",
    ] {
        assert!(
            text.iter().any(|t| t.contains(kind)),
            "missing {kind}: {text:#?}"
        );
    }
    // The same cluster is also wrong for kubeadm, and says so first.
    let kv = Kubeadm.verify(&c, &img).unwrap_err();
    assert!(matches!(kv[0], Violation::WrongRuntime { .. }));
    assert!(!kv
        .iter()
        .any(|x| matches!(x, Violation::EvenServers { .. })));
    // A clean 3-server cluster passes; 2 servers do not; 1 is fine.
    assert!(K3s
        .verify(
            &cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]),
            &img
        )
        .is_ok());
    assert!(K3s
        .verify(&cluster("10.0.0.1", "10.0.0.4", &[]), &img)
        .is_ok());
    let k0s = image("k0s", "v1.30.2+k0s.0");
    assert_eq!(
        K0s.verify(&cluster("10.0.0.1,10.0.0.2", "", &[]), &k0s)
            .unwrap_err(),
        vec![Violation::EvenServers {
            runtime: "k0s".into(),
            count: 2
        }]
    );
    let mut no_version = image("k3s", "v1.30.2");
    no_version.version = None;
    assert_eq!(
        K3s.verify(&cluster("10.0.0.1", "", &[]), &no_version)
            .unwrap_err(),
        vec![Violation::MissingVersion]
    );
}

#[test]
fn kubeadm_skew_rules() {
    let mut c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4,10.0.0.5", &[]);
    let set = |c: &mut Cluster, h: &str, v: &str| {
        c.status.hosts.insert(
            h.into(),
            HostStatus {
                runtime: Some("kubeadm".into()),
                version: Some(v.into()),
                ..Default::default()
            },
        );
    };
    set(&mut c, "10.0.0.1", "v1.29.4");
    set(&mut c, "10.0.0.2", "v1.29.4");
    set(&mut c, "10.0.0.3", "v1.29.4");
    set(&mut c, "10.0.0.4", "v1.29.1");
    let img = image("kubeadm", "v1.30.1");
    assert!(
        Kubeadm.verify(&c, &img).is_ok(),
        "{:?}",
        Kubeadm.verify(&c, &img)
    );
    set(&mut c, "10.0.0.3", "v1.27.9");
    set(&mut c, "10.0.0.5", "v1.26.0");
    let v = Kubeadm.verify(&c, &img).unwrap_err();
    let text: Vec<String> = v.iter().map(|v| v.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("10.0.0.3: version skew: control-plane at v1.27.9")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("10.0.0.5: version skew: kubelet v1.26.0")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("host 10.0.0.5: v1.26.0 -> v1.30.1 skips")),
        "{text:#?}"
    );
}

#[test]
fn captures_become_join_secrets() {
    let mut m = BTreeMap::new();
    m.insert(kubeadm::JOIN_COMMAND_CAPTURE.to_string(), format!("kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:{} \n", "e".repeat(64)));
    m.insert(
        kubeadm::CERTIFICATE_KEY_CAPTURE.to_string(),
        format!(
            "[upload-certs] Using certificate key:\n{}\n",
            "f".repeat(64)
        ),
    );
    let s = Kubeadm.join_secrets(&m).unwrap();
    assert_eq!(s.token.unwrap().expose(), "abcdef.0123456789abcdef");
    assert_eq!(
        s.ca_cert_hash.unwrap(),
        format!("sha256:{}", "e".repeat(64))
    );
    assert_eq!(s.certificate_key.unwrap().expose(), "f".repeat(64));

    let mut k = BTreeMap::new();
    k.insert(
        k3s::TOKEN_CAPTURE.to_string(),
        "K10x::server:y\n".to_string(),
    );
    assert_eq!(
        K3s.join_secrets(&k).unwrap().token.unwrap().expose(),
        "K10x::server:y"
    );
    let mut z = BTreeMap::new();
    z.insert(k0s::WORKER_TOKEN_CAPTURE.to_string(), "w".to_string());
    z.insert(k0s::CONTROLLER_TOKEN_CAPTURE.to_string(), "c".to_string());
    let s = K0s.join_secrets(&z).unwrap();
    assert_eq!(
        (
            s.token.unwrap().expose(),
            s.controller_token.unwrap().expose()
        ),
        ("w", "c")
    );

    let mut bad = BTreeMap::new();
    bad.insert(
        kubeadm::JOIN_COMMAND_CAPTURE.to_string(),
        "kubeadm join x --token t".to_string(),
    );
    assert!(matches!(
        Kubeadm.join_secrets(&bad),
        Err(RuntimeError::BadCapture { .. })
    ));
    assert!(format!("{:?}", secrets()).contains("<redacted>"));
    assert!(!format!("{:?}", secrets()).contains("s3cret"));
}

#[test]
fn upgrade_order_is_servers_one_by_one_then_worker_batches() {
    let c = cluster(
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "10.0.1.1,10.0.1.2,10.0.1.3,10.0.1.4",
        &[],
    );
    let order = upgrade_order(&c, MaxUnavailable::Count(3));
    let shown: Vec<(Role, Vec<String>)> = order
        .iter()
        .map(|b| (b.role, b.hosts.iter().map(|a| a.to_string()).collect()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (Role::Master, vec!["10.0.0.1".to_string()]),
            (Role::Master, vec!["10.0.0.2".to_string()]),
            (Role::Master, vec!["10.0.0.3".to_string()]),
            (
                Role::Node,
                vec!["10.0.1.1".to_string(), "10.0.1.2".into(), "10.0.1.3".into()]
            ),
            (Role::Node, vec!["10.0.1.4".to_string()]),
        ]
    );
    assert_eq!(upgrade_order_in_batches(&c, 0).len(), 3 + 4);
    // 10% of 4 workers rounds down to none: at least one at a time.
    assert_eq!(upgrade_order(&c, MaxUnavailable::default()).len(), 3 + 4);
    assert_eq!(upgrade_order(&c, MaxUnavailable::Percent(50)).len(), 3 + 2);
    assert_eq!(upgrade_order(&c, MaxUnavailable::Count(9)).len(), 3 + 1);
}

#[test]
fn max_unavailable_is_a_count_or_a_percentage_and_at_least_one() {
    for (text, want, of_20) in [
        ("2", MaxUnavailable::Count(2), 2),
        ("10%", MaxUnavailable::Percent(10), 2),
        ("25%", MaxUnavailable::Percent(25), 5),
        ("1%", MaxUnavailable::Percent(1), 1),
        ("100%", MaxUnavailable::Percent(100), 20),
    ] {
        let parsed: MaxUnavailable = text.parse().unwrap();
        assert_eq!(parsed, want, "{text}");
        assert_eq!(parsed.of(20), of_20, "{text}");
        assert_eq!(parsed.to_string(), text);
    }
    for bad in ["0", "0%", "101%", "-1", "+2", "2.5", "%", "", "ten", "10 %"] {
        let error = bad.parse::<MaxUnavailable>().unwrap_err();
        assert!(error.contains("25%"), "{bad:?}: {error}");
    }
}

#[test]
fn node_ready_with_wants_ready_true_and_the_target_version() {
    let to: Version = "v1.30.3+k3s1".parse().unwrap();
    assert!(node_ready_with("True v1.30.3+k3s1", &to));
    assert!(node_ready_with("True v1.30.3", &to));
    assert!(!node_ready_with("True v1.30.2+k3s1", &to));
    assert!(!node_ready_with("False v1.30.3+k3s1", &to));
    assert!(!node_ready_with("Unknown v1.30.3+k3s1", &to));
    assert!(!node_ready_with(" v1.30.3+k3s1", &to));
    assert!(!node_ready_with("(the connection was refused)", &to));
}

#[test]
fn upgrade_node_steps_run_each_runtimes_kubectl_on_the_first_master() {
    for rt in names() {
        let runtime = runtime_for(rt).unwrap();
        let c = cluster("10.0.0.1", "10.0.1.1", &[]);
        let image = ImageInfo::new(rt, "v1.30.2").unwrap();
        let first = HostContext::new(
            &c,
            c.first_master().unwrap(),
            &image,
            JoinSecrets::default(),
        )
        .unwrap();
        for (step, verb) in [
            (NodeStep::Cordon, "cordon"),
            (NodeStep::Drain, "drain"),
            (NodeStep::Uncordon, "uncordon"),
        ] {
            let plan = runtime.upgrade_node_step(&first, "node-1", step).unwrap();
            let text = plan.render_dry_run();
            let kubectl = runtime.kubectl().join(" ");
            assert!(
                text.contains(&format!("{kubectl} {verb} node-1")),
                "{rt} {step}:\n{text}"
            );
        }
        assert!(runtime
            .upgrade_node_step(&first, "bad name", NodeStep::Cordon)
            .is_err());
        let worker = HostContext::new(
            &c,
            c.workers().next().unwrap(),
            &image,
            JoinSecrets::default(),
        )
        .unwrap();
        assert!(
            runtime
                .upgrade_node_step(&worker, "node-1", NodeStep::Cordon)
                .is_err(),
            "{rt}"
        );
        let query = runtime.node_state_query("node-1");
        assert_eq!(&query[..runtime.kubectl().len()], runtime.kubectl());
        assert_eq!(
            query[runtime.kubectl().len()..].join(" "),
            format!("get node node-1 -o {NODE_STATE_JSONPATH}")
        );
    }
}

#[test]
fn registry_finds_runtimes_by_name_and_the_aliases_of_their_layouts() {
    for (name, want) in [
        ("k3s", "k3s"),
        ("kubeadm", "kubeadm"),
        ("kubernetes", "kubeadm"),
        ("k8s", "kubeadm"),
        ("K0S", "k0s"),
    ] {
        assert_eq!(runtime_for(name).unwrap().name(), want);
    }
    assert!(runtime_for("rke2").is_none());
    // Every runtime has its layout, and every rootfs layout its runtime.
    assert_eq!(names(), Layouts::embedded().runtimes());
    let mut labels = BTreeMap::new();
    labels.insert(
        "sealos.io.distribution".to_string(),
        "kubernetes".to_string(),
    );
    labels.insert("version".to_string(), "v1.25.0".to_string());
    let info = ImageInfo::from_labels(&labels);
    assert_eq!(info.runtime, "kubeadm");
    assert_eq!(info.version, Some(Version::parse("v1.25.0").unwrap()));
}

/// `-e 'PASS=pa$$w0rd"`x'` reaches the plan, its templates and its dry-run
/// byte for byte, for every runtime.
#[test]
fn user_values_pass_through_unchanged() {
    const VALUE: &str = "pa$$w0rd\"`x";
    let c = cluster("10.0.0.1", "10.0.0.2", &["PASS=pa$$w0rd\"`x"]);
    assert_eq!(c.env["PASS"], VALUE);
    for name in names() {
        let rt = runtime_for(name).unwrap();
        let img = image(name, "v1.30.2");
        let plan = rt.install(&ctx(&c, 0, &img)).unwrap();
        assert_eq!(plan.env, vec![("PASS".to_string(), VALUE.to_string())]);
        // Through JSON, as the plan travels to the host.
        let back = Plan::from_json(&plan.to_json()).unwrap();
        assert_eq!(back.env[0].1.as_bytes(), VALUE.as_bytes());
        // A template on the host renders it verbatim.
        let rendered = crate::plan::render_template("password: '${PASS}'", &back.env).unwrap();
        assert_eq!(rendered, format!("password: '{VALUE}'"));
        // The dry-run shows it literally, quoted, never expanded.
        let dry = plan.render_dry_run();
        assert!(dry.contains("PASS='pa$$w0rd\"`x'"), "{dry}");
    }
    // As a secret in a systemd env file and a k0s token file.
    let mut s = secrets();
    s.token = Some(Secret::new(VALUE));
    let img = image("k3s", "v1.30.2+k3s1");
    let agent = K3s
        .join(&HostContext::new(&c, &c.hosts[1], &img, s.clone()).unwrap())
        .unwrap();
    assert_eq!(
        file_text(&agent, "env-file").1,
        "K3S_TOKEN=\"pa\\$\\$w0rd\\\"\\`x\"\nK3S_URL=\"https://10.0.0.1:6443\"\n"
    );
    let img = image("k0s", "v1.30.2");
    let w = K0s
        .join(&HostContext::new(&c, &c.hosts[1], &img, s.clone()).unwrap())
        .unwrap();
    assert_eq!(file_text(&w, "token-file").1, format!("{VALUE}\n"));
    let img = image("kubeadm", "v1.30.2");
    let k = Kubeadm
        .join(&HostContext::new(&c, &c.hosts[1], &img, s).unwrap())
        .unwrap();
    let Action::WriteFile {
        content: FileContent::Bytes { bytes },
        ..
    } = &k.step("kubeadm-config").unwrap().action
    else {
        panic!("no kubeadm config")
    };
    let text = String::from_utf8(bytes.clone()).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(
        docs[0]["discovery"]["bootstrapToken"]["token"].as_str(),
        Some(VALUE)
    );
}

#[test]
fn every_plan_of_every_runtime_is_valid() {
    let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
    for name in names() {
        let rt = runtime_for(name).unwrap();
        let img = image(name, "v1.30.2");
        let to = Version::parse("v1.30.3").unwrap();
        for i in 0..c.hosts.len() {
            let cx = ctx(&c, i, &img);
            let mut plans = vec![rt.upgrade(&cx, &to).unwrap(), rt.uninstall(&cx).unwrap()];
            plans.push(if i == 0 {
                rt.install(&cx).unwrap()
            } else {
                rt.join(&cx).unwrap()
            });
            for p in plans {
                p.validate()
                    .unwrap_or_else(|e| panic!("{name} {} {}: {e:?}", p.action, p.host));
                assert_eq!(p.runtime, name);
            }
        }
    }
}

#[test]
fn dry_run_snapshot_k3s_agent() {
    let c = cluster("10.0.0.1", "10.0.0.2", &["PASS=pa$$w0rd\"`x"]);
    let img = image("k3s", "v1.30.2+k3s1");
    let text = K3s.join(&ctx(&c, 1, &img)).unwrap().render_dry_run();
    let head = "plan: k3s join on 10.0.0.2 (11 steps)
env (for templates):
  PASS='pa$$w0rd\"`x'
 1. [place-rootfs] place the image rootfs for a node
      place rootfs: layout for node
      idempotent: skipped when content and mode already match
 2. [link-kubectl] link /usr/local/bin/kubectl -> /usr/local/bin/k3s
      symlink: /usr/local/bin/kubectl -> /usr/local/bin/k3s
      idempotent: skipped when the link already points there
";
    assert!(text.starts_with(head), "{text}");
    for line in [
        " 6. [config] write /etc/rancher/k3s/config.yaml (the keys `k3s agent` knows of the image's config, with ours merged)\n      file: /etc/rancher/k3s/config.yaml mode 0600 (YAML: /var/lib/sealrs-host/rootfs/etc/config.yaml (rendered) with only 54 keys kept, merged with 18 bytes)\n      | node-ip: 10.0.0.2\n",
        " 7. [env-file] write /etc/systemd/system/k3s-agent.service.env (the unit's secrets)\n      file: /etc/systemd/system/k3s-agent.service.env mode 0600 (66 bytes)\n      (secret content not shown)\n",
        "      | ExecStart=/usr/local/bin/k3s agent\n",
        "11. [start] start k3s-agent.service\n      run: systemctl start k3s-agent.service\n      idempotent: skipped when k3s-agent.service is active\n",
    ] {
        assert!(text.contains(line), "missing\n{line}\nin\n{text}");
    }
}

// ---------------------------------------------------------------------------
// image hooks: the labels check, init-registry, init-cri, init and the clean ones

const CHECK: &str = "check.sh $registryData";
const INIT: &str = "init-cri.sh $registryDomain $registryPort && bash init.sh";
const CLEAN: &str = "clean.sh && bash clean-cri.sh $criData";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An image of `runtime` with the sealos hook labels and an image `ENV`.
fn hooked(runtime: &str, version: &str) -> ImageInfo {
    let mut img = image(runtime, version);
    img.labels = labels(&[("check", CHECK), ("init", INIT), ("clean", CLEAN)]);
    img.with_config_env(&[
        "PATH=/usr/bin".to_string(),
        "registryDomain=sealos.hub".to_string(),
        "PASS=from-image".to_string(),
    ])
}

/// argv, env, cwd and check of a run step.
type RunParts = (Vec<String>, Vec<(String, String)>, Option<String>, Check);

fn run_parts(plan: &Plan, id: &str) -> RunParts {
    let step = plan.step(id).unwrap_or_else(|| panic!("no step {id}"));
    match &step.action {
        Action::Run { argv, env, cwd, .. } => {
            (argv.clone(), env.clone(), cwd.clone(), step.check.clone())
        }
        other => panic!("{id} is {other:?}"),
    }
}

fn bash(text: &str) -> [String; 3] {
    ["bash".into(), "-c".into(), text.into()]
}

#[test]
fn sealos_hook_labels_run_with_bash_ours_win_and_a_blank_one_switches_off() {
    let sealos = Hooks::from_labels(&labels(&[
        ("check", CHECK),
        ("init", INIT),
        ("clean", CLEAN),
        ("version", "v1.30.2"),
    ]));
    assert_eq!(
        sealos.get(HookKind::Check),
        Some(&Hook::Sealos(CHECK.into()))
    );
    assert_eq!(
        sealos.get(HookKind::Init).unwrap().script(),
        format!("bash {INIT}")
    );
    assert_eq!(
        sealos.get(HookKind::Clean),
        Some(&Hook::Sealos(CLEAN.into()))
    );
    assert_eq!(
        sealos.get(HookKind::InitRegistry),
        None,
        "no sealos label, no default"
    );

    let ours = Hooks::from_labels(&labels(&[
        ("init", INIT),
        ("sealrs.io/init", "bash ours.sh"),
        ("clean", CLEAN),
        ("sealrs.io/clean", "  "),
        ("check", " "),
        ("sealrs.io/init-cri", "true"),
    ]));
    let init = ours.get(HookKind::Init).unwrap();
    assert_eq!(init.script(), "bash ours.sh", "ours win, as bash text");
    assert_eq!(
        ours.get(HookKind::Clean),
        None,
        "a blank label of ours switches it off"
    );
    assert_eq!(ours.get(HookKind::Check), None, "and a blank one of sealos");
    assert_eq!(
        ours.get(HookKind::InitCri),
        Some(&Hook::Ours("true".into()))
    );
    assert!(Hooks::from_labels(&labels(&[("sealrs.io/type", "rootfs")])).is_empty());
    assert_eq!(image("k3s", "v1.30.2").hooks(), Hooks::default());
}

/// An image with sealos labels and no hook label gets sealos's default
/// scripts (none for the CRI hooks), each run only where it is there.
#[test]
fn a_sealos_image_gets_the_default_hooks_but_the_cri_ones() {
    let hooks = Hooks::from_labels(&labels(&[
        ("sealos.io.type", "rootfs"),
        ("init-cri", "init-containerd.sh $registryDomain"),
    ]));
    for kind in HookKind::ALL {
        let expected = match kind {
            HookKind::InitCri => Some(Hook::Sealos("init-containerd.sh $registryDomain".into())),
            HookKind::CleanCri => None,
            other => Some(Hook::Default(format!("{}.sh", other.name()))),
        };
        assert_eq!(hooks.get(kind), expected.as_ref(), "{kind:?}");
    }
    assert_eq!(
        hooks.get(HookKind::Check).unwrap().script(),
        "if [ -e scripts/check.sh ]; then cd scripts && bash check.sh; fi"
    );
    let apps = Hooks::from_labels(&labels(&[("apps.sealos.io/type", "rootfs")]));
    assert!(apps.get(HookKind::Init).is_some());
}

/// sealos's order: check, init-registry (the registry host: the first
/// master), init-cri, init; on the way out clean-registry, clean-cri, clean.
#[test]
fn hooks_run_in_sealos_order_registry_ones_on_the_first_master_only() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    let mut img = image("k3s", "v1.30.2+k3s1");
    img.labels = labels(&[
        ("sealos.io.type", "rootfs"),
        ("init-cri", "init-containerd.sh"),
        ("clean-cri", "clean-containerd.sh"),
    ]);
    let hook_ids = |plan: &Plan| -> Vec<String> {
        ids(plan)
            .into_iter()
            .filter(|id| id.starts_with("hook-"))
            .map(String::from)
            .collect()
    };
    let first = K3s.install(&ctx(&c, 0, &img)).unwrap();
    first.validate().unwrap();
    assert_eq!(
        hook_ids(&first),
        [
            "hook-scripts",
            "hook-check",
            "hook-markers",
            "hook-init-registry",
            "hook-init-registry-marker",
            "hook-init-cri",
            "hook-init-cri-marker",
            "hook-init",
            "hook-init-marker"
        ]
    );
    let node = K3s.join(&ctx(&c, 1, &img)).unwrap();
    assert!(!hook_ids(&node).iter().any(|id| id.contains("registry")));
    let (argv, _, _, _) = run_parts(&first, "hook-init-cri");
    assert_eq!(argv, bash("bash init-containerd.sh"));

    let out = K3s.uninstall(&ctx(&c, 0, &img)).unwrap();
    assert_eq!(
        hook_ids(&out),
        ["hook-clean-registry", "hook-clean-cri", "hook-clean"]
    );
    let out = K3s.uninstall(&ctx(&c, 1, &img)).unwrap();
    assert_eq!(hook_ids(&out), ["hook-clean-cri", "hook-clean"]);
}

#[test]
fn hook_env_is_the_image_env_overridden_by_the_cluster_env_without_path() {
    let c = cluster(
        "10.0.0.1",
        "10.0.0.2",
        &["PASS=pa$$w0rd\"`x", "registryPort=5000"],
    );
    let img = hooked("k3s", "v1.30.2+k3s1");
    assert_eq!(
        hook_env(&ctx(&c, 0, &img)),
        vec![
            ("PASS".to_string(), "pa$$w0rd\"`x".to_string()),
            ("registryDomain".to_string(), "sealos.hub".to_string()),
            ("registryPort".to_string(), "5000".to_string()),
        ]
    );
}

/// `hosts[].env` wins over the cluster env on that host only.
#[test]
fn a_hosts_env_wins_over_the_cluster_env_on_that_host_only() {
    let mut c = cluster("10.0.0.1", "10.0.0.2", &["PASS=cluster", "ONLY=c"]);
    c.hosts[1]
        .env
        .insert("PASS".into(), "pa$$w0rd\"`x\nnode".into());
    let img = hooked("k3s", "v1.30.2+k3s1");
    let get = |env: &[(String, String)], k: &str| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let first = hook_env(&ctx(&c, 0, &img));
    assert_eq!(get(&first, "PASS").as_deref(), Some("cluster"));
    let node = hook_env(&ctx(&c, 1, &img));
    assert_eq!(get(&node, "PASS").as_deref(), Some("pa$$w0rd\"`x\nnode"));
    assert_eq!(get(&node, "ONLY").as_deref(), Some("c"));
}

#[test]
fn init_marker_is_stable_and_changes_with_kind_rootfs_text_or_env() {
    let env = vec![("PASS".to_string(), "a".to_string())];
    let root = "/var/lib/sealrs-host/rootfs/aa";
    let m = init_marker(HookKind::Init, root, INIT, &env);
    assert_eq!(m, init_marker(HookKind::Init, root, INIT, &env));
    assert!(m.starts_with(&format!("{HOOK_MARKER_DIR}/init-")), "{m}");
    assert!(
        HOOK_MARKER_DIR.starts_with(&format!("{MARKER_DIR}/")),
        "uninstall's remove-markers removes the hook markers too"
    );
    let other_env = vec![("PASS".to_string(), "b".to_string())];
    // Field boundaries count: moving a byte from the key to the value differs.
    let shifted = vec![("PASSa".to_string(), String::new())];
    for different in [
        init_marker(HookKind::Init, "/var/lib/sealrs-host/rootfs/bb", INIT, &env),
        init_marker(HookKind::Init, root, "bash init.sh", &env),
        init_marker(HookKind::Init, root, INIT, &other_env),
        init_marker(HookKind::Init, root, INIT, &shifted),
        init_marker(HookKind::Init, root, INIT, &[]),
        init_marker(HookKind::InitCri, root, INIT, &env),
    ] {
        assert_ne!(m, different);
    }
}

/// With hook labels, every install, join and upgrade plan of every runtime is
/// the plan without them, preceded by the scripts made executable, check,
/// the marker dir, init and its marker.
#[test]
fn every_runtime_runs_check_then_init_before_its_own_steps() {
    let c = cluster(
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "10.0.0.4",
        &["PASS=pa$$w0rd\"`x"],
    );
    let (version, to) = ("v1.30.2", "v1.30.3");
    for name in names() {
        let rt = runtime_for(name).unwrap();
        let plain = image(name, version);
        let img = hooked(name, version);
        let to = Version::parse(to).unwrap();
        for i in 0..c.hosts.len() {
            let make = |img: &ImageInfo| {
                let mut cx = ctx(&c, i, img);
                cx.rootfs = "/var/lib/sealrs-host/rootfs/abc".into();
                let first = if i == 0 {
                    rt.install(&cx).unwrap()
                } else {
                    rt.join(&cx).unwrap()
                };
                (first, rt.upgrade(&cx, &to).unwrap(), hook_env(&cx))
            };
            let (plain_first, plain_up, _) = make(&plain);
            let (first, up, env) = make(&img);
            for (hooked_plan, plain_plan) in [(&first, &plain_first), (&up, &plain_up)] {
                let what = format!("{name} {} on {}", hooked_plan.action, hooked_plan.host);
                hooked_plan.validate().unwrap();
                assert!(
                    ids(plain_plan).iter().all(|id| !id.starts_with("hook-")),
                    "{what}"
                );
                assert_eq!(
                    ids(hooked_plan)[..5],
                    [
                        "hook-scripts",
                        "hook-check",
                        "hook-markers",
                        "hook-init",
                        "hook-init-marker"
                    ],
                    "{what}"
                );
                assert_eq!(ids(hooked_plan)[5..], ids(plain_plan)[..], "{what}");

                let scripts = "/var/lib/sealrs-host/rootfs/abc/scripts";
                let (_, _, cwd, check) = run_parts(hooked_plan, "hook-scripts");
                assert_eq!(cwd.as_deref(), Some("/var/lib/sealrs-host/rootfs/abc"));
                assert_eq!(check, Check::ReadOnly, "{what}");

                let (argv, step_env, cwd, check) = run_parts(hooked_plan, "hook-check");
                assert_eq!(argv, bash(&format!("bash {CHECK}")), "{what}");
                assert_eq!(step_env, env);
                assert_eq!(cwd.as_deref(), Some(scripts));
                assert_eq!(check, Check::ReadOnly, "check only observes");

                let (argv, step_env, cwd, check) = run_parts(hooked_plan, "hook-init");
                let script = format!("bash {INIT}");
                assert_eq!(argv, bash(&script), "{what}");
                assert_eq!(step_env, env);
                assert_eq!(cwd.as_deref(), Some(scripts));
                let marker = init_marker(
                    HookKind::Init,
                    "/var/lib/sealrs-host/rootfs/abc",
                    &script,
                    &env,
                );
                assert_eq!(
                    check,
                    Check::Creates {
                        path: marker.clone()
                    }
                );
                let (path, text, mode) = file_text(hooked_plan, "hook-init-marker");
                assert_eq!((path, text, mode), (marker, format!("{script}\n"), 0o600));
                match &hooked_plan.step("hook-markers").unwrap().action {
                    Action::EnsureDir { path, mode } => {
                        assert_eq!((path.as_str(), *mode), (HOOK_MARKER_DIR, 0o700))
                    }
                    other => panic!("{what}: hook-markers is {other:?}"),
                }
            }
        }
    }
}

/// `clean` runs after the services stop and before anything is removed; the
/// markers that gate it go afterwards.
#[test]
fn every_runtime_runs_clean_between_stopping_and_removing() {
    let c = cluster("10.0.0.1", "10.0.0.2", &["PASS=pa$$w0rd\"`x"]);
    for (name, version, after) in [
        ("k3s", "v1.30.2+k3s1", "strip-iptables"),
        ("kubeadm", "v1.30.2", "clear-ipvs"),
        ("k0s", "v1.30.2+k0s.0", "stop"),
    ] {
        let rt = runtime_for(name).unwrap();
        for i in 0..c.hosts.len() {
            let img = hooked(name, version);
            let cx = ctx(&c, i, &img);
            let plan = rt.uninstall(&cx).unwrap();
            plan.validate().unwrap();
            let plain = rt.uninstall(&ctx(&c, i, &image(name, version))).unwrap();
            let mut without: Vec<&str> = ids(&plan);
            without.retain(|id| *id != "hook-clean");
            assert_eq!(without, ids(&plain), "{name}: only clean is added");

            let at = ids(&plan)
                .iter()
                .position(|id| *id == "hook-clean")
                .unwrap();
            assert_eq!(plan.steps[at - 1].id, after, "{name}");
            assert!(
                plan.steps[..at].iter().all(|s| !matches!(
                    s.action,
                    Action::Remove { .. } | Action::RemoveLink { .. } | Action::RemoveRootfs { .. }
                )),
                "{name}: nothing is removed before clean: {:?}",
                ids(&plan)
            );
            assert!(
                ids(&plan)[at..].contains(&"remove-markers"),
                "{name}: the markers go after clean"
            );
            let (argv, env, cwd, check) = run_parts(&plan, "hook-clean");
            assert_eq!(argv, bash(&format!("bash {CLEAN}")));
            assert_eq!(env, hook_env(&cx));
            assert_eq!(cwd, Some(format!("{}/scripts", cx.rootfs)));
            assert_eq!(
                check,
                Check::IfExists {
                    path: HOOK_MARKER_DIR.into()
                }
            );
        }
    }
}

/// Only the hooks an image declares are added; a clean-only image still
/// records that its plan got as far as the hooks, so that reset cleans.
#[test]
fn only_declared_hooks_are_added() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    let mut img = image("k3s", "v1.30.2+k3s1");
    img.labels = labels(&[("sealrs.io/check", "true")]);
    let plan = K3s.install(&ctx(&c, 0, &img)).unwrap();
    assert_eq!(
        ids(&plan)[..3],
        ["hook-scripts", "hook-check", "place-rootfs"]
    );
    assert!(K3s
        .uninstall(&ctx(&c, 0, &img))
        .unwrap()
        .step("hook-clean")
        .is_none());

    img.labels = labels(&[("clean", CLEAN)]);
    let plan = K3s.join(&ctx(&c, 1, &img)).unwrap();
    assert_eq!(
        ids(&plan)[..3],
        ["hook-scripts", "hook-markers", "place-rootfs"]
    );
    assert!(K3s
        .uninstall(&ctx(&c, 1, &img))
        .unwrap()
        .step("hook-clean")
        .is_some());
}

/// Labels are image data: the dry-run shows each hook's text exactly,
/// single-quoted, with its cwd and env.
#[test]
fn hooks_show_in_the_dry_run_exactly() {
    let c = cluster("10.0.0.1", "10.0.0.2", &["PASS=pa$$w0rd\"`x"]);
    let mut img = image("k3s", "v1.30.2+k3s1");
    let init = "printf '%s' \"$PASS\" > pass && printf '%s' 'lit$$\"`x' > literal";
    img.labels = labels(&[("sealrs.io/init", init)]);
    let text = K3s.install(&ctx(&c, 0, &img)).unwrap().render_dry_run();
    let expected = format!(
        " 3. [hook-init] run the image's init hook (label)
      run: bash -c {}
      env: PASS='pa$$w0rd\"`x'
      cwd: /var/lib/sealrs-host/rootfs/scripts
      idempotent: skipped when /var/lib/sealrs-host/markers/hooks/init-",
        crate::plan::quote(init)
    );
    assert!(text.contains(&expected), "missing\n{expected}\nin\n{text}");
    assert!(
        text.contains(r#"run: bash -c 'printf '\''%s'\'' "$PASS" > pass && printf '\''%s'\'' '\''lit$$"`x'\'' > literal'"#),
        "{text}"
    );
}

#[test]
fn remove_node_drains_then_deletes_with_each_runtimes_kubectl() {
    let c = cluster("10.0.0.1", "10.0.0.2", &[]);
    for (name, kubectl) in [
        (
            "k3s",
            vec![
                "/usr/local/bin/k3s",
                "kubectl",
                "--kubeconfig",
                "/etc/rancher/k3s/k3s.yaml",
            ],
        ),
        (
            "kubeadm",
            vec![
                "/usr/local/bin/kubectl",
                "--kubeconfig",
                "/etc/kubernetes/admin.conf",
            ],
        ),
        (
            "k0s",
            vec![
                "/usr/local/bin/k0s",
                "kubectl",
                "--kubeconfig",
                "/var/lib/k0s/pki/admin.conf",
            ],
        ),
    ] {
        let rt = runtime_for(name).unwrap();
        let img = image(name, "v1.30.2");
        let plan = rt.remove_node(&ctx(&c, 0, &img), "worker-2").unwrap();
        plan.validate().unwrap();
        assert_eq!(
            (
                plan.runtime.as_str(),
                plan.action.as_str(),
                plan.host.as_str()
            ),
            (name, "remove-node", "10.0.0.1"),
            "it runs on the first master"
        );
        assert_eq!(ids(&plan), ["drain", "delete-node"], "{name}");
        let with = |args: &[&str]| -> Vec<String> {
            kubectl.iter().chain(args).map(|s| s.to_string()).collect()
        };
        assert_eq!(
            argv(&plan, "drain"),
            with(&[
                "drain",
                "worker-2",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--force",
                "--timeout=300s"
            ]),
            "{name}"
        );
        assert_eq!(
            argv(&plan, "delete-node"),
            with(&["delete", "node", "worker-2", "--ignore-not-found"]),
            "{name}"
        );
        // Both run only while the node is in the cluster: a rerun is a no-op.
        let present = Check::IfOutput {
            argv: with(&[
                "get",
                "node",
                "worker-2",
                "--ignore-not-found",
                "-o",
                "name",
            ]),
        };
        for id in ["drain", "delete-node"] {
            assert_eq!(plan.step(id).unwrap().check, present, "{name} {id}");
        }
        // A drain that cannot finish does not keep the node in the cluster.
        assert!(matches!(
            plan.step("drain").unwrap().action,
            Action::Run {
                allow_failure: true,
                ..
            }
        ));
        assert!(matches!(
            plan.step("delete-node").unwrap().action,
            Action::Run {
                allow_failure: false,
                ..
            }
        ));

        assert!(
            matches!(
                rt.remove_node(&ctx(&c, 1, &img), "worker-2"),
                Err(RuntimeError::WrongHost { .. })
            ),
            "{name}: only the first master has the admin kubeconfig"
        );
        for bad in ["--all", "Worker-2", "", "a b"] {
            assert_eq!(
                rt.remove_node(&ctx(&c, 0, &img), bad),
                Err(RuntimeError::BadNodeName { node: bad.into() }),
                "{name}"
            );
        }
    }
}

#[test]
fn plans_do_not_depend_on_recorded_node_names() {
    // `sealrs run` probes each host before it records the hosts' node names,
    // and trusts the probe only because the names change no plan.
    for runtime in names() {
        let rt = runtime_for(runtime).unwrap();
        let img = image(runtime, "v1.30.2");
        let plain = cluster("10.0.0.1", "10.0.0.2", &["A=1"]);
        let mut named = plain.clone();
        for (i, host) in named.hosts.clone().iter().enumerate() {
            named.status.hosts.insert(
                host.key(),
                HostStatus {
                    node_name: Some(format!("node-{i}")),
                    ..HostStatus::default()
                },
            );
        }
        assert_eq!(
            rt.install(&ctx(&plain, 0, &img)).unwrap(),
            rt.install(&ctx(&named, 0, &img)).unwrap(),
            "{runtime} install"
        );
        assert_eq!(
            rt.join(&ctx(&plain, 1, &img)).unwrap(),
            rt.join(&ctx(&named, 1, &img)).unwrap(),
            "{runtime} join"
        );
    }
}

/// The image's rootfs as the installer gives it to the plans: archives
/// imported with ctr once each, manifests applied once after init, the
/// image's kubeadm.yaml merged, and a value it and `-e` both set refused.
#[test]
fn kubeadm_reads_the_image_rootfs() {
    let c = cluster("10.0.0.1", "10.0.0.2", &["POD_CIDR=10.42.0.0/16"]);
    let img = image("kubeadm", "v1.30.2");
    let host = |i: usize, yaml: &str| {
        let mut cx = ctx(&c, i, &img);
        cx.rootfs = "/var/lib/sealrs/rootfs/abc".into();
        cx.rootfs_files = vec![
            "bin/kubeadm".into(),
            "etc/kubeadm.yaml".into(),
            "images/kube-apiserver.tar".into(),
            "images/pause.tar.zst".into(),
            "images/shim/kubeadm-images".into(),
            "manifests/cni/flannel.yaml".into(),
        ];
        cx.rootfs_texts
            .insert("etc/kubeadm.yaml".into(), yaml.to_string());
        cx.rootfs_texts.insert(
            "etc/containerd/config.toml".into(),
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n".into(),
        );
        cx
    };
    let yaml = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: 10.96.0.0/12\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailSwapOn: false\n";
    let init = Kubeadm.install(&host(0, yaml)).unwrap();
    init.validate().unwrap();
    let ids: Vec<&str> = init.steps.iter().map(|s| s.id.as_str()).collect();
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(pos("start-containerd") < pos("import-images-0"));
    assert!(pos("import-images-1") < pos("init"));
    assert!(pos("init") < pos("apply-manifests"));
    assert_eq!(
        argv(&init, "import-images-0"),
        [
            "/usr/local/bin/ctr",
            "--namespace",
            "k8s.io",
            "images",
            "import",
            "/var/lib/sealrs/rootfs/abc/images/kube-apiserver.tar"
        ]
    );
    assert_eq!(
        init.step("import-images-1").unwrap().check,
        Check::Creates {
            path: "/var/lib/sealrs-host/markers/kubeadm-images/abc-images_pause.tar.zst".into()
        }
    );
    assert!(!ids.contains(&"import-images-2"), "{ids:?}");
    assert_eq!(
        argv(&init, "apply-manifests"),
        [
            "/usr/local/bin/kubectl",
            "--kubeconfig",
            "/etc/kubernetes/admin.conf",
            "apply",
            "--server-side",
            "--field-manager=sealrs",
            "--recursive",
            "-f",
            "/var/lib/sealrs/rootfs/abc/manifests"
        ]
    );
    let (_, config, _) = file_text(&init, "kubeadm-config");
    for line in [
        "serviceSubnet: 10.96.0.0/12",
        "podSubnet: 10.42.0.0/16",
        "failSwapOn: false",
    ] {
        assert!(config.contains(line), "{line} not in {config}");
    }
    let join = Kubeadm.join(&host(1, yaml)).unwrap();
    assert!(join.step("import-images-0").is_some());
    assert!(join.step("apply-manifests").is_none());
    // failSwapOn: false lifts the swap rule; conntrack is needed before v1.32.
    let pre = Kubeadm.prerequisites(&host(1, yaml)).unwrap();
    assert!(!pre
        .iter()
        .any(|p| matches!(p, Prerequisite::SwapOff { .. })));
    let names: Vec<&str> = pre
        .iter()
        .filter_map(|p| match p {
            Prerequisite::Program { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for n in ["conntrack", "ip", "iptables", "mount", "nsenter", "crictl"] {
        assert!(names.contains(&n), "{n}: {names:?}");
    }
    let pre = Kubeadm.prerequisites(&host(1, "")).unwrap();
    assert!(pre
        .iter()
        .any(|p| matches!(p, Prerequisite::SwapOff { .. })));
    // containerd's sandbox image must be the pause of kubeadm v1.30 (3.9).
    let mut old_pause = host(1, "");
    old_pause.rootfs_texts.insert(
        "etc/containerd/config.toml".into(),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.6\"\n".into(),
    );
    let err = Kubeadm.prerequisites(&old_pause).unwrap_err().to_string();
    assert!(
        err.contains("etc/containerd/config.toml")
            && err.contains("pause:3.6")
            && err.contains("registry.k8s.io/pause:3.9"),
        "{err}"
    );
    // kubeadm v1.32 dropped conntrack from its preflight (and uses pause 3.10).
    let img132 = image("kubeadm", "v1.32.0");
    let mut v132 = host(1, "");
    v132.image = &img132;
    v132.rootfs_texts.insert(
        "etc/containerd/config.toml".into(),
        "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.10\"\n"
            .into(),
    );
    let pre = Kubeadm.prerequisites(&v132).unwrap();
    assert!(!pre
        .iter()
        .any(|p| matches!(p, Prerequisite::Program { name, .. } if name == "conntrack")));
    // Air-gapped (archives under images/), one of them must hold the pause
    // image of the version, or the image's registry/ tree; online (no
    // archive), nothing is asked.
    let mut airgap = host(1, "");
    airgap.rootfs_files.push("images/control-plane.tar".into());
    airgap.rootfs_images = Some(vec!["registry.k8s.io/kube-apiserver:v1.30.2".into()]);
    let err = Kubeadm.prerequisites(&airgap).unwrap_err().to_string();
    assert!(
        err.contains("images/") && err.contains("none holds registry.k8s.io/pause:3.9"),
        "{err}"
    );
    airgap
        .rootfs_images
        .as_mut()
        .unwrap()
        .push("registry.k8s.io/pause:3.9".into());
    Kubeadm.prerequisites(&airgap).unwrap();
    let mut mirrored = host(1, "");
    mirrored.rootfs_files.extend([
        "images/control-plane.tar".to_string(),
        "registry/docker/registry/v2/repositories/pause/_manifests/tags/3.9/current/link".into(),
    ]);
    mirrored.rootfs_images = Some(Vec::new());
    Kubeadm.prerequisites(&mirrored).unwrap();
    let mut online = host(1, "");
    online.rootfs_files.retain(|f| !f.starts_with("images/"));
    online.rootfs_images = Some(Vec::new());
    Kubeadm.prerequisites(&online).unwrap();

    let mut none = host(1, "");
    none.rootfs_texts.remove("etc/containerd/config.toml");
    let err = Kubeadm.prerequisites(&none).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("pause:3.9"),
        "{err}"
    );

    let clash = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n";
    let err = Kubeadm.install(&host(0, clash)).unwrap_err().to_string();
    assert!(
        err.contains("etc/kubeadm.yaml")
            && err.contains("10.244.0.0/16")
            && err.contains("-e POD_CIDR gives 10.42.0.0/16"),
        "{err}"
    );
    assert!(Kubeadm.prerequisites(&host(1, clash)).is_err());
    let unknown = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n";
    let err = Kubeadm.install(&host(0, unknown)).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("v1beta2"), "{err}");
}

#[test]
fn kubeadm_forgets_a_control_plane_by_etcdctl_member_remove_in_a_surviving_etcd_pod() {
    let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
    let img = image("kubeadm", "v1.30.2");
    let first = ctx(&c, 0, &img);
    let plan = Kubeadm.forget_member(&first, &c.hosts[1], "m2").unwrap();
    plan.validate().unwrap();
    let crate::plan::Action::Run { argv, .. } = &plan.steps[0].action else {
        panic!("{plan:?}")
    };
    // The node's name reaches the script as an argument, not in its text.
    assert_eq!(argv[0..2], ["bash", "-c"]);
    assert_eq!(
        argv[3..],
        [
            "etcd-member-remove",
            "/usr/local/bin/kubectl",
            "/etc/kubernetes/admin.conf",
            "m2"
        ]
    );
    assert!(argv[2].contains("member remove") && !argv[2].contains("m2"));
    assert!(Kubeadm
        .forget_member(&first, &c.hosts[1], "M2; rm -rf /")
        .is_err());
    assert!(Kubeadm
        .forget_member(&first, &c.hosts[3], "w1")
        .unwrap()
        .steps
        .is_empty());
    // k3s removes the member itself when the server's Node is deleted.
    let k3s_img = image("k3s", "v1.30.2+k3s1");
    assert!(K3s
        .forget_member(&ctx(&c, 0, &k3s_img), &c.hosts[1], "m2")
        .unwrap()
        .steps
        .is_empty());
}

#[test]
fn an_even_number_of_servers_is_a_step_of_replacing_a_master_never_a_first_run() {
    let img = image("k3s", "v1.30.2+k3s1");
    let running = |c: &mut Cluster, hosts: &[&str]| {
        for h in hosts {
            c.status.hosts.insert(
                h.to_string(),
                HostStatus {
                    phase: crate::cluster::Phase::Running,
                    runtime: Some("k3s".into()),
                    ..Default::default()
                },
            );
        }
    };
    // A first run of 2: refused, no warning.
    let fresh = cluster("10.0.0.1,10.0.0.2", "", &[]);
    assert!(K3s.verify(&fresh, &img).is_err());
    assert!(K3s.warnings(&fresh).is_empty());
    // 3 → 2 (delete) and 1 → 2 (add): allowed, with a warning about quorum.
    let mut shrunk = cluster("10.0.0.1,10.0.0.2", "", &[]);
    running(&mut shrunk, &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    K3s.verify(&shrunk, &img).unwrap();
    let w = K3s.warnings(&shrunk);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("quorum needs 2"), "{w:?}");
    let mut grown = cluster("10.0.0.1,10.0.0.2", "", &[]);
    running(&mut grown, &["10.0.0.1"]);
    K3s.verify(&grown, &img).unwrap();
    assert_eq!(K3s.warnings(&grown).len(), 1);
    let k0s = image("k0s", "v1.30.2+k0s.0");
    // (k0s refuses this one only for the k3s its status records.)
    assert!(!K0s
        .verify(&grown, &k0s)
        .unwrap_err()
        .iter()
        .any(|v| matches!(v, Violation::EvenServers { .. })));
    assert_eq!(K0s.warnings(&grown).len(), 1);
    // 1 → 4 at once is not one step: refused.
    let mut jump = cluster("10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4", "", &[]);
    running(&mut jump, &["10.0.0.1"]);
    assert!(K3s
        .verify(&jump, &img)
        .unwrap_err()
        .contains(&Violation::EvenServers {
            runtime: "k3s".into(),
            count: 4
        }));
    // An odd number says nothing.
    let mut three = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "", &[]);
    running(&mut three, &["10.0.0.1", "10.0.0.2"]);
    assert!(K3s.warnings(&three).is_empty());
}

/// The pause image kubeadm of each version lists (PauseVersion), which
/// build expects in a kubeadm image's image lists.
#[test]
fn kubeadm_expects_the_pause_image_of_its_version() {
    let v = |s: &str| Version::parse(s).unwrap();
    assert_eq!(
        Kubeadm.expected_images(&v("v1.30.2")),
        ["registry.k8s.io/pause:3.9"]
    );
    assert_eq!(
        Kubeadm.expected_images(&v("v1.31.0")),
        ["registry.k8s.io/pause:3.10"]
    );
    assert!(Kubeadm.expected_images(&v("v1.20.0")).is_empty());
    assert!(K3s.expected_images(&v("v1.30.2+k3s1")).is_empty());
}

#[test]
fn a_failed_upgrade_goes_back_within_a_minor_and_never_on_a_kubeadm_control_plane() {
    let v = |s: &str| Version::parse(s).unwrap();
    let k3s = runtime_for("k3s").unwrap();
    assert_eq!(
        k3s.rollback_refused(Role::Node, &v("v1.30.2+k3s1"), &v("v1.30.3+k3s1")),
        None
    );
    let across = k3s
        .rollback_refused(Role::Master, &v("v1.30.2+k3s1"), &v("v1.31.0+k3s1"))
        .unwrap();
    assert!(
        across.contains("crosses a minor version") && across.contains("v1.30"),
        "{across}"
    );
    let kubeadm = runtime_for("kubeadm").unwrap();
    let master = kubeadm
        .rollback_refused(Role::Master, &v("v1.30.2"), &v("v1.30.3"))
        .unwrap();
    assert!(
        master.contains("kubeadm does not take a control plane"),
        "{master}"
    );
    assert_eq!(
        kubeadm.rollback_refused(Role::Node, &v("v1.30.2"), &v("v1.30.3")),
        None
    );
}

/// The Clusterfile's kubeadm documents are merged over the image's and what
/// sealrs sets (sealos merges them over its defaults); a value the two set
/// differently is an error naming both places.
#[test]
fn kubeadm_merges_the_clusterfiles_documents_into_its_config() {
    let mut c = cluster("10.0.0.1", "10.0.0.4", &[]);
    c.runtime_config = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.160.0.0/12\napiServer:\n  extraArgs:\n    audit-log-maxage: \"7\"\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 200\n".into();
    let img = image("kubeadm", "v1.30.2");
    Kubeadm.verify(&c, &img).unwrap();
    let init = Kubeadm.install(&ctx(&c, 0, &img)).unwrap();
    let (_, config, _) = file_text(&init, "kubeadm-config");
    for line in [
        "podSubnet: 10.160.0.0/12",
        "audit-log-maxage: '7'",
        "kubernetesVersion: v1.30.2",
        "kind: KubeletConfiguration",
        "maxPods: 200",
        "advertiseAddress: 10.0.0.1",
    ] {
        assert!(config.contains(line), "{line} not in {config}");
    }
    let node = Kubeadm.join(&ctx(&c, 1, &img)).unwrap();
    assert!(node.validate().is_ok());

    let mut both = cluster("10.0.0.1", "", &["POD_CIDR=10.244.0.0/16"]);
    both.runtime_config = c.runtime_config.clone();
    let err = Kubeadm
        .install(&ctx(&both, 0, &img))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10.160.0.0/12 in the image's file or the Clusterfile"),
        "{err}"
    );
    assert!(err.contains("-e POD_CIDR gives 10.244.0.0/16"), "{err}");

    // A kind kubeadm does not read is refused before any host is reached,
    // and other runtimes refuse the documents.
    let mut bad = cluster("10.0.0.1", "", &[]);
    bad.runtime_config = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n".into();
    let v = Kubeadm.verify(&bad, &img).unwrap_err();
    assert!(
        v.iter().any(|v| v
            .to_string()
            .contains("the Clusterfile's kubeadm documents")),
        "{v:?}"
    );
    let k3s = image("k3s", "v1.30.2+k3s1");
    let v = crate::runtime::k3s::K3s.verify(&c, &k3s).unwrap_err();
    assert!(
        v.iter()
            .any(|v| v.to_string().contains("does not read them")),
        "{v:?}"
    );
}
