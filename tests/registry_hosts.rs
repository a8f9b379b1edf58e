//! Images that are only in a registry (issue 22): `sealrs run REGISTRY/REPO:TAG`
//! checks the cluster against the image's manifest and config before any
//! layer moves, and an image in neither the store nor a registry is an error
//! naming both. Against the real docker-registry, on real hosts for the run.

use crate::common::{with_stdin, Env};
use crate::registry_server::{Options, Registry, PASSWORD, USER};

/// Builds the k3s example as `name`, pushes it with `flags` and removes it
/// from the store: the registry is the only place that has it.
fn push_only(env: &Env, name: &str, build_flags: &[&str], flags: &[&str]) {
    let dir = crate::layout::example(env, "k3s", "k3s");
    let mut build = vec!["build", "-q", "--no-images", "-t", name];
    build.extend(build_flags);
    build.push(&dir);
    env.ok(&build);
    let mut push = vec!["push", "-q", name];
    push.extend(flags);
    env.ok(&push);
    env.ok(&["rmi", name]);
    assert!(!env.ok(&["images"]).contains("k3s"), "still in the store");
}

/// Layer and config downloads from `repo` in the registry's access log.
fn blob_gets(reg: &Registry, repo: &str) -> usize {
    reg.requests(&format!("GET /v2/{repo}/blobs/"))
}

#[test]
fn run_with_an_image_only_in_a_tls_registry_with_auth_checks_it_then_applies_it() {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let env = Env::new();
    let auth = env.path("auth.json");
    let cert_dir = reg.cert_dir();
    let flags = [
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--authfile",
        auth.to_str().unwrap(),
    ];
    let mut login = vec!["login", "-u", USER, "--password-stdin"];
    login.extend(flags);
    let host = reg.host();
    login.push(&host);
    let out = with_stdin(env.cmd(&login), format!("{PASSWORD}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("{}/edge/k3s:1", reg.host());
    push_only(&env, &name, &[], &flags);

    let hosts = crate::hosts::TestHosts::boot(1);
    let stderr = crate::run::run_on(&env, &name, &hosts, &[0], &[], &flags);
    assert!(
        stderr.contains(&format!(
            "{name} is not in the local store: its manifest and config from {} fit cluster",
            reg.host()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    let k3s = hosts[0].exec_ok(&["systemctl", "is-active", "k3s.service"]);
    assert_eq!(k3s.trim(), "active");
}

#[test]
fn an_image_that_does_not_fit_is_refused_with_only_its_manifest_and_config_fetched() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/edge/bare:1", reg.host());
    push_only(&env, &name, &["--no-installer"], &[]);
    let before = blob_gets(&reg, "edge/bare");

    let stderr = env.fails(&["run", &name, "--masters", "192.0.2.10"]);
    assert!(stderr.contains("carries no installer layer"), "{stderr}");
    // The config, and no layer.
    assert_eq!(blob_gets(&reg, "edge/bare") - before, 1, "{}", reg.log());
    assert!(!env.ok(&["images"]).contains("bare"));
}

#[test]
fn an_image_in_neither_the_store_nor_its_registry_is_an_error_naming_both() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/edge/missing:1", reg.host());
    let stderr = env.fails(&["run", &name, "--masters", "192.0.2.10"]);
    assert!(
        stderr.contains(&format!("{name} is not in the local store"))
            && stderr.contains(&format!("its registry {} did not serve it", reg.host()))
            && stderr.contains("sealrs pull"),
        "{stderr}"
    );
    // A name without a registry is not looked for on Docker Hub.
    let stderr = env.fails(&["run", "nowhere:1", "--masters", "192.0.2.10"]);
    assert!(
        stderr.contains("docker.io/library/nowhere:1 is not in the local store")
            && stderr.contains("REGISTRY/REPO:TAG"),
        "{stderr}"
    );
}
