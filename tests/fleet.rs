//! Fleets (issue 22): `--max-parallel` refused when it is no positive
//! number, and node joins that fail within `--max-failed`: the cluster comes
//! up with the others, the failed ones are reported and saved as Failed, and
//! a rerun joins only them. On real hosts with the k3s stand-ins.

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{on_hosts, ssh_flags};

/// How many nodes join beside the one master.
const NODES: usize = 6;

/// `sealrs run IMAGE --masters M --nodes N... <ssh flags> extra --format json`:
/// its exit status, the result document and stderr.
fn run_json(env: &Env, hosts: &TestHosts, extra: &[&str]) -> (bool, serde_json::Value, String) {
    let nodes: Vec<&str> = (1..=NODES).map(|i| hosts[i].ip.as_str()).collect();
    let nodes = nodes.join(",");
    let mut args: Vec<String> = [
        "run",
        "k3s-cluster:1",
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &nodes,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(ssh_flags(hosts));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--format".into(), "json".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stderr}"));
    (out.status.success(), doc, stderr)
}

fn host<'a>(doc: &'a serde_json::Value, ip: &str) -> &'a serde_json::Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == ip)
        .unwrap_or_else(|| panic!("no host {ip} in {doc:#}"))
}

/// The hosts `sealrs status --format json` finds healthy.
fn healthy(env: &Env, hosts: &TestHosts) -> Vec<String> {
    let out = on_hosts(env, hosts, &["status", "--format", "json"], false);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["healthy"] == true)
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect()
}

/// Makes `host` unable to install the agent the way a broken host is:
/// `/usr/local/bin`, where k3s and its links go, is a file.
fn break_usr_local_bin(host: &Host) {
    host.exec_ok(&[
        "sh",
        "-c",
        "rm -rf /usr/local/bin && echo broken >/usr/local/bin",
    ]);
}

#[test]
fn max_parallel_of_zero_or_not_a_number_is_refused_before_any_host_is_reached() {
    let env = Env::new();
    for bad in ["0", "many", "-1"] {
        let flag = format!("--max-parallel={bad}");
        let out = env.run(&["run", "any:1", "--masters", "192.0.2.1", &flag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: {stderr}");
        assert!(
            stderr.contains("--max-parallel") && stderr.contains("1 or more"),
            "{bad}: {stderr}"
        );
    }
    let out = env.run(&[
        "run",
        "any:1",
        "--masters",
        "192.0.2.1",
        "--max-failed",
        "5 nodes",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--max-failed"),
        "{stderr}"
    );
}

#[test]
fn a_node_failing_its_join_within_max_failed_leaves_the_others_running_and_a_rerun_joins_only_it() {
    let hosts = TestHosts::boot(1 + NODES);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let broken = &hosts[NODES];
    break_usr_local_bin(broken);

    // Tolerated: the cluster comes up with the six others, exit 0.
    let (ok, doc, stderr) = run_json(&env, &hosts, &["--max-failed", "1"]);
    assert!(ok, "{doc:#}\n{stderr}");
    assert_eq!(doc["ok"], true, "{doc:#}");
    let failed = &host(&doc, &broken.ip)["failed"];
    assert!(failed["step"].is_string(), "the step that failed: {doc:#}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("/usr/local/bin"),
        "its error: {doc:#}"
    );
    assert!(
        doc["warning"].as_str().unwrap().contains(&broken.ip),
        "{doc:#}"
    );
    assert!(
        stderr.contains("warning: the cluster runs without the nodes below (--max-failed 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("running on 6 hosts"), "{stderr}");
    // Progress without a terminal: the count of hosts done, the last always.
    assert!(
        stderr.contains("k3s join (nodes): 6 of 6 hosts done, 1 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("connecting and checking: 7 of 7 hosts done\n"),
        "{stderr}"
    );
    let mut up = healthy(&env, &hosts);
    up.sort();
    let mut expected: Vec<String> = hosts.hosts()[..NODES]
        .iter()
        .map(|h| h.ip.clone())
        .collect();
    expected.sort();
    assert_eq!(up, expected, "the master and five nodes run");
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("Failed"), "saved as failed: {saved}");

    // Without --max-failed the same failure fails the run, as before.
    let (ok, doc, stderr) = run_json(&env, &hosts, &[]);
    assert!(!ok, "{doc:#}\n{stderr}");
    assert_eq!(doc["ok"], false);
    assert!(
        host(&doc, &broken.ip)["failed"]["step"].is_string(),
        "{doc:#}"
    );

    // Fixed, the same command joins it, and changes no other host.
    broken.exec_ok(&[
        "sh",
        "-c",
        "rm -f /usr/local/bin && mkdir -m 755 /usr/local/bin",
    ]);
    let (ok, doc, stderr) = run_json(&env, &hosts, &["--max-failed", "1"]);
    assert!(ok, "{doc:#}\n{stderr}");
    let changed: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["changed"] == true)
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(changed, [broken.ip.as_str()], "{doc:#}");
    assert!(doc.get("warning").is_none(), "{doc:#}");
    assert_eq!(healthy(&env, &hosts).len(), 1 + NODES);
}

#[test]
fn add_with_max_failed_leaves_a_node_that_failed_its_join_failed_and_add_again_joins_it() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let broken = &hosts[2];
    break_usr_local_bin(broken);
    let add = |extra: &[&str]| {
        let mut args = vec!["add", "--nodes", broken.ip.as_str(), "--format", "json"];
        args.extend(extra);
        let out = on_hosts(&env, &hosts, &args, false);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {stderr}"));
        (out.status.success(), doc, stderr)
    };

    let (ok, doc, stderr) = add(&["--max-failed", "100%"]);
    assert!(ok, "{doc:#}\n{stderr}");
    let failed = &host(&doc, &broken.ip)["failed"];
    assert!(failed["step"].is_string(), "{doc:#}");
    assert!(
        stderr.contains("did not join (--max-failed 100%)"),
        "{stderr}"
    );
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("Failed"), "saved as failed: {saved}");

    broken.exec_ok(&[
        "sh",
        "-c",
        "rm -f /usr/local/bin && mkdir -m 755 /usr/local/bin",
    ]);
    let (ok, doc, stderr) = add(&[]);
    assert!(ok, "{doc:#}\n{stderr}");
    assert!(host(&doc, &broken.ip)["failed"].is_null(), "{doc:#}");
    assert_eq!(host(&doc, &broken.ip)["changed"], true, "{doc:#}");
    assert_eq!(healthy(&env, &hosts).len(), 3);
}
