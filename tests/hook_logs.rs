//! The whole output of an image's hook and of an application image's CMD,
//! kept on the operator in `logs/NAME/` (0700, files 0600) with its
//! path printed as the step ends, and shown live on a terminal; a failure
//! still shows the last lines, a cluster keeps the logs of its last 20 runs,
//! and no join token reaches a log.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;
use crate::run::ssh_flags;

/// An init hook that writes 60 lines, one on stderr, and fails while
/// `/etc/sealrs-fail-hook` is on the host.
const HOOK: &str = r#"
COPY scripts ./scripts
LABEL sealrs.io/init="seq -f 'hook line %g' 1 60; echo hook-stderr >&2; test ! -e /etc/sealrs-fail-hook"
LABEL sealrs.io/clean="echo cleaning up"
"#;

/// The log path of the line "HOST: output of WHAT (N lines) in PATH", `lines`
/// being N when given.
fn log_path(stderr: &str, host: &str, what: &str, lines: Option<usize>) -> PathBuf {
    let start = format!("{host}: output of {what} (");
    let rest = stderr
        .split(start.as_str())
        .nth(1)
        .unwrap_or_else(|| panic!("no line {start:?}…\n{stderr}"));
    let (count, rest) = rest
        .split_once(" lines) in ")
        .or_else(|| rest.split_once(" line) in "))
        .unwrap();
    if let Some(lines) = lines {
        assert_eq!(count, lines.to_string(), "{stderr}");
    }
    PathBuf::from(rest.split_whitespace().next().unwrap())
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn hook_and_cmd_output_is_kept_whole_in_0600_logs_whose_paths_the_run_prints() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.write_mode(&format!("{dir}/scripts/noop.sh"), "#!/bin/sh\n", 0o755);
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str(HOOK);
    std::fs::write(&kubefile, text).unwrap();
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-logs:1", &dir]);
    env.write("app/x", "x");
    env.write(
        "app/Kubefile",
        "FROM scratch\nCOPY x ./x\nCMD [\"seq -f 'app line %g' 1 50\"]\n",
    );
    env.ok(&[
        "build",
        "-q",
        "-t",
        "app:1",
        &env.path("app").display().to_string(),
    ]);

    // 25 earlier runs' logs, and a file that is not a log.
    let logs = env.root.join("logs/default");
    std::fs::create_dir_all(&logs).unwrap();
    for run in 0..25 {
        let name = format!("20250101T0000{run:02}.000Z-h9-hook-init.log");
        std::fs::write(logs.join(name), "old\n").unwrap();
    }
    std::fs::write(logs.join("notes.txt"), "mine\n").unwrap();

    let ip = hosts[0].ip.as_str();
    let mut args: Vec<String> = ["run", "k3s-logs:1", "app:1", "--masters", ip]
        .map(String::from)
        .to_vec();
    args.extend(ssh_flags(&hosts));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // A failing hook: the error shows the last lines, the log holds them all.
    hosts[0].exec_ok(&["touch", "/etc/sealrs-fail-hook"]);
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("hook line 60"), "{stderr}");
    assert!(
        !stderr.contains("hook line 10\n"),
        "only the tail: {stderr}"
    );
    let failed = log_path(&stderr, ip, "the init hook", Some(61));
    assert!(failed.starts_with(&logs), "{}", failed.display());
    let name = failed.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(&format!("-{ip}-hook-init.log")), "{name}");
    let kept = std::fs::read_to_string(&failed).unwrap();
    let expected: String = (1..=60).map(|i| format!("hook line {i}\n")).collect();
    assert!(kept.contains(&expected), "{kept}");
    assert!(kept.contains("hook-stderr\n"), "{kept}");
    assert_eq!(mode(&failed), 0o600);
    assert_eq!(mode(&logs), 0o700);

    // It succeeds: the hook's log and the application's, each named.
    hosts[0].exec_ok(&["rm", "/etc/sealrs-fail-hook"]);
    let out = env.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let hook = log_path(&stderr, ip, "the init hook", Some(61));
    let app = log_path(&stderr, ip, "`seq -f 'app line %g' 1 50`", Some(50));
    let expected: String = (1..=50).map(|i| format!("app line {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&app).unwrap(), expected);
    assert!(app.ends_with(format!(
        "{}-{ip}-app-docker.io_library_app_1.log",
        &hook.file_name().unwrap().to_str().unwrap()[..20]
    )));
    assert_eq!(mode(&app), 0o600);

    // The last 20 runs' logs are kept (these two and 18 of the old ones),
    // and what is not a log stays.
    let names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let old = names.iter().filter(|n| n.contains("-h9-")).count();
    assert_eq!(old, 18, "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("20250101T000006.")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("20250101T000007.")),
        "{names:?}"
    );
    assert!(names.contains(&"notes.txt".to_string()));
    assert!(failed.exists() && hook.exists());

    // A reset forgets the cluster, not its logs: the clean hook's log it
    // names is there afterwards.
    let mut reset: Vec<String> = ["reset", "--yes"].map(String::from).to_vec();
    reset.extend(ssh_flags(&hosts));
    let reset: Vec<&str> = reset.iter().map(String::as_str).collect();
    let out = env.run(&reset);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!env.root.join("clusters/default").exists(), "{stderr}");
    let clean = log_path(&stderr, ip, "the clean hook", Some(1));
    assert_eq!(std::fs::read_to_string(&clean).unwrap(), "cleaning up\n");
    assert!(hook.exists());
}

#[test]
fn on_a_terminal_a_hooks_output_is_shown_live_each_line_after_its_host() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.write_mode(&format!("{dir}/scripts/noop.sh"), "#!/bin/sh\n", 0o755);
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str(HOOK);
    std::fs::write(&kubefile, text).unwrap();
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-logs:1", &dir]);
    let ip = hosts[0].ip.as_str();
    let mut args: Vec<String> = ["run", "k3s-logs:1", "--masters", ip]
        .map(String::from)
        .to_vec();
    args.extend(ssh_flags(&hosts));
    let (ok, text) = crate::messages::in_a_terminal(&env, &args);
    assert!(ok, "{text}");
    for line in ["hook line 1", "hook line 60", "hook-stderr"] {
        assert!(
            text.contains(&format!("{ip}: {line} ")),
            "no `{ip}: {line}` on the terminal:\n{text}"
        );
    }
    assert!(log_path(&text, ip, "the init hook", Some(61)).exists());
}

#[test]
fn a_hook_that_prints_its_whole_environment_on_a_joining_node_logs_no_join_token() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.write_mode(&format!("{dir}/scripts/noop.sh"), "#!/bin/sh\n", 0o755);
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str("COPY scripts ./scripts\nLABEL sealrs.io/init=\"env; echo env-printed\"\n");
    std::fs::write(&kubefile, text).unwrap();
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-env:1", &dir]);
    let stderr = crate::run::run_on(&env, "k3s-env:1", &hosts, &[0], &[1], &["-e", "MINE=v"]);
    let token = hosts[0].exec_ok(&["cat", "/var/lib/rancher/k3s/server/token"]);
    let token = token.trim();
    assert!(token.len() > 20, "{token:?}");
    for host in [&hosts[0], &hosts[1]] {
        let path = log_path(&stderr, &host.ip, "the init hook", None);
        let log = std::fs::read_to_string(path).unwrap();
        assert!(
            log.contains("env-printed\n") && log.contains("MINE=v\n"),
            "{log}"
        );
        assert!(!log.contains(token), "the join token in {}'s log", host.ip);
    }
}
