//! The in-cluster registry ("the hub"), served as sealos serves its
//! `sealos.hub:5000`, as plan steps every runtime adds to its plans.
//!
//! sealos (labring/sealos `pkg/registry`, `scripts/init-registry.sh` of
//! labring-actions/runtime, and its docs "How to use sealos private
//! registry") runs the distribution registry as `registry.service` on the
//! first node over the `registry/` tree its images carry, with htpasswd auth
//! (a fixed `admin:passw0rd` there; a password per cluster here), names it
//! `sealos.hub` in every host's `/etc/hosts`, and points each node's
//! container runtime at it. Here:
//!
//! - **Serving host**: the first host with sealos' `registry` role, else the
//!   first master (`Cluster.GetRegistryIPAndPort` in labring/sealos
//!   `pkg/types/v1beta1`). It merges the rootfs' `registry/`
//!   tree (the distribution registry's filesystem layout,
//!   `docker/registry/v2/{blobs,repositories}`) into [`HUB_DATA`] with hard
//!   links, once per image (a marker named with the rootfs digest), so the
//!   trees of several images add up; it writes the registry's config and a
//!   0600 bcrypt htpasswd (the only hash the registry reads) with the
//!   cluster's password, and runs `<rootfs>/bin/registry serve CONFIG` (the
//!   binary the image carries) as the systemd unit [`HUB_UNIT`]. The storage
//!   is read-only (`storage.maintenance.readonly`): the registry never writes
//!   into the linked files, which are also the rootfs'.
//!   Application images' trees are merged the same way once they are
//!   unpacked on the first master (`apply`'s hub).
//! - **Only the serving host gets the tree**: `sealrs build` marks the layers
//!   copied to `/registry` (`sealrs.io/registry-tree`) and the operator
//!   sends them to no other host; their requests say the tree is served
//!   elsewhere ([`HostContext::hub_elsewhere`]). Images built elsewhere have
//!   no mark, and every host gets their tree (as before), unused.
//! - **Every host**: `<ip> sealos.hub # sealrs-hub` in `/etc/hosts` (one
//!   line, rewritten in place, removed by reset), and its container runtime
//!   pulls through the hub first ([`Mirror`]) for the registries the images'
//!   lists (`images/shim/*`) name, plus containerd's `_default` fallback (the
//!   tree may also hold images harvested from manifests and charts), so pods
//!   pull by their original names with no internet.
//!
//! The hub is there when the rootfs carries a registry tree (or the request
//! says the cluster serves one this host lacks: withheld from it, or an
//! application image's) and the saved cluster has a hub password (the
//! operator makes one per cluster). A broken
//! blob in the tree is refused by the installer's verify on the serving host
//! before anything changes (`installer::hub`).

use std::collections::BTreeSet;

use base64::Engine;
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest as _, Sha256};

use super::{unit::exec_arg, HostContext, RuntimeError};
use crate::cluster::{Address, Cluster, Host, Secret};
use crate::plan::{Check, FileContent, Plan, ServiceOp, Step};
use crate::reference::Reference;

/// The name every host resolves to the serving host, as sealos names it.
pub const HUB_NAME: &str = "sealos.hub";
pub const HUB_PORT: u16 = 5000;
/// `sealos.hub:5000`: what a runtime's mirror config points at.
pub const HUB_ENDPOINT: &str = "sealos.hub:5000";
/// The htpasswd user.
pub const HUB_USER: &str = "sealrs";
pub const HUB_DIR: &str = crate::host_path!("/hub");
/// The registry's `storage.filesystem.rootdirectory`.
pub const HUB_DATA: &str = crate::host_path!("/hub/data");
pub const HUB_CONFIG: &str = crate::host_path!("/hub/config.yml");
pub const HUB_HTPASSWD: &str = crate::host_path!("/hub/htpasswd");
/// Markers of the images whose trees are merged into [`HUB_DATA`].
pub const HUB_MERGED: &str = crate::host_path!("/hub/merged");
pub const HUB_UNIT: &str = "sealrs-hub.service";
/// The registry tree in a rootfs, and what a registry serves from it.
pub const TREE: &str = "registry/docker/registry/v2/";
/// The distribution registry binary the image carries.
pub const REGISTRY_BIN: &str = "bin/registry";
/// containerd's hosts directory (`config_path`).
pub const CERTS_D: &str = "/etc/containerd/certs.d";
/// containerd's fallback namespace for registries without their own.
pub const DEFAULT_NAMESPACE: &str = "_default";
/// The image lists a rootfs names its images in (sealos' `images/shim/`).
pub const LISTS: &str = "images/shim/";
pub const K3S_REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
/// The image's own registries.yaml (the k3s layout's rule).
const K3S_IMAGE_REGISTRIES: &str = "etc/registries.yaml";
pub const K0S_DROP_IN: &str = "/etc/k0s/containerd.d/sealrs-hub.toml";
/// What marks the lines and files the hub wrote.
const MARK: &str = "# sealrs-hub";
/// bcrypt cost, as `htpasswd -B` by default: the registry checks the hash
/// on every request, and the password's strength is its 32 random
/// characters, not the cost.
const BCRYPT_COST: u32 = 5;

