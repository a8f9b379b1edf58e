//! k3s backups, as <https://docs.k3s.io/datastore/backup-restore> (v1.30)
//! describes them for each datastore:
//! - embedded etcd: `k3s etcd-snapshot save` while it runs
//!   (<https://docs.k3s.io/cli/etcd-snapshot>), restored with `k3s server
//!   --cluster-reset --cluster-reset-restore-path` on the first server with
//!   every server stopped; the others then delete their `db/` and rejoin;
//! - SQLite (one server started without `--cluster-init`): "stop k3s, copy
//!   the db directory, start k3s". The service is stopped only for a local
//!   copy of `state.db` (and its write-ahead log, which holds committed
//!   transactions not yet in `state.db`): the `sqlite3` CLI, whose online
//!   `.backup` would avoid the stop, is not on k3s hosts.
//!
//! Both keep the server token: the bootstrap data in the datastore is
//! encrypted with it, so a restore onto servers with another token passes
//! the original (`K3S_TOKEN`, never in argv).

use super::{unit_for, TOKEN_FILE};
use crate::cluster::{Host, Role};
use crate::runtime::backup::{
    unsupported, BackupPlan, HostCommand, RestorePlan, SnapshotKind, Source, WORK_DIR,
};
use crate::runtime::{HostContext, RuntimeError};

pub const DB_DIR: &str = "/var/lib/rancher/k3s/server/db";
/// Embedded etcd's data (`db/etcd`); its presence means etcd, not SQLite.
pub const ETCD_DIR: &str = "/var/lib/rancher/k3s/server/db/etcd";
pub const SQLITE_DB: &str = "/var/lib/rancher/k3s/server/db/state.db";
/// The token's name in a backup.
pub const TOKEN_SECRET: &str = "token";
const SQLITE_COPY: &str = crate::host_path!("/backup/state.db.tar");
/// The token from `K3S_TOKEN` into the token file `$1`, 0600.
const PUT_TOKEN: &str = r#"umask 077 && printf '%s\n' "$K3S_TOKEN" > "$1""#;
const WAIT_SECS: u64 = 300;

/// `state.db` and, when there, its WAL, into a tar at `$2`: files the stopped
/// server no longer writes.
const COPY_SQLITE: &str = r#"cd "$1" && set -- "$2" state.db && { [ ! -e state.db-wal ] || set -- "$@" state.db-wal; } && tar -cf "$@""#;
/// The tar at `$2` back into `$1`, with no WAL of the replaced database left.
const PUT_SQLITE: &str = r#"rm -f -- "$1/state.db-wal" "$1/state.db-shm" && tar -xf "$2" -C "$1""#;

fn server() -> &'static str {
    unit_for(Role::Master).name
}

fn systemctl(verb: &str, title: &str) -> HostCommand {
    HostCommand::new(title, &["systemctl", verb, server()])
}

fn datastore(exists: &dyn Fn(&str) -> bool) -> Result<SnapshotKind, RuntimeError> {
    if exists(ETCD_DIR) {
        Ok(SnapshotKind::EtcdSnapshot)
    } else if exists(SQLITE_DB) {
        Ok(SnapshotKind::Sqlite)
    } else {
        Err(unsupported(
            "k3s",
            format!("neither {ETCD_DIR} (embedded etcd) nor {SQLITE_DB} (SQLite) is on the server: an external datastore (--datastore-endpoint) is backed up with its own tools"),
        ))
    }
}

