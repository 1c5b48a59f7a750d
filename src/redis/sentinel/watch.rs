//! Hearing about failovers as they happen (`+try-failover`, `-failover-abort-*`,
//! `+switch-master`): one subscription per sentinel (a failover is announced step by step only by
//! the sentinel that leads it), each a task on the shard's executor for the shard's life.
//!
//! The subscriptions only read and set [`Switch`], which the session races and discovery
//! consults; they never block the event loop and never touch the pipelined connection. From
//! `+try-failover` until the sentinels name another primary (or the failover is aborted), the old
//! primary is not used.
//!
//! It owns the subscriptions and the announcements only: transports are `dial`'s, the sentinel
//! question is `discovery`'s, the event parsing `events`'s.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::events::Event;
use crate::redis::dial::{self, Address, Dialer};
use crate::redis::resp::{self, Frame};
use crate::redis::topology::HostPort;

/// How long a sentinel may take to be reached and to confirm the subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the subscription waits before subscribing again after losing a sentinel.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);
/// The longest a failover announced with `+try-failover` keeps the shard off the old primary, in
/// case its end (`+switch-master`) or its abort was missed.
const FAILOVER_HOLD: Duration = Duration::from_secs(15);

/// What a subscription listens for, and how it logs in.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service name: events about other services are ignored.
    pub name: String,
    /// `--sentinel-password`: the sentinels' own password, if they have one.
    pub password: Option<String>,
    /// `rediss+sentinel://`: TLS to the sentinels too.
    pub tls: bool,
}

/// Failovers announced by the sentinels, for the session and for discovery to act on.
#[derive(Debug, Default)]
pub struct Switch {
    /// The last announcement: the primary moved away from `.0` (when known) to `.1` (when known).
    last: RefCell<(Option<SocketAddr>, Option<SocketAddr>)>,
    /// Bumped at every announcement, so a session can tell a new one from one it has seen.
    count: Cell<u64>,
    /// The sessions waiting for an announcement (one per shard, but a waker is cheap to keep).
    waiter: RefCell<Option<Waker>>,
    /// Failovers started (`+try-failover`): by which sentinel, away from which primary, when.
    /// Kept per sentinel because several may try at once and the ones that lose the election
    /// abort (`-failover-abort-not-elected`) while the leader goes on.
    failing_over: RefCell<Vec<(HostPort, HostPort, Instant)>>,
}

