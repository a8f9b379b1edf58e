use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::cluster::{Cluster, ClusterArgs};
use crate::host_paths::{JOINED, PLACED_DIR};
use crate::layout::Layouts;
use crate::plan::{Capture, Check, FileContent, Plan, ServiceOp, Step};
use crate::runtime::{self, HostContext, ImageInfo, JoinSecrets, Runtime};

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls"
mkdir -p "$here/state"
verb=$1; shift
while [ "${1#--}" != "$1" ]; do shift; done
unit=$1
case $verb in
  is-enabled) test -e "$here/state/enabled-$unit" ;;
  is-active) test -e "$here/state/active-$unit" ;;
  enable) touch "$here/state/enabled-$unit" ;;
  disable) rm -f "$here/state/enabled-$unit" ;;
  start|restart) touch "$here/state/active-$unit" ;;
  stop) rm -f "$here/state/active-$unit" ;;
esac
"#;

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let host = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        let tools = host.dir.path().join("tools");
        fs::create_dir_all(&tools).unwrap();
        let script = tools.join("systemctl");
        fs::write(&script, FAKE_SYSTEMCTL).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(host.root()).unwrap();
        host
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("host")
    }
    fn rootfs(&self) -> PathBuf {
        self.root().join("var/lib/sealrs-host/rootfs")
    }
    fn at(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }
    fn write(&self, path: &str, content: &str, mode: u32) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("tools/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn ctx(&self, runtime: &str, role: Role) -> ExecContext<'static> {
        let layout = Layouts::embedded().rootfs(runtime).unwrap();
        let mut ctx = ExecContext::new(self.rootfs(), layout, role);
        ctx.host_root = self.root();
        ctx.systemctl = vec![self
            .dir
            .path()
            .join("tools/systemctl")
            .to_string_lossy()
            .into_owned()];
        ctx
    }
    /// A k3s rootfs with stand-ins.
    fn k3s_rootfs(&self) {
        self.write(
            "/var/lib/sealrs-host/rootfs/bin/k3s",
            "#!/bin/sh\necho k3s\n",
            0o755,
        );
        std::os::unix::fs::symlink("k3s", self.rootfs().join("bin/kubectl")).unwrap();
        self.write(
            "/var/lib/sealrs-host/rootfs/bin/helm",
            "#!/bin/sh\necho helm\n",
            0o700,
        );
        self.write(
            "/var/lib/sealrs-host/rootfs/manifests/apps/a.yaml",
            "kind: Namespace\n",
            0o644,
        );
        self.write(
            "/var/lib/sealrs-host/rootfs/etc/config.yaml",
            "write-kubeconfig-mode: \"0644\"\n",
            0o644,
        );
        self.write(
            "/var/lib/sealrs-host/rootfs/README.md",
            "not placed\n",
            0o644,
        );
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    let mut p = Plan::new(
        "k3s",
        "install",
        "10.0.0.1",
        vec![("PASS".into(), "pa$$w0rd\"`x".into())],
    );
    for s in steps {
        p.push(s);
    }
    p
}

