use super::encode::write_layer;
use super::tree::Tree;
use super::*;
use crate::compression;
use crate::digest::Hashing;
use crate::kubefile::Location;
use crate::progress::Silent;
use oci_spec::image::MediaType;
use std::cell::Cell;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

thread_local! {
    pub(crate) static CONTENT_OPENS: Cell<usize> = const { Cell::new(0) };
}

/// A blob directory standing in for the store.
pub(crate) struct DirSink(pub tempfile::TempDir);

impl DirSink {
    pub(crate) fn new() -> Self {
        DirSink(tempfile::tempdir().unwrap())
    }
    fn path(&self, digest: &Digest) -> PathBuf {
        self.0.path().join(digest.digest())
    }
    pub(crate) fn read(&self, layer: &Layer) -> Vec<u8> {
        let raw = std::fs::read(self.path(layer.descriptor.digest())).unwrap();
        let mut out = Vec::new();
        compression::decompressed(&raw[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

struct DirBlob {
    file: Hashing<tempfile::NamedTempFile>,
    dir: PathBuf,
}

impl Write for DirBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWrite for DirBlob {
    fn finish(self: Box<Self>) -> Result<(Digest, u64), SinkError> {
        let (file, digest, size) = self.file.into_parts();
        file.persist(self.dir.join(digest.digest()))?;
        Ok((digest, size))
    }
}

impl BlobSink for DirSink {
    fn create(&self) -> Result<Box<dyn BlobWrite + '_>, SinkError> {
        Ok(Box::new(DirBlob {
            file: Hashing::new(tempfile::NamedTempFile::new_in(self.0.path())?),
            dir: self.0.path().to_path_buf(),
        }))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
}

pub(crate) fn step(sources: &[&str], dest: &str) -> CopyStep {
    CopyStep {
        location: Location {
            file: "Kubefile".into(),
            line: 3,
            column: 1,
        },
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.to_string(),
        chmod: None,
        extract_archives: false,
    }
}

pub(crate) fn write(root: &Path, rel: &str, content: &[u8]) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

fn opts() -> LayerOptions {
    LayerOptions {
        source_date_epoch: 1_700_000_000,
        ..LayerOptions::default()
    }
}

struct Fixture {
    ctx: tempfile::TempDir,
    sink: DirSink,
    cache_dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            ctx: tempfile::tempdir().unwrap(),
            sink: DirSink::new(),
            cache_dir: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.ctx.path()
    }
    fn cache(&self) -> LayerCache {
        LayerCache::open(&self.cache_dir.path().join("layers.json"))
    }
    /// Builds without a cache.
    fn build(&self, step: &CopyStep, opts: &LayerOptions) -> Result<Vec<Layer>, BuildError> {
        let ctx = Context::open(self.root())?;
        copy_layers(&self.sink, &ctx, step, opts, &mut self.cache(), &Silent)
    }
    fn build_cached(
        &self,
        step: &CopyStep,
        cache: &mut LayerCache,
    ) -> Result<Vec<Layer>, BuildError> {
        let ctx = Context::open(self.root())?;
        copy_layers(&self.sink, &ctx, step, &opts(), cache, &Silent)
    }
    fn entries(&self, layer: &Layer) -> Vec<Entry> {
        entries(&self.sink.read(layer))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    path: String,
    kind: char,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    link: Option<String>,
    content: Vec<u8>,
}

fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
        out.push(Entry {
            path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            kind: h.entry_type().as_byte() as char,
            mode: h.mode().unwrap(),
            mtime: h.mtime().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            content,
        });
    }
    out
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn same_context_twice_gives_identical_digests() {
    let f = Fixture::new();
    write(f.root(), "bin/k3s", b"binary");
    write(f.root(), "manifests/a.yaml", b"a: 1");
    let s = step(&["."], "/");
    let first = f.build(&s, &opts()).unwrap();
    let second = f.build(&s, &opts()).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].descriptor.media_type(), &MediaType::ImageLayerZstd);
    let e = f.entries(&first[0]);
    assert_eq!(
        paths(&e),
        ["bin/", "bin/k3s", "manifests/", "manifests/a.yaml"]
    );
    assert!(e
        .iter()
        .all(|e| e.mtime == 1_700_000_000 && e.uid == 0 && e.gid == 0));
}

#[test]
fn mtime_change_keeps_digests_but_content_change_does_not() {
    let f = Fixture::new();
    let file = write(f.root(), "a.txt", b"one");
    let s = step(&["a.txt"], "/a.txt");
    let before = f.build(&s, &opts()).unwrap();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    assert_eq!(f.build(&s, &opts()).unwrap(), before);
    std::fs::write(&file, b"two").unwrap();
    let after = f.build(&s, &opts()).unwrap();
    assert_ne!(after[0].diff_id, before[0].diff_id);
    assert_ne!(after[0].descriptor.digest(), before[0].descriptor.digest());
}

#[test]
fn modes_symlinks_and_dirs_survive() {
    let f = Fixture::new();
    let tool = write(f.root(), "src/bin/tool", b"#!/bin/sh\n");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let secret = write(f.root(), "src/etc/secret", b"s");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        f.root().join("src/etc"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    symlink("../bin/tool", f.root().join("src/etc/link")).unwrap();
    symlink("/nowhere/at/all", f.root().join("src/dangling")).unwrap();
    let layers = f.build(&step(&["src"], "/opt/app"), &opts()).unwrap();
    let e = f.entries(&layers[0]);
    let find = |p: &str| {
        e.iter()
            .find(|x| x.path == p)
            .unwrap_or_else(|| panic!("{p} in {e:?}"))
    };
    assert_eq!(
        paths(&e),
        [
            "opt/",
            "opt/app/",
            "opt/app/bin/",
            "opt/app/bin/tool",
            "opt/app/dangling",
            "opt/app/etc/",
            "opt/app/etc/link",
            "opt/app/etc/secret"
        ]
    );
    assert_eq!(find("opt/").mode, 0o755);
    assert_eq!(find("opt/app/bin/tool").mode, 0o4755);
    assert_eq!(find("opt/app/etc/secret").mode, 0o600);
    assert_eq!(find("opt/app/etc/").mode, 0o750);
    assert_eq!(find("opt/app/etc/link").kind, '2');
    assert_eq!(
        find("opt/app/etc/link").link.as_deref(),
        Some("../bin/tool")
    );
    assert_eq!(
        find("opt/app/dangling").link.as_deref(),
        Some("/nowhere/at/all")
    );
    assert_eq!(find("opt/app/bin/tool").content, b"#!/bin/sh\n");
}

#[test]
fn chmod_overrides_copied_files_and_dirs_but_not_implicit_parents() {
    let f = Fixture::new();
    write(f.root(), "d/sub/x", b"x");
    let mut s = step(&["d"], "/deep/dest/");
    s.chmod = Some(0o700);
    let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
    let modes: Vec<(&str, u32)> = e.iter().map(|e| (e.path.as_str(), e.mode)).collect();
    assert_eq!(
        modes,
        [
            ("deep/", 0o755),
            ("deep/dest/", 0o700),
            ("deep/dest/sub/", 0o700),
            ("deep/dest/sub/x", 0o700)
        ]
    );
}

#[test]
fn hardlinks_become_tar_links() {
    let f = Fixture::new();
    let a = write(f.root(), "a", b"same inode");
    std::fs::hard_link(&a, f.root().join("b")).unwrap();
    let e = f.entries(&f.build(&step(&["."], "/x/"), &opts()).unwrap()[0]);
    let b = e.iter().find(|e| e.path == "x/b").unwrap();
    assert_eq!(b.kind, '1');
    assert_eq!(b.link.as_deref(), Some("x/a"));
    assert_eq!(
        e.iter().find(|e| e.path == "x/a").unwrap().content,
        b"same inode"
    );
}

#[test]
fn long_names_and_link_targets_round_trip() {
    let f = Fixture::new();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    write(f.root(), &long, b"deep");
    symlink("t".repeat(200), f.root().join("l")).unwrap();
    let e = f.entries(&f.build(&step(&["."], "/"), &opts()).unwrap()[0]);
    assert!(e.iter().any(|e| e.path == long && e.content == b"deep"));
    assert_eq!(
        e.iter().find(|e| e.path == "l").unwrap().link.as_deref(),
        Some("t".repeat(200).as_str())
    );
}

#[test]
fn glob_sources_copy_matches_into_a_directory() {
    let f = Fixture::new();
    write(f.root(), "manifests/a.yaml", b"a");
    write(f.root(), "manifests/b.yaml", b"b");
    write(f.root(), "manifests/c.json", b"c");
    write(f.root(), "manifests/sub/d.yaml", b"d");
    let e = f.entries(
        &f.build(&step(&["manifests/*.yaml"], "/m/"), &opts())
            .unwrap()[0],
    );
    assert_eq!(paths(&e), ["m/", "m/a.yaml", "m/b.yaml"]);
    let e = f.entries(
        &f.build(&step(&["manifests/?.json", "*/sub"], "/m/"), &opts())
            .unwrap()[0],
    );
    assert_eq!(paths(&e), ["m/", "m/c.json", "m/d.yaml"]);
}

#[test]
fn glob_sees_no_ignored_files() {
    let f = Fixture::new();
    write(f.root(), ".dockerignore", b"*.bak\n");
    write(f.root(), "a.conf", b"a");
    write(f.root(), "a.bak", b"b");
    let e = f.entries(&f.build(&step(&["a.*"], "/etc/"), &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["etc/", "etc/a.conf"]);
    let err = f.build(&step(&["*.bak"], "/etc/"), &opts()).unwrap_err();
    assert!(matches!(err, BuildError::SourceNotFound { .. }), "{err}");
}

#[test]
fn ignore_file_applies_inside_copied_directories() {
    let f = Fixture::new();
    write(
        f.root(),
        ".kubefileignore",
        b"# test\n**/*.log\ndocs\n!docs/keep.md\n",
    );
    write(f.root(), ".dockerignore", b"everything-else\n");
    write(f.root(), "a/b/x.log", b"");
    write(f.root(), "a/b/x.txt", b"");
    write(f.root(), "docs/keep.md", b"");
    write(f.root(), "docs/drop.md", b"");
    write(f.root(), "everything-else", b"");
    let e = f.entries(&f.build(&step(&["."], "/"), &opts()).unwrap()[0]);
    // Not special-cased: both ignore files are ordinary files, `.dockerignore` is unused.
    assert_eq!(
        paths(&e),
        [
            ".dockerignore",
            ".kubefileignore",
            "a/",
            "a/b/",
            "a/b/x.txt",
            "docs/",
            "docs/keep.md",
            "everything-else"
        ]
    );
}

#[test]
fn file_dest_rules() {
    let f = Fixture::new();
    write(f.root(), "k3s", b"bin");
    let e = f.entries(
        &f.build(&step(&["k3s"], "/usr/bin/k3s-renamed"), &opts())
            .unwrap()[0],
    );
    assert_eq!(paths(&e), ["usr/", "usr/bin/", "usr/bin/k3s-renamed"]);
    let e = f.entries(&f.build(&step(&["k3s"], "/usr/bin/"), &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["usr/", "usr/bin/", "usr/bin/k3s"]);
    let e = f.entries(&f.build(&step(&["./k3s"], "/"), &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["k3s"]);
}

#[test]
fn several_sources_need_a_slash_dest() {
    let f = Fixture::new();
    write(f.root(), "a", b"a");
    write(f.root(), "b", b"b");
    let err = f.build(&step(&["a", "b"], "/dir"), &opts()).unwrap_err();
    assert!(
        matches!(err, BuildError::DestNotDirectory { count: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("Kubefile:3:1: COPY has 2 sources"),
        "{err}"
    );
    let err = f.build(&step(&["*"], "/dir"), &opts()).unwrap_err();
    assert!(matches!(err, BuildError::DestNotDirectory { .. }), "{err}");
    let e = f.entries(&f.build(&step(&["a", "b"], "/dir/"), &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["dir/", "dir/a", "dir/b"]);
}

#[test]
fn later_sources_overwrite_and_type_conflicts_are_errors() {
    let f = Fixture::new();
    write(f.root(), "one/f", b"first");
    write(f.root(), "two/f", b"second");
    let e = f.entries(&f.build(&step(&["one", "two"], "/d/"), &opts()).unwrap()[0]);
    assert_eq!(
        e.iter().find(|e| e.path == "d/f").unwrap().content,
        b"second"
    );
    write(f.root(), "three/f/inner", b"dir first");
    let err = f
        .build(&step(&["three", "one"], "/d/"), &opts())
        .unwrap_err();
    assert!(
        matches!(err, BuildError::DestinationConflict { .. }),
        "{err}"
    );
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o640);
        h.set_size(data.len() as u64);
        h.set_mtime(99);
        h.set_uid(1000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn raw_tar_with_name(name: &[u8]) -> Vec<u8> {
    // tar::Builder refuses `..`, so write the header by hand.
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.push(b'x');
    out.resize(1024 + 1024, 0);
    out
}

#[test]
fn add_extracts_tar_gzip_and_zstd_by_content() {
    let f = Fixture::new();
    let plain = tar_of(&[("bin/tool", b"tool"), ("./etc/conf", b"conf")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    std::fs::write(f.root().join("a.tar"), &plain).unwrap();
    std::fs::write(f.root().join("b.tgz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        f.root().join("c.noext"),
        zstd::bulk::compress(&plain, 3).unwrap(),
    )
    .unwrap();
    for name in ["a.tar", "b.tgz", "c.noext"] {
        let mut s = step(&[name], "/opt");
        s.extract_archives = true;
        let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
        assert_eq!(
            paths(&e),
            [
                "opt/",
                "opt/bin/",
                "opt/bin/tool",
                "opt/etc/",
                "opt/etc/conf"
            ],
            "{name}"
        );
        let tool = &e[2];
        assert_eq!(
            (tool.mode, tool.uid, tool.mtime, tool.content.as_slice()),
            (0o640, 0, 1_700_000_000, &b"tool"[..])
        );
    }
    // COPY never extracts.
    let e = f.entries(&f.build(&step(&["a.tar"], "/opt/"), &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["opt/", "opt/a.tar"]);
}

#[test]
fn add_copies_non_archives_and_compressed_non_tars_as_files() {
    let f = Fixture::new();
    write(f.root(), "notes.tar", b"not really a tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"just text").unwrap();
    std::fs::write(f.root().join("text.gz"), gz.finish().unwrap()).unwrap();
    let mut s = step(&["notes.tar", "text.gz"], "/d/");
    s.extract_archives = true;
    let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
    assert_eq!(paths(&e), ["d/", "d/notes.tar", "d/text.gz"]);
}

#[test]
fn add_keeps_archive_hardlinks_and_symlinks() {
    let f = Fixture::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o755);
    b.append_data(&mut h, "z/orig", &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "a/hard", "z/orig").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "a/soft", "../z/orig").unwrap();
    std::fs::write(f.root().join("l.tar"), b.into_inner().unwrap()).unwrap();
    let mut s = step(&["l.tar"], "/");
    s.extract_archives = true;
    let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
    // Path order puts a/hard first, so it carries the data and z/orig links to it.
    assert_eq!(paths(&e), ["a/", "a/hard", "a/soft", "z/", "z/orig"]);
    assert_eq!((e[1].kind, e[1].content.as_slice()), ('0', &b"abc"[..]));
    assert_eq!((e[4].kind, e[4].link.as_deref()), ('1', Some("a/hard")));
    assert_eq!(e[2].link.as_deref(), Some("../z/orig"));
}

#[test]
fn add_refuses_archives_that_escape_dest() {
    let f = Fixture::new();
    for (i, name) in [&b"../evil"[..], b"a/../../evil", b"/etc/passwd"]
        .iter()
        .enumerate()
    {
        let file = format!("bad{i}.tar");
        std::fs::write(f.root().join(&file), raw_tar_with_name(name)).unwrap();
        let mut s = step(&[&file], "/opt/");
        s.extract_archives = true;
        let err = f.build(&s, &opts()).unwrap_err();
        assert!(matches!(err, BuildError::ArchiveEscape { .. }), "{err}");
        assert!(err.to_string().contains("outside the destination"), "{err}");
    }
    // A symlink member followed by a file "through" it is refused as well.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "etc", "/etc").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "etc/passwd", &b"x"[..]).unwrap();
    std::fs::write(f.root().join("through.tar"), b.into_inner().unwrap()).unwrap();
    let mut s = step(&["through.tar"], "/");
    s.extract_archives = true;
    let err = f.build(&s, &opts()).unwrap_err();
    assert!(
        matches!(err, BuildError::DestinationConflict { .. }),
        "{err}"
    );
}

#[test]
fn add_from_url_is_refused() {
    let f = Fixture::new();
    for url in [
        "https://example.com/k3s",
        "http://x/y.tgz",
        "git@github.com:a/b.git",
    ] {
        let mut s = step(&[url], "/opt/");
        s.extract_archives = true;
        let err = f.build(&s, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Kubefile:3:1: ADD from a URL ({url}) is not supported; download it into the context first")
        );
    }
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn big_files_get_their_own_layers_first_and_compressed_ones_stay_uncompressed() {
    let f = Fixture::new();
    write(f.root(), "small", b"small");
    write(
        f.root(),
        "bin/big-text",
        &b"compressible line\n".repeat(4000),
    );
    write(f.root(), "bin/big-random", &pseudo_random(70_000, 7));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b"abc".repeat(100_000)).unwrap();
    write(f.root(), "images/big.tar.gz", &gz.finish().unwrap());
    let o = LayerOptions {
        split_threshold: 1000,
        ..opts()
    };
    let layers = f.build(&step(&["."], "/rootfs/"), &o).unwrap();
    let media: Vec<_> = layers
        .iter()
        .map(|l| l.descriptor.media_type().to_string())
        .collect();
    let all: Vec<Vec<String>> = layers
        .iter()
        .map(|l| f.entries(l).into_iter().map(|e| e.path).collect())
        .collect();
    assert_eq!(
        all,
        [
            vec!["rootfs/", "rootfs/bin/", "rootfs/bin/big-random"],
            vec!["rootfs/", "rootfs/bin/", "rootfs/bin/big-text"],
            vec!["rootfs/", "rootfs/images/", "rootfs/images/big.tar.gz"],
            vec!["rootfs/", "rootfs/bin/", "rootfs/images/", "rootfs/small"],
        ]
    );
    assert_eq!(
        media,
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ]
    );
    // The same binary at the same path shares its blob, whatever else the image holds
    // and whatever mode the context gives its directory.
    let g = Fixture::new();
    write(
        g.root(),
        "bin/big-text",
        &b"compressible line\n".repeat(4000),
    );
    std::fs::set_permissions(g.root().join("bin"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(g.root(), "other", b"other");
    let again = g.build(&step(&["."], "/rootfs/"), &o).unwrap();
    assert_eq!(again[0].descriptor.digest(), layers[1].descriptor.digest());
}

/// Digests must not depend on the builder's core count: zstd's multithreaded
/// mode gives the same bytes for any worker count (given > 1 job of input).
#[test]
fn zstd_output_does_not_depend_on_worker_count() {
    let input: Vec<u8> = pseudo_random(24 << 20, 3)
        .iter()
        .map(|b| b'a' + b % 8)
        .collect();
    let compress = |workers: u32| {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.multithread(workers).unwrap();
        e.write_all(&input).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(compress(1), compress(3));
}

#[test]
fn gzip_and_none_compression() {
    let f = Fixture::new();
    write(f.root(), "a", b"aaaa");
    for (c, media) in [
        (Compression::Gzip, MediaType::ImageLayerGzip),
        (Compression::None, MediaType::ImageLayer),
    ] {
        let layers = f
            .build(
                &step(&["a"], "/a"),
                &LayerOptions {
                    compression: c,
                    ..opts()
                },
            )
            .unwrap();
        assert_eq!(layers[0].descriptor.media_type(), &media);
        assert_eq!(f.entries(&layers[0])[0].content, b"aaaa");
    }
}

#[test]
fn cache_hit_reads_no_content_and_survives_save_and_reopen() {
    let f = Fixture::new();
    write(f.root(), "a", b"aaaa");
    write(f.root(), "d/b", b"bbbb");
    let s = step(&["."], "/");
    let mut cache = f.cache();
    let first = f.build_cached(&s, &mut cache).unwrap();
    cache.save().unwrap();
    let mut cache = f.cache();
    CONTENT_OPENS.with(|n| n.set(0));
    let second = f.build_cached(&s, &mut cache).unwrap();
    assert_eq!(CONTENT_OPENS.with(Cell::get), 0);
    assert_eq!(first, second);
    // A missing blob turns the hit into a rebuild.
    std::fs::remove_file(f.sink.path(first[0].descriptor.digest())).unwrap();
    let third = f.build_cached(&s, &mut cache).unwrap();
    assert!(CONTENT_OPENS.with(Cell::get) > 0);
    assert_eq!(third, first);
}

/// Same size, mtime put back: still a miss, because ctime changed. (A
/// change that leaves ctime and inode alone is not detected: see cache.rs.)
#[test]
fn cache_misses_on_content_change_with_same_size_and_mtime() {
    let f = Fixture::new();
    let file = write(f.root(), "a", b"aaaa");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let s = step(&["a"], "/a");
    let mut cache = f.cache();
    let first = f.build_cached(&s, &mut cache).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&file, b"bbbb").unwrap();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let second = f.build_cached(&s, &mut cache).unwrap();
    assert_ne!(first[0].diff_id, second[0].diff_id);
}

#[test]
fn corrupt_cache_file_is_an_empty_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layers.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let mut cache = LayerCache::open(&path);
    assert!(cache.get("anything", &DirSink::new()).is_none());
    cache.save().unwrap();
}

/// Streams a 300 MB sparse file; nothing may hold a whole file in memory
/// (the test would still pass if something did, but slowly and visibly).
#[test]
fn sparse_300mb_file_streams() {
    let f = Fixture::new();
    let file = File::create(f.root().join("sparse")).unwrap();
    file.set_len(300 * 1024 * 1024).unwrap();
    let o = LayerOptions {
        compression: Compression::Zstd,
        split_threshold: u64::MAX,
        ..opts()
    };
    let layers = f.build(&step(&["sparse"], "/sparse"), &o).unwrap();
    assert!(layers[0].descriptor.size() < 1024 * 1024);
}

#[test]
fn shrinking_file_is_reported_not_written() {
    let f = Fixture::new();
    let file = write(f.root(), "a", b"four");
    let s = step(&["a"], "/a");
    let ctx = Context::open(f.root()).unwrap();
    let inputs = context::resolve(&ctx, &s).unwrap();
    std::fs::write(&file, b"2").unwrap();
    let tree = Tree::build(&s, &inputs).unwrap();
    let plan = tree.plan(&opts()).remove(0);
    let err = write_layer(&f.sink, &s, &plan, 0, &Silent).unwrap_err();
    assert!(matches!(err, BuildError::FileChanged { .. }), "{err}");
    std::fs::remove_file(&file).unwrap();
    let err = write_layer(&f.sink, &s, &plan, 0, &Silent).unwrap_err();
    assert!(matches!(err, BuildError::Unreadable { .. }), "{err}");
    assert!(
        err.to_string().contains("Kubefile:3:1: COPY: cannot read"),
        "{err}"
    );
}

mod bench {
    use super::*;

    /// `SEALRS_BENCH_CONTEXT=dir cargo test --release --lib build::layer::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let Ok(dir) = std::env::var("SEALRS_BENCH_CONTEXT") else {
            return;
        };
        let ctx = Context::open(Path::new(&dir)).unwrap();
        let sink = DirSink::new();
        let cache_dir = tempfile::tempdir().unwrap();
        for compression in [Compression::Zstd, Compression::Gzip] {
            let mut cache = LayerCache::open(&cache_dir.path().join(compression.as_str()));
            let step = step(&["."], "/");
            let opts = LayerOptions {
                compression,
                ..LayerOptions::default()
            };
            let start = std::time::Instant::now();
            let layers = copy_layers(&sink, &ctx, &step, &opts, &mut cache, &Silent).unwrap();
            let secs = start.elapsed().as_secs_f64();
            let input: u64 = walkdir::WalkDir::new(&dir)
                .into_iter()
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            println!(
                "{compression}: {:.0} MB in {secs:.2}s = {:.0} MB/s",
                input as f64 / 1e6,
                input as f64 / 1e6 / secs
            );
            for l in &layers {
                println!(
                    "  {} {} bytes",
                    l.descriptor.media_type(),
                    l.descriptor.size()
                );
            }
        }
    }
}
