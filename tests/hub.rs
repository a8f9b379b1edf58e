//! The in-cluster registry `sealos.hub:5000` on real hosts: the real
//! `docker-registry` (as the image's `bin/registry`) serves the image's
//! `registry/` tree from the first master, and the real containerd of a
//! worker pulls an image by its original name through it, with no other
//! registry reachable; reset removes it all; a broken blob is refused before
//! any host changes; k3s nodes get the mirror in their registries.yaml, k0s
//! nodes a containerd drop-in that reads the hosts files; a
//! host with sealos' `registry` role serves instead of the first master.

use crate::common::{tool, Env};
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::registry_server::{Options, Registry};
use crate::run::{on_hosts, run_on};
use crate::run_hosts::kubeadm_context;

/// The image the tree holds, by the name pods would use.
const ORIGINAL: &str = "docker.io/sealrs/hubtest:1";
/// Its repository and tag in the tree (registries store it without the host).
const REPOSITORY: &str = "sealrs/hubtest";

/// Pushes a one-file scratch image as `repository:1` into a real
/// docker-registry and copies the registry's storage into `dir/registry/`,
/// the layout `sealos build` harvests. Returns the path of its layer's
/// blob in the tree.
fn registry_tree(env: &Env, dir: &str, repository: &str) -> String {
    let registry = Registry::start(Options::default());
    let src = format!("src-{}", repository.replace('/', "-"));
    env.write(
        &format!("{src}/Kubefile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    );
    env.write(
        &format!("{src}/hello.txt"),
        format!("{repository} served by sealos.hub\n"),
    );
    let pushed = format!("{}/{repository}:1", registry.host());
    env.build(&pushed, &src);
    let digest = env.ok(&["push", "-q", &pushed]).trim().to_string();
    let tree = env.path(&format!("{dir}/registry"));
    std::fs::create_dir_all(&tree).unwrap();
    tool(
        "cp",
        &[
            "-a",
            registry.storage().join("docker").to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    let blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        format!(
            "registry/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        )
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path(&format!("{dir}/{}", blob(&digest)))).unwrap(),
    )
    .unwrap();
    blob(manifest["layers"][0]["digest"].as_str().unwrap())
}

/// The registry binary the image carries: Debian's docker-registry.
fn add_registry_binary(env: &Env, dir: &str) {
    std::fs::copy(
        "/usr/bin/docker-registry",
        env.path(&format!("{dir}/bin/registry")),
    )
    .expect("docker-registry is installed");
}

/// The list that names the image by its original name, and the Kubefile
/// line that copies the tree.
fn add_list_and_copy(env: &Env, dir: &str) {
    env.write(
        &format!("{dir}/images/shim/hub-images"),
        format!("{ORIGINAL}\n"),
    );
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str("COPY registry ./registry\n");
    std::fs::write(kubefile, text).unwrap();
}

/// The kubeadm image of the host tests (real containerd, ctr, runc) with a
/// registry tree holding [`ORIGINAL`], the registry binary and a list
/// naming it; with `corrupt`, one byte appended to the image's layer blob.
/// Returns the tag and the layer blob's path in the rootfs.
fn build_kubeadm_with_tree(env: &Env, corrupt: bool) -> (String, String) {
    let dir = kubeadm_context(env, true);
    let layer = registry_tree(env, &dir, REPOSITORY);
    if corrupt {
        let path = env.path(&format!("{dir}/{layer}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(b'!');
        std::fs::write(path, bytes).unwrap();
    }
    add_registry_binary(env, &dir);
    add_list_and_copy(env, &dir);
    env.ok(&["build", "-q", "--no-images", "-t", "kubeadm-hub:1", &dir]);
    ("kubeadm-hub:1".to_string(), layer)
}

fn hosts_lines(host: &Host) -> Vec<String> {
    host.exec_ok(&["sh", "-c", "cat /etc/hosts 2>/dev/null || true"])
        .lines()
        .filter(|l| l.contains("sealos.hub"))
        .map(str::to_string)
        .collect()
}

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

fn mode(host: &Host, path: &str) -> String {
    host.exec_ok(&["stat", "-c", "%a", path]).trim().to_string()
}

fn mtime(host: &Host, path: &str) -> String {
    host.exec_ok(&["stat", "-c", "%Y.%i", path])
        .trim()
        .to_string()
}

/// An application image whose only content is a registry tree holding
/// [`APP_ORIGINAL`].
fn build_app_with_tree(env: &Env) -> String {
    registry_tree(env, "app", APP_REPOSITORY);
    env.write("app/Kubefile", "FROM scratch\nCOPY registry ./registry\n");
    env.ok(&["build", "-q", "--no-images", "-t", "hub-app:1", "app"]);
    "hub-app:1".to_string()
}

/// The application image's image, from a registry no list names (the
/// `_default` mirror takes it).
const APP_ORIGINAL: &str = "quay.io/sealrs/apptest:1";
const APP_REPOSITORY: &str = "sealrs/apptest";

fn pull(master: &Host, worker: &Host, name: &str) {
    let pulled = worker.exec(&[
        "/usr/local/bin/ctr",
        "-n",
        "k8s.io",
        "images",
        "pull",
        "--hosts-dir",
        "/etc/containerd/certs.d",
        name,
    ]);
    assert!(
        pulled.status.success(),
        "ctr pull {name} failed:\n{}{}\nhub log:\n{}",
        String::from_utf8_lossy(&pulled.stdout),
        String::from_utf8_lossy(&pulled.stderr),
        master.exec_ok(&["journalctl", "-u", "sealrs-hub.service", "--no-pager"])
    );
    let held = worker.exec_ok(&["/usr/local/bin/ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    assert!(held.lines().any(|l| l == name), "{held}");
}

#[test]
fn a_worker_pulls_an_image_of_the_tree_by_its_original_name_through_the_first_master() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let (image, _) = build_kubeadm_with_tree(&env, false);
    let app = build_app_with_tree(&env);
    let out = run_on(&env, &image, &hosts, &[0], &[1], &[&app]);
    let (master, worker) = (&hosts[0], &hosts[1]);

    // The registry runs on the first master, guarded by a 0600 htpasswd.
    assert_eq!(
        master
            .exec_ok(&["systemctl", "is-active", "sealrs-hub.service"])
            .trim(),
        "active"
    );
    assert_eq!(mode(master, "/var/lib/sealrs-host/hub/htpasswd"), "600");
    assert!(!exists(worker, "/etc/systemd/system/sealrs-hub.service"));
    // The tree's layer went to the first master only.
    let trees = |host: &Host| {
        host.exec_ok(&[
            "sh",
            "-c",
            "ls -d /var/lib/sealrs-host/rootfs/*/registry/docker 2>/dev/null || true",
        ])
    };
    assert!(!trees(master).trim().is_empty());
    assert_eq!(trees(worker).trim(), "", "the worker got the registry tree");
    // The password is kept in the saved cluster (0600) and shown nowhere.
    let saved = env.root.join("clusters/default/Clusterfile");
    let password = saved_password(&env, "default");
    assert_eq!(password.len(), 32);
    assert!(!out.contains(&password), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Every host names the first master sealos.hub, once; no other registry
    // resolves on the worker.
    for host in [master, worker] {
        assert_eq!(
            hosts_lines(host),
            [format!("{} sealos.hub # sealrs-hub", master.ip)],
            "{}",
            host.name
        );
        assert_eq!(
            mode(host, "/etc/containerd/certs.d/docker.io/hosts.toml"),
            "600"
        );
    }
    for name in ["registry-1.docker.io", "docker.io"] {
        assert!(
            !worker.exec(&["getent", "hosts", name]).status.success(),
            "{name} resolves on the worker: the test would not prove the pull went through the hub"
        );
    }

    // The worker's real containerd pulls the images by their original
    // names: the cluster image's, and the application image's (its tree
    // merged into the hub's).
    pull(master, worker, ORIGINAL);
    pull(master, worker, APP_ORIGINAL);
    // The hub's access log: containerd asked it for docker.io's image.
    let log = master.exec_ok(&["journalctl", "-u", "sealrs-hub.service", "--no-pager"]);
    assert!(
        log.lines().any(|l| l.contains(&worker.ip)
            && l.contains(&format!(" /v2/{REPOSITORY}/manifests/1?ns=docker.io "))
            && l.contains(" 200 ")),
        "{log}"
    );

    // A rerun rewrites nothing of the hub.
    let files = [
        (master, "/var/lib/sealrs-host/hub/htpasswd"),
        (master, "/etc/systemd/system/sealrs-hub.service"),
        (worker, "/etc/containerd/certs.d/docker.io/hosts.toml"),
    ];
    let before: Vec<String> = files.iter().map(|(h, p)| mtime(h, p)).collect();
    run_on(&env, &image, &hosts, &[0], &[1], &[&app]);
    let after: Vec<String> = files.iter().map(|(h, p)| mtime(h, p)).collect();
    assert_eq!(before, after);
    assert_eq!(hosts_lines(worker).len(), 1);

    // Reset removes the unit, the data, the name and the mirror config.
    let reset = on_hosts(&env, &hosts, &["reset"], true);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(!exists(master, "/etc/systemd/system/sealrs-hub.service"));
    assert!(!exists(master, "/var/lib/sealrs-host/hub"));
    assert_ne!(
        String::from_utf8_lossy(
            &master
                .exec(&["systemctl", "is-active", "sealrs-hub.service"])
                .stdout
        )
        .trim(),
        "active"
    );
    for host in [master, worker] {
        assert!(hosts_lines(host).is_empty(), "{}", host.name);
        assert!(!exists(host, "/etc/containerd/certs.d"), "{}", host.name);
    }
}

#[test]
fn a_tree_with_a_broken_blob_is_refused_before_any_host_changes() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let (image, layer) = build_kubeadm_with_tree(&env, true);
    let out = on_hosts(
        &env,
        &hosts,
        &["run", &image, "--masters", &hosts[0].ip],
        false,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{layer}: its bytes hash to")),
        "{stderr}"
    );
    assert!(stderr.contains("rebuild the image"), "{stderr}");
    let host = &hosts[0];
    assert!(!exists(host, "/usr/local/bin/kubeadm"));
    assert!(!exists(host, "/etc/systemd/system/sealrs-hub.service"));
    assert!(!exists(host, "/etc/containerd/certs.d"));
    assert!(hosts_lines(host).is_empty());
}

#[test]
fn k3s_nodes_pull_through_the_hub_by_registries_yaml() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    registry_tree(&env, &dir, REPOSITORY);
    add_registry_binary(&env, &dir);
    add_list_and_copy(&env, &dir);
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-hub:1", &dir]);
    run_on(&env, "k3s-hub:1", &hosts, &[0], &[1], &[]);

    let (server, agent) = (&hosts[0], &hosts[1]);
    let text = agent.exec_ok(&["cat", "/etc/rancher/k3s/registries.yaml"]);
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    for registry in ["docker.io", "*"] {
        assert_eq!(
            yaml["mirrors"][registry]["endpoint"][0].as_str(),
            Some("http://sealos.hub:5000"),
            "{text}"
        );
    }
    let auth = &yaml["configs"]["sealos.hub:5000"]["auth"];
    assert_eq!(auth["username"].as_str(), Some("sealrs"));
    assert_eq!(auth["password"].as_str().map(str::len), Some(32), "{text}");
    assert_eq!(mode(agent, "/etc/rancher/k3s/registries.yaml"), "600");
    assert_eq!(
        hosts_lines(agent),
        [format!("{} sealos.hub # sealrs-hub", server.ip)]
    );
    // The agent reaches the hub with those credentials.
    assert_hub_answers(agent, auth["password"].as_str().unwrap());
}

/// `GET /v2/` of `sealos.hub:5000` from `host` with the hub's credentials
/// answers 200.
fn assert_hub_answers(host: &Host, password: &str) {
    let answer = host.exec(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/sealos.hub/5000 && printf 'GET /v2/ HTTP/1.0\\r\\nAuthorization: Basic %s\\r\\n\\r\\n' \"$1\" >&3 && head -n 1 <&3",
        "probe",
        &base64(&format!("sealrs:{password}")),
    ]);
    let line = String::from_utf8_lossy(&answer.stdout);
    assert!(
        line.contains(" 200 "),
        "{line}{}",
        String::from_utf8_lossy(&answer.stderr)
    );
}

/// The hub password the saved cluster `name` keeps.
fn saved_password(env: &Env, name: &str) -> String {
    let text =
        std::fs::read_to_string(env.root.join(format!("clusters/{name}/Clusterfile"))).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("hubPassword: "))
        .unwrap_or_else(|| panic!("no hubPassword in {text}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn k0s_nodes_read_the_hosts_files_through_a_containerd_drop_in_and_reset_removes_them() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k0s", "k0s");
    registry_tree(&env, &dir, REPOSITORY);
    add_registry_binary(&env, &dir);
    add_list_and_copy(&env, &dir);
    env.ok(&["build", "-q", "--no-images", "-t", "k0s-hub:1", &dir]);
    run_on(&env, "k0s-hub:1", &hosts, &[0], &[1], &[]);

    let worker = &hosts[1];
    let drop_in = worker.exec_ok(&["cat", "/etc/k0s/containerd.d/sealrs-hub.toml"]);
    assert!(
        drop_in.contains("config_path = \"/etc/containerd/certs.d\""),
        "{drop_in}"
    );
    assert_eq!(
        mode(worker, "/etc/containerd/certs.d/docker.io/hosts.toml"),
        "600"
    );
    assert_hub_answers(worker, &saved_password(&env, "default"));

    let reset = on_hosts(&env, &hosts, &["reset"], true);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    for host in hosts.hosts() {
        assert!(
            !exists(host, "/etc/k0s/containerd.d/sealrs-hub.toml"),
            "{}",
            host.name
        );
        assert!(!exists(host, "/etc/containerd/certs.d"), "{}", host.name);
        assert!(hosts_lines(host).is_empty(), "{}", host.name);
    }
    assert!(!exists(&hosts[0], "/etc/systemd/system/sealrs-hub.service"));
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn a_worker_with_the_registry_role_serves_and_the_master_pulls_through_it() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let (image, _) = build_kubeadm_with_tree(&env, false);
    let file = env.write(
        "Clusterfile",
        format!(
            "apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  name: roles
spec:
  hosts:
  - ips: [{a}:22]
    roles: [master, amd64]
  - ips: [{b}:22]
    roles: [node, registry, amd64]
  image: [{image}]
  ssh:
    pk: {key}
    user: root
",
            key = hosts.key().display(),
            a = hosts[0].ip,
            b = hosts[1].ip,
        ),
    );
    let out = env.run(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--known-hosts",
        hosts.known_hosts().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (master, registry) = (&hosts[0], &hosts[1]);
    assert_eq!(
        registry
            .exec_ok(&["systemctl", "is-active", "sealrs-hub.service"])
            .trim(),
        "active"
    );
    assert!(!exists(master, "/etc/systemd/system/sealrs-hub.service"));
    for host in [master, registry] {
        assert_eq!(
            hosts_lines(host),
            [format!("{} sealos.hub # sealrs-hub", registry.ip)],
            "{}",
            host.name
        );
    }
    pull(registry, master, ORIGINAL);
}

#[test]
fn an_application_images_tree_is_served_when_the_cluster_image_has_none() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = kubeadm_context(&env, true);
    add_registry_binary(&env, &dir);
    env.ok(&["build", "-q", "--no-images", "-t", "kubeadm-bare:1", &dir]);
    let app = build_app_with_tree(&env);
    run_on(&env, "kubeadm-bare:1", &hosts, &[0], &[1], &[&app]);
    let (master, worker) = (&hosts[0], &hosts[1]);
    assert_eq!(
        master
            .exec_ok(&["systemctl", "is-active", "sealrs-hub.service"])
            .trim(),
        "active"
    );
    pull(master, worker, APP_ORIGINAL);
}
