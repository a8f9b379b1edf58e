//! The files of an image that change before it is applied, as sealos changes
//! them (labring/sealos v5.1): the Clusterfile's Config documents first
//! (lifecycle/pkg/config `Dumper.WriteFiles`: override, merge, insert,
//! append), then every `*.tmpl` in `etc/`, `scripts/` and `manifests/`
//! rendered into the file without `.tmpl` with the host's env
//! (lifecycle/pkg/filesystem/rootfs `mountRootfs`).
//!
//! Where sealos renders on each host with `sealctl render` and finds a
//! mistake there, halfway through, the operator here reads the originals
//! from the store and renders them for every host during verify, before any
//! host changes: a template that fails names its file, line and column.
//! An image that stays in its registry is prepared as soon as the first
//! host has pulled its layers, from that host's copy ([`from_host`]),
//! still before any host is verified or changed; only a dry run (no host)
//! streams the layers that hold them from the registry.
//! What it made travels to the hosts as it is: in the installer's request for
//! the cluster image (written into the rootfs before the host plans), and
//! uploaded into an application's directory once it is unpacked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use oci_spec::image::Descriptor;
use serde_yaml_ng::{Mapping, Value};

use super::context::RunContext;
use super::image::{host_layer, AppliedImage};
use super::ApplyError;
use crate::cluster::{Cluster, ConfigDoc, Host, Strategy};
use crate::digest::Hashing;
use crate::installer::{ImageFile, Original, Originals, MAX_FILE};
use crate::store::{layer_path, Store};
use crate::template;
use crate::transport::Transport;

/// Prepares every image of `ctx` for every host of `cluster`: the results
/// go into each image's `host_files`. Every problem at once, naming the
/// image, the file and the hosts. An image whose layers stay in a registry
/// is prepared only once a host holds them ([`Deferred`]), except in a dry
/// run, which streams the layers it needs.
pub(super) fn prepare(ctx: &mut RunContext, cluster: &Cluster) -> Result<(), ApplyError> {
    let kube_version = ctx
        .image
        .info
        .labels
        .get("version")
        .cloned()
        .or_else(|| ctx.image.info.version.as_ref().map(|v| v.to_string()));
    let (store, dry_run) = (ctx.store, ctx.options.dry_run);
    let images = std::iter::once(&mut ctx.image).chain(ctx.apps.iter_mut());
    for image in images {
        prepare_image(store, image, cluster, kube_version.as_deref(), dry_run)?;
    }
    Ok(())
}

/// What makes an image's files once a host holds its layers: in registry
/// mode the operator keeps no layer to read the originals from, so the
/// first host that pulled them reads them (`sealrs installer originals`),
/// before any host is verified or changed ([`from_host`]).
#[derive(Debug, Clone)]
pub(super) struct Deferred {
    configs: Vec<ConfigDoc>,
    /// Each host's template env, by host key.
    envs: BTreeMap<String, BTreeMap<String, String>>,
}

fn prepare_image(
    store: &Store,
    image: &mut AppliedImage,
    cluster: &Cluster,
    kube_version: Option<&str>,
    dry_run: bool,
) -> Result<(), ApplyError> {
    image.host_files.clear();
    image.deferred_files = None;
    let configs: Vec<ConfigDoc> = cluster
        .configs
        .iter()
        .filter(|c| matches_image(c, &image.name))
        .cloned()
        .collect();
    // `delete` and `reset` plan with a pinned image whose layers may be gone
    // from the store; they install nothing, so there is nothing to prepare
    // (what installs sends the layers, and needs them then).
    let in_store = image.layers.iter().all(|l| store.has_blob(l.digest()));
    if !in_store && image.pull_from.is_none() {
        return Ok(());
    }
    let config_paths: Vec<String> = configs.iter().map(|c| c.path.clone()).collect();
    let wanted = |path: &str| crate::installer::wanted(path, &config_paths);
    let envs: BTreeMap<String, BTreeMap<String, String>> = cluster
        .hosts
        .iter()
        .map(|host| {
            let env = template::host_env(
                &image.info.env,
                &cluster.env,
                &host.env,
                kube_version,
                &host.sealos_roles(),
            );
            (host.key(), env)
        })
        .collect();
    if !in_store && !dry_run {
        // Layers known (from an earlier read) to hold nothing wanted need no host.
        let nothing = configs.is_empty()
            && image.layers.iter().all(|l| {
                store
                    .layer_paths(l.digest())
                    .is_some_and(|paths| !paths.iter().any(|p| wanted(p)))
            });
        if !nothing {
            image.deferred_files = Some(Deferred { configs, envs });
        }
        return Ok(());
    }
    let originals = read_files(store, image, &wanted).map_err(|e| ApplyError::ImageFiles {
        image: image.name.clone(),
        problems: vec![format!("reading its layers: {e}")],
    })?;
    if originals.is_empty() && configs.is_empty() {
        return Ok(());
    }
    image.host_files = render(
        &image.name,
        &originals,
        &configs,
        &envs,
        cluster.hosts.len(),
    )?;
    Ok(())
}

