//! kubeadm's certificates: where they are and how one control plane renews
//! them, as "Certificate Management with kubeadm" (v1.30) says
//! (<https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-certs/>):
//!
//! - `kubeadm certs renew all` renews every certificate kubeadm manages and
//!   the client certificates of its kubeconfigs (admin.conf,
//!   super-admin.conf, controller-manager.conf, scheduler.conf), never the
//!   CAs; the kubelet rotates its own (kubelet.conf is not renewed);
//! - the control plane's static pods then restart to load them: "temporarily
//!   remove its manifest file from /etc/kubernetes/manifests/ and wait for
//!   20 seconds (see the fileCheckFrequency value in KubeletConfiguration)",
//!   then move it back and wait as long again, one pod after the other.
//!
//! New SANs on the API server's certificate follow "Reconfiguring a kubeadm
//! cluster" (v1.30, the API server's certSANs:
//! <https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-reconfigure/>):
//! the ClusterConfiguration with the new `apiServer.certSANs` in a file, the
//! old `apiserver.crt`/`apiserver.key` moved away (kept in [`BACKUP_DIR`]),
//! `kubeadm init phase certs apiserver --config FILE`; and, so that an upgrade, which regenerates the
//! certificate from the cluster's kubeadm-config ConfigMap, keeps them, that
//! ConfigMap updated once (`kubeadm init phase upload-config kubeadm`).

use serde_yaml_ng::{Mapping, Value};

use super::{init_documents, BIN};
use crate::cluster::Role;
use crate::plan::{Check, FileContent, Plan, Step};
use crate::runtime::{CertRenewal, CertSource, HostContext, RenewOptions, RuntimeError, API_PORT};

pub const PKI_DIR: &str = "/etc/kubernetes/pki";
pub const KUBECONFIG_DIR: &str = "/etc/kubernetes";
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Where a static pod's manifest waits while its pod is stopped.
pub const RESTART_DIR: &str = "/etc/kubernetes/sealrs-restart";
/// Where the API server's certificate and key before new SANs are kept.
pub const BACKUP_DIR: &str = "/etc/kubernetes/sealrs-backup";
/// The ClusterConfiguration with the added SANs (kubeadm's `--config`).
pub const CERT_SANS_CONFIG: &str = "/etc/kubernetes/sealrs-cert-sans.yaml";
pub const APISERVER_CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
pub const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// kubeadm's static pods, in the order they restart: etcd first, so the API
/// server comes back to a datastore that runs.
pub const STATIC_PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// How long the API server is given to answer again.
const API_WAIT_SECS: u64 = 300;

/// `/etc/kubernetes/pki` (with `etcd/`) and the kubeconfigs beside it.
pub fn sources() -> Vec<CertSource> {
    vec![
        CertSource::pem(PKI_DIR, true),
        CertSource::kubeconfigs(KUBECONFIG_DIR),
    ]
}

/// The renewal of one control plane (see the module docs).
pub fn renew(ctx: &HostContext, options: &RenewOptions) -> Result<CertRenewal, RuntimeError> {
    if ctx.role != Role::Master {
        return Err(RuntimeError::WrongHost {
            runtime: "kubeadm",
            host: ctx.host_key(),
            reason: "only control planes keep kubeadm's certificates; a worker's kubelet rotates its own".into(),
        });
    }
    let mut plan = ctx.plan("kubeadm", "renew-certs");
    let made_by_kubeadm = Check::IfExists {
        path: format!("{PKI_DIR}/ca.crt"),
    };
    if !options.alt_names.is_empty() {
        plan.push(Step::write_file(
            "cert-sans-config",
            CERT_SANS_CONFIG,
            FileContent::text(cluster_config_with_sans(ctx, &options.alt_names)?),
            0o600,
        ));
        plan.push(Step::ensure_dir("backup-dir", BACKUP_DIR, 0o700));
        for (id, path) in [("crt", APISERVER_CRT), ("key", APISERVER_KEY)] {
            let name = path.rsplit('/').next().unwrap_or(path);
            plan.push(Step::run(
                &format!("move-apiserver-{id}"),
                format!("move the API server's {name} to {BACKUP_DIR}"),
                &["mv", "-f", path, &format!("{BACKUP_DIR}/{name}")],
                Check::IfExists { path: path.into() },
            ));
        }
        plan.push(Step::run(
            "apiserver-cert",
            "make the API server's certificate with the new SANs (kubeadm init phase certs apiserver)",
            &[BIN, "init", "phase", "certs", "apiserver", "--config", CERT_SANS_CONFIG],
            Check::Creates {
                path: APISERVER_CRT.into(),
            },
        ));
        if ctx.is_first_master() {
            plan.push(Step::run(
                "upload-config",
                "keep the SANs in the cluster's kubeadm-config for upgrades (kubeadm init phase upload-config kubeadm)",
                &[BIN, "init", "phase", "upload-config", "kubeadm", "--config", CERT_SANS_CONFIG],
                made_by_kubeadm.clone(),
            ));
        }
    }
    plan.push(Step::run(
        "renew",
        "renew the certificates kubeadm manages (kubeadm certs renew all)",
        &[BIN, "certs", "renew", "all"],
        made_by_kubeadm,
    ));
    restart_static_pods(&mut plan, options.pod_restart_wait_secs);
    plan.push(Step::wait_port(
        "wait-api",
        "127.0.0.1",
        API_PORT,
        API_WAIT_SECS,
    ));
    Ok(CertRenewal::Plan(plan))
}

