//! `--dry-run` of `add`, `delete`, `upgrade` and `reset`: what the command
//! would do, reaching no host. Each host's plan is rendered as `run
//! --dry-run` renders it (the same runtime code the installer runs on the
//! host), and around the plans what the processor does: the order, the
//! batches, the node drained and deleted on the first master. The command's
//! own refusals (unknown hosts, the first master, the runtime's verify) come
//! first, as for the command itself.

use super::connect::Connector;
use super::context::RunContext;
use super::install::{dry_run_of, role_names};
use super::lifecycle::{deletable, grown, open};
use super::remote::host_context;
use super::{verify, ApplyError};
use crate::cluster::{Address, Cluster, Host};
use crate::host_paths::HOST_DIR;
use crate::progress::Progress;
use crate::runtime::{self, Batch, JoinSecrets, NodeStep};
use crate::store::Store;
use crate::transport::{Transport, TransportError};

/// The connector of a dry run: no host is reached.
struct NoHosts;

impl Connector for NoHosts {
    fn connect(
        &self,
        host: &Host,
        _: &crate::cluster::SshConfig,
    ) -> Result<Box<dyn Transport>, TransportError> {
        Err(TransportError::Connect {
            host: host.key(),
            detail: "a dry run reaches no host".into(),
        })
    }
}

fn context<'a>(
    store: &'a Store,
    progress: &'a dyn Progress,
    cluster: &Cluster,
) -> Result<RunContext<'a>, ApplyError> {
    let mut ctx = open(store, &NoHosts, progress, cluster)?;
    // No host to read an image's files from: its layers are read here.
    ctx.options.dry_run = true;
    Ok(ctx)
}

/// `# HOST (roles): what` and the plan, rendered.
fn section(out: &mut String, host: &Host, what: &str, plan: &crate::plan::Plan) {
    out.push_str(&format!(
        "# {} ({}): {what}\n",
        host.key(),
        role_names(host)
    ));
    out.push_str(&plan.render_dry_run());
    out.push('\n');
}

fn keys(hosts: &[&Host]) -> String {
    hosts.iter().map(|h| h.key()).collect::<Vec<_>>().join(", ")
}

/// `sealrs add --dry-run`: the join plans of the new hosts.
pub fn add(
    store: &Store,
    cluster: &Cluster,
    new_hosts: &[Host],
    layers_from: Option<super::pull::RegistryLayers>,
    progress: &dyn Progress,
) -> Result<String, ApplyError> {
    let grown = grown(cluster, new_hosts)?;
    let mut ctx = context(store, progress, cluster)?;
    // Templates and Configs are read from there when the store lacks them.
    ctx.image.pull_from = layers_from;
    verify::cluster(&grown, &mut ctx)?;
    let first = grown.first_master().ok_or(ApplyError::NoMaster)?;
    let joining: Vec<Host> = grown
        .hosts
        .iter()
        .filter(|h| new_hosts.iter().any(|n| n.address == h.address) && h.address != first.address)
        .cloned()
        .collect();
    let masters: Vec<&Host> = joining.iter().filter(|h| h.is_master()).collect();
    let nodes: Vec<&Host> = joining.iter().filter(|h| !h.is_master()).collect();
    let mut out = format!(
        "# add to cluster {} ({} {}): connect to the new hosts and the first master {}, check the new hosts, send each the layers it lacks;\n",
        grown.name,
        ctx.runtime.name(),
        ctx.image.name,
        first.key()
    );
    out.push_str(&format!(
        "# {} runs its install again, for the join secrets (it changes nothing there);\n",
        first.key()
    ));
    if !masters.is_empty() {
        out.push_str(&format!(
            "# then the masters join one by one: {};\n",
            keys(&masters)
        ));
    }
    if !nodes.is_empty() {
        out.push_str(&format!(
            "# then the nodes join in parallel: {}\n",
            keys(&nodes)
        ));
    }
    out.push('\n');
    out.push_str(&dry_run_of(&ctx, &grown, &joining)?);
    Ok(out)
}

