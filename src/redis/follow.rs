//! What a shard's connection task does, while a session runs, to follow a Sentinel or Cluster
//! topology: hear failovers (Sentinel), and act on `-MOVED` and `-ASK` (Cluster).
//!
//! - Sentinel: subscription tasks announce failovers ([`Switch`]); the session races
//!   [`Follow::switched`] and ends when its node is being failed over or the primary is now
//!   another node. Requests in flight then get 503: they may or may not have run there.
//! - Cluster `-MOVED`: the batch ran nowhere. The session stops writing, lets the replies of what
//!   it already wrote come back (each a value or another redirection), then ends, and the next
//!   connection goes to the node named, with the redirected requests written first.
//! - Cluster `-ASK`: the batch ran nowhere; it is sent once, as `ASKING` + `INCRBY`, on a short
//!   connection to the importing node, while the session goes on with the slot's owner.
//!
//! It owns that state only; the queue arithmetic is `queue`'s, the node conversations are
//! `sentinel_discovery`'s and `cluster_discovery`'s, and the session loop is `client`'s (which
//! calls in here and is never called from here).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::cluster_discovery::{self, Asked};
use super::connect::{self, Address, Connector};
use super::queue::Ticket;
use super::sentinel_discovery::{self, SentinelDiscovery, Switch};
use super::slots::Redirect;
use super::tls::TlsFiles;
use super::topology::HostPort;
use super::url::{Endpoint, RedisTarget};

/// How long an `-ASK`ed batch may take, connect and login included, before its requests get 503.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A redirection, as the session should treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirection {
    /// `-ASK`: send the batch to this node once ([`Follow::send_asked`]).
    Ask(HostPort),
    /// `-MOVED`: drain, then move the connection (the target is kept for [`Follow::take_moved`]).
    Moved,
    /// Not a redirection hitcore can follow (malformed): fail the batch.
    Unreadable,
}

/// One shard's topology-following state.
#[derive(Debug)]
pub struct Follow {
    /// The target, for `-ASK` connections (the data nodes' credentials, TLS).
    target: RedisTarget,
    /// `--redis-tls-*`.
    tls_files: TlsFiles,
    /// `CLIENT SETNAME` value, for connectors made here.
    client_name: String,
    /// The counter key.
    key: String,
    /// `--wait-replicas`/`--wait-timeout`, for `-ASK` batches.
    wait: Option<(u32, u64)>,
    /// Sentinel: failovers announced by the subscription.
    switch: Option<Rc<Switch>>,
    /// Cluster: the node the session is connected to, for a redirection that names no host.
    node: RefCell<String>,
    /// Cluster: where a `-MOVED` sent the slot; set while the session drains.
    moved_to: RefCell<Option<HostPort>>,
    /// Cluster: the connector of `-ASK` sends, kept between them (its TLS configuration is built once).
    asker: RefCell<Option<Connector>>,
}

impl Follow {
    /// The state for `target`; for Sentinel, starts the `+switch-master` subscription on this
    /// executor (it lives as long as the shard).
    pub fn start(
        target: &RedisTarget,
        tls_files: &TlsFiles,
        client_name: String,
        key: &str,
        wait: Option<(u32, u64)>,
    ) -> Follow {
        let switch = match &target.endpoint {
            Endpoint::Sentinel { sentinels, service, tls } => {
                let switch = Rc::new(Switch::default());
                let discovery =
                    SentinelDiscovery::new(sentinels.clone(), service.clone(), target.sentinel_password.clone(), *tls);
                for sentinel in sentinels {
                    let connector =
                        Connector::new(target.clone(), key.to_string(), tls_files.clone(), client_name.clone());
                    let watch =
                        sentinel_discovery::watch(discovery.clone(), connector, sentinel.clone(), switch.clone());
                    glommio::spawn_local(watch).detach();
                }
                Some(switch)
            }
            _ => None,
        };
        Follow {
            target: target.clone(),
            tls_files: tls_files.clone(),
            client_name,
            key: key.to_string(),
            wait,
            switch,
            node: RefCell::new(String::new()),
            moved_to: RefCell::new(None),
            asker: RefCell::new(None),
        }
    }

    /// Sentinel: the failovers the subscriptions hear of, for discovery to hold off the old primary.
    pub fn switch(&self) -> Option<Rc<Switch>> {
        self.switch.clone()
    }

