//! SHA-256, the one digest sealrs makes: of bytes, of a stream read to its
//! end, or of what passes through a reader or writer, as an OCI [`Digest`]
//! (`sha256:<hex>`). Streams are hashed as they flow, so no byte is read
//! twice to be checked.

use std::io::{self, Read, Write};

use oci_spec::image::{Digest, Sha256Digest};
use sha2::{Digest as _, Sha256};

/// Buffer of [`hash_reader`]: memory stays flat whatever the stream's size.
const BUF: usize = 64 * 1024;

/// The digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    finish(Sha256::new_with_prefix(bytes))
}

/// The digest that `hasher` holds.
fn finish(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    let sha: Sha256Digest = hex.parse().expect("sha256 hex is always a valid digest");
    sha.into()
}

/// Reads `reader` to its end; its digest and length.
pub fn hash_reader(reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hashing = Hashing::new(reader);
    let mut buf = vec![0u8; BUF];
    while hashing.read(&mut buf)? != 0 {}
    let (_, digest, size) = hashing.into_parts();
    Ok((digest, size))
}

/// Hashes and counts every byte read from or written to `inner`.
#[derive(Debug)]
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    size: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Bytes through so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of the bytes through so far.
    pub fn digest(&self) -> Digest {
        finish(self.hasher.clone())
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream underneath, the digest and the count of what went through.
    pub fn into_parts(self) -> (T, Digest, u64) {
        (self.inner, finish(self.hasher), self.size)
    }

    fn saw(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.saw(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.saw(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn bytes_streams_readers_and_writers_agree() {
        assert_eq!(sha256_digest(b"abc").to_string(), ABC);
        assert_eq!(
            hash_reader(&b"abc"[..]).unwrap(),
            (sha256_digest(b"abc"), 3)
        );
        let mut writer = Hashing::new(Vec::new());
        writer.write_all(b"ab").unwrap();
        writer.write_all(b"c").unwrap();
        assert_eq!(
            (writer.digest().to_string(), writer.size()),
            (ABC.into(), 3)
        );
        let (out, digest, size) = writer.into_parts();
        assert_eq!(
            (out, digest.to_string(), size),
            (b"abc".to_vec(), ABC.into(), 3)
        );
    }
}
