//! k0s v1.30.2+k0s.0, as its docs describe a manual multi-node install and
//! as k0sctl v0.18 drives one.
//!
//! - `k0s install controller` on the first controller (`--enable-worker
//!   --no-taints` when it also runs workloads), `k0s start`, then a join
//!   token per role that joins, with an expiry
//!   (<https://docs.k0sproject.io/stable/k0s-multi-node/>; k0sctl
//!   `phase/install_controllers.go` and `phase/install_workers.go`: 10 minutes
//!   per host that uses the token).
//! - Others: the token into a 0600 file, `k0s install worker|controller
//!   --token-file FILE`, `k0s start`.
//! - After the joins, on the first controller: `k0s token invalidate ID` for
//!   each token made (k0sctl: the same phases' `After`, the ID read from the
//!   token as `cluster.TokenID` does).
//! - Configuration: `/etc/k0s/k0s.yaml`, the image's `etc/k0s.yaml` with ours
//!   merged (<https://docs.k0sproject.io/stable/configuration/>): per
//!   controller `spec.api.address`, `spec.api.sans` and
//!   `spec.storage.etcd.peerAddress` as k0sctl's `phase/configure_k0s.go`
//!   sets them, `CONTROL_PLANE_ENDPOINT` as `spec.api.externalAddress`.
//! - `/usr/local/bin/kubectl` links to k0s on controllers, where no kubectl is
//!   (k0s is a multi-call binary that runs as kubectl under that name, with
//!   the admin kubeconfig: <https://docs.k0sproject.io/stable/k0s-multi-node/#access-your-cluster>).
//! - Upgrade: `k0s stop`, new binary, `k0s start`
//!   (<https://docs.k0sproject.io/stable/upgrade/>).
//! - Uninstall: a controller other than the first leaves etcd while it still
//!   runs (`k0s etcd leave --peer-address ADDR`, k0sctl
//!   `phase/reset_controllers.go`; k0s `cmd/etcd/leave.go` talks to the local
//!   etcd), `k0s stop`, `k0s reset` (<https://docs.k0sproject.io/stable/reset/>),
//!   whose failure is reported and the rest done, as k0sctl does.

mod backup;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;

use base64::Engine;

use crate::cluster::{Address, Cluster, Host, Role};
use crate::plan::{render_template, Capture, Check, FileContent, Plan, Step};

use super::{
    captured_token, finish_verify, hooks, hub, odd_servers_warning, verify_common,
    verify_odd_servers, HostContext, ImageInfo, JoinSecrets, Port, Runtime, RuntimeError, Version,
    Violation, KUBECONFIG_CAPTURE, MARKER_DIR,
};

pub const BIN: &str = "/usr/local/bin/k0s";
pub const CONFIG_DIR: &str = "/etc/k0s";
pub const CONFIG: &str = "/etc/k0s/k0s.yaml";
pub const TOKEN_FILE: &str = "/etc/k0s/join-token";
pub const DATA_DIR: &str = "/var/lib/k0s";
/// Where k0s keeps its certificates (with `etcd/`).
pub const PKI_DIR: &str = "/var/lib/k0s/pki";
pub const ADMIN_CONF: &str = "/var/lib/k0s/pki/admin.conf";
pub const IMAGE_CONFIG: &str = "etc/k0s.yaml";
/// Where controllers get a `kubectl` that is k0s (only where none is).
pub const KUBECTL_LINK: &str = "/usr/local/bin/kubectl";
/// The capture of `k0s token create --role=worker`.
pub const WORKER_TOKEN_CAPTURE: &str = "k0s.worker-token";
/// The capture of `k0s token create --role=controller`.
pub const CONTROLLER_TOKEN_CAPTURE: &str = "k0s.controller-token";
/// The cluster env keys this runtime reads.
pub const POD_CIDR: &str = "POD_CIDR";
pub const SERVICE_CIDR: &str = "SERVICE_CIDR";
pub const CONTROL_PLANE_ENDPOINT: &str = "CONTROL_PLANE_ENDPOINT";
pub use super::{API_PORT, KUBELET_PORT};
/// k0s's join API (controllers join through it).
pub const K0S_API_PORT: u16 = 9443;
/// konnectivity-server, which workers' konnectivity agents reach.
pub const KONNECTIVITY_PORT: u16 = 8132;
/// etcd's peer port, between controllers.
pub const ETCD_PEER_PORT: u16 = 2380;
/// kube-router's BGP, between the nodes it runs on (the default provider).
pub const KUBE_ROUTER_BGP_PORT: u16 = 179;
/// k0sctl gives a join token 10 minutes per host that joins with it
/// (`phase/install_workers.go`: `10*len(p.hosts)` minutes).
const TOKEN_MINUTES_PER_HOST: usize = 10;
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
    runs_workloads(ctx.cluster, ctx.host)
}

/// Whether pods run on `host`: a worker, or a controller with
/// `--enable-worker` (the node role too, or no worker in the cluster).
fn runs_workloads(cluster: &Cluster, host: &Host) -> bool {
    host.is_node() || cluster.workers().next().is_none()
}

