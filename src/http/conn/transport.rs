//! The two transports a connection runs over, behind the few calls its loop makes: plain TCP
//! (glommio's stream) and TLS (rustls over that same stream, through futures-rustls).
//!
//! It owns the difference between the two and nothing else: timeouts set on the socket underneath,
//! whether the next read may wait on a poll armed now, a write that never waits, and how the
//! sending side is closed. The loop is generic over [`Transport`], so the plain path is compiled
//! on its own, with no branch, box or allocation that TLS needs. It must not read or write
//! anything the loop did not ask for, nor parse or format bytes.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

/// What the connection loop needs of its stream beyond reading and writing.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// `http` or `https`, for the access log.
    const SCHEME: &'static str;
    /// Bounds each read on the socket.
    fn set_read_timeout(&mut self, limit: Duration) -> io::Result<()>;
    /// Bounds each write on the socket.
    fn set_write_timeout(&mut self, limit: Duration) -> io::Result<()>;
    /// Makes the next read wait on a readiness poll armed now (see `speculate`), where that means
    /// anything. A connection reading through its multishot receive (glommio patch 10) arms that
    /// instead, once; while it is armed this does nothing and no read tries `recv` first.
    fn arm_read_poll(&mut self);
    /// Takes as much of `bytes` as it can without waiting; returns how much it took.
    fn try_send(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Whether bytes it took are still waiting to go out (then the loop flushes them).
    fn pending_output(&self) -> bool;
    /// Ends the sending side before a lingering close.
    async fn close_write(&mut self);
}

impl Transport for TcpStream {
    const SCHEME: &'static str = "http";

    fn set_read_timeout(&mut self, limit: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(limit)).map_err(io::Error::from)
    }

    fn set_write_timeout(&mut self, limit: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self, Some(limit)).map_err(io::Error::from)
    }

    fn arm_read_poll(&mut self) {
        TcpStream::arm_read_poll(self)
    }

    fn try_send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        send_now(self.as_raw_fd(), bytes)
    }

    fn pending_output(&self) -> bool {
        false
    }

    async fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write).await;
    }
}

/// rustls over the same glommio stream. Boxed by its owner: the TLS state is large and an idle
/// plain connection should not pay for it.
impl Transport for TlsStream<TcpStream> {
    const SCHEME: &'static str = "https";

    fn set_read_timeout(&mut self, limit: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self.get_mut().0, Some(limit)).map_err(io::Error::from)
    }

    fn set_write_timeout(&mut self, limit: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self.get_mut().0, Some(limit)).map_err(io::Error::from)
    }

    /// Nothing: rustls may already hold decrypted bytes, which a read returns without the socket.
    fn arm_read_poll(&mut self) {}

    /// Encrypts what rustls's send buffer takes, then sends the records with plain non-blocking
    /// `send` calls, as the plain path does; what the kernel does not take stays in rustls.
    fn try_send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (io, session) = self.get_mut();
        let took = session.writer().write(bytes)?;
        let mut socket = SendNow(io.as_raw_fd());
        while session.wants_write() {
            match session.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(took)
    }

    fn pending_output(&self) -> bool {
        self.get_ref().1.wants_write()
    }

    /// Sends TLS's close_notify, then the FIN.
    async fn close_write(&mut self) {
        let _ = self.close().await;
    }
}

/// A socket written with non-blocking `send` calls, for rustls's `write_tls`.
struct SendNow(RawFd);

impl Write for SendNow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_once(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends as much of `bytes` as the kernel takes right now. It deliberately does not poll the glommio
/// stream with a dummy waker: that would arm the stream's write timeout with the dummy, and a later
/// real wait would never be woken by it (a client that never reads was then never timed out).
pub(super) fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match send_once(fd, &bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// One non-blocking `send`, retried when a signal interrupts it.
fn send_once(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: a valid socket and a valid buffer of `bytes.len()` bytes.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
