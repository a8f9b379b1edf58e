//! gzip, zstd or none: which one a stream's first bytes say, and a reader
//! that undoes it. The media type is never trusted for this: docker and OCI
//! spell it differently, and some tools lie.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use oci_spec::image::MediaType;

/// Buffer of the readers made here: large enough that decompressor calls
/// are cheap per byte, small enough not to matter for memory.
const BUF: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

impl Compression {
    /// What a stream's first bytes (four are enough) say.
    pub fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    /// The media type of a layer compressed so.
    pub fn layer_media_type(self) -> MediaType {
        match self {
            Compression::Zstd => MediaType::ImageLayerZstd,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::None => MediaType::ImageLayer,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `reader`, buffered, and what its first bytes say it is compressed with.
pub fn sniff<R: Read>(reader: R) -> io::Result<(Compression, BufReader<R>)> {
    let mut reader = BufReader::with_capacity(BUF, reader);
    let compression = Compression::of(reader.fill_buf()?);
    Ok((compression, reader))
}

/// Undoes `compression` on `reader`. gzip may hold several members, as
/// `gzip -c a b` writes: all are read.
pub fn decoder<'a>(
    compression: Compression,
    reader: impl BufRead + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::None => Box::new(reader),
    })
}

/// `reader` decompressed as its first bytes say; plain when they name
/// neither gzip nor zstd.
pub fn decompressed<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let (compression, reader) = sniff(reader)?;
    decoder(compression, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_zstd_and_plain_streams_read_back() {
        let plain = b"hello, layers".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        for (bytes, expected) in [
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&plain, Compression::None),
        ] {
            assert_eq!(sniff(&bytes[..]).unwrap().0, expected);
            let mut out = Vec::new();
            decompressed(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain, "{expected}");
        }
        assert_eq!(Compression::of(b""), Compression::None);
    }
}
