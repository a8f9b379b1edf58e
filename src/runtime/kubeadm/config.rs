//! The one `--config` file kubeadm gets on each host: the image's
//! `etc/kubeadm.yaml` documents with what sealrs knows merged in.
//!
//! kubeadm refuses `--config` beside most flags ("can not mix '--config' with
//! arguments [...]": `ValidateMixedArguments` and `isAllowedFlag` in
//! cmd/kubeadm/app/apis/kubeadm/validation/validation.go, v1.30), so the
//! version, endpoints, CIDRs and join secrets go into the file instead:
//! `ClusterConfiguration` (kubernetesVersion, controlPlaneEndpoint,
//! networking), `InitConfiguration` (localAPIEndpoint), `JoinConfiguration`
//! (discovery.bootstrapToken, controlPlane) as the kubeadm config API
//! describes them (<https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta3/>).
//! A value the image's file sets and sealrs would set otherwise is an error
//! naming both, never a silent choice.

use serde_yaml_ng::{Mapping, Value};

use crate::runtime::RuntimeError;

/// Where the image keeps its kubeadm config, relative to the rootfs.
pub const IMAGE_CONFIG: &str = "etc/kubeadm.yaml";

/// The kubeadm config API group.
const KUBEADM_GROUP: &str = "kubeadm.k8s.io/";

/// The documents kubeadm v1.30 reads (`kubeadm config print init-defaults`,
/// the kubeadm config API pages): kubeadm's own, in v1beta3 or v1beta4 (from
/// v1.31), and the kubelet's and kube-proxy's component configs.
pub const KNOWN_KINDS: &[(&str, &[&str])] = &[
    (
        "kubeadm.k8s.io/v1beta3",
        &[
            "InitConfiguration",
            "ClusterConfiguration",
            "JoinConfiguration",
        ],
    ),
    (
        "kubeadm.k8s.io/v1beta4",
        &[
            "InitConfiguration",
            "ClusterConfiguration",
            "JoinConfiguration",
            "ResetConfiguration",
            "UpgradeConfiguration",
        ],
    ),
    ("kubelet.config.k8s.io/v1beta1", &["KubeletConfiguration"]),
    (
        "kubeproxy.config.k8s.io/v1alpha1",
        &["KubeProxyConfiguration"],
    ),
];

/// One document: apiVersion, kind, the whole mapping.
#[derive(Debug, Clone)]
pub struct Doc {
    pub api_version: String,
    pub kind: String,
    pub body: Mapping,
}

/// Why a kubeadm.yaml cannot be used, with the 1-based line of the document
/// (or of the YAML error) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub line: Option<usize>,
    pub reason: String,
}

