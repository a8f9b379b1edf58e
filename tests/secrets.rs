//! Secrets stay out of argv: `--env-file` for values the user keeps out of
//! their shell history and `ps`, and on hosts no one-time token, join token
//! or env value in any process's command line.

use std::collections::BTreeSet;

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::run_on;

fn build_k3s(env: &Env) {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
}

#[test]
fn env_file_values_reach_the_plan_byte_for_byte_and_e_wins() {
    let env = Env::new();
    build_k3s(&env);
    let file = env.write(
        "cluster.env",
        "# the cluster's secrets\n\nDB_PASS=pa$$ \"w0rd\" 'x' `y` #z  \n  OVERRIDDEN=from the file\nFROM_SHELL\nEQ=a=b\n",
    );
    let out = env
        .cmd(&[
            "run",
            "k3s-cluster:1",
            "--dry-run",
            "--masters",
            "10.250.200.11",
            "--env-file",
            file.to_str().unwrap(),
            "-e",
            "OVERRIDDEN=from -e",
        ])
        .env("FROM_SHELL", "taken from sealrs' environment")
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plan shows each value shell-quoted, exactly.
    for shown in [
        r#"DB_PASS='pa$$ "w0rd" '\''x'\'' `y` #z  '"#,
        "OVERRIDDEN='from -e'",
        "FROM_SHELL='taken from sealrs'\\'' environment'",
        "EQ=a=b",
    ] {
        assert!(plan.contains(shown), "{shown} not in:\n{plan}");
    }
    assert!(!plan.contains("from the file"), "{plan}");
}

#[test]
fn a_bad_env_file_line_is_refused_naming_file_and_line() {
    let env = Env::new();
    build_k3s(&env);
    let file = env.write("bad.env", "OK=1\n# fine\nNOT OK=2\n");
    let path = file.to_str().unwrap();
    let err = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "10.250.200.11",
        "--env-file",
        path,
    ]);
    assert!(
        err.contains(&format!(
            "--env-file {path}:3: variable \"NOT OK\" contains whitespace"
        )),
        "{err}"
    );
    let missing = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "10.250.200.11",
        "--env-file",
        "/nonexistent/x.env",
    ]);
    assert!(
        missing.contains("reading the env file /nonexistent/x.env"),
        "{missing}"
    );
}

/// Starts a sampler inside `host` that records every process's argv
/// (`grep -z` prints each argument as `/proc/PID/cmdline:ARG`) every 20 ms
/// until [`stop_sampling`].
fn start_sampling(host: &Host) {
    host.exec_ok(&[
        "sh",
        "-c",
        "setsid sh -c 'while [ ! -e /run/stop-sampling ]; do grep -a -z -H \"\" /proc/[0-9]*/cmdline 2>/dev/null; printf \"%s\\0\" SAMPLE-END; sleep 0.02; done >/run/samples; touch /run/sampling-stopped' </dev/null >/dev/null 2>&1 &",
    ]);
}

