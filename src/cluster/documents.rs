//! The documents beside the Cluster in a multi-document Clusterfile, as
//! `sealos gen` writes them and sealos reads them (lifecycle/pkg/clusterfile
//! and lifecycle/pkg/config in labring/sealos v5.1):
//!
//! - `Config` (apps.sealos.io/v1beta1): `spec.path` (a file of the image),
//!   `spec.match` (the image it is for; every image when absent),
//!   `spec.strategy` (`merge`, `insert`, `append`, `override`; override when
//!   absent) and `spec.data`, applied to the image's files before it is applied;
//! - kubeadm's configuration documents (kubeadm.k8s.io `InitConfiguration`,
//!   `ClusterConfiguration`, `JoinConfiguration`…, kubelet.config.k8s.io
//!   `KubeletConfiguration`, kubeproxy.config.k8s.io `KubeProxyConfiguration`),
//!   handed to the kubeadm runtime, which checks their kinds.
//!
//! Any other document is refused, naming its line.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::Problem;

pub const CONFIG_KIND: &str = "Config";

/// The API groups of the documents handed to the kubeadm runtime.
pub const RUNTIME_CONFIG_GROUPS: &[&str] = &[
    "kubeadm.k8s.io/",
    "kubelet.config.k8s.io/",
    "kubeproxy.config.k8s.io/",
];

/// How a Config's data changes the file at its path (sealos' `StrategyType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The file becomes the data.
    #[default]
    Override,
    /// Each YAML document of the file gets the data's mapping merged over it.
    Merge,
    /// The data, a newline, then the file.
    Insert,
    /// The file, a newline, then the data.
    Append,
}

/// A Config document: what to do to one file of the images it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDoc {
    pub name: String,
    /// Relative to the image's root, inside it.
    pub path: String,
    /// The image it is for (`spec.match`); every image when `None`.
    pub image: Option<String>,
    pub strategy: Strategy,
    pub data: String,
}

/// A Config document as written (sealos' `v1beta1.Config`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConfigFile {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ConfigMeta,
    #[serde(default)]
    pub spec: ConfigSpec,
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct ConfigMeta {
    #[serde(default)]
    pub name: String,
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct ConfigSpec {
    #[serde(default, rename = "match", skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub path: String,
}

/// One document of a Clusterfile: its first line (1-based) and its text
/// with as many blank lines before it, so that parse errors give the
/// line in the file.
pub(super) struct Document {
    pub line: usize,
    pub text: String,
    /// The document's own text.
    pub raw: String,
}

/// Splits at `---` lines; empty documents (comments only) are left out.
pub(super) fn split(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    let mut push = |start: usize, raw: &mut String| {
        let taken = std::mem::take(raw);
        let meaningful = taken
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            docs.push(Document {
                line: start,
                text: format!("{}{taken}", "\n".repeat(start - 1)),
                raw: taken,
            });
        }
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            push(start, &mut current);
            start = i + 2;
            continue;
        }
        current.push_str(line);
    }
    push(start, &mut current);
    docs
}

impl ConfigDoc {
    /// Reads a Config document; problems name `at` (`FILE:LINE`).
    pub(super) fn from_file(
        file: ConfigFile,
        at: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<ConfigDoc> {
        let name = file.metadata.name;
        let field = |f: &str| format!("{at}: Config {name:?} {f}");
        let strategy = match file.spec.strategy.as_deref().unwrap_or("") {
            "" | "override" => Strategy::Override,
            "merge" => Strategy::Merge,
            "insert" => Strategy::Insert,
            "append" => Strategy::Append,
            other => {
                problems.push(Problem::new(
                    field("spec.strategy"),
                    format!("unknown strategy {other:?} (merge, insert, append or override)"),
                ));
                return None;
            }
        };
        if let Err(why) = inside_image(&file.spec.path) {
            problems.push(Problem::new(
                field("spec.path"),
                format!(
                    "{:?} {why}: give a path relative to the image's root, such as etc/app.yaml",
                    file.spec.path
                ),
            ));
            return None;
        }
        Some(ConfigDoc {
            path: file.spec.path.trim_start_matches("./").to_string(),
            image: Some(file.spec.image).filter(|m| !m.is_empty()),
            strategy,
            data: file.spec.data,
            name,
        })
    }

    pub(super) fn to_file(&self) -> ConfigFile {
        ConfigFile {
            api_version: super::SEALOS_API_VERSION.to_string(),
            kind: CONFIG_KIND.to_string(),
            metadata: ConfigMeta {
                name: self.name.clone(),
            },
            spec: ConfigSpec {
                image: self.image.clone().unwrap_or_default(),
                strategy: Some(
                    match self.strategy {
                        Strategy::Override => "override",
                        Strategy::Merge => "merge",
                        Strategy::Insert => "insert",
                        Strategy::Append => "append",
                    }
                    .to_string(),
                ),
                data: self.data.clone(),
                path: self.path.clone(),
            },
        }
    }
}

/// Why `path` does not name a file inside an image, if it does not.
pub fn inside_image(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    let p = Path::new(path);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("leaves the image (`..`)"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute, so it is outside the image")
            }
        }
    }
    if !p.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err("names the image's root, not a file");
    }
    Ok(())
}

/// Whether a document of `api_version` goes to the kubeadm runtime.
pub fn is_runtime_config(api_version: &str) -> bool {
    RUNTIME_CONFIG_GROUPS
        .iter()
        .any(|g| api_version.starts_with(g))
}
