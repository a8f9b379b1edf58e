//! The `sealrs` binary against a real registry: build → push → pull, FROM a
//! remote base, and login with the password on stdin only.

use crate::common::{tool, with_stdin, Env};
use crate::registry_server::{Options, Registry, PASSWORD, USER};

fn small_context(env: &Env, dir: &str, content: &str) {
    env.write(
        &format!("{dir}/Kubefile"),
        "FROM scratch\nLABEL tier=base\nENV BASE=1\nCOPY f /f\n",
    );
    env.write(&format!("{dir}/f"), content);
}

#[test]
fn build_push_pull_round_trip_keeps_the_digest() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    small_context(&env, "ctx", "round trip\n");
    let dest = format!("{}/team/app:1", reg.host());
    let built = env
        .ok(&["build", "-q", "-t", &dest, "ctx"])
        .trim()
        .to_string();
    let pushed = env.ok(&["push", "-q", &dest]).trim().to_string();
    assert_eq!(pushed, built);
    let out = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{dest}")],
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["Digest"], built.as_str());

    // Under another name, given as DEST.
    let other_dest = format!("{}/other/app:2", reg.host());
    env.ok(&["push", "-q", &dest, &other_dest]);

    let fresh = Env::new();
    let pulled = fresh.ok(&["pull", "-q", &other_dest]).trim().to_string();
    assert_eq!(pulled, built);
    let json: serde_json::Value =
        serde_json::from_str(&fresh.ok(&["inspect", &other_dest])).unwrap();
    assert_eq!(json["config"]["config"]["Labels"]["tier"], "base");
    fresh.ok(&["fsck"]);
}

#[test]
fn from_a_remote_image_pulls_the_base_and_builds_on_it() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    small_context(&env, "base", "from the base\n");
    let base = format!("{}/lib/base:1", reg.host());
    env.ok(&["build", "-q", "-t", &base, "base"]);
    env.ok(&["push", "-q", &base]);

    let fresh = Env::new();
    fresh.write(
        "app/Kubefile",
        format!("FROM {base}\nENV APP=2\nCOPY g /g\n"),
    );
    fresh.write("app/g", "app layer\n");
    fresh.ok(&["build", "-q", "--compression", "gzip", "-t", "app:1", "app"]);
    let config = crate::common::skopeo_config(&fresh.oci_ref("docker.io/library/app:1"));
    let env_list = config["config"]["Env"].to_string();
    assert!(
        env_list.contains("BASE=1") && env_list.contains("APP=2"),
        "{env_list}"
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    // The base was pulled and tagged too, as docker does.
    fresh.ok(&["inspect", &base]);
}

#[test]
fn a_missing_remote_base_names_the_image_and_the_404() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    env.write("app/Kubefile", format!("FROM {}/no/such:1\n", reg.host()));
    let stderr = env.fails(&["build", "-t", "app:1", "app"]);
    assert!(
        stderr.contains("no/such:1") && stderr.contains("404"),
        "{stderr}"
    );
    assert!(stderr.contains("Kubefile:1"), "{stderr}");
}

fn login(env: &Env, reg: &Registry, password: &str) -> std::process::Output {
    let auth = env.path("auth.json");
    let cmd = env.cmd(&[
        "login",
        &reg.host(),
        "-u",
        USER,
        "--password-stdin",
        "--cert-dir",
        reg.cert_dir().to_str().unwrap(),
        "--authfile",
        auth.to_str().unwrap(),
    ]);
    with_stdin(cmd, format!("{password}\n").as_bytes())
}

#[test]
fn login_reads_the_password_from_stdin_and_never_shows_it() {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let env = Env::new();
    let auth = env.path("auth.json");
    let wrong = "pa$$w0rd\"`x-wrong";
    let out = login(&env, &reg, wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&reg.host()) && stderr.contains("401"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong), "the password leaked: {stderr}");
    assert!(!auth.exists());

    let out = login(&env, &reg, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );

    small_context(&env, "ctx", "secret registry\n");
    let dest = format!("{}/private/app:1", reg.host());
    env.ok(&["build", "-q", "-t", &dest, "ctx"]);
    let cert_dir = reg.cert_dir();
    let flags = [
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--authfile",
        auth.to_str().unwrap(),
    ];
    let mut push = vec!["push", "-q", dest.as_str()];
    push.extend(flags);
    env.ok(&push);
    let creds = format!("--creds={USER}:{PASSWORD}");
    let ca = format!("--cert-dir={}", cert_dir.display());
    tool(
        "skopeo",
        &["inspect", &creds, &ca, &format!("docker://{dest}")],
    );

    let host = reg.host();
    let mut logout = vec!["logout", host.as_str()];
    logout.extend(flags);
    env.ok(&logout);
    let mut push_again = vec!["push", "-q", dest.as_str()];
    push_again.extend(flags);
    let stderr = env.fails(&push_again);
    assert!(stderr.contains("401"), "{stderr}");
}

#[test]
fn login_refuses_a_password_that_is_not_on_stdin() {
    let env = Env::new();
    let stderr = env.fails(&["login", "127.0.0.1:1", "-u", "x"]);
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    assert!(stderr.contains("not a terminal"), "{stderr}");
    let stderr = env.fails(&["login", "127.0.0.1:1", "--password-stdin"]);
    assert!(stderr.contains("--username"), "{stderr}");
}

/// Runs `sealrs ARGS` on a terminal (util-linux `script` makes one), answering
/// each prompt in `answers` once it shows; returns the status and all the terminal showed.
fn on_a_terminal(env: &Env, args: &[&str], answers: &[(&str, &str)]) -> (bool, String) {
    use std::io::{Read as _, Write as _};
    let line = format!("{} {}", env!("CARGO_BIN_EXE_sealrs"), args.join(" "));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("SEALRS_ROOT", &env.root)
        .current_dir(env.path(""))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut shown = Vec::new();
    for (prompt, answer) in answers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&shown).contains(prompt) {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Ok(chunk) => shown.extend(chunk),
                Err(_) => panic!("no {prompt:?} prompt: {}", String::from_utf8_lossy(&shown)),
            }
        }
        // The prompt is written just before echo goes off.
        std::thread::sleep(std::time::Duration::from_millis(500));
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    shown.extend(rx.iter().flatten());
    (
        status.success(),
        String::from_utf8_lossy(&shown).into_owned(),
    )
}

#[test]
fn login_on_a_terminal_asks_for_the_user_and_a_hidden_password() {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let env = Env::new();
    let auth = env.path("auth.json");
    let host = reg.host();
    let cert_dir = reg.cert_dir();
    let args = [
        "login",
        host.as_str(),
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--authfile",
        auth.to_str().unwrap(),
    ];
    let (ok, shown) = on_a_terminal(
        &env,
        &args,
        &[("Username: ", USER), ("Password: ", PASSWORD)],
    );
    assert!(ok, "{shown}");
    assert!(shown.contains("Login succeeded"), "{shown}");
    assert!(shown.contains(USER), "the user name is echoed: {shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed: {shown}"
    );
    assert!(std::fs::read_to_string(&auth).unwrap().contains(&host));
}
