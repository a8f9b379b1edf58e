//! k3s, as its install script and docs do it.
//!
//! - HA with embedded etcd: the first server runs `k3s server --cluster-init`,
//!   the others `k3s server --server https://FIRST:6443` with the token
//!   (<https://docs.k3s.io/datastore/ha-embedded>).
//! - Agents get `K3S_URL` and `K3S_TOKEN` (<https://docs.k3s.io/quick-start>).
//!   Secrets go into the unit's env file (`/etc/systemd/system/k3s*.service.env`,
//!   mode 0600) as the install script writes it, never on a command line
//!   (<https://docs.k3s.io/installation/configuration>).
//! - The token is read back from `/var/lib/rancher/k3s/server/token`
//!   (<https://docs.k3s.io/cli/token>).
//! - Configuration: `/etc/rancher/k3s/config.yaml`, here the image's
//!   `etc/config.yaml` with our keys merged over it
//!   (<https://docs.k3s.io/installation/configuration#configuration-file>).
//! - Units as `install.sh` writes them (`create_systemd_service_file`,
//!   <https://github.com/k3s-io/k3s/blob/master/install.sh>): `Type=notify`
//!   for server and agent; the env file carries the secrets and, as
//!   `create_env_file` copies them, the `CONTAINERD_*` and proxy variables.
//! - `CONTROL_PLANE_ENDPOINT` (`HOST:PORT`, a load balancer in front of the
//!   servers' 6443): a `--tls-san` of every server, and the URL agents and
//!   joining servers register through (<https://docs.k3s.io/datastore/cluster-loadbalancer>).
//! - Upgrades replace the binary and restart (<https://docs.k3s.io/upgrades/manual>);
//!   uninstall follows `k3s-killall.sh` and `k3s-uninstall.sh` /
//!   `k3s-agent-uninstall.sh` as install.sh writes them (`create_killall`,
//!   `create_uninstall`), step by step ([`push_killall`]).

pub mod backup;

use std::collections::BTreeMap;

use crate::cluster::{Cluster, Host, Role};
use crate::plan::{Check, FileContent, Plan, ServiceOp, Step};

use super::{
    captured_token, env_file, exec_arg, finish_verify, hooks, hub, odd_servers_warning,
    ports_of_roles, verify_common, verify_odd_servers, HostContext, ImageInfo, JoinSecrets, Port,
    Runtime, RuntimeError, Version, Violation, KUBECONFIG_CAPTURE, MARKER_DIR,
};

pub const BIN: &str = "/usr/local/bin/k3s";
pub const CONFIG_DIR: &str = "/etc/rancher/k3s";
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const TOKEN_FILE: &str = "/var/lib/rancher/k3s/server/token";
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The capture of the server token ([`TOKEN_FILE`]) that the others join with.
pub const TOKEN_CAPTURE: &str = "k3s.token";
pub use super::{API_PORT, KUBELET_PORT};
/// Embedded etcd's client and peer ports, on every server.
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// Flannel's VXLAN backend (k3s' default) on every node.
pub const FLANNEL_VXLAN_PORT: u16 = 8472;
/// The image's config, relative to the unpacked rootfs.
pub const IMAGE_CONFIG: &str = "etc/config.yaml";
const LINKS: [&str; 3] = ["kubectl", "crictl", "ctr"];
const WAIT_SECS: u64 = 300;

/// The k3s runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct K3s;

struct Unit {
    name: &'static str,
    env_file: &'static str,
}

const SERVER: Unit = Unit {
    name: "k3s.service",
    env_file: "/etc/systemd/system/k3s.service.env",
};
const AGENT: Unit = Unit {
    name: "k3s-agent.service",
    env_file: "/etc/systemd/system/k3s-agent.service.env",
};

fn unit_for(role: Role) -> &'static Unit {
    match role {
        Role::Master => &SERVER,
        Role::Node => &AGENT,
    }
}

