//! kubeadm, as the Kubernetes docs describe it.
//!
//! - Host prerequisites (kernel modules, `net.ipv4.ip_forward`):
//!   <https://kubernetes.io/docs/setup/production-environment/container-runtimes/>.
//! - `kubeadm init --upload-certs` on the first control-plane, then
//!   `kubeadm join` with a bootstrap token and the CA hash, plus
//!   `--control-plane --certificate-key` for control-planes
//!   (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/high-availability/>).
//!   The join command and certificate key are captured from
//!   `kubeadm token create --print-join-command` and
//!   `kubeadm init phase upload-certs --upload-certs`, which mint fresh
//!   short-lived credentials each run so that a node added days later can join.
//! - Upgrades: `kubeadm upgrade apply` on the first control-plane,
//!   `kubeadm upgrade node` on the others, then restart the kubelet
//!   (<https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/>).
//!   Draining is left to the operator's processor.
//! - Version skew (<https://kubernetes.io/releases/version-skew-policy/>):
//!   control-planes within one minor of each other, kubelets at most three
//!   minors older than the API server (two before v1.28).
//! - `kubeadm reset -f`, then what reset leaves behind
//!   (<https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/>).

use std::collections::BTreeMap;

use crate::cluster::{Address, Cluster, Role, Secret};
use crate::plan::{Capture, Check, FileContent, Plan, ServiceOp, Step};

use super::{
    bad_capture, finish_verify, hooks, verify_common, HostContext, ImageInfo, JoinSecrets, Runtime,
    RuntimeError, Version, Violation, KUBECONFIG_CAPTURE, MARKER_DIR,
};

pub const BIN: &str = "/usr/local/bin/kubeadm";
pub const KUBECTL: &str = "/usr/local/bin/kubectl";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
pub const MODULES_FILE: &str = "/etc/modules-load.d/sealrs-k8s.conf";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-sealrs-k8s.conf";
/// The capture of `kubeadm token create --print-join-command`.
pub const JOIN_COMMAND_CAPTURE: &str = "kubeadm.join-command";
/// The capture of `kubeadm init phase upload-certs --upload-certs` (the key
/// is its last line).
pub const CERTIFICATE_KEY_CAPTURE: &str = "kubeadm.certificate-key";
pub use super::{API_PORT, KUBELET_PORT};
const WAIT_SECS: u64 = 300;

/// The kubeadm runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kubeadm;

fn env<'a>(ctx: &'a HostContext, key: &str) -> Option<&'a str> {
    ctx.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `host:6443` that every node talks to: `CONTROL_PLANE_ENDPOINT` from the
/// env, else the first master.
fn endpoint(ctx: &HostContext) -> String {
    match env(ctx, "CONTROL_PLANE_ENDPOINT") {
        Some(e) => e.to_string(),
        None => format!("{}:{API_PORT}", ctx.first_master.url_host()),
    }
}

fn advertise_flag(ctx: &HostContext) -> Option<String> {
    match &ctx.host.address {
        Address::Ip(ip) => Some(format!("--apiserver-advertise-address={ip}")),
        Address::Hostname(_) => None,
    }
}

/// Placement, kernel prerequisites, containerd and kubelet enabled.
fn prepare(ctx: &HostContext, plan: &mut Plan) {
    plan.push(Step::place_rootfs(ctx.role));
    plan.push(Step::daemon_reload(
        "daemon-reload",
        Check::IfChanged {
            steps: vec!["place-rootfs".into()],
            unit_active: None,
        },
    ));
    plan.push(Step::write_file(
        "modules",
        MODULES_FILE,
        FileContent::text("overlay\nbr_netfilter\n"),
        0o644,
    ));
    for module in ["overlay", "br_netfilter"] {
        plan.push(
            Step::run(
                &format!("modprobe-{module}"),
                format!("load kernel module {module}"),
                &["modprobe", module],
                Check::IfChanged {
                    steps: vec!["modules".into()],
                    unit_active: None,
                },
            )
            .allowing_failure(),
        );
    }
    plan.push(Step::write_file(
        "sysctl",
        SYSCTL_FILE,
        FileContent::text(
            "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n",
        ),
        0o644,
    ));
    plan.push(
        Step::run(
            "sysctl-apply",
            "apply kernel parameters",
            &["sysctl", "--system"],
            Check::IfChanged {
                steps: vec!["sysctl".into()],
                unit_active: None,
            },
        )
        .allowing_failure(),
    );
    plan.push(Step::service(
        "enable-containerd",
        "containerd.service",
        ServiceOp::Enable,
    ));
    plan.push(Step::service(
        "start-containerd",
        "containerd.service",
        ServiceOp::Start,
    ));
    plan.push(Step::service(
        "enable-kubelet",
        "kubelet.service",
        ServiceOp::Enable,
    ));
}