impl Switch {
    fn announce(&self, from: Option<SocketAddr>, to: Option<SocketAddr>) {
        *self.last.borrow_mut() = (from, to);
        self.count.set(self.count.get() + 1);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Acts on one event about our service.
    async fn heard(&self, sentinel: &HostPort, event: Event) {
        let addr = |hp: &HostPort| hp.host.parse().ok().map(|ip| SocketAddr::new(ip, hp.port));
        match event {
            Event::TryFailover { old, .. } => {
                let from = addr(&old);
                let mut failing = self.failing_over.borrow_mut();
                failing.retain(|(s, _, _)| s != sentinel);
                failing.push((sentinel.clone(), old, Instant::now()));
                drop(failing);
                self.announce(from, None);
            }
            Event::Aborted { .. } => self.failing_over.borrow_mut().retain(|(s, _, _)| s != sentinel),
            Event::Switched(switch) => {
                self.failing_over.borrow_mut().clear();
                let to = match addr(&switch.new) {
                    Some(a) => Some(a),
                    None => {
                        dial::resolve(&switch.new.host, switch.new.port).await.ok().and_then(|a| a.first().copied())
                    }
                };
                self.announce(addr(&switch.old), to);
            }
        }
    }

    /// Whether a failover away from `primary` is in progress (and not older than [`FAILOVER_HOLD`]).
    pub fn holding(&self, primary: &HostPort) -> bool {
        self.failing_over.borrow().iter().any(|(_, old, at)| old == primary && at.elapsed() < FAILOVER_HOLD)
    }

    /// Waits for an announcement that the session's node `current` is (being) failed over, or
    /// that the primary is now another node. Returns the new primary's address when known.
    pub async fn away_from(&self, current: &Address) -> Option<SocketAddr> {
        let mut seen = self.count.get();
        poll_fn(|cx| {
            while self.count.get() != seen {
                seen = self.count.get();
                let (from, to) = *self.last.borrow();
                let Address::Tcp(at) = current else { return Poll::Ready(to) };
                if from == Some(*at) || to.is_some_and(|to| to != *at) {
                    return Poll::Ready(to);
                }
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The subscription to one sentinel's failover events, for as long as the shard lives. There is
/// one per sentinel: a failover is announced step by step only by the sentinel that leads it.
pub async fn watch(service: Service, dialer: Dialer, sentinel: HostPort, switch: std::rc::Rc<Switch>) {
    let mut logged_failure = false;
    loop {
        match subscribe(&service, &dialer, &sentinel, &switch).await {
            Ok(()) => {}
            Err(e) if !logged_failure => {
                warn!("Lost the failover subscription to sentinel {sentinel}: {e}; subscribing again");
                logged_failure = true;
            }
            Err(e) => debug!("Failover subscription to sentinel {sentinel}: {e}"),
        }
        glommio::timer::sleep(RESUBSCRIBE_DELAY.mul_f64(0.5 + fastrand::f64())).await;
    }
}

/// Subscribes on one sentinel and reads announcements until the connection ends.
async fn subscribe(service: &Service, dialer: &Dialer, sentinel: &HostPort, switch: &Switch) -> Result<(), String> {
    let (node, mut stream) = dial::within(SUBSCRIBE_TIMEOUT, dialer.open_host(sentinel, service.tls))
        .await
        .ok_or_else(|| format!("no answer within {SUBSCRIBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let auth = dial::encode_auth(&mut out, None, service.password.as_deref());
    let [a, b] = Event::CHANNELS;
    resp::encode_command(&mut out, &[b"SUBSCRIBE", a, b]);
    resp::encode_command(&mut out, &[b"PSUBSCRIBE", Event::ABORTS]);
    // One confirmation per channel and pattern.
    let replies = 3 + auth;
    let frames = dial::roundtrip(&mut stream, &node, &out, replies).await.map_err(|e| e.to_string())?;
    if let Some(Frame::Error(e)) = frames.iter().find(|f| matches!(f, Frame::Error(_))) {
        return Err(format!("refused: {e}"));
    }
    debug!("Subscribed to failover events on sentinel {sentinel}");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        while let Some((frame, used)) = resp::decode_frame(&buf).map_err(|e| e.to_string())? {
            buf.drain(..used);
            let Some(event) = Event::from_message(&frame) else { continue };
            if event.service() != service.name {
                continue;
            }
            match &event {
                Event::TryFailover { old, .. } => {
                    info!("Sentinel {sentinel} starts a failover of '{}' away from {old}", service.name)
                }
                Event::Aborted { .. } => info!("Sentinel {sentinel} aborted a failover of '{}'", service.name),
                Event::Switched(s) => {
                    info!("Sentinel {sentinel} announced a failover of '{}': {} -> {}", s.service, s.old, s.new)
                }
            }
            switch.heard(sentinel, event).await;
        }
        if buf.len() > 64 * 1024 {
            return Err("an oversized message".into());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the sentinel closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::{block_on, poll_once};

    use super::*;
    use crate::redis::sentinel::events::SwitchMaster;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    fn at(port: u16) -> Address {
        Address::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn a_session_ends_when_its_node_is_failed_over_or_the_primary_is_elsewhere() {
        let switch = Switch::default();
        let (s1, s2) = (hp("127.0.0.1", 26379), hp("127.0.0.1", 26380));
        let (old_node, new_node) = (at(6379), at(6380));
        block_on(async {
            // On the old primary (6379): +try-failover away from it ends the session.
            let mut on_old = Box::pin(switch.away_from(&old_node));
            assert!(poll_once(&mut on_old).await.is_none());
            switch.heard(&s1, Event::TryFailover { service: "s".into(), old: hp("127.0.0.1", 6379) }).await;
            assert_eq!(poll_once(&mut on_old).await, Some(None));
            // Already on the new primary (6380): the same announcement leaves it alone, and so does
            // +switch-master naming it; a +switch-master naming another node ends it.
            let mut on_new = Box::pin(switch.away_from(&new_node));
            assert!(poll_once(&mut on_new).await.is_none());
            let to = |new: u16| {
                Event::Switched(SwitchMaster {
                    service: "s".into(),
                    old: hp("127.0.0.1", 6379),
                    new: hp("127.0.0.1", new),
                })
            };
            switch.heard(&s2, to(6380)).await;
            assert!(poll_once(&mut on_new).await.is_none());
            switch.heard(&s2, to(6381)).await;
            assert_eq!(poll_once(&mut on_new).await, Some(Some(SocketAddr::from(([127, 0, 0, 1], 6381)))));
        });
    }

    #[test]
    fn the_old_primary_is_held_off_until_every_sentinel_that_tried_has_ended_or_aborted() {
        let switch = Switch::default();
        let old = hp("127.0.0.1", 6379);
        let (s1, s2) = (hp("127.0.0.1", 26379), hp("127.0.0.1", 26380));
        let try_failover = || Event::TryFailover { service: "s".into(), old: old.clone() };
        block_on(async {
            assert!(!switch.holding(&old));
            switch.heard(&s1, try_failover()).await;
            switch.heard(&s2, try_failover()).await;
            assert!(switch.holding(&old) && !switch.holding(&hp("127.0.0.1", 6380)));
            // s2 lost the election; s1 goes on.
            switch.heard(&s2, Event::Aborted { service: "s".into() }).await;
            assert!(switch.holding(&old));
            switch.heard(&s1, Event::Aborted { service: "s".into() }).await;
            assert!(!switch.holding(&old));
            // A finished failover ends the hold too.
            switch.heard(&s1, try_failover()).await;
            let done = SwitchMaster { service: "s".into(), old: old.clone(), new: hp("127.0.0.1", 6380) };
            switch.heard(&s1, Event::Switched(done)).await;
            assert!(!switch.holding(&old));
        });
    }
}
