//! Running a batch that a migrating slot's owner redirected with `-ASK` on the importing node:
//! `ASKING` then `INCRBY key total` (then `WAIT`), once, on a connection apart from the shard's
//! pipelined one. `-ASK` is an answer about this one command, so the slot map and the pipelined
//! connection stay as they are.
//!
//! Sending the batch here after the owner answered `-ASK` cannot count it twice: a cluster node
//! checks the key's slot before it runs a command, and `-ASK` (like `-MOVED`) is what it answers
//! *instead of* running it. That is why this resend is safe, while replaying a batch whose
//! connection broke or timed out is not: that batch may have run, and its reply was lost.
//!
//! A migration sends every batch of the slot here for as long as it lasts, so connections are
//! kept and reused (one idle per node), at most [`MAX_ASK_CONNECTIONS`] are open at once (a batch
//! beyond that gets 503 at once: it ran nowhere), and TLS shares the shard's one client
//! configuration ([`Dialer`]). The login is a round trip of its own, so a refused AUTH means
//! nothing of the batch was written.
//!
//! It owns those connections and says what became of a batch ([`Asked`]); the queue hands out
//! the outcomes, and the session decides when to ask.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::discovery::{LoginError, open_logged_in};
use crate::config::redis_topology::HostPort;
use crate::config::redis_url::RedisTarget;
use crate::redis::dial::{self, Candidate, Dialer};
use crate::redis::resp::{self, Frame};
use crate::redis::stream::Stream;

/// How long an `-ASK`ed batch may take, connect and login included, before its requests get 503.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections to importing nodes open at once, per shard. A slot migrates to one node at a
/// time, and batches to it are at most a few in flight; more than this means something is wrong
/// (a storm of `-ASK`), and opening more would make it worse.
pub const MAX_ASK_CONNECTIONS: usize = 4;

/// What became of a batch sent to the importing node after `-ASK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// `INCRBY` answered `last`: the batch's values end there. With WAIT, `acked` replicas confirmed.
    Value {
        /// The INCRBY reply.
        last: i64,
        /// WAIT's reply, when WAIT was sent.
        acked: Option<i64>,
    },
    /// The importing node refused (`-TRYAGAIN`, `-MOVED`, an ACL): nothing ran.
    Refused(String),
    /// The batch was written and no reply came back: it may have run.
    Lost(String),
    /// Nothing of the batch was written (no connection, a refused login, too many connections).
    NotSent(String),
}

/// The `-ASK` connections of one shard.
#[derive(Debug)]
pub struct Asker {
    /// The target, for the data nodes' credentials and TLS.
    target: RedisTarget,
    /// The shard's dialer (one TLS configuration).
    dialer: Dialer,
    /// `--wait-replicas`/`--wait-timeout`.
    wait: Option<(u32, u64)>,
    /// Logged-in connections not in use, at most one per node, most recent last.
    idle: RefCell<Vec<(HostPort, Candidate, Stream)>>,
    /// Connections open: idle or carrying a batch.
    open: Cell<usize>,
    /// Connections opened since the shard started (for tests and the debug log).
    opened: Cell<u64>,
}

impl Asker {
    /// No connection is opened until the first `-ASK`.
    pub fn new(target: RedisTarget, dialer: Dialer, wait: Option<(u32, u64)>) -> Asker {
        Asker { target, dialer, wait, idle: RefCell::default(), open: Cell::new(0), opened: Cell::new(0) }
    }

    /// How many connections have been opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Sends `INCRBY key total` to `to` once, within [`ASK_TIMEOUT`], and says what became of it.
    /// The key is the batch's: `-ASK` is about one key's slot, whichever key that is.
    pub async fn send(&self, to: &HostPort, key: &str, total: u64) -> Asked {
        let reused = {
            let mut idle = self.idle.borrow_mut();
            idle.iter().position(|(node, _, _)| node == to).map(|i| idle.remove(i))
        };
        let (candidate, stream) = match reused {
            Some((_, candidate, stream)) => (candidate, stream),
            None => {
                if self.open.get() >= MAX_ASK_CONNECTIONS {
                    // Make room: an idle connection to another node is worth less than this batch.
                    let mut idle = self.idle.borrow_mut();
                    if idle.is_empty() {
                        return Asked::NotSent(format!("{MAX_ASK_CONNECTIONS} -ASK connections already busy"));
                    }
                    idle.remove(0);
                    self.open.set(self.open.get() - 1);
                }
                self.open.set(self.open.get() + 1);
                self.opened.set(self.opened.get() + 1);
                let login =
                    dial::within(ASK_TIMEOUT, open_logged_in(&self.dialer, &self.target, to, self.target.tls()));
                match login.await {
                    Some(Ok(opened)) => opened,
                    Some(Err(e)) => {
                        self.open.set(self.open.get() - 1);
                        return Asked::NotSent(e.to_string());
                    }
                    None => {
                        self.open.set(self.open.get() - 1);
                        return Asked::NotSent(format!("no login within {ASK_TIMEOUT:?}"));
                    }
                }
            }
        };
        let (asked, stream) = self.run(&candidate, stream, key, total).await;
        match stream {
            Some(stream) => {
                let mut idle = self.idle.borrow_mut();
                idle.retain(|(node, _, _)| node != to);
                idle.push((to.clone(), candidate, stream));
            }
            None => self.open.set(self.open.get() - 1),
        }
        asked
    }

