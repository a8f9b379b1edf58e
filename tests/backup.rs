//! `sealrs backup` and `sealrs restore` on real hosts: kubeadm's etcd is the
//! real etcd from Debian (run by the kubelet stand-in as its static pod,
//! with the certificates the kubeadm stand-in made), so keys written with
//! the real etcdctl come back after a reset; k3s on SQLite is backed up as
//! its database file; a file altered, cut short or of another runtime is
//! refused with nothing changed on the host.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{tool, Env};
use crate::hosts::{Host, TestHosts};
use crate::interrupt::Running;
use crate::layout::example;
use crate::run::{on_hosts, run_on};
use crate::run_hosts::build_kubeadm_archives;

/// etcdctl's flags for kubeadm's etcd: its client certificate.
const KUBEADM_ETCD: &[&str] = &[
    "--endpoints=https://127.0.0.1:2379",
    "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
];
/// etcdctl's flags for the k3s stand-in's embedded etcd.
const K3S_ETCD: &[&str] = &["--endpoints=http://127.0.0.1:2379"];

/// Where [`hide_etcdctl`] keeps the test's own etcdctl, off PATH.
const TEST_ETCDCTL: &str = "/root/etcdctl";

/// The real etcdctl on the host (the test's own once hidden), with
/// `etcd`'s flags.
fn etcdctl(host: &Host, etcd: &[&str], args: &[&str]) -> std::process::Output {
    let mut argv = vec![
        "sh",
        "-c",
        r#"e=$1; shift; [ -x "$e" ] || e=etcdctl; exec "$e" "$@""#,
        "sh",
        TEST_ETCDCTL,
    ];
    argv.extend(etcd);
    argv.extend(args);
    host.exec(&argv)
}

