//! The build executor: Kubefile → evaluated stage → layers → config → manifest → tags.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifestBuilder, MediaType, RootFsBuilder,
};

use super::{
    copy_layers, BlobSink, BuildError, Context, Layer, LayerCache, LayerOptions, SinkError,
};
use super::{installer_layer, InstallerChoice};
use crate::harvest::{self, ArchiveFormat, HarvestOutcome, HarvestRequest};
use crate::host_paths::{INSTALLER_PATH, REGISTRY_TREE_ANNOTATION};
use crate::kubefile::{self, BaseImage, ConfigState, CopyStep, EvalOptions, Location};
use crate::layout::{self, Layout, Layouts};
use crate::progress::Progress;
use crate::reference;
use crate::registry::RegistryOptions;
use crate::store::Store;

/// Names tried, in order, when `-f` is not given.
pub const KUBEFILE_NAMES: [&str; 4] = ["Kubefile", "Sealfile", "Containerfile", "Dockerfile"];

/// Everything a build needs, already validated by the caller.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub kubefile: Option<PathBuf>,
    /// Full normalized names, no duplicates.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target_os: String,
    pub target_arch: String,
    pub no_cache: bool,
    pub layers: LayerOptions,
    /// Tag the image even when its rootfs does not hold its layout.
    pub skip_validation: bool,
    /// How to pull the container images the rootfs names; `None` is `--no-images`.
    pub harvest: Option<RegistryOptions>,
    /// Which sealrs binary rootfs images carry as their installer.
    pub installer: InstallerChoice,
    /// `--label` and `--env`, applied after the Kubefile (`flags.rs`).
    pub config_flags: super::flags::ConfigFlags,
}

#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub manifest: Descriptor,
    pub config_digest: Digest,
    /// Layers this build produced: its own, the harvested images' and the
    /// installer's (not the base image's).
    pub layers: usize,
    pub cached_layers: usize,
    pub warnings: Vec<String>,
    /// Things worth knowing that need no action (an inferred runtime, ...).
    pub notes: Vec<String>,
    /// The layout check; None with `--skip-validation`.
    pub verdict: Option<layout::Verdict>,
}

/// Brings a FROM image that the local store lacks (the CLI pulls it from its
/// registry); kept as a trait so that building needs no network code.
pub trait BaseFetcher {
    fn fetch(&self, store: &Store, name: &str) -> Result<(), SinkError>;
}

/// For builds that must stay offline: every base must already be in the store.
pub struct LocalOnly;

impl BaseFetcher for LocalOnly {
    fn fetch(&self, _store: &Store, name: &str) -> Result<(), SinkError> {
        Err(format!("{name} is not in the local store").into())
    }
}

