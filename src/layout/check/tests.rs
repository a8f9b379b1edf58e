use super::*;
use crate::layout::probe::{ArchiveFormat, ListError};

fn elf(arch: &str) -> Vec<u8> {
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(64, 0);
    let m = crate::arch::elf_machine(arch).unwrap().0.to_le_bytes();
    bytes[18] = m[0];
    bytes[19] = m[1];
    bytes
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn k3s_labels() -> BTreeMap<String, String> {
    labels(&[
        ("sealrs.io/type", "rootfs"),
        ("sealrs.io/runtime", "k3s"),
        ("sealrs.io/version", "v1.30.2+k3s1"),
    ])
}

fn archive(path: &str, facts: Result<ArchiveFacts, String>) -> Entry {
    let mut e = Entry::file(path, 0o644, &[0x28, 0xb5, 0x2f, 0xfd]);
    e.size = 1000;
    e.facts.archive = Some(facts);
    e
}

fn yaml(path: &str, result: Result<usize, YamlError>) -> Entry {
    let mut e = Entry::file(path, 0o644, b"kind: x\n");
    e.facts.yaml = Some(result);
    e
}

fn good_k3s() -> Vec<Entry> {
    vec![
        Entry {
            entry_type: EntryType::Dir,
            ..Entry::file("bin", 0o755, b"")
        },
        Entry::file("bin/k3s", 0o755, &elf("amd64")),
        Entry {
            entry_type: EntryType::Symlink("k3s".into()),
            ..Entry::file("bin/kubectl", 0o777, b"")
        },
        archive(
            "images/k3s-airgap-images-amd64.tar.zst",
            Ok(ArchiveFacts {
                format: ArchiveFormat::DockerArchive,
                compression: "zstd",
            }),
        ),
        yaml("manifests/app.yaml", Ok(2)),
        yaml("etc/config.yaml", Ok(1)),
        Entry::file("scripts/init.sh", 0o755, b"#!/bin/sh\n"),
        Entry::file("README.md", 0o644, b"hi"),
    ]
}

#[test]
fn a_sound_k3s_rootfs_holds_and_lists_its_components() {
    let v = evaluate(
        Layouts::embedded(),
        &k3s_labels(),
        &Rootfs::from_entries(good_k3s()),
        "amd64",
    );
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(v.holds());
    assert_eq!(v.layout.as_deref(), Some("layouts/k3s.toml"));
    let paths: Vec<(&str, &str)> = v
        .components
        .iter()
        .map(|c| (c.path.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("bin/k3s", "ELF amd64"),
            ("bin/kubectl", "symlink to k3s"),
            (
                "images/k3s-airgap-images-amd64.tar.zst",
                "docker-archive, zstd"
            ),
        ]
    );
    assert_eq!(v.other_files, 1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut entries = good_k3s();
    entries.retain(|e| e.path != "bin/k3s");
    entries.push(Entry::file("bin/helm", 0o644, &elf("amd64")));
    entries.push(Entry::file("bin/tool", 0o755, &elf("arm64")));
    entries.push(Entry::file("bin/notes", 0o755, b"plain text"));
    entries.push(Entry::file("scripts/bad.sh", 0o755, b"echo no shebang"));
    entries.push(archive(
        "images/fake.tar",
        Err("it is data of another kind".into()),
    ));
    entries.push(yaml(
        "manifests/broken.yaml",
        Err(YamlError {
            line: 3,
            column: 7,
            message: "did not find expected key".into(),
        }),
    ));
    let mut list = Entry::file("images/shim/list", 0o644, b"");
    list.facts.list = Some(Err(vec![ListError {
        line: 2,
        text: "NOT VALID".into(),
        reason: "bad".into(),
    }]));
    entries.push(list);
    entries.push(Entry {
        entry_type: EntryType::Symlink("../nowhere".into()),
        ..Entry::file("bin/dangling", 0o777, b"")
    });
    let mut labels = k3s_labels();
    labels.remove("sealrs.io/version");
    let v = evaluate(
        Layouts::embedded(),
        &labels,
        &Rootfs::from_entries(entries),
        "amd64",
    );
    let text: Vec<String> = v.problems.iter().map(|p| p.to_string()).collect();
    let expect = [
        "label sealrs.io/version is missing",
        "bin/dangling: a symlink to ../nowhere",
        "bin/helm: not executable (mode 0644)",
        "bin/kubectl: a symlink to k3s, which is not in the image",
        "bin/notes: not a program",
        "bin/tool: an ELF binary for arm64, but the image is for amd64",
        "images/fake.tar: not an image archive: it is data of another kind",
        "images/shim/list:2: \"NOT VALID\" is not an image reference",
        "manifests/broken.yaml:3:7: not valid YAML: did not find expected key",
        "scripts/bad.sh: not a script",
        "bin/k3s: missing; expected the k3s binary",
    ];
    for e in expect {
        assert!(
            text.iter().any(|t| t.starts_with(e)),
            "{e:?} not in {text:#?}"
        );
    }
    assert_eq!(text.len(), expect.len(), "{text:#?}");
    assert!(!v.holds());
}

#[test]
fn the_runtime_is_inferred_from_the_marker_and_shown() {
    let mut labels = k3s_labels();
    labels.remove("sealrs.io/runtime");
    let v = evaluate(
        Layouts::embedded(),
        &labels,
        &Rootfs::from_entries(good_k3s()),
        "amd64",
    );
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let runtime = v.info.runtime.unwrap();
    assert_eq!(runtime.value, "k3s");
    assert_eq!(runtime.source, Source::Inferred("bin/k3s".into()));
    assert!(
        v.notes.iter().any(|n| n.contains("inferred from bin/k3s")),
        "{:?}",
        v.notes
    );
}

#[test]
fn two_markers_make_the_runtime_ambiguous() {
    let mut entries = good_k3s();
    entries.push(Entry::file("bin/k0s", 0o755, &elf("amd64")));
    let v = evaluate(
        Layouts::embedded(),
        &labels(&[
            ("sealrs.io/type", "rootfs"),
            ("sealrs.io/version", "v1.30.0"),
        ]),
        &Rootfs::from_entries(entries),
        "amd64",
    );
    assert!(
        matches!(v.problems.as_slice(), [Problem::AmbiguousRuntime { .. }]),
        "{:?}",
        v.problems
    );
    assert!(v.layout.is_none());
}

#[test]
fn a_rootfs_with_no_runtime_at_all_is_a_problem() {
    let v = evaluate(
        Layouts::embedded(),
        &labels(&[("sealos.io.type", "rootfs"), ("version", "v1.0")]),
        &Rootfs::from_entries(vec![Entry::file("etc/a.conf", 0o644, b"x")]),
        "amd64",
    );
    assert!(
        matches!(v.problems.as_slice(), [Problem::NoRuntime { .. }]),
        "{:?}",
        v.problems
    );
}

#[test]
fn images_without_a_type_are_not_checked_but_described() {
    let mut labels = k3s_labels();
    labels.remove("sealrs.io/type");
    labels.remove("sealrs.io/runtime");
    let v = evaluate(
        Layouts::embedded(),
        &labels,
        &Rootfs::from_entries(good_k3s()),
        "amd64",
    );
    assert!(v.layout.is_none() && v.problems.is_empty());
    assert_eq!(v.info.runtime.unwrap().value, "k3s");
    assert!(
        v.notes[0].contains("no sealrs.io/type label"),
        "{:?}",
        v.notes
    );
}

#[test]
fn a_patch_needs_nothing_but_what_it_carries_must_be_right() {
    let patch = labels(&[("sealrs.io/type", "patch"), ("sealrs.io/runtime", "k3s")]);
    let ok = evaluate(
        Layouts::embedded(),
        &patch,
        &Rootfs::from_entries(vec![yaml("etc/registries.yaml", Ok(1))]),
        "amd64",
    );
    assert!(ok.holds(), "{:?}", ok.problems);
    let bad = evaluate(
        Layouts::embedded(),
        &patch,
        &Rootfs::from_entries(vec![Entry::file("bin/k3s", 0o644, &elf("amd64"))]),
        "amd64",
    );
    assert!(
        matches!(bad.problems.as_slice(), [Problem::NotExecutable { .. }]),
        "{:?}",
        bad.problems
    );
}

#[test]
fn applications_need_no_runtime_and_no_version() {
    let v = evaluate(
        Layouts::embedded(),
        &labels(&[("sealrs.io/type", "application")]),
        &Rootfs::from_entries(vec![yaml("manifests/deployment.yaml", Ok(1))]),
        "amd64",
    );
    assert!(v.holds(), "{:?}", v.problems);
    assert_eq!(v.layout.as_deref(), Some("layouts/application.toml"));
}

#[test]
fn k0s_refuses_manifests_outside_a_stack_and_compressed_bundles() {
    let entries = vec![
        Entry::file("bin/k0s", 0o755, &elf("arm64")),
        yaml("manifests/loose.yaml", Ok(1)),
        yaml("manifests/stack/ok.yaml", Ok(1)),
        yaml("manifests/stack/sub/deep.yaml", Ok(1)),
        archive(
            "images/bundle.tar.zst",
            Ok(ArchiveFacts {
                format: ArchiveFormat::OciArchive,
                compression: "zstd",
            }),
        ),
    ];
    let v = evaluate(
        Layouts::embedded(),
        &labels(&[
            ("sealrs.io/type", "rootfs"),
            ("sealrs.io/runtime", "k0s"),
            ("sealrs.io/version", "v1.30.2+k0s.0"),
        ]),
        &Rootfs::from_entries(entries),
        "arm64",
    );
    let paths: Vec<&str> = v
        .problems
        .iter()
        .map(|p| match p {
            Problem::Forbidden { path, .. } => path.as_str(),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        paths,
        vec![
            "images/bundle.tar.zst",
            "manifests/loose.yaml",
            "manifests/stack/sub/deep.yaml"
        ]
    );
}

#[test]
fn kubeadm_lists_every_missing_piece() {
    let v = evaluate(
        Layouts::embedded(),
        &labels(&[
            ("sealrs.io/type", "rootfs"),
            ("sealrs.io/runtime", "kubeadm"),
            ("sealrs.io/version", "v1.30.2"),
        ]),
        &Rootfs::from_entries(vec![Entry::file("bin/kubeadm", 0o755, &elf("amd64"))]),
        "amd64",
    );
    let missing = v
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::Missing { .. }))
        .count();
    let required = Layouts::embedded()
        .rootfs("kubeadm")
        .unwrap()
        .rules
        .iter()
        .filter(|r| r.required)
        .count();
    assert_eq!(missing, required - 1, "{:#?}", v.problems);
}

#[test]
fn links_resolve_inside_the_image() {
    assert_eq!(join("bin", "../lib/x"), Some("lib/x".into()));
    assert_eq!(join("bin", "../../x"), None);
    assert_eq!(normalize("./a//b/"), Some("a/b".into()));
    assert_eq!(normalize("./"), None);
    let rootfs = Rootfs::from_entries(vec![
        Entry::file("bin/k3s", 0o755, &elf("amd64")),
        Entry {
            entry_type: EntryType::Hardlink("bin/k3s".into()),
            ..Entry::file("bin/k3s-copy", 0o755, b"")
        },
        Entry {
            entry_type: EntryType::Symlink("loop".into()),
            ..Entry::file("bin/loop", 0o777, b"")
        },
    ]);
    let copy = &rootfs.entries["bin/k3s-copy"];
    assert_eq!(rootfs.resolve(copy).unwrap().unwrap().path, "bin/k3s");
    assert!(rootfs.resolve(&rootfs.entries["bin/loop"]).is_err());
}

#[test]
fn a_host_needs_the_files_its_role_needs_and_each_as_its_rule_says() {
    let layout = Layout::parse(
        "test.toml",
        r#"
name = "t"
type = "rootfs"
runtime = "t"
description = "test"
marker = "bin/t"
[images]
lists = "images/shim/*"
archives = "images/"
archive_format = "oci-archive"
[[rule]]
path = "bin/t"
kind = "executable"
required = true
host = "/usr/local/bin/t"
about = "the t binary"
[[rule]]
path = "bin/t-server"
kind = "executable"
required = true
on = "control-plane"
host = "/usr/local/bin/t-server"
about = "the server binary"
[[rule]]
path = "images/shim/*"
kind = "image-list"
about = "lists"
[[rule]]
path = "images/*.tar"
kind = "image-archive"
about = "archives"
"#,
    )
    .unwrap();
    let worker_only = Rootfs::from_entries(vec![Entry::file("bin/t", 0o755, &elf("amd64"))]);
    assert_eq!(
        check_for_host(&layout, &worker_only, "amd64", false),
        vec![]
    );
    assert_eq!(
        check_for_host(&layout, &worker_only, "amd64", true),
        vec![Problem::Missing {
            pattern: "bin/t-server".into(),
            about: "the server binary".into(),
        }]
    );
    // Every problem at once: the wrong machine, a lost exec bit, a missing file.
    let broken = Rootfs::from_entries(vec![
        Entry::file("bin/t", 0o755, &elf("arm64")),
        Entry::file("bin/t-server", 0o644, b"#!/bin/sh\n"),
    ]);
    let problems = check_for_host(&layout, &broken, "amd64", true);
    assert!(
        problems.contains(&Problem::WrongArchitecture {
            path: "bin/t".into(),
            found: "arm64".into(),
            expected: "amd64".into(),
        }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&Problem::NotExecutable {
            path: "bin/t-server".into(),
            mode: 0o644,
        }),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    // Labels are not a host's business.
    assert!(check_for_host(&layout, &Rootfs::default(), "amd64", false)
        .iter()
        .all(|p| matches!(p, Problem::Missing { .. })));
}
