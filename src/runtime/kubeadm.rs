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
//! - One `--config` file per host ([`config`]), with only the flags kubeadm
//!   allows beside it (`isAllowedFlag` in
//!   cmd/kubeadm/app/apis/kubeadm/validation/validation.go, v1.30:
//!   `--upload-certs`, `--ignore-preflight-errors`, `--skip-*`, …).
//! - Air-gapped images: every archive under `images/` imported into
//!   containerd's `k8s.io` namespace with `ctr` before kubeadm runs, as
//!   "Running kubeadm without an Internet connection" asks
//!   (<https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-init/#without-internet-connection>):
//!   kubeadm's ImagePull preflight then finds every image of
//!   `kubeadm config images list` in the runtime.
//! - The image's `manifests/` (the pod network) applied once after init with
//!   `kubectl apply --server-side`, as "Installing a Pod network add-on" does
//!   (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#pod-network>).
//! - Host prerequisites kubeadm's preflight requires on PATH (`InPathCheck`s
//!   with `mandatory: true` in cmd/kubeadm/app/preflight/checks.go, v1.30:
//!   crictl, conntrack, ip, iptables, mount, nsenter) and swap off (the
//!   kubelet's `failSwapOn`, default true), checked by the installer's verify.

mod backup;
pub mod certs;
pub mod config;

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::cluster::{Address, Cluster, Host, Role, Secret};
use crate::plan::{Capture, Check, FileContent, Plan, ServiceOp, Step};

use super::{
    bad_capture, finish_verify, hooks, hub, ports_of_roles, verify_common, HostContext, ImageInfo,
    JoinSecrets, Port, Prerequisite, Runtime, RuntimeError, Version, Violation, KUBECONFIG_CAPTURE,
    MARKER_DIR,
};
use config::{Config, IMAGE_CONFIG};

/// The image's containerd config, relative to the rootfs.
pub const CONTAINERD_CONFIG: &str = "etc/containerd/config.toml";

pub const BIN: &str = "/usr/local/bin/kubeadm";
pub const KUBECTL: &str = "/usr/local/bin/kubectl";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// `bash -c` text: `$1` kubectl, `$2` its kubeconfig, `$3` the node whose
/// etcd member goes; runs etcdctl in an etcd static pod (label
/// `component=etcd`, kubeadm's manifest) on another node, with the
/// certificates kubeadm writes for it.
const ETCD_MEMBER_REMOVE: &str = r#"set -euo pipefail
k() { "$1" --kubeconfig "$2" -n kube-system "${@:4}"; }
pod=$(k "$@" get pods -l component=etcd --field-selector "spec.nodeName!=$3" -o name | head -n 1)
[ -n "$pod" ] || { echo "no etcd pod on another control plane" >&2; exit 1; }
etcdctl() { k "$1" "$2" "$3" exec "${pod#pod/}" -- etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key "${@:4}"; }
id=$(etcdctl "$@" member list | awk -F', ' -v n="$3" '$3 == n { print $1 }')
if [ -n "$id" ]; then etcdctl "$@" member remove "$id"; else echo "no etcd member named $3"; fi"#;
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
pub const MODULES_FILE: &str = "/etc/modules-load.d/sealrs-k8s.conf";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-sealrs-k8s.conf";
/// containerd's CLI, placed from the image's `bin/ctr`.
pub const CTR: &str = "/usr/local/bin/ctr";
/// The `--config` file kubeadm init/join get on this host (it holds the
/// join secrets: 0600).
pub const CONFIG_FILE: &str = "/etc/kubernetes/sealrs-kubeadm.yaml";
/// Left once `kubeadm init` finished and its join secrets were read: a
/// control plane with it is never reset as half-done.
pub const INIT_DONE: &str = crate::host_path!("/markers/kubeadm-init-done");
/// Left once `kubeadm join` finished.
pub const JOIN_DONE: &str = crate::host_path!("/markers/kubeadm-join-done");
/// How long the health queries wait for the API server.
const QUERY_TIMEOUT: &str = "--request-timeout=20s";
/// The containerd namespace the kubelet's CRI uses.
pub const CRI_NAMESPACE: &str = "k8s.io";
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

