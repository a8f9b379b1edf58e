//! `sealrs installer`: the real binary with a plan or a request on stdin
//! against a temp host root (systemctl replaced by a recording script), and
//! the installer layer that `sealrs build` embeds into rootfs images.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use sealrs::cluster::{Cluster, ClusterArgs, Role, Secret};
use sealrs::installer::Request;
use sealrs::plan::{Capture, Check, FileContent, Plan, ServiceOp, Step};
use sealrs::runtime::{ImageInfo, JoinSecrets};
use serde_json::Value;

use crate::common::{with_stdin, Env};

const FAKE_SYSTEMCTL: &str =
    "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/calls\"\ncase $1 in is-*) exit 1 ;; esac\n";

fn apply(env: &Env, plan: &Plan, extra: &[&str]) -> Output {
    let script = env.write_mode("tools/systemctl", FAKE_SYSTEMCTL, 0o755);
    let host = env.path("host");
    fs::create_dir_all(&host).unwrap();
    let mut args = vec![
        "installer".to_string(),
        "apply".into(),
        "--rootfs".into(),
        env.path("host/var/lib/sealrs/rootfs").display().to_string(),
        "--host-root".into(),
        host.display().to_string(),
        "--systemctl".into(),
        script.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    with_stdin(env.cmd(&args), plan.to_json().as_bytes())
}

fn layer(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

fn test_plan() -> Plan {
    let mut plan = Plan::new(
        "k3s",
        "install",
        "10.0.0.1",
        vec![("PASS".into(), "pa$$w0rd\"`x".into())],
    );
    plan.push(Step::place_rootfs(Role::Master));
    plan.push(Step::write_secret_file(
        "secret",
        "/etc/app/pass",
        FileContent::Template {
            template: "${PASS}".into(),
        },
        0o600,
    ));
    plan.push(
        Step::run_capture(
            "env",
            "echo PASS",
            &["printenv", "PASS"],
            Capture::secret("pass"),
        )
        .with_env(vec![("PASS".into(), "pa$$w0rd\"`x".into())]),
    );
    plan.push(Step::install_unit(
        "unit",
        "app.service",
        "[Service]\nExecStart=/bin/true\n".into(),
    ));
    plan.push(Step::service("enable", "app.service", ServiceOp::Enable));
    plan
}

#[test]
fn apply_unpacks_places_and_executes_and_a_rerun_changes_nothing() {
    let env = Env::new();
    let blob = env.write(
        "blobs/l1",
        layer(&[
            ("bin/k3s", b"#!/bin/sh\necho k3s\n", 0o755),
            ("README", b"x", 0o644),
        ]),
    );
    let plan = test_plan();
    let out = apply(&env, &plan, &["--layers", blob.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("w0rd"),
        "a secret reached the log: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], true);
    assert_eq!(report["captures"]["pass"], "pa$$w0rd\"`x");
    assert_eq!(
        fs::read(env.path("host/etc/app/pass")).unwrap(),
        b"pa$$w0rd\"`x"
    );
    let mode = fs::metadata(env.path("host/etc/app/pass"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(env.path("host/usr/local/bin/k3s").exists());
    assert!(env.path("host/etc/systemd/system/app.service").exists());
    let calls = fs::read_to_string(env.path("tools/calls")).unwrap();
    assert_eq!(
        calls,
        "daemon-reload\nis-enabled --quiet app.service\nenable --no-reload app.service\n"
    );

    let again = apply(&env, &plan, &["--layers", blob.to_str().unwrap()]);
    assert!(again.status.success());
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    // The fake says the unit is never enabled, so only that step acts again.
    let changed: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "changed")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, vec!["enable"], "{report}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already unpacked"));
}

#[test]
fn a_failed_step_exits_1_with_the_report_and_dry_run_touches_nothing() {
    let env = Env::new();
    fs::create_dir_all(env.path("host/var/lib/sealrs/rootfs/bin")).unwrap();
    env.write_mode("host/var/lib/sealrs/rootfs/bin/k3s", "#!/bin/sh\n", 0o755);
    let mut plan = Plan::new("k3s", "install", "h", vec![]);
    plan.push(Step::place_rootfs(Role::Master));
    plan.push(Step::run(
        "boom",
        "fail",
        &["sh", "-c", "echo to-stderr >&2; exit 7"],
        Check::ReadOnly,
    ));
    plan.push(Step::write_file(
        "after",
        "/after",
        FileContent::text("x"),
        0o644,
    ));

    let dry = apply(&env, &plan, &["--dry-run"]);
    assert!(dry.status.success());
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains("plan: k3s install on h (3 steps)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bin/k3s -> /usr/local/bin/k3s mode 0555"),
        "{stdout}"
    );
    assert!(!env.path("host/usr").exists());

    let out = apply(&env, &plan, &[]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], "boom");
    let step = &report["steps"][1];
    assert_eq!(step["exit_code"], 7);
    assert_eq!(step["output"][0], "to-stderr");
    assert_eq!(report["steps"].as_array().unwrap().len(), 2);
    assert!(!env.path("host/after").exists());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("step boom (fail) failed (exit code 7)"),
        "{stderr}"
    );
}

