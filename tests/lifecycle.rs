//! The lifecycle of a saved cluster on real hosts: `sealrs add`, `delete`,
//! `upgrade` and `reset` after `sealrs run`, with the k3s example built with
//! the stand-ins.

use std::collections::BTreeSet;

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{on_hosts, run_on, standin_log};

/// `sealrs ARGS... <ssh flags>`; panics with stderr unless it succeeds.
fn lifecycle_ok(env: &Env, hosts: &TestHosts, args: &[&str]) -> String {
    let out = lifecycle(env, hosts, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sealrs {args:?} failed:\n{stderr}");
    stderr
}

fn lifecycle_fails(env: &Env, hosts: &TestHosts, args: &[&str]) -> String {
    let out = lifecycle(env, hosts, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sealrs {args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Reset and delete ask first; these tests confirm with `--yes`.
fn lifecycle(env: &Env, hosts: &TestHosts, args: &[&str]) -> std::process::Output {
    on_hosts(env, hosts, args, true)
}

fn clusterfile(env: &Env) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

/// The stand-ins' log once it holds `what`: a unit may be active before the
/// stand-in has written its line (a `Type=exec` unit as soon as its program
/// starts).
fn logged(host: &Host, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = host.exec(&["cat", "/var/log/sealrs-standins.log"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(what) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn build_k3s(env: &Env, tag: &str) -> String {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", tag, &dir]);
    dir
}

#[test]
fn add_a_node_then_delete_it() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let (first, new) = (&hosts[0].ip, &hosts[2].ip);

    // (A second server is a step of replacing a master: dead_hosts tests it.)
    let added = lifecycle_ok(
        &env,
        &hosts,
        &["add", "--cluster", "default", "--nodes", new],
    );
    assert!(
        added.contains(&format!("added {new} to cluster default")),
        "{added}"
    );
    assert_eq!(
        hosts[2]
            .exec_ok(&["systemctl", "is-active", "k3s-agent"])
            .trim(),
        "active"
    );
    let log = logged(&hosts[2], "k3s|");
    assert!(
        log.contains(&format!("K3S_URL=https://{first}:6443")),
        "{log}"
    );
    assert!(log.contains("K3S_TOKEN=K10standin"), "{log}");
    let saved = clusterfile(&env);
    for host in [&hosts[0], &hosts[1], &hosts[2]] {
        assert_eq!(
            saved["status"]["hosts"][host.ip.as_str()]["nodeName"].as_str(),
            Some(host.name.as_str()),
            "run and add record each host's node name: {saved:?}"
        );
    }
    // The agent already there was left alone.
    assert_eq!(standin_log(&hosts[1]).matches("k3s|").count(), 1);

    // The first master holds the cluster: refused, nothing touched.
    let refused = lifecycle_fails(&env, &hosts, &["delete", "--nodes", first]);
    assert!(refused.contains("first master"), "{refused}");
    assert!(exists(&hosts[0], "/usr/local/bin/k3s"));

    // A port names the host only when it is the host's SSH port.
    let wrong_port = lifecycle_fails(&env, &hosts, &["delete", "--nodes", &format!("{new}:2222")]);
    assert!(
        wrong_port.contains(&format!("has {new} with SSH port 22, not 2222")),
        "{wrong_port}"
    );
    assert!(
        !standin_log(&hosts[0]).contains(" drain "),
        "nothing drained"
    );

    let deleted = lifecycle_ok(&env, &hosts, &["delete", "--nodes", &format!("{new}:22")]);
    assert!(deleted.contains(&format!("deleted {new}")), "{deleted}");
    // The first master drained the node and deleted it from Kubernetes, by
    // its hostname, with k3s' own kubectl and kubeconfig.
    let node = &hosts[2].name;
    let kubectl = "|kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml";
    let log0 = standin_log(&hosts[0]);
    let drain = format!(
        "{kubectl} drain {node} --ignore-daemonsets --delete-emptydir-data --force --timeout=300s|"
    );
    let delete_node = format!("{kubectl} delete node {node} --ignore-not-found|");
    let (at_drain, at_delete) = (log0.find(&drain), log0.find(&delete_node));
    assert!(
        at_drain.is_some() && at_delete.is_some() && at_drain < at_delete,
        "drain, then delete node, on the first master:\n{log0}"
    );
    let units = hosts[2].exec_ok(&["systemctl", "list-unit-files", "--no-legend"]);
    assert!(!units.contains("k3s"), "{units}");
    assert!(!hosts[2]
        .exec(&["systemctl", "is-active", "k3s-agent"])
        .status
        .success());
    for gone in [
        "/etc/systemd/system/k3s-agent.service",
        "/etc/systemd/system/k3s-agent.service.env",
        "/usr/local/bin/k3s",
        "/usr/local/bin/kubectl",
        "/etc/rancher",
        "/var/lib/rancher",
        "/var/lib/sealrs-host",
    ] {
        assert!(
            !exists(&hosts[2], gone),
            "{gone} is left on the deleted host"
        );
    }
    let saved = serde_yaml_ng::to_string(&clusterfile(&env)).unwrap();
    assert!(!saved.contains(new.as_str()), "{saved}");
    assert_eq!(
        hosts[1]
            .exec_ok(&["systemctl", "is-active", "k3s-agent"])
            .trim(),
        "active",
        "the other agent keeps running"
    );
    assert!(!standin_log(&hosts[1]).contains(" drain "));

    // Deleted already: a second delete names it as not in the cluster.
    let again = lifecycle_fails(&env, &hosts, &["delete", "--nodes", new]);
    assert!(
        again.contains(&format!("{new}: not in cluster default")),
        "{again}"
    );
    assert_eq!(standin_log(&hosts[0]).matches(&drain).count(), 1);
}

/// Drops the node name that `run` recorded for `ip`, as a cluster saved by
/// an older sealrs has none.
fn forget_node_name(env: &Env, ip: &str) {
    let mut saved = clusterfile(env);
    saved["status"]["hosts"][ip]
        .as_mapping_mut()
        .unwrap()
        .remove("nodeName")
        .expect("run recorded a node name");
    std::fs::write(
        env.root.join("clusters/default/Clusterfile"),
        serde_yaml_ng::to_string(&saved).unwrap(),
    )
    .unwrap();
}

#[test]
fn delete_drains_a_host_that_is_down_when_its_node_name_is_known() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1, 2], &[]);
    let (known, unknown) = (&hosts[1], &hosts[2]);
    forget_node_name(&env, &unknown.ip);
    hosts.stop(1);
    hosts.stop(2);
    let drains = |node: &str| {
        standin_log(&hosts[0])
            .matches(&format!(" drain {node} "))
            .count()
    };

    // Down and nameless: refused before anything changes, for both hosts.
    let both = format!("{},{}", known.ip, unknown.ip);
    let refused = lifecycle_fails(&env, &hosts, &["delete", "--nodes", &both]);
    assert!(
        refused.contains(&format!("{} cannot be reached", unknown.ip))
            && refused.contains("node name was never recorded")
            && refused.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(drains(&known.name) + drains(&unknown.name), 0);

    // Down with a known name: out of Kubernetes, but it stays in the saved
    // cluster, since nothing on it could be uninstalled.
    let half = lifecycle_fails(&env, &hosts, &["delete", "--nodes", &known.ip]);
    assert!(
        half.contains(&format!(
            "{}: drained and deleted from Kubernetes as node {}, but it cannot be reached",
            known.ip, known.name
        )),
        "{half}"
    );
    assert_eq!(drains(&known.name), 1);
    let saved = clusterfile(&env);
    assert_eq!(
        saved["status"]["hosts"][known.ip.as_str()]["phase"].as_str(),
        Some("Failed"),
        "{saved:?}"
    );

    // Back up: the rerun uninstalls it; the node is gone from Kubernetes
    // already, so it is not drained twice.
    hosts.start(1);
    let done = lifecycle_ok(&env, &hosts, &["delete", "--nodes", &known.ip]);
    assert!(done.contains(&format!("deleted {}", known.ip)), "{done}");
    assert_eq!(drains(&known.name), 1);
    assert!(!exists(known, "/var/lib/sealrs-host"));

    // Up and nameless: the host says its name.
    hosts.start(2);
    lifecycle_ok(&env, &hosts, &["delete", "--nodes", &unknown.ip]);
    assert_eq!(drains(&unknown.name), 1);
    assert!(standin_log(&hosts[0]).contains(&format!(" delete node {} ", unknown.name)));
    let saved = serde_yaml_ng::to_string(&clusterfile(&env)).unwrap();
    assert!(
        !saved.contains(&known.ip) && !saved.contains(&unknown.ip),
        "{saved}"
    );
}

/// The sum of the layer sizes of an image, from `sealrs inspect`.
fn image_bytes(env: &Env, image: &str) -> u64 {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    doc["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum()
}

/// The image's manifest digest, which names its rootfs on hosts.
fn image_digest(env: &Env, image: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    doc["digest"].as_str().unwrap().to_string()
}

/// The bytes sent to `host`, exactly, by a `--format json` result (the
/// summary's `  HOST: 5.1 kB sent` lines round them for people).
fn bytes_sent(result: &serde_json::Value, host: &str) -> u64 {
    let hosts = result["hosts"].as_array().expect("hosts");
    let entry = hosts.iter().find(|h| h["host"] == host);
    entry
        .and_then(|h| h["bytesSent"].as_u64())
        .unwrap_or_else(|| panic!("no bytesSent for {host}: {result:#}"))
}

#[test]
fn upgrade_sends_only_the_changed_layer_and_refuses_a_downgrade() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);

    // v2: the same context, one small manifest changed, a newer patch version.
    env.write(
        &format!("{dir}/manifests/sealrs-info.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sealrs-system-v2\n",
    );
    crate::layout::standin_version(&env, &dir, "v1.30.3+k3s1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        "VERSION=v1.30.3+k3s1",
        "-t",
        "k3s-cluster:2",
        &dir,
    ]);
    let total = image_bytes(&env, "k3s-cluster:2");
    let starts_before = standin_log(&hosts[0])
        .matches("server --cluster-init")
        .count();

    let out = lifecycle(
        &env,
        &hosts,
        &["upgrade", "k3s-cluster:2", "--format", "json"],
    );
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{summary}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary.contains("upgraded to docker.io/library/k3s-cluster:2 on 2 hosts")
            || summary.contains("k3s-cluster:2 on 2 hosts"),
        "{summary}"
    );
    for host in [&hosts[0], &hosts[1]] {
        let sent = bytes_sent(&result, &host.ip);
        assert!(summary.contains(&format!("  {}: ", host.ip)), "{summary}");
        assert!(
            sent > 0 && sent * 100 < total,
            "{}: {sent} bytes sent of an image of {total}:\n{summary}",
            host.ip
        );
    }
    // The upgrade plan ran: the new manifest is in place and the server restarted.
    let manifest = hosts[0].exec_ok(&[
        "cat",
        "/var/lib/rancher/k3s/server/manifests/sealrs-info.yaml",
    ]);
    assert!(manifest.contains("sealrs-system-v2"), "{manifest}");
    let starts_after = standin_log(&hosts[0])
        .matches("server --cluster-init")
        .count();
    assert!(starts_after > starts_before, "k3s was not restarted");
    // The new image's rootfs and the previous one's (kept for a rollback)
    // are left on each host, and k3s still runs from what was placed out
    // of the new one.
    let mut kept: Vec<String> = ["k3s-cluster:1", "k3s-cluster:2"]
        .iter()
        .map(|i| {
            image_digest(&env, i)
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    kept.sort();
    for host in [&hosts[0], &hosts[1]] {
        let left = host.exec_ok(&["ls", "/var/lib/sealrs-host/rootfs"]);
        assert_eq!(left.trim(), kept.join("\n"), "{}", host.ip);
        host.exec_ok(&["test", "-x", "/usr/local/bin/k3s"]);
    }
    let saved = clusterfile(&env);
    for host in [&hosts[0], &hosts[1]] {
        assert_eq!(
            saved["status"]["hosts"][host.ip.as_str()]["version"].as_str(),
            Some("v1.30.3+k3s1"),
            "{saved:?}"
        );
    }
    assert_eq!(
        saved["spec"]["images"][0].as_str(),
        Some("docker.io/library/k3s-cluster:2"),
        "{saved:?}"
    );

    // Back to v1.30.2 is a downgrade, refused for every host at once.
    let down = lifecycle_fails(&env, &hosts, &["upgrade", "k3s-cluster:1"]);
    assert!(down.contains("downgrade"), "{down}");
    for host in [&hosts[0], &hosts[1]] {
        assert!(down.contains(&host.ip), "{down}");
    }
    assert_eq!(
        clusterfile(&env)["status"]["hosts"][hosts[0].ip.as_str()]["version"].as_str(),
        Some("v1.30.3+k3s1")
    );
}

/// What a reset must leave as it found: the files under the directories
/// sealrs and the runtime write to, and the unit files.
///
/// Ignored, because systemd and the test harness change them on their own
/// while the host runs, whatever sealrs does: `/var/lib/systemd` (timer
/// stamps, the random seed, the journal catalog, coredumps) and
/// `/var/lib/dhcp`, `/var/lib/private` (leases and dynamic-user state).
/// `/var/log` (where the stand-ins keep their record) is not looked at at all.
pub(crate) fn snapshot(host: &Host) -> (BTreeSet<String>, String) {
    let files = host
        .exec_ok(&["find", "/etc", "/usr/local", "/var/lib", "/opt", "-xdev"])
        .lines()
        .filter(|p| {
            !["/var/lib/systemd", "/var/lib/dhcp", "/var/lib/private"]
                .iter()
                .any(|i| p == i || p.starts_with(&format!("{i}/")))
        })
        .map(str::to_string)
        .collect();
    let units = host.exec_ok(&["systemctl", "list-unit-files", "--no-legend", "--no-pager"]);
    (files, units)
}

#[test]
fn reset_leaves_each_host_as_before_the_run() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    let before = [snapshot(&hosts[0]), snapshot(&hosts[1])];
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    assert!(exists(&hosts[0], "/usr/local/bin/k3s"));

    let out = lifecycle_ok(&env, &hosts, &["reset", "--cluster", "default"]);
    assert!(out.contains("cluster default reset on 2 hosts"), "{out}");
    for (i, (files, units)) in before.iter().enumerate() {
        let (files_after, units_after) = snapshot(&hosts[i]);
        let added: Vec<_> = files_after.difference(files).collect();
        let removed: Vec<_> = files.difference(&files_after).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "{}: left {added:?}, removed {removed:?}",
            hosts[i].name
        );
        assert_eq!(&units_after, units, "{}", hosts[i].name);
    }
    assert!(!env.root.join("clusters/default").exists());
    // Nothing left to reset.
    let again = lifecycle_fails(&env, &hosts, &["reset"]);
    assert!(again.contains("no saved cluster default"), "{again}");
}

#[test]
fn reset_stops_for_a_host_that_is_down_unless_forced() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    hosts[1].stop();

    let stopped = lifecycle_fails(&env, &hosts, &["reset"]);
    assert!(stopped.contains("cannot reach 1 host"), "{stopped}");
    assert!(stopped.contains(&hosts[1].ip), "{stopped}");
    assert!(stopped.contains("--force"), "{stopped}");
    assert!(exists(&hosts[0], "/usr/local/bin/k3s"), "nothing changed");
    assert!(env.root.join("clusters/default/Clusterfile").exists());

    let forced = lifecycle_ok(&env, &hosts, &["reset", "--force"]);
    assert!(
        forced.contains(&format!("warning: {}", hosts[1].ip)),
        "{forced}"
    );
    assert!(forced.contains("reset on 1 host ("), "{forced}");
    assert!(!exists(&hosts[0], "/usr/local/bin/k3s"));
    assert!(!exists(&hosts[0], "/var/lib/sealrs-host"));
    assert!(!env.root.join("clusters/default").exists());
}

/// Lines of `sh -c SCRIPT` run inside the host.
fn host_sh(host: &Host, script: &str) -> String {
    host.exec_ok(&["sh", "-c", script])
}

/// What a running k3s leaves outside its unit, as seen on a host: shim
/// processes, processes working below /run/k3s (containers), mounts under
/// /run/k3s and /var/lib/kubelet, the cni0 bridge, KUBE- and flannel rules.
fn k3s_leftovers(host: &Host) -> Vec<String> {
    let mut left = Vec::new();
    // `containerd-sh[i]m` matches the shim's command line, not this script's.
    let shims = host_sh(
        host,
        r#"for p in /proc/[0-9]*; do a=$(tr '\0' ' ' <$p/cmdline 2>/dev/null) || continue; case "$a" in *containerd-sh[i]m*) echo "shim: $a";; esac; done"#,
    );
    left.extend(shims.lines().map(str::to_string));
    let containers = host_sh(
        host,
        r#"for p in /proc/[0-9]*; do d=$(readlink $p/cwd 2>/dev/null) || continue; case "$d" in /run/k3s*) echo "process ${p#/proc/} in $d";; esac; done"#,
    );
    left.extend(containers.lines().map(str::to_string));
    let mounts = host.exec_ok(&["cat", "/proc/self/mounts"]);
    left.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with("/run/k3s") || m.starts_with("/var/lib/kubelet"))
            .map(|m| format!("mount: {m}")),
    );
    if host.exec(&["ip", "link", "show", "cni0"]).status.success() {
        left.push("link: cni0".into());
    }
    let rules = host.exec_ok(&["iptables-save"]);
    left.extend(
        rules
            .lines()
            .filter(|l| l.contains("KUBE-") || l.to_lowercase().contains("flannel"))
            .map(|l| format!("iptables: {l}")),
    );
    left
}

