//! Certificates: where each runtime keeps them on a control plane (what
//! `sealrs cert check` reads) and what its renewal takes (`sealrs cert renew`).
//!
//! The runtimes say *where* and *how*; the installer reads and parses the
//! files on the host, and the processor goes master by master.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// What kind of files a [`CertSource`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertFiles {
    /// PEM certificates named `*.crt`.
    Pem,
    /// Kubeconfigs named `*.conf`, whose users' `client-certificate-data`
    /// is a certificate (kubeadm's admin.conf, controller-manager.conf, …).
    Kubeconfigs,
}

/// A directory of certificates on a control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSource {
    pub dir: String,
    /// Also the directories below it (kubeadm's `pki/etcd`).
    pub recursive: bool,
    pub files: CertFiles,
}

impl CertSource {
    pub fn pem(dir: &str, recursive: bool) -> CertSource {
        CertSource {
            dir: dir.to_string(),
            recursive,
            files: CertFiles::Pem,
        }
    }

    pub fn kubeconfigs(dir: &str) -> CertSource {
        CertSource {
            dir: dir.to_string(),
            recursive: false,
            files: CertFiles::Kubeconfigs,
        }
    }
}

/// The default wait for a static pod's restart: the kubelet's
/// `fileCheckFrequency` (20s), which kubeadm's "Certificate Management with
/// kubeadm" (v1.30, manual certificate renewal) tells to wait after a
/// manifest leaves `/etc/kubernetes/manifests` and again after it is back.
pub const DEFAULT_POD_RESTART_WAIT_SECS: u64 = 20;

/// What the operator asked of a renewal, checked by [`RenewOptions::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewOptions {
    /// Subject alternative names the API server's certificate gets in
    /// addition to those it has (DNS names or IP addresses).
    pub alt_names: Vec<String>,
    /// How long a restarted static pod is given (the kubelet's file check).
    pub pod_restart_wait_secs: u64,
}

/// An alternative name a certificate cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--alt-names: {name:?} is not a DNS name or an IP address ({reason}); give names such as api.example.com or 10.0.0.10, separated by commas")]
pub struct BadAltName {
    pub name: String,
    pub reason: &'static str,
}

impl RenewOptions {
    /// Options with `alt_names` checked (each once, in the order given).
    pub fn new(
        alt_names: &[String],
        pod_restart_wait_secs: u64,
    ) -> Result<RenewOptions, BadAltName> {
        let mut names: Vec<String> = Vec::new();
        for name in alt_names {
            check_alt_name(name)?;
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        Ok(RenewOptions {
            alt_names: names,
            pod_restart_wait_secs,
        })
    }
}

/// An IP address, or a DNS name as RFC 1123 allows it in a certificate
/// (labels of letters, digits and `-`, a leading `*.` wildcard).
fn check_alt_name(name: &str) -> Result<(), BadAltName> {
    let bad = |reason| {
        Err(BadAltName {
            name: name.to_string(),
            reason,
        })
    };
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label neither starts nor ends with '-'");
        }
    }
    Ok(())
}

