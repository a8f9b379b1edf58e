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
//! it would download. docs/walkthrough.md also runs on test hosts, its
//! `# needs: hosts` commands included.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{tool, Env};
use crate::hosts::TestHosts;
use crate::layout::{example, standin_version};

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

/// The runtime and version a `scripts/fetch-RUNTIME.sh VERSION ARCH` command fetches.
fn fetched(command: &str) -> Option<(&str, &str)> {
    let (runtime, args) = command
        .trim()
        .strip_prefix("scripts/fetch-")?
        .split_once(".sh")?;
    Some((runtime, args.split_whitespace().next()?))
}

/// The addresses the documents give hosts; a run on test hosts replaces them.
const DOC_HOSTS: [&str; 3] = ["10.0.0.11", "10.0.0.12", "10.0.0.13"];

/// What running a document did.
struct Transcript {
    ran: usize,
    skipped: usize,
    /// Each command run (`$ COMMAND`) and what it printed.
    log: String,
}

/// Runs the commands of `doc` (relative to the repository) in order. With
/// `hosts`, those that need hosts run too, on these (as the documents' hosts,
/// reached with `~/.ssh/id_ed25519` and `~/.ssh/known_hosts`).
fn run_document(doc: &str, hosts: Option<&TestHosts>) -> Transcript {
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
    let ssh = env.path("home/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    if let Some(hosts) = hosts {
        fs::copy(hosts.key(), ssh.join("id_ed25519")).unwrap();
        fs::copy(hosts.known_hosts(), ssh.join("known_hosts")).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut t = Transcript {
        ran: 0,
        skipped: 0,
        log: String::new(),
    };
    for snippet in snippets(&text) {
        let at = format!("{doc}:{}", snippet.line);
        let mut command = snippet.text.clone();
        if let Some((_, why)) = snippet.text.split_once(NEEDS) {
            assert!(!why.trim().is_empty(), "{at}: say what the command needs");
            if let Some((runtime, version)) = fetched(&command) {
                let dir = format!("Kubefile-examples/{runtime}");
                if !env.path(&dir).exists() {
                    example(&env, runtime, &dir);
                }
                if runtime == "k3s" {
                    standin_version(&env, &dir, version);
                }
            }
            match hosts {
                Some(hosts) if why.trim() == "hosts" => {
                    for (i, doc_ip) in DOC_HOSTS.iter().enumerate() {
                        command = command.replace(doc_ip, &hosts[i].ip);
                    }
                }
                _ => {
                    t.skipped += 1;
                    continue;
                }
            }
        }
        let out = Command::new("sh")
            .args(["-c", &command])
            .current_dir(env.dir.path())
            .env("PATH", &path)
            .env("SEALRS_ROOT", &env.root)
            .env("HOME", env.path("home"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{at}: `{command}` failed ({}):\n{printed}",
            out.status
        );
        t.log.push_str(&format!("$ {command}\n{printed}\n"));
        t.ran += 1;
    }
    t
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
        fetched("scripts/fetch-k3s.sh v1.30.2+k3s1 amd64   # needs: network"),
        Some(("k3s", "v1.30.2+k3s1"))
    );
}

#[test]
fn readme_commands_run_as_written() {
    let Transcript { ran, skipped, .. } = run_document("README.md", None);
    assert!(ran >= 5 && skipped >= 2, "ran {ran}, skipped {skipped}");
}

#[test]
fn example_readmes_build_their_images_as_written() {
    for runtime in ["k3s", "kubeadm", "k0s"] {
        let doc = format!("Kubefile-examples/{runtime}/README.md");
        let Transcript { ran, skipped, .. } = run_document(&doc, None);
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
        ran += run_document(&format!("docs/{name}"), None).ran;
    }
    assert!(ran >= 3, "ran {ran} commands of docs/");
}

#[test]
fn the_walkthrough_runs_on_real_hosts_as_written() {
    let hosts = TestHosts::boot(3);
    let t = run_document("docs/walkthrough.md", Some(&hosts));
    // `--nocapture` shows what each command printed, for the page.
    println!("{}", t.log);
    assert!(t.ran >= 10, "ran {}:\n{}", t.ran, t.log);
    for (i, host) in hosts.hosts().iter().enumerate() {
        let left = host.exec(&["test", "-e", "/var/lib/sealrs-host"]);
        assert!(
            !left.status.success(),
            "host {i} keeps /var/lib/sealrs-host after the reset"
        );
    }
}

/// The targets of a document's Markdown links (`[text](target)`) that are
/// not web addresses or anchors in the page, their `#anchor` cut off.
fn relative_links(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .map(|target| target.split('#').next().unwrap_or_default())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_relative_link_of_the_docs_names_a_file_of_the_repository() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let mut docs = vec![repo.join("README.md")];
    for dir in ["docs", "Kubefile-examples"] {
        for entry in walkdir::WalkDir::new(repo.join(dir)) {
            let path = entry.unwrap().into_path();
            if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in &docs {
        for link in relative_links(&fs::read_to_string(doc).unwrap()) {
            checked += 1;
            let target = doc.parent().unwrap().join(&link).canonicalize();
            if !target.is_ok_and(|t| t.starts_with(&repo)) {
                broken.push(format!("{}: {link}", doc.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links outside the repository or to nothing: {broken:#?}"
    );
    assert!(checked > 0, "no relative link found in {docs:?}");
    assert_eq!(
        relative_links("see [design](../shared/design.md#x), [web](https://a.b/c) and [top](#top)"),
        ["../shared/design.md"]
    );
}

#[test]
fn the_readmes_env_key_table_names_each_key_run_help_lists_for_its_runtime() {
    let env = Env::new();
    let help = env.ok(&["run", "--help"]);
    let section = help
        .split_once("Cluster env keys (-e KEY=VALUE)")
        .expect("run --help lists the env keys")
        .1;
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let header = "| key | k3s | kubeadm | k0s |";
    let table: Vec<Vec<&str>> = readme
        .lines()
        .skip_while(|l| *l != header)
        .take_while(|l| l.starts_with('|'))
        .map(|row| row.split('|').map(str::trim).collect())
        .collect();
    assert!(table.len() > 3, "no `{header}` table in README.md");
    let columns = ["k3s", "kubeadm", "k0s"];
    let mut runtime = "";
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in section.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            runtime = columns.iter().find(|c| **c == name).expect(name);
            continue;
        }
        let Some((key, _)) = line.strip_prefix("    ").and_then(|l| l.split_once('=')) else {
            continue;
        };
        let column = 2 + columns.iter().position(|c| *c == runtime).unwrap();
        // A row names the key in backquotes, or a `PREFIX_*` that covers it.
        let row = table.iter().find(|row| {
            row[1].split(", ").map(|k| k.trim_matches('`')).any(|k| {
                k == key
                    || k.strip_suffix('*')
                        .is_some_and(|prefix| key.starts_with(prefix))
            })
        });
        checked += 1;
        if !row.is_some_and(|row| !matches!(row[column], "" | "–" | "-")) {
            missing.push(format!("{runtime}: {key}"));
        }
    }
    assert!(checked >= 9, "only {checked} keys in run --help");
    assert!(
        missing.is_empty(),
        "run --help lists keys README.md's table does not: {missing:?}"
    );
}
