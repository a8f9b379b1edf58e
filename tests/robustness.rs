//! Two builds at once, and builds killed with SIGKILL: the store stays readable.

use std::io::Write;
use std::time::Duration;

use crate::common::{skopeo_inspect, Env};

/// A context with a file big enough that a build takes a while to write it.
fn slow_context(env: &Env, dir: &str, seed: u8) {
    env.write(&format!("{dir}/Kubefile"), "FROM scratch\nCOPY . /data/\n");
    let path = env.path(&format!("{dir}/big.bin"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u32 = 0x9e3779b9 ^ u32::from(seed);
    let mut block = vec![0u8; 1 << 16];
    for _ in 0..(48 << 20) / block.len() {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        f.write_all(&block).unwrap();
    }
    env.write(&format!("{dir}/small.yaml"), format!("seed: {seed}\n"));
}

#[test]
fn two_builds_at_once_both_land_in_the_index() {
    let env = Env::new();
    slow_context(&env, "a", 1);
    slow_context(&env, "b", 2);
    let mut a = env
        .cmd(&["build", "-q", "-t", "par-a:1", "a"])
        .spawn()
        .unwrap();
    let mut b = env
        .cmd(&["build", "-q", "-t", "par-b:1", "b"])
        .spawn()
        .unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    skopeo_inspect(&env.oci_ref("docker.io/library/par-a:1"));
    skopeo_inspect(&env.oci_ref("docker.io/library/par-b:1"));
    env.ok(&["fsck"]);
    env.assert_blobs_intact();
}

#[test]
fn a_build_killed_at_any_point_leaves_a_readable_store() {
    let env = Env::new();
    env.write("base/Kubefile", "FROM scratch\nCOPY f /f\n");
    env.write("base/f", "base\n");
    let base = env.build("base:1", "base");
    slow_context(&env, "big", 3);
    for delay_ms in [5u64, 20, 60, 150, 400, 900] {
        let mut child = env
            .cmd(&["build", "-q", "--no-cache", "-t", "killed:1", "big"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        env.assert_blobs_intact();
        let inspected = skopeo_inspect(&env.oci_ref("docker.io/library/base:1"));
        assert_eq!(
            inspected["Digest"],
            base.as_str(),
            "after a kill at {delay_ms} ms"
        );
        env.ok(&["images"]);
        env.ok(&["fsck"]);
    }
    // Leftovers of killed builds are cleaned by prune, and a rerun completes.
    env.ok(&["prune"]);
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    env.build("killed:1", "big");
    skopeo_inspect(&env.oci_ref("docker.io/library/killed:1"));
}
