//! A shard's Redis subscriber for the counting API's `/stream`: one `SUBSCRIBE` connection per
//! shard, opened when the shard's first stream client arrives, subscribed to the channels of the
//! counters that have listeners here, and fanning each published value out to them.
//!
//! It owns that connection and the channel → listeners table; values are published by the hits
//! themselves (`keyed::ADD_SCRIPT`, one `PUBLISH` per key per batch), from any shard or host. It
//! must not know HTTP or the event format (`http::conn::sse` does). A broken connection is
//! rebuilt with backoff and every channel subscribed again; values published meanwhile are missed
//! (Redis pub/sub keeps nothing), which a client sees as a jump to the next value.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::connect::{Connector, Discovery};
use super::dial::Dialer;
use super::resp::{self, Frame};
use crate::config::redis_url::RedisTarget;

/// Values kept for a listener that has not taken them; older ones are dropped (the client only
/// needs the latest).
const QUEUE: usize = 64;

/// One stream client's inbox.
#[derive(Debug, Default)]
struct Listener {
    values: RefCell<VecDeque<Vec<u8>>>,
    /// Redis has confirmed the channel's subscription: every value published from now on arrives.
    confirmed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

#[derive(Debug)]
struct Shared {
    target: RedisTarget,
    dialer: Dialer,
    name: String,
    /// Channel → its listeners on this shard.
    channels: RefCell<HashMap<Vec<u8>, Vec<Weak<Listener>>>>,
    /// Channels Redis has confirmed on the current connection.
    confirmed: RefCell<HashSet<Vec<u8>>>,
    /// `SUBSCRIBE` (true) or `UNSUBSCRIBE` (false) still to be written.
    pending: RefCell<Vec<(Vec<u8>, bool)>>,
    writer: RefCell<Option<Waker>>,
    started: Cell<bool>,
}

/// The shard's subscriber handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Subscriber(Rc<Shared>);

/// One listener's subscription to one channel; dropping it unsubscribes when it was the last.
#[derive(Debug)]
pub struct Subscription {
    shared: Rc<Shared>,
    channel: Vec<u8>,
    listener: Rc<Listener>,
}

impl Subscriber {
    /// A subscriber for shard `shard`; it connects on the first [`Subscriber::subscribe`].
    pub fn new(target: RedisTarget, dialer: Dialer, shard: usize) -> Subscriber {
        Subscriber(Rc::new(Shared {
            target,
            dialer,
            name: format!("hitcore-shard-{shard}-stream"),
            channels: RefCell::default(),
            confirmed: RefCell::default(),
            pending: RefCell::default(),
            writer: RefCell::new(None),
            started: Cell::new(false),
        }))
    }