/// The value of `key`, empty when absent; waits for etcd to answer.
fn get(host: &Host, etcd: &[&str], key: &str) -> String {
    for _ in 0..60 {
        let out = etcdctl(host, etcd, &["get", key, "--print-value-only"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let why = etcdctl(host, etcd, &["endpoint", "health"]);
    let log = host.exec(&["sh", "-c", "systemctl status kubelet; ls -l /etc/kubernetes/pki/etcd /usr/local/bin; cat /run/sealrs-standin-etcd; tail -n 20 /var/log/sealrs-standin-etcd.log"]);
    panic!(
        "etcd on {} never answered: {}\n{}{}",
        host.name,
        String::from_utf8_lossy(&why.stderr),
        String::from_utf8_lossy(&log.stdout),
        String::from_utf8_lossy(&log.stderr)
    );
}

/// The names of kubeadm's etcd members, sorted, as `host`'s etcd lists them.
pub(crate) fn members(host: &Host) -> Vec<String> {
    let out = etcdctl(host, KUBEADM_ETCD, &["member", "list"]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split(", ").nth(2).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Every member of kubeadm's etcd, asked through `host`'s, answers healthy.
pub(crate) fn etcd_is_healthy(host: &Host, members: usize) {
    let out = etcdctl(host, KUBEADM_ETCD, &["endpoint", "health", "--cluster"]);
    // etcdctl 3.4 reports health on stderr, later ones on stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("is healthy").count(), members, "{text}");
}

fn put(host: &Host, etcd: &[&str], key: &str, value: &str) {
    get(host, etcd, key); // etcd answers
    let out = etcdctl(host, etcd, &["put", key, value]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn fails(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {stderr}");
    stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Debian's etcd and etcdctl into the image context `dir`'s bin/ (placed in
/// /usr/local/bin, where the stand-ins find them).
fn with_etcd(env: &Env, dir: &str) {
    for bin in ["etcd", "etcdctl"] {
        std::fs::copy(
            format!("/usr/bin/{bin}"),
            env.path(&format!("{dir}/bin/{bin}")),
        )
        .unwrap_or_else(|e| panic!("/usr/bin/{bin}: {e} (install etcd-server and etcd-client)"));
    }
}

/// A kubeadm host as real ones are: no etcdctl on PATH (Debian's and the
/// one placed from the image's bin/ removed), the image's rootfs keeping
/// its bin/etcdctl; the test's own moves to [`TEST_ETCDCTL`].
fn hide_etcdctl(host: &Host) {
    host.exec_ok(&[
        "sh",
        "-c",
        "for e in /usr/bin/etcdctl /usr/local/bin/etcdctl; do [ ! -x $e ] || cp $e /root/etcdctl; done; rm -f /usr/bin/etcdctl /usr/local/bin/etcdctl; ! command -v etcdctl; ls /var/lib/sealrs-host/rootfs/*/bin/etcdctl",
    ]);
}

/// The kubeadm image of `run_hosts`, with etcd.
pub(crate) fn build_kubeadm_with_etcd(env: &Env) -> String {
    let image = build_kubeadm_archives(env, true);
    with_etcd(env, "kubeadm");
    env.ok(&["build", "-q", "--no-images", "-t", &image, "kubeadm"]);
    image
}

#[test]
fn kubeadm_backup_of_real_etcd_restores_its_keys_after_a_reset_and_refuses_a_running_cluster() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let image = build_kubeadm_with_etcd(&env);
    run_on(&env, &image, &hosts, &[0], &[], &[]);
    let h = &hosts[0];
    hide_etcdctl(h);
    put(h, KUBEADM_ETCD, "/sealrs/a", "1");
    put(
        h,
        KUBEADM_ETCD,
        "/sealrs/b",
        "a value with spaces and $dollar",
    );

    let file = env.path("kubeadm.backup");
    let dry = on_hosts(
        &env,
        &hosts,
        &["backup", "--dry-run", "-o", file.to_str().unwrap()],
        false,
    );
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    // The image's etcdctl, in its rootfs: the host has none.
    assert!(
        dry.contains("/var/lib/sealrs-host/rootfs/")
            && dry.contains("/bin/etcdctl --endpoints=https://127.0.0.1:2379"),
        "{dry}"
    );
    assert!(!file.exists(), "a dry run writes nothing");

    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["backup", "-o", file.to_str().unwrap()],
        false,
    ));
    assert!(
        stderr.contains("backed up cluster default (kubeadm v1.30.2, etcd snapshot"),
        "{stderr}"
    );
    assert_eq!(mode(&file), 0o600);
    // Nothing of the snapshot stays on the host.
    assert!(!h
        .exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
        .status
        .success());
    put(h, KUBEADM_ETCD, "/sealrs/after", "written after the backup");

    // A fresh cluster on the same host: its etcd has none of the keys.
    ok(on_hosts(&env, &hosts, &["reset"], true));
    run_on(&env, &image, &hosts, &[0], &[], &[]);
    hide_etcdctl(h);
    assert_eq!(get(h, KUBEADM_ETCD, "/sealrs/a"), "");

    let input = file.to_str().unwrap();
    let refused = fails(on_hosts(&env, &hosts, &["restore", "-i", input], false));
    assert!(
        refused.contains("is running") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(
        get(h, KUBEADM_ETCD, "/sealrs/a"),
        "",
        "a refused restore changes nothing"
    );

    let plan = on_hosts(&env, &hosts, &["restore", "-i", input, "--dry-run"], false);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("etcdctl snapshot restore"), "{plan}");
    assert!(plan.contains("point etcd's data volume at it"), "{plan}");

    ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", input, "--force"],
        false,
    ));
    assert_eq!(get(h, KUBEADM_ETCD, "/sealrs/a"), "1");
    assert_eq!(
        get(h, KUBEADM_ETCD, "/sealrs/b"),
        "a value with spaces and $dollar"
    );
    assert_eq!(
        get(h, KUBEADM_ETCD, "/sealrs/after"),
        "",
        "written after the backup"
    );
    // etcd runs from the restored data directory, the API server is back.
    let manifest = h.exec_ok(&["cat", "/etc/kubernetes/manifests/etcd.yaml"]);
    assert!(
        manifest.contains("path: /var/lib/etcd-restore-"),
        "{manifest}"
    );
    assert!(h
        .exec(&[
            "test",
            "-e",
            "/etc/kubernetes/manifests/kube-apiserver.yaml"
        ])
        .status
        .success());
    assert!(!h
        .exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
        .status
        .success());
}

/// How often the kubeadm stand-in on `host` ran `kubeadm join`.
fn joins(host: &Host) -> usize {
    host.exec_ok(&["cat", "/var/log/sealrs-standins.log"])
        .lines()
        .filter(|l| l.starts_with("kubeadm|") && l.contains("|join "))
        .count()
}

#[test]
fn kubeadm_restore_onto_two_masters_restores_one_etcd_member_and_joins_the_second_again() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let image = build_kubeadm_with_etcd(&env);
    run_on(&env, &image, &hosts, &[0, 1], &[], &[]);
    let (h, second) = (&hosts[0], &hosts[1]);
    hide_etcdctl(h);
    put(h, KUBEADM_ETCD, "/sealrs/a", "1");
    // The second master's join --control-plane added its etcd member.
    assert_eq!(members(h), [h.name.clone(), second.name.clone()]);
    let file = env.path("kubeadm.backup");
    let input = file.to_str().unwrap();
    ok(on_hosts(&env, &hosts, &["backup", "-o", input], false));
    put(h, KUBEADM_ETCD, "/sealrs/after", "written after the backup");
    assert_eq!(joins(second), 1);

    let plan = on_hosts(&env, &hosts, &["restore", "-i", input, "--dry-run"], false);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("kubeadm reset -f"), "{plan}");
    assert!(plan.contains("join again as control planes"), "{plan}");

    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", input, "--force"],
        false,
    ));
    assert!(
        stderr.contains("joined again as control planes"),
        "{stderr}"
    );
    assert_eq!(get(h, KUBEADM_ETCD, "/sealrs/a"), "1");
    assert_eq!(get(h, KUBEADM_ETCD, "/sealrs/after"), "");
    // The restored one-member cluster, and the second master's member
    // added again by its join.
    assert_eq!(members(h), [h.name.clone(), second.name.clone()]);
    // The second master left (kubeadm reset) and joined again as a control plane.
    let reset = second.exec_ok(&["cat", "/var/log/sealrs-standin-reset"]);
    assert!(reset.contains("remove-etcd-member"), "{reset}");
    assert_eq!(joins(second), 2);
    assert!(second
        .exec(&[
            "test",
            "-e",
            "/etc/kubernetes/manifests/kube-apiserver.yaml"
        ])
        .status
        .success());
}

