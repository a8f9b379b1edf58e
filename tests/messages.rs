//! What people read: counts in the singular when there is one, one unit for
//! sizes, digests cut where a line would wrap, each thing said once.

use crate::common::Env;
use crate::layout::example;

/// Lines of `text` that hold a full 64-digit hex digest.
fn lines_with_full_digests(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_hexdigit())
                .any(|run| run.len() == 64)
        })
        .collect()
}

#[test]
fn a_rootfs_build_counts_the_installer_layer_says_its_layout_once_and_cuts_digests() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    let args = [
        "build",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k3s-cluster:1",
        &dir,
    ];
    let first = env.run(&args);
    assert!(first.status.success(), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    // bin, images, manifests, etc and the installer.
    assert!(
        stderr.contains("(5 layers, 0 from cache; holds layouts/k3s.toml)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("layouts/k3s.toml").count(), 1, "{stderr}");
    assert!(lines_with_full_digests(&stderr).is_empty(), "{stderr}");
    assert!(!stderr.contains(" bytes)"), "sizes in one unit: {stderr}");
    assert!(stderr.contains("installer → "), "{stderr}");

    let again = env.run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("(5 layers, 5 from cache;"), "{stderr}");
}

#[test]
fn one_of_a_thing_is_singular() {
    let env = Env::new();
    env.write("app/Kubefile", "FROM scratch\nCOPY a.yaml /manifests/\n");
    env.write("app/a.yaml", "kind: List\n");
    let out = env.run(&["build", "--no-images", "-t", "app:1", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(1 layer, 0 from cache"), "{stderr}");
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.starts_with("checked 1 image, 3 blobs"), "{fsck}");
}

#[test]
fn a_dry_run_masks_env_values_whose_keys_look_secret_unless_asked() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k3s-cluster:1",
        &dir,
    ]);
    let args = [
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "10.250.200.11",
        "-e",
        "REGISTRY_PASSWORD=hunter2-$x",
        "-e",
        "api_token=abc123def",
        "-e",
        "POD_CIDR=10.42.0.0/16",
    ];
    let out = env.run(&args);
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("abc123def"),
        "{stdout}"
    );
    assert!(
        stdout.contains("REGISTRY_PASSWORD=<masked>") && stdout.contains("api_token=<masked>"),
        "{stdout}"
    );
    assert!(stdout.contains("POD_CIDR=10.42.0.0/16"), "{stdout}");
    assert!(stderr.contains("--show-secrets"), "{stderr}");

    let mut shown = args.to_vec();
    shown.push("--show-secrets");
    let stdout = env.ok(&shown);
    assert!(
        stdout.contains("hunter2-$x") && stdout.contains("api_token=abc123def"),
        "{stdout}"
    );
    // Only a dry run prints values.
    let err = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--masters",
        "10.250.200.11",
        "--show-secrets",
    ]);
    assert!(err.contains("--dry-run"), "{err}");
}

#[test]
fn a_misspelled_runtime_label_is_refused_before_any_layer_is_built() {
    let env = Env::new();
    env.write(
        "ctx/Kubefile",
        "FROM scratch\nLABEL sealrs.io/type=rootfs sealrs.io/runtime=\"k3z\" sealrs.io/version=v1.30.2+k3s1\nCOPY bin /bin\n",
    );
    env.write("ctx/bin/k3s", vec![7u8; 1 << 20]);
    let err = env.fails(&["build", "--no-images", "-t", "typo:1", "ctx"]);
    assert!(
        err.contains("label sealrs.io/runtime=\"k3z\": did you mean k3s? expected one of"),
        "{err}"
    );
    assert!(!err.contains("COPY"), "no layer is built first: {err}");
    assert!(
        env.store_state().0.is_empty(),
        "blobs written: {:?}",
        env.store_state()
    );
}

#[test]
fn a_misspelled_instruction_names_the_one_meant() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nCOPPY a /a\n");
    let err = env.fails(&["build", "-t", "typo:1", "ctx"]);
    assert!(
        err.contains("Kubefile:2:1: unknown instruction `COPPY` (did you mean COPY?)"),
        "{err}"
    );
}