/// How a runtime's container runtime is told to pull through the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    /// containerd with `config_path = "/etc/containerd/certs.d"`: one
    /// `hosts.toml` per registry (containerd docs/hosts.md, v1.6.20 as
    /// Debian 12 ships it: `server`, `[host."URL"]` with `capabilities` and
    /// `header`, and the `_default` namespace).
    Containerd,
    /// k3s' `/etc/rancher/k3s/registries.yaml`: `mirrors.<registry>.endpoint`
    /// and `configs."sealos.hub:5000".auth`
    /// (<https://docs.k3s.io/installation/private-registry>, with the `"*"`
    /// wildcard mirror).
    K3s,
    /// k0s' containerd: the [`Mirror::Containerd`] files and a drop-in in
    /// `/etc/k0s/containerd.d/` that sets the CRI `config_path` (k0s' "managed
    /// dynamic runtime configuration", v1.27.1+:
    /// <https://docs.k0sproject.io/stable/runtime/>).
    K0s,
}

/// Whether `files` (rootfs-relative) hold a registry tree.
pub fn carries_tree(files: &[String]) -> bool {
    files.iter().any(|f| f.starts_with(TREE))
}

/// sealos' host role for the registry (a Clusterfile's `roles: [master,
/// registry]`), which the cluster keeps among a host's labels.
const REGISTRY_ROLE: &str = "registry";

/// The host that serves the hub: the first with the `registry` role, else
/// the first master, as sealos picks its registry host.
pub fn serving_host(cluster: &Cluster) -> Option<&Host> {
    cluster
        .hosts
        .iter()
        .find(|h| h.labels.iter().any(|l| l == REGISTRY_ROLE))
        .or_else(|| cluster.first_master())
}

/// Whether `host` serves the hub ([`serving_host`]).
pub fn serves(cluster: &Cluster, host: &Host) -> bool {
    serving_host(cluster).is_some_and(|s| s.address == host.address)
}

/// The hub's password when the cluster has a hub this host must know of.
fn password<'a>(ctx: &'a HostContext) -> Option<&'a Secret> {
    if !carries_tree(&ctx.rootfs_files) && !ctx.hub_elsewhere {
        return None;
    }
    ctx.cluster.status.hub_password.as_ref()
}

/// The rootfs files whose text the hub reads to plan: the image lists.
pub fn plan_reads(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.strip_prefix(LISTS).is_some_and(|rest| !rest.is_empty()))
        .cloned()
        .collect()
}

/// The registries the image lists name (`docker.io`, `registry.k8s.io`),
/// sorted; lines that are blank, comments or no image name are skipped
/// (the build already reported them).
pub fn listed_registries(ctx: &HostContext) -> BTreeSet<String> {
    ctx.rootfs_texts
        .iter()
        .filter(|(path, _)| path.starts_with(LISTS))
        .flat_map(|(_, text)| text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| Reference::parse(l).ok())
        .map(|r| r.registry)
        .filter(|r| r != HUB_ENDPOINT)
        .collect()
}

/// The `user:bcrypt` line of the htpasswd file. The salt comes from the
/// password, so the same password gives the same file and a rerun
/// changes nothing.
pub fn htpasswd_line(password: &Secret) -> String {
    let mut h = Sha256::new();
    h.update(b"sealrs-hub htpasswd salt\0");
    h.update(password.expose().as_bytes());
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&h.finalize()[..16]);
    let hash = bcrypt::hash_with_salt(password.expose(), BCRYPT_COST, salt)
        .expect("a bcrypt cost of 5 is valid")
        .format_for_version(bcrypt::Version::TwoY);
    format!("{HUB_USER}:{hash}\n")
}

/// The distribution registry's config (docs/configuration.md of
/// distribution v2.8): the merged tree, read-only, htpasswd auth, port 5000
/// on every address.
pub fn registry_config() -> String {
    format!(
        "# Written by sealrs: the in-cluster registry {HUB_ENDPOINT}.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {HUB_DATA}
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: true
http:
  addr: :{HUB_PORT}
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: {HUB_NAME}
    path: {HUB_HTPASSWD}
"
    )
}

