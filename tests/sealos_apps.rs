//! Application and patch images built the sealos way, run as sealos runs
//! them: replicas of labring/helm, labring/calico (`$(HELM_OPTS)`) and
//! labring/cni-plugins (a patch image) from their upstream Kubefiles
//! (labring-actions/cluster-image, applications/*/latest), with the helm
//! stand-in (tests/fixtures/standins/helm) enforcing helm's argument rules.

use crate::common::{tool, Env};
use crate::hosts::{Host, TestHosts};
use crate::layout::example;
use crate::run::ssh_flags;

const STANDINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/standins");

/// labring/calico's Kubefile as upstream writes it.
const CALICO_KUBEFILE: &str = r#"FROM scratch
ENV NAME=${NAME:-"calico"}
ENV NAMESPACE=${NAMESPACE:-"tigera-operator"}
ENV HELM_OPTS=${HELM_OPTS:-""}

COPY . .
CMD ["helm upgrade -i $(NAME) charts/calico -f charts/calico.values.yaml -n $(NAMESPACE) --create-namespace $(HELM_OPTS)"]
"#;

/// Builds the k3s cluster image and the three replicas; returns the image names.
fn build_images(env: &Env) -> [&'static str; 4] {
    let dir = example(env, "k3s", "k3s");
    env.build("k3s-cluster:1", &dir);
    let [cni, helm, calico] = build_apps(env);
    ["k3s-cluster:1", cni, helm, calico]
}

/// The replica of labring/helm (`helm:1`): the binary under opt/, copied
/// to /usr/bin by its CMD.
pub(crate) fn build_helm(env: &Env) {
    env.write(
        "helm/Kubefile",
        "FROM scratch\nCOPY opt opt\nCMD [\"cp -f opt/helm /usr/bin/helm\"]\n",
    );
    std::fs::create_dir_all(env.path("helm/opt")).unwrap();
    tool(
        "cp",
        &[
            "-p",
            &format!("{STANDINS}/helm"),
            env.path("helm/opt/helm").to_str().unwrap(),
        ],
    );
    env.build("helm:1", "helm");
}

/// Builds the replicas of labring/cni-plugins, labring/helm and labring/calico.
fn build_apps(env: &Env) -> [&'static str; 3] {
    build_helm(env);

    // labring/calico: the tigera-operator chart and its values.
    env.write("calico/Kubefile", CALICO_KUBEFILE);
    env.write(
        "calico/charts/calico/Chart.yaml",
        "apiVersion: v2\nname: tigera-operator\nversion: v3.26.1\n",
    );
    env.write(
        "calico/charts/calico.values.yaml",
        "installation:\n  calicoNetwork: {}\n",
    );
    env.build("calico:1", "calico");

    // labring/cni-plugins: a patch image whose CMD unpacks the plugins.
    env.write_mode("plugins/bridge", "#!/bin/sh\necho bridge\n", 0o755);
    std::fs::create_dir_all(env.path("cni/opt")).unwrap();
    tool(
        "tar",
        &[
            "-czf",
            env.path("cni/opt/cni-plugins.tar.gz").to_str().unwrap(),
            "-C",
            env.path("plugins").to_str().unwrap(),
            "bridge",
        ],
    );
    env.write(
        "cni/Kubefile",
        "FROM scratch\nLABEL sealos.io.type=\"patch\"\nCOPY opt opt\nCMD [\"tar -zxf opt/cni-plugins.tar.gz --one-top-level=/opt/cni/bin/\"]\n",
    );
    env.build("cni-plugins:1", "cni");
    ["cni-plugins:1", "helm:1", "calico:1"]
}

