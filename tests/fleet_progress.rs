//! A fleet's progress on a terminal (issue 22): a host whose join failed
//! ends on a line of its own saying so, the count line turns while hosts
//! work, and more hosts than the terminal's rows hold get a bounded number
//! of lines. On real hosts with the k3s stand-ins, under script(1).

use crate::common::Env;
use crate::hosts::TestHosts;
use crate::layout::example;
use crate::run::ssh_flags;

/// How many nodes join beside the one master: more than [`ROWS`] leave
/// lines for.
const NODES: usize = 6;
/// The terminal's rows: 3 host lines (the product leaves 6 to the count
/// line, messages and the prompt).
const ROWS: usize = 9;

/// What a terminal of [`ROWS`] rows received from `sealrs run` of 1 master
/// and [`NODES`] nodes, the last node unable to join, `--max-failed 1`
/// and `extra`.
fn run_on_a_small_terminal(extra: &[&str]) -> (TestHosts, String) {
    let hosts = TestHosts::boot(1 + NODES);
    let env = Env::new();
    let dir = example(&env, "k3s", "k3s");
    env.ok(&["build", "-q", "--no-images", "-t", "k3s-cluster:1", &dir]);
    hosts[NODES].exec_ok(&[
        "sh",
        "-c",
        "rm -rf /usr/local/bin && echo broken >/usr/local/bin",
    ]);
    let nodes: Vec<&str> = (1..=NODES).map(|i| hosts[i].ip.as_str()).collect();
    let mut argv = vec![
        env!("CARGO_BIN_EXE_sealrs").to_string(),
        "run".into(),
        "k3s-cluster:1".into(),
        "--masters".into(),
        hosts[0].ip.clone(),
        "--nodes".into(),
        nodes.join(","),
        "--max-failed".into(),
        "1".into(),
    ];
    argv.extend(ssh_flags(&hosts));
    argv.extend(extra.iter().map(|a| a.to_string()));
    let line = argv
        .iter()
        .map(|a| sealrs::transport::sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    // script(1) gives the command a terminal, of ROWS rows.
    let out = std::process::Command::new("script")
        .args([
            "-qfec",
            &format!("stty rows {ROWS} cols 200 && exec {line}"),
            "/dev/null",
        ])
        .env("SEALRS_ROOT", &env.root)
        .env("TERM", "xterm")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    (hosts, text)
}

/// The most lines the redrawn area held: indicatif moves the cursor up
/// over all but the last of them before each redraw.
fn tallest_redraw(text: &str) -> usize {
    text.split("\x1b[")
        .filter_map(|s| {
            let digits = s.chars().take_while(char::is_ascii_digit).count();
            (digits > 0 && s[digits..].starts_with('A')).then(|| s[..digits].parse().ok())?
        })
        .max()
        .map_or(0, |up: usize| up + 1)
}

#[test]
fn a_fleet_on_a_small_terminal_shows_the_failed_node_as_failed_a_turning_count_and_few_lines() {
    let (hosts, text) = run_on_a_small_terminal(&[]);
    let broken = &hosts[NODES].ip;

    // The failed node's line says it failed, and after how long.
    let failed = format!("✗ {broken}: k3s join (node) failed after ");
    let timed = text.match_indices(&failed).any(|(i, _)| {
        let rest = &text[i + failed.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('s')
    });
    assert!(timed, "no `{failed}Ns` on the terminal:\n{text}");
    assert!(
        !text.contains(&format!("✓ {broken}:")),
        "the failed node also ended as done:\n{text}"
    );

    // Between two changes of the count, its spinner turned on its own.
    let turned = (0..NODES).any(|done| {
        let count = format!(" k3s join (nodes): {done} of {NODES} hosts done");
        let spinners: std::collections::BTreeSet<char> = text
            .match_indices(&count)
            .filter_map(|(i, _)| text[..i].chars().last())
            .collect();
        spinners.len() >= 2
    });
    assert!(turned, "the count line's spinner never turned:\n{text}");
    assert!(
        text.contains(&format!(
            "k3s join (nodes): {NODES} of {NODES} hosts done, 1 failed"
        )),
        "{text}"
    );

    fits(&text);
}

/// The redrawn area kept within the terminal, with rows to spare, where a
/// line per node and the count line would be 1 + NODES.
fn fits(text: &str) {
    let tallest = tallest_redraw(text);
    assert!(
        (2..=ROWS - 3).contains(&tallest) && tallest < 1 + NODES,
        "{tallest} lines redrawn at once:\n{text}"
    );
}

#[test]
fn hosts_worked_on_one_at_a_time_are_still_one_phase_that_gets_few_lines() {
    let (hosts, text) = run_on_a_small_terminal(&["--max-parallel", "1"]);
    fits(&text);
    assert!(
        text.contains(&format!(
            "✗ {}: k3s join (node) failed after ",
            hosts[NODES].ip
        )),
        "{text}"
    );
}
