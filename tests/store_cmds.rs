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
