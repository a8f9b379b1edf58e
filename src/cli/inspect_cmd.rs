//! `inspect`: an image's manifest and config, and what its rootfs holds.

use std::io;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::args::Format;
use super::resolve::resolve;
use super::store_cmds::image_size;
use crate::layout::{self, Layouts, Verdict};
use crate::progress::text::size;
use crate::store::{Store, StoredImage};

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

fn print_cluster(verdict: &Verdict) -> io::Result<()> {
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    outln!("Cluster:")?;
    outln!(
        "  Type:       {}",
        show(verdict.info.image_type.as_ref().map(|t| t.to_string()))
    )?;
    outln!(
        "  Runtime:    {}",
        show(verdict.info.runtime.as_ref().map(|r| r.to_string()))
    )?;
    outln!(
        "  Version:    {}",
        show(verdict.info.version.as_ref().map(|v| v.to_string()))
    )?;
    if !verdict.components.is_empty() {
        outln!("  Components:")?;
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
                size(c.size)
            };
            outln!("    {:<width$}  {:>10}  {}", c.path, size, c.detail)?;
        }
    }
    match (&verdict.layout, verdict.problems.len()) {
        (Some(file), 0) => outln!("  Layout:     holds {file}"),
        (Some(file), n) => outln!("  Layout:     does NOT hold {file}: {n} problems"),
        (None, 0) => outln!("  Layout:     not checked"),
        (None, n) => outln!("  Layout:     cannot be checked: {n} problems"),
    }?;
    for problem in &verdict.problems {
        outln!("    - {problem}")?;
    }
    for note in &verdict.notes {
        outln!("  Note:       {note}")?;
    }
    Ok(())
}

/// Shows each image; several in JSON form an array, as docker prints them.
pub fn inspect(store: &Store, inputs: &[String], format: Format) -> Result<()> {
    let mut docs = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        let found = resolve(store, input)?;
        let name = &found.names[0];
        let image = store
            .image(name)
            .with_context(|| format!("reading image {name}"))?;
        let verdict = cluster_verdict(store, &image)?;
        match format {
            Format::Json => docs.push(inspect_json(&image, &verdict)?),
            Format::Table => {
                if n > 0 {
                    outln!()?;
                }
                inspect_table(&image, &verdict)?;
            }
        }
    }
    let doc = match docs.len() {
        0 => return Ok(()),
        1 => docs.remove(0),
        _ => serde_json::Value::Array(docs),
    };
    outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

fn inspect_json(image: &StoredImage, verdict: &Verdict) -> Result<serde_json::Value> {
    let mut cluster = serde_json::to_value(verdict)?;
    cluster["holds"] = json!(verdict.holds());
    Ok(json!({
        "name": image.name,
        "digest": image.descriptor.digest().to_string(),
        "id": image.config_digest.to_string(),
        "size": image_size(image),
        "cluster": cluster,
        "manifest": image.manifest,
        "config": image.config,
    }))
}

fn inspect_table(image: &StoredImage, verdict: &Verdict) -> Result<()> {
    outln!("Name:         {}", image.name)?;
    outln!("Digest:       {}", image.descriptor.digest())?;
    outln!("Image ID:     {}", image.config_digest)?;
    outln!(
        "Platform:     {}/{}",
        image.config.os(),
        image.config.architecture()
    )?;
    outln!("Size:         {}", size(image_size(image)))?;
    if let Some(config) = image.config.config() {
        if let Some(env) = config.env() {
            outln!("Env:")?;
            for e in env {
                outln!("  {e}")?;
            }
        }
        if let Some(labels) = config.labels() {
            let sorted: std::collections::BTreeMap<_, _> = labels.iter().collect();
            outln!("Labels:")?;
            for (k, v) in sorted {
                outln!("  {k}={v}")?;
            }
        }
        if let Some(ep) = config.entrypoint() {
            outln!("Entrypoint:   {}", serde_json::to_string(ep)?)?;
        }
        if let Some(cmd) = config.cmd() {
            outln!("Cmd:          {}", serde_json::to_string(cmd)?)?;
        }
    }
    outln!("Layers:")?;
    for layer in image.manifest.layers() {
        outln!(
            "  {}  {:>10}  {}",
            layer.digest(),
            size(layer.size()),
            layer.media_type()
        )?;
    }
    print_cluster(verdict)?;
    Ok(())
}