/// The tar `path` with `manifest.json` rewritten by `edit`.
fn rewrite_manifest(path: &Path, out: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            edit(&mut m);
            bytes = serde_json::to_vec(&m).unwrap();
        }
        let mut h = entry.header().clone();
        h.set_size(bytes.len() as u64);
        builder.append_data(&mut h, &name, &bytes[..]).unwrap();
    }
    builder.finish().unwrap();
}

const DB: &str = "var/lib/rancher/k3s/server/db/state.db";

fn sqlite(db: &Path, sql: &str) -> String {
    let out = tool("sqlite3", &[db.to_str().unwrap(), sql]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a refusal must leave alone: the database, k3s's start time, no
/// work directory.
fn k3s_state(h: &Host) -> (String, String, bool) {
    (
        h.exec_ok(&["sha256sum", &format!("/{DB}")]),
        h.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            "ActiveEnterTimestampMonotonic",
            "k3s",
        ]),
        h.exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
            .status
            .success(),
    )
}

/// `n` hosts, all masters, running the `runtime` example's image
/// (`RUNTIME-cluster:1`).
fn running_example(runtime: &str, n: usize) -> (TestHosts, Env) {
    let hosts = TestHosts::boot(n);
    let env = Env::new();
    let dir = example(&env, runtime, runtime);
    let image = format!("{runtime}-cluster:1");
    env.ok(&["build", "-q", "--no-images", "-t", &image, &dir]);
    let masters: Vec<usize> = (0..n).collect();
    run_on(&env, &image, &hosts, &masters, &[], &[]);
    (hosts, env)
}

/// A k3s server on SQLite (k3s's datastore for one server without
/// --cluster-init): its state.db, written with the real sqlite3, holds one row.
fn k3s_on_sqlite() -> (TestHosts, Env) {
    let (hosts, env) = running_example("k3s", 1);
    let db = hosts[0].root().join(DB);
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    sqlite(&db, "CREATE TABLE kine (name TEXT, value TEXT); INSERT INTO kine VALUES ('/registry/a', 'one');");
    (hosts, env)
}

