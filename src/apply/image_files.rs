//! The files of an image that change before it is applied, as sealos changes
//! them (labring/sealos v5.1): the Clusterfile's Config documents first
//! (lifecycle/pkg/config `Dumper.WriteFiles`: override, merge, insert,
//! append), then every `*.tmpl` in `etc/`, `scripts/` and `manifests/`
//! rendered into the file without `.tmpl` with the host's env
//! (lifecycle/pkg/filesystem/rootfs `mountRootfs`).
//!
//! Where sealos renders on each host with `sealctl render` and finds a
//! mistake there, halfway through, the operator here reads the originals
//! from the store (or streams the layers that hold them from the image's
//! registry) and renders them for every host during verify, before any
//! host changes: a template that fails names its file, line and column.
//! What it made travels to the hosts as it is: in the installer's request for
//! the cluster image (written into the rootfs before the host plans), and
//! uploaded into an application's directory once it is unpacked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use oci_spec::image::Descriptor;
use serde_yaml_ng::{Mapping, Value};

use super::context::RunContext;
use super::image::AppliedImage;
use super::ApplyError;
use crate::cluster::{Cluster, ConfigDoc, Host, Strategy};
use crate::digest::Hashing;
use crate::installer::ImageFile;
use crate::store::{layer_path, Store};
use crate::template;
use crate::transport::Transport;

/// Files bigger than this are not read for Configs or templates.
const MAX_FILE: u64 = 16 << 20;

/// An original file of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Original {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Prepares every image of `ctx` for every host of `cluster`: the results
/// go into each image's `host_files`. Every problem at once, naming the
/// image, the file and the hosts.
pub(super) fn prepare(ctx: &mut RunContext, cluster: &Cluster) -> Result<(), ApplyError> {
    let kube_version = ctx
        .image
        .info
        .labels
        .get("version")
        .cloned()
        .or_else(|| ctx.image.info.version.as_ref().map(|v| v.to_string()));
    let store = ctx.store;
    let images = std::iter::once(&mut ctx.image).chain(ctx.apps.iter_mut());
    for image in images {
        prepare_image(store, image, cluster, kube_version.as_deref())?;
    }
    Ok(())
}

fn prepare_image(
    store: &Store,
    image: &mut AppliedImage,
    cluster: &Cluster,
    kube_version: Option<&str>,
) -> Result<(), ApplyError> {
    image.host_files.clear();
    let configs: Vec<&ConfigDoc> = cluster
        .configs
        .iter()
        .filter(|c| matches_image(c, &image.name))
        .collect();
    // `delete` and `reset` plan with a pinned image whose layers may be gone
    // from the store; they install nothing, so there is nothing to prepare
    // (what installs sends the layers, and needs them then).
    let in_store = image.layers.iter().all(|l| store.has_blob(l.digest()));
    if !in_store && image.pull_from.is_none() {
        return Ok(());
    }
    let wanted = |path: &str| template::is_template(path) || configs.iter().any(|c| c.path == path);
    let originals = read_files(store, image, &wanted).map_err(|e| ApplyError::ImageFiles {
        image: image.name.clone(),
        problems: vec![format!("reading its layers: {e}")],
    })?;
    if originals.is_empty() && configs.is_empty() {
        return Ok(());
    }
    // Problem → the hosts it happens on: most are the same everywhere.
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &cluster.hosts {
        let env = template::host_env(
            &image.info.env,
            &cluster.env,
            &host.env,
            kube_version,
            &host.sealos_roles(),
        );
        match files_for(&originals, &configs, &env) {
            Ok(files) => {
                image.host_files.insert(host.key(), files);
            }
            Err(found) => {
                for p in found {
                    problems.entry(p).or_default().push(host.key());
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let every = cluster.hosts.len();
    Err(ApplyError::ImageFiles {
        image: image.name.clone(),
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
    let mut files = BTreeMap::new();
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
    Ok(files)
}

/// [`read_layer`] of `layer`, the next blob of `stream`: read to its end and
/// refused, with whatever it changed, unless it is what its digest says.
fn read_remote(
    stream: &mut impl Read,
    layer: &Descriptor,
    files: &mut BTreeMap<String, Original>,
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
    files: &mut BTreeMap<String, Original>,
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
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            let prefix = format!("{dir}/");
            files.retain(|p: &String, _| !p.starts_with(&prefix));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let gone = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            let below = format!("{gone}/");
            files.retain(|p: &String, _| p != &gone && !p.starts_with(&below));
            continue;
        }
        if !wanted(&path) {
            continue;
        }
        if !entry.header().entry_type().is_file() || entry.size() > MAX_FILE {
            files.remove(&path);
            continue;
        }
        let mode = entry.header().mode()? & 0o7777;
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        files.insert(path, Original { content, mode });
    }
    Ok(list.then_some(listed))
}

#[cfg(test)]
mod tests;
