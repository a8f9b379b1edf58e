//! The constructors runtimes build their steps with: each action with the
//! check that makes it idempotent, and the builders that adjust a step.

use super::{Action, Capture, Check, FileContent, ServiceOp, Step};
use crate::cluster::Role;

impl Step {
    pub fn new(id: &str, title: impl Into<String>, action: Action, check: Check) -> Step {
        Step {
            id: id.to_string(),
            title: title.into(),
            action,
            check,
        }
    }

    pub fn place_rootfs(role: Role) -> Step {
        Step::new(
            "place-rootfs",
            format!("place the image rootfs for a {role}"),
            Action::PlaceRootfs {
                role,
                workloads: None,
            },
            Check::FileMatches,
        )
    }

    pub fn remove_rootfs(role: Role) -> Step {
        Step::new(
            "remove-rootfs",
            format!("remove the placed rootfs of a {role}"),
            Action::RemoveRootfs { role },
            Check::Absent,
        )
    }

    /// A file written only when its content or mode differs.
    pub fn write_file(id: &str, path: &str, content: FileContent, mode: u32) -> Step {
        Step::new(
            id,
            format!("write {path}"),
            Action::WriteFile {
                path: path.to_string(),
                content,
                mode,
                only_if_changed: true,
                sensitive: false,
            },
            Check::FileMatches,
        )
    }

    /// Like [`Step::write_file`], for a file that holds secrets.
    pub fn write_secret_file(id: &str, path: &str, content: FileContent, mode: u32) -> Step {
        let mut step = Step::write_file(id, path, content, mode);
        if let Action::WriteFile { sensitive, .. } = &mut step.action {
            *sensitive = true;
        }
        step
    }

    pub fn ensure_dir(id: &str, path: &str, mode: u32) -> Step {
        Step::new(
            id,
            format!("ensure directory {path}"),
            Action::EnsureDir {
                path: path.to_string(),
                mode,
            },
            Check::DirExists,
        )
    }

    /// A program run; `check` says when it has nothing to do.
    pub fn run(id: &str, title: impl Into<String>, argv: &[&str], check: Check) -> Step {
        Step::new(
            id,
            title,
            Action::Run {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: Vec::new(),
                cwd: None,
                capture: None,
                redact: Vec::new(),
                allow_failure: false,
            },
            check,
        )
    }

    /// A program run whose trimmed stdout is captured; it only reads.
    pub fn run_capture(
        id: &str,
        title: impl Into<String>,
        argv: &[&str],
        capture: Capture,
    ) -> Step {
        let mut step = Step::run(id, title, argv, Check::ReadOnly);
        if let Action::Run { capture: c, .. } = &mut step.action {
            *c = Some(capture);
        }
        step
    }

    pub fn symlink(id: &str, target: &str, link: &str) -> Step {
        Step::new(
            id,
            format!("link {link} -> {target}"),
            Action::Symlink {
                target: target.to_string(),
                link: link.to_string(),
            },
            Check::LinkMatches,
        )
    }

    pub fn remove(id: &str, path: &str) -> Step {
        Step::new(
            id,
            format!("remove {path}"),
            Action::Remove {
                path: path.to_string(),
                recursive: true,
            },
            Check::Absent,
        )
    }

    /// Removes `path` only if it is an empty directory.
    pub fn remove_empty_dir(id: &str, path: &str) -> Step {
        Step::new(
            id,
            format!("remove {path} if empty"),
            Action::Remove {
                path: path.to_string(),
                recursive: false,
            },
            Check::Absent,
        )
    }

    pub fn remove_link(id: &str, link: &str, target: &str) -> Step {
        Step::new(
            id,
            format!("remove link {link} -> {target}"),
            Action::RemoveLink {
                link: link.to_string(),
                target: target.to_string(),
            },
            Check::Absent,
        )
    }

    pub fn install_unit(id: &str, name: &str, content: String) -> Step {
        Step::new(
            id,
            format!("install systemd unit {name}"),
            Action::InstallUnit {
                name: name.to_string(),
                content,
            },
            Check::FileMatches,
        )
    }

    pub fn daemon_reload(id: &str, check: Check) -> Step {
        Step::new(id, "reload systemd units", Action::DaemonReload, check)
    }

    /// `systemctl <op> <unit>` with the check that matches the op.
    pub fn service(id: &str, unit: &str, op: ServiceOp) -> Step {
        let unit_s = unit.to_string();
        let check = match op {
            ServiceOp::Enable => Check::UnitEnabled { unit: unit_s },
            ServiceOp::Disable => Check::UnitDisabled { unit: unit_s },
            ServiceOp::Start => Check::UnitActive { unit: unit_s },
            ServiceOp::Stop => Check::UnitInactive { unit: unit_s },
            ServiceOp::Restart => Check::ReadOnly,
        };
        Step::new(
            id,
            format!("{} {unit}", op.verb()),
            Action::Service {
                unit: unit.to_string(),
                op,
            },
            check,
        )
    }

