//! sealos Clusterfiles with several documents and images with `*.tmpl`
//! files: the kubeadm documents merged into kubeadm's config, Config
//! documents applied to the images' files, templates rendered per host, as a
//! dry run and on real hosts (a replica of labring/kubernetes-dashboard from
//! its upstream Kubefile, labring-actions/cluster-image
//! applications/kubernetes-dashboard/latest); and bad documents and
//! templates refused before any host is reached, naming file and line.

use std::path::PathBuf;

use crate::common::Env;
use crate::hosts::{Host, TestHosts};
use crate::layout::example;

/// A template in the style of labring's: defaults, the SEALOS_SYS keys, a
/// condition on the version.
const INFO_TMPL: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: sealos-info
  namespace: {{ default "kube-system" .INFO_NAMESPACE }}
data:
  mode: "{{ .SEALOS_SYS_RUN_MODE }}"
  kube: "{{ .SEALOS_SYS_KUBE_VERSION }}"
  {{- if and (ne .SEALOS_SYS_KUBE_VERSION "") (semverCompare ">=1.27.0-0" .SEALOS_SYS_KUBE_VERSION) }}
  api: new
  {{- else }}
  api: old
  {{- end }}
  pass: '{{ .PASS }}'
"#;

/// Builds the kubeadm example with an `etc/app.yaml` for a Config and a
/// template in `manifests/`; `extra` more files.
fn build_kubeadm(env: &Env, extra: &[(&str, &str)]) -> String {
    let dir = example(env, "kubeadm", "kubeadm");
    env.write(&format!("{dir}/etc/app.yaml"), "a: 1\nnested:\n  keep: x\n");
    env.write(&format!("{dir}/manifests/info.yaml.tmpl"), INFO_TMPL);
    for (path, text) in extra {
        env.write(&format!("{dir}/{path}"), text);
    }
    env.build("kubeadm-cluster:1", &dir);
    "kubeadm-cluster:1".to_string()
}

/// A Clusterfile as `sealos gen` writes it, edited as sealos' docs show
/// (a ClusterConfiguration and a Config after the Cluster), on addresses no
/// host has: nothing may be reached.
fn sealos_clusterfile(image: &str, more: &str) -> String {
    format!(
        r#"apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  creationTimestamp: null
  name: default
spec:
  hosts:
  - ips:
    - 10.250.200.11:22
    roles:
    - master
    - amd64
  - ips:
    - 10.250.200.21:22
    roles:
    - node
    - amd64
  image:
  - {image}
  ssh:
    passwd: xxx
    pk: /root/.ssh/id_rsa
    port: 22
    user: root
  env:
  - PASS=pa$$w0rd"`x
status: {{}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
networking:
  podSubnet: 10.160.0.0/12
apiServer:
  extraArgs:
    audit-log-maxage: "7"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 180
---
apiVersion: apps.sealos.io/v1beta1
kind: Config
metadata:
  name: app
spec:
  path: etc/app.yaml
  strategy: merge
  data: |
    nested:
      added: "y"
{more}"#
    )
}

/// The dry run's section of one host.
fn section<'a>(out: &'a str, ip: &str) -> &'a str {
    let start = out
        .find(&format!("# {ip} "))
        .unwrap_or_else(|| panic!("{ip} in {out}"));
    let rest = &out[start + 2..];
    &out[start..start + 2 + rest.find("\n# ").unwrap_or(rest.len())]
}