#[test]
fn unpack_is_idempotent_and_refuses_escapes() {
    let env = Env::new();
    let blob = env.write("l1", layer(&[("a/b", b"b", 0o640)]));
    let dest = env.path("rootfs");
    let args = [
        "installer",
        "unpack",
        "--dest",
        dest.to_str().unwrap(),
        blob.to_str().unwrap(),
    ];
    env.ok(&args);
    assert_eq!(fs::read_to_string(dest.join("a/b")).unwrap(), "b");
    let out = env.run(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
    // The installer is not for people: hidden from help.
    assert!(!env.ok(&["--help"]).contains("installer"));
}

fn k3s_context(env: &Env) -> String {
    env.write(
        "ctx/Kubefile",
        "FROM scratch\nLABEL sealrs.io/type=rootfs sealrs.io/runtime=k3s sealrs.io/version=v1.30.2+k3s1\nCOPY bin ./bin\n",
    );
    env.write_mode("ctx/bin/k3s", "#!/bin/sh\necho k3s\n", 0o755);
    env.path("ctx").display().to_string()
}

#[test]
fn rootfs_images_carry_the_installer_as_a_plain_tar_layer() {
    let env = Env::new();
    let ctx = k3s_context(&env);
    let platform = match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    };
    env.ok(&[
        "build",
        "--no-images",
        "--platform",
        platform,
        "-t",
        "k3s:a",
        &ctx,
    ]);
    let doc: Value = serde_json::from_str(&env.ok(&["inspect", "k3s:a"])).unwrap();
    let layers = doc["manifest"]["layers"].as_array().unwrap();
    let last = layers.last().unwrap();
    assert_eq!(last["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let table = env.ok(&["inspect", "--format", "table", "k3s:a"]);
    assert!(table.contains("opt/sealrs/sealrs"), "{table}");
    // tar alone extracts it, and it is this sealrs, runnable.
    let digest = last["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let blob = env.root.join("oci/blobs/sha256").join(digest);
    let plain = fs::read(&blob).unwrap();
    // Uncompressed: the config names the blob itself.
    let diff_ids = doc["config"]["rootfs"]["diff_ids"].as_array().unwrap();
    {
        use sha2::Digest as _;
        let sum = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&plain)));
        assert_eq!(diff_ids.last().unwrap(), &sum);
        assert_eq!(last["digest"], sum);
    }
    let mut archive = tar::Archive::new(&plain[..]);
    let names: Vec<(String, u32, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("opt/".to_string(), 0o755, 0),
            ("opt/sealrs/".to_string(), 0o755, 0),
            ("opt/sealrs/sealrs".to_string(), 0o755, 0),
        ]
    );
    // A second image reuses the cached layer: same digest.
    env.ok(&[
        "build",
        "--no-images",
        "--platform",
        platform,
        "-t",
        "k3s:b",
        &ctx,
    ]);
    let doc_b: Value = serde_json::from_str(&env.ok(&["inspect", "k3s:b"])).unwrap();
    assert_eq!(
        doc_b["manifest"]["layers"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["digest"],
        last["digest"]
    );

    // Another architecture needs --installer or --no-installer.
    let other = if platform == "linux/amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let err = env.fails(&[
        "build",
        "--no-images",
        "--platform",
        other,
        "-t",
        "k3s:c",
        &ctx,
    ]);
    assert!(
        err.contains("--installer PATH") && err.contains("--no-installer"),
        "{err}"
    );
    env.ok(&[
        "build",
        "--no-images",
        "--no-installer",
        "--platform",
        other,
        "-t",
        "k3s:c",
        &ctx,
    ]);
    let doc_c: Value = serde_json::from_str(&env.ok(&["inspect", "k3s:c"])).unwrap();
    assert_eq!(doc_c["manifest"]["layers"].as_array().unwrap().len(), 1);
    // An image without the rootfs type gets no installer.
    env.write(
        "app/Kubefile",
        "FROM scratch\nLABEL sealrs.io/type=application\nCOPY f /f\n",
    );
    env.write("app/f", "x");
    env.ok(&[
        "build",
        "--no-images",
        "-t",
        "app:1",
        env.path("app").to_str().unwrap(),
    ]);
    let doc_app: Value = serde_json::from_str(&env.ok(&["inspect", "app:1"])).unwrap();
    assert_eq!(doc_app["manifest"]["layers"].as_array().unwrap().len(), 1);
}

