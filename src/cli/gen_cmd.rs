//! `sealrs gen`: a Clusterfile from `run`'s cluster flags (sealos has `gen`
//! too), for a person to edit and keep and for `sealrs run -f` to read.

use anyhow::Result;

use super::args::GenArgs;
use crate::cluster::{Cluster, ClusterArgs};

/// The first line of a generated file: what reads it and where it is described.
const HEADER: &str =
    "# A sealrs Clusterfile: `sealrs run -f FILE` reads it; docs/clusterfile.md describes each field.\n";

/// Checks the flags as `run` does (every problem at once) and prints the file.
pub fn gen(args: &GenArgs) -> Result<()> {
    let cluster = Cluster::from_args(&ClusterArgs {
        name: args.cluster.clone().unwrap_or_default(),
        masters: args.masters.clone(),
        nodes: args.nodes.clone(),
        images: args.images.clone(),
        env: args.env.clone(),
        user: args.ssh_user.clone(),
        port: args.port,
        key: args.ssh_key.as_ref().map(|p| p.display().to_string()),
        password: None,
        known_hosts: None,
    })?;
    out!("{HEADER}{}", cluster.to_yaml())?;
    Ok(())
}