#[test]
fn a_sealos_multi_document_clusterfile_dry_run_shows_the_merged_config_and_rendered_files() {
    let env = Env::new();
    let image = build_kubeadm(&env, &[]);
    let file = env.write("Clusterfile", sealos_clusterfile(&image, ""));
    let out = env.ok(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
    let first = section(&out, "10.250.200.11");
    let node = section(&out, "10.250.200.21");
    // kubeadm's config: the Clusterfile's documents merged with what sealrs sets.
    for line in [
        "podSubnet: 10.160.0.0/12",
        "audit-log-maxage: '7'",
        "kind: KubeletConfiguration",
        "maxPods: 180",
        "kubernetesVersion: v1.30.2",
        "advertiseAddress: 10.250.200.11",
    ] {
        assert!(first.contains(line), "{line} not in {first}");
    }
    // The Config merged into the image's file, on every host.
    for s in [first, node] {
        assert!(s.contains("file: etc/app.yaml mode 0644"), "{s}");
        assert!(
            s.contains("|   keep: x\n") && s.contains("|   added: y\n"),
            "{s}"
        );
    }
    // The template rendered per host: the roles as sealos names them, the
    // version, the condition, and the value byte for byte.
    assert!(
        first.contains("file: manifests/info.yaml mode 0644"),
        "{first}"
    );
    assert!(first.contains("|   mode: \"master,amd64\""), "{first}");
    assert!(node.contains("|   mode: \"node,amd64\""), "{node}");
    assert!(first.contains("|   kube: \"v1.30.2\""), "{first}");
    assert!(first.contains("|   api: new"), "{first}");
    assert!(first.contains("|   namespace: kube-system"), "{first}");
    assert!(first.contains("|   pass: 'pa$$w0rd\"`x'"), "{first}");
    assert!(!env.root.join("clusters/default/Clusterfile").exists());
}

#[test]
fn bad_documents_and_templates_are_refused_naming_file_and_line_before_any_host() {
    let env = Env::new();
    let bad_tmpl = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ .DASHBOARD_NS }}\n";
    let image = build_kubeadm(&env, &[("manifests/ns.yaml.tmpl", bad_tmpl)]);
    let base = sealos_clusterfile(&image, "");

    // A template's undefined value: named with file:line:col, and for run
    // (not only its dry run) before any host is reached.
    let file = env.write("Clusterfile", &base);
    let err = env.fails(&["run", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains("manifests/ns.yaml.tmpl:4:9: DASHBOARD_NS is not defined"),
        "{err}"
    );
    assert!(err.contains("no host was changed"), "{err}");
    assert!(!err.contains("connecting to"), "{err}");
    // With a value it renders.
    let fixed = base.replace("  - PASS=", "  - DASHBOARD_NS=dash\n  - PASS=");
    // Where a document appended after `---` starts.
    let line = fixed.lines().count() + 2;
    let file = env.write("Clusterfile", &fixed);
    let out = env.ok(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("|   name: dash"), "{out}");

    for (doc, want) in [
        (
            "apiVersion: apps.sealos.io/v1beta1\nkind: Config\nmetadata:\n  name: escape\nspec:\n  path: ../../etc/shadow\n  data: x\n",
            format!("Clusterfile:{line}: Config \"escape\" spec.path: \"../../etc/shadow\" leaves the image"),
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            format!("Clusterfile:{line}: unknown document apiVersion \"v1\" kind \"ConfigMap\""),
        ),
        (
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ResetConfiguration\n",
            "unknown apiVersion/kind kubeadm.k8s.io/v1beta3/ResetConfiguration".to_string(),
        ),
    ] {
        let file = env.write("Clusterfile", format!("{fixed}---\n{doc}"));
        let err = env.fails(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
        assert!(err.contains(&want), "{want} not in {err}");
    }
}

/// labring/kubernetes-dashboard's Kubefile, as upstream writes it.
const DASHBOARD_KUBEFILE: &str = "FROM scratch\nCOPY . .\nCMD [\"bash entrypoint.sh\"]\n";

/// Its entrypoint: helm installs the chart with its options split into
/// words, then the admin user's manifest (rendered from its `.tmpl`) is
/// applied when it is there, as upstream's does.
const DASHBOARD_ENTRYPOINT: &str = r#"#!/usr/bin/env bash
set -e
NAME=${NAME:-"kubernetes-dashboard"}
NAMESPACE=${NAMESPACE:-"kubernetes-dashboard"}
CHARTS=${CHARTS:-"./charts/kubernetes-dashboard"}
HELM_OPTS=${HELM_OPTS:-" \
--set service.type=NodePort \
--set metricsScraper.enabled=true \
--set extraArgs[0]=--token-ttl=0 \
"}
helm upgrade -i ${NAME} ${CHARTS} -n ${NAMESPACE} --create-namespace ${HELM_OPTS}
if [ -f ./manifests/dashboard-adminuser.yaml ]; then
    kubectl apply -f ./manifests/dashboard-adminuser.yaml
fi
"#;

/// Its admin user, a template of the namespace.
const ADMIN_USER_TMPL: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: admin-user
  namespace: {{ default "kubernetes-dashboard" .NAMESPACE }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: admin-user
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: admin-user
  namespace: {{ default "kubernetes-dashboard" .NAMESPACE }}
"#;

/// The k3s cluster image (with a template among its manifests), labring's
/// helm (the helm stand-in) and the dashboard replica.
fn build_k3s_and_dashboard(env: &Env) -> [&'static str; 3] {
    let dir = example(env, "k3s", "k3s");
    env.write(&format!("{dir}/manifests/info.yaml.tmpl"), INFO_TMPL);
    env.build("k3s-cluster:1", &dir);

    crate::sealos_apps::build_helm(env);

    env.write("dashboard/Kubefile", DASHBOARD_KUBEFILE);
    env.write_mode("dashboard/entrypoint.sh", DASHBOARD_ENTRYPOINT, 0o755);
    env.write(
        "dashboard/charts/kubernetes-dashboard/Chart.yaml",
        "apiVersion: v2\nname: kubernetes-dashboard\nversion: 6.0.8\nappVersion: v2.7.0\n",
    );
    env.write(
        "dashboard/charts/kubernetes-dashboard.values.yaml",
        "metricsScraper:\n  enabled: true\n",
    );
    env.write(
        "dashboard/manifests/dashboard-adminuser.yaml.tmpl",
        ADMIN_USER_TMPL,
    );
    env.build("kubernetes-dashboard:v2.7.0", "dashboard");
    ["k3s-cluster:1", "helm:1", "kubernetes-dashboard:v2.7.0"]
}

fn applied(host: &Host) -> String {
    host.exec_ok(&["cat", "/var/log/sealrs-standin-applied"])
}

#[test]
fn the_dashboard_replicas_rendered_admin_user_is_applied_on_a_k3s_cluster() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let [k3s, helm, dashboard] = build_k3s_and_dashboard(&env);
    let file = env.write(
        "Clusterfile",
        format!(
            r#"apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  name: default
spec:
  hosts:
  - ips: [{a}:22]
    roles: [master, amd64]
  - ips: [{b}:22]
    roles: [node, amd64]
  image: [{k3s}, {helm}, {dashboard}]
  ssh:
    pk: {key}
    user: root
  env:
  - KUBECONFIG=/etc/rancher/k3s/k3s.yaml
  - PASS=pa$$w0rd"`x
---
apiVersion: apps.sealos.io/v1beta1
kind: Config
metadata:
  name: dashboard-values
spec:
  path: charts/kubernetes-dashboard.values.yaml
  match: {dashboard}
  strategy: merge
  data: |
    service:
      type: NodePort
---
apiVersion: apps.sealos.io/v1beta1
kind: Config
metadata:
  name: registries
spec:
  path: etc/registries.yaml
  match: {k3s}
  strategy: merge
  data: |
    configs:
      registry.example.com:
        tls:
          insecure_skip_verify: false
"#,
            a = hosts[0].ip,
            b = hosts[1].ip,
            key = hosts.key().display(),
        ),
    );
    // The dry run shows the application's files on the first master only.
    let dry = env.ok(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
    let (first, node) = (section(&dry, &hosts[0].ip), section(&dry, &hosts[1].ip));
    assert!(
        first.contains("file: manifests/dashboard-adminuser.yaml mode 0644"),
        "{first}"
    );
    assert!(
        first.contains("|   namespace: kubernetes-dashboard"),
        "{first}"
    );
    assert!(!node.contains("dashboard-adminuser"), "{node}");
    assert!(node.contains("|   mode: \"node,amd64\""), "{node}");

    let out = env.run(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--known-hosts",
        hosts.known_hosts().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    // The admin user's manifest, rendered with the default namespace, is
    // what kubectl applied on the first master.
    let log = applied(&hosts[0]);
    assert!(
        log.contains(
            "=== ./manifests/dashboard-adminuser.yaml\napiVersion: v1\nkind: ServiceAccount"
        ),
        "{log}"
    );
    assert!(log.contains("  namespace: kubernetes-dashboard\n"), "{log}");
    assert!(!log.contains("{{"), "{log}");
    // The Config merged into the chart's values in the application's directory.
    let values = hosts[0].exec_ok(&[
        "sh",
        "-c",
        "cat /var/lib/sealrs-host/apps/*/charts/kubernetes-dashboard.values.yaml",
    ]);
    assert!(
        values.contains("metricsScraper:\n  enabled: true\n"),
        "{values}"
    );
    assert!(values.contains("service:\n  type: NodePort\n"), "{values}");

    // A Config over a file the layout places (copied, not linked): the
    // placed copy holds the merged bytes on every host.
    for host in [&hosts[0], &hosts[1]] {
        let placed = host.exec_ok(&["cat", "/etc/rancher/k3s/registries.yaml"]);
        assert!(placed.contains("registry.example.com:"), "{placed}");
    }

    // The cluster image's template, rendered for the server and placed in
    // k3s' manifests, with the roles and the value byte for byte.
    let info = hosts[0].exec_ok(&["cat", "/var/lib/rancher/k3s/server/manifests/info.yaml"]);
    assert!(info.contains("mode: \"master,amd64\""), "{info}");
    assert!(info.contains("pass: 'pa$$w0rd\"`x'"), "{info}");
    assert!(info.contains("api: new"), "{info}");
    assert!(!hosts[1]
        .exec(&[
            "test",
            "-e",
            "/var/lib/rancher/k3s/server/manifests/info.yaml"
        ])
        .status
        .success());
    // A rerun with another value renders the template again (the hosts'
    // probes see the file to write) and applies the admin user again.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("PASS=pa$$w0rd\"`x", "PASS=n3w$")).unwrap();
    let again = env.run(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--known-hosts",
        hosts.known_hosts().to_str().unwrap(),
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        applied(&hosts[0])
            .matches("=== ./manifests/dashboard-adminuser.yaml")
            .count(),
        2
    );
}

#[test]
fn a_sealos_multi_document_clusterfile_runs_on_kubeadm_hosts() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    // The kubeadm image of the kubeadm host tests (the real containerd and
    // its images), with a file for the Config and a template.
    let image = crate::run_hosts::build_kubeadm(&env);
    env.write("kubeadm/etc/app.yaml", "a: 1\nnested:\n  keep: x\n");
    env.write("kubeadm/manifests/info.yaml.tmpl", INFO_TMPL);
    env.build(&image, "kubeadm");
    let text = sealos_clusterfile(&image, "")
        .replace("10.250.200.11", &hosts[0].ip)
        .replace("10.250.200.21", &hosts[1].ip)
        .replace(
            "    passwd: xxx\n    pk: /root/.ssh/id_rsa\n",
            &format!("    pk: {}\n", hosts.key().display()),
        );
    let file = env.write("Clusterfile", text);
    let out = env.run(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--known-hosts",
        hosts.known_hosts().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    // kubeadm init got the Clusterfile's documents merged into its config,
    // and the kubelet the KubeletConfiguration.
    let config = hosts[0].exec_ok(&["cat", "/etc/kubernetes/sealrs-kubeadm.yaml"]);
    for line in [
        "podSubnet: 10.160.0.0/12",
        "audit-log-maxage: '7'",
        "kubernetesVersion: v1.30.2",
        "maxPods: 180",
    ] {
        assert!(config.contains(line), "{line} not in {config}");
    }
    let kubelet = hosts[0].exec_ok(&["cat", "/var/lib/kubelet/config.yaml"]);
    assert!(kubelet.contains("maxPods: 180"), "{kubelet}");
    // Each host's rootfs has the Config'd file and its own rendering.
    for (host, mode) in [(&hosts[0], "master,amd64"), (&hosts[1], "node,amd64")] {
        let dir = "/var/lib/sealrs-host/rootfs/*";
        let app = host.exec_ok(&["sh", "-c", &format!("cat {dir}/etc/app.yaml")]);
        assert!(app.contains("keep: x") && app.contains("added: y"), "{app}");
        let info = host.exec_ok(&["sh", "-c", &format!("cat {dir}/manifests/info.yaml")]);
        assert!(info.contains(&format!("mode: \"{mode}\"")), "{info}");
        assert!(info.contains("pass: 'pa$$w0rd\"`x'"), "{info}");
    }
    // Saved with its documents: the saved cluster reads back the same.
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("kind: ClusterConfiguration"), "{saved}");
    assert!(saved.contains("kind: Config"), "{saved}");
}

/// Build keeps each layer's paths in the store, and run consults them to
/// find templates and Config targets: a layer listed without any is never
/// opened (a run does not decompress every layer to learn it has none).
#[test]
fn run_finds_templates_through_the_layer_paths_build_kept() {
    let env = Env::new();
    let image = build_kubeadm(&env, &[]);
    let file = env.write("Clusterfile", sealos_clusterfile(&image, ""));
    let run = || env.ok(&["run", "-f", file.to_str().unwrap(), "--dry-run"]);
    assert!(run().contains("file: manifests/info.yaml mode 0644"));

    let kept = env.root.join("cache/layer-paths");
    let entries: Vec<PathBuf> = std::fs::read_dir(&kept)
        .unwrap_or_else(|e| panic!("{}: {e}", kept.display()))
        .map(|e| e.unwrap().path())
        .collect();
    let with_template: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("\"manifests/info.yaml.tmpl\"")
        })
        .collect();
    assert_eq!(with_template.len(), 1, "{entries:?}");
    // Listed as holding nothing, the layer is skipped: no template is found.
    std::fs::write(with_template[0], "[]").unwrap();
    let out = run();
    assert!(!out.contains("file: manifests/info.yaml mode"), "{out}");
    // An entry that cannot be read is made again from the layer.
    std::fs::write(with_template[0], "[\"cut").unwrap();
    assert!(run().contains("file: manifests/info.yaml mode 0644"));
    let again = std::fs::read_to_string(with_template[0]).unwrap();
    assert!(again.contains("\"manifests/info.yaml.tmpl\""), "{again}");
}
