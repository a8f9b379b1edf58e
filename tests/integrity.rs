//! What `sealrs installer` keeps on a host: complete under its digest name
//! whatever stops it, durable before it is named, and no leftovers of
//! interrupted runs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::common::Env;

/// A plain tar layer of a few large files and many small ones, with the
/// content each file must have.
fn big_layer() -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut files = BTreeMap::new();
    for i in 0..4u32 {
        let bytes: Vec<u8> = (0..12_000_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        files.insert(format!("images/big-{i}.tar"), bytes);
    }
    for i in 0..300u32 {
        files.insert(
            format!("etc/small/{i}.conf"),
            format!("key{i}: {i}\n").into(),
        );
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    (tar.into_inner().unwrap(), files)
}

/// `installer unpack` of `dir` (named by `blob`'s digest) arriving on stdin.
fn unpack_cmd(env: &Env, dir: &Path, dest: &Path, size: usize) -> Command {
    let dir = dir.display().to_string();
    let dest = dest.display().to_string();
    env.cmd(&[
        "installer",
        "unpack",
        "--dest",
        &dest,
        &dir,
        "--incoming",
        &format!("{dir}={size}"),
    ])
}

/// Every file of the layer is in `dir` with its whole content, nothing else.
fn complete(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    for (path, bytes) in files {
        let got = fs::read(dir.join(path)).map_err(|e| format!("{path}: {e}"))?;
        if &got != bytes {
            return Err(format!("{path}: {} bytes of {}", got.len(), bytes.len()));
        }
    }
    Ok(())
}

/// The temp names an interrupted run leaves beside layers and rootfs.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|read| {
            read.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".incoming-") || n.contains(".tmp-") || n.contains(".old-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A pseudo-random number from the clock: each run kills at other moments.
fn random(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos.wrapping_mul(6_364_136_223_846_793_005) >> 17) % below.max(1)
}