#[test]
fn reset_kills_unmounts_and_strips_what_k3s_left_and_keeps_the_data_behind_mounts() {
    let hosts = TestHosts::boot(4);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    // A rule of the host's own, which the reset must keep.
    let own_rule = "-A INPUT -s 192.0.2.7/32 -j DROP";
    for host in hosts.hosts() {
        host.exec_ok(&["iptables", "-A", "INPUT", "-s", "192.0.2.7", "-j", "DROP"]);
    }
    // Bad input is refused before any host changes, with the value.
    for (bad, says) in [
        (
            "SERVICE_CIDR=not-a-cidr",
            "-e SERVICE_CIDR=\"not-a-cidr\": ",
        ),
        ("CONTROL_PLANE_ENDPOINT=lb.example.com", "no port"),
    ] {
        let refused = lifecycle_fails(
            &env,
            &hosts,
            &["run", "k3s-cluster:1", "--masters", &hosts[0].ip, "-e", bad],
        );
        assert!(refused.contains(says), "{refused}");
        assert!(
            !exists(&hosts[0], "/var/lib/sealrs-host"),
            "nothing was sent"
        );
    }
    // The first server stands in for a load balancer in front of the servers.
    let endpoint = format!("{}:6443", hosts[0].ip);
    run_on(
        &env,
        "k3s-cluster:1",
        &hosts,
        &[0, 1, 2],
        &[3],
        &[
            "-e",
            &format!("CONTROL_PLANE_ENDPOINT={endpoint}"),
            "-e",
            "HTTPS_PROXY=http://proxy.invalid:3128",
            "-e",
            "NO_PROXY=10.0.0.0/8",
        ],
    );
    // The endpoint is a SAN of every server, and what the others register
    // through; the agent's unit waits for it to say it is up.
    for host in &hosts.hosts()[..3] {
        let log = logged(host, "k3s|");
        assert!(
            log.contains(&format!("--tls-san {}|", hosts[0].ip)),
            "{}: {log}",
            host.name
        );
    }
    assert!(logged(&hosts[1], "k3s|").contains(&format!("server --server https://{endpoint} ")));
    let agent_log = logged(&hosts[3], "k3s|");
    assert!(
        agent_log.contains(&format!("K3S_URL=https://{endpoint} ")),
        "{agent_log}"
    );
    let unit = hosts[3].exec_ok(&["systemctl", "show", "-p", "Type", "k3s-agent"]);
    assert_eq!(unit.trim(), "Type=notify");
    let env_file = hosts[3].exec_ok(&["cat", "/etc/systemd/system/k3s-agent.service.env"]);
    assert!(
        env_file.contains("HTTPS_PROXY=\"http://proxy.invalid:3128\"\nNO_PROXY=\"10.0.0.0/8\"\n"),
        "{env_file}"
    );
    let data = [
        "/srv/sealrs-standin/container-rootfs/data",
        "/srv/sealrs-standin/volume/data",
    ];
    for host in hosts.hosts() {
        // The stand-in left what a real k3s leaves: otherwise this test
        // would prove nothing.
        let left = k3s_leftovers(host).join("\n");
        for what in [
            "shim: /var/lib/rancher/k3s/data/",
            "mount: /run/k3s/containerd/",
            "mount: /var/lib/kubelet/pods/",
            "process ",
            "link: cni0",
            "iptables: -A INPUT -j KUBE-FIREWALL",
        ] {
            assert!(left.contains(what), "{}: no {what:?} in\n{left}", host.name);
        }
    }

    let out = lifecycle_ok(&env, &hosts, &["reset", "--cluster", "default"]);
    assert!(out.contains("cluster default reset on 4 hosts"), "{out}");
    for host in hosts.hosts() {
        let left = k3s_leftovers(host);
        assert!(left.is_empty(), "{}: left {left:#?}", host.name);
        for file in data {
            let text = host.exec_ok(&["cat", file]);
            assert_eq!(
                text.trim(),
                "written by a container",
                "{}: {file} behind a mount must survive the reset",
                host.name
            );
        }
        let rules = host.exec_ok(&["iptables-save"]);
        assert!(rules.contains(own_rule), "{}: {rules}", host.name);
        let units = host.exec_ok(&["systemctl", "list-unit-files", "--no-legend"]);
        assert!(!units.contains("k3s"), "{}: {units}", host.name);
        for gone in [
            "/run/k3s",
            "/var/lib/kubelet",
            "/var/lib/rancher",
            "/var/lib/cni",
        ] {
            assert!(!exists(host, gone), "{}: {gone} is left", host.name);
        }
    }
}
