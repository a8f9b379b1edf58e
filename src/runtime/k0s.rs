//! k0s, as its docs describe a manual multi-node install.
//!
//! - `k0s install controller` on the first controller (`--enable-worker
//!   --no-taints` when it also runs workloads), `k0s start`, then
//!   `k0s token create --role=worker|controller`
//!   (<https://docs.k0sproject.io/stable/k0s-multi-node/>).
//! - Others: the token into a 0600 file, `k0s install worker|controller
//!   --token-file FILE`, `k0s start`.
//! - Configuration: `/etc/k0s/k0s.yaml`, the image's `etc/k0s.yaml` with ours
//!   merged (<https://docs.k0sproject.io/stable/configuration/>).
//! - Upgrade: `k0s stop`, new binary, `k0s start`
//!   (<https://docs.k0sproject.io/stable/upgrade/>).
//! - Uninstall: `k0s stop`, `k0s reset` (<https://docs.k0sproject.io/stable/reset/>).

use std::collections::BTreeMap;

use crate::cluster::{Cluster, Role};
use crate::plan::{Capture, Check, FileContent, Plan, Step};

use super::{
    captured_token, finish_verify, hooks, verify_common, verify_odd_servers, HostContext,
    ImageInfo, JoinSecrets, Runtime, RuntimeError, Version, Violation, KUBECONFIG_CAPTURE,
    MARKER_DIR,
};

pub const BIN: &str = "/usr/local/bin/k0s";
pub const CONFIG_DIR: &str = "/etc/k0s";
pub const CONFIG: &str = "/etc/k0s/k0s.yaml";
pub const TOKEN_FILE: &str = "/etc/k0s/join-token";
pub const DATA_DIR: &str = "/var/lib/k0s";
pub const ADMIN_CONF: &str = "/var/lib/k0s/pki/admin.conf";
pub const IMAGE_CONFIG: &str = "etc/k0s.yaml";
/// The capture of `k0s token create --role=worker`.
pub const WORKER_TOKEN_CAPTURE: &str = "k0s.worker-token";
/// The capture of `k0s token create --role=controller`.
pub const CONTROLLER_TOKEN_CAPTURE: &str = "k0s.controller-token";
pub use super::{API_PORT, KUBELET_PORT};
const WAIT_SECS: u64 = 300;

/// The k0s runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct K0s;

fn unit(role: Role) -> &'static str {
    match role {
        Role::Master => "k0scontroller.service",
        Role::Node => "k0sworker.service",
    }
}

/// A controller also runs workloads when it has the node role, or when the
/// cluster has no worker at all.
fn enable_worker(ctx: &HostContext) -> bool {
    ctx.host.is_node() || ctx.cluster.workers().next().is_none()
}

fn config_step(ctx: &HostContext) -> Step {
    let mut spec = serde_yaml_ng::Mapping::new();
    if let Some((_, cidr)) = ctx.env.iter().find(|(k, _)| k == "POD_CIDR") {
        let mut network = serde_yaml_ng::Mapping::new();
        network.insert("podCIDR".into(), cidr.clone().into());
        if let Some((_, s)) = ctx.env.iter().find(|(k, _)| k == "SERVICE_CIDR") {
            network.insert("serviceCIDR".into(), s.clone().into());
        }
        spec.insert("network".into(), network.into());
    }
    let mut top = serde_yaml_ng::Mapping::new();
    top.insert("apiVersion".into(), "k0s.k0sproject.io/v1beta1".into());
    top.insert("kind".into(), "ClusterConfig".into());
    let mut meta = serde_yaml_ng::Mapping::new();
    meta.insert("name".into(), "k0s".into());
    top.insert("metadata".into(), meta.into());
    if !spec.is_empty() {
        top.insert("spec".into(), spec.into());
    }
    Step::write_file(
        "config",
        CONFIG,
        FileContent::YamlMerge {
            base: Some(format!("{}/{IMAGE_CONFIG}", ctx.rootfs)),
            base_is_template: true,
            overlay: serde_yaml_ng::to_string(&top).expect("a mapping serializes"),
        },
        0o600,
    )
    .titled(format!(
        "write {CONFIG} (the image's config with ours merged)"
    ))
}

/// `k0s install …` (creates the unit) and `k0s start`.
fn install_and_start(ctx: &HostContext, plan: &mut Plan, token_file: bool) {
    let mut argv: Vec<&str> = vec![BIN, "install"];
    match ctx.role {
        Role::Master => {
            argv.extend(["controller", "--config", CONFIG]);
            if enable_worker(ctx) {
                argv.extend(["--enable-worker", "--no-taints"]);
            }
        }
        Role::Node => argv.push("worker"),
    }
    if token_file {
        argv.extend(["--token-file", TOKEN_FILE]);
    }
    let unit = unit(ctx.role);
    plan.push(Step::run(
        "install",
        format!("install the k0s {} service", ctx.role),
        &argv,
        Check::Creates {
            path: format!("/etc/systemd/system/{unit}"),
        },
    ));
    plan.push(Step::run(
        "start",
        "start k0s",
        &[BIN, "start"],
        Check::UnitActive { unit: unit.into() },
    ));
}