/// Builds the image and tags it; on any error the index is left untouched.
pub fn build(
    store: &Store,
    request: &BuildRequest,
    fetcher: &dyn BaseFetcher,
    progress: &dyn Progress,
) -> Result<BuildOutcome, BuildError> {
    if request.tags.is_empty() {
        return Err(BuildError::NoTag);
    }
    let context = Context::open(&request.context)?;
    let kubefile_path = find_kubefile(request.kubefile.as_deref(), context.root())?;
    let text =
        std::fs::read_to_string(&kubefile_path).map_err(|source| BuildError::ReadKubefile {
            path: kubefile_path.clone(),
            source,
        })?;
    let display_name = kubefile_path.display().to_string();
    let parsed = kubefile::parse(&text, &display_name)?;
    let eval_options = EvalOptions {
        build_args: request.build_args.clone(),
        target_os: request.target_os.clone(),
        target_arch: request.target_arch.clone(),
    };

    // Held until the image is tagged, so a concurrent prune cannot collect our fresh blobs.
    let _session = store.write_session()?;

    let base = match kubefile::evaluate_from(&parsed, &eval_options)? {
        BaseImage::Scratch => Base::scratch(),
        BaseImage::Image { name, location } => {
            Base::resolve(store, fetcher, &name, &location.to_string())?
        }
    };
    let mut stage = kubefile::evaluate(&parsed, &eval_options, base.state.clone())?;
    // --label and --env, as if LABEL and ENV ended the Kubefile.
    let flag_warnings = super::flags::apply(&mut stage.config, &request.config_flags);
    // The labels, and whether this sealrs can be the installer, are checked
    // now, before any layer is built: a misspelled runtime fails at once,
    // not after every layer is compressed.
    if is_rootfs(&stage.config.labels) {
        super::installer::check_choice(
            &request.installer,
            &request.target_os,
            &request.target_arch,
        )?;
    }
    if !request.skip_validation {
        let problems =
            layout::labels::read_labels(&stage.config.labels, Layouts::embedded()).problems;
        if !problems.is_empty() {
            return Err(BuildError::Labels {
                image: request.tags.join(", "),
                problems,
            });
        }
    }

    let mut warnings = stage.warnings.clone();
    warnings.extend(flag_warnings);
    if !stage.unused_build_args.is_empty() {
        warnings.push(format!(
            "these --build-arg values were not used by any ARG in {display_name}: {}",
            stage.unused_build_args.join(", ")
        ));
    }

    let cache_path = store.root().join("cache").join("layers.json");
    let mut cache = if request.no_cache {
        LayerCache::empty(&cache_path)
    } else {
        LayerCache::open(&cache_path)
    };
    let mut layers: Vec<Layer> = Vec::new();
    let mut history = base.history;
    for step in &stage.copies {
        let produced = copy_layers(store, &context, step, &request.layers, &mut cache, progress)?;
        let produced = mark_registry_tree(&step.dest, produced);
        let created_by = format!(
            "{} {} {}",
            if step.extract_archives { "ADD" } else { "COPY" },
            step.sources.join(" "),
            step.dest
        );
        for _ in &produced {
            history.push(history_entry(request, &created_by)?);
        }
        layers.extend(produced);
    }
    let mut built_layers = layers.len();

    let mut diff_ids = base.diff_ids;
    diff_ids.extend(layers.iter().map(|l| l.diff_id.to_string()));
    let mut manifest_layers = base.layers;
    manifest_layers.extend(layers.iter().map(|l| l.descriptor.clone()));

    // The layers are in the store (content-addressed, harmless untagged); the
    // image is tagged only if its rootfs holds its layout.
    let mut notes = Vec::new();
    let labels = &stage.config.labels;
    let mut verdict = None;
    if let Some(registry) = &request.harvest {
        // The layout (runtime labelled or inferred from the rootfs) says where images go.
        let first = evaluate_rootfs(store, &manifest_layers, labels, request, progress)?;
        let layout = first
            .layout
            .as_deref()
            .and_then(|file| Layouts::embedded().all().iter().find(|l| l.file == file));
        if let Some(layout) = layout {
            let harvested = harvest_images(store, &context, layout, registry, request, progress)?;
            for image in &harvested.outcome.images {
                notes.push(format!("harvested {} ({})", image.name, image.digest));
            }
            warnings.extend(harvested.outcome.warnings.iter().cloned());
            if harvested.layers.is_empty() {
                verdict = Some(first);
            }
            for layer in harvested.layers {
                history.push(history_entry(
                    request,
                    &format!("harvested images into /{}", harvested.outcome.archives_dir),
                )?);
                diff_ids.push(layer.diff_id.to_string());
                manifest_layers.push(layer.descriptor);
                built_layers += 1;
            }
        } else {
            verdict = Some(first);
        }
    }
    // Rootfs images carry the installer that applies them, as their last layer.
    if is_rootfs(labels) {
        let embedded = installer_layer(
            store,
            &mut cache,
            &request.installer,
            &request.target_os,
            &request.target_arch,
            request.layers.source_date_epoch,
            progress,
        )?;
        if let Some(layer) = embedded.filter(|l| !diff_ids.contains(&l.diff_id.to_string())) {
            history.push(history_entry(
                request,
                &format!("sealrs installer /{INSTALLER_PATH}"),
            )?);
            diff_ids.push(layer.diff_id.to_string());
            manifest_layers.push(layer.descriptor);
            built_layers += 1;
            verdict = None;
        }
    }
    let cached_layers = cache.hit_layers();
    // A failed cache write only costs the next build time; the image is still good.
    if let Err(err) = cache.save() {
        warnings.push(format!("could not save the layer cache: {err}"));
    }

    let verdict = if request.skip_validation {
        notes.push("--skip-validation: the rootfs was not checked against its layout".to_string());
        None
    } else {
        let verdict = match verdict {
            Some(v) => v,
            None => evaluate_rootfs(store, &manifest_layers, labels, request, progress)?,
        };
        let verdict = refuse_problems(verdict, request)?;
        notes.extend(verdict.notes.iter().cloned());
        warnings.extend(missing_expected_images(&context, &verdict));
        Some(verdict)
    };

    // What the check inferred (the runtime, from its marker file) becomes a
    // label, so that run reads the image as build checked it.
    let mut state = stage.config;
    for (key, value) in verdict.iter().flat_map(|v| v.info.inferred_labels()) {
        notes.push(format!("wrote label {key}={value}, as inferred"));
        state.labels.insert(key, value);
    }
    let config = image_config(&state, request, diff_ids, history)?;
    let config_descriptor = store.put_json(MediaType::ImageConfig, &config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor.clone())
        .layers(manifest_layers)
        .build()
        .map_err(BuildError::oci)?;
    let manifest_descriptor = store.put_json(MediaType::ImageManifest, &manifest)?;
    for tag in &request.tags {
        store.tag(tag, &manifest_descriptor)?;
    }
    Ok(BuildOutcome {
        manifest: manifest_descriptor,
        config_digest: config_descriptor.digest().clone(),
        layers: built_layers,
        cached_layers,
        warnings,
        notes,
        verdict,
    })
}

