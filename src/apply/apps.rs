//! Phase "apply applications": the images after the rootfs one in `sealrs run
//! ROOTFS IMAGE...`, as sealos applies them (labring/sealos v5,
//! `lifecycle/pkg/guest/guest.go` `Apply`, and
//! `lifecycle/pkg/filesystem/rootfs/rootfs_default.go` `mountRootfs`).
//!
//! An image's type label (read by `layout::labels::read_labels`) says what
//! it is; one without a type label is an application, as in sealos.
//!
//! - An application image's layers go to the first master's layer cache (the
//!   rootfs image's cache and "sent once" rule), are unpacked under
//!   `/var/lib/sealrs-host/apps/<digest-hex>/`, and its commands run there on
//!   the first master, once the cluster is up.
//! - A patch image (`sealos.io.type=patch`) goes to every host, unpacked the
//!   same way, and is placed over the rootfs right after the rootfs is in
//!   ([`place_patches`], before the runtime installs, as sealos copies patch
//!   images into the rootfs before its bootstrap); its commands run on every
//!   host, in the rootfs directory, once the cluster is up.
//!
//! The commands are ENTRYPOINT's elements then CMD's (`--cmd` replaces CMD of
//! the first application image), each one shell command, run by bash as
//! `app_script.rs` says. Their environment is, for an application,
//! `KUBECONFIG` (the runtime's admin kubeconfig: sealos's masters have it as
//! `~/.kube/config`, and helm needs one), overridden by the image's `ENV`
//! (without `PATH`, so the host's `PATH` finds `kubectl` and `helm`),
//! overridden by the cluster env (`-e`, `spec.env`), overridden by the
//! host's own env (`hosts[].env`). It reaches the host on stdin, never in an argv. Images
//! run in the order given; the first that fails stops the run, naming the
//! image, the host, the exit code and the last lines of its output. A rerun
//! runs them again (`helm upgrade -i` and `kubectl apply` are idempotent) and
//! sends no layer again.

use std::collections::BTreeMap;

use super::app_script::{command_lines, script};
use super::context::RunContext;
use super::distribute::{deliver, direct_server, on_host, Unpack};
use super::image::AppliedImage;
use super::interrupt;
use super::parallel::per_host;
use super::{ApplyError, HostFailure};
use crate::cluster::{Cluster, Host, InstalledImage};
use crate::host_paths::HOST_DIR;
use crate::layout::labels::{read_labels, ImageType};
use crate::layout::spec::Layouts;
use crate::plan::quote_env;
use crate::runtime::HookKind;
use crate::store::Store;
use crate::transport::Transport;

/// Where an application or patch image is unpacked on a host.
pub fn host_app_dir(image: &AppliedImage) -> String {
    format!("{HOST_DIR}/apps/{}", image.hex())
}

/// Whether `image` is a patch image; without a type label it is an application.
pub fn is_patch(image: &AppliedImage) -> bool {
    let info = read_labels(&image.info.labels, Layouts::embedded()).info;
    info.image_type.map(|t| t.value) == Some(ImageType::Patch)
}

/// Overlays the hook labels (`check`, `init`, `clean`, ..., and their
/// `sealrs.io/` forms) of the images after the rootfs one, in order, on the
/// rootfs image's: sealos merges the labels of every image of the cluster,
/// later ones winning, into what its hooks read (labring/sealos v5,
/// `lifecycle/pkg/types/v1beta1/utils.go` `GetAllLabels`, used by
/// `lifecycle/pkg/bootstrap/context.go` `NewContextFrom`).
pub(super) fn merge_hook_labels(image: &mut AppliedImage, apps: &[AppliedImage]) {
    for app in apps {
        for key in HookKind::ALL.iter().flat_map(|k| k.label_keys()) {
            if let Some(text) = app.info.labels.get(&key) {
                image.info.labels.insert(key, text.clone());
            }
        }
    }
}

