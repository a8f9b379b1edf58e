//! `sealrs run`: the plans each runtime makes, shown by `--dry-run` without
//! touching a host.

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;

/// Addresses of hosts that do not exist: a dry run never connects.
const MASTERS: &str = "10.250.200.11,10.250.200.12,10.250.200.13";
const NODE: &str = "10.250.200.21";

fn dry_run(env: &Env, runtime: &str, extra: &[&str]) -> String {
    let dir = example(env, runtime, runtime);
    let tag = format!("{runtime}-cluster:1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        &tag,
        &dir,
    ]);
    let mut args = vec!["run", tag.as_str(), "--dry-run"];
    args.extend(extra);
    env.ok(&args)
}

#[test]
fn dry_run_shows_install_on_the_first_master_and_join_elsewhere_for_k3s() {
    let env = Env::new();
    let out = dry_run(
        &env,
        "k3s",
        &[
            "--masters",
            MASTERS,
            "--nodes",
            NODE,
            "-e",
            "PASS=pa$$w0rd\"`x",
        ],
    );
    let sections: Vec<&str> = out.split("\n# ").collect();
    assert_eq!(sections.len(), 4, "one section per host:\n{out}");
    assert!(
        out.starts_with("# 10.250.200.11 (master): install"),
        "{out}"
    );
    assert!(out.contains("# 10.250.200.12 (master): join"), "{out}");
    assert!(out.contains("# 10.250.200.21 (node): join"), "{out}");
    assert!(out.contains("--cluster-init"), "{out}");
    assert!(out.contains("https://10.250.200.11:6443"), "{out}");
    // The value is shown exactly, quoted, never expanded.
    assert!(out.contains("pa$$w0rd\"`x"), "{out}");
    assert!(!out.contains("pa0rd"), "{out}");
}

#[test]
fn dry_run_covers_kubeadm_and_k0s() {
    let env = Env::new();
    let kubeadm = dry_run(
        &env,
        "kubeadm",
        &[
            "--masters",
            "10.250.200.11",
            "--nodes",
            "10.250.200.21,10.250.200.22",
        ],
    );
    assert!(
        kubeadm.contains("kubeadm") && kubeadm.contains("init"),
        "{kubeadm}"
    );
    assert_eq!(kubeadm.matches("): join").count(), 2, "{kubeadm}");
    let k0s = dry_run(
        &env,
        "k0s",
        &["--masters", "10.250.200.11", "--nodes", NODE],
    );
    assert!(k0s.contains("k0s") && k0s.contains("controller"), "{k0s}");
    assert!(k0s.contains("worker"), "{k0s}");
}

#[test]
fn verify_refuses_an_even_number_of_k3s_servers_before_any_connection() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let stderr = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--masters",
        "10.250.200.11,10.250.200.12",
    ]);
    assert!(
        stderr.contains("even") || stderr.contains("odd"),
        "{stderr}"
    );
    assert!(
        !env.root.join("clusters/default/Clusterfile").exists()
            || stderr.contains("cannot be built")
    );
}

#[test]
fn a_run_onto_a_saved_cluster_refuses_a_downgrade_and_a_runtime_change() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    // What sealrs saved of a cluster whose master runs a newer k3s.
    let saved = |runtime: &str, version: &str| {
        let status = format!(
            "apiVersion: sealrs.io/v1\nkind: Cluster\nmetadata:\n  name: default\nspec:\n  images: [k3s-cluster:1]\n  hosts:\n    - address: 10.250.200.11\n      roles: [master]\nstatus:\n  phase: Running\n  hosts:\n    10.250.200.11:\n      phase: Running\n      runtime: {runtime}\n      version: {version}\n"
        );
        env.write("root/clusters/default/Clusterfile", status.into_bytes());
    };
    let run = [
        "run",
        "k3s-cluster:1",
        "--masters",
        "10.250.200.11",
        "--dry-run",
    ];
    saved("k3s", "v1.31.0+k3s1");
    let stderr = env.fails(&run);
    assert!(stderr.contains("is a downgrade"), "{stderr}");
    saved("k0s", "v1.30.2+k0s.0");
    let stderr = env.fails(&run);
    assert!(stderr.contains("switching it to k3s"), "{stderr}");
    // The same version again is a re-apply.
    saved("k3s", "v1.30.2+k3s1");
    env.ok(&run);
}

/// `sealrs run` flags that reach the test hosts over SSH with the group's key.
/// `sealrs ARGS... <ssh flags>`; with `confirm`, a reset or delete gets
/// `--yes` (the question itself is tested in `day2`).
pub(crate) fn on_hosts(
    env: &Env,
    hosts: &TestHosts,
    args: &[&str],
    confirm: bool,
) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if confirm && matches!(args.first(), Some(&"reset") | Some(&"delete")) {
        all.push("--yes".into());
    }
    all.extend(ssh_flags(hosts));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    env.run(&refs)
}

pub(crate) fn ssh_flags(hosts: &TestHosts) -> Vec<String> {
    vec![
        "--ssh-key".into(),
        hosts.key().display().to_string(),
        "--known-hosts".into(),
        hosts.known_hosts().display().to_string(),
    ]
}

