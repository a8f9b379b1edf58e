//! k0s (stand-in, v1.30.2+k0s.0 contract) on real hosts: etcd membership when
//! a controller goes, join tokens with an expiry invalidated after the joins,
//! the endpoint in the ClusterConfig, kubectl for application images, and bad
//! input refused before any host changes.

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{run_on, ssh_flags, standin_log};

fn build(env: &Env) -> String {
    let dir = example(env, "k0s", "k0s");
    env.ok(&["build", "-q", "--no-images", "-t", "k0s-cluster:1", &dir]);
    "k0s-cluster:1".into()
}

/// The argv of each k0s stand-in call on the host, in order.
fn k0s_calls(host: &Host) -> Vec<String> {
    standin_log(host)
        .lines()
        .filter(|l| l.starts_with("k0s|"))
        .map(|l| l.split('|').nth(2).unwrap_or_default().to_string())
        .collect()
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:?}"))
}

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

/// `ID ROLE EXPIRES STATE` lines of the tokens the first controller made.
fn tokens(host: &Host) -> Vec<Vec<String>> {
    host.exec_ok(&["cat", "/var/lib/k0s/standin-tokens"])
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

#[test]
fn three_controllers_and_a_worker_tokens_expire_and_are_invalidated_then_deleted_controllers_leave_etcd_first(
) {
    let hosts = TestHosts::boot(4);
    let env = Env::new();
    let image = build(&env);
    let endpoint = format!("CONTROL_PLANE_ENDPOINT={}", hosts[0].ip);
    let stderr = run_on(&env, &image, &hosts, &[0, 1, 2], &[3], &["-e", &endpoint]);
    assert!(stderr.contains("running on 4 hosts"), "{stderr}");

    // One token per role that joins, valid 10 minutes per host using it.
    let first = k0s_calls(&hosts[0]);
    assert!(
        first.contains(&"token create --role=worker --expiry=10m".to_string()),
        "{first:?}"
    );
    assert!(
        first.contains(&"token create --role=controller --expiry=20m".to_string()),
        "{first:?}"
    );
    // Both invalidated by their IDs on the first controller, after the joins.
    let made = tokens(&hosts[0]);
    assert_eq!(made.len(), 2, "{made:?}");
    let now: u64 = hosts[0].exec_ok(&["date", "+%s"]).trim().parse().unwrap();
    for token in &made {
        let (id, expires, state) = (&token[0], &token[2], &token[3]);
        assert_eq!(state, "invalidated", "{made:?}");
        let expires: u64 = expires.parse().unwrap();
        assert!(expires > now && expires <= now + 20 * 60, "{made:?}");
        assert!(
            first.contains(&format!("token invalidate --data-dir=/var/lib/k0s {id}")),
            "{first:?}"
        );
    }
    let invalidated = position(&first, "token invalidate");
    assert!(invalidated > position(&first, "token create"));
    // The hosts joined with those very tokens.
    let id_of = |host: &Host| {
        host.exec_ok(&[
            "sh",
            "-c",
            "base64 -d /etc/k0s/join-token | gzip -dc | sed -n 's/^ *token: *\\([a-z0-9]*\\)\\..*/\\1/p'",
        ])
        .trim()
        .to_string()
    };
    let worker_id = made.iter().find(|t| t[1] == "worker").unwrap()[0].clone();
    let controller_id = made.iter().find(|t| t[1] == "controller").unwrap()[0].clone();
    assert_eq!(id_of(&hosts[3]), worker_id);
    for i in [1, 2] {
        assert_eq!(id_of(&hosts[i]), controller_id);
        assert!(k0s_calls(&hosts[i]).iter().any(|c| c
            == "install controller --config /etc/k0s/k0s.yaml --token-file /etc/k0s/join-token"));
    }

    // Each controller advertises its own address; the endpoint is the
    // external address and a SAN.
    for i in 0..3 {
        let config = hosts[i].exec_ok(&["cat", "/etc/k0s/k0s.yaml"]);
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
        let api = &yaml["spec"]["api"];
        assert_eq!(
            api["address"].as_str(),
            Some(hosts[i].ip.as_str()),
            "{config}"
        );
        assert_eq!(
            yaml["spec"]["storage"]["etcd"]["peerAddress"].as_str(),
            Some(hosts[i].ip.as_str())
        );
        assert_eq!(api["externalAddress"].as_str(), Some(hosts[0].ip.as_str()));
        let sans: Vec<&str> = api["sans"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for want in [&hosts[0].ip, &hosts[1].ip, &hosts[2].ip, "127.0.0.1"] {
            assert!(sans.contains(&want), "{sans:?}");
        }
        // The image's own settings stay.
        assert_eq!(
            yaml["spec"]["network"]["provider"].as_str(),
            Some("kuberouter")
        );
    }

    // The airgap bundle only where workloads run: the worker, not the
    // controllers (a cluster with a worker runs them without --enable-worker).
    let bundle = "/var/lib/k0s/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64.tar";
    assert!(exists(&hosts[3], bundle));
    for i in 0..3 {
        assert!(!exists(&hosts[i], bundle), "{}", hosts[i].name);
    }

    // Deleting 2 of the 3 controllers (verify refuses an even count left):
    // each leaves etcd while it runs, then stops and resets, one after the
    // other, so the etcd of the first never loses its quorum.
    let mut args = vec![
        "delete".to_string(),
        "--yes".into(),
        "--nodes".into(),
        format!("{},{}", hosts[1].ip, hosts[2].ip),
    ];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&refs);
    for gone in [&hosts[1], &hosts[2]] {
        let calls = k0s_calls(gone);
        let leave = position(&calls, "etcd leave");
        assert_eq!(
            calls[leave],
            format!("etcd leave --peer-address {}", gone.ip)
        );
        assert!(leave < position(&calls, "stop"), "{calls:?}");
        assert!(
            position(&calls, "stop") < position(&calls, "reset"),
            "{calls:?}"
        );
        assert_eq!(
            gone.exec_ok(&["cat", "/var/log/sealrs-standin-etcd-left"])
                .trim(),
            gone.ip
        );
        assert!(!exists(gone, "/etc/systemd/system/k0scontroller.service"));
        assert!(!exists(gone, "/var/lib/k0s"));
        assert!(!exists(gone, "/usr/local/bin/kubectl"), "our link went too");
    }
    // The first controller stays a member and runs; the worker too.
    assert!(!k0s_calls(&hosts[0])
        .iter()
        .any(|c| c.starts_with("etcd leave")));
    assert!(hosts[0]
        .exec(&["systemctl", "is-active", "--quiet", "k0scontroller"])
        .status
        .success());
    assert!(hosts[3]
        .exec(&["systemctl", "is-active", "--quiet", "k0sworker"])
        .status
        .success());
}

#[test]
fn a_failed_reset_is_reported_and_the_uninstall_goes_on() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let image = build(&env);
    run_on(&env, &image, &hosts, &[0], &[], &[]);
    hosts[0].exec_ok(&["sh", "-c", "echo k0s >/etc/sealrs-standin-fail"]);
    let mut args = vec!["reset".to_string(), "--yes".into()];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {}", hosts[0].ip)) && stderr.contains("k0s reset"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failure injected"),
        "the output's tail: {stderr}"
    );
    // The rest was done.
    assert!(!exists(&hosts[0], "/usr/local/bin/k0s"));
    assert!(!exists(&hosts[0], "/etc/k0s"));
    assert!(!exists(
        &hosts[0],
        "/etc/systemd/system/k0scontroller.service"
    ));
}

