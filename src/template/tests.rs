use std::collections::BTreeMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ok(text: &str, pairs: &[(&str, &str)]) -> String {
    match render(text, &env(pairs)) {
        Ok(out) => out,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn fails(text: &str, pairs: &[(&str, &str)]) -> TemplateError {
    match render(text, &env(pairs)) {
        Ok(out) => panic!("{text:?} rendered {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn fields_and_defaults_render_as_the_labring_manifests_use_them() {
    let t = "namespace: {{ default \"kubernetes-dashboard\" .NAMESPACE }}\nserver: {{.server}}\n";
    assert_eq!(
        ok(t, &[("server", "nfs")]),
        "namespace: kubernetes-dashboard\nserver: nfs\n"
    );
    assert_eq!(
        ok(t, &[("server", "nfs"), ("NAMESPACE", "dash")]),
        "namespace: dash\nserver: nfs\n"
    );
    // An empty value is empty for default, as in sprig.
    assert_eq!(ok("{{ default \"x\" .A }}", &[("A", "")]), "x");
    // Pipelines: the value is the last argument.
    assert_eq!(ok("{{ .A | default \"y\" }}", &[]), "y");
    assert_eq!(ok("{{ default \"0\" .mode | quote }}", &[]), "\"0\"");
    assert_eq!(
        ok("{{ default \"/d\" .dir | quote }}", &[("dir", "/var/x\"y")]),
        "\"/var/x\\\"y\""
    );
}

#[test]
fn values_are_inserted_byte_for_byte_and_never_read_as_template() {
    let evil = "pa$$w0rd `id` '\"\n{{ .B }} $(x) \\";
    assert_eq!(
        ok("p: \"{{ .P }}\"", &[("P", evil), ("B", "no")]),
        format!("p: \"{evil}\"")
    );
}

#[test]
fn an_undefined_value_printed_is_an_error_naming_it_and_where() {
    let e = fails("a: 1\nnamespace: {{ .NAMESPACE }}\n", &[]);
    assert_eq!((e.line, e.col), (2, 12));
    assert!(e.message.contains("NAMESPACE is not defined"), "{e}");
    assert!(e.message.contains("default"), "{e}");
    // But it is falsy, empty and unequal, as in Go.
    assert_eq!(ok("{{ if .X }}y{{ else }}n{{ end }}", &[]), "n");
    assert_eq!(ok("{{ if not .X }}n{{ end }}", &[]), "n");
    assert_eq!(ok("{{ if eq .X \"\" }}e{{ else }}u{{ end }}", &[]), "u");
    assert_eq!(ok("{{ if ne .X \"a\" }}ne{{ end }}", &[]), "ne");
    // A function that needs a string refuses it.
    let e = fails("{{ contains \"m\" .RUN }}", &[]);
    assert!(e.message.contains("RUN is not defined"), "{e}");
}

#[test]
fn if_else_if_else_and_trim_markers() {
    let t = "a\n  {{- if .disable }}\n  x: false\n  {{- else if .other }}\n  x: other\n  {{- else }}\n  x: true\n  {{- end }}\nb";
    assert_eq!(ok(t, &[]), "a\n  x: true\nb");
    assert_eq!(ok(t, &[("disable", "1")]), "a\n  x: false\nb");
    assert_eq!(ok(t, &[("other", "1")]), "a\n  x: other\nb");
    assert_eq!(ok("x  {{- /* note */ -}}  \n y", &[]), "xy");
    assert_eq!(ok("{{ if .A -}}\n  yes\n{{- end }}", &[("A", "1")]), "yes");
    // `{{-3}}` is a number, not a trim marker.
    assert_eq!(ok("a {{-3}}", &[]), "a -3");
}

#[test]
fn the_k3s_and_kubelet_unit_conditions_work_as_in_sealos() {
    let k3s = "ExecStart=/usr/bin/k3s {{ if and (.SEALOS_SYS_RUN_MODE) (contains \"master\" .SEALOS_SYS_RUN_MODE) }}server{{ else }}agent{{end}}";
    assert_eq!(
        ok(k3s, &[("SEALOS_SYS_RUN_MODE", "master,node")]),
        "ExecStart=/usr/bin/k3s server"
    );
    assert_eq!(
        ok(k3s, &[("SEALOS_SYS_RUN_MODE", "node")]),
        "ExecStart=/usr/bin/k3s agent"
    );
    // `and` stops at the undefined value: contains never sees it.
    assert_eq!(ok(k3s, &[]), "ExecStart=/usr/bin/k3s agent");
    let kubelet = "{{ if or (not .V) (eq .V \"\") (not (semverCompare \"^1.27.0\" .V)) }}--container-runtime=remote{{ end }}";
    assert_eq!(
        ok(kubelet, &[("V", "v1.26.5")]),
        "--container-runtime=remote"
    );
    assert_eq!(ok(kubelet, &[("V", "v1.29.1")]), "");
    // `or` stops before semverCompare sees an empty version.
    assert_eq!(ok(kubelet, &[("V", "")]), "--container-runtime=remote");
    assert_eq!(ok(kubelet, &[]), "--container-runtime=remote");
    let e = fails("{{ semverCompare \"^1.27.0\" .V }}", &[("V", "")]);
    assert!(e.message.contains("error calling semverCompare"), "{e}");
    let shim = "{{ if and (ne .V \"\") (semverCompare \"^1.26.0\" .V) }}version: v1{{ else }}version: v1alpha2{{ end }}";
    assert_eq!(ok(shim, &[("V", "v1.28.0")]), "version: v1");
    assert_eq!(ok(shim, &[("V", "v1.25.0")]), "version: v1alpha2");
    assert_eq!(
        ok("{{ if ge .V \"v1.26\" }}new{{ end }}", &[("V", "v1.27.0")]),
        "new"
    );
}

#[test]
fn variables_with_and_range() {
    let t = "{{ $port := \"80\" }}{{ if .P }}{{ $port = .P }}{{ end }}port={{ $port }}";
    assert_eq!(ok(t, &[]), "port=80");
    assert_eq!(ok(t, &[("P", "8080")]), "port=8080");
    assert_eq!(
        ok(
            "{{ range $i, $v := splitList \",\" .L }}{{ $i }}={{ $v }};{{ end }}",
            &[("L", "a,b")]
        ),
        "0=a;1=b;"
    );
    assert_eq!(ok("{{ range .Nope }}x{{ else }}none{{ end }}", &[]), "none");
    assert_eq!(
        ok("{{ with .A }}[{{ . }}]{{ else }}-{{ end }}", &[("A", "v")]),
        "[v]"
    );
    assert_eq!(ok("{{ with .A }}[{{ . }}]{{ else }}-{{ end }}", &[]), "-");
    assert_eq!(
        ok(
            "{{ with .A }}{{ $.B }}{{ end }}",
            &[("A", "1"), ("B", "root")]
        ),
        "root"
    );
    let e = fails("{{ if .A }}{{ $x := 1 }}{{ end }}{{ $x }}", &[("A", "1")]);
    assert!(e.message.contains("undefined variable $x"), "{e}");
}

#[test]
fn sprig_and_builtin_functions() {
    let e = &[("S", "Hello World"), ("E", "")];
    assert_eq!(
        ok("{{ .S | lower }} {{ upper .S }}", e),
        "hello world HELLO WORLD"
    );
    assert_eq!(
        ok("{{ .S | replace \"World\" \"There\" }}", e),
        "Hello There"
    );
    assert_eq!(
        ok("{{ hasPrefix \"He\" .S }} {{ hasSuffix \"x\" .S }}", e),
        "true false"
    );
    assert_eq!(
        ok("{{ trimSuffix \"ld\" .S }}|{{ trimPrefix \"Hel\" .S }}", e),
        "Hello Wor|lo World"
    );
    assert_eq!(
        ok("{{ empty .E | ternary \"empty\" \"full\" }}", e),
        "empty"
    );
    assert_eq!(
        ok("{{ \"aGk=\" | b64dec }} {{ b64enc \"hi\" }}", e),
        "hi aGk="
    );
    assert_eq!(ok("{{ coalesce .E .Nope \"c\" }}", e), "c");
    assert_eq!(
        ok("{{ len .S }} {{ printf \"%s-%d-%q\" .S 3 \"a\" }}", e),
        "11 Hello World-3-\"a\""
    );
    assert_eq!(ok("{{ list \"a\" \"b\" | join \",\" }}", e), "a,b");
    assert_eq!(ok("{{ squote .S }}", e), "'Hello World'");
    assert_eq!(ok("x:{{ \"a\\nb\" | nindent 2 }}", e), "x:\n  a\n  b");
    assert_eq!(ok("{{ index (splitList \"/\" \"a/b\") 1 }}", e), "b");
    assert_eq!(ok("{{ eq .S \"x\" \"Hello World\" }}", e), "true");
    assert_eq!(ok("{{ print 1 2 \"a\" }}", e), "1 2a");
    let err = fails("{{ eq 1 \"1\" }}", e);
    assert!(err.message.contains("incompatible types"), "{err}");
}

#[test]
fn anything_unsupported_is_refused_at_parse_time_with_line_and_column() {
    let e = fails("ok\n  {{ toYamlish .A }}", &[("A", "x")]);
    assert_eq!((e.line, e.col), (2, 6));
    assert!(
        e.message.contains("function \"toYamlish\" not defined"),
        "{e}"
    );
    // Parse errors come before rendering: nothing before them is output.
    let e = fails("{{ .A }}\n{{ define \"x\" }}{{ end }}", &[("A", "x")]);
    assert_eq!(e.line, 2);
    assert!(e.message.contains("not supported"), "{e}");
    for (text, want) in [
        ("{{ if .A }}x", "no matching {{end}}"),
        ("x{{ end }}", "unexpected {{end}}"),
        ("{{ .A ", "unclosed action"),
        ("{{ \"abc }}", "unterminated string"),
        ("{{ $y }}", "undefined variable $y"),
        ("{{ }}", "missing value"),
        ("{{ .A | }}", "missing command"),
        ("{{ .A .B }}", "non-function"),
        ("{{ (.A }}", "unclosed left paren"),
        ("{{ else }}", "unexpected {{else}}"),
    ] {
        let e = fails(text, &[("A", "1"), ("B", "2")]);
        assert!(e.message.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn text_without_actions_and_lone_braces_are_kept() {
    assert_eq!(ok("", &[]), "");
    assert_eq!(ok("a { b } c}} d", &[]), "a { b } c}} d");
    assert_eq!(ok("ünï {{ .A }} ✓", &[("A", "ß")]), "ünï ß ✓");
}

#[test]
fn template_paths_are_those_sealos_renders() {
    for p in [
        "etc/a.yaml.tmpl",
        "scripts/init.sh.tmpl",
        "manifests/sub/x.yaml.tmpl",
    ] {
        assert!(is_template(p), "{p}");
    }
    for p in [
        "charts/a.tmpl",
        "etc/a.yaml",
        "manifests/.tmpl",
        "etcx/a.tmpl",
        "x.tmpl",
    ] {
        assert!(!is_template(p), "{p}");
    }
    let files = [
        ("manifests/a.yaml.tmpl", "n: {{ .N }}"),
        ("manifests/b.yaml", "{{ .Untouched }}"),
        ("etc/c.tmpl", "{{ .Missing }}"),
        ("scripts/d.sh.tmpl", "{{ nope }}"),
    ];
    let errors = render_files(files, &env(&[("N", "1")])).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("etc/c.tmpl:1:1: Missing is not defined"),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("scripts/d.sh.tmpl:1:4: function \"nope\""),
        "{shown:?}"
    );
    let out = render_files(files[..2].iter().copied(), &env(&[("N", "1")])).unwrap();
    assert_eq!(
        out,
        vec![("manifests/a.yaml".to_string(), "n: 1".to_string())]
    );
}

#[test]
fn host_env_layers_image_cluster_and_host_env_and_sets_the_sealos_keys() {
    let image = vec![
        ("A".to_string(), "image".to_string()),
        ("B".to_string(), "image".to_string()),
        ("C".to_string(), "image".to_string()),
        ("SEALOS_SYS_RUN_MODE".to_string(), "master".to_string()),
    ];
    let cluster = env(&[
        ("B", "cluster"),
        ("C", "cluster"),
        ("SEALOS_SYS_KUBE_VERSION", "x"),
    ]);
    let host = env(&[("C", "host")]);
    let roles = ["node".to_string()];
    let out = host_env(&image, &cluster, &host, Some("v1.29.1"), &roles);
    assert_eq!(out["A"], "image");
    assert_eq!(out["B"], "cluster");
    assert_eq!(out["C"], "host");
    assert_eq!(out[KUBE_VERSION], "v1.29.1");
    assert_eq!(out[RUN_MODE], "node");
    assert_eq!(out[SEALOS_VERSION], SEALOS_COMPAT_VERSION);
}

#[test]
fn the_remaining_sprig_functions_behave_as_sprig() {
    let e = &[("S", "  x,y  "), ("W", "hello big world")];
    assert_eq!(ok("[{{ trim .S }}]", e), "[x,y]");
    assert_eq!(ok("{{ trimAll \" \" .S }}", e), "x,y");
    assert_eq!(ok("{{ title .W }}", e), "Hello Big World");
    assert_eq!(ok("{{ toString 42 }}", e), "42");
    assert_eq!(ok("{{ (split \",\" \"a,b\")._1 }}", e), "b");
    assert_eq!(ok("{{ len (list 1 2 3) }}", e), "3");
    assert_eq!(ok("{{ if lt 1 2 }}lt{{ end }}{{ if le 2 2 }}le{{ end }}{{ if gt \"b\" \"a\" }}gt{{ end }}", e), "ltlegt");
    assert_eq!(ok("{{ println \"a\" 1 }}", e), "a 1\n");
    assert_eq!(ok("{{ ternary \"y\" \"n\" (eq .W \"x\") }}", e), "n");
    assert_eq!(
        ok(
            "{{ range $k, $v := (split \" \" .W) }}{{ $k }}={{ $v }} {{ end }}",
            e
        ),
        "_0=hello _1=big _2=world "
    );
    let err = fails("{{ printf \"%x\" 1 }}", e);
    assert!(err.message.contains("%x is not supported"), "{err}");
    let err = fails("{{ index .W 1 }}", e);
    assert!(err.message.contains("cannot index string"), "{err}");
}
