//! `images`, `tag`, `rmi`, `prune`, `fsck`, `save`, `load`.

use std::collections::BTreeSet;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::args::{Format, ImagesArgs, RmiArgs};
use super::resolve::{resolve, Found};
use crate::progress::text::{count, short_digest, size};
use crate::reference::{self, Reference};
use crate::store::{archive, Descriptor, ListedImage, PruneReport, Store, StoreError, StoredImage};

pub(super) fn image_size(image: &StoredImage) -> u64 {
    image.manifest.config().size()
        + image
            .manifest
            .layers()
            .iter()
            .map(|l| l.size())
            .sum::<u64>()
}

/// Splits a normalized `registry/repo:tag[@digest]` into what `images` shows.
fn repo_and_tag(name: &str) -> (String, String) {
    match Reference::parse(name) {
        Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
        Err(_) => (name.to_string(), "<none>".into()),
    }
}

/// `images REPO[:TAG]`: the names to show; a repository without a tag shows all its tags.
fn repository_filter(repo: &str) -> Result<impl Fn(&str) -> bool> {
    let wanted = Reference::parse(repo).with_context(|| format!("images {repo}"))?;
    let tag_given = repo
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    Ok(move |name: &str| {
        Reference::parse(name)
            .is_ok_and(|r| r.name() == wanted.name() && (!tag_given || r.tag == wanted.tag))
    })
}

/// What `images` says of an image it cannot read, short enough for a table cell.
fn broken_note(err: &StoreError) -> String {
    let short = |d: &crate::store::Digest| format!("sha256:{}", short_digest(d.as_ref()));
    match err {
        StoreError::BlobNotFound { digest } => format!("missing blob {}", short(digest)),
        StoreError::DigestMismatch { expected, .. } => format!("corrupt blob {}", short(expected)),
        StoreError::SizeMismatch { digest, .. } => format!("corrupt blob {}", short(digest)),
        other => other.to_string(),
    }
}

/// Lists the store; an image with a missing or corrupt blob is listed and
/// marked broken (the others are unaffected, and the exit status stays 0).
/// `ids_only` (-q) prints each IMAGE ID once.
pub fn images(store: &Store, args: &ImagesArgs, ids_only: bool) -> Result<()> {
    let mut rows = store.list_images()?;
    if let Some(repo) = &args.repository {
        let keep = repository_filter(repo)?;
        rows.retain(|row| keep(&row.name));
    }
    if ids_only {
        let mut seen = BTreeSet::new();
        for id in rows.iter().filter_map(|r| r.config_digest.as_ref()) {
            if seen.insert(short_digest(id.as_ref())) {
                outln!("{}", short_digest(id.as_ref()))?;
            }
        }
        return Ok(());
    }
    let id = |row: &ListedImage| row.config_digest.as_ref().map(|d| d.to_string());
    match args.format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|row| {
                    let image = row.image.as_ref().ok();
                    json!({
                        "name": row.name,
                        "digest": row.descriptor.digest().to_string(),
                        "id": id(row),
                        "created": image.and_then(|i| i.config.created().clone()),
                        "size": image.map(image_size),
                        "broken": row.image.as_ref().err().map(|e| e.to_string()),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&list)?)?;
        }
        Format::Table => {
            outln!(
                "{:<50} {:<20} {:<14} {:>10}",
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "SIZE"
            )?;
            for row in &rows {
                let (repo, tag) = repo_and_tag(&row.name);
                let short = id(row).map_or("-".to_string(), |d| short_digest(&d).to_string());
                match &row.image {
                    Ok(image) => outln!(
                        "{repo:<50} {tag:<20} {short:<14} {:>10}",
                        size(image_size(image))
                    )?,
                    Err(err) => outln!(
                        "{repo:<50} {tag:<20} {short:<14} {:>10}  <broken: {}>",
                        "-",
                        broken_note(err)
                    )?,
                }
            }
        }
    }
    let broken = rows.iter().filter(|r| r.image.is_err()).count();
    if broken > 0 {
        eprintln!(
            "warning: {broken} {} cannot be used (marked broken); `sealrs fsck` tells more, \
             and `sealrs rmi NAME` removes one (pull or load it again to repair it)",
            if broken == 1 { "image" } else { "images" }
        );
    }
    Ok(())
}