fn env_value<'e>(env: &'e [(String, String)], key: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `ADDRESS/PREFIX` with the prefix within the address's bits.
fn is_cidr(value: &str) -> bool {
    let Some((ip, prefix)) = value.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.parse::<u8>().is_ok_and(|p| p <= max) && !prefix.starts_with('+')
}

/// Both k0s `spec.network` CIDR fields, each as its own field: dual-stack
/// `A,B` is k0s's `dualStack` section, not these.
fn cidr_violation(key: &str, value: &str) -> Option<Violation> {
    (!is_cidr(value)).then(|| Violation::BadEnv {
        key: key.to_string(),
        value: value.to_string(),
        reason: format!(
            "k0s wants one CIDR here (ADDRESS/PREFIX, e.g. {}); fix the value or leave {key} out for k0s's default",
            if key == SERVICE_CIDR { "10.96.0.0/12" } else { "10.244.0.0/16" }
        ),
    })
}

/// `CONTROL_PLANE_ENDPOINT` for k0s: a host (an IP or a DNS name) that
/// forwards to the controllers, optionally with the API port. k0s has one
/// API port for its own address and the external one (`spec.api.port`, 6443
/// here), so another port cannot work.
fn endpoint_host(value: &str) -> Result<Address, String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return Err("an IPv6 endpoint is written [ADDRESS] or [ADDRESS]:PORT".into()),
        }
    } else if value.matches(':').count() == 1 {
        let (h, p) = value.split_once(':').expect("one colon");
        (h, Some(p))
    } else {
        (value, None)
    };
    if let Some(port) = port {
        if port != API_PORT.to_string() {
            return Err(format!(
                "k0s serves the API on {API_PORT} at its external address too (spec.api.port); give HOST or HOST:{API_PORT}, with a load balancer there forwarding {API_PORT}, {K0S_API_PORT} and {KONNECTIVITY_PORT} to the controllers"
            ));
        }
    }
    Address::parse(host)
}

fn endpoint_violation(value: &str) -> Option<Violation> {
    endpoint_host(value).err().map(|reason| Violation::BadEnv {
        key: CONTROL_PLANE_ENDPOINT.to_string(),
        value: value.to_string(),
        reason,
    })
}

/// Controllers' addresses as k0s wants them in `spec.api.sans`, every
/// controller first, then the loopback (k0sctl `phase/configure_k0s.go`).
fn sans(ctx: &HostContext) -> Vec<String> {
    let mut out: Vec<String> = ctx.cluster.masters().map(|h| h.key()).collect();
    out.push("127.0.0.1".to_string());
    if let Some(Ok(endpoint)) = env_value(&ctx.env, CONTROL_PLANE_ENDPOINT).map(endpoint_host) {
        out.push(endpoint.to_string());
    }
    let mut seen = Vec::new();
    out.retain(|a| {
        let new = !seen.contains(a);
        seen.push(a.clone());
        new
    });
    out
}

