//! The transport against real hosts: Debian with systemd and sshd under
//! systemd-nspawn (tests/hosts.rs), and against this machine (`Local`).
//!
//! Read-only tests share two hosts booted once for the test binary; tests that
//! change a host (its key, its password, its power) boot their own.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sealrs::transport::{ConnectOptions, Local, Secret, Ssh, Transport, TransportError};
use sha2::{Digest as _, Sha256};

use crate::hosts::TestHosts;

fn shared() -> &'static TestHosts {
    static HOSTS: OnceLock<TestHosts> = OnceLock::new();
    HOSTS.get_or_init(|| TestHosts::boot(2))
}

fn connect(hosts: &TestHosts, i: usize) -> Ssh {
    Ssh::connect(&hosts[i].ip, &hosts.options())
        .unwrap_or_else(|e| panic!("connect to {}: {e}", hosts[i].ip))
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// Words that a shell would love to expand, split or unquote.
const NASTY: &[&str] = &[
    "plain",
    "",
    "two words",
    "  leading and trailing  ",
    "it's",
    "'",
    "''",
    "\"double\"",
    "$HOME",
    "${HOME}",
    "$$",
    "$(id -u)",
    "`id -u`",
    "*",
    "/*",
    "?",
    "[a-z]",
    "~",
    "a\nb",
    "trailing newline\n",
    "back\\slash\\",
    "tab\there",
    ";",
    "&&",
    "| cat",
    "> /tmp/x",
    "#comment",
    "-n",
    "--",
    "pa$$w0rd\"`x",
    "ünïcødé ✓",
];

fn printf_argv() -> Vec<String> {
    let mut argv = strings(&["printf", "%s\\0"]);
    argv.extend(strings(NASTY));
    argv
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    let mut parts: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(parts.pop().as_deref(), Some(""), "output ends with NUL");
    parts
}

fn check_argv(t: &dyn Transport) {
    let out = t.run(&printf_argv(), &[], None).unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(split_nul(&out.stdout), strings(NASTY));
}

fn nasty_env() -> Vec<(String, String)> {
    vec![
        ("PASS".to_string(), "pa$$w0rd\"`x".to_string()),
        ("QUOTES".to_string(), "it's \"$(id)\" `id`".to_string()),
        ("LINES".to_string(), "a\nb\n".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("GLOB".to_string(), "* ?".to_string()),
    ]
}

fn check_env(t: &dyn Transport) {
    let env = nasty_env();
    let mut argv = strings(&[
        "sh",
        "-c",
        r#"for n in "$@"; do printenv "$n"; printf '\0'; done"#,
        "sh",
    ]);
    argv.extend(env.iter().map(|(k, _)| k.clone()));
    let out = t.run(&argv, &env, None).unwrap();
    assert!(out.success(), "{out:?}");
    let got = split_nul(&out.stdout);
    let want: Vec<String> = env.iter().map(|(_, v)| format!("{v}\n")).collect();
    assert_eq!(got, want);
}

#[test]
fn local_argv_env_and_stdin_pass_unchanged() {
    let local = Local::new();
    check_argv(&local);
    check_env(&local);
    let out = local
        .run(&strings(&["cat"]), &[], Some(b"in\0put\n"))
        .unwrap();
    assert_eq!(out.stdout, b"in\0put\n");
    let missing = local
        .run(&strings(&["sealrs-no-such-command"]), &[], None)
        .unwrap();
    assert_eq!(missing.code, Some(127));
}

#[test]
fn local_files() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::new();
    let dest = dir.path().join("a b/$x/file");
    let dest = dest.to_str().unwrap();
    local.upload_bytes(b"hello", dest, 0o640).unwrap();
    assert_eq!(local.download_small(dest, 5).unwrap(), b"hello");
    assert!(matches!(
        local.download_small(dest, 4),
        Err(TransportError::TooLarge { .. })
    ));
    assert!(local.exists(dest).unwrap());
    assert!(!local.exists(&format!("{dest}.not")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(dest).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    let src = dir.path().join("src");
    fs::write(&src, vec![7u8; 1 << 20]).unwrap();
    let seen = AtomicU64::new(0);
    local
        .upload(&src, dest, 0o755, &|n| seen.store(n, Ordering::Relaxed))
        .unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), 1 << 20);
    assert_eq!(fs::read(dest).unwrap(), vec![7u8; 1 << 20]);
    // Only the file itself: no temp file left beside it.
    assert_eq!(
        fs::read_dir(Path::new(dest).parent().unwrap())
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn argv_reaches_the_host_byte_for_byte() {
    let hosts = shared();
    check_argv(&connect(hosts, 0));
}

#[test]
fn env_reaches_the_host_byte_for_byte_and_stays_out_of_argv() {
    let hosts = shared();
    let ssh = connect(hosts, 0);
    check_env(&ssh);
    // While the command runs, no process on the host has the value in its argv.
    let out = ssh
        .run(
            &strings(&[
                "sh",
                "-c",
                "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; printenv PASS",
            ]),
            &nasty_env(),
            None,
        )
        .unwrap();
    let text = out.stdout_text();
    let (cmdlines, value) = text.split_once('\n').unwrap();
    assert_eq!(value, "pa$$w0rd\"`x\n");
    assert!(cmdlines.contains("printenv"), "{cmdlines}");
    assert!(
        !cmdlines.contains("w0rd"),
        "value leaked into an argv: {cmdlines}"
    );
}

#[test]
fn stdin_reaches_the_host_byte_for_byte() {
    let hosts = shared();
    let ssh = connect(hosts, 1);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = ssh.run(&strings(&["cat"]), &[], Some(&bytes)).unwrap();
    assert!(out.success(), "{out:?}");
    assert!(out.stdout == bytes, "stdin came back changed");
    // Env and stdin together: the env block is consumed, stdin follows intact.
    let out = ssh
        .run(
            &strings(&["sh", "-c", "printenv PASS; cat"]),
            &nasty_env(),
            Some(b"after env\0\n"),
        )
        .unwrap();
    assert_eq!(out.stdout, b"pa$$w0rd\"`x\nafter env\0\n");
    // No stdin: the command reads EOF rather than hanging.
    let out = ssh.run(&strings(&["wc", "-c"]), &[], None).unwrap();
    assert_eq!(out.stdout_text().trim(), "0");
}

#[test]
fn exit_codes_signals_and_failure_reports() {
    let hosts = shared();
    let ssh = connect(hosts, 0);
    let out = ssh
        .run(
            &strings(&["sh", "-c", "echo out; echo oops >&2; exit 3"]),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"oops\n");
    let argv = strings(&["sh", "-c", "echo line1 >&2; echo line2 >&2; exit 3"]);
    let err = ssh
        .run(&argv, &[], None)
        .unwrap()
        .check(ssh.address(), &argv)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&hosts[0].ip), "{err}");
    assert!(
        err.contains("exit code 3") && err.contains("line1\nline2"),
        "{err}"
    );
    let out = ssh
        .run(&strings(&["sealrs-no-such-command"]), &[], None)
        .unwrap();
    assert_eq!(out.code, Some(127));
    let out = ssh
        .run(&strings(&["sh", "-c", "kill -KILL $$"]), &[], None)
        .unwrap();
    assert_eq!(out.code, None, "{out:?}");
    assert_eq!(out.signal.as_deref(), Some("KILL"));
}

#[test]
fn one_connection_runs_many_commands_at_once() {
    let hosts = shared();
    let ssh = connect(hosts, 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let ssh = &ssh;
                s.spawn(move || {
                    let out = ssh
                        .run(
                            &strings(&["sh", "-c", "sleep 0.2; echo \"$1\"", "sh", &i.to_string()]),
                            &[],
                            None,
                        )
                        .unwrap();
                    assert_eq!(out.stdout_text(), format!("{i}\n"));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn uploads_200_mb_with_flat_memory_and_the_same_sha256() {
    let hosts = shared();
    let ssh = connect(hosts, 0);
    let size: u64 = 200 << 20;
    let local = hosts.dir().join("big.bin");
    let mut hasher = Sha256::new();
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&local).unwrap());
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..(size >> 20) {
            for word in chunk.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            hasher.update(&chunk);
            f.write_all(&chunk).unwrap();
        }
    }
    let want = hex::encode(hasher.finalize());
    // Peak resident memory from here on (clear_refs 5 resets VmHWM).
    let _ = fs::write("/proc/self/clear_refs", "5");
    let before = vm_hwm_kib();
    let seen = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let started = Instant::now();
    ssh.upload(&local, "/var/tmp/sealrs big/blob.bin", 0o600, &|n| {
        assert!(n >= seen.load(Ordering::Relaxed), "progress goes forward");
        seen.store(n, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let took = started.elapsed();
    let grew_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    eprintln!(
        "upload: 200 MiB in {:.2}s, peak memory grew {grew_mib} MiB",
        took.as_secs_f32()
    );
    assert_eq!(seen.load(Ordering::Relaxed), size);
    assert!(
        calls.load(Ordering::Relaxed) > 10,
        "progress was reported along the way"
    );
    assert!(
        grew_mib < 100,
        "memory grew by {grew_mib} MiB for a 200 MiB upload"
    );
    fs::remove_file(&local).unwrap();
    let out = ssh
        .run(
            &strings(&[
                "sh",
                "-c",
                "sha256sum < \"$1\"; stat -c %a \"$1\"; ls -A \"${1%/*}\"",
                "sh",
                "/var/tmp/sealrs big/blob.bin",
            ]),
            &[],
            None,
        )
        .unwrap();
    let text = out.stdout_text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().next(),
        Some(&*want)
    );
    assert_eq!(lines.next(), Some("600"));
    assert_eq!(
        lines.collect::<Vec<_>>(),
        vec!["blob.bin"],
        "no temp file left"
    );
    ssh.run(&strings(&["rm", "-rf", "/var/tmp/sealrs big"]), &[], None)
        .unwrap();
}

#[test]
fn upload_bytes_download_small_and_exists() {
    let hosts = shared();
    let ssh = connect(hosts, 1);
    let dir = "/etc/sealrs test/$HOME/`x`";
    let path = format!("{dir}/token");
    let content = b"secret-token\n\0binary\xff".to_vec();
    assert!(!ssh.exists(&path).unwrap());
    ssh.upload_bytes(&content, &path, 0o640).unwrap();
    assert!(ssh.exists(&path).unwrap());
    assert!(ssh.exists(dir).unwrap());
    assert_eq!(ssh.download_small(&path, 1024).unwrap(), content);
    assert_eq!(
        ssh.download_small(&path, content.len() as u64).unwrap(),
        content
    );
    let err = ssh
        .download_small(&path, content.len() as u64 - 1)
        .unwrap_err();
    assert!(matches!(err, TransportError::TooLarge { .. }), "{err}");
    let err = ssh
        .download_small(&format!("{path}.missing"), 10)
        .unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&hosts[1].ip), "{err}");
    // Replacing a file: the new content, the new mode, nothing else in the dir.
    ssh.upload_bytes(b"v2", &path, 0o600).unwrap();
    assert_eq!(ssh.download_small(&path, 10).unwrap(), b"v2");
    let out = ssh
        .run(
            &strings(&[
                "sh",
                "-c",
                "stat -c %a \"$1\"; ls -A \"$2\"",
                "sh",
                &path,
                dir,
            ]),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(out.stdout_text(), "600\ntoken\n");
    // Empty file; dangling symlink exists; the real file is on the host's disk.
    ssh.upload_bytes(b"", &format!("{dir}/empty"), 0o644)
        .unwrap();
    assert_eq!(ssh.download_small(&format!("{dir}/empty"), 0).unwrap(), b"");
    ssh.run(
        &strings(&["ln", "-s", "/nowhere", &format!("{dir}/dangling")]),
        &[],
        None,
    )
    .unwrap();
    assert!(ssh.exists(&format!("{dir}/dangling")).unwrap());
    assert_eq!(
        fs::read(hosts[1].root().join("etc/sealrs test/$HOME/`x`/token")).unwrap(),
        b"v2"
    );
    ssh.run(&strings(&["rm", "-rf", "/etc/sealrs test"]), &[], None)
        .unwrap();
}

#[test]
fn hosts_reach_each_other() {
    let hosts = shared();
    let ssh = connect(hosts, 0);
    let out = ssh
        .run(
            &strings(&[
                "bash",
                "-c",
                "exec 3<>\"/dev/tcp/$1/22\" && head -c 8 <&3",
                "bash",
                &hosts[1].ip,
            ]),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(out.stdout_text(), "SSH-2.0-", "{out:?}");
    // By name too: each host's /etc/hosts lists the group.
    let out = ssh
        .run(&strings(&["getent", "hosts", &hosts[1].name]), &[], None)
        .unwrap();
    assert!(out.stdout_text().starts_with(&hosts[1].ip), "{out:?}");
}

#[test]
fn systemd_runs_inside_the_hosts() {
    let hosts = shared();
    let ssh = connect(hosts, 1);
    let out = ssh
        .run(
            &strings(&["systemctl", "is-system-running", "--wait"]),
            &[],
            None,
        )
        .unwrap();
    let state = out.stdout_text();
    assert!(
        state.trim() == "running" || state.trim() == "degraded",
        "{out:?}"
    );
    let unit = "[Unit]\nDescription=sealrs test unit\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo \"$$INVOCATION_ID\" > /run/sealrs-hello'\n\n[Install]\nWantedBy=multi-user.target\n";
    ssh.upload_bytes(
        unit.as_bytes(),
        "/etc/systemd/system/sealrs-hello.service",
        0o644,
    )
    .unwrap();
    for argv in [
        vec!["systemctl", "daemon-reload"],
        vec!["systemctl", "enable", "--now", "sealrs-hello.service"],
        vec!["systemctl", "is-active", "sealrs-hello.service"],
        vec!["systemctl", "is-enabled", "sealrs-hello.service"],
        vec!["test", "-s", "/run/sealrs-hello"],
        vec!["systemctl", "disable", "--now", "sealrs-hello.service"],
        vec!["rm", "/etc/systemd/system/sealrs-hello.service"],
        vec!["systemctl", "daemon-reload"],
    ] {
        let argv = strings(&argv);
        ssh.run(&argv, &[], None)
            .unwrap()
            .check(ssh.address(), &argv)
            .unwrap();
    }
}

#[test]
fn host_keys_unknown_refused_accepted_when_asked_changed_always_refused() {
    let hosts = TestHosts::boot(1);
    let ip = hosts[0].ip.clone();
    let known = hosts.dir().join("fresh_known_hosts");
    let opts = ConnectOptions {
        known_hosts: Some(known.clone()),
        ..hosts.options()
    };

    let err = Ssh::connect(&ip, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TransportError::UnknownHostKey { .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&ip) && msg.contains("SHA256:") && msg.contains("--accept-new-host-keys"),
        "{msg}"
    );
    assert!(!known.exists() || fs::read_to_string(&known).unwrap().is_empty());

    let accept = ConnectOptions {
        accept_new_host_keys: true,
        ..opts.clone()
    };
    let ssh = Ssh::connect(&ip, &accept).unwrap();
    drop(ssh);
    let recorded = fs::read_to_string(&known).unwrap();
    assert!(
        recorded.contains(&format!("{ip} {}", hosts[0].host_key())),
        "{recorded}"
    );
    // Recorded: a plain connection works now.
    let ssh = Ssh::connect(&ip, &opts).unwrap();
    assert!(ssh.run(&strings(&["true"]), &[], None).unwrap().success());
    drop(ssh);

    hosts[0].regenerate_host_key();
    for o in [&opts, &accept] {
        let err = Ssh::connect(&ip, o).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, TransportError::HostKeyChanged { .. }),
            "{msg}"
        );
        assert!(msg.contains(&ip) && msg.contains("CHANGED"), "{msg}");
    }
    assert_eq!(
        fs::read_to_string(&known).unwrap(),
        recorded,
        "known_hosts untouched"
    );
}

#[test]
fn password_login_with_a_dollar_in_the_password() {
    let hosts = TestHosts::boot(1);
    let ip = hosts[0].ip.clone();
    let password = "pa$$w0rd\"`x 'q' $(id)";
    // Key-only host first: a password is refused, and the message says so.
    let with = |p: &str| ConnectOptions {
        key: None,
        password: Some(Secret::new(p)),
        ..hosts.options()
    };
    let err = Ssh::connect(&ip, &with(password)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{msg}");
    assert!(msg.contains(&ip) && msg.contains("publickey"), "{msg}");

    hosts[0].ssh_password(password);
    let ssh = Ssh::connect(&ip, &with(password)).unwrap();
    let out = ssh.run(&strings(&["id", "-un"]), &[], None).unwrap();
    assert_eq!(out.stdout_text(), "root\n");
    drop(ssh);

    let err = Ssh::connect(&ip, &with("pa$$w0rd")).unwrap_err();
    let (msg, debug) = (err.to_string(), format!("{err:?} {:?}", with(password)));
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{msg}");
    assert!(msg.contains(&ip) && msg.contains("password"), "{msg}");
    assert!(!debug.contains("w0rd"), "password in Debug output: {debug}");
    // sshd's log on the host has no trace of the password either.
    let journal = hosts[0].exec_ok(&["journalctl", "-u", "ssh", "--no-pager"]);
    assert!(journal.contains("Accepted password for root"), "{journal}");
    assert!(!journal.contains("w0rd"), "{journal}");
}

#[test]
fn a_stopped_host_gives_a_clear_error_within_the_timeout() {
    let hosts = TestHosts::boot(1);
    let ip = hosts[0].ip.clone();
    let ssh = connect(&hosts, 0);
    hosts.stop(0);
    // The open connection notices: an error, not a hang.
    let err = ssh.run(&strings(&["true"]), &[], None).unwrap_err();
    assert!(err.to_string().contains(&ip), "{err}");
    drop(ssh);

    let opts = ConnectOptions {
        connect_timeout: Duration::from_secs(3),
        ..hosts.options()
    };
    let started = Instant::now();
    let err = Ssh::connect(&ip, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            TransportError::Connect { .. } | TransportError::Timeout { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains(&ip), "{msg}");

    // Unreachable rather than refused: the host's link is down, nothing answers.
    hosts[0].set_link(false);
    let started = Instant::now();
    let err = Ssh::connect(&ip, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains(&ip), "{msg}");
    hosts[0].set_link(true);

    hosts.start(0);
    let ssh = connect(&hosts, 0);
    assert!(ssh.run(&strings(&["true"]), &[], None).unwrap().success());
}
