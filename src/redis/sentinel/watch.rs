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

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::events::Event;
use crate::config::redis_topology::HostPort;
use crate::redis::dial::{self, Address, Dialer};
use crate::redis::resp::{self, Frame};

/// How long a sentinel may take to be reached and to confirm the subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A subscription quiet for this long sends a PING (allowed while subscribed).
const PING_AFTER: Duration = Duration::from_secs(1);
/// A PING unanswered for this long means the sentinel is gone: subscribe again (to it, or, while
/// it stays gone, keep trying). Generous enough for a sentinel busy with an election.
const PONG_DEADLINE: Duration = Duration::from_secs(3);
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

/// Failovers announced by the sentinels, for the session and for discovery to act on. Nodes are
/// compared by address: sentinels that announce host names (`announce-hostnames yes`) name the
/// primary by a name that resolves to the address the session is connected to.
#[derive(Debug, Default)]
pub struct Switch {
    /// The last announcement: the primary moved away from `.0` (when known) to `.1` (when
    /// known), each every address its name resolves to.
    last: RefCell<(Vec<SocketAddr>, Vec<SocketAddr>)>,
    /// Bumped at every announcement, so a session can tell a new one from one it has seen.
    count: Cell<u64>,
    /// The sessions waiting for an announcement (one per shard, but a waker is cheap to keep).
    waiter: RefCell<Option<Waker>>,
    /// Failovers started (`+try-failover`): by which sentinel, away from which primary (as
    /// named, and its addresses), when. Kept per sentinel because several may try at once and
    /// the ones that lose the election abort (`-failover-abort-not-elected`) while the leader
    /// goes on.
    failing_over: RefCell<Vec<Attempt>>,
}

/// One `+try-failover` not yet ended or aborted.
#[derive(Debug)]
struct Attempt {
    /// The sentinel that leads it.
    sentinel: HostPort,
    /// The primary being failed over, as the sentinel named it.
    old: HostPort,
    /// What that name resolved to.
    old_addrs: Vec<SocketAddr>,
    /// When it was heard.
    at: Instant,
}

/// The addresses of the nodes an event names: (the old primary, the new one).
pub type EventAddrs = (Vec<SocketAddr>, Vec<SocketAddr>);

/// Resolves the nodes an event names (a name that does not resolve gives no address).
pub async fn resolve_event(event: &Event) -> EventAddrs {
    async fn addrs(node: &HostPort) -> Vec<SocketAddr> {
        dial::resolve(&node.host, node.port).await.unwrap_or_default()
    }
    match event {
        Event::TryFailover { old, .. } => (addrs(old).await, Vec::new()),
        Event::Aborted { .. } => (Vec::new(), Vec::new()),
        Event::Switched(switch) => (addrs(&switch.old).await, addrs(&switch.new).await),
    }
}

