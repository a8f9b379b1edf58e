//! The request an operator sends to an image's installer on stdin: what the
//! cluster is and which host this is, so that the installer computes the
//! host's plan itself, with the runtime code the image carries.
//!
//! The request is a wire format between two builds of sealrs that may be of
//! different releases (the operator's, and the one embedded in the image), so
//! it has a format version and its own types rather than the cluster model:
//! an unknown version or field is refused, never half understood. It holds no
//! SSH settings at all (users, ports, keys, password sources) since the host
//! has no use for them. It does hold join secrets and env values, so it
//! travels on stdin only, and its `Debug` shows neither.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::{Address, Cluster, ClusterStatus, Host, Role, Secret, SshConfig};
use crate::plan::Plan;
use crate::runtime::{self, HostContext, ImageInfo, JoinSecrets, Runtime, RuntimeError, Version};

/// The request format this installer reads and this operator writes.
pub const REQUEST_VERSION: u32 = 1;

/// What the operator asks the installer to do with a [`Request`]: one
/// `sealrs installer <operation>` subcommand each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The first control-plane.
    Install,
    /// Other control-planes and workers.
    Join,
    /// To the request's target version.
    Upgrade,
    Uninstall,
}

impl Operation {
    /// The installer subcommand (and the plan's action).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Install => "install",
            Operation::Join => "join",
            Operation::Upgrade => "upgrade",
            Operation::Uninstall => "uninstall",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the installer needs to plan and check one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// [`REQUEST_VERSION`] when written by this sealrs.
    pub version: u32,
    pub cluster: ClusterSpec,
    /// The host this installer runs on, by its key (its address).
    pub host: String,
    pub image: ImageSpec,
    #[serde(default)]
    pub secrets: SecretsSpec,
    /// Where the image's rootfs is unpacked on the host.
    pub rootfs: String,
    /// The image's layer directories on the host, in order: the rootfs is
    /// assembled from them before the plan runs (a no-op when it is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The version an upgrade goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<Version>,
    /// The image files prepared for this host (Configs applied, templates
    /// rendered), written into the rootfs before the plan is made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<super::ImageFile>,
    /// The cluster serves a registry tree this host's rootfs lacks: the
    /// image's, withheld from it (`layers` lacks its layers) because another
    /// host serves it, or an application image's (`runtime::hub`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hub_elsewhere: bool,
}

/// The cluster as the runtimes see it: hosts, roles, env, saved status.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    pub hosts: Vec<HostSpec>,
    /// Rendered into templates byte for byte.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What each host runs now (versions, for upgrades and verify).
    #[serde(default)]
    pub status: ClusterStatus,
    /// The Clusterfile's kubeadm documents ([`Cluster::runtime_config`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime_config: String,
}

impl fmt::Debug for ClusterSpec {
    /// Env values may be passwords: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    pub address: Address,
    pub roles: Vec<Role>,
    /// The host's own env (`hosts[].env`), over the cluster env on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Role names beyond master and node (sealos' `registry`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What the image's labels say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The image config's env (hook defaults), in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// [`JoinSecrets`] on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<Secret>,
}

impl From<&JoinSecrets> for SecretsSpec {
    fn from(secrets: &JoinSecrets) -> SecretsSpec {
        SecretsSpec {
            token: secrets.token.clone(),
            controller_token: secrets.controller_token.clone(),
            ca_cert_hash: secrets.ca_cert_hash.clone(),
            certificate_key: secrets.certificate_key.clone(),
        }
    }
}

impl SecretsSpec {
    /// `sha256:<hex>` of the secrets as the wire writes them: lets two sides
    /// tell that they hold the same secrets without showing them.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("secrets serialize");
        crate::digest::sha256_digest(&json).to_string()
    }
}

