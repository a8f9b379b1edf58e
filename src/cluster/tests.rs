use super::*;

const OURS: &str = r#"
apiVersion: sealrs.io/v1
kind: Cluster
metadata:
  name: demo
spec:
  images: [registry.local/k3s:v1.30.2-k3s1]
  env:
    POD_CIDR: 10.42.0.0/16
    PORT: 8080
    PASS: 'pa$$w0rd"`x'
  ssh:
    user: admin
    key: /home/me/.ssh/id_ed25519
    passwordFrom: {env: SSH_PASSWORD}
  hosts:
    - address: 10.0.0.1
      roles: [master]
    - address: fd00::2
      roles: [control-plane, worker]
    - address: Node-3.Example.com
      port: 2222
      roles: [node]
      ssh: {user: root, passwordFrom: stdin}
"#;

const SEALOS: &str = r#"
apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  name: default
spec:
  hosts:
    - ips:
        - 192.168.0.2:22
        - 192.168.0.3:2222
        - "[fd00::4]:22"
      roles:
        - master
        - amd64
    - ips: [192.168.0.5]
      roles: [node, amd64]
      ssh:
        user: ops
        port: "2200"
  image:
    - labring/kubernetes:v1.25.0
    - labring/helm:v3.8.2
  ssh:
    passwd: 'pa$$'
    pk: /root/.ssh/id_rsa
    port: 22
    user: root
  env:
    - POD_CIDR=100.64.0.0/10
    - EMPTY=
    - EQ=a=b
status: {}
"#;