/// `sealrs installer SUBCOMMAND --host-root host [--systemctl fake]` with `stdin`.
fn installer(env: &Env, subcommand: &str, stdin: &[u8]) -> Output {
    let script = env.write_mode("tools/systemctl", FAKE_SYSTEMCTL, 0o755);
    let host = env.path("host");
    fs::create_dir_all(&host).unwrap();
    let mut args = vec![
        "installer".to_string(),
        subcommand.to_string(),
        "--host-root".into(),
        host.display().to_string(),
    ];
    if subcommand != "verify" {
        args.extend(["--systemctl".into(), script.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    with_stdin(env.cmd(&args), stdin)
}

const VALUE: &str = "pa$$w0rd\"\\`x'";

fn two_hosts() -> Cluster {
    Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into()],
        nodes: vec!["10.0.0.2".into()],
        env: vec![format!("PASS={VALUE}")],
        key: Some("/home/op/.ssh/id_operator".into()),
        ..ClusterArgs::default()
    })
    .unwrap()
}

fn k3s_request(cluster: &Cluster, host: usize, layers: Vec<String>) -> Request {
    Request::new(
        cluster,
        &cluster.hosts[host],
        &ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap(),
        &JoinSecrets {
            token: Some(Secret::new("K10token::server:abc")),
            ..JoinSecrets::default()
        },
        "/var/lib/sealrs/rootfs/img",
        layers,
    )
}

#[test]
fn join_plans_on_the_host_from_the_request_and_renders_env_values_byte_for_byte() {
    let env = Env::new();
    env.write(
        "host/var/lib/sealrs/blobs/l1",
        layer(&[
            ("bin/k3s", b"#!/bin/sh\necho k3s\n", 0o755),
            (
                "etc/config.yaml",
                b"node-label:\n  - >-\n    pass=${PASS}\n",
                0o644,
            ),
        ]),
    );
    let request = k3s_request(&two_hosts(), 1, vec!["/var/lib/sealrs/blobs/l1".into()]);
    let out = installer(&env, "join", request.to_json().as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("w0rd"),
        "an env value reached the log: {stderr}"
    );
    assert!(
        !stderr.contains("K10token"),
        "the token reached the log: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["action"], "join");
    assert_eq!(report["host"], "10.0.0.2");
    assert_eq!(report["changed"], true);
    // Unpacked where the request says, placed as the layout says for a node.
    assert!(env.path("host/var/lib/sealrs/rootfs/img/bin/k3s").exists());
    assert!(env.path("host/usr/local/bin/k3s").exists());
    let config = fs::read_to_string(env.path("host/etc/rancher/k3s/config.yaml")).unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
    assert_eq!(
        parsed["node-label"][0].as_str(),
        Some(format!("pass={VALUE}").as_str()),
        "{config}"
    );
    let unit_env =
        fs::read_to_string(env.path("host/etc/systemd/system/k3s-agent.service.env")).unwrap();
    assert!(
        unit_env.contains("K3S_TOKEN=\"K10token::server:abc\""),
        "{unit_env}"
    );

    // The same request again: already unpacked, nothing placed or written again.
    let again = installer(&env, "join", request.to_json().as_bytes());
    assert!(again.status.success());
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    let changed: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "changed")
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        !changed
            .iter()
            .any(|id| ["place-rootfs", "config", "env-file"].contains(id)),
        "{changed:?}"
    );
}

