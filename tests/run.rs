//! `sealrs run`: the plans each runtime makes, shown by `--dry-run` without
//! touching a host.

use crate::common::Env;
use crate::layout::example;

/// Addresses of hosts that do not exist: a dry run never connects.
const MASTERS: &str = "10.250.200.11,10.250.200.12,10.250.200.13";
const NODE: &str = "10.250.200.21";

fn dry_run(env: &Env, runtime: &str, extra: &[&str]) -> String {
    let dir = example(env, runtime, runtime);
    let tag = format!("{runtime}-cluster:1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        &tag,
        &dir,
    ]);
    let mut args = vec!["run", tag.as_str(), "--dry-run"];
    args.extend(extra);
    env.ok(&args)
}

#[test]
fn dry_run_shows_install_on_the_first_master_and_join_elsewhere_for_k3s() {
    let env = Env::new();
    let out = dry_run(
        &env,
        "k3s",
        &[
            "--masters",
            MASTERS,
            "--nodes",
            NODE,
            "-e",
            "PASS=pa$$w0rd\"`x",
        ],
    );
    let sections: Vec<&str> = out.split("\n# ").collect();
    assert_eq!(sections.len(), 4, "one section per host:\n{out}");
    assert!(
        out.starts_with("# 10.250.200.11 (master): install"),
        "{out}"
    );
    assert!(out.contains("# 10.250.200.12 (master): join"), "{out}");
    assert!(out.contains("# 10.250.200.21 (node): join"), "{out}");
    assert!(out.contains("--cluster-init"), "{out}");
    assert!(out.contains("https://10.250.200.11:6443"), "{out}");
    // The value is shown exactly, quoted, never expanded.
    assert!(out.contains("pa$$w0rd\"`x"), "{out}");
    assert!(!out.contains("pa0rd"), "{out}");
}

#[test]
fn dry_run_covers_kubeadm_and_k0s() {
    let env = Env::new();
    let kubeadm = dry_run(
        &env,
        "kubeadm",
        &[
            "--masters",
            "10.250.200.11",
            "--nodes",
            "10.250.200.21,10.250.200.22",
        ],
    );
    assert!(
        kubeadm.contains("kubeadm") && kubeadm.contains("init"),
        "{kubeadm}"
    );
    assert_eq!(kubeadm.matches("): join").count(), 2, "{kubeadm}");
    let k0s = dry_run(
        &env,
        "k0s",
        &["--masters", "10.250.200.11", "--nodes", NODE],
    );
    assert!(k0s.contains("k0s") && k0s.contains("controller"), "{k0s}");
    assert!(k0s.contains("worker"), "{k0s}");
}

#[test]
fn verify_refuses_an_even_number_of_k3s_servers_before_any_connection() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let stderr = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--masters",
        "10.250.200.11,10.250.200.12",
    ]);
    assert!(
        stderr.contains("even") || stderr.contains("odd"),
        "{stderr}"
    );
    assert!(
        !env.root.join("clusters/default/Clusterfile").exists()
            || stderr.contains("cannot be built")
    );
}