fn statuses(r: &Report) -> Vec<(&str, StepStatus)> {
    r.steps.iter().map(|s| (s.id.as_str(), s.status)).collect()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn file_steps_change_once_then_are_skipped() {
    let host = Host::new();
    host.write("/base.yaml", "a: ${PASS}\nkeep: 1\n", 0o644);
    let p = plan(vec![
        Step::write_file("bytes", "/etc/x/bytes", FileContent::text("hello\n"), 0o640),
        Step::write_secret_file(
            "tmpl",
            "/etc/x/tmpl",
            FileContent::Template {
                template: "p=${PASS} d=${NOPE:-d} $${PASS}".into(),
            },
            0o600,
        ),
        Step::write_file(
            "merge",
            "/etc/x/merged.yaml",
            FileContent::YamlMerge {
                base: Some("/base.yaml".into()),
                base_is_template: true,
                overlay: "keep: 2\nnew: true\n".into(),
                keep: None,
            },
            0o600,
        ),
        Step::ensure_dir("dir", "/var/x", 0o750),
        Step::symlink("link", "/usr/local/bin/k3s", "/usr/local/bin/kubectl"),
    ]);
    let ctx = host.ctx("k3s", Role::Master);
    let first = execute(&p, &ctx).unwrap();
    assert!(first.changed && first.succeeded(), "{first:?}");
    assert!(first.steps.iter().all(|s| s.status == StepStatus::Changed));
    assert_eq!(
        fs::read_to_string(host.at("/etc/x/bytes")).unwrap(),
        "hello\n"
    );
    assert_eq!(mode(&host.at("/etc/x/bytes")), 0o640);
    assert_eq!(
        fs::read(host.at("/etc/x/tmpl")).unwrap(),
        b"p=pa$$w0rd\"`x d=d ${PASS}"
    );
    assert_eq!(mode(&host.at("/etc/x/tmpl")), 0o600);
    let merged: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(host.at("/etc/x/merged.yaml")).unwrap())
            .unwrap();
    assert_eq!(merged["a"].as_str(), Some("pa$$w0rd\"`x"));
    assert_eq!(merged["keep"].as_i64(), Some(2));
    assert_eq!(mode(&host.at("/var/x")), 0o750);
    assert_eq!(
        fs::read_link(host.at("/usr/local/bin/kubectl")).unwrap(),
        Path::new("/usr/local/bin/k3s")
    );

    let second = execute(&p, &ctx).unwrap();
    assert!(!second.changed, "{second:?}");
    assert!(
        second.summary().contains("nothing to do"),
        "{}",
        second.summary()
    );
    assert!(second.steps.iter().all(|s| s.status == StepStatus::Skipped));

    // A changed mode is a change; a regular file where a link goes is left alone.
    fs::set_permissions(host.at("/etc/x/bytes"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(host.at("/usr/local/bin/kubectl")).unwrap();
    host.write("/usr/local/bin/kubectl", "mine", 0o755);
    let third = execute(&p, &ctx).unwrap();
    assert_eq!(third.steps[0].status, StepStatus::Changed);
    assert_eq!(third.steps[4].status, StepStatus::Unchanged);
    assert_eq!(
        fs::read_to_string(host.at("/usr/local/bin/kubectl")).unwrap(),
        "mine"
    );
}

#[test]
fn remove_steps_touch_only_what_they_may() {
    let host = Host::new();
    host.write("/a/b/c", "x", 0o644);
    host.write("/full/f", "x", 0o644);
    fs::create_dir_all(host.at("/empty")).unwrap();
    std::os::unix::fs::symlink("/usr/local/bin/k3s", host.at("/ours")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", host.at("/theirs")).unwrap();
    let p = plan(vec![
        Step::remove("tree", "/a"),
        Step::remove_empty_dir("full", "/full"),
        Step::remove_empty_dir("empty", "/empty"),
        Step::remove_link("ours", "/ours", "/usr/local/bin/k3s"),
        Step::remove_link("theirs", "/theirs", "/usr/local/bin/k3s"),
        Step::remove("missing", "/nothing"),
    ]);
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&p, &ctx).unwrap();
    assert_eq!(
        statuses(&r),
        vec![
            ("tree", StepStatus::Changed),
            ("full", StepStatus::Unchanged),
            ("empty", StepStatus::Changed),
            ("ours", StepStatus::Changed),
            ("theirs", StepStatus::Skipped),
            ("missing", StepStatus::Skipped),
        ]
    );
    assert!(!host.at("/a").exists() && host.at("/full/f").exists());
    assert!(fs::symlink_metadata(host.at("/theirs")).is_ok());
    assert!(fs::symlink_metadata(host.at("/ours")).is_err());
    let again = execute(&p, &ctx).unwrap();
    assert!(!again.changed, "{again:?}");
    // `..` never reaches the disk.
    let bad = plan(vec![Step::remove("up", "/a/../../etc")]);
    let r = execute(&bad, &ctx).unwrap();
    assert_eq!(r.failed.as_deref(), Some("up"));
}

#[test]
fn run_steps_get_exact_env_capture_and_stop_on_failure() {
    let host = Host::new();
    let value = "pa$$w0rd\"`x";
    let p = plan(vec![
        Step::run_capture(
            "env",
            "print PASS",
            &["printenv", "PASS"],
            Capture::secret("pass"),
        )
        .with_env(vec![("PASS".into(), value.into())]),
        Step::run_capture(
            "path",
            "print PATH",
            &["printenv", "PATH"],
            Capture::public("path"),
        ),
        Step::run(
            "home",
            "no HOME inherited",
            &["printenv", "HOME"],
            Check::ReadOnly,
        )
        .allowing_failure(),
        Step::run(
            "once",
            "make a marker",
            &["touch", "/dev/null"],
            Check::Creates {
                path: "/marker".into(),
            },
        ),
        Step::run(
            "fail",
            "fail loudly",
            &[
                "sh",
                "-c",
                "for i in $(seq 1 30); do echo line$i; done; exit 3",
            ],
            Check::ReadOnly,
        ),
        Step::run("after", "never runs", &["true"], Check::ReadOnly),
    ]);
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&p, &ctx).unwrap();
    assert_eq!(r.captures["pass"], value);
    assert!(r.sensitive.contains("pass"));
    assert!(!format!("{r:?}").contains("w0rd"), "Debug leaks: {r:?}");
    assert!(r.steps[0].output.is_empty(), "secret stdout not in output");
    assert!(r.captures["path"].starts_with(&host.root().to_string_lossy().into_owned()));
    assert!(r.captures["path"].ends_with(DEFAULT_PATH));
    assert_eq!(r.steps[2].status, StepStatus::Unchanged);
    assert_eq!(r.steps[2].exit_code, Some(1));
    assert_eq!(r.steps[3].status, StepStatus::Changed);
    let fail = &r.steps[4];
    assert_eq!(fail.status, StepStatus::Failed);
    assert_eq!(fail.exit_code, Some(3));
    assert_eq!(fail.output.len(), OUTPUT_TAIL);
    assert_eq!(fail.output.last().unwrap(), "error: sh exited with code 3");
    assert_eq!(fail.output[fail.output.len() - 2], "line30");
    assert_eq!(r.failed.as_deref(), Some("fail"));
    assert_eq!(r.steps.len(), 5, "the plan stopped at the failure");
    assert_eq!(r.failed_position().as_deref(), Some("5 of 6"));
    assert!(r.summary().contains("fail") && r.summary().contains("exit code 3"));
    // The Creates check now skips.
    host.write("/marker", "", 0o644);
    let r = execute(&p, &ctx).unwrap();
    assert_eq!(r.steps[3].status, StepStatus::Skipped);
}

#[test]
fn checks_gate_steps() {
    let host = Host::new();
    host.write("/etc/f", "alpha beta", 0o644);
    let p = plan(vec![
        Step::run(
            "contains",
            "c",
            &["true"],
            Check::FileContains {
                path: "/etc/f".into(),
                text: "beta".into(),
            },
        ),
        Step::run(
            "not-contains",
            "c",
            &["true"],
            Check::FileContains {
                path: "/etc/f".into(),
                text: "gamma".into(),
            },
        ),
        Step::run(
            "if-exists",
            "c",
            &["true"],
            Check::IfExists {
                path: "/nope".into(),
            },
        ),
        Step::service("enable", "x.service", ServiceOp::Enable),
        Step::service("start", "x.service", ServiceOp::Start),
        Step::restart_if_changed("restart", "x.service", &["contains"]),
        Step::daemon_reload(
            "reload",
            Check::IfChanged {
                steps: vec!["not-contains".into()],
                unit_active: None,
            },
        ),
        Step::wait_file("wait", "/etc/f", 1),
        Step::read_file("read", "/etc/f", Capture::public("f")),
        Step::wait_port("port", "127.0.0.1", 1, 0),
    ]);
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&p, &ctx).unwrap();
    assert_eq!(
        statuses(&r),
        vec![
            ("contains", StepStatus::Skipped),
            ("not-contains", StepStatus::Changed),
            ("if-exists", StepStatus::Skipped),
            ("enable", StepStatus::Changed),
            ("start", StepStatus::Changed),
            ("restart", StepStatus::Skipped),
            ("reload", StepStatus::Changed),
            ("wait", StepStatus::Unchanged),
            ("read", StepStatus::Unchanged),
            ("port", StepStatus::Failed),
        ]
    );
    assert_eq!(r.captures["f"], "alpha beta");
    assert!(
        r.steps[9].output[0].contains("within 0s"),
        "{:?}",
        r.steps[9]
    );
    let calls = host.calls();
    assert!(
        calls.contains(&"enable --no-reload x.service".to_string()),
        "{calls:?}"
    );
    assert!(calls.contains(&"start x.service".to_string()), "{calls:?}");
    assert!(calls.contains(&"daemon-reload".to_string()), "{calls:?}");
    // Stopping and disabling once the unit runs, then nothing to do.
    let stop = plan(vec![
        Step::service("stop", "x.service", ServiceOp::Stop),
        Step::service("disable", "x.service", ServiceOp::Disable),
    ]);
    assert!(execute(&stop, &ctx).unwrap().changed);
    assert!(!execute(&stop, &ctx).unwrap().changed);
}

#[test]
fn a_query_gates_a_step_on_what_it_prints_and_its_failure_fails_the_step() {
    let host = Host::new();
    host.write("/etc/nodes", "node/h2\n", 0o644);
    let query = |file: &str| Check::IfOutput {
        argv: vec!["cat".into(), host.at(file).to_string_lossy().into_owned()],
    };
    host.write("/etc/none", "", 0o644);
    let p = plan(vec![
        Step::run("present", "p", &["true"], query("/etc/nodes")),
        Step::run("absent", "a", &["true"], query("/etc/none")),
        Step::run("broken", "b", &["true"], query("/etc/missing")).allowing_failure(),
        Step::run("after", "never runs", &["true"], Check::ReadOnly),
    ]);
    let r = execute(&p, &host.ctx("k3s", Role::Master)).unwrap();
    assert_eq!(
        statuses(&r),
        vec![
            ("present", StepStatus::Changed),
            ("absent", StepStatus::Skipped),
            ("broken", StepStatus::Failed),
        ]
    );
    assert!(
        r.steps[1]
            .note
            .as_deref()
            .unwrap()
            .ends_with("printed nothing"),
        "{:?}",
        r.steps[1]
    );
    // A query that cannot answer is not "nothing to do", even where the
    // step's own failure would be allowed.
    assert_eq!(r.steps[2].exit_code, Some(1));
    assert!(
        r.steps[2].output.iter().any(|l| l.contains("No such file")),
        "{:?}",
        r.steps[2]
    );
    assert_eq!(r.failed.as_deref(), Some("broken"));
}