    /// Restart `unit` when one of `steps` changed and it is already running.
    pub fn restart_if_changed(id: &str, unit: &str, steps: &[&str]) -> Step {
        Step::new(
            id,
            format!("restart {unit} if its files changed"),
            Action::Service {
                unit: unit.to_string(),
                op: ServiceOp::Restart,
            },
            Check::IfChanged {
                steps: steps.iter().map(|s| s.to_string()).collect(),
                unit_active: Some(unit.to_string()),
            },
        )
    }

    pub fn wait_file(id: &str, path: &str, timeout_secs: u64) -> Step {
        Step::new(
            id,
            format!("wait for {path}"),
            Action::WaitFile {
                path: path.to_string(),
                timeout_secs,
            },
            Check::ReadOnly,
        )
    }

    pub fn wait_port(id: &str, host: &str, port: u16, timeout_secs: u64) -> Step {
        Step::new(
            id,
            format!("wait for {host}:{port} to accept connections"),
            Action::WaitPort {
                host: host.to_string(),
                port,
                timeout_secs,
            },
            Check::ReadOnly,
        )
    }

    pub fn read_file(id: &str, path: &str, capture: Capture) -> Step {
        Step::new(
            id,
            format!("read back {path}"),
            Action::ReadFile {
                path: path.to_string(),
                capture,
            },
            Check::ReadOnly,
        )
    }

    /// See [`Action::KillProcessTrees`].
    pub fn kill_process_trees(id: &str, under: &str, name_prefix: &str) -> Step {
        Step::new(
            id,
            format!("kill the {name_prefix}* processes under {under} and their children"),
            Action::KillProcessTrees {
                under: under.to_string(),
                name_prefix: name_prefix.to_string(),
            },
            Check::Absent,
        )
    }

    /// See [`Action::UnmountUnder`].
    pub fn unmount_under(id: &str, prefix: &str) -> Step {
        Step::new(
            id,
            format!("unmount everything under {prefix}"),
            Action::UnmountUnder {
                prefix: prefix.to_string(),
            },
            Check::Absent,
        )
    }

    /// See [`Action::DeleteLinks`].
    pub fn delete_links(id: &str, names: &[&str]) -> Step {
        Step::new(
            id,
            format!("delete the network interfaces {}", names.join(", ")),
            Action::DeleteLinks {
                names: names.iter().map(|s| s.to_string()).collect(),
            },
            Check::Absent,
        )
    }

    /// See [`Action::StripIptables`].
    pub fn strip_iptables(
        id: &str,
        tools: &[&str],
        contains: &[&str],
        contains_ignore_case: &[&str],
    ) -> Step {
        let all: Vec<&str> = contains
            .iter()
            .chain(contains_ignore_case)
            .copied()
            .collect();
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Step::new(
            id,
            format!(
                "remove the {} rules with {}",
                tools.join("/"),
                all.join(", ")
            ),
            Action::StripIptables {
                tools: owned(tools),
                contains: owned(contains),
                contains_ignore_case: owned(contains_ignore_case),
            },
            Check::Absent,
        )
    }

    /// Adds env to a [`Action::Run`] step (no-op on other actions).
    pub fn with_env(mut self, vars: Vec<(String, String)>) -> Step {
        if let Action::Run { env, .. } = &mut self.action {
            env.extend(vars);
        }
        self
    }

    /// Sets the working directory of a [`Action::Run`] step.
    pub fn with_cwd(mut self, dir: &str) -> Step {
        if let Action::Run { cwd, .. } = &mut self.action {
            *cwd = Some(dir.to_string());
        }
        self
    }

    /// Marks argv elements of a [`Action::Run`] step as secrets.
    pub fn with_redacted(mut self, indices: &[usize]) -> Step {
        if let Action::Run { redact, .. } = &mut self.action {
            redact.extend_from_slice(indices);
        }
        self
    }

    /// Lets a [`Action::Run`] step fail without stopping the plan.
    pub fn allowing_failure(mut self) -> Step {
        if let Action::Run { allow_failure, .. } = &mut self.action {
            *allow_failure = true;
        }
        self
    }

    /// Says whether the host of an [`Action::PlaceRootfs`] step runs
    /// workloads (a control plane that is a node too); no-op on other actions.
    pub fn running_workloads(mut self, runs: bool) -> Step {
        if let Action::PlaceRootfs { workloads, .. } = &mut self.action {
            *workloads = Some(runs);
        }
        self
    }

    /// Replaces the step's title.
    pub fn titled(mut self, title: impl Into<String>) -> Step {
        self.title = title.into();
        self
    }
}
