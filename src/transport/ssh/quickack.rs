//! The SSH connection's socket, acknowledging what it receives at once.
//!
//! sshd leaves Nagle's algorithm on for sessions without a terminal (all of
//! ours), so a small packet it writes while an earlier one is unacknowledged
//! waits for our ACK. Linux delays that ACK up to 40 ms when it has nothing to
//! send back, and often we have nothing to send until the held packet (the
//! answer we wait for) arrives: every command paid a 40 ms stall. Measured on
//! the test hosts: one command on a fresh connection 88 -> 47 ms, an unchanged
//! re-apply of 4 hosts 135 -> 103 ms. Quick-ACK mode is not sticky (the kernel
//! leaves it again as traffic goes), so it is set anew after every read that
//! received bytes: one cheap system call per read, and reads are few on this
//! socket (commands' output; layers go the other way).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct QuickAck(pub TcpStream);

impl QuickAck {
    fn rearm(&self) {
        // Best effort: failing, ACKs are only delayed as by default.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = self.0.set_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.rearm();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn each_read_that_receives_bytes_puts_the_socket_back_in_quick_ack_mode() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
        let mut ours = QuickAck(client.unwrap());
        let mut theirs = server.unwrap().0;
        ours.0.set_quickack(false).unwrap();
        assert!(!ours.0.quickack().unwrap());
        theirs.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        ours.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert!(ours.0.quickack().unwrap());
    }
}
