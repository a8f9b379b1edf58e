//! `sealrs installer verify`: what only the host can tell, before anything
//! changes on it.
//!
//! The operator checks what it can see from afar (OS, architecture, disk); the
//! installer checks the rest on the host itself, with the code that will then
//! act: the runtime's verify of the cluster, the unpacked rootfs against the
//! layout for this host's role (each file what its rule says, nothing
//! required missing, no placed file landing on a directory), and the
//! runtime's ports for the role. It reads and never writes, and it lists
//! every violation at once. It also names the files of the image's layers
//! and the placed files that are damaged ([`super::integrity`], by stat):
//! not a violation, as the run that asked repairs them.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::integrity::{check_host, Damage, Depth};
use super::probe::Probe;
use super::request::Request;
use super::unpack::{recorded_heads, STAMP};
use super::{place, ExecContext, InstallerError};
use crate::cluster::Role;
use crate::layout::probe::Magic;
use crate::layout::{self, Entry, EntryType, Facts, Layouts, Rootfs};
use crate::plan::Plan;
use crate::runtime::Port;

/// Where the kernel lists sockets (of the installer's network namespace),
/// and whether the table is of UDP ones.
const PROC_NET: [(&str, bool); 4] = [
    ("/proc/net/tcp", false),
    ("/proc/net/tcp6", false),
    ("/proc/net/udp", true),
    ("/proc/net/udp6", true),
];

/// What `installer verify` found: JSON on stdout, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub runtime: String,
    pub host: String,
    pub role: Role,
    /// Empty when the host is fit for the request.
    pub violations: Vec<Violation>,
    /// Whether an install or join would change the host, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Files of the request's layers, and placed files, whose bytes are not
    /// those recorded: the run sends those layers again and places anew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<Damage>,
}

/// One thing that stops the host from taking the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub check: CheckKind,
    pub message: String,
}

