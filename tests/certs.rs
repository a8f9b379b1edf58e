//! `sealrs cert check` and `sealrs cert renew` on real hosts: the kubeadm
//! and k3s stand-ins make real x509 certificates (openssl) where upstream
//! keeps them, with the validity a test asks for
//! (`/etc/sealrs-standin-cert-days`), and renew them as upstream does.

use serde_json::Value;

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{on_hosts, run_on, standin_log};
use crate::run_hosts::build_kubeadm;

/// Certificates made on `host` from now on are valid this many days
/// (`NAME DAYS` lines, read by the stand-ins).
fn cert_days(host: &Host, lines: &str) {
    std::fs::write(host.root().join("etc/sealrs-standin-cert-days"), lines).unwrap();
}

/// `sealrs cert ARGS --format json <ssh flags>`: whether it succeeded, its
/// JSON and its stderr.
fn check_json(env: &Env, hosts: &TestHosts, extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec!["cert", "check", "--format", "json"];
    args.extend(extra);
    let out = on_hosts(env, hosts, &args, false);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), json, stderr)
}

/// The certificate of `file` that `check` read on `host`.
fn cert<'a>(check: &'a Value, host: &Host, file: &str) -> &'a Value {
    let h = check["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"].as_str().unwrap().starts_with(&host.ip))
        .unwrap_or_else(|| panic!("no host {} in {check}", host.ip));
    h["certs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == file)
        .unwrap_or_else(|| panic!("no {file} on {}: {h}", host.ip))
}

fn days_left(check: &Value, host: &Host, file: &str) -> i64 {
    cert(check, host, file)["daysLeft"].as_i64().unwrap()
}