/// The images the image's runtime expects at its version
/// ([`crate::runtime::Runtime::expected_images`], kubeadm: the pause image
/// `kubeadm config images list` prints) that the layout's image lists
/// (`images/shim/*`) leave out while naming other images: one warning each.
/// Lists that name nothing say nothing about air-gapping, so no warning.
fn missing_expected_images(context: &Context, verdict: &layout::Verdict) -> Vec<String> {
    let (Some(runtime), Some(version), Some(file)) = (
        verdict.info.runtime.as_ref(),
        verdict.info.version.as_ref(),
        verdict.layout.as_deref(),
    ) else {
        return Vec::new();
    };
    let Some(rt) = crate::runtime::runtime_for(&runtime.value) else {
        return Vec::new();
    };
    let expected = rt.expected_images(&version.value);
    let Some(lists) = Layouts::embedded()
        .all()
        .iter()
        .find(|l| l.file == file)
        .map(|l| l.images.lists.clone())
    else {
        return Vec::new();
    };
    let Some(dir) = lists.strip_suffix("/*") else {
        return Vec::new();
    };
    let normal = |s: &str| reference::Reference::parse(s).map(|r| r.to_string()).ok();
    let mut listed = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(context.root().join(dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                listed.push(normal(line).unwrap_or_else(|| line.to_string()));
            }
        }
    }
    if listed.is_empty() {
        return Vec::new();
    }
    expected
        .into_iter()
        .filter(|want| {
            let want = normal(want).unwrap_or_else(|| want.clone());
            !listed.contains(&want)
        })
        .map(|want| {
            format!(
                "{lists} lists images but not {want}, which {} {} needs to run without pulls; add it to a list",
                runtime.value, version.value
            )
        })
        .collect()
}

/// Whether the labels make the image a rootfs image (which carries the installer).
fn is_rootfs(labels: &BTreeMap<String, String>) -> bool {
    layout::labels::read_labels(labels, Layouts::embedded())
        .info
        .image_type
        .is_some_and(|t| t.value == layout::ImageType::Rootfs)
}