/// Each static pod in turn: its manifest out of the kubelet's directory for
/// one file check, then back for another.
fn restart_static_pods(plan: &mut Plan, wait_secs: u64) {
    plan.push(Step::ensure_dir("restart-dir", RESTART_DIR, 0o700));
    let wait = wait_secs.to_string();
    for pod in STATIC_PODS {
        let live = format!("{MANIFESTS_DIR}/{pod}.yaml");
        let parked = format!("{RESTART_DIR}/{pod}.yaml");
        plan.push(Step::run(
            &format!("stop-{pod}"),
            format!("stop the {pod} static pod (its manifest out of {MANIFESTS_DIR})"),
            &["mv", "-f", &live, &parked],
            Check::IfExists { path: live.clone() },
        ));
        plan.push(Step::run(
            &format!("wait-stop-{pod}"),
            format!("wait {wait_secs}s for the kubelet to stop {pod}"),
            &["sleep", &wait],
            Check::ReadOnly,
        ));
        plan.push(Step::run(
            &format!("start-{pod}"),
            format!("start the {pod} static pod again (its manifest back)"),
            &["mv", "-f", &parked, &live],
            Check::IfExists {
                path: parked.clone(),
            },
        ));
        plan.push(Step::run(
            &format!("wait-start-{pod}"),
            format!("wait {wait_secs}s for the kubelet to start {pod}"),
            &["sleep", &wait],
            Check::ReadOnly,
        ));
    }
}

/// The ClusterConfiguration `kubeadm init` got (the image's, with the
/// version, endpoint and CIDRs), its `apiServer.certSANs` extended by
/// `alt_names`; after this host's InitConfiguration (its advertise address,
/// which the certificate names too).
fn cluster_config_with_sans(
    ctx: &HostContext,
    alt_names: &[String],
) -> Result<String, RuntimeError> {
    const KIND: &str = "ClusterConfiguration";
    let docs = init_documents(ctx)?;
    let text = docs.render(&[KIND]);
    let bad = |reason: String| RuntimeError::BadConfig {
        runtime: "kubeadm",
        file: CERT_SANS_CONFIG.into(),
        reason,
    };
    let mut doc: Mapping = if text.trim().is_empty() {
        let mut m = Mapping::new();
        m.insert("apiVersion".into(), "kubeadm.k8s.io/v1beta3".into());
        m.insert("kind".into(), KIND.into());
        m
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    let api = doc
        .entry("apiServer".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    let api = api
        .as_mapping_mut()
        .ok_or_else(|| bad("apiServer is not a mapping".into()))?;
    let sans = api
        .entry("certSANs".into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    let sans = sans
        .as_sequence_mut()
        .ok_or_else(|| bad("apiServer.certSANs is not a list".into()))?;
    for name in alt_names {
        let name = Value::from(name.as_str());
        if !sans.contains(&name) {
            sans.push(name);
        }
    }
    let cluster = serde_yaml_ng::to_string(&doc).map_err(|e| bad(e.to_string()))?;
    let init = docs.render(&["InitConfiguration"]);
    Ok(if init.is_empty() {
        cluster
    } else {
        format!("{init}---\n{cluster}")
    })
}
