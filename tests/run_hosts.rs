//! `sealrs run` on real hosts (systemd-nspawn, real sshd and systemd) for
//! kubeadm and k0s, and the ways a run goes wrong: a host that is down, a
//! step that fails midway (then a rerun that finishes), an SSH password with
//! `$` and quotes, and Clusterfiles (ours, and sealos').

use std::process::Output;

use crate::common::{with_stdin, Env};
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{run_on, run_on_counted, ssh_flags, standin_log};

/// Builds `Kubefile-examples/<runtime>` with stand-ins as `<runtime>-cluster:1`.
fn build(env: &Env, runtime: &str) -> String {
    let dir = example(env, runtime, runtime);
    let tag = format!("{runtime}-cluster:1");
    env.ok(&["build", "-q", "--no-images", "-t", &tag, &dir]);
    tag
}

/// The images `kubeadm config images list --kubernetes-version v1.30.2`
/// prints (kubeadm v1.30's constants; the kubeadm stand-in's list).
const KUBEADM_IMAGES: [&str; 7] = [
    "registry.k8s.io/kube-apiserver:v1.30.2",
    "registry.k8s.io/kube-controller-manager:v1.30.2",
    "registry.k8s.io/kube-scheduler:v1.30.2",
    "registry.k8s.io/kube-proxy:v1.30.2",
    "registry.k8s.io/coredns/coredns:v1.11.1",
    "registry.k8s.io/etcd:3.5.12-0",
    "registry.k8s.io/pause:3.9",
];

/// `Kubefile-examples/kubeadm` with the real containerd, ctr, shim and runc
/// from Debian in `bin/` (the rest stand-ins), the images kubeadm v1.30.2
/// needs as two oci-archives made by `sealrs save` in `images/`, and a CNI
/// manifest; built as `kubeadm-cluster:1`.
pub(crate) fn build_kubeadm(env: &Env) -> String {
    build_kubeadm_archives(env, true)
}

/// [`build_kubeadm`], with or without the archive holding the pause image.
pub(crate) fn build_kubeadm_archives(env: &Env, with_pause: bool) -> String {
    let dir = kubeadm_context(env, with_pause);
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "-t",
        "kubeadm-cluster:1",
        &dir,
    ]);
    "kubeadm-cluster:1".to_string()
}