/// `sealrs delete --dry-run`: for each host, its node drained and deleted on
/// the first master, then the host's uninstall plan.
pub fn delete(
    store: &Store,
    cluster: &Cluster,
    addresses: &[Address],
    progress: &dyn Progress,
) -> Result<String, ApplyError> {
    let first = deletable(cluster, addresses)?;
    let mut ctx = context(store, progress, cluster)?;
    let mut shrunk = cluster.clone();
    shrunk.hosts.retain(|h| !addresses.contains(&h.address));
    verify::cluster(&shrunk, &mut ctx)?;
    let leaving: Vec<&Host> = cluster
        .hosts
        .iter()
        .filter(|h| addresses.contains(&h.address))
        .collect();
    let (masters, nodes): (Vec<&Host>, Vec<&Host>) = leaving.iter().partition(|h| h.is_master());
    let mut order = Vec::new();
    if !nodes.is_empty() {
        order.push(format!("the nodes in parallel ({})", keys(&nodes)));
    }
    if !masters.is_empty() {
        order.push(format!("the masters one by one ({})", keys(&masters)));
    }
    let mut out = format!(
        "# delete from cluster {} ({}): on the first master {}, drain each node and delete it from Kubernetes, one by one;\n# then uninstall {};\n# each host's {HOST_DIR} is removed after its uninstall, and it leaves the saved cluster\n\n",
        cluster.name,
        ctx.runtime.name(),
        first.key(),
        order.join(", then ")
    );
    let first_ctx = host_context(cluster, &first, &ctx.image, JoinSecrets::default())?;
    for host in nodes.iter().chain(&masters) {
        let recorded = cluster
            .status
            .hosts
            .get(&host.key())
            .and_then(|s| s.node_name.clone());
        let node = recorded
            .clone()
            .unwrap_or_else(|| format!("<hostname of {}>", host.key()));
        let plan = ctx
            .runtime
            .remove_node(&first_ctx, &node)
            .map_err(ApplyError::runtime(&first))?;
        let what = match recorded {
            Some(_) => format!("drain and delete node {node} ({})", host.key()),
            None => format!(
                "drain and delete node {node} ({}; its name is asked from the host)",
                host.key()
            ),
        };
        section(&mut out, &first, &what, &plan);
    }
    uninstall_sections(
        &mut out,
        &ctx,
        cluster,
        nodes.iter().chain(&masters).copied(),
    )?;
    Ok(out)
}

fn uninstall_sections<'h>(
    out: &mut String,
    ctx: &RunContext,
    cluster: &Cluster,
    hosts: impl Iterator<Item = &'h Host>,
) -> Result<(), ApplyError> {
    for host in hosts {
        let hctx = host_context(cluster, host, &ctx.image, JoinSecrets::default())?;
        let plan = ctx
            .runtime
            .uninstall(&hctx)
            .map_err(ApplyError::runtime(host))?;
        section(
            out,
            host,
            &format!("uninstall, then rm -rf --one-file-system {HOST_DIR}"),
            &plan,
        );
    }
    Ok(())
}