/// The documents of a kubeadm.yaml text, each checked for a known
/// apiVersion/kind; empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Doc>, ConfigProblem> {
    let mut docs = Vec::new();
    // Where each document starts: line 1, and after every `---` line.
    let mut starts = vec![1];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            starts.push(i + 2);
        }
    }
    for (n, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let line = starts.get(n).copied();
        let value: Value = serde::Deserialize::deserialize(de).map_err(|e| ConfigProblem {
            line: e.location().map(|l| l.line()).or(line),
            reason: format!("not YAML: {e}"),
        })?;
        let body = match value {
            Value::Null => continue,
            Value::Mapping(m) => m,
            _ => {
                return Err(ConfigProblem {
                    line,
                    reason: "a document is not a mapping with apiVersion and kind".into(),
                })
            }
        };
        let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
            return Err(ConfigProblem {
                line,
                reason: "a document has no apiVersion or kind".into(),
            });
        };
        let known = KNOWN_KINDS
            .iter()
            .any(|(v, kinds)| *v == api_version && kinds.contains(&kind.as_str()));
        if !known {
            return Err(ConfigProblem {
                line,
                reason: format!(
                    "unknown apiVersion/kind {api_version}/{kind}; kubeadm reads {}",
                    KNOWN_KINDS
                        .iter()
                        .flat_map(|(v, kinds)| kinds.iter().map(move |k| format!("{v}/{k}")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        docs.push(Doc {
            api_version,
            kind,
            body,
        });
    }
    Ok(docs)
}

/// The image's documents with sealrs's values merged in.
#[derive(Debug, Clone)]
pub struct Config {
    docs: Vec<Doc>,
    /// The kubeadm API version of new documents: the file's, else the one
    /// kubeadm of this version prints (v1beta4 from v1.31).
    kubeadm_api: String,
    /// Where the documents came from, for messages.
    origin: &'static str,
}

/// Where a Clusterfile's kubeadm documents are named in errors.
pub const CLUSTERFILE_DOCS: &str = "the Clusterfile's kubeadm documents";

fn bad(reason: String) -> RuntimeError {
    RuntimeError::BadConfig {
        runtime: "kubeadm",
        file: IMAGE_CONFIG.into(),
        reason,
    }
}

impl Config {
    /// The image's kubeadm.yaml (`None`: the image has none).
    pub fn from_image(text: Option<&str>, minor: u64) -> Result<Config, RuntimeError> {
        let docs = match text {
            Some(t) => parse(t).map_err(|p| {
                bad(match p.line {
                    Some(l) => format!("line {l}: {}", p.reason),
                    None => p.reason,
                })
            })?,
            None => Vec::new(),
        };
        let kubeadm_api = docs
            .iter()
            .find(|d| d.api_version.starts_with(KUBEADM_GROUP))
            .map(|d| d.api_version.clone())
            .unwrap_or_else(|| {
                if minor >= 31 {
                    "kubeadm.k8s.io/v1beta4".into()
                } else {
                    "kubeadm.k8s.io/v1beta3".into()
                }
            });
        Ok(Config {
            docs,
            kubeadm_api,
            origin: "the image's file",
        })
    }

    /// Merges a Clusterfile's kubeadm documents over these, as sealos
    /// merges them over its defaults: a document of a kind these have is
    /// merged key by key (mappings recursively, the Clusterfile's value
    /// winning), one of a new kind is added. Kinds are checked as the
    /// image's are.
    pub fn merge_clusterfile(&mut self, text: &str) -> Result<(), RuntimeError> {
        let docs = parse(text).map_err(|p| RuntimeError::BadConfig {
            runtime: "kubeadm",
            file: CLUSTERFILE_DOCS.into(),
            reason: match p.line {
                Some(l) => format!("document line {l}: {}", p.reason),
                None => p.reason,
            },
        })?;
        for doc in docs {
            match self.docs.iter_mut().find(|d| d.kind == doc.kind) {
                Some(base) => crate::plan::merge_mappings(&mut base.body, doc.body),
                None => self.docs.push(doc),
            }
        }
        self.origin = "the image's file or the Clusterfile";
        Ok(())
    }

    /// The value at `path` in the first document of `kind`.
    pub fn get(&self, kind: &str, path: &[&str]) -> Option<&Value> {
        let doc = self.docs.iter().find(|d| d.kind == kind)?;
        let mut at = doc.body.get(path[0])?;
        for key in &path[1..] {
            at = at.get(*key)?;
        }
        Some(at)
    }

    /// A string value at `path` of `kind`.
    pub fn get_str(&self, kind: &str, path: &[&str]) -> Option<String> {
        match self.get(kind, path)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Sets `path` of `kind` (a new document of that kind when the file has
    /// none) to `value`; when the file already sets it to something else,
    /// an error naming both, with `source` saying where sealrs's value came
    /// from. `secret` values are not shown.
    pub fn set(
        &mut self,
        kind: &str,
        path: &[&str],
        value: Value,
        source: &str,
        secret: bool,
    ) -> Result<(), RuntimeError> {
        if let Some(found) = self.get(kind, path) {
            if *found == value {
                return Ok(());
            }
            let shown = |v: &Value| {
                if secret {
                    "<redacted>".to_string()
                } else {
                    serde_yaml_ng::to_string(v)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                }
            };
            return Err(bad(format!(
                "{kind} {} is {} in {}, and {source} gives {}; set it in one place only",
                path.join("."),
                shown(found),
                self.origin,
                shown(&value)
            )));
        }
        let idx = match self.docs.iter().position(|d| d.kind == kind) {
            Some(i) => i,
            None => {
                let mut body = Mapping::new();
                body.insert("apiVersion".into(), self.kubeadm_api.clone().into());
                body.insert("kind".into(), kind.into());
                self.docs.push(Doc {
                    api_version: self.kubeadm_api.clone(),
                    kind: kind.to_string(),
                    body,
                });
                self.docs.len() - 1
            }
        };
        let mut at = &mut self.docs[idx].body;
        for key in &path[..path.len() - 1] {
            let entry = at
                .entry(Value::from(*key))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if !entry.is_mapping() {
                *entry = Value::Mapping(Mapping::new());
            }
            at = entry.as_mapping_mut().expect("made a mapping above");
        }
        at.insert(Value::from(path[path.len() - 1]), value);
        Ok(())
    }

    /// The documents for `kinds`, in the file's order then the added ones,
    /// as one multi-document YAML text.
    pub fn render(&self, kinds: &[&str]) -> String {
        let mut out = String::new();
        for doc in self
            .docs
            .iter()
            .filter(|d| kinds.contains(&d.kind.as_str()))
        {
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&serde_yaml_ng::to_string(&doc.body).expect("a mapping serializes"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_with_their_lines_and_unknown_kinds_refused() {
        let docs = parse(
            "# c\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailSwapOn: false\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].kind, "KubeletConfiguration");
        let err = parse("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n").unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(
            err.reason
                .contains("kubeadm.k8s.io/v1beta2/ClusterConfiguration"),
            "{}",
            err.reason
        );
        let err = parse("a: [\n").unwrap_err();
        assert!(err.reason.starts_with("not YAML"), "{}", err.reason);
        assert!(err.line.is_some());
    }

    #[test]
    fn a_value_set_in_the_file_and_by_sealrs_is_an_error_naming_both() {
        let mut c = Config::from_image(
            Some("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n"),
            30,
        )
        .unwrap();
        c.set(
            "ClusterConfiguration",
            &["networking", "podSubnet"],
            "10.244.0.0/16".into(),
            "-e POD_CIDR",
            false,
        )
        .unwrap();
        let err = c
            .set(
                "ClusterConfiguration",
                &["networking", "podSubnet"],
                "10.42.0.0/16".into(),
                "-e POD_CIDR",
                false,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("networking.podSubnet is 10.244.0.0/16"),
            "{err}"
        );
        assert!(err.contains("-e POD_CIDR gives 10.42.0.0/16"), "{err}");
        c.set(
            "InitConfiguration",
            &["localAPIEndpoint", "advertiseAddress"],
            "10.0.0.1".into(),
            "x",
            false,
        )
        .unwrap();
        let text = c.render(&["InitConfiguration", "ClusterConfiguration"]);
        assert!(text.contains("kind: InitConfiguration"), "{text}");
        assert!(
            text.contains("apiVersion: kubeadm.k8s.io/v1beta3"),
            "{text}"
        );
        assert!(text.contains("advertiseAddress: 10.0.0.1"), "{text}");
    }
}
