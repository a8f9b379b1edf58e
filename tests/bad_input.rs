//! Bad input: a clear error naming the thing, a non-zero exit, the store untouched.

use std::os::unix::fs::symlink;

use crate::common::Env;

/// Builds once so the store is not empty, then runs `args`, which must fail
/// with every `needles` in its message and leave the store as it was.
fn fails_cleanly(env: &Env, args: &[&str], needles: &[&str]) {
    env.write("good/Kubefile", "FROM scratch\nCOPY f /f\n");
    env.write("good/f", "ok\n");
    env.build("good:1", "good");
    let before = env.store_state();
    let stderr = env.fails(args);
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    }
    assert_eq!(
        env.store_state(),
        before,
        "the store changed after a failed {args:?}"
    );
}

#[test]
fn a_missing_context_is_named() {
    let env = Env::new();
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "no-such-dir"],
        &["no-such-dir"],
    );
}

#[test]
fn copying_from_outside_the_context_is_refused() {
    let env = Env::new();
    env.write("secret", "s\n");
    env.write("ctx/Kubefile", "FROM scratch\nCOPY ../secret /s\n");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["../secret", "Kubefile:2"],
    );
}

#[test]
fn a_symlink_escaping_the_context_is_refused() {
    let env = Env::new();
    env.write("secret", "s\n");
    env.write("ctx/Kubefile", "FROM scratch\nCOPY link /s\n");
    symlink("../secret", env.path("ctx/link")).unwrap();
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["link", "Kubefile:2"],
    );
}

#[test]
fn a_symlink_loop_is_refused() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nCOPY a /a\n");
    symlink("b", env.path("ctx/a")).unwrap();
    symlink("a", env.path("ctx/b")).unwrap();
    fails_cleanly(&env, &["build", "-t", "x:1", "ctx"], &["Kubefile:2"]);
}

#[test]
fn an_unknown_instruction_is_named_with_its_position() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\n\n  FROBNICATE x\n");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["Kubefile:3:3", "FROBNICATE"],
    );
}

#[test]
fn run_explains_that_cluster_images_have_no_shell() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nRUN echo hi\n");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["Kubefile:2:1", "RUN"],
    );
}

#[test]
fn a_duplicate_tag_is_refused_before_anything_is_read() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\n");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "-t", "docker.io/library/x:1", "ctx"],
        &["given twice"],
    );
}

#[test]
fn an_invalid_tag_is_refused() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\n");
    fails_cleanly(
        &env,
        &["build", "-t", "Bad_Name:1", "ctx"],
        &["Bad_Name", "lowercase"],
    );
}

#[test]
fn a_missing_kubefile_lists_the_names_tried() {
    let env = Env::new();
    env.write("ctx/readme", "x");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["Kubefile", "Dockerfile"],
    );
}

#[test]
fn a_base_image_missing_from_the_store_is_named() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM example.com/base:1\n");
    fails_cleanly(
        &env,
        &["build", "-t", "x:1", "ctx"],
        &["example.com/base:1"],
    );
}

#[test]
fn an_add_from_a_url_is_refused() {
    let env = Env::new();
    env.write(
        "ctx/Kubefile",
        "FROM scratch\nADD https://example.com/x.tar /x\n",
    );
    fails_cleanly(&env, &["build", "-t", "x:1", "ctx"], &["URL", "Kubefile:2"]);
}

#[test]
fn an_unreadable_source_is_named() {
    let env = Env::new();
    env.write("ctx/Kubefile", "FROM scratch\nCOPY fifo /f\n");
    let fifo = env.path("ctx/fifo");
    crate::common::tool("mkfifo", &[fifo.to_str().unwrap()]);
    fails_cleanly(&env, &["build", "-t", "x:1", "ctx"], &["fifo"]);
}

#[test]
fn store_commands_name_images_that_do_not_exist() {
    let env = Env::new();
    for args in [
        &["inspect", "nope:1"][..],
        &["rmi", "nope:1"],
        &["tag", "nope:1", "other:1"],
        &["save", "-o", "x.tar", "nope:1"],
    ] {
        fails_cleanly(&env, args, &["docker.io/library/nope:1"]);
    }
    fails_cleanly(&env, &["load", "-i", "missing.tar"], &["missing.tar"]);
    env.write("junk.tar", "this is not a tar archive at all");
    fails_cleanly(&env, &["load", "-i", "junk.tar"], &["junk.tar"]);
}
