//! The layout files: parsing, self-checks, rule lookup and host placement.

use std::sync::OnceLock;

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::error::LayoutError;
use super::labels::ImageType;

/// The layouts compiled into the binary, every `layouts/*.toml` by file name
/// (listed by `build.rs`): (file name, text).
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/layouts.rs"));

/// What a file matched by a rule must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An ELF binary for the image's architecture or a `#!` script, with the exec bit.
    Executable,
    /// A `#!` script with the exec bit.
    Script,
    /// A tar, tar.gz or tar.zst holding an OCI image layout or a docker archive.
    ImageArchive,
    /// Image references, one a line (`#` comments and blank lines allowed).
    ImageList,
    /// One or more YAML documents.
    Yaml,
    /// A TOML document.
    Toml,
    /// Any regular file.
    File,
    /// Must not be there; `about` says why.
    Forbidden,
}

impl Kind {
    fn default_mode(self) -> u32 {
        match self {
            Kind::Executable | Kind::Script => 0o755,
            _ => 0o644,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Executable => "executable",
            Kind::Script => "script",
            Kind::ImageArchive => "image-archive",
            Kind::ImageList => "image-list",
            Kind::Yaml => "yaml",
            Kind::Toml => "toml",
            Kind::File => "file",
            Kind::Forbidden => "forbidden",
        }
    }
}

/// Which hosts receive a placed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hosts {
    #[default]
    All,
    ControlPlane,
    /// Hosts that run workloads: nodes, and control planes that are nodes
    /// too (as the plan's `PlaceRootfs` step says).
    Workers,
}

/// Labels a layout can require, by their canonical meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequiredLabel {
    Version,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    name: String,
    #[serde(rename = "type")]
    image_type: ImageType,
    runtime: Option<String>,
    #[serde(default)]
    runtime_aliases: Vec<String>,
    description: String,
    marker: Option<String>,
    #[serde(default)]
    required_labels: Vec<RequiredLabel>,
    images: ImageSpec,
    #[serde(rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    kind: Kind,
    #[serde(default)]
    required: bool,
    host: Option<String>,
    mode: Option<u32>,
    #[serde(default)]
    on: Hosts,
    import: Option<String>,
    /// For YAML files: the `apiVersion/kind` pairs their documents may be.
    #[serde(default)]
    kinds: Vec<String>,
    about: String,
}

/// Where image harvesting finds reference lists and writes archives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Glob of the reference lists in the rootfs (`images/shim/*`).
    pub lists: String,
    /// Directory in the rootfs that receives harvested archives (`images/`).
    pub archives: String,
    /// Format harvested archives are written in.
    pub archive_format: String,
}

/// One rule of a layout.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: String,
    pub kind: Kind,
    pub required: bool,
    pub host: Option<String>,
    pub mode: u32,
    pub on: Hosts,
    pub import: Option<String>,
    /// For YAML files: the `apiVersion/kind` pairs their documents may be
    /// (empty: any).
    pub kinds: Vec<String>,
    pub about: String,
    matcher: GlobMatcher,
    /// The literal directory part of the glob, up to the first wildcard component.
    prefix: String,
}

impl Rule {
    pub fn matches(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    /// Whether the pattern names one file rather than a family of them.
    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?', '[', '{'])
    }
}

/// A parsed, self-consistent layout.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The file it came from, for messages (`layouts/k3s.toml`).
    pub file: String,
    pub name: String,
    pub image_type: ImageType,
    pub runtime: Option<String>,
    pub runtime_aliases: Vec<String>,
    pub description: String,
    pub marker: Option<String>,
    pub required_labels: Vec<RequiredLabel>,
    pub images: ImageSpec,
    pub rules: Vec<Rule>,
    lists_matcher: GlobMatcher,
}

/// Where files matching a rule go on a host: what the installer needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Glob in the rootfs.
    pub pattern: String,
    /// Host path; ends with `/` when it is a directory (see [`Layout::place`]).
    pub host: String,
    pub mode: u32,
    pub on: Hosts,
    pub kind: Kind,
}

/// Where one file of the rootfs goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostTarget {
    pub path: String,
    pub mode: u32,
    pub on: Hosts,
    /// What the rule says the file is (placement links binaries and image
    /// archives, copies the rest).
    pub kind: Kind,
}

