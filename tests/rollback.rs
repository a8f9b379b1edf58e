//! An upgrade that fails on a host returns that host to the image it ran
//! before, and one that was killed can be rolled back but never silently
//! undone by an older image (issue 21), on real hosts with the k3s stand-in.

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::interrupt::{wait_for_orphans, Running};
use crate::layout::{example, standin_version};
use crate::run::{on_hosts, run_on, ssh_flags};

const OLD: &str = "v1.30.2+k3s1";
const NEW: &str = "v1.30.3+k3s1";

/// `k3s-cluster:1` built from the example; returns its context directory.
fn build_old(env: &Env) -> String {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    dir
}

/// `k3s-cluster:2`: the same context with a newer k3s, whose agent cannot
/// start when `agent_fails` (under systemd it exits 1 before it is ready,
/// as a k3s binary that does not run on the host would).
fn build_new(env: &Env, dir: &str, agent_fails: bool) {
    standin_version(env, dir, NEW);
    if agent_fails {
        let path = env.path(&format!("{dir}/bin/k3s"));
        let text = std::fs::read_to_string(&path).unwrap();
        let line = format!("STANDIN_VERSION={NEW}");
        let broken = format!(
            "{line}\nif [ \"${{1:-}}\" = agent ] && [ -n \"${{INVOCATION_ID:-}}\" ]; then echo 'k3s agent: fatal: this build cannot start here' >&2; exit 1; fi"
        );
        std::fs::write(&path, text.replacen(&line, &broken, 1)).unwrap();
    }
    let arg = format!("VERSION={NEW}");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        &arg,
        "-t",
        "k3s-cluster:2",
        dir,
    ]);
}

fn sealrs(env: &Env, hosts: &TestHosts, args: &[&str]) -> (bool, String) {
    let out = on_hosts(env, hosts, args, true);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), stderr)
}

fn saved(env: &Env) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn digest(env: &Env, image: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    doc["digest"].as_str().unwrap().to_string()
}

/// The version of the k3s binary placed on `host`, and whether its unit runs.
fn k3s_on(host: &Host, unit: &str) -> (String, String) {
    let version = host.exec_ok(&["/usr/local/bin/k3s", "--version"]);
    let active = host.exec(&["systemctl", "is-active", unit]);
    (
        version,
        String::from_utf8_lossy(&active.stdout).trim().to_string(),
    )
}