fn prepare(ctx: &HostContext, plan: &mut Plan) {
    plan.push(Step::place_rootfs(ctx.role));
    plan.push(Step::ensure_dir("config-dir", CONFIG_DIR, 0o755));
    if ctx.role == Role::Master {
        plan.push(config_step(ctx));
    }
}

impl Runtime for K0s {
    /// API server, k0s join API, konnectivity and kubelet;
    /// https://docs.k0sproject.io/stable/networking/#required-ports-and-protocols
    fn ports(&self, role: Role) -> Vec<u16> {
        match role {
            Role::Master => vec![API_PORT, 9443, 8132],
            Role::Node => vec![KUBELET_PORT],
        }
    }

    fn name(&self) -> &'static str {
        "k0s"
    }

    /// What `k0s kubeconfig admin` prints, before it rewrites the server (k0s cmd/kubeconfig/admin.go, v1.30); sealrs sets the server itself.
    fn admin_kubeconfig(&self) -> &'static str {
        ADMIN_CONF
    }

    fn join_secrets(
        &self,
        captured: &BTreeMap<String, String>,
    ) -> Result<JoinSecrets, RuntimeError> {
        let empty = "the token is empty";
        Ok(JoinSecrets {
            token: captured_token(captured, WORKER_TOKEN_CAPTURE, empty)?,
            controller_token: captured_token(captured, CONTROLLER_TOKEN_CAPTURE, empty)?,
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
        prepare(ctx, &mut plan);
        install_and_start(ctx, &mut plan, false);
        plan.push(Step::wait_port(
            "wait-api",
            "127.0.0.1",
            API_PORT,
            WAIT_SECS,
        ));
        plan.push(Step::wait_file("wait-admin-conf", ADMIN_CONF, WAIT_SECS));
        plan.push(Step::run_capture(
            "worker-token",
            "create a worker join token",
            &[BIN, "token", "create", "--role=worker"],
            Capture::secret(WORKER_TOKEN_CAPTURE),
        ));
        plan.push(Step::run_capture(
            "controller-token",
            "create a controller join token",
            &[BIN, "token", "create", "--role=controller"],
            Capture::secret(CONTROLLER_TOKEN_CAPTURE),
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
        let token = match ctx.role {
            Role::Master => ctx.secret(self.name(), "controller token")?,
            Role::Node => ctx.secret(self.name(), "token")?,
        };
        let mut plan = ctx.plan(self.name(), "join");
        hooks::push_setup(ctx, &mut plan);
        prepare(ctx, &mut plan);
        plan.push(
            Step::write_secret_file(
                "token-file",
                TOKEN_FILE,
                FileContent::text(format!("{token}\n")),
                0o600,
            )
            .titled(format!("write the {} join token", ctx.role)),
        );
        install_and_start(ctx, &mut plan, true);
        Ok(plan)
    }

    fn upgrade(&self, ctx: &HostContext, to: &Version) -> Result<Plan, RuntimeError> {
        ctx.check_upgrade(to)?;
        let unit = unit(ctx.role);
        let mut plan = ctx.plan(self.name(), "upgrade");
        hooks::push_setup(ctx, &mut plan);
        plan.push(Step::place_rootfs(ctx.role));
        if ctx.role == Role::Master {
            plan.push(config_step(ctx));
        }
        let changed = if ctx.role == Role::Master {
            vec!["place-rootfs".to_string(), "config".to_string()]
        } else {
            vec!["place-rootfs".to_string()]
        };
        plan.push(Step::run(
            "stop",
            "stop k0s to switch binaries",
            &[BIN, "stop"],
            Check::IfChanged {
                steps: changed,
                unit_active: Some(unit.into()),
            },
        ));
        plan.push(Step::run(
            "start",
            "start k0s",
            &[BIN, "start"],
            Check::UnitActive { unit: unit.into() },
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

    /// `k0s kubectl` on the first controller, as k0sctl resets a worker (<https://github.com/k0sproject/k0sctl/blob/main/phase/reset_workers.go>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(
            ctx,
            self.name(),
            &[BIN, "kubectl", "--kubeconfig", ADMIN_CONF],
            node,
        )
    }

    fn uninstall(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        let unit = unit(ctx.role);
        let mut plan = ctx.plan(self.name(), "uninstall");
        plan.push(Step::run(
            "stop",
            "stop k0s",
            &[BIN, "stop"],
            Check::UnitInactive { unit: unit.into() },
        ));
        hooks::push_clean(ctx, &mut plan);
        plan.push(Step::run(
            "reset",
            "remove k0s state, service and data (k0s reset)",
            &[BIN, "reset"],
            Check::IfExists {
                path: DATA_DIR.into(),
            },
        ));
        plan.push(Step::remove(
            "remove-unit",
            &format!("/etc/systemd/system/{unit}"),
        ));
        plan.push(Step::daemon_reload(
            "daemon-reload",
            Check::IfChanged {
                steps: vec!["reset".into(), "remove-unit".into()],
                unit_active: None,
            },
        ));
        plan.push(Step::remove("remove-config", CONFIG_DIR));
        plan.push(Step::remove("remove-data", DATA_DIR));
        plan.push(Step::remove("remove-markers", MARKER_DIR));
        plan.push(Step::remove_rootfs(ctx.role));
        Ok(plan)
    }
}
