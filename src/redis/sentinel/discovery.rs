//! Finding the primary through Redis Sentinel, at every connect.
//!
//! It follows redis.io's "Sentinel client spec": ask the sentinels in turn, each with a short
//! timeout, for `SENTINEL get-master-addr-by-name`; skip one that is down, refuses us, or does not
//! know the service; move the one that answered to the head of the list; hand the address to the
//! connect path, which verifies it with `ROLE` (step 3 of the spec) before anything is written.
//! Nothing is cached between connects: every reconnect, error or WAIT shortfall asks again. While
//! the subscriptions (`watch`) report a failover away from the primary a sentinel names, that
//! primary is not used: it keeps taking writes for seconds while its replicas leave it, and what
//! it acknowledges then is lost, even with `WAIT 1`.
//!
//! It owns the sentinel question only: transports are `dial`'s, the handshake with the data node
//! is `connect`'s, the pure parsing is `events`'s and failover announcements are `watch`'s.

use std::rc::Rc;
use std::time::Duration;

use super::events::{MasterAddr, SentinelList};
use super::watch::Switch;
use crate::config::redis_topology::HostPort;
use crate::redis::dial::{self, Address, Candidate, ConnectError, Dialer};
use crate::redis::resp::{self, Frame};

/// How long one sentinel may take to be reached and answer: "a few hundred milliseconds", as the
/// client spec advises, so that a dead sentinel delays discovery little.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);

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
    /// The failovers the subscriptions heard of: while one runs, the old primary is not used.
    switch: Option<Rc<Switch>>,
}

impl SentinelDiscovery {
    /// Discovery of `service` through `sentinels`.
    pub fn new(sentinels: Vec<HostPort>, service: String, password: Option<String>, tls: bool) -> SentinelDiscovery {
        SentinelDiscovery { list: SentinelList::new(sentinels), service, password, tls, switch: None }
    }

    /// Listens to the failovers the subscriptions hear of.
    pub fn listen(&mut self, switch: Rc<Switch>) {
        self.switch = Some(switch);
    }

    /// The sentinels, in the order they are asked.
    pub fn sentinels(&self) -> &[HostPort] {
        self.list.order()
    }

    /// Asks the sentinels in turn for the primary, and returns its addresses to try.
    pub async fn candidates(&mut self, dialer: &Dialer) -> Result<Vec<Candidate>, ConnectError> {
        let mut why = Vec::new();
        for sentinel in self.list.order().to_vec() {
            match dial::within(SENTINEL_TIMEOUT, self.ask(dialer, &sentinel)).await {
                Some(Ok(MasterAddr::At(primary))) => {
                    self.list.answered(&sentinel);
                    // Sentinels name the old primary until the new one is promoted, and the old
                    // one takes writes until it is reconfigured, seconds later; its replicas leave
                    // it meanwhile, so what it acknowledges may be lost. Wait for the new one.
                    let addrs = dial::resolve(&primary.host, primary.port).await?;
                    if self.switch.as_ref().is_some_and(|s| s.holding(&primary, &addrs)) {
                        return Err(ConnectError::Discovery(format!(
                            "a failover of '{}' away from {primary} is in progress; waiting for the sentinels to name \
                             the new primary",
                            self.service
                        )));
                    }
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
        Err(ConnectError::Discovery(format!("no sentinel named a primary for '{}' ({})", self.service, why.join("; "))))
    }

    /// One sentinel's answer.
    async fn ask(&self, dialer: &Dialer, sentinel: &HostPort) -> Result<MasterAddr, String> {
        let (node, mut stream) = dialer.open_host(sentinel, self.tls).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let replies = 1 + dial::encode_auth(&mut out, None, self.password.as_deref());
        resp::encode_command(&mut out, &[b"SENTINEL", b"get-master-addr-by-name", self.service.as_bytes()]);
        let frames = dial::roundtrip(&mut stream, &node, &out, replies).await.map_err(|e| e.to_string())?;
        if let (true, Frame::Error(e)) = (self.password.is_some(), &frames[0]) {
            return Err(format!("AUTH failed: {e} (--sentinel-password)"));
        }
        MasterAddr::parse(frames.last().expect("one reply per command"))
    }
}
