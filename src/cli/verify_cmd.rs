//! `sealrs verify`: what sealrs keeps on a saved cluster's hosts, re-hashed
//! there; fails when a file is damaged or a host could not be checked.

use std::path::Path;

use anyhow::Result;

use super::args::{ListFormat, VerifyArgs};
use super::lifecycle_cmd::{connector, with_ssh};
use crate::apply::integrity;
use crate::store::Store;

pub fn verify(store: &Store, root: &Path, args: &VerifyArgs) -> Result<()> {
    let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
    let connector = connector(&args.ssh)?;
    let found = integrity::verify(store, &cluster, &connector, &|w| eprintln!("{w}"))?;
    let out = match args.format {
        ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&found)?),
        ListFormat::Table => integrity::table(&found),
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes())?;
    if found.clean {
        return Ok(());
    }
    let damaged: usize = found.hosts.iter().map(|h| h.damaged.len()).sum();
    let unchecked = found.hosts.iter().filter(|h| !h.checked).count();
    anyhow::bail!(
        "cluster {}: {damaged} damaged files, {unchecked} hosts not checked; `sealrs run --cluster {}` (or the next upgrade) repairs damaged files",
        cluster.name,
        cluster.name
    )
}