fn problems(text: &str) -> Vec<String> {
    match Cluster::from_yaml(text, "Clusterfile") {
        Err(e @ ClusterError::Invalid { .. }) => {
            e.problems().iter().map(|p| p.to_string()).collect()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn reads_our_clusterfile() {
    let c = Cluster::from_yaml(OURS, "Clusterfile").unwrap();
    assert_eq!(c.name, "demo");
    assert_eq!(c.images, ["registry.local/k3s:v1.30.2-k3s1"]);
    assert_eq!(c.env["PORT"], "8080");
    assert_eq!(c.env["PASS"], "pa$$w0rd\"`x");
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.hosts[0].address, Address::parse("10.0.0.1").unwrap());
    assert_eq!(c.hosts[1].roles, [Role::Master, Role::Node]);
    assert_eq!(c.hosts[1].address.url_host(), "[fd00::2]");
    assert_eq!(c.hosts[2].address.to_string(), "node-3.example.com");
    assert_eq!(c.first_master().unwrap().key(), "10.0.0.1");
    assert_eq!(c.workers().count(), 1);
    let ssh = c.ssh_for(&c.hosts[2]);
    assert_eq!(ssh.user.as_deref(), Some("root"));
    assert_eq!(ssh.port, Some(2222));
    assert_eq!(ssh.key.as_deref(), Some("/home/me/.ssh/id_ed25519"));
    assert_eq!(ssh.password_from, Some(PasswordSource::Stdin));
    let ssh0 = c.ssh_for(&c.hosts[0]);
    assert_eq!(ssh0.port, Some(22));
    assert_eq!(
        ssh0.password_from,
        Some(PasswordSource::Env("SSH_PASSWORD".into()))
    );
}

#[test]
fn reads_a_sealos_clusterfile() {
    let c = Cluster::from_yaml(SEALOS, "Clusterfile").unwrap();
    assert_eq!(c.name, "default");
    let keys: Vec<String> = c.hosts.iter().map(|h| h.key()).collect();
    assert_eq!(
        keys,
        ["192.168.0.2", "192.168.0.3", "fd00::4", "192.168.0.5"]
    );
    assert_eq!(c.hosts[1].port, Some(2222));
    assert_eq!(c.hosts[2].port, Some(22));
    assert_eq!(c.hosts[3].port, None);
    assert_eq!(c.masters().count(), 3);
    assert_eq!(c.hosts[0].labels, ["amd64"]);
    assert_eq!(c.ssh_for(&c.hosts[3]).port, Some(2200));
    assert_eq!(c.ssh_for(&c.hosts[3]).user.as_deref(), Some("ops"));
    assert_eq!(
        c.ssh_for(&c.hosts[0]).key.as_deref(),
        Some("/root/.ssh/id_rsa")
    );
    assert_eq!(
        c.ssh.password_from,
        Some(PasswordSource::Value(Secret::new("pa$$")))
    );
    assert_eq!(c.env["POD_CIDR"], "100.64.0.0/10");
    assert_eq!(c.env["EMPTY"], "");
    assert_eq!(c.env["EQ"], "a=b");
    assert_eq!(c.images.len(), 2);
    // The inline password never reaches saved state, nor Debug output.
    let saved = c.to_yaml();
    assert!(!saved.contains("pa$$"), "{saved}");
    assert!(!format!("{c:?}").contains("pa$$"));
}

#[test]
fn state_round_trips_with_status() {
    let mut c = Cluster::from_yaml(OURS, "Clusterfile").unwrap();
    c.status.phase = Phase::Running;
    c.status.hosts.insert(
        "10.0.0.1".into(),
        HostStatus {
            phase: Phase::Running,
            runtime: Some("k3s".into()),
            version: Some("v1.30.2+k3s1".into()),
            images: vec![InstalledImage {
                name: "registry.local/k3s:v1.30.2-k3s1".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
            }],
            node_name: Some("master-1".into()),
        },
    );
    let yaml = c.to_yaml();
    assert!(yaml.contains("nodeName: master-1"), "{yaml}");
    assert!(
        yaml.starts_with("apiVersion: sealrs.io/v1\nkind: Cluster\n"),
        "{yaml}"
    );
    assert!(yaml.contains("phase: Running"), "{yaml}");
    assert!(
        yaml.contains("passwordFrom:\n      env: SSH_PASSWORD"),
        "{yaml}"
    );
    let back = Cluster::from_yaml(&yaml, "state").unwrap();
    assert_eq!(back, c);
}

#[test]
fn reports_every_problem_with_its_field() {
    let text = r#"
apiVersion: sealrs.io/v1
kind: Cluster
metadata: {name: Bad_Name}
spec:
  images: ["UPPER/case"]
  env: {"1BAD": x, OK: [1]}
  hosts:
    - {address: 10.0.0.1, roles: [node]}
    - {address: "300.1.2.3", roles: [node]}
    - {address: 10.0.0.1, roles: [boss]}
    - {address: "-bad-.com", roles: []}
"#;
    let p = problems(text);
    let expect = [
        "spec.env.OK: must be a string",
        "spec.hosts[1].address: \"300.1.2.3\" is not a valid IP address",
        "spec.hosts[2].roles[0]: unknown role \"boss\"",
        "spec.hosts[3].address: \"-bad-.com\" is neither",
        "metadata.name: \"Bad_Name\" is not a valid cluster name",
        "spec.hosts: no host has the master role",
        "spec.hosts[2].roles: host 10.0.0.1 has no role",
        "spec.hosts[2].address: duplicate address 10.0.0.1",
        "spec.env.1BAD: \"1BAD\" is not a valid variable name",
        "spec.images[0]:",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
}

#[test]
fn shape_errors_name_the_field() {
    let text = "apiVersion: sealrs.io/v1\nkind: Cluster\nmetadata: {name: a}\nspec:\n  hosts:\n    - address: 10.0.0.1\n      roles: [master]\n      sshh: {}\n";
    let err = Cluster::from_yaml(text, "Clusterfile")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.hosts[0]") && err.contains("sshh"),
        "{err}"
    );
    let text = "apiVersion: sealrs.io/v1\nkind: Cluster\nmetadata: {name: a}\nspec:\n  hosts:\n    - address: 10.0.0.1\n      port: seventy\n      roles: [master]\n";
    let err = Cluster::from_yaml(text, "Clusterfile")
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.hosts[0].port"), "{err}");
    let err = Cluster::from_yaml("apiVersion: v1\nkind: Pod\n", "f").unwrap_err();
    assert!(matches!(err, ClusterError::UnknownFormat { .. }), "{err}");
    assert!(matches!(
        Cluster::from_yaml("a: [", "f").unwrap_err(),
        ClusterError::Syntax { .. }
    ));
}

#[test]
fn sealos_problems_name_fields() {
    let text = r#"
apiVersion: apps.sealos.io/v1beta1
kind: Cluster
spec:
  hosts:
    - ips: [10.0.0.1:22, "10.0.0.2:0", "bad host"]
      roles: [node]
    - ips: [10.0.0.1]
      roles: [amd64]
  ssh: {port: many}
  env: [NOEQUALS, "2X=1"]
"#;
    let p = problems(text);
    let expect = [
        "spec.ssh.port: must be a port number",
        "spec.env[0]: \"NOEQUALS\" is not KEY=VALUE",
        "spec.env[1]: \"2X\" is not a valid variable name",
        "spec.hosts[0].ips[1]: \"10.0.0.2:0\"",
        "spec.hosts[0].ips[2]:",
        "spec.hosts[1].roles: needs master or node",
        "spec.hosts: no host has the master role",
        "spec.hosts: duplicate address 10.0.0.1",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
}

#[test]
fn builds_from_flags() {
    let args = ClusterArgs {
        name: "".into(),
        masters: vec!["10.0.0.1,10.0.0.2".into(), "10.0.0.3:2222".into()],
        nodes: vec!["10.0.0.4, 10.0.0.5".into()],
        images: vec!["k3s:v1.30.2-k3s1".into()],
        env: vec!["PASS=pa$$w0rd\"`x".into(), "EMPTY=".into()],
        user: Some("admin".into()),
        port: Some(2200),
        key: None,
        password: Some(PasswordSource::Stdin),
        known_hosts: None,
    };
    let c = Cluster::from_args(&args).unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.masters().count(), 3);
    assert_eq!(c.workers().count(), 2);
    assert_eq!(c.env["PASS"], "pa$$w0rd\"`x");
    assert_eq!(c.ssh_for(&c.hosts[0]).port, Some(2200));
    assert_eq!(c.ssh_for(&c.hosts[2]).port, Some(2222));
    assert_eq!(c.ssh_for(&c.hosts[4]).user.as_deref(), Some("admin"));
}

#[test]
fn flag_problems_come_all_at_once() {
    let args = ClusterArgs {
        name: "Bad Name".into(),
        masters: vec![],
        nodes: vec!["10.0.0.4,10.0.0.4,not_an_ip!".into()],
        env: vec!["1X=y".into(), "novalue".into()],
        ..ClusterArgs::default()
    };
    let err = Cluster::from_args(&args).unwrap_err();
    let p: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    let expect = [
        "--nodes: duplicate address 10.0.0.4",
        "--nodes: \"not_an_ip!\" is neither",
        "-e: \"1X\" is not a valid variable name",
        "-e: \"novalue\" is not KEY=VALUE",
        "--cluster: \"Bad Name\"",
        "--masters: no host has the master role",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    let text = err.to_string();
    assert!(
        text.starts_with("command line: invalid cluster, 6 problems:"),
        "{text}"
    );
}

#[test]
fn addresses_and_roles() {
    assert!(matches!(Address::parse("10.1.2.3"), Ok(Address::Ip(_))));
    assert!(matches!(Address::parse("::1"), Ok(Address::Ip(_))));
    assert!(Address::parse("").is_err());
    assert!(Address::parse("a..b").is_err());
    assert!(Address::parse("1.2.3").is_err());
    for (a, unreachable) in [
        ("0.0.0.0", true),
        ("255.255.255.255", true),
        ("224.0.0.1", true),
        ("::", true),
        ("ff02::1", true),
        ("10.0.0.1", false),
        ("host", false),
    ] {
        assert_eq!(
            Address::parse(a).unwrap().unreachable_reason().is_some(),
            unreachable,
            "{a}"
        );
    }
    assert_eq!(Role::parse("Control-Plane"), Some(Role::Master));
    assert_eq!(Role::parse("agent"), Some(Role::Node));
    assert_eq!(Role::parse("amd64"), None);
    assert_eq!(
        parse_env_pair("K=a=b").unwrap(),
        ("K".to_string(), "a=b".to_string())
    );
    assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
}

#[test]
fn node_names_are_hostnames_as_kubernetes_takes_them() {
    assert_eq!(
        node_name_from_hostname("Worker-1\n").as_deref(),
        Some("worker-1")
    );
    assert_eq!(
        node_name_from_hostname("h2.example.com").as_deref(),
        Some("h2.example.com")
    );
    for bad in ["", "-rf", "a_b", "a..b", "end-", "sp ace", &"x".repeat(254)] {
        assert_eq!(node_name_from_hostname(bad), None, "{bad:?}");
    }
}

#[test]
fn a_cluster_made_anew_keeps_what_the_saved_one_records_of_its_hosts() {
    let mut saved = Cluster::from_yaml(OURS, "Clusterfile").unwrap();
    let installed = HostStatus {
        phase: Phase::Running,
        runtime: Some("k3s".into()),
        version: Some("v1.31.0+k3s1".into()),
        images: Vec::new(),
        node_name: Some("master-1".into()),
    };
    saved
        .status
        .hosts
        .insert("10.0.0.1".into(), installed.clone());
    saved
        .status
        .hosts
        .insert("10.9.9.9".into(), installed.clone());
    let mut anew = Cluster::from_yaml(OURS, "Clusterfile").unwrap();
    anew.keep_status_of(&saved);
    assert_eq!(anew.status.hosts.get("10.0.0.1"), Some(&installed));
    // Only its own hosts: one the saved cluster had and this one has not is
    // not taken along.
    assert_eq!(anew.status.hosts.len(), 1);
}

/// 10.0.0.1 a master, 10.0.0.2 a node.
fn master_and_node() -> Cluster {
    Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into()],
        nodes: vec!["10.0.0.2".into()],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn added_hosts_parse_like_run_flags_without_the_first_master() {
    let hosts = parse_hosts(
        &master_and_node(),
        &["10.0.0.3".into()],
        &["10.0.0.4:2222,10.0.0.5".into()],
    )
    .unwrap();
    let got: Vec<(String, Vec<Role>, Option<u16>)> = hosts
        .iter()
        .map(|h| (h.key(), h.roles.clone(), h.port))
        .collect();
    assert_eq!(
        got,
        vec![
            ("10.0.0.3".into(), vec![Role::Master], None),
            ("10.0.0.4".into(), vec![Role::Node], Some(2222)),
            ("10.0.0.5".into(), vec![Role::Node], None),
        ]
    );
}

#[test]
fn naming_the_first_master_again_is_a_duplicate_and_bad_addresses_are_named() {
    let err = parse_hosts(&master_and_node(), &[], &["10.0.0.1".into()]).unwrap_err();
    assert!(
        err.to_string().contains("duplicate address 10.0.0.1"),
        "{err}"
    );
    let err = parse_hosts(&master_and_node(), &[], &["not an address".into()]).unwrap_err();
    assert!(err.to_string().contains("--nodes"), "{err}");
}

#[test]
fn deleted_hosts_are_named_by_address_and_a_port_must_be_theirs() {
    let c = Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into()],
        nodes: vec!["10.0.0.2,10.0.0.3:2222,[fd00::4]:2200".into()],
        ..Default::default()
    })
    .unwrap();
    let got = parse_targets(
        &c,
        &[
            "10.0.0.2:22, 10.0.0.3:2222".into(),
            "[fd00::4]:2200,10.0.0.2,10.0.0.9:22".into(),
        ],
    )
    .unwrap();
    let got: Vec<String> = got.iter().map(Address::to_string).collect();
    assert_eq!(got, ["10.0.0.2", "10.0.0.3", "fd00::4", "10.0.0.9"]);

    let err = parse_targets(&c, &["10.0.0.3:22,10.0.0.2:x,fd00::4".into()]).unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "--nodes: 10.0.0.3:22: cluster default has 10.0.0.3 with SSH port 2222, not 22"
        ),
        "{problems:?}"
    );
    assert!(problems[1].contains("\"x\" is not a port"), "{problems:?}");
}

