//! An operator stopped during a first `run` (issue 17): killed (SIGKILL) at
//! several moments, it leaves a saved cluster that `reset` knows and that the
//! same command converges; interrupted (SIGINT), it waits for the running
//! host steps, saves each host's state and prints the command that goes on.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::ssh_flags;

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

/// `run k3s-cluster:1` on host 0 (master) and host 1 (node), started with
/// its stderr read line by line.
fn first_run(hosts: &TestHosts) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "k3s-cluster:1",
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &hosts[1].ip,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(ssh_flags(hosts));
    args
}

/// A started sealrs and the lines of its stderr, as they come (also used
/// by the rollback and backup tests).
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line holding `text`.
    pub(crate) fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "sealrs never said {text:?}; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Its exit status, once the whole of stderr is read; stderr.
    pub(crate) fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

fn build_k3s(env: &Env) {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
}

fn saved(env: &Env) -> String {
    std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap_or_default()
}

/// Waits (up to 30 s) until no process started by the killed operator runs
/// on the hosts: SIGKILL ends the operator, not the installer it started on
/// a host, which goes on until its step ends. (A command started while one
/// still runs can race it: the leftovers it removes at its end may be what
/// the new command just placed. Known, not solved here: issue 17's host side.)
pub(crate) fn wait_for_orphans(hosts: &TestHosts) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for host in hosts.hosts() {
        // `sealrs-hos[t]` does not match the grep's own command line.
        while host
            .exec(&["sh", "-c", "grep -l 'sealrs-hos[t]' /proc/[0-9]*/cmdline"])
            .status
            .success()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn reset_works(env: &Env, hosts: &TestHosts) {
    let mut args = vec!["reset".to_string(), "--yes".to_string()];
    args.extend(ssh_flags(hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reset failed:\n{stderr}");
    assert!(
        stderr.contains("cluster default reset on 2 hosts"),
        "{stderr}"
    );
    for i in 0..2 {
        for path in ["/var/lib/sealrs-host", "/usr/local/bin/k3s"] {
            assert!(!exists(&hosts[i], path), "{} keeps {path}", hosts[i].name);
        }
    }
    assert!(!env.root.join("clusters/default/Clusterfile").exists());
}

#[test]
fn an_operator_killed_during_a_first_run_leaves_a_cluster_that_reset_knows_and_a_rerun_converges() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env);
    let args = first_run(&hosts);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();

    // Killed while the layers go out (the hosts changed: the installer is
    // there or half there), and once the first master's install started.
    for (moment, wait) in [
        ("sending layers", Duration::from_millis(300)),
        ("k3s install", Duration::ZERO),
    ] {
        let mut run = Running::start(env.cmd(&refs));
        run.wait_for(moment);
        std::thread::sleep(wait);
        run.child.kill().unwrap();
        let (status, stderr) = run.finish();
        assert!(!status.success(), "killed after {moment:?}:\n{stderr}");
        wait_for_orphans(&hosts);
        let state = saved(&env);
        assert!(
            state.contains(&hosts[0].ip) && state.contains(&hosts[1].ip),
            "killed after {moment:?}, the cluster is saved with both hosts:\n{state}"
        );
        assert!(state.contains("sha256:"), "its image pinned:\n{state}");
        reset_works(&env, &hosts);
    }

    // Killed again once the install started; the same command converges.
    let mut run = Running::start(env.cmd(&refs));
    run.wait_for("k3s install");
    run.child.kill().unwrap();
    run.finish();
    wait_for_orphans(&hosts);
    assert!(saved(&env).contains(&hosts[1].ip));
    let out = env.run(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the rerun failed:\n{stderr}");
    assert!(
        stderr.contains("cluster default is running on 2 hosts"),
        "{stderr}"
    );
    let state = saved(&env);
    assert!(!state.contains("Pending"), "{state}");
    for i in 0..2 {
        assert!(exists(&hosts[i], "/usr/local/bin/k3s"), "{}", hosts[i].name);
    }
    let unit = hosts[1].exec_ok(&["systemctl", "is-active", "k3s-agent"]);
    assert_eq!(unit.trim(), "active");
}

#[test]
fn ctrl_c_during_a_run_waits_for_running_steps_saves_each_host_and_says_what_to_run() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env);
    let args = first_run(&hosts);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();

    // Ctrl-C once the layers start to go out: no install starts.
    let mut run = Running::start(env.cmd(&refs));
    run.wait_for("sending layers");
    let pid = run.child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let (status, stderr) = run.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "interrupted: no new host step starts; waiting for the running ones to finish"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("k3s install"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for i in 0..2 {
        // Nothing was installed (the layers that were going out, if any, went
        // out whole: the next run finds them complete or sends the rest).
        assert!(
            !exists(&hosts[i], "/usr/local/bin/k3s"),
            "{}",
            hosts[i].name
        );
    }
    // Each host's state is saved: pending, not failed.
    let state = saved(&env);
    assert!(
        state.contains(&hosts[0].ip) && state.contains(&hosts[1].ip),
        "{state}"
    );
    assert!(
        state.contains("Pending") && !state.contains("Failed"),
        "{state}"
    );

    // The command it prints goes on and converges.
    let next = stderr
        .lines()
        .skip_while(|l| !l.contains("to go on, run the same command again:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no command to go on:\n{stderr}"));
    let argv: Vec<&str> = next.split_whitespace().collect();
    assert_eq!(argv[0], env!("CARGO_BIN_EXE_sealrs"), "{next}");
    assert_eq!(&argv[1..], &refs[..], "{next}");
    let out = env.run(&argv[1..]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster default is running on 2 hosts"),
        "{stderr}"
    );
    for i in 0..2 {
        assert!(exists(&hosts[i], "/usr/local/bin/k3s"), "{}", hosts[i].name);
    }
    assert!(!saved(&env).contains("Pending"));
}