/// The helm stand-in's calls on `host`, byte for byte: (cwd, argv after `helm`).
fn helm_calls(host: &Host) -> Vec<(String, Vec<String>)> {
    let out = host.exec(&["cat", "/var/log/sealrs-standins.argv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = text.split_terminator('\0');
    let mut calls = Vec::new();
    while let Some(name) = fields.next() {
        let cwd = fields.next().unwrap().to_string();
        let argc: usize = fields.next().unwrap().parse().unwrap();
        let argv: Vec<String> = (0..argc)
            .map(|_| fields.next().unwrap().to_string())
            .collect();
        if name == "helm" {
            calls.push((cwd, argv));
        }
    }
    calls
}

fn run(env: &Env, hosts: &TestHosts, images: &[&str], extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(images.iter().map(|s| s.to_string()));
    args.extend([
        "--masters".into(),
        hosts[0].ip.clone(),
        "--nodes".into(),
        hosts[1].ip.clone(),
    ]);
    args.extend(ssh_flags(hosts));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run(&refs)
}

fn app_dir(env: &Env, image: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    let digest = doc["digest"].as_str().unwrap();
    format!(
        "/var/lib/sealrs-host/apps/{}",
        digest.trim_start_matches("sha256:")
    )
}

#[test]
fn helm_calico_and_a_patch_image_run_as_sealos_runs_them_with_helm_opts_split_into_words() {
    let hosts = TestHosts::boot(3);
    let env = Env::new();
    let images = build_images(&env);

    let opts = "HELM_OPTS=--set installation.registry=sealos.hub:5000 --set password=pa$$w0rd";
    let out = run(&env, &hosts, &images, &["-e", opts]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    // helm's CMD put the binary on the first master only.
    hosts[0].exec_ok(&["test", "-x", "/usr/bin/helm"]);
    assert!(!hosts[1]
        .exec(&["test", "-e", "/usr/bin/helm"])
        .status
        .success());

    // calico's CMD: $(HELM_OPTS) gave helm four arguments, `$$` intact,
    // and helm accepted exactly two positional ones.
    let calls = helm_calls(&hosts[0]);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (cwd, argv) = &calls[0];
    assert_eq!(cwd, &app_dir(&env, "calico:1"));
    assert_eq!(
        argv,
        &[
            "upgrade",
            "-i",
            "calico",
            "charts/calico",
            "-f",
            "charts/calico.values.yaml",
            "-n",
            "tigera-operator",
            "--create-namespace",
            "--set",
            "installation.registry=sealos.hub:5000",
            "--set",
            "password=pa$$w0rd",
        ]
    );
    assert!(
        stderr.contains("Release has been upgraded"),
        "helm's output is shown: {stderr}"
    );

    // The patch image is in each host's rootfs, and its CMD ran on each host
    // (the third joins later).
    for host in &hosts.hosts()[..2] {
        host.exec_ok(&["test", "-x", "/opt/cni/bin/bridge"]);
        host.exec_ok(&[
            "sh",
            "-c",
            "ls /var/lib/sealrs-host/rootfs/*/opt/cni-plugins.tar.gz",
        ]);
    }
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert_eq!(
        saved.matches("docker.io/library/cni-plugins:1").count(),
        4,
        "named, pinned, and in each host's status: {saved}"
    );

    // --cmd replaces the first application image's CMD; env values with `$`,
    // quotes, backquotes and a newline reach the command byte for byte.
    let name = "rel\"ease'`x`$HOME\nline";
    let name_arg = format!("NAME={name}");
    let cmd = "helm upgrade -i \"$(NAME)\" charts/calico -n \"$(NAMESPACE)\"";
    let out = run(
        &env,
        &hosts,
        &["k3s-cluster:1", "calico:1"],
        &["-e", &name_arg, "--cmd", cmd],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = helm_calls(&hosts[0]);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1].1,
        [
            "upgrade",
            "-i",
            name,
            "charts/calico",
            "-n",
            "tigera-operator"
        ]
    );

    // A value helm refuses fails the run, naming the image, the host, the
    // status and helm's own message.
    let out = run(
        &env,
        &hosts,
        &["k3s-cluster:1", "calico:1"],
        &["-e", "HELM_OPTS=--set"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "application image docker.io/library/calico:1 failed on {}",
            hosts[0].ip
        )),
        "{stderr}"
    );
    assert!(stderr.contains("exit code 1"), "{stderr}");
    assert!(
        stderr.contains("Error: flag needs an argument: --set"),
        "{stderr}"
    );

    // Onto the saved cluster: its hosts and rootfs, only the images named.
    env.write(
        "bad/Kubefile",
        "FROM scratch\nCOPY x x\nCMD [\"echo broken >&2; exit 3\"]\n",
    );
    env.write("bad/x", "x");
    env.build("bad:1", "bad");
    let saved = || std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    let before = saved();
    let on_cluster = |args: &[&str]| {
        let mut all: Vec<String> = vec!["run".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(["--cluster".into(), "default".into()]);
        all.extend(ssh_flags(&hosts));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        env.run(&refs)
    };
    let out = on_cluster(&["bad:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("exit code 3") && stderr.contains("broken"),
        "{stderr}"
    );
    assert_eq!(
        saved(),
        before,
        "a failed app leaves the saved cluster as it was"
    );

    let out = on_cluster(&["calico:1", "-e", "HELM_OPTS=--set x=y"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = helm_calls(&hosts[0]);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[3].1[calls[3].1.len() - 2..], ["--set", "x=y"]);
    let after = saved();
    let spec_images: Vec<&str> = after
        .lines()
        .skip_while(|l| !l.starts_with("  images:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .collect();
    assert_eq!(
        spec_images,
        [
            "  - docker.io/library/k3s-cluster:1",
            "  - docker.io/library/calico:1"
        ],
        "{after}"
    );

    // Its dry run shows the images' commands only, with the saved hosts.
    let out = on_cluster(&["helm:1", "cni-plugins:1", "--dry-run"]);
    let dry = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{dry}");
    for line in [
        format!(
            "# {} (application image): docker.io/library/helm:1",
            hosts[0].ip
        ),
        format!(
            "# {} (patch image, placed over the rootfs): docker.io/library/cni-plugins:1",
            hosts[1].ip
        ),
    ] {
        assert!(dry.contains(&line), "missing {line:?} in\n{dry}");
    }
    assert!(!dry.contains("install"), "{dry}");
    assert_eq!(saved(), after);

    let out = on_cluster(&["k3s-cluster:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("is a rootfs image"), "{stderr}");

    // A node added later gets the cluster's patch image, as sealos scales:
    // placed over its rootfs, its CMD run there.
    on_cluster(&["cni-plugins:1"]);
    let mut add: Vec<String> = ["add", "--cluster", "default", "--nodes", &hosts[2].ip]
        .map(String::from)
        .to_vec();
    add.extend(ssh_flags(&hosts));
    let refs: Vec<&str> = add.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hosts[2].exec_ok(&["test", "-x", "/opt/cni/bin/bridge"]);
    hosts[2].exec_ok(&[
        "sh",
        "-c",
        "ls /var/lib/sealrs-host/rootfs/*/opt/cni-plugins.tar.gz",
    ]);
}

/// An upgrade builds a new rootfs on each host: the cluster's patch image is
/// placed over it again before the upgrade plan places it, and its CMD runs
/// again on every host; the saved cluster still names and pins it.
#[test]
fn an_upgrade_places_the_patch_image_over_the_new_rootfs_and_runs_it_on_every_host() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.build("k3s-cluster:1", &dir);
    let [cni, _, _] = build_apps(&env);
    let out = run(&env, &hosts, &["k3s-cluster:1", cni], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    crate::layout::standin_version(&env, &dir, "v1.30.3+k3s1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--build-arg",
        "VERSION=v1.30.3+k3s1",
        "-t",
        "k3s-cluster:2",
        &dir,
    ]);
    // What the patch's CMD made is gone: the upgrade must run it again.
    for host in hosts.hosts() {
        host.exec_ok(&["rm", "-rf", "/opt/cni/bin"]);
    }
    let out = crate::run::on_hosts(&env, &hosts, &["upgrade", "k3s-cluster:2"], true);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    let new_rootfs = format!(
        "/var/lib/sealrs-host/rootfs/{}",
        app_dir(&env, "k3s-cluster:2").rsplit('/').next().unwrap()
    );
    for host in hosts.hosts() {
        host.exec_ok(&[
            "test",
            "-f",
            &format!("{new_rootfs}/opt/cni-plugins.tar.gz"),
        ]);
        host.exec_ok(&["test", "-x", "/opt/cni/bin/bridge"]);
        // k3s runs from the new rootfs' placement.
        host.exec_ok(&["test", "-x", "/usr/local/bin/k3s"]);
    }
    let saved = std::fs::read_to_string(env.root.join("clusters/default/Clusterfile")).unwrap();
    assert!(saved.contains("docker.io/library/k3s-cluster:2"), "{saved}");
    assert_eq!(
        saved.matches("docker.io/library/cni-plugins:1").count(),
        4,
        "named, pinned, and in each host's status: {saved}"
    );
}

/// sealos merges the labels of every image of the cluster into what its
/// hooks read: a patch image's `init` label runs its script, placed in the
/// rootfs' `scripts/`, on every host.
#[test]
fn a_patch_image_init_label_runs_its_script_from_the_rootfs_on_every_host() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.build("k3s-cluster:1", &dir);
    env.write(
        "hooked/scripts/patch-init.sh",
        "echo \"$1\" > /var/lib/patch-init-ran\n",
    );
    env.write(
        "hooked/Kubefile",
        "FROM scratch\nLABEL sealos.io.type=\"patch\"\nLABEL init=\"patch-init.sh from-the-label\"\nCOPY scripts scripts\n",
    );
    env.build("hooked:1", "hooked");
    let out = run(&env, &hosts, &["k3s-cluster:1", "hooked:1"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for host in hosts.hosts() {
        let ran = host.exec_ok(&["cat", "/var/lib/patch-init-ran"]);
        assert_eq!(ran, "from-the-label\n", "{}", host.ip);
    }
}

/// The same images on a kubeadm cluster: helm finds kubeadm's admin
/// kubeconfig, and the patch reaches both hosts.
#[test]
fn helm_calico_and_a_patch_image_run_on_a_kubeadm_cluster() {
    let hosts = TestHosts::boot(2);
    let env = Env::new();
    let cluster = crate::run_hosts::build_kubeadm(&env);
    let [cni, helm, calico] = build_apps(&env);
    let opts = "HELM_OPTS=--set a=b --set password=pa$$w0rd";
    let out = run(&env, &hosts, &[&cluster, cni, helm, calico], &["-e", opts]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = helm_calls(&hosts[0]);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].1[calls[0].1.len() - 4..],
        ["--set", "a=b", "--set", "password=pa$$w0rd"]
    );
    for host in hosts.hosts() {
        host.exec_ok(&["test", "-x", "/opt/cni/bin/bridge"]);
    }
}

#[test]
fn dry_run_shows_each_image_command_where_it_runs_and_its_env_host_env_winning() {
    let env = Env::new();
    let images = build_images(&env);
    env.write(
        "Clusterfile",
        format!(
            r#"apiVersion: apps.sealos.io/v1beta1
kind: Cluster
metadata:
  name: default
spec:
  hosts:
  - ips: [10.250.9.1:22]
    roles: [master, amd64]
    env: ["HELM_OPTS=--set from=host", "MY_PASSWORD=s3cret"]
  - ips: [10.250.9.2:22]
    roles: [node, amd64]
  image: [{}]
  env: ["HELM_OPTS=--set from=cluster", "NAMESPACE=kube-system"]
"#,
            images.join(", ")
        ),
    );
    let clusterfile = env.path("Clusterfile");
    let clusterfile = clusterfile.to_str().unwrap();
    let dry = env.ok(&["run", "-f", clusterfile, "--dry-run"]);
    let calico = format!(
        "# 10.250.9.1 (application image): docker.io/library/calico:1\nin {}:\n  run: helm upgrade -i $(NAME) charts/calico -f charts/calico.values.yaml -n $(NAMESPACE) --create-namespace $(HELM_OPTS)\n",
        app_dir(&env, "calico:1")
    );
    assert!(dry.contains(&calico), "{dry}");
    for line in [
        "  env: HELM_OPTS='--set from=host'",
        "  env: NAMESPACE=kube-system",
        "  env: NAME=calico",
        "  env: KUBECONFIG=/etc/rancher/k3s/k3s.yaml",
        "  env: MY_PASSWORD=<masked>",
        "# 10.250.9.2 (patch image, placed over the rootfs): docker.io/library/cni-plugins:1",
        "  run: tar -zxf opt/cni-plugins.tar.gz --one-top-level=/opt/cni/bin/",
        "  run: cp -f opt/helm /usr/bin/helm",
    ] {
        assert!(dry.contains(line), "missing {line:?} in\n{dry}");
    }
    let apps = &dry[dry.find("(patch image").unwrap()..];
    assert!(!apps.contains("s3cret"), "{apps}");

    // --cmd replaces the CMD of the first application image (helm's), not
    // the patch image's.
    let dry = env.ok(&[
        "run",
        "-f",
        clusterfile,
        "--dry-run",
        "--cmd",
        "helm version",
    ]);
    assert!(dry.contains("  run: helm version\n"), "{dry}");
    assert!(!dry.contains("cp -f opt/helm"), "{dry}");
    assert!(dry.contains("--one-top-level=/opt/cni/bin/"), "{dry}");
}

/// Bad input to the new flags: a clear error naming the flag and what to do,
/// before anything is read or changed.
#[test]
fn bad_label_env_and_a_cluster_that_was_never_saved_are_refused_with_what_to_do() {
    let env = Env::new();
    let case = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/kubefiles/build-flags"
    );
    let before = env.store_state();
    for (flag, value) in [("--label", "=x"), ("--env", "=x")] {
        let stderr = env.fails(&["build", "-t", "a:1", flag, value, case]);
        assert!(
            stderr.contains(&format!(
                "{flag} \"=x\": the name before '=' is empty; use {flag} KEY=VALUE"
            )),
            "{stderr}"
        );
    }
    assert_eq!(env.store_state(), before, "nothing was written");

    let stderr = env.fails(&["run", "calico:1", "--cluster", "nope"]);
    assert!(
        stderr.contains("there is no saved cluster nope")
            && stderr.contains("--cluster nope --masters IPS"),
        "{stderr}"
    );
    let stderr = env.fails(&["run", "--cluster", "nope"]);
    assert!(stderr.contains("name the application images"), "{stderr}");
}
