use super::*;
use crate::cluster::{Cluster, HostStatus};
use crate::runtime::k3s::backup::{ETCD_DIR, SQLITE_DB};
use crate::runtime::tests::cluster;
use crate::runtime::{runtime_for, HostContext, ImageInfo, JoinSecrets};

fn named(mut c: Cluster) -> Cluster {
    for (i, h) in c.hosts.iter().enumerate() {
        c.status.hosts.insert(
            h.key(),
            HostStatus {
                node_name: Some(format!("m{i}")),
                ..HostStatus::default()
            },
        );
    }
    c
}

fn with<T>(
    runtime: &str,
    masters: &str,
    f: impl FnOnce(&dyn crate::runtime::Runtime, &HostContext, &Cluster) -> T,
) -> T {
    let c = named(cluster(masters, "", &[]));
    let img = ImageInfo::new(runtime, "v1.30.2").unwrap();
    let rt = runtime_for(runtime).unwrap();
    let ctx = HostContext::new(&c, &c.hosts[0], &img, JoinSecrets::default()).unwrap();
    f(rt.as_ref(), &ctx, &c)
}

fn titles(commands: &[HostCommand]) -> Vec<&str> {
    commands.iter().map(|c| c.title.as_str()).collect()
}

fn find<'a>(commands: &'a [HostCommand], title: &str) -> &'a HostCommand {
    commands
        .iter()
        .find(|c| c.title == title)
        .unwrap_or_else(|| panic!("no {title:?} in {:?}", titles(commands)))
}

/// The image's etcdctl in the test contexts' rootfs.
const IMAGE_ETCDCTL: &str = "/var/lib/sealrs-host/rootfs/bin/etcdctl";

#[test]
fn kubeadm_backs_up_with_etcdctl_through_the_etcd_pods_client_certificates() {
    with("kubeadm", "10.0.0.1", |rt, ctx, _| {
        let plan = rt.backup(ctx, &|p| p == IMAGE_ETCDCTL).unwrap();
        assert_eq!(plan.kind, SnapshotKind::EtcdSnapshot);
        let save = find(&plan.steps, "take the snapshot").argv.join(" ");
        for part in [
            "ETCDCTL_API=3 /var/lib/sealrs-host/rootfs/bin/etcdctl --endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
            "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "snapshot save /var/lib/sealrs-host/backup/etcd-snapshot.db",
        ] {
            assert!(save.contains(part), "{part}: {save}");
        }
        assert_eq!(
            plan.source,
            Source::File(format!("{WORK_DIR}/etcd-snapshot.db"))
        );
        assert_eq!(plan.cleanup[0].argv, ["rm", "-rf", "--", WORK_DIR]);
        let text = plan.render("out.tar");
        assert!(
            text.contains("etcdctl --endpoints=https://127.0.0.1:2379"),
            "{text}"
        );
        assert!(text.contains("into out.tar (mode 0600"), "{text}");
    });
}

#[test]
fn kubeadm_calls_the_images_etcdctl_before_the_hosts_and_refuses_without_any() {
    with("kubeadm", "10.0.0.1", |rt, ctx, _| {
        assert_eq!(rt.tool_probes(ctx)[0], IMAGE_ETCDCTL);
        let health = |exists: &dyn Fn(&str) -> bool| {
            rt.backup(ctx, exists).unwrap().steps[0].argv[0].clone()
        };
        assert_eq!(health(&|_| true), IMAGE_ETCDCTL);
        assert_eq!(health(&|p| p == "/usr/bin/etcdctl"), "/usr/bin/etcdctl");
        let backup = rt.backup(ctx, &|_| false).unwrap_err().to_string();
        let restore = rt
            .restore(ctx, &[], SnapshotKind::EtcdSnapshot, "1", &|_| false)
            .unwrap_err()
            .to_string();
        for err in [backup, restore] {
            for part in [
                "10.0.0.1 has no etcdctl",
                IMAGE_ETCDCTL,
                "/usr/local/bin/etcdctl, /usr/bin/etcdctl",
                "put etcdctl (of the cluster's etcd version) in the image's bin/",
            ] {
                assert!(err.contains(part), "{part}: {err}");
            }
        }
    });
}