/// `sealrs upgrade --dry-run`: the batches in order, each host's upgrade plan.
pub fn upgrade(
    store: &Store,
    cluster: &Cluster,
    image_name: &str,
    options: &super::UpgradeOptions,
    progress: &dyn Progress,
) -> Result<String, ApplyError> {
    let mut ctx = RunContext::new(
        store,
        &NoHosts,
        progress,
        &[image_name.to_string()],
        super::RunOptions {
            layers_from: options.layers_from.clone(),
            dry_run: true,
            ..Default::default()
        },
    )?;
    ctx.require_installer()?;
    verify::cluster(cluster, &mut ctx)?;
    let to = ctx.target_version(cluster)?;
    let batches = runtime::upgrade_order(cluster, options.max_unavailable);
    let workers = cluster.workers().count();
    let around = if options.drain {
        "cordoned and drained"
    } else {
        "cordoned (--no-drain: not drained)"
    };
    let mut out = format!(
        "# upgrade cluster {} to {} ({} {to}): send each host the layers it lacks, then {} batches, one after the other: control planes one at a time, workers {} at a time (--max-unavailable {} of {workers}); each node is {around} from the first master, upgraded, waited for until it reports Ready with {to} (at most {}s), then uncordoned; a batch that fails stops the upgrade:\n",
        cluster.name,
        ctx.image.name,
        ctx.runtime.name(),
        batches.len(),
        options.max_unavailable.of(workers),
        options.max_unavailable,
        options.ready_timeout.as_secs()
    );
    for (i, Batch { role, hosts }) in batches.iter().enumerate() {
        let names: Vec<String> = hosts.iter().map(|a| a.to_string()).collect();
        out.push_str(&format!(
            "#   batch {} ({role}): {}\n",
            i + 1,
            names.join(", ")
        ));
    }
    out.push_str("# then the earlier image's rootfs is removed from every host\n\n");
    let first = cluster.first_master();
    for (i, Batch { hosts, .. }) in batches.iter().enumerate() {
        for address in hosts {
            let Some(host) = cluster.host(address) else {
                continue;
            };
            let node = cluster
                .status
                .hosts
                .get(&host.key())
                .and_then(|s| s.node_name.clone());
            let steps =
                |which: &[NodeStep]| -> Result<Vec<(NodeStep, crate::plan::Plan)>, ApplyError> {
                    let (Some(first), Some(node)) = (first, &node) else {
                        return Ok(Vec::new());
                    };
                    let fctx = host_context(cluster, first, &ctx.image, JoinSecrets::default())?;
                    which
                        .iter()
                        .map(|step| {
                            ctx.runtime
                                .upgrade_node_step(&fctx, node, *step)
                                .map(|p| (*step, p))
                                .map_err(ApplyError::runtime(first))
                        })
                        .collect()
                };
            let before: &[NodeStep] = if options.drain {
                &[NodeStep::Cordon, NodeStep::Drain]
            } else {
                &[NodeStep::Cordon]
            };
            let node_label = node
                .clone()
                .unwrap_or_else(|| "(node name not recorded: no cordon, drain or wait)".into());
            for (step, plan) in steps(before)? {
                if let Some(first) = first {
                    section(
                        &mut out,
                        first,
                        &format!("batch {}: {step} node {node_label} ({})", i + 1, host.key()),
                        &plan,
                    );
                }
            }
            let hctx = host_context(cluster, host, &ctx.image, JoinSecrets::default())?;
            let plan = ctx
                .runtime
                .upgrade(&hctx, &to)
                .map_err(ApplyError::runtime(host))?;
            section(
                &mut out,
                host,
                &format!("batch {}: upgrade to {to}", i + 1),
                &plan,
            );
            if let (Some(first), Some(node)) = (first, &node) {
                let query = ctx.runtime.node_state_query(node);
                out.push_str(&format!(
                    "# {} (master): batch {}: wait until node {node} reports Ready with {to} (at most {}s): {}\n\n",
                    first.key(),
                    i + 1,
                    options.ready_timeout.as_secs(),
                    query.join(" ")
                ));
            }
            for (step, plan) in steps(&[NodeStep::Uncordon])? {
                if let Some(first) = first {
                    section(
                        &mut out,
                        first,
                        &format!("batch {}: {step} node {node_label} ({})", i + 1, host.key()),
                        &plan,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// `sealrs reset --dry-run`: every host's uninstall plan, in the order reset
/// runs them (workers in parallel, the other masters one by one, the first
/// master last).
pub fn reset(
    store: &Store,
    cluster: &Cluster,
    progress: &dyn Progress,
) -> Result<String, ApplyError> {
    let ctx = context(store, progress, cluster)?;
    let first = cluster.first_master();
    let workers: Vec<&Host> = cluster.workers().collect();
    let mut masters: Vec<&Host> = cluster.masters().collect();
    if first.is_some_and(|f| masters.first().is_some_and(|m| m.address == f.address)) {
        masters.rotate_left(1);
    }
    let mut out = format!(
        "# reset cluster {} ({}): uninstall the workers in parallel ({}), then the masters one by one, the first master last ({});\n# each host's {HOST_DIR} is removed after its uninstall; then the saved cluster is forgotten\n\n",
        cluster.name,
        ctx.runtime.name(),
        keys(&workers),
        keys(&masters)
    );
    uninstall_sections(
        &mut out,
        &ctx,
        cluster,
        workers.iter().chain(&masters).copied(),
    )?;
    Ok(out)
}
