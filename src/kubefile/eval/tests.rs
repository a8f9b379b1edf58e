//! The expected configs in `buildah_*` tests were observed from buildah
//! 1.28 (`buildah --storage-driver vfs bud` on the same file, then
//! `inspect --type image`), label io.buildah.version left out.

use super::*;
use crate::kubefile::parse;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn opts(build_args: &[(&str, &str)]) -> EvalOptions {
    EvalOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target_os: "linux".into(),
        target_arch: "amd64".into(),
    }
}

fn run_text(text: &str, build_args: &[(&str, &str)]) -> Result<Stage, KubefileError> {
    let kf = parse(text, "Kubefile")?;
    let opts = opts(build_args);
    evaluate_from(&kf, &opts)?;
    evaluate(&kf, &opts, ConfigState::scratch())
}

fn run_file(name: &str, build_args: &[(&str, &str)]) -> Stage {
    let path = format!(
        "{}/tests/data/kubefiles/{name}/Kubefile",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("test Kubefile");
    run_text(&text, build_args).expect("evaluates")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    env(pairs).into_iter().collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn buildah_sealos_rootfs_keeps_escaped_dollar_and_json_cmd_verbatim() {
    let stage = run_file("sealos-rootfs", &[]);
    assert_eq!(stage.config.env, env(&[("PATH", PATH), ("NAME", "calico")]));
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("check", "$foo"),
            ("sealos.io.type", "rootfs"),
            ("version", "v1")
        ])
    );
    assert_eq!(
        stage.config.cmd,
        Some(strings(&["kubectl apply -f $(VAR)"]))
    );
    let dests: Vec<_> = stage.copies.iter().map(|c| c.dest.as_str()).collect();
    assert_eq!(dests, ["/etc", "/scripts/"]);
}

#[test]
fn buildah_arg_without_value_then_env_default() {
    let stage = run_file("arg-env-default", &[]);
    assert_eq!(
        stage.config.env,
        env(&[
            ("PATH", PATH),
            ("NAME", "calico"),
            ("OTHER", "fallback value"),
            ("PLUS", "set"),
            ("EMPTYPLUS", "")
        ])
    );
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("emptyplus", "xx"),
            ("name", "calico"),
            ("other", "fallback value"),
            ("plus", "set")
        ])
    );
}

#[test]
fn buildah_build_arg_overrides_declared_arg_and_unused_ones_are_listed() {
    let text = "FROM scratch\nARG NAME\nENV NAME=${NAME:-\"calico\"}\nARG DEF=d\nLABEL def=$DEF\n";
    let stage = run_text(text, &[("NAME", "flannel"), ("DEF", "x"), ("ZZ", "1")]).unwrap();
    assert_eq!(
        stage.config.env,
        env(&[("PATH", PATH), ("NAME", "flannel")])
    );
    assert_eq!(stage.config.labels, labels(&[("def", "x")]));
    assert_eq!(stage.unused_build_args, ["ZZ"]);
}

#[test]
fn buildah_env_forms_quotes_and_in_place_replacement() {
    let stage = run_file("env-forms", &[]);
    assert_eq!(
        stage.config.env,
        env(&[
            ("PATH", PATH),
            ("A", "3"),
            ("B", "two words"),
            ("LEGACY", "value with   spaces"),
            ("C", "1-two words"),
            ("D", "single $A"),
            ("E", "double 1"),
            ("F", "a b"),
            ("G", "$A")
        ])
    );
    assert_eq!(
        stage.config.labels,
        labels(&[("c", "1-two words"), ("legacy", "value with   spaces")])
    );
}

#[test]
fn buildah_entrypoint_keeps_cmd_set_in_same_file() {
    let stage = run_file("entrypoint-cmd", &[]);
    assert_eq!(stage.config.entrypoint, Some(strings(&["/bin/entry"])));
    assert_eq!(stage.config.cmd, Some(strings(&["/bin/server", "--flag"])));
}

