//! The cluster facts an image's labels carry: type, runtime, version.
//!
//! [`read_labels`] is the one reader: build and inspect check what it finds,
//! and run (through `runtime::ImageInfo`) acts on the same reading.
//! `sealrs.io/*` labels come first; the sealos labels are read as aliases so
//! that existing Kubefiles keep working. When both are present and disagree,
//! the sealrs label wins and a note says so. Runtime names and aliases are
//! resolved through the layouts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::Problem;
use super::spec::Layouts;
use super::version::Version;

/// Label keys for the image type, in order of precedence.
pub const TYPE_KEYS: [&str; 3] = ["sealrs.io/type", "sealos.io.type", "apps.sealos.io/type"];
/// Label keys for the runtime, in order of precedence.
pub const RUNTIME_KEYS: [&str; 3] = [
    "sealrs.io/runtime",
    "sealos.io.distribution",
    "apps.sealos.io/distribution",
];
/// Label keys for the Kubernetes (or application) version, in order of precedence.
pub const VERSION_KEYS: [&str; 2] = ["sealrs.io/version", "version"];
/// sealos's keys for its image format (`v1beta1`): read as the version, after
/// [`VERSION_KEYS`], only when the value is one.
pub const FORMAT_VERSION_KEYS: [&str; 2] = ["sealos.io.version", "apps.sealos.io/version"];

/// What kind of cluster image this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    /// A distribution's whole rootfs: binaries, airgap images, configuration.
    Rootfs,
    /// Something applied on top of a running cluster.
    Application,
    /// Files overlaid on a rootfs (a newer binary, an extra config).
    Patch,
}

impl ImageType {
    pub fn parse(value: &str) -> Option<ImageType> {
        match value.trim().to_ascii_lowercase().as_str() {
            "rootfs" => Some(ImageType::Rootfs),
            "application" | "app" => Some(ImageType::Application),
            "patch" => Some(ImageType::Patch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Rootfs => "rootfs",
            ImageType::Application => "application",
            ImageType::Patch => "patch",
        }
    }
}

impl fmt::Display for ImageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a fact came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", content = "key", rename_all = "lowercase")]
pub enum Source {
    /// The label with this key.
    Label(String),
    /// Inferred from this file in the rootfs.
    Inferred(String),
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T: fmt::Display> fmt::Display for Sourced<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Label(key) => write!(f, "{} (label {key})", self.value),
            Source::Inferred(path) => write!(f, "{} (inferred from {path})", self.value),
        }
    }
}

/// The cluster facts of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    #[serde(rename = "type")]
    pub image_type: Option<Sourced<ImageType>>,
    pub runtime: Option<Sourced<String>>,
    pub version: Option<Sourced<Version>>,
}

impl ClusterInfo {
    /// The labels that say what was inferred from the rootfs of a cluster
    /// image (one with a type), for build to write: whoever reads its labels
    /// later finds what build checked.
    pub fn inferred_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if self.image_type.is_none() {
            return labels;
        }
        if let Some(Sourced {
            value,
            source: Source::Inferred(_),
        }) = &self.runtime
        {
            labels.insert(RUNTIME_KEYS[0].to_string(), value.clone());
        }
        labels
    }
}

