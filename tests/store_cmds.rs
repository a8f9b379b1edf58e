//! images, inspect, tag, rmi, prune, save and load, checked with skopeo.

use crate::common::{skopeo_inspect, tool, Env};

fn small_image(env: &Env, tag: &str, content: &str) -> String {
    small_image_with(env, tag, content, "zstd")
}

fn small_image_with(env: &Env, tag: &str, content: &str, compression: &str) -> String {
    let dir = format!("ctx-{}", tag.replace([':', '/'], "-"));
    env.write(
        &format!("{dir}/Kubefile"),
        "FROM scratch\nLABEL a=b\nCOPY f /f\n",
    );
    env.write(&format!("{dir}/f"), content);
    let out = env.ok(&["build", "-q", "--compression", compression, "-t", tag, &dir]);
    out.trim().to_string()
}

#[test]
fn images_lists_every_tag_and_json_is_machine_readable() {
    let env = Env::new();
    let d1 = small_image(&env, "one:1", "1");
    let d2 = small_image(&env, "registry.example.com:5000/team/two:2", "2");
    let table = env.ok(&["images"]);
    assert!(table.contains("docker.io/library/one"), "{table}");
    assert!(
        table.contains("registry.example.com:5000/team/two"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["images", "--format", "json"])).unwrap();
    let digests: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert!(
        digests.contains(&d1.as_str()) && digests.contains(&d2.as_str()),
        "{json}"
    );
}

#[test]
fn inspect_shows_manifest_and_config() {
    let env = Env::new();
    let digest = small_image(&env, "insp:1", "x");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "insp:1"])).unwrap();
    assert_eq!(json["digest"], digest.as_str());
    assert_eq!(json["config"]["config"]["Labels"]["a"], "b");
    let table = env.ok(&["inspect", "--format", "table", "insp:1"]);
    assert!(table.contains("a=b"), "{table}");
}

#[test]
fn tag_adds_a_name_and_rmi_removes_names_then_unused_blobs() {
    let env = Env::new();
    let digest = small_image(&env, "orig:1", "content-orig");
    env.ok(&["tag", "orig:1", "alias:2", "example.com/x/y:3"]);
    let alias = skopeo_inspect(&env.oci_ref("example.com/x/y:3"));
    assert_eq!(alias["Digest"], digest.as_str());

    env.ok(&["rmi", "orig:1", "alias:2"]);
    let blobs_while_tagged = env.store_state().0.len();
    assert!(
        blobs_while_tagged >= 3,
        "manifest, config and layer remain for the last name"
    );
    env.ok(&["rmi", "example.com/x/y:3"]);
    assert_eq!(
        env.store_state().0.len(),
        0,
        "no image left, so no blob left"
    );
}

#[test]
fn prune_removes_only_unreferenced_blobs() {
    let env = Env::new();
    small_image(&env, "keep:1", "keep");
    let before = env.store_state().0;
    let stray = env.root.join("oci/blobs/sha256").join("0".repeat(64));
    std::fs::write(&stray, "stray").unwrap();
    env.ok(&["prune"]);
    assert!(!stray.exists());
    assert_eq!(env.store_state().0, before);
    skopeo_inspect(&env.oci_ref("docker.io/library/keep:1"));
}

#[test]
fn save_and_load_round_trip_and_skopeo_reads_the_archive() {
    let env = Env::new();
    let d1 = small_image(&env, "s1:1", "one");
    let d2 = small_image(&env, "s2:1", "two");
    env.ok(&["save", "-o", "both.tar", "s1:1", "s2:1"]);
    let archive = env.path("both.tar");
    let inspected = skopeo_inspect(&format!(
        "oci-archive:{}:docker.io/library/s2:1",
        archive.display()
    ));
    assert_eq!(inspected["Digest"], d2.as_str());

    let other = Env::new();
    let loaded = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("docker.io/library/s1:1") && loaded.contains("docker.io/library/s2:1"));
    let json: serde_json::Value = serde_json::from_str(&other.ok(&["inspect", "s1:1"])).unwrap();
    assert_eq!(json["digest"], d1.as_str());
    other.ok(&["fsck"]);
}

#[test]
fn load_reads_a_docker_archive_written_by_skopeo() {
    let env = Env::new();
    // docker-archive has no zstd layers, and Debian's umoci 0.4.7 reads none.
    small_image_with(&env, "dock:1", "docker archive content", "gzip");
    let archive = env.path("docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &env.oci_ref("docker.io/library/dock:1"),
            &format!("docker-archive:{}:example.com/dock:7", archive.display()),
        ],
    );
    let other = Env::new();
    let loaded = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("example.com/dock:7"), "{loaded}");
    let bundle = other.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:example.com/dock:7", other.layout().display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/f")).unwrap(),
        "docker archive content"
    );
}

