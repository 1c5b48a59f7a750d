//! What a shard writes for a batch, fixed per connection and encoded once ([`Batching`]: the key,
//! `INCR`/`INCRBY`, `WAIT`), and what a reply to it meant ([`Completed`]), for the connection task
//! to act on.
//!
//! Plain data: no I/O, no tickets. The queue reads it; the session acts on [`Completed`].

use crate::redis::errors::ErrorKind;
use crate::redis::resp;

/// What is written for a batch: fixed per connection, so it is encoded once.
#[derive(Debug, Clone)]
pub struct Batching {
    /// The counter key.
    pub key: String,
    /// One `INCRBY` per batch (true) or one `INCR` per request (`--no-coalesce`).
    pub coalesce: bool,
    /// Redis Cluster (`redis+cluster://`): a `-MOVED` or `-ASK` hands the batch back to be sent
    /// to the node named ([`Completed::Redirected`]) instead of failing it.
    pub follow_redirects: bool,
    /// `WAIT replicas timeout_ms` after each batch (`--wait-replicas`, `--wait-timeout`); `None`
    /// for `--wait-replicas 0`.
    pub wait: Option<(u32, u64)>,
    /// `INCR key`, pre-encoded.
    pub(super) incr: Vec<u8>,
    /// `WAIT n t`, pre-encoded.
    pub(super) wait_command: Vec<u8>,
}

impl Batching {
    /// Pre-encodes the fixed commands.
    pub fn new(key: &str, coalesce: bool, wait: Option<(u32, u64)>) -> Batching {
        let mut incr = Vec::new();
        resp::encode_command(&mut incr, &[b"INCR", key.as_bytes()]);
        let mut wait_command = Vec::new();
        if let Some((n, ms)) = wait {
            let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
            resp::encode_command(&mut wait_command, &[b"WAIT", a.format(n).as_bytes(), b.format(ms).as_bytes()]);
        }
        Batching { key: key.to_string(), coalesce, follow_redirects: false, wait, incr, wait_command }
    }
}

/// What a reply meant, for the connection task to act on (log, keep or drop the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed<'a> {
    /// Values handed out (or held until the WAIT reply).
    Served,
    /// An ordinary error reply or a misconfiguration; its requests get [`Failure::ErrorReply`].
    Error(&'a [u8]),
    /// A "try again" reply (`-CLUSTERDOWN`, `-BUSY`, `-OOM`, ...): the command did not run; its
    /// requests get [`Failure::TryAgain`] and the connection stays.
    TryAgain(&'a [u8]),
    /// The node is not a writable primary; its requests get [`Failure::NotPrimary`]. The
    /// connection must be dropped: everything written after it would be refused the same way.
    NotPrimary(ErrorKind, &'a [u8]),
    /// WAIT answered: `acked` of the `wanted` replicas acknowledged. The held values are handed
    /// out when `acked >= wanted`, else answered [`Failure::NotDurable`].
    Waited {
        /// Replicas that acknowledged.
        acked: i64,
        /// `--wait-replicas`.
        wanted: u32,
    },
    /// WAIT itself was refused (an ACL without WAIT, a replica): the held values are not durable.
    WaitError(&'a [u8]),
    /// With [`Batching::follow_redirects`], a cluster node answered `-MOVED` or `-ASK` (the
    /// message): the batch did not run there, and its requests wait in the redirected list
    /// ([`Queue::take_redirected`], [`Queue::requeue_redirected`]) to be sent where it says.
    Redirected(&'a [u8]),
}