fn compile(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

fn literal_prefix(pattern: &str) -> String {
    let mut prefix = String::new();
    for component in pattern.split('/') {
        if component.contains(['*', '?', '[', '{']) {
            return prefix;
        }
        prefix.push_str(component);
        prefix.push('/');
    }
    // A literal pattern: its parent directory.
    match pattern.rfind('/') {
        Some(i) => pattern[..=i].to_string(),
        None => String::new(),
    }
}

fn check_rootfs_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
        return Err("must be a relative path inside the rootfs, without `.` or `..`".into());
    }
    Ok(())
}

impl Layout {
    /// Parses and checks one layout file.
    pub fn parse(file: &str, text: &str) -> Result<Layout, LayoutError> {
        let raw: RawLayout = toml::from_str(text).map_err(|e| LayoutError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| LayoutError::Invalid {
            file: file.to_string(),
            message,
        };
        match (raw.image_type, &raw.runtime) {
            (ImageType::Rootfs, None) => {
                return Err(invalid("a rootfs layout needs `runtime`".into()))
            }
            (ImageType::Patch, _) => {
                return Err(invalid(
                    "type = \"patch\" has no layout of its own: a patch is checked against its runtime's rootfs layout".into(),
                ))
            }
            _ => {}
        }
        if raw.image_type == ImageType::Rootfs && raw.marker.is_none() {
            return Err(invalid(
                "a rootfs layout needs `marker`, the file that identifies its runtime".into(),
            ));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            let bad = |message: String| LayoutError::Rule {
                file: file.to_string(),
                pattern: r.path.clone(),
                message,
            };
            check_rootfs_path(&r.path).map_err(bad)?;
            let matcher = compile(&r.path).map_err(|e| bad(format!("bad glob: {e}")))?;
            if let Some(host) = &r.host {
                if !host.starts_with('/') || host.split('/').any(|c| c == "..") {
                    return Err(bad(format!(
                        "host {host:?} must be an absolute path without `..`"
                    )));
                }
                let literal = !r.path.contains(['*', '?', '[', '{']);
                if !literal && !host.ends_with('/') {
                    return Err(bad(format!(
                        "host {host:?} must end with `/`: the glob matches many files"
                    )));
                }
                if r.kind == Kind::Forbidden {
                    return Err(bad("a forbidden file has no host path".into()));
                }
            }
            if r.kind == Kind::Forbidden && r.required {
                return Err(bad("a rule cannot be both required and forbidden".into()));
            }
            if let Some(mode) = r.mode {
                if mode > 0o7777 {
                    return Err(bad(format!("mode {mode:o} is not a permission mode")));
                }
            }
            if r.import.is_some() && r.kind != Kind::ImageArchive {
                return Err(bad("`import` applies to image archives only".into()));
            }
            if !r.kinds.is_empty() && r.kind != Kind::Yaml {
                return Err(bad("`kinds` applies to YAML files only".into()));
            }
            if r.about.trim().is_empty() {
                return Err(bad("`about` must say what the file is for".into()));
            }
            rules.push(Rule {
                prefix: literal_prefix(&r.path),
                mode: r.mode.unwrap_or(r.kind.default_mode()),
                pattern: r.path,
                kind: r.kind,
                required: r.required,
                host: r.host,
                on: r.on,
                import: r.import,
                kinds: r.kinds,
                about: r.about,
                matcher,
            });
        }
        let layout = Layout {
            file: file.to_string(),
            lists_matcher: compile(&raw.images.lists)
                .map_err(|e| invalid(format!("images.lists: bad glob: {e}")))?,
            name: raw.name,
            image_type: raw.image_type,
            runtime: raw.runtime,
            runtime_aliases: raw.runtime_aliases,
            description: raw.description,
            marker: raw.marker,
            required_labels: raw.required_labels,
            images: raw.images,
            rules,
        };
        layout.check_consistency().map_err(invalid)?;
        Ok(layout)
    }

    /// Cross-checks: the marker, lists and archive directory are all covered by
    /// rules of the right kind, and no rule is hidden behind an earlier one.
    fn check_consistency(&self) -> Result<(), String> {
        if let Some(marker) = &self.marker {
            check_rootfs_path(marker).map_err(|e| format!("marker {marker:?}: {e}"))?;
            match self.rule_for(marker) {
                Some(r) if r.kind == Kind::Executable && r.required => {}
                _ => {
                    return Err(format!(
                        "marker {marker:?} must be matched first by a required executable rule"
                    ))
                }
            }
        }
        let sample_list = self.images.lists.replace(['*', '?'], "x");
        if self.rule_for(&sample_list).map(|r| r.kind) != Some(Kind::ImageList) {
            return Err(format!(
                "images.lists {:?} must be matched by an image-list rule",
                self.images.lists
            ));
        }
        if !self.images.archives.ends_with('/') {
            return Err("images.archives must be a directory ending with `/`".into());
        }
        check_rootfs_path(self.images.archives.trim_end_matches('/'))
            .map_err(|e| format!("images.archives: {e}"))?;
        let sample_archive = format!("{}harvested.tar", self.images.archives);
        if self.rule_for(&sample_archive).map(|r| r.kind) != Some(Kind::ImageArchive) {
            return Err(format!(
                "images.archives {:?}: a harvested archive there ({sample_archive}) must be matched by an image-archive rule",
                self.images.archives
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.is_literal() {
                if let Some(earlier) = self.rules[..i].iter().find(|r| r.matches(&rule.pattern)) {
                    return Err(format!(
                        "rule {:?} can never apply: {:?} comes first and matches it",
                        rule.pattern, earlier.pattern
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rule that decides about `path`: the first whose glob matches.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(path))
    }

    /// Whether `path` is an image reference list that harvesting reads.
    pub fn is_image_list(&self, path: &str) -> bool {
        self.lists_matcher.is_match(path)
    }

    /// Every rule that puts files on hosts: glob → host path, mode, which hosts.
    pub fn placements(&self) -> Vec<Placement> {
        self.rules
            .iter()
            .filter_map(|r| {
                r.host.as_ref().map(|host| Placement {
                    pattern: r.pattern.clone(),
                    host: host.clone(),
                    mode: r.mode,
                    on: r.on,
                    kind: r.kind,
                })
            })
            .collect()
    }

    /// Where `path` of the rootfs lands on a host, if anywhere.
    ///
    /// A host path ending in `/` is a directory: the file keeps its path below
    /// the glob's literal prefix (`manifests/a/b.yaml` under `manifests/**` →
    /// `HOST/a/b.yaml`). Otherwise the host path is the file's own.
    pub fn place(&self, path: &str) -> Option<HostTarget> {
        let rule = self.rule_for(path)?;
        let host = rule.host.as_ref()?;
        let dest = if host.ends_with('/') {
            let rest = path.strip_prefix(rule.prefix.as_str()).unwrap_or(path);
            format!("{host}{rest}")
        } else {
            host.clone()
        };
        Some(HostTarget {
            path: dest,
            mode: rule.mode,
            on: rule.on,
            kind: rule.kind,
        })
    }
}

/// All layouts known to this binary.
#[derive(Debug, Clone)]
pub struct Layouts {
    layouts: Vec<Layout>,
}

impl Layouts {
    /// Parses a set of layout files and checks that runtimes are unique.
    pub fn parse(files: &[(&str, &str)]) -> Result<Layouts, LayoutError> {
        let mut layouts: Vec<Layout> = Vec::new();
        for (file, text) in files {
            let layout = Layout::parse(file, text)?;
            let clash = layouts.iter().find(|l| {
                l.name == layout.name
                    || (layout.runtime.is_some()
                        && l.image_type == layout.image_type
                        && l.runtime_names()
                            .any(|n| layout.runtime_names().any(|m| m == n)))
                    || (layout.image_type == ImageType::Application
                        && l.image_type == ImageType::Application)
            });
            if let Some(other) = clash {
                return Err(LayoutError::Invalid {
                    file: file.to_string(),
                    message: format!("clashes with {} (same name, runtime or type)", other.file),
                });
            }
            layouts.push(layout);
        }
        Ok(Layouts { layouts })
    }

    /// The layouts compiled into this binary (checked by a unit test).
    pub fn embedded() -> &'static Layouts {
        static EMBEDDED_LAYOUTS: OnceLock<Layouts> = OnceLock::new();
        EMBEDDED_LAYOUTS.get_or_init(|| {
            Layouts::parse(EMBEDDED).expect("the embedded layouts are checked by unit tests")
        })
    }

    pub fn all(&self) -> &[Layout] {
        &self.layouts
    }

    /// The rootfs layout of a runtime, by its name or an alias.
    pub fn rootfs(&self, runtime: &str) -> Option<&Layout> {
        self.layouts
            .iter()
            .find(|l| l.image_type == ImageType::Rootfs && l.runtime_names().any(|n| n == runtime))
    }

    pub fn application(&self) -> Option<&Layout> {
        self.layouts
            .iter()
            .find(|l| l.image_type == ImageType::Application)
    }

    /// The canonical runtime name for a label value (case-insensitive, aliases allowed).
    pub fn resolve_runtime(&self, value: &str) -> Option<&str> {
        let lower = value.trim().to_ascii_lowercase();
        self.layouts
            .iter()
            .filter(|l| l.image_type == ImageType::Rootfs)
            .find(|l| l.runtime_names().any(|n| n == lower))
            .and_then(|l| l.runtime.as_deref())
    }

    /// Canonical runtime names, in file order.
    pub fn runtimes(&self) -> Vec<&str> {
        self.layouts
            .iter()
            .filter(|l| l.image_type == ImageType::Rootfs)
            .filter_map(|l| l.runtime.as_deref())
            .collect()
    }

    /// Every kind that some layout gives `path`: what a scan must record about it.
    pub fn kinds_for(&self, path: &str) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self
            .layouts
            .iter()
            .filter_map(|l| l.rule_for(path).map(|r| r.kind))
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

impl Layout {
    fn runtime_names(&self) -> impl Iterator<Item = &str> {
        self.runtime
            .iter()
            .chain(self.runtime_aliases.iter())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_layouts_parse_and_are_consistent() {
        let layouts = Layouts::parse(EMBEDDED).unwrap();
        // The runtime registry checks that these are exactly its runtimes.
        assert!(!layouts.runtimes().is_empty());
        assert!(layouts.application().is_some());
        for layout in layouts.all() {
            assert!(!layout.rules.is_empty(), "{}", layout.file);
            // Every placement names an absolute host path.
            for p in layout.placements() {
                assert!(p.host.starts_with('/'), "{}: {:?}", layout.file, p);
            }
        }
    }

    #[test]
    fn aliases_resolve_to_the_canonical_runtime() {
        let layouts = Layouts::embedded();
        assert_eq!(layouts.resolve_runtime("K3S"), Some("k3s"));
        assert_eq!(layouts.resolve_runtime("kubernetes"), Some("kubeadm"));
        assert_eq!(layouts.resolve_runtime("microk8s"), None);
        assert_eq!(layouts.rootfs("kubernetes").unwrap().name, "kubeadm");
    }

    #[test]
    fn placement_keeps_the_path_below_the_globs_literal_prefix() {
        let layouts = Layouts::embedded();
        let k3s = layouts.rootfs("k3s").unwrap();
        let binary = k3s.place("bin/k3s").unwrap();
        assert_eq!(binary.mode, 0o755);
        assert!(binary.path.starts_with('/') && binary.path.ends_with("/k3s"));
        let manifest = k3s.place("manifests/apps/a.yaml").unwrap();
        assert!(
            manifest.path.ends_with("/manifests/apps/a.yaml"),
            "{manifest:?}"
        );
        assert_eq!(manifest.on, Hosts::ControlPlane);
        assert!(
            k3s.place("scripts/init.sh").is_none(),
            "scripts stay in the rootfs"
        );
        assert!(k3s.place("README.md").is_none());
        // The kubeadm drop-in lands beside the unit, in its .d directory.
        let kubeadm = layouts.rootfs("kubeadm").unwrap();
        let unit = kubeadm.place("etc/systemd/kubelet.service").unwrap().path;
        let dropin = kubeadm
            .place("etc/systemd/kubelet.service.d/10-kubeadm.conf")
            .unwrap()
            .path;
        assert_eq!(dropin, format!("{unit}.d/10-kubeadm.conf"));
        let cni = kubeadm.place("bin/cni/bridge").unwrap().path;
        assert!(
            cni.ends_with("/bridge") && !cni.contains("/cni/cni/"),
            "{cni}"
        );
    }

    #[test]
    fn harvesting_finds_lists_and_the_archive_directory() {
        for layout in Layouts::embedded().all() {
            assert!(layout.is_image_list("images/shim/list"), "{}", layout.file);
            assert!(!layout.is_image_list("images/shim/a/b"), "{}", layout.file);
            let archive = format!("{}x.tar", layout.images.archives);
            assert_eq!(
                layout.rule_for(&archive).map(|r| r.kind),
                Some(Kind::ImageArchive)
            );
        }
    }

    #[test]
    fn star_stops_at_slashes_and_double_star_does_not() {
        let k3s = Layouts::embedded().rootfs("k3s").unwrap();
        assert_eq!(k3s.rule_for("bin/helm").unwrap().kind, Kind::Executable);
        assert!(k3s.rule_for("bin/sub/helm").is_none());
        assert_eq!(
            k3s.rule_for("manifests/a/b/c.yml").unwrap().kind,
            Kind::Yaml
        );
        assert_eq!(k3s.rule_for("manifests/c.yaml").unwrap().kind, Kind::Yaml);
    }

    fn minimal(extra: &str) -> String {
        format!(
            r#"name = "t"
type = "application"
description = "d"
[images]
lists = "images/shim/*"
archives = "images/"
archive_format = "oci-archive"
[[rule]]
path = "images/shim/*"
kind = "image-list"
about = "lists"
[[rule]]
path = "images/*.tar"
kind = "image-archive"
about = "archives"
{extra}"#
        )
    }

    #[test]
    fn a_minimal_layout_parses() {
        let layout = Layout::parse("t.toml", &minimal("")).unwrap();
        assert_eq!(layout.rules.len(), 2);
        assert!(layout.placements().is_empty());
    }

    #[test]
    fn broken_layouts_are_refused_with_the_file_and_rule() {
        let cases = [
            ("[[rule]]\npath = \"/abs\"\nkind = \"file\"\nabout = \"x\"\n", "relative path"),
            ("[[rule]]\npath = \"a/../b\"\nkind = \"file\"\nabout = \"x\"\n", "relative path"),
            ("[[rule]]\npath = \"bin/*\"\nkind = \"file\"\nhost = \"/usr/bin\"\nabout = \"x\"\n", "must end with `/`"),
            ("[[rule]]\npath = \"bin/x\"\nkind = \"file\"\nhost = \"usr/bin/x\"\nabout = \"x\"\n", "absolute path"),
            ("[[rule]]\npath = \"bin/x\"\nkind = \"file\"\nmode = 0o17777\nabout = \"x\"\n", "permission mode"),
            ("[[rule]]\npath = \"bin/x\"\nkind = \"forbidden\"\nrequired = true\nabout = \"x\"\n", "required and forbidden"),
            ("[[rule]]\npath = \"bin/[x\"\nkind = \"file\"\nabout = \"x\"\n", "bad glob"),
            ("[[rule]]\npath = \"bin/x\"\nkind = \"binary\"\nabout = \"x\"\n", "unknown variant"),
            ("[[rule]]\npath = \"bin/x\"\nkind = \"file\"\nabout = \"x\"\ncolour = 1\n", "unknown field"),
            ("[[rule]]\npath = \"images/a.tar\"\nkind = \"file\"\nabout = \"x\"\n", "can never apply"),
        ];
        for (extra, expected) in cases {
            let err = Layout::parse("t.toml", &minimal(extra))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("t.toml"), "{err}");
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn a_rootfs_layout_needs_a_runtime_and_a_covered_marker() {
        let base = minimal("").replace("type = \"application\"", "type = \"rootfs\"");
        let err = Layout::parse("t.toml", &base).unwrap_err().to_string();
        assert!(err.contains("needs `runtime`"), "{err}");
        let with_runtime = base.replace(
            "description",
            "runtime = \"x\"\nmarker = \"bin/x\"\ndescription",
        );
        let err = Layout::parse("t.toml", &with_runtime)
            .unwrap_err()
            .to_string();
        assert!(err.contains("marker"), "{err}");
    }

    #[test]
    fn two_layouts_for_one_runtime_clash() {
        let (file, text) = EMBEDDED[0];
        let err = Layouts::parse(&[(file, text), ("copy.toml", text)]).unwrap_err();
        assert!(err.to_string().contains("clashes"), "{err}");
    }
}
