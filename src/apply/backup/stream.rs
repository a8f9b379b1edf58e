//! A file on a host read as a stream, a few MiB per command: memory stays
//! flat whatever the snapshot's size, and no transport needs a download
//! call of its own (each chunk is one `dd` whose output the transport
//! returns). A chunk shorter than the file's size promised fails the read:
//! the file changed or shrank while it travelled.

use std::io::{self, Read};

use crate::runtime::backup::Source;
use crate::transport::Transport;

/// Bytes per command: well below the transport's output limit.
const CHUNK_MIB: u64 = 8;
const MIB: u64 = 1 << 20;

/// Prints the path of the source file and its size: `$1` itself (mode
/// `file`), or the only regular file in directory `$1` (mode `only`).
const RESOLVE: &str = r#"if [ "$2" = only ]; then
  set -- "$1"/*
  [ $# -eq 1 ] && [ -f "$1" ] || { echo "expected one file in ${1%/*}, found: $*" >&2; exit 1; }
fi
[ -f "$1" ] || { echo "$1: no such file" >&2; exit 1; }
printf '%s\n' "$1"; stat -c %s -- "$1""#;

const READ: &str = r#"exec dd if="$1" bs=1048576 skip="$2" count="$3" iflag=fullblock status=none"#;

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv
}

/// The file `source` names on the host, and its size.
pub fn resolve(transport: &dyn Transport, source: &Source) -> Result<(String, u64), String> {
    let (path, mode) = match source {
        Source::File(p) => (p.as_str(), "file"),
        Source::OnlyFileIn(d) => (d.as_str(), "only"),
    };
    let out = transport
        .run(&sh(RESOLVE, &[path, mode]), &[], None)
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.tail(5));
    }
    let text = out.stdout_text();
    let mut lines = text.lines();
    match (
        lines.next(),
        lines.next().and_then(|s| s.trim().parse().ok()),
    ) {
        (Some(path), Some(size)) => Ok((path.to_string(), size)),
        _ => Err(format!("unexpected answer about {path}: {text:?}")),
    }
}

/// Reads `size` bytes of `path` on the host, chunk by chunk.
pub struct RemoteFile<'a> {
    transport: &'a dyn Transport,
    path: String,
    size: u64,
    offset: u64,
    chunk: Vec<u8>,
    at: usize,
    progress: &'a dyn Fn(u64),
}

impl<'a> RemoteFile<'a> {
    pub fn new(
        transport: &'a dyn Transport,
        path: &str,
        size: u64,
        progress: &'a dyn Fn(u64),
    ) -> RemoteFile<'a> {
        RemoteFile {
            transport,
            path: path.to_string(),
            size,
            offset: 0,
            chunk: Vec::new(),
            at: 0,
            progress,
        }
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let want = (self.size - self.offset).min(CHUNK_MIB * MIB);
        let skip = (self.offset / MIB).to_string();
        let argv = sh(READ, &[&self.path, &skip, &CHUNK_MIB.to_string()]);
        let out = self
            .transport
            .run(&argv, &[], None)
            .map_err(io::Error::other)?;
        if !out.success() || out.stdout.len() as u64 != want {
            return Err(io::Error::other(format!(
                "{}:{} gave {} bytes at offset {} where {want} were expected (it changed while it was read?) {}",
                self.transport.address(),
                self.path,
                out.stdout.len(),
                self.offset,
                out.tail(3)
            )));
        }
        self.offset += want;
        self.chunk = out.stdout;
        self.at = 0;
        (self.progress)(self.offset);
        Ok(())
    }
}

impl Read for RemoteFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.offset == self.size {
                return Ok(0);
            }
            // Ctrl-C stops the copy between chunks; the backup's cleanup
            // (a runtime stopped for the copy started again) still runs.
            if crate::apply::interrupt::interrupted() {
                return Err(io::Error::other("interrupted (Ctrl-C)"));
            }
            self.next_chunk()?;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