#[test]
fn buildah_shell_forms_are_wrapped_in_sh_c_unexpanded() {
    let stage = run_file("entrypoint-first", &[]);
    assert_eq!(
        stage.config.entrypoint,
        Some(strings(&["/bin/sh", "-c", "/bin/entry --x \"$HOME\""]))
    );
    assert_eq!(
        stage.config.cmd,
        Some(strings(&["/bin/sh", "-c", "run it"]))
    );
}

#[test]
fn entrypoint_drops_the_base_images_cmd() {
    let kf = parse("FROM base\nENTRYPOINT [\"/e\"]\n", "K").unwrap();
    let base = ConfigState {
        cmd: Some(strings(&["/base-cmd"])),
        ..ConfigState::scratch()
    };
    let stage = evaluate(&kf, &opts(&[]), base).unwrap();
    assert_eq!(stage.config.cmd, None);
}

#[test]
fn buildah_empty_json_entrypoint_clears_it_and_keeps_cmd() {
    let stage = run_text("FROM scratch\nCMD [\"x\"]\nENTRYPOINT []\n", &[]).unwrap();
    assert_eq!(stage.config.entrypoint, None);
    assert_eq!(stage.config.cmd, Some(strings(&["x"])));
    let stage = run_text("FROM scratch\nCMD [\"x\"]\nCMD []\n", &[]).unwrap();
    assert_eq!(stage.config.cmd, None);
}

#[test]
fn buildah_workdir_relative_joins_and_cleans_absolute_is_verbatim() {
    let stage = run_text(
        "FROM scratch\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\n",
        &[],
    )
    .unwrap();
    assert_eq!(stage.config.working_dir.as_deref(), Some("/a/c/d"));
    let stage = run_text("FROM scratch\nWORKDIR rel\nWORKDIR /x//y/./z/\n", &[]).unwrap();
    assert_eq!(stage.config.working_dir.as_deref(), Some("/x//y/./z/"));
    let stage = run_text("FROM scratch\nENV D=/opt\nWORKDIR $D/x\nUSER ${D}\n", &[]).unwrap();
    assert_eq!(stage.config.working_dir.as_deref(), Some("/opt/x"));
    assert_eq!(stage.config.user.as_deref(), Some("/opt"));
}

#[test]
fn copy_destinations_resolve_against_workdir() {
    let stage = run_file("workdir-copy", &[]);
    assert_eq!(stage.config.working_dir.as_deref(), Some("/"));
    let got: Vec<_> = stage
        .copies
        .iter()
        .map(|c| {
            (
                c.sources.join(","),
                c.dest.as_str(),
                c.chmod,
                c.extract_archives,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("f".to_string(), "/a/c/d/rel/", None, false),
            ("f,g".to_string(), "/a/c/d/multi/", None, false),
            ("f".to_string(), "/abs/f", Some(0o644), true),
            ("f".to_string(), "/a/c/d/with space/", None, false),
            ("f".to_string(), "/", None, false),
        ]
    );
}

#[test]
fn buildah_metadata_ports_volumes_user_signal() {
    let stage = run_file("metadata", &[]);
    let c = &stage.config;
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.author.as_deref(), Some("Jane Doe <jane@example.com>"));
    let mut ports = c.exposed_ports.clone();
    ports.sort();
    assert_eq!(ports, ["443/tcp", "53/udp", "80/tcp", "80/udp", "8080/tcp"]);
    let mut volumes = c.volumes.clone();
    volumes.sort();
    assert_eq!(volumes, ["/a", "/b", "/data", "/x y"]);
    assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
}