/// A request that cannot be read or acted on.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request on standard input is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("the request on standard input has no format version (a JSON object with \"version\"); it must come from a sealrs operator")]
    NoVersion,
    #[error("request format version {found} is unknown to this installer, which reads version {supported}: the image's installer and the operator's sealrs are of different releases; rebuild the image with the operator's sealrs (it embeds itself), or operate it with the sealrs release that built it")]
    UnknownVersion { found: String, supported: u32 },
    #[error(
        "the request does not match format version {version}: {reason}{}",
        newer_hint(reason)
    )]
    Invalid { version: u32, reason: String },
    #[error("request: host {host} is not one of the cluster's hosts ({known})")]
    UnknownHost { host: String, known: String },
    #[error("request: runtime {runtime:?} is unknown to this installer (it knows {known})")]
    UnknownRuntime { runtime: String, known: String },
    #[error("request: an upgrade needs targetVersion")]
    NoTargetVersion,
    #[error("{host}: {source}")]
    Runtime {
        host: String,
        #[source]
        source: RuntimeError,
    },
}

/// A field this installer does not know is most often one a newer operator
/// added for a feature the run uses (templates, the hub, host labels), which
/// an image built by an earlier sealrs cannot act on.
fn newer_hint(reason: &str) -> &'static str {
    if reason.starts_with("unknown field") {
        "; the operator's sealrs is newer than the image's installer and asks for something it predates: rebuild the image with the operator's sealrs (it embeds itself), or operate it with the sealrs release that built it"
    } else {
        ""
    }
}