    /// Writes the batch and reads its replies; gives the stream back when it is still in step.
    async fn run(&self, node: &Candidate, mut stream: Stream, key: &str, total: u64) -> (Asked, Option<Stream>) {
        let (out, replies) = encode_asked(key, total, self.wait);
        let frames = match dial::within(ASK_TIMEOUT, dial::roundtrip(&mut stream, node, &out, replies)).await {
            Some(Ok(frames)) => frames,
            Some(Err(e)) => return (Asked::Lost(e.to_string()), None),
            None => return (Asked::Lost(format!("no answer within {ASK_TIMEOUT:?}")), None),
        };
        (asked_from(&frames), Some(stream))
    }
}

/// `ASKING`, `INCRBY key total` and, with `wait`, `WAIT n ms`; and how many replies they get.
fn encode_asked(key: &str, total: u64, wait: Option<(u32, u64)>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    resp::encode_command(&mut out, &[b"ASKING"]);
    let mut by = itoa::Buffer::new();
    resp::encode_command(&mut out, &[b"INCRBY", key.as_bytes(), by.format(total).as_bytes()]);
    let mut replies = 2;
    if let Some((n, ms)) = wait {
        let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
        resp::encode_command(&mut out, &[b"WAIT", a.format(n).as_bytes(), b.format(ms).as_bytes()]);
        replies += 1;
    }
    (out, replies)
}

/// What the replies to [`encode_asked`] mean.
fn asked_from(frames: &[Frame]) -> Asked {
    match (&frames[0], &frames[1]) {
        (Frame::Error(e), _) => Asked::Refused(format!("ASKING: {e}")),
        (_, Frame::Error(e)) => Asked::Refused(e.clone()),
        (_, Frame::Integer(last)) => Asked::Value {
            last: *last,
            acked: frames.get(2).and_then(|f| if let Frame::Integer(n) = f { Some(*n) } else { None }),
        },
        _ => Asked::Lost("an unexpected reply to INCRBY".into()),
    }
}

impl From<LoginError> for Asked {
    fn from(e: LoginError) -> Asked {
        Asked::NotSent(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_is_asking_then_incrby_then_wait() {
        let (out, replies) = encode_asked("hit", 5, Some((1, 50)));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("*1\r\n$6\r\nASKING\r\n*3\r\n$6\r\nINCRBY\r\n$3\r\nhit\r\n$1\r\n5\r\n*3\r\n$4\r\nWAIT")
        );
        assert_eq!(replies, 3);
        assert_eq!(encode_asked("hit", 1, None).1, 2);
    }

    #[test]
    fn replies_say_what_became_of_the_batch() {
        let ok = Frame::SimpleString(b"OK".to_vec());
        assert_eq!(asked_from(&[ok.clone(), Frame::Integer(9)]), Asked::Value { last: 9, acked: None });
        assert_eq!(
            asked_from(&[ok.clone(), Frame::Integer(9), Frame::Integer(1)]),
            Asked::Value { last: 9, acked: Some(1) }
        );
        assert_eq!(asked_from(&[ok.clone(), Frame::Error("TRYAGAIN x".into())]), Asked::Refused("TRYAGAIN x".into()));
        assert!(matches!(asked_from(&[Frame::Error("ERR".into()), Frame::Integer(1)]), Asked::Refused(_)));
        assert!(matches!(asked_from(&[ok, Frame::SimpleString(b"OK".to_vec())]), Asked::Lost(_)));
    }

    /// A node that logs anyone in and then never answers, on a free port; returns its port and
    /// how many connections it has accepted.
    fn silent_node() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    // The AUTH: answer it, then read whatever comes and answer nothing.
                    if conn.read(&mut buf).is_ok_and(|n| n > 0) {
                        let _ = conn.write_all(b"+OK\r\n");
                    }
                    while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
                });
            }
        });
        (port, accepted)
    }

    #[test]
    fn at_most_four_ask_connections_are_open_at_once() {
        let (port, accepted) = silent_node();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().unwrap();
        let outcomes = executor.run(async move {
            let target = RedisTarget::parse(&format!("redis+cluster://:pw@127.0.0.1:{port}")).unwrap();
            let asker = std::rc::Rc::new(Asker::new(target, Dialer::new(Default::default()), None));
            let to = HostPort { host: "127.0.0.1".into(), port };
            let sends: Vec<_> = (0..MAX_ASK_CONNECTIONS + 2)
                .map(|_| {
                    let (asker, to) = (asker.clone(), to.clone());
                    glommio::spawn_local(async move { asker.send(&to, "hit", 1).await })
                })
                .collect();
            let mut outcomes = Vec::new();
            for send in sends {
                outcomes.push(send.await);
            }
            assert_eq!(asker.opened(), MAX_ASK_CONNECTIONS as u64);
            outcomes
        });
        let not_sent = outcomes.iter().filter(|a| matches!(a, Asked::NotSent(_))).count();
        let lost = outcomes.iter().filter(|a| matches!(a, Asked::Lost(_))).count();
        assert_eq!((not_sent, lost), (2, MAX_ASK_CONNECTIONS), "{outcomes:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), MAX_ASK_CONNECTIONS);
    }
}