/// What an image runs on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCommand {
    /// The shell commands, as the image (or `--cmd`) gives them.
    pub lines: Vec<String>,
    /// The directory they run in.
    pub dir: String,
    /// Their environment: image `ENV` < cluster env < host env.
    pub env: BTreeMap<String, String>,
}

impl AppCommand {
    /// The bash argv that runs it; `None` when there is nothing to run.
    /// Its stdout joins its stderr, which the transport passes on as it
    /// comes: the whole output, in the order it was written.
    pub fn argv(&self) -> Option<Vec<String>> {
        let script = script(&self.lines, &self.dir, &self.env)?;
        Some(vec![
            "bash".into(),
            "-c".into(),
            format!("exec 1>&2\n{script}"),
        ])
    }
}

/// The env under an application's `ENV` on the first master (module docs).
fn app_defaults(ctx: &RunContext) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "KUBECONFIG".to_string(),
        ctx.runtime.admin_kubeconfig().to_string(),
    )])
}

/// The command of `image` on `host`: `cmd` replaces its CMD when given;
/// `defaults` lie under the image's `ENV`.
pub fn app_command(
    store: &Store,
    image: &AppliedImage,
    (cluster, host): (&Cluster, &Host),
    dir: &str,
    cmd: Option<&[String]>,
    defaults: BTreeMap<String, String>,
) -> Result<AppCommand, ApplyError> {
    let stored = store
        .image(&image.name)
        .map_err(|source| ApplyError::Image {
            name: image.name.clone(),
            source: Box::new(source),
        })?;
    let config = stored.config.config().clone().unwrap_or_default();
    let mut env = defaults;
    env.extend(
        image
            .info
            .env
            .iter()
            .filter(|(k, _)| k != "PATH" && crate::cluster::is_valid_env_key(k))
            .cloned(),
    );
    env.extend(cluster.env.clone());
    env.extend(host.env.clone());
    let lines = command_lines(
        &config.entrypoint().clone().unwrap_or_default(),
        &config.cmd().clone().unwrap_or_default(),
        cmd,
    );
    Ok(AppCommand {
        lines,
        dir: dir.to_string(),
        env,
    })
}

/// The CMD override for the image at `index` of the images after the rootfs
/// one: `--cmd` goes to the first application image only.
fn cmd_for<'a>(ctx: &'a RunContext, index: usize) -> Option<&'a [String]> {
    let cmd = ctx.options.cmd.as_deref()?;
    let first_app = ctx.apps.iter().position(|i| !is_patch(i))?;
    (first_app == index).then_some(cmd)
}

/// `cluster`'s images after its rootfs one, by the digests it pins: an
/// upgrade keeps them, and places its patch images over the new rootfs.
pub(super) fn saved_apps(
    store: &Store,
    cluster: &Cluster,
    warn: &dyn Fn(&str),
) -> Result<Vec<AppliedImage>, ApplyError> {
    if cluster.images.len() < 2 {
        return Ok(Vec::new());
    }
    let mut after = cluster.clone();
    after.images.remove(0);
    super::image::resolve_pinned(store, &after, warn)
}

/// Which connected hosts a step concerns (`add`: the new ones).
pub(super) type HostFilter<'a> = &'a (dyn Fn(&Host) -> bool + Sync);

