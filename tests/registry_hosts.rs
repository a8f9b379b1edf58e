//! Images that are only in a registry (issue 22): `sealrs run REGISTRY/REPO:TAG`
//! checks the cluster against the image's manifest and config before any
//! layer moves, and an image in neither the store nor a registry is an error
//! naming both. Against the real docker-registry, on real hosts for the run.

use crate::common::{with_stdin, Env};
use crate::registry_server::{Options, Registry, PASSWORD, USER};

/// Builds the k3s example as `name`, pushes it with `flags` and removes it
/// from the store: the registry is the only place that has it.
pub(crate) fn push_only(env: &Env, name: &str, build_flags: &[&str], flags: &[&str]) {
    push_only_with(env, name, build_flags, flags, 0, &[]);
}

/// [`push_only`], the image carrying `payload` incompressible bytes more
/// in a layer of their own (a stand-in for k3s's binary and airgap images)
/// and `files` (path in the context, text).
fn push_only_with(
    env: &Env,
    name: &str,
    build_flags: &[&str],
    flags: &[&str],
    payload: usize,
    files: &[(&str, &str)],
) {
    let dir = crate::layout::example(env, "k3s", "k3s");
    for (path, text) in files {
        let mode = if text.starts_with("#!") { 0o755 } else { 0o644 };
        env.write_mode(&format!("{dir}/{path}"), text, mode);
    }
    if payload > 0 {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..payload)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        env.write(&format!("{dir}/payload/data.bin"), bytes);
    }
    // Each new top directory is copied into the image.
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    let tops = files.iter().filter_map(|(path, _)| path.split_once('/'));
    let payload = (payload > 0).then_some("payload");
    for top in tops.map(|(top, _)| top).chain(payload) {
        let copy = format!("COPY {top} ./{top}\n");
        if !text.contains(&copy) {
            text.push_str(&copy);
        }
    }
    std::fs::write(kubefile, text).unwrap();
    let mut build = vec!["build", "-q", "--no-images", "-t", name];
    build.extend(build_flags);
    build.push(&dir);
    env.ok(&build);
    let mut push = vec!["push", "-q", name];
    push.extend(flags);
    env.ok(&push);
    env.ok(&["rmi", name]);
    // Its blobs too: what a run keeps in the store, it brought there.
    env.ok(&["prune"]);
    assert!(!env.ok(&["images"]).contains("k3s"), "still in the store");
}

/// The digests of the blobs in `env`'s store.
fn stored_blobs(env: &Env) -> Vec<String> {
    let dir = env.layout().join("blobs/sha256");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// The blob digests `ip` asked `repo` of the registry for, in order.
fn blob_gets_from(reg: &Registry, repo: &str, ip: &str) -> Vec<String> {
    let from = format!("{ip} - - ");
    let get = format!("\"GET /v2/{repo}/blobs/");
    reg.log()
        .lines()
        .filter(|l| l.starts_with(&from))
        .filter_map(|l| l.split_once(&get))
        .map(|(_, rest)| rest.split([' ', '?']).next().unwrap().to_string())
        .collect()
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
    // The registry is this machine's loopback: hosts do not try it.
    assert!(!stderr.contains("cannot pull its layers"), "{stderr}");
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

#[test]
fn a_dry_run_of_an_image_only_in_a_registry_renders_its_templates_and_keeps_no_blob() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/edge/k3s:1", reg.host());
    let template = [("manifests/info.yaml.tmpl", INFO_TMPL)];
    push_only_with(&env, &name, &[], &[], 0, &template);
    let out = env.ok(&[
        "run",
        "--dry-run",
        &name,
        "--masters",
        "192.0.2.10",
        "-e",
        "INFO_FROM=a-dry-run",
    ]);
    assert!(
        out.contains("manifests/info.yaml") && out.contains("from: a-dry-run"),
        "{out}"
    );
    assert_eq!(stored_blobs(&env), Vec::<String>::new());
}

#[test]
fn a_template_layer_the_registry_serves_wrong_is_refused_by_a_dry_run_which_streams_it() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let name = format!("{}/edge/k3s:1", reg.host());
    let template = [("manifests/info.yaml.tmpl", INFO_TMPL)];
    push_only_with(&env, &name, &[], &[], 0, &template);
    // The layer that holds the template: one byte changed, same size.
    let (bad, ..) = layers(&stored_manifest(&reg, "edge/k3s", "1"))
        .into_iter()
        .find(|(digest, ..)| {
            let data = reg.blob_data(digest);
            let listed = crate::common::tool("tar", &["-tf", data.to_str().unwrap()]);
            String::from_utf8_lossy(&listed.stdout).contains("info.yaml.tmpl")
        })
        .expect("a layer holds the template");
    reg.damage_blob(&bad);

    // A dry run reaches no host, so it reads the templates from the
    // registry's layers itself (a run has its first host read them).
    let stderr = env.fails(&["run", &name, "--masters", "192.0.2.10", "--dry-run"]);
    assert!(
        stderr.contains(&format!("the registry served layer {bad} as"))
            && stderr.contains("not what its digest says")
            && stderr.contains("so no host was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains("connecting to"), "{stderr}");
    assert_eq!(stored_blobs(&env), Vec::<String>::new());
}

/// The operator side of the hosts' links, where they reach this machine.
pub(crate) fn operator_ip(hosts: &crate::hosts::TestHosts) -> String {
    let ip = &hosts[0].ip;
    format!("{}.1", &ip[..ip.rfind('.').unwrap()])
}

/// The manifest `repo:tag` has in the registry's storage.
fn stored_manifest(reg: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let link = reg.storage().join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
    ));
    let digest = std::fs::read_to_string(link).unwrap();
    serde_json::from_slice(&std::fs::read(reg.blob_data(digest.trim())).unwrap()).unwrap()
}