/// The unit file, as `install.sh` writes it.
fn unit_content(role: Role, unit: &Unit, exec: &[String]) -> String {
    // install.sh writes `Type=notify` for servers and agents alike
    // (SYSTEMD_TYPE defaults to notify since 2022): `systemctl start`
    // returns once k3s says it is up.
    let (description_type, mode) = match role {
        Role::Master => ("notify", "server"),
        Role::Node => ("notify", "agent"),
    };
    let mut args = vec![exec_arg(BIN), mode.to_string()];
    args.extend(exec.iter().map(|a| exec_arg(a)));
    format!(
        "[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type={description_type}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-{env_file}
KillMode=process
Delegate=yes
User=root
# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={exec}
",
        env_file = unit.env_file,
        exec = args.join(" "),
    )
}

/// Our keys for `config.yaml`, merged over the image's. Values from the env
/// are YAML-serialized, never pasted.
fn config_overlay(ctx: &HostContext) -> String {
    let mut map = serde_yaml_ng::Mapping::new();
    let env = |k: &str| ctx.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if ctx.role == Role::Master {
        if let Some(cidr) = env("POD_CIDR") {
            map.insert("cluster-cidr".into(), cidr.into());
        }
        if let Some(cidr) = env("SERVICE_CIDR") {
            map.insert("service-cidr".into(), cidr.into());
        }
        if !ctx.host.is_node() && ctx.cluster.workers().next().is_some() {
            // A master that is not also a node keeps workloads off.
            map.insert(
                "node-taint".into(),
                vec!["node-role.kubernetes.io/control-plane:NoSchedule".to_string()].into(),
            );
        }
    }
    if let crate::cluster::Address::Ip(ip) = &ctx.host.address {
        map.insert("node-ip".into(), ip.to_string().into());
    }
    if map.is_empty() {
        String::new()
    } else {
        serde_yaml_ng::to_string(&map).expect("a mapping of strings serializes")
    }
}

/// The config keys `k3s agent` knows: its flags' names and aliases, from
/// `NewAgentCommand` in k3s pkg/cli/cmds/agent.go (k3s-io/k3s, v1.27 to
/// v1.30: with `vpn-auth`, `prefer-bundled-bin`) and the global flags it
/// lists (`config`, `debug`, `v`, `vmodule`, `log`, `alsologtostderr`),
/// plus the agent flags <https://docs.k3s.io/cli/agent> lists for v1.30.
/// A server-only key (`cluster-init`, `disable`, `tls-san`, ...) in the
/// image's config is left out of an agent's, which k3s would warn about and
/// skip.
pub const AGENT_KEYS: &[&str] = &[
    "config",
    "c",
    "debug",
    "v",
    "vmodule",
    "log",
    "l",
    "alsologtostderr",
    "token",
    "t",
    "token-file",
    "server",
    "s",
    "data-dir",
    "d",
    "node-name",
    "with-node-id",
    "node-label",
    "node-taint",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "selinux",
    "lb-server-port",
    "protect-kernel-defaults",
    "container-runtime-endpoint",
    "pause-image",
    "snapshotter",
    "private-registry",
    "airgap-extra-registry",
    "node-ip",
    "i",
    "node-external-ip",
    "resolv-conf",
    "flannel-iface",
    "flannel-conf",
    "flannel-cni-conf",
    "kubelet-arg",
    "kube-proxy-arg",
    "rootless",
    "prefer-bundled-bin",
    "disable-selinux",
    "docker",
    "no-flannel",
    "cluster-secret",
    "vpn-auth",
    "vpn-auth-file",
    // docs.k3s.io/cli/agent, newer than the agent.go above
    "bind-address",
    "node-internal-dns",
    "node-external-dns",
    "image-service-endpoint",
    "default-runtime",
    "disable-default-registry-endpoint",
    "nonroot-devices",
    "enable-pprof",
];

fn config_step(ctx: &HostContext) -> Step {
    let base = Some(format!("{}/{IMAGE_CONFIG}", ctx.rootfs));
    let overlay = config_overlay(ctx);
    let (keep, what) = match ctx.role {
        Role::Master => (None, "the image's config"),
        Role::Node => (
            Some(AGENT_KEYS.iter().map(|k| k.to_string()).collect()),
            "the keys `k3s agent` knows of the image's config",
        ),
    };
    let content = FileContent::YamlMerge {
        base,
        base_is_template: true,
        overlay,
        keep,
    };
    Step::write_file("config", CONFIG, content, 0o600)
        .titled(format!("write {CONFIG} ({what}, with ours merged)"))
}