/// `host:6443` that every node talks to, and where it comes from:
/// `CONTROL_PLANE_ENDPOINT` from the env, else the image's
/// `controlPlaneEndpoint`, else the first master.
fn endpoint(ctx: &HostContext, cfg: &Config) -> (String, &'static str) {
    if let Some(e) = env(ctx, "CONTROL_PLANE_ENDPOINT") {
        return (e.to_string(), "-e CONTROL_PLANE_ENDPOINT");
    }
    if let Some(e) = cfg.get_str("ClusterConfiguration", &["controlPlaneEndpoint"]) {
        return (e, "the image's file");
    }
    (
        format!("{}:{API_PORT}", ctx.first_master.url_host()),
        "the first master's address",
    )
}

fn advertise_address(ctx: &HostContext) -> Option<String> {
    match &ctx.host.address {
        Address::Ip(ip) => Some(ip.to_string()),
        Address::Hostname(_) => None,
    }
}

/// The image's `etc/kubeadm.yaml`, read, with the Clusterfile's kubeadm
/// documents merged over it.
fn image_config(ctx: &HostContext) -> Result<Config, RuntimeError> {
    let minor = ctx.image.version.as_ref().map_or(0, |v| v.minor);
    let mut cfg = Config::from_image(
        ctx.rootfs_texts.get(IMAGE_CONFIG).map(String::as_str),
        minor,
    )?;
    if !ctx.cluster.runtime_config.is_empty() {
        cfg.merge_clusterfile(&ctx.cluster.runtime_config)?;
    }
    Ok(cfg)
}

/// The `kubeadm init` config: the image's documents with the version, the
/// endpoint, this host's advertise address and the env's CIDRs
/// (InitConfiguration and ClusterConfiguration in the kubeadm config API,
/// <https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta3/>).
fn init_config(ctx: &HostContext) -> Result<String, RuntimeError> {
    Ok(init_documents(ctx)?.render(&[
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
        "KubeProxyConfiguration",
    ]))
}

/// The documents of [`init_config`], before they are rendered.
fn init_documents(ctx: &HostContext) -> Result<Config, RuntimeError> {
    let mut cfg = image_config(ctx)?;
    const CLUSTER: &str = "ClusterConfiguration";
    if let Some(v) = &ctx.image.version {
        cfg.set(
            CLUSTER,
            &["kubernetesVersion"],
            v.kube().into(),
            "the image's label sealrs.io/version",
            false,
        )?;
    }
    let (ep, source) = endpoint(ctx, &cfg);
    cfg.set(CLUSTER, &["controlPlaneEndpoint"], ep.into(), source, false)?;
    for (key, field) in [("POD_CIDR", "podSubnet"), ("SERVICE_CIDR", "serviceSubnet")] {
        if let Some(cidr) = env(ctx, key) {
            cfg.set(
                CLUSTER,
                &["networking", field],
                cidr.into(),
                &format!("-e {key}"),
                false,
            )?;
        }
    }
    if let Some(ip) = advertise_address(ctx) {
        cfg.set(
            "InitConfiguration",
            &["localAPIEndpoint", "advertiseAddress"],
            ip.into(),
            "the host's address",
            false,
        )?;
    }
    Ok(cfg)
}

/// The `kubeadm join` config: JoinConfiguration's discovery (endpoint,
/// bootstrap token, CA hash) and, for a control-plane, its certificate key
/// and advertise address.
fn join_config(ctx: &HostContext, token: &str, hash: &str) -> Result<String, RuntimeError> {
    let mut cfg = image_config(ctx)?;
    const JOIN: &str = "JoinConfiguration";
    let (ep, source) = endpoint(ctx, &cfg);
    cfg.set(
        JOIN,
        &["discovery", "bootstrapToken", "apiServerEndpoint"],
        ep.into(),
        source,
        false,
    )?;
    let captured = "the first master's kubeadm token create";
    cfg.set(
        JOIN,
        &["discovery", "bootstrapToken", "token"],
        token.into(),
        captured,
        true,
    )?;
    cfg.set(
        JOIN,
        &["discovery", "bootstrapToken", "caCertHashes"],
        Value::Sequence(vec![hash.into()]),
        captured,
        false,
    )?;
    if ctx.role == Role::Master {
        let key = ctx.secret("kubeadm", "certificate key")?;
        cfg.set(
            JOIN,
            &["controlPlane", "certificateKey"],
            key.into(),
            "the first master's kubeadm init phase upload-certs",
            true,
        )?;
        if let Some(ip) = advertise_address(ctx) {
            cfg.set(
                JOIN,
                &["controlPlane", "localAPIEndpoint", "advertiseAddress"],
                ip.into(),
                "the host's address",
                false,
            )?;
        }
    }
    Ok(cfg.render(&[JOIN]))
}