fn sans(check: &Value, host: &Host, file: &str) -> Vec<String> {
    cert(check, host, file)["sans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// What the stand-ins recorded in order on `host` (`/var/log/sealrs-standin-events`):
/// each event's words and its time in ns.
fn events(host: &Host) -> Vec<(String, u128)> {
    host.exec_ok(&["cat", "/var/log/sealrs-standin-events"])
        .lines()
        .filter_map(|l| {
            let (words, ns) = l.rsplit_once(' ')?;
            Some((words.to_string(), ns.parse().ok()?))
        })
        .collect()
}

/// The events of `host` from its last `from` on.
fn since_last(host: &Host, from: &str) -> Vec<(String, u128)> {
    let all = events(host);
    let start = all
        .iter()
        .rposition(|(w, _)| w == from)
        .unwrap_or_else(|| panic!("no {from} on {}: {all:?}", host.name));
    all[start..].to_vec()
}

fn saved_kubeconfig(env: &Env) -> String {
    std::fs::read_to_string(env.root.join("clusters/default/kubeconfig")).unwrap()
}

const API_CERT: &str = "/etc/kubernetes/pki/apiserver.crt";

#[test]
fn kubeadm_certificates_are_checked_then_renewed_master_by_master_with_the_static_pods_restarted() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_kubeadm(&env);
    // The kubelet (stand-in) reads its manifests every second, as this
    // KubeletConfiguration says: a restart then waits 2s, not 20s.
    let config = env.path("kubeadm/etc/kubeadm.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}fileCheckFrequency: 1s\n")).unwrap();
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "-t",
        "kubeadm-cluster:1",
        "kubeadm",
    ]);
    for h in hosts.hosts() {
        cert_days(h, "apiserver 10\n");
    }
    run_on(&env, "kubeadm-cluster:1", &hosts, &[0, 1], &[], &[]);
    // kubeadm join writes the cluster's KubeletConfiguration (the
    // kubelet-config ConfigMap, init's) for the kubelet; the stand-in cannot
    // fetch it, so the test gives the second master's kubelet the same.
    hosts[1].exec_ok(&[
        "sh",
        "-c",
        "echo 'fileCheckFrequency: 1s' >>/var/lib/kubelet/config.yaml && systemctl restart kubelet",
    ]);

    // Real certificates: the API server's expires in 10 days on each master.
    let (ok, check, stderr) = check_json(&env, &hosts, &[]);
    assert!(!ok, "an expiring certificate must fail the check: {check}");
    assert!(
        stderr.contains("2 certificate(s) expire within 30 days"),
        "{stderr}"
    );
    assert_eq!(check["expiring"], 2, "{check}");
    for h in hosts.hosts() {
        let api = cert(&check, h, API_CERT);
        assert_eq!(api["subject"], "CN=kube-apiserver");
        assert_eq!(api["expiring"], true);
        assert!((8..=10).contains(&days_left(&check, h, API_CERT)), "{api}");
        assert!(days_left(&check, h, "/etc/kubernetes/pki/ca.crt") > 3600);
        assert!(days_left(&check, h, "/etc/kubernetes/pki/etcd/server.crt") > 360);
        let admin = cert(
            &check,
            h,
            "/etc/kubernetes/admin.conf (user kubernetes-admin)",
        );
        assert!(admin["subject"]
            .as_str()
            .unwrap()
            .contains("CN=kubernetes-admin"));
        assert_eq!(admin["expiring"], false);
    }
    let table = on_hosts(&env, &hosts, &["cert", "check"], false);
    let table_out = String::from_utf8_lossy(&table.stdout);
    assert!(!table.status.success());
    let line = table_out
        .lines()
        .find(|l| l.contains(API_CERT) && l.contains(&hosts[0].ip))
        .unwrap_or_else(|| panic!("{table_out}"));
    assert!(
        line.contains("CN=kube-apiserver") && line.trim_end().ends_with('!'),
        "{line}"
    );
    assert!(table_out.starts_with("HOST"), "{table_out}");
    // Ten days left is fine when the window is five.
    let (ok, _, stderr) = check_json(&env, &hosts, &["--warn-days", "5"]);
    assert!(ok, "{stderr}");

    // A bad alternative name, and a dry run: no host is touched.
    let logs: Vec<String> = hosts.hosts().iter().map(standin_log).collect();
    let bad = on_hosts(
        &env,
        &hosts,
        &["cert", "renew", "--alt-names", "api.example.com,bad name"],
        false,
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("--alt-names") && stderr.contains("\"bad name\""),
        "{stderr}"
    );
    let dry = on_hosts(&env, &hosts, &["cert", "renew", "--dry-run"], false);
    let plans = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        plans
            .matches("run: /usr/local/bin/kubeadm certs renew all")
            .count(),
        2,
        "{plans}"
    );
    assert!(plans.contains("kube-apiserver.yaml"), "{plans}");
    for (h, before) in hosts.hosts().iter().zip(&logs) {
        assert_eq!(&standin_log(h), before, "{} was touched", h.name);
    }

    // The renewal: master by master, each one's static pods restarted in
    // order (the kubelet saw each manifest leave and come back) before the
    // next master starts.
    let kubeconfig_before = saved_kubeconfig(&env);
    let renew = ["cert", "renew", "--pod-restart-wait", "2"];
    let out = on_hosts(&env, &hosts, &renew, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = vec!["certs-renew-all".to_string()];
    for pod in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        expected.extend([format!("stop {pod}"), format!("start {pod}")]);
    }
    let first = since_last(&hosts[0], "certs-renew-all");
    let second = since_last(&hosts[1], "certs-renew-all");
    for (h, seen) in [(&hosts[0], &first), (&hosts[1], &second)] {
        let words: Vec<&str> = seen.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, expected, "{}", h.name);
        let renews = standin_log(h)
            .lines()
            .filter(|l| l.starts_with("kubeadm|") && l.contains("|certs renew all|"))
            .count();
        assert_eq!(renews, 1, "{}", h.name);
    }
    assert!(
        first.last().unwrap().1 < second[0].1,
        "the second master started before the first was done: {first:?} {second:?}"
    );
    let (ok, check, stderr) = check_json(&env, &hosts, &[]);
    assert!(ok, "{stderr}\n{check}");
    for h in hosts.hosts() {
        assert!(days_left(&check, h, API_CERT) >= 364, "{check}");
    }
    let kubeconfig_after = saved_kubeconfig(&env);
    assert!(kubeconfig_after.contains("client-certificate-data"));
    assert_ne!(
        kubeconfig_before, kubeconfig_after,
        "the saved admin kubeconfig was not refreshed"
    );

    // New SANs on the API server's certificate, on every master; the
    // cluster's kubeadm-config is updated once, from the first master.
    let alt = ["--alt-names", "api.example.com,10.20.30.40"];
    let out = on_hosts(&env, &hosts, &[&renew[..], &alt[..]].concat(), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, check, _) = check_json(&env, &hosts, &[]);
    for h in hosts.hosts() {
        let names = sans(&check, h, API_CERT);
        assert!(
            names.contains(&"api.example.com".to_string())
                && names.contains(&"10.20.30.40".to_string())
                && names.contains(&h.ip),
            "{}: {names:?}",
            h.name
        );
        // A second opinion: openssl on the host reads the same names.
        let text = h.exec_ok(&[
            "openssl",
            "x509",
            "-in",
            API_CERT,
            "-noout",
            "-ext",
            "subjectAltName",
        ]);
        assert!(
            text.contains("DNS:api.example.com") && text.contains("IP Address:10.20.30.40"),
            "{text}"
        );
        // The certificate before the new SANs is kept, as kubeadm's docs move it away.
        let kept = h.exec(&["test", "-s", "/etc/kubernetes/sealrs-backup/apiserver.crt"]);
        assert!(kept.status.success(), "{}", h.name);
        let uploads = standin_log(h)
            .matches("init phase upload-config kubeadm")
            .count();
        assert_eq!(uploads, usize::from(h.ip == hosts[0].ip), "{}", h.name);
    }

    // A master that is not healthy after its renewal (a runtime service
    // down) stops the command before the next master is touched.
    hosts[0].exec_ok(&["systemctl", "stop", "containerd"]);
    let out = on_hosts(&env, &hosts, &renew, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&hosts[0].ip) && stderr.contains("containerd.service is inactive"),
        "{stderr}"
    );
    let renews = |h: &Host| standin_log(h).matches("|certs renew all|").count();
    assert_eq!((renews(&hosts[0]), renews(&hosts[1])), (3, 2));
    hosts[0].exec_ok(&["systemctl", "start", "containerd"]);

    // A master that is down is reported, and fails the check.
    hosts.stop(1);
    let (ok, check, stderr) = check_json(&env, &hosts, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("could not read the certificates of"),
        "{stderr}"
    );
    let down = check["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"].as_str().unwrap().starts_with(&hosts[1].ip))
        .unwrap();
    assert_eq!(down["reachable"], false, "{down}");
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    assert!(days_left(&check, &hosts[0], API_CERT) >= 364);
}