fn config_step(ctx: &HostContext) -> Step {
    let mut spec = serde_yaml_ng::Mapping::new();
    let mut network = serde_yaml_ng::Mapping::new();
    // Independent fields of spec.network
    // (https://docs.k0sproject.io/stable/configuration/#specnetwork).
    if let Some(cidr) = env_value(&ctx.env, POD_CIDR) {
        network.insert("podCIDR".into(), cidr.into());
    }
    if let Some(cidr) = env_value(&ctx.env, SERVICE_CIDR) {
        network.insert("serviceCIDR".into(), cidr.into());
    }
    if !network.is_empty() {
        spec.insert("network".into(), network.into());
    }
    // spec.api and spec.storage.etcd as k0sctl's phase/configure_k0s.go
    // writes them for each controller: the address sealrs reaches the host
    // at is the one it advertises (k0s wants an IP in both fields).
    let own_ip = matches!(ctx.host.address, Address::Ip(_)).then(|| ctx.host.key());
    let mut api = serde_yaml_ng::Mapping::new();
    if let Some(ip) = &own_ip {
        api.insert("address".into(), ip.clone().into());
    }
    api.insert(
        "sans".into(),
        serde_yaml_ng::Value::Sequence(sans(ctx).into_iter().map(Into::into).collect()),
    );
    if let Some(Ok(endpoint)) = env_value(&ctx.env, CONTROL_PLANE_ENDPOINT).map(endpoint_host) {
        api.insert("externalAddress".into(), endpoint.to_string().into());
    }
    spec.insert("api".into(), api.into());
    if let Some(ip) = own_ip {
        let mut etcd = serde_yaml_ng::Mapping::new();
        etcd.insert("peerAddress".into(), ip.into());
        let mut storage = serde_yaml_ng::Mapping::new();
        storage.insert("etcd".into(), etcd.into());
        spec.insert("storage".into(), storage.into());
    }
    let mut top = serde_yaml_ng::Mapping::new();
    top.insert("apiVersion".into(), "k0s.k0sproject.io/v1beta1".into());
    top.insert("kind".into(), "ClusterConfig".into());
    let mut meta = serde_yaml_ng::Mapping::new();
    meta.insert("name".into(), "k0s".into());
    top.insert("metadata".into(), meta.into());
    top.insert("spec".into(), spec.into());
    Step::write_file(
        "config",
        CONFIG,
        FileContent::YamlMerge {
            base: Some(format!("{}/{IMAGE_CONFIG}", ctx.rootfs)),
            base_is_template: true,
            overlay: serde_yaml_ng::to_string(&top).expect("a mapping serializes"),
            keep: None,
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

/// The image's files for this host: the airgap bundle only where workloads
/// run (layouts/k0s.toml; k0s imports it in the worker's containerd:
/// <https://docs.k0sproject.io/v1.30.2+k0s.0/airgap-install/>).
fn place_rootfs(ctx: &HostContext) -> Step {
    let workloads = match ctx.role {
        Role::Master => enable_worker(ctx),
        Role::Node => true,
    };
    Step::place_rootfs(ctx.role).running_workloads(workloads)
}

fn prepare(ctx: &HostContext, plan: &mut Plan) {
    plan.push(place_rootfs(ctx));
    plan.push(Step::ensure_dir("config-dir", CONFIG_DIR, 0o755));
    if ctx.role == Role::Master {
        plan.push(config_step(ctx));
        // Action::Symlink leaves a kubectl that is a file alone.
        plan.push(Step::symlink("link-kubectl", BIN, KUBECTL_LINK));
    }
}

/// `k0s token create` for a role, valid 10 minutes per host that joins with
/// it (k0sctl `phase/install_workers.go`, `phase/install_controllers.go`).
fn token_step(id: &str, role: &str, hosts: usize, capture: &str) -> Step {
    let role_flag = format!("--role={role}");
    let expiry = format!("--expiry={}m", TOKEN_MINUTES_PER_HOST * hosts);
    Step::run_capture(
        id,
        format!("create a {role} join token for {hosts} host(s), valid {expiry}"),
        &[BIN, "token", "create", &role_flag, &expiry],
        Capture::secret(capture),
    )
}

/// The ID of a k0s join token: the token is a kubeconfig, gzipped and in
/// base64, whose user's bootstrap token is `ID.SECRET` (k0s
/// `pkg/token/joindecode.go`; k0sctl reads it with `cluster.TokenID`).
pub fn token_id(token: &str) -> Result<String, String> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| format!("not gzipped text: {e}"))?;
    let kubeconfig: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let bootstrap = kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .ok_or("its kubeconfig has no users[0].user.token")?;
    match bootstrap.split_once('.') {
        Some((id, _)) if !id.is_empty() => Ok(id.to_string()),
        _ => Err("its bootstrap token is not ID.SECRET".into()),
    }
}

/// Whether the image's ClusterConfig (`etc/k0s.yaml`, rendered with the
/// cluster env as the config step renders it) keeps the data where no second
/// controller can join: kine on SQLite, its default. k0s `token create
/// --role=controller` refuses it then ("cannot join controller into current
/// storage": `StorageSpec.IsJoinable` in `pkg/apis/k0s/v1beta1/storage.go`).
fn unjoinable_storage(config: &str, env: &[(String, String)]) -> Option<String> {
    let text = render_template(config, env).unwrap_or_else(|_| config.to_string());
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    let storage = &yaml["spec"]["storage"];
    if storage["type"].as_str() != Some("kine") {
        return None;
    }
    let source = storage["kine"]["dataSource"].as_str().unwrap_or("");
    (source.is_empty() || source.starts_with("sqlite:")).then(|| {
        if source.is_empty() {
            "kine with its default SQLite database".to_string()
        } else {
            format!("kine with {source}")
        }
    })
}

fn hosts_joining(cluster: &Cluster, role: Role, first: &Address) -> usize {
    let joins = |h: &&Host| &h.address != first && (h.is_master() == (role == Role::Master));
    cluster.hosts.iter().filter(joins).count()
}

impl Runtime for K0s {
    /// What [`config_step`] and [`sans`] read.
    fn env_keys(&self) -> &'static [super::EnvKey] {
        const KEYS: &[super::EnvKey] = &[
            super::EnvKey {
                key: POD_CIDR,
                example: "POD_CIDR=10.244.0.0/16",
                meaning: "spec.network.podCIDR (k0s' default 10.244.0.0/16)",
            },
            super::EnvKey {
                key: SERVICE_CIDR,
                example: "SERVICE_CIDR=10.96.0.0/12",
                meaning: "spec.network.serviceCIDR (k0s' default 10.96.0.0/12)",
            },
            super::EnvKey {
                key: CONTROL_PLANE_ENDPOINT,
                example: "CONTROL_PLANE_ENDPOINT=lb.example.com",
                meaning: "spec.api.externalAddress: a load balancer forwarding 6443, 9443 and 8132",
            },
        ];
        KEYS
    }

    /// https://docs.k0sproject.io/v1.30.2+k0s.0/networking/#required-ports-and-protocols:
    /// controllers serve the API, the join API and konnectivity and talk
    /// etcd to each other; kubelet and kube-router's BGP run where a worker
    /// runs: every node, and a controller with `--enable-worker` (one with
    /// the node role, or the only one of a cluster without workers).
    fn ports(&self, cluster: &Cluster, host: &Host) -> Vec<Port> {
        let mut ports = Vec::new();
        if host.is_master() {
            ports.extend([API_PORT, K0S_API_PORT, KONNECTIVITY_PORT, ETCD_PEER_PORT]);
        }
        if runs_workloads(cluster, host) {
            ports.extend([KUBELET_PORT, KUBE_ROUTER_BGP_PORT]);
        }
        ports.sort_unstable();
        ports.dedup();
        ports.into_iter().map(Port::Tcp).collect()
    }

    fn name(&self) -> &'static str {
        "k0s"
    }

    /// What `k0s kubeconfig admin` prints, before it rewrites the server (k0s cmd/kubeconfig/admin.go, v1.30); sealrs sets the server itself.
    fn admin_kubeconfig(&self) -> &'static str {
        ADMIN_CONF
    }

    /// A controller that is gone leaves etcd through a surviving one:
    /// `k0s etcd leave --peer-address ADDR`
    /// (https://docs.k0sproject.io/v1.30.2+k0s.0/remove_controller/), run
    /// while k0s runs there (it talks to the local etcd). A failure (the
    /// member already left) is reported and the host forgotten all the same.
    fn forget_member(
        &self,
        first_master: &HostContext,
        host: &Host,
        _node: &str,
    ) -> Result<Plan, RuntimeError> {
        let mut plan = first_master.plan(self.name(), "forget-member");
        if host.is_master() {
            let peer = host.key();
            plan.push(
                Step::run(
                    "etcd-leave",
                    format!("remove controller {peer} from etcd"),
                    &[BIN, "etcd", "leave", "--peer-address", &peer],
                    Check::UnitInactive {
                        unit: unit(Role::Master).into(),
                    },
                )
                .allowing_failure(),
            );
        }
        Ok(plan)
    }

    /// `k0s kubectl` with the admin kubeconfig, as `remove_node` runs it.
    fn warnings(&self, cluster: &Cluster) -> Vec<String> {
        odd_servers_warning(self.name(), cluster)
    }

    /// The unit `k0s install controller|worker` writes (k0s pkg/install, v1.30).
    fn service_units(&self, role: Role) -> Vec<&'static str> {
        vec![unit(role)]
    }

    fn cert_sources(&self) -> Vec<super::CertSource> {
        vec![super::CertSource::pem(PKI_DIR, true)]
    }

    /// k0s renews its own: each start of k0scontroller makes again every
    /// certificate its CAs (kubernetes-ca, kubernetes-front-proxy-ca,
    /// etcd-ca) issued (`regenerateCert` in k0s's
    /// pkg/certificate/manager.go), and the kubelets rotate theirs through
    /// the API.
    fn renew_certs(
        &self,
        ctx: &HostContext,
        options: &super::RenewOptions,
    ) -> Result<super::CertRenewal, RuntimeError> {
        if !options.alt_names.is_empty() {
            return Err(RuntimeError::BadConfig {
                runtime: "k0s",
                file: CONFIG.into(),
                reason: "k0s gives the API server the extra names of spec.api.sans in its config; put them in the image's k0s.yaml and upgrade to it (--alt-names changes nothing for k0s)".into(),
            });
        }
        Ok(super::CertRenewal::ByRuntime(format!(
            "{}: k0s renews its own certificates: every start of k0scontroller issues again each certificate in {PKI_DIR} that its CAs (kubernetes-ca, kubernetes-front-proxy-ca, etcd-ca; valid 10 years, never renewed) signed, and the kubelets rotate theirs; restarting k0scontroller on one controller at a time renews them, and sealrs changes nothing on the host",
            ctx.host_key()
        )))
    }

    fn backup(
        &self,
        ctx: &HostContext,
        _exists: &dyn Fn(&str) -> bool,
    ) -> Result<super::backup::BackupPlan, RuntimeError> {
        Ok(backup::backup(ctx))
    }

    fn restore(
        &self,
        first: &HostContext,
        others: &[&Host],
        kind: super::backup::SnapshotKind,
        stamp: &str,
        _exists: &dyn Fn(&str) -> bool,
    ) -> Result<super::backup::RestorePlan, RuntimeError> {
        backup::restore(first, others, kind, stamp)
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
        let env = cluster.env_pairs();
        for key in [POD_CIDR, SERVICE_CIDR] {
            if let Some(bad) = env_value(&env, key).and_then(|value| cidr_violation(key, value)) {
                v.push(bad);
            }
        }
        if let Some(bad) = env_value(&env, CONTROL_PLANE_ENDPOINT).and_then(endpoint_violation) {
            v.push(bad);
        }
        finish_verify(v)
    }

    fn verify_image_files(
        &self,
        cluster: &Cluster,
        read: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Violation> {
        let controllers = cluster.masters().count();
        let storage = read(IMAGE_CONFIG).and_then(|c| unjoinable_storage(&c, &cluster.env_pairs()));
        match storage {
            Some(storage) if controllers > 1 => vec![Violation::ImageConfig {
                path: IMAGE_CONFIG.to_string(),
                reason: format!(
                    "spec.storage is {storage}, which only one controller can use (k0s: \"cannot join controller into current storage\"), and the cluster has {controllers}; use one controller, or spec.storage.type: etcd, or kine with an external database (spec.storage.kine.dataSource)"
                ),
            }],
            _ => Vec::new(),
        }
    }

    fn install(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_first_master(self.name())?;
        let mut plan = ctx.plan(self.name(), "install");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::K0s)?;
        prepare(ctx, &mut plan);
        install_and_start(ctx, &mut plan, false);
        plan.push(Step::wait_port(
            "wait-api",
            "127.0.0.1",
            API_PORT,
            WAIT_SECS,
        ));
        plan.push(Step::wait_file("wait-admin-conf", ADMIN_CONF, WAIT_SECS));
        // A token only for a role that joins: a controller token is refused
        // on storage that no second controller can join.
        let workers = hosts_joining(ctx.cluster, Role::Node, ctx.first_master);
        if workers > 0 {
            plan.push(token_step(
                "worker-token",
                "worker",
                workers,
                WORKER_TOKEN_CAPTURE,
            ));
        }
        let controllers = hosts_joining(ctx.cluster, Role::Master, ctx.first_master);
        if controllers > 0 {
            plan.push(token_step(
                "controller-token",
                "controller",
                controllers,
                CONTROLLER_TOKEN_CAPTURE,
            ));
        }
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
        hub::push_setup(ctx, &mut plan, hub::Mirror::K0s)?;
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

    /// `k0s token invalidate --data-dir=DIR ID` for each token the install
    /// made, as k0sctl's `phase/install_controllers.go` and
    /// `phase/install_workers.go` do once their hosts joined; a failure is
    /// reported (the token expires anyway).
    fn after_joins(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        let mut plan = ctx.plan(self.name(), "after-joins");
        let tokens = [
            ("worker", WORKER_TOKEN_CAPTURE, ctx.secrets.token.as_ref()),
            (
                "controller",
                CONTROLLER_TOKEN_CAPTURE,
                ctx.secrets.controller_token.as_ref(),
            ),
        ];
        for (role, key, token) in tokens {
            let Some(token) = token else { continue };
            let id = token_id(token.expose()).map_err(|reason| RuntimeError::BadCapture {
                key: key.to_string(),
                reason: format!("it is not a k0s join token: {reason}"),
            })?;
            let data_dir = format!("--data-dir={DATA_DIR}");
            plan.push(
                Step::run(
                    &format!("invalidate-{role}-token"),
                    format!("invalidate the {role} join token {id}"),
                    &[BIN, "token", "invalidate", &data_dir, &id],
                    Check::IfExists {
                        path: ADMIN_CONF.into(),
                    },
                )
                .allowing_failure(),
            );
        }
        Ok(plan)
    }

    fn upgrade(&self, ctx: &HostContext, to: &Version) -> Result<Plan, RuntimeError> {
        ctx.check_upgrade(to)?;
        let unit = unit(ctx.role);
        let mut plan = ctx.plan(self.name(), "upgrade");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::K0s)?;
        plan.push(place_rootfs(ctx));
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

    fn kubectl(&self) -> &'static [&'static str] {
        &[BIN, "kubectl", "--kubeconfig", ADMIN_CONF]
    }

    /// `k0s kubectl` on the first controller, as k0sctl resets a worker (<https://github.com/k0sproject/k0sctl/blob/main/phase/reset_workers.go>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(ctx, self.name(), self.kubectl(), node)
    }

    fn uninstall(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        let unit = unit(ctx.role);
        let mut plan = ctx.plan(self.name(), "uninstall");
        // A controller other than the first signs off from etcd first, while
        // its etcd still runs (k0s `etcd leave` reaches the local member);
        // the first controller goes last (delete refuses it, reset ends with
        // it) and has no cluster left to leave. k0sctl
        // phase/reset_controllers.go warns on failure and goes on.
        if ctx.role == Role::Master && !ctx.is_first_master() {
            let peer = ctx.host.key();
            plan.push(
                Step::run(
                    "etcd-leave",
                    format!("remove this controller ({peer}) from etcd"),
                    &[BIN, "etcd", "leave", "--peer-address", &peer],
                    Check::UnitInactive { unit: unit.into() },
                )
                .allowing_failure(),
            );
        }
        plan.push(Step::run(
            "stop",
            "stop k0s",
            &[BIN, "stop"],
            Check::UnitInactive { unit: unit.into() },
        ));
        hooks::push_clean(ctx, &mut plan);
        hub::push_clean(ctx, &mut plan, hub::Mirror::K0s);
        // k0s refuses to reset while it runs; a failed reset is reported and
        // the rest goes on (k0sctl: "k0s reset reported failure" is a
        // warning). It runs while the data directory is there, so a rerun
        // retries it when what it left could not be removed.
        plan.push(
            Step::run(
                "reset",
                "remove k0s state, service and data (k0s reset)",
                &[BIN, "reset", &format!("--data-dir={DATA_DIR}")],
                Check::IfExists {
                    path: DATA_DIR.into(),
                },
            )
            .allowing_failure(),
        );
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
        if ctx.role == Role::Master {
            plan.push(Step::remove_link("remove-kubectl-link", KUBECTL_LINK, BIN));
        }
        plan.push(Step::remove("remove-config", CONFIG_DIR));
        plan.push(Step::remove("remove-data", DATA_DIR));
        plan.push(Step::remove("remove-markers", MARKER_DIR));
        plan.push(Step::remove_rootfs(ctx.role));
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cluster::Secret;
    use crate::plan::Action;
    use crate::runtime::tests::cluster;

    fn image() -> ImageInfo {
        ImageInfo::new("k0s", "v1.30.2+k0s.0").unwrap()
    }

    /// A join token as k0s makes one: a kubeconfig with the bootstrap token
    /// `ID.SECRET`, gzipped, in base64.
    fn join_token(id: &str) -> String {
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: k0s\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: {id}.0123456789abcdef\n"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(kubeconfig.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    fn ctx<'a>(c: &'a Cluster, i: usize, img: &'a ImageInfo) -> HostContext<'a> {
        let secrets = JoinSecrets {
            token: Some(Secret::new(join_token("wwwwww"))),
            controller_token: Some(Secret::new(join_token("cccccc"))),
            ..JoinSecrets::default()
        };
        HostContext::new(c, &c.hosts[i], img, secrets).unwrap()
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.steps.iter().map(|s| s.id.as_str()).collect()
    }

    fn argv(plan: &Plan, id: &str) -> Vec<String> {
        match &plan.step(id).unwrap_or_else(|| panic!("no {id}")).action {
            Action::Run { argv, .. } => argv.clone(),
            other => panic!("{id} is {other:?}"),
        }
    }

    fn allows_failure(plan: &Plan, id: &str) -> bool {
        matches!(
            plan.step(id).unwrap().action,
            Action::Run {
                allow_failure: true,
                ..
            }
        )
    }

    /// The overlay the config step merges over the image's config.
    fn overlay(plan: &Plan) -> serde_yaml_ng::Value {
        match &plan.step("config").unwrap().action {
            Action::WriteFile {
                content: FileContent::YamlMerge { overlay, .. },
                ..
            } => serde_yaml_ng::from_str(overlay).unwrap(),
            other => panic!("config is {other:?}"),
        }
    }

    #[test]
    fn a_controller_forgotten_by_force_leaves_etcd_through_the_first_master() {
        let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
        let img = image();
        let first = ctx(&c, 0, &img);
        let plan = K0s.forget_member(&first, &c.hosts[1], "m2").unwrap();
        plan.validate().unwrap();
        assert_eq!(plan.host, "10.0.0.1");
        assert_eq!(
            argv(&plan, "etcd-leave"),
            [BIN, "etcd", "leave", "--peer-address", "10.0.0.2"]
        );
        assert!(allows_failure(&plan, "etcd-leave"));
        // A worker has no etcd member.
        let worker = K0s.forget_member(&first, &c.hosts[3], "w1").unwrap();
        assert!(worker.steps.is_empty());
    }

    #[test]
    fn a_controller_that_is_not_the_first_leaves_etcd_while_running_then_resets() {
        let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
        let img = image();
        let plan = K0s.uninstall(&ctx(&c, 1, &img)).unwrap();
        plan.validate().unwrap();
        assert_eq!(
            argv(&plan, "etcd-leave"),
            [BIN, "etcd", "leave", "--peer-address", "10.0.0.2"]
        );
        // Only while k0s runs (etcd leave talks to the local etcd), and a
        // failure is a warning, as in k0sctl.
        assert_eq!(
            plan.step("etcd-leave").unwrap().check,
            Check::UnitInactive {
                unit: "k0scontroller.service".into()
            }
        );
        assert!(allows_failure(&plan, "etcd-leave"));
        let order = ids(&plan);
        let at = |id| order.iter().position(|s| *s == id).unwrap();
        assert!(at("etcd-leave") < at("stop"));
        assert!(at("stop") < at("reset"));
        assert!(at("reset") < at("remove-data"));
        assert!(allows_failure(&plan, "reset"), "a failed reset goes on");
    }

    #[test]
    fn the_first_controller_and_workers_leave_no_etcd() {
        let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
        let img = image();
        for i in [0, 3] {
            let plan = K0s.uninstall(&ctx(&c, i, &img)).unwrap();
            assert!(plan.step("etcd-leave").is_none(), "host {i}");
            assert!(plan.step("reset").is_some());
        }
    }

    #[test]
    fn tokens_only_for_roles_that_join_with_an_expiry_per_host() {
        let img = image();
        let single = cluster("10.0.0.1", "", &[]);
        let plan = K0s.install(&ctx(&single, 0, &img)).unwrap();
        assert!(plan.step("worker-token").is_none());
        assert!(plan.step("controller-token").is_none());

        let workers = cluster("10.0.0.1", "10.0.0.2,10.0.0.3", &[]);
        let plan = K0s.install(&ctx(&workers, 0, &img)).unwrap();
        plan.validate().unwrap();
        assert_eq!(
            argv(&plan, "worker-token"),
            [BIN, "token", "create", "--role=worker", "--expiry=20m"]
        );
        assert!(plan.step("controller-token").is_none());

        let ha = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "", &[]);
        let plan = K0s.install(&ctx(&ha, 0, &img)).unwrap();
        assert!(plan.step("worker-token").is_none());
        assert_eq!(
            argv(&plan, "controller-token"),
            [BIN, "token", "create", "--role=controller", "--expiry=20m"]
        );
    }

    #[test]
    fn after_the_joins_each_token_made_is_invalidated_by_its_id() {
        assert_eq!(token_id(&join_token("abc123")).unwrap(), "abc123");
        assert!(token_id("not a token").unwrap_err().contains("base64"));

        let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
        let img = image();
        let plan = K0s.after_joins(&ctx(&c, 0, &img)).unwrap();
        plan.validate().unwrap();
        assert_eq!(
            argv(&plan, "invalidate-worker-token"),
            [
                BIN,
                "token",
                "invalidate",
                "--data-dir=/var/lib/k0s",
                "wwwwww"
            ]
        );
        assert_eq!(
            argv(&plan, "invalidate-controller-token"),
            [
                BIN,
                "token",
                "invalidate",
                "--data-dir=/var/lib/k0s",
                "cccccc"
            ]
        );
        assert!(allows_failure(&plan, "invalidate-worker-token"));

        // No token made: nothing to do, and the processor skips the host.
        let none = HostContext::new(&c, &c.hosts[0], &img, JoinSecrets::default()).unwrap();
        assert!(K0s.after_joins(&none).unwrap().steps.is_empty());
        // A capture that is no join token is an error naming it.
        let bad = JoinSecrets {
            token: Some(Secret::new("garbage")),
            ..JoinSecrets::default()
        };
        let bad = HostContext::new(&c, &c.hosts[0], &img, bad).unwrap();
        match K0s.after_joins(&bad).unwrap_err() {
            RuntimeError::BadCapture { key, .. } => assert_eq!(key, WORKER_TOKEN_CAPTURE),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_cidr_is_written_without_pod_cidr() {
        let c = cluster("10.0.0.1", "", &["SERVICE_CIDR=10.100.0.0/16"]);
        let img = image();
        let plan = K0s.install(&ctx(&c, 0, &img)).unwrap();
        let network = &overlay(&plan)["spec"]["network"];
        assert_eq!(network["serviceCIDR"].as_str(), Some("10.100.0.0/16"));
        assert!(network.get("podCIDR").is_none());
        K0s.verify(&c, &img).unwrap();
    }

    #[test]
    fn a_bad_cidr_or_endpoint_is_refused_with_its_value() {
        let img = image();
        let c = cluster(
            "10.0.0.1",
            "",
            &[
                "SERVICE_CIDR=not-a-cidr",
                "POD_CIDR=10.0.0.0/33",
                "CONTROL_PLANE_ENDPOINT=lb.example.com:8443",
            ],
        );
        let v = K0s.verify(&c, &img).unwrap_err();
        let text: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("-e POD_CIDR=\"10.0.0.0/33\""),
            "{text:?}"
        );
        assert!(text[1].starts_with("-e SERVICE_CIDR=\"not-a-cidr\""));
        assert!(
            text[1].contains("10.96.0.0/12"),
            "says what a CIDR looks like"
        );
        assert!(text[2].contains("lb.example.com:8443"));
        assert!(text[2].contains("HOST:6443"), "says what to give");
        for ok in ["lb.example.com", "10.0.0.100:6443", "[fd00::1]:6443"] {
            let env = format!("CONTROL_PLANE_ENDPOINT={ok}");
            K0s.verify(&cluster("10.0.0.1", "", &[&env]), &img).unwrap();
        }
    }

    #[test]
    fn each_controller_advertises_its_own_address_and_the_endpoint() {
        let c = cluster(
            "10.0.0.1,10.0.0.2,10.0.0.3",
            "10.0.0.4",
            &["CONTROL_PLANE_ENDPOINT=lb.example.com:6443"],
        );
        let img = image();
        let plan = K0s.join(&ctx(&c, 1, &img)).unwrap();
        let spec = &overlay(&plan)["spec"];
        assert_eq!(spec["api"]["address"].as_str(), Some("10.0.0.2"));
        assert_eq!(
            spec["storage"]["etcd"]["peerAddress"].as_str(),
            Some("10.0.0.2")
        );
        assert_eq!(
            spec["api"]["externalAddress"].as_str(),
            Some("lb.example.com")
        );
        let sans: Vec<&str> = spec["api"]["sans"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            sans,
            [
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
                "127.0.0.1",
                "lb.example.com"
            ]
        );
        // Workers get no ClusterConfig.
        assert!(K0s
            .join(&ctx(&c, 3, &img))
            .unwrap()
            .step("config")
            .is_none());
    }

    #[test]
    fn kine_on_sqlite_with_more_than_one_controller_is_refused() {
        let kine = "spec:\n  storage:\n    type: kine\n";
        let read =
            |text: &'static str| move |rel: &str| (rel == IMAGE_CONFIG).then(|| text.to_string());
        let three = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "", &[]);
        let v = K0s.verify_image_files(&three, &read(kine));
        assert_eq!(v.len(), 1);
        let text = v[0].to_string();
        assert!(
            text.contains("etc/k0s.yaml") && text.contains("kine"),
            "{text}"
        );
        assert!(
            text.contains("has 3") && text.contains("use one controller"),
            "{text}"
        );
        let sqlite = "spec:\n  storage:\n    type: kine\n    kine:\n      dataSource: sqlite:///var/lib/k0s/db/state.db\n";
        assert_eq!(K0s.verify_image_files(&three, &read(sqlite)).len(), 1);
        // One controller, an external database, etcd, no config: fine.
        let one = cluster("10.0.0.1", "10.0.0.2", &[]);
        assert!(K0s.verify_image_files(&one, &read(kine)).is_empty());
        let pg =
            "spec:\n  storage:\n    type: kine\n    kine:\n      dataSource: postgres://db/k0s\n";
        assert!(K0s.verify_image_files(&three, &read(pg)).is_empty());
        let etcd = "spec:\n  storage:\n    type: etcd\n";
        assert!(K0s.verify_image_files(&three, &read(etcd)).is_empty());
        assert!(K0s.verify_image_files(&three, &|_: &str| None).is_empty());
        // The type may come from the cluster env, as the config step renders it.
        let templated = "spec:\n  storage:\n    type: ${STORAGE}\n";
        let env = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "", &["STORAGE=kine"]);
        assert_eq!(K0s.verify_image_files(&env, &read(templated)).len(), 1);
    }

    #[test]
    fn controllers_link_kubectl_and_unlink_only_their_own_link() {
        let c = cluster("10.0.0.1", "10.0.0.2", &[]);
        let img = image();
        let plan = K0s.install(&ctx(&c, 0, &img)).unwrap();
        assert_eq!(
            plan.step("link-kubectl").unwrap().action,
            Action::Symlink {
                target: BIN.into(),
                link: KUBECTL_LINK.into()
            }
        );
        let un = K0s.uninstall(&ctx(&c, 0, &img)).unwrap();
        assert_eq!(
            un.step("remove-kubectl-link").unwrap().action,
            Action::RemoveLink {
                link: KUBECTL_LINK.into(),
                target: BIN.into()
            }
        );
        assert!(K0s
            .join(&ctx(&c, 1, &img))
            .unwrap()
            .step("link-kubectl")
            .is_none());
    }

    #[test]
    fn the_rootfs_step_says_which_hosts_run_workloads() {
        let workloads = |plan: &Plan| match plan.step("place-rootfs").unwrap().action {
            Action::PlaceRootfs { workloads, .. } => workloads,
            ref other => panic!("{other:?}"),
        };
        let img = image();
        let c = cluster("10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", &[]);
        assert_eq!(
            workloads(&K0s.install(&ctx(&c, 0, &img)).unwrap()),
            Some(false)
        );
        assert_eq!(
            workloads(&K0s.join(&ctx(&c, 1, &img)).unwrap()),
            Some(false)
        );
        assert_eq!(workloads(&K0s.join(&ctx(&c, 3, &img)).unwrap()), Some(true));
        let to = Version::parse("v1.30.3+k0s.0").unwrap();
        assert_eq!(
            workloads(&K0s.upgrade(&ctx(&c, 0, &img), &to).unwrap()),
            Some(false)
        );
        // Without workers, or with the node role, a controller runs them.
        let single = cluster("10.0.0.1", "", &[]);
        assert_eq!(
            workloads(&K0s.install(&ctx(&single, 0, &img)).unwrap()),
            Some(true)
        );
        let mut both = cluster("10.0.0.1", "10.0.0.2", &[]);
        both.hosts[0] = Host::new(both.hosts[0].address.clone(), &[Role::Master, Role::Node]);
        assert_eq!(
            workloads(&K0s.install(&ctx(&both, 0, &img)).unwrap()),
            Some(true)
        );
    }

    #[test]
    fn ports_of_controllers_workers_and_controllers_that_run_workloads() {
        let tcp = |ports: &[u16]| ports.iter().copied().map(Port::Tcp).collect::<Vec<_>>();
        let c = cluster("10.0.0.1", "10.0.0.2", &[]);
        assert_eq!(K0s.ports(&c, &c.hosts[0]), tcp(&[2380, 6443, 8132, 9443]));
        assert_eq!(K0s.ports(&c, &c.hosts[1]), tcp(&[179, 10250]));
        // A lone controller runs with --enable-worker: the kubelet's ports too.
        let single = cluster("10.0.0.1", "", &[]);
        assert_eq!(
            K0s.ports(&single, &single.hosts[0]),
            tcp(&[179, 2380, 6443, 8132, 9443, 10250])
        );
    }
}
