//! Collecting image references: pure, over file bytes the caller read.
//!
//! Three kinds of source, told apart by their context-relative path:
//! - **lists** (`images/shim/*` by default, from the layout): one reference a
//!   line; `#` starts a comment anywhere (a reference never holds one); blank
//!   lines are skipped;
//! - **manifests** (`manifests/**/*.yaml|yml`): every `image:` string, at any
//!   depth, in every document;
//! - **chart values** (`charts/**/values.yaml|yml`): `image:` strings and
//!   `repository`/`tag` maps, with the sibling `Chart.yaml`'s `appVersion` as
//!   the default tag.
//!
//! Every problem is collected before anything fails, so one build run shows
//! all the lines to fix. References are deduplicated by their normalized form
//! (`nginx` = `docker.io/library/nginx:latest`); each keeps every place that
//! named it, first one first.

use std::collections::{BTreeMap, HashMap};

use super::error::{HarvestError, Origin};
use super::exclude::{ExcludeList, IGNORE_FILE};
use super::yaml::{self, Finding};
use crate::ignore::Glob;
use crate::reference::Reference;

/// Where the sources are, as globs over context-relative paths (`**` spans
/// directories, `*` does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub lists: Vec<String>,
    pub manifests: Vec<String>,
    pub values: Vec<String>,
}

impl Sources {
    /// `lists` from the layout (`images/shim/*`), the usual places for the rest.
    pub fn new(lists: &str) -> Sources {
        Sources {
            lists: vec![lists.to_string()],
            manifests: vec![
                "manifests/**/*.yaml".to_string(),
                "manifests/**/*.yml".to_string(),
            ],
            values: vec![
                "charts/**/values.yaml".to_string(),
                "charts/**/values.yml".to_string(),
            ],
        }
    }

