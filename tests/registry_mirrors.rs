//! Pull-through mirrors from containers-registries.conf(5) (issue 22): the
//! real docker-registry as the origin and a second one as its pull-through
//! cache (`proxy.remoteurl`). `sealrs pull` and the hosts of `sealrs run`
//! go through the cache, skopeo with the same file agrees, a mirror that is
//! down or serves wrong bytes is passed over for the origin by `pull`; on a
//! host, whose unpacker takes bytes as they come, a wrong blob from a mirror
//! fails the host, naming the mirror, with nothing placed.

use std::time::{Duration, Instant};

use crate::common::{tool, with_stdin, Env};
use crate::registry_hosts::{cut_off, operator_ip};
use crate::registry_server::{free_port, Options, Registry, PASSWORD, USER};

/// A registries.conf naming `mirrors` (host:port, in order) for `origin`,
/// all plain HTTP (`insecure = true`).
fn registries_conf(env: &Env, origin: &str, mirrors: &[&str]) -> String {
    let mut text = format!("[[registry]]\nlocation = \"{origin}\"\ninsecure = true\n");
    for m in mirrors {
        text += &format!("[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n");
    }
    env.write("registries.conf", text)
        .to_str()
        .unwrap()
        .to_string()
}

/// Builds a small image as `name`.
fn build_small(env: &Env, name: &str) {
    env.write(
        "ctx/Kubefile",
        "FROM scratch\nLABEL tier=base\nCOPY f /f\nCOPY g /g\n",
    );
    env.write("ctx/f", "through the mirror\n");
    env.write("ctx/g", vec![7u8; 300_000]);
    env.build(name, "ctx");
}

/// Builds a small image as `name` and pushes it; returns its manifest digest.
fn push_small(env: &Env, name: &str) -> String {
    build_small(env, name);
    env.ok(&["push", "-q", name]).trim().to_string()
}