/// The build context of [`build_kubeadm_archives`] (its directory, under
/// the env), for tests that add to it.
pub(crate) fn kubeadm_context(env: &Env, with_pause: bool) -> String {
    let dir = example(env, "kubeadm", "kubeadm");
    for (bin, real) in [
        ("containerd", "/usr/bin/containerd"),
        ("ctr", "/usr/bin/ctr"),
        (
            "containerd-shim-runc-v2",
            "/usr/bin/containerd-shim-runc-v2",
        ),
        ("runc", "/usr/sbin/runc"),
    ] {
        let dest = env.path(&format!("{dir}/bin/{bin}"));
        std::fs::remove_file(&dest).unwrap();
        std::fs::copy(real, &dest)
            .unwrap_or_else(|e| panic!("{real}: {e} (install Debian's containerd and runc)"));
    }
    // One small image under every name kubeadm's preflight looks for.
    env.write("control-plane-image/Kubefile", "FROM scratch\nCOPY f /f\n");
    env.write("control-plane-image/f", "a layer\n");
    let mut args = vec!["build", "-q", "--no-images"];
    for name in KUBEADM_IMAGES {
        args.extend(["-t", name]);
    }
    args.push("control-plane-image");
    env.ok(&args);
    let archive = |file: &str, names: &[&str]| {
        let out = env.path(&format!("{dir}/images/{file}"));
        let mut args = vec!["save", "-o", out.to_str().unwrap()];
        args.extend(names);
        env.ok(&args);
    };
    archive("control-plane.tar", &KUBEADM_IMAGES[..6]);
    if with_pause {
        archive("pause.tar", &KUBEADM_IMAGES[6..]);
    }
    env.write(
        &format!("{dir}/manifests/cni.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cni-standin\n  namespace: kube-system\n",
    );
    dir
}

/// The image names the real containerd on `host` holds in `k8s.io`.
fn containerd_images(host: &Host) -> Vec<String> {
    host.exec_ok(&[
        "/usr/local/bin/ctr",
        "--namespace",
        "k8s.io",
        "images",
        "ls",
        "-q",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn ips(hosts: &TestHosts, idx: &[usize]) -> String {
    idx.iter()
        .map(|&i| hosts[i].ip.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// `sealrs run IMAGE --masters .. --nodes .. <ssh flags> extra`, not asserted.
fn try_run(
    env: &Env,
    image: &str,
    hosts: &TestHosts,
    masters: &[usize],
    nodes: &[usize],
    extra: &[&str],
) -> Output {
    let mut args: Vec<String> = vec![
        "run".into(),
        image.into(),
        "--masters".into(),
        ips(hosts, masters),
    ];
    if !nodes.is_empty() {
        args.extend(["--nodes".into(), ips(hosts, nodes)]);
    }
    args.extend(ssh_flags(hosts));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run(&refs)
}

fn is_active(host: &Host, unit: &str) -> String {
    let out = host.exec(&["systemctl", "is-active", unit]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

/// The stand-in's log lines of one program.
fn calls(host: &Host, program: &str) -> Vec<String> {
    standin_log(host)
        .lines()
        .filter(|l| l.starts_with(&format!("{program}|")))
        .map(|l| l.split('|').nth(2).unwrap_or_default().to_string())
        .collect()
}

#[test]
fn kubeadm_with_one_control_plane_and_two_workers_then_an_unchanged_rerun() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let image = build_kubeadm(&env);
    let stderr = run_on(&env, &image, &hosts, &[0], &[1, 2], &[]);
    assert!(
        stderr.contains("cluster default is running on 3 hosts"),
        "{stderr}"
    );
    // Each host fetched its layers from us over TLS, none over SSH.
    for i in 0..3 {
        let lines = lines_of(&stderr, &hosts[i].ip);
        assert!(lines.contains("layers sent directly"), "{lines}");
        assert!(!lines.contains("over SSH"), "{lines}");
    }

    let first = &hosts[0].ip;
    let init = calls(&hosts[0], "kubeadm");
    // One --config file and only the flags kubeadm allows beside it (the
    // stand-in refuses the others as kubeadm does).
    assert!(
        init.iter()
            .any(|c| c == "init --config /etc/kubernetes/sealrs-kubeadm.yaml --upload-certs"),
        "{init:?}"
    );
    let config = hosts[0].exec_ok(&["cat", "/etc/kubernetes/sealrs-kubeadm.yaml"]);
    for line in [
        format!("controlPlaneEndpoint: {first}:6443"),
        format!("advertiseAddress: {first}"),
        "kubernetesVersion: v1.30.2".to_string(),
        "podSubnet: 10.244.0.0/16".to_string(),
        "kind: KubeletConfiguration".to_string(),
    ] {
        assert!(config.contains(&line), "{line} not in {config}");
    }
    // Every image of images/ in the real containerd of every host, by name,
    // imported before kubeadm ran (its preflight needs them).
    for i in 0..3 {
        let held = containerd_images(&hosts[i]);
        for name in KUBEADM_IMAGES {
            assert!(
                held.iter().any(|h| h == name),
                "{}: {name} not in {held:?}",
                hosts[i].name
            );
        }
        let log = standin_log(&hosts[i]);
        assert!(
            !log.contains("ctr|"),
            "the real ctr ran, not a stand-in: {log}"
        );
    }
    // The CNI manifest applied once, server-side, after init.
    let applies: Vec<String> = calls(&hosts[0], "kubectl")
        .into_iter()
        .filter(|c| c.contains(" apply "))
        .collect();
    assert_eq!(applies.len(), 1, "{applies:?}");
    assert!(applies[0].contains("apply --server-side"), "{applies:?}");
    assert!(applies[0].ends_with("/manifests"), "{applies:?}");
    assert!(
        init.iter()
            .any(|c| c.starts_with("token create --print-join-command")),
        "{init:?}"
    );
    assert!(
        init.iter()
            .any(|c| c.starts_with("init phase upload-certs --upload-certs")),
        "{init:?}"
    );
    assert!(exists(&hosts[0], "/etc/kubernetes/admin.conf"));
    assert_eq!(
        hosts[0].exec_ok(&["readlink", "/root/.kube/config"]).trim(),
        "/etc/kubernetes/admin.conf"
    );
    // The CA hash the workers were given is the control plane's CA's.
    let ca = hosts[0].exec_ok(&["sha256sum", "/etc/kubernetes/pki/ca.crt"]);
    let ca_hash = format!("sha256:{}", ca.split_whitespace().next().unwrap());
    for i in [1, 2] {
        let joins = calls(&hosts[i], "kubeadm");
        assert_eq!(joins.len(), 1, "{}: {joins:?}", hosts[i].name);
        assert_eq!(
            joins[0],
            "join --config /etc/kubernetes/sealrs-kubeadm.yaml"
        );
        let join = hosts[i].exec_ok(&["cat", "/etc/kubernetes/sealrs-kubeadm.yaml"]);
        assert!(
            join.contains(&format!("apiServerEndpoint: {first}:6443")),
            "{join}"
        );
        assert!(
            join.contains(&format!("- {ca_hash}")),
            "{join} vs {ca_hash}"
        );
        assert!(!join.contains("controlPlane"), "{join}");
        assert_eq!(
            hosts[i]
                .exec_ok(&["stat", "-c", "%a", "/etc/kubernetes/sealrs-kubeadm.yaml"])
                .trim(),
            "600"
        );
        assert!(exists(&hosts[i], "/etc/kubernetes/kubelet.conf"));
        assert!(!exists(&hosts[i], "/etc/kubernetes/admin.conf"));
    }
    for i in 0..3 {
        for unit in ["kubelet", "containerd"] {
            assert_eq!(
                is_active(&hosts[i], unit),
                "active",
                "{} {unit}",
                hosts[i].name
            );
        }
        assert!(exists(&hosts[i], "/usr/local/bin/kubeadm"));
        assert!(exists(&hosts[i], "/etc/modules-load.d/sealrs-k8s.conf"));
    }

    // Idempotent: the same command changes nothing, sends nothing, and joins no one again.
    let (again, counts) = run_on_counted(&env, &image, &hosts, &[0], &[1, 2], &[]);
    assert_eq!(counts, (0, 0), "{again}");
    for i in [1, 2] {
        assert_eq!(calls(&hosts[i], "kubeadm").len(), 1, "{}", hosts[i].name);
    }
    assert_eq!(
        calls(&hosts[0], "kubeadm")
            .iter()
            .filter(|c| c.starts_with("init --config"))
            .count(),
        1
    );
    assert_eq!(
        calls(&hosts[0], "kubectl")
            .iter()
            .filter(|c| c.contains(" apply "))
            .count(),
        1,
        "the manifests are not applied again"
    );
}

#[test]
fn k0s_with_one_controller_and_one_worker() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build(&env, "k0s");
    let stderr = run_on(&env, &image, &hosts, &[0], &[1], &[]);
    assert!(
        stderr.contains("cluster default is running on 2 hosts"),
        "{stderr}"
    );
    let controller = calls(&hosts[0], "k0s");
    assert!(
        controller
            .iter()
            .any(|c| c == "install controller --config /etc/k0s/k0s.yaml"),
        "{controller:?}"
    );
    assert!(
        controller
            .iter()
            .any(|c| c == "token create --role=worker --expiry=10m"),
        "{controller:?}"
    );
    let worker = calls(&hosts[1], "k0s");
    assert!(
        worker
            .iter()
            .any(|c| c == "install worker --token-file /etc/k0s/join-token"),
        "{worker:?}"
    );
    // A join token as k0s makes one: a gzipped kubeconfig in base64.
    assert!(hosts[1]
        .exec_ok(&["cat", "/etc/k0s/join-token"])
        .starts_with("H4sI"));
    assert_eq!(
        hosts[1]
            .exec_ok(&["stat", "-c", "%a", "/etc/k0s/join-token"])
            .trim(),
        "600"
    );
    assert_eq!(is_active(&hosts[0], "k0scontroller"), "active");
    assert_eq!(is_active(&hosts[1], "k0sworker"), "active");
    assert!(exists(&hosts[0], "/var/lib/k0s/pki/admin.conf"));
    assert!(exists(&hosts[0], "/etc/k0s/k0s.yaml"));
}

#[test]
fn a_host_that_is_down_stops_the_run_before_anything_changes() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build(&env, "k3s");
    hosts.stop(1);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&hosts[1].ip), "names the host: {stderr}");
    assert!(
        !stderr.contains(&format!("{}:", hosts[0].ip)),
        "the host that is up is not blamed: {stderr}"
    );
    // Nothing changed on the host that is up.
    for path in [
        "/var/lib/sealrs-host",
        "/etc/systemd/system/k3s.service",
        "/usr/local/bin/k3s",
        "/var/log/sealrs-standins.log",
    ] {
        assert!(!exists(&hosts[0], path), "{path} on {}", hosts[0].name);
    }
    assert!(!env.root.join("clusters/default/Clusterfile").exists());
}

#[test]
fn a_port_in_use_on_a_new_host_tcp_or_udp_stops_the_run_before_anything_changes() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build(&env, "k3s");
    // Something already listens where the k3s API server must.
    hosts[0].exec_ok(&[
        "systemd-run",
        "--unit=squatter",
        "/usr/bin/systemd-socket-activate",
        "-l",
        "6443",
        "sleep",
        "infinity",
    ]);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&hosts[0].ip) && stderr.contains("port 6443 already in use"),
        "{stderr}"
    );
    for host in [&hosts[0], &hosts[1]] {
        assert!(
            !exists(host, "/var/lib/sealrs-host/rootfs"),
            "{}",
            host.name
        );
        assert!(!exists(host, "/usr/local/bin/k3s"), "{}", host.name);
    }
    // A UDP port counts too: flannel's VXLAN socket, on an agent.
    hosts[0].exec_ok(&["systemctl", "stop", "squatter"]);
    hosts[1].exec_ok(&[
        "systemd-run",
        "--unit=udp-squatter",
        "/usr/bin/systemd-socket-activate",
        "--datagram",
        "-l",
        "8472",
        "sleep",
        "infinity",
    ]);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&hosts[1].ip) && stderr.contains("port 8472/udp already in use"),
        "{stderr}"
    );
    assert!(!exists(&hosts[1], "/usr/local/bin/k3s"));
    // Once the ports are free, the same command builds the cluster.
    hosts[1].exec_ok(&["systemctl", "stop", "udp-squatter"]);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_worker_failing_midway_is_reported_and_a_rerun_finishes() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm(&env);
    // The stand-in's fixture feature: `kubeadm` fails while this file names it.
    std::fs::write(hosts[1].root().join("etc/sealrs-standin-fail"), "kubeadm\n").unwrap();
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let worker = &hosts[1].ip;
    assert!(stderr.contains(worker), "names the host: {stderr}");
    assert!(stderr.contains("step join"), "names the step: {stderr}");
    assert!(stderr.contains("exit code 1"), "{stderr}");
    assert!(
        stderr.contains("[ERROR StandinFailure]: failure injected"),
        "the last lines of its output: {stderr}"
    );
    assert!(stderr.contains("run the same command again"), "{stderr}");
    // The control plane is done; the state saved says which host failed.
    assert!(exists(&hosts[0], "/etc/kubernetes/admin.conf"));
    assert!(!exists(&hosts[1], "/etc/kubernetes/kubelet.conf"));
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("Failed"), "{saved}");

    // Remove the cause; the same command picks up where it stopped.
    std::fs::remove_file(hosts[1].root().join("etc/sealrs-standin-fail")).unwrap();
    let stderr = run_on(&env, &image, &hosts, &[0], &[1], &[]);
    assert!(
        stderr.contains("cluster default is running on 2 hosts"),
        "{stderr}"
    );
    assert_eq!(
        calls(&hosts[0], "kubeadm")
            .iter()
            .filter(|c| c.starts_with("init --config"))
            .count(),
        1,
        "init ran once"
    );
    let joins = calls(&hosts[1], "kubeadm");
    assert_eq!(
        joins.len(),
        2,
        "the failed join, then the one that worked: {joins:?}"
    );
    assert!(exists(&hosts[1], "/etc/kubernetes/kubelet.conf"));
    assert_eq!(is_active(&hosts[1], "kubelet"), "active");
}