/// Stops the sampler; every argv it saw, each once.
fn stop_sampling(host: &Host) -> BTreeSet<Vec<String>> {
    host.exec_ok(&["touch", "/run/stop-sampling"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !host
        .exec(&["test", "-e", "/run/sampling-stopped"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sampler did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let raw = host.exec(&["cat", "/run/samples"]).stdout;
    let mut seen = BTreeSet::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for record in raw.split(|&b| b == 0) {
        let record = String::from_utf8_lossy(record);
        let Some((file, arg)) = record.split_once(":") else {
            // SAMPLE-END, or an empty tail.
            seen.extend(current.take().map(|(_, argv)| argv));
            continue;
        };
        match &mut current {
            Some((pid, argv)) if *pid == file => argv.push(arg.to_string()),
            _ => {
                seen.extend(current.take().map(|(_, argv)| argv));
                current = Some((file.to_string(), vec![arg.to_string()]));
            }
        }
    }
    seen.extend(current.map(|(_, argv)| argv));
    seen
}

/// The host's sshd as this machine numbers it: the process in the host's
/// pid namespace whose pid there is the one in `/run/sshd.pid`.
fn sshd_pid(host: &Host) -> u32 {
    let inner = host.exec_ok(&["cat", "/run/sshd.pid"]).trim().to_string();
    let ns = host
        .exec_ok(&["readlink", "/proc/1/ns/pid"])
        .trim()
        .to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let same_ns = std::fs::read_link(entry.path().join("ns/pid"))
            .is_ok_and(|l| l.to_string_lossy() == ns);
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last().map(str::to_string));
        if same_ns && nspid.as_deref() == Some(inner.as_str()) {
            return pid;
        }
    }
    panic!("{}: no sshd with pid {inner} in {ns}", host.name);
}

/// Every program sshd and its children execute from now on, with its whole
/// argv, until the returned child (strace) is killed: unlike sampling, it
/// misses no process however short-lived.
fn trace_execs(host: &Host, out: &std::path::Path) -> std::process::Child {
    let mut child = std::process::Command::new("strace")
        .args([
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-e",
            "trace=execve",
            "-s",
            "1000000",
            "-o",
        ])
        .arg(out)
        .args(["-p", &sshd_pid(host).to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace runs");
    // Attached once the kernel names a tracer of sshd.
    let pid = sshd_pid(host);
    let traced = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|l| l.trim() != "0")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !traced() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !traced() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{}: strace did not attach to sshd", host.name);
    }
    child
}

/// Whether `text` holds a kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`
/// (as kubeadm mints them), between characters that are not of it.
fn holds_bootstrap_token(text: &str) -> bool {
    let b = text.as_bytes();
    let of = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (6..b.len().saturating_sub(16)).any(|dot| {
        b[dot] == b'.'
            && b[dot - 6..dot].iter().all(|&c| of(c))
            && b[dot + 1..dot + 17].iter().all(|&c| of(c))
            && (dot == 6 || !of(b[dot - 7]))
            && b.get(dot + 17).is_none_or(|&c| !of(c))
    })
}

/// Runs `image` on a master and a worker with a `-e` value and an
/// `--env-file` value, tracing every program sshd starts on each host
/// (strace) and sampling `/proc/*/cmdline` there every 20 ms, and checks
/// that neither the values, nor the join token `join_token` reads after the
/// run, nor the installer bootstrap's one-time token, is in any argv; and
/// that the sampler saw the short-lived steps (`daemons`: a word of the
/// runtime's command on the master and on the worker).
fn no_secret_in_any_argv(
    image: &str,
    build: &dyn Fn(&Env),
    join_token: &dyn Fn(&TestHosts) -> String,
    daemons: [&str; 2],
) {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build(&env);
    let layers: BTreeSet<String> = {
        let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
        doc["manifest"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string()
            })
            .collect()
    };
    // (strace shows `"` and `\\` escaped: plain values are found as they are.)
    let flag_value = "flag-secret-7d1e $x 'q'";
    let file_value = "file-secret-93ab w0rd";
    let file = env.write("secrets.env", format!("FILE_SECRET={file_value}\n"));
    let mut tracers = Vec::new();
    for host in hosts.hosts() {
        start_sampling(host);
        let trace = env.path(&format!("execs-{}", host.name));
        tracers.push((trace.clone(), trace_execs(host, &trace)));
    }
    run_on(
        &env,
        image,
        &hosts,
        &[0],
        &[1],
        &[
            "-e",
            &format!("SECRET_VALUE={flag_value}"),
            "--env-file",
            file.to_str().unwrap(),
        ],
    );
    let join_token = join_token(&hosts);
    assert!(!join_token.is_empty());
    let is_token_shaped = |w: &str| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit());
    for (i, host) in hosts.hosts().iter().enumerate() {
        let (trace, mut tracer) = tracers.remove(0);
        tracer.kill().unwrap();
        tracer.wait().unwrap();
        let execs = std::fs::read_to_string(&trace).unwrap();
        // strace saw the bootstrap's fetch: bash with the script, `fetch`,
        // the address and the port, and nothing after them.
        let fetch = execs
            .lines()
            .find(|l| l.contains("[\"bash\", \"-c\", ") && l.contains(", \"fetch\", "))
            .unwrap_or_else(|| panic!("{}: no bootstrap fetch in\n{execs}", host.name));
        let tail = fetch.split("\"fetch\", ").nth(1).unwrap();
        let after: Vec<&str> = tail.split("], ").next().unwrap().split(", ").collect();
        assert_eq!(after.len(), 2, "bash -c SCRIPT fetch ADDRESS PORT: {fetch}");
        for secret in [flag_value, file_value, join_token.as_str()] {
            assert!(
                !execs.contains(secret),
                "{}: {secret:?} in an executed argv:\n{execs}",
                host.name
            );
        }
        assert!(
            !holds_bootstrap_token(&execs),
            "{}: a bootstrap token in an executed argv:\n{execs}",
            host.name
        );
        let seen = stop_sampling(host);
        // The sampler was fast enough to see the short-lived steps: the
        // installer bootstrap fetching from this machine (`sh -c SCRIPT
        // sealrs HEX DIR GZ ADDRESS PORT`, and its `bash -c SCRIPT fetch
        // ADDRESS PORT` where caught), and the runtime's own command.
        assert!(
            seen.iter().any(|argv| argv[0] == "sh"
                && argv.get(3).is_some_and(|a| a == "sealrs")
                && argv.len() == 9),
            "{}: the sampler never saw the installer bootstrap's fetch",
            host.name
        );
        for argv in seen
            .iter()
            .filter(|argv| argv[0] == "bash" && argv.get(3).is_some_and(|a| a == "fetch"))
        {
            assert_eq!(argv.len(), 6, "bash -c SCRIPT fetch ADDRESS PORT: {argv:?}");
        }
        let daemon = daemons[i];
        assert!(
            seen.iter().any(|argv| argv.iter().any(|a| a == daemon)),
            "{}: the sampler never saw {daemon}",
            host.name
        );
        for argv in &seen {
            let line = argv.join(" ");
            for secret in [flag_value, file_value, join_token.as_str()] {
                assert!(
                    !line.contains(secret),
                    "{}: {secret:?} in an argv: {line}",
                    host.name
                );
            }
            assert!(
                !holds_bootstrap_token(&line),
                "{}: a bootstrap token in an argv: {line}",
                host.name
            );
            for word in argv.iter().filter(|w| is_token_shaped(w)) {
                assert!(
                    layers.contains(word),
                    "{}: a one-time token (64 hex digits that are no layer digest) in an argv: {line}",
                    host.name
                );
            }
        }
    }
}