/// Walks the layers just written and checks the rootfs against the layout its
/// labels select (or that its content suggests).
fn evaluate_rootfs(
    store: &Store,
    layers: &[Descriptor],
    labels: &BTreeMap<String, String>,
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<layout::Verdict, BuildError> {
    let layouts = Layouts::embedded();
    let total = layers.iter().map(|l| l.size()).sum();
    let task = progress.begin("checking the rootfs", Some(total));
    let rootfs = layout::scan_layers(
        layers,
        |layer| {
            let file = store
                .open_blob(layer.digest())
                .map_err(std::io::Error::other)?;
            task.advance(layer.size());
            Ok(Box::new(file) as Box<dyn std::io::Read>)
        },
        layouts,
    )?;
    let verdict = layout::evaluate(layouts, labels, &rootfs, &request.target_arch);
    // Said once, by the build's last line (the layout it holds) or its error
    // (every problem): the rootfs may be checked twice, before and after the
    // harvested images and the installer are in.
    task.finish("");
    Ok(verdict)
}

/// Every problem of the verdict in one error, or the verdict when there are none.
fn refuse_problems(
    verdict: layout::Verdict,
    request: &BuildRequest,
) -> Result<layout::Verdict, BuildError> {
    if verdict.problems.is_empty() {
        return Ok(verdict);
    }
    let image = request.tags.join(", ");
    Err(match &verdict.layout {
        Some(file) => BuildError::Layout {
            image,
            layout: file.clone(),
            problems: verdict.problems,
        },
        None => BuildError::Labels {
            image,
            problems: verdict.problems,
        },
    })
}

struct Harvested {
    outcome: HarvestOutcome,
    layers: Vec<Layer>,
}

/// Pulls the images that the context's lists, manifests and chart values name,
/// and turns their archives into layers where the layout wants them.
fn harvest_images(
    store: &Store,
    context: &Context,
    layout: &Layout,
    registry: &RegistryOptions,
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<Harvested, BuildError> {
    let format: ArchiveFormat = layout
        .images
        .archive_format
        .parse()
        .map_err(|reason: String| BuildError::Assemble(format!("{}: {reason}", layout.file)))?;
    let mut req = HarvestRequest::new(
        context.root(),
        &layout.images.lists,
        &layout.images.archives,
        format,
    );
    req.registry = registry.clone();
    let outcome = harvest::harvest(store, &req, progress)?;
    let layers = harvested_layers(store, &outcome, &request.layers, progress)?;
    Ok(Harvested { outcome, layers })
}

/// Harvest's staged tree as image layers at `/archives_dir/`, written with
/// the deterministic layer writer (files of at least `opts.split_threshold`
/// bytes get a layer each, so images that ship the same airgap image share
/// the blob). Empty when no image was harvested.
pub fn harvested_layers(
    sink: &dyn BlobSink,
    outcome: &HarvestOutcome,
    opts: &LayerOptions,
    progress: &dyn Progress,
) -> Result<Vec<Layer>, BuildError> {
    let Some(dir) = outcome.staging_dir() else {
        return Ok(Vec::new());
    };
    let ctx = Context::open(dir)?;
    let step = CopyStep {
        location: Location {
            file: "<harvested images>".to_string(),
            line: 1,
            column: 1,
        },
        sources: vec![outcome.archives_dir.clone()],
        dest: format!("/{}/", outcome.archives_dir),
        chmod: None,
        extract_archives: false,
    };
    // Never saved: the staged files are new each build, so a metadata
    // cache would never hit; the layer digests are stable regardless.
    let mut cache = LayerCache::empty(&dir.join(".layer-cache.json"));
    let layers = copy_layers(sink, &ctx, &step, opts, &mut cache, progress)?;
    Ok(mark_registry_tree(&step.dest, layers))
}

/// Layers copied to `/registry` (or below) hold only the image's registry
/// tree: annotated so, only the host that serves the in-cluster registry
/// gets them (`apply`'s hub); the layer digests stay the same.
fn mark_registry_tree(dest: &str, mut layers: Vec<Layer>) -> Vec<Layer> {
    let dir = dest.trim_end_matches('/');
    if dir != "/registry" && !dir.starts_with("/registry/") {
        return layers;
    }
    for layer in &mut layers {
        let mut annotations = layer.descriptor.annotations().clone().unwrap_or_default();
        annotations.insert(
            REGISTRY_TREE_ANNOTATION.to_string(),
            "registry/".to_string(),
        );
        layer.descriptor.set_annotations(Some(annotations));
    }
    layers
}

fn history_entry(
    request: &BuildRequest,
    created_by: &str,
) -> Result<oci_spec::image::History, BuildError> {
    HistoryBuilder::default()
        .created(epoch_rfc3339(request.layers.source_date_epoch))
        .created_by(created_by.to_string())
        .build()
        .map_err(BuildError::oci)
}

/// `-f` as given, else the first of [`KUBEFILE_NAMES`] in the context.
fn find_kubefile(explicit: Option<&Path>, context: &Path) -> Result<PathBuf, BuildError> {
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(BuildError::KubefileNotFound {
                tried: vec![path.to_path_buf()],
            });
        }
        return Ok(path.to_path_buf());
    }
    let tried: Vec<PathBuf> = KUBEFILE_NAMES.iter().map(|n| context.join(n)).collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(BuildError::KubefileNotFound { tried })
}