impl Request {
    /// The request for `host` of `cluster`: no SSH setting of the cluster is
    /// copied into it.
    pub fn new(
        cluster: &Cluster,
        host: &Host,
        image: &ImageInfo,
        secrets: &JoinSecrets,
        rootfs: &str,
        layers: Vec<String>,
    ) -> Request {
        Request {
            version: REQUEST_VERSION,
            cluster: ClusterSpec {
                name: cluster.name.clone(),
                hosts: cluster
                    .hosts
                    .iter()
                    .map(|h| HostSpec {
                        address: h.address.clone(),
                        roles: h.roles.clone(),
                        env: h.env.clone(),
                        labels: h.labels.clone(),
                    })
                    .collect(),
                env: cluster.env.clone(),
                // The pinned images are the operator's business: no plan
                // reads them, and an installer built before them would
                // refuse the field.
                status: ClusterStatus {
                    images: Vec::new(),
                    ..cluster.status.clone()
                },
                runtime_config: cluster.runtime_config.clone(),
            },
            host: host.key(),
            image: ImageSpec {
                runtime: image.runtime.clone(),
                version: image.version.clone(),
                labels: image.labels.clone(),
                env: image.env.clone(),
            },
            secrets: SecretsSpec::from(secrets),
            rootfs: rootfs.to_string(),
            layers,
            target_version: None,
            files: Vec::new(),
            hub_elsewhere: false,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a request always serializes")
    }

    /// Reads a request, refusing a format version other than [`REQUEST_VERSION`]
    /// before looking at anything else (the rest may mean something else there).
    pub fn from_json(text: &str) -> Result<Request, RequestError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RequestError::NotJson {
                reason: e.to_string(),
            })?;
        let version = value.get("version").ok_or(RequestError::NoVersion)?;
        if version.as_u64() != Some(u64::from(REQUEST_VERSION)) {
            return Err(RequestError::UnknownVersion {
                found: version.to_string(),
                supported: REQUEST_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|e| RequestError::Invalid {
            version: REQUEST_VERSION,
            reason: e.to_string(),
        })
    }

    /// The cluster model the runtimes plan with (no SSH settings, no images).
    pub fn cluster(&self) -> Cluster {
        let mut cluster = Cluster::new(&self.cluster.name);
        cluster.hosts = self
            .cluster
            .hosts
            .iter()
            .map(|h| {
                let mut host = Host::new(h.address.clone(), &h.roles);
                host.env = h.env.clone();
                host.labels = h.labels.clone();
                host
            })
            .collect();
        cluster.env = self.cluster.env.clone();
        cluster.ssh = SshConfig::default();
        cluster.status = self.cluster.status.clone();
        cluster.runtime_config = self.cluster.runtime_config.clone();
        cluster
    }

    /// This host, in `cluster` (made by [`Request::cluster`]).
    pub fn this_host<'a>(&self, cluster: &'a Cluster) -> Result<&'a Host, RequestError> {
        cluster
            .hosts
            .iter()
            .find(|h| h.key() == self.host)
            .ok_or_else(|| RequestError::UnknownHost {
                host: self.host.clone(),
                known: cluster
                    .hosts
                    .iter()
                    .map(Host::key)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn image_info(&self) -> ImageInfo {
        ImageInfo {
            runtime: self.image.runtime.clone(),
            version: self.image.version.clone(),
            labels: self.image.labels.clone(),
            env: self.image.env.clone(),
        }
    }

    pub fn secrets(&self) -> JoinSecrets {
        JoinSecrets {
            token: self.secrets.token.clone(),
            controller_token: self.secrets.controller_token.clone(),
            ca_cert_hash: self.secrets.ca_cert_hash.clone(),
            certificate_key: self.secrets.certificate_key.clone(),
        }
    }

    /// Fills the context's rootfs file list and the texts the runtime
    /// reads from the unpacked rootfs under `host_root`; a rootfs not there
    /// (yet) leaves them empty.
    pub fn read_rootfs_inputs(
        &self,
        runtime: &dyn Runtime,
        host_root: &Path,
        ctx: &mut HostContext,
    ) {
        let dir = host_root.join(self.rootfs.trim_start_matches('/'));
        if !dir.is_dir() {
            return;
        }
        let mut files: Vec<String> = walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| {
                let rel = e.path().strip_prefix(&dir).ok()?;
                Some(rel.to_string_lossy().into_owned())
            })
            .filter(|rel| rel != super::unpack::STAMP)
            .collect();
        files.sort();
        // The names the image's archives hold, for a runtime that expects
        // some images at this version (kubeadm: the pause image); an archive
        // that cannot be read names nothing.
        let expects = ctx
            .image
            .version
            .as_ref()
            .is_some_and(|v| !runtime.expected_images(v).is_empty());
        if expects {
            let names = files
                .iter()
                .filter(|f| f.strip_prefix("images/").is_some_and(|r| !r.contains('/')))
                .flat_map(|f| crate::store::archive::image_names(&dir.join(f)).unwrap_or_default())
                .collect();
            ctx.rootfs_images = Some(names);
        }
        let hub_reads = runtime::hub::plan_reads(&files);
        ctx.rootfs_files = files;
        ctx.hub_elsewhere = self.hub_elsewhere;
        let reads = runtime.plan_reads().iter().copied();
        for rel in reads.chain(hub_reads.iter().map(String::as_str)) {
            if let Ok(text) = std::fs::read_to_string(dir.join(rel)) {
                ctx.rootfs_texts.insert(rel.to_string(), text);
            }
        }
    }

    /// The runtime the image names.
    pub fn runtime(&self) -> Result<Box<dyn Runtime>, RequestError> {
        runtime::runtime_for(&self.image.runtime).ok_or_else(|| RequestError::UnknownRuntime {
            runtime: self.image.runtime.clone(),
            known: runtime::names().join(", "),
        })
    }

    /// The role whose files and ports this host needs: `Master` for any control-plane.
    pub fn role(host: &Host) -> Role {
        if host.is_master() {
            Role::Master
        } else {
            Role::Node
        }
    }

    /// The host's plan for `operation`, made by the same runtime code the
    /// operator's `--dry-run` uses, with the rootfs as it is under `/`.
    pub fn plan(&self, operation: Operation) -> Result<Plan, RequestError> {
        self.plan_in(operation, Path::new("/"))
    }

    /// [`Request::plan`] with the request's rootfs read under `host_root`
    /// (its file list and the files the runtime reads to plan).
    pub fn plan_in(&self, operation: Operation, host_root: &Path) -> Result<Plan, RequestError> {
        let runtime = self.runtime()?;
        let cluster = self.cluster();
        let host = self.this_host(&cluster)?;
        let info = self.image_info();
        let failed = |source| RequestError::Runtime {
            host: host.key(),
            source,
        };
        let mut ctx = HostContext::new(&cluster, host, &info, self.secrets()).map_err(failed)?;
        ctx.rootfs = self.rootfs.clone();
        self.read_rootfs_inputs(runtime.as_ref(), host_root, &mut ctx);
        match operation {
            Operation::Install => runtime.install(&ctx),
            Operation::Join => runtime.join(&ctx),
            Operation::Upgrade => {
                let to = self
                    .target_version
                    .as_ref()
                    .ok_or(RequestError::NoTargetVersion)?;
                runtime.upgrade(&ctx, to)
            }
            Operation::Uninstall => runtime.uninstall(&ctx),
        }
        .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterArgs, HostStatus, PasswordSource, Phase};

    const VALUE: &str = "pa$$w0rd\"\\`x'";

    fn cluster() -> Cluster {
        let mut c = Cluster::from_args(&ClusterArgs {
            masters: vec!["10.0.0.1".into()],
            nodes: vec!["10.0.0.2:2222".into()],
            env: vec![format!("PASS={VALUE}")],
            user: Some("operator-user".into()),
            key: Some("/home/op/.ssh/id_operator_key".into()),
            password: Some(PasswordSource::Env("OPERATOR_PASSWORD_VAR".into())),
            ..Default::default()
        })
        .unwrap();
        c.hosts[1].ssh.password_from = Some(PasswordSource::Value(Secret::new("hunter2-inline")));
        c.hosts[1].ssh.key = Some("/keys/host-only-key".into());
        c.hosts[1].labels.push("registry".into());
        c.status.hosts.insert(
            "10.0.0.1".into(),
            HostStatus {
                phase: Phase::Running,
                runtime: Some("k3s".into()),
                version: Some("v1.30.2+k3s1".into()),
                images: Vec::new(),
                node_name: Some("server-1".into()),
            },
        );
        c
    }

    fn request(c: &Cluster, host: usize) -> Request {
        let mut info = ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap();
        info.labels.insert("sealrs.io/runtime".into(), "k3s".into());
        let secrets = JoinSecrets {
            token: Some(Secret::new("K10token::server:abc")),
            ..JoinSecrets::default()
        };
        Request::new(
            c,
            &c.hosts[host],
            &info,
            &secrets,
            "/var/lib/sealrs-host/rootfs/abc",
            vec!["/var/lib/sealrs-host/layers/sha256/00".into()],
        )
    }

    #[test]
    fn a_request_survives_the_round_trip_with_env_values_byte_for_byte() {
        let mut c = cluster();
        c.hosts[1]
            .env
            .insert("PASS".into(), format!("{VALUE}\nhost"));
        let mut sent = request(&c, 1);
        sent.target_version = Some(Version::parse("v1.31.0+k3s1").unwrap());
        let received = Request::from_json(&sent.to_json()).unwrap();
        assert_eq!(received, sent);
        let rebuilt = received.cluster();
        assert_eq!(rebuilt.env["PASS"], VALUE);
        assert_eq!(rebuilt.hosts[1].env["PASS"], format!("{VALUE}\nhost"));
        assert!(rebuilt.hosts[0].env.is_empty());
        assert_eq!(rebuilt.status, c.status);
        let addresses = |c: &Cluster| -> Vec<(Address, Vec<Role>)> {
            c.hosts
                .iter()
                .map(|h| (h.address.clone(), h.roles.clone()))
                .collect()
        };
        assert_eq!(addresses(&rebuilt), addresses(&c));
        assert_eq!(received.this_host(&rebuilt).unwrap().key(), "10.0.0.2");
        assert_eq!(rebuilt.hosts[1].labels, ["registry"]);
        assert_eq!(
            received.secrets().token.unwrap().expose(),
            "K10token::server:abc"
        );
        assert_eq!(received.image_info().version, sent.image.version);
    }

    #[test]
    fn no_ssh_setting_reaches_the_request() {
        let json = request(&cluster(), 1).to_json();
        for leaked in [
            "operator-user",
            "id_operator_key",
            "OPERATOR_PASSWORD_VAR",
            "hunter2-inline",
            "host-only-key",
            "2222",
            "ssh",
            "password",
        ] {
            assert!(!json.contains(leaked), "{leaked} in {json}");
        }
        // What it is for is there.
        assert!(json.contains("K10token::server:abc"), "{json}");
    }

    #[test]
    fn debug_shows_neither_env_values_nor_secrets() {
        let shown = format!("{:?}", request(&cluster(), 1));
        assert!(!shown.contains("w0rd"), "{shown}");
        assert!(!shown.contains("K10token"), "{shown}");
        assert!(shown.contains("PASS"), "{shown}");
    }

    #[test]
    fn an_unknown_format_version_is_refused_before_the_rest_is_read() {
        let mut value: serde_json::Value =
            serde_json::from_str(&request(&cluster(), 0).to_json()).unwrap();
        value["version"] = serde_json::json!(2);
        // A newer format may have changed anything else too.
        value["cluster"] = serde_json::json!("a different shape");
        let err = Request::from_json(&value.to_string()).unwrap_err();
        assert!(
            matches!(&err, RequestError::UnknownVersion { found, supported: 1 } if found == "2"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("version 2"), "{message}");
        assert!(message.contains("reads version 1"), "{message}");

        value["version"] = serde_json::json!("1");
        assert!(matches!(
            Request::from_json(&value.to_string()),
            Err(RequestError::UnknownVersion { .. })
        ));
        assert!(matches!(
            Request::from_json("{\"host\": \"10.0.0.1\"}"),
            Err(RequestError::NoVersion)
        ));
        assert!(matches!(
            Request::from_json("not json"),
            Err(RequestError::NotJson { .. })
        ));
    }

    #[test]
    fn an_unknown_field_is_refused_rather_than_ignored() {
        let mut value: serde_json::Value =
            serde_json::from_str(&request(&cluster(), 0).to_json()).unwrap();
        value["cluster"]["ssh"] = serde_json::json!({"user": "root"});
        let err = Request::from_json(&value.to_string()).unwrap_err();
        assert!(
            matches!(&err, RequestError::Invalid { reason, .. } if reason.contains("ssh")),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("rebuild the image with the operator's sealrs"),
            "{err}"
        );
    }

    #[test]
    fn the_host_plans_what_the_operator_would() {
        let c = cluster();
        let req = request(&c, 1);
        let plan = req.plan(Operation::Join).unwrap();
        let info = req.image_info();
        let mut ctx = HostContext::new(&c, &c.hosts[1], &info, req.secrets()).unwrap();
        ctx.rootfs = req.rootfs.clone();
        assert_eq!(plan, runtime::K3s.join(&ctx).unwrap());
        assert_eq!(plan.env, vec![("PASS".to_string(), VALUE.to_string())]);

        let err = req.plan(Operation::Install).unwrap_err();
        assert!(err.to_string().contains("10.0.0.2"), "{err}");
        assert!(matches!(
            req.plan(Operation::Upgrade),
            Err(RequestError::NoTargetVersion)
        ));
        let mut stranger = req.clone();
        stranger.host = "10.0.0.9".into();
        let err = stranger.plan(Operation::Join).unwrap_err();
        assert!(
            err.to_string().contains("10.0.0.9") && err.to_string().contains("10.0.0.1"),
            "{err}"
        );
        let mut unknown = req;
        unknown.image.runtime = "nomad".into();
        let err = unknown.plan(Operation::Join).unwrap_err();
        assert!(
            err.to_string().contains(&runtime::names().join(", ")),
            "{err}"
        );
    }
}