#[test]
fn an_application_image_runs_kubectl_on_a_k0s_controller() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let image = build(&env);
    let src = format!("{}/Kubefile-examples/hello-app", env!("CARGO_MANIFEST_DIR"));
    let ok = std::process::Command::new("cp")
        .args(["-a", &src, env.path("hello-app").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    env.build("hello-app:1", "hello-app");
    let out = run_on(&env, &image, &hosts, &[0], &[], &[]);
    assert!(out.contains("running on 1 host ("), "{out}");
    assert_eq!(
        hosts[0]
            .exec_ok(&["readlink", "/usr/local/bin/kubectl"])
            .trim(),
        "/usr/local/bin/k0s"
    );
    // A lone controller runs workloads (--enable-worker): it gets the bundle.
    assert!(exists(
        &hosts[0],
        "/var/lib/k0s/images/k0s-airgap-bundle-v1.30.2+k0s.0-amd64.tar"
    ));
    let mut args = vec![
        "run".to_string(),
        image.clone(),
        "hello-app:1".into(),
        "--masters".into(),
        hosts[0].ip.clone(),
    ];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("applied (exit code 0)"), "{stderr}");
    assert!(
        k0s_calls(&hosts[0])
            .iter()
            .any(|c| c == "apply -n hello -f manifests/"),
        "kubectl was k0s: {:?}",
        k0s_calls(&hosts[0])
    );

    // Uninstall removes our link only.
    let mut args = vec!["reset".to_string(), "--yes".into()];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&refs);
    assert!(!exists(&hosts[0], "/usr/local/bin/kubectl"));
}

#[test]
fn a_kine_config_with_three_controllers_is_refused_before_any_host_changes() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let dir = example(&env, "k0s", "k0s");
    env.write(
        &format!("{dir}/etc/k0s.yaml"),
        "apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  storage:\n    type: kine\n",
    );
    env.ok(&["build", "-q", "--no-images", "-t", "k0s-kine:1", &dir]);
    let mut args = vec![
        "run".to_string(),
        "k0s-kine:1".into(),
        "--masters".into(),
        format!("{},{},{}", hosts[0].ip, hosts[1].ip, hosts[2].ip),
    ];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = env.fails(&refs);
    assert!(
        stderr.contains("etc/k0s.yaml") && stderr.contains("kine"),
        "{stderr}"
    );
    assert!(stderr.contains("use one controller"), "{stderr}");
    for host in hosts.hosts() {
        assert!(!exists(host, "/usr/local/bin/k0s"), "{}", host.name);
        assert!(!exists(host, "/etc/systemd/system/k0scontroller.service"));
        assert!(
            !exists(host, "/var/log/sealrs-standins.log"),
            "k0s never ran"
        );
    }
}

#[test]
fn a_bad_service_cidr_or_endpoint_is_refused_before_any_host_is_reached() {
    let env = Env::new();
    let image = build(&env);
    // An address of the test range that no host has: it is never contacted.
    for (bad, says) in [
        ("SERVICE_CIDR=not-a-cidr", "-e SERVICE_CIDR=\"not-a-cidr\""),
        ("CONTROL_PLANE_ENDPOINT=lb.example.com:8443", "HOST:6443"),
    ] {
        let stderr = env.fails(&["run", &image, "--masters", "10.250.255.254", "-e", bad]);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("connecting"), "{stderr}");
    }
}