#[test]
fn kubeadm_restores_into_a_new_data_dir_with_the_api_server_and_etcd_stopped() {
    with("kubeadm", "10.0.0.1", |rt, ctx, _| {
        let plan = rt
            .restore(ctx, &[], SnapshotKind::EtcdSnapshot, "123", &|p| {
                p == IMAGE_ETCDCTL
            })
            .unwrap();
        assert_eq!(
            titles(&plan.restore),
            [
                "aside directory",
                "stop the API server (its manifest aside)",
                "stop etcd (its manifest aside)",
                "wait until etcd stopped",
                "restore the snapshot into a new data directory",
                "point etcd's data volume at it",
                "start etcd (its manifest back)",
                "wait until etcd is healthy",
                "start the API server (its manifest back)",
            ]
        );
        let restore = find(
            &plan.restore,
            "restore the snapshot into a new data directory",
        );
        assert_eq!(
            restore.argv[2..],
            [
                IMAGE_ETCDCTL,
                "snapshot",
                "restore",
                "/var/lib/sealrs-host/backup/restore-123.db",
                "--data-dir=/var/lib/etcd-restore-123",
                "--name=m0",
                "--initial-cluster=m0=https://10.0.0.1:2380",
                "--initial-advertise-peer-urls=https://10.0.0.1:2380",
            ]
        );
        assert_eq!(plan.upload_to, "/var/lib/sealrs-host/backup/restore-123.db");
        assert!(find(&plan.restore, "wait until etcd is healthy").retry_secs > 0);
    });
}

#[test]
fn k0s_restores_one_controller_with_the_others_reset_then_joined_again() {
    with("k0s", "10.0.0.1,10.0.0.2", |rt, ctx, c| {
        let others: Vec<&crate::cluster::Host> = c.hosts[1..].iter().collect();
        let plan = rt
            .restore(ctx, &others, SnapshotKind::K0sBackup, "1", &|_| true)
            .unwrap();
        assert_eq!(plan.others, ["10.0.0.2"]);
        assert_eq!(
            titles(&plan.stop_others),
            ["stop k0s", "leave the cluster (k0s reset)"]
        );
        assert_eq!(plan.stop_others[1].argv, ["k0s", "reset"]);
        assert!(plan.rejoin_by_join);
    });
}

#[test]
fn kubeadm_restores_one_etcd_member_with_the_other_masters_reset_then_joined_again() {
    with("kubeadm", "10.0.0.1,10.0.0.2,10.0.0.3", |rt, ctx, c| {
        let others: Vec<&crate::cluster::Host> = c.hosts[1..].iter().collect();
        let plan = rt
            .restore(ctx, &others, SnapshotKind::EtcdSnapshot, "1", &|_| true)
            .unwrap();
        assert_eq!(plan.others, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            plan.stop_others[0].argv,
            ["/usr/local/bin/kubeadm", "reset", "-f"]
        );
        assert!(plan.rejoin_by_join);
        let restore = find(
            &plan.restore,
            "restore the snapshot into a new data directory",
        );
        assert!(restore
            .argv
            .contains(&"--initial-cluster=m0=https://10.0.0.1:2380".to_string()));
        let text = plan.render("in.tar");
        assert!(
            text.contains("then 10.0.0.2, 10.0.0.3 join again as control planes"),
            "{text}"
        );
        let one = rt
            .restore(ctx, &[], SnapshotKind::EtcdSnapshot, "1", &|_| true)
            .unwrap();
        assert!(one.others.is_empty());
        assert!(!one.rejoin_by_join);
    });
}

#[test]
fn kubeadm_and_k0s_refuse_a_restore_of_another_kind() {
    for (runtime, kind) in [
        ("kubeadm", SnapshotKind::EtcdSnapshot),
        ("k0s", SnapshotKind::K0sBackup),
    ] {
        with(runtime, "10.0.0.1", |rt, ctx, _| {
            assert!(rt.restore(ctx, &[], kind, "1", &|_| true).is_ok());
            let err = rt
                .restore(ctx, &[], SnapshotKind::Sqlite, "1", &|_| true)
                .unwrap_err();
            assert!(
                err.to_string().contains("a SQLite database is not"),
                "{err}"
            );
        });
    }
}