fn env<'a>(ctx: &'a HostContext, key: &str) -> Option<&'a str> {
    ctx.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The URL agents and joining servers register through: the
/// `CONTROL_PLANE_ENDPOINT` when set (verified `HOST:PORT`), else the
/// first server.
fn server_url(ctx: &HostContext) -> String {
    match env(ctx, ENDPOINT_KEY) {
        Some(endpoint) => format!("https://{endpoint}"),
        None => format!("https://{}:{API_PORT}", ctx.first_master.url_host()),
    }
}

/// The cluster env key of the load balancer's `HOST:PORT`.
pub const ENDPOINT_KEY: &str = "CONTROL_PLANE_ENDPOINT";

/// The host of an endpoint `HOST:PORT` (`[V6]:PORT`), as a certificate SAN
/// names it; why it is not one otherwise.
fn endpoint_host(value: &str) -> Result<String, String> {
    let example = "give HOST:PORT, such as lb.example.com:6443";
    if value.contains("://") {
        return Err(format!("a scheme is not part of it; {example}"));
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("an IPv6 address needs its closing ]; {example}"))?;
        (v6, after.strip_prefix(':'))
    } else {
        match value.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write an IPv6 address in brackets: [ADDR]:PORT".to_string())
            }
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    let Some(port) = port else {
        return Err(format!(
            "no port: agents and joining servers register through https://HOST:PORT, and the \
             load balancer's port cannot be guessed; {example}"
        ));
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Err(format!("{port:?} is not a port (1-65535); {example}"));
    }
    crate::cluster::Address::parse(host).map_err(|e| format!("{e}; {example}"))?;
    Ok(host.to_string())
}

/// A CIDR (`10.42.0.0/16`) or a dual-stack pair of them (`V4,V6`), as k3s'
/// `--cluster-cidr` and `--service-cidr` take them.
fn is_cidr_list(value: &str) -> bool {
    !value.is_empty()
        && value.split(',').all(|one| {
            one.split_once('/').is_some_and(|(ip, bits)| {
                let max = match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(_)) => 32,
                    Ok(std::net::IpAddr::V6(_)) => 128,
                    Err(_) => return false,
                };
                bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
            })
        })
}

/// The cluster env values k3s takes, checked before any host changes.
fn verify_env(cluster: &Cluster, v: &mut Vec<Violation>) {
    let bad = |key: &str, value: &str, reason: String| Violation::BadEnv {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    for (key, flag) in [
        ("POD_CIDR", "cluster-cidr"),
        ("SERVICE_CIDR", "service-cidr"),
    ] {
        if let Some(value) = cluster.env.get(key) {
            if !is_cidr_list(value) {
                v.push(bad(
                    key,
                    value,
                    format!(
                        "k3s' --{flag} needs a CIDR such as 10.42.0.0/16 (or IPv4,IPv6 for \
                         dual-stack); fix the value or leave {key} out"
                    ),
                ));
            }
        }
    }
    if let Some(value) = cluster.env.get(ENDPOINT_KEY) {
        if let Err(reason) = endpoint_host(value) {
            v.push(bad(ENDPOINT_KEY, value, reason));
        }
    }
}

/// The env file: the unit's secrets, then what install.sh's
/// `create_env_file` copies from its environment, here from the cluster env:
/// `CONTAINERD_*`, then `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` in any
/// case (k3s passes them to containerd, so images pull through the proxy:
/// <https://docs.k3s.io/advanced#configuring-an-http-proxy>).
fn env_file_pairs<'a>(
    ctx: &'a HostContext,
    secrets: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs = secrets.to_vec();
    let from_env = |keep: &dyn Fn(&str) -> bool| {
        ctx.env
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>()
    };
    pairs.extend(from_env(&|k| k.starts_with("CONTAINERD_")));
    pairs.extend(from_env(&|k| {
        ["NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"]
            .iter()
            .any(|p| k.eq_ignore_ascii_case(p))
    }));
    pairs
}