#[test]
fn an_ssh_password_with_dollars_and_quotes_works_byte_for_byte() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.write(
        &format!("{dir}/etc/config.yaml"),
        "node-label:\n  - >-\n    pass=${PASS}\n",
    );
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let password = "pa$$w0rd\"`x'";
    hosts[0].ssh_password(password);
    let layers_over_ssh = ["--layers-over-ssh"];
    // No key to fall back on: only the password gets in.
    hosts[0].exec_ok(&["rm", "-f", "/root/.ssh/authorized_keys"]);
    let value = "pa$$w0rd\"`x'";
    let run = |stdin: &str| {
        let mut cmd = env.cmd(&[
            "run",
            "k3s-cluster:1",
            "--masters",
            &hosts[0].ip,
            "--ssh-password-stdin",
            "--known-hosts",
            hosts.known_hosts().to_str().unwrap(),
            "-e",
            &format!("PASS={value}"),
            layers_over_ssh[0],
        ]);
        // No default key of the machine running the test either.
        cmd.env("HOME", env.path("home"));
        with_stdin(cmd, stdin.as_bytes())
    };
    // A wrong password is refused (so the right one is what got in).
    let wrong = run("pa0rd\n");
    assert!(!wrong.status.success());
    let out = run(&format!("{password}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("layers sent over SSH"), "{stderr}");
    assert!(!stderr.contains("directly"), "{stderr}");
    assert_eq!(is_active(&hosts[0], "k3s"), "active");
    let config = hosts[0].exec_ok(&["cat", "/etc/rancher/k3s/config.yaml"]);
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
    assert_eq!(
        parsed["node-label"][0].as_str(),
        Some(format!("pass={value}").as_str()),
        "{config}"
    );
}

#[test]
fn our_clusterfile_runs_on_real_hosts() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build(&env, "k3s");
    let file = env.write(
        "Clusterfile",
        format!(
            "apiVersion: sealrs.io/v1
kind: Cluster
metadata:
  name: demo
spec:
  images: [{image}]
  env:
    PASS: 'pa$$w0rd'
  ssh:
    user: root
    port: 22
    key: {key}
  hosts:
    - address: {a}
      roles: [master]
    - address: {b}
      roles: [node]
",
            key = hosts.key().display(),
            a = hosts[0].ip,
            b = hosts[1].ip,
        ),
    );
    let out = env.run(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--known-hosts",
        hosts.known_hosts().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster demo is running on 2 hosts"),
        "{stderr}"
    );
    assert_eq!(is_active(&hosts[0], "k3s"), "active");
    assert_eq!(is_active(&hosts[1], "k3s-agent"), "active");
    let saved = std::fs::read_to_string(env.root.join("clusters/demo/Clusterfile")).unwrap();
    assert!(saved.contains("apiVersion: sealrs.io/v1"), "{saved}");
    assert!(saved.contains("phase: Running"), "{saved}");
}