#[test]
fn buildah_expose_skips_known_port_numbers_and_keeps_protocol_case() {
    let text = "FROM scratch\nEXPOSE 80/udp\nEXPOSE 80\nEXPOSE 8000-8002 90/TCP\nENV P=\"1 2\"\nEXPOSE $P\n";
    let stage = run_text(text, &[]).unwrap();
    assert_eq!(
        stage.config.exposed_ports,
        ["80/udp", "8000-8002/tcp", "90/TCP", "1/tcp", "2/tcp"]
    );
}

#[test]
fn buildah_volume_json_is_expanded_and_words_are_not_split() {
    let text = "FROM scratch\nENV X=ex P=\"a b\"\nVOLUME [\"/data/$X\", \"/b\"]\nVOLUME $P\n";
    let stage = run_text(text, &[]).unwrap();
    assert_eq!(stage.config.volumes, ["/data/ex", "/b", "a b"]);
}

#[test]
fn buildah_escape_directive_does_not_reach_the_lexer() {
    // buildah honours `# escape=`` for continuations but still expands
    // with `\` as the escape: `\p` loses its backslash.
    let stage = run_file("escape-backtick", &[]);
    assert_eq!(
        stage.config.env,
        env(&[("PATH", PATH), ("P", "C:dir"), ("Q", "two")])
    );
    assert_eq!(stage.config.labels, labels(&[("a", "`"), ("b", "c:path")]));
}

#[test]
fn buildah_comments_and_blank_lines_inside_continuations() {
    let stage = run_file("continuation-comments", &[]);
    assert_eq!(
        stage.config.labels,
        labels(&[("one", "1"), ("three", "3"), ("two", "2")])
    );
    assert_eq!(stage.config.env, env(&[("PATH", PATH), ("lower", "case")]));
}

#[test]
fn buildah_args_before_from_are_only_for_from_unless_redeclared() {
    let stage = run_file("pre-from-args", &[]);
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("base", "xx"),
            ("other", "none"),
            ("version", "1.0"),
            ("withdef", "default")
        ])
    );
    let stage = run_file(
        "pre-from-args",
        &[("VERSION", "2.0"), ("OTHER", "o"), ("UNUSED", "1")],
    );
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("base", "xx"),
            ("other", "o"),
            ("version", "2.0"),
            ("withdef", "default")
        ])
    );
    assert_eq!(stage.unused_build_args, ["UNUSED"]);
}

#[test]
fn from_sees_pre_from_args_and_build_args() {
    let kf = parse("ARG BASE=scratch\nFROM ${BASE}\n", "K").unwrap();
    assert_eq!(evaluate_from(&kf, &opts(&[])).unwrap(), BaseImage::Scratch);
    let got = evaluate_from(&kf, &opts(&[("BASE", "docker.io/x:1")])).unwrap();
    assert!(
        matches!(got, BaseImage::Image { name, location } if name == "docker.io/x:1" && location.line == 2 && location.column == 6)
    );
}

#[test]
fn buildah_quotes_in_label_keys_and_values() {
    let stage = run_file("quotes", &[]);
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("back", "a\\b"),
            ("brace", "exy"),
            ("dollar", "$"),
            ("esc", "q\"q"),
            ("key with space", "v 1"),
            ("mixed", "ab exd"),
            ("single", "$X"),
            ("tail", "ab")
        ])
    );
}

#[test]
fn buildah_platform_args_need_declaring() {
    let stage = run_file("platform-args", &[]);
    assert_eq!(
        stage.config.labels,
        labels(&[
            ("arch", "amd64"),
            ("barch", "amd64"),
            ("bplat", "linux/amd64"),
            ("notdeclared", "xx"),
            ("os", "linux"),
            ("platform", "linux/amd64")
        ])
    );
}

#[test]
fn buildah_env_wins_over_arg_and_sees_base_path() {
    let stage = run_file("env-over-arg", &[]);
    assert_eq!(
        stage.config.env,
        env(&[("PATH", &format!("/opt/bin:{PATH}")), ("X", "env")])
    );
    assert_eq!(stage.config.labels, labels(&[("path", PATH), ("x", "env")]));
}