/// A server's `ExecStart` flags: `flags`, then `--tls-san` with the
/// endpoint's host when there is one. A flag that takes several values adds
/// to the config file's (k3s turns the config into flags before the
/// command line's), so the image's own `tls-san` stays.
fn server_flags(ctx: &HostContext, flags: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    if let Some(host) = env(ctx, ENDPOINT_KEY).and_then(|e| endpoint_host(e).ok()) {
        out.extend(["--tls-san".to_string(), host]);
    }
    out
}

/// Everything up to and including a running service; `exec` are the role's
/// `ExecStart` flags, `env` the unit's secrets.
fn bring_up(ctx: &HostContext, plan: &mut Plan, exec: &[String], env: &[(&str, &str)]) {
    let unit = unit_for(ctx.role);
    plan.push(Step::place_rootfs(ctx.role));
    for link in LINKS {
        plan.push(Step::symlink(
            &format!("link-{link}"),
            BIN,
            &format!("/usr/local/bin/{link}"),
        ));
    }
    plan.push(Step::ensure_dir("config-dir", CONFIG_DIR, 0o755));
    plan.push(config_step(ctx));
    plan.push(
        Step::write_secret_file(
            "env-file",
            unit.env_file,
            FileContent::text(env_file(&env_file_pairs(ctx, env))),
            0o600,
        )
        .titled(format!("write {} (the unit's secrets)", unit.env_file)),
    );
    plan.push(Step::install_unit(
        "unit",
        unit.name,
        unit_content(ctx.role, unit, exec),
    ));
    plan.push(Step::service(
        "enable",
        unit.name,
        crate::plan::ServiceOp::Enable,
    ));
    plan.push(Step::restart_if_changed(
        "restart",
        unit.name,
        &["place-rootfs", "config", "env-file", "unit"],
    ));
    plan.push(Step::service(
        "start",
        unit.name,
        crate::plan::ServiceOp::Start,
    ));
}

/// The data dir where k3s unpacks its bundled binaries (containerd, the
/// shims, runc): `/var/lib/rancher/k3s/data/<hash>/bin/`.
pub const DATA_BIN_PARENT: &str = "/var/lib/rancher/k3s/data";
/// The interfaces k3s' flannel, kube-proxy (IPVS) and CNI create.
pub const INTERFACES: [&str; 6] = [
    "cni0",
    "flannel.1",
    "flannel-v6.1",
    "kube-ipvs0",
    "flannel-wg",
    "flannel-wg-v6",
];

/// What `k3s-killall.sh` does after `systemctl stop`, as steps: the script
/// that k3s' install.sh writes (`create_killall`, k3s-io/k3s install.sh as of
/// v1.30.2+k3s1 and since), which sealrs never installs.
///
/// - `killtree $(getshims)`: the containerd shims (started from the data dir,
///   outliving the unit under `KillMode=process`) and their containers;
/// - `do_unmount_and_remove` of `/run/k3s`, `/var/lib/kubelet/pods`,
///   `/var/lib/kubelet/plugins` and `/run/netns/cni-` (string prefixes,
///   deepest first), so that no removal after it reaches into a container's
///   root filesystem or a volume;
/// - `remove_interfaces` (with what is enslaved to `cni0`) and `iptables-save
///   | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore`,
///   for ip6tables too.
///
/// Its `rm -rf /var/lib/cni/` comes with the other removals, after the
/// image's `clean` hook.
fn push_killall(plan: &mut Plan) {
    plan.push(Step::kill_process_trees(
        "kill-shims",
        DATA_BIN_PARENT,
        "containerd-shim",
    ));
    for (id, prefix) in [
        ("unmount-run", "/run/k3s"),
        ("unmount-pods", "/var/lib/kubelet/pods"),
        ("unmount-plugins", "/var/lib/kubelet/plugins"),
        ("unmount-netns", "/run/netns/cni-"),
    ] {
        plan.push(Step::unmount_under(id, prefix));
    }
    plan.push(Step::delete_links("delete-interfaces", &INTERFACES));
    plan.push(Step::strip_iptables(
        "strip-iptables",
        &["iptables", "ip6tables"],
        &["KUBE-", "CNI-"],
        &["flannel"],
    ));
}

