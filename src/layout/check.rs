//! Rule evaluation: a rootfs (an in-memory list of entries with the facts the
//! scan recorded) against the layout its labels select. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::Problem;
use super::labels::{
    read_labels, ClusterInfo, ImageType, Source, Sourced, FORMAT_VERSION_KEYS, RUNTIME_KEYS,
    VERSION_KEYS,
};
use super::probe::{ArchiveFacts, ListError, Magic, YamlDoc, YamlError};
use super::spec::{Hosts, Kind, Layout, Layouts, RequiredLabel, Rule};

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "target", rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
    /// Device, fifo, ...: named for messages.
    Other(String),
}

/// What the scan learnt from a file's content; each is set only when some
/// layout's rule for the path asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub archive: Option<Result<ArchiveFacts, String>>,
    pub yaml: Option<Result<usize, YamlError>>,
    /// The documents of a YAML file that parsed, for rules that name the
    /// `apiVersion`/`kind` pairs they accept.
    pub yaml_docs: Option<Vec<YamlDoc>>,
    pub toml: Option<Result<(), String>>,
    pub list: Option<Result<usize, Vec<ListError>>>,
    /// Why the content was not checked (too big for the text checks).
    pub unchecked: Option<String>,
}

/// One path of the rootfs, as the last layer that touched it left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub entry_type: EntryType,
    pub mode: u32,
    pub size: u64,
    pub magic: Magic,
    pub facts: Facts,
    /// Index of the layer it came from (whiteouts need it).
    pub layer: usize,
}

impl Entry {
    /// A regular file, for tests and callers that build a rootfs by hand.
    pub fn file(path: &str, mode: u32, content: &[u8]) -> Entry {
        Entry {
            path: path.to_string(),
            entry_type: EntryType::File,
            mode,
            size: content.len() as u64,
            magic: Magic::of(&content[..content.len().min(super::probe::HEAD)]),
            facts: Facts::default(),
            layer: 0,
        }
    }
}

/// The files of an image, by path.
#[derive(Debug, Clone, Default)]
pub struct Rootfs {
    pub entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Rootfs {
        Rootfs {
            entries: entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
        }
    }

    fn has_file(&self, path: &str) -> bool {
        self.entries
            .get(path)
            .is_some_and(|e| e.entry_type != EntryType::Dir)
    }

    /// Follows symlinks and hardlinks inside the image (at most 16 hops).
    /// `Err(target)` when a link points at nothing in the image; `Ok(None)`
    /// for an absolute symlink, which only the host can resolve.
    fn resolve<'a>(&'a self, entry: &'a Entry) -> Result<Option<&'a Entry>, String> {
        let mut current = entry;
        for _ in 0..16 {
            let target = match &current.entry_type {
                EntryType::Symlink(t) if t.starts_with('/') => return Ok(None),
                EntryType::Symlink(t) => join(parent(&current.path), t),
                EntryType::Hardlink(t) => normalize(t),
                _ => return Ok(Some(current)),
            };
            let Some(target) = target else {
                return Err(link_target(current));
            };
            match self.entries.get(&target) {
                Some(next) => current = next,
                None => return Err(link_target(current)),
            }
        }
        Err(link_target(current))
    }
}