/// Places each patch image over the rootfs on every connected host `on`
/// picks: its layers sent where missing, unpacked beside the applications,
/// then copied over the rootfs (replacing files, never writing through the
/// rootfs' hard links).
pub(super) fn place_patches(ctx: &mut RunContext, on: HostFilter) -> Result<(), ApplyError> {
    let cap = ctx.max_parallel();
    let RunContext {
        store,
        progress,
        ref image,
        ref apps,
        ref connections,
        ..
    } = *ctx;
    let patches: Vec<&AppliedImage> = apps.iter().filter(|i| is_patch(i)).collect();
    if patches.is_empty() {
        return Ok(());
    }
    let installer = image.installer_on_host()?;
    let rootfs = image.host_rootfs();
    let server = direct_server(connections.iter().map(|(_, t)| t.as_ref()), progress);
    let results = per_host(cap, connections, |(host, transport)| {
        if !on(host) {
            return Ok(0);
        }
        let transport = transport.as_ref();
        interrupt::check(&host.key())?;
        let mut sent = 0;
        for patch in &patches {
            let dir = host_app_dir(patch);
            let to = Unpack {
                installer: &installer,
                dest: &dir,
                server: server.as_ref(),
            };
            sent += deliver(
                store,
                transport,
                patch,
                to,
                on_host(transport, patch, &dir)?,
                progress,
            )?;
            super::image_files::upload(transport, host, patch, &dir)?;
            // The unpacked tree's entries but its completion stamp, merged
            // into the rootfs; `--remove-destination` replaces each file.
            let place = [
                "find",
                &dir,
                "-mindepth",
                "1",
                "-maxdepth",
                "1",
                "!",
                "-name",
                crate::installer::STAMP,
                "-exec",
                "cp",
                "-a",
                "--remove-destination",
                "-t",
                &rootfs,
                "--",
                "{}",
                "+",
            ]
            .map(String::from);
            let output = transport
                .run(&place, &[], None)
                .map_err(ApplyError::transport(host.key()))?;
            if !output.success() {
                return Err(ApplyError::command(
                    host.key(),
                    format!("placing patch image {} over {rootfs}", patch.name),
                    &output,
                    10,
                ));
            }
            progress.message(&format!(
                "{}: patch image {} placed over the rootfs",
                host.key(),
                patch.name
            ));
        }
        Ok(sent)
    });
    let mut failures = Vec::new();
    for ((host, _), result) in connections.iter().zip(results) {
        match result {
            Ok(sent) => *ctx.report.bytes_sent.entry(host.key()).or_default() += sent,
            Err(error) => failures.push(HostFailure {
                host: host.key(),
                error: Box::new(error),
            }),
        }
    }
    ApplyError::all_hosts_ok(failures)
}

/// Runs each image after the rootfs one, in order: a patch image's commands
/// on every host (in the rootfs), an application image's on the first master.
pub(super) fn apply_apps(ctx: &mut RunContext, cluster: &mut Cluster) -> Result<(), ApplyError> {
    if ctx.apps.is_empty() {
        return Ok(());
    }
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    let installer = ctx.image.installer_on_host()?;
    let server = direct_server([ctx.connection(&first)?], ctx.progress);
    let mut sent_to_first = 0;
    let result = (|| {
        for (index, app) in ctx.apps.iter().enumerate() {
            let cmd = cmd_for(ctx, index);
            if is_patch(app) {
                run_patch(ctx, cluster, app, cmd, &|_| true)?;
                continue;
            }
            interrupt::check(&first.key())?;
            let transport = ctx.connection(&first)?;
            let dir = host_app_dir(app);
            let command = app_command(
                ctx.store,
                app,
                (cluster, &first),
                &dir,
                cmd,
                app_defaults(ctx),
            )?;
            ctx.progress.message(&format!(
                "{}: sending application image {}",
                first.key(),
                app.name
            ));
            let to = Unpack {
                installer: &installer,
                dest: &dir,
                server: server.as_ref(),
            };
            let found = on_host(transport, app, &dir)?;
            let sent = deliver(ctx.store, transport, app, to, found, ctx.progress)?;
            sent_to_first += sent;
            super::image_files::upload(transport, &first, app, &dir)?;
            super::hub::merge_app_tree(transport, &first, &dir)?;
            run_command(ctx, transport, (cluster, &first), app, &command)?;
            record_image(cluster, &first, app);
        }
        Ok(())
    })();
    *ctx.report.bytes_sent.entry(first.key()).or_default() += sent_to_first;
    result
}