/// (digest, size) of each layer; the installer's is marked.
fn layers(manifest: &serde_json::Value) -> Vec<(String, u64, bool)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let installer = l["annotations"]
                .get(sealrs::host_paths::INSTALLER_ANNOTATION)
                .is_some();
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
                installer,
            )
        })
        .collect()
}

/// `run --format json` of `name` on every host as masters[0] and nodes;
/// its exit status, the document and stderr.
fn run_json(
    env: &Env,
    hosts: &crate::hosts::TestHosts,
    name: &str,
    extra: &[&str],
) -> (bool, serde_json::Value, String) {
    run_json_on(env, hosts, hosts.len(), name, extra)
}

/// [`run_json`] on the first `count` hosts.
fn run_json_on(
    env: &Env,
    hosts: &crate::hosts::TestHosts,
    count: usize,
    name: &str,
    extra: &[&str],
) -> (bool, serde_json::Value, String) {
    let nodes: Vec<String> = (1..count).map(|i| hosts[i].ip.clone()).collect();
    let mut args = vec!["run", name, "--masters", &hosts[0].ip, "--format", "json"];
    let nodes = nodes.join(",");
    if !nodes.is_empty() {
        args.extend(["--nodes", &nodes]);
    }
    args.extend(extra);
    let out = crate::run::on_hosts(env, hosts, &args, false);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}):\n{stderr}"));
    (out.status.success(), doc, stderr)
}

fn bytes_sent(doc: &serde_json::Value, ip: &str) -> u64 {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == ip)
        .unwrap_or_else(|| panic!("no host {ip} in {doc:#}"))["bytesSent"]
        .as_u64()
        .unwrap()
}

/// `n` test hosts, the real registry over TLS where they reach it (no
/// auth), an operator of its own, and the registry's CA (a `--cert-dir`).
fn tls_route(n: usize) -> (crate::hosts::TestHosts, Registry, Env, String) {
    let hosts = crate::hosts::TestHosts::boot(n);
    let reg = tls_registry(&hosts, false);
    let cert_dir = reg.cert_dir().to_str().unwrap().to_string();
    (hosts, reg, Env::new(), cert_dir)
}

/// The real registry over TLS (with htpasswd when `auth`) where `hosts`
/// reach it: the operator side of their links.
fn tls_registry(hosts: &crate::hosts::TestHosts, auth: bool) -> Registry {
    Registry::start_on(Options { tls: true, auth }, &operator_ip(hosts))
}

/// A template the k3s example carries in `manifests/`, rendered with `-e`.
const INFO_TMPL: &str = "kind: ConfigMap\ndata:\n  from: {{ .INFO_FROM }}\n";

/// The rendered template in the rootfs `host` unpacked.
fn rendered_info(host: &crate::hosts::Host) -> String {
    let dir = sealrs::host_paths::HOST_DIR;
    host.exec_ok(&[
        "sh",
        "-c",
        &format!("cat {dir}/rootfs/*/manifests/info.yaml"),
    ])
}

