//! Finding the primary through Redis Sentinel, at every connect, and hearing about failovers as
//! they happen (`+switch-master`).
//!
//! It follows redis.io's "Sentinel client spec": ask the sentinels in turn, each with a short
//! timeout, for `SENTINEL get-master-addr-by-name`; skip one that is down, refuses us, or does not
//! know the service; move the one that answered to the head of the list; hand the address to the
//! connect path, which verifies it with `ROLE` (step 3 of the spec) before anything is written.
//! Nothing is cached between connects: every reconnect, error or WAIT shortfall asks again.
//!
//! The `+switch-master` subscription is one more task on the shard's executor. It only reads and
//! sets a flag ([`Switch`]) that the session races; it never blocks the event loop and never
//! touches the pipelined connection itself.
//!
//! It owns the sentinel conversation only: transports (TLS included) and the handshake with the
//! data node are `connect`'s; the pure parsing is `sentinel`'s.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::connect::{self, Address, Candidate, ConnectError, Connector};
use super::resp::{self, Frame};
use super::sentinel::{MasterAddr, SentinelList, SwitchMaster};
use super::topology::HostPort;

/// How long one sentinel may take to be reached and answer: "a few hundred milliseconds", as the
/// client spec advises, so that a dead sentinel delays discovery little.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the subscription waits before trying the next sentinel after losing one.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// One shard's view of the sentinels.
#[derive(Debug, Clone)]
pub struct SentinelDiscovery {
    /// The sentinels, the last one that answered first.
    list: SentinelList,
    /// The service name.
    service: String,
    /// `--sentinel-password`: the sentinels' own password, if they have one.
    password: Option<String>,
    /// `rediss+sentinel://`: TLS to the sentinels too.
    tls: bool,
}

impl SentinelDiscovery {
    /// Discovery of `service` through `sentinels`.
    pub fn new(sentinels: Vec<HostPort>, service: String, password: Option<String>, tls: bool) -> SentinelDiscovery {
        SentinelDiscovery { list: SentinelList::new(sentinels), service, password, tls }
    }

    /// Asks the sentinels in turn for the primary, and returns its addresses to try.
    pub async fn candidates(&mut self, connector: &mut Connector) -> Result<Vec<Candidate>, ConnectError> {
        let mut why = Vec::new();
        for sentinel in self.list.order().to_vec() {
            match connect::within(SENTINEL_TIMEOUT, self.ask(connector, &sentinel)).await {
                Some(Ok(MasterAddr::At(primary))) => {
                    self.list.answered(&sentinel);
                    let addrs = connect::resolve(&primary.host, primary.port).await?;
                    let name = primary.host;
                    return Ok(addrs
                        .into_iter()
                        .map(|a| Candidate { name: name.clone(), addr: Address::Tcp(a) })
                        .collect());
                }
                Some(Ok(MasterAddr::Unknown)) => why.push(format!("{sentinel} does not know '{}'", self.service)),
                Some(Err(e)) => why.push(format!("{sentinel}: {e}")),
                None => why.push(format!("{sentinel}: no answer within {SENTINEL_TIMEOUT:?}")),
            }
        }
        Err(ConnectError::NoPrimary(format!("no sentinel named a primary for '{}' ({})", self.service, why.join("; "))))
    }

    /// One sentinel's answer.
    async fn ask(&self, connector: &mut Connector, sentinel: &HostPort) -> Result<MasterAddr, String> {
        let (node, mut stream) = open(connector, sentinel, self.tls).await?;
        let mut out = Vec::new();
        let mut replies = 1;
        if let Some(p) = &self.password {
            resp::encode_command(&mut out, &[b"AUTH", p.as_bytes()]);
            replies += 1;
        }
        resp::encode_command(&mut out, &[b"SENTINEL", b"get-master-addr-by-name", self.service.as_bytes()]);
        let frames = connect::roundtrip(&mut stream, &node, &out, replies).await.map_err(|e| e.to_string())?;
        if let (true, Frame::Error(e)) = (self.password.is_some(), &frames[0]) {
            return Err(format!("AUTH failed: {e} (--sentinel-password)"));
        }
        MasterAddr::parse(frames.last().expect("one reply per command"))
    }
}

