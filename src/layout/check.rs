//! Rule evaluation: a rootfs (an in-memory list of entries with the facts the
//! scan recorded) against the layout its labels select. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::Problem;
use super::labels::{
    read_labels, ClusterInfo, ImageType, Source, Sourced, RUNTIME_KEYS, VERSION_KEYS,
};
use super::probe::{ArchiveFacts, ListError, Magic, YamlError};
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
                        aliases: VERSION_KEYS[1..].join(", "),
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
mod tests {
    use super::*;
    use crate::layout::probe::{ArchiveFormat, ListError};

    fn elf(arch: &str) -> Vec<u8> {
        let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
        bytes.resize(64, 0);
        let m = crate::arch::elf_machine(arch).unwrap().0.to_le_bytes();
        bytes[18] = m[0];
        bytes[19] = m[1];
        bytes
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn k3s_labels() -> BTreeMap<String, String> {
        labels(&[
            ("sealrs.io/type", "rootfs"),
            ("sealrs.io/runtime", "k3s"),
            ("sealrs.io/version", "v1.30.2+k3s1"),
        ])
    }

    fn archive(path: &str, facts: Result<ArchiveFacts, String>) -> Entry {
        let mut e = Entry::file(path, 0o644, &[0x28, 0xb5, 0x2f, 0xfd]);
        e.size = 1000;
        e.facts.archive = Some(facts);
        e
    }

    fn yaml(path: &str, result: Result<usize, YamlError>) -> Entry {
        let mut e = Entry::file(path, 0o644, b"kind: x\n");
        e.facts.yaml = Some(result);
        e
    }

    fn good_k3s() -> Vec<Entry> {
        vec![
            Entry {
                entry_type: EntryType::Dir,
                ..Entry::file("bin", 0o755, b"")
            },
            Entry::file("bin/k3s", 0o755, &elf("amd64")),
            Entry {
                entry_type: EntryType::Symlink("k3s".into()),
                ..Entry::file("bin/kubectl", 0o777, b"")
            },
            archive(
                "images/k3s-airgap-images-amd64.tar.zst",
                Ok(ArchiveFacts {
                    format: ArchiveFormat::DockerArchive,
                    compression: "zstd",
                }),
            ),
            yaml("manifests/app.yaml", Ok(2)),
            yaml("etc/config.yaml", Ok(1)),
            Entry::file("scripts/init.sh", 0o755, b"#!/bin/sh\n"),
            Entry::file("README.md", 0o644, b"hi"),
        ]
    }

    #[test]
    fn a_sound_k3s_rootfs_holds_and_lists_its_components() {
        let v = evaluate(
            Layouts::embedded(),
            &k3s_labels(),
            &Rootfs::from_entries(good_k3s()),
            "amd64",
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(v.holds());
        assert_eq!(v.layout.as_deref(), Some("layouts/k3s.toml"));
        let paths: Vec<(&str, &str)> = v
            .components
            .iter()
            .map(|c| (c.path.as_str(), c.detail.as_str()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("bin/k3s", "ELF amd64"),
                ("bin/kubectl", "symlink to k3s"),
                (
                    "images/k3s-airgap-images-amd64.tar.zst",
                    "docker-archive, zstd"
                ),
            ]
        );
        assert_eq!(v.other_files, 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut entries = good_k3s();
        entries.retain(|e| e.path != "bin/k3s");
        entries.push(Entry::file("bin/helm", 0o644, &elf("amd64")));
        entries.push(Entry::file("bin/tool", 0o755, &elf("arm64")));
        entries.push(Entry::file("bin/notes", 0o755, b"plain text"));
        entries.push(Entry::file("scripts/bad.sh", 0o755, b"echo no shebang"));
        entries.push(archive(
            "images/fake.tar",
            Err("it is data of another kind".into()),
        ));
        entries.push(yaml(
            "manifests/broken.yaml",
            Err(YamlError {
                line: 3,
                column: 7,
                message: "did not find expected key".into(),
            }),
        ));
        let mut list = Entry::file("images/shim/list", 0o644, b"");
        list.facts.list = Some(Err(vec![ListError {
            line: 2,
            text: "NOT VALID".into(),
            reason: "bad".into(),
        }]));
        entries.push(list);
        entries.push(Entry {
            entry_type: EntryType::Symlink("../nowhere".into()),
            ..Entry::file("bin/dangling", 0o777, b"")
        });
        let mut labels = k3s_labels();
        labels.remove("sealrs.io/version");
        let v = evaluate(
            Layouts::embedded(),
            &labels,
            &Rootfs::from_entries(entries),
            "amd64",
        );
        let text: Vec<String> = v.problems.iter().map(|p| p.to_string()).collect();
        let expect = [
            "label sealrs.io/version is missing",
            "bin/dangling: a symlink to ../nowhere",
            "bin/helm: not executable (mode 0644)",
            "bin/kubectl: a symlink to k3s, which is not in the image",
            "bin/notes: not a program",
            "bin/tool: an ELF binary for arm64, but the image is for amd64",
            "images/fake.tar: not an image archive: it is data of another kind",
            "images/shim/list:2: \"NOT VALID\" is not an image reference",
            "manifests/broken.yaml:3:7: not valid YAML: did not find expected key",
            "scripts/bad.sh: not a script",
            "bin/k3s: missing; expected the k3s binary",
        ];
        for e in expect {
            assert!(
                text.iter().any(|t| t.starts_with(e)),
                "{e:?} not in {text:#?}"
            );
        }
        assert_eq!(text.len(), expect.len(), "{text:#?}");
        assert!(!v.holds());
    }

    #[test]
    fn the_runtime_is_inferred_from_the_marker_and_shown() {
        let mut labels = k3s_labels();
        labels.remove("sealrs.io/runtime");
        let v = evaluate(
            Layouts::embedded(),
            &labels,
            &Rootfs::from_entries(good_k3s()),
            "amd64",
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let runtime = v.info.runtime.unwrap();
        assert_eq!(runtime.value, "k3s");
        assert_eq!(runtime.source, Source::Inferred("bin/k3s".into()));
        assert!(
            v.notes.iter().any(|n| n.contains("inferred from bin/k3s")),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn two_markers_make_the_runtime_ambiguous() {
        let mut entries = good_k3s();
        entries.push(Entry::file("bin/k0s", 0o755, &elf("amd64")));
        let v = evaluate(
            Layouts::embedded(),
            &labels(&[
                ("sealrs.io/type", "rootfs"),
                ("sealrs.io/version", "v1.30.0"),
            ]),
            &Rootfs::from_entries(entries),
            "amd64",
        );
        assert!(
            matches!(v.problems.as_slice(), [Problem::AmbiguousRuntime { .. }]),
            "{:?}",
            v.problems
        );
        assert!(v.layout.is_none());
    }

    #[test]
    fn a_rootfs_with_no_runtime_at_all_is_a_problem() {
        let v = evaluate(
            Layouts::embedded(),
            &labels(&[("sealos.io.type", "rootfs"), ("version", "v1.0")]),
            &Rootfs::from_entries(vec![Entry::file("etc/a.conf", 0o644, b"x")]),
            "amd64",
        );
        assert!(
            matches!(v.problems.as_slice(), [Problem::NoRuntime { .. }]),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn images_without_a_type_are_not_checked_but_described() {
        let mut labels = k3s_labels();
        labels.remove("sealrs.io/type");
        labels.remove("sealrs.io/runtime");
        let v = evaluate(
            Layouts::embedded(),
            &labels,
            &Rootfs::from_entries(good_k3s()),
            "amd64",
        );
        assert!(v.layout.is_none() && v.problems.is_empty());
        assert_eq!(v.info.runtime.unwrap().value, "k3s");
        assert!(
            v.notes[0].contains("no sealrs.io/type label"),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn a_patch_needs_nothing_but_what_it_carries_must_be_right() {
        let patch = labels(&[("sealrs.io/type", "patch"), ("sealrs.io/runtime", "k3s")]);
        let ok = evaluate(
            Layouts::embedded(),
            &patch,
            &Rootfs::from_entries(vec![yaml("etc/registries.yaml", Ok(1))]),
            "amd64",
        );
        assert!(ok.holds(), "{:?}", ok.problems);
        let bad = evaluate(
            Layouts::embedded(),
            &patch,
            &Rootfs::from_entries(vec![Entry::file("bin/k3s", 0o644, &elf("amd64"))]),
            "amd64",
        );
        assert!(
            matches!(bad.problems.as_slice(), [Problem::NotExecutable { .. }]),
            "{:?}",
            bad.problems
        );
    }

    #[test]
    fn applications_need_no_runtime_and_no_version() {
        let v = evaluate(
            Layouts::embedded(),
            &labels(&[("sealrs.io/type", "application")]),
            &Rootfs::from_entries(vec![yaml("manifests/deployment.yaml", Ok(1))]),
            "amd64",
        );
        assert!(v.holds(), "{:?}", v.problems);
        assert_eq!(v.layout.as_deref(), Some("layouts/application.toml"));
    }

    #[test]
    fn k0s_refuses_manifests_outside_a_stack_and_compressed_bundles() {
        let entries = vec![
            Entry::file("bin/k0s", 0o755, &elf("arm64")),
            yaml("manifests/loose.yaml", Ok(1)),
            yaml("manifests/stack/ok.yaml", Ok(1)),
            archive(
                "images/bundle.tar.zst",
                Ok(ArchiveFacts {
                    format: ArchiveFormat::OciArchive,
                    compression: "zstd",
                }),
            ),
        ];
        let v = evaluate(
            Layouts::embedded(),
            &labels(&[
                ("sealrs.io/type", "rootfs"),
                ("sealrs.io/runtime", "k0s"),
                ("sealrs.io/version", "v1.30.2+k0s.0"),
            ]),
            &Rootfs::from_entries(entries),
            "arm64",
        );
        let paths: Vec<&str> = v
            .problems
            .iter()
            .map(|p| match p {
                Problem::Forbidden { path, .. } => path.as_str(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(paths, vec!["images/bundle.tar.zst", "manifests/loose.yaml"]);
    }

    #[test]
    fn kubeadm_lists_every_missing_piece() {
        let v = evaluate(
            Layouts::embedded(),
            &labels(&[
                ("sealrs.io/type", "rootfs"),
                ("sealrs.io/runtime", "kubeadm"),
                ("sealrs.io/version", "v1.30.2"),
            ]),
            &Rootfs::from_entries(vec![Entry::file("bin/kubeadm", 0o755, &elf("amd64"))]),
            "amd64",
        );
        let missing = v
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::Missing { .. }))
            .count();
        let required = Layouts::embedded()
            .rootfs("kubeadm")
            .unwrap()
            .rules
            .iter()
            .filter(|r| r.required)
            .count();
        assert_eq!(missing, required - 1, "{:#?}", v.problems);
    }

    #[test]
    fn links_resolve_inside_the_image() {
        assert_eq!(join("bin", "../lib/x"), Some("lib/x".into()));
        assert_eq!(join("bin", "../../x"), None);
        assert_eq!(normalize("./a//b/"), Some("a/b".into()));
        assert_eq!(normalize("./"), None);
        let rootfs = Rootfs::from_entries(vec![
            Entry::file("bin/k3s", 0o755, &elf("amd64")),
            Entry {
                entry_type: EntryType::Hardlink("bin/k3s".into()),
                ..Entry::file("bin/k3s-copy", 0o755, b"")
            },
            Entry {
                entry_type: EntryType::Symlink("loop".into()),
                ..Entry::file("bin/loop", 0o777, b"")
            },
        ]);
        let copy = &rootfs.entries["bin/k3s-copy"];
        assert_eq!(rootfs.resolve(copy).unwrap().unwrap().path, "bin/k3s");
        assert!(rootfs.resolve(&rootfs.entries["bin/loop"]).is_err());
    }

    #[test]
    fn a_host_needs_the_files_its_role_needs_and_each_as_its_rule_says() {
        let layout = Layout::parse(
            "test.toml",
            r#"
name = "t"
type = "rootfs"
runtime = "t"
description = "test"
marker = "bin/t"
[images]
lists = "images/shim/*"
archives = "images/"
archive_format = "oci-archive"
[[rule]]
path = "bin/t"
kind = "executable"
required = true
host = "/usr/local/bin/t"
about = "the t binary"
[[rule]]
path = "bin/t-server"
kind = "executable"
required = true
on = "control-plane"
host = "/usr/local/bin/t-server"
about = "the server binary"
[[rule]]
path = "images/shim/*"
kind = "image-list"
about = "lists"
[[rule]]
path = "images/*.tar"
kind = "image-archive"
about = "archives"
"#,
        )
        .unwrap();
        let worker_only = Rootfs::from_entries(vec![Entry::file("bin/t", 0o755, &elf("amd64"))]);
        assert_eq!(
            check_for_host(&layout, &worker_only, "amd64", false),
            vec![]
        );
        assert_eq!(
            check_for_host(&layout, &worker_only, "amd64", true),
            vec![Problem::Missing {
                pattern: "bin/t-server".into(),
                about: "the server binary".into(),
            }]
        );
        // Every problem at once: the wrong machine, a lost exec bit, a missing file.
        let broken = Rootfs::from_entries(vec![
            Entry::file("bin/t", 0o755, &elf("arm64")),
            Entry::file("bin/t-server", 0o644, b"#!/bin/sh\n"),
        ]);
        let problems = check_for_host(&layout, &broken, "amd64", true);
        assert!(
            problems.contains(&Problem::WrongArchitecture {
                path: "bin/t".into(),
                found: "arm64".into(),
                expected: "amd64".into(),
            }),
            "{problems:?}"
        );
        assert!(
            problems.contains(&Problem::NotExecutable {
                path: "bin/t-server".into(),
                mode: 0o644,
            }),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        // Labels are not a host's business.
        assert!(check_for_host(&layout, &Rootfs::default(), "amd64", false)
            .iter()
            .all(|p| matches!(p, Problem::Missing { .. })));
    }
}
