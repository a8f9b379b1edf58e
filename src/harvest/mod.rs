//! Harvesting: the container images a cluster image needs, pulled at build
//! time and written into its rootfs, so that `sealrs run` needs no network.
//!
//! Three steps, each usable alone:
//! 1. [`collect`](collect::collect) (pure): references from `images/shim/*`
//!    lists, `image:` fields of `manifests/**/*.yaml`, and chart
//!    `values.yaml` (`image:` strings, `repository`/`tag` maps), each with the
//!    file and line it came from, deduplicated by normalized name, filtered
//!    by `.imageignore` (see [`exclude`]). Every problem (bad YAML, a bad
//!    reference, a `{{ template }}`) is reported at once with file:line.
//! 2. [`fetch`](fetch::fetch): pulls through [`crate::registry::pull`] (digests
//!    verified, blobs streamed), a few images at once, `--platform` aware;
//!    images already in the store are not asked for again (the store is the
//!    cache).
//! 3. [`write`](mod@write): deterministic OCI archives (`images/<name>.tar`, for k3s and
//!    k0s) or a distribution registry tree (`registry/docker/registry/v2/…`,
//!    for kubeadm hosts), staged in a directory under the store's `tmp/`.
//!
//! [`harvest`] runs the three and returns a [`HarvestOutcome`] that holds the
//! staged tree; the build turns it into image layers with its own
//! deterministic layer writer (`crate::build::harvested_layers`), so this
//! module needs nothing of the build.
//!
//! Paths come from the caller (the layout's `[images]` section), not from
//! this module: `lists_glob`, `archives_dir` and `format` are parameters.
//! The API is synchronous (it starts its own tokio runtime, like the CLI's
//! registry commands); call [`fetch::fetch`] directly from async code.

pub mod collect;
pub mod error;
pub mod exclude;
pub mod fetch;
pub mod write;
mod yaml;

use std::path::{Component, Path};

use oci_spec::image::Digest;

pub use collect::{collect, Collected, CollectedImage, SourceFile, SourceKind, Sources};
pub use error::{HarvestError, Origin};
pub use exclude::{ExcludeList, IGNORE_FILE};
pub use fetch::{Fetched, PullPolicy};
pub use write::{archive_file_name, ArchiveFormat, CONTAINERD_NAME};

use crate::ignore::Ignore;
use crate::progress::Progress;
use crate::registry::RegistryOptions;
use crate::store::Store;

/// What to harvest and where to put it. Build with [`HarvestRequest::new`]
/// and adjust the public fields.
#[derive(Debug, Clone)]
pub struct HarvestRequest<'a> {
    /// The build context (the rootfs as the Kubefile copies it).
    pub context: &'a Path,
    /// The layout's `images.lists`, e.g. `images/shim/*` (relative to `context`).
    pub lists_glob: &'a str,
    /// The layout's `images.archives`, e.g. `images/` or `registry/`
    /// (relative to the rootfs).
    pub archives_dir: &'a str,
    /// The layout's `images.archive_format`.
    pub format: ArchiveFormat,
    /// Patterns applied after those of `context/.imageignore`.
    pub exclude: Vec<String>,
    /// Registry flags of the build (`--platform`, `--tls-verify`, auth …).
    pub registry: RegistryOptions,
    pub pull_policy: PullPolicy,
    /// Images pulled at once (each pull also moves `registry.max_concurrent`
    /// blobs at once).
    pub jobs: usize,
}

impl<'a> HarvestRequest<'a> {
    pub fn new(
        context: &'a Path,
        lists_glob: &'a str,
        archives_dir: &'a str,
        format: ArchiveFormat,
    ) -> Self {
        HarvestRequest {
            context,
            lists_glob,
            archives_dir,
            format,
            exclude: Vec::new(),
            registry: RegistryOptions::default(),
            pull_policy: PullPolicy::default(),
            jobs: 2,
        }
    }
}