/// The pause tag kubeadm of this minor pulls and the kubelet expects
/// (`PauseVersion` in cmd/kubeadm/app/constants/constants.go of each
/// release); `None` outside the releases listed here.
fn pause_tag(minor: u64) -> Option<&'static str> {
    match minor {
        26..=30 => Some("3.9"),
        31..=33 => Some("3.10"),
        _ => None,
    }
}

/// The pause image kubeadm of `version` lists, under `repository`
/// (ClusterConfiguration's `imageRepository`, default `registry.k8s.io`).
pub fn pause_image(version: &Version, repository: Option<&str>) -> Option<String> {
    if version.major != 1 {
        return None;
    }
    let tag = pause_tag(version.minor)?;
    let repo = repository
        .unwrap_or("registry.k8s.io")
        .trim_end_matches('/');
    Some(format!("{repo}/pause:{tag}"))
}

/// containerd must run pod sandboxes with the pause image
/// `kubeadm config images list` names for the version (it is the one
/// harvested and imported): its built-in default (`pause:3.6` in containerd
/// 1.6) is not there air-gapped, and every sandbox fails. The image's
/// containerd config says it: `sandbox_image` of the CRI plugin (config
/// version 2) or `pinned_images.sandbox` (version 3, containerd 2).
fn check_sandbox_image(ctx: &HostContext, cfg: &Config) -> Result<(), RuntimeError> {
    let Some(tag) = ctx
        .image
        .version
        .as_ref()
        .filter(|v| v.major == 1)
        .and_then(|v| pause_tag(v.minor))
    else {
        return Ok(());
    };
    let repo = cfg
        .get_str("ClusterConfiguration", &["imageRepository"])
        .unwrap_or_else(|| "registry.k8s.io".into());
    let want = format!("{}/pause:{tag}", repo.trim_end_matches('/'));
    let bad = |reason: String| RuntimeError::BadConfig {
        runtime: "kubeadm",
        file: CONTAINERD_CONFIG.into(),
        reason,
    };
    let Some(text) = ctx.rootfs_texts.get(CONTAINERD_CONFIG) else {
        return Err(bad(format!(
            "missing: containerd would start pod sandboxes with its built-in pause image, not {want}; add the file with sandbox_image = \"{want}\" (and SystemdCgroup = true)"
        )));
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(format!("not TOML: {}", e.message())))?;
    let at = |path: &[&str]| {
        let mut v = table.get(path[0])?;
        for key in &path[1..] {
            v = v.get(*key)?;
        }
        v.as_str().map(str::to_string)
    };
    let found = at(&["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"]).or_else(|| {
        at(&[
            "plugins",
            "io.containerd.cri.v1.images",
            "pinned_images",
            "sandbox",
        ])
    });
    match found {
        Some(image) if image == want => Ok(()),
        Some(image) => Err(bad(format!(
            "sandbox_image is {image}, but kubeadm {} uses {want}; set sandbox_image = \"{want}\"",
            ctx.image.version.as_ref().map(Version::kube).unwrap_or_default()
        ))),
        None => Err(bad(format!(
            "no sandbox_image: containerd would start pod sandboxes with its built-in pause image, not {want}; set sandbox_image = \"{want}\" under [plugins.\"io.containerd.grpc.v1.cri\"]"
        ))),
    }
}