#[test]
fn fsck_finds_a_corrupted_byte() {
    let env = Env::new();
    small_image(&env, "fs:1", &"abc".repeat(100));
    env.ok(&["fsck"]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "fs:1"])).unwrap();
    let layer = json["manifest"]["layers"][0]["digest"].as_str().unwrap();
    let path = env
        .root
        .join("oci/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let stderr = env.fails(&["fsck"]);
    assert!(stderr.contains("damaged"), "{stderr}");
}

/// The IMAGE IDs `images -q` prints, in its order.
fn ids(env: &Env) -> Vec<String> {
    env.ok(&["-q", "images"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn inspect_name(env: &Env, image: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    json["name"].as_str().unwrap().to_string()
}

#[test]
fn images_are_named_by_image_id_digest_and_docker_prefix() {
    let env = Env::new();
    let digest = small_image(&env, "byid:1", "by id");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "byid:1"])).unwrap();
    let config = json["id"].as_str().unwrap().to_string();
    let id = ids(&env).remove(0);
    assert!(config.starts_with(&format!("sha256:{id}")), "{config} {id}");
    for name in [
        id.clone(),
        id[..6].to_string(),
        config.clone(),
        config.trim_start_matches("sha256:").to_string(),
        digest.clone(),
        format!("byid@{digest}"),
        "docker://byid:1".to_string(),
    ] {
        assert_eq!(
            inspect_name(&env, &name),
            "docker.io/library/byid:1",
            "{name}"
        );
    }
    let stderr = env.fails(&["inspect", &format!("other@{digest}")]);
    assert!(stderr.contains("no such image"), "{stderr}");
    let stderr = env.fails(&["inspect", "oci:/some/layout:app"]);
    assert!(
        stderr.contains("skopeo copy oci:DIR:REF oci-archive:") && stderr.contains("sealrs load"),
        "{stderr}"
    );
    // The other local commands take an ID too.
    env.ok(&["tag", &id, "renamed:2"]);
    env.ok(&["save", "-o", "by-id.tar", &id]);
    let loaded = Env::new().ok(&["load", "-i", env.path("by-id.tar").to_str().unwrap()]);
    assert!(
        loaded.contains("docker.io/library/byid:1")
            && loaded.contains("docker.io/library/renamed:2"),
        "an image saved by ID keeps all its names: {loaded}"
    );
    let stderr = env.fails(&["push", &id]);
    assert!(stderr.contains("give the destination"), "{stderr}");
}

#[test]
fn an_id_prefix_that_fits_several_images_lists_them() {
    let env = Env::new();
    // Seventeen IDs cannot all start with different hex digits.
    let mut first_digits: Vec<char> = Vec::new();
    for n in 0..17 {
        small_image(&env, &format!("amb{n}:1"), &format!("content {n}"));
        let ids = ids(&env);
        first_digits = ids.iter().map(|id| id.chars().next().unwrap()).collect();
        let mut unique = first_digits.clone();
        unique.sort();
        unique.dedup();
        if unique.len() < first_digits.len() {
            break;
        }
    }
    let ids = ids(&env);
    let shared = first_digits
        .iter()
        .find(|c| first_digits.iter().filter(|d| d == c).count() > 1)
        .unwrap()
        .to_string();
    let stderr = env.fails(&["inspect", &shared]);
    assert!(stderr.contains("ambiguous"), "{stderr}");
    for id in ids.iter().filter(|id| id.starts_with(&shared)) {
        assert!(stderr.contains(id.as_str()), "{id} not listed: {stderr}");
    }
}