/// What the image starts from: nothing, or a base image's layers and config.
struct Base {
    state: ConfigState,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    history: Vec<oci_spec::image::History>,
}

impl Base {
    fn scratch() -> Base {
        Base {
            state: ConfigState::scratch(),
            layers: Vec::new(),
            diff_ids: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The base from the store, fetched first if the store lacks it.
    fn resolve(
        store: &Store,
        fetcher: &dyn BaseFetcher,
        name: &str,
        location: &str,
    ) -> Result<Base, BuildError> {
        let full = reference::normalize(name).map_err(|source| BuildError::BaseName {
            name: name.to_string(),
            location: location.to_string(),
            source,
        })?;
        if store.lookup(&full)?.is_none() {
            fetcher
                .fetch(store, &full)
                .map_err(|source| BuildError::BaseNotFound {
                    name: full.clone(),
                    location: location.to_string(),
                    source,
                })?;
        }
        let image = store.image(&full)?;
        let config = image.config.config().clone().unwrap_or_default();
        let mut state = ConfigState::default();
        for entry in config.env().clone().unwrap_or_default() {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            state.env.push((k.to_string(), v.to_string()));
        }
        state.labels = config
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        state.cmd = config.cmd().clone();
        state.entrypoint = config.entrypoint().clone();
        state.working_dir = config.working_dir().clone().filter(|w| !w.is_empty());
        state.user = config.user().clone().filter(|u| !u.is_empty());
        state.exposed_ports = config.exposed_ports().clone().unwrap_or_default();
        state.volumes = config.volumes().clone().unwrap_or_default();
        state.stop_signal = config.stop_signal().clone();
        state.author = image.config.author().clone();
        Ok(Base {
            state,
            layers: image.manifest.layers().clone(),
            diff_ids: image.config.rootfs().diff_ids().clone(),
            history: image.config.history().clone().unwrap_or_default(),
        })
    }
}

fn image_config(
    state: &ConfigState,
    request: &BuildRequest,
    diff_ids: Vec<String>,
    history: Vec<oci_spec::image::History>,
) -> Result<ImageConfiguration, BuildError> {
    let mut config = ConfigBuilder::default()
        .env(
            state
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(BuildError::oci)?;
    if !state.labels.is_empty() {
        config.set_labels(Some(
            state.labels.clone().into_iter().collect::<HashMap<_, _>>(),
        ));
    }
    config.set_cmd(state.cmd.clone());
    config.set_entrypoint(state.entrypoint.clone());
    config.set_working_dir(state.working_dir.clone());
    config.set_user(state.user.clone());
    if !state.exposed_ports.is_empty() {
        config.set_exposed_ports(Some(state.exposed_ports.clone()));
    }
    if !state.volumes.is_empty() {
        config.set_volumes(Some(state.volumes.clone()));
    }
    config.set_stop_signal(state.stop_signal.clone());
    let mut image = ImageConfigurationBuilder::default()
        .created(epoch_rfc3339(request.layers.source_date_epoch))
        .os(request.target_os.as_str())
        .architecture(request.target_arch.as_str())
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(BuildError::oci)?,
        )
        .history(history)
        .build()
        .map_err(BuildError::oci)?;
    image.set_author(state.author.clone());
    Ok(image)
}

/// `SOURCE_DATE_EPOCH` as RFC 3339, without pulling in a date crate for one format.
pub fn epoch_rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_render_as_rfc3339_utc() {
        assert_eq!(epoch_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(epoch_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(epoch_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