#[test]
fn dry_run_changes_nothing() {
    let host = Host::new();
    host.k3s_rootfs();
    let p = plan(vec![
        Step::place_rootfs(Role::Master),
        Step::write_file("f", "/etc/f", FileContent::text("x"), 0o644),
        Step::run("r", "r", &["touch", "/tmp/never"], Check::ReadOnly),
    ]);
    let mut ctx = host.ctx("k3s", Role::Master);
    ctx.dry_run = true;
    let r = execute(&p, &ctx).unwrap();
    assert!(r.dry_run && r.changed);
    assert!(!host.at("/etc/f").exists());
    assert!(!host.at("/usr/local/bin/k3s").exists());
    assert!(!host.at(PLACED_DIR).exists());
}

#[test]
fn a_dry_run_counts_programs_and_waits_as_work_and_reads_what_is_there() {
    let host = Host::new();
    host.write("/etc/token", "K10secret\n", 0o600);
    let never = host.at("/never").display().to_string();
    let p = plan(vec![
        Step::wait_file("wait-token", "/etc/token", 5),
        Step::read_file("token", "/etc/token", Capture::secret("token")),
        Step::wait_file("wait-other", "/etc/other", 5),
        Step::read_file("other", "/etc/other", Capture::public("other")),
        Step::run("look", "look", &["touch", &never], Check::ReadOnly),
    ]);
    let mut ctx = host.ctx("k3s", Role::Master);
    ctx.dry_run = true;
    let r = execute(&p, &ctx).unwrap();
    assert!(!Path::new(&never).exists(), "a dry run runs no program");
    assert_eq!(
        statuses(&r),
        vec![
            ("wait-token", StepStatus::Unchanged),
            ("token", StepStatus::Unchanged),
            ("wait-other", StepStatus::Changed),
            ("other", StepStatus::Changed),
            ("look", StepStatus::Changed),
        ]
    );
    assert_eq!(
        r.captures.get("token").map(String::as_str),
        Some("K10secret\n")
    );
    assert!(!r.captures.contains_key("other"));
    // For real, the observing program runs and is no change.
    let real = plan(vec![Step::run("look", "look", &["true"], Check::ReadOnly)]);
    ctx.dry_run = false;
    assert!(!execute(&real, &ctx).unwrap().changed);
}

#[test]
fn rootfs_is_placed_per_role_recorded_and_removed_exactly() {
    let host = Host::new();
    host.k3s_rootfs();
    host.write("/usr/local/bin/other", "someone else's", 0o755);
    let ctx = host.ctx("k3s", Role::Node);
    let p = plan(vec![Step::place_rootfs(Role::Node)]);
    let r = execute(&p, &ctx).unwrap();
    assert_eq!(r.steps[0].status, StepStatus::Changed, "{r:?}");
    assert_eq!(
        fs::read_to_string(host.at("/usr/local/bin/k3s")).unwrap(),
        "#!/bin/sh\necho k3s\n"
    );
    // Read-only: the layout's 0755 without its write bits.
    assert_eq!(mode(&host.at("/usr/local/bin/k3s")), 0o555);
    // One filesystem: a binary is placed as a hard link, not written a second time.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&host.at("/usr/local/bin/k3s")),
        ino(&host.rootfs().join("bin/k3s"))
    );
    assert_eq!(
        mode(&host.at("/usr/local/bin/helm")),
        0o555,
        "the layout's mode, read-only"
    );
    assert_eq!(mode(&host.at("/etc/rancher/k3s/config.yaml")), 0o600);
    // A config is a copy: an administrator's edit stays out of the rootfs.
    let config = host.at("/etc/rancher/k3s/config.yaml");
    assert_ne!(ino(&config), ino(&host.rootfs().join("etc/config.yaml")));
    let image_config = fs::read(host.rootfs().join("etc/config.yaml")).unwrap();
    let mut edit = fs::OpenOptions::new().append(true).open(&config).unwrap();
    std::io::Write::write_all(&mut edit, b"debug: true\n").unwrap();
    assert_eq!(
        fs::read(host.rootfs().join("etc/config.yaml")).unwrap(),
        image_config
    );
    let restored = execute(&p, &ctx).unwrap();
    assert!(
        restored.steps[0]
            .note
            .as_deref()
            .unwrap()
            .contains("restored /etc/rancher/k3s/config.yaml"),
        "{restored:?}"
    );
    assert_eq!(fs::read(&config).unwrap(), image_config);
    // A config placed as a hard link (as sealrs did before copies) becomes a copy.
    fs::remove_file(&config).unwrap();
    fs::hard_link(host.rootfs().join("etc/config.yaml"), &config).unwrap();
    assert!(execute(&p, &ctx).unwrap().changed);
    assert_ne!(ino(&config), ino(&host.rootfs().join("etc/config.yaml")));
    assert!(!execute(&p, &ctx).unwrap().changed);
    assert_eq!(
        fs::read_link(host.at("/usr/local/bin/kubectl")).unwrap(),
        Path::new("k3s")
    );
    // Manifests go to control-planes only; README.md nowhere.
    assert!(!host.at("/var/lib/rancher/k3s/server/manifests").exists());
    assert!(host.at("/var/lib/sealrs-host/placed/node.json").exists());
    let again = execute(&p, &ctx).unwrap();
    assert!(!again.changed, "{again:?}");

    // A changed source is copied again; a file the image dropped is removed.
    fs::write(host.rootfs().join("bin/k3s"), "#!/bin/sh\necho v2\n").unwrap();
    fs::remove_file(host.rootfs().join("bin/helm")).unwrap();
    let upgrade = execute(&p, &ctx).unwrap();
    assert!(upgrade.changed);
    assert!(upgrade.steps[0]
        .note
        .as_deref()
        .unwrap()
        .contains("1 no longer"));
    assert!(!host.at("/usr/local/bin/helm").exists());
    assert!(fs::read_to_string(host.at("/usr/local/bin/k3s"))
        .unwrap()
        .contains("v2"));

    // As master, the manifests come too; the plan's own config wins.
    let mctx = host.ctx("k3s", Role::Master);
    let mp = plan(vec![
        Step::place_rootfs(Role::Master),
        Step::write_file(
            "config",
            "/etc/rancher/k3s/config.yaml",
            FileContent::text("ours: 1\n"),
            0o600,
        ),
    ]);
    execute(&mp, &mctx).unwrap();
    assert!(host
        .at("/var/lib/rancher/k3s/server/manifests/apps/a.yaml")
        .exists());
    assert!(!execute(&mp, &mctx).unwrap().changed);

    let remove = plan(vec![Step::remove_rootfs(Role::Node)]);
    let r = execute(&remove, &ctx).unwrap();
    assert_eq!(r.steps[0].status, StepStatus::Changed);
    assert!(
        !host.at("/usr/local/bin/k3s").exists() || host.at(PLACED_DIR).join("master.json").exists()
    );
    assert!(host.at("/usr/local/bin/other").exists(), "not ours");
    assert!(!host.at("/var/lib/sealrs-host/placed/node.json").exists());
    assert_eq!(
        execute(&remove, &ctx).unwrap().steps[0].status,
        StepStatus::Skipped
    );
    // Removing the master's placement leaves no directory placement created.
    execute(&plan(vec![Step::remove_rootfs(Role::Master)]), &mctx).unwrap();
    assert!(!host.at("/var/lib/rancher").exists());
    assert!(!host.at("/usr/local/bin/k3s").exists());
}