#[test]
fn only_keeps_the_named_hosts_in_cluster_order() {
    let c = master_and_node();
    let sub = c.only(&[c.hosts[1].address.clone()]);
    assert_eq!(sub.hosts.len(), 1);
    assert_eq!(sub.hosts[0].key(), "10.0.0.2");
    assert_eq!(sub.name, c.name);
}

/// A Clusterfile as `sealos gen` writes it and the sealos docs then edit it
/// (run-cluster/gen-apply-cluster): the Cluster, a kubeadm
/// ClusterConfiguration and a Config.
const SEALOS_MULTI: &str = r#"apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  creationTimestamp: null
  name: default
spec:
  hosts:
    - ips: [192.168.0.2:22]
      roles: [master, amd64, registry]
    - ips: [192.168.0.5:22]
      roles: [node, amd64]
  image:
    - labring/kubernetes:v1.25.0
    - labring/calico:v3.24.1
  ssh:
    passwd: xxx
    user: root
status: {}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
networking:
  podSubnet: 10.160.0.0/12
---
# a comment-only document is nothing
---
apiVersion: apps.sealos.io/v1beta1
kind: Config
metadata:
  name: calico
spec:
  path: charts/calico/values.yaml
  match: labring/calico:v3.24.1
  strategy: merge
  data: |
    installation:
      calicoNetwork:
        ipPools:
        - cidr: 10.160.0.0/12
