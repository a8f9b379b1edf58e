//! Taking down what a runtime leaves outside its unit: process trees, mounts,
//! network interfaces and iptables rules (k3s' `k3s-killall.sh`, written by
//! install.sh's `create_killall`). Each finds what is there first, so that
//! nothing there is `skipped` and a second run changes nothing.
//!
//! Processes and mounts are matched by paths under the host root, so these
//! steps act inside a test's temp root too. Network interfaces and iptables
//! belong to the machine, not to a directory: on a host root other than `/`
//! those two steps touch nothing and say so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::programs::failure;
use super::{Outcome, StepRun};
use crate::installer::mounts::{mount_points, remove_all, resolved};
use crate::installer::InstallerError;

/// How long killed processes get to be gone (their mounts busy until then).
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Unmount passes at most (each takes the deepest remaining mount, and a
/// path mounted over several times needs one pass per mount).
const MAX_UNMOUNTS: usize = 10_000;

/// One process as `/proc` shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    /// The program: `argv[0]`, and where `/proc/PID/exe` points.
    programs: Vec<PathBuf>,
}

/// `ppid` and the one-letter state from `/proc/PID/stat` (the fields after
/// the command name, which is in parentheses and may hold anything).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let base = PathBuf::from(format!("/proc/{pid}"));
            let (state, ppid) = parse_stat(&fs::read_to_string(base.join("stat")).ok()?)?;
            if state == 'Z' {
                return None;
            }
            let mut programs = Vec::new();
            if let Ok(cmdline) = fs::read(base.join("cmdline")) {
                if let Some(arg0) = cmdline.split(|b| *b == 0).next().filter(|a| !a.is_empty()) {
                    use std::os::unix::ffi::OsStrExt;
                    programs.push(PathBuf::from(std::ffi::OsStr::from_bytes(arg0)));
                }
            }
            if let Ok(exe) = fs::read_link(base.join("exe")) {
                programs.push(exe);
            }
            Some(Proc {
                pid,
                ppid,
                programs,
            })
        })
        .collect()
}

/// The pids of the processes whose program is named `name_prefix*` in a
/// directory below `under`, and of all their descendants; never this process.
fn trees(procs: &[Proc], under: &Path, name_prefix: &str) -> BTreeSet<u32> {
    let matches = |p: &Path| {
        p.starts_with(under)
            && p != under
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(name_prefix))
    };
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeSet::new();
    let mut todo: Vec<u32> = procs
        .iter()
        .filter(|p| p.programs.iter().any(|prog| matches(prog)))
        .map(|p| p.pid)
        .collect();
    while let Some(pid) = todo.pop() {
        if out.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    out.remove(&std::process::id());
    out.remove(&1);
    out
}

/// The mount points that start with `prefix` (as strings), deepest first.
fn mounts_under(mounts: &[PathBuf], prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| {
            m.as_os_str()
                .as_encoded_bytes()
                .starts_with(prefix.as_bytes())
        })
        .cloned()
        .collect();
    found.sort();
    found.dedup();
    found.reverse();
    found
}

/// The interface names in `/proc/net/dev` (`  name: counters...`).
fn parse_net_dev(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty() && !n.contains(' ') && !n.contains('|'))
        .collect()
}

/// Each interface of `ip -o link show` with its master:
/// `3: veth1@if2: <...> mtu 1500 qdisc noqueue master cni0 state UP ...`.
fn parse_ip_links(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.next()?;
            let name = words.next()?.trim_end_matches(':');
            let name = name.split('@').next()?.to_string();
            let words: Vec<&str> = words.collect();
            let master = words
                .windows(2)
                .find(|w| w[0] == "master")
                .map(|w| w[1].to_string());
            Some((name, master))
        })
        .collect()
}

