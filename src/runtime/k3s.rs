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
//!   for the server, `Type=exec` for the agent.
//! - Upgrades replace the binary and restart (<https://docs.k3s.io/upgrades/manual>);
//!   uninstall follows `k3s-uninstall.sh` / `k3s-agent-uninstall.sh`.

use std::collections::BTreeMap;

use crate::cluster::{Cluster, Role};
use crate::plan::{Check, FileContent, Plan, Step};

use super::{
    captured_token, env_file, exec_arg, finish_verify, hooks, verify_common, verify_odd_servers,
    HostContext, ImageInfo, JoinSecrets, Runtime, RuntimeError, Version, Violation,
    KUBECONFIG_CAPTURE, MARKER_DIR,
};

pub const BIN: &str = "/usr/local/bin/k3s";
pub const CONFIG_DIR: &str = "/etc/rancher/k3s";
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const TOKEN_FILE: &str = "/var/lib/rancher/k3s/server/token";
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The capture of the server token ([`TOKEN_FILE`]) that the others join with.
pub const TOKEN_CAPTURE: &str = "k3s.token";
pub use super::{API_PORT, KUBELET_PORT};
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
    let (description_type, mode) = match role {
        Role::Master => ("notify", "server"),
        Role::Node => ("exec", "agent"),
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

fn config_step(ctx: &HostContext) -> Step {
    Step::write_file(
        "config",
        CONFIG,
        FileContent::YamlMerge {
            base: Some(format!("{}/{IMAGE_CONFIG}", ctx.rootfs)),
            base_is_template: true,
            overlay: config_overlay(ctx),
        },
        0o600,
    )
    .titled(format!(
        "write {CONFIG} (the image's config with ours merged)"
    ))
}

fn server_url(ctx: &HostContext) -> String {
    format!("https://{}:{API_PORT}", ctx.first_master.url_host())
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
            FileContent::text(env_file(env)),
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

impl Runtime for K3s {
    /// API server and kubelet; https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes
    fn ports(&self, role: Role) -> Vec<u16> {
        match role {
            Role::Master => vec![API_PORT, KUBELET_PORT],
            Role::Node => vec![KUBELET_PORT],
        }
    }

    fn name(&self) -> &'static str {
        "k3s"
    }

    /// k3s writes it on every server (https://docs.k3s.io/cluster-access).
    fn admin_kubeconfig(&self) -> &'static str {
        KUBECONFIG
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
        finish_verify(v)
    }

    fn install(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_first_master(self.name())?;
        let mut plan = ctx.plan(self.name(), "install");
        hooks::push_setup(ctx, &mut plan);
        bring_up(ctx, &mut plan, &["--cluster-init".to_string()], &[]);
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
        match ctx.role {
            Role::Master => {
                bring_up(
                    ctx,
                    &mut plan,
                    &["--server".to_string(), url],
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

    /// `k3s kubectl` on the first server; k3s wants a node deleted before it rejoins (<https://docs.k3s.io/installation/uninstall>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(
            ctx,
            self.name(),
            &[BIN, "kubectl", "--kubeconfig", KUBECONFIG],
            node,
        )
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
        // Container shims outlive the service (KillMode=process): the
        // killall script that ships with k3s stops them and unmounts.
        plan.push(
            Step::run(
                "killall",
                "stop k3s containers and unmount their filesystems",
                &["/usr/local/bin/k3s-killall.sh"],
                Check::IfExists {
                    path: "/usr/local/bin/k3s-killall.sh".into(),
                },
            )
            .allowing_failure(),
        );
        hooks::push_clean(ctx, &mut plan);
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
        for (id, path) in [
            ("remove-config", CONFIG_DIR),
            ("remove-run", "/run/k3s"),
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