/// One image written into the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarvestedImage {
    /// Normalized name, as tagged in the store and named in the archive.
    pub name: String,
    /// As first written in the context.
    pub written: String,
    /// Every place that names it.
    pub origins: Vec<Origin>,
    /// The single-platform manifest that was written.
    pub digest: Digest,
    /// False when the store already had it.
    pub pulled: bool,
    /// Rootfs-relative: the archive (`images/x.tar`) or, for the registry
    /// format, `registry: repository:tag` (the name a host pulls).
    pub location: String,
}

/// What [`harvest`] produced. The staged tree lives as long as this value.
#[derive(Debug)]
pub struct HarvestOutcome {
    /// Sorted by name.
    pub images: Vec<HarvestedImage>,
    /// References found but excluded: (as written, where).
    pub excluded: Vec<(String, Origin)>,
    /// Files written, relative to the rootfs, sorted.
    pub files: Vec<String>,
    /// The archives directory, cleaned (`images`, `registry`).
    pub archives_dir: String,
    pub format: ArchiveFormat,
    pub warnings: Vec<String>,
    staging: Option<tempfile::TempDir>,
}

impl HarvestOutcome {
    /// How many images were pulled (the rest came from the store).
    pub fn pulled(&self) -> usize {
        self.images.iter().filter(|i| i.pulled).count()
    }

    /// A directory that mirrors the rootfs: it holds `archives_dir/…` and
    /// nothing else. `None` when no image was harvested.
    pub fn staging_dir(&self) -> Option<&Path> {
        self.staging.as_ref().map(tempfile::TempDir::path)
    }
}