/// Air-gapped (the image carries image archives under `images/`, so it is
/// meant to come up without pulls), the pause image of the version must be
/// among them, or in the image's `registry/` tree: kubeadm's ImagePull
/// preflight and every pod sandbox need it
/// (<https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-init/#without-internet-connection>).
/// Checked only where the installer read the archives' names.
fn check_pause_image_carried(ctx: &HostContext, cfg: &Config) -> Result<(), RuntimeError> {
    let (Some(held), Some(version)) = (&ctx.rootfs_images, &ctx.image.version) else {
        return Ok(());
    };
    if image_archives(ctx).is_empty() {
        return Ok(());
    }
    let repo = cfg.get_str("ClusterConfiguration", &["imageRepository"]);
    let Some(want) = pause_image(version, repo.as_deref()) else {
        return Ok(());
    };
    let normal = |s: &str| {
        crate::reference::Reference::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    let want_normal = normal(&want);
    if held.iter().any(|n| normal(n) == want_normal) {
        return Ok(());
    }
    let tag = want.rsplit(':').next().unwrap_or_default();
    let in_registry = ctx.rootfs_files.iter().any(|f| {
        f.starts_with("registry/")
            && f.ends_with(&format!("/pause/_manifests/tags/{tag}/current/link"))
    });
    if in_registry {
        return Ok(());
    }
    Err(RuntimeError::BadConfig {
        runtime: "kubeadm",
        file: "images/".into(),
        reason: format!(
            "the image carries airgap archives but none holds {want}, the pause image kubeadm {} uses (kubeadm config images list): air-gapped, its preflight and every pod sandbox fail; add {want} to images/shim/ and build again, or save it into an archive under images/",
            version.kube()
        ),
    })
}

/// The last path component of the host's rootfs: the image's digest, so a
/// marker named with it is keyed by the image's bytes.
fn rootfs_key<'a>(ctx: &'a HostContext) -> &'a str {
    ctx.rootfs
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("rootfs")
}

/// The image archives under `images/` (not the `images/shim/` lists), as the
/// layout's `image-archive` rule names them.
fn image_archives<'a>(ctx: &'a HostContext) -> Vec<&'a str> {
    ctx.rootfs_files
        .iter()
        .map(String::as_str)
        .filter(|f| {
            f.strip_prefix("images/").is_some_and(|rest| {
                !rest.contains('/')
                    && [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"]
                        .iter()
                        .any(|ext| rest.ends_with(ext))
            })
        })
        .collect()
}

/// `ctr -n k8s.io images import` of every image archive, once per archive
/// of this image (a marker named with the image's digest and the archive's
/// path), with containerd running. ctr reads the archive itself (streamed)
/// and keeps the names its index gives the images, the ones
/// `kubeadm config images list` prints.
fn import_images(ctx: &HostContext, plan: &mut Plan) {
    let key = rootfs_key(ctx);
    for (i, archive) in image_archives(ctx).into_iter().enumerate() {
        let path = format!("{}/{archive}", ctx.rootfs.trim_end_matches('/'));
        let flat = archive.replace('/', "_");
        let marker = format!("{MARKER_DIR}/kubeadm-images/{key}-{flat}");
        plan.push(Step::run(
            &format!("import-images-{i}"),
            format!("import {archive} into containerd ({CRI_NAMESPACE})"),
            &[CTR, "--namespace", CRI_NAMESPACE, "images", "import", &path],
            Check::Creates {
                path: marker.clone(),
            },
        ));
        plan.push(Step::write_file(
            &format!("imported-images-{i}"),
            &marker,
            FileContent::text(format!("{archive}\n")),
            0o644,
        ));
    }
}

/// `kubectl apply --server-side` of the image's `manifests/` once after
/// init (a marker named with the image's digest); server-side apply makes a
/// repeat harmless too.
fn apply_manifests(ctx: &HostContext, plan: &mut Plan) {
    let any = ctx
        .rootfs_files
        .iter()
        .any(|f| f.starts_with("manifests/") && (f.ends_with(".yaml") || f.ends_with(".yml")));
    if !any {
        return;
    }
    let dir = format!("{}/manifests", ctx.rootfs.trim_end_matches('/'));
    let marker = format!("{MARKER_DIR}/kubeadm-manifests-{}", rootfs_key(ctx));
    plan.push(Step::run(
        "apply-manifests",
        "apply the image's manifests (kubectl apply --server-side)",
        &[
            KUBECTL,
            "--kubeconfig",
            ADMIN_CONF,
            "apply",
            "--server-side",
            "--field-manager=sealrs",
            "--recursive",
            "-f",
            &dir,
        ],
        Check::Creates {
            path: marker.clone(),
        },
    ));
    plan.push(Step::write_file(
        "applied-manifests",
        &marker,
        FileContent::text(format!("{dir}\n")),
        0o644,
    ));
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
    import_images(ctx, plan);
    plan.push(Step::service(
        "enable-kubelet",
        "kubelet.service",
        ServiceOp::Enable,
    ));
}

