use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lines(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// Runs the script of `lines` with bash as a host would, `env` as its
/// environment and `rec` recording each call's argv; returns the calls.
fn run(lines: &[String], env: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let dir = std::env::temp_dir();
    let script = script(lines, dir.to_str().unwrap(), env).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "rec() {{ printf '%s\\0' \"$@\"; printf '\\1'; }}\n{script}"
        ))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\u{1}')
        .map(|call| call.split_terminator('\0').map(String::from).collect())
        .collect()
}

#[test]
fn an_unquoted_reference_splits_into_words_as_sealos_gives_them() {
    let e = env(&[("NAME", "calico"), ("HELM_OPTS", "--set a=b --set c=d")]);
    let calls = run(
        &lines(&["rec upgrade -i $(NAME) charts/calico $(HELM_OPTS)"]),
        &e,
    );
    assert_eq!(
        calls,
        [[
            "upgrade",
            "-i",
            "calico",
            "charts/calico",
            "--set",
            "a=b",
            "--set",
            "c=d"
        ]]
    );
}

#[test]
fn values_are_data_never_evaluated_nor_globbed() {
    let value = "pa$$w0rd\"`id`'$(id) * \\x";
    let e = env(&[("PASS", value), ("EMPTY", "")]);
    let calls = run(
        &lines(&[
            "rec --password=$(PASS) $(EMPTY)",
            "rec \"--password=$(PASS)\" '$(PASS)x'",
        ]),
        &e,
    );
    assert_eq!(
        calls[0],
        ["--password=pa$$w0rd\"`id`'$(id)", "*", "\\x"],
        "split at blanks, nothing else"
    );
    assert_eq!(
        calls[1],
        [format!("--password={value}"), format!("{value}x")]
    );
}

#[test]
fn a_newline_in_a_value_splits_as_a_blank_and_reaches_a_quoted_use_byte_for_byte() {
    let value = "a\nb c";
    let e = env(&[("V", value)]);
    let calls = run(&lines(&["rec $(V) \"$(V)\""]), &e);
    assert_eq!(calls, [["a", "b", "c", value]]);
}

#[test]
fn entrypoint_then_cmd_each_one_command_joined_so_that_the_last_decides() {
    assert_eq!(
        command_lines(
            &lines(&["echo one"]),
            &lines(&["echo two", " ", "echo three"]),
            None
        ),
        ["echo one", "echo two", "echo three"]
    );
    let over = lines(&["echo mine"]);
    assert_eq!(
        command_lines(&lines(&["echo one"]), &lines(&["echo two"]), Some(&over)),
        ["echo one", "echo mine"]
    );
    assert_eq!(script(&[], "/", &env(&[])), None);

    // Each runs in the image's directory, a comment ends only its own
    // command, and a failure does not stop the next (sealos joins with `; `).
    let e = env(&[]);
    let calls = run(
        &lines(&["cd / && rec $PWD # a comment", "false", "rec $PWD"]),
        &e,
    );
    let tmp = std::env::temp_dir().display().to_string();
    assert_eq!(calls, [vec!["/".to_string()], vec![tmp]]);
}

#[test]
fn unknown_names_command_substitutions_and_escapes_are_left_alone() {
    let e = env(&[("A", "1")]);
    let mut split = BTreeSet::new();
    assert_eq!(
        rewrite("echo $(hostname) \\$(A) $$(A) $(A", &e, &mut split),
        "echo $(hostname) \\$(A) $$(A) $(A"
    );
    assert!(split.is_empty());
    assert_eq!(
        rewrite("x=$(A) \"$(A)\" '$(A)'", &e, &mut split),
        "x=\"${__sealrs_words_A[@]}\" \"${A}\" ''\"${A}\"''"
    );
    assert_eq!(split.into_iter().collect::<Vec<_>>(), ["A"]);
}