/// What [`read_labels`] found, with problems (bad values) and notes (conflicts).
#[derive(Debug, Clone, Default)]
pub struct LabelReading {
    pub info: ClusterInfo,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

/// The first present key among `keys`, and a note for each alias that disagrees with it.
fn first_of<'a>(
    labels: &'a BTreeMap<String, String>,
    keys: &[&'a str],
    same: impl Fn(&str, &str) -> bool,
    notes: &mut Vec<String>,
) -> Option<(&'a str, &'a str)> {
    let mut found: Option<(&str, &str)> = None;
    for key in keys {
        let Some(value) = labels.get(*key) else {
            continue;
        };
        match found {
            None => found = Some((key, value.as_str())),
            Some((k, v)) if !same(v, value) => notes.push(format!(
                "label {k}={v:?} is used; {key}={value:?} disagrees and is ignored"
            )),
            Some(_) => {}
        }
    }
    found
}

/// Reads type, runtime and version from an image's labels.
pub fn read_labels(labels: &BTreeMap<String, String>, layouts: &Layouts) -> LabelReading {
    let mut reading = LabelReading::default();
    let type_same = |a: &str, b: &str| ImageType::parse(a) == ImageType::parse(b);
    if let Some((key, value)) = first_of(labels, &TYPE_KEYS, type_same, &mut reading.notes) {
        match ImageType::parse(value) {
            Some(t) => {
                reading.info.image_type = Some(Sourced {
                    value: t,
                    source: Source::Label(key.to_string()),
                })
            }
            None => {
                let types = ["rootfs", "application", "patch"];
                let hint = crate::progress::text::closest(value.trim(), &types)
                    .map(|t| format!("did you mean {t}? "))
                    .unwrap_or_default();
                reading.problems.push(Problem::BadLabel {
                    key: key.to_string(),
                    value: value.to_string(),
                    expected: format!("{hint}expected rootfs, application or patch"),
                })
            }
        }
    }
    let runtime_same = |a: &str, b: &str| layouts.resolve_runtime(a) == layouts.resolve_runtime(b);
    if let Some((key, value)) = first_of(labels, &RUNTIME_KEYS, runtime_same, &mut reading.notes) {
        match layouts.resolve_runtime(value) {
            Some(runtime) => {
                reading.info.runtime = Some(Sourced {
                    value: runtime.to_string(),
                    source: Source::Label(key.to_string()),
                })
            }
            None => {
                let runtimes = layouts.runtimes();
                let hint = crate::progress::text::closest(value.trim(), &runtimes)
                    .map(|r| format!("did you mean {r}? "))
                    .unwrap_or_default();
                reading.problems.push(Problem::BadLabel {
                    key: key.to_string(),
                    value: value.to_string(),
                    expected: format!("{hint}expected one of {}", runtimes.join(", ")),
                })
            }
        }
    }
    let version_same = |a: &str, b: &str| match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let format_versions = FORMAT_VERSION_KEYS
        .into_iter()
        .filter(|k| labels.get(*k).is_some_and(|v| Version::parse(v).is_ok()));
    let version_keys: Vec<&str> = VERSION_KEYS.into_iter().chain(format_versions).collect();
    if let Some((key, value)) = first_of(labels, &version_keys, version_same, &mut reading.notes) {
        match Version::parse(value) {
            Ok(version) => {
                reading.info.version = Some(Sourced {
                    value: version,
                    source: Source::Label(key.to_string()),
                })
            }
            Err(_) => reading.problems.push(Problem::BadLabel {
                key: key.to_string(),
                value: value.to_string(),
                expected: "expected a version like v1.30.2 or v1.30.2+k3s1".into(),
            }),
        }
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sealrs_labels_are_read() {
        let r = read_labels(
            &labels(&[
                ("sealrs.io/type", "rootfs"),
                ("sealrs.io/runtime", "k3s"),
                ("sealrs.io/version", "v1.30.2+k3s1"),
            ]),
            Layouts::embedded(),
        );
        assert!(r.problems.is_empty() && r.notes.is_empty());
        let info = r.info;
        assert_eq!(info.image_type.unwrap().value, ImageType::Rootfs);
        assert_eq!(
            info.runtime.unwrap(),
            Sourced {
                value: "k3s".to_string(),
                source: Source::Label("sealrs.io/runtime".into())
            }
        );
        assert_eq!(info.version.unwrap().value.to_string(), "v1.30.2+k3s1");
    }

    #[test]
    fn sealos_aliases_are_read() {
        let r = read_labels(
            &labels(&[
                ("sealos.io.type", "rootfs"),
                ("sealos.io.distribution", "kubernetes"),
                ("version", "v1.29.3"),
            ]),
            Layouts::embedded(),
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            r.info.image_type.unwrap().source,
            Source::Label("sealos.io.type".into())
        );
        assert_eq!(r.info.runtime.unwrap().value, "kubeadm");
        assert_eq!(
            r.info.version.unwrap().source,
            Source::Label("version".into())
        );

        let app = read_labels(
            &labels(&[
                ("apps.sealos.io/type", "application"),
                ("sealos.io.version", "v3.24.1"),
            ]),
            Layouts::embedded(),
        );
        assert_eq!(app.info.image_type.unwrap().value, ImageType::Application);
        assert_eq!(app.info.version.unwrap().value.to_string(), "v3.24.1");
    }

    #[test]
    fn the_sealrs_label_wins_over_a_disagreeing_alias_with_a_note() {
        let r = read_labels(
            &labels(&[
                ("sealrs.io/type", "application"),
                ("sealos.io.type", "rootfs"),
                ("sealrs.io/version", "v1.2.3"),
                ("version", "1.2.3"),
            ]),
            Layouts::embedded(),
        );
        assert_eq!(r.info.image_type.unwrap().value, ImageType::Application);
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(r.notes[0].contains("sealos.io.type"), "{:?}", r.notes);
    }

    #[test]
    fn bad_values_are_problems_naming_the_label() {
        let r = read_labels(
            &labels(&[
                ("sealrs.io/type", "cluster"),
                ("sealrs.io/runtime", "microk8s"),
                ("sealrs.io/version", "latest"),
            ]),
            Layouts::embedded(),
        );
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        let text: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert!(text[0].contains("sealrs.io/type=\"cluster\""), "{text:?}");
        let known = Layouts::embedded().runtimes().join(", ");
        assert!(text[1].contains(&known), "{text:?}");
        assert!(text[2].contains("sealrs.io/version"), "{text:?}");
    }

    /// sealos keeps its image format (`v1beta1`) in `sealos.io.version`: a
    /// Kubernetes version there counts, after `version`; a format is no problem.
    #[test]
    fn sealos_format_labels_are_a_version_only_when_they_hold_one() {
        let read = |pairs: &[(&str, &str)]| read_labels(&labels(pairs), Layouts::embedded());
        let format = read(&[("sealos.io.version", "v1beta1")]);
        assert!(format.problems.is_empty() && format.info.version.is_none());
        let only = read(&[("sealos.io.version", "v1.30.2")])
            .info
            .version
            .unwrap();
        assert_eq!(
            (only.value.to_string(), only.source),
            ("v1.30.2".into(), Source::Label("sealos.io.version".into()))
        );
        let both = read(&[
            ("apps.sealos.io/version", "v1beta1"),
            ("version", "v1.29.3"),
        ]);
        assert_eq!(both.info.version.unwrap().value.to_string(), "v1.29.3");
        assert!(both.notes.is_empty(), "{:?}", both.notes);
    }

    #[test]
    fn sealos_distributions_resolve_through_the_layout_aliases() {
        for (key, value) in [
            ("sealos.io.distribution", "kubernetes"),
            ("apps.sealos.io/distribution", "k8s"),
        ] {
            let r = read_labels(&labels(&[(key, value)]), Layouts::embedded());
            assert_eq!(r.info.runtime.unwrap().value, "kubeadm", "{key}={value}");
        }
    }

    #[test]
    fn only_an_inferred_runtime_of_a_typed_image_becomes_a_label() {
        let inferred = Some(Sourced {
            value: "k3s".to_string(),
            source: Source::Inferred("bin/k3s".into()),
        });
        let rootfs = Some(Sourced {
            value: ImageType::Rootfs,
            source: Source::Label("sealrs.io/type".into()),
        });
        let mut info = ClusterInfo {
            image_type: rootfs,
            runtime: inferred,
            version: None,
        };
        assert_eq!(
            info.inferred_labels(),
            labels(&[("sealrs.io/runtime", "k3s")])
        );
        info.image_type = None;
        assert!(info.inferred_labels().is_empty());
        let labelled = read_labels(
            &labels(&[("sealrs.io/type", "rootfs"), ("sealrs.io/runtime", "k3s")]),
            Layouts::embedded(),
        );
        assert!(labelled.info.inferred_labels().is_empty());
    }

    #[test]
    fn no_labels_mean_no_facts() {
        let r = read_labels(&labels(&[("description", "x")]), Layouts::embedded());
        assert_eq!(r.info, ClusterInfo::default());
        assert!(r.problems.is_empty());
    }
}