fn kubeconfig_link(plan: &mut Plan) {
    plan.push(Step::ensure_dir("root-kube-dir", "/root/.kube", 0o700));
    plan.push(Step::symlink(
        "root-kubeconfig",
        ADMIN_CONF,
        "/root/.kube/config",
    ));
}

impl Runtime for Kubeadm {
    /// https://kubernetes.io/docs/reference/networking/ports-and-protocols/
    fn ports(&self, role: Role) -> Vec<u16> {
        match role {
            Role::Master => vec![API_PORT, 2379, 2380, KUBELET_PORT],
            Role::Node => vec![KUBELET_PORT],
        }
    }

    fn name(&self) -> &'static str {
        "kubeadm"
    }

    /// kubeadm init writes it (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#more-information).
    fn admin_kubeconfig(&self) -> &'static str {
        ADMIN_CONF
    }

    fn join_secrets(
        &self,
        captured: &BTreeMap<String, String>,
    ) -> Result<JoinSecrets, RuntimeError> {
        let mut s = JoinSecrets::default();
        if let Some(cmd) = captured.get(JOIN_COMMAND_CAPTURE) {
            let (token, hash) = parse_join_command(cmd)?;
            s.token = Some(Secret::new(token));
            s.ca_cert_hash = Some(hash);
        }
        if let Some(out) = captured.get(CERTIFICATE_KEY_CAPTURE) {
            let key = out
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("");
            if key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad_capture(
                    CERTIFICATE_KEY_CAPTURE,
                    "its last line is not a 64-digit hex key",
                ));
            }
            s.certificate_key = Some(Secret::new(key));
        }
        Ok(s)
    }

    fn verify(&self, cluster: &Cluster, image: &ImageInfo) -> Result<(), Vec<Violation>> {
        let mut v = verify_common(self.name(), cluster, image);
        if let Some(to) = &image.version {
            skew_violations(cluster, to, &mut v);
        }
        finish_verify(v)
    }

    fn install(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_first_master(self.name())?;
        let mut plan = ctx.plan(self.name(), "install");
        hooks::push_setup(ctx, &mut plan);
        prepare(ctx, &mut plan);
        let mut argv: Vec<String> = vec![
            BIN.into(),
            "init".into(),
            "--upload-certs".into(),
            format!("--control-plane-endpoint={}", endpoint(ctx)),
        ];
        if let Some(v) = &ctx.image.version {
            argv.push(format!("--kubernetes-version={}", v.kube()));
        }
        argv.extend(advertise_flag(ctx));
        if let Some(cidr) = env(ctx, "POD_CIDR") {
            argv.push(format!("--pod-network-cidr={cidr}"));
        }
        if let Some(cidr) = env(ctx, "SERVICE_CIDR") {
            argv.push(format!("--service-cidr={cidr}"));
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        plan.push(Step::run(
            "init",
            "initialize the first control-plane (kubeadm init)",
            &argv,
            Check::Creates {
                path: ADMIN_CONF.into(),
            },
        ));
        plan.push(Step::wait_port(
            "wait-api",
            "127.0.0.1",
            API_PORT,
            WAIT_SECS,
        ));
        kubeconfig_link(&mut plan);
        plan.push(Step::run_capture(
            "join-command",
            "mint a bootstrap token and print the join command",
            &[
                BIN,
                "token",
                "create",
                "--print-join-command",
                "--kubeconfig",
                ADMIN_CONF,
            ],
            Capture::secret(JOIN_COMMAND_CAPTURE),
        ));
        plan.push(Step::run_capture(
            "certificate-key",
            "upload the control-plane certificates and print their key",
            &[
                BIN,
                "init",
                "phase",
                "upload-certs",
                "--upload-certs",
                "--kubeconfig",
                ADMIN_CONF,
            ],
            Capture::secret(CERTIFICATE_KEY_CAPTURE),
        ));
        plan.push(Step::read_file(
            "read-kubeconfig",
            ADMIN_CONF,
            Capture::secret(KUBECONFIG_CAPTURE),
        ));
        Ok(plan)
    }

    fn join(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_not_first_master(self.name())?;
        let token = ctx.secret(self.name(), "token")?;
        let hash = ctx
            .secrets
            .ca_cert_hash
            .as_deref()
            .ok_or(RuntimeError::MissingSecret {
                runtime: "kubeadm",
                host: ctx.host_key(),
                secret: "CA certificate hash",
            })?;
        let mut argv: Vec<String> = vec![
            BIN.into(),
            "join".into(),
            endpoint(ctx),
            format!("--token={token}"),
            format!("--discovery-token-ca-cert-hash={hash}"),
        ];
        let mut redact = vec![3];
        if ctx.role == Role::Master {
            let key = ctx.secret(self.name(), "certificate key")?;
            argv.push("--control-plane".into());
            redact.push(argv.len());
            argv.push(format!("--certificate-key={key}"));
            argv.extend(advertise_flag(ctx));
        }
        let mut plan = ctx.plan(self.name(), "join");
        hooks::push_setup(ctx, &mut plan);
        prepare(ctx, &mut plan);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        plan.push(
            Step::run(
                "join",
                match ctx.role {
                    Role::Master => "join as a control-plane (kubeadm join --control-plane)",
                    Role::Node => "join as a worker (kubeadm join)",
                },
                &argv,
                Check::Creates {
                    path: KUBELET_CONF.into(),
                },
            )
            .with_redacted(&redact),
        );
        if ctx.role == Role::Master {
            plan.push(Step::wait_file("wait-admin-conf", ADMIN_CONF, WAIT_SECS));
            kubeconfig_link(&mut plan);
        }
        Ok(plan)
    }

    fn upgrade(&self, ctx: &HostContext, to: &Version) -> Result<Plan, RuntimeError> {
        ctx.check_upgrade(to)?;
        let mut plan = ctx.plan(self.name(), "upgrade");
        hooks::push_setup(ctx, &mut plan);
        plan.push(Step::place_rootfs(ctx.role));
        plan.push(Step::daemon_reload(
            "daemon-reload",
            Check::IfChanged {
                steps: vec!["place-rootfs".into()],
                unit_active: None,
            },
        ));
        let done_on_control_plane = Check::FileContains {
            path: APISERVER_MANIFEST.into(),
            text: format!("kube-apiserver:{}", to.kube()),
        };
        if ctx.is_first_master() {
            plan.push(Step::run(
                "upgrade",
                format!("upgrade the control plane to {}", to.kube()),
                &[BIN, "upgrade", "apply", &to.kube(), "--yes"],
                done_on_control_plane,
            ));
        } else if ctx.role == Role::Master {
            plan.push(Step::run(
                "upgrade",
                "upgrade this control-plane (kubeadm upgrade node)",
                &[BIN, "upgrade", "node"],
                done_on_control_plane,
            ));
        } else {
            // Nothing on a worker shows that `upgrade node` ran: a marker does.
            let marker = format!("{MARKER_DIR}/kubeadm-upgrade-node-{}", to.kube());
            plan.push(Step::run(
                "upgrade",
                "upgrade this node's kubelet configuration (kubeadm upgrade node)",
                &[BIN, "upgrade", "node"],
                Check::Creates {
                    path: marker.clone(),
                },
            ));
            plan.push(Step::write_file(
                "upgrade-marker",
                &marker,
                FileContent::text(format!("{}\n", to.kube())),
                0o644,
            ));
        }
        plan.push(Step::restart_if_changed(
            "restart-kubelet",
            "kubelet.service",
            &["place-rootfs", "upgrade"],
        ));
        plan.push(Step::service(
            "start-kubelet",
            "kubelet.service",
            ServiceOp::Start,
        ));
        Ok(plan)
    }

    /// kubectl with admin.conf on the first control-plane (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#remove-the-node>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(
            ctx,
            self.name(),
            &[KUBECTL, "--kubeconfig", ADMIN_CONF],
            node,
        )
    }

    fn uninstall(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        let mut plan = ctx.plan(self.name(), "uninstall");
        plan.push(Step::run(
            "reset",
            "undo kubeadm init/join (kubeadm reset -f)",
            &[BIN, "reset", "-f"],
            Check::IfExists {
                path: "/etc/kubernetes".into(),
            },
        ));
        for unit in ["kubelet.service", "containerd.service"] {
            let short = unit.trim_end_matches(".service");
            plan.push(Step::service(
                &format!("stop-{short}"),
                unit,
                ServiceOp::Stop,
            ));
            plan.push(Step::service(
                &format!("disable-{short}"),
                unit,
                ServiceOp::Disable,
            ));
        }
        hooks::push_clean(ctx, &mut plan);
        plan.push(Step::remove_link(
            "unlink-kubeconfig",
            "/root/.kube/config",
            ADMIN_CONF,
        ));
        plan.push(Step::remove_empty_dir("remove-root-kube", "/root/.kube"));
        for (id, path) in [
            ("remove-etc-kubernetes", "/etc/kubernetes"),
            ("remove-cni-config", "/etc/cni/net.d"),
            ("remove-cni-state", "/var/lib/cni"),
            ("remove-etcd", "/var/lib/etcd"),
            ("remove-kubelet", "/var/lib/kubelet"),
            ("remove-modules", MODULES_FILE),
            ("remove-sysctl", SYSCTL_FILE),
            ("remove-markers", MARKER_DIR),
        ] {
            plan.push(Step::remove(id, path));
        }
        plan.push(Step::remove_rootfs(ctx.role));
        plan.push(Step::daemon_reload(
            "daemon-reload",
            Check::IfChanged {
                steps: vec!["remove-rootfs".into()],
                unit_active: None,
            },
        ));
        Ok(plan)
    }
}