fn link_target(e: &Entry) -> String {
    match &e.entry_type {
        EntryType::Symlink(t) | EntryType::Hardlink(t) => t.clone(),
        _ => e.path.clone(),
    }
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// `dir` + relative `target`, with `.` and `..` resolved; None if it climbs out.
fn join(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// A path as a tar names it, made relative and clean (`./a//b/` → `a/b`).
pub fn normalize(path: &str) -> Option<String> {
    let cleaned = join("", path.trim_start_matches('/'))?;
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A binary or image archive found in the rootfs, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    /// "ELF amd64", "script", "symlink to k3s", "docker-archive, zstd".
    pub detail: String,
}

/// The outcome of checking an image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub info: ClusterInfo,
    /// The layout file the image was checked against; None when not checked.
    pub layout: Option<String>,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
    pub components: Vec<Component>,
    /// Files that no rule of the layout matched: kept in the unpacked rootfs, not placed.
    pub other_files: usize,
}

impl Verdict {
    /// Checked against a layout and found sound.
    pub fn holds(&self) -> bool {
        self.layout.is_some() && self.problems.is_empty()
    }
}

/// Checks `rootfs` against the layout that `labels` select, collecting every problem.
pub fn evaluate(
    layouts: &Layouts,
    labels: &BTreeMap<String, String>,
    rootfs: &Rootfs,
    arch: &str,
) -> Verdict {
    let reading = read_labels(labels, layouts);
    let mut verdict = Verdict {
        info: reading.info,
        problems: reading.problems,
        notes: reading.notes,
        ..Verdict::default()
    };
    let inferred = infer_runtime(layouts, rootfs);
    let image_type = verdict.info.image_type.as_ref().map(|t| t.value);
    // Runtime from the label, else from the rootfs; the inference is shown.
    if verdict.info.runtime.is_none() && image_type != Some(ImageType::Application) {
        match &inferred {
            Ok(Some((runtime, marker))) => {
                verdict.info.runtime = Some(Sourced {
                    value: runtime.clone(),
                    source: Source::Inferred(marker.clone()),
                });
                if image_type.is_some() {
                    verdict.notes.push(format!(
                        "runtime {runtime} inferred from {marker}; add LABEL sealrs.io/runtime={runtime} to say so"
                    ));
                }
            }
            Ok(None) => {}
            Err(problem) if image_type.is_some() => verdict.problems.push(problem.clone()),
            Err(_) => {}
        }
    }
    let runtime = verdict.info.runtime.as_ref().map(|r| r.value.clone());
    let (layout, strict) = match image_type {
        None => {
            if let Some(runtime) = &runtime {
                verdict.notes.push(format!(
                    "no sealrs.io/type label: the layout is not checked; this looks like a {runtime} rootfs, add LABEL sealrs.io/type=rootfs to check it"
                ));
            }
            return verdict;
        }
        Some(ImageType::Rootfs) => match &runtime {
            Some(r) => (layouts.rootfs(r), true),
            None => {
                let explained = verdict.problems.iter().any(|p| {
                    matches!(p, Problem::AmbiguousRuntime { .. })
                        || matches!(p, Problem::BadLabel { key, .. } if RUNTIME_KEYS.contains(&key.as_str()))
                });
                if !explained {
                    verdict.problems.push(Problem::NoRuntime {
                        markers: markers(layouts),
                    });
                }
                (None, true)
            }
        },
        Some(ImageType::Application) => (layouts.application(), true),
        Some(ImageType::Patch) => match &runtime {
            Some(r) => (layouts.rootfs(r), false),
            None => {
                verdict.notes.push(
                    "a patch without sealrs.io/runtime: the layout is not checked".to_string(),
                );
                return verdict;
            }
        },
    };
    let Some(layout) = layout else {
        return verdict;
    };
    verdict.layout = Some(layout.file.clone());
    if strict {
        check_labels(layout, &verdict.info, &mut verdict.problems);
    }
    check_rules(
        layout,
        rootfs,
        arch,
        &|rule| strict && rule.required,
        &mut verdict,
    );
    verdict
}

/// Checks an unpacked rootfs on a host, against the layout of its runtime:
/// every file is what its rule says, and every file the layout requires for
/// this host is there (rules `on = "control-plane"` only when
/// `control_plane`). Labels are the build's business and are not read here.
pub fn check_for_host(
    layout: &Layout,
    rootfs: &Rootfs,
    arch: &str,
    control_plane: bool,
) -> Vec<Problem> {
    let mut verdict = Verdict::default();
    let needed = |rule: &Rule| rule.required && (control_plane || rule.on == Hosts::All);
    check_rules(layout, rootfs, arch, &needed, &mut verdict);
    verdict.problems
}

fn markers(layouts: &Layouts) -> String {
    layouts
        .all()
        .iter()
        .filter_map(|l| l.marker.as_deref())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runtime whose marker file the rootfs holds; a problem when it holds several.
fn infer_runtime(layouts: &Layouts, rootfs: &Rootfs) -> Result<Option<(String, String)>, Problem> {
    let found: Vec<(String, String)> = layouts
        .all()
        .iter()
        .filter_map(|l| Some((l.runtime.clone()?, l.marker.clone()?)))
        .filter(|(_, marker)| rootfs.has_file(marker))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(Problem::AmbiguousRuntime {
            found: found
                .iter()
                .map(|(r, m)| format!("{m} ({r})"))
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

fn check_labels(layout: &Layout, info: &ClusterInfo, problems: &mut Vec<Problem>) {
    for label in &layout.required_labels {
        match label {
            RequiredLabel::Version if info.version.is_none() => {
                // A present but bad value is already a BadLabel problem.
                if !problems
                    .iter()
                    .any(|p| matches!(p, Problem::BadLabel { key, .. } if VERSION_KEYS.contains(&key.as_str())))
                {
                    problems.push(Problem::MissingLabel {
                        label: VERSION_KEYS[0].to_string(),
                        aliases: VERSION_KEYS[1..]
                            .iter()
                            .chain(&FORMAT_VERSION_KEYS)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            RequiredLabel::Version => {}
        }
    }
}

/// Checks every file against its rule; a rule for which `needed` holds must match a file.
fn check_rules(
    layout: &Layout,
    rootfs: &Rootfs,
    arch: &str,
    needed: &dyn Fn(&Rule) -> bool,
    verdict: &mut Verdict,
) {
    let mut matched = vec![false; layout.rules.len()];
    for entry in rootfs.entries.values() {
        if entry.entry_type == EntryType::Dir {
            continue;
        }
        let Some(index) = layout.rules.iter().position(|r| r.matches(&entry.path)) else {
            verdict.other_files += 1;
            continue;
        };
        matched[index] = true;
        let rule = &layout.rules[index];
        check_entry(rule.kind, &rule.about, entry, rootfs, arch, verdict);
        check_yaml_kinds(rule, entry, verdict);
    }
    for (rule, found) in layout.rules.iter().zip(matched) {
        if needed(rule) && !found {
            verdict.problems.push(Problem::Missing {
                pattern: rule.pattern.clone(),
                about: rule.about.clone(),
            });
        }
    }
}

/// Each document of a YAML file whose rule lists the `apiVersion/kind`
/// pairs it accepts (`kinds` in the layout) must be one of them.
fn check_yaml_kinds(rule: &Rule, entry: &Entry, verdict: &mut Verdict) {
    if rule.kinds.is_empty() {
        return;
    }
    for doc in entry.facts.yaml_docs.iter().flatten() {
        let found = format!(
            "{}/{}",
            doc.api_version.as_deref().unwrap_or("<no apiVersion>"),
            doc.kind.as_deref().unwrap_or("<no kind>")
        );
        if !rule.kinds.contains(&found) {
            verdict.problems.push(Problem::UnknownYamlKind {
                path: entry.path.clone(),
                line: doc.line,
                found,
                allowed: rule.kinds.join(", "),
            });
        }
    }
}

fn check_entry(
    kind: Kind,
    about: &str,
    entry: &Entry,
    rootfs: &Rootfs,
    arch: &str,
    verdict: &mut Verdict,
) {
    let path = entry.path.clone();
    if kind == Kind::Forbidden {
        verdict.problems.push(Problem::Forbidden {
            path,
            reason: about.to_string(),
        });
        return;
    }
    let target = match rootfs.resolve(entry) {
        Ok(Some(t)) => t,
        Ok(None) => {
            // An absolute symlink: only the host can resolve it.
            if let EntryType::Symlink(t) = &entry.entry_type {
                note_component(kind, entry, format!("symlink to {t}"), verdict);
            }
            return;
        }
        Err(target) => {
            verdict
                .problems
                .push(Problem::DanglingLink { path, target });
            return;
        }
    };
    if let EntryType::Other(found) = &target.entry_type {
        verdict.problems.push(Problem::NotAFile {
            path,
            found: found.clone(),
            about: about.to_string(),
        });
        return;
    }
    if target.entry_type == EntryType::Dir {
        verdict.problems.push(Problem::NotAFile {
            path,
            found: "directory".into(),
            about: about.to_string(),
        });
        return;
    }
    let link_detail = match &entry.entry_type {
        EntryType::Symlink(t) => Some(format!("symlink to {t}")),
        _ => None,
    };
    match kind {
        Kind::Executable | Kind::Script => {
            if target.mode & 0o111 == 0 {
                verdict.problems.push(Problem::NotExecutable {
                    path: path.clone(),
                    mode: target.mode,
                });
            }
            match (kind, target.magic) {
                (
                    Kind::Executable,
                    Magic::Elf {
                        machine,
                        big_endian,
                    },
                ) => {
                    if let Some(expected) = crate::arch::elf_machine(arch) {
                        if (machine, big_endian) != expected {
                            verdict.problems.push(Problem::WrongArchitecture {
                                path: path.clone(),
                                found: crate::arch::elf_name(machine, big_endian),
                                expected: arch.to_string(),
                            });
                        }
                    }
                }
                (_, Magic::Shebang) => {}
                (Kind::Script, _) => verdict
                    .problems
                    .push(Problem::NotAScript { path: path.clone() }),
                (_, other) => verdict.problems.push(Problem::NotAProgram {
                    path: path.clone(),
                    found: other.describe(),
                }),
            }
            if kind == Kind::Executable {
                let detail = link_detail.unwrap_or_else(|| match target.magic {
                    Magic::Elf {
                        machine,
                        big_endian,
                    } => format!("ELF {}", crate::arch::elf_name(machine, big_endian)),
                    Magic::Shebang => "script".into(),
                    other => other.describe(),
                });
                note_component(kind, target_sized(entry, target), detail, verdict);
            }
        }
        Kind::ImageArchive => match &target.facts.archive {
            Some(Ok(facts)) => note_component(
                kind,
                target_sized(entry, target),
                facts.to_string(),
                verdict,
            ),
            Some(Err(reason)) => verdict.problems.push(Problem::NotImageArchive {
                path,
                reason: reason.clone(),
            }),
            None => {}
        },
        Kind::Yaml => {
            if let Some(Err(e)) = &target.facts.yaml {
                verdict.problems.push(Problem::NotYaml {
                    path,
                    line: e.line,
                    column: e.column,
                    message: e.message.clone(),
                });
            }
        }
        Kind::Toml => {
            if let Some(Err(message)) = &target.facts.toml {
                verdict.problems.push(Problem::NotToml {
                    path,
                    message: message.clone(),
                });
            }
        }
        Kind::ImageList => {
            if let Some(Err(errors)) = &target.facts.list {
                for e in errors {
                    verdict.problems.push(Problem::BadImageList {
                        path: path.clone(),
                        line: e.line,
                        text: e.text.clone(),
                        reason: e.reason.clone(),
                    });
                }
            }
        }
        Kind::File | Kind::Forbidden => {}
    }
    if let Some(why) = &target.facts.unchecked {
        verdict.notes.push(format!("{}: {why}", entry.path));
    }
}

/// The entry's path with the size of what it resolves to.
fn target_sized(entry: &Entry, target: &Entry) -> Entry {
    Entry {
        size: target.size,
        ..entry.clone()
    }
}

fn note_component(
    kind: Kind,
    entry: impl std::borrow::Borrow<Entry>,
    detail: String,
    verdict: &mut Verdict,
) {
    let entry = entry.borrow();
    verdict.components.push(Component {
        path: entry.path.clone(),
        kind,
        size: if matches!(entry.entry_type, EntryType::Symlink(_)) {
            0
        } else {
            entry.size
        },
        detail,
    });
}

#[cfg(test)]
mod tests;