/// SIGKILL at random points of a large layer's transfer and unpack (while
/// bytes arrive, after the last byte while it syncs and renames): whenever
/// the digest-named directory exists it holds the whole layer; the rootfs,
/// when there, too. The next whole run removes every temp directory the
/// killed ones left and reports it.
#[test]
fn a_killed_unpack_never_leaves_an_incomplete_layer_under_its_digest_and_the_next_run_cleans_up() {
    let env = Env::new();
    let (blob, files) = big_layer();
    let layers = env.path("host/var/lib/sealrs/layers/sha256");
    let dir = layers.join(hex::encode(sha2::Sha256::digest(&blob)));
    // Named as on a host: by the image's digest.
    let dest = env.path(&format!("host/var/lib/sealrs/rootfs/{}", "c".repeat(64)));
    let mut killed_with_leftovers = 0;
    for round in 0..8u64 {
        let mut child = unpack_cmd(&env, &dir, &dest, blob.len())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Rounds 0..6: killed after a random share of the bytes; 6 and 7:
        // every byte sent, killed a random moment later (while it syncs).
        let cut = if round < 6 {
            random(blob.len() as u64) as usize
        } else {
            blob.len()
        };
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&blob[..cut]);
        if round >= 6 {
            std::thread::sleep(Duration::from_millis(random(400)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        if dir.exists() {
            complete(&dir, &files).unwrap_or_else(|e| panic!("round {round}: {dir:?}: {e}"));
        }
        if dest.exists() {
            complete(&dest, &files).unwrap_or_else(|e| panic!("round {round}: {dest:?}: {e}"));
        }
        if !leftovers(&layers).is_empty() || !leftovers(dest.parent().unwrap()).is_empty() {
            killed_with_leftovers += 1;
        }
        // Start again from nothing but the leftovers.
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(
        killed_with_leftovers > 0,
        "no kill landed while a temp directory existed"
    );

    // A leftover of the installer bootstrap too (a dead pid), and one of a
    // live process (ours) that must stay.
    let dead = layers.join(format!("{}.incoming-999999999.blob", "a".repeat(64)));
    fs::write(&dead, b"half").unwrap();
    let live = layers.join(format!(".incoming-{}-x", std::process::id()));
    fs::create_dir(&live).unwrap();

    let started = Instant::now();
    let out = crate::common::with_stdin(unpack_cmd(&env, &dir, &dest, blob.len()), &blob);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("left by an interrupted run"), "{stderr}");
    complete(&dir, &files).unwrap();
    complete(&dest, &files).unwrap();
    assert!(!dead.exists(), "{stderr}");
    assert_eq!(
        leftovers(&layers),
        vec![live.file_name().unwrap().to_string_lossy().into_owned()],
        "{stderr}"
    );
    assert!(leftovers(dest.parent().unwrap()).is_empty(), "{stderr}");
    eprintln!("a whole unpack took {:?}", started.elapsed());
}

/// The order that makes a name trustworthy after a power cut, as the
/// installer issues it (strace): the layer's temp directory is synced
/// (syncfs) before it is renamed to the digest name, and the layers
/// directory is fsynced after; the same for the rootfs.
#[test]
fn a_layer_and_the_rootfs_are_synced_before_they_get_their_names() {
    let env = Env::new();
    let blob = {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "bin/k3s", &b"k3s\n\n"[..]).unwrap();
        tar.into_inner().unwrap()
    };
    let layers = env.path("layers/sha256");
    let hex = hex::encode(sha2::Sha256::digest(&blob));
    let dir = layers.join(&hex);
    let dest = env.path("rootfs/image");
    let trace = env.path("trace");
    let sealrs = unpack_cmd(&env, &dir, &dest, blob.len());
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-y",
        "-qq",
        "-e",
        "trace=syncfs,fsync,rename,renameat,renameat2",
    ])
    .arg("-o")
    .arg(&trace)
    .arg(sealrs.get_program())
    .args(sealrs.get_args())
    .envs(
        sealrs
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
    );
    let out = crate::common::with_stdin(cmd, &blob);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let at = |what: &dyn Fn(&str) -> bool, name: &str| -> usize {
        lines
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("no {name} in:\n{trace}"))
    };
    let layers_dir = layers.display().to_string();
    let rootfs_dir = env.path("rootfs").display().to_string();
    let synced_layer = at(
        &|l| l.contains("syncfs(") && l.contains(".incoming-"),
        "syncfs of the layer",
    );
    let named_layer = at(
        &|l| l.contains("rename") && l.contains(".incoming-") && l.contains(&format!("/{hex}\"")),
        "rename to the digest",
    );
    let parent_synced = lines[named_layer..]
        .iter()
        .any(|l| l.contains("fsync(") && l.contains(&format!("<{layers_dir}>)")));
    assert!(synced_layer < named_layer, "{trace}");
    assert!(
        parent_synced,
        "the layers directory is not fsynced after the rename:\n{trace}"
    );
    let synced_rootfs = at(
        &|l| l.contains("syncfs(") && l.contains("image.tmp-"),
        "syncfs of the rootfs",
    );
    let named_rootfs = at(
        &|l| l.contains("rename") && l.contains("image.tmp-") && l.contains("/image\""),
        "rename of the rootfs",
    );
    assert!(synced_rootfs < named_rootfs, "{trace}");
    assert!(
        lines[named_rootfs..]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&format!("<{rootfs_dir}>)"))),
        "the rootfs directory is not fsynced after the rename:\n{trace}"
    );
}

/// `sealrs ARGS... <ssh flags>` on `hosts`; its stderr, or a panic with it.
fn on_hosts(env: &Env, hosts: &crate::hosts::TestHosts, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(crate::run::ssh_flags(hosts));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sealrs {args:?} failed:\n{stderr}");
    stderr
}

/// The digest-named entries of a directory on a host.
fn listed(host: &crate::hosts::Host, dir: &str) -> std::collections::BTreeSet<String> {
    host.exec_ok(&["ls", "-A", dir])
        .lines()
        .map(str::to_string)
        .collect()
}

