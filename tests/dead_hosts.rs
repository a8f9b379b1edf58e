//! Dead hosts and changed control planes (issue 17): `sealrs status` reports
//! a host that is down and exits non-zero; `delete --force` forgets a host
//! that cannot be reached once its Node is gone; masters replaced one at a
//! time. On real hosts with the k3s stand-ins.

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;
use crate::run::{on_hosts, run_on};

/// `sealrs ARGS... <ssh flags>` (with `--yes` for delete).
fn sealrs(env: &Env, hosts: &TestHosts, args: &[&str]) -> std::process::Output {
    on_hosts(env, hosts, args, true)
}

fn build_k3s(env: &Env, tag: &str) {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", tag, &dir]);
}

/// `status --format json`: its exit status and the document it printed.
fn status_json(env: &Env, hosts: &TestHosts) -> (bool, serde_json::Value, String) {
    let out = sealrs(env, hosts, &["status", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
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

#[test]
fn status_reports_each_host_and_a_stopped_one_as_unreachable_with_a_failing_exit() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);

    let (ok, doc, stderr) = status_json(&env, &hosts);
    assert!(ok, "{doc:#}\n{stderr}");
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["runtime"], "k3s");
    let (m, n) = (host(&doc, &hosts[0].ip), host(&doc, &hosts[1].ip));
    assert_eq!(m["roles"], serde_json::json!(["master"]));
    assert_eq!(n["roles"], serde_json::json!(["node"]));
    for (h, unit, name) in [
        (m, "k3s.service", &hosts[0].name),
        (n, "k3s-agent.service", &hosts[1].name),
    ] {
        assert_eq!(h["reachable"], true, "{h:#}");
        assert_eq!(h["installed"], true, "{h:#}");
        assert!(
            h["digest"].as_str().unwrap().starts_with("sha256:"),
            "{h:#}"
        );
        assert_eq!(h["version"], "v1.30.2+k3s1");
        assert_eq!(
            h["services"],
            serde_json::json!([{"unit": unit, "state": "active"}])
        );
        assert_eq!(h["node"]["name"], name.as_str());
        assert_eq!(h["node"]["ready"], "True");
        assert_eq!(h["node"]["version"], "v1.30.2+k3s1");
        assert_eq!(h["healthy"], true);
    }
    // The first master was asked, by name, with k3s's kubectl.
    let log = hosts[0].exec_ok(&["cat", "/var/log/sealrs-standins.log"]);
    assert!(
        log.contains(&format!(
            "|kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml get node {} --ignore-not-found -o json|",
            hosts[1].name
        )),
        "{log}"
    );

    // The table, for people.
    let table = sealrs(&env, &hosts, &["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    assert!(text.contains("every host healthy"), "{text}");

    // A host down is an answer, not an error that stops the command.
    hosts.stop(1);
    let (ok, doc, stderr) = status_json(&env, &hosts);
    assert!(!ok, "a host is down: the exit status says so\n{doc:#}");
    assert!(
        stderr.contains(&format!("not healthy: {}", hosts[1].ip)),
        "{stderr}"
    );
    assert_eq!(doc["healthy"], false);
    let down = host(&doc, &hosts[1].ip);
    assert_eq!(down["reachable"], false, "{down:#}");
    assert_eq!(down["healthy"], false);
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down:#}"
    );
    assert_eq!(host(&doc, &hosts[0].ip)["healthy"], true, "{doc:#}");
}

#[test]
fn delete_force_forgets_a_stopped_node_after_deleting_its_node_through_the_first_master() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1, 2], &[]);
    hosts.stop(1);
    let gone = &hosts[1];

    // Without --force the host stays in the saved cluster (failed).
    let out = sealrs(&env, &hosts, &["delete", "--nodes", &gone.ip]);
    assert!(!out.status.success());
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains(&gone.ip), "{saved}");

    let out = sealrs(&env, &hosts, &["delete", "--force", "--nodes", &gone.ip]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("forgotten (--force)"), "{stderr}");
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(!saved.contains(&gone.ip), "{saved}");
    assert!(saved.contains(&hosts[2].ip), "{saved}");
    // The Node was deleted through the first master.
    let deleted = hosts[0].exec_ok(&["cat", "/var/log/sealrs-standin-deleted-nodes"]);
    assert_eq!(deleted.lines().collect::<Vec<_>>(), [gone.name.as_str()]);
    // The rest of the cluster is healthy again.
    let (ok, doc, stderr) = status_json(&env, &hosts);
    assert!(ok, "{doc:#}\n{stderr}");
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 2);
}

#[test]
fn a_k3s_master_is_replaced_3_to_2_to_3_with_a_warning_and_a_first_run_of_2_is_refused() {
    let hosts = TestHosts::boot(4);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    let two = format!("{},{}", hosts[0].ip, hosts[1].ip);
    let out = sealrs(&env, &hosts, &["run", "k3s-cluster:1", "--masters", &two]);
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{refused}");
    assert!(refused.contains("odd number"), "{refused}");
    assert!(
        !hosts[0]
            .exec(&["test", "-e", "/var/lib/sealrs-host"])
            .status
            .success(),
        "nothing was sent"
    );

    run_on(&env, "k3s-cluster:1", &hosts, &[0, 1, 2], &[], &[]);
    let third = &hosts[2].ip;
    let out = sealrs(&env, &hosts, &["delete", "--nodes", third]);
    let deleted = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{deleted}");
    assert!(
        deleted.contains("warning: 2 k3s servers with embedded etcd: quorum needs 2 of them"),
        "{deleted}"
    );
    assert!(!hosts[2]
        .exec(&["test", "-e", "/usr/local/bin/k3s"])
        .status
        .success());
    let (ok, doc, stderr) = status_json(&env, &hosts);
    assert!(ok, "{doc:#}\n{stderr}");
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 2);

    // Back to three: a new server replaces it, no warning any more.
    let new = &hosts[3].ip;
    let out = sealrs(&env, &hosts, &["add", "--masters", new]);
    let added = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{added}");
    assert!(!added.contains("warning: "), "{added}");
    assert_eq!(
        hosts[3].exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active"
    );
    let (ok, doc, stderr) = status_json(&env, &hosts);
    assert!(ok, "{doc:#}\n{stderr}");
    let masters = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["roles"] == serde_json::json!(["master"]))
        .count();
    assert_eq!(masters, 3, "{doc:#}");
}
