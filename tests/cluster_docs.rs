//! What a newcomer reads about clusters: the `-e` keys `run --help` lists,
//! and the Clusterfile `sealrs gen` writes for `run -f`.

use crate::common::Env;
use crate::layout::example;

/// Each runtime's `-e` examples from `run --help`, as (runtime, KEY=VALUE).
fn help_env_examples(env: &Env) -> Vec<(String, String)> {
    let help = env.ok(&["run", "--help"]);
    let section = help
        .split_once("Cluster env keys (-e KEY=VALUE)")
        .expect("run --help lists the env keys")
        .1;
    let mut runtime = String::new();
    let mut out = Vec::new();
    for line in section.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            runtime = name.to_string();
        } else if let Some(pair) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            out.push((runtime.clone(), pair.to_string()));
        }
    }
    out
}

fn build(env: &Env, runtime: &str) -> String {
    let dir = example(env, runtime, runtime);
    let tag = format!("{runtime}-cluster:1");
    env.ok(&[
        "build",
        "-q",
        "--no-images",
        "--platform",
        "linux/amd64",
        "-t",
        &tag,
        &dir,
    ]);
    tag
}

#[test]
fn every_env_key_run_help_lists_changes_that_runtimes_plans() {
    let env = Env::new();
    let examples = help_env_examples(&env);
    for runtime in ["k0s", "k3s", "kubeadm"] {
        assert!(
            examples.iter().filter(|(r, _)| r == runtime).count() >= 3,
            "{runtime}: {examples:?}"
        );
    }
    for runtime in ["k0s", "k3s", "kubeadm"] {
        let tag = build(&env, runtime);
        let hosts = ["--masters", "10.250.200.11", "--nodes", "10.250.200.21"];
        let plan = |extra: &[&str]| {
            let mut args = vec!["run", tag.as_str(), "--dry-run"];
            args.extend(hosts);
            args.extend(extra);
            env.ok(&args)
        };
        let without = plan(&[]);
        for (_, pair) in examples.iter().filter(|(r, _)| r == runtime) {
            let with = plan(&["-e", pair]);
            // The env itself is printed once at the top; the plans must change too.
            let steps = |out: &str| {
                out.lines()
                    .filter(|l| !l.contains(pair.as_str()) && !l.starts_with("env"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_ne!(
                steps(&with),
                steps(&without),
                "{runtime}: -e {pair} changes nothing:\n{with}"
            );
        }
    }
}

#[test]
fn gen_writes_a_clusterfile_that_run_reads_back_as_the_same_cluster() {
    let env = Env::new();
    let tag = build(&env, "k3s");
    let flags = [
        "--masters",
        "10.250.200.11,10.250.200.12,10.250.200.13",
        "--nodes",
        "10.250.200.21:2222",
        "-e",
        "POD_CIDR=10.42.0.0/16",
        "-e",
        "HOOK_ARG=a b $c \"d\"",
        "--cluster",
        "demo",
        "--ssh-user",
        "root",
        "--port",
        "2200",
    ];
    let mut gen = vec!["gen", tag.as_str()];
    gen.extend(flags);
    let file = env.ok(&gen);
    assert!(file.starts_with("# A sealrs Clusterfile"), "{file}");
    env.write("Clusterfile", &file);
    let from_file = env.ok(&["run", "-f", "Clusterfile", "--dry-run"]);
    let mut run = vec!["run", tag.as_str(), "--dry-run"];
    run.extend(flags);
    assert_eq!(from_file, env.ok(&run));
    assert!(from_file.contains("HOOK_ARG"), "{from_file}");
}

#[test]
fn gen_refuses_bad_flags_as_run_does_and_writes_nothing() {
    let env = Env::new();
    let out = env.run(&[
        "gen",
        "--masters",
        "10.250.200.11",
        "-e",
        "1X=y",
        "--nodes",
        "10.250.200.11",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-e") && err.contains("duplicate address 10.250.200.11"),
        "{err}"
    );
}

#[test]
fn the_complete_example_of_docs_clusterfile_is_one_run_reads() {
    let env = Env::new();
    let tag = build(&env, "k3s");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/clusterfile.md"))
        .unwrap();
    let yaml = doc
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("docs/clusterfile.md has a yaml example")
        .0;
    env.write("Clusterfile", yaml);
    let out = env.ok(&["run", "-f", "Clusterfile", &tag, "--dry-run"]);
    assert_eq!(out.matches("): join").count(), 4, "{out}");
    assert!(out.contains("registryDomain=sealos.hub"), "{out}");
}

#[test]
fn kubeadm_with_several_masters_and_no_endpoint_warns_that_all_point_at_the_first() {
    let env = Env::new();
    let tag = build(&env, "kubeadm");
    let masters = ["--masters", "10.250.200.11,10.250.200.12,10.250.200.13"];
    let out = env.run(&["run", &tag, "--dry-run", masters[0], masters[1]]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: 3 control planes and no -e CONTROL_PLANE_ENDPOINT")
            && err.contains("first master 10.250.200.11:6443"),
        "{err}"
    );
    let with = env.run(&[
        "run",
        &tag,
        "--dry-run",
        masters[0],
        masters[1],
        "-e",
        "CONTROL_PLANE_ENDPOINT=lb.example.com:6443",
    ]);
    assert!(with.status.success(), "{with:?}");
    assert!(!String::from_utf8_lossy(&with.stderr).contains("CONTROL_PLANE_ENDPOINT"));
    let one = env.run(&["run", &tag, "--dry-run", "--masters", "10.250.200.11"]);
    assert!(
        !String::from_utf8_lossy(&one.stderr).contains("warning"),
        "{one:?}"
    );
}