fn unit(rootfs: &str) -> String {
    let bin = format!("{}/{REGISTRY_BIN}", rootfs.trim_end_matches('/'));
    format!(
        "[Unit]
Description=sealrs in-cluster registry ({HUB_ENDPOINT})
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={} serve {}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
",
        exec_arg(&bin),
        exec_arg(HUB_CONFIG)
    )
}

/// `Basic base64(user:password)`, the header a mirror sends.
fn basic_auth(password: &Secret) -> String {
    let pair = format!("{HUB_USER}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The `hosts.toml` of `namespace` (a registry, or `_default`): the hub
/// first, with the credentials in an `Authorization` header, then the
/// registry itself (`server`; `_default` has none, so containerd uses the
/// registry asked for).
pub fn hosts_toml(namespace: &str, password: &Secret) -> String {
    let mut out = format!("{MARK}: pull through the in-cluster registry {HUB_ENDPOINT} first.\n");
    if namespace == HUB_ENDPOINT {
        out.push_str(&format!("server = \"http://{HUB_ENDPOINT}\"\n"));
    } else if namespace == crate::reference::DEFAULT_REGISTRY {
        out.push_str("server = \"https://registry-1.docker.io\"\n");
    } else if namespace != DEFAULT_NAMESPACE {
        out.push_str(&format!("server = \"https://{namespace}\"\n"));
    }
    let host = format!("http://{HUB_ENDPOINT}");
    out.push_str(&format!(
        "\n[host.\"{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"{host}\".header]\n  Authorization = \"{}\"\n",
        basic_auth(password)
    ));
    out
}

/// k3s' registries.yaml entries for the hub, merged over the image's own.
pub fn registries_yaml(registries: &BTreeSet<String>, password: &Secret) -> String {
    let key = |s: &str| Value::String(s.to_string());
    let mut mirrors = Mapping::new();
    for registry in registries.iter().map(String::as_str).chain(["*"]) {
        let mut entry = Mapping::new();
        entry.insert(
            key("endpoint"),
            Value::Sequence(vec![key(&format!("http://{HUB_ENDPOINT}"))]),
        );
        mirrors.insert(key(registry), Value::Mapping(entry));
    }
    let mut auth = Mapping::new();
    auth.insert(key("username"), key(HUB_USER));
    auth.insert(key("password"), key(password.expose()));
    let mut config = Mapping::new();
    config.insert(key("auth"), Value::Mapping(auth));
    let mut configs = Mapping::new();
    configs.insert(key(HUB_ENDPOINT), Value::Mapping(config));
    let mut root = Mapping::new();
    root.insert(key("mirrors"), Value::Mapping(mirrors));
    root.insert(key("configs"), Value::Mapping(configs));
    serde_yaml_ng::to_string(&Value::Mapping(root)).expect("a mapping of strings serializes")
}

/// The k0s containerd drop-in: the CRI plugin reads `hosts.toml` files.
fn k0s_drop_in() -> String {
    format!(
        "{MARK}: the CRI plugin reads the registry hosts sealrs writes.\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{CERTS_D}\"\n"
    )
}

/// `sh -c` text: `/etc/hosts` without the hub's line, plus `$1 $2 # sealrs-hub`
/// when `$1` is set; rewritten in place (a container's `/etc/hosts` may be a
/// mount), created when missing (a minimal host has none).
const HOSTS_SCRIPT: &str = r#"set -eu
f=/etc/hosts
touch "$f"
kept=$(grep -v -e ' # sealrs-hub$' "$f" || true)
{
  if [ -n "$kept" ]; then printf '%s\n' "$kept"; fi
  if [ -n "$1" ]; then printf '%s %s # sealrs-hub\n' "$1" "$2"; fi
} > "$f.sealrs-hub"
cat "$f.sealrs-hub" > "$f"
rm -f "$f.sealrs-hub""#;

/// The serving host's address for `/etc/hosts`, which takes IPs only.
fn serving_ip(ctx: &HostContext) -> Result<String, RuntimeError> {
    let address = serving_host(ctx.cluster).map_or(ctx.first_master, |h| &h.address);
    match address {
        Address::Ip(ip) => Ok(ip.to_string()),
        Address::Hostname(name) => Err(RuntimeError::BadConfig {
            runtime: "hub",
            file: "registry/".into(),
            reason: format!(
                "the image carries a registry tree, which {name} serves as {HUB_NAME} through /etc/hosts, and /etc/hosts takes an IP: name that host by its IP"
            ),
        }),
    }
}

/// The marker of the image unpacked at `rootfs` (the last component is its
/// digest) whose tree is merged into [`HUB_DATA`]; its tree was checked then.
pub fn merged_marker(rootfs: &str) -> String {
    let key = rootfs
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("rootfs");
    format!("{HUB_MERGED}/{key}")
}

/// The hub's steps for an install, join or upgrade: on the serving host the
/// registry, on every host the name and the mirror config. Nothing when
/// the cluster has no hub.
pub fn push_setup(ctx: &HostContext, plan: &mut Plan, mirror: Mirror) -> Result<(), RuntimeError> {
    let Some(password) = password(ctx) else {
        return Ok(());
    };
    let ip = serving_ip(ctx)?;
    if serves(ctx.cluster, ctx.host) {
        push_serve(ctx, plan, password);
    }
    plan.push(Step::run(
        "hub-hosts-line",
        format!("name {ip} {HUB_NAME} in /etc/hosts"),
        &["sh", "-c", HOSTS_SCRIPT, "hub-hosts", &ip, HUB_NAME],
        Check::FileContains {
            path: "/etc/hosts".into(),
            text: format!("{ip} {HUB_NAME} {MARK}\n"),
        },
    ));
    let registries = listed_registries(ctx);
    match mirror {
        Mirror::Containerd | Mirror::K0s => {
            push_hosts_tomls(plan, &registries, password);
            if mirror == Mirror::K0s {
                plan.push(Step::write_file(
                    "hub-k0s-drop-in",
                    K0S_DROP_IN,
                    FileContent::text(k0s_drop_in()),
                    0o644,
                ));
            }
        }
        Mirror::K3s => {
            plan.push(Step::write_secret_file(
                "hub-registries-yaml",
                K3S_REGISTRIES,
                FileContent::YamlMerge {
                    base: Some(format!(
                        "{}/{K3S_IMAGE_REGISTRIES}",
                        ctx.rootfs.trim_end_matches('/')
                    )),
                    base_is_template: false,
                    overlay: registries_yaml(&registries, password),
                    keep: None,
                },
                0o600,
            ));
        }
    }
    Ok(())
}

/// The containerd namespaces the hub writes: each listed registry, the
/// fallback and the hub itself.
fn namespaces(registries: &BTreeSet<String>) -> Vec<String> {
    registries
        .iter()
        .cloned()
        .chain([DEFAULT_NAMESPACE.to_string(), HUB_ENDPOINT.to_string()])
        .collect()
}

fn push_hosts_tomls(plan: &mut Plan, registries: &BTreeSet<String>, password: &Secret) {
    for (i, namespace) in namespaces(registries).iter().enumerate() {
        plan.push(
            Step::write_secret_file(
                &format!("hub-mirror-{i}"),
                &format!("{CERTS_D}/{namespace}/hosts.toml"),
                FileContent::text(hosts_toml(namespace, password)),
                0o600,
            )
            .titled(format!("pull {namespace} images through {HUB_ENDPOINT}")),
        );
    }
}

/// The registry on the serving host: the merged tree, its config and
/// htpasswd, the unit, running and answering.
fn push_serve(ctx: &HostContext, plan: &mut Plan, password: &Secret) {
    let rootfs = ctx.rootfs.trim_end_matches('/');
    plan.push(Step::ensure_dir("hub-dir", HUB_DIR, 0o700));
    plan.push(Step::ensure_dir("hub-data", HUB_DATA, 0o755));
    // Only application images may have trees (merged when they are applied).
    if carries_tree(&ctx.rootfs_files) {
        let marker = merged_marker(&ctx.rootfs);
        let tree = format!("{rootfs}/registry/docker");
        plan.push(Step::run(
            "hub-merge",
            format!("merge the image's registry tree into {HUB_DATA} (hard links)"),
            &["cp", "-a", "-l", "--remove-destination", &tree, HUB_DATA],
            Check::Creates {
                path: marker.clone(),
            },
        ));
        plan.push(Step::write_file(
            "hub-merged",
            &marker,
            FileContent::text(format!("{tree}\n")),
            0o644,
        ));
    }
    plan.push(Step::write_file(
        "hub-config",
        HUB_CONFIG,
        FileContent::text(registry_config()),
        0o644,
    ));
    plan.push(Step::write_secret_file(
        "hub-htpasswd",
        HUB_HTPASSWD,
        FileContent::text(htpasswd_line(password)),
        0o600,
    ));
    plan.push(Step::install_unit("hub-unit", HUB_UNIT, unit(rootfs)));
    plan.push(Step::service("hub-enable", HUB_UNIT, ServiceOp::Enable));
    plan.push(Step::restart_if_changed(
        "hub-restart",
        HUB_UNIT,
        &["hub-config", "hub-htpasswd", "hub-unit"],
    ));
    plan.push(Step::service("hub-start", HUB_UNIT, ServiceOp::Start));
    plan.push(Step::wait_port("hub-wait", "127.0.0.1", HUB_PORT, 60));
}

/// Runs only where `path` is a file the hub wrote.
fn if_ours(path: &str) -> Check {
    Check::IfOutput {
        argv: [
            "sh",
            "-c",
            "grep -l -F -e \"$1\" \"$2\" 2>/dev/null || true",
            "hub-ours",
            MARK,
            path,
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// What [`push_setup`] left, removed on uninstall of a cluster that has (or
/// had) a hub: every host, and each step finds nothing to do where the hub
/// never was.
pub fn push_clean(ctx: &HostContext, plan: &mut Plan, mirror: Mirror) {
    if ctx.cluster.status.hub_password.is_none() && !carries_tree(&ctx.rootfs_files) {
        return;
    }
    plan.push(Step::service("hub-stop", HUB_UNIT, ServiceOp::Stop));
    plan.push(Step::service("hub-disable", HUB_UNIT, ServiceOp::Disable));
    let unit_file = format!("/etc/systemd/system/{HUB_UNIT}");
    plan.push(Step::remove("hub-remove-unit", &unit_file));
    plan.push(Step::daemon_reload(
        "hub-daemon-reload",
        Check::IfChanged {
            steps: vec!["hub-remove-unit".into()],
            unit_active: None,
        },
    ));
    plan.push(Step::remove("hub-remove-dir", HUB_DIR));
    plan.push(Step::run(
        "hub-remove-hosts-line",
        format!("remove {HUB_NAME} from /etc/hosts"),
        &["sh", "-c", HOSTS_SCRIPT, "hub-hosts", "", HUB_NAME],
        Check::IfOutput {
            argv: [
                "sh",
                "-c",
                "grep -F -e ' # sealrs-hub' /etc/hosts 2>/dev/null || true",
            ]
            .map(String::from)
            .to_vec(),
        },
    ));
    match mirror {
        Mirror::Containerd | Mirror::K0s => {
            for (i, namespace) in namespaces(&listed_registries(ctx)).iter().enumerate() {
                let dir = format!("{CERTS_D}/{namespace}");
                let file = format!("{dir}/hosts.toml");
                let mut remove = Step::remove(&format!("hub-remove-mirror-{i}"), &file);
                remove.check = if_ours(&file);
                plan.push(remove);
                plan.push(Step::remove_empty_dir(
                    &format!("hub-remove-mirror-dir-{i}"),
                    &dir,
                ));
            }
            plan.push(Step::remove_empty_dir("hub-remove-certs-d", CERTS_D));
            if mirror == Mirror::K0s {
                let mut remove = Step::remove("hub-remove-k0s-drop-in", K0S_DROP_IN);
                remove.check = if_ours(K0S_DROP_IN);
                plan.push(remove);
            }
        }
        // k3s' uninstall removes /etc/rancher/k3s with registries.yaml.
        Mirror::K3s => {}
    }
}

/// A registry tree this runtime's containerd would not pull through:
/// kubeadm's containerd reads `hosts.toml` files only with the CRI
/// `config_path` set in the image's `config.toml` (`file`, its `text`).
pub fn check_containerd_config(
    ctx: &HostContext,
    file: &str,
    text: Option<&str>,
) -> Result<(), RuntimeError> {
    if password(ctx).is_none() {
        return Ok(());
    }
    let config = text.and_then(|t| t.parse::<toml::Table>().ok());
    let found = config
        .as_ref()
        .and_then(|c| c.get("plugins"))
        .and_then(|p| p.get("io.containerd.grpc.v1.cri"))
        .and_then(|c| c.get("registry"))
        .and_then(|r| r.get("config_path"))
        .and_then(|p| p.as_str());
    if found == Some(CERTS_D) {
        return Ok(());
    }
    Err(RuntimeError::BadConfig {
        runtime: "kubeadm",
        file: file.to_string(),
        reason: format!(
            "the image carries a registry tree that {HUB_ENDPOINT} serves, but containerd's CRI would not pull through it: {}; set config_path = \"{CERTS_D}\" under [plugins.\"io.containerd.grpc.v1.cri\".registry] and build again",
            match found {
                Some(other) => format!("config_path is {other:?}"),
                None => "no config_path".to_string(),
            }
        ),
    })
}

#[cfg(test)]
mod tests;
