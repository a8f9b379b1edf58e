//! The build-time half of the installer: `sealrs build` puts a sealrs binary
//! into every rootfs image as one extra layer holding `opt/sealrs/sealrs`.
//!
//! The layer is a plain tar (`application/vnd.oci.image.layer.v1.tar`), so
//! that a host with nothing but coreutils and tar can extract the installer
//! before sealrs exists there (the other layers are then unpacked by it). Not
//! gzip: decompressing it cost each host more CPU than its bytes cost the
//! network, at the very start of a first apply. (Images built before carry
//! a gzip layer, which hosts still unpack.) It is deterministic: entries in
//! a fixed order, uid/gid 0, every mtime `SOURCE_DATE_EPOCH` (or 0), so the
//! same binary gives the same digest and images built by the same sealrs
//! share the blob.
//!
//! The binary is this sealrs (`current_exe`) when the image's architecture is
//! this machine's; for another architecture the build needs `--installer PATH`
//! (a sealrs built for it) or `--no-installer`. A debug sealrs is over 100 MB,
//! so the layer is kept in the build's layer cache under a key made of the
//! binary's path, size, mtime, ctime and inode: an unchanged binary costs one
//! `stat`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};

use super::layer::header;
use super::{BlobSink, BuildError, Layer, LayerCache};
use crate::arch;
use crate::host_paths::{INSTALLER_ANNOTATION, INSTALLER_PATH};
use crate::progress::Progress;

/// Bumped whenever the blob written for the same binary changes.
const FORMAT: u64 = 3;

/// Which sealrs binary a rootfs image carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InstallerChoice {
    /// This sealrs, when the image is for this machine's architecture.
    #[default]
    CurrentExe,
    /// A sealrs binary built for the image's architecture (`--installer PATH`).
    Binary(PathBuf),
    /// No installer (`--no-installer`): the image is applied by other means.
    None,
}

/// Refuses to embed this sealrs into an image for another platform (the
/// build checks it before any layer, and again here).
pub fn check_choice(
    choice: &InstallerChoice,
    target_os: &str,
    target_arch: &str,
) -> Result<(), BuildError> {
    if *choice == InstallerChoice::CurrentExe
        && (target_os != "linux" || target_arch != arch::host())
    {
        return Err(BuildError::InstallerArch {
            target: format!("{target_os}/{target_arch}"),
            host: format!("linux/{}", arch::host()),
            rust_target: rust_target(target_arch).to_string(),
        });
    }
    Ok(())
}

/// The Rust target that builds a sealrs for `arch` (Debian's names, as
/// [`arch::normalize`] gives them).
fn rust_target(arch: &str) -> &'static str {
    match arch {
        "arm64" => "aarch64-unknown-linux-gnu",
        "arm" => "armv7-unknown-linux-gnueabihf",
        "riscv64" => "riscv64gc-unknown-linux-gnu",
        "ppc64le" => "powerpc64le-unknown-linux-gnu",
        "s390x" => "s390x-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// The installer layer for an image of `target_os`/`target_arch`, from the
/// cache when the binary has not changed; `None` with
/// [`InstallerChoice::None`].
pub fn installer_layer(
    sink: &dyn BlobSink,
    cache: &mut LayerCache,
    choice: &InstallerChoice,
    target_os: &str,
    target_arch: &str,
    epoch: u64,
    progress: &dyn Progress,
) -> Result<Option<Layer>, BuildError> {
    let binary = match choice {
        InstallerChoice::None => return Ok(None),
        InstallerChoice::Binary(path) => path.clone(),
        InstallerChoice::CurrentExe => {
            check_choice(choice, target_os, target_arch)?;
            std::env::current_exe().map_err(|source| BuildError::Installer {
                path: PathBuf::from("/proc/self/exe"),
                source,
            })?
        }
    };
    let err = |source| BuildError::Installer {
        path: binary.clone(),
        source,
    };
    let meta = fs::metadata(&binary).map_err(err)?;
    if !meta.is_file() {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let key = cache_key(&binary, &meta, epoch);
    if let Some(mut layers) = cache.get(&key, sink) {
        if layers.len() == 1 {
            progress.message(&format!("installer {}: cache hit", binary.display()));
            return Ok(layers.pop());
        }
    }
    let task = progress.begin(
        &format!("embedding the installer {}", binary.display()),
        Some(meta.len()),
    );
    let layer = write_layer(sink, &binary, meta.len(), epoch)?;
    task.finish(&format!(
        "installer → {} ({})",
        crate::progress::text::short_digest(layer.descriptor.digest().as_ref()),
        crate::progress::text::size(layer.descriptor.size())
    ));
    cache.put(key, vec![layer.clone()]);
    Ok(Some(layer))
}

fn cache_key(binary: &Path, meta: &fs::Metadata, epoch: u64) -> String {
    let mut h = Sha256::new();
    let path = binary.as_os_str().as_bytes();
    h.update((path.len() as u64).to_le_bytes());
    h.update(path);
    for n in [
        FORMAT,
        epoch,
        meta.len(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
        meta.ino(),
        meta.dev(),
    ] {
        h.update(n.to_le_bytes());
    }
    format!("installer:{}", hex::encode(h.finalize()))
}

fn write_layer(
    sink: &dyn BlobSink,
    binary: &Path,
    size: u64,
    epoch: u64,
) -> Result<Layer, BuildError> {
    let store_err = |source| BuildError::InstallerStore {
        path: binary.to_path_buf(),
        source,
    };
    let io_err = |source| BuildError::Installer {
        path: binary.to_path_buf(),
        source,
    };
    let blob = sink.create().map_err(store_err)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 * 1024, blob));
    let dir = INSTALLER_PATH.rsplit_once('/').map_or("", |(d, _)| d);
    let mut prefix = String::new();
    for part in dir.split('/') {
        prefix.push_str(part);
        prefix.push('/');
        let mut h = header(tar::EntryType::Directory, 0o755, 0, epoch);
        tar.append_data(&mut h, &prefix, io::empty())
            .map_err(io_err)?;
    }
    let file = File::open(binary).map_err(io_err)?;
    let mut h = header(tar::EntryType::Regular, 0o755, size, epoch);
    tar.append_data(&mut h, INSTALLER_PATH, io::Read::take(file, size))
        .map_err(io_err)?;
    let mut buffered = tar.into_inner().map_err(io_err)?;
    buffered.flush().map_err(io_err)?;
    let blob = buffered.into_inner().map_err(|e| io_err(e.into_error()))?;
    let (digest, written) = blob.finish().map_err(store_err)?;
    // Uncompressed: the tar's digest is the blob's.
    let diff_id = digest.clone();
    // Marked, so that `sealrs run` finds the layer to unpack with the host's tar.
    let mut descriptor = Descriptor::new(MediaType::ImageLayer, written, digest);
    descriptor.set_annotations(Some(
        [(INSTALLER_ANNOTATION.to_string(), INSTALLER_PATH.to_string())].into(),
    ));
    Ok(Layer {
        descriptor,
        diff_id,
    })
}