"#;

#[test]
fn a_sealos_multi_document_clusterfile_keeps_its_configs_and_kubeadm_documents() {
    let c = Cluster::from_yaml(SEALOS_MULTI, "Clusterfile").unwrap();
    assert_eq!(c.hosts.len(), 2);
    assert!(c.hosts[0].is_registry() && !c.hosts[1].is_registry());
    assert_eq!(c.hosts[0].sealos_roles(), ["master", "amd64", "registry"]);
    assert_eq!(
        c.runtime_config,
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.160.0.0/12\n"
    );
    assert_eq!(
        c.configs,
        [ConfigDoc {
            name: "calico".into(),
            path: "charts/calico/values.yaml".into(),
            image: Some("labring/calico:v3.24.1".into()),
            strategy: Strategy::Merge,
            data: "installation:\n  calicoNetwork:\n    ipPools:\n    - cidr: 10.160.0.0/12\n"
                .into(),
        }]
    );
    // Saved and read back, the documents stay (the inline password does not).
    let back = Cluster::from_yaml(&c.to_yaml(), "saved").unwrap();
    assert_eq!(back.configs, c.configs);
    assert_eq!(back.runtime_config, c.runtime_config);
    assert!(back.hosts[0].is_registry());
}

#[test]
fn the_registry_role_is_kept_in_our_format_too() {
    let text = OURS.replace("roles: [master]", "roles: [master, registry]");
    let c = Cluster::from_yaml(&text, "f").unwrap();
    assert!(c.hosts[0].is_registry());
    assert!(Cluster::from_yaml(&c.to_yaml(), "saved").unwrap().hosts[0].is_registry());
}

