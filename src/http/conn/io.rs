//! A connection's socket operations with hitcore's deadlines: read through the shared scratch
//! buffer until the connection's deadline (kept in its registry entry and checked by the shard's
//! tick, not by a glommio timer per read), send without waiting, write a batch within
//! `--write-timeout`, linger before closing.
//!
//! It owns how bytes move, not which bytes: it must not parse or format anything.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::registry::Entry;
use crate::http::context::Context;

/// After answering with an error, unread input is drained for at most this long before closing,
/// so the client reads the response instead of a reset (a "lingering close").
const LINGER: Duration = Duration::from_secs(1);
/// ... and at most this many bytes.
const LINGER_BYTES: usize = 64 * 1024;

/// Reads whatever is available into `input` through the shared scratch buffer, waiting at most
/// until `deadline` (then `TimedOut`). The scratch is borrowed only inside each poll, never across a
/// suspension.
pub(super) async fn read_some(
    ctx: &Context,
    stream: &mut TcpStream,
    entry: &Entry,
    deadline: Instant,
    input: &mut Vec<u8>,
) -> io::Result<usize> {
    read(ctx, stream, entry, deadline, input).await.map(|(n, _)| n)
}

/// [`read_some`] right after an answer. `try_first`: try a non-blocking `recv` first (glommio's
/// way), or arm the readiness poll at once when the client is unlikely to have sent anything yet
/// (`speculate`). Returns the bytes read and whether a `recv` tried first found them.
pub(super) async fn read_after_answer(
    ctx: &Context,
    stream: &mut TcpStream,
    entry: &Entry,
    deadline: Instant,
    input: &mut Vec<u8>,
    try_first: bool,
) -> io::Result<(usize, bool)> {
    if !try_first {
        stream.arm_read_poll();
    }
    let (n, at_once) = read(ctx, stream, entry, deadline, input).await?;
    Ok((n, try_first && at_once))
}

/// The read itself; also says whether the first poll completed it (no wait for readiness). The
/// deadline is the registry entry's: the shard's tick wakes this read once it has passed. The
/// stream itself has no read timeout here, so glommio inserts no timer into its timer tree (and
/// reads no clock) for a read that waits, and removes none when it completes.
async fn read(
    ctx: &Context,
    stream: &mut TcpStream,
    entry: &Entry,
    deadline: Instant,
    input: &mut Vec<u8>,
) -> io::Result<(usize, bool)> {
    entry.set_deadline(deadline);
    let mut polls = 0u32;
    let read = poll_fn(|cx| {
        polls += 1;
        let mut scratch = ctx.scratch.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                input.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Data that arrived by the deadline wins over it: the socket is polled first.
            Poll::Pending => entry.poll_deadline(cx).map(|()| Err(io::ErrorKind::TimedOut.into())),
        }
    })
    .await;
    entry.clear_deadline();
    Ok((read?, polls == 1))
}

/// Writes as much of `bytes` as the kernel takes right now, without waiting, with plain
/// non-blocking `send` calls on the socket. It deliberately does not poll the glommio stream with a
/// dummy waker: that would arm the stream's write timeout with the dummy, and a later real wait
/// would never be woken by it (a client that never reads was then never timed out).
pub(super) fn try_send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let fd = stream.as_raw_fd();
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: a valid socket and a valid buffer of `rest.len()` bytes.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        match n {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n if n > 0 => sent += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(sent)
}

/// Writes all of `bytes` within `limit`, or fails with `TimedOut`. The deadline covers the whole
/// batch, not each write (glommio's write timeout, like nginx's `send_timeout`, restarts at every
/// write that makes progress), so a client that reads a byte now and then to stay just ahead of the
/// timeout still has to take each batch (at most 128 answers) within `--write-timeout`.
pub(super) async fn write_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left)).map_err(io::Error::from)?;
        match stream.write(&bytes[done..]).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Reads and discards what the client still sends, until it closes, for at most [`LINGER`].
pub(super) async fn drain_before_close(stream: &mut TcpStream) {
    let until = Instant::now() + LINGER;
    // On the heap, not in the future: a 4 KiB array here made every connection's task 16 KiB larger
    // (measured: 20 KB of heap per idle connection before, 4 KB after).
    let mut sink = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else { return };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
