//! kubeadm's stacked etcd: backed up with `etcdctl snapshot save` through the
//! certificates kubeadm made for its etcd static pod, and restored with
//! `etcdctl snapshot restore` into a new data directory that the etcd
//! manifest is then pointed at, as "Operating etcd clusters for Kubernetes"
//! (<https://kubernetes.io/docs/tasks/administer-cluster/configure-upgrade-etcd/>,
//! Kubernetes v1.30: "Built-in snapshot", "Restoring an etcd cluster") does
//! it: the API server stopped while etcd is replaced, the other control
//! planes reset first and joined again after. Its etcdctl is the
//! image's (`bin/etcdctl` in the rootfs), else the host's: a kubeadm host
//! runs etcd from the registry.k8s.io/etcd image and has no etcdctl itself.

use crate::cluster::Host;
use crate::runtime::backup::{
    unsupported, BackupPlan, HostCommand, RestorePlan, SnapshotKind, Source, WORK_DIR,
};
use crate::runtime::{HostContext, RuntimeError};

/// kubeadm's etcd certificates (`/etc/kubernetes/pki/etcd`): the CA, and the
/// client certificate its liveness probe uses (`kubeadm certs`).
const CACERT: &str = "/etc/kubernetes/pki/etcd/ca.crt";
const CERT: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.crt";
const KEY: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.key";
/// etcd listens for clients on the host's loopback (`--listen-client-urls`).
const ENDPOINT: &str = "https://127.0.0.1:2379";
const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// Where the API server's and etcd's manifests wait while etcd is replaced
/// (outside the manifests directory, so the kubelet stops both pods).
const ASIDE: &str = "/etc/kubernetes/sealrs-restore";
const SNAPSHOT: &str = crate::host_path!("/backup/etcd-snapshot.db");
/// How long etcd may take to stop or to come back under the kubelet.
const WAIT_SECS: u64 = 180;

/// Where a host may hold etcdctl besides the image's rootfs: the usual
/// PATH of a command run over SSH.
const HOST_ETCDCTL: &[&str] = &["/usr/local/bin/etcdctl", "/usr/bin/etcdctl"];

/// The paths [`etcdctl_path`] looks for, in its order.
pub(super) fn etcdctl_candidates(ctx: &HostContext) -> Vec<String> {
    let mut paths = vec![format!("{}/bin/etcdctl", ctx.rootfs.trim_end_matches('/'))];
    paths.extend(HOST_ETCDCTL.iter().map(|s| s.to_string()));
    paths
}

/// The image's etcdctl, else the host's, else why there is none (asked
/// before any command runs, so nothing on the host has changed).
fn etcdctl_path(ctx: &HostContext, exists: &dyn Fn(&str) -> bool) -> Result<String, RuntimeError> {
    let paths = etcdctl_candidates(ctx);
    paths.iter().find(|p| exists(p)).cloned().ok_or_else(|| {
        unsupported(
            "kubeadm",
            format!(
                "{} has no etcdctl: not in the image ({}) nor on the host ({}); kubeadm runs etcd from the registry.k8s.io/etcd image, whose etcdctl the host cannot call: put etcdctl (of the cluster's etcd version) in the image's bin/, build and upgrade to it, then run this again",
                ctx.host_key(),
                paths[0],
                HOST_ETCDCTL.join(", ")
            ),
        )
    })
}

