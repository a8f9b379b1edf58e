//! `sealrs run ROOTFS APP...`: application images applied on the first master
//! of a real k3s (stand-in) host, their CMD run with the cluster env.

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;

/// One call recorded by a stand-in: its name, working directory and argv.
#[derive(Debug)]
struct Call {
    name: String,
    cwd: String,
    argv: Vec<String>,
}

/// The stand-ins' byte-exact record: `NAME\0CWD\0ARGC\0ARG\0...` per call.
fn calls(host: &Host) -> Vec<Call> {
    let out = host.exec(&["cat", "/var/log/sealrs-standins.argv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = text.split_terminator('\0');
    let mut calls = Vec::new();
    while let Some(name) = fields.next() {
        let cwd = fields.next().unwrap().to_string();
        let argc: usize = fields.next().unwrap().parse().unwrap();
        let argv = (0..argc)
            .map(|_| fields.next().unwrap().to_string())
            .collect();
        calls.push(Call {
            name: name.to_string(),
            cwd,
            argv,
        });
    }
    calls
}

fn kubectl_applies(host: &Host) -> Vec<Call> {
    calls(host)
        .into_iter()
        .filter(|c| c.argv.first().map(String::as_str) == Some("kubectl"))
        .filter(|c| c.argv.get(1).map(String::as_str) == Some("apply"))
        .collect()
}

fn run_args(hosts: &TestHosts, images: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(images.iter().map(|s| s.to_string()));
    args.extend([
        "--masters".into(),
        hosts[0].ip.clone(),
        "--ssh-key".into(),
        hosts.key().display().to_string(),
        "--known-hosts".into(),
        hosts.known_hosts().display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn application_image_runs_its_cmd_on_the_first_master_with_the_env_byte_for_byte() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.build("k3s-cluster:1", &dir);
    let src = format!("{}/Kubefile-examples/hello-app", env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("cp")
        .args(["-a", &src, env.path("hello-app").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let digest = env.build("hello-app:1", "hello-app");
    let hex = digest.trim_start_matches("sha256:");
    let app_dir = format!("/var/lib/sealrs-host/apps/{hex}");

    let value = "pa$$w0rd\"`x";
    let ns = format!("NAMESPACE={value}");
    let args = run_args(&hosts, &["k3s-cluster:1", "hello-app:1"], &["-e", &ns]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: application docker.io/library/hello-app:1 applied (exit code 0)",
            hosts[0].ip
        )),
        "{stderr}"
    );

    // kubectl (the k3s stand-in through its kubectl symlink) got the value as
    // one word, byte for byte, in the app's unpacked rootfs.
    let applies = kubectl_applies(&hosts[0]);
    assert_eq!(applies.len(), 1, "{applies:?}");
    assert_eq!(applies[0].name, "k3s");
    assert_eq!(
        applies[0].argv,
        ["kubectl", "apply", "-n", value, "-f", "manifests/"]
    );
    assert_eq!(applies[0].cwd, app_dir);
    hosts[0].exec_ok(&[
        "test",
        "-f",
        &format!("{app_dir}/manifests/deployment.yaml"),
    ]);

    // The app image is in the cluster's status.
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("docker.io/library/hello-app:1"), "{saved}");
    assert!(saved.contains(&digest), "{saved}");

    // Again: applied again, nothing sent again.
    let mut json = refs.clone();
    json.extend(["--format", "json"]);
    let out = env.run(&json);
    let again = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{again}");
    assert_eq!(crate::run::changed_and_sent(&out.stdout).1, 0, "{again}");
    assert_eq!(kubectl_applies(&hosts[0]).len(), 2);

    // Without -e, the image's ENV default applies.
    let args = run_args(&hosts, &["k3s-cluster:1", "hello-app:1"], &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&refs);
    let applies = kubectl_applies(&hosts[0]);
    assert_eq!(applies[2].argv[3], "hello");

    // A failing app: the report names the image, the host, the exit code and
    // the output's tail.
    env.write(
        "bad-app/Kubefile",
        "FROM scratch\nCOPY x ./x\nCMD [\"kubectl frobnicate\"]\n",
    );
    env.write("bad-app/x", "x");
    env.build("bad-app:1", "bad-app");
    let args = run_args(&hosts, &["k3s-cluster:1", "bad-app:1"], &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = env.fails(&refs);
    assert!(
        stderr.contains(&format!(
            "application image docker.io/library/bad-app:1 failed on {}",
            hosts[0].ip
        )),
        "{stderr}"
    );
    assert!(stderr.contains("exit code 1"), "{stderr}");
    assert!(
        stderr.contains("unknown command \"frobnicate\""),
        "{stderr}"
    );
}

/// Test hosts for `scripts/bench.sh run`, which has no harness of its own: boots
/// `$SEALRS_BENCH_HOSTS` hosts (default 8), writes `$SEALRS_BENCH_DIR/hosts`
/// (one `IP ROOT` line per host: its address and its overlay root as mounted
/// here) and `$SEALRS_BENCH_DIR/ssh.env` (`KEY=` and `KNOWN_HOSTS=`), then
/// `ready`, and keeps the hosts up until `$SEALRS_BENCH_DIR/stop` appears (or
/// two hours pass). The hosts go down as in every test: by the pids, mounts and
/// namespaces the harness recorded, also if this process is killed.
#[test]
#[ignore = "started by scripts/bench.sh run, not a test"]
fn bench_hosts() {
    let Some(dir) = std::env::var_os("SEALRS_BENCH_DIR").map(std::path::PathBuf::from) else {
        panic!("set SEALRS_BENCH_DIR (scripts/bench.sh run does)");
    };
    let n: usize = std::env::var("SEALRS_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let hosts = TestHosts::boot(n);
    let list: String = hosts
        .hosts()
        .iter()
        .map(|h| format!("{} {}\n", h.ip, h.root().display()))
        .collect();
    std::fs::write(dir.join("hosts"), list).unwrap();
    std::fs::write(
        dir.join("ssh.env"),
        format!(
            "KEY={}\nKNOWN_HOSTS={}\n",
            hosts.key().display(),
            hosts.known_hosts().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("ready"), "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(7200);
    while !dir.join("stop").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(hosts);
}