/// The IMAGE ID of the manifest `desc`, or the manifest digest's start if it cannot be read.
fn id_of(store: &Store, desc: &Descriptor) -> String {
    match store.read_manifest(desc) {
        Ok(manifest) => short_digest(manifest.config().digest().as_ref()).to_string(),
        Err(_) => short_digest(desc.digest().as_ref()).to_string(),
    }
}

/// Gives the image more names; a name that was on another image moves, and says so.
pub fn tag(store: &Store, source: &str, targets: &[String], quiet: bool) -> Result<()> {
    let found = resolve(store, source)?;
    for target in targets {
        let full = reference::normalize(target).with_context(|| format!("new name {target:?}"))?;
        let Some(old) = store.tag(&full, &found.descriptor)? else {
            continue;
        };
        if old.digest() == found.descriptor.digest() || quiet {
            continue;
        }
        let (from, to) = (id_of(store, &old), id_of(store, &found.descriptor));
        let named = store
            .list()?
            .iter()
            .any(|t| t.descriptor.digest() == old.digest());
        let left = if named {
            ""
        } else {
            " (it has no name left; `sealrs prune` frees its space)"
        };
        eprintln!("{full} moved from image {from} to image {to}{left}");
    }
    Ok(())
}

/// Every name that `inputs` stand for, each once, all resolved before anything
/// changes; `check` may refuse what an input found.
fn names_of(
    store: &Store,
    inputs: &[String],
    check: impl Fn(&str, &Found) -> Result<()>,
) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for input in inputs {
        let found = resolve(store, input)?;
        check(input, &found)?;
        for name in found.names {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Removes names; an image given by IMAGE ID or digest loses all its names,
/// which takes `-f` when there are several (as docker asks).
pub fn rmi(store: &Store, args: &RmiArgs, quiet: bool) -> Result<()> {
    let names = names_of(store, &args.images, |input, found| {
        if found.by_id && found.names.len() > 1 && !args.force {
            bail!(
                "{input} is one image with {} names ({}): remove the names one by one, \
                 or all of them with `sealrs rmi -f {input}`",
                found.names.len(),
                found.names.join(", ")
            );
        }
        Ok(())
    })?;
    warn_saved_clusters(store, &names);
    for n in &names {
        store.untag(n)?;
        if !quiet {
            eprintln!("untagged {n}");
        }
    }
    match store.prune() {
        Ok(report) if !quiet => eprintln!("{}", prune_summary(&report)),
        Ok(_) => {}
        // A build or load is writing: its blobs must stay, so freeing space waits for `sealrs prune`.
        Err(StoreError::Locked { .. }) => {
            eprintln!("note: another sealrs command is writing to the store; run `sealrs prune` later to free space")
        }
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// Warns for each saved cluster (under the store's root) that runs one of
/// `names`, by name or by the digest it pins: removing it does not stop
/// `reset` and `delete`, but `add` needs it back.
fn warn_saved_clusters(store: &Store, names: &[String]) {
    let Ok(dirs) = std::fs::read_dir(store.root().join("clusters")) else {
        return;
    };
    let removed: Vec<(String, Option<String>)> = names
        .iter()
        .map(|n| {
            let digest = store
                .lookup(n)
                .ok()
                .flatten()
                .map(|d| d.digest().to_string());
            (n.clone(), digest)
        })
        .collect();
    let mut clusters: Vec<String> = dirs
        .flatten()
        .filter_map(|d| d.file_name().into_string().ok())
        .collect();
    clusters.sort();
    for name in clusters {
        let Ok(cluster) = crate::apply::load_cluster(store.root(), &name) else {
            continue;
        };
        for (image, digest) in &removed {
            let pinned = cluster
                .status
                .images
                .iter()
                .find(|p| Some(&p.digest) == digest.as_ref() || &p.name == image);
            if pinned.is_some() || cluster.images.contains(image) {
                let runs = pinned
                    .map(|p| format!(" ({})", p.digest))
                    .unwrap_or_default();
                eprintln!(
                    "warning: saved cluster {name} runs {image}{runs}: reset and delete still work with the installer on its hosts, but add needs the image back (sealrs pull or load)"
                );
            }
        }
    }
}

fn prune_summary(report: &PruneReport) -> String {
    format!(
        "removed {} ({}) and {} ({}); {} in use",
        count(report.blobs_removed, "blob"),
        size(report.bytes_removed),
        count(report.temp_files_removed, "temporary file"),
        size(report.temp_bytes_removed),
        count(report.blobs_kept, "blob")
    )
}

pub fn prune(store: &Store) -> Result<()> {
    let report = store.prune()?;
    outln!("{}", prune_summary(&report))?;
    Ok(())
}

pub fn fsck(store: &Store) -> Result<()> {
    let report = store.fsck()?;
    for problem in &report.problems {
        outln!("{problem}")?;
    }
    outln!(
        "checked {}, {} ({}): {}",
        count(report.images_checked, "image"),
        count(report.blobs_checked, "blob"),
        size(report.bytes_checked),
        if report.is_clean() {
            "all intact".to_string()
        } else {
            count(report.problems.len(), "problem")
        }
    )?;
    if !report.is_clean() {
        bail!("the store has damaged blobs: remove the images named above and pull or build them again");
    }
    Ok(())
}

/// Writes the images to `output`, or to standard output when it is not a terminal.
pub fn save(store: &Store, inputs: &[String], output: Option<&Path>, quiet: bool) -> Result<()> {
    let names = names_of(store, inputs, |_, _| Ok(()))?;
    let Some(output) = output else {
        let mut stdout = io::stdout().lock();
        if stdout.is_terminal() {
            bail!("an archive is not for a terminal: redirect standard output (`sealrs save IMAGE > image.tar`) or give -o FILE");
        }
        // The archive is made whole first (every blob re-hashed), so a damaged
        // store fails before a byte is written. The session keeps prune away from it.
        let _session = store.write_session()?;
        let tmp = tempfile::Builder::new()
            .prefix("save-")
            .tempfile_in(store.tmp_dir())
            .context("creating a temporary archive in the store")?;
        archive::save(store, &names, tmp.path())?;
        let mut archive = std::fs::File::open(tmp.path()).context("reading the archive back")?;
        io::copy(&mut archive, &mut stdout)?;
        stdout.flush()?;
        if !quiet {
            eprintln!("saved {} to standard output", names.join(", "));
        }
        return Ok(());
    };
    archive::save(store, &names, output)
        .with_context(|| format!("saving to {}", output.display()))?;
    if !quiet {
        eprintln!("saved {} to {}", names.join(", "), output.display());
    }
    Ok(())
}

/// Loads an archive from `input`, or from standard input when it is not a terminal.
pub fn load(store: &Store, input: Option<&Path>) -> Result<()> {
    let (path, shown) = match input {
        Some(path) => (path, path.display().to_string()),
        None if io::stdin().is_terminal() => {
            bail!("give the archive with -i FILE or on standard input (`sealrs load < image.tar`)")
        }
        // A pipe or a redirected file: one pass over the tar, as from a file.
        None => (Path::new("/dev/stdin"), "standard input".to_string()),
    };
    let normalize = |name: &str| reference::normalize(name).map_err(|e| e.to_string());
    let names =
        archive::load(store, path, &normalize).with_context(|| format!("loading {shown}"))?;
    for name in names {
        outln!("{name}")?;
    }
    Ok(())
}