#[test]
fn a_sealos_clusterfile_is_read_for_a_dry_run() {
    let env = Env::new();
    let image = build(&env, "kubeadm");
    let file = env.write(
        "Clusterfile",
        format!(
            "apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  name: default
spec:
  hosts:
  - ips: [10.250.200.11:22]
    roles: [master, amd64]
  - ips: [10.250.200.21:22, 10.250.200.22:22]
    roles: [node, amd64]
  image: [{image}]
  ssh:
    passwd: 'pa$$w0rd'
    pk: /root/.ssh/id_rsa
    port: 22
    user: root
  env:
  - POD_CIDR=10.244.0.0/16
  - PASS=pa$$w0rd
status: {{}}
"
        ),
    );
    let out = env.ok(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
    assert!(
        out.starts_with("# 10.250.200.11 (master): install"),
        "{out}"
    );
    assert!(out.contains("# 10.250.200.21 (node): join"), "{out}");
    assert!(out.contains("# 10.250.200.22 (node): join"), "{out}");
    assert!(out.contains("podSubnet: 10.244.0.0/16"), "{out}");
    assert!(
        out.contains("controlPlaneEndpoint: 10.250.200.11:6443"),
        "{out}"
    );
    assert!(
        !out.contains("10.250.200.11:22"),
        "the port is the SSH port: {out}"
    );
    assert!(!env.root.join("clusters/default/Clusterfile").exists());
}

/// The progress lines about `ip`.
fn lines_of(stderr: &str, ip: &str) -> String {
    let prefix = format!("{ip}: ");
    stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The lines of a per-host error list that concern `ip` (its heading and the
/// violations indented below it).
fn section_of(stderr: &str, ip: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in stderr.lines() {
        if line.starts_with("  ") && !line.starts_with("    ") {
            inside = line.trim_start().starts_with(&format!("{ip}: "));
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_installers_checks_stop_a_run_before_any_change_naming_each_host() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    // An image that lacks the binary its layout requires (built anyway).
    std::fs::remove_file(env.path(&format!("{dir}/bin/k3s"))).unwrap();
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--skip-validation",
        "-t",
        "k3s-cluster:1",
        &dir,
    ]);
    // And where the image's registries.yaml goes, the node has a directory:
    // only that host can see it.
    hosts[1].exec_ok(&["mkdir", "-p", "/etc/rancher/k3s/registries.yaml"]);

    let out = try_run(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("the image's installer found problems on 2 hosts; nothing was changed"),
        "{stderr}"
    );
    let (master, node) = (
        section_of(&stderr, &hosts[0].ip),
        section_of(&stderr, &hosts[1].ip),
    );
    for section in [&master, &node] {
        assert!(
            section.contains("violations:")
                && section.contains("rootfs: bin/k3s: missing; expected the k3s binary"),
            "{stderr}"
        );
    }
    let directory = "etc/registries.yaml goes to /etc/rancher/k3s/registries.yaml, which is a directory on this host";
    assert!(node.contains(directory), "{stderr}");
    assert!(!master.contains(directory), "{stderr}");

    // Again: the hosts have the whole image now, so the round trip that
    // checks them also has the image's installer verify them, and the run
    // stops before it moves anything.
    let again = try_run(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let again = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.contains("the image's installer found problems on 2 hosts; nothing was changed"),
        "{again}"
    );
    assert!(
        section_of(&again, &hosts[1].ip).contains(directory),
        "{again}"
    );
    assert!(!again.contains("sending layers"), "{again}");

    // Nothing changed on either host but the image sealrs keeps there; the
    // cluster was saved before that (issue 17: an operator killed while the
    // layers go out leaves a cluster that reset knows), its hosts Pending.
    for host in [&hosts[0], &hosts[1]] {
        for path in [
            "/var/lib/sealrs-host/placed",
            "/etc/systemd/system/k3s.service",
            "/etc/systemd/system/k3s-agent.service",
            "/etc/rancher/k3s/config.yaml",
            "/usr/local/bin/kubectl",
            "/var/log/sealrs-standins.log",
        ] {
            assert!(!exists(host, path), "{path} on {}", host.name);
        }
    }
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(
        saved.contains("Pending") && !saved.contains("Running") && !saved.contains("Failed"),
        "{saved}"
    );
}

#[test]
fn a_host_that_cannot_reach_us_gets_its_layers_over_ssh() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build(&env, "k0s");
    // The worker answers our SSH connection (from port 22), but cannot open
    // a TCP connection of its own: a firewall, as far as it can tell.
    hosts[1].exec_ok(&[
        "ip",
        "rule",
        "add",
        "ipproto",
        "6",
        "sport",
        "1024-65534",
        "prohibit",
    ]);
    let stderr = run_on(&env, &image, &hosts, &[0], &[1], &[]);
    assert!(
        stderr.contains("cluster default is running on 2 hosts"),
        "{stderr}"
    );
    let controller = lines_of(&stderr, &hosts[0].ip);
    assert!(controller.contains("layers sent directly"), "{controller}");
    assert!(controller.contains("MB, directly) in"), "{controller}");
    let worker = lines_of(&stderr, &hosts[1].ip);
    assert!(worker.contains("MB, over SSH) in"), "{worker}");
    assert!(
        worker.contains("cannot fetch layers from this machine directly"),
        "{worker}"
    );
    assert!(worker.contains("layers sent over SSH"), "{worker}");
    // Told once, when the installer's fetch failed: the layers did not try
    // (and, behind a firewall that drops, wait) again.
    let told = worker.find("cannot fetch layers from this machine directly");
    assert_eq!(
        worker
            .matches("cannot fetch layers from this machine directly")
            .count(),
        1,
        "{worker}"
    );
    assert!(told < worker.find("MB, over SSH) in"), "{worker}");
    assert_eq!(is_active(&hosts[1], "k0sworker"), "active");
    // What the worker got over SSH is what the controller got over TLS.
    let tree = |host: &Host| {
        host.exec_ok(&[
            "sh",
            "-c",
            "cd /var/lib/sealrs-host/rootfs/* && find . -type f ! -name '.sealrs-*' -exec sha256sum {} + | sort",
        ])
    };
    assert_eq!(tree(&hosts[0]), tree(&hosts[1]));
}

/// One host with this sealrs in /root, for plans made here.
fn one_host_with_sealrs() -> TestHosts {
    let hosts = TestHosts::boot(1);
    std::fs::copy(
        env!("CARGO_BIN_EXE_sealrs"),
        hosts[0].root().join("root/sealrs"),
    )
    .unwrap();
    hosts
}

/// `sealrs installer apply` of `plan` on the host (no rootfs).
fn installer_apply(host: &Host, plan: &sealrs::plan::Plan) -> Output {
    host.exec_stdin(
        &[
            "/root/sealrs",
            "installer",
            "apply",
            "--rootfs",
            "/nonexistent",
        ],
        plan.to_json().as_bytes(),
    )
}

/// The installer asks the host's systemd for unit states over its private
/// socket: the answers match systemctl's, and it never has to fall back.
#[test]
fn unit_states_come_from_systemds_socket_with_systemctls_answers() {
    use sealrs::plan::{Plan, ServiceOp, Step};
    let hosts = one_host_with_sealrs();
    let host = &hosts[0];
    assert_eq!(is_active(host, "ssh.service"), "active");
    // A unit that runs but was disabled without a reload: systemd's cached
    // unit file state would still say enabled; systemctl, and we, do not.
    std::fs::write(
        host.root().join("etc/systemd/system/sealrs-probe.service"),
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    host.exec_ok(&["systemctl", "daemon-reload"]);
    host.exec_ok(&["systemctl", "enable", "--now", "sealrs-probe.service"]);
    host.exec_ok(&[
        "systemctl",
        "disable",
        "--no-reload",
        "sealrs-probe.service",
    ]);
    // Every step's check holds if the answers are right: nothing is done.
    // Wrong answers would enable or start what is so already, or disable or
    // stop what does not exist, which fails.
    let mut plan = Plan::new("k3s", "probe", &host.ip, Vec::new());
    for (id, unit, op) in [
        ("enabled", "ssh.service", ServiceOp::Enable),
        ("active", "ssh.service", ServiceOp::Start),
        ("disabled", "sealrs-probe.service", ServiceOp::Disable),
        ("running", "sealrs-probe.service", ServiceOp::Start),
        ("absent", "sealrs-absent.service", ServiceOp::Disable),
        ("inactive", "sealrs-absent.service", ServiceOp::Stop),
    ] {
        plan.push(Step::service(id, unit, op));
    }
    let out = installer_apply(host, &plan);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes: Vec<String> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}: {}", s["status"], s["id"], s["note"]))
        .collect();
    assert_eq!(
        notes,
        [
            r#""skipped" "enabled": "ssh.service is enabled""#,
            r#""skipped" "active": "ssh.service is active""#,
            r#""skipped" "disabled": "sealrs-probe.service is not enabled""#,
            r#""skipped" "running": "sealrs-probe.service is active""#,
            r#""skipped" "absent": "sealrs-absent.service is not enabled""#,
            r#""skipped" "inactive": "sealrs-absent.service is not active""#,
        ]
    );
}

/// A unit file systemd has never seen is loaded on demand and started
/// without a daemon-reload; a changed one of a loaded unit gets its reload.
#[test]
fn a_new_unit_starts_without_a_daemon_reload_and_a_changed_one_gets_one() {
    use sealrs::plan::{Plan, ServiceOp, Step};
    let hosts = one_host_with_sealrs();
    let host = &hosts[0];
    let unit = "sealrs-fresh.service";
    let apply = |exec: &str| {
        let mut plan = Plan::new("k3s", "units", &host.ip, Vec::new());
        plan.push(Step::install_unit(
            "unit",
            unit,
            format!("[Service]\nExecStart={exec}\n"),
        ));
        plan.push(Step::restart_if_changed("restart", unit, &["unit"]));
        plan.push(Step::service("start", unit, ServiceOp::Start));
        let out = installer_apply(host, &plan);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["steps"][0]["note"].as_str().map(str::to_string)
    };
    let exec_start = || host.exec_ok(&["systemctl", "show", "-p", "ExecStart", unit]);

    // systemd loads the new file when asked about it: no reload.
    assert_eq!(
        apply("/bin/sleep 1000001").as_deref(),
        Some("systemd loaded it without a reload")
    );
    assert_eq!(is_active(host, unit), "active");
    assert!(exec_start().contains("1000001"), "{}", exec_start());

    // The loaded unit's file changed: systemd needs the reload, and after
    // it (and the restart) runs the new command.
    assert_eq!(apply("/bin/sleep 1000002"), None);
    assert_eq!(is_active(host, unit), "active");
    assert!(exec_start().contains("1000002"), "{}", exec_start());
}

/// kubeadm's mandatory preflight programs are checked by the image's
/// installer on every host before anything changes: a host without
/// conntrack (kubeadm before v1.32 needs it) is named, and no host is touched.
#[test]
fn a_kubeadm_host_without_conntrack_is_refused_before_any_change() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm(&env);
    hosts[1].exec_ok(&["rm", "/usr/sbin/conntrack"]);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("conntrack is not on PATH"))
        .unwrap_or_else(|| panic!("no conntrack line: {stderr}"));
    assert!(stderr.contains(&hosts[1].ip), "names the host: {stderr}");
    assert!(
        line.contains("apt-get install conntrack"),
        "says what to do: {line}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(&hosts[0].ip) && l.contains("conntrack")),
        "{stderr}"
    );
    for host in hosts.hosts() {
        assert!(!exists(host, "/etc/kubernetes"), "{}", host.name);
        assert!(!exists(host, "/usr/local/bin/kubeadm"), "{}", host.name);
        assert_ne!(is_active(host, "containerd"), "active", "{}", host.name);
        assert!(
            !exists(host, "/var/log/sealrs-standins.log"),
            "{}",
            host.name
        );
    }
    // Once it is there, the same command builds the cluster.
    std::fs::copy(
        crate::hosts::base().join("usr/sbin/conntrack"),
        hosts[1].root().join("usr/sbin/conntrack"),
    )
    .unwrap();
    run_on(&env, &image, &hosts, &[0], &[1], &[]);
    assert!(exists(&hosts[1], "/etc/kubernetes/kubelet.conf"));
}