/// Which check found a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The runtime's verify of the cluster.
    Cluster,
    /// The unpacked rootfs against the layout.
    Rootfs,
    /// The runtime's ports.
    Ports,
    /// The runtime's host prerequisites (programs on `PATH`, swap off).
    Prerequisites,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.check {
            CheckKind::Cluster => "cluster",
            CheckKind::Rootfs => "rootfs",
            CheckKind::Ports => "ports",
            CheckKind::Prerequisites => "prerequisites",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl VerifyReport {
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line when it holds, else a line per violation.
    pub fn summary(&self) -> String {
        if self.holds() {
            return format!(
                "{} verify on {} ({}): every check holds",
                self.runtime, self.host, self.role
            );
        }
        let mut out = format!(
            "{} verify on {} ({}): {} violation{}",
            self.runtime,
            self.host,
            self.role,
            self.violations.len(),
            if self.violations.len() == 1 { "" } else { "s" }
        );
        for v in &self.violations {
            out.push_str(&format!("\n  - {v}"));
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// Checks the host against `request`; every path of the request is resolved
/// under `host_root` (`/` on a real host).
pub fn verify(request: &Request, host_root: &Path) -> Result<VerifyReport, InstallerError> {
    let runtime = request.runtime()?;
    let cluster = request.cluster();
    let host = request.this_host(&cluster)?;
    let role = Request::role(host);
    let mut violations = Vec::new();
    let mut push = |check, message: String| violations.push(Violation { check, message });

    if let Err(found) = runtime.verify(&cluster, &request.image_info()) {
        for v in found {
            push(CheckKind::Cluster, v.to_string());
        }
    }
    let layouts = Layouts::embedded();
    match layouts.rootfs(runtime.name()) {
        None => push(
            CheckKind::Rootfs,
            format!(
                "this installer has no layout for runtime {} (it has {})",
                runtime.name(),
                layouts.runtimes().join(", ")
            ),
        ),
        Some(layout) => {
            let mut ctx = ExecContext::new(PathBuf::new(), layout, role);
            ctx.host_root = host_root.to_path_buf();
            ctx.rootfs = ctx.host_path(&request.rootfs);
            for message in rootfs_violations(&ctx, &request.rootfs, role) {
                push(CheckKind::Rootfs, message);
            }
            for message in super::hub::violations(request, host_root) {
                push(CheckKind::Rootfs, message);
            }
            let read = |rel: &str| fs::read_to_string(ctx.rootfs.join(rel)).ok();
            for v in runtime.verify_image_files(&cluster, &read) {
                push(CheckKind::Cluster, v.to_string());
            }
            let ports = runtime.ports(&cluster, host);
            if let Some(message) = port_violation(&ctx, &ports) {
                push(CheckKind::Ports, message);
            }
            for message in prerequisite_violations(request, runtime.as_ref(), &ctx, &cluster, host)
            {
                push(CheckKind::Prerequisites, message);
            }
        }
    }
    Ok(VerifyReport {
        runtime: runtime.name().to_string(),
        host: host.key(),
        role,
        violations,
        probe: None,
        damaged: check_host(host_root, &request.layers, Depth::Stat),
    })
}

/// The runtime's prerequisites for this host that do not hold: a program
/// found neither on the installer's `PATH` (under the host root) nor among
/// the files the image places there, active swap; or why the runtime cannot
/// tell (a config of the image it cannot use).
fn prerequisite_violations(
    request: &Request,
    runtime: &dyn crate::runtime::Runtime,
    ctx: &ExecContext,
    cluster: &crate::cluster::Cluster,
    host: &crate::cluster::Host,
) -> Vec<String> {
    let info = request.image_info();
    let mut hctx = match crate::runtime::HostContext::new(
        cluster,
        host,
        &info,
        crate::runtime::JoinSecrets::default(),
    ) {
        Ok(hctx) => hctx,
        Err(e) => return vec![e.to_string()],
    };
    hctx.rootfs = request.rootfs.clone();
    request.read_rootfs_inputs(runtime, &ctx.host_root, &mut hctx);
    let wanted = match runtime.prerequisites(&hctx) {
        Ok(wanted) => wanted,
        Err(e) => return vec![e.to_string()],
    };
    let none = Plan::new("", "verify", "", Vec::new());
    let placed: Vec<String> = place::placements(ctx, ctx.role, &none)
        .map(|files| files.into_iter().map(|f| f.host).collect())
        .unwrap_or_default();
    let path_dirs: Vec<&str> = super::DEFAULT_PATH.split(':').collect();
    let mut out = Vec::new();
    for want in wanted {
        match want {
            crate::runtime::Prerequisite::Program { name, why } => {
                let on_path = path_dirs.iter().any(|dir| {
                    let candidate = ctx.host_path(&format!("{dir}/{name}"));
                    fs::metadata(&candidate)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                        || placed.contains(&format!("{dir}/{name}"))
                });
                if !on_path {
                    out.push(format!(
                        "{name} is not on PATH ({}): {why}; install it (Debian: apt-get install {name}) and run again",
                        super::DEFAULT_PATH
                    ));
                }
            }
            crate::runtime::Prerequisite::SwapOff { why } => {
                let swaps = fs::read_to_string(ctx.host_path("/proc/swaps")).unwrap_or_default();
                let active: Vec<&str> = swaps
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next())
                    .collect();
                if !active.is_empty() {
                    out.push(format!(
                        "swap is on ({}): {why}; turn it off (swapoff -a, and remove it from /etc/fstab)",
                        active.join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// The rootfs against the layout for `role`; `shown` is its path as the request names it.
fn rootfs_violations(ctx: &ExecContext, shown: &str, role: Role) -> Vec<String> {
    if !ctx.rootfs.join(STAMP).is_file() {
        return vec![format!(
            "{shown} does not hold the image's unpacked layers (no {STAMP}); unpack them first (sealrs installer unpack)"
        )];
    }
    let rootfs = match read_rootfs(&ctx.rootfs) {
        Ok(rootfs) => rootfs,
        Err(e) => return vec![format!("reading {shown}: {e}")],
    };
    let mut out: Vec<String> = layout::check_for_host(
        ctx.layout,
        &rootfs,
        crate::arch::host(),
        role == Role::Master,
    )
    .into_iter()
    .map(|p| p.to_string())
    .collect();
    // Where placement would put each file: a directory there stops it. (An
    // empty plan: a file that the real plan writes itself must not land on a
    // directory either.)
    let none = Plan::new("", "verify", "", Vec::new());
    match place::placements(ctx, role, &none) {
        Ok(files) => {
            for file in files {
                if fs::symlink_metadata(ctx.host_path(&file.host)).is_ok_and(|m| m.is_dir()) {
                    out.push(format!(
                        "{} goes to {}, which is a directory on this host; move it away",
                        file.source, file.host
                    ));
                }
            }
        }
        Err(e) => out.push(e.to_string()),
    }
    out
}

/// The unpacked rootfs as the layout checks see an image: paths, types, modes
/// and the first bytes of each file (as its stamp recorded them, where it did:
/// the files of a rootfs are replaced, never written through).
fn read_rootfs(dir: &Path) -> io::Result<Rootfs> {
    let heads = recorded_heads(dir);
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let path = rel.to_string_lossy().into_owned();
        if path == STAMP {
            continue;
        }
        let meta = entry.metadata().map_err(io::Error::other)?;
        let kind = meta.file_type();
        let (entry_type, magic) = if kind.is_dir() {
            (EntryType::Dir, Magic::Empty)
        } else if kind.is_symlink() {
            let target = fs::read_link(entry.path())?;
            (
                EntryType::Symlink(target.to_string_lossy().into_owned()),
                Magic::Empty,
            )
        } else if kind.is_file() {
            let magic = match heads.as_ref().and_then(|h| h.get(&path)) {
                Some(magic) => *magic,
                None => Magic::of_file(entry.path())?,
            };
            (EntryType::File, magic)
        } else {
            (EntryType::Other("special file".into()), Magic::Empty)
        };
        entries.push(Entry {
            path,
            entry_type,
            mode: meta.permissions().mode() & 0o7777,
            size: meta.size(),
            magic,
            facts: Facts::default(),
            layer: 0,
        });
    }
    Ok(Rootfs::from_entries(entries))
}

/// The ports of `ports` something listens on, unless sealrs already placed a
/// rootfs here (then the listeners are its own services).
fn port_violation(ctx: &ExecContext, ports: &[Port]) -> Option<String> {
    if ports.is_empty() || place::has_placed(ctx) {
        return None;
    }
    let mut listening = Vec::new();
    let mut errors = Vec::new();
    for (table, udp) in PROC_NET {
        match fs::read_to_string(ctx.host_path(table)) {
            Ok(text) => listening.extend(bound_ports(&text, udp)),
            Err(e) => errors.push(format!("{table}: {e}")),
        }
    }
    if errors.len() == PROC_NET.len() {
        return Some(format!(
            "cannot tell which ports are in use ({})",
            errors.join("; ")
        ));
    }
    let busy: Vec<String> = ports
        .iter()
        .filter(|p| listening.contains(p))
        .map(Port::to_string)
        .collect();
    (!busy.is_empty()).then(|| {
        format!(
            "port{} {} already in use; stop what listens there, or pick another host",
            if busy.len() == 1 { "" } else { "s" },
            busy.join(", ")
        )
    })
}

/// The ports taken in a `/proc/net/{tcp,tcp6,udp,udp6}` table: TCP ones in
/// the LISTEN state (`0A`), and every bound UDP one (a second bind of it
/// fails whatever its state).
fn bound_ports(table: &str, udp: bool) -> Vec<Port> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            if !udp && *state != "0A" {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(if udp {
                Port::Udp(port)
            } else {
                Port::Tcp(port)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootfs_is_read_with_the_file_heads_its_stamp_recorded_at_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let elf = [&b"\x7fELF\x02\x01\x01"[..], &[0; 11], &[0x3e, 0], &[0; 44]].concat();
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in [("bin/k3s", &elf[..]), ("scripts/init.sh", b"#!/bin/sh\n")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, path, data).unwrap();
        }
        let blob = dir.path().join("layer.tar");
        fs::write(&blob, tar.into_inner().unwrap()).unwrap();
        let dest = dir.path().join("rootfs");
        super::super::unpack::unpack(&[blob], &dest).unwrap();
        let heads = recorded_heads(&dest).expect("the stamp records the heads");
        assert_eq!(
            heads["bin/k3s"],
            Magic::Elf {
                machine: 0x3e,
                big_endian: false
            }
        );
        assert_eq!(heads["scripts/init.sh"], Magic::Shebang);
        assert!(!heads.contains_key(STAMP));
        // Read from the record, not the file (whose bytes a rootfs never
        // changes in place; here a test does, to tell the two apart).
        fs::write(dest.join("scripts/init.sh"), &elf).unwrap();
        let rootfs = read_rootfs(&dest).unwrap();
        assert_eq!(rootfs.entries["scripts/init.sh"].magic, Magic::Shebang);
        assert_eq!(
            rootfs.entries["bin/k3s"].magic,
            Magic::Elf {
                machine: 0x3e,
                big_endian: false
            }
        );
        // A stamp without the record (written before it existed): the files.
        let stamp = dest.join(STAMP);
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&stamp).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("heads");
        fs::write(&stamp, serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(recorded_heads(&dest), None);
        let rootfs = read_rootfs(&dest).unwrap();
        assert_eq!(
            rootfs.entries["scripts/init.sh"].magic,
            Magic::Elf {
                machine: 0x3e,
                big_endian: false
            }
        );
    }

    #[test]
    fn listening_ports_are_read_from_the_kernel_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1922 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n   2: 0B00FA0A:0016 0100FA0A:D2F0 01 00000000:00000000 02:00000A3C 00000000     0        0 3 2 0 20 4 30 10 -1\n";
        assert_eq!(bound_ports(tcp, false), [Port::Tcp(0x1922), Port::Tcp(53)]);
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n";
        assert_eq!(bound_ports(tcp6, false), [Port::Tcp(10250)]);
        // A bound UDP socket is unconnected (07) or connected (01): taken either way.
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  1: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0 0\n  2: 0100007F:0035 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 6 2 0 0\n";
        assert_eq!(bound_ports(udp, true), [Port::Udp(8472), Port::Udp(53)]);
        assert!(bound_ports("", false).is_empty());
        assert!(bound_ports("header\ngarbage line\n", true).is_empty());
    }
}