#[test]
fn bad_documents_are_refused_naming_file_and_line() {
    let bad = format!(
        "{SEALOS_MULTI}---\napiVersion: apps.sealos.io/v1beta1\nkind: Config\nmetadata:\n  name: escape\nspec:\n  path: ../../etc/passwd\n  data: x\n---\napiVersion: apps.sealos.io/v1beta1\nkind: Config\nmetadata:\n  name: abs\nspec:\n  path: /etc/shadow\n  strategy: replace\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    );
    let first_bad = SEALOS_MULTI.lines().count() + 2;
    let err = Cluster::from_yaml(&bad, "Clusterfile").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "Clusterfile:{first_bad}: Config \"escape\" spec.path: \"../../etc/passwd\" leaves the image"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("Config \"abs\" spec.strategy: unknown strategy \"replace\""),
        "{shown}"
    );
    assert!(
        shown.contains("unknown document apiVersion \"v1\" kind \"ConfigMap\""),
        "{shown}"
    );
    assert_eq!(err.problems().len(), 3, "{shown}");
    let abs = "apiVersion: apps.sealos.io/v1beta1\nkind: Config\nmetadata:\n  name: abs\nspec:\n  path: /etc/shadow\n";
    let err = Cluster::from_yaml(&format!("{SEALOS_MULTI}---\n{abs}"), "C").unwrap_err();
    assert!(
        err.to_string()
            .contains("is absolute, so it is outside the image"),
        "{err}"
    );
    // A second Cluster is refused; YAML errors in a later document name its line.
    let two = format!("{SEALOS_MULTI}---\n{SEALOS_MULTI}");
    assert!(Cluster::from_yaml(&two, "C")
        .unwrap_err()
        .to_string()
        .contains("a second Cluster"));
    let broken = format!("{SEALOS_MULTI}---\napiVersion: [\n");
    let line = SEALOS_MULTI.lines().count() + 2;
    let err = Cluster::from_yaml(&broken, "C").unwrap_err().to_string();
    assert!(err.contains(&format!("line {line}")), "{err}");
}

