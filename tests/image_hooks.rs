//! Image hooks on a real host: the labels `check` and `clean` (as sealos
//! rootfs images carry them: `bash LABEL`) and `sealrs.io/init` (bash text)
//! run from the rootfs' `scripts/` with the cluster
//! env, and both the label text and the env values arrive byte for byte;
//! init runs once, and reset's `clean` leaves the host as it was.

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;
use crate::lifecycle::snapshot;
use crate::run::{run_on, run_on_counted, ssh_flags};

/// `-e 'PASS=pa$$w0rd"`x'`, as a user types it.
const PASS: &str = "pa$$w0rd\"`x";
/// What the init label writes, single-quoted inside it: `$$`, `"` and a backquote.
const LITERAL: &str = "lit$$\"`x";
/// The hook texts as bash must get them.
const CHECK: &str = "check.sh";
const INIT: &str = "bash init.sh && printf '%s' \"$PASS\" > /etc/sealrs-hook-pass && printf '%s' 'lit$$\"`x' > /etc/sealrs-hook-literal";
const CLEAN: &str = "clean.sh /etc/sealrs-hook-pass /etc/sealrs-hook-literal";

/// The same texts in the Kubefile: LABEL values in double quotes, where `\$`
/// keeps a `$` from the build's own expansion and `\"` is a quote.
const LABELS: &str = r#"
COPY scripts ./scripts
LABEL check="check.sh" \
      sealrs.io/init="bash init.sh && printf '%s' \"\$PASS\" > /etc/sealrs-hook-pass && printf '%s' 'lit\$\$\"`x' > /etc/sealrs-hook-literal" \
      clean="clean.sh /etc/sealrs-hook-pass /etc/sealrs-hook-literal"
"#;

/// Builds the k3s example with stand-ins, scripts and the hook labels (the
/// k3s layout wants its scripts executable: the installer's unit tests show
/// the hooks making them so).
fn build(env: &Env) -> &'static str {
    let dir = example(env, "k3s", "k3s");
    for (name, text) in [
        (
            "init.sh",
            "#!/bin/bash\n# Where it ran: the cwd of the init hook.\necho \"$PWD\" >> /etc/sealrs-hook-runs\n",
        ),
        ("check.sh", "#!/bin/bash\ntest -x init.sh\n"),
        ("clean.sh", "#!/bin/bash\nrm -f \"$@\" /etc/sealrs-hook-runs\n"),
    ] {
        env.write_mode(&format!("{dir}/scripts/{name}"), text, 0o755);
    }
    let kubefile = env.path(&format!("{dir}/Kubefile"));
    let mut text = std::fs::read_to_string(&kubefile).unwrap();
    text.push_str(LABELS);
    std::fs::write(&kubefile, text).unwrap();
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-hooks:1", &dir]);
    "k3s-hooks:1"
}

/// A file on the host, byte for byte (read from its root, no shell between).
fn host_file(hosts: &TestHosts, path: &str) -> Option<Vec<u8>> {
    std::fs::read(hosts[0].root().join(path.trim_start_matches('/'))).ok()
}

#[test]
fn hook_labels_and_env_values_reach_the_host_byte_for_byte_init_runs_once_and_reset_cleans() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    let image = build(&env);

    // The label is stored as written, `$` and quotes included.
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    let labels = &doc["config"]["config"]["Labels"];
    assert_eq!(labels["check"], CHECK, "{labels:#}");
    assert_eq!(labels["sealrs.io/init"], INIT, "{labels:#}");
    assert_eq!(labels["clean"], CLEAN, "{labels:#}");

    // The dry-run shows the hooks as data, quoted, never expanded.
    let pass_arg = format!("PASS={PASS}");
    let dry = env.ok(&[
        "run",
        image,
        "--masters",
        &hosts[0].ip,
        "-e",
        &pass_arg,
        "--dry-run",
    ]);
    let shown = format!("run: bash -c {}", sealrs::plan::quote(INIT));
    assert!(dry.contains(&shown), "missing {shown}\nin\n{dry}");
    assert!(dry.contains("run: bash -c 'bash check.sh'"), "{dry}");

    let before = snapshot(&hosts[0]);
    run_on(&env, image, &hosts, &[0], &[], &["-e", &pass_arg]);
    assert_eq!(
        host_file(&hosts, "/etc/sealrs-hook-pass").as_deref(),
        Some(PASS.as_bytes()),
        "the env value, expanded by the host's bash"
    );
    assert_eq!(
        host_file(&hosts, "/etc/sealrs-hook-literal").as_deref(),
        Some(LITERAL.as_bytes()),
        "the label text, not expanded on the way"
    );
    let runs = String::from_utf8(host_file(&hosts, "/etc/sealrs-hook-runs").unwrap()).unwrap();
    let digest = doc["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        runs,
        format!("/var/lib/sealrs-host/rootfs/{digest}/scripts\n"),
        "init ran once, from the rootfs' scripts/"
    );

    // A rerun changes nothing: check runs again, init does not.
    let (again, counts) = run_on_counted(&env, image, &hosts, &[0], &[], &["-e", &pass_arg]);
    assert_eq!(counts, (0, 0), "{again}");
    let runs_after = String::from_utf8(host_file(&hosts, "/etc/sealrs-hook-runs").unwrap());
    assert_eq!(runs_after.unwrap(), runs);

    // Reset runs clean: the host is as it was before the run.
    let mut reset = vec!["reset".to_string(), "--yes".to_string()];
    reset.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = reset.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in [
        "/etc/sealrs-hook-pass",
        "/etc/sealrs-hook-literal",
        "/etc/sealrs-hook-runs",
    ] {
        assert_eq!(host_file(&hosts, path), None, "{path} left");
    }
    let (files, units) = snapshot(&hosts[0]);
    let added: Vec<_> = files.difference(&before.0).collect();
    let removed: Vec<_> = before.0.difference(&files).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "left {added:?}, removed {removed:?}"
    );
    assert_eq!(units, before.1);
}