#[test]
fn hosts_pull_the_layers_from_the_registry_and_the_operator_keeps_and_sends_only_the_installer() {
    let (hosts, reg, env, cert_dir) = tls_route(5);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let name = format!("{}/edge/k3s:1", reg.host());
    let template = [("manifests/info.yaml.tmpl", INFO_TMPL)];
    push_only_with(&env, &name, &[], &flags, 32 << 20, &template);
    let layers = layers(&stored_manifest(&reg, "edge/k3s", "1"));
    let installer: u64 = layers.iter().filter(|l| l.2).map(|l| l.1).sum();
    let image: u64 = layers.iter().map(|l| l.1).sum();
    assert!(installer > 0 && layers.len() > 1, "{layers:?}");
    // An operator that never saw the image: it knows no layer's paths.
    std::fs::remove_dir_all(env.root.join("cache/layer-paths")).unwrap();
    // Four hosts run it; the fifth is added after.
    let running = &hosts.hosts()[..4];
    let mut extra = vec!["-e", "INFO_FROM=the-registry"];
    extra.extend(flags);
    let (ok, doc, stderr) = run_json_on(&env, &hosts, 4, &name, &extra);
    assert!(ok, "{doc:#}\n{stderr}");
    // The operator's store holds the installer layer, and no other.
    let kept = stored_blobs(&env);
    for (digest, _, is_installer) in &layers {
        assert_eq!(kept.contains(digest), *is_installer, "{digest}: {kept:?}");
    }
    for host in running {
        assert_eq!(
            bytes_sent(&doc, &host.ip),
            installer,
            "{}: {stderr}",
            host.ip
        );
        assert!(
            stderr.contains(&format!(
                "{}: {} of {} layers pulled from the registry",
                host.ip,
                layers.len() - 1,
                layers.len()
            )),
            "{stderr}"
        );
    }
    // Each host pulled each layer but the installer's, once.
    for host in running {
        let from = format!("{} - - ", host.ip);
        let pulled = reg
            .log()
            .lines()
            .filter(|l| l.starts_with(&from) && l.contains("\"GET /v2/edge/k3s/blobs/"))
            .count();
        assert_eq!(pulled, layers.len() - 1, "{}: {}", host.ip, reg.log());
    }
    assert_eq!(
        hosts[0]
            .exec_ok(&["systemctl", "is-active", "k3s.service"])
            .trim(),
        "active"
    );
    // The operator read no layer but the installer's: the template came from
    // the layers the first host that had them pulled, rendered for each host.
    let operator = operator_ip(&hosts);
    let installer_digest = &layers.iter().find(|l| l.2).unwrap().0;
    let layer_gets: Vec<String> = blob_gets_from(&reg, "edge/k3s", &operator)
        .into_iter()
        .filter(|d| layers.iter().any(|l| &l.0 == d))
        .collect();
    assert_eq!(layer_gets, std::slice::from_ref(installer_digest));
    assert!(
        stderr.contains("read 1 file of image ") && stderr.contains("from its layers"),
        "{stderr}"
    );
    for host in running {
        assert!(
            rendered_info(host).contains("from: the-registry"),
            "{}: {stderr}",
            host.ip
        );
    }
    eprintln!(
        "figures: {} hosts, image {image} bytes, installer {installer} bytes; operator sent {} bytes in all (the direct route would send hosts x image = {} bytes)",
        running.len(),
        running.len() as u64 * installer,
        running.len() as u64 * image
    );
    // The same run again: the files made from a host's layers let each
    // host's installer probe it, and nothing is left to change.
    let (ok, doc, again) = run_json_on(&env, &hosts, 4, &name, &extra);
    assert!(ok, "{doc:#}\n{again}");
    assert!(
        again.contains("4 hosts: their installers found nothing to change"),
        "{again}"
    );
    assert!(rendered_info(&hosts[3]).contains("from: the-registry"));

    // `add` of a node: it pulls from the registry too. Its dry run, which
    // reaches no host, streams the layers that may hold a template: every
    // layer but the installer's (the operator has it), never kept, and
    // lists their paths as they pass, so the next dry run reads only one.
    let node = hosts[4].ip.clone();
    let mut dry = vec!["add", "--dry-run", "--nodes", &node];
    dry.extend(flags);
    for streamed in [layers.len() - 1, 1] {
        let before = blob_gets_from(&reg, "edge/k3s", &operator).len();
        env.ok(&dry);
        assert_eq!(
            blob_gets_from(&reg, "edge/k3s", &operator).len(),
            before + streamed
        );
    }
    let before = blob_gets_from(&reg, "edge/k3s", &operator).len();
    let mut add = vec!["add", "--nodes", &node];
    add.extend(flags);
    let out = crate::run::on_hosts(&env, &hosts, &add, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{node}: {} of {} layers pulled from the registry",
            layers.len() - 1,
            layers.len()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{node}: installer in place")),
        "{stderr}"
    );
    // The add itself read no layer: a host did.
    let read = blob_gets_from(&reg, "edge/k3s", &operator)[before..].to_vec();
    assert_eq!(read, Vec::<String>::new(), "{stderr}");
    assert!(rendered_info(&hosts[4]).contains("from: the-registry"));
    assert_eq!(stored_blobs(&env).len(), kept.len(), "{stderr}");
    assert_eq!(
        hosts[4]
            .exec_ok(&["systemctl", "is-active", "k3s-agent.service"])
            .trim(),
        "active"
    );
}

