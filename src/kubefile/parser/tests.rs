use super::*;
use crate::kubefile::SUPPORTED_INSTRUCTIONS;

fn err(text: &str) -> String {
    parse(text, "K").unwrap_err().to_string()
}

fn only(text: &str) -> Instruction {
    let kf = parse(text, "K").unwrap();
    kf.instructions.into_iter().last().unwrap()
}

#[test]
fn keywords_are_case_insensitive_and_located() {
    let kf = parse("\n  from scratch AS base\n\tLaBeL a=1\n", "K").unwrap();
    let got: Vec<_> = kf
        .instructions
        .iter()
        .map(|i| (i.keyword, i.location.line, i.location.column))
        .collect();
    assert_eq!(got, [(Keyword::From, 2, 3), (Keyword::Label, 3, 2)]);
}

#[test]
fn continuation_joins_lines_skipping_comments_and_blank_lines() {
    let i = only("FROM scratch\nLABEL a=1 \\  \n# note\n\n   \n  b=2\n");
    let Args::Pairs(pairs) = i.args else { panic!() };
    let names: Vec<_> = pairs
        .iter()
        .map(|p| {
            (
                p.name.text.as_str(),
                p.value.location.line,
                p.value.location.column,
            )
        })
        .collect();
    assert_eq!(names, [("a", 2, 9), ("b", 6, 5)]);
}

#[test]
fn continuation_lines_keep_leading_whitespace() {
    let i = only("FROM scratch\nENV P one \\\n   two\n");
    let Args::Pairs(pairs) = i.args else { panic!() };
    assert_eq!(pairs[0].value.text, "one    two");
}

#[test]
fn escape_directive_changes_continuation() {
    let kf = parse("# escape=`\nFROM scratch\nLABEL a=c:\\x `\n b=2\n", "K").unwrap();
    assert_eq!(kf.escape, '`');
    assert_eq!(kf.instructions.len(), 2);
}

#[test]
fn syntax_directive_is_ignored_and_escape_may_follow_it() {
    let kf = parse(
        "# syntax=docker/dockerfile:1\n#  ESCAPE = `  \nFROM scratch\n",
        "K",
    )
    .unwrap();
    assert_eq!(kf.escape, '`');
}

#[test]
fn directives_after_a_comment_are_comments() {
    let kf = parse("# hello\n# escape=`\nFROM scratch\n", "K").unwrap();
    assert_eq!(kf.escape, '\\');
}

#[test]
fn crlf_and_bom_are_accepted() {
    let kf = parse("\u{feff}FROM scratch\r\nLABEL a=1 \\\r\n  b=2\r\n", "K").unwrap();
    assert_eq!(kf.instructions.len(), 2);
}

#[test]
fn json_form_only_when_it_parses() {
    let i = only("FROM scratch\nCMD [\"kubectl apply -f $(VAR)\"]\n");
    assert!(matches!(i.args, Args::Json(ref w) if w[0].text == "kubectl apply -f $(VAR)"));
    let i = only("FROM scratch\nCMD ['a']\n");
    assert!(matches!(i.args, Args::Text(ref w) if w.text == "['a']"));
    let i = only("FROM scratch\nCMD [\"a\",\n");
    assert!(matches!(i.args, Args::Text(ref w) if w.text == "[\"a\","));
}

#[test]
fn flags_are_split_off_with_locations() {
    let i = only("FROM scratch\nCOPY --chmod=0755 --chown=1:1 a b /d/\n");
    let flags: Vec<_> = i
        .flags
        .iter()
        .map(|f| (f.name.as_str(), f.value.text.as_str(), f.location.column))
        .collect();
    assert_eq!(flags, [("chmod", "0755", 6), ("chown", "1:1", 19)]);
    assert!(matches!(i.args, Args::Words(ref w) if w.len() == 3 && w[2].location.column == 35));
    let kf = parse("FROM --platform=linux/amd64 scratch AS b\n", "K").unwrap();
    assert_eq!(kf.instructions[0].flags[0].name, "platform");
}

#[test]
fn words_split_by_parse_words_keep_quotes_and_escapes() {
    let i = only("FROM scratch\nLABEL \"a b\"=\"c d\" e=f\\ g\n");
    let Args::Pairs(pairs) = i.args else { panic!() };
    let got: Vec<_> = pairs
        .iter()
        .map(|p| (p.name.text.as_str(), p.value.text.as_str()))
        .collect();
    assert_eq!(got, [("\"a b\"", "\"c d\""), ("e", "f\\ g")]);
}

#[test]
fn error_run_explains_why() {
    assert_eq!(
        err("FROM scratch\n  RUN make\n"),
        "K:2:3: RUN is not supported: cluster images are built FROM scratch, with no shell to run \
             commands in; put the commands in a script under scripts/ and run it at install time"
    );
}