fn cluster() -> Cluster {
    Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into()],
        nodes: vec!["10.0.0.2".into()],
        env: vec!["PASS=pa$$w0rd\"`x".into()],
        ..ClusterArgs::default()
    })
    .unwrap()
}

#[test]
fn a_k3s_install_and_join_run_against_a_fake_host_and_rerun_changes_nothing() {
    let k3s = runtime::runtime_for("k3s").unwrap();
    let c = cluster();
    let image = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
    let host = Host::new();
    host.k3s_rootfs();
    // What the real k3s writes once it runs.
    host.write(
        "/var/lib/rancher/k3s/server/token",
        "K10tok::server:abc\n",
        0o600,
    );
    host.write("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n", 0o600);
    let hctx = HostContext::new(&c, &c.hosts[0], &image, JoinSecrets::default()).unwrap();
    let install = k3s.install(&hctx).unwrap();
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&install, &ctx).unwrap();
    assert!(r.succeeded(), "{r:?}");
    let unit = fs::read_to_string(host.at("/etc/systemd/system/k3s.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/k3s server --cluster-init"),
        "{unit}"
    );
    assert_eq!(mode(&host.at("/etc/systemd/system/k3s.service.env")), 0o600);
    let config = fs::read_to_string(host.at("/etc/rancher/k3s/config.yaml")).unwrap();
    assert!(
        config.contains("write-kubeconfig-mode") && config.contains("node-ip: 10.0.0.1"),
        "{config}"
    );
    assert_eq!(mode(&host.at("/etc/rancher/k3s/config.yaml")), 0o600);
    assert_eq!(
        fs::read_link(host.at("/usr/local/bin/kubectl")).unwrap(),
        Path::new("/usr/local/bin/k3s")
    );
    assert_eq!(
        host.calls(),
        vec![
            "daemon-reload",
            "is-enabled --quiet k3s.service",
            "enable --no-reload k3s.service",
            "is-active --quiet k3s.service",
            "is-active --quiet k3s.service",
            "start k3s.service",
        ]
    );
    let secrets = k3s.join_secrets(&r.captures).unwrap();
    assert_eq!(
        secrets.token.as_ref().unwrap().expose(),
        "K10tok::server:abc"
    );

    let again = execute(&install, &ctx).unwrap();
    assert!(!again.changed, "{again:?}");
    assert_eq!(
        &host.calls()[6..],
        [
            "is-enabled --quiet k3s.service",
            "is-active --quiet k3s.service"
        ]
    );

    // The agent gets the token through its 0600 env file, escaped for systemd.
    let node = Host::new();
    node.k3s_rootfs();
    let nctx = HostContext::new(&c, &c.hosts[1], &image, secrets).unwrap();
    let join = k3s.join(&nctx).unwrap();
    let ctx = node.ctx("k3s", Role::Node);
    let r = execute(&join, &ctx).unwrap();
    assert!(r.succeeded(), "{r:?}");
    let env = fs::read_to_string(node.at("/etc/systemd/system/k3s-agent.service.env")).unwrap();
    assert!(env.contains("K3S_TOKEN=\"K10tok::server:abc\""), "{env}");
    assert!(env.contains("K3S_URL=\"https://10.0.0.1:6443\""), "{env}");
    assert_eq!(
        mode(&node.at("/etc/systemd/system/k3s-agent.service.env")),
        0o600
    );
    assert!(!execute(&join, &ctx).unwrap().changed);

    // Uninstall leaves nothing of ours; twice is nothing to do.
    let uninstall = k3s.uninstall(&nctx).unwrap();
    let r = execute(&uninstall, &ctx).unwrap();
    assert!(r.succeeded(), "{r:?}");
    for gone in [
        "/etc/systemd/system/k3s-agent.service",
        "/etc/systemd/system/k3s-agent.service.env",
        "/usr/local/bin/k3s",
        "/usr/local/bin/kubectl",
        "/etc/rancher",
        "/var/lib/sealrs-host/placed",
    ] {
        assert!(fs::symlink_metadata(node.at(gone)).is_err(), "{gone} left");
    }
    assert!(node.calls().contains(&"stop k3s-agent.service".to_string()));
    assert!(!execute(&uninstall, &ctx).unwrap().changed);
}

