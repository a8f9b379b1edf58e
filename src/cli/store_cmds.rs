//! `images`, `inspect`, `tag`, `rmi`, `prune`, `fsck`, `save`, `load`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::args::Format;
use crate::layout::{self, Layouts, Verdict};
use crate::reference;
use crate::store::{archive, PruneReport, Store, StoreError, StoredImage};

fn normalize(name: &str) -> Result<String> {
    reference::normalize(name).map_err(anyhow::Error::from)
}

fn load_image(store: &Store, name: &str) -> Result<StoredImage> {
    let full = normalize(name)?;
    store
        .image(&full)
        .with_context(|| format!("reading image {full}"))
}

fn image_size(image: &StoredImage) -> u64 {
    image.manifest.config().size()
        + image
            .manifest
            .layers()
            .iter()
            .map(|l| l.size())
            .sum::<u64>()
}

fn short_id(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// Splits a normalized `registry/repo:tag[@digest]` into what `images` shows.
fn repo_and_tag(name: &str) -> (String, String) {
    match reference::Reference::parse(name) {
        Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
        Err(_) => (name.to_string(), "<none>".into()),
    }
}

pub fn images(store: &Store, format: Format) -> Result<()> {
    let mut rows = Vec::new();
    for tagged in store.list()? {
        let image = store
            .image(&tagged.name)
            .with_context(|| format!("reading image {}", tagged.name))?;
        rows.push((tagged.name, image));
    }
    match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|(name, image)| {
                    json!({
                        "name": name,
                        "digest": image.descriptor.digest().to_string(),
                        "id": image.config_digest.to_string(),
                        "created": image.config.created(),
                        "size": image_size(image),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Format::Table => {
            println!(
                "{:<50} {:<20} {:<14} {:>10}",
                "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
            );
            for (name, image) in &rows {
                let (repo, tag) = repo_and_tag(name);
                println!(
                    "{:<50} {:<20} {:<14} {:>10}",
                    repo,
                    tag,
                    short_id(image.config_digest.as_ref()),
                    human_size(image_size(image))
                );
            }
        }
    }
    Ok(())
}

/// Walks the image's layers and checks them against the layout its labels select.
fn cluster_verdict(store: &Store, image: &StoredImage) -> Result<Verdict> {
    let layouts = Layouts::embedded();
    let labels: std::collections::BTreeMap<String, String> = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let rootfs = layout::scan_layers(
        image.manifest.layers(),
        |layer| {
            let file = store
                .open_blob(layer.digest())
                .map_err(std::io::Error::other)?;
            Ok(Box::new(file) as Box<dyn std::io::Read>)
        },
        layouts,
    )
    .with_context(|| format!("checking the rootfs of {}", image.name))?;
    Ok(layout::evaluate(
        layouts,
        &labels,
        &rootfs,
        &image.config.architecture().to_string(),
    ))
}

fn print_cluster(verdict: &Verdict) {
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    println!("Cluster:");
    println!(
        "  Type:       {}",
        show(verdict.info.image_type.as_ref().map(|t| t.to_string()))
    );
    println!(
        "  Runtime:    {}",
        show(verdict.info.runtime.as_ref().map(|r| r.to_string()))
    );
    println!(
        "  Version:    {}",
        show(verdict.info.version.as_ref().map(|v| v.to_string()))
    );
    if !verdict.components.is_empty() {
        println!("  Components:");
        let width = verdict
            .components
            .iter()
            .map(|c| c.path.len())
            .max()
            .unwrap_or(0);
        for c in &verdict.components {
            let size = if c.size == 0 {
                "-".to_string()
            } else {
                human_size(c.size)
            };
            println!("    {:<width$}  {:>10}  {}", c.path, size, c.detail);
        }
    }
    match (&verdict.layout, verdict.problems.len()) {
        (Some(file), 0) => println!("  Layout:     holds {file}"),
        (Some(file), n) => println!("  Layout:     does NOT hold {file}: {n} problems"),
        (None, 0) => println!("  Layout:     not checked"),
        (None, n) => println!("  Layout:     cannot be checked: {n} problems"),
    }
    for problem in &verdict.problems {
        println!("    - {problem}");
    }
    for note in &verdict.notes {
        println!("  Note:       {note}");
    }
}

pub fn inspect(store: &Store, name: &str, format: Format) -> Result<()> {
    let image = load_image(store, name)?;
    let verdict = cluster_verdict(store, &image)?;
    match format {
        Format::Json => {
            let mut cluster = serde_json::to_value(&verdict)?;
            cluster["holds"] = json!(verdict.holds());
            let doc = json!({
                "name": image.name,
                "digest": image.descriptor.digest().to_string(),
                "id": image.config_digest.to_string(),
                "size": image_size(&image),
                "cluster": cluster,
                "manifest": image.manifest,
                "config": image.config,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            println!("Name:         {}", image.name);
            println!("Digest:       {}", image.descriptor.digest());
            println!("Image ID:     {}", image.config_digest);
            println!(
                "Platform:     {}/{}",
                image.config.os(),
                image.config.architecture()
            );
            println!("Size:         {}", human_size(image_size(&image)));
            if let Some(config) = image.config.config() {
                if let Some(env) = config.env() {
                    println!("Env:");
                    for e in env {
                        println!("  {e}");
                    }
                }
                if let Some(labels) = config.labels() {
                    let sorted: std::collections::BTreeMap<_, _> = labels.iter().collect();
                    println!("Labels:");
                    for (k, v) in sorted {
                        println!("  {k}={v}");
                    }
                }
                if let Some(ep) = config.entrypoint() {
                    println!("Entrypoint:   {}", serde_json::to_string(ep)?);
                }
                if let Some(cmd) = config.cmd() {
                    println!("Cmd:          {}", serde_json::to_string(cmd)?);
                }
            }
            println!("Layers:");
            for layer in image.manifest.layers() {
                println!(
                    "  {}  {:>10}  {}",
                    layer.digest(),
                    human_size(layer.size()),
                    layer.media_type()
                );
            }
            print_cluster(&verdict);
        }
    }
    Ok(())
}

pub fn tag(store: &Store, source: &str, targets: &[String]) -> Result<()> {
    let image = load_image(store, source)?;
    for target in targets {
        let full = normalize(target).with_context(|| format!("new name {target:?}"))?;
        store.tag(&full, &image.descriptor)?;
    }
    Ok(())
}

/// Normalizes every name and checks it is in the store, before anything changes.
fn existing_names(store: &Store, names: &[String]) -> Result<Vec<String>> {
    let mut full = Vec::new();
    for name in names {
        let n = normalize(name)?;
        if store.lookup(&n)?.is_none() {
            bail!("image {n} is not in the local store (see `sealrs images`)");
        }
        full.push(n);
    }
    Ok(full)
}

pub fn rmi(store: &Store, names: &[String], quiet: bool) -> Result<()> {
    let full = existing_names(store, names)?;
    for n in &full {
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

fn prune_summary(report: &PruneReport) -> String {
    format!(
        "removed {} blobs ({}) and {} temporary files ({}); {} blobs in use",
        report.blobs_removed,
        human_size(report.bytes_removed),
        report.temp_files_removed,
        human_size(report.temp_bytes_removed),
        report.blobs_kept
    )
}

pub fn prune(store: &Store) -> Result<()> {
    let report = store.prune()?;
    println!("{}", prune_summary(&report));
    Ok(())
}

pub fn fsck(store: &Store) -> Result<()> {
    let report = store.fsck()?;
    for problem in &report.problems {
        println!("{problem}");
    }
    println!(
        "checked {} images, {} blobs ({}): {}",
        report.images_checked,
        report.blobs_checked,
        human_size(report.bytes_checked),
        if report.is_clean() {
            "all intact".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    if !report.is_clean() {
        bail!("the store has damaged blobs: remove the images named above and pull or build them again");
    }
    Ok(())
}

pub fn save(store: &Store, names: &[String], output: &Path, quiet: bool) -> Result<()> {
    let full = existing_names(store, names)?;
    archive::save(store, &full, output)
        .with_context(|| format!("saving to {}", output.display()))?;
    if !quiet {
        eprintln!("saved {} to {}", full.join(", "), output.display());
    }
    Ok(())
}

pub fn load(store: &Store, input: &Path) -> Result<()> {
    let normalize = |name: &str| reference::normalize(name).map_err(|e| e.to_string());
    let names = archive::load(store, input, &normalize)
        .with_context(|| format!("loading {}", input.display()))?;
    for name in names {
        println!("{name}");
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker_images_output() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
    }

    #[test]
    fn image_ids_are_the_first_twelve_hex_characters() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
