//! The commands of README.md, the examples' READMEs and docs/*.md, run as
//! written and in order through the built binary, so that a document that
//! drifts from the code fails here.
//!
//! Every command of a fenced `sh` block runs with `sh -c` in a fresh temp
//! directory per document, laid out as the repository's root (its
//! `Kubefile-examples/hello-app` copied in), with `sealrs` on `PATH` being
//! the binary under test and `SEALRS_ROOT`, `HOME` inside the temp
//! directory. A command that cannot run offline says why in a trailing
//! `# needs: …` comment and is skipped; `scripts/fetch-RUNTIME.sh` is
//! replaced by the test's stand-ins (tests/fixtures/standins), which is what
//! it would download.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{tool, Env};
use crate::layout::example;

/// What marks a command that the test skips, and why.
const NEEDS: &str = "# needs:";

/// One command of a document: where it starts and its text (continuation
/// lines joined as the shell joins them).
#[derive(Debug, PartialEq)]
struct Snippet {
    line: usize,
    text: String,
}

/// The commands of a document's fenced `sh` blocks; comment-only and blank
/// lines are left out.
fn snippets(markdown: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<Snippet> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let continued = pending.is_some();
        if !continued && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let snippet = pending.get_or_insert(Snippet {
            line: i + 1,
            text: String::new(),
        });
        snippet.text.push_str(line);
        if line.ends_with('\\') {
            snippet.text.push('\n');
        } else {
            out.extend(pending.take());
        }
    }
    out
}

/// The runtime a `scripts/fetch-RUNTIME.sh` command fetches.
fn fetched_runtime(command: &str) -> Option<&str> {
    command
        .trim()
        .strip_prefix("scripts/fetch-")?
        .split_once(".sh")
        .map(|(runtime, _)| runtime)
}

/// Runs the commands of `doc` (relative to the repository) in order;
/// returns how many ran and how many were skipped.
fn run_document(doc: &str) -> (usize, usize) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let text = fs::read_to_string(Path::new(repo).join(doc)).unwrap();
    let env = Env::new();
    fs::create_dir_all(env.path("Kubefile-examples")).unwrap();
    tool(
        "cp",
        &[
            "-a",
            &format!("{repo}/Kubefile-examples/hello-app"),
            env.path("Kubefile-examples/hello-app").to_str().unwrap(),
        ],
    );
    let bin = env.path("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sealrs"), bin.join("sealrs")).unwrap();
    fs::create_dir_all(env.path("home")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let (mut ran, mut skipped) = (0, 0);
    for snippet in snippets(&text) {
        let at = format!("{doc}:{}", snippet.line);
        if let Some((_, why)) = snippet.text.split_once(NEEDS) {
            assert!(!why.trim().is_empty(), "{at}: say what the command needs");
            if let Some(runtime) = fetched_runtime(&snippet.text) {
                example(&env, runtime, &format!("Kubefile-examples/{runtime}"));
            }
            skipped += 1;
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", &snippet.text])
            .current_dir(env.dir.path())
            .env("PATH", &path)
            .env("SEALRS_ROOT", &env.root)
            .env("HOME", env.path("home"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{at}: `{}` failed ({}):\n{}{}",
            snippet.text,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    (ran, skipped)
}

#[test]
fn snippets_join_continuation_lines_and_skip_comments_and_other_blocks() {
    let md = "text\n```sh\n# a comment\nsealrs a \\\n  --b   # why\n\nsealrs c\n```\n```text\nnot run\n```\n";
    assert_eq!(
        snippets(md),
        vec![
            Snippet {
                line: 4,
                text: "sealrs a \\\n  --b   # why".into()
            },
            Snippet {
                line: 7,
                text: "sealrs c".into()
            },
        ]
    );
    assert_eq!(
        fetched_runtime("scripts/fetch-k3s.sh v1 amd64   # needs: network"),
        Some("k3s")
    );
}

#[test]
fn readme_commands_run_as_written() {
    let (ran, skipped) = run_document("README.md");
    assert!(ran >= 5 && skipped >= 2, "ran {ran}, skipped {skipped}");
}

#[test]
fn example_readmes_build_their_images_as_written() {
    for runtime in ["k3s", "kubeadm", "k0s"] {
        let (ran, skipped) = run_document(&format!("Kubefile-examples/{runtime}/README.md"));
        assert!(
            ran >= 1 && skipped >= 1,
            "{runtime}: ran {ran}, skipped {skipped}"
        );
    }
}

#[test]
fn docs_commands_run_as_written() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut names: Vec<String> = fs::read_dir(docs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    let mut ran = 0;
    for name in names {
        ran += run_document(&format!("docs/{name}")).0;
    }
    assert!(ran >= 3, "ran {ran} commands of docs/");
}