pub(super) fn backup(
    ctx: &HostContext,
    exists: &dyn Fn(&str) -> bool,
) -> Result<BackupPlan, RuntimeError> {
    let kind = datastore(exists)?;
    let work = HostCommand::new(
        "work directory (0700)",
        &["install", "-d", "-m", "0700", WORK_DIR],
    );
    let (method, steps, source, cleanup) = match kind {
        SnapshotKind::EtcdSnapshot => (
            "k3s etcd-snapshot save: k3s has its embedded etcd write a consistent snapshot while it serves (docs.k3s.io/cli/etcd-snapshot, v1.30)",
            vec![
                HostCommand::new("k3s is running here", &["systemctl", "is-active", "--quiet", server()]),
                work,
                HostCommand::new(
                    "take the snapshot",
                    &["k3s", "etcd-snapshot", "save", "--name", "sealrs", "--dir", WORK_DIR],
                ),
            ],
            Source::OnlyFileIn(WORK_DIR.into()),
            Vec::new(),
        ),
        _ => (
            "SQLite: k3s stopped for a local copy of state.db and its WAL, then started again (docs.k3s.io/datastore/backup-restore, v1.30: stop, copy the db directory, start; the sqlite3 CLI for an online .backup is not on k3s hosts)",
            vec![
                work,
                systemctl("stop", "stop k3s (SQLite files at rest)"),
                HostCommand::new(
                    "copy state.db and its WAL",
                    &["sh", "-c", COPY_SQLITE, "sh", DB_DIR, SQLITE_COPY],
                ),
                systemctl("start", "start k3s again"),
            ],
            Source::File(SQLITE_COPY.into()),
            vec![systemctl("start", "k3s running")],
        ),
    };
    let mut cleanup = cleanup;
    cleanup.push(HostCommand::new(
        "remove the copy from the host",
        &["rm", "-rf", "--", WORK_DIR],
    ));
    Ok(BackupPlan {
        runtime: "k3s".into(),
        host: ctx.host_key(),
        kind,
        method: method.into(),
        steps,
        source,
        secrets: vec![TOKEN_FILE.into()],
        cleanup,
    })
}

pub(super) fn restore(
    first: &HostContext,
    others: &[&Host],
    kind: SnapshotKind,
    stamp: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Result<RestorePlan, RuntimeError> {
    let running = datastore(exists).ok();
    let upload = format!("{WORK_DIR}/restore-{stamp}");
    let others_keys: Vec<String> = others.iter().map(|h| h.key()).collect();
    let stop = systemctl("stop", "stop k3s");
    let plan =
        |method: String, restore: Vec<HostCommand>, stop_others, rejoin_others| RestorePlan {
            runtime: "k3s".into(),
            first: first.host_key(),
            upload_to: upload.clone(),
            method,
            stop_others,
            restore,
            rejoin_others,
            rejoin_by_join: false,
            others: others_keys.clone(),
            cleanup: vec![HostCommand::new(
                "remove the uploaded snapshot",
                &["rm", "-rf", "--", WORK_DIR],
            )],
        };
    match kind {
        SnapshotKind::EtcdSnapshot => Ok(plan(
            "every server stopped, k3s server --cluster-reset --cluster-reset-restore-path on the first (k3s exits once reset), started; the others delete their db directory and rejoin (docs.k3s.io/datastore/backup-restore, v1.30)".into(),
            vec![
                stop.clone(),
                HostCommand::new(
                    "reset the cluster to the snapshot",
                    &[
                        "k3s",
                        "server",
                        "--cluster-reset",
                        &format!("--cluster-reset-restore-path={upload}"),
                    ],
                )
                .with_secret_env("K3S_TOKEN", TOKEN_SECRET),
                systemctl("start", "start k3s"),
                HostCommand::new("wait for k3s", &["systemctl", "is-active", "--quiet", server()])
                    .retried_for(WAIT_SECS),
            ],
            vec![stop.clone()],
            vec![
                HostCommand::new(
                    "forget the old etcd member data",
                    &["rm", "-rf", "--", DB_DIR],
                ),
                systemctl("start", "start k3s (rejoins the restored server)"),
            ],
        )),
        SnapshotKind::Sqlite => {
            if !others.is_empty() || running == Some(SnapshotKind::EtcdSnapshot) {
                return Err(unsupported(
                    "k3s",
                    "a SQLite backup restores onto one server running on SQLite, not onto embedded etcd",
                ));
            }
            Ok(plan(
                "k3s stopped, state.db (and its WAL) replaced by the backup's, k3s started (docs.k3s.io/datastore/backup-restore, v1.30)".into(),
                vec![
                    stop,
                    HostCommand::new(
                        "put the backup's token in place (state.db's bootstrap data is encrypted with it)",
                        &["sh", "-c", PUT_TOKEN, "sh", TOKEN_FILE],
                    )
                    .with_secret_env("K3S_TOKEN", TOKEN_SECRET),
                    HostCommand::new(
                        "put the backup's state.db in place",
                        &["sh", "-c", PUT_SQLITE, "sh", DB_DIR, &upload],
                    ),
                    systemctl("start", "start k3s"),
                ],
                Vec::new(),
                Vec::new(),
            ))
        }
        SnapshotKind::K0sBackup => Err(unsupported("k3s", format!("a {kind} is not a k3s snapshot"))),
    }
}
