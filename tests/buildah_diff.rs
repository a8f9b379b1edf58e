//! The image config sealrs writes equals the one buildah derives from the same
//! Kubefile. Every directory under `tests/data/kubefiles/` is a case: a
//! `Kubefile`, its context, and optionally `build-args` (one KEY=VALUE a line)
//! and `flags` (one `--label K=V` or `--env K=V` a line, given to both).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{skopeo_config, Env};

/// The config fields a Kubefile controls. `io.buildah.version` is buildah's own stamp.
fn comparable(config: &Value, author: &Value) -> Value {
    let mut labels = config.get("Labels").cloned().unwrap_or(Value::Null);
    if let Some(map) = labels.as_object_mut() {
        map.remove("io.buildah.version");
        if map.is_empty() {
            labels = Value::Null;
        }
    }
    let field = |name: &str| config.get(name).cloned().unwrap_or(Value::Null);
    let non_empty = |v: Value| match v {
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        other => other,
    };
    serde_json::json!({
        "Env": field("Env"),
        "Labels": labels,
        "Cmd": non_empty(field("Cmd")),
        "Entrypoint": non_empty(field("Entrypoint")),
        "WorkingDir": non_empty(field("WorkingDir")),
        "User": non_empty(field("User")),
        "ExposedPorts": non_empty(field("ExposedPorts")),
        "Volumes": non_empty(field("Volumes")),
        "StopSignal": non_empty(field("StopSignal")),
        "author": non_empty(author.clone()),
    })
}

fn build_args(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("build-args"))
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `flags` file's flags, each line split at its first space.
fn flags(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("flags"))
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_once(' '))
                .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
                .collect()
        })
        .unwrap_or_default()
}

fn buildah_config(env: &Env, case: &Path, args: &[String]) -> Value {
    let storage = env.path("buildah");
    let base = [
        "--root".to_string(),
        storage.join("root").display().to_string(),
        "--runroot".to_string(),
        storage.join("run").display().to_string(),
        "--storage-driver".to_string(),
        "vfs".to_string(),
    ];
    let mut bud: Vec<String> = base.to_vec();
    bud.extend(["bud", "-q", "-t", "localhost/diff:1", "-f"].map(String::from));
    bud.push(case.join("Kubefile").display().to_string());
    for a in args {
        bud.push("--build-arg".into());
        bud.push(a.clone());
    }
    bud.extend(flags(case));
    bud.push(case.display().to_string());
    let out = Command::new("buildah")
        .args(&bud)
        .output()
        .expect("buildah is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "buildah bud {}: {}",
        case.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut inspect: Vec<String> = base.to_vec();
    inspect.extend(["inspect", "--type", "image", "localhost/diff:1"].map(String::from));
    let out = Command::new("buildah").args(&inspect).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    comparable(&v["OCIv1"]["config"], &v["OCIv1"]["author"])
}

fn sealrs_config(env: &Env, case: &Path, args: &[String]) -> Value {
    // The config is compared here, not the rootfs: the samples carry sealos
    // labels without the files a layout requires (tests/layout.rs covers that).
    let mut cmd: Vec<String> = vec![
        "build".into(),
        "-q".into(),
        "--skip-validation".into(),
        "-t".into(),
        "diff:1".into(),
    ];
    for a in args {
        cmd.push("--build-arg".into());
        cmd.push(a.clone());
    }
    cmd.extend(flags(case));
    cmd.push(case.display().to_string());
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    env.ok(&refs);
    let v = skopeo_config(&env.oci_ref("docker.io/library/diff:1"));
    comparable(&v["config"], &v["author"])
}

#[test]
fn sealrs_writes_the_config_buildah_derives_from_every_sample_kubefile() {
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kubefiles");
    let mut cases: Vec<_> = std::fs::read_dir(&cases_dir)
        .expect("tests/data/kubefiles holds the sample Kubefiles")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Kubefile").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "expected the sample Kubefiles, found {}",
        cases.len()
    );
    let mut mismatches = Vec::new();
    for case in &cases {
        let env = Env::new();
        let args = build_args(case);
        let theirs = buildah_config(&env, case, &args);
        let ours = sealrs_config(&env, case, &args);
        if theirs != ours {
            mismatches.push(format!(
                "{}:\n  buildah: {theirs}\n  sealrs:  {ours}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "configs differ:\n{}",
        mismatches.join("\n")
    );
}