/// An init that stopped after writing admin.conf (its control plane never
/// answered) is found by the rerun, undone with `kubeadm reset -f`, and
/// redone; a finished control plane is then left alone.
#[test]
fn a_kubeadm_init_that_failed_after_admin_conf_is_reset_and_redone() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let image = build_kubeadm(&env);
    std::fs::write(
        hosts[0].root().join("etc/sealrs-standin-fail"),
        "kubeadm-init-after-kubeconfig\n",
    )
    .unwrap();
    let out = try_run(&env, &image, &hosts, &[0], &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("wait-control-plane"), "{stderr}");
    assert!(exists(&hosts[0], "/etc/kubernetes/admin.conf"));

    std::fs::remove_file(hosts[0].root().join("etc/sealrs-standin-fail")).unwrap();
    let stderr = run_on(&env, &image, &hosts, &[0], &[], &[]);
    assert!(
        stderr.contains("cluster default is running on 1 host"),
        "{stderr}"
    );
    let kubeadm = calls(&hosts[0], "kubeadm");
    let inits: Vec<usize> = kubeadm
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with("init --config"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(inits.len(), 2, "{kubeadm:?}");
    let reset = kubeadm
        .iter()
        .position(|c| c == "reset -f")
        .unwrap_or_else(|| panic!("no reset: {kubeadm:?}"));
    assert!(inits[0] < reset && reset < inits[1], "{kubeadm:?}");
    assert_eq!(is_active(&hosts[0], "kubelet"), "active");

    // Finished: a rerun resets nothing and inits nothing.
    let again = run_on(&env, &image, &hosts, &[0], &[], &[]);
    assert!(again.contains("(0 changed"), "{again}");
    let kubeadm = calls(&hosts[0], "kubeadm");
    assert_eq!(kubeadm.iter().filter(|c| *c == "reset -f").count(), 1);
    assert_eq!(
        kubeadm
            .iter()
            .filter(|c| c.starts_with("init --config"))
            .count(),
        2
    );
}