#[test]
fn a_template_that_fails_in_an_image_only_in_a_registry_is_named_from_a_hosts_layers_before_any_host_changes(
) {
    let (hosts, reg, env, cert_dir) = tls_route(2);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let name = format!("{}/edge/k3s:1", reg.host());
    let templates = [
        ("manifests/info.yaml.tmpl", INFO_TMPL),
        ("etc/broken.yaml.tmpl", "a: 1\nb: {{ if }}\n"),
    ];
    push_only_with(&env, &name, &[], &flags, 0, &templates);
    let mut extra = vec!["-e", "INFO_FROM=x"];
    extra.extend(flags);
    let (ok, doc, stderr) = run_json_on(&env, &hosts, 2, &name, &extra);
    assert!(!ok, "{doc:#}\n{stderr}");
    // Read from the layers the hosts pulled (the operator read none), every
    // host's problem at once, before any host was verified or changed.
    assert!(
        stderr.contains("from its layers") && stderr.contains("etc/broken.yaml.tmpl:2"),
        "{stderr}"
    );
    assert!(!stderr.contains("k3s install"), "{stderr}");
    for host in hosts.hosts() {
        assert!(!host
            .exec(&["systemctl", "is-active", "k3s.service"])
            .status
            .success());
        assert!(!host
            .exec(&["test", "-e", "/usr/local/bin/k3s"])
            .status
            .success());
    }
}

#[test]
fn a_blob_corrupted_in_the_registry_is_refused_by_the_hosts_with_nothing_placed() {
    let (hosts, reg, env, cert_dir) = tls_route(2);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let name = format!("{}/edge/k3s:1", reg.host());
    let dir = crate::layout::example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", &name, &dir]);
    let mut push = vec!["push", "-q", name.as_str()];
    push.extend(flags);
    env.ok(&push);
    // The largest layer that is not the installer's: one byte changed, same size.
    let layers = layers(&stored_manifest(&reg, "edge/k3s", "1"));
    let (bad, ..) = layers
        .iter()
        .filter(|l| !l.2)
        .max_by_key(|l| l.1)
        .unwrap()
        .clone();
    reg.damage_blob(&bad);

    let mut extra = vec!["--layers-from-registry"];
    extra.extend(flags);
    let (ok, doc, stderr) = run_json(&env, &hosts, &name, &extra);
    assert!(!ok, "{doc:#}\n{stderr}");
    let hex = bad.trim_start_matches("sha256:");
    assert!(stderr.contains(hex), "{stderr}");
    // Each host hashed the blob as it came and withheld its end from the unpacker.
    assert!(
        stderr.contains("is corrupt: its content hashes to sha256:")
            && stderr.contains("refused before its last byte; nothing of it was kept"),
        "{stderr}"
    );
    for host in hosts.hosts() {
        let layer = format!("{}/{hex}", sealrs::host_paths::HOST_LAYERS);
        assert!(
            !host.exec(&["test", "-e", &layer]).status.success(),
            "{}: {layer} placed",
            host.ip
        );
        let rootfs = host.exec(&[
            "sh",
            "-c",
            &format!("ls -A {}/rootfs 2>/dev/null", sealrs::host_paths::HOST_DIR),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&rootfs.stdout).trim(),
            "",
            "{}: a rootfs was made",
            host.ip
        );
        assert!(!host
            .exec(&["systemctl", "is-active", "k3s.service"])
            .status
            .success());
    }
}