/// How one control plane's certificates are renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRenewal {
    /// The runtime's own procedure, run by the installer.
    Plan(Plan),
    /// The runtime renews them itself; nothing to run (why, and when).
    ByRuntime(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, ClusterArgs};
    use crate::plan::{Action, FileContent};
    use crate::runtime::{HostContext, ImageInfo, JoinSecrets, K0s, K3s, Kubeadm, Runtime};

    fn two_masters_and_a_node() -> Cluster {
        Cluster::from_args(&ClusterArgs {
            masters: vec!["10.0.0.1,10.0.0.2".into()],
            nodes: vec!["10.0.0.3".into()],
            ..ClusterArgs::default()
        })
        .unwrap()
    }

    fn renewal(
        rt: &dyn Runtime,
        host: usize,
        alt: &[&str],
    ) -> Result<CertRenewal, crate::runtime::RuntimeError> {
        let c = two_masters_and_a_node();
        let img = ImageInfo::new(rt.name(), "v1.30.2").unwrap();
        let ctx = HostContext::new(&c, &c.hosts[host], &img, JoinSecrets::default()).unwrap();
        let alt: Vec<String> = alt.iter().map(|s| s.to_string()).collect();
        rt.renew_certs(&ctx, &RenewOptions::new(&alt, 7).unwrap())
    }

    fn plan_of(r: CertRenewal) -> Plan {
        match r {
            CertRenewal::Plan(p) => {
                p.validate().unwrap();
                p
            }
            CertRenewal::ByRuntime(why) => panic!("no plan: {why}"),
        }
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.steps.iter().map(|s| s.id.as_str()).collect()
    }

    fn argv(plan: &Plan, id: &str) -> Vec<String> {
        match &plan.step(id).unwrap().action {
            Action::Run { argv, .. } => argv.clone(),
            other => panic!("{id} is {other:?}"),
        }
    }

    fn written(plan: &Plan, id: &str) -> (String, String) {
        match &plan.step(id).unwrap().action {
            Action::WriteFile {
                path,
                content: FileContent::Bytes { bytes },
                ..
            } => (path.clone(), String::from_utf8(bytes.clone()).unwrap()),
            other => panic!("{id} is {other:?}"),
        }
    }

    #[test]
    fn kubeadm_renews_all_then_restarts_each_static_pod_then_waits_for_the_api() {
        let plan = plan_of(renewal(&Kubeadm, 1, &[]).unwrap());
        let mut expected = vec!["renew", "restart-dir"];
        let pods = [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ];
        let steps: Vec<String> = pods
            .iter()
            .flat_map(|p| {
                [
                    format!("stop-{p}"),
                    format!("wait-stop-{p}"),
                    format!("start-{p}"),
                    format!("wait-start-{p}"),
                ]
            })
            .collect();
        expected.extend(steps.iter().map(String::as_str));
        expected.push("wait-api");
        assert_eq!(ids(&plan), expected);
        assert_eq!(
            argv(&plan, "renew"),
            ["/usr/local/bin/kubeadm", "certs", "renew", "all"]
        );
        assert_eq!(
            argv(&plan, "stop-etcd"),
            [
                "mv",
                "-f",
                "/etc/kubernetes/manifests/etcd.yaml",
                "/etc/kubernetes/sealrs-restart/etcd.yaml"
            ]
        );
        assert_eq!(argv(&plan, "wait-stop-etcd"), ["sleep", "7"]);
        assert_eq!(
            argv(&plan, "start-kube-apiserver"),
            [
                "mv",
                "-f",
                "/etc/kubernetes/sealrs-restart/kube-apiserver.yaml",
                "/etc/kubernetes/manifests/kube-apiserver.yaml"
            ]
        );
    }

    #[test]
    fn kubeadm_alt_names_regenerate_the_apiserver_cert_from_cluster_configuration_sans() {
        let first = plan_of(renewal(&Kubeadm, 0, &["api.example.com", "10.9.9.9"]).unwrap());
        assert_eq!(
            ids(&first)[..7],
            [
                "cert-sans-config",
                "backup-dir",
                "move-apiserver-crt",
                "move-apiserver-key",
                "apiserver-cert",
                "upload-config",
                "renew"
            ]
        );
        let (path, text) = written(&first, "cert-sans-config");
        assert_eq!(path, "/etc/kubernetes/sealrs-cert-sans.yaml");
        let (init, cluster) = text.split_once("---\n").unwrap();
        let init: serde_yaml_ng::Value = serde_yaml_ng::from_str(init).unwrap();
        assert_eq!(init["kind"], "InitConfiguration");
        assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "10.0.0.1");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(cluster).unwrap();
        assert_eq!(doc["kind"], "ClusterConfiguration");
        assert_eq!(doc["kubernetesVersion"], "v1.30.2");
        let sans: Vec<&str> = doc["apiServer"]["certSANs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(sans, ["api.example.com", "10.9.9.9"]);
        assert_eq!(
            argv(&first, "move-apiserver-key"),
            [
                "mv",
                "-f",
                "/etc/kubernetes/pki/apiserver.key",
                "/etc/kubernetes/sealrs-backup/apiserver.key"
            ]
        );
        assert_eq!(
            argv(&first, "apiserver-cert"),
            [
                "/usr/local/bin/kubeadm",
                "init",
                "phase",
                "certs",
                "apiserver",
                "--config",
                "/etc/kubernetes/sealrs-cert-sans.yaml"
            ]
        );
        // The cluster's kubeadm-config is updated once, from the first master.
        let other = plan_of(renewal(&Kubeadm, 1, &["api.example.com"]).unwrap());
        assert!(other.step("apiserver-cert").is_some() && other.step("upload-config").is_none());
    }

    #[test]
    fn k3s_rotates_with_the_server_stopped_and_adds_tls_san_in_a_drop_in() {
        let plan = plan_of(renewal(&K3s, 1, &["api.example.com"]).unwrap());
        assert_eq!(
            ids(&plan),
            ["tls-san", "stop", "rotate", "start", "wait-api"]
        );
        assert_eq!(
            argv(&plan, "rotate"),
            ["/usr/local/bin/k3s", "certificate", "rotate"]
        );
        let (path, text) = written(&plan, "tls-san");
        assert_eq!(
            path,
            "/etc/rancher/k3s/config.yaml.d/50-sealrs-tls-san.yaml"
        );
        assert_eq!(text, "tls-san+:\n- api.example.com\n");
        let plain = plan_of(renewal(&K3s, 0, &[]).unwrap());
        assert_eq!(ids(&plain), ["stop", "rotate", "start", "wait-api"]);
    }

    #[test]
    fn k0s_renews_its_own_and_workers_have_nothing_to_renew() {
        match renewal(&K0s, 0, &[]).unwrap() {
            CertRenewal::ByRuntime(why) => assert!(why.contains("k0scontroller"), "{why}"),
            CertRenewal::Plan(p) => panic!("k0s got a plan: {p:?}"),
        }
        let err = renewal(&K0s, 0, &["api.example.com"]).unwrap_err();
        assert!(err.to_string().contains("spec.api.sans"), "{err}");
        for rt in [&Kubeadm as &dyn Runtime, &K3s] {
            assert!(
                renewal(rt, 2, &[]).is_err(),
                "{} renewed a worker",
                rt.name()
            );
            assert!(!rt.cert_sources().is_empty());
        }
    }

    #[test]
    fn alt_names_are_dns_names_or_ip_addresses_each_once() {
        let given: Vec<String> = [
            "api.example.com",
            "10.0.0.10",
            "fd00::1",
            "*.lb.local",
            "api.example.com",
        ]
        .map(String::from)
        .to_vec();
        let o = RenewOptions::new(&given, 5).unwrap();
        assert_eq!(o.alt_names, &given[..4]);
        assert_eq!(o.pod_restart_wait_secs, 5);
        for bad in [
            "",
            "a b",
            "-a.com",
            "a..b",
            "a/b",
            "$(id)",
            "x_y.com",
            &"a".repeat(64),
        ] {
            let err = RenewOptions::new(&[bad.to_string()], 5).unwrap_err();
            assert_eq!(err.name, bad);
            assert!(err.to_string().contains("--alt-names"), "{err}");
        }
    }
}