/// Deleting a kubeadm control-plane: drained, then `kubeadm reset` on it
/// while its Node still exists (so its member leaves the real etcd), then
/// its Node deleted; the other control planes and their etcd stay.
#[test]
fn deleting_a_kubeadm_control_plane_resets_it_before_its_node_is_deleted() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let image = crate::backup::build_kubeadm_with_etcd(&env);
    run_on(&env, &image, &hosts, &[0, 1, 2], &[], &[]);
    let all: Vec<String> = (0..3).map(|i| hosts[i].name.clone()).collect();
    assert_eq!(crate::backup::members(&hosts[0]), all);
    for i in [1, 2] {
        let joins = calls(&hosts[i], "kubeadm");
        assert_eq!(joins, ["join --config /etc/kubernetes/sealrs-kubeadm.yaml"]);
        let config = hosts[i].exec_ok(&["cat", "/etc/kubernetes/sealrs-kubeadm.yaml"]);
        assert!(config.contains("certificateKey: "), "{config}");
        assert!(exists(&hosts[i], "/etc/kubernetes/manifests/etcd.yaml"));
    }
    let gone = &hosts[2];
    let mut args = vec![
        "delete".to_string(),
        "--yes".into(),
        "--nodes".into(),
        gone.ip.clone(),
    ];
    args.extend(crate::run::ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    let time = |text: &str| -> u128 { text.trim().rsplit(' ').next().unwrap().parse().unwrap() };
    let reset = gone.exec_ok(&["cat", "/var/log/sealrs-standin-reset"]);
    let deleted = hosts[0].exec_ok(&["cat", "/var/log/sealrs-standin-deleted-at"]);
    assert!(deleted.starts_with(&format!("{} ", gone.name)), "{deleted}");
    assert!(
        time(&reset) < time(&deleted),
        "reset ({reset}) ran before the node was deleted ({deleted})"
    );
    let log0 = standin_log(&hosts[0]);
    let drain = log0
        .find(&format!(" drain {} ", gone.name))
        .unwrap_or_else(|| panic!("no drain: {log0}"));
    let delete = log0
        .find(&format!(" delete node {} ", gone.name))
        .unwrap_or_else(|| panic!("no delete: {log0}"));
    assert!(drain < delete, "{log0}");
    assert!(!exists(gone, "/etc/kubernetes"));
    assert!(!exists(&hosts[1], "/var/log/sealrs-standin-reset"));
    assert!(exists(&hosts[1], "/etc/kubernetes/manifests/etcd.yaml"));
    assert_eq!(crate::backup::members(&hosts[0]), all[..2]);
    crate::backup::etcd_is_healthy(&hosts[0], 2);
}

