//! A connection's socket operations with hitcore's deadlines: read through the shared scratch
//! buffer until the connection's deadline (kept in its registry entry and checked by the shard's
//! tick, not by a glommio timer per read), write a batch within `--write-timeout`, linger before
//! closing; over either transport.
//!
//! It owns how bytes move, not which bytes: it must not parse or format anything.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::registry::Entry;
use super::transport::Transport;
use crate::http::context::Context;

/// After answering with an error, unread input is drained for at most this long before closing,
/// so the client reads the response instead of a reset (a "lingering close").
const LINGER: Duration = Duration::from_secs(1);
/// ... and at most this many bytes.
const LINGER_BYTES: usize = 64 * 1024;

/// Reads whatever is available into `input` through the shared scratch buffer, waiting at most
/// until `deadline` (then `TimedOut`). The scratch is borrowed only inside each poll, never across a
/// suspension.
pub(super) async fn read_some<S: Transport>(
    ctx: &Context,
    stream: &mut S,
    entry: &Entry,
    deadline: Instant,
    input: &mut Vec<u8>,
) -> io::Result<usize> {
    read(ctx, stream, entry, deadline, input).await.map(|(n, _)| n)
}

/// [`read_some`] right after an answer. `try_first`: try a non-blocking `recv` first (glommio's
/// way), or arm the readiness poll at once when the client is unlikely to have sent anything yet
/// (`speculate`). Returns the bytes read and whether a `recv` tried first found them.
pub(super) async fn read_after_answer<S: Transport>(
    ctx: &Context,
    stream: &mut S,
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
/// socket itself has no read timeout here, so glommio inserts no timer into its timer tree (and
/// reads no clock) for a read that waits, and removes none when it completes.
async fn read<S: Transport>(
    ctx: &Context,
    stream: &mut S,
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

/// Writes all of `bytes` within `limit`, or fails with `TimedOut`. The deadline covers the whole
/// batch, not each write (glommio's write timeout, like nginx's `send_timeout`, restarts at every
/// write that makes progress), so a client that reads a byte now and then to stay just ahead of the
/// timeout still has to take each batch (at most 128 answers) within `--write-timeout`.
pub(super) async fn write_within<S: Transport>(stream: &mut S, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(left)?;
        match stream.write(&bytes[done..]).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => done += n,
        }
    }
    if stream.pending_output() {
        // TLS: records rustls took but the kernel has not, sent within what is left.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(left)?;
        stream.flush().await?;
    }
    Ok(())
}

/// Reads and discards what the client still sends, until it closes, for at most [`LINGER`].
pub(super) async fn drain_before_close<S: Transport>(stream: &mut S) {
    let until = Instant::now() + LINGER;
    // On the heap, not in the future: a 4 KiB array here made every connection's task 16 KiB larger
    // (measured: 20 KB of heap per idle connection before, 4 KB after).
    let mut sink = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else { return };
        if stream.set_read_timeout(left).is_err() {
            return;
        }
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