/// On a real host: what interrupted transfers left (a layer's temp
/// directory, the bootstrap's blob, a rootfs being assembled) is gone after
/// a re-run; then three upgrades each leave only the current and the
/// previous image's rootfs and layers, the bytes freed said.
#[test]
fn leftovers_go_on_the_next_run_and_three_upgrades_keep_two_images() {
    use sealrs::host_paths::{DEFAULT_ROOTFS_DIR, HOST_LAYERS};
    let hosts = crate::hosts::TestHosts::boot(1);
    let host = &hosts[0];
    let env = Env::new();
    let dir = crate::layout::example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[], &[]);

    // Left as a power cut mid-transfer leaves them (pids that are gone).
    let hex = "a".repeat(64);
    let left = [
        format!("{HOST_LAYERS}/.incoming-999999999-Xy12ab"),
        format!("{HOST_LAYERS}/{hex}.incoming-999999999"),
        format!("{HOST_LAYERS}/{hex}.incoming-999999999.blob"),
        format!("{DEFAULT_ROOTFS_DIR}/{hex}.tmp-999999999-Qz"),
    ];
    for path in [&left[0], &left[1], &left[3]] {
        host.exec_ok(&["mkdir", "-p", path]);
    }
    host.exec_ok(&[
        "sh",
        "-c",
        &format!("head -c 3000000 /dev/zero > {}", left[2]),
    ]);
    let ips = host.ip.clone();
    on_hosts(&env, &hosts, &["run", "k3s-cluster:1", "--masters", &ips]);
    for path in &left {
        assert!(
            !host.exec(&["test", "-e", path]).status.success(),
            "{path} is still there"
        );
    }

    let layers_of = |image: &str| -> std::collections::BTreeSet<String> {
        crate::common::skopeo_inspect(&env.oci_ref(&format!("docker.io/library/{image}")))["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l.as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string()
            })
            .collect()
    };
    let digest_of = |image: &str| -> String {
        let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
        doc["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    for n in 2..=4 {
        let tag = format!("k3s-cluster:{n}");
        env.write(
            &format!("{dir}/manifests/sealrs-info.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sealrs-system-v{n}\n"),
        );
        crate::layout::standin_version(&env, &dir, &format!("v1.30.{}+k3s1", n + 1));
        env.ok(&[
            "build",
            "-q",
            "--no-images",
            "--build-arg",
            &format!("VERSION=v1.30.{}+k3s1", n + 1),
            "-t",
            &tag,
            &dir,
        ]);
        let said = on_hosts(&env, &hosts, &["upgrade", &tag]);
        let previous = format!("k3s-cluster:{}", n - 1);
        let rootfs = listed(host, DEFAULT_ROOTFS_DIR);
        assert_eq!(
            rootfs,
            [digest_of(&tag), digest_of(&previous)].into(),
            "after the upgrade to {tag}"
        );
        let kept: std::collections::BTreeSet<String> = layers_of(&tag)
            .union(&layers_of(&previous))
            .cloned()
            .collect();
        let on_host = listed(host, HOST_LAYERS);
        assert!(
            on_host.is_subset(&kept),
            "after the upgrade to {tag}: {:?} belong to no kept image",
            on_host.difference(&kept).collect::<Vec<_>>()
        );
        if n > 2 {
            assert!(said.contains("B freed"), "{said}");
        }
        // Root's alone: an image's config may hold a token.
        for dir in rootfs
            .iter()
            .map(|d| format!("{DEFAULT_ROOTFS_DIR}/{d}"))
            .chain(on_host.iter().map(|l| format!("{HOST_LAYERS}/{l}")))
        {
            assert_eq!(
                host.exec_ok(&["stat", "-c", "%a", &dir]).trim(),
                "700",
                "{dir}"
            );
        }
    }
}