/// The image's kubeadm.yaml sets podSubnet and `-e POD_CIDR` disagrees: the
/// installer's check refuses the run on every host, naming both, before
/// anything changes.
#[test]
fn a_pod_cidr_that_disagrees_with_the_images_kubeadm_yaml_is_refused_before_any_change() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm(&env);
    let out = try_run(
        &env,
        &image,
        &hosts,
        &[0],
        &[1],
        &["-e", "POD_CIDR=10.42.0.0/16"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("etc/kubeadm.yaml: ClusterConfiguration networking.podSubnet is 10.244.0.0/16 in the image's file, and -e POD_CIDR gives 10.42.0.0/16"),
        "{stderr}"
    );
    for host in hosts.hosts() {
        assert!(stderr.contains(&host.ip), "names {}: {stderr}", host.ip);
        assert!(!exists(host, "/etc/kubernetes"), "{}", host.name);
        assert!(
            !exists(host, "/var/log/sealrs-standins.log"),
            "{}",
            host.name
        );
    }
}

/// What a kubeadm node leaves that `kubeadm reset` does not clean (the
/// kubelet stand-in leaves kube-proxy's and the CNI's chains and the cni0
/// bridge as the real node does), and whether the containerd and kubelet
/// units are still there.
fn kubeadm_leftovers(host: &Host) -> Vec<String> {
    let mut left = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        left.extend(
            host.exec_ok(&[tool])
                .lines()
                .filter(|l| l.contains("KUBE-") || l.contains("CNI-"))
                .map(|l| format!("{tool}: {l}")),
        );
    }
    if host.exec(&["ip", "link", "show", "cni0"]).status.success() {
        left.push("link: cni0".into());
    }
    let units = host.exec_ok(&["systemctl", "list-unit-files", "--no-legend"]);
    left.extend(
        units
            .lines()
            .filter(|l| l.starts_with("kubelet") || l.starts_with("containerd"))
            .map(|l| format!("unit file: {l}")),
    );
    for unit in ["kubelet", "containerd"] {
        let state = is_active(host, unit);
        if state != "inactive" && state != "unknown" {
            left.push(format!("unit {unit}: {state}"));
        }
    }
    left
}