/// The patch images' commands on the connected hosts `on` picks (`add`:
/// the new ones, as sealos runs them on the hosts it scales to).
pub(super) fn run_patches(
    ctx: &RunContext,
    cluster: &mut Cluster,
    on: HostFilter,
) -> Result<(), ApplyError> {
    for patch in ctx.apps.iter().filter(|i| is_patch(i)) {
        run_patch(ctx, cluster, patch, None, on)?;
    }
    Ok(())
}

/// A patch image's commands on every host `on` picks, in parallel, in the rootfs.
fn run_patch(
    ctx: &RunContext,
    cluster: &mut Cluster,
    patch: &AppliedImage,
    cmd: Option<&[String]>,
    on: HostFilter,
) -> Result<(), ApplyError> {
    let rootfs = ctx.image.host_rootfs();
    let targets: Vec<_> = ctx.connections.iter().filter(|(h, _)| on(h)).collect();
    let results = per_host(ctx.max_parallel(), &targets, |(host, transport)| {
        interrupt::check(&host.key())?;
        let command = app_command(
            ctx.store,
            patch,
            (cluster, host),
            &rootfs,
            cmd,
            BTreeMap::new(),
        )?;
        run_command(ctx, transport.as_ref(), (cluster, host), patch, &command)
    });
    let mut failures = Vec::new();
    for ((host, _), result) in targets.iter().zip(results) {
        match result {
            Ok(()) => record_image(cluster, host, patch),
            Err(error) => failures.push(HostFailure {
                host: host.key(),
                error: Box::new(error),
            }),
        }
    }
    ApplyError::all_hosts_ok(failures)
}

/// Runs `image`'s command on `host` of `cluster`, its output shown as it
/// comes and kept in the cluster's logs (`output_log`).
fn run_command(
    ctx: &RunContext,
    transport: &dyn Transport,
    (cluster, host): (&Cluster, &Host),
    image: &AppliedImage,
    command: &AppCommand,
) -> Result<(), ApplyError> {
    let Some(argv) = command.argv() else {
        ctx.progress.message(&format!(
            "{}: image {} is in {}; it has no CMD or ENTRYPOINT to run",
            host.key(),
            image.name,
            command.dir
        ));
        return Ok(());
    };
    // The commands cut where a line would wrap; the dry run shows them whole.
    let lines = command.lines.join("; ");
    let label = format!(
        "{}: image {}: running {}",
        host.key(),
        image.name,
        cut(&lines, 80)
    );
    let step = ctx
        .logs
        .step(ctx.progress, &cluster.name, &host.key(), &label);
    let (source, what) = (
        format!("app-{}", image.name),
        format!("`{}`", cut(&lines, 60)),
    );
    let env: Vec<(String, String)> = command.env.clone().into_iter().collect();
    let output = transport
        .run_watching(&argv, &env, None, &|line| {
            step.output_of(&source, &what, line)
        })
        .map_err(ApplyError::transport(host.key()))?;
    drop(step);
    if !output.success() {
        return Err(ApplyError::App {
            image: image.name.clone(),
            host: host.key(),
            command: command.lines.join("; "),
            status: output.status_text(),
            tail: output.tail(20),
        });
    }
    let tail = output.tail(5);
    ctx.progress.message(&format!(
        "{}: {} {} applied ({}){}",
        host.key(),
        if is_patch(image) {
            "patch image"
        } else {
            "application"
        },
        image.name,
        output.status_text(),
        if tail.is_empty() {
            String::new()
        } else {
            format!(":\n{tail}")
        }
    ));
    Ok(())
}

/// `text` cut to `max` characters, `…` marking the cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn record_image(cluster: &mut Cluster, host: &Host, image: &AppliedImage) {
    let status = cluster.status.hosts.entry(host.key()).or_default();
    status.images.retain(|i| i.name != image.name);
    status.images.push(InstalledImage {
        name: image.name.clone(),
        digest: image.digest.clone(),
    });
}