#[test]
fn a_probe_tells_whether_install_and_join_would_change_the_host() {
    let c = cluster();
    let image = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
    let request = |host: usize, secrets: &JoinSecrets| {
        Request::new(
            &c,
            &c.hosts[host],
            &image,
            secrets,
            "/var/lib/sealrs-host/rootfs",
            Vec::new(),
        )
    };
    let no_secrets = JoinSecrets::default();
    let systemctl = |h: &Host| h.dir.path().join("tools/systemctl").display().to_string();

    // The first master: not installed yet, then installed, then drifted.
    let master = Host::new();
    master.k3s_rootfs();
    master.write(
        "/var/lib/rancher/k3s/server/token",
        "K10tok::server:abc\n",
        0o600,
    );
    master.write("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n", 0o600);
    let install = request(0, &no_secrets);
    let before = probe(
        &install,
        Operation::Install,
        &master.root(),
        &systemctl(&master),
    );
    assert!(!before.converged, "{before:?}");
    assert!(
        before
            .pending
            .as_deref()
            .unwrap()
            .contains("has work to do"),
        "{before:?}"
    );
    let plan = install.plan(Operation::Install).unwrap();
    let ctx =
        ExecContext::for_request(&install, &plan, &master.root(), &systemctl(&master)).unwrap();
    assert!(execute(&plan, &ctx).unwrap().succeeded());
    let calls = master.calls().len();
    let after = probe(
        &install,
        Operation::Install,
        &master.root(),
        &systemctl(&master),
    );
    assert!(after.converged, "{after:?}");
    assert_eq!(after.operation, "install");
    let secrets = runtime::K3s.join_secrets(&after.captures).unwrap();
    assert_eq!(
        secrets.token.as_ref().unwrap().expose(),
        "K10tok::server:abc"
    );
    // It asked, and changed nothing.
    assert!(master.calls()[calls..].iter().all(|c| c.starts_with("is-")));
    assert!(
        !format!("{after:?}").contains("K10tok"),
        "Debug shows no secret"
    );
    fs::remove_file(master.at("/etc/systemd/system/k3s.service")).unwrap();
    let drifted = probe(
        &install,
        Operation::Install,
        &master.root(),
        &systemctl(&master),
    );
    assert!(!drifted.converged);
    assert!(drifted.pending.unwrap().contains("unit"), "names the step");

    // A node probes its join with the secrets it last joined with.
    let node = Host::new();
    node.k3s_rootfs();
    node.write(
        "/var/lib/sealrs-host/rootfs/etc/config.yaml",
        "node-label:\n  - pass=${PASS}\n",
        0o644,
    );
    let join = request(1, &no_secrets);
    let never = probe(&join, Operation::Join, &node.root(), &systemctl(&node));
    assert_eq!(
        never.pending.as_deref(),
        Some("this host has not joined yet")
    );
    let joined = request(1, &secrets);
    let plan = joined.plan(Operation::Join).unwrap();
    let ctx = ExecContext::for_request(&joined, &plan, &node.root(), &systemctl(&node)).unwrap();
    assert!(execute(&plan, &ctx).unwrap().succeeded());
    remember_join(&joined, &node.root()).unwrap();
    assert_eq!(mode(&node.at(JOINED)), 0o600);
    let again = probe(&join, Operation::Join, &node.root(), &systemctl(&node));
    assert!(again.converged, "{again:?}");
    assert_eq!(again.secrets, Some(SecretsSpec::from(&secrets).digest()));
    assert_ne!(again.secrets, Some(SecretsSpec::default().digest()));
    // A changed env is a change to the node's config.
    let mut other = c.clone();
    other.env.insert("PASS".into(), "another".into());
    let changed_env = Request::new(
        &other,
        &other.hosts[1],
        &image,
        &no_secrets,
        "/var/lib/sealrs-host/rootfs",
        Vec::new(),
    );
    assert!(
        !probe(
            &changed_env,
            Operation::Join,
            &node.root(),
            &systemctl(&node)
        )
        .converged
    );
    // A stopped service is work too.
    fs::remove_file(node.dir.path().join("tools/state/active-k3s-agent.service")).unwrap();
    let stopped = probe(&join, Operation::Join, &node.root(), &systemctl(&node));
    assert!(!stopped.converged, "{stopped:?}");
    forget_join(&node.root()).unwrap();
    assert!(!node.at(JOINED).exists());
    forget_join(&node.root()).unwrap();
}

// ---------------------------------------------------------------------------
// verify

/// A kernel TCP table where something listens on `ports`.
fn proc_net_tcp(ports: &[u16]) -> String {
    let mut table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
    for (i, port) in ports.iter().enumerate() {
        table.push_str(&format!(
            "   {i}: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {i} 1 0 100 0 0 10 0\n"
        ));
    }
    table
}

/// Every file under `dir` with its content (or link target): to prove nothing changed.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let content = if e.file_type().is_file() {
                fs::read(e.path()).unwrap()
            } else if e.file_type().is_symlink() {
                fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            (e.path().to_path_buf(), content)
        })
        .collect()
}

fn verify_request(c: &Cluster, host: usize) -> Request {
    Request::new(
        c,
        &c.hosts[host],
        &ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap(),
        &JoinSecrets::default(),
        "/var/lib/sealrs-host/rootfs",
        Vec::new(),
    )
}

impl Host {
    /// Marks the rootfs as unpacked, as `unpack` leaves it.
    fn stamp(&self) {
        self.write(&format!("/var/lib/sealrs-host/rootfs/{STAMP}"), "{}", 0o644);
    }
}

fn messages(report: &VerifyReport, check: CheckKind) -> Vec<String> {
    report
        .violations
        .iter()
        .filter(|v| v.check == check)
        .map(|v| v.message.clone())
        .collect()
}

#[test]
fn verify_lists_every_violation_at_once_and_changes_nothing() {
    let host = Host::new();
    host.k3s_rootfs();
    host.stamp();
    fs::remove_file(host.rootfs().join("bin/k3s")).unwrap();
    // Where the image's config goes, this host has a directory.
    fs::create_dir_all(host.at("/etc/rancher/k3s/config.yaml")).unwrap();
    host.write("/proc/net/tcp", &proc_net_tcp(&[22, 6443]), 0o444);
    // Two servers: embedded etcd wants an odd number.
    let c = Cluster::from_args(&ClusterArgs {
        masters: vec!["10.0.0.1".into(), "10.0.0.2".into()],
        ..ClusterArgs::default()
    })
    .unwrap();
    let before = tree(&host.root());

    let report = verify(&verify_request(&c, 0), &host.root()).unwrap();
    assert!(!report.holds());
    assert_eq!(
        (report.host.as_str(), report.role),
        ("10.0.0.1", Role::Master)
    );
    let cluster = messages(&report, CheckKind::Cluster);
    assert!(
        cluster.len() == 1 && cluster[0].contains("odd number"),
        "{cluster:?}"
    );
    let rootfs = messages(&report, CheckKind::Rootfs);
    assert!(
        rootfs
            .iter()
            .any(|m| m.starts_with("bin/k3s: missing; expected the k3s binary")),
        "{rootfs:?}"
    );
    assert!(
        rootfs
            .iter()
            .any(|m| m.contains("bin/kubectl: a symlink to k3s, which is not in the image")),
        "{rootfs:?}"
    );
    assert!(
        rootfs.iter().any(|m| m.contains(
            "etc/config.yaml goes to /etc/rancher/k3s/config.yaml, which is a directory on this host"
        )),
        "{rootfs:?}"
    );
    assert_eq!(rootfs.len(), 3, "{rootfs:?}");
    assert_eq!(
        messages(&report, CheckKind::Ports),
        vec!["port 6443 already in use; stop what listens there, or pick another host"]
    );
    assert!(
        report.summary().contains("5 violations"),
        "{}",
        report.summary()
    );
    assert_eq!(tree(&host.root()), before, "verify changed the host");
    assert!(host.calls().is_empty());
}

#[test]
fn verify_holds_on_a_fit_host_and_leaves_ports_to_a_host_sealrs_already_runs() {
    let host = Host::new();
    host.k3s_rootfs();
    host.stamp();
    let c = cluster();
    // The agent's port is taken; the server's port is not an agent's business.
    host.write("/proc/net/tcp", &proc_net_tcp(&[6443]), 0o444);
    host.write("/proc/net/tcp6", &proc_net_tcp(&[10250]), 0o444);
    let node = verify(&verify_request(&c, 1), &host.root()).unwrap();
    assert_eq!(node.role, Role::Node);
    assert_eq!(
        messages(&node, CheckKind::Ports),
        vec!["port 10250 already in use; stop what listens there, or pick another host"]
    );
    assert_eq!(node.violations.len(), 1, "{node:?}");

    // Once sealrs placed a rootfs here, the listeners are its own services.
    host.write("/var/lib/sealrs-host/placed/node.json", "{}", 0o644);
    let again = verify(&verify_request(&c, 1), &host.root()).unwrap();
    assert!(again.holds(), "{again:?}");
    assert!(again.summary().contains("every check holds"));
}