#[test]
fn buildah_arg_multi_and_legacy_env_with_expansion() {
    let stage = run_text("FROM scratch\nARG A=1 B=2\nLABEL a=$A b=$B\n", &[]).unwrap();
    assert_eq!(stage.config.labels, labels(&[("a", "1"), ("b", "2")]));
    let stage = run_text(
        "FROM scratch\nENV A=one\nENV K $A \"two  three\" 'four'\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        stage.config.env[2],
        ("K".into(), "one two  three four".into())
    );
    let stage = run_text(
        "FROM scratch\nLABEL a=b=c \"x\"y=z\nENV \"A\"=1 B= C=\"\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(stage.config.labels, labels(&[("a", "b=c"), ("xy", "z")]));
    assert_eq!(
        &stage.config.env[1..],
        env(&[("A", "1"), ("B", ""), ("C", "")])
    );
}

#[test]
fn buildah_stopsignal_accepts_numbers_and_lowercase_names() {
    for ok in ["9", "kill", "SIGRTMIN+3", "RTMAX-14", "term"] {
        let stage = run_text(&format!("FROM scratch\nSTOPSIGNAL {ok}\n"), &[]).unwrap();
        assert_eq!(stage.config.stop_signal.as_deref(), Some(ok));
    }
}

fn error_of(text: &str) -> String {
    run_text(text, &[]).unwrap_err().to_string()
}

#[test]
fn evaluation_errors_point_at_the_word() {
    assert_eq!(
            error_of("FROM scratch\nSTOPSIGNAL NOPE\n"),
            "Kubefile:2:12: invalid STOPSIGNAL `NOPE`; expected a signal name (SIGTERM, KILL) or a number"
        );
    assert_eq!(
        error_of("FROM scratch\nVOLUME [\"\"]\n"),
        "Kubefile:2:8: VOLUME path is empty; expected a path such as /data"
    );
    assert_eq!(
        error_of("FROM scratch\nCOPY --chmod=999 f /f\n"),
        "Kubefile:2:14: invalid --chmod value `999`; expected octal permissions such as 0644"
    );
    assert_eq!(
        error_of("FROM scratch\nLABEL ok=1 a=\"x\n"),
        "Kubefile:2:14: cannot expand `\"x`: unterminated double quote; close it with \""
    );
    assert_eq!(
            error_of("FROM scratch\nLABEL a=${U-d}\n"),
            "Kubefile:2:9: cannot expand `${U-d}`: unsupported substitution `${U`; expected ${U}, ${U:-default} or ${U:+alternative}"
        );
    assert_eq!(
            error_of("FROM scratch\nENV a=${U:?x}\n"),
            "Kubefile:2:7: cannot expand `${U:?x}`: unsupported modifier `:?` in ${U:...}; expected :- or :+"
        );
    assert_eq!(
        error_of("FROM scratch\nENV =x\n"),
        "Kubefile:2:5: empty name in `=x`; expected NAME=VALUE"
    );
    assert_eq!(
        error_of("FROM $NOPE\n"),
        "Kubefile:1:6: FROM has no arguments; expected an image name; this one expands to nothing"
    );
}

#[test]
fn clean_rooted_matches_go_filepath_clean() {
    assert_eq!(clean_rooted("/a/../../b/./c//"), "/b/c");
    assert_eq!(clean_rooted("/"), "/");
    assert_eq!(clean_rooted(""), "/");
}

#[test]
fn corpus_inputs_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kubefile-corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let text = String::from_utf8_lossy(&bytes);
        let _ = run_text(&text, &[("NAME", "x y"), ("VERSION", "$X")]);
        if let Ok(kf) = parse(&text, "corpus") {
            let _ = evaluate(&kf, &EvalOptions::default(), ConfigState::default());
        }
        count += 1;
    }
    assert!(count >= 10, "corpus has {count} files");
}