pub(crate) fn run_on(
    env: &Env,
    image: &str,
    hosts: &TestHosts,
    masters: &[usize],
    nodes: &[usize],
    extra: &[&str],
) -> String {
    let out = run_on_output(env, image, hosts, masters, nodes, extra);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// [`run_on`] with `--format json`: its stderr, and how many hosts it
/// changed and the bytes of layers it sent, exactly (the summary line
/// rounds them for people).
pub(crate) fn run_on_counted(
    env: &Env,
    image: &str,
    hosts: &TestHosts,
    masters: &[usize],
    nodes: &[usize],
    extra: &[&str],
) -> (String, (usize, u64)) {
    let mut extra = extra.to_vec();
    extra.extend(["--format", "json"]);
    let out = run_on_output(env, image, hosts, masters, nodes, &extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (stderr, changed_and_sent(&out.stdout))
}

/// How many hosts a `--format json` result says the command changed, and
/// the bytes of layers it sent to them all.
pub(crate) fn changed_and_sent(stdout: &[u8]) -> (usize, u64) {
    let result: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    let hosts = result["hosts"].as_array().expect("hosts");
    let changed = hosts.iter().filter(|h| h["changed"] == true).count();
    let sent = hosts.iter().map(|h| h["bytesSent"].as_u64().unwrap()).sum();
    (changed, sent)
}

/// `sealrs run IMAGE --masters … --nodes …` on `hosts`, which must succeed.
fn run_on_output(
    env: &Env,
    image: &str,
    hosts: &TestHosts,
    masters: &[usize],
    nodes: &[usize],
    extra: &[&str],
) -> std::process::Output {
    let ips = |idx: &[usize]| {
        idx.iter()
            .map(|&i| hosts[i].ip.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut args: Vec<String> = vec!["run".into(), image.into(), "--masters".into(), ips(masters)];
    if !nodes.is_empty() {
        args.extend(["--nodes".into(), ips(nodes)]);
    }
    args.extend(ssh_flags(hosts));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sealrs {args:?} failed:\n{stderr}");
    out
}

/// What the stand-ins recorded on a host: one line per call.
pub(crate) fn standin_log(host: &crate::hosts::Host) -> String {
    host.exec_ok(&["cat", "/var/log/sealrs-standins.log"])
}

#[test]
fn k3s_with_three_servers_and_one_agent_on_real_hosts() {
    let hosts = TestHosts::boot(4);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    // The image's config is a template: the cluster env reaches it byte for byte.
    env.write(
        &format!("{dir}/etc/config.yaml"),
        "write-kubeconfig-mode: \"0600\"\nnode-label:\n  - >-\n    pass=${PASS}\n",
    );
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let value = "pa$$w0rd\"`x";
    let pass = format!("PASS={value}");
    // Three servers and an agent, with `-e ENV`.
    let apply = |env_arg: &str| {
        run_on(
            &env,
            "k3s-cluster:1",
            &hosts,
            &[0, 1, 2],
            &[3],
            &["-e", env_arg],
        )
    };
    let counted = |env_arg: &str| {
        run_on_counted(
            &env,
            "k3s-cluster:1",
            &hosts,
            &[0, 1, 2],
            &[3],
            &["-e", env_arg],
        )
    };
    let stderr = apply(&pass);
    assert!(
        stderr.contains("cluster default is running on 4 hosts"),
        "{stderr}"
    );

    let first = &hosts[0].ip;
    for i in 0..3 {
        assert_eq!(
            hosts[i].exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
            "active",
            "{}",
            hosts[i].name
        );
        let config = hosts[i].exec_ok(&["cat", "/etc/rancher/k3s/config.yaml"]);
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
        assert_eq!(
            parsed["node-label"][0].as_str(),
            Some(format!("pass={value}").as_str()),
            "{config}"
        );
    }
    assert_eq!(
        hosts[3]
            .exec_ok(&["systemctl", "is-active", "k3s-agent"])
            .trim(),
        "active"
    );

    let log0 = standin_log(&hosts[0]);
    assert!(log0.contains("server --cluster-init"), "{log0}");
    for i in 1..3 {
        let log = standin_log(&hosts[i]);
        assert!(
            log.contains(&format!("server --server https://{first}:6443")),
            "{log}"
        );
        assert!(
            log.contains("K3S_TOKEN=K10standin"),
            "the token came from the first server: {log}"
        );
    }
    let agent = standin_log(&hosts[3]);
    assert!(
        agent.contains(&format!("K3S_URL=https://{first}:6443")),
        "{agent}"
    );
    assert!(env.root.join("clusters/default/Clusterfile").exists());

    // Idempotent: the same command again changes nothing and sends nothing.
    let (again, counts) = counted(&pass);
    assert_eq!(counts, (0, 0), "{again}");
    // ... and knows it from the host checks: no install or join ran.
    assert!(
        again.contains(
            "4 hosts: their installers found nothing to change (k3s install and join skipped)"
        ),
        "{again}"
    );
    assert!(!again.contains("k3s join"), "{again}");

    // A host that drifted is put back by the same command: the probe saw it.
    hosts[3].exec_ok(&["systemctl", "stop", "k3s-agent"]);
    let (drifted, counts) = counted(&pass);
    assert!(!drifted.contains("found nothing to change"), "{drifted}");
    assert_eq!(counts, (1, 0), "{drifted}");
    assert_eq!(
        hosts[3]
            .exec_ok(&["systemctl", "is-active", "k3s-agent"])
            .trim(),
        "active"
    );
    // A new env value changes every host's config: no shortcut either.
    let changed = apply("PASS=another");
    assert!(!changed.contains("found nothing to change"), "{changed}");
    let config = hosts[1].exec_ok(&["cat", "/etc/rancher/k3s/config.yaml"]);
    assert!(config.contains("pass=another"), "{config}");
}
