//! Test hosts: real Debian machines with systemd and sshd, booted with
//! `systemd-nspawn` from one debootstrapped base (`scripts/test-hosts-base.sh`),
//! each on an overlay of its own and in a network namespace of its own.
//!
//! ```ignore
//! let hosts = TestHosts::boot(2);              // ~1 s per host, in parallel
//! let ssh = Ssh::connect(&hosts[0].ip, &hosts.options())?;
//! hosts[1].exec(&["systemctl", "is-system-running"]);   // inside, not over SSH
//! hosts[0].stop();  hosts[0].start();          // a host that is down, and back
//! ```
//!
//! # Addresses
//!
//! Each test process claims a subnet 10.250.X.0/24 of its own with a lock file
//! (`/run/sealrs-test/subnet-X.lock`, released by the kernel when the process
//! ends), so parallel test binaries never collide. Host i gets 10.250.X.(10+i)
//! on `eth0` in its namespace `sealrs-X-i`; the root namespace end of its veth
//! pair (`vsX-i`) has 10.250.X.1/32, a /32 route to the host, and proxy ARP, so
//! that with `ip_forward` hosts reach each other through the root namespace.
//! Nothing else is ever addressed.
//!
//! # Cgroups
//!
//! With `--keep-unit` (there is no systemd outside to ask for a scope), nspawn
//! runs the host's init in `payload/` below the cgroup nspawn was started in,
//! and the host's systemd makes its units' cgroups there. So each nspawn starts
//! in a cgroup of its own, `sealrs-X-i` below this process's, in the
//! hierarchies systemd uses (`name=systemd` and the unified one). Hosts that
//! shared one shared every unit's cgroup: one host's systemd removed
//! `system.slice/k3s-agent.service` while it was empty (its unit stopping, or
//! between two `ExecStartPre`), and another host's next process of that unit
//! failed to join it (`status=219/CGROUP`).
//!
//! # Cleanup
//!
//! Everything a host is made of (the nspawn pid, the overlay mount, the netns,
//! the veth, the directory) is written down in a cleanup script as it is made.
//! `Drop` runs that script after stopping the hosts. A watchdog process started
//! with the hosts runs it too when its stdin (a pipe held by this process) closes:
//! so hosts in a `static` fixture, or of a test binary that crashed or was
//! killed, are torn down as well. Processes are killed by the pids recorded,
//! after checking that they still belong to the host's root directory; never by
//! name.
//!
//! # Host keys
//!
//! The base has no sshd host keys: each host gets a fresh ed25519 key (and only
//! that key) when it is made, so hosts never share one, and the harness writes a
//! known_hosts file for all of them ([`TestHosts::known_hosts`]).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Index;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sealrs::transport::{sh_quote, ConnectOptions};

const DEFAULT_BASE: &str = "/var/cache/sealrs-test/base-bookworm-3";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The debootstrapped base; `SEALRS_TEST_BASE` moves it.
pub fn base() -> PathBuf {
    std::env::var_os("SEALRS_TEST_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BASE))
}

/// Fails (never skips) when hosts cannot be made, saying what to do.
fn preflight() {
    let base = base();
    let stamp = base.join(".sealrs-base-complete");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    assert!(
        is_root,
        "test hosts need root (overlay mounts, network namespaces, systemd-nspawn); run the tests as root"
    );
    assert!(
        stamp.is_file(),
        "test hosts need the Debian base at {}: run scripts/test-hosts-base.sh as root \
         (needs debootstrap, systemd-container, openssh-server, iproute2; scripts/test.sh installs them)",
        base.display()
    );
    for tool in ["systemd-nspawn", "ip", "ssh-keygen", "nsenter", "mount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "test hosts need {tool}: install systemd-container openssh-client iproute2 util-linux"
        );
    }
}