#[test]
fn k3s_on_sqlite_is_backed_up_as_its_database_and_bad_files_are_refused_with_the_host_untouched() {
    let (hosts, env) = k3s_on_sqlite();
    let h = &hosts[0];
    let db = h.root().join(DB);

    let file = env.path("k3s.backup");
    let out = on_hosts(
        &env,
        &hosts,
        &["backup", "--dry-run", "-o", file.to_str().unwrap()],
        false,
    );
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(plan.contains("systemctl stop k3s.service"), "{plan}");
    assert!(plan.contains("SQLite"), "{plan}");

    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["backup", "-o", file.to_str().unwrap()],
        false,
    ));
    assert!(stderr.contains("SQLite database taken on"), "{stderr}");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        h.exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active"
    );
    // The snapshot is state.db, whole: the real sqlite3 reads the row.
    let unpacked = env.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    tool(
        "tar",
        &[
            "-xf",
            file.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
        ],
    );
    tool(
        "tar",
        &[
            "-xf",
            unpacked.join("snapshot").to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
        ],
    );
    assert_eq!(
        sqlite(&unpacked.join("state.db"), "SELECT value FROM kine"),
        "one"
    );
    assert!(unpacked.join("secrets/token").is_file());
    assert!(unpacked.join("state/Clusterfile").is_file());

    // Bad files: refused, and the host as it was.
    let before = k3s_state(h);
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    flipped[512 + 600] ^= 0xff;
    let bad = env.write("flipped.backup", &flipped);
    let truncated = env.write("truncated.backup", &bytes[..bytes.len() / 2]);
    let kubeadm = env.path("kubeadm.backup");
    rewrite_manifest(&file, &kubeadm, |m| m["runtime"] = "kubeadm".into());
    let other_masters = env.path("masters.backup");
    rewrite_manifest(&file, &other_masters, |m| {
        m["masters"] = serde_json::json!(["10.250.250.10", "10.250.250.11", "10.250.250.12"])
    });
    let other_version = env.path("version.backup");
    rewrite_manifest(&file, &other_version, |m| {
        m["version"] = "v1.29.6+k3s1".into()
    });
    for (path, says) in [
        (&bad, "checksum does not match"),
        (&truncated, "truncated"),
        (
            &kubeadm,
            "it is a backup of a kubeadm cluster, and default runs k3s",
        ),
        (&other_masters, "it was taken with masters 10.250.250.10,"),
        (&other_version, "it was taken at version v1.29.6+k3s1"),
    ] {
        let stderr = fails(on_hosts(
            &env,
            &hosts,
            &["restore", "-i", path.to_str().unwrap(), "--force"],
            false,
        ));
        assert!(stderr.contains(says), "{}: {stderr}", path.display());
        assert!(
            stderr.contains("nothing was changed on any host"),
            "{stderr}"
        );
        assert_eq!(k3s_state(h), before, "{}", path.display());
    }

    // The good file puts the database back.
    sqlite(&db, "INSERT INTO kine VALUES ('/registry/b', 'two');");
    ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", file.to_str().unwrap(), "--force"],
        false,
    ));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM kine"), "1");
    assert_eq!(
        h.exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active"
    );
}

#[test]
fn k3s_with_embedded_etcd_backs_up_with_etcd_snapshot_save_and_restores_by_cluster_reset_and_the_other_servers_rejoin(
) {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    with_etcd(&env, &dir);
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-etcd:1", &dir]);
    run_on(&env, "k3s-etcd:1", &hosts, &[0, 1, 2], &[], &[]);
    let h = &hosts[0];
    put(h, K3S_ETCD, "/registry/a", "1");

    let file = env.path("k3s-etcd.backup");
    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["backup", "-o", file.to_str().unwrap()],
        false,
    ));
    assert!(stderr.contains("etcd snapshot taken on"), "{stderr}");
    assert_eq!(mode(&file), 0o600);
    let log = crate::run::standin_log(h);
    assert!(
        log.contains("|etcd-snapshot save --name sealrs --dir /var/lib/sealrs-host/backup|"),
        "{log}"
    );
    assert!(!h
        .exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
        .status
        .success());
    put(h, K3S_ETCD, "/registry/after", "written after the backup");

    // What the other servers keep of the old etcd membership goes.
    for other in [&hosts[1], &hosts[2]] {
        other.exec_ok(&["sh", "-c", "mkdir -p /var/lib/rancher/k3s/server/db && echo old > /var/lib/rancher/k3s/server/db/member"]);
    }
    let started = |h: &Host| {
        h.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            "ActiveEnterTimestampMonotonic",
            "k3s",
        ])
    };
    let before: Vec<String> = hosts.hosts().iter().map(started).collect();
    ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", file.to_str().unwrap(), "--force"],
        false,
    ));
    for (i, host) in hosts.hosts().iter().enumerate() {
        assert_ne!(started(host), before[i], "{} was restarted", host.name);
        assert_eq!(
            host.exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
            "active"
        );
    }
    for other in [&hosts[1], &hosts[2]] {
        assert!(!other
            .exec(&["test", "-e", "/var/lib/rancher/k3s/server/db/member"])
            .status
            .success());
    }
    let log = crate::run::standin_log(h);
    assert!(
        log.contains(
            "--cluster-reset --cluster-reset-restore-path=/var/lib/sealrs-host/backup/restore-"
        ),
        "{log}"
    );
    assert_eq!(get(h, K3S_ETCD, "/registry/a"), "1");
    assert_eq!(get(h, K3S_ETCD, "/registry/after"), "");
    assert_eq!(
        h.exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active"
    );
}