/// Opens a transport to a sentinel (TLS verified against the name as written).
async fn open(
    connector: &mut Connector,
    sentinel: &HostPort,
    tls: bool,
) -> Result<(Candidate, super::stream::Stream), String> {
    let addr = *connect::resolve(&sentinel.host, sentinel.port)
        .await
        .map_err(|e| e.to_string())?
        .first()
        .ok_or("no address")?;
    let node = Candidate { name: sentinel.host.clone(), addr: Address::Tcp(addr) };
    let stream = connector.open(&node, tls).await.map_err(|e| e.to_string())?;
    Ok((node, stream))
}

/// A failover announced by a sentinel, for the session to act on.
#[derive(Debug, Default)]
pub struct Switch {
    /// The new primary's address, set by the subscription, taken by the session.
    to: RefCell<Option<SocketAddr>>,
    /// Bumped at every announcement, so a session can tell a new one from one it has seen.
    count: Cell<u64>,
    /// The session waiting for an announcement.
    waiter: RefCell<Option<Waker>>,
}

impl Switch {
    fn announce(&self, to: Option<SocketAddr>) {
        *self.to.borrow_mut() = to;
        self.count.set(self.count.get() + 1);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for an announcement that moves the primary away from `current` (the node the
    /// session is connected to). One naming `current` itself (the shard got there first, through
    /// a reconnect) is ignored. Returns the new primary's address when known.
    pub async fn away_from(&self, current: &Address) -> Option<SocketAddr> {
        let mut seen = self.count.get();
        poll_fn(|cx| {
            while self.count.get() != seen {
                seen = self.count.get();
                let to = *self.to.borrow();
                match (to, current) {
                    (Some(to), Address::Tcp(at)) if to == *at => continue,
                    _ => return Poll::Ready(to),
                }
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The `+switch-master` subscription: one sentinel at a time (the head of the list first), for as
/// long as the shard lives. Each announcement for our service is passed to `switch`.
pub async fn watch_switch_master(discovery: SentinelDiscovery, mut connector: Connector, switch: Rc<Switch>) {
    let mut logged_failure = false;
    loop {
        for sentinel in discovery.list.order().to_vec() {
            match subscribe(&discovery, &mut connector, &sentinel, &switch).await {
                Ok(()) => {}
                Err(e) if !logged_failure => {
                    warn!("Lost the +switch-master subscription to sentinel {sentinel}: {e}; trying the next sentinel");
                    logged_failure = true;
                }
                Err(e) => debug!("+switch-master subscription to sentinel {sentinel}: {e}"),
            }
            glommio::timer::sleep(RESUBSCRIBE_DELAY.mul_f64(0.5 + fastrand::f64())).await;
        }
    }
}

/// Subscribes on one sentinel and reads announcements until the connection ends.
async fn subscribe(
    discovery: &SentinelDiscovery,
    connector: &mut Connector,
    sentinel: &HostPort,
    switch: &Switch,
) -> Result<(), String> {
    let (node, mut stream) = connect::within(SENTINEL_TIMEOUT, open(connector, sentinel, discovery.tls))
        .await
        .ok_or_else(|| format!("no answer within {SENTINEL_TIMEOUT:?}"))??;
    let mut out = Vec::new();
    if let Some(p) = &discovery.password {
        resp::encode_command(&mut out, &[b"AUTH", p.as_bytes()]);
    }
    resp::encode_command(&mut out, &[b"SUBSCRIBE", b"+switch-master"]);
    let replies = if discovery.password.is_some() { 2 } else { 1 };
    let frames = connect::roundtrip(&mut stream, &node, &out, replies).await.map_err(|e| e.to_string())?;
    if let Some(Frame::Error(e)) = frames.iter().find(|f| matches!(f, Frame::Error(_))) {
        return Err(format!("refused: {e}"));
    }
    debug!("Subscribed to +switch-master on sentinel {sentinel}");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        while let Some((frame, used)) = resp::decode_frame(&buf).map_err(|e| e.to_string())? {
            buf.drain(..used);
            let Some(event) = SwitchMaster::from_message(&frame) else { continue };
            if event.service != discovery.service {
                continue;
            }
            info!("Sentinel {sentinel} announced a failover of '{}': {} -> {}", event.service, event.old, event.new);
            let to = connect::resolve(&event.new.host, event.new.port).await.ok().and_then(|a| a.first().copied());
            switch.announce(to);
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
