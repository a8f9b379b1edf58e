//! A cluster's second day (issue 17): what `reset` keeps, one command per
//! cluster at a time, confirmation, `--dry-run` of the lifecycle commands,
//! membership and pinned digests, on real hosts with the k3s stand-ins.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::{on_hosts, run_on, ssh_flags};

/// `sealrs ARGS... <ssh flags>`, unconfirmed: these tests ask the question.
fn sealrs(env: &Env, hosts: &TestHosts, args: &[&str]) -> std::process::Output {
    on_hosts(env, hosts, args, false)
}

/// [`sealrs`] that must succeed; its stderr (and stdout after it).
fn ok(env: &Env, hosts: &TestHosts, args: &[&str]) -> String {
    let out = sealrs(env, hosts, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "sealrs {args:?} failed:\n{text}");
    text
}

/// [`sealrs`] that must fail, cleanly; its stderr.
fn fails(env: &Env, hosts: &TestHosts, args: &[&str]) -> String {
    let out = sealrs(env, hosts, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sealrs {args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn exists(host: &Host, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

fn build_k3s(env: &Env, tag: &str) -> String {
    let dir = example(env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", tag, &dir]);
    dir
}

fn saved(env: &Env) -> String {
    fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap()
}

/// Makes `host` an operator too: this sealrs in `/root/sealrs`, and `image`
/// loaded into its store at root's default root (`/var/lib/sealrs`), by
/// sealrs running on the host.
fn operate_from(env: &Env, host: &Host, image: &str) {
    let archive = env.path("operator.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), image]);
    fs::copy(&archive, host.root().join("root/image.tar")).unwrap();
    let bin = host.root().join("root/sealrs");
    fs::copy(env!("CARGO_BIN_EXE_sealrs"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    host.exec_ok(&["/root/sealrs", "load", "-i", "/root/image.tar"]);
    host.exec_ok(&["rm", "/root/image.tar"]);
}

/// What the host's own sealrs lists in its default store.
fn host_images(host: &Host) -> String {
    host.exec_ok(&["/root/sealrs", "images"])
}

#[test]
fn reset_keeps_the_image_store_of_a_host_that_is_also_the_operator() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    operate_from(&env, &hosts[0], "k3s-cluster:1");
    assert!(exists(&hosts[0], "/var/lib/sealrs/oci/oci-layout"));
    let before = host_images(&hosts[0]);
    assert!(before.contains("k3s-cluster"), "{before}");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    assert!(exists(&hosts[0], "/var/lib/sealrs-host/rootfs"));

    // A store where sealrs keeps its host state (someone ran sealrs with
    // --root /var/lib/sealrs-host): refused before anything changes.
    hosts[1].exec_ok(&["mkdir", "-p", "/var/lib/sealrs-host/clusters/mine"]);
    let refused = fails(&env, &hosts, &["reset", "--yes"]);
    assert!(
        refused.contains(&hosts[1].ip) && refused.contains("holds a sealrs image store"),
        "{refused}"
    );
    for host in [&hosts[0], &hosts[1]] {
        assert!(exists(host, "/usr/local/bin/k3s"), "nothing changed");
    }
    assert!(exists(&hosts[1], "/var/lib/sealrs-host/clusters/mine"));
    hosts[1].exec_ok(&["rm", "-r", "/var/lib/sealrs-host/clusters"]);

    let out = ok(&env, &hosts, &["reset", "--yes"]);
    assert!(out.contains("cluster default reset on 2 hosts"), "{out}");
    for host in [&hosts[0], &hosts[1]] {
        assert!(!exists(host, "/var/lib/sealrs-host"), "{}", host.name);
        assert!(!exists(host, "/usr/local/bin/k3s"), "{}", host.name);
    }
    // The operator's store on the host is whole: same images, blobs intact.
    assert_eq!(host_images(&hosts[0]), before);
    hosts[0].exec_ok(&["/root/sealrs", "fsck"]);
}

#[test]
fn a_second_command_on_a_cluster_fails_at_once_naming_the_first() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);

    // A second `run` that holds the cluster: it waits for its SSH password
    // on stdin, which this test never closes.
    let mut args: Vec<String> = [
        "run",
        "k3s-cluster:1",
        "--masters",
        &hosts[0].ip,
        "--nodes",
        &hosts[1].ip,
        "--ssh-password-stdin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = env
        .cmd(&refs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = env.root.join("clusters/default/lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs::read_to_string(&lock).is_ok_and(|t| t.contains(&first.id().to_string())) {
        assert!(
            std::time::Instant::now() < deadline,
            "run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let started = std::time::Instant::now();
    for args in [
        &["reset", "--yes"][..],
        &["add", "--nodes", "10.250.255.1"][..],
    ] {
        let busy = fails(&env, &hosts, args);
        assert!(
            busy.contains("cluster default is busy")
                && busy.contains(&format!(
                    "sealrs run --cluster default (pid {}, since 20",
                    first.id()
                )),
            "{busy}"
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "at once"
    );
    assert!(first.try_wait().unwrap().is_none(), "the first still runs");
    for host in [&hosts[0], &hosts[1]] {
        assert!(exists(host, "/usr/local/bin/k3s"), "nothing changed");
    }
    assert!(saved(&env).contains("Running"));

    // Killed, it holds nothing: the kernel dropped its lock.
    first.kill().unwrap();
    first.wait().unwrap();
    let out = ok(&env, &hosts, &["reset", "--yes"]);
    assert!(out.contains("cluster default reset on 2 hosts"), "{out}");
    assert!(!exists(&hosts[1], "/usr/local/bin/k3s"));
    // A command on a cluster that is not saved leaves no lock behind.
    assert!(!env.root.join("clusters/default").exists());
    let typo = fails(&env, &hosts, &["reset", "--yes", "--cluster", "defualt"]);
    assert!(typo.contains("no saved cluster defualt"), "{typo}");
    assert!(!env.root.join("clusters/defualt").exists());
}

#[test]
fn reset_and_delete_ask_first_and_refuse_without_a_terminal() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let before = saved(&env);

    // The tests' stdin is not a terminal.
    let reset = fails(&env, &hosts, &["reset"]);
    for line in [
        "sealrs reset will:".to_string(),
        format!(
            "  - {} (master): uninstall k3s and remove /var/lib/sealrs-host",
            hosts[0].ip
        ),
        format!(
            "  - {} (node): uninstall k3s and remove /var/lib/sealrs-host",
            hosts[1].ip
        ),
        "  - forget the saved cluster default".to_string(),
        "there is no terminal to ask on; nothing was changed: pass --yes".to_string(),
    ] {
        assert!(reset.contains(&line), "{line:?} in:\n{reset}");
    }
    let delete = fails(&env, &hosts, &["delete", "--nodes", &hosts[1].ip]);
    assert!(
        delete.contains("sealrs delete will:")
            && delete.contains("drain this host and delete its node from Kubernetes")
            && delete.contains(&format!("  - {} (node): uninstall k3s", hosts[1].ip))
            && delete.contains("pass --yes"),
        "{delete}"
    );
    assert!(!delete.contains(&hosts[0].ip), "only what goes: {delete}");

    // Nothing changed: no host reached, the saved cluster as it was.
    for host in [&hosts[0], &hosts[1]] {
        assert!(exists(host, "/usr/local/bin/k3s"), "{}", host.name);
        assert!(exists(host, "/var/lib/sealrs-host"), "{}", host.name);
    }
    assert!(!crate::run::standin_log(&hosts[0]).contains(" drain "));
    assert_eq!(saved(&env), before);
}

/// `sealrs ARGS --dry-run`'s stdout, which must succeed.
fn dry_run(env: &Env, hosts: &TestHosts, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--dry-run");
    let out = sealrs(env, hosts, &all);
    assert!(
        out.status.success(),
        "sealrs {all:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn add_delete_upgrade_and_reset_dry_runs_show_each_plan_and_reach_no_host() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let dir = build_k3s(&env, "k3s-cluster:1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        "VERSION=v1.30.3+k3s1",
        "-t",
        "k3s-cluster:2",
        &dir,
    ]);
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let before = saved(&env);
    // No host is reached: they are all down.
    for i in 0..3 {
        hosts.stop(i);
    }
    let (m, n, new) = (&hosts[0], &hosts[1], &hosts[2]);

    // add: the first master's install again for the secrets, then the new
    // host's join plan, and no other host's.
    let add = dry_run(&env, &hosts, &["add", "--nodes", &new.ip]);
    for part in [
        format!("# {} runs its install again, for the join secrets", m.ip),
        format!("# then the nodes join in parallel: {}\n", new.ip),
        format!("# {} (node): join\nplan: k3s join on {} (", new.ip, new.ip),
        format!("| node-ip: {}", new.ip),
    ] {
        assert!(add.contains(&part), "{part:?} in:\n{add}");
    }
    assert!(
        !add.contains(&format!("plan: k3s join on {}", n.ip)),
        "{add}"
    );

    // delete: drain and delete the node on the first master, by its
    // recorded name, then its uninstall plan.
    let delete = dry_run(&env, &hosts, &["delete", "--nodes", &n.ip]);
    let drain = format!(
        "# {} (master): drain and delete node {} ({})\nplan: k3s remove-node on {}",
        m.ip, n.name, n.ip, m.ip
    );
    let kubectl = format!(
        "run: /usr/local/bin/k3s kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml drain {} --ignore-daemonsets",
        n.name
    );
    let uninstall = format!(
        "# {} (node): uninstall, then rm -rf --one-file-system /var/lib/sealrs-host\nplan: k3s uninstall on {}",
        n.ip, n.ip
    );
    for part in [&drain, &kubectl, &uninstall] {
        assert!(delete.contains(part.as_str()), "{part:?} in:\n{delete}");
    }
    assert!(delete.find(&drain) < delete.find(&uninstall), "{delete}");
    assert!(
        !delete.contains(&format!("uninstall on {}", m.ip)),
        "{delete}"
    );

    // upgrade: the batches in order, then each host's upgrade plan.
    let upgrade = dry_run(&env, &hosts, &["upgrade", "k3s-cluster:2"]);
    for part in [
        format!(
            "#   batch 1 (master): {}\n#   batch 2 (node): {}\n",
            m.ip, n.ip
        ),
        format!(
            "# {} (master): batch 1: upgrade to v1.30.3+k3s1\nplan: k3s upgrade on {}",
            m.ip, m.ip
        ),
        format!(
            "# {} (node): batch 2: upgrade to v1.30.3+k3s1\nplan: k3s upgrade on {}",
            n.ip, n.ip
        ),
    ] {
        assert!(upgrade.contains(&part), "{part:?} in:\n{upgrade}");
    }
    // Around each host's upgrade, on the first master: cordon and drain
    // its node, then wait for it Ready with the new version, uncordon it;
    // the workers' batch size is said.
    for part in [
        "workers 1 at a time (--max-unavailable 10% of 1)".to_string(),
        format!(
            "# {} (master): batch 2: cordon node {} ({})\nplan: k3s cordon-node on {}",
            m.ip, n.name, n.ip, m.ip
        ),
        format!(
            "run: /usr/local/bin/k3s kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml drain {} --ignore-daemonsets",
            n.name
        ),
        format!(
            "# {} (master): batch 2: wait until node {} reports Ready with v1.30.3+k3s1 (at most 300s)",
            m.ip, n.name
        ),
        format!(
            "# {} (master): batch 2: uncordon node {} ({})\nplan: k3s uncordon-node on {}",
            m.ip, n.name, n.ip, m.ip
        ),
    ] {
        assert!(upgrade.contains(&part), "{part:?} in:\n{upgrade}");
    }
    let at = |what: &str| {
        upgrade
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} in:\n{upgrade}"))
    };
    assert!(
        at(&format!("batch 2: cordon node {}", n.name))
            < at(&format!("batch 2: drain node {}", n.name))
            && at(&format!("batch 2: drain node {}", n.name))
                < at(&format!("plan: k3s upgrade on {}", n.ip))
            && at(&format!("plan: k3s upgrade on {}", n.ip))
                < at(&format!("batch 2: uncordon node {}", n.name)),
        "{upgrade}"
    );
    let with = dry_run(
        &env,
        &hosts,
        &[
            "upgrade",
            "k3s-cluster:2",
            "--no-drain",
            "--max-unavailable",
            "50%",
        ],
    );
    assert!(
        with.contains("cordoned (--no-drain: not drained)"),
        "{with}"
    );
    assert!(!with.contains(" drain node "), "{with}");
    // A bad --max-unavailable is refused before anything.
    for bad in ["0", "0%", "120%", "two"] {
        let refused = fails(
            &env,
            &hosts,
            &[
                "upgrade",
                "k3s-cluster:2",
                "--max-unavailable",
                bad,
                "--dry-run",
            ],
        );
        assert!(
            refused.contains("--max-unavailable") && refused.contains("25%"),
            "{refused}"
        );
    }

    // Refused as the command itself refuses.
    let first = fails(&env, &hosts, &["delete", "--nodes", &m.ip, "--dry-run"]);
    assert!(first.contains("first master"), "{first}");

    // reset: the worker first, the first master last.
    let reset = dry_run(&env, &hosts, &["reset"]);
    let (worker, master) = (
        reset.find(&format!("plan: k3s uninstall on {}", n.ip)),
        reset.find(&format!("plan: k3s uninstall on {}", m.ip)),
    );
    assert!(
        worker.is_some() && master.is_some() && worker < master,
        "{reset}"
    );
    assert!(
        reset.contains("then the saved cluster is forgotten"),
        "{reset}"
    );

    // Nothing changed here either.
    assert_eq!(saved(&env), before);
}

#[test]
fn run_naming_fewer_hosts_than_the_saved_cluster_refuses_and_points_to_delete() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let before = saved(&env);
    let log = crate::run::standin_log(&hosts[0]);

    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["run", "k3s-cluster:1", "--masters", &hosts[0].ip];
        args.extend(extra);
        let refused = fails(&env, &hosts, &args);
        assert!(
            refused.contains(&format!(
                "cluster default has 1 host that this run does not name: {} (node)",
                hosts[1].ip
            )) && refused.contains(&format!(
                "nothing was changed: name them too, or remove them first with sealrs delete --cluster default --nodes {}",
                hosts[1].ip
            )),
            "{refused}"
        );
    }
    assert_eq!(saved(&env), before);
    assert_eq!(crate::run::standin_log(&hosts[0]), log, "no host reached");
    assert_eq!(
        hosts[1]
            .exec_ok(&["systemctl", "is-active", "k3s-agent"])
            .trim(),
        "active"
    );
    // Naming every host converges as before.
    let again = run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    assert!(again.contains("running on 2 hosts"), "{again}");
}

/// The image's manifest digest, from `sealrs inspect`.
fn digest_of(env: &Env, image: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    doc["digest"].as_str().unwrap().to_string()
}

#[test]
fn a_saved_cluster_pins_its_digest_for_add_and_resets_after_rmi() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let dir = build_k3s(&env, "k3s-cluster:1");
    let d1 = digest_of(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1], &[]);
    let pinned: serde_yaml_ng::Value = serde_yaml_ng::from_str(&saved(&env)).unwrap();
    assert_eq!(
        pinned["status"]["images"][0]["digest"].as_str(),
        Some(d1.as_str()),
        "{pinned:?}"
    );
    assert_eq!(
        pinned["status"]["images"][0]["name"].as_str(),
        Some("docker.io/library/k3s-cluster:1")
    );

    // The tag moves: the same version, one manifest changed.
    env.write(
        &format!("{dir}/manifests/sealrs-info.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: moved-tag\n",
    );
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    let d2 = digest_of(&env, "k3s-cluster:1");
    assert_ne!(d1, d2);

    // run would change what the cluster runs: that is upgrade's job.
    let mut args = vec!["run", "k3s-cluster:1", "--masters", &hosts[0].ip];
    args.extend(["--nodes", &hosts[1].ip]);
    let moved = fails(&env, &hosts, &args);
    assert!(
        moved.contains(&format!("now points to {d2}, but the cluster runs {d1}"))
            && moved.contains("sealrs upgrade"),
        "{moved}"
    );

    // add joins with the digest the cluster runs, and says so.
    let added = ok(&env, &hosts, &["add", "--nodes", &hosts[2].ip]);
    assert!(
        added.contains(&format!(
            "warning: docker.io/library/k3s-cluster:1 now points to {d2}, but cluster default runs {d1}: this command uses {d1}"
        )),
        "{added}"
    );
    let rootfs = hosts[2].exec_ok(&["ls", "/var/lib/sealrs-host/rootfs"]);
    assert_eq!(rootfs.trim(), d1.trim_start_matches("sha256:"));
    let info = hosts[2].exec_ok(&[
        "cat",
        &format!(
            "/var/lib/sealrs-host/rootfs/{}/manifests/sealrs-info.yaml",
            d1.trim_start_matches("sha256:")
        ),
    ]);
    assert!(
        !info.contains("moved-tag"),
        "the new host has the old image: {info}"
    );
    let after: serde_yaml_ng::Value = serde_yaml_ng::from_str(&saved(&env)).unwrap();
    assert_eq!(
        after["status"]["hosts"][hosts[2].ip.as_str()]["images"][0]["digest"].as_str(),
        Some(d1.as_str())
    );

    // rmi warns; the image and its blobs leave the store.
    let rmi = env.run(&["rmi", "k3s-cluster:1"]);
    let rmi_err = String::from_utf8_lossy(&rmi.stderr);
    assert!(rmi.status.success(), "{rmi_err}");
    assert!(
        rmi_err.contains("warning: saved cluster default runs docker.io/library/k3s-cluster:1")
            && rmi_err.contains("reset and delete still work"),
        "{rmi_err}"
    );
    let d1_blob = env
        .root
        .join("oci/blobs/sha256")
        .join(d1.trim_start_matches("sha256:"));
    assert!(!d1_blob.exists(), "pruned");

    // delete and reset work with the installer already on the hosts.
    let deleted = ok(&env, &hosts, &["delete", "--yes", "--nodes", &hosts[2].ip]);
    assert!(
        deleted.contains(&format!("deleted {}", hosts[2].ip)),
        "{deleted}"
    );
    assert!(!exists(&hosts[2], "/usr/local/bin/k3s"));
    let reset = ok(&env, &hosts, &["reset", "--yes"]);
    assert!(
        reset.contains("cluster default reset on 2 hosts"),
        "{reset}"
    );
    for host in [&hosts[0], &hosts[1], &hosts[2]] {
        assert!(!exists(host, "/var/lib/sealrs-host"), "{}", host.name);
        assert!(!exists(host, "/usr/local/bin/k3s"), "{}", host.name);
    }
    assert!(!env.root.join("clusters/default").exists());
}

#[test]
fn clusters_lists_the_saved_ones_and_kubeconfig_writes_the_admin_one_0600() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    let listed = env.ok(&["clusters"]);
    assert_eq!(listed.lines().count(), 1, "only the header: {listed}");
    let ran = run_on(
        &env,
        "k3s-cluster:1",
        &hosts,
        &[0],
        &[1],
        &["-e", "CONTROL_PLANE_ENDPOINT=api.example:7443"],
    );
    // run keeps it beside the saved cluster, 0600, and says where.
    let kept = env.root.join("clusters/default/kubeconfig");
    assert!(
        ran.contains(&format!("admin kubeconfig in {}", kept.display())),
        "{ran}"
    );
    assert_eq!(
        fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fs::read_to_string(&kept)
        .unwrap()
        .contains("server: https://api.example:7443"));

    let listed = env.ok(&["clusters"]);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["default", "k3s", "v1.30.2+k3s1", "2", "Running"],
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["clusters", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "default");
    assert_eq!(json[0]["hosts"], 2);
    assert_eq!(json[0]["state"], "Running");

    let file = env.path("admin.yaml");
    let out = ok(
        &env,
        &hosts,
        &[
            "kubeconfig",
            "--cluster",
            "default",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("server https://api.example:7443"), "{out}");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://api.example:7443")
    );
    // The rest is k3s.yaml as the first master has it.
    assert_eq!(
        written["users"][0]["user"]["token"].as_str(),
        Some("standin")
    );
    // Without -o: on stdout.
    let stdout = sealrs(&env, &hosts, &["kubeconfig"]);
    assert!(stdout.status.success());
    assert!(String::from_utf8_lossy(&stdout.stdout).contains("server: https://api.example:7443"));

    // A cluster that does not exist is named.
    let none = fails(&env, &hosts, &["kubeconfig", "--cluster", "other"]);
    assert!(none.contains("no saved cluster other"), "{none}");
}

/// `sealrs ARGS <ssh flags>` on a terminal (util-linux `script` gives it a
/// pty), with `answer` typed in; its exit status and what the terminal showed.
fn on_terminal(env: &Env, hosts: &TestHosts, args: &[&str], answer: &str) -> (bool, String) {
    let mut argv: Vec<String> = vec![env!("CARGO_BIN_EXE_sealrs").to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.extend(ssh_flags(hosts));
    for a in &argv {
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-:,=+".contains(c)),
            "{a}: the test quotes nothing"
        );
    }
    let out = crate::common::with_stdin(
        {
            let mut cmd = std::process::Command::new("script");
            cmd.args(["-q", "-e", "-c", &argv.join(" "), "/dev/null"])
                .env("SEALRS_ROOT", &env.root);
            cmd
        },
        answer.as_bytes(),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn reset_asks_on_a_terminal_and_goes_on_only_when_told_yes() {
    let hosts = TestHosts::boot(1);
    let env = Env::new();
    build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[], &[]);

    let (done, shown) = on_terminal(&env, &hosts, &["reset"], "n\n");
    assert!(!done, "{shown}");
    assert!(
        shown.contains("sealrs reset will:")
            && shown.contains("Go on? [y/N]")
            && shown.contains("sealrs reset cancelled; nothing was changed"),
        "{shown}"
    );
    assert!(exists(&hosts[0], "/usr/local/bin/k3s"));
    assert!(env.root.join("clusters/default/Clusterfile").exists());

    let (done, shown) = on_terminal(&env, &hosts, &["reset"], "y\n");
    assert!(done, "{shown}");
    assert!(
        shown.contains("cluster default reset on 1 host ("),
        "{shown}"
    );
    assert!(!exists(&hosts[0], "/usr/local/bin/k3s"));
}

/// Builds `k3s-cluster:2` from the example `dir`: k3s v1.30.3+k3s1, its
/// stand-in binary that version too.
fn build_k3s_v2(env: &Env, dir: &str) {
    crate::layout::standin_version(env, dir, "v1.30.3+k3s1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        "VERSION=v1.30.3+k3s1",
        "-t",
        "k3s-cluster:2",
        dir,
    ]);
}

/// The version the saved cluster records for `host`.
fn version_of(env: &Env, host: &Host) -> String {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&saved(env)).unwrap();
    doc["status"]["hosts"][host.ip.as_str()]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What the first master's kubectl stand-in recorded: (verb, node, ns).
fn cordons(first: &Host) -> Vec<(String, String, u128)> {
    let out = first.exec(&["cat", "/var/log/sealrs-standin-cordons"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            assert_eq!(w.len(), 3, "{l}");
            (w[0].to_string(), w[1].to_string(), w[2].parse().unwrap())
        })
        .collect()
}

/// When `node` first registered with the first master at `version` (ns).
fn registered_at(first: &Host, node: &str, version: &str) -> Option<u128> {
    let text = first.exec_ok(&["cat", "/var/lib/rancher/k3s/server/db/standin-nodes"]);
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        (w.len() == 4 && w[0] == node && w[1] == "True" && w[2] == version)
            .then(|| w[3].parse().unwrap())
    })
}

/// The most nodes cordoned at once in the recorded events.
fn most_cordoned(events: &[(String, String, u128)]) -> usize {
    let mut cordoned = std::collections::BTreeSet::new();
    let mut most = 0;
    for (verb, node, _) in events {
        match verb.as_str() {
            "cordon" | "drain" => {
                cordoned.insert(node.clone());
            }
            "uncordon" => {
                cordoned.remove(node);
            }
            other => panic!("{other}"),
        }
        most = most.max(cordoned.len());
    }
    most
}

#[test]
fn upgrade_cordons_drains_and_uncordons_each_node_at_most_max_unavailable_at_once() {
    let hosts = TestHosts::boot(5);
    let env = Env::new();
    let dir = build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1, 2, 3, 4], &[]);
    build_k3s_v2(&env, &dir);
    let first = &hosts[0];

    let said = ok(
        &env,
        &hosts,
        &["upgrade", "k3s-cluster:2", "--max-unavailable", "2"],
    );
    let events = cordons(first);
    // Each node: cordon, drain, its kubelet back at the new version, then
    // uncordon, in that order, each once.
    for host in (0..5).map(|i| &hosts[i]) {
        let mine: Vec<&(String, String, u128)> =
            events.iter().filter(|(_, n, _)| *n == host.name).collect();
        let verbs: Vec<&str> = mine.iter().map(|(v, _, _)| v.as_str()).collect();
        assert_eq!(
            verbs,
            ["cordon", "drain", "uncordon"],
            "{}: {events:?}",
            host.name
        );
        let back = registered_at(first, &host.name, "v1.30.3+k3s1")
            .unwrap_or_else(|| panic!("{} never reported v1.30.3+k3s1", host.name));
        assert!(
            mine[1].2 < back && back < mine[2].2,
            "{}: drained at {}, back at {back}, uncordoned at {}",
            host.name,
            mine[1].2,
            mine[2].2
        );
        assert!(
            said.contains(&format!("uncordon node {}", host.name)),
            "{said}"
        );
    }
    // The master alone, then the workers two at a time: never more than two
    // cordoned, and two at once in a batch.
    assert_eq!(events[0].1, first.name, "{events:?}");
    assert_eq!(most_cordoned(&events), 2, "{events:?}");
    let workers: Vec<&(String, String, u128)> =
        events.iter().filter(|(_, n, _)| *n != first.name).collect();
    let batch_of = |name: &str| {
        [[&hosts[1], &hosts[2]], [&hosts[3], &hosts[4]]]
            .iter()
            .position(|b| b.iter().any(|h| h.name == name))
            .unwrap()
    };
    let first_of_batch2 = workers
        .iter()
        .position(|(_, n, _)| batch_of(n) == 1)
        .unwrap();
    assert!(
        workers[..first_of_batch2]
            .iter()
            .all(|(_, n, _)| batch_of(n) == 0)
            && workers[first_of_batch2..]
                .iter()
                .all(|(_, n, _)| batch_of(n) == 1),
        "batches one after the other: {events:?}"
    );
    for i in 0..5 {
        assert_eq!(version_of(&env, &hosts[i]), "v1.30.3+k3s1");
    }
}

