//! `installer certs`: the certificates a runtime keeps on this host, read
//! and parsed here (x509 in Rust, no openssl process), for `sealrs cert
//! check`; and the plan of `installer renew-certs`, made here with the
//! image's files as the other plans are.

use std::path::Path;

use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::request::{Request, RequestError};
use crate::runtime::{CertFiles, CertRenewal, CertSource, HostContext, RenewOptions};

/// Larger files are no certificate (a kubeconfig is a few kilobytes).
const MAX_FILE: u64 = 1 << 20;

/// One certificate: the first of its file (a k3s client certificate file
/// carries its CA after it), or a kubeconfig user's client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// The path on the host; for a kubeconfig, `PATH (user NAME)`.
    pub file: String,
    pub subject: String,
    pub issuer: String,
    /// The end of its validity, in seconds since the epoch (UTC).
    pub not_after: i64,
    /// Its subject alternative names: DNS names and IP addresses.
    pub sans: Vec<String>,
    pub is_ca: bool,
}

/// A file that should hold a certificate and does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertProblem {
    pub file: String,
    pub error: String,
}

/// What `installer certs` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCerts {
    pub certs: Vec<CertInfo>,
    pub problems: Vec<CertProblem>,
}

/// Reads every certificate of `sources` under `host_root`, in path order; a
/// directory that is not there holds none.
pub fn read_certs(sources: &[CertSource], host_root: &Path) -> HostCerts {
    let mut out = HostCerts::default();
    for source in sources {
        let dir = host_root.join(source.dir.trim_start_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        let suffix = match source.files {
            CertFiles::Pem => ".crt",
            CertFiles::Kubeconfigs => ".conf",
        };
        let walk = walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .min_depth(1)
            .max_depth(if source.recursive { usize::MAX } else { 1 })
            .sort_by_file_name();
        for entry in walk.into_iter().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy();
            if !entry.file_type().is_file() || !name.ends_with(suffix) {
                continue;
            }
            let rel = entry.path().strip_prefix(host_root).unwrap_or(entry.path());
            let shown = format!("/{}", rel.display()).replace("//", "/");
            let read = read_small(entry.path()).and_then(|bytes| match source.files {
                CertFiles::Pem => first_cert(&bytes).map(|c| vec![c.named(&shown)]),
                CertFiles::Kubeconfigs => kubeconfig_certs(&bytes, &shown),
            });
            match read {
                Ok(certs) => out.certs.extend(certs),
                Err(error) => out.problems.push(CertProblem { file: shown, error }),
            }
        }
    }
    out
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("{len} bytes: too large for a certificate"));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// A parsed certificate before it knows its file.
struct Parsed(CertInfo);

impl Parsed {
    fn named(mut self, file: &str) -> CertInfo {
        self.0.file = file.to_string();
        self.0
    }
}

/// The first certificate of PEM text.
fn first_cert(bytes: &[u8]) -> Result<Parsed, String> {
    let pem = Pem::iter_from_buffer(bytes)
        .next()
        .ok_or("no PEM certificate in it")?
        .map_err(|e| format!("not PEM: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("holds a {}, not a CERTIFICATE", pem.label));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an x509 certificate: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(n) => sans.push(n.to_string()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        sans.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        sans.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Parsed(CertInfo {
        file: String::new(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        sans,
        is_ca: cert.is_ca(),
    }))
}

/// The client certificates a kubeconfig embeds (`users[].user.client-certificate-data`).
fn kubeconfig_certs(bytes: &[u8], file: &str) -> Result<Vec<CertInfo>, String> {
    use base64::Engine as _;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(bytes).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let mut out = Vec::new();
    let users = doc.get("users").and_then(|u| u.as_sequence());
    for user in users.into_iter().flatten() {
        let name = user.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let Some(data) = user
            .get("user")
            .and_then(|u| u.get("client-certificate-data"))
            .and_then(|d| d.as_str())
        else {
            continue;
        };
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("user {name}: client-certificate-data is not base64: {e}"))?;
        let cert = first_cert(&pem).map_err(|e| format!("user {name}: {e}"))?;
        out.push(cert.named(&format!("{file} (user {name})")));
    }
    Ok(out)
}