/// etcdctl `bin` with kubeadm's etcd client certificate, then `args`.
fn etcdctl(bin: &str, args: &[&str]) -> Vec<String> {
    [
        bin,
        &format!("--endpoints={ENDPOINT}"),
        &format!("--cacert={CACERT}"),
        &format!("--cert={CERT}"),
        &format!("--key={KEY}"),
        "--dial-timeout=3s",
        "--command-timeout=10s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(args.iter().map(|s| s.to_string()))
    .collect()
}

fn command(title: &str, argv: Vec<String>) -> HostCommand {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    HostCommand::new(title, &argv)
}

/// Moves `from` to `to` when `from` exists (a rerun after a stop midway finds
/// it moved already).
fn move_if_there(title: &str, from: &str, to: &str) -> HostCommand {
    HostCommand::new(
        title,
        &[
            "sh",
            "-c",
            r#"[ ! -e "$1" ] || mv -f -- "$1" "$2""#,
            "sh",
            from,
            to,
        ],
    )
}

pub(super) fn backup(
    ctx: &HostContext,
    exists: &dyn Fn(&str) -> bool,
) -> Result<BackupPlan, RuntimeError> {
    let bin = etcdctl_path(ctx, exists)?;
    let mut save = etcdctl(&bin, &["snapshot", "save", SNAPSHOT]);
    save.insert(0, "env".into());
    save.insert(1, "ETCDCTL_API=3".into());
    Ok(BackupPlan {
        runtime: "kubeadm".into(),
        host: ctx.host_key(),
        kind: SnapshotKind::EtcdSnapshot,
        method: "etcdctl snapshot save on the etcd static pod's client endpoint with its certificates: etcd writes a consistent point-in-time copy while it serves (Kubernetes v1.30, Operating etcd clusters, Built-in snapshot)".into(),
        steps: vec![
            command("etcd is healthy here", etcdctl(&bin, &["endpoint", "health"])),
            HostCommand::new("work directory (0700)", &["install", "-d", "-m", "0700", WORK_DIR]),
            command("take the snapshot", save),
        ],
        source: Source::File(SNAPSHOT.into()),
        secrets: Vec::new(),
        cleanup: vec![HostCommand::new(
            "remove the snapshot from the host",
            &["rm", "-rf", "--", WORK_DIR],
        )],
    })
}

pub(super) fn restore(
    first: &HostContext,
    others: &[&Host],
    kind: SnapshotKind,
    stamp: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Result<RestorePlan, RuntimeError> {
    if kind != SnapshotKind::EtcdSnapshot {
        return Err(unsupported(
            "kubeadm",
            format!("a {kind} is not an etcd snapshot"),
        ));
    }
    let node = first
        .cluster
        .status
        .hosts
        .get(&first.host_key())
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| {
            unsupported(
                "kubeadm",
                format!(
                    "{} has no node name saved; run sealrs run first",
                    first.host_key()
                ),
            )
        })?;
    let bin = etcdctl_path(first, exists)?;
    let peer = format!("https://{}:2380", first.host.address.url_host());
    let upload = format!("{WORK_DIR}/restore-{stamp}.db");
    let data_dir = format!("/var/lib/etcd-restore-{stamp}");
    let apiserver = format!("{MANIFESTS}/kube-apiserver.yaml");
    let etcd = format!("{MANIFESTS}/etcd.yaml");
    let apiserver_aside = format!("{ASIDE}/kube-apiserver.yaml");
    let etcd_aside = format!("{ASIDE}/etcd.yaml");
    let mut down = vec![
        "sh".to_string(),
        "-c".into(),
        "! \"$@\"".into(),
        "sh".into(),
    ];
    down.extend(etcdctl(&bin, &["endpoint", "health"]));
    let mut restore = vec!["env".to_string(), "ETCDCTL_API=3".into(), bin.clone()];
    restore.extend(
        [
            "snapshot",
            "restore",
            &upload,
            &format!("--data-dir={data_dir}"),
            &format!("--name={node}"),
            &format!("--initial-cluster={node}={peer}"),
            &format!("--initial-advertise-peer-urls={peer}"),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    // The etcd-data volume's hostPath, as the docs say to change it; the
    // container's mountPath and --data-dir stay /var/lib/etcd.
    let repoint = format!(r"s#^\( *path: \)/var/lib/etcd[^/ ]*$#\1{data_dir}#");
    Ok(RestorePlan {
        runtime: "kubeadm".into(),
        first: first.host_key(),
        upload_to: upload.clone(),
        method: format!("the API server and etcd static pods stopped (manifests moved to {ASIDE}), etcdctl snapshot restore into {data_dir}, the etcd manifest's etcd-data hostPath pointed at it, both pods back (Kubernetes v1.30, Operating etcd clusters, Restoring an etcd cluster)"),
        // The other control planes leave first (`kubeadm reset`: their etcd
        // member removed, its data and the manifests gone; kubeadm reset
        // reference, v1.30), the restored etcd is a one-member cluster,
        // and they join it again as `kubeadm join --control-plane` does
        // ("Restoring an etcd cluster": restore one member, then add the
        // others).
        stop_others: vec![HostCommand::new(
            "leave the cluster (kubeadm reset -f)",
            &[super::BIN, "reset", "-f"],
        )],
        restore: vec![
            HostCommand::new("aside directory", &["install", "-d", "-m", "0700", ASIDE]),
            move_if_there("stop the API server (its manifest aside)", &apiserver, &apiserver_aside),
            move_if_there("stop etcd (its manifest aside)", &etcd, &etcd_aside),
            command("wait until etcd stopped", down).retried_for(WAIT_SECS),
            command("restore the snapshot into a new data directory", restore),
            HostCommand::new(
                "point etcd's data volume at it",
                &["sed", "-i", "-e", &repoint, &etcd_aside],
            ),
            move_if_there("start etcd (its manifest back)", &etcd_aside, &etcd),
            command("wait until etcd is healthy", etcdctl(&bin, &["endpoint", "health"]))
                .retried_for(WAIT_SECS),
            move_if_there("start the API server (its manifest back)", &apiserver_aside, &apiserver),
        ],
        rejoin_others: Vec::new(),
        rejoin_by_join: !others.is_empty(),
        others: others.iter().map(|h| h.key()).collect(),
        cleanup: vec![HostCommand::new(
            "remove the uploaded snapshot",
            &["rm", "-rf", "--", WORK_DIR],
        )],
    })
}