#[test]
fn k3s_takes_an_etcd_snapshot_or_copies_sqlite_with_the_service_stopped_by_its_datastore() {
    with("k3s", "10.0.0.1", |rt, ctx, _| {
        let etcd = rt.backup(ctx, &|p| p == ETCD_DIR).unwrap();
        assert_eq!(etcd.kind, SnapshotKind::EtcdSnapshot);
        assert_eq!(
            find(&etcd.steps, "take the snapshot").argv,
            [
                "k3s",
                "etcd-snapshot",
                "save",
                "--name",
                "sealrs",
                "--dir",
                WORK_DIR
            ]
        );
        assert_eq!(etcd.source, Source::OnlyFileIn(WORK_DIR.into()));
        assert_eq!(etcd.secrets, ["/var/lib/rancher/k3s/server/token"]);

        let sqlite = rt.backup(ctx, &|p| p == SQLITE_DB).unwrap();
        assert_eq!(sqlite.kind, SnapshotKind::Sqlite);
        assert_eq!(
            titles(&sqlite.steps),
            [
                "work directory (0700)",
                "stop k3s (SQLite files at rest)",
                "copy state.db and its WAL",
                "start k3s again"
            ]
        );
        // A failure between stop and start still leaves k3s running.
        assert_eq!(
            sqlite.cleanup[0].argv,
            ["systemctl", "start", "k3s.service"]
        );

        let none = rt.backup(ctx, &|_| false).unwrap_err();
        assert!(none.to_string().contains("external datastore"), "{none}");
    });
}

#[test]
fn k3s_restores_etcd_by_cluster_reset_with_the_token_from_the_backup_never_in_argv() {
    with("k3s", "10.0.0.1,10.0.0.2,10.0.0.3", |rt, ctx, c| {
        let others: Vec<&crate::cluster::Host> = c.hosts[1..].iter().collect();
        let plan = rt
            .restore(ctx, &others, SnapshotKind::EtcdSnapshot, "9", &|p| {
                p == ETCD_DIR
            })
            .unwrap();
        let reset = find(&plan.restore, "reset the cluster to the snapshot");
        assert_eq!(
            reset.argv,
            [
                "k3s",
                "server",
                "--cluster-reset",
                "--cluster-reset-restore-path=/var/lib/sealrs-host/backup/restore-9"
            ]
        );
        assert_eq!(
            reset.secret_env,
            [("K3S_TOKEN".to_string(), "token".to_string())]
        );
        assert_eq!(plan.others, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            plan.stop_others[0].argv,
            ["systemctl", "stop", "k3s.service"]
        );
        assert_eq!(
            plan.rejoin_others[0].argv,
            ["rm", "-rf", "--", "/var/lib/rancher/k3s/server/db"]
        );
        let text = plan.render("b.tar");
        assert!(
            text.contains("with K3S_TOKEN from the backup's token (not shown)"),
            "{text}"
        );
        // A SQLite backup does not go onto servers that run etcd.
        let err = rt
            .restore(ctx, &[], SnapshotKind::Sqlite, "9", &|p| p == ETCD_DIR)
            .unwrap_err();
        assert!(err.to_string().contains("not onto embedded etcd"), "{err}");
    });
}

#[test]
fn k0s_backs_up_and_restores_with_its_own_commands() {
    with("k0s", "10.0.0.1", |rt, ctx, _| {
        let plan = rt.backup(ctx, &|_| false).unwrap();
        assert_eq!(
            find(&plan.steps, "take the backup").argv,
            ["k0s", "backup", "--save-path=/var/lib/sealrs-host/backup"]
        );
        let restore = rt
            .restore(ctx, &[], SnapshotKind::K0sBackup, "5", &|_| false)
            .unwrap();
        assert_eq!(
            find(&restore.restore, "restore the archive").argv,
            [
                "k0s",
                "restore",
                "--config-out=/etc/k0s/k0s.yaml",
                "/var/lib/sealrs-host/backup/restore-5.tar.gz"
            ]
        );
    });
}