    /// Listens to `channel` from now on.
    pub fn subscribe(&self, channel: &[u8]) -> Subscription {
        let listener = Rc::new(Listener::default());
        listener.confirmed.set(self.0.confirmed.borrow().contains(channel));
        let first = {
            let mut channels = self.0.channels.borrow_mut();
            let list = channels.entry(channel.to_vec()).or_default();
            list.retain(|l| l.strong_count() > 0);
            list.push(Rc::downgrade(&listener));
            list.len() == 1
        };
        if first {
            self.0.pending.borrow_mut().push((channel.to_vec(), true));
            wake(&self.0.writer);
        }
        if !self.0.started.replace(true) {
            glommio::spawn_local(run(self.0.clone())).detach();
        }
        Subscription { shared: self.0.clone(), channel: channel.to_vec(), listener }
    }
}

impl Subscription {
    /// Waits until Redis has confirmed the subscription, so that no value published after this
    /// returns is missed (a stream reads the current value only then).
    pub async fn ready(&self) {
        poll_fn(|cx| {
            if self.listener.confirmed.get() {
                Poll::Ready(())
            } else {
                *self.listener.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The next value published on the channel (the latest ones if several are waiting).
    pub async fn next(&self) -> Vec<u8> {
        poll_fn(|cx| match self.listener.values.borrow_mut().pop_front() {
            Some(v) => Poll::Ready(v),
            None => {
                *self.listener.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.shared.channels.borrow_mut();
        let Some(list) = channels.get_mut(&self.channel) else { return };
        list.retain(|l| l.strong_count() > 0 && !std::ptr::eq(l.as_ptr(), Rc::as_ptr(&self.listener)));
        if list.is_empty() {
            channels.remove(&self.channel);
            self.shared.confirmed.borrow_mut().remove(&self.channel);
            self.shared.pending.borrow_mut().push((self.channel.clone(), false));
            wake(&self.shared.writer);
        }
    }
}

fn wake(slot: &RefCell<Option<Waker>>) {
    if let Some(w) = slot.borrow_mut().take() {
        w.wake();
    }
}

/// Hands a published value to the channel's listeners.
fn deliver(shared: &Shared, channel: &[u8], value: &[u8]) {
    let channels = shared.channels.borrow();
    for listener in channels.get(channel).into_iter().flatten().filter_map(Weak::upgrade) {
        let mut values = listener.values.borrow_mut();
        if values.len() == QUEUE {
            values.pop_front();
        }
        values.push_back(value.to_vec());
        drop(values);
        wake(&listener.waker);
    }
}

/// The connection task: connect, subscribe to every channel with listeners, read messages until
/// the connection breaks; again, with backoff.
async fn run(shared: Rc<Shared>) {
    // The cluster key only chooses a node: PUBLISH reaches every node of a cluster.
    let discovery = Discovery::for_target(&shared.target, "hit", None);
    let mut connector = Connector::new(shared.target.clone(), discovery, shared.dialer.clone(), shared.name.clone());
    let mut delay = Duration::from_millis(25);
    loop {
        match connector.connect(None).await {
            Ok(ready) => {
                delay = Duration::from_millis(25);
                // Everything current is subscribed afresh on a new connection.
                shared.confirmed.borrow_mut().clear();
                let all: Vec<(Vec<u8>, bool)> = shared.channels.borrow().keys().map(|c| (c.clone(), true)).collect();
                *shared.pending.borrow_mut() = all;
                let (rd, wr) = futures_lite::io::split(ready.stream);
                let end = futures_lite::future::or(read_messages(&shared, rd), write_requests(&shared, wr)).await;
                warn!("The /stream subscriber's Redis connection ended: {end}; reconnecting");
            }
            Err(e) => debug!("The /stream subscriber cannot connect to Redis: {e}"),
        }
        glommio::timer::sleep(delay.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn write_requests(shared: &Shared, mut wr: impl futures_lite::io::AsyncWrite + Unpin) -> String {
    let mut out = Vec::new();
    loop {
        poll_fn(|cx| {
            if shared.pending.borrow().is_empty() {
                *shared.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        for (channel, subscribe) in shared.pending.borrow_mut().drain(..) {
            let verb: &[u8] = if subscribe { b"SUBSCRIBE" } else { b"UNSUBSCRIBE" };
            resp::encode_command(&mut out, &[verb, &channel]);
        }
        if let Err(e) = wr.write_all(&out).await {
            return e.to_string();
        }
        if let Err(e) = wr.flush().await {
            return e.to_string();
        }
        out.clear();
    }
}

async fn read_messages(shared: &Shared, mut rd: impl futures_lite::io::AsyncRead + Unpin) -> String {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) => return "Redis closed it".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return e.to_string(),
        }
        loop {
            match resp::decode_frame(&buf) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    match message(&frame) {
                        Some(Message::Value(channel, value)) => deliver(shared, channel, value),
                        Some(Message::Subscribed(channel)) => confirm(shared, channel),
                        None => {}
                    }
                }
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        if buf.len() > 1 << 20 {
            return "a message larger than any value".into();
        }
    }
}

/// What the subscriber connection reads.
#[derive(Debug, PartialEq, Eq)]
enum Message<'a> {
    /// `["message", channel, value]`.
    Value(&'a [u8], &'a [u8]),
    /// `["subscribe", channel, count]`.
    Subscribed(&'a [u8]),
}

fn message(frame: &Frame) -> Option<Message<'_>> {
    let Frame::Array(parts) = frame else { return None };
    match parts.as_slice() {
        [Frame::BulkString(kind), Frame::BulkString(channel), Frame::BulkString(value)] if kind == b"message" => {
            Some(Message::Value(channel, value))
        }
        [Frame::BulkString(kind), Frame::BulkString(channel), _] if kind == b"subscribe" => {
            Some(Message::Subscribed(channel))
        }
        _ => None,
    }
}

/// Redis confirmed `channel`: its listeners may read the current value now.
fn confirm(shared: &Shared, channel: &[u8]) {
    shared.confirmed.borrow_mut().insert(channel.to_vec());
    let channels = shared.channels.borrow();
    for listener in channels.get(channel).into_iter().flatten().filter_map(Weak::upgrade) {
        listener.confirmed.set(true);
        wake(&listener.waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_are_delivered() {
        let (msg, _) = resp::decode_frame(b"*3\r\n$7\r\nmessage\r\n$4\r\nS:ab\r\n$2\r\n42\r\n").unwrap().unwrap();
        assert_eq!(message(&msg), Some(Message::Value(b"S:ab", b"42")));
        let (sub, _) = resp::decode_frame(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nS:ab\r\n:1\r\n").unwrap().unwrap();
        assert_eq!(message(&sub), Some(Message::Subscribed(b"S:ab")));
        let (other, _) = resp::decode_frame(b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nS:ab\r\n:0\r\n").unwrap().unwrap();
        assert_eq!(message(&other), None);
    }

    #[test]
    fn listeners_get_their_channels_values_and_a_slow_one_keeps_the_latest() {
        let target = RedisTarget::parse("redis://127.0.0.1:1/0").unwrap();
        let sub = Subscriber::new(target, Dialer::new(Default::default()), 0);
        // No executor here: register by hand what subscribe() would.
        let listener = Rc::new(Listener::default());
        sub.0.channels.borrow_mut().insert(b"S:a".to_vec(), vec![Rc::downgrade(&listener)]);
        for v in 0..(QUEUE + 5) {
            deliver(&sub.0, b"S:a", v.to_string().as_bytes());
        }
        deliver(&sub.0, b"S:b", b"1");
        let values = listener.values.borrow();
        assert_eq!(values.len(), QUEUE);
        assert_eq!(values.back().unwrap(), (QUEUE + 4).to_string().as_bytes());
    }
}