/// Refuses `host`'s connections to `reg`'s port; SSH, the operator's own
/// server and other registries still work.
pub(crate) fn cut_off(host: &crate::hosts::Host, reg: &Registry) {
    host.exec_ok(&[
        "ip",
        "rule",
        "add",
        "ipproto",
        "6",
        "dport",
        &reg.port.to_string(),
        "prohibit",
    ]);
}

#[test]
fn a_host_that_cannot_reach_the_registry_gets_its_layers_from_the_operator_and_the_run_says_so() {
    let (hosts, reg, env, cert_dir) = tls_route(2);
    cut_off(&hosts[1], &reg);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let name = format!("{}/edge/k3s:1", reg.host());
    push_only(&env, &name, &[], &flags);
    let layers = layers(&stored_manifest(&reg, "edge/k3s", "1"));
    let image: u64 = layers.iter().map(|l| l.1).sum();
    let installer: u64 = layers.iter().filter(|l| l.2).map(|l| l.1).sum();

    let (ok, doc, stderr) = run_json(&env, &hosts, &name, &flags);
    assert!(ok, "{doc:#}\n{stderr}");
    assert_eq!(bytes_sent(&doc, &hosts[0].ip), installer, "{stderr}");
    assert_eq!(bytes_sent(&doc, &hosts[1].ip), image, "{stderr}");
    // For that host, and only then, the operator pulled the layers into its store.
    let kept = stored_blobs(&env);
    assert!(
        layers.iter().all(|(digest, ..)| kept.contains(digest)),
        "{kept:?}"
    );
    assert!(
        stderr.contains(&format!(
            "{}: cannot pull its layers from registry {}",
            hosts[1].ip,
            reg.host()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}: {} of {} layers sent directly",
            hosts[1].ip,
            layers.len() - 1,
            layers.len()
        )),
        "{stderr}"
    );
    assert_eq!(
        hosts[1]
            .exec_ok(&["systemctl", "is-active", "k3s-agent.service"])
            .trim(),
        "active"
    );
}

#[test]
fn basic_auth_credentials_reach_hosts_only_when_allowed_and_only_on_stdin() {
    let hosts = crate::hosts::TestHosts::boot(2);
    let reg = tls_registry(&hosts, true);
    let env = Env::new();
    let auth = env.path("auth.json");
    let cert_dir = reg.cert_dir();
    let flags = [
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--authfile",
        auth.to_str().unwrap(),
    ];
    let host = reg.host();
    let mut login = vec!["login", "-u", USER, "--password-stdin"];
    login.extend(flags);
    login.push(&host);
    let out = with_stdin(env.cmd(&login), format!("{PASSWORD}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("{}/private/k3s:1", reg.host());
    push_only(&env, &name, &[], &flags);

    // Without leave, the host is refused by the registry and the operator
    // sends the layers.
    let mut first = vec!["run", &name, "--cluster", "a", "--masters", &hosts[0].ip];
    first.extend(flags);
    let out = crate::run::on_hosts(&env, &hosts, &first, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: cannot pull its layers from registry {}",
            hosts[0].ip,
            reg.host()
        )) && stderr.contains("401"),
        "{stderr}"
    );

    // With it, the host pulls with them, and keeps them nowhere.
    let mut second = vec![
        "run",
        &name,
        "--cluster",
        "b",
        "--masters",
        &hosts[1].ip,
        "--registry-credentials-to-hosts",
        // In the store since the first run: asked for.
        "--layers-from-registry",
    ];
    second.extend(flags);
    let out = crate::run::on_hosts(&env, &hosts, &second, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{}: ", hosts[1].ip))
                && l.contains("layers pulled from the registry")),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    for dir in ["/tmp", "/var/lib/sealrs", "/etc", "/root"] {
        let found = hosts[1].exec(&["grep", "-rlF", PASSWORD, dir]);
        assert!(
            String::from_utf8_lossy(&found.stdout).trim().is_empty(),
            "the password is in {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
    let left = hosts[1].exec_ok(&["sh", "-c", "ls -d /tmp/sealrs-certs-* 2>/dev/null || true"]);
    assert_eq!(left.trim(), "", "the run's CA directory was left");
    // The journal holds no password either.
    let journal = hosts[1].exec(&["journalctl", "--no-pager", "-q"]);
    assert!(!String::from_utf8_lossy(&journal.stdout).contains(PASSWORD));
}

#[test]
fn an_upgrade_to_an_image_only_in_the_registry_sends_hosts_no_layer_not_even_the_installer() {
    let (hosts, reg, env, cert_dir) = tls_route(2);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let v1 = format!("{}/edge/k3s:1", reg.host());
    push_only(&env, &v1, &[], &flags);
    let (ok, doc, stderr) = run_json(&env, &hosts, &v1, &flags);
    assert!(ok, "{doc:#}\n{stderr}");

    let v2 = format!("{}/edge/k3s:2", reg.host());
    let dir = crate::layout::example(&env, "k3s", "k3s-2");
    crate::layout::standin_version(&env, &dir, "v1.30.3+k3s1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        "VERSION=v1.30.3+k3s1",
        "-t",
        &v2,
        &dir,
    ]);
    let mut push = vec!["push", "-q", v2.as_str()];
    push.extend(flags);
    env.ok(&push);
    env.ok(&["rmi", &v2]);
    let v1_layers = layers(&stored_manifest(&reg, "edge/k3s", "1"));
    let v2_layers = layers(&stored_manifest(&reg, "edge/k3s", "2"));
    let installer = |l: &[(String, u64, bool)]| l.iter().find(|l| l.2).unwrap().0.clone();
    assert_eq!(
        installer(&v1_layers),
        installer(&v2_layers),
        "the same installer layer"
    );

    let mut upgrade = vec!["upgrade", v2.as_str(), "--format", "json"];
    upgrade.extend(flags);
    let out = crate::run::on_hosts(&env, &hosts, &upgrade, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Hosts hold that installer already: it is not sent again.
    assert!(!stderr.contains("installer in place"), "{stderr}");
    for host in hosts.hosts() {
        assert_eq!(bytes_sent(&doc, &host.ip), 0, "{doc:#}\n{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{}: ", host.ip))
                    && l.contains("layers pulled from the registry")),
            "{stderr}"
        );
    }
}