/// The saved status of `host`: its version and the digest of its image.
fn recorded(env: &Env, host: &Host) -> (String, String, String) {
    let s = &saved(env)["status"]["hosts"][host.ip.as_str()];
    (
        s["version"].as_str().unwrap_or_default().to_string(),
        s["images"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        s["phase"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn an_upgrade_that_fails_on_a_host_returns_it_to_the_image_before_and_rollback_returns_the_rest() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = build_old(&env);
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    build_new(&env, &dir, true);
    let (old, new) = (digest(&env, "k3s-cluster:1"), digest(&env, "k3s-cluster:2"));
    let (server, agent) = (&hosts[0], &hosts[1]);

    let upgrade = on_hosts(
        &env,
        &hosts,
        &[
            "upgrade",
            "k3s-cluster:2",
            "--ready-timeout",
            "30",
            "--format",
            "json",
        ],
        false,
    );
    let out = String::from_utf8_lossy(&upgrade.stderr).into_owned();
    assert!(
        !upgrade.status.success(),
        "the agent cannot start on the new image:\n{out}"
    );
    // The result names the host, the step that failed and where it went.
    let result: serde_json::Value = serde_json::from_slice(&upgrade.stdout).unwrap();
    let failed = result["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == agent.ip.as_str())
        .map(|h| h["failed"].clone())
        .unwrap();
    assert!(
        failed["step"]
            .as_str()
            .unwrap_or_default()
            .starts_with("restart")
            && failed["message"]
                .as_str()
                .unwrap_or_default()
                .contains("was returned to docker.io/library/k3s-cluster:1"),
        "{result:#}"
    );
    assert!(
        out.contains("upgrade failed at step restart (restart k3s-agent.service"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} was returned to docker.io/library/k3s-cluster:1 ({OLD}) and runs it again",
            agent.ip
        )),
        "{out}"
    );
    assert!(
        out.contains("sealrs upgrade --rollback --cluster default"),
        "{out}"
    );
    // Back on the old binary, its node reported Ready with the old version
    // before it was uncordoned.
    let back = out
        .find(&format!(
            "waiting for node {} to report Ready with {OLD}",
            agent.name
        ))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        out[back..].contains(&format!("uncordon node {}", agent.name)),
        "{out}"
    );
    // The server went first and runs the new image; the agent runs the old
    // binary again (re-placed from the old rootfs kept on the host).
    let (version, active) = k3s_on(server, "k3s");
    assert!(
        version.contains(NEW) && active == "active",
        "{version} {active}"
    );
    let (version, active) = k3s_on(agent, "k3s-agent");
    assert!(
        version.contains(OLD) && active == "active",
        "{version} {active}"
    );
    assert_eq!(
        recorded(&env, server),
        (NEW.into(), new.clone(), "Running".into())
    );
    assert_eq!(
        recorded(&env, agent),
        (OLD.into(), old.clone(), "Running".into())
    );
    // `sealrs status` sees each host as it is: running, its node Ready
    // with the version of the image it runs.
    let (healthy, _) = sealrs(&env, &hosts, &["status", "--format", "json"]);
    let json = on_hosts(&env, &hosts, &["status", "--format", "json"], false).stdout;
    let status: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(healthy, "{status:#}");
    let of = |ip: &str| {
        status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == ip)
            .cloned()
            .unwrap()
    };
    // (The stand-in's `get node -o json` gives the kubectl binary's
    // version; the node's own came back above, through the jsonpath query.)
    for (host, image, version) in [(agent, &old, OLD), (server, &new, NEW)] {
        let h = of(&host.ip);
        assert_eq!(h["digest"], image.as_str(), "{status:#}");
        assert_eq!(h["version"], version, "{status:#}");
        assert_eq!(h["healthy"], true, "{status:#}");
    }

    // The upgrade did not complete: the server goes back too.
    let (ok, out) = sealrs(
        &env,
        &hosts,
        &["upgrade", "--rollback", "--cluster", "default"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("cluster default returned to docker.io/library/k3s-cluster:1 on 2 hosts"),
        "{out}"
    );
    // The agent's plan ran again and found nothing to change.
    assert!(out.contains("on 2 hosts (1 changed"), "{out}");
    let (version, active) = k3s_on(server, "k3s");
    assert!(
        version.contains(OLD) && active == "active",
        "{version} {active}"
    );
    assert_eq!(
        recorded(&env, server),
        (OLD.into(), old.clone(), "Running".into())
    );
    assert_eq!(
        saved(&env)["spec"]["images"][0].as_str(),
        Some("docker.io/library/k3s-cluster:1")
    );
    assert!(!env.root.join("clusters/default/upgrade.json").exists());
    // Nothing is left to roll back.
    let (ok, out) = sealrs(&env, &hosts, &["upgrade", "--rollback"]);
    assert!(
        !ok && out.contains("has no unfinished upgrade to roll back"),
        "{out}"
    );
}

#[test]
fn after_a_killed_upgrade_the_old_image_is_refused_until_the_upgrade_is_rolled_back() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = build_old(&env);
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    build_new(&env, &dir, false);

    // Killed as the first master's upgrade starts: nothing recorded it.
    let mut args = vec!["upgrade".to_string(), "k3s-cluster:2".to_string()];
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = Running::start(env.cmd(&refs));
    run.wait_for(&format!("{}: k3s upgrade to", hosts[0].ip));
    run.child.kill().unwrap();
    let (_, said) = run.finish();
    wait_for_orphans(&hosts);
    assert!(
        env.root.join("clusters/default/upgrade.json").exists(),
        "the intent is saved before any host changes:\n{said}"
    );
    assert_eq!(
        recorded(&env, &hosts[0]).0,
        OLD,
        "the kill came before any save of the host"
    );

    // The old image again would downgrade the first master: refused, with
    // both ways out, before anything happens on a host.
    let log_before = hosts[0].exec_ok(&["cat", "/var/log/sealrs-standins.log"]);
    let mut run = vec![
        "run".to_string(),
        "k3s-cluster:1".to_string(),
        "--masters".to_string(),
        hosts[0].ip.clone(),
        "--nodes".to_string(),
        hosts[1].ip.clone(),
    ];
    run.extend(ssh_flags(&hosts));
    let run_refs: Vec<&str> = run.iter().map(String::as_str).collect();
    let refused = env.fails(&run_refs);
    for says in [
        "its upgrade to docker.io/library/k3s-cluster:2 (v1.30.3+k3s1) did not complete",
        "would downgrade the hosts it reached; nothing was changed",
        "sealrs upgrade --cluster default docker.io/library/k3s-cluster:2",
        "sealrs upgrade --rollback --cluster default",
    ] {
        assert!(refused.contains(says), "{says:?} not in:\n{refused}");
    }
    assert_eq!(
        hosts[0].exec_ok(&["cat", "/var/log/sealrs-standins.log"]),
        log_before
    );

    // An upgrade to the image before is that upgrade's rollback: the old
    // image runs everywhere again, and `run` with it converges.
    let (ok, out) = sealrs(&env, &hosts, &["upgrade", "k3s-cluster:1"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("returning cluster default from docker.io/library/k3s-cluster:2"),
        "{out}"
    );
    for (host, unit) in [(&hosts[0], "k3s"), (&hosts[1], "k3s-agent")] {
        let (version, active) = k3s_on(host, unit);
        assert!(
            version.contains(OLD) && active == "active",
            "{}: {version} {active}",
            host.name
        );
    }
    assert!(!env.root.join("clusters/default/upgrade.json").exists());
    let out = env.run(&run_refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