/// Each host's files of image `name`: every problem at once, with the hosts
/// it happens on unless it happens on all `every` of them.
fn render(
    name: &str,
    originals: &BTreeMap<String, Original>,
    configs: &[ConfigDoc],
    envs: &BTreeMap<String, BTreeMap<String, String>>,
    every: usize,
) -> Result<BTreeMap<String, Vec<ImageFile>>, ApplyError> {
    let configs: Vec<&ConfigDoc> = configs.iter().collect();
    let mut files = BTreeMap::new();
    // Problem → the hosts it happens on: most are the same everywhere.
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, env) in envs {
        match files_for(originals, &configs, env) {
            Ok(made) => {
                files.insert(host.clone(), made);
            }
            Err(found) => {
                for p in found {
                    problems.entry(p).or_default().push(host.clone());
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(files);
    }
    Err(ApplyError::ImageFiles {
        image: name.to_string(),
        problems: problems
            .into_iter()
            .map(|(p, hosts)| {
                if hosts.len() == every {
                    p
                } else {
                    format!("{p} (on {})", hosts.join(", "))
                }
            })
            .collect(),
    })
}

/// The files of `image` for every host `deferred` has, from the originals in
/// the layer directories of the host `transport` reaches (which holds every
/// layer `image` lists). An installer too old to read them, or a host that
/// cannot, leaves the operator to stream the layers it needs from the
/// registry, as before.
pub(super) fn from_host(
    store: &Store,
    transport: &dyn Transport,
    image: &AppliedImage,
    deferred: &Deferred,
    progress: &dyn crate::progress::Progress,
) -> Result<BTreeMap<String, Vec<ImageFile>>, ApplyError> {
    let config_paths: Vec<String> = deferred.configs.iter().map(|c| c.path.clone()).collect();
    let request = crate::installer::OriginalsRequest {
        layers: image.layers.iter().map(|l| host_layer(l).into()).collect(),
        config_paths: config_paths.clone(),
    };
    let json = serde_json::to_string(&request).expect("a request serializes");
    let read = match super::remote::call_installer(transport, image, &["originals"], &json) {
        Ok((_, out)) if out.success() => serde_json::from_slice::<HostOriginals>(&out.stdout)
            .map_err(|e| format!("its answer is not valid: {e}")),
        Ok((_, out)) => Err(format!("{}: {}", out.status_text(), out.tail(1).trim())),
        Err(e) => Err(e.to_string()),
    };
    let originals = match read {
        Ok(read) => {
            progress.message(&format!(
                "{}: read {} of image {} from its layers (templates, Config targets)",
                transport.address(),
                crate::progress::text::count(read.files.len(), "file"),
                image.name
            ));
            read.files
        }
        Err(why) => {
            progress.message(&format!(
                "{}: its installer cannot read the templates of image {} ({why}); reading the layers that hold them from the registry",
                transport.address(),
                image.name
            ));
            let wanted = |path: &str| crate::installer::wanted(path, &config_paths);
            read_files(store, image, &wanted).map_err(|e| ApplyError::ImageFiles {
                image: image.name.clone(),
                problems: vec![format!("reading its layers: {e}")],
            })?
        }
    };
    if originals.is_empty() && deferred.configs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let every = deferred.envs.len();
    render(
        &image.name,
        &originals,
        &deferred.configs,
        &deferred.envs,
        every,
    )
}

/// What `sealrs installer originals` prints.
#[derive(serde::Deserialize)]
struct HostOriginals {
    files: BTreeMap<String, Original>,
}

/// Puts `image`'s files for `host` into `dir`, where the image is unpacked on
/// it (an application's directory): each replaced whole, never written
/// through (the directory shares inodes with the layer cache).
pub(super) fn upload(
    transport: &dyn Transport,
    host: &Host,
    image: &AppliedImage,
    dir: &str,
) -> Result<(), ApplyError> {
    for file in image.host_files.get(&host.key()).into_iter().flatten() {
        transport
            .upload_bytes(
                file.content.as_bytes(),
                &format!("{dir}/{}", file.path),
                file.mode,
            )
            .map_err(ApplyError::transport(host.key()))?;
    }
    Ok(())
}

/// The dry-run form: `images`' files for `host`, shown as a plan shows a file.
pub(super) fn render_dry_run<'a>(
    images: impl IntoIterator<Item = &'a AppliedImage>,
    host: &Host,
) -> String {
    let mut out = String::new();
    for image in images {
        let Some(files) = image.host_files.get(&host.key()).filter(|f| !f.is_empty()) else {
            continue;
        };
        out.push_str(&format!(
            "image files of {} (Configs applied, templates rendered):\n",
            image.name
        ));
        for f in files {
            out.push_str(&format!(
                "  file: {} mode {:04o} ({} bytes)\n",
                f.path,
                f.mode,
                f.content.len()
            ));
            for line in f.content.lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    out
}

/// Whether a Config is for the image named `name` (`spec.match`, compared
/// as written and as a normalized reference; no match: every image).
fn matches_image(config: &ConfigDoc, name: &str) -> bool {
    match &config.image {
        None => true,
        Some(m) => m == name || crate::reference::normalize(m).is_ok_and(|n| n == name),
    }
}

/// What one host gets of an image: the Configs applied in order, then the
/// templates rendered (a rendered file wins over a Config of the same path,
/// as sealos renders after it dumps the Configs).
pub(super) fn files_for(
    originals: &BTreeMap<String, Original>,
    configs: &[&ConfigDoc],
    env: &BTreeMap<String, String>,
) -> Result<Vec<ImageFile>, Vec<String>> {
    let mut problems = Vec::new();
    let mut current: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for (path, original) in originals {
        match String::from_utf8(original.content.clone()) {
            Ok(text) => {
                current.insert(path.clone(), (text, original.mode));
            }
            Err(_) => problems.push(format!(
                "{path}: not UTF-8 text, so it can be neither rendered nor changed by a Config"
            )),
        }
    }
    let mut changed = BTreeSet::new();
    for config in configs {
        let base = current.get(&config.path);
        match apply_config(base.map(|(t, _)| t.as_str()), config) {
            Ok(text) => {
                let mode = base.map_or(0o644, |(_, m)| *m);
                current.insert(config.path.clone(), (text, mode));
                changed.insert(config.path.clone());
            }
            Err(e) => problems.push(format!("Config {:?} ({}): {e}", config.name, config.path)),
        }
    }
    let mut out: BTreeMap<String, ImageFile> = changed
        .iter()
        .map(|p| {
            let (content, mode) = current[p].clone();
            (
                p.clone(),
                ImageFile {
                    path: p.clone(),
                    content,
                    mode,
                },
            )
        })
        .collect();
    let templates = current.iter().map(|(p, (t, _))| (p.as_str(), t.as_str()));
    match template::render_files(templates, env) {
        Ok(rendered) => {
            for (path, content) in rendered {
                let mode = current[&format!("{path}{}", template::SUFFIX)].1;
                out.insert(
                    path.clone(),
                    ImageFile {
                        path,
                        content,
                        mode,
                    },
                );
            }
        }
        Err(errors) => problems.extend(errors.iter().map(|e| format!("{e}"))),
    }
    if problems.is_empty() {
        Ok(out.into_values().collect())
    } else {
        Err(problems)
    }
}

/// A Config's data applied to the file's text (`None`: the image has no
/// such file), as sealos' `Dumper.WriteFiles` does.
pub(super) fn apply_config(base: Option<&str>, config: &ConfigDoc) -> Result<String, String> {
    let base = base.unwrap_or("");
    match config.strategy {
        Strategy::Override => Ok(config.data.clone()),
        Strategy::Insert => Ok(format!("{}\n{base}", config.data)),
        Strategy::Append => Ok(format!("{base}\n{}", config.data)),
        Strategy::Merge => {
            let overlay = mapping(&config.data).map_err(|e| format!("spec.data: {e}"))?;
            let mut docs = Vec::new();
            // sealos splits the file at "---\n" and merges into each part.
            for part in base.split("---\n") {
                let mut doc = mapping(part).map_err(|e| format!("the image's file: {e}"))?;
                crate::plan::merge_mappings(&mut doc, overlay.clone());
                docs.push(serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?);
            }
            Ok(docs.join("\n---\n"))
        }
    }
}

fn mapping(text: &str) -> Result<Mapping, String> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(_) => Err("a merge needs a YAML mapping".into()),
        Err(e) => Err(format!("not YAML: {e}")),
    }
}

/// The regular files of `image` whose path `wanted` accepts, as its layers
/// leave them (later layers win; whiteouts remove). A layer the store lacks
/// is streamed from the image's registry and checked against its digest,
/// never kept; the layer paths kept in the store spare every layer known to
/// hold nothing wanted, from the store and from the registry alike.
fn read_files(
    store: &Store,
    image: &AppliedImage,
    wanted: &dyn Fn(&str) -> bool,
) -> io::Result<BTreeMap<String, Original>> {
    // A layer matters when it holds a wanted file or hides one (a whiteout).
    let matters = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        wanted(path) || name.starts_with(".wh.")
    };
    let opened: Vec<(&Descriptor, Option<Vec<String>>)> = image
        .layers
        .iter()
        .map(|layer| (layer, store.layer_paths(layer.digest())))
        .filter(|(_, known)| {
            known
                .as_ref()
                .is_none_or(|paths| paths.iter().any(|p| matters(p)))
        })
        .collect();
    let remote: Vec<&Descriptor> = opened
        .iter()
        .map(|(layer, _)| *layer)
        .filter(|layer| !store.has_blob(layer.digest()))
        .collect();
    // One stream for them all, in image order.
    let mut stream = match (&image.pull_from, remote.is_empty()) {
        (Some(registry), false) => Some(registry.stream(&remote).map_err(io::Error::other)?),
        _ => None,
    };
    let mut files = Originals::default();
    for (layer, known) in opened {
        let listed = match stream.as_mut().filter(|_| !store.has_blob(layer.digest())) {
            Some(stream) => read_remote(stream, layer, &mut files, wanted, known.is_none())?,
            None => {
                let blob = store.open_blob(layer.digest()).map_err(io::Error::other)?;
                read_layer(blob, &mut files, wanted, known.is_none())?
            }
        };
        if let Some(listed) = listed {
            // A cache: a layer whose paths could not be kept is read again.
            let _ = store.remember_layer_paths(layer.digest(), &listed);
        }
    }
    Ok(files.files)
}