/// An init-registry hook (first master, after every host has its layers)
/// that says it started, then waits until the test lets it go on.
const PAUSE: [(&str, &str); 1] = [(
    "scripts/pause.sh",
    "#!/bin/sh\ntouch /etc/sealrs-paused\nuntil test -e /etc/sealrs-go; do sleep 0.1; done\n",
)];

#[test]
fn a_prune_during_a_run_whose_host_fell_back_fails_and_keeps_the_blobs_the_run_pulled() {
    let (hosts, reg, env, cert_dir) = tls_route(2);
    cut_off(&hosts[1], &reg);
    let flags = ["--cert-dir", cert_dir.as_str()];
    let name = format!("{}/edge/k3s:1", reg.host());
    let hook = ["--label", "sealrs.io/init-registry=sh pause.sh"];
    push_only_with(&env, &name, &hook, &flags, 0, &PAUSE);
    let layers = layers(&stored_manifest(&reg, "edge/k3s", "1"));

    let mut args: Vec<String> = [
        "run",
        &name,
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &hosts[1].ip,
    ]
    .iter()
    .chain(&flags)
    .map(|s| s.to_string())
    .collect();
    args.extend(crate::run::ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = crate::interrupt::Running::start(env.cmd(&refs));
    let paused = hosts[0].root().join("etc/sealrs-paused");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !paused.exists() {
        if run.child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            let (status, stderr) = run.finish();
            panic!("the hook never ran; the run ({status}) said:\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Every layer is in the store for the host that fell back, untagged.
    let pulled = stored_blobs(&env);
    assert!(
        layers.iter().all(|(digest, ..)| pulled.contains(digest)),
        "{pulled:?}"
    );
    let refused = env.fails(&["prune"]);
    assert!(
        refused.contains("the store is busy: a build, load, pull, or run of an image from a registry is writing to the store"),
        "{refused}"
    );
    assert_eq!(
        stored_blobs(&env).len(),
        pulled.len(),
        "prune removed blobs"
    );

    std::fs::write(hosts[0].root().join("etc/sealrs-go"), "").unwrap();
    let (status, stderr) = run.finish();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: cannot pull its layers from registry",
            hosts[1].ip
        )),
        "{stderr}"
    );
    // Once the run is over, nothing names them: prune may have them.
    let pruned = env.ok(&["prune"]);
    assert_eq!(stored_blobs(&env), Vec::<String>::new(), "{pruned}");
}