#[test]
fn an_upgrade_whose_node_never_gets_ready_stops_naming_it_and_resumes() {
    let hosts = TestHosts::boot(4);
    let env = Env::new();
    let dir = build_k3s(&env, "k3s-cluster:1");
    run_on(&env, "k3s-cluster:1", &hosts, &[0], &[1, 2, 3], &[]);
    build_k3s_v2(&env, &dir);
    let (first, stuck, after) = (&hosts[0], &hosts[2], &hosts[3]);
    // Its kubelet will not get Ready once restarted.
    stuck.exec_ok(&["touch", "/etc/sealrs-standin-notready"]);
    let agent_starts = |h: &Host| {
        crate::run::standin_log(h)
            .lines()
            .filter(|l| {
                l.starts_with("k3s|") && l.split('|').nth(2).is_some_and(|a| a.starts_with("agent"))
            })
            .count()
    };
    let after_starts = agent_starts(after);

    let args = [
        "upgrade",
        "k3s-cluster:2",
        "--max-unavailable",
        "1",
        "--ready-timeout",
        "6",
    ];
    let stopped = fails(&env, &hosts, &args);
    for part in [
        format!(
            "node {} ({}) did not report Ready with v1.30.3+k3s1 within 6s",
            stuck.name, stuck.ip
        ),
        "False v1.30.3+k3s1".to_string(),
        format!("upgraded {}, {}", first.ip, hosts[1].ip),
        format!("not upgraded yet: {}, {}", stuck.ip, after.ip),
        "sealrs upgrade --cluster default docker.io/library/k3s-cluster:2 --max-unavailable 1 --ready-timeout 6".to_string(),
    ] {
        assert!(stopped.contains(&part), "{part:?} in:\n{stopped}");
    }
    // The rest untouched: the last worker neither cordoned nor restarted,
    // still v1.30.2 in the saved cluster; the stuck node stays cordoned.
    let events = cordons(first);
    assert!(
        !events.iter().any(|(_, n, _)| *n == after.name),
        "{events:?}"
    );
    assert_eq!(agent_starts(after), after_starts);
    let last = events
        .iter()
        .rev()
        .find(|(_, n, _)| *n == stuck.name)
        .unwrap();
    assert_eq!(last.0, "drain", "{events:?}");
    for (i, want) in [
        (0, "v1.30.3+k3s1"),
        (1, "v1.30.3+k3s1"),
        (3, "v1.30.2+k3s1"),
    ] {
        assert_eq!(version_of(&env, &hosts[i]), want, "{}", hosts[i].ip);
    }

    // Fixed, the command said resumes: the upgraded hosts are skipped.
    stuck.exec_ok(&["rm", "/etc/sealrs-standin-notready"]);
    let resumed = ok(&env, &hosts, &args);
    for skipped in [first, &hosts[1]] {
        assert!(
            resumed.contains(&format!("{}: already upgraded to v1.30.3+k3s1", skipped.ip)),
            "{resumed}"
        );
    }
    for i in 0..4 {
        assert_eq!(version_of(&env, &hosts[i]), "v1.30.3+k3s1");
    }
    assert_eq!(most_cordoned(&cordons(first)), 1);
}