#[test]
fn a_label_reading_an_undefined_variable_warns_as_buildkit_does() {
    let env = Env::new();
    env.write(
        "ctx/Kubefile",
        "FROM scratch\nARG VERSON=1\nARG EMPTY\nLABEL app.version=\"${VERSION}\" e=$EMPTY d=${NOPE:-x}\nCOPY a /a\n",
    );
    env.write("ctx/a", "a");
    let out = env.run(&["build", "--no-images", "-t", "undef:1", "ctx"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("Kubefile:4:19: LABEL reads $VERSION, which no ARG or ENV before it defines")
            && stderr.contains("did you mean $VERSON?"),
        "{stderr}"
    );
    // A declared ARG without a value, and a default, are no surprise.
    assert_eq!(stderr.matches("UndefinedVar").count(), 1, "{stderr}");
}

#[test]
fn masters_take_a_range_as_sealos_does_and_refuse_a_bare_name_that_does_not_resolve() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        "k3s-cluster:1",
        &dir,
    ]);
    let out = env.ok(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "10.250.200.11-10.250.200.13",
        "--nodes",
        "10.250.200.21",
    ]);
    for host in [
        "10.250.200.11 (master): install",
        "10.250.200.12 (master): join",
        "10.250.200.13 (master): join",
    ] {
        assert!(out.contains(&format!("# {host}")), "{host}:\n{out}");
    }
    let err = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "10.250.200.13-10.250.200.11",
    ]);
    assert!(err.contains("the range ends before it starts"), "{err}");
    let err = env.fails(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "sealrs-no-such-host",
    ]);
    assert!(
        err.contains(
            "sealrs-no-such-host: not an IP address, and not a name this machine resolves"
        ),
        "{err}"
    );
    // A name this machine resolves is a host.
    env.ok(&[
        "run",
        "k3s-cluster:1",
        "--dry-run",
        "--masters",
        "localhost",
    ]);
}

#[test]
fn a_login_that_is_not_root_is_refused_by_the_host_check_before_anything_changes() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let host = &hosts[0];
    host.exec_ok(&["useradd", "--create-home", "--uid", "1000", "ops"]);
    host.exec_ok(&["mkdir", "-p", "/home/ops/.ssh"]);
    host.exec_ok(&[
        "cp",
        "/root/.ssh/authorized_keys",
        "/home/ops/.ssh/authorized_keys",
    ]);
    host.exec_ok(&["chown", "-R", "ops:ops", "/home/ops/.ssh"]);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let out = crate::run::on_hosts(
        &env,
        &hosts,
        &[
            "run",
            "k3s-cluster:1",
            "--masters",
            &host.ip,
            "--ssh-user",
            "ops",
        ],
        false,
    );
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logged in as ops (uid 1000); sealrs needs root on hosts"),
        "{err}"
    );
    assert!(!host
        .exec(&["test", "-e", "/var/lib/sealrs-host"])
        .status
        .success());
}