/// Through the installer on a temp host root: the image's config template
/// merged under ours (as k3s' and k0s' plans write their config) takes an
/// env value holding newlines, `: `, quotes, `#`, `{{` and `$` as exactly
/// one string; no key is added to the config.
#[test]
fn an_env_value_in_the_images_config_template_adds_no_key() {
    use sealrs::plan::{FileContent, Plan, Step};
    let env = Env::new();
    let evil = "s3cret\ndisable-apiserver: true\ntoken: \"x' # {{ .T }} ${HOME} $$";
    let host = env.path("host");
    env.write(
        "host/var/lib/sealrs/rootfs/etc/config.yaml",
        "token: ${TOKEN}\nnode-label:\n- \"team=${TOKEN}\"\nwrite-kubeconfig-mode: '0644'\n",
    );
    let mut plan = Plan::new(
        "k3s",
        "install",
        "10.0.0.1",
        vec![("TOKEN".into(), evil.into())],
    );
    plan.push(Step::write_file(
        "config",
        "/etc/rancher/k3s/config.yaml",
        FileContent::YamlMerge {
            base: Some("/var/lib/sealrs/rootfs/etc/config.yaml".into()),
            base_is_template: true,
            overlay: "node-ip: 10.0.0.1\n".into(),
            keep: None,
        },
        0o600,
    ));
    let systemctl = env.write_mode("tools/systemctl", "#!/bin/sh\nexit 1\n", 0o755);
    let (rootfs, host_root, systemctl) = (
        env.path("host/var/lib/sealrs/rootfs").display().to_string(),
        host.display().to_string(),
        systemctl.display().to_string(),
    );
    let out = crate::common::with_stdin(
        env.cmd(&[
            "installer",
            "apply",
            "--rootfs",
            &rootfs,
            "--host-root",
            &host_root,
            "--systemctl",
            &systemctl,
        ]),
        plan.to_json().as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(host.join("etc/rancher/k3s/config.yaml")).unwrap();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let keys: Vec<&str> = config
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["token", "node-label", "write-kubeconfig-mode", "node-ip"],
        "{text}"
    );
    assert_eq!(config["token"].as_str(), Some(evil), "{text}");
    assert_eq!(
        config["node-label"][0].as_str(),
        Some(format!("team={evil}").as_str()),
        "{text}"
    );
    assert_eq!(config["write-kubeconfig-mode"].as_str(), Some("0644"));
}