    pub(crate) fn compile(&self) -> Result<CompiledSources, HarvestError> {
        let compile = |globs: &[String]| {
            globs
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    Glob::new(g.trim_start_matches("./"), true).map_err(|reason| {
                        HarvestError::BadPattern {
                            file: "<image sources>".to_string(),
                            line: i + 1,
                            pattern: g.clone(),
                            reason,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(CompiledSources {
            lists: compile(&self.lists)?,
            manifests: compile(&self.manifests)?,
            values: compile(&self.values)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    List,
    Manifest,
    ChartValues,
    /// A `Chart.yaml` next to a values file (for `appVersion`).
    ChartMeta,
}

pub(crate) struct CompiledSources {
    lists: Vec<Glob>,
    manifests: Vec<Glob>,
    values: Vec<Glob>,
}

impl CompiledSources {
    /// What `rel` (context-relative, `/`-separated) is, if anything.
    pub(crate) fn classify(&self, rel: &str) -> Option<SourceKind> {
        let any = |globs: &[Glob], p: &str| globs.iter().any(|g| g.matches(p));
        if any(&self.lists, rel) {
            Some(SourceKind::List)
        } else if any(&self.manifests, rel) {
            Some(SourceKind::Manifest)
        } else if any(&self.values, rel) {
            Some(SourceKind::ChartValues)
        } else if let Some(dir) = rel.strip_suffix("Chart.yaml") {
            let sibling = |name: &str| format!("{dir}{name}");
            (any(&self.values, &sibling("values.yaml"))
                || any(&self.values, &sibling("values.yml")))
            .then_some(SourceKind::ChartMeta)
        } else {
            None
        }
    }
}

/// One file to collect from.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Context-relative, `/`-separated.
    pub path: String,
    pub kind: SourceKind,
    pub bytes: Vec<u8>,
}

/// One image to harvest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedImage {
    pub reference: Reference,
    /// `reference.to_string()`: the store's name for it.
    pub name: String,
    /// As first written.
    pub written: String,
    /// Every place that names it, in file then line order.
    pub origins: Vec<Origin>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Sorted by normalized name.
    pub images: Vec<CollectedImage>,
    /// Found but excluded by the exclude list: (as written, where).
    pub excluded: Vec<(String, Origin)>,
}

/// Collects every reference in `files`; reports every problem at once.
pub fn collect(files: &[SourceFile], exclude: &ExcludeList) -> Result<Collected, HarvestError> {
    let mut files: Vec<&SourceFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let app_versions: HashMap<&str, String> = files
        .iter()
        .filter(|f| f.kind == SourceKind::ChartMeta)
        .filter_map(|f| {
            let dir = f.path.strip_suffix("Chart.yaml")?;
            let v = yaml::app_version(std::str::from_utf8(&f.bytes).ok()?)?;
            Some((dir, v))
        })
        .collect();

    let mut errors = Vec::new();
    let mut found: Vec<(String, Origin)> = Vec::new();
    for file in &files {
        if file.kind == SourceKind::ChartMeta {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&file.bytes) else {
            errors.push(HarvestError::NotText {
                file: file.path.clone(),
            });
            continue;
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let origin = |line| Origin {
            file: file.path.clone(),
            line,
        };
        match file.kind {
            SourceKind::List => {
                for (i, raw) in text.lines().enumerate() {
                    let line = raw.split('#').next().unwrap_or("").trim();
                    if !line.is_empty() {
                        found.push((line.to_string(), origin(i + 1)));
                    }
                }
            }
            SourceKind::Manifest | SourceKind::ChartValues => {
                let docs = match yaml::parse(text) {
                    Ok(docs) => docs,
                    Err(e) => {
                        errors.push(HarvestError::Yaml {
                            file: file.path.clone(),
                            line: e.line,
                            column: e.column,
                            reason: e.reason,
                        });
                        continue;
                    }
                };
                let app = match file.kind {
                    SourceKind::ChartValues => file
                        .path
                        .rsplit_once('/')
                        .and_then(|(dir, _)| app_versions.get(format!("{dir}/").as_str()))
                        .map(String::as_str),
                    _ => None,
                };
                for finding in yaml::find_images(&docs, text, app) {
                    match finding {
                        Finding::Image { text, line } => found.push((text, origin(line))),
                        Finding::Templated { text, line } => {
                            if !exclude.is_excluded(&text, None) {
                                errors.push(HarvestError::Templated {
                                    origin: origin(line),
                                    suggestion: template_pattern(&text),
                                    text,
                                    ignore_file: IGNORE_FILE,
                                });
                            }
                        }
                        Finding::MissingTag { repository, line } => {
                            if !exclude.is_excluded(&repository, None) {
                                errors.push(HarvestError::MissingTag {
                                    origin: origin(line),
                                    repository,
                                });
                            }
                        }
                    }
                }
            }
            SourceKind::ChartMeta => {}
        }
    }

    let mut by_name: BTreeMap<String, CollectedImage> = BTreeMap::new();
    let mut excluded = Vec::new();
    for (text, origin) in found {
        let parsed = Reference::parse(&text);
        let name = parsed.as_ref().ok().map(ToString::to_string);
        if exclude.is_excluded(&text, name.as_deref()) {
            excluded.push((text, origin));
            continue;
        }
        match parsed {
            Err(e) => errors.push(HarvestError::BadReference {
                origin,
                text,
                reason: reason_of(&e),
                ignore_file: IGNORE_FILE,
            }),
            Ok(reference) => {
                let name = reference.to_string();
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| CollectedImage {
                        reference,
                        name,
                        written: text,
                        origins: Vec::new(),
                    })
                    .origins
                    .push(origin);
            }
        }
    }
    // In file and line order, whichever pass found them.
    errors.sort_by_key(|e| e.position());
    if let Some(e) = HarvestError::combine(errors) {
        return Err(e);
    }
    Ok(Collected {
        images: by_name.into_values().collect(),
        excluded,
    })
}

fn reason_of(e: &crate::reference::ReferenceError) -> String {
    match e {
        crate::reference::ReferenceError::Empty => "it is empty".to_string(),
        crate::reference::ReferenceError::Invalid { reason, .. } => reason.clone(),
    }
}

/// An exclude pattern for a template: each `{{ … }}` becomes `*`.
fn template_pattern(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&escape(&rest[..start]));
        out.push('*');
        rest = match rest[start..].find("}}") {
            Some(end) => &rest[start + end + 2..],
            None => "",
        };
    }
    out.push_str(&escape(rest));
    // Adjacent templates give `**`; one star says the same.
    while out.contains("**") {
        out = out.replace("**", "*");
    }
    out
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '*' | '?' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, kind: SourceKind, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_string(),
            kind,
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn names(c: &Collected) -> Vec<&str> {
        c.images.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn classify_by_path() {
        let s = Sources::new("images/shim/*").compile().unwrap();
        assert_eq!(s.classify("images/shim/list"), Some(SourceKind::List));
        assert_eq!(s.classify("images/shim/sub/list"), None);
        assert_eq!(s.classify("manifests/a.yaml"), Some(SourceKind::Manifest));
        assert_eq!(
            s.classify("manifests/x/y/a.yml"),
            Some(SourceKind::Manifest)
        );
        assert_eq!(s.classify("manifests/readme.md"), None);
        assert_eq!(
            s.classify("charts/nginx/values.yaml"),
            Some(SourceKind::ChartValues)
        );
        assert_eq!(
            s.classify("charts/nginx/charts/sub/values.yml"),
            Some(SourceKind::ChartValues)
        );
        assert_eq!(
            s.classify("charts/nginx/Chart.yaml"),
            Some(SourceKind::ChartMeta)
        );
        assert_eq!(s.classify("charts/nginx/templates/deploy.yaml"), None);
        assert_eq!(s.classify("etc/config.yaml"), None);
    }

    #[test]
    fn lists_with_comments_blank_lines_and_dedupe_across_files() {
        let files = [
            file(
                "images/shim/a",
                SourceKind::List,
                "# core\nnginx:1.25\n\n  registry.k8s.io/pause:3.9  # sandbox\n\t\n",
            ),
            file(
                "manifests/web.yaml",
                SourceKind::Manifest,
                "spec:\n  containers:\n  - image: docker.io/library/nginx:1.25\n",
            ),
        ];
        let c = collect(&files, &ExcludeList::default()).unwrap();
        assert_eq!(
            names(&c),
            ["docker.io/library/nginx:1.25", "registry.k8s.io/pause:3.9"]
        );
        let nginx = &c.images[0];
        assert_eq!(nginx.written, "nginx:1.25");
        assert_eq!(
            nginx.origins,
            [
                Origin {
                    file: "images/shim/a".into(),
                    line: 2
                },
                Origin {
                    file: "manifests/web.yaml".into(),
                    line: 3
                }
            ]
        );
        assert_eq!(c.images[1].origins[0].line, 4);
    }

    #[test]
    fn values_use_chart_app_version_for_missing_tags() {
        let files = [
            file(
                "charts/web/values.yaml",
                SourceKind::ChartValues,
                "image:\n  repository: bitnami/nginx\n  tag: \"\"\n",
            ),
            file(
                "charts/web/Chart.yaml",
                SourceKind::ChartMeta,
                "appVersion: 1.25.3\n",
            ),
        ];
        let c = collect(&files, &ExcludeList::default()).unwrap();
        assert_eq!(names(&c), ["docker.io/bitnami/nginx:1.25.3"]);
    }

    #[test]
    fn every_problem_is_reported_with_file_and_line() {
        let files = [
            file("images/shim/a", SourceKind::List, "ok:1\nNot_Valid:x\n"),
            file("manifests/bad.yaml", SourceKind::Manifest, "a: [b\n"),
            file(
                "charts/c/values.yaml",
                SourceKind::ChartValues,
                "x:\n  image: \"{{ .Values.reg }}/app:{{ .Values.tag }}\"\n",
            ),
            file("manifests/latin1.yml", SourceKind::Manifest, ""),
        ];
        let mut files = files.to_vec();
        files[3].bytes = vec![b'a', 0xff, b'\n'];
        let err = collect(&files, &ExcludeList::default()).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems().len(), 4, "{text}");
        assert!(
            text.contains("images/shim/a:2: image reference \"Not_Valid:x\" is invalid"),
            "{text}"
        );
        assert!(text.contains("manifests/bad.yaml:2:"), "{text}");
        assert!(text.contains("not valid YAML"), "{text}");
        assert!(text.contains("charts/c/values.yaml:2: image \"{{ .Values.reg }}/app:{{ .Values.tag }}\" is a template"), "{text}");
        assert!(text.contains("images/shim/"), "{text}");
        assert!(text.contains("\"*/app:*\""), "{text}");
        assert!(text.contains("manifests/latin1.yml: not UTF-8"), "{text}");
    }

    #[test]
    fn excludes_drop_references_templates_and_bad_text() {
        let files = [
            file(
                "images/shim/a",
                SourceKind::List,
                "nginx:1.25\nregistry.k8s.io/pause:3.9\nBAD REF\n",
            ),
            file(
                "charts/c/values.yaml",
                SourceKind::ChartValues,
                "image: \"{{ .Values.reg }}/app:1\"\n",
            ),
        ];
        let ex = ExcludeList::parse("registry.k8s.io/*\n*/app:1\nBAD*\n", IGNORE_FILE).unwrap();
        let c = collect(&files, &ex).unwrap();
        assert_eq!(names(&c), ["docker.io/library/nginx:1.25"]);
        assert_eq!(c.excluded.len(), 2);
    }

    #[test]
    fn a_manifest_without_images_is_fine() {
        let files = [file(
            "manifests/svc.yaml",
            SourceKind::Manifest,
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
        )];
        assert_eq!(
            collect(&files, &ExcludeList::default()).unwrap(),
            Collected::default()
        );
    }

    #[test]
    fn by_digest_references_are_kept_apart_from_tags() {
        let d = "sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3";
        let files = [file(
            "images/shim/a",
            SourceKind::List,
            &format!("nginx@{d}\nnginx:1.25@{d}\nnginx:1.25\n"),
        )];
        let c = collect(&files, &ExcludeList::default()).unwrap();
        assert_eq!(c.images.len(), 3);
        assert!(c.images.iter().any(|i| i.reference.tag.is_none()));
    }

    #[test]
    fn template_patterns() {
        assert_eq!(template_pattern("{{ a }}/app:{{ b }}"), "*/app:*");
        assert_eq!(template_pattern("{{a}}{{b}}"), "*");
        assert_eq!(template_pattern("x?{{ a"), "x\\?*");
    }
}