/// Where a server keeps its certificates: `server/tls` (with `etcd/`), and
/// the agent's client and serving certificates directly in `agent/`
/// (<https://docs.k3s.io/cli/certificate>, v1.30).
pub const SERVER_TLS_DIR: &str = "/var/lib/rancher/k3s/server/tls";
pub const AGENT_DIR: &str = "/var/lib/rancher/k3s/agent";
/// The drop-in that adds `--alt-names` to the server's `tls-san`: k3s reads
/// `config.yaml.d/*.yaml` after config.yaml, and a `KEY+` key appends to
/// the list (<https://docs.k3s.io/installation/configuration#configuration-file>).
pub const TLS_SAN_DROPIN: &str = "/etc/rancher/k3s/config.yaml.d/50-sealrs-tls-san.yaml";

fn cert_sources() -> Vec<super::CertSource> {
    vec![
        super::CertSource::pem(SERVER_TLS_DIR, true),
        super::CertSource::pem(AGENT_DIR, false),
    ]
}

/// "k3s certificate" (v1.30, <https://docs.k3s.io/cli/certificate>): with
/// K3s stopped, `k3s certificate rotate` backs up and removes the client
/// and server certificates (not the CAs), and the next start makes new ones
/// valid 365 days, with the `tls-san` names of the config; then the API
/// answers again before the next server.
fn renew_certs(
    ctx: &HostContext,
    options: &super::RenewOptions,
) -> Result<super::CertRenewal, RuntimeError> {
    if ctx.role != Role::Master {
        return Err(RuntimeError::WrongHost {
            runtime: "k3s",
            host: ctx.host_key(),
            reason: "certificates are renewed on servers; an agent renews its own when it restarts"
                .into(),
        });
    }
    let mut plan = ctx.plan("k3s", "renew-certs");
    if !options.alt_names.is_empty() {
        let mut dropin = serde_yaml_ng::Mapping::new();
        dropin.insert(
            "tls-san+".into(),
            options
                .alt_names
                .iter()
                .map(|n| n.as_str().into())
                .collect::<Vec<serde_yaml_ng::Value>>()
                .into(),
        );
        let text = serde_yaml_ng::to_string(&dropin).map_err(|e| RuntimeError::BadConfig {
            runtime: "k3s",
            file: TLS_SAN_DROPIN.into(),
            reason: e.to_string(),
        })?;
        plan.push(Step::write_file(
            "tls-san",
            TLS_SAN_DROPIN,
            FileContent::text(text),
            0o600,
        ));
    }
    plan.push(Step::service("stop", SERVER.name, ServiceOp::Stop));
    plan.push(Step::run(
        "rotate",
        "rotate the client and server certificates (k3s certificate rotate)",
        &[BIN, "certificate", "rotate"],
        Check::IfExists {
            path: SERVER_TLS_DIR.into(),
        },
    ));
    plan.push(Step::service("start", SERVER.name, ServiceOp::Start));
    plan.push(Step::wait_port(
        "wait-api",
        "127.0.0.1",
        API_PORT,
        WAIT_SECS,
    ));
    Ok(super::CertRenewal::Plan(plan))
}