/// The oldest kubelet minor a `to` API server supports.
/// The bootstrap token and `sha256:<hex>` CA hash of a printed join command.
fn parse_join_command(cmd: &str) -> Result<(String, String), RuntimeError> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let after = |flag: &str| {
        words.iter().enumerate().find_map(|(i, w)| {
            if *w == flag {
                words.get(i + 1).map(|s| s.to_string())
            } else {
                w.strip_prefix(flag)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_string)
            }
        })
    };
    let bad = |reason| bad_capture(JOIN_COMMAND_CAPTURE, reason);
    let token = after("--token").ok_or_else(|| bad("it has no --token"))?;
    let hash = after("--discovery-token-ca-cert-hash")
        .ok_or_else(|| bad("it has no --discovery-token-ca-cert-hash"))?;
    if !hash.starts_with("sha256:") {
        return Err(bad("the CA hash is not sha256:<hex>"));
    }
    Ok((token, hash))
}

fn kubelet_skew(to: &Version) -> u64 {
    if to.major == 1 && to.minor < 28 {
        2
    } else {
        3
    }
}

/// kubeadm's version skew rules, against the versions the status records.
fn skew_violations(cluster: &Cluster, to: &Version, v: &mut Vec<Violation>) {
    let installed = |h: &crate::cluster::Host| {
        cluster
            .status
            .hosts
            .get(&h.key())
            .and_then(|s| s.version.as_deref())
            .and_then(|s| Version::parse(s).ok())
    };
    let masters: Vec<(String, Version)> = cluster
        .masters()
        .filter_map(|h| installed(h).map(|v| (h.key(), v)))
        .collect();
    if let (Some(lo), Some(hi)) = (
        masters.iter().min_by(|a, b| a.1.cmp(&b.1)),
        masters.iter().max_by(|a, b| a.1.cmp(&b.1)),
    ) {
        if lo.1.minors_to(&hi.1).is_none_or(|d| d > 1) {
            v.push(Violation::Skew {
                host: lo.0.clone(),
                rule: format!(
                    "control-plane at {} is more than one minor behind {} at {}; bring it up first",
                    lo.1, hi.0, hi.1
                ),
            });
        }
    }
    let allowed = kubelet_skew(to);
    for host in cluster.workers() {
        let Some(kubelet) = installed(host) else {
            continue;
        };
        if kubelet.minors_to(to).is_none_or(|d| d > allowed as i64) {
            v.push(Violation::Skew {
                host: host.key(),
                rule: format!(
                    "kubelet {kubelet} would be more than {allowed} minors older than the API server {to}"
                ),
            });
        }
    }
}