#[test]
fn k0s_backs_up_with_k0s_backup_and_restores_with_the_controller_stopped() {
    let (hosts, env) = running_example("k0s", 1);
    let h = &hosts[0];
    let marker = h.root().join("var/lib/k0s/pki/sealrs-marker");
    std::fs::write(&marker, "before the backup").unwrap();

    let file = env.path("k0s.backup");
    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["backup", "-o", file.to_str().unwrap()],
        false,
    ));
    assert!(stderr.contains("k0s backup archive taken on"), "{stderr}");
    assert_eq!(mode(&file), 0o600);
    assert!(!h
        .exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
        .status
        .success());

    std::fs::write(&marker, "after the backup").unwrap();
    ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", file.to_str().unwrap(), "--force"],
        false,
    ));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "before the backup"
    );
    let calls = crate::run::standin_log(h);
    let restore = calls
        .find("|restore --config-out=/etc/k0s/k0s.yaml ")
        .expect(&calls);
    let stop = calls[..restore]
        .rfind("|stop|")
        .expect("k0s stop before the restore");
    assert!(calls[restore..].contains("|start|"), "{calls}");
    assert!(stop < restore);
    assert_eq!(
        h.exec_ok(&["systemctl", "is-active", "k0scontroller"])
            .trim(),
        "active"
    );
}

#[test]
fn k0s_restore_onto_three_controllers_resets_the_others_and_joins_them_again() {
    // Three: k0s's embedded etcd wants an odd number of controllers.
    let (hosts, env) = running_example("k0s", 3);
    let installs = |h: &Host| {
        crate::run::standin_log(h)
            .matches("|install controller")
            .count()
    };
    assert_eq!(installs(&hosts[1]), 1);
    let file = env.path("k0s.backup");
    let input = file.to_str().unwrap();
    ok(on_hosts(&env, &hosts, &["backup", "-o", input], false));

    let stderr = ok(on_hosts(
        &env,
        &hosts,
        &["restore", "-i", input, "--force"],
        false,
    ));
    assert!(
        stderr.contains("joined again as control planes"),
        "{stderr}"
    );
    for other in [&hosts[1], &hosts[2]] {
        let calls = crate::run::standin_log(other);
        let reset = calls.find("|reset|").expect(&calls);
        assert!(calls[reset..].contains("|install controller"), "{calls}");
        assert_eq!(installs(other), 2);
        assert_eq!(
            other
                .exec_ok(&["systemctl", "is-active", "k0scontroller"])
                .trim(),
            "active"
        );
    }
}

#[test]
fn ctrl_c_during_a_sqlite_backup_starts_k3s_again_and_leaves_no_file() {
    let (hosts, env) = k3s_on_sqlite();
    let h = &hosts[0];

    // Ctrl-C as the backup stops k3s: the stop finishes, nothing more of
    // the backup runs, and its cleanup starts k3s again.
    let file = env.path("k3s.backup");
    let mut args: Vec<String> = ["backup", "-o", file.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend(crate::run::ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = Running::start(env.cmd(&refs));
    run.wait_for("stop k3s (SQLite files at rest)");
    let pid = run.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let (status, seen) = run.finish();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert!(seen.contains("k3s running"), "the cleanup ran: {seen}");
    assert!(!file.exists(), "{seen}");
    assert_eq!(
        h.exec_ok(&["systemctl", "is-active", "k3s"]).trim(),
        "active",
        "{seen}"
    );
    assert!(!h
        .exec(&["test", "-e", "/var/lib/sealrs-host/backup"])
        .status
        .success());
}
