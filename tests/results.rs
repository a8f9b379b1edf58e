//! `--format json` of the commands that change hosts (issue 17): one result
//! object on stdout, per host what changed, what failed (step and message)
//! and the bytes sent; progress on stderr; the exit code says whether it worked.

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;
use crate::run::ssh_flags;

fn json_run(env: &Env, hosts: &TestHosts) -> (std::process::Output, serde_json::Value) {
    let mut args: Vec<String> = [
        "run",
        "k0s-cluster:1",
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &hosts[1].ip,
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(ssh_flags(hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// The entry of `ip` in the result's hosts; there is exactly one.
fn entry<'a>(json: &'a serde_json::Value, ip: &str) -> &'a serde_json::Value {
    let all: Vec<&serde_json::Value> = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["host"] == ip)
        .collect();
    assert_eq!(all.len(), 1, "{json:#}");
    all[0]
}

#[test]
fn run_format_json_names_each_host_and_a_failed_one_with_its_step_and_message() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k0s", "k0s");
    env.ok(&["build", "-q", "--no-images", "-t", "k0s-cluster:1", &dir]);
    // The stand-in's fixture feature: `k0s` fails on the worker while this names it.
    std::fs::write(hosts[1].root().join("etc/sealrs-standin-fail"), "k0s\n").unwrap();

    let (out, json) = json_run(&env, &hosts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{json:#}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("sending layers"),
        "progress on stderr: {stderr}"
    );
    assert_eq!(json["command"], "run");
    assert_eq!(json["cluster"], "default");
    assert_eq!(json["ok"], false);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 2, "{json:#}");
    let master = entry(&json, &hosts[0].ip);
    assert!(master["failed"].is_null(), "{json:#}");
    assert_eq!(master["changed"], true, "{json:#}");
    assert!(master["bytesSent"].as_u64().unwrap() > 0, "{json:#}");
    let worker = &entry(&json, &hosts[1].ip)["failed"];
    let step = worker["step"].as_str().unwrap_or_default();
    assert!(!step.is_empty(), "{json:#}");
    let message = worker["message"].as_str().unwrap();
    assert!(
        message.contains(step) && message.contains("failure injected"),
        "{json:#}"
    );

    // Fixed, the same command: every host done, none failed.
    std::fs::remove_file(hosts[1].root().join("etc/sealrs-standin-fail")).unwrap();
    let (out, json) = json_run(&env, &hosts);
    assert!(out.status.success(), "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 2, "{json:#}");
    for host in [&hosts[0], &hosts[1]] {
        let e = entry(&json, &host.ip);
        assert!(e["failed"].is_null(), "{json:#}");
        assert!(e["bytesSent"].is_u64(), "{json:#}");
    }
    assert_eq!(entry(&json, &hosts[1].ip)["changed"], true, "{json:#}");

    // reset --force with the worker down: done, the worker named as not reset.
    hosts.stop(1);
    let mut args: Vec<String> = ["reset", "--yes", "--force", "--format", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(out.status.success(), "{json:#}");
    assert_eq!(json["command"], "reset");
    assert_eq!(json["ok"], true);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 2, "{json:#}");
    assert!(entry(&json, &hosts[0].ip)["failed"].is_null(), "{json:#}");
    assert_eq!(entry(&json, &hosts[0].ip)["changed"], true, "{json:#}");
    let skipped = entry(&json, &hosts[1].ip)["failed"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(skipped.contains("not reset (unreachable)"), "{json:#}");
}