#[test]
fn no_token_or_env_value_is_ever_in_a_host_process_argv_during_a_k3s_run() {
    let token = |hosts: &TestHosts| {
        hosts[0]
            .exec_ok(&["cat", "/var/lib/rancher/k3s/server/token"])
            .trim()
            .to_string()
    };
    no_secret_in_any_argv("k3s-cluster:1", &build_k3s, &token, ["server", "agent"]);
}

#[test]
fn no_token_or_env_value_is_ever_in_a_host_process_argv_during_a_kubeadm_run() {
    // The worker joined with the token in its kubeadm config (0600).
    let token = |hosts: &TestHosts| {
        let config = hosts[1].exec_ok(&["cat", "/etc/kubernetes/sealrs-kubeadm.yaml"]);
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix("token:"))
            .map(|t| t.trim().trim_matches(['"', '\'']).to_string())
            .unwrap_or_else(|| panic!("no token in the join config:\n{config}"))
    };
    let build = |env: &Env| {
        crate::run_hosts::build_kubeadm(env);
    };
    no_secret_in_any_argv("kubeadm-cluster:1", &build, &token, ["init", "join"]);
}

#[test]
fn a_bootstrap_token_is_recognised_only_whole() {
    assert!(holds_bootstrap_token(
        "kubeadm join --token abcdef.0123456789abcdef x"
    ));
    assert!(holds_bootstrap_token("\"abcdef.0123456789abcdef\""));
    assert!(!holds_bootstrap_token("xabcdef.0123456789abcdefx"));
    assert!(!holds_bootstrap_token(
        "/var/lib/sealrs-host/layers/sha256/0c79"
    ));
    assert!(!holds_bootstrap_token("abcde.0123456789abcdef"));
}
