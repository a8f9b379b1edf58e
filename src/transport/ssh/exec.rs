//! Running commands: one channel per command, stdin streamed from a task of
//! its own while stdout and stderr are read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::bridge::{drive_watching, Reporter};
use super::{Handle, Ssh};
use crate::transport::{env_script, sh_command, Capture, Output, TransportError, OUTPUT_LIMIT};

/// Bytes read from a local file per `data_bytes` call; russh cuts each into
/// packets of the host's maximum size (32 KiB for OpenSSH's sshd).
const CHUNK: usize = 256 << 10;

impl Ssh {
    fn handle(&self) -> Arc<Handle> {
        self.handle.clone().expect("connection open until drop")
    }

    fn invalid(&self, detail: String) -> TransportError {
        TransportError::InvalidArgument {
            host: self.label.clone(),
            detail,
        }
    }

    /// The command string and the stdin header for `argv` with `env`.
    pub(super) fn prepare(
        &self,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<(String, Vec<u8>), TransportError> {
        let command = sh_command(argv).map_err(|e| self.invalid(e))?;
        if env.is_empty() {
            return Ok((command, Vec::new()));
        }
        let header = env_script(env).map_err(|e| self.invalid(e))?.into_bytes();
        // Reads exactly the header from stdin (dd with 1-byte blocks never reads
        // ahead), evaluates its quoted exports, then runs argv with the rest of
        // stdin. Only the byte count varies; values never enter the string.
        let wrapper = format!(
            "eval \"$(dd bs=1 count={} 2>/dev/null)\" || exit 125; exec \"$@\"",
            header.len()
        );
        let mut wrapped = vec![
            "sh".to_string(),
            "-c".to_string(),
            wrapper,
            "sealrs".to_string(),
        ];
        wrapped.extend(argv.iter().cloned());
        let command = sh_command(&wrapped).map_err(|e| self.invalid(e))?;
        Ok((command, header))
    }

    pub(super) fn exec(
        &self,
        command: String,
        input: Input,
        progress: &dyn Fn(u64),
    ) -> Result<Output, TransportError> {
        self.exec_watching(command, input, progress, None)
    }

    /// [`Ssh::exec`], calling `on_line` with each stderr line as it arrives.
    pub(super) fn exec_watching(
        &self,
        command: String,
        input: Input,
        progress: &dyn Fn(u64),
        on_line: Option<&dyn Fn(&str)>,
    ) -> Result<Output, TransportError> {
        let handle = self.handle();
        let channels = self.channels.clone();
        let host = self.label.clone();
        let watch = on_line.is_some();
        drive_watching(
            &self.label,
            progress,
            on_line.unwrap_or(&|_| {}),
            move |reporter| exec(handle, channels, host, command, input, watch, reporter),
        )
    }
}

/// Stdin for a command: the env header, then bytes or files, one after another.
pub(super) enum Input {
    Bytes(Vec<u8>),
    Files {
        header: Vec<u8>,
        paths: Vec<PathBuf>,
    },
    /// The same but fails the download early: at most `max` stdout bytes.
    Limited {
        header: Vec<u8>,
        max: usize,
    },
}

async fn exec(
    handle: Arc<Handle>,
    channels: Arc<Semaphore>,
    host: String,
    command: String,
    input: Input,
    watch: bool,
    reporter: Reporter<Result<Output, TransportError>>,
) -> Result<Output, TransportError> {
    let ssh_err = |action: &str, e: russh::Error| TransportError::Ssh {
        host: host.clone(),
        action: action.to_string(),
        detail: e.to_string(),
    };
    let _permit = channels.acquire_owned().await.expect("never closed");
    // sshd frees a session slot only when our close of a finished channel
    // arrives, so a burst of commands can briefly find none: retry a little.
    let mut attempt = 0;
    let channel = loop {
        match handle.channel_open_session().await {
            Ok(channel) => break channel,
            Err(russh::Error::ChannelOpenFailure(_)) if attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25 * attempt.min(8))).await;
            }
            Err(e) => return Err(ssh_err("opening a channel", e)),
        }
    };
    channel
        .exec(true, command.into_bytes())
        .await
        .map_err(|e| ssh_err("starting a command", e))?;
    let (mut read, write) = channel.split();
    let stdout_limit = match &input {
        Input::Limited { max, .. } => max.saturating_add(1),
        _ => OUTPUT_LIMIT,
    };

    // Stdin is written by its own task, so that output is read while it goes:
    // a command that writes a lot before reading all its input cannot block us.
    let lines = reporter.clone();
    let writer_host = host.clone();
    let writer = tokio::spawn(async move {
        let err = |action: String, e: std::io::Error| TransportError::Io {
            host: writer_host.clone(),
            action,
            source: e,
        };
        let (header, body) = match input {
            Input::Bytes(bytes) => (bytes, Vec::new()),
            Input::Files { header, paths } => (header, paths),
            Input::Limited { header, .. } => (header, Vec::new()),
        };
        // Owned buffers go to `data_bytes`, which sends packets of the host's
        // maximum size (32 KiB for sshd). `data(&[u8])` copies through tokio's
        // 8 KiB `io::copy` buffer, so each packet carried only 8 KiB, and that
        // is what stalled the first bulk transfer on a connection: sshd queues
        // what runs ahead of the command's pipe (up to its 2 MiB window) in a
        // buffer that it grows per packet by a fresh allocation and a copy of
        // the whole queue. On a fresh sshd those allocations are new mmaps
        // faulted in page by page (glibc serves them from its heap only after
        // freeing one that size), so the first 20 MB took ~0.9 s, not ~0.15 s.
        // 4x larger packets make 4x fewer of those copies, as OpenSSH's ssh does.
        if !header.is_empty() && write.data_bytes(header).await.is_err() {
            return Ok(false);
        }
        let mut sent = 0u64;
        for path in body {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| err(format!("open {}", path.display()), e))?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| err(format!("read {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if write.data_bytes(buf).await.is_err() {
                    return Ok(false);
                }
                sent += n as u64;
                reporter.progress(sent);
            }
        }
        let _ = write.eof().await;
        Ok::<bool, TransportError>(true)
    });

    let mut stdout = Capture::new(stdout_limit);
    let mut stderr = Capture::new(OUTPUT_LIMIT);
    // Stderr not yet ended by a newline, when its lines are watched.
    let mut partial: Vec<u8> = Vec::new();
    let mut received = 0usize;
    let mut code = None;
    let mut signal = None;
    let mut closed = false;
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                received += data.len();
                stdout.push(&data);
                if received > stdout_limit && stdout_limit != OUTPUT_LIMIT {
                    break; // a download past its limit: no need to read on
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                stderr.push(&data);
                if watch {
                    partial.extend_from_slice(&data);
                    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=end).collect();
                        lines.line(String::from_utf8_lossy(&line[..end]).into_owned());
                    }
                }
            }
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                signal = Some(format!("{signal_name:?}").to_uppercase())
            }
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    if watch && !partial.is_empty() {
        // The last line, which the command did not end with a newline.
        lines.line(String::from_utf8_lossy(&partial).into_owned());
    }
    let over_limit = received > stdout_limit && stdout_limit != OUTPUT_LIMIT;
    if !writer.is_finished() {
        writer.abort();
    }
    if let Ok(Err(e)) = writer.await {
        return Err(e); // the local file could not be read
    }
    if over_limit {
        return Ok(Output {
            code: None,
            signal: None,
            stdout: stdout.finish(),
            stderr: Vec::new(),
        });
    }
    if code.is_none() && signal.is_none() && !closed {
        return Err(TransportError::Ssh {
            host,
            action: "running a command".to_string(),
            detail: "the connection was lost before the command finished".to_string(),
        });
    }
    Ok(Output {
        code,
        signal,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    })
}