/// Collects, pulls and writes the images of `req.context`. See the module docs.
pub fn harvest(
    store: &Store,
    req: &HarvestRequest<'_>,
    progress: &dyn Progress,
) -> Result<HarvestOutcome, HarvestError> {
    let archives_dir = clean_archives_dir(req.archives_dir)?;
    let collected = collect_context(req)?;
    for (text, origin) in &collected.excluded {
        progress.message(&format!("{origin}: {text} excluded by {IGNORE_FILE}"));
    }
    let mut outcome = HarvestOutcome {
        images: Vec::new(),
        excluded: collected.excluded.clone(),
        files: Vec::new(),
        archives_dir: archives_dir.clone(),
        format: req.format,
        warnings: Vec::new(),
        staging: None,
    };
    if collected.images.is_empty() {
        return Ok(outcome);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(HarvestError::Runtime)?;
    let fetched = runtime.block_on(fetch::fetch(
        store,
        &collected.images,
        &req.registry,
        req.pull_policy,
        req.jobs,
        progress,
    ))?;
    drop(runtime);
    for f in &fetched {
        if let Some(found) = &f.other_platform {
            outcome.warnings.push(format!(
                "{} (named at {}) exists only for {found}, not for {}; it is shipped as it is, and pulled again at every build",
                f.image.name,
                f.image.origins[0],
                req.registry
                    .platform
                    .clone()
                    .unwrap_or_else(|| crate::registry::Platform::host().to_string())
            ));
        }
    }

    let staging = tempfile::Builder::new()
        .prefix("harvest-")
        .tempdir_in(store.tmp_dir())
        .map_err(HarvestError::io(
            "create a staging directory in",
            store.tmp_dir(),
        ))?;
    let out_root = staging.path().join(&archives_dir);
    write::make_parents(staging.path(), &format!("{archives_dir}/x"))?;
    match req.format {
        ArchiveFormat::OciArchive => {
            let mut by_file: std::collections::BTreeMap<String, &Fetched> = Default::default();
            for f in &fetched {
                let file = archive_file_name(&f.image.name);
                if let Some(other) = by_file.get(&file) {
                    return Err(HarvestError::NameClash {
                        first: other.image.name.clone(),
                        second: f.image.name.clone(),
                        target: format!("{archives_dir}/{file}"),
                        ignore_file: IGNORE_FILE,
                    });
                }
                by_file.insert(file, f);
            }
            for (file, f) in by_file {
                let task = progress.begin(&format!("write {archives_dir}/{file}"), None);
                let size = write::write_oci_archive(
                    store,
                    &f.image.name,
                    &f.manifest,
                    &out_root.join(&file),
                )?;
                task.finish("");
                let location = format!("{archives_dir}/{file}");
                progress.message(&format!(
                    "Wrote {location} ({} bytes) for {}",
                    size, f.image.name
                ));
                outcome.files.push(location.clone());
                outcome.images.push(harvested(f, location));
            }
        }
        ArchiveFormat::Registry => {
            let images: Vec<write::TreeImage<'_>> = fetched
                .iter()
                .map(|f| write::TreeImage {
                    reference: &f.image.reference,
                    manifest: &f.manifest,
                })
                .collect();
            let (files, warnings) = write::write_registry_tree(store, &images, &out_root)?;
            outcome.files = files
                .into_iter()
                .map(|f| format!("{archives_dir}/{f}"))
                .collect();
            outcome.warnings.extend(warnings);
            for f in &fetched {
                let r = &f.image.reference;
                let at = r
                    .tag
                    .clone()
                    .unwrap_or_else(|| f.manifest.digest().to_string());
                let sep = if r.tag.is_some() { ":" } else { "@" };
                outcome.images.push(harvested(
                    f,
                    format!("{archives_dir}: {}{sep}{at}", r.repository),
                ));
            }
        }
    }
    for w in &outcome.warnings {
        progress.message(&format!("warning: {w}"));
    }
    outcome.images.sort_by(|a, b| a.name.cmp(&b.name));
    outcome.files.sort();
    outcome.staging = Some(staging);
    progress.message(&format!(
        "Harvested {} image{} into {archives_dir}/ ({} pulled, {} from the store)",
        outcome.images.len(),
        if outcome.images.len() == 1 { "" } else { "s" },
        outcome.pulled(),
        outcome.images.len() - outcome.pulled()
    ));
    Ok(outcome)
}

fn harvested(f: &Fetched, location: String) -> HarvestedImage {
    HarvestedImage {
        name: f.image.name.clone(),
        written: f.image.written.clone(),
        origins: f.image.origins.clone(),
        digest: f.manifest.digest().clone(),
        pulled: f.pulled,
        location,
    }
}

/// Reads the context's sources and exclude file and collects (step 1 with
/// its I/O). Files excluded by the context's `.kubefileignore` are skipped:
/// they never reach the image, so neither should the images they name.
pub fn collect_context(req: &HarvestRequest<'_>) -> Result<Collected, HarvestError> {
    let sources = Sources::new(req.lists_glob).compile()?;
    let ignore = Ignore::load(req.context)?;
    let mut exclude = match std::fs::read(req.context.join(IGNORE_FILE)) {
        Ok(bytes) => ExcludeList::parse(&String::from_utf8_lossy(&bytes), IGNORE_FILE)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ExcludeList::default(),
        Err(e) => return Err(HarvestError::io("read", req.context.join(IGNORE_FILE))(e)),
    };
    exclude.extend(ExcludeList::from_patterns(&req.exclude)?);

    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(req.context)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(req.context).to_path_buf();
            HarvestError::io("read", path)(e.into())
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(req.context) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let Some(kind) = sources.classify(&rel) else {
            continue;
        };
        if ignore.is_excluded(&rel) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(HarvestError::io("read", entry.path()))?;
        files.push(SourceFile {
            path: rel,
            kind,
            bytes,
        });
    }
    collect(&files, &exclude)
}

/// `images/` → `images`; refuses absolute paths and `..`.
fn clean_archives_dir(dir: &str) -> Result<String, HarvestError> {
    let bad = |reason: &str| HarvestError::BadArchivesDir {
        dir: dir.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = Vec::new();
    for c in Path::new(dir).components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| bad("it is not UTF-8"))?
                    .to_string(),
            ),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("it must be relative to the rootfs"))
            }
            Component::ParentDir => return Err(bad("it must stay inside the rootfs (no `..`)")),
        }
    }
    if parts.is_empty() {
        return Err(bad("it is empty; name a directory such as images/"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_dirs_are_cleaned_or_refused() {
        assert_eq!(clean_archives_dir("images/").unwrap(), "images");
        assert_eq!(clean_archives_dir("./a/b").unwrap(), "a/b");
        for bad in ["", "/images", "../x", "a/../../b", "."] {
            assert!(clean_archives_dir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pull_policy_default_is_missing() {
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
    }
}