/// The lines of an `iptables-save` dump to keep, or `None` when none is dropped.
fn strip_dump(dump: &str, contains: &[String], ignore_case: &[String]) -> Option<String> {
    let lower: Vec<String> = ignore_case.iter().map(|c| c.to_lowercase()).collect();
    let mut dropped = false;
    let mut kept = String::new();
    for line in dump.lines() {
        let low = line.to_lowercase();
        if contains.iter().any(|c| line.contains(c.as_str()))
            || lower.iter().any(|c| low.contains(c.as_str()))
        {
            dropped = true;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    dropped.then_some(kept)
}

impl StepRun<'_> {
    /// The host root resolved, plus `path` below it, as `/proc` names paths.
    fn proc_path(&self, path: &str) -> PathBuf {
        resolved(&self.ctx.host_root).join(path.trim_start_matches('/'))
    }

    pub(super) fn kill_process_trees(
        &mut self,
        under: &str,
        name_prefix: &str,
    ) -> Result<Outcome, InstallerError> {
        let dir = self.proc_path(under);
        let pids = trees(&processes(), &dir, name_prefix);
        if pids.is_empty() {
            return Ok(Outcome::skipped(format!(
                "no {name_prefix}* process runs from {under}"
            )));
        }
        let list = pids.iter().map(u32::to_string).collect::<Vec<_>>();
        if self.ctx.dry_run {
            return Ok(Outcome::changed().with_note(format!("would kill {}", list.join(" "))));
        }
        for pid in &pids {
            // SAFETY: kill(2) with a pid and a signal number; no memory involved.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            let alive: Vec<u32> = processes()
                .into_iter()
                .map(|p| p.pid)
                .filter(|p| pids.contains(p))
                .collect();
            if alive.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(InstallerError::Timeout {
                    what: format!("the end of processes {alive:?} after SIGKILL"),
                    secs: KILL_WAIT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.output.push(format!("killed {}", list.join(" ")));
        Ok(Outcome::changed().with_note(format!("killed {} processes", pids.len())))
    }

    pub(super) fn unmount_under(&mut self, prefix: &str) -> Result<Outcome, InstallerError> {
        let full = self.proc_path(prefix);
        let full = full.to_string_lossy().into_owned();
        // A trailing `/` in the plan is kept: the prefix is a string.
        let full = if prefix.ends_with('/') && !full.ends_with('/') {
            format!("{full}/")
        } else {
            full
        };
        let read = || {
            mount_points()
                .map(|m| mounts_under(&m, &full))
                .map_err(InstallerError::io("reading", "/proc/self/mountinfo"))
        };
        let first = read()?;
        if first.is_empty() {
            return Ok(Outcome::skipped(format!(
                "nothing is mounted under {prefix}"
            )));
        }
        if self.ctx.dry_run {
            let names: Vec<String> = first.iter().map(|p| p.display().to_string()).collect();
            return Ok(Outcome::changed().with_note(format!("would unmount {}", names.join(", "))));
        }
        let mut unmounted: Vec<PathBuf> = Vec::new();
        for _ in 0..MAX_UNMOUNTS {
            let Some(deepest) = read()?.into_iter().next() else {
                break;
            };
            let how = unmount(&deepest).map_err(InstallerError::io("unmounting", &deepest))?;
            self.output
                .push(format!("unmounted {}{how}", deepest.display()));
            unmounted.push(deepest);
        }
        unmounted.sort();
        unmounted.dedup();
        for point in unmounted.iter().rev() {
            remove_all(point).map_err(InstallerError::io("removing", point))?;
        }
        Ok(Outcome::changed().with_note(format!("{} unmounted", unmounted.len())))
    }

    pub(super) fn delete_links(&mut self, names: &[String]) -> Result<Outcome, InstallerError> {
        if !self.ctx.is_real_root() {
            return Ok(Outcome::skipped(
                "network interfaces are the machine's: left alone for a host root other than /",
            ));
        }
        // This process's network namespace, whatever /sys shows.
        let present_now = || {
            fs::read_to_string("/proc/self/net/dev")
                .map(|t| parse_net_dev(&t))
                .map_err(InstallerError::io("reading", "/proc/self/net/dev"))
        };
        let present = present_now()?;
        let wanted: Vec<&String> = names.iter().filter(|n| present.contains(*n)).collect();
        let mut order = Vec::new();
        if !wanted.is_empty() {
            // What is enslaved to them first (veths on cni0), as
            // k3s-killall.sh does; `ip -o link show` names each one's master.
            let argv = ["ip", "-o", "link", "show"].map(String::from);
            let out = self.spawn(&argv, &[], None)?;
            if !out.status.success() {
                self.keep(&out.stderr);
                return Err(failure("ip".into(), out.status));
            }
            let links = parse_ip_links(&String::from_utf8_lossy(&out.stdout));
            for name in wanted {
                order.extend(
                    links
                        .iter()
                        .filter(|(_, master)| master.as_deref() == Some(name.as_str()))
                        .map(|(link, _)| link.clone()),
                );
                order.push(name.clone());
            }
        }
        if order.is_empty() {
            return Ok(Outcome::skipped(format!(
                "none of {} exists",
                names.join(", ")
            )));
        }
        if self.ctx.dry_run {
            return Ok(Outcome::changed().with_note(format!("would delete {}", order.join(", "))));
        }
        for link in &order {
            if !present_now()?.contains(link) {
                continue;
            }
            let argv = ["ip", "link", "delete", link.as_str()].map(String::from);
            let out = self.spawn(&argv, &[], None)?;
            self.keep(&out.stderr);
            // Deleting one end of a veth takes the other with it.
            if !out.status.success() && present_now()?.contains(link) {
                self.exit_code = out.status.code();
                return Err(failure("ip".into(), out.status));
            }
        }
        Ok(Outcome::changed().with_note(format!("deleted {}", order.join(", "))))
    }

    pub(super) fn strip_iptables(
        &mut self,
        tools: &[String],
        contains: &[String],
        ignore_case: &[String],
    ) -> Result<Outcome, InstallerError> {
        if !self.ctx.is_real_root() {
            return Ok(Outcome::skipped(
                "iptables rules are the machine's: left alone for a host root other than /",
            ));
        }
        let mut changed = Vec::new();
        for tool in tools {
            let save = format!("{tool}-save");
            let dump = match self.spawn(std::slice::from_ref(&save), &[], None) {
                Err(InstallerError::Spawn { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    self.output.push(format!("{save} is not installed"));
                    continue;
                }
                Err(e) => return Err(e),
                Ok(out) if !out.status.success() => {
                    // No such table in this kernel (ip6tables without IPv6):
                    // nothing of ours can be in it.
                    self.keep(&out.stderr);
                    continue;
                }
                Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            };
            let Some(kept) = strip_dump(&dump, contains, ignore_case) else {
                continue;
            };
            changed.push(tool.clone());
            if self.ctx.dry_run {
                continue;
            }
            let restore = self.program(&format!("{tool}-restore"));
            self.restore(&restore, &kept)?;
        }
        if changed.is_empty() {
            return Ok(Outcome::skipped("no such rule"));
        }
        Ok(Outcome::changed().with_note(format!("rules removed with {}", changed.join(", "))))
    }

    /// `program` with `input` on its stdin.
    fn restore(&mut self, program: &str, input: &str) -> Result<(), InstallerError> {
        let spawn_err = |source| InstallerError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = Command::new(program)
            .env_clear()
            .env("PATH", crate::installer::DEFAULT_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let written = stdin.write_all(input.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().map_err(spawn_err)?;
        self.keep(&out.stdout);
        self.keep(&out.stderr);
        written.map_err(spawn_err)?;
        if !out.status.success() {
            self.exit_code = out.status.code();
            return Err(failure(program.to_string(), out.status));
        }
        Ok(())
    }
}

/// Unmounts `path` (one mount); a mount still busy is detached (gone from
/// the tree at once, freed when its last user ends). Returns how.
fn unmount(path: &Path) -> io::Result<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: umount2(2) with a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok("");
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(" (busy: detached)");
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, program: &str) -> Proc {
        Proc {
            pid,
            ppid,
            programs: vec![PathBuf::from(program)],
        }
    }

    #[test]
    fn a_tree_is_the_matching_processes_and_all_their_descendants() {
        let data = Path::new("/var/lib/rancher/k3s/data");
        let procs = [
            proc(
                10,
                1,
                "/var/lib/rancher/k3s/data/abc/bin/containerd-shim-runc-v2",
            ),
            proc(11, 10, "/pause"),
            proc(12, 11, "/bin/sleep"),
            proc(20, 1, "/usr/local/bin/k3s"),
            proc(21, 20, "/var/lib/rancher/k3s/data/abc/bin/containerd"),
            proc(30, 1, "/usr/bin/containerd-shim-runc-v2"),
            proc(31, 1, "containerd-shim-runc-v2"),
        ];
        let got = trees(&procs, data, "containerd-shim");
        assert_eq!(got, [10, 11, 12].into());
        assert!(trees(&procs, Path::new("/nowhere"), "containerd-shim").is_empty());
    }

    #[test]
    fn a_shim_and_its_child_in_a_temp_root_are_killed_then_nothing_is_left_to_do() {
        use crate::cluster::Role;
        use crate::installer::{execute, ExecContext, StepStatus};
        use crate::plan::{Plan, Step};
        use std::io::{BufRead, BufReader};

        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("var/lib/rancher/k3s/data/abc/bin");
        fs::create_dir_all(&bin).unwrap();
        let shim = bin.join("containerd-shim-runc-v2");
        fs::copy("/bin/sh", &shim).unwrap();
        let mut running = Command::new(&shim)
            .args(["-c", "sleep 60 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(running.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let child: u32 = line.trim().parse().unwrap();
        let alive = |pid: u32| processes().iter().any(|p| p.pid == pid);
        assert!(alive(child) && alive(running.id()));

        let mut plan = Plan::new("k3s", "uninstall", "h", Vec::new());
        plan.push(Step::kill_process_trees(
            "kill-shims",
            "/var/lib/rancher/k3s/data",
            "containerd-shim",
        ));
        let layout = crate::layout::Layouts::embedded().rootfs("k3s").unwrap();
        let mut ctx = ExecContext::new(root.path().join("rootfs"), layout, Role::Master);
        ctx.host_root = root.path().to_path_buf();
        let report = execute(&plan, &ctx).unwrap();
        assert_eq!(report.steps[0].status, StepStatus::Changed, "{report:?}");
        let status = running.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!alive(child), "the shim's child is killed too");
        let again = execute(&plan, &ctx).unwrap();
        assert_eq!(again.steps[0].status, StepStatus::Skipped, "{again:?}");
    }

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        assert_eq!(parse_stat("42 (a) b (c) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (x) Z 1 0"), Some(('Z', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn mounts_under_a_string_prefix_come_deepest_first() {
        let mounts: Vec<PathBuf> = [
            "/",
            "/run/k3s",
            "/run/k3s/containerd/t/rootfs",
            "/run/k3s/containerd/t/rootfs/proc",
            "/run/netns/cni-1234",
            "/run/netns/other",
            "/run/k3s/containerd/t/rootfs",
        ]
        .map(PathBuf::from)
        .to_vec();
        assert_eq!(
            mounts_under(&mounts, "/run/k3s"),
            [
                "/run/k3s/containerd/t/rootfs/proc",
                "/run/k3s/containerd/t/rootfs",
                "/run/k3s"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            mounts_under(&mounts, "/run/netns/cni-"),
            [PathBuf::from("/run/netns/cni-1234")]
        );
    }

    #[test]
    fn interfaces_and_their_masters_are_read_as_the_kernel_and_ip_print_them() {
        let dev = "Inter-|   Receive                            |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
                   lo:       0       0    0    0    0     0          0         0        0\n  \
                   cni0:       0       0    0    0    0     0          0         0        0\n";
        assert_eq!(parse_net_dev(dev), ["cni0", "lo"].map(String::from).into());
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT\n\
                     2: cni0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT\n\
                     3: veth1@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop master cni0 state DOWN\n";
        assert_eq!(
            parse_ip_links(links),
            [
                ("lo".to_string(), None),
                ("cni0".to_string(), None),
                ("veth1".to_string(), Some("cni0".to_string()))
            ]
        );
    }

    #[test]
    fn a_dump_loses_exactly_the_lines_with_the_patterns() {
        let dump = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n\
                    -A INPUT -j KUBE-FIREWALL\n-A INPUT -s 192.0.2.7/32 -j DROP\n\
                    -A FORWARD -m comment --comment \"Flanneld forward\" -j ACCEPT\n\
                    -A FORWARD -j CNI-FORWARD\nCOMMIT\n";
        let kept = strip_dump(dump, &["KUBE-".into(), "CNI-".into()], &["flannel".into()]).unwrap();
        assert_eq!(
            kept,
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 192.0.2.7/32 -j DROP\nCOMMIT\n"
        );
        assert_eq!(
            strip_dump(&kept, &["KUBE-".into()], &["flannel".into()]),
            None
        );
    }
}