#[test]
fn config_paths_must_stay_inside_the_image() {
    for ok in ["etc/a.yaml", "./charts/x/values.yaml", "a"] {
        assert!(inside_image(ok).is_ok(), "{ok}");
    }
    for bad in ["", "/etc/a", "../a", "etc/../../a", ".", "./"] {
        assert!(inside_image(bad).is_err(), "{bad}");
    }
}

#[test]
fn sealos_hosts_env_is_read_kept_when_saved_and_bad_pairs_named() {
    let text = r#"
apiVersion: apps.sealos.io/v1beta1
kind: Cluster
spec:
  hosts:
    - ips: [10.0.0.1:22, 10.0.0.2:22]
      roles: [master]
      env: ["HELM_OPTS=--set a=b --set c=d", "PASS=pa$$w0rd\"`x"]
    - ips: [10.0.0.3]
      roles: [node]
"#;
    let cluster = Cluster::from_yaml(text, "f").unwrap();
    for host in &cluster.hosts[..2] {
        assert_eq!(host.env["HELM_OPTS"], "--set a=b --set c=d");
        assert_eq!(host.env["PASS"], "pa$$w0rd\"`x");
    }
    assert!(cluster.hosts[2].env.is_empty());
    let saved = Cluster::from_yaml(&cluster.to_yaml(), "saved").unwrap();
    assert_eq!(saved.hosts[0].env, cluster.hosts[0].env);

    let bad = text.replace("\"PASS=", "\"NOEQUALS\", \"2X=1\", \"PASS=");
    let p = problems(&bad);
    for e in [
        "spec.hosts[0].env[1]: \"NOEQUALS\" is not KEY=VALUE",
        "spec.hosts[0].env[2]: \"2X\" is not a valid variable name",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
}