/// The manifest of the image `name` in `env`'s store.
fn manifest(env: &Env, name: &str) -> serde_json::Value {
    let out = tool("skopeo", &["inspect", "--raw", &env.oci_ref(name)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The config and layer digests of the image `name` in `env`'s store.
fn blob_digests(env: &Env, name: &str) -> Vec<String> {
    let manifest = manifest(env, name);
    let mut out = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

/// Waits until every blob of `digests` is in `reg`'s storage: a
/// pull-through cache stores what it served in the background.
fn wait_for_blobs(reg: &Registry, digests: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let missing: Vec<&String> = digests
            .iter()
            .filter(|d| !reg.blob_data(d).is_file())
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cache's storage lacks {missing:?}:\n{}",
            reg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Access-log lines whose user agent is `agent`.
fn lines_by(reg: &Registry, agent: &str) -> usize {
    reg.log().lines().filter(|l| l.contains(agent)).count()
}

fn pull(env: &Env, name: &str, conf: &str) -> (String, String) {
    let out = env.run(&["pull", name, "--registries-conf", conf]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr,
    )
}

#[test]
fn pull_goes_through_a_pull_through_cache_and_skopeo_with_the_same_file_agrees() {
    let origin = Registry::start(Options::default());
    let cache = Registry::start_mirror_of(&origin, "127.0.0.1");
    let env = Env::new();
    let name = format!("{}/team/app:1", origin.host());
    let digest = push_small(&env, &name);
    let blobs = blob_digests(&env, &name);
    let conf = registries_conf(&env, &origin.host(), &[&cache.host()]);
    // The push's requests are in the origin's log under sealrs' user agent.
    let sealrs_at_origin = lines_by(&origin, "sealrs/");
    assert!(sealrs_at_origin > 0, "{}", origin.log());

    let fresh = Env::new();
    let (pulled, stderr) = pull(&fresh, &name, &conf);
    assert_eq!(pulled, digest);
    assert!(
        stderr.contains(&format!("through mirror {}", cache.host())),
        "{stderr}"
    );
    fresh.ok(&["fsck"]);
    // The cache holds every blob now, fetched from the origin by the cache
    // itself: sealrs never asked the origin.
    wait_for_blobs(&cache, &blobs);
    assert_eq!(
        lines_by(&origin, "sealrs/"),
        sealrs_at_origin,
        "{}",
        origin.log()
    );
    for b in &blobs {
        assert!(
            origin.requests(&format!("GET /v2/team/app/blobs/{b}")) >= 1,
            "the cache did not fetch {b} from the origin:\n{}",
            origin.log()
        );
    }
    for b in &blobs {
        assert!(
            cache.requests(&format!("GET /v2/team/app/blobs/{b}")) >= 1,
            "{}",
            cache.log()
        );
    }

    // skopeo (containers/image 5.23) given the same file (its hidden
    // global --registries-conf; 1.9 does not read the variable) goes to
    // the same cache.
    let before = cache.requests("GET /v2/team/app/manifests/1");
    let dir = fresh.path("skopeo-copy");
    tool(
        "skopeo",
        &[
            "--registries-conf",
            &conf,
            "copy",
            &format!("docker://{name}"),
            &format!("oci:{}:1", dir.display()),
        ],
    );
    assert!(
        cache.requests("GET /v2/team/app/manifests/1") > before,
        "skopeo did not ask the cache:\n{}",
        cache.log()
    );
    let copied = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:1", dir.display())],
    );
    assert_eq!(
        sealrs::digest::sha256_digest(&copied.stdout).to_string(),
        digest
    );
}

#[test]
fn a_mirror_that_is_down_is_passed_over_and_the_pull_names_the_origin() {
    let origin = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/team/app:1", origin.host());
    let digest = push_small(&env, &name);
    let down = format!("127.0.0.1:{}", free_port());
    let conf = registries_conf(&env, &origin.host(), &[&down]);

    // Named by the variable buildah and podman read, as an operator would.
    let fresh = Env::new();
    let out = fresh
        .cmd(&["pull", &name])
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    assert!(
        stderr.contains(&format!("mirror {down} could not be reached"))
            && stderr.contains("trying the next source"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("from the origin {}", origin.host())),
        "{stderr}"
    );
    fresh.ok(&["fsck"]);
}

#[test]
fn a_mirror_serving_a_wrong_blob_is_refused_and_that_blob_comes_from_the_origin() {
    let origin = Registry::start(Options::default());
    // A plain registry holding a copy whose largest layer is damaged.
    let bad = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/team/app:1", origin.host());
    let digest = push_small(&env, &name);
    env.ok(&["push", "-q", &name, &format!("{}/team/app:1", bad.host())]);
    let largest = manifest(&env, &name)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    bad.damage_blob(&largest);
    let conf = registries_conf(&env, &origin.host(), &[&bad.host()]);

    let fresh = Env::new();
    let (pulled, stderr) = pull(&fresh, &name, &conf);
    assert_eq!(pulled, digest);
    assert!(
        stderr.contains(&format!("mirror {} could not serve blob", bad.host()))
            && stderr.contains("is corrupt"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("mirror {} (", bad.host()))
            && stderr.contains(&format!("the origin {} (1 request)", origin.host())),
        "{stderr}"
    );
    assert_eq!(
        origin.requests(&format!("GET /v2/team/app/blobs/{largest}")),
        1,
        "{}",
        origin.log()
    );
    fresh.ok(&["fsck"]);
}

/// Blob GETs of `repo` in `reg`'s access log that came from `ip`.
fn blob_gets_from(reg: &Registry, repo: &str, ip: &str) -> usize {
    let from = format!("{ip} - - ");
    let needle = format!("\"GET /v2/{repo}/blobs/");
    reg.log()
        .lines()
        .filter(|l| l.starts_with(&from) && l.contains(&needle))
        .count()
}

#[test]
fn hosts_pull_their_layers_through_the_mirror_and_one_cut_off_from_it_from_the_origin() {
    let hosts = crate::hosts::TestHosts::boot(2);
    let operator = operator_ip(&hosts);
    let origin = Registry::start_on(Options::default(), &operator);
    let cache = Registry::start_mirror_of(&origin, &operator);
    // The worker's connections to the cache are refused; the origin and
    // SSH still work.
    cut_off(&hosts[1], &cache);
    let env = Env::new();
    let name = format!("{}/edge/k3s:1", origin.host());
    let dir = crate::layout::example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", &name, &dir]);
    env.ok(&["push", "-q", "--tls-verify=false", &name]);
    let layers = manifest(&env, &name)["layers"].as_array().unwrap().len();
    env.ok(&["rmi", &name]);
    let conf = registries_conf(&env, &origin.host(), &[&cache.host()]);

    let args = [
        "run",
        &name,
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &hosts[1].ip,
        "--registries-conf",
        &conf,
        "--format",
        "json",
    ];
    let out = crate::run::on_hosts(&env, &hosts, &args, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for host in hosts.hosts() {
        assert!(
            stderr.contains(&format!(
                "{}: {} of {layers} layers pulled from the registry",
                host.ip,
                layers - 1
            )),
            "{stderr}"
        );
    }
    // The master pulled every layer but the installer's through the cache
    // and none from the origin; the worker, cut off from the cache, from
    // the origin.
    let repo = "edge/k3s";
    assert_eq!(
        blob_gets_from(&cache, repo, &hosts[0].ip),
        layers - 1,
        "{}",
        cache.log()
    );
    assert_eq!(
        blob_gets_from(&origin, repo, &hosts[0].ip),
        0,
        "{}",
        origin.log()
    );
    assert_eq!(
        blob_gets_from(&cache, repo, &hosts[1].ip),
        0,
        "{}",
        cache.log()
    );
    assert_eq!(
        blob_gets_from(&origin, repo, &hosts[1].ip),
        layers - 1,
        "{}",
        origin.log()
    );
    assert_eq!(
        hosts[1]
            .exec_ok(&["systemctl", "is-active", "k3s-agent.service"])
            .trim(),
        "active"
    );
}

#[test]
fn a_mirror_serving_hosts_a_wrong_blob_fails_them_naming_the_mirror_with_nothing_placed() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let operator = operator_ip(&hosts);
    let origin = Registry::start_on(Options::default(), &operator);
    // A plain registry holding a copy whose largest layer is damaged after
    // the operator pulled it: the operator's store is right, hosts pull
    // from the mirror.
    let bad = Registry::start_on(Options::default(), &operator);
    let env = Env::new();
    let name = format!("{}/edge/k3s:1", origin.host());
    let dir = crate::layout::example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", &name, &dir]);
    env.ok(&["push", "-q", "--tls-verify=false", &name]);
    let copy = format!("{}/edge/k3s:1", bad.host());
    env.ok(&["push", "-q", "--tls-verify=false", &name, &copy]);
    let largest = manifest(&env, &name)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["annotations"]
                .get(sealrs::host_paths::INSTALLER_ANNOTATION)
                .is_none()
        })
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    bad.damage_blob(&largest);
    let conf = registries_conf(&env, &origin.host(), &[&bad.host()]);

    let args = [
        "run",
        &name,
        "--masters",
        &hosts[0].ip,
        "--layers-from-registry",
        "--registries-conf",
        &conf,
    ];
    let out = crate::run::on_hosts(&env, &hosts, &args, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let hex = largest.trim_start_matches("sha256:");
    assert!(
        stderr.contains(hex) && stderr.contains(&format!("through mirror {}", bad.host())),
        "{stderr}"
    );
    let layer = format!("{}/{hex}", sealrs::host_paths::HOST_LAYERS);
    assert!(!hosts[0].exec(&["test", "-e", &layer]).status.success());
    assert!(!hosts[0]
        .exec(&["systemctl", "is-active", "k3s.service"])
        .status
        .success());
}

#[test]
fn push_and_login_take_insecure_from_registries_conf_as_skopeo_does() {
    // Plain HTTP away from loopback: the operator side of a host's link.
    let hosts = crate::hosts::TestHosts::boot(1);
    let plain = Registry::start_on(Options::default(), &operator_ip(&hosts));
    let env = Env::new();
    let name = format!("{}/team/app:1", plain.host());
    build_small(&env, &name);
    let refused = env.fails(&["push", "-q", &name]);
    assert!(
        refused.contains(&format!(
            "registry {} answers in plain HTTP, not TLS",
            plain.host()
        )) && refused.contains("insecure = true"),
        "{refused}"
    );
    assert_eq!(plain.requests("PUT /v2/team/app/manifests/1"), 0);

    // The file's entry alone (named as buildah and podman read it) lets
    // the push use plain HTTP; a mirror it lists is for pulls only.
    let down = format!("127.0.0.1:{}", free_port());
    let conf = registries_conf(&env, &plain.host(), &[&down]);
    let out = env
        .cmd(&["push", "-q", &name])
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(plain.requests("PUT /v2/team/app/manifests/1"), 1);
    // skopeo with the same file reads what was pushed.
    let raw = tool(
        "skopeo",
        &[
            "--registries-conf",
            &conf,
            "inspect",
            "--raw",
            &format!("docker://{name}"),
        ],
    );
    assert_eq!(
        sealrs::digest::sha256_digest(&raw.stdout).to_string(),
        digest
    );

    // A login at a registry whose certificate this machine does not trust.
    let tls = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let auth = env.path("auth.json");
    let login = |conf: Option<&str>| {
        let mut args = vec!["login", "-u", USER, "--password-stdin", "--authfile"];
        args.push(auth.to_str().unwrap());
        if let Some(conf) = conf {
            args.extend(["--registries-conf", conf]);
        }
        let host = tls.host();
        args.push(&host);
        let out = with_stdin(env.cmd(&args), format!("{PASSWORD}\n").as_bytes());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = login(None);
    assert!(!ok && stderr.contains("certificate"), "{stderr}");
    assert!(!auth.exists(), "a refused login wrote the auth file");
    let conf = registries_conf(&env, &tls.host(), &[]);
    let (ok, stderr) = login(Some(&conf));
    assert!(ok, "{stderr}");
    assert!(std::fs::read_to_string(&auth)
        .unwrap()
        .contains(&tls.host()));
}

#[test]
fn a_run_says_once_which_mirror_it_passed_over_for_the_manifest_and_config_and_why() {
    let origin = Registry::start(Options::default());
    // A registry that lacks the image, and one that is not there at all.
    let empty = Registry::start(Options::default());
    let down = format!("127.0.0.1:{}", free_port());
    let env = Env::new();
    let name = format!("{}/edge/k3s:1", origin.host());
    crate::registry_hosts::push_only(&env, &name, &[], &[]);
    let conf = registries_conf(&env, &origin.host(), &[&down, &empty.host()]);
    let out = env.run(&[
        "run",
        "--dry-run",
        &name,
        "--masters",
        "192.0.2.10",
        "--registries-conf",
        &conf,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let naming = |mirror: &str| -> Vec<&str> {
        stderr
            .lines()
            .filter(|l| l.contains(&format!("mirror {mirror} ")))
            .collect()
    };
    let down_lines = naming(&down);
    assert!(
        down_lines.len() == 1
            && down_lines[0].contains("could not be reached")
            && down_lines[0].ends_with("trying the next source"),
        "{stderr}"
    );
    let empty_lines = naming(&empty.host());
    assert!(
        empty_lines.len() == 1
            && empty_lines[0].contains("could not serve the manifest")
            && empty_lines[0].contains("404"),
        "{stderr}"
    );
    // The origin served both.
    assert_eq!(
        origin.requests("GET /v2/edge/k3s/manifests/1"),
        1,
        "{}",
        origin.log()
    );
}