/// `--dry-run`'s part for the images after the rootfs one: where each runs,
/// its commands and their env.
pub(super) fn dry_run(ctx: &RunContext, cluster: &Cluster) -> Result<String, ApplyError> {
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    let mut out = String::new();
    for (index, app) in ctx.apps.iter().enumerate() {
        let cmd = cmd_for(ctx, index);
        let (kind, hosts, dir, defaults) = if is_patch(app) {
            let hosts: Vec<&Host> = cluster.hosts.iter().collect();
            let kind = "patch image, placed over the rootfs";
            (kind, hosts, ctx.image.host_rootfs(), BTreeMap::new())
        } else {
            let kind = "application image";
            (kind, vec![first], host_app_dir(app), app_defaults(ctx))
        };
        for host in hosts {
            let command =
                app_command(ctx.store, app, (cluster, host), &dir, cmd, defaults.clone())?;
            out.push_str(&format!("# {} ({kind}): {}\n", host.key(), app.name));
            out.push_str(&format!("in {dir}:\n"));
            for line in &command.lines {
                out.push_str(&format!("  run: {line}\n"));
            }
            if command.lines.is_empty() {
                out.push_str("  (no CMD or ENTRYPOINT)\n");
            }
            for (k, v) in &command.env {
                out.push_str(&format!("  env: {}\n", shown_env(k, v)));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// `KEY=value` as a dry run shows it: a value whose key looks secret masked.
fn shown_env(key: &str, value: &str) -> String {
    let upper = key.to_ascii_uppercase();
    let secret = [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper
            .split('_')
            .any(|w| ["KEY", "PASS", "PWD", "AUTH"].contains(&w));
    if secret {
        format!("{key}=<masked>")
    } else {
        quote_env(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::{merge_hook_labels, shown_env};
    use crate::apply::image::AppliedImage;
    use crate::runtime::{Hook, HookKind, ImageInfo};

    fn image(labels: &[(&str, &str)]) -> AppliedImage {
        let mut info = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
        for (k, v) in labels {
            info.labels.insert(k.to_string(), v.to_string());
        }
        AppliedImage {
            name: "i".into(),
            digest: "sha256:i".into(),
            layers: Vec::new(),
            info,
            arch: "amd64".into(),
            installer: None,
            host_files: Default::default(),
            deferred_files: None,
            app_trees: false,
            pull_from: None,
        }
    }

    #[test]
    fn hook_labels_of_later_images_override_the_rootfs_ones_and_nothing_else_is_merged() {
        let mut rootfs = image(&[
            ("sealos.io.type", "rootfs"),
            ("init", "init.sh"),
            ("clean", "clean.sh"),
        ]);
        let patch = image(&[
            ("sealos.io.type", "patch"),
            ("init", "init.sh && bash cni.sh"),
            ("sealrs.io/check", "true"),
        ]);
        let app = image(&[("init", "app-init.sh"), ("version", "v9")]);
        merge_hook_labels(&mut rootfs, &[patch, app]);
        let hooks = rootfs.info.hooks();
        assert_eq!(
            hooks.get(HookKind::Init),
            Some(&Hook::Sealos("app-init.sh".into()))
        );
        assert_eq!(
            hooks.get(HookKind::Clean),
            Some(&Hook::Sealos("clean.sh".into()))
        );
        assert_eq!(hooks.get(HookKind::Check), Some(&Hook::Ours("true".into())));
        assert_eq!(rootfs.info.labels["sealos.io.type"], "rootfs");
        assert!(!rootfs.info.labels.contains_key("version"));
    }

    #[test]
    fn a_dry_run_masks_values_of_secret_looking_names_only() {
        for key in [
            "registryPassword",
            "MY_PASSWD",
            "API_TOKEN",
            "ACCESS_KEY",
            "PASS",
            "basic_auth",
        ] {
            assert_eq!(shown_env(key, "s3cret"), format!("{key}=<masked>"));
        }
        for key in ["KUBECONFIG", "HELM_OPTS", "NAMESPACE", "MONKEY"] {
            assert_eq!(shown_env(key, "v"), format!("{key}=v"));
        }
        assert_eq!(shown_env("V", "a b"), "V='a b'");
    }
}
