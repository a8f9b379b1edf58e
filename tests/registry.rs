//! Push, pull and login against a real `docker-registry`, checked with skopeo.
//! Images are written straight into a `Store` (real gzip/tar layers), so
//! these tests need neither the CLI nor the build module.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sealrs::progress::{Progress, Silent, Task};
use sealrs::reference::Reference;
use sealrs::registry::{self, RegistryError, RegistryOptions};
use sealrs::store::{Descriptor, MediaType, Store};
use sha2::{Digest as _, Sha256};

use crate::registry_server::{Options, Proxy, Registry, PASSWORD, USER};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Layer {
    media_type: &'static str,
    blob: Vec<u8>,
    diff_id: String,
}

fn gz_layer(files: &[(&str, Vec<u8>)]) -> Layer {
    let tar = tar_of(files);
    Layer {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        blob: gzip(&tar),
        diff_id: sha(&tar),
    }
}

fn plain_layer(files: &[(&str, Vec<u8>)]) -> Layer {
    let tar = tar_of(files);
    Layer {
        media_type: "application/vnd.oci.image.layer.v1.tar",
        diff_id: sha(&tar),
        blob: tar,
    }
}

/// Writes config, layers and manifest into `store` and tags `name`.
fn make_image(store: &Store, name: &str, layers: &[Layer]) -> Descriptor {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"sealrs.io/type": "rootfs", "test.name": name}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let (config_digest, config_size) = store.put_bytes(&config).unwrap();
    let mut layer_descs = Vec::new();
    for l in layers {
        let (d, size) = store.put_bytes(&l.blob).unwrap();
        layer_descs.push(
            serde_json::json!({"mediaType": l.media_type, "digest": d.to_string(), "size": size}),
        );
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
        "layers": layer_descs,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let (digest, size) = store.put_bytes(&bytes).unwrap();
    let desc = Descriptor::new(MediaType::ImageManifest, size, digest);
    store.tag(name, &desc).unwrap();
    desc
}