#[test]
fn verify_wants_the_rootfs_unpacked_and_the_kernel_tables_readable() {
    let host = Host::new();
    host.k3s_rootfs();
    let report = verify(&verify_request(&cluster(), 0), &host.root()).unwrap();
    let rootfs = messages(&report, CheckKind::Rootfs);
    assert_eq!(rootfs.len(), 1, "{rootfs:?}");
    assert!(
        rootfs[0].contains("does not hold the image's unpacked layers"),
        "{rootfs:?}"
    );
    let ports = messages(&report, CheckKind::Ports);
    assert!(
        ports.len() == 1 && ports[0].contains("cannot tell which ports are in use"),
        "{ports:?}"
    );
}

#[test]
fn a_request_is_planned_and_executed_like_the_plan_the_operator_would_send() {
    let c = cluster();
    let host = Host::new();
    host.k3s_rootfs();
    let secrets = JoinSecrets {
        token: Some(crate::cluster::Secret::new("K10tok::server:abc")),
        ..JoinSecrets::default()
    };
    let image = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
    let request = Request::new(
        &c,
        &c.hosts[1],
        &image,
        &secrets,
        "/var/lib/sealrs-host/rootfs",
        Vec::new(),
    );
    let received = Request::from_json(&request.to_json()).unwrap();
    let plan = received.plan(Operation::Join).unwrap();
    let mut hctx = HostContext::new(&c, &c.hosts[1], &image, secrets).unwrap();
    hctx.rootfs = "/var/lib/sealrs-host/rootfs".into();
    let k3s = runtime::runtime_for("k3s").unwrap();
    assert_eq!(plan, k3s.join(&hctx).unwrap());
    let r = execute(&plan, &host.ctx("k3s", Role::Node)).unwrap();
    assert!(r.succeeded(), "{r:?}");
    let env = fs::read_to_string(host.at("/etc/systemd/system/k3s-agent.service.env")).unwrap();
    assert!(env.contains("K3S_TOKEN=\"K10tok::server:abc\""), "{env}");
}

// ---------------------------------------------------------------------------
// unpack

/// (path, type, mode, content, link target)
type TarEntry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        // Raw names: the builder would refuse `..` itself.
        let name = path.as_bytes();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

const F: tar::EntryType = tar::EntryType::Regular;
const D: tar::EntryType = tar::EntryType::Directory;
const L: tar::EntryType = tar::EntryType::Symlink;
const H: tar::EntryType = tar::EntryType::Link;