/// Runs a command of the harness; panics with its output if it fails.
fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("test hosts: cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "test hosts: `{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// The subnet number X of this process (10.250.X.0/24), claimed once.
fn subnet() -> u8 {
    static SUBNET: OnceLock<(u8, fs::File)> = OnceLock::new();
    SUBNET
        .get_or_init(|| {
            let dir = Path::new("/run/sealrs-test");
            fs::create_dir_all(dir).unwrap();
            let start = (std::process::id() % 250) as u16;
            for k in 0..250u16 {
                let x = ((start + k) % 250) as u8;
                let file = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("subnet-{x}.lock")))
                    .unwrap();
                if file.try_lock().is_ok() {
                    return (x, file);
                }
            }
            panic!("test hosts: all 250 subnets 10.250.X.0/24 are taken by other test processes");
        })
        .0
}

/// Host numbers within this process's subnet: 1..=200, reused after drop.
fn claim_index() -> u8 {
    let mut used = INDICES.lock().unwrap();
    let i = (1..=200u8)
        .find(|i| !used.contains(i))
        .expect("test hosts: more than 200 hosts at once in one process");
    used.push(i);
    i
}
static INDICES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One booted (or stopped) test host.
pub struct Host {
    /// Hostname inside, `h<i>`.
    pub name: String,
    /// Its address, reachable from this machine and from the other hosts.
    pub ip: String,
    index: u8,
    netns: String,
    veth: String,
    /// Its nspawn's cgroups, one per hierarchy (see "Cgroups" above).
    cgroups: Vec<PathBuf>,
    /// The host's directory: `up/`, `work/`, `root/` (the overlay), `console.log`.
    dir: PathBuf,
    /// The running `systemd-nspawn`, and the pid of the host's init.
    nspawn: Mutex<Option<(Child, (u32, String))>>,
}

impl Host {
    /// The host's root filesystem as mounted here (its overlay): write files
    /// into the host before or while it runs.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The host's ed25519 public host key, `ssh-ed25519 AAAA...`.
    pub fn host_key(&self) -> String {
        let text =
            fs::read_to_string(self.root().join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn init_pid(&self) -> u32 {
        self.nspawn
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, (init, _))| *init)
            .unwrap_or_else(|| panic!("{} is stopped", self.name))
    }

    /// Runs a command inside the host (all its namespaces, as root), not over
    /// SSH: for setting up and inspecting hosts in tests.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.exec_stdin(argv, b"")
    }

    pub fn exec_stdin(&self, argv: &[&str], stdin: &[u8]) -> Output {
        let pid = self.init_pid().to_string();
        let mut child = Command::new("nsenter")
            .args(["--target", &pid, "--all", "--"])
            .args(argv)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// [`Host::exec`] that must succeed; returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{}: `{}` failed: {}{}",
            self.name,
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Lets root log in with `password` (which may hold `$`, quotes, …): sets
    /// it with chpasswd inside the host (read from stdin, never in an argv) and
    /// turns PasswordAuthentication on in its sshd.
    pub fn ssh_password(&self, password: &str) {
        assert!(!password.contains('\n') && !password.contains(':'));
        let out = self.exec_stdin(&["chpasswd"], format!("root:{password}\n").as_bytes());
        assert!(
            out.status.success(),
            "chpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(
            self.root()
                .join("etc/ssh/sshd_config.d/15-sealrs-password.conf"),
            "PasswordAuthentication yes\n",
        )
        .unwrap();
        // Not a reload: that re-executes sshd in the background, which stops
        // listening for a moment. A restart returns once sshd is ready
        // (Type=notify), and established connections stay.
        self.exec_ok(&["systemctl", "restart", "ssh"]);
        wait_for_sshd(&self.ip, Instant::now() + BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: sshd did not come back: {e}", self.name));
    }

    /// Gives the host a new host key and restarts sshd: a "changed key".
    pub fn regenerate_host_key(&self) {
        self.exec_ok(&[
            "sh",
            "-c",
            "rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub && \
             ssh-keygen -q -t ed25519 -N '' -C \"root@$(hostname)\" -f /etc/ssh/ssh_host_ed25519_key && \
             systemctl restart ssh",
        ]);
        wait_for_sshd(&self.ip, Instant::now() + BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: sshd did not come back: {e}", self.name));
    }

    /// Shuts the host down (as a power cut would look from outside: its address
    /// stops answering). The overlay and the namespace stay for [`Host::start`].
    pub fn stop(&self) {
        let taken = self.nspawn.lock().unwrap().take();
        if let Some((child, init)) = taken {
            stop_nspawn(child, init);
        }
    }

    /// Takes the host's network link down (`false`: nothing answers at its
    /// address, packets are lost rather than refused) or back up.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        sh("ip", &["-n", &self.netns, "link", "set", "eth0", state]);
        if up {
            // Bringing a link down drops its routes: put the default back.
            let _ = Command::new("ip")
                .args([
                    "-n",
                    &self.netns,
                    "route",
                    "replace",
                    "default",
                    "dev",
                    "eth0",
                ])
                .status();
        }
    }

    /// Boots the host again after [`Host::stop`], and waits for sshd.
    pub fn start(&self) {
        assert!(
            self.nspawn.lock().unwrap().is_none(),
            "{} is running",
            self.name
        );
        self.spawn();
        wait_for_sshd(&self.ip, Instant::now() + BOOT_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{}: sshd did not answer: {e}\n{}",
                self.name,
                self.console()
            )
        });
    }

    /// The last lines of the host's console (boot messages), for failures.
    pub fn console(&self) -> String {
        let text = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))
            .unwrap();
        let root = self.root();
        for cgroup in &self.cgroups {
            fs::create_dir_all(cgroup).unwrap();
        }
        // sh moves itself into the host's cgroups, then becomes nspawn.
        let child = Command::new("sh")
            .args([
                "-c",
                r#"while [ "$1" != -- ]; do echo $$ >"$1/cgroup.procs" || exit 1; shift; done; shift; exec "$@""#,
                "sh",
            ])
            .args(&self.cgroups)
            .args(["--", "systemd-nspawn"])
            .args(["--keep-unit", "--register=no", "-q", "-D"])
            .arg(&root)
            .args(["-M", &format!("sealrs-{}-{}", subnet(), self.index)])
            .arg(format!("--hostname={}", self.name))
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                self.netns
            ))
            // Network administration in the host's own namespace, as a real
            // host's root has it: k3s and its stand-in add cni0 and iptables
            // rules, and uninstalls delete them.
            .arg("--capability=CAP_NET_ADMIN")
            .arg("-b")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start systemd-nspawn");
        let pid = child.id();
        // nspawn's child is the host's init (pid 1 inside, in a pid namespace
        // of its own): wait until it runs, and note that namespace, which names
        // the host's processes for as long as the host lives.
        let own = fs::read_link("/proc/self/ns/pid").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let init = loop {
            let children =
                fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            let found = children.split_whitespace().find_map(|c| {
                let ns = fs::read_link(format!("/proc/{c}/ns/pid")).ok()?;
                (ns != own)
                    .then(|| Some((c.parse::<u32>().ok()?, ns.to_string_lossy().into_owned())))?
            });
            if let Some(init) = found {
                break init;
            }
            if Instant::now() > deadline {
                // Not recorded anywhere yet: stop it here rather than leak it.
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
                let mut child = child;
                let stop_by = Instant::now() + Duration::from_secs(10);
                while Instant::now() < stop_by && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: systemd-nspawn (pid {pid}) started no init:\n{}",
                    self.name,
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        *self.nspawn.lock().unwrap() = Some((child, init));
    }

    /// The shell lines that undo this host, given the pids now recorded.
    fn cleanup_lines(&self, out: &mut String) {
        let root = sh_quote(&self.root().to_string_lossy());
        if let Some((child, (init, ns))) = self.nspawn.lock().unwrap().as_ref() {
            let _ = writeln!(
                out,
                "stop_host {} {} {} {root}",
                child.id(),
                init,
                sh_quote(ns)
            );
        }
        let _ = writeln!(
            out,
            "mountpoint -q {root} && umount {root}; ip netns delete {} 2>/dev/null; ip link delete {} 2>/dev/null; rm -rf --one-file-system {}",
            sh_quote(&self.netns),
            sh_quote(&self.veth),
            sh_quote(&self.dir.to_string_lossy())
        );
        for cgroup in &self.cgroups {
            let _ = writeln!(
                out,
                "[ -d {0} ] && find {0} -depth -type d -exec rmdir {{}} + 2>/dev/null",
                sh_quote(&cgroup.to_string_lossy())
            );
        }
    }
}

/// The cgroups, as mounted here, that this process is in within the
/// hierarchies systemd keeps units in: `name=systemd` and the unified one.
fn systemd_cgroups() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        // Lines `ID:CONTROLLERS:PATH`; the unified hierarchy's has no controllers.
        let path_in = |controllers: &str| {
            own.lines().find_map(|line| {
                let mut f = line.splitn(3, ':').skip(1);
                (f.next()? == controllers).then(|| f.next().map(|p| p.trim_start_matches('/')))?
            })
        };
        fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let controllers = match (*f.get(2)?, *f.get(3)?) {
                    ("cgroup2", _) => "",
                    ("cgroup", opts) if opts.split(',').any(|o| o == "name=systemd") => {
                        "name=systemd"
                    }
                    _ => return None,
                };
                Some(Path::new(f[1]).join(path_in(controllers)?))
            })
            .collect()
    })
}

/// Stops nspawn gracefully (it powers the host off on SIGTERM), then kills the
/// host's init if it lingers (ending every process of the host's pid namespace).
fn stop_nspawn(mut child: Child, (init, ns): (u32, String)) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if fs::read_link(format!("/proc/{init}/ns/pid")).is_ok_and(|link| link.to_string_lossy() == ns)
    {
        let _ = Command::new("kill")
            .args(["-KILL", &init.to_string()])
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

const CLEANUP_PRELUDE: &str = r#"# written by tests/hosts.rs: undoes what it made, by pid, mount and name
# stop_host NSPAWN_PID INIT_PID INIT_PIDNS ROOT: each pid only while it is still
# ours: nspawn by the root directory in its argv, init by its pid namespace.
is_nspawn() { [ -d "/proc/$1" ] && tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$2"; }
stop_host() {
  if is_nspawn "$1" "$4"; then
    kill -TERM "$1" 2>/dev/null
    i=0; while is_nspawn "$1" "$4" && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
  fi
  if [ "$(readlink "/proc/$2/ns/pid" 2>/dev/null)" = "$3" ]; then kill -KILL "$2" 2>/dev/null; sleep 0.2; fi
  if is_nspawn "$1" "$4"; then kill -KILL "$1"; fi
}
"#;

/// A group of hosts booted together; torn down on drop.
pub struct TestHosts {
    hosts: Vec<Host>,
    dir: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    cleanup: PathBuf,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl Index<usize> for TestHosts {
    type Output = Host;
    fn index(&self, i: usize) -> &Host {
        &self.hosts[i]
    }
}

impl TestHosts {
    /// Boots `n` hosts and waits until each one's sshd answers. Panics with the
    /// reason (and the console of a host that did not come up) on failure.
    pub fn boot(n: usize) -> TestHosts {
        preflight();
        let started = Instant::now();
        let x = subnet();
        let dir = tempfile::Builder::new()
            .prefix("sealrs-hosts-")
            .tempdir()
            .unwrap()
            .keep();
        let key = dir.join("id_ed25519");
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "sealrs-test",
                "-f",
                key.to_str().unwrap(),
            ],
        );
        let cleanup = dir.join("cleanup.sh");
        fs::write(&cleanup, CLEANUP_PRELUDE).unwrap();
        // The watchdog: runs the cleanup script when this process lets go of its
        // stdin, at drop or at exit, whichever way the process ends.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' INT HUP TERM; cat >/dev/null; sh {} >/dev/null 2>&1; rm -rf --one-file-system {}",
                sh_quote(&cleanup.to_string_lossy()),
                sh_quote(&dir.to_string_lossy())
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cleanup watchdog");
        let pipe = watchdog.stdin.take().unwrap();
        let mut group = TestHosts {
            hosts: Vec::new(),
            known_hosts: dir.join("known_hosts"),
            key,
            cleanup,
            dir,
            watchdog: Mutex::new(Some((watchdog, pipe))),
        };

        fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable net.ipv4.ip_forward");
        // Each host's systemd, logind, dbus, ... take inotify instances from
        // root's one allowance (128 by default): with some twenty hosts up at
        // once (parallel tests), the next host's systemd fails to start.
        let instances = "/proc/sys/fs/inotify/max_user_instances";
        if fs::read_to_string(instances)
            .is_ok_and(|n| n.trim().parse().is_ok_and(|n: u32| n < 8192))
        {
            fs::write(instances, "8192").expect("raise fs.inotify.max_user_instances");
        }
        for _ in 0..n {
            let index = claim_index();
            let host = Host {
                name: format!("h{index}"),
                ip: format!("10.250.{x}.{}", 10 + index as u16),
                index,
                netns: format!("sealrs-{x}-{index}"),
                veth: format!("vs{x}-{index}"),
                cgroups: systemd_cgroups()
                    .iter()
                    .map(|d| d.join(format!("sealrs-{x}-{index}")))
                    .collect(),
                dir: group.dir.join(format!("h{index}")),
                nspawn: Mutex::new(None),
            };
            group.hosts.push(host);
        }
        group.write_cleanup();
        for i in 0..n {
            group.prepare(i);
        }
        let mut known = String::new();
        for host in &group.hosts {
            let _ = writeln!(known, "{} {}", host.ip, host.host_key());
        }
        fs::write(&group.known_hosts, known).unwrap();

        for host in &group.hosts {
            host.spawn();
        }
        group.write_cleanup();
        let deadline = Instant::now() + BOOT_TIMEOUT;
        for host in &group.hosts {
            if let Err(e) = wait_for_sshd(&host.ip, deadline) {
                panic!(
                    "test host {} ({}) did not come up: {e}\nconsole:\n{}",
                    host.name,
                    host.ip,
                    host.console()
                );
            }
        }
        eprintln!(
            "test hosts: {} booted in {:.2}s ({})",
            n,
            started.elapsed().as_secs_f32(),
            group
                .hosts
                .iter()
                .map(|h| format!("{} {}", h.name, h.ip))
                .collect::<Vec<_>>()
                .join(", ")
        );
        group
    }

    /// Overlay, files, network: everything but the boot.
    fn prepare(&self, i: usize) {
        let host = &self.hosts[i];
        let root = host.root();
        for sub in ["up", "work", "root"] {
            fs::create_dir_all(host.dir.join(sub)).unwrap();
        }
        sh(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!(
                    "lowerdir={},upperdir={},workdir={}",
                    base().display(),
                    host.dir.join("up").display(),
                    host.dir.join("work").display()
                ),
                root.to_str().unwrap(),
            ],
        );
        // Identity: hostname, machine id, its own host key, the group's names.
        fs::write(root.join("etc/hostname"), format!("{}\n", host.name)).unwrap();
        let machine_id = format!("{}\n", random_hex(16));
        fs::write(root.join("etc/machine-id"), &machine_id).unwrap();
        let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
        let mut hosts_file = String::from("127.0.0.1 localhost\n");
        for h in &self.hosts {
            let _ = writeln!(hosts_file, "{} {}", h.ip, h.name);
        }
        fs::write(root.join("etc/hosts"), hosts_file).unwrap();
        let hostkey = root.join("etc/ssh/ssh_host_ed25519_key");
        for old in glob_host_keys(&root) {
            let _ = fs::remove_file(old);
        }
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("root@{}", host.name),
                "-f",
                hostkey.to_str().unwrap(),
            ],
        );
        fs::write(
            root.join("etc/ssh/sshd_config.d/20-sealrs-host.conf"),
            "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n",
        )
        .unwrap();
        let ssh_dir = root.join("root/.ssh");
        fs::create_dir_all(&ssh_dir).unwrap();
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::copy(
            self.key.with_extension("pub"),
            ssh_dir.join("authorized_keys"),
        )
        .unwrap();
        fs::set_permissions(
            ssh_dir.join("authorized_keys"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        // Network: a namespace, a veth pair, the host's address and routes.
        let x = subnet();
        let ns = host.netns.as_str();
        let veth = host.veth.as_str();
        sh("ip", &["netns", "add", ns]);
        sh(
            "ip",
            &[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        );
        sh(
            "ip",
            &["addr", "add", &format!("10.250.{x}.1/32"), "dev", veth],
        );
        sh("ip", &["link", "set", veth, "up"]);
        fs::write(format!("/proc/sys/net/ipv4/conf/{veth}/proxy_arp"), "1").unwrap();
        sh(
            "ip",
            &["route", "add", &format!("{}/32", host.ip), "dev", veth],
        );
        sh(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ],
        );
        sh("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        sh("ip", &["-n", ns, "route", "add", "default", "dev", "eth0"]);
    }

    /// Rewrites the cleanup script from what exists now (atomically: the
    /// watchdog may read it at any moment).
    fn write_cleanup(&self) {
        let mut script = String::from(CLEANUP_PRELUDE);
        for host in &self.hosts {
            host.cleanup_lines(&mut script);
        }
        let tmp = self.cleanup.with_extension("tmp");
        fs::write(&tmp, script).unwrap();
        fs::rename(&tmp, &self.cleanup).unwrap();
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The private key that root's authorized_keys on every host accepts.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// A known_hosts file with every host's key.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// A directory for the test's own files, removed with the hosts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Root with the group's key and known_hosts, 10 s timeout.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            user: "root".to_string(),
            key: Some(self.key.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            connect_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    /// Stops a host (see [`Host::stop`]) and keeps the cleanup script right.
    pub fn stop(&self, i: usize) {
        self.hosts[i].stop();
        self.write_cleanup();
    }

    pub fn start(&self, i: usize) {
        self.hosts[i].start();
        self.write_cleanup();
    }
}

fn glob_host_keys(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("etc/ssh"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ssh_host_"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `ip:22` sends an SSH banner.
fn wait_for_sshd(ip: &str, deadline: Instant) -> Result<(), String> {
    let addr: SocketAddr = format!("{ip}:22").parse().unwrap();
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut banner = [0u8; 8];
                match stream.read_exact(&mut banner) {
                    Ok(()) if &banner == b"SSH-2.0-" => return Ok(()),
                    Ok(()) => last = format!("unexpected banner {banner:?}"),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("sshd at {ip}:22 did not answer: {last}"))
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        // Stop all hosts at once (each takes about a second to power off).
        std::thread::scope(|s| {
            for host in &self.hosts {
                s.spawn(|| host.stop());
            }
        });
        self.write_cleanup();
        let _ = Command::new("sh").arg(&self.cleanup).status();
        let mut used = INDICES.lock().unwrap();
        used.retain(|i| !self.hosts.iter().any(|h| h.index == *i));
        drop(used);
        if let Some((mut child, pipe)) = self.watchdog.lock().unwrap().take() {
            drop(pipe);
            let _ = child.wait();
        }
    }
}