impl Runtime for K3s {
    /// What [`config_overlay`], [`server_flags`], [`server_url`] and
    /// [`env_file_pairs`] read.
    fn env_keys(&self) -> &'static [super::EnvKey] {
        const KEYS: &[super::EnvKey] = &[
            super::EnvKey {
                key: "POD_CIDR",
                example: "POD_CIDR=10.42.0.0/16",
                meaning: "the servers' cluster-cidr (k3s' default 10.42.0.0/16)",
            },
            super::EnvKey {
                key: "SERVICE_CIDR",
                example: "SERVICE_CIDR=10.43.0.0/16",
                meaning: "the servers' service-cidr (k3s' default 10.43.0.0/16)",
            },
            super::EnvKey {
                key: ENDPOINT_KEY,
                example: "CONTROL_PLANE_ENDPOINT=lb.example.com:6443",
                meaning: "a load balancer before the servers: their --tls-san, where others join",
            },
            super::EnvKey {
                key: "HTTP_PROXY",
                example: "HTTP_PROXY=http://proxy.example.com:3128",
                meaning: "the units' env file, as install.sh copies it; also HTTPS_PROXY, NO_PROXY",
            },
            super::EnvKey {
                key: "CONTAINERD_*",
                example: "CONTAINERD_HTTP_PROXY=http://proxy:3128",
                meaning: "the units' env file, as install.sh copies it",
            },
        ];
        KEYS
    }

    /// The ports of <https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes>:
    /// every server runs embedded etcd here (the first with
    /// `--cluster-init`), so it needs 2379-2380 besides the API server's
    /// 6443; every node the kubelet's 10250 and flannel's VXLAN 8472/udp
    /// (the default backend). The optional ones (51820-51821/udp for
    /// WireGuard, 5001 for the embedded registry) only matter when enabled.
    fn ports(&self, _cluster: &Cluster, host: &Host) -> Vec<Port> {
        ports_of_roles(host, |role| match role {
            Role::Master => vec![
                Port::Tcp(API_PORT),
                Port::Tcp(ETCD_CLIENT_PORT),
                Port::Tcp(ETCD_PEER_PORT),
                Port::Tcp(KUBELET_PORT),
                Port::Udp(FLANNEL_VXLAN_PORT),
            ],
            Role::Node => vec![Port::Tcp(KUBELET_PORT), Port::Udp(FLANNEL_VXLAN_PORT)],
        })
    }

    fn name(&self) -> &'static str {
        "k3s"
    }

    /// k3s writes it on every server (https://docs.k3s.io/cluster-access).
    fn admin_kubeconfig(&self) -> &'static str {
        KUBECONFIG
    }

    // forget_member: nothing beyond deleting the Node. k3s's etcd member
    // controller removes the member of a server whose Node is deleted
    // (k3s pkg/etcd/etcd.go, the node finalizer `etcd.k3s.cattle.io`, v1.30;
    // https://docs.k3s.io/datastore/ha-embedded).

    /// `k3s kubectl` reads k3s.yaml (https://docs.k3s.io/cluster-access).
    fn warnings(&self, cluster: &Cluster) -> Vec<String> {
        odd_servers_warning(self.name(), cluster)
    }

    /// install.sh's `k3s.service` on a server, `k3s-agent.service` on an agent.
    fn service_units(&self, role: Role) -> Vec<&'static str> {
        vec![unit_for(role).name]
    }

    fn cert_sources(&self) -> Vec<super::CertSource> {
        cert_sources()
    }

    fn renew_certs(
        &self,
        ctx: &HostContext,
        options: &super::RenewOptions,
    ) -> Result<super::CertRenewal, RuntimeError> {
        renew_certs(ctx, options)
    }

    fn datastore_probes(&self) -> &'static [&'static str] {
        &[backup::ETCD_DIR, backup::SQLITE_DB]
    }

    fn backup(
        &self,
        ctx: &HostContext,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<super::backup::BackupPlan, RuntimeError> {
        backup::backup(ctx, exists)
    }

    fn restore(
        &self,
        first: &HostContext,
        others: &[&Host],
        kind: super::backup::SnapshotKind,
        stamp: &str,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<super::backup::RestorePlan, RuntimeError> {
        backup::restore(first, others, kind, stamp, exists)
    }

    fn join_secrets(
        &self,
        captured: &BTreeMap<String, String>,
    ) -> Result<JoinSecrets, RuntimeError> {
        Ok(JoinSecrets {
            token: captured_token(captured, TOKEN_CAPTURE, "the token file is empty")?,
            ..JoinSecrets::default()
        })
    }

    fn verify(&self, cluster: &Cluster, image: &ImageInfo) -> Result<(), Vec<Violation>> {
        let mut v = verify_common(self.name(), cluster, image);
        verify_odd_servers(self.name(), cluster, &mut v);
        verify_env(cluster, &mut v);
        finish_verify(v)
    }

    fn install(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_first_master(self.name())?;
        let mut plan = ctx.plan(self.name(), "install");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::K3s)?;
        bring_up(ctx, &mut plan, &server_flags(ctx, &["--cluster-init"]), &[]);
        plan.push(Step::wait_file("wait-token", TOKEN_FILE, WAIT_SECS));
        plan.push(Step::read_file(
            "read-token",
            TOKEN_FILE,
            crate::plan::Capture::secret(TOKEN_CAPTURE),
        ));
        plan.push(Step::wait_file("wait-kubeconfig", KUBECONFIG, WAIT_SECS));
        plan.push(Step::read_file(
            "read-kubeconfig",
            KUBECONFIG,
            crate::plan::Capture::secret(KUBECONFIG_CAPTURE),
        ));
        Ok(plan)
    }

    fn join(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_not_first_master(self.name())?;
        let token = ctx.secret(self.name(), "token")?;
        let url = server_url(ctx);
        let mut plan = ctx.plan(self.name(), "join");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::K3s)?;
        match ctx.role {
            Role::Master => {
                bring_up(
                    ctx,
                    &mut plan,
                    &server_flags(ctx, &["--server", &url]),
                    &[("K3S_TOKEN", token)],
                );
                plan.push(Step::wait_file("wait-kubeconfig", KUBECONFIG, WAIT_SECS));
            }
            Role::Node => {
                bring_up(
                    ctx,
                    &mut plan,
                    &[],
                    &[("K3S_TOKEN", token), ("K3S_URL", &url)],
                );
            }
        }
        Ok(plan)
    }

    fn upgrade(&self, ctx: &HostContext, to: &Version) -> Result<Plan, RuntimeError> {
        ctx.check_upgrade(to)?;
        let unit = unit_for(ctx.role);
        let mut plan = ctx.plan(self.name(), "upgrade");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::K3s)?;
        plan.push(Step::place_rootfs(ctx.role));
        plan.push(config_step(ctx));
        plan.push(Step::restart_if_changed(
            "restart",
            unit.name,
            &["place-rootfs", "config"],
        ));
        plan.push(Step::service(
            "start",
            unit.name,
            crate::plan::ServiceOp::Start,
        ));
        if ctx.role == Role::Master {
            plan.push(Step::wait_port(
                "wait-api",
                "127.0.0.1",
                API_PORT,
                WAIT_SECS,
            ));
        }
        Ok(plan)
    }

    fn kubectl(&self) -> &'static [&'static str] {
        &[BIN, "kubectl", "--kubeconfig", KUBECONFIG]
    }

    /// `k3s kubectl` on the first server; k3s wants a node deleted before it rejoins (<https://docs.k3s.io/installation/uninstall>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(ctx, self.name(), self.kubectl(), node)
    }

    fn uninstall(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        let unit = unit_for(ctx.role);
        let mut plan = ctx.plan(self.name(), "uninstall");
        plan.push(Step::service(
            "stop",
            unit.name,
            crate::plan::ServiceOp::Stop,
        ));
        plan.push(Step::service(
            "disable",
            unit.name,
            crate::plan::ServiceOp::Disable,
        ));
        push_killall(&mut plan);
        hooks::push_clean(ctx, &mut plan);
        hub::push_clean(ctx, &mut plan, hub::Mirror::K3s);
        plan.push(Step::remove(
            "remove-unit",
            &format!("/etc/systemd/system/{}", unit.name),
        ));
        plan.push(Step::remove("remove-env-file", unit.env_file));
        plan.push(Step::daemon_reload(
            "daemon-reload",
            Check::IfChanged {
                steps: vec!["remove-unit".into()],
                unit_active: None,
            },
        ));
        for link in LINKS {
            plan.push(Step::remove_link(
                &format!("unlink-{link}"),
                &format!("/usr/local/bin/{link}"),
                BIN,
            ));
        }
        // k3s-uninstall.sh: `rm -rf` of these and `clean_mounted_directory`
        // of the data dir; every removal here leaves a mount point (and what
        // is behind it) in place, and fails naming it.
        for (id, path) in [
            ("remove-config", CONFIG_DIR),
            ("remove-run", "/run/k3s"),
            ("remove-cni", "/var/lib/cni"),
            ("remove-flannel", "/run/flannel"),
            ("remove-data", "/var/lib/rancher/k3s"),
            ("remove-kubelet", "/var/lib/kubelet"),
            ("remove-markers", MARKER_DIR),
        ] {
            plan.push(Step::remove(id, path));
        }
        plan.push(Step::remove_rootfs(ctx.role));
        plan.push(Step::remove_empty_dir("remove-etc-rancher", "/etc/rancher"));
        plan.push(Step::remove_empty_dir(
            "remove-var-rancher",
            "/var/lib/rancher",
        ));
        Ok(plan)
    }
}