fn blob(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn layers_unpack_with_whiteouts_opaque_dirs_links_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let one = tar_of(&[
        ("bin/", D, 0o755, b"", None),
        ("bin/k3s", F, 0o755, b"k3s-v1", None),
        ("bin/kubectl", L, 0o777, b"", Some("k3s")),
        ("etc/a/x.conf", F, 0o644, b"x", None),
        ("etc/b/y.conf", F, 0o600, b"y", None),
        ("etc/gone", F, 0o644, b"g", None),
    ]);
    let two = tar_of(&[
        ("etc/.wh.gone", F, 0o644, b"", None),
        ("etc/a/.wh..wh..opq", F, 0o644, b"", None),
        ("etc/a/z.conf", F, 0o644, b"z", None),
        ("bin/k3s-hard", H, 0o755, b"", Some("bin/k3s")),
        ("ro/", D, 0o555, b"", None),
        ("ro/file", F, 0o444, b"r", None),
    ]);
    let zst = blob(
        dir.path(),
        "one.zst",
        zstd::encode_all(&one[..], 3).unwrap(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &two).unwrap();
    let gzp = blob(dir.path(), "two.gz", gz.finish().unwrap());
    let dest = dir.path().join("rootfs");
    let out = unpack(&[zst.clone(), gzp.clone()], &dest).unwrap();
    assert!(out.unpacked);
    assert_eq!(out.digests.len(), 2);
    assert_eq!(fs::read_to_string(dest.join("bin/k3s")).unwrap(), "k3s-v1");
    assert_eq!(mode(&dest.join("bin/k3s")), 0o755);
    assert_eq!(mode(&dest.join("etc/b/y.conf")), 0o600);
    assert_eq!(
        fs::read_link(dest.join("bin/kubectl")).unwrap(),
        Path::new("k3s")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(dest.join("bin/k3s-hard")).unwrap().ino(),
        fs::metadata(dest.join("bin/k3s")).unwrap().ino()
    );
    assert!(!dest.join("etc/gone").exists());
    assert!(
        !dest.join("etc/a/x.conf").exists(),
        "opaque hides lower files"
    );
    assert!(dest.join("etc/a/z.conf").exists() && dest.join("etc/b/y.conf").exists());
    assert_eq!(mode(&dest.join("ro")), 0o555);
    assert!(dest.join(STAMP).exists());
    assert_eq!(
        fs::metadata(dest.join("bin/k3s")).unwrap().mtime(),
        1_700_000_000
    );

    // The same layers again: nothing to do, even after a touch.
    assert!(!unpack(&[zst.clone(), gzp.clone()], &dest).unwrap().unpacked);
    let copy = dir.path().join("copy.zst");
    fs::copy(&zst, &copy).unwrap();
    assert!(!unpack(&[copy, gzp.clone()], &dest).unwrap().unpacked);
    // Other layers replace the rootfs as a whole (read-only dirs included).
    let out = unpack(std::slice::from_ref(&zst), &dest).unwrap();
    assert!(out.unpacked);
    assert!(dest.join("etc/gone").exists());
    assert!(!dest.join("ro").exists());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn escaping_entries_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            tar_of(&[("a/../../outside/x", F, 0o644, b"x", None)]),
        ),
        ("absolute", tar_of(&[("/outside/x", F, 0o644, b"x", None)])),
        (
            "through a symlink",
            tar_of(&[
                ("esc", L, 0o777, b"", Some(outside.to_str().unwrap())),
                ("esc/x", F, 0o644, b"x", None),
            ]),
        ),
        (
            "hardlink out",
            tar_of(&[("h", H, 0o644, b"", Some("../outside/secret"))]),
        ),
    ];
    for (what, bytes) in cases {
        let layer = blob(dir.path(), "layer.tar", bytes);
        let dest = dir.path().join("rootfs");
        let err = unpack(&[layer], &dest).unwrap_err();
        assert!(
            matches!(err, InstallerError::UnsafeEntry { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(!dest.exists(), "{what}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{what}");
    }
    // A blob named by a digest must have it.
    let named = dir.path().join("0".repeat(64));
    fs::write(&named, tar_of(&[("a", F, 0o644, b"a", None)])).unwrap();
    let err = unpack(&[named], &dir.path().join("r2")).unwrap_err();
    assert!(
        matches!(err, InstallerError::DigestMismatch { .. }),
        "{err}"
    );
}

fn sha_name(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn received_layers_are_kept_as_layer_directories_only_when_their_digest_checks_out() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let layers = dir.path().join("layers");
    fs::create_dir_all(&layers).unwrap();
    let one = zstd::encode_all(&tar_of(&[("bin/k3s", F, 0o755, b"k3s-v1", None)])[..], 3).unwrap();
    let two = tar_of(&[
        ("images/a.tar", F, 0o644, &[7u8; 70_000], None),
        ("bin/.wh.k3s", F, 0o644, b"", None),
        ("bin/k0s", F, 0o700, b"k0s", None),
    ]);
    // Both arrive on one stream, one after the other.
    let (first, second) = (layers.join(sha_name(&one)), layers.join(sha_name(&two)));
    let sources = [
        LayerSource::Incoming {
            dir: first.clone(),
            size: one.len() as u64,
        },
        LayerSource::Incoming {
            dir: second.clone(),
            size: two.len() as u64,
        },
    ];
    let stream = [one.clone(), two.clone()].concat();
    let dest = dir.path().join("rootfs");
    let out = receive(&sources, &mut &stream[..], &dest, BlobCheck::Hash).unwrap();
    assert!(out.unpacked);
    assert_eq!(out.digests.len(), 2);
    // Each layer is kept as itself, its whiteout as the empty file it is.
    assert_eq!(fs::read(first.join("bin/k3s")).unwrap(), b"k3s-v1");
    assert_eq!(fs::read(second.join("bin/.wh.k3s")).unwrap(), b"");
    // The rootfs: the whiteout applied, files hard links to the layers'.
    assert!(!dest.join("bin/k3s").exists());
    assert!(!dest.join("bin/.wh.k3s").exists());
    assert_eq!(mode(&dest.join("bin/k0s")), 0o700);
    assert_eq!(
        fs::metadata(dest.join("images/a.tar")).unwrap().ino(),
        fs::metadata(second.join("images/a.tar")).unwrap().ino()
    );
    // On the host now: assembling them again is a no-op, and the first alone
    // makes its own rootfs without reading any byte again.
    assert!(
        !unpack(&[first.clone(), second.clone()], &dest)
            .unwrap()
            .unpacked
    );
    let alone = dir.path().join("alone");
    assert!(
        unpack(std::slice::from_ref(&first), &alone)
            .unwrap()
            .unpacked
    );
    assert_eq!(fs::read(alone.join("bin/k3s")).unwrap(), b"k3s-v1");

    // A corrupted stream: refused, no layer kept, the rootfs as it was.
    let other = tar_of(&[("images/b.tar", F, 0o644, b"b", None)]);
    let named = layers.join(sha_name(&other));
    let mut bad = other.clone();
    bad[600] ^= 1;
    let sources = [LayerSource::Incoming {
        dir: named.clone(),
        size: bad.len() as u64,
    }];
    let err = receive(&sources, &mut &bad[..], &dest, BlobCheck::Hash).unwrap_err();
    assert!(
        matches!(err, InstallerError::DigestMismatch { .. }),
        "{err}"
    );
    assert!(!named.exists());
    assert!(dest.join("images/a.tar").exists() && !dest.join("images/b.tar").exists());
    // A stream that stops early is named as such.
    let err = receive(&sources, &mut &other[..100], &dest, BlobCheck::Hash).unwrap_err();
    assert!(err.to_string().contains("ended after 100 of"), "{err}");
    assert!(!named.exists());
    let leftovers: Vec<_> = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp directories left: {leftovers:?}");
}

/// One incoming layer (a `bin/k3s`) in a temp directory: the directory,
/// its blob, the layer directory it is received into, the sources naming
/// it, and the rootfs to make.
fn one_incoming_layer() -> (
    tempfile::TempDir,
    Vec<u8>,
    PathBuf,
    [LayerSource; 1],
    PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let blob = tar_of(&[("bin/k3s", F, 0o755, b"k3s-v1", None)]);
    let named = dir.path().join("layers").join(sha_name(&blob));
    let sources = [LayerSource::Incoming {
        dir: named.clone(),
        size: blob.len() as u64,
    }];
    let dest = dir.path().join("rootfs");
    (dir, blob, named, sources, dest)
}

#[test]
fn fetched_layers_are_kept_only_when_the_digest_the_operator_sent_after_them_is_theirs() {
    use sha2::Digest as _;
    let (_dir, blob, named, sources, dest) = one_incoming_layer();
    let sent = |trailer: &[u8]| [&blob[..], trailer].concat();
    let refused = |stream: Vec<u8>| {
        let err = receive(&sources, &mut &stream[..], &dest, BlobCheck::Sent).unwrap_err();
        assert!(!named.exists() && !dest.exists(), "{err}");
        err
    };
    // The operator's copy was another blob: its digest, not this one's.
    let err = refused(sent(&sha2::Sha256::digest(b"other")));
    assert!(
        matches!(err, InstallerError::OperatorDigestMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sealrs fsck"), "{err}");
    // The operator stopped before the digest: not kept either.
    let err = refused(sent(&[]));
    assert!(matches!(err, InstallerError::NoDigestSent { .. }), "{err}");
    // Its own digest: kept.
    let good = sent(&sha2::Sha256::digest(&blob));
    receive(&sources, &mut &good[..], &dest, BlobCheck::Sent).unwrap();
    assert_eq!(fs::read(named.join("bin/k3s")).unwrap(), b"k3s-v1");
    assert_eq!(fs::read(dest.join("bin/k3s")).unwrap(), b"k3s-v1");
}

#[test]
fn a_verified_stream_is_kept_without_hashing_or_trailer_and_one_cut_short_keeps_nothing() {
    use sha2::Digest as _;
    let (_dir, blob, named, sources, dest) = one_incoming_layer();
    // A stream that vouched for a blob withholds its last byte when the
    // blob is wrong: a short input, refused with nothing kept.
    let cut = &blob[..blob.len() - 1];
    let err = receive(&sources, &mut &cut[..], &dest, BlobCheck::Verified).unwrap_err();
    assert!(matches!(err, InstallerError::ShortLayer { .. }), "{err}");
    assert!(!named.exists() && !dest.exists());
    // The whole blob: kept, no digest expected after it, each file summed.
    receive(&sources, &mut &blob[..], &dest, BlobCheck::Verified).unwrap();
    assert_eq!(fs::read(dest.join("bin/k3s")).unwrap(), b"k3s-v1");
    let record = fs::read_to_string(named.join(super::integrity::RECORD)).unwrap();
    assert!(
        record.contains(&hex::encode(sha2::Sha256::digest(b"k3s-v1"))),
        "{record}"
    );
}

#[test]
fn assembled_layer_directories_apply_opaque_markers_and_keep_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let layers = dir.path().join("layers");
    let lower = tar_of(&[
        ("etc/a/", D, 0o755, b"", None),
        ("etc/a/x.conf", F, 0o644, b"x", None),
        ("etc/b.conf", F, 0o644, b"b", None),
        ("bin/kubectl", L, 0o777, b"", Some("k3s")),
    ]);
    let upper = tar_of(&[
        ("etc/a/", D, 0o750, b"", None),
        ("etc/a/.wh..wh..opq", F, 0o644, b"", None),
        ("etc/a/z.conf", F, 0o600, b"z", None),
    ]);
    let dirs: Vec<PathBuf> = [&lower, &upper]
        .iter()
        .map(|t| layers.join(sha_name(t)))
        .collect();
    let sources: Vec<LayerSource> = [&lower, &upper]
        .iter()
        .zip(&dirs)
        .map(|(t, d)| LayerSource::Incoming {
            dir: d.clone(),
            size: t.len() as u64,
        })
        .collect();
    let stream = [lower.clone(), upper.clone()].concat();
    let dest = dir.path().join("rootfs");
    receive(&sources, &mut &stream[..], &dest, BlobCheck::Hash).unwrap();
    assert!(
        !dest.join("etc/a/x.conf").exists(),
        "opaque hides lower files"
    );
    assert_eq!(fs::read(dest.join("etc/a/z.conf")).unwrap(), b"z");
    assert!(!dest.join("etc/a/.wh..wh..opq").exists());
    assert_eq!(mode(&dest.join("etc/a")), 0o750);
    assert_eq!(fs::read(dest.join("etc/b.conf")).unwrap(), b"b");
    assert_eq!(
        fs::read_link(dest.join("bin/kubectl")).unwrap(),
        Path::new("k3s")
    );
    // The lower layer's directory still has what the upper one hid.
    assert!(dirs[0].join("etc/a/x.conf").exists());
}

// ---------------------------------------------------------------------------
// image hooks, executed

/// An image whose hooks write into their cwd (the rootfs' `scripts/`): the
/// sealos labels run their script with bash (`bash check.sh`), ours is bash text.
fn hooked_image() -> ImageInfo {
    let mut image = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
    for (k, v) in [
        ("check", "check.sh"),
        (
            "sealrs.io/init",
            "bash init.sh && printf '%s' \"$PASS\" > pass.out && printf '%s' 'lit$$\"`x' > literal.out",
        ),
        ("clean", "clean.sh pass.out literal.out"),
    ] {
        image.labels.insert(k.into(), v.into());
    }
    image
}

#[test]
fn hooks_run_from_scripts_with_the_env_init_once_and_clean_at_uninstall() {
    let k3s = runtime::runtime_for("k3s").unwrap();
    let c = cluster();
    let image = hooked_image();
    let host = Host::new();
    host.k3s_rootfs();
    // Not executable, as sealos images may ship them: the hooks make them so.
    for (name, text) in [
        (
            "init.sh",
            "#!/bin/bash\necho ran >> runs.out\n./helper.sh\n",
        ),
        ("helper.sh", "#!/bin/bash\necho helped >> runs.out\n"),
        ("check.sh", "#!/bin/bash\ntest -f init.sh\n"),
        ("clean.sh", "#!/bin/bash\nrm -f \"$@\" runs.out\n"),
    ] {
        host.write(
            &format!("/var/lib/sealrs-host/rootfs/scripts/{name}"),
            text,
            0o644,
        );
    }
    host.write("/var/lib/rancher/k3s/server/token", "K10tok\n", 0o600);
    host.write("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n", 0o600);
    let scripts = |name: &str| host.rootfs().join("scripts").join(name);
    let hctx = HostContext::new(&c, &c.hosts[0], &image, JoinSecrets::default()).unwrap();
    let install = k3s.install(&hctx).unwrap();
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&install, &ctx).unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(
        statuses(&r)[..5],
        [
            ("hook-scripts", StepStatus::Unchanged),
            ("hook-check", StepStatus::Unchanged),
            ("hook-markers", StepStatus::Changed),
            ("hook-init", StepStatus::Changed),
            ("hook-init-marker", StepStatus::Changed),
        ]
    );
    assert_eq!(fs::read(scripts("pass.out")).unwrap(), b"pa$$w0rd\"`x");
    assert_eq!(fs::read(scripts("literal.out")).unwrap(), b"lit$$\"`x");
    assert_eq!(
        fs::read_to_string(scripts("runs.out")).unwrap(),
        "ran\nhelped\n"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(scripts("helper.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // A rerun checks again and does not init again.
    let again = execute(&install, &ctx).unwrap();
    assert!(!again.changed, "{again:?}");
    assert_eq!(again.steps[1].status, StepStatus::Unchanged);
    assert_eq!(again.steps[3].status, StepStatus::Skipped);
    assert_eq!(
        fs::read_to_string(scripts("runs.out")).unwrap(),
        "ran\nhelped\n"
    );

    // Uninstall cleans, then removes the markers: twice is nothing to do.
    let uninstall = k3s.uninstall(&hctx).unwrap();
    let r = execute(&uninstall, &ctx).unwrap();
    assert!(r.succeeded(), "{r:?}");
    let clean = r.steps.iter().find(|s| s.id == "hook-clean").unwrap();
    assert_eq!(clean.status, StepStatus::Changed);
    for gone in ["pass.out", "literal.out", "runs.out"] {
        assert!(!scripts(gone).exists(), "{gone} left");
    }
    assert!(!host.at(runtime::MARKER_DIR).exists());
    let again = execute(&uninstall, &ctx).unwrap();
    assert!(!again.changed, "{again:?}");
    let clean = again.steps.iter().find(|s| s.id == "hook-clean").unwrap();
    assert_eq!(clean.status, StepStatus::Skipped);
}

#[test]
fn a_failing_check_stops_the_plan_with_its_output_and_a_missing_scripts_dir_is_named() {
    let k3s = runtime::runtime_for("k3s").unwrap();
    let c = cluster();
    let image = hooked_image();
    let host = Host::new();
    host.k3s_rootfs();
    host.write(
        "/var/lib/sealrs-host/rootfs/scripts/check.sh",
        "echo \"registry port $PASS is taken\" >&2; exit 4\n",
        0o755,
    );
    let hctx = HostContext::new(&c, &c.hosts[0], &image, JoinSecrets::default()).unwrap();
    let ctx = host.ctx("k3s", Role::Master);
    let r = execute(&k3s.install(&hctx).unwrap(), &ctx).unwrap();
    assert_eq!(r.failed.as_deref(), Some("hook-check"));
    assert_eq!(r.steps.len(), 2, "nothing after the check ran");
    let step = &r.steps[1];
    assert_eq!(step.exit_code, Some(4));
    assert!(
        step.output
            .contains(&"registry port pa$$w0rd\"`x is taken".to_string()),
        "{:?}",
        step.output
    );
    assert!(!host.at(runtime::HOOK_MARKER_DIR).exists());

    // An image with hooks but no scripts/ directory: the step says which.
    let bare = Host::new();
    bare.k3s_rootfs();
    let r = execute(&k3s.install(&hctx).unwrap(), &bare.ctx("k3s", Role::Master)).unwrap();
    assert_eq!(r.failed.as_deref(), Some("hook-check"));
    let last = r.steps[1].output.last().unwrap();
    assert!(
        last.contains("working directory") && last.contains("rootfs/scripts is not a directory"),
        "{last}"
    );
}
