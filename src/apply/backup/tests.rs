use std::os::unix::fs::PermissionsExt;

use super::file::{self, Manifest, Writer, FORMAT};
use super::BackupError;
use crate::runtime::backup::SnapshotKind;

fn manifest(sha256: String, size: u64) -> Manifest {
    Manifest {
        format: FORMAT,
        cluster: "c".into(),
        runtime: "kubeadm".into(),
        version: "v1.30.2".into(),
        masters: vec!["10.0.0.1".into()],
        taken_on: "10.0.0.1".into(),
        kind: SnapshotKind::EtcdSnapshot,
        snapshot_size: size,
        snapshot_sha256: sha256,
        created: 1,
    }
}

/// A backup file of `snapshot`, with a secret and a saved cluster.
fn write(dir: &std::path::Path, snapshot: &[u8]) -> std::path::PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("images/ab")).unwrap();
    std::fs::write(state.join("Clusterfile"), "name: c\n").unwrap();
    std::fs::write(state.join("images/ab/manifest.json"), "{}").unwrap();
    std::fs::write(state.join("lock"), "").unwrap();
    let path = dir.join("b.tar");
    let mut w = Writer::create(&path).unwrap();
    let (sha, size) = w.snapshot(snapshot.len() as u64, snapshot).unwrap();
    w.secret("token", b"s3cret\n").unwrap();
    w.state(&state).unwrap();
    w.finish(&manifest(sha, size)).unwrap();
    path
}

#[test]
fn a_backup_file_is_0600_and_reads_back_with_its_snapshot_secrets_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let path = write(dir.path(), &snapshot);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = file::load(&path).unwrap();
    assert_eq!(std::fs::read(&loaded.snapshot).unwrap(), snapshot);
    assert_eq!(loaded.manifest.snapshot_size, 200_000);
    assert_eq!(
        loaded.manifest.snapshot_sha256,
        crate::digest::sha256_digest(&snapshot).to_string()
    );
    assert_eq!(loaded.secrets.len(), 1);
    assert_eq!(loaded.secrets[0].1.expose(), "s3cret");
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&path).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "snapshot",
            "secrets/token",
            "state/Clusterfile",
            "state/images/ab/manifest.json",
            "manifest.json"
        ]
    );
    // No temp file stays beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn a_changed_byte_of_the_snapshot_is_a_checksum_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &[7u8; 5000]);
    let mut bytes = std::fs::read(&path).unwrap();
    // The snapshot's data starts after its 512-byte header.
    bytes[512 + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = file::load(&path).unwrap_err();
    assert!(matches!(err, BackupError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("checksum does not match"), "{err}");
}

#[test]
fn a_file_cut_short_or_of_another_kind_is_refused_as_truncated_or_not_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &[1u8; 50_000]);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 1024 - 512, 100] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = file::load(&path).unwrap_err();
        assert!(
            matches!(err, BackupError::Unreadable { .. }),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().contains("truncated or not a sealrs backup"),
            "{err}"
        );
    }
    std::fs::write(&path, b"not a tar at all").unwrap();
    assert!(matches!(
        file::load(&path).unwrap_err(),
        BackupError::Unreadable { .. }
    ));
}

#[test]
fn a_host_file_streams_in_chunks_whole_and_a_file_that_shrinks_midway_fails() {
    use std::io::Read as _;

    use super::stream::{resolve, RemoteFile};
    use crate::runtime::backup::Source;
    use crate::transport::Local;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    // Three chunks, the last one short.
    let bytes: Vec<u8> = (0..(17u32 << 20) + 4321).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let local = Local::new();
    let source = Source::OnlyFileIn(dir.path().display().to_string());
    let (found, size) = resolve(&local, &source).unwrap();
    assert_eq!(
        (found.as_str(), size),
        (path.to_str().unwrap(), bytes.len() as u64)
    );
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |n: u64| seen.lock().unwrap().push(n);
    let mut read = Vec::new();
    RemoteFile::new(&local, &found, size, &progress)
        .read_to_end(&mut read)
        .unwrap();
    assert!(read == bytes, "the bytes read differ");
    assert_eq!(
        *seen.lock().unwrap(),
        [8 << 20, 16 << 20, bytes.len() as u64]
    );

    // Shorter than its size said: an error, never a short read taken as whole.
    let mut reader = RemoteFile::new(&local, &found, size, &|_| {});
    let mut first = vec![0u8; 1 << 20];
    reader.read_exact(&mut first).unwrap();
    std::fs::write(&path, &bytes[..9 << 20]).unwrap();
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("where"), "{err}");

    std::fs::write(dir.path().join("second"), b"x").unwrap();
    let err = resolve(&local, &source).unwrap_err();
    assert!(err.contains("expected one file"), "{err}");
}
