//! k0s backups with its own commands, as <https://docs.k0sproject.io/stable/backup/>
//! (v1.30) has them: `k0s backup --save-path DIR` on a running controller
//! (an archive of its etcd or kine data, certificates and config, named
//! with a timestamp), `k0s restore FILE` on a controller that does not run,
//! its config written back where the unit reads it.

use super::{unit, CONFIG};
use crate::cluster::{Host, Role};
use crate::runtime::backup::{
    unsupported, BackupPlan, HostCommand, RestorePlan, SnapshotKind, Source, WORK_DIR,
};
use crate::runtime::{HostContext, RuntimeError};

const WAIT_SECS: u64 = 300;

pub(super) fn backup(ctx: &HostContext) -> BackupPlan {
    BackupPlan {
        runtime: "k0s".into(),
        host: ctx.host_key(),
        kind: SnapshotKind::K0sBackup,
        method: "k0s backup on the running controller: its etcd (or kine) data, certificates and config in one archive (docs.k0sproject.io/stable/backup, v1.30)".into(),
        steps: vec![
            HostCommand::new(
                "k0s is running here",
                &["systemctl", "is-active", "--quiet", unit(Role::Master)],
            ),
            HostCommand::new("work directory (0700)", &["install", "-d", "-m", "0700", WORK_DIR]),
            HostCommand::new(
                "take the backup",
                &["k0s", "backup", &format!("--save-path={WORK_DIR}")],
            ),
        ],
        source: Source::OnlyFileIn(WORK_DIR.into()),
        secrets: Vec::new(),
        cleanup: vec![HostCommand::new(
            "remove the archive from the host",
            &["rm", "-rf", "--", WORK_DIR],
        )],
    }
}

pub(super) fn restore(
    first: &HostContext,
    others: &[&Host],
    kind: SnapshotKind,
    stamp: &str,
) -> Result<RestorePlan, RuntimeError> {
    if kind != SnapshotKind::K0sBackup {
        return Err(unsupported(
            "k0s",
            format!("a {kind} is not a k0s backup archive"),
        ));
    }
    let upload = format!("{WORK_DIR}/restore-{stamp}.tar.gz");
    Ok(RestorePlan {
        runtime: "k0s".into(),
        first: first.host_key(),
        upload_to: upload.clone(),
        method: "k0s stopped, k0s restore of the archive (data and certificates, the config written back), k0s started (docs.k0sproject.io/stable/backup, v1.30)".into(),
        // The other controllers leave first (service stopped, then `k0s
        // reset`: its unit and data gone, docs.k0sproject.io/stable/reset,
        // v1.30), and join the restored one anew: a restore is of one
        // controller (docs.k0sproject.io/stable/backup, v1.30).
        stop_others: vec![
            HostCommand::new("stop k0s", &["systemctl", "stop", unit(Role::Master)]),
            HostCommand::new("leave the cluster (k0s reset)", &["k0s", "reset"]),
        ],
        rejoin_by_join: !others.is_empty(),
        restore: vec![
            HostCommand::new("stop k0s", &["k0s", "stop"]),
            HostCommand::new(
                "restore the archive",
                &["k0s", "restore", &format!("--config-out={CONFIG}"), &upload],
            ),
            HostCommand::new("start k0s", &["k0s", "start"]),
            HostCommand::new(
                "wait for k0s",
                &["systemctl", "is-active", "--quiet", unit(Role::Master)],
            )
            .retried_for(WAIT_SECS),
        ],
        rejoin_others: Vec::new(),
        others: others.iter().map(|h| h.key()).collect(),
        cleanup: vec![HostCommand::new(
            "remove the uploaded archive",
            &["rm", "-rf", "--", WORK_DIR],
        )],
    })
}