#[test]
fn verify_reports_violations_as_json_and_fails_and_an_unknown_request_version_is_refused() {
    let env = Env::new();
    // Unpacked, but without the k3s binary the layout requires.
    env.write("host/var/lib/sealrs/rootfs/img/.sealrs-unpacked.json", "{}");
    env.write("host/var/lib/sealrs/rootfs/img/README", "x");
    env.write("host/proc/net/tcp", "header\n");
    let request = k3s_request(&two_hosts(), 1, Vec::new());
    let out = installer(&env, "verify", request.to_json().as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["host"], "10.0.0.2");
    assert_eq!(report["role"], "node");
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{report}");
    assert_eq!(violations[0]["check"], "rootfs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bin/k3s: missing; expected the k3s binary"),
        "{stderr}"
    );
    assert!(!env.path("host/usr").exists(), "verify placed something");

    let mut newer: Value = serde_json::from_str(&request.to_json()).unwrap();
    newer["version"] = serde_json::json!(2);
    for subcommand in ["verify", "join"] {
        let out = installer(&env, subcommand, newer.to_string().as_bytes());
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "request format version 2 is unknown to this installer, which reads version 1"
            ),
            "{stderr}"
        );
    }
    assert!(!env.path("host/usr").exists());
}

/// `installer unpack --incoming`: the layers a host lacks come on stdin, one
/// after another, and are kept only once they hash to their names.
#[test]
fn unpack_reads_incoming_layers_from_stdin_and_names_bad_specs() {
    use sha2::Digest as _;
    let env = Env::new();
    let first = layer(&[("bin/k3s", b"k3s", 0o755)]);
    let second = layer(&[("etc/config.yaml", b"a: 1\n", 0o644)]);
    let blobs = env.path("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let name = |bytes: &[u8]| blobs.join(hex::encode(sha2::Sha256::digest(bytes)));
    // The first is on the host already; the second arrives.
    fs::write(name(&first), &first).unwrap();
    let (have, coming) = (
        name(&first).display().to_string(),
        name(&second).display().to_string(),
    );
    let dest = env.path("rootfs").display().to_string();
    let unpack = |incoming: &str, stdin: &[u8]| {
        with_stdin(
            env.cmd(&[
                "installer",
                "unpack",
                "--dest",
                &dest,
                &have,
                &coming,
                "--incoming",
                incoming,
            ]),
            stdin,
        )
    };

    for (spec, says) in [
        (format!("{coming}=ten"), "SIZE is not a number of bytes"),
        (coming.clone(), "expected DIR=SIZE"),
        (
            "/elsewhere=3".to_string(),
            "is not one of the layers to unpack",
        ),
    ] {
        let out = unpack(&spec, &second);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{spec}: {stderr}"
        );
        assert!(
            !name(&second).exists() && !env.path("rootfs").exists(),
            "{spec}"
        );
    }

    let out = unpack(&format!("{coming}={}", second.len()), &second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kept as a layer directory named by the blob's digest; the rootfs file
    // is a hard link to the layer's.
    let kept = name(&second).join("etc/config.yaml");
    assert_eq!(fs::read_to_string(&kept).unwrap(), "a: 1\n");
    assert_eq!(
        fs::read_to_string(env.path("rootfs/etc/config.yaml")).unwrap(),
        "a: 1\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(&kept).unwrap().ino(),
        fs::metadata(env.path("rootfs/etc/config.yaml"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        fs::read_to_string(env.path("rootfs/bin/k3s")).unwrap(),
        "k3s"
    );
}