/// The SHA-256 of a file on a host.
fn sha_on(host: &crate::hosts::Host, path: &str) -> String {
    host.exec_ok(&["sha256sum", path])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `sealrs verify --format json` of the saved cluster: whether it passed,
/// and each damaged file's path with what was expected and found.
fn verify_json(
    env: &Env,
    hosts: &crate::hosts::TestHosts,
) -> (bool, Vec<(String, String, String)>) {
    let mut args: Vec<String> = vec!["verify".into(), "--format".into(), "json".into()];
    args.extend(crate::run::ssh_flags(hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(doc["clean"].as_bool(), Some(out.status.success()), "{doc}");
    let damaged = doc["hosts"][0]["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap().to_string();
            (s("path"), s("expected"), s("found"))
        })
        .collect();
    (out.status.success(), damaged)
}

/// On a real host, after a run: an administrator's `>>` to a placed config
/// leaves the layer's file as it was, and `sealrs verify` names the config;
/// then a flipped byte and a truncation, each in a layer file, in the
/// placed binary (a read-only hard link into its layer) and in a placed
/// config: `sealrs verify` names every damaged file with what was expected
/// and found and fails; the next `run` says what it repairs, sends the
/// damaged layer again and restores the placed files; `verify` is clean
/// after.
#[test]
fn damage_in_layers_placed_binaries_and_configs_is_named_by_verify_and_repaired_by_the_next_run() {
    use sealrs::host_paths::HOST_LAYERS;
    let hosts = crate::hosts::TestHosts::boot(1);
    let host = &hosts[0];
    let env = Env::new();
    let dir = crate::layout::example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[], &[]);
    let ip = host.ip.clone();
    let in_layer = |rel: &str| {
        host.exec_ok(&["sh", "-c", &format!("ls {HOST_LAYERS}/*/{rel}")])
            .trim()
            .to_string()
    };
    let (binary, registries, manifest) = (
        "/usr/local/bin/k3s",
        "/etc/rancher/k3s/registries.yaml",
        "/var/lib/rancher/k3s/server/manifests/sealrs-info.yaml",
    );
    let (layer_binary, layer_registries, layer_manifest) = (
        in_layer("bin/k3s"),
        in_layer("etc/registries.yaml"),
        in_layer("manifests/sealrs-info.yaml"),
    );
    let files = [
        binary,
        registries,
        manifest,
        &layer_binary,
        &layer_registries,
        &layer_manifest,
    ];
    let good: BTreeMap<&str, String> = files.iter().map(|f| (*f, sha_on(host, f))).collect();
    assert_eq!(
        host.exec_ok(&["stat", "-c", "%a %i", binary]),
        host.exec_ok(&["stat", "-c", "555 %i", &layer_binary]),
        "the binary: a read-only hard link into its layer"
    );
    assert_ne!(
        host.exec_ok(&["stat", "-c", "%i", registries]),
        host.exec_ok(&["stat", "-c", "%i", &layer_registries]),
        "a config: a copy"
    );
    // Every layer has its record, the installer's too (unpacked by the
    // bootstrap's tar, recorded by the installer right after).
    let count = |pattern: &str| {
        host.exec_ok(&[
            "sh",
            "-c",
            &format!("ls -d {HOST_LAYERS}/{pattern} | wc -l"),
        ])
        .trim()
        .to_string()
    };
    assert_eq!(count("*/.sealrs-files.json"), count("*"));
    assert_eq!(count("*/opt/sealrs/sealrs"), "1");
    assert_eq!(verify_json(&env, &hosts), (true, Vec::new()));
    let all_good = || {
        for f in files {
            assert_eq!(sha_on(host, f), good[f], "{f}");
        }
    };

    // An administrator's edit: the layer keeps its bytes.
    host.exec_ok(&["sh", "-c", &format!("echo 'configs: {{}}' >> {registries}")]);
    assert_eq!(
        sha_on(host, &layer_registries),
        good[layer_registries.as_str()]
    );
    let (ok, damaged) = verify_json(&env, &hosts);
    assert!(!ok);
    assert_eq!(
        damaged.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        [registries]
    );
    // For people: the file, what it should hold and what it holds.
    let mut args = vec!["verify".to_string()];
    args.extend(crate::run::ssh_flags(&hosts));
    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{table}");
    assert!(
        table.contains(&format!(
            "{ip}: 1 damaged file\n  {registries}: expected {} bytes, sha256 {}, found ",
            host.exec_ok(&["stat", "-c", "%s", &layer_registries])
                .trim(),
            good[registries]
        )),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sealrs run --cluster default"),
        "what to do"
    );
    let said = on_hosts(&env, &hosts, &["run", "k3s-cluster:1", "--masters", &ip]);
    assert!(
        said.contains("1 file damaged, repaired by this run") && said.contains(registries),
        "{said}"
    );
    all_good();
    assert_eq!(verify_json(&env, &hosts), (true, Vec::new()));

    // `dd` writes byte 3 of each (a flip), or `truncate` cuts each to 3 bytes.
    let flip = |path: &str| {
        format!("printf '\\001' | dd of={path} bs=1 seek=2 count=1 conv=notrunc 2>/dev/null")
    };
    let cut = |path: &str| format!("truncate -s 3 {path}");
    for (how, damage) in [
        ("flip", &flip as &dyn Fn(&str) -> String),
        ("truncation", &cut),
    ] {
        for path in [layer_manifest.as_str(), binary, registries] {
            host.exec_ok(&["sh", "-c", &damage(path)]);
        }
        let (ok, damaged) = verify_json(&env, &hosts);
        assert!(!ok, "{how}");
        let named: std::collections::BTreeSet<&str> =
            damaged.iter().map(|d| d.0.as_str()).collect();
        // The binary's layer file is the placed binary's inode.
        let want: std::collections::BTreeSet<&str> = [
            layer_manifest.as_str(),
            binary,
            registries,
            layer_binary.as_str(),
        ]
        .into();
        assert_eq!(named, want, "{how}: {damaged:?}");
        for (path, expected, found) in &damaged {
            assert_ne!(expected, found, "{how}: {path}");
            if how == "truncation" {
                assert_eq!(found, "3 bytes", "{how}: {path}");
            }
        }
        let mut args: Vec<String> = ["run", "k3s-cluster:1", "--masters", &ip, "--format", "json"]
            .map(String::from)
            .into();
        args.extend(crate::run::ssh_flags(&hosts));
        let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{how}: {said}");
        assert!(
            said.contains("4 files damaged, repaired by this run"),
            "{how}: {said}"
        );
        for path in &want {
            assert!(said.contains(path), "{how}: {path} not named: {said}");
        }
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let repaired: std::collections::BTreeSet<&str> = result["hosts"][0]["repaired"]
            .as_array()
            .unwrap_or_else(|| panic!("{result}"))
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(repaired, want, "{how}: {result}");
        all_good();
        assert_eq!(verify_json(&env, &hosts), (true, Vec::new()), "{how}");
        // Repaired for good: the next run has nothing to repair.
        let said = on_hosts(&env, &hosts, &["run", "k3s-cluster:1", "--masters", &ip]);
        assert!(!said.contains("damaged"), "{how}: {said}");
    }
}