#[test]
fn k3s_certificates_rotate_with_the_server_stopped_and_get_the_new_san() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let serving = "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt";
    cert_days(&hosts[0], "serving-kube-apiserver 200\n");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[], &[]);
    let (ok, check, stderr) = check_json(&env, &hosts, &[]);
    assert!(ok, "{stderr}\n{check}");
    assert!(
        (198..=200).contains(&days_left(&check, &hosts[0], serving)),
        "{check}"
    );
    cert(
        &check,
        &hosts[0],
        "/var/lib/rancher/k3s/agent/client-kubelet.crt",
    );
    std::fs::remove_file(hosts[0].root().join("etc/sealrs-standin-cert-days")).unwrap();

    // Upstream's docs stop K3s before `k3s certificate rotate`; the
    // stand-in refuses it while the server runs.
    let running = hosts[0].exec(&["/usr/local/bin/k3s", "certificate", "rotate"]);
    assert!(!running.status.success());
    assert!(String::from_utf8_lossy(&running.stderr).contains("stop it"));

    let out = on_hosts(
        &env,
        &hosts,
        &["cert", "renew", "--alt-names", "k3s.example.com"],
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rotated with the server stopped (the stand-in refuses otherwise), then
    // started again: a 200-day certificate, which a restart alone keeps
    // (k3s renews at start only within 90 days), is new.
    let rotates = standin_log(&hosts[0])
        .matches("|certificate rotate|")
        .count();
    assert_eq!(rotates, 2, "the refused call above and the renewal");
    assert_eq!(
        hosts[0].exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active"
    );
    let (ok, check, stderr) = check_json(&env, &hosts, &[]);
    assert!(ok, "{stderr}");
    assert!(days_left(&check, &hosts[0], serving) >= 364, "{check}");
    assert!(sans(&check, &hosts[0], serving).contains(&"k3s.example.com".to_string()));
    let dropin = hosts[0].exec_ok(&[
        "cat",
        "/etc/rancher/k3s/config.yaml.d/50-sealrs-tls-san.yaml",
    ]);
    assert_eq!(dropin, "tls-san+:\n- k3s.example.com\n");
}

#[test]
fn cert_commands_refuse_an_unknown_cluster_and_a_bad_alt_name_before_reaching_a_host() {
    let env = Env::new();
    for args in [
        &["cert", "check", "--cluster", "nope"][..],
        &["cert", "renew", "--cluster", "nope"],
        &["cert", "renew", "--cluster", "nope", "--dry-run"],
    ] {
        let stderr = env.fails(args);
        assert!(stderr.contains("nope"), "{args:?}: {stderr}");
    }
    for bad in ["a b", "$(id)", "-x.example.com", "a..b"] {
        let stderr = env.fails(&["cert", "renew", &format!("--alt-names={bad}")]);
        assert!(
            stderr.contains("--alt-names") && stderr.contains(&format!("{bad:?}")),
            "{bad}: {stderr}"
        );
    }
    assert!(!env.root.join("clusters/nope/Clusterfile").exists());
}