/// [`read_layer`] of `layer`, the next blob of `stream`: read to its end and
/// refused, with whatever it changed, unless it is what its digest says.
fn read_remote(
    stream: &mut impl Read,
    layer: &Descriptor,
    files: &mut Originals,
    wanted: &dyn Fn(&str) -> bool,
    list: bool,
) -> io::Result<Option<Vec<String>>> {
    let mut blob = Hashing::new(stream.take(layer.size()));
    let read = read_layer(&mut blob, files, wanted, list);
    // A tar reader stops at the archive's end marker, before the blob's end.
    io::copy(&mut blob, &mut io::sink())?;
    let (_, found, size) = blob.into_parts();
    if &found != layer.digest() || size != layer.size() {
        return Err(io::Error::other(format!(
            "the registry served layer {} as {size} bytes of {found}, not what its digest says; nothing of it was used",
            layer.digest()
        )));
    }
    read
}

/// Applies one layer's tar (`blob`, compressed or not) to `files`; with
/// `list`, returns every path it holds.
fn read_layer(
    blob: impl Read,
    files: &mut Originals,
    wanted: &dyn Fn(&str) -> bool,
    list: bool,
) -> io::Result<Option<Vec<String>>> {
    let mut listed = Vec::new();
    let mut archive = tar::Archive::new(crate::compression::decompressed(blob)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = layer_path(&entry.path_bytes());
        if list {
            listed.push(path.clone());
        }
        if files.whiteout(&path) || !wanted(&path) {
            continue;
        }
        if !entry.header().entry_type().is_file() || entry.size() > MAX_FILE {
            files.shadow(&path);
            continue;
        }
        let mode = entry.header().mode()? & 0o7777;
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        files.put(path, Original { content, mode });
    }
    Ok(list.then_some(listed))
}

#[cfg(test)]
mod tests;