#[test]
fn images_filters_by_repository_and_q_prints_each_id_once() {
    let env = Env::new();
    small_image(&env, "alpha:1", "a");
    env.ok(&["tag", "alpha:1", "alpha:2", "beta:1"]);
    small_image(&env, "gamma:1", "g");
    let ids = ids(&env);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == 12), "{ids:?}");

    let table = env.ok(&["images", "alpha"]);
    assert_eq!(table.lines().count(), 3, "header and two tags:\n{table}");
    assert!(
        !table.contains("beta") && !table.contains("gamma"),
        "{table}"
    );
    let table = env.ok(&["images", "docker.io/library/alpha:2"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    let none = env.ok(&["images", "nothing"]);
    assert_eq!(none.lines().count(), 1, "{none}");
}

#[test]
fn rmi_by_id_needs_force_when_the_image_has_several_names() {
    let env = Env::new();
    small_image(&env, "many:1", "m");
    env.ok(&["tag", "many:1", "many:2"]);
    let id = ids(&env).remove(0);
    let stderr = env.fails(&["rmi", &id]);
    assert!(
        stderr.contains("rmi -f") && stderr.contains("docker.io/library/many:2"),
        "{stderr}"
    );
    assert_eq!(ids(&env), vec![id.clone()], "nothing was removed");
    env.ok(&["rmi", "-f", &id]);
    assert!(ids(&env).is_empty());
    assert_eq!(env.store_state().0.len(), 0, "its blobs went too");

    let stderr = env.fails(&["rmi", "-f", "never:1"]);
    assert!(stderr.contains("no such image"), "{stderr}");
    let help = env.ok(&["rmi", "--help"]);
    assert!(
        help.contains("-f, --force") && help.contains("several names"),
        "{help}"
    );
}

#[test]
fn save_writes_to_a_pipe_and_load_reads_standard_input() {
    let env = Env::new();
    let digest = small_image(&env, "piped:1", "through a pipe");
    let out = env.run(&["save", "piped:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() > 512, "an archive on stdout");
    std::fs::write(env.path("piped.tar"), &out.stdout).unwrap();
    skopeo_inspect(&format!(
        "oci-archive:{}:docker.io/library/piped:1",
        env.path("piped.tar").display()
    ));
    assert!(
        std::fs::read_dir(env.root.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no temporary archive is left in the store"
    );

    let other = Env::new();
    let loaded = crate::common::with_stdin(other.cmd(&["load"]), &out.stdout);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout).trim(),
        "docker.io/library/piped:1"
    );
    let json: serde_json::Value = serde_json::from_str(&other.ok(&["inspect", "piped:1"])).unwrap();
    assert_eq!(json["digest"], digest.as_str());

    let junk = crate::common::with_stdin(other.cmd(&["load"]), b"not an archive");
    assert!(!junk.status.success());
    assert!(String::from_utf8_lossy(&junk.stderr).contains("standard input"));
}

#[test]
fn inspect_of_several_images_prints_a_json_array() {
    let env = Env::new();
    let d1 = small_image(&env, "arr1:1", "1");
    let d2 = small_image(&env, "arr2:1", "2");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "arr1:1", "arr2:1"])).unwrap();
    let digests: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].clone())
        .collect();
    assert_eq!(digests, [d1.as_str(), d2.as_str()]);
}

#[test]
fn tag_says_when_a_name_moves_from_another_image() {
    let env = Env::new();
    small_image(&env, "old:1", "old");
    small_image(&env, "new:1", "new");
    let old_id = ids(&env)
        .into_iter()
        .find(|id| inspect_name(&env, id) == "docker.io/library/old:1");
    let old_id = old_id.unwrap();
    env.ok(&["tag", "old:1", "app:1"]);
    let out = env.run(&["tag", "new:1", "app:1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker.io/library/app:1 moved from image") && stderr.contains(&old_id),
        "{stderr}"
    );
}

#[test]
fn images_lists_the_others_when_one_image_lost_a_blob() {
    let env = Env::new();
    small_image(&env, "good:1", "good");
    small_image(&env, "bad:1", "bad");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "bad:1"])).unwrap();
    let layer = json["manifest"]["layers"][0]["digest"].as_str().unwrap();
    std::fs::remove_file(
        env.root
            .join("oci/blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    let out = env.run(&["images"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let good = table.lines().find(|l| l.contains("library/good")).unwrap();
    assert!(good.contains(" B"), "{table}");
    let bad = table.lines().find(|l| l.contains("library/bad")).unwrap();
    assert!(bad.contains("<broken: missing blob sha256:"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fsck"));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let env = Env::new();
    small_image(&env, "pipe:1", "p");
    for args in [
        &["images"][..],
        &["inspect", "pipe:1"],
        &["completion", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env.cmd(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn completion_scripts_leave_out_the_hidden_installer() {
    let env = Env::new();
    let bash = env.ok(&["completion", "bash"]);
    assert!(
        bash.contains("sealrs__subcmd__rmi") && bash.contains("--force"),
        "{bash}"
    );
    assert!(!bash.contains("__installer"), "the installer is offered");
    let top = bash
        .lines()
        .find(|l| l.contains("opts=\"") && l.contains("build"))
        .unwrap();
    assert!(!top.contains("installer"), "{top}");
    for shell in ["zsh", "fish"] {
        let script = env.ok(&["completion", shell]);
        assert!(script.contains("inspect"), "{shell}");
        assert!(
            !script.contains("installer unpack") && !script.contains("'installer"),
            "{shell}"
        );
    }
    assert!(!env.ok(&["--help"]).contains("installer"));
}

#[test]
fn run_takes_the_cluster_image_by_image_id() {
    let env = Env::new();
    let dir = crate::layout::example(&env, "k3s", "k3s");
    let built = env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k3s-id:1",
        &dir,
    ]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "k3s-id:1"])).unwrap();
    let id = &json["id"].as_str().unwrap()["sha256:".len()..][..12];
    for image in [id, built.trim()] {
        let out = env.ok(&["run", image, "--dry-run", "--masters", "10.250.200.11"]);
        assert!(
            out.contains("# 10.250.200.11 (master): install"),
            "{image}: {out}"
        );
    }
}