#[test]
fn known_hosts_given_at_run_is_remembered_for_the_next_commands() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[], &[]);
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(
        saved.contains(&format!("knownHosts: {}", hosts.known_hosts().display())),
        "{saved}"
    );
    // No --known-hosts (nor --ssh-key) now: both come from the saved cluster.
    let status = env.run(&["status"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(stdout.contains("every host healthy"), "{stdout}");
    let out = env.run(&["reset", "--yes"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_changed_host_key_stops_reset_and_delete_even_with_force_and_is_not_called_unreachable() {
    let hosts = crate::hosts::TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    hosts[1].regenerate_host_key();
    for args in [
        vec!["reset", "--force"],
        vec!["delete", "--nodes", hosts[1].ip.as_str(), "--force"],
    ] {
        let out = crate::run::on_hosts(&env, &hosts, &args, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains(&format!("HOST KEY OF {} HAS CHANGED", hosts[1].ip)),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("cannot reach") && !err.contains("unreachable"),
            "{args:?}: {err}"
        );
    }
    // Nothing was reset or forgotten.
    for host in hosts.hosts() {
        assert!(host
            .exec(&["test", "-e", "/var/lib/sealrs-host"])
            .status
            .success());
    }
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains(&hosts[1].ip), "{saved}");
}

#[test]
fn a_rootfs_for_another_architecture_without_installer_says_how_to_build_one_before_any_layer() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    let other = if std::env::consts::ARCH == "aarch64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let target = if other == "linux/arm64" {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    };
    let err = env.fails(&[
        "build",
        "--no-images",
        "--platform",
        other,
        "-t",
        "k3s-cluster:1",
        &dir,
    ]);
    assert!(
        err.contains(&format!("cargo build --release --target {target}"))
            && err.contains("\"Other architectures\" in the README")
            && err.contains("--no-installer"),
        "{err}"
    );
    assert!(
        env.store_state().0.is_empty(),
        "layers built first: {:?}",
        env.store_state()
    );
}

/// Runs sealrs with `args` in a terminal (script(1) gives it one): whether
/// it succeeded, and what the terminal showed.
pub(crate) fn in_a_terminal(env: &Env, args: &[String]) -> (bool, String) {
    let line = std::iter::once(env!("CARGO_BIN_EXE_sealrs").to_string())
        .chain(args.iter().cloned())
        .map(|a| sealrs::transport::sh_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("SEALRS_ROOT", &env.root)
        .env("TERM", "xterm")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

/// Whether the terminal showed `step` followed by the installer's plan step
/// ("h1: k3s install [7/15] start k3s.service").
fn shows_plan_step(text: &str, step: &str) -> bool {
    let at = format!("{step} [");
    text.match_indices(&at).any(|(i, _)| {
        let rest = &text[i + at.len()..];
        let (count, title) = rest.split_once("] ").unwrap_or_default();
        let (number, planned) = count.split_once('/').unwrap_or_default();
        number.parse::<usize>().is_ok() && planned.parse::<usize>().is_ok() && !title.is_empty()
    })
}

#[test]
fn on_a_terminal_a_host_step_shows_the_plan_step_it_is_at_and_the_time_it_took() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let mut args: Vec<String> = vec![
        "run".into(),
        "k3s-cluster:1".into(),
        "--masters".into(),
        hosts[0].ip.clone(),
    ];
    args.extend(crate::run::ssh_flags(&hosts));
    let (ok, text) = in_a_terminal(&env, &args);
    assert!(ok, "{text}");
    let step = format!("{}: k3s install ", hosts[0].ip);
    let timed = text.match_indices(&step).any(|(i, _)| {
        let rest = &text[i + step.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('s')
    });
    assert!(timed, "no `{step}Ns` on the terminal:\n{text}");
    // The byte bars count in the messages' one unit (kB, MB), not in KiB.
    assert!(text.contains(" kB/"), "no byte bar in kB:\n{text}");
    assert!(
        !text.contains("iB"),
        "a binary unit on the terminal:\n{text}"
    );
    // While it ran, the step of the installer's plan it was at.
    let install = format!("{}: k3s install", hosts[0].ip);
    assert!(
        shows_plan_step(&text, &install),
        "no `{install} [N/M] STEP` on the terminal:\n{text}"
    );

    // Reset shows its uninstall's plan step the same way.
    let mut args: Vec<String> = vec!["reset".into(), "--yes".into()];
    args.extend(crate::run::ssh_flags(&hosts));
    let (ok, text) = in_a_terminal(&env, &args);
    assert!(ok, "{text}");
    let uninstall = format!("{}: k3s uninstall", hosts[0].ip);
    assert!(
        shows_plan_step(&text, &uninstall),
        "no `{uninstall} [N/M] STEP` on the terminal:\n{text}"
    );
}

#[test]
fn a_host_that_never_answers_times_out_after_ssh_timeout_and_the_message_names_the_flag() {
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let key = env.dir.path().join("id_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    // Accepts the TCP connection and never sends an SSH banner.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let master = format!("127.0.0.1:{port}");
    let key = key.display().to_string();
    let run = |timeout: &str| {
        env.run(&[
            "run",
            "k3s-cluster:1",
            "--masters",
            &master,
            "--ssh-key",
            &key,
            "--ssh-timeout",
            timeout,
        ])
    };
    let started = std::time::Instant::now();
    let out = run("1");
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(err.contains("--ssh-timeout SECONDS"), "{err}");
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
    drop(silent);

    let out = run("0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("'0' for '--ssh-timeout <SECONDS>'"), "{err}");
}

#[test]
fn a_failed_host_step_says_which_of_the_plans_steps_it_was() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let host = &hosts[0];
    // The rootfs cannot place k3s's configuration where a file is.
    host.exec_ok(&["mkdir", "-p", "/etc/rancher"]);
    host.exec_ok(&["touch", "/etc/rancher/k3s"]);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let out = crate::run::on_hosts(
        &env,
        &hosts,
        &["run", "k3s-cluster:1", "--masters", &host.ip],
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let at = "install failed at step place-rootfs (";
    let start = err.find(at).unwrap_or_else(|| panic!("{err}")) + at.len();
    let rest = &err[start..err[start..].find(')').unwrap() + start];
    let (number, planned) = rest
        .split_once("; step ")
        .and_then(|(_, n)| n.split_once(" of "))
        .unwrap_or_else(|| panic!("no `; step N of M` in {rest:?}:\n{err}"));
    let (number, planned): (usize, usize) = (number.parse().unwrap(), planned.parse().unwrap());
    // The first step fails; the plan had more.
    assert!(number == 1 && planned > 1, "{rest}");
}

#[test]
fn a_failed_uninstall_step_says_which_of_the_plans_steps_it_was() {
    let hosts = crate::hosts::TestHosts::boot(1);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.write_mode(&format!("{dir}/scripts/noop.sh"), "#!/bin/sh\n", 0o755);
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str("COPY scripts ./scripts\nLABEL sealrs.io/clean=\"echo cannot clean; exit 3\"\n");
    std::fs::write(&kubefile, text).unwrap();
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-clean:1", &dir]);
    let ip = hosts[0].ip.as_str();
    crate::run::run_on(&env, "k3s-clean:1", &hosts, &[0], &[], &[]);
    let out = crate::run::on_hosts(&env, &hosts, &["reset"], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let at = "uninstall failed at step hook-clean (run the image's clean hook (label); step ";
    let start = err.find(at).unwrap_or_else(|| panic!("{err}")) + at.len();
    let rest = &err[start..err[start..].find(')').unwrap() + start];
    let (number, planned) = rest
        .split_once(" of ")
        .unwrap_or_else(|| panic!("no `; step N of M` in {rest:?}:\n{err}"));
    let (number, planned): (usize, usize) = (number.parse().unwrap(), planned.parse().unwrap());
    // Services stop before the clean hook; steps remain after it.
    assert!(number > 1 && planned > number, "{rest}");
    assert!(err.contains("cannot clean"), "the last lines: {err}");
    assert!(
        err.contains(&format!("{ip}: output of the clean hook (1 line) in ")),
        "{err}"
    );
}

#[test]
fn a_first_cluster_run_its_images_and_reset_say_each_thing_once_in_lines_of_at_most_160_columns() {
    let hosts = crate::hosts::TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    let build = env.run(&["build", "--no-images", "-t", "k3s-cluster:1", &dir]);
    assert!(build.status.success(), "{build:?}");
    let run = crate::run::run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let reset = crate::run::on_hosts(&env, &hosts, &["reset"], true);
    assert!(reset.status.success(), "{reset:?}");
    let commands = [
        String::from_utf8_lossy(&build.stderr).into_owned(),
        env.ok(&["images"]),
        run,
        String::from_utf8_lossy(&reset.stderr).into_owned(),
    ];
    for said in &commands {
        let wide: Vec<&str> = said.lines().filter(|l| l.chars().count() > 160).collect();
        assert!(wide.is_empty(), "wider than 160 columns: {wide:#?}");
        assert!(lines_with_full_digests(said).is_empty(), "{said}");
        let mut seen = std::collections::BTreeSet::new();
        let twice: Vec<&str> = said
            .lines()
            .filter(|l| !l.trim().is_empty() && !seen.insert(*l))
            .collect();
        assert!(twice.is_empty(), "said twice: {twice:#?}\n{said}");
    }
    // The summary's size in the one unit (the exact count is in --format json).
    assert!(
        commands[2].contains(" MB of layers sent); state in "),
        "{}",
        commands[2]
    );
}

/// The subcommands a `--help` lists, and each argument or option of it that
/// has no text saying what it is for.
fn help_gaps(help: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = help.lines().collect();
    let (mut commands, mut bare) = (Vec::new(), Vec::new());
    let mut section = "";
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let Some(entry) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else {
            continue;
        };
        let (name, text) = entry.split_once("  ").unwrap_or((entry, ""));
        match section {
            "Commands:" if name != "help" => commands.push(name.trim().to_string()),
            "Arguments:" | "Options:" => {
                let next = lines.get(i + 1).map_or("", |l| l.trim());
                let indented = lines.get(i + 1).is_some_and(|l| l.starts_with("      "));
                let said = !text.trim().is_empty() || indented && !next.is_empty();
                if !said {
                    bare.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    (commands, bare)
}

#[test]
fn every_argument_of_every_command_says_in_its_help_what_it_is_for() {
    let env = Env::new();
    let mut queue = vec![Vec::<String>::new()];
    let (mut seen, mut bare) = (0, Vec::new());
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (commands, gaps) = help_gaps(&env.ok(&args));
        seen += 1;
        bare.extend(
            gaps.into_iter()
                .map(|g| format!("sealrs {} {g}", path.join(" "))),
        );
        for command in commands {
            let mut sub = path.clone();
            sub.push(command);
            queue.push(sub);
        }
    }
    assert!(seen > 25, "only {seen} helps read");
    assert!(bare.is_empty(), "no help text: {bare:#?}");
    // The ones a newcomer missed, with run --ssh-user's default.
    let run = env.ok(&["run", "--help"]);
    assert!(
        run.contains("SSH user on every host [default: root]"),
        "{run}"
    );
    assert_eq!(
        help_gaps("Arguments:\n  <IMAGE>...\n\nOptions:\n  -f, --force  Remove\n").1,
        ["<IMAGE>..."]
    );
}