    /// Whether `-MOVED`/`-ASK` are followed (a Cluster target).
    pub fn follows_redirects(&self) -> bool {
        matches!(self.target.endpoint, Endpoint::Cluster { .. })
    }

    /// A session with `node` (its host name) begins.
    pub fn connected(&self, node: &str) {
        *self.node.borrow_mut() = node.to_string();
        self.moved_to.borrow_mut().take();
    }

    /// Ends (returns the new primary, when known) once a sentinel announces a failover away from
    /// `at`; never, for other topologies.
    pub async fn switched(&self, at: &Address) -> Option<SocketAddr> {
        match &self.switch {
            Some(switch) => switch.away_from(at).await,
            None => std::future::pending().await,
        }
    }

    /// What to do with a redirection (`message` without the `-`).
    pub fn redirected(&self, message: &[u8]) -> Redirection {
        match Redirect::parse(message, &self.node.borrow()) {
            Some(Redirect::Ask { to, .. }) => Redirection::Ask(to),
            Some(Redirect::Moved { to, .. }) => {
                *self.moved_to.borrow_mut() = Some(to);
                Redirection::Moved
            }
            None => Redirection::Unreadable,
        }
    }

    /// Whether a `-MOVED` came: write nothing more on this session.
    pub fn draining(&self) -> bool {
        self.moved_to.borrow().is_some()
    }

    /// Where the last `-MOVED` sent the slot, taken.
    pub fn take_moved(&self) -> Option<HostPort> {
        self.moved_to.borrow_mut().take()
    }

    /// Sends an `-ASK`ed batch to `to` once and hands its requests their outcomes. Returns how
    /// many requests it settled.
    pub async fn send_asked(&self, to: HostPort, tickets: Vec<(Ticket, u64)>) -> u64 {
        let total: u64 = tickets.iter().map(|(_, n)| n).sum();
        let mut connector = self.asker.borrow_mut().take().unwrap_or_else(|| {
            Connector::new(self.target.clone(), self.key.clone(), self.tls_files.clone(), self.client_name.clone())
        });
        let send = cluster_discovery::send_asked(
            &mut connector,
            &self.target,
            &to,
            self.target.tls(),
            &self.key,
            total,
            self.wait,
        );
        let asked = connect::within(ASK_TIMEOUT, send)
            .await
            .unwrap_or_else(|| Asked::Lost(format!("no answer within {ASK_TIMEOUT:?}")));
        *self.asker.borrow_mut() = Some(connector);
        if !matches!(asked, Asked::Value { .. }) {
            tracing::warn!("A batch redirected with -ASK to {to} got no value there: {asked:?}; answering 503");
        }
        cluster_discovery::answer_asked(tickets, total, &asked, self.wait);
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_follow() -> Follow {
        let target = RedisTarget::parse("redis+cluster://:pw@127.0.0.1:7000").unwrap();
        Follow::start(&target, &TlsFiles::default(), "t".into(), "hit", None)
    }

    #[test]
    fn moved_drains_and_names_the_new_owner_ask_names_the_importing_node() {
        let follow = cluster_follow();
        assert!(follow.follows_redirects() && follow.switch().is_none());
        follow.connected("10.0.0.1");
        assert!(!follow.draining());
        let to = HostPort { host: "10.0.0.2".into(), port: 7001 };
        assert_eq!(follow.redirected(b"ASK 15723 10.0.0.2:7001"), Redirection::Ask(to.clone()));
        assert!(!follow.draining(), "-ASK leaves the session as it is");
        assert_eq!(follow.redirected(b"MOVED 15723 :7002"), Redirection::Moved);
        assert!(follow.draining());
        let same_host = HostPort { host: "10.0.0.1".into(), port: 7002 };
        assert_eq!(follow.take_moved(), Some(same_host), "an empty host is the answering node's");
        assert_eq!(follow.redirected(b"MOVED nonsense"), Redirection::Unreadable);
        follow.redirected(b"MOVED 1 10.0.0.3:7003");
        follow.connected("10.0.0.3");
        assert!(!follow.draining(), "a new session starts clean");
    }

    #[test]
    fn a_single_node_target_follows_nothing() {
        let target = RedisTarget::parse("redis://127.0.0.1:6379/0").unwrap();
        let follow = Follow::start(&target, &TlsFiles::default(), "t".into(), "hit", None);
        assert!(!follow.follows_redirects() && follow.switch().is_none());
    }
}