#[test]
fn error_unsupported_instructions() {
    for keyword in ["HEALTHCHECK", "SHELL", "ONBUILD"] {
        assert_eq!(
            err(&format!("FROM scratch\n{} x\n", keyword.to_lowercase())),
            format!("K:2:1: {keyword} is not supported in a Kubefile; remove it")
        );
    }
}

#[test]
fn error_unknown_instruction_lists_supported_ones() {
    assert_eq!(
        err("FROM scratch\nLABEL a=1\nCOPPY a b\n"),
        format!("K:3:1: unknown instruction `COPPY` (did you mean COPY?); expected one of {SUPPORTED_INSTRUCTIONS}")
    );
    assert_eq!(
        err("FROM scratch\nFOO a\n"),
        format!("K:2:1: unknown instruction `FOO`; expected one of {SUPPORTED_INSTRUCTIONS}")
    );
}

#[test]
fn error_second_from() {
    assert_eq!(
        err("FROM scratch\nFROM other AS x\n"),
        "K:2:1: a second FROM (multi-stage build) is not supported; the first FROM is at K:1:1, \
             a Kubefile has exactly one"
    );
}

#[test]
fn error_missing_from() {
    assert_eq!(
            err(""),
            "K:1:1: no FROM instruction; expected `FROM scratch` or `FROM IMAGE`, optionally after ARG lines"
        );
    assert_eq!(
            err("ARG A\n# c\nARG B\n"),
            "K:3:1: no FROM instruction; expected `FROM scratch` or `FROM IMAGE`, optionally after ARG lines"
        );
    assert_eq!(
        err("ARG A\nLABEL a=1\nFROM scratch\n"),
        "K:2:1: LABEL before FROM; only ARG may come before FROM"
    );
}

#[test]
fn error_missing_and_wrong_arguments() {
    assert_eq!(
        err("FROM\n"),
        "K:1:1: FROM has no arguments; expected FROM IMAGE [AS NAME]"
    );
    assert_eq!(
        err("FROM scratch\nCMD\n"),
        "K:2:1: CMD has no arguments; expected CMD [\"executable\", \"arg\"] or CMD command line"
    );
    assert_eq!(
        err("FROM a b\n"),
        "K:1:1: FROM has the wrong number of arguments; expected FROM IMAGE or FROM IMAGE AS NAME"
    );
    assert_eq!(
            err("FROM scratch\nCOPY a\n"),
            "K:2:1: COPY has the wrong number of arguments; expected at least one source and a destination"
        );
    assert_eq!(
        err("FROM scratch\nVOLUME []\n"),
        "K:2:1: VOLUME has the wrong number of arguments; expected at least one path"
    );
    assert_eq!(
            err("FROM scratch\nENV A\n"),
            "K:2:5: ENV has the wrong number of arguments; expected NAME=VALUE, or NAME followed by a value"
        );
    assert_eq!(
        err("FROM scratch\nLABEL --x=1 a=b\n"),
        "K:2:7: unknown flag `--x=1` for LABEL; expected no flags"
    );
}

#[test]
fn error_copy_from_and_bad_flags() {
    assert_eq!(
        err("FROM scratch\nCOPY --from=build /a /b\n"),
        "K:2:6: multi-stage COPY --from is not supported; copy from the build context instead"
    );
    assert_eq!(
        err("FROM scratch\nADD --from=x a b\n"),
        "K:2:5: unknown flag `--from=x` for ADD; expected --chmod= or --chown="
    );
}

#[test]
fn error_missing_equals_points_at_word() {
    assert_eq!(
        err("FROM scratch\nLABEL a=1 \\\n   b\n"),
        "K:3:4: can't find = in `b`; expected NAME=VALUE"
    );
}

#[test]
fn error_json_with_non_strings() {
    assert_eq!(
        err("FROM scratch\nCMD [\"a\", 1]\n"),
        "K:2:1: JSON array in CMD holds a value that is not a string; expected [\"word\", ...]"
    );
}

#[test]
fn error_bad_and_duplicate_escape_directives() {
    assert_eq!(
        err("# escape=x\nFROM scratch\n"),
        "K:1:1: invalid escape directive `x`; expected ` or \\"
    );
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM scratch\n"),
        "K:2:1: a second escape directive; only one may be used"
    );
}

#[test]
fn multibyte_text_never_splits_inside_a_character() {
    let kf = parse(
        "FROM scratch\nLABEL é=ü \\\n ß=日本\u{a0}x=y\nWORKDIR 日本/é\n",
        "K",
    )
    .unwrap();
    assert_eq!(kf.instructions.len(), 3);
}
