//! One reading of an image's labels: what `build` accepts and `inspect`
//! describes, `run --dry-run` plans with the same runtime and version
//! (sealos's labels, runtime aliases, a runtime inferred from the rootfs).

use crate::common::Env;
use crate::layout::example;

/// A host that does not exist: a dry run never connects.
const MASTER: &str = "10.250.255.10";

/// The `runtime` example in `dir`, with `labels` instead of its own.
fn context(env: &Env, runtime: &str, labels: &str, dir: &str) -> String {
    let dir = example(env, runtime, dir);
    env.write(
        &format!("{dir}/Kubefile"),
        format!("FROM scratch\nLABEL {labels}\nCOPY bin ./bin\nCOPY images ./images\nCOPY manifests ./manifests\nCOPY etc ./etc\n"),
    );
    dir
}

fn build_args<'a>(tag: &'a str, dir: &'a str) -> [&'a str; 7] {
    [
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        tag,
        dir,
    ]
}

/// Builds the `runtime` example labelled `labels` as `tag`; returns build's stderr.
fn build(env: &Env, runtime: &str, labels: &str, tag: &str) -> String {
    let dir = context(env, runtime, labels, tag);
    let out = env.run(&build_args(tag, &dir));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{labels}: {stderr}");
    stderr
}

/// `inspect`'s runtime and version, and the first plan of `run --dry-run`.
fn read(env: &Env, tag: &str) -> (String, String, String) {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", tag])).unwrap();
    let cluster = &doc["cluster"];
    let value = |fact: &str| cluster[fact]["value"].as_str().unwrap_or("").to_string();
    let plan = env.ok(&["run", tag, "--masters", MASTER, "--dry-run"]);
    (value("runtime"), value("version"), plan)
}

#[test]
fn a_sealos_version_label_that_holds_a_kubernetes_version_is_the_version() {
    let env = Env::new();
    build(
        &env,
        "k3s",
        "sealrs.io/type=rootfs sealrs.io/runtime=k3s sealos.io.version=v1.30.2+k3s1",
        "sealos-version",
    );
    let (runtime, version, plan) = read(&env, "sealos-version");
    assert_eq!(
        (runtime.as_str(), version.as_str()),
        ("k3s", "v1.30.2+k3s1")
    );
    assert!(
        plan.contains(&format!("plan: k3s install on {MASTER}")),
        "{plan}"
    );

    // sealos's image format there is no version, and no problem: `version` is.
    build(
        &env,
        "k3s",
        "sealos.io.type=rootfs sealos.io.distribution=k3s sealos.io.version=v1beta1 version=v1.30.2+k3s1",
        "sealos-format",
    );
    let (runtime, version, _) = read(&env, "sealos-format");
    assert_eq!(
        (runtime.as_str(), version.as_str()),
        ("k3s", "v1.30.2+k3s1")
    );
    // ...and a format alone is a missing version, for build as for run.
    let labels = "sealrs.io/type=rootfs sealrs.io/runtime=k3s sealos.io.version=v1beta1";
    let dir = context(&env, "k3s", labels, "format-only");
    let stderr = env.fails(&build_args("format-only", &dir));
    assert!(
        stderr.contains("label sealrs.io/version is missing"),
        "{stderr}"
    );
}

#[test]
fn a_runtime_alias_means_the_same_runtime_to_build_inspect_and_run() {
    let env = Env::new();
    build(
        &env,
        "kubeadm",
        "sealrs.io/type=rootfs sealos.io.distribution=k8s version=v1.30.2",
        "k8s-alias",
    );
    let (runtime, version, plan) = read(&env, "k8s-alias");
    assert_eq!((runtime.as_str(), version.as_str()), ("kubeadm", "v1.30.2"));
    assert!(
        plan.contains(&format!("plan: kubeadm install on {MASTER}")),
        "{plan}"
    );
    assert!(plan.contains("v1.30.2"), "{plan}");
}

#[test]
fn a_runtime_build_inferred_from_the_rootfs_is_written_for_run() {
    let env = Env::new();
    let stderr = build(
        &env,
        "k3s",
        "sealos.io.type=rootfs version=v1.30.2+k3s1",
        "inferred",
    );
    assert!(
        stderr.contains("runtime k3s inferred from bin/k3s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("wrote label sealrs.io/runtime=k3s"),
        "{stderr}"
    );
    let (runtime, version, plan) = read(&env, "inferred");
    assert_eq!(
        (runtime.as_str(), version.as_str()),
        ("k3s", "v1.30.2+k3s1")
    );
    assert!(
        plan.contains(&format!("plan: k3s install on {MASTER}")),
        "{plan}"
    );
}