impl Switch {
    fn announce(&self, from: Vec<SocketAddr>, to: Vec<SocketAddr>) {
        *self.last.borrow_mut() = (from, to);
        self.count.set(self.count.get() + 1);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Acts on one event about our service, its nodes resolved ([`resolve_event`]).
    pub fn heard(&self, sentinel: &HostPort, event: Event, (old, new): EventAddrs) {
        match event {
            Event::TryFailover { old: name, .. } => {
                let mut failing = self.failing_over.borrow_mut();
                failing.retain(|a| a.sentinel != *sentinel);
                failing.push(Attempt {
                    sentinel: sentinel.clone(),
                    old: name,
                    old_addrs: old.clone(),
                    at: Instant::now(),
                });
                drop(failing);
                self.announce(old, Vec::new());
            }
            Event::Aborted { .. } => self.failing_over.borrow_mut().retain(|a| a.sentinel != *sentinel),
            Event::Switched(_) => {
                self.failing_over.borrow_mut().clear();
                self.announce(old, new);
            }
        }
    }

    /// Whether a failover away from `primary` (as a sentinel names it, and its addresses) is in
    /// progress (and not older than [`FAILOVER_HOLD`]).
    pub fn holding(&self, primary: &HostPort, addrs: &[SocketAddr]) -> bool {
        self.failing_over.borrow().iter().any(|a| {
            (a.old == *primary || addrs.iter().any(|addr| a.old_addrs.contains(addr))) && a.at.elapsed() < FAILOVER_HOLD
        })
    }

    /// Waits for an announcement that the session's node `current` is (being) failed over, or
    /// that the primary is now another node. Returns the new primary's address when known.
    pub async fn away_from(&self, current: &Address) -> Option<SocketAddr> {
        let mut seen = self.count.get();
        poll_fn(|cx| {
            while self.count.get() != seen {
                seen = self.count.get();
                let last = self.last.borrow();
                let (from, to) = (&last.0, &last.1);
                let Address::Tcp(at) = current else { return Poll::Ready(to.first().copied()) };
                if from.contains(at) || (!to.is_empty() && !to.contains(at)) {
                    return Poll::Ready(to.first().copied());
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
        let mut subscribed = false;
        let ended = subscribe(&service, &dialer, &sentinel, &switch, &mut subscribed).await;
        if subscribed {
            // A subscription that worked ends an outage: the next loss is news again.
            logged_failure = false;
        }
        match ended {
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
/// Sets `subscribed` once the sentinel has confirmed the subscription.
async fn subscribe(
    service: &Service,
    dialer: &Dialer,
    sentinel: &HostPort,
    switch: &Switch,
    subscribed: &mut bool,
) -> Result<(), String> {
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
    let frames = dial::within(SUBSCRIBE_TIMEOUT, dial::roundtrip(&mut stream, &node, &out, replies))
        .await
        .ok_or_else(|| format!("no answer to SUBSCRIBE within {SUBSCRIBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if let Some(Frame::Error(e)) = frames.iter().find(|f| matches!(f, Frame::Error(_))) {
        return Err(format!("refused: {e}"));
    }
    debug!("Subscribed to failover events on sentinel {sentinel}");
    *subscribed = true;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut ping = Vec::new();
    resp::encode_command(&mut ping, &[b"PING"]);
    // When the PING now unanswered was sent.
    let mut pinged: Option<Instant> = None;
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
            let addrs = resolve_event(&event).await;
            switch.heard(sentinel, event, addrs);
        }
        if buf.len() > 64 * 1024 {
            return Err("an oversized message".into());
        }
        // A sentinel that vanishes without closing (a host gone, a paused process, a dropped
        // route) sends nothing; a PING after a quiet second must be answered within the deadline.
        let n = match dial::within(PING_AFTER, stream.read(&mut chunk)).await {
            Some(read) => read.map_err(|e| e.to_string())?,
            None => {
                match pinged {
                    Some(at) if at.elapsed() >= PONG_DEADLINE => {
                        return Err(format!("no answer to PING within {PONG_DEADLINE:?}"));
                    }
                    Some(_) => {}
                    None => {
                        stream.write_all(&ping).await.map_err(|e| e.to_string())?;
                        stream.flush().await.map_err(|e| e.to_string())?;
                        pinged = Some(Instant::now());
                    }
                }
                continue;
            }
        };
        if n == 0 {
            return Err("the sentinel closed the connection".into());
        }
        // Anything the sentinel sends (the PONG or an event) shows it is there.
        pinged = None;
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

    /// Resolves the event's nodes (IP addresses: no executor needed) and hands it to `switch`.
    fn hear(switch: &Switch, sentinel: &HostPort, event: Event) {
        let addrs = block_on(resolve_event(&event));
        switch.heard(sentinel, event, addrs);
    }

    fn addrs(node: &HostPort) -> Vec<SocketAddr> {
        vec![SocketAddr::new(node.host.parse().unwrap(), node.port)]
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
            hear(&switch, &s1, Event::TryFailover { service: "s".into(), old: hp("127.0.0.1", 6379) });
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
            hear(&switch, &s2, to(6380));
            assert!(poll_once(&mut on_new).await.is_none());
            hear(&switch, &s2, to(6381));
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
            assert!(!switch.holding(&old, &addrs(&old)));
            hear(&switch, &s1, try_failover());
            hear(&switch, &s2, try_failover());
            assert!(switch.holding(&old, &addrs(&old)));
            let other = hp("127.0.0.1", 6380);
            assert!(!switch.holding(&other, &addrs(&other)));
            // s2 lost the election; s1 goes on.
            hear(&switch, &s2, Event::Aborted { service: "s".into() });
            assert!(switch.holding(&old, &addrs(&old)));
            hear(&switch, &s1, Event::Aborted { service: "s".into() });
            assert!(!switch.holding(&old, &addrs(&old)));
            // A finished failover ends the hold too.
            hear(&switch, &s1, try_failover());
            let done = SwitchMaster { service: "s".into(), old: old.clone(), new: hp("127.0.0.1", 6380) };
            hear(&switch, &s1, Event::Switched(done));
            assert!(!switch.holding(&old, &addrs(&old)));
        });
    }

    #[test]
    fn sentinels_that_announce_host_names_end_the_session_and_hold_off_the_old_primary() {
        // `sentinel announce-hostnames yes`: +try-failover names the primary `localhost`, while
        // the session is connected to the address that name resolves to.
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().unwrap();
        executor.run(async {
            let switch = Switch::default();
            let s1 = hp("localhost", 26379);
            let old = hp("localhost", 6379);
            let event = Event::TryFailover { service: "s".into(), old: old.clone() };
            let resolved = resolve_event(&event).await;
            assert!(!resolved.0.is_empty(), "localhost resolves");
            let session_at = Address::Tcp(resolved.0[0]);
            let mut on_old = Box::pin(switch.away_from(&session_at));
            assert!(poll_once(&mut on_old).await.is_none());
            switch.heard(&s1, event, resolved.clone());
            assert_eq!(poll_once(&mut on_old).await, Some(None), "the session on the old primary ends");
            // Discovery holds it off whether a sentinel names it by name or by address.
            assert!(switch.holding(&old, &resolved.0));
            let by_address = HostPort { host: resolved.0[0].ip().to_string(), port: 6379 };
            assert!(switch.holding(&by_address, &resolved.0[..1]));
        });
    }
}