/// `sealrs reset` of a kubeadm cluster cleans what `kubeadm reset` says it
/// leaves (iptables chains, CNI interfaces) and leaves no containerd or
/// kubelet unit; a rule of the host's own is kept.
#[test]
fn a_kubeadm_reset_leaves_no_kube_chain_no_cni_bridge_and_no_unit() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm(&env);
    let own_rule = "-A INPUT -s 192.0.2.7/32 -j DROP";
    for host in hosts.hosts() {
        host.exec_ok(&["iptables", "-A", "INPUT", "-s", "192.0.2.7", "-j", "DROP"]);
    }
    run_on(&env, &image, &hosts, &[0], &[1], &[]);
    for host in hosts.hosts() {
        // The stand-ins left what a real node leaves: otherwise this test
        // would prove nothing.
        let left = kubeadm_leftovers(host).join("\n");
        for what in [
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            ":KUBE-KUBELET-CANARY",
            "-j CNI-5e1a0000standin",
            "link: cni0",
            "unit file: kubelet.service",
            "unit file: containerd.service",
            "unit kubelet: active",
        ] {
            assert!(left.contains(what), "{}: no {what:?} in\n{left}", host.name);
        }
    }
    let mut args = vec![
        "reset".to_string(),
        "--yes".into(),
        "--cluster".into(),
        "default".into(),
    ];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    for host in hosts.hosts() {
        let left = kubeadm_leftovers(host);
        assert!(left.is_empty(), "{}: left {left:#?}", host.name);
        let rules = host.exec_ok(&["iptables-save"]);
        assert!(rules.contains(own_rule), "{}: {rules}", host.name);
        assert_eq!(calls(host, "kubeadm").last().unwrap(), "reset -f");
        for gone in ["/etc/cni/net.d", "/var/lib/cni", "/etc/kubernetes"] {
            assert!(!exists(host, gone), "{}: {gone} is left", host.name);
        }
    }
}

/// An air-gapped kubeadm image (it carries image archives) whose archives
/// lack the pause image of its version: the installer's check refuses the
/// run on every host, naming the image, before anything changes.
#[test]
fn an_airgapped_kubeadm_image_without_its_pause_image_is_refused_before_any_change() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm_archives(&env, false);
    let out = try_run(&env, &image, &hosts, &[0], &[1], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("none holds registry.k8s.io/pause:3.9, the pause image kubeadm v1.30.2 uses"),
        "{stderr}"
    );
    for host in hosts.hosts() {
        assert!(stderr.contains(&host.ip), "names {}: {stderr}", host.ip);
        assert!(!exists(host, "/etc/kubernetes"), "{}", host.name);
        assert!(
            !exists(host, "/var/log/sealrs-standins.log"),
            "{}",
            host.name
        );
    }
}