/// The renewal the runtime plans for this host, from the request (the
/// image's files read under `host_root`, as for the other plans).
pub fn renew_plan(
    request: &Request,
    options: &RenewOptions,
    host_root: &Path,
) -> Result<CertRenewal, RequestError> {
    let runtime = request.runtime()?;
    let cluster = request.cluster();
    let host = request.this_host(&cluster)?;
    let info = request.image_info();
    let failed = |source| RequestError::Runtime {
        host: host.key(),
        source,
    };
    let mut ctx = HostContext::new(&cluster, host, &info, request.secrets()).map_err(failed)?;
    ctx.rootfs = request.rootfs.clone();
    request.read_rootfs_inputs(runtime.as_ref(), host_root, &mut ctx);
    runtime.renew_certs(&ctx, options).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn pem(cn: &str, sans: &[&str], year: i32) -> String {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_after = rcgen::date_time_ymd(year, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    fn write(root: &Path, path: &str, text: &str) {
        let f = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    #[test]
    fn certificates_and_kubeconfig_client_certs_are_read_with_subject_expiry_and_sans() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let ca_and_leaf = format!("{}{}", pem("leaf", &[], 2031), pem("ca", &[], 2040));
        write(
            r,
            "/pki/apiserver.crt",
            &pem("kube-apiserver", &["api.example.com", "10.0.0.1"], 2030),
        );
        write(r, "/pki/etcd/server.crt", &pem("etcd", &[], 2029));
        write(r, "/pki/client.crt", &ca_and_leaf);
        write(r, "/pki/broken.crt", "not a certificate");
        write(r, "/pki/apiserver.key", "ignored: not a .crt");
        let data =
            base64::engine::general_purpose::STANDARD.encode(pem("kubernetes-admin", &[], 2028));
        write(r, "/kube/admin.conf", &format!("users:\n- name: admin\n  user:\n    client-certificate-data: {data}\n- name: token\n  user: {{token: x}}\n"));
        write(
            r,
            "/kube/sub/other.conf",
            "not read: below a kubeconfig directory",
        );
        let sources = [
            CertSource::pem("/pki", true),
            CertSource::kubeconfigs("/kube"),
            CertSource::pem("/missing", true),
        ];
        let found = read_certs(&sources, r);
        let files: Vec<&str> = found.certs.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "/pki/apiserver.crt",
                "/pki/client.crt",
                "/pki/etcd/server.crt",
                "/kube/admin.conf (user admin)"
            ]
        );
        let api = &found.certs[0];
        assert_eq!(api.subject, "CN=kube-apiserver");
        assert_eq!(api.sans, ["api.example.com", "10.0.0.1"]);
        assert_eq!(api.not_after, 1_893_542_400); // 2030-01-02T00:00:00Z
        assert_eq!(found.certs[1].subject, "CN=leaf", "the first of a bundle");
        assert_eq!(found.certs[3].subject, "CN=kubernetes-admin");
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].file, "/pki/broken.crt");
        // Not recursive: only the directory itself.
        let flat = read_certs(&[CertSource::pem("/pki", false)], r);
        assert_eq!(flat.certs.len(), 2);
    }

    #[test]
    fn the_renewal_is_planned_on_the_host_with_the_images_kubeadm_config() {
        use crate::cluster::{Cluster, ClusterArgs};
        use crate::plan::{Action, FileContent};
        use crate::runtime::{ImageInfo, JoinSecrets};
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/rootfs/etc/kubeadm.yaml",
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  certSANs:\n  - image.example.com\nnetworking:\n  serviceSubnet: 10.96.0.0/12\n",
        );
        let cluster = Cluster::from_args(&ClusterArgs {
            masters: vec!["10.0.0.1".into()],
            ..ClusterArgs::default()
        })
        .unwrap();
        let image = ImageInfo::new("kubeadm", "v1.30.2").unwrap();
        let request = Request::new(
            &cluster,
            &cluster.hosts[0],
            &image,
            &JoinSecrets::default(),
            "/rootfs",
            Vec::new(),
        );
        let options = RenewOptions::new(&["api.example.com".to_string()], 1).unwrap();
        let CertRenewal::Plan(plan) = renew_plan(&request, &options, root.path()).unwrap() else {
            panic!("kubeadm renews with a plan");
        };
        let Action::WriteFile {
            content: FileContent::Bytes { bytes },
            ..
        } = &plan.step("cert-sans-config").unwrap().action
        else {
            panic!("the SANs config is a file");
        };
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("- image.example.com\n  - api.example.com")
                && text.contains("serviceSubnet: 10.96.0.0/12"),
            "{text}"
        );
    }
}