/// The network interfaces a node's pod network and kube-proxy make, which
/// `kubeadm reset` leaves: the bridge CNI plugin's default bridge `cni0`
/// (`defaultBrName` in containernetworking/plugins plugins/main/bridge/
/// bridge.go, v1.4; the name the example's and flannel's CNI configs use),
/// flannel's VXLAN devices (`flannel.<vni>`, VNI 1, and `flannel-v6.1`),
/// kube-proxy's IPVS dummy device (`kube-ipvs0`, pkg/proxy/ipvs/proxier.go,
/// v1.30) and calico's VXLAN device (`vxlan.calico`).
pub const INTERFACES: [&str; 5] = [
    "cni0",
    "flannel.1",
    "flannel-v6.1",
    "kube-ipvs0",
    "vxlan.calico",
];

/// What `kubeadm reset` says it does not clean, cleaned after it and after
/// the kubelet and containerd stopped. kubeadm reset v1.30 prints (and
/// <https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/>,
/// "Cleanup of external etcd members / iptables / IPVS / CNI", says): "The
/// reset process does not clean CNI configuration. To do so, you must remove
/// /etc/cni/net.d", "does not reset or clean up iptables rules or IPVS
/// tables ... If your cluster was setup to utilize IPVS, run ipvsadm
/// --clear", and the kubeconfig files are left (the callers remove
/// /etc/cni/net.d, /var/lib/cni and the kubeconfig link).
fn push_after_reset(plan: &mut Plan) {
    // The pod network namespaces containerd's CRI mounts under
    // /run/netns/cni-* (pkg/netns in containerd 1.6); their veth ends go
    // with them.
    plan.push(Step::unmount_under("unmount-netns", "/run/netns/cni-"));
    plan.push(Step::delete_links("delete-interfaces", &INTERFACES));
    // kube-proxy's chains are all KUBE-* (KUBE-SERVICES, KUBE-NODEPORTS,
    // KUBE-POSTROUTING, ..., pkg/proxy/iptables/proxier.go), the kubelet's
    // KUBE-KUBELET-CANARY and KUBE-FIREWALL too; the CNI plugins' are CNI-*
    // (portmap's CNI-HOSTPORT-*, ipmasq's CNI-<hash>); flannel's rules carry
    // "flannel" in their comments. The host's own rules stay.
    plan.push(Step::strip_iptables(
        "strip-iptables",
        &["iptables", "ip6tables"],
        &["KUBE-", "CNI-"],
        &["flannel"],
    ));
    // `ipvsadm --clear`, as reset's output asks, only where IPVS is in use
    // (the ip_vs module loaded: /proc/net/ip_vs) and ipvsadm is on PATH; a
    // host without either has no IPVS table to clear.
    plan.push(Step::run(
        "clear-ipvs",
        "clear the IPVS tables kube-proxy made (ipvsadm --clear)",
        &["ipvsadm", "--clear"],
        Check::IfOutput {
            argv: [
                "sh",
                "-c",
                "if [ -e /proc/net/ip_vs ]; then command -v ipvsadm; fi; exit 0",
            ]
            .map(String::from)
            .to_vec(),
        },
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
    /// Several control planes without a load balancer: kubeadm's HA guide
    /// gives `--control-plane-endpoint` a load balancer for them all
    /// (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/high-availability/>);
    /// without one, every node and the kubeconfig name the first master.
    fn warnings(&self, cluster: &Cluster) -> Vec<String> {
        let masters = cluster.masters().count();
        match cluster.first_master() {
            Some(first) if masters > 1 && !cluster.env.contains_key("CONTROL_PLANE_ENDPOINT") => {
                vec![format!(
                    "{masters} control planes and no -e CONTROL_PLANE_ENDPOINT: every node and the kubeconfig point at the first master {}:{API_PORT}, so the cluster is down when it is (unless the image's {IMAGE_CONFIG} sets controlPlaneEndpoint); put a load balancer before the control planes' port {API_PORT} and pass -e CONTROL_PLANE_ENDPOINT=HOST:{API_PORT}",
                    first.address.url_host()
                )]
            }
            _ => Vec::new(),
        }
    }

    /// What [`endpoint`] and [`init_config`] read.
    fn env_keys(&self) -> &'static [super::EnvKey] {
        const KEYS: &[super::EnvKey] = &[
            super::EnvKey {
                key: "POD_CIDR",
                example: "POD_CIDR=10.244.0.0/16",
                meaning: "networking.podSubnet of the ClusterConfiguration",
            },
            super::EnvKey {
                key: "SERVICE_CIDR",
                example: "SERVICE_CIDR=10.96.0.0/12",
                meaning: "networking.serviceSubnet (kubeadm's default 10.96.0.0/12)",
            },
            super::EnvKey {
                key: "CONTROL_PLANE_ENDPOINT",
                example: "CONTROL_PLANE_ENDPOINT=lb.example.com:6443",
                meaning: "controlPlaneEndpoint: a load balancer before the control planes",
            },
        ];
        KEYS
    }

    /// https://kubernetes.io/docs/reference/networking/ports-and-protocols/
    fn ports(&self, _cluster: &Cluster, host: &Host) -> Vec<Port> {
        ports_of_roles(host, |role| match role {
            Role::Master => [API_PORT, 2379, 2380, KUBELET_PORT].map(Port::Tcp).to_vec(),
            Role::Node => vec![Port::Tcp(KUBELET_PORT)],
        })
    }

    fn name(&self) -> &'static str {
        "kubeadm"
    }

    /// A control-plane is reset while its Node exists, then deleted: the
    /// reset's remove-etcd-member phase reads the cluster's config and
    /// members through the API
    /// (<https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/>,
    /// cmd/kubeadm/app/cmd/phases/reset/removeetcdmember.go, v1.30); a node
    /// deleted first leaves its etcd member behind, and deleting 2 of 3
    /// control planes that way loses quorum.
    fn deletes_node_after_uninstall(&self, role: Role) -> bool {
        role == Role::Master
    }

    /// A control plane is not taken back: kubeadm's version policy refuses
    /// an `upgrade apply` to a version below the cluster's, and a failed
    /// `kubeadm upgrade apply` restores the control plane's static pods
    /// itself (<https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/#recovering-from-a-failure-state>).
    /// A worker's kubelet goes back as on any runtime.
    fn rollback_refused(&self, role: Role, from: &Version, to: &Version) -> Option<String> {
        if role == Role::Master {
            return Some(format!(
                "kubeadm does not take a control plane from {to} back to {from}: its version policy refuses an upgrade apply to a lower version, and a failed kubeadm upgrade apply restores the control plane's static pods itself (https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/#recovering-from-a-failure-state)"
            ));
        }
        super::rollback_across_minor(from, to)
    }

    fn plan_reads(&self) -> &'static [&'static str] {
        &[IMAGE_CONFIG, CONTAINERD_CONFIG]
    }

    /// The pause image `kubeadm config images list` prints for the version
    /// (`registry.k8s.io/pause:<PauseVersion>`): air-gapped, every pod
    /// sandbox needs it.
    fn expected_images(&self, version: &Version) -> Vec<String> {
        pause_image(version, None).into_iter().collect()
    }

    /// kubeadm's mandatory `InPathCheck`s (cmd/kubeadm/app/preflight/checks.go,
    /// v1.30; conntrack is dropped from v1.32) and the kubelet's swap rule
    /// (`failSwapOn`, default true:
    /// <https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory>).
    /// The image's kubeadm.yaml is merged here as init would, so a value it
    /// and `-e` both set is refused on every host before anything changes.
    fn prerequisites(&self, ctx: &HostContext) -> Result<Vec<Prerequisite>, RuntimeError> {
        init_config(ctx)?;
        let cfg = image_config(ctx)?;
        check_sandbox_image(ctx, &cfg)?;
        check_pause_image_carried(ctx, &cfg)?;
        hub::check_containerd_config(
            ctx,
            CONTAINERD_CONFIG,
            ctx.rootfs_texts.get(CONTAINERD_CONFIG).map(String::as_str),
        )?;
        let mut programs = vec!["crictl", "ip", "iptables", "mount", "nsenter"];
        if ctx
            .image
            .version
            .as_ref()
            .is_none_or(|v| v.major == 1 && v.minor < 32)
        {
            programs.push("conntrack");
        }
        let mut out: Vec<Prerequisite> = programs
            .into_iter()
            .map(|name| Prerequisite::Program {
                name: name.to_string(),
                why: "kubeadm's preflight requires it".to_string(),
            })
            .collect();
        let swap_allowed = matches!(
            cfg.get("KubeletConfiguration", &["failSwapOn"]),
            Some(Value::Bool(false))
        );
        if !swap_allowed {
            out.push(Prerequisite::SwapOff {
                why: "the kubelet refuses to start with swap on unless the image's KubeletConfiguration sets failSwapOn: false".to_string(),
            });
        }
        Ok(out)
    }

    /// kubeadm init writes it (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#more-information).
    fn admin_kubeconfig(&self) -> &'static str {
        ADMIN_CONF
    }

    /// A control plane that is gone leaves etcd through the etcd static pod
    /// of a surviving one: `etcdctl member remove ID`, the ID found by the
    /// member's name (kubeadm names it after the node), as the kubeadm HA
    /// docs replace a member
    /// (https://kubernetes.io/docs/tasks/administer-cluster/configure-upgrade-etcd/#replacing-a-failed-etcd-member).
    /// Values reach the script as arguments, never inside its text.
    fn forget_member(
        &self,
        first_master: &HostContext,
        host: &Host,
        node: &str,
    ) -> Result<Plan, RuntimeError> {
        let mut plan = first_master.plan(self.name(), "forget-member");
        if !host.is_master() {
            return Ok(plan);
        }
        if !crate::cluster::is_valid_node_name(node) {
            return Err(RuntimeError::BadNodeName {
                node: node.to_string(),
            });
        }
        plan.push(Step::run(
            "etcd-member-remove",
            format!("remove the etcd member of {node} ({})", host.key()),
            &[
                "bash",
                "-c",
                ETCD_MEMBER_REMOVE,
                "etcd-member-remove",
                KUBECTL,
                ADMIN_CONF,
                node,
            ],
            Check::UnitInactive {
                unit: "kubelet.service".into(),
            },
        ));
        Ok(plan)
    }

    /// containerd and the kubelet on every host; the control plane runs as
    /// the kubelet's static pods
    /// (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/).
    fn service_units(&self, _role: Role) -> Vec<&'static str> {
        vec!["containerd.service", "kubelet.service"]
    }

    fn cert_sources(&self) -> Vec<super::CertSource> {
        certs::sources()
    }

    fn renew_certs(
        &self,
        ctx: &HostContext,
        options: &super::RenewOptions,
    ) -> Result<super::CertRenewal, RuntimeError> {
        certs::renew(ctx, options)
    }

    fn backup(
        &self,
        ctx: &HostContext,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<super::backup::BackupPlan, RuntimeError> {
        backup::backup(ctx, exists)
    }

    fn tool_probes(&self, ctx: &HostContext) -> Vec<String> {
        backup::etcdctl_candidates(ctx)
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
        if !cluster.runtime_config.is_empty() {
            if let Err(e) = Config::from_image(None, 0)
                .and_then(|mut c| c.merge_clusterfile(&cluster.runtime_config))
            {
                v.push(Violation::ClusterfileConfig {
                    reason: e.to_string(),
                });
            }
        }
        finish_verify(v)
    }

    fn install(&self, ctx: &HostContext) -> Result<Plan, RuntimeError> {
        ctx.require_first_master(self.name())?;
        let mut plan = ctx.plan(self.name(), "install");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::Containerd)?;
        prepare(ctx, &mut plan);
        let config = init_config(ctx)?;
        // An init that stopped after writing admin.conf (its kubeconfig
        // phase) leaves a control plane whose API does not answer; kubeadm
        // init refuses to run over it (FileAvailable preflight errors), and
        // the kubeadm troubleshooting guide's way out is `kubeadm reset -f`
        // then init again
        // (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/troubleshooting-kubeadm/>).
        plan.push(Step::run(
            "reset-failed-init",
            "undo a kubeadm init that did not finish (kubeadm reset -f)",
            &[BIN, "reset", "-f"],
            Check::IfExistsAndFails {
                path: ADMIN_CONF.into(),
                unless_exists: Some(INIT_DONE.into()),
                argv: [
                    KUBECTL,
                    "--kubeconfig",
                    ADMIN_CONF,
                    QUERY_TIMEOUT,
                    "get",
                    "--raw=/readyz",
                ]
                .map(String::from)
                .to_vec(),
            },
        ));
        plan.push(Step::write_file(
            "kubeadm-config",
            CONFIG_FILE,
            FileContent::text(config),
            0o600,
        ));
        plan.push(Step::run(
            "init",
            "initialize the first control-plane (kubeadm init)",
            &[BIN, "init", "--config", CONFIG_FILE, "--upload-certs"],
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
        apply_manifests(ctx, &mut plan);
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
        plan.push(Step::write_file(
            "init-done",
            INIT_DONE,
            FileContent::text("kubeadm init finished\n"),
            0o644,
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
        let config = join_config(ctx, token, hash)?;
        let mut plan = ctx.plan(self.name(), "join");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::Containerd)?;
        prepare(ctx, &mut plan);
        // A join that stopped after the kubelet got its kubeconfig: undone
        // with `kubeadm reset -f` when the API does not answer the kubelet's
        // credentials (the troubleshooting guide's way out, as for init).
        // (The node's name is not known to the plan, and must not be: the
        // kubelet's own credentials reaching the API is what is asked.)
        let node_query = [
            KUBECTL,
            "--kubeconfig",
            KUBELET_CONF,
            QUERY_TIMEOUT,
            "get",
            "--raw=/readyz",
        ]
        .map(String::from)
        .to_vec();
        plan.push(Step::run(
            "reset-failed-join",
            "undo a kubeadm join that did not finish (kubeadm reset -f)",
            &[BIN, "reset", "-f"],
            Check::IfExistsAndFails {
                path: KUBELET_CONF.into(),
                unless_exists: Some(JOIN_DONE.into()),
                argv: node_query,
            },
        ));
        // Written only for a join that runs: the token is fresh on every
        // apply, and a host that joined keeps the file it joined with.
        let mut write = Step::write_secret_file(
            "kubeadm-config",
            CONFIG_FILE,
            FileContent::text(config),
            0o600,
        );
        write.check = Check::Creates {
            path: KUBELET_CONF.into(),
        };
        plan.push(write);
        plan.push(Step::run(
            "join",
            match ctx.role {
                Role::Master => "join as a control-plane (kubeadm join --config, controlPlane set)",
                Role::Node => "join as a worker (kubeadm join --config)",
            },
            &[BIN, "join", "--config", CONFIG_FILE],
            Check::Creates {
                path: KUBELET_CONF.into(),
            },
        ));
        if ctx.role == Role::Master {
            plan.push(Step::wait_file("wait-admin-conf", ADMIN_CONF, WAIT_SECS));
            kubeconfig_link(&mut plan);
        }
        plan.push(Step::write_file(
            "join-done",
            JOIN_DONE,
            FileContent::text("kubeadm join finished\n"),
            0o644,
        ));
        Ok(plan)
    }

    fn upgrade(&self, ctx: &HostContext, to: &Version) -> Result<Plan, RuntimeError> {
        ctx.check_upgrade(to)?;
        let mut plan = ctx.plan(self.name(), "upgrade");
        hooks::push_setup(ctx, &mut plan);
        hub::push_setup(ctx, &mut plan, hub::Mirror::Containerd)?;
        plan.push(Step::place_rootfs(ctx.role));
        plan.push(Step::daemon_reload(
            "daemon-reload",
            Check::IfChanged {
                steps: vec!["place-rootfs".into()],
                unit_active: None,
            },
        ));
        plan.push(Step::service(
            "start-containerd",
            "containerd.service",
            ServiceOp::Start,
        ));
        import_images(ctx, &mut plan);
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

    fn kubectl(&self) -> &'static [&'static str] {
        &[KUBECTL, "--kubeconfig", ADMIN_CONF]
    }

    /// kubectl with admin.conf on the first control-plane (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#remove-the-node>).
    fn remove_node(&self, ctx: &HostContext, node: &str) -> Result<Plan, RuntimeError> {
        super::remove_node_plan(ctx, self.name(), self.kubectl(), node)
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
        push_after_reset(&mut plan);
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
        hub::push_clean(ctx, &mut plan, hub::Mirror::Containerd);
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