fn small_image(store: &Store, name: &str) -> Descriptor {
    make_image(
        store,
        name,
        &[
            gz_layer(&[("bin/tool", b"#!/bin/sh\necho hi\n".to_vec())]),
            gz_layer(&[("etc/data.bin", noise(300_000, 7))]),
        ],
    )
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new()
        .prefix("sealrs-store-")
        .tempdir()
        .unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    (dir, store)
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// Options that never read the user's own auth files.
fn opts(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        auth_file: Some(dir.join("auth/auth.json")),
        docker_config_dir: Some(dir.join("docker")),
        retries: 2,
        ..RegistryOptions::default()
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo_digest(image: &str, extra: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw"];
    args.extend_from_slice(extra);
    args.push(image);
    // `--raw` gives the manifest bytes; their hash is the manifest digest.
    let raw = Command::new("skopeo").args(&args).output().unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let mut args = vec!["inspect", "--format", "{{.Digest}}"];
    args.extend_from_slice(extra);
    args.push(image);
    let reported = skopeo(&args).trim().to_string();
    assert_eq!(
        reported,
        sha(&raw.stdout),
        "skopeo's digest and the raw manifest disagree"
    );
    reported
}

/// Records tasks and bytes, to check that every blob reports its progress.
#[derive(Default)]
struct Recorder {
    tasks: Mutex<Vec<Recorded>>,
}

/// Label, announced total, bytes reported.
type Recorded = (String, Option<u64>, Arc<AtomicU64>);

struct RecTask(Arc<AtomicU64>);

impl Task for RecTask {
    fn advance(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::SeqCst);
    }
    fn finish(&self, _summary: &str) {}
}

impl Progress for Recorder {
    fn begin(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bytes = Arc::new(AtomicU64::new(0));
        self.tasks
            .lock()
            .unwrap()
            .push((label.to_string(), total, bytes.clone()));
        Box::new(RecTask(bytes))
    }
    fn message(&self, _text: &str) {}
}

fn uploads(reg: &Registry) -> usize {
    reg.requests("PUT /v2/")
        - reg.requests("PUT /v2/team/app/manifests/")
        - reg.requests("PUT /v2/other/app/manifests/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_matches_skopeo_and_a_second_push_uploads_nothing() {
    let reg = Registry::start(Options::default());
    let (dir, store) = new_store();
    let desc = small_image(&store, "localhost/app:1");
    let dest = reference(&format!("{}/team/app:1", reg.host()));
    let rec = Recorder::default();
    let digest = registry::push(&store, "localhost/app:1", &dest, &opts(dir.path()), &rec)
        .await
        .unwrap();
    assert_eq!(&digest, desc.digest());
    // One task per blob and one for the image, each reporting every byte.
    let tasks = rec.tasks.lock().unwrap().clone();
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    for (label, total, bytes) in &tasks {
        assert_eq!(Some(bytes.load(Ordering::SeqCst)), *total, "{label}");
    }
    let blob_sum: u64 = tasks
        .iter()
        .filter(|t| t.0.starts_with("push sha256:"))
        .map(|t| t.1.unwrap())
        .sum();
    let image_task = tasks
        .iter()
        .find(|t| t.0 == format!("push {dest}"))
        .unwrap();
    assert_eq!(image_task.1, Some(blob_sum));
    let image = format!("docker://{}/team/app:1", reg.host());
    assert_eq!(
        skopeo_digest(&image, &["--tls-verify=false"]),
        digest.to_string()
    );
    assert_eq!(uploads(&reg), 3, "{}", reg.log());

    // Again: every blob is already there.
    let posts_before = reg.requests("POST /v2/");
    let again = registry::push(&store, "localhost/app:1", &dest, &opts(dir.path()), &Silent)
        .await
        .unwrap();
    assert_eq!(again, digest);
    assert_eq!(
        uploads(&reg),
        3,
        "second push uploaded blobs:\n{}",
        reg.log()
    );
    assert_eq!(reg.requests("POST /v2/"), posts_before);

    // skopeo can copy it back out, to the same digest.
    let out = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &image,
        &format!("oci:{}:x", out.display()),
    ]);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:x", out.display()), &[]),
        digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_oci_and_docker_images_that_we_pull_and_unpack() {
    let reg = Registry::start(Options::default());
    let (dir, src) = new_store();
    small_image(&src, "localhost/app:1");
    let layout = format!("oci:{}:localhost/app:1", src.root().join("oci").display());
    let oci_dest = format!("docker://{}/skopeo/oci:1", reg.host());
    let v2_dest = format!("docker://{}/skopeo/v2s2:1", reg.host());
    skopeo(&["copy", "--dest-tls-verify=false", &layout, &oci_dest]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &layout,
        &v2_dest,
    ]);

    let (_d2, store) = new_store();
    for (image, media_type) in [
        (&oci_dest, OCI_MANIFEST),
        (
            &v2_dest,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let expected = skopeo_digest(image, &["--tls-verify=false"]);
        let r = reference(image.strip_prefix("docker://").unwrap());
        let desc = registry::pull(&store, &r, &opts(dir.path()), &Silent)
            .await
            .unwrap();
        assert_eq!(desc.digest().to_string(), expected, "{image}");
        assert_eq!(desc.media_type().to_string(), media_type);
        // The store holds what was pulled, byte for byte, under the name.
        let img = store.image(&r.to_string()).unwrap();
        assert_eq!(img.descriptor.digest(), desc.digest());
        assert_eq!(img.config.os().to_string(), "linux");
        // And its layers unpack: the file we put in is there.
        let mut found = false;
        for layer in img.manifest.layers() {
            let gz = flate2::read::GzDecoder::new(store.open_blob(layer.digest()).unwrap());
            for entry in tar::Archive::new(gz).entries().unwrap() {
                let mut entry = entry.unwrap();
                if entry.path().unwrap().to_str() == Some("bin/tool") {
                    let mut s = String::new();
                    entry.read_to_string(&mut s).unwrap();
                    assert_eq!(s, "#!/bin/sh\necho hi\n");
                    found = true;
                }
            }
        }
        assert!(found, "bin/tool not in the pulled layers of {image}");
        // skopeo reads our store the same way. (Its OCI-layout reader skips
        // index entries with docker media types, so only for the OCI image.)
        if media_type == OCI_MANIFEST {
            let ours = format!("oci:{}:{}", store.root().join("oci").display(), r);
            assert_eq!(skopeo_digest(&ours, &[]), expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mounts_blobs_from_the_repository_it_was_pulled_from() {
    let reg = Registry::start(Options::default());
    let (dir, src) = new_store();
    small_image(&src, "localhost/app:1");
    let first = reference(&format!("{}/team/app:1", reg.host()));
    registry::push(&src, "localhost/app:1", &first, &opts(dir.path()), &Silent)
        .await
        .unwrap();
    let (_d2, store) = new_store();
    registry::pull(&store, &first, &opts(dir.path()), &Silent)
        .await
        .unwrap();
    let uploads_before = uploads(&reg);
    let second = reference(&format!("{}/other/app:1", reg.host()));
    let digest = registry::push(
        &store,
        &first.to_string(),
        &second,
        &opts(dir.path()),
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(
        uploads(&reg),
        uploads_before,
        "blobs were uploaded, not mounted:\n{}",
        reg.log()
    );
    assert_eq!(
        reg.requests("POST /v2/other/app/blobs/uploads/?mount="),
        3,
        "{}",
        reg.log()
    );
    let image = format!("docker://{second}");
    assert_eq!(
        skopeo_digest(&image, &["--tls-verify=false"]),
        digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_named_404() {
    let reg = Registry::start(Options::default());
    let (dir, store) = new_store();
    let r = reference(&format!("{}/nothing/here:1", reg.host()));
    let err = registry::pull(&store, &r, &opts(dir.path()), &Silent)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    eprintln!("error shown: {text}");
    assert!(
        text.contains(&reg.host()) && text.contains("404") && text.contains("nothing/here"),
        "{text}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_in_the_registry_is_refused_and_nothing_is_written() {
    let reg = Registry::start(Options::default());
    let (dir, src) = new_store();
    let desc = small_image(&src, "localhost/app:1");
    let r = reference(&format!("{}/team/app:1", reg.host()));
    registry::push(&src, "localhost/app:1", &r, &opts(dir.path()), &Silent)
        .await
        .unwrap();
    let manifest = src.read_manifest(&desc).unwrap();
    let victim = manifest.layers()[1].digest().to_string();
    reg.damage_blob(&victim);

    let (_d2, store) = new_store();
    // A previous version under the same name must survive the failed pull.
    let old = make_image(
        &store,
        &r.to_string(),
        &[gz_layer(&[("old", b"old".to_vec())])],
    );
    let blobs_before = blob_files(&store);
    let err = registry::pull(&store, &r, &opts(dir.path()), &Silent)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    eprintln!("error shown: {text}");
    assert!(
        text.contains(&victim) && text.contains(&reg.host()),
        "{text}"
    );
    assert_eq!(
        store.lookup(&r.to_string()).unwrap().unwrap().digest(),
        old.digest()
    );
    assert_eq!(blob_files(&store), blobs_before, "a blob was written");
    assert!(
        std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp files left"
    );
}

fn blob_files(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("oci/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_killed_mid_push_gives_a_clear_error_and_a_rerun_finishes() {
    let reg = Arc::new(Registry::start(Options::default()));
    let (dir, store) = new_store();
    let desc = make_image(
        &store,
        "localhost/big:1",
        &[
            plain_layer(&[("big.bin", noise(6_000_000, 11))]),
            gz_layer(&[("small", b"x".to_vec())]),
        ],
    );
    let victim = reg.clone();
    let proxy = Proxy::start(reg.port, Some((2_000_000, Box::new(move || victim.kill()))));
    let dest = reference(&format!("{}/team/big:1", proxy.host()));
    let err = registry::push(&store, "localhost/big:1", &dest, &opts(dir.path()), &Silent)
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("error shown: {text}");
    assert!(text.contains(&proxy.host()), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    // The local store is untouched.
    assert!(store.fsck().unwrap().is_clean());
    assert_eq!(
        store.lookup("localhost/big:1").unwrap().unwrap().digest(),
        desc.digest()
    );

    reg.restart();
    let digest = registry::push(&store, "localhost/big:1", &dest, &opts(dir.path()), &Silent)
        .await
        .unwrap();
    assert_eq!(&digest, desc.digest());
    let direct = format!("docker://{}/team/big:1", reg.host());
    assert_eq!(
        skopeo_digest(&direct, &["--tls-verify=false"]),
        digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_login_push_pull_logout() {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let (dir, store) = new_store();
    let desc = small_image(&store, "localhost/app:1");
    let auth_file = dir.path().join("auth/auth.json");
    let no_ca = opts(dir.path());
    let with_ca = RegistryOptions {
        cert_dir: Some(reg.cert_dir()),
        ..opts(dir.path())
    };

    // Without the CA: a TLS error that says where the CA goes, not a fallback to HTTP.
    let err = registry::login(&reg.host(), USER, PASSWORD, &no_ca)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    eprintln!("error shown: {text}");
    assert!(
        text.contains(&reg.host()) && text.contains("--cert-dir"),
        "{text}"
    );

    // A wrong password: 401 and the registry named, the password nowhere.
    let wrong = "wrong-pass-1234";
    let err = registry::login(&reg.host(), USER, wrong, &with_ca)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    eprintln!("error shown: {text}");
    assert!(text.contains(&reg.host()) && text.contains("401"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!auth_file.exists(), "a refused login wrote the auth file");

    // No credentials yet: push is refused with a hint to log in.
    let dest = reference(&format!("{}/team/app:1", reg.host()));
    let err = registry::push(&store, "localhost/app:1", &dest, &with_ca, &Silent)
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err:?}");
    assert!(err.to_string().contains("sealrs login"), "{err}");

    registry::login(&reg.host(), USER, PASSWORD, &with_ca)
        .await
        .unwrap();
    let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&auth_file).unwrap();
    assert!(
        written.contains(&reg.host()) && !written.contains(PASSWORD),
        "{written}"
    );

    let digest = registry::push(&store, "localhost/app:1", &dest, &with_ca, &Silent)
        .await
        .unwrap();
    assert_eq!(&digest, desc.digest());
    let creds = format!("--creds={USER}:{PASSWORD}");
    let cert_dir = format!("--cert-dir={}", reg.cert_dir().display());
    assert_eq!(
        skopeo_digest(&format!("docker://{dest}"), &[&creds, &cert_dir]),
        digest.to_string()
    );
    let (_d2, other) = new_store();
    let pulled = registry::pull(&other, &dest, &with_ca, &Silent)
        .await
        .unwrap();
    assert_eq!(pulled.digest(), desc.digest());

    registry::logout(&reg.host(), &with_ca).unwrap();
    assert!(matches!(
        registry::logout(&reg.host(), &with_ca),
        Err(RegistryError::NotLoggedIn { .. })
    ));
    let (_d3, third) = new_store();
    let err = registry::pull(&third, &dest, &with_ca, &Silent)
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_the_wanted_platform() {
    let reg = Registry::start(Options::default());
    let (dir, src) = new_store();
    let amd = small_image(&src, "localhost/app:amd64");
    let arm = make_image(
        &src,
        "localhost/app:arm64",
        &[gz_layer(&[("arm", b"arm".to_vec())])],
    );
    let o = opts(dir.path());
    for (name, tag) in [
        ("localhost/app:amd64", "amd64"),
        ("localhost/app:arm64", "arm64"),
    ] {
        let dest = reference(&format!("{}/multi/app:{tag}", reg.host()));
        registry::push(&src, name, &dest, &o, &Silent)
            .await
            .unwrap();
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest().to_string(), "size": amd.size(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest().to_string(), "size": arm.size(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    });
    let index_path = dir.path().join("index.json");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    // No tool here pushes a hand-made index, so PUT it over plain HTTP.
    let url = format!("http://{}/v2/multi/app/manifests/all", reg.host());
    let resp = reqwest::Client::new()
        .put(&url)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(std::fs::read(&index_path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);

    let r = reference(&format!("{}/multi/app:all", reg.host()));
    let (_d2, store) = new_store();
    let arm_opts = RegistryOptions {
        platform: Some("linux/arm64".into()),
        ..o.clone()
    };
    let desc = registry::pull(&store, &r, &arm_opts, &Silent)
        .await
        .unwrap();
    assert_eq!(desc.digest(), arm.digest());
    let amd_opts = RegistryOptions {
        platform: Some("linux/amd64".into()),
        ..o.clone()
    };
    let desc = registry::pull(&store, &r, &amd_opts, &Silent)
        .await
        .unwrap();
    assert_eq!(desc.digest(), amd.digest());
    let s390 = RegistryOptions {
        platform: Some("linux/s390x".into()),
        ..o
    };
    let err = registry::pull(&store, &r, &s390, &Silent)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

/// A stand-in for token auth (docker-registry here cannot issue tokens
/// without a separate token server): `/v2/` challenges with `Bearer`, `/token`
/// checks basic credentials and hands out a token, and the manifest endpoint
/// answers 404 only to that token. Plain HTTP on 127.0.0.1; TLS hellos are
/// closed at once so the client falls back.
struct TokenServer {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start() -> TokenServer {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) if head.is_empty() && byte[0] == 0x16 => break,
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    continue;
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                seen2.lock().unwrap().push(format!("{path} {auth}"));
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                );
                let good_basic = format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{USER}:{PASSWORD}")
                    )
                );
                let (status, extra, body) = if path.starts_with("/token") {
                    if auth == good_basic {
                        (
                            "200 OK",
                            String::new(),
                            r#"{"token":"good-token"}"#.to_string(),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            r#"{"details":"bad credentials"}"#.to_string(),
                        )
                    }
                } else if auth != "Bearer good-token" {
                    ("401 Unauthorized", challenge, "{}".to_string())
                } else if path == "/v2/" {
                    ("200 OK", String::new(), "{}".to_string())
                } else {
                    (
                        "404 Not Found",
                        String::new(),
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                            .to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { port, seen }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_challenges_get_a_scoped_token_with_the_stored_credentials() {
    let server = TokenServer::start();
    let host = format!("127.0.0.1:{}", server.port);
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());

    let err = registry::login(&host, USER, "not-it-987", &o)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains(&host) && text.contains("401") && !text.contains("not-it-987"),
        "{text}"
    );
    registry::login(&host, USER, PASSWORD, &o).await.unwrap();

    let (_d, store) = new_store();
    let r = reference(&format!("{host}/team/app:1"));
    // A 404 (not a 401) proves the manifest request carried the token.
    let err = registry::pull(&store, &r, &o, &Silent).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull ")),
        "{seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_ticket_under_token_auth_carries_a_pull_scoped_token_and_no_credentials() {
    let server = TokenServer::start();
    let host = format!("127.0.0.1:{}", server.port);
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    registry::login(&host, USER, PASSWORD, &o).await.unwrap();

    // Even when credentials may go to hosts, a token does instead.
    let ticket = registry::hosts::PullTicket::new(&host, "team/app", &o, true)
        .await
        .unwrap();
    assert_eq!(
        ticket.bearer.as_ref().map(|t| t.expose()),
        Some("good-token")
    );
    assert!(ticket.credentials.is_none(), "{ticket:?}");
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull ")),
        "{seen:#?}"
    );

    // A host with only the ticket: its first request carries the token (a
    // 404 for the blob, not a 401), and it asks the token server nothing.
    let asked = seen.iter().filter(|s| s.starts_with("/token")).count();
    let digest: oci_spec::image::Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let err = tokio::task::spawn_blocking(move || {
        registry::hosts::blob_stream(&ticket, vec![(digest, 1)]).err()
    })
    .await
    .unwrap();
    assert!(
        matches!(err, Some(RegistryError::NotFound { .. })),
        "{err:?}"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("/token")).count(),
        asked,
        "{seen:#?}"
    );
}
