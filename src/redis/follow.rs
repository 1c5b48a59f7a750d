//! What a shard's connection task follows while a session runs, by topology: nothing (one node),
//! failovers announced by the sentinels, or a Cluster's `-MOVED` and `-ASK`. [`Follow`] says by
//! its variant which of these apply.
//!
//! - Sentinel: subscription tasks (`sentinel::watch`) announce failovers ([`Switch`]); the
//!   session races [`Follow::switched`] and ends when its node is being failed over or the
//!   primary is now another node. Requests in flight then get 503: they may or may not have run.
//! - Cluster `-MOVED` (`cluster::moves`): the batch ran nowhere. The session stops writing, lets
//!   the replies of what it already wrote come back, then ends, and the next connection goes to
//!   the node named, with the redirected requests written first.
//! - Cluster `-ASK` (`cluster::ask`): the batch ran nowhere; it is sent once, as `ASKING` +
//!   `INCRBY`, on a connection to the importing node, while the session goes on.
//!
//! It owns that choice and the per-topology state; the queue arithmetic is `queue`'s and the
//! session loop `session`'s (which calls in here and is never called from here).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use super::cluster::ask::Asker;
use super::cluster::moves::Moves;
use super::dial::{Address, Dialer};
use super::sentinel::watch::{self, Service, Switch};
use crate::config::redis_url::{Endpoint, RedisTarget};

/// One shard's topology-following state.
#[derive(Debug)]
pub enum Follow {
    /// One node (`redis://`, `rediss://`, `unix://`): nothing to follow.
    Direct,
    /// `redis+sentinel://`: the failovers the subscriptions hear of.
    Sentinel(Rc<Switch>),
    /// `redis+cluster://`: redirections.
    Cluster(Box<ClusterFollow>),
}

/// A Cluster session's redirection state.
#[derive(Debug)]
pub struct ClusterFollow {
    /// `-MOVED`: where the session stands, where the slot went.
    pub moves: RefCell<Moves>,
    /// `-ASK`: the connections to importing nodes. Shared with the tasks that send on them.
    pub asker: Rc<Asker>,
}

impl Follow {
    /// The state for `target`; for Sentinel, starts one failover subscription per sentinel on
    /// this executor (they live as long as the shard).
    pub fn start(target: &RedisTarget, dialer: &Dialer, wait: Option<(u32, u64)>) -> Follow {
        match &target.endpoint {
            Endpoint::Tcp { .. } | Endpoint::Unix(_) => Follow::Direct,
            Endpoint::Sentinel { sentinels, service, tls } => {
                let switch = Rc::new(Switch::default());
                let service = Service { name: service.clone(), password: target.sentinel_password.clone(), tls: *tls };
                for sentinel in sentinels {
                    let watch = watch::watch(service.clone(), dialer.clone(), sentinel.clone(), switch.clone());
                    glommio::spawn_local(watch).detach();
                }
                Follow::Sentinel(switch)
            }
            Endpoint::Cluster { .. } => Follow::Cluster(Box::new(ClusterFollow {
                moves: RefCell::default(),
                asker: Rc::new(Asker::new(target.clone(), dialer.clone(), wait)),
            })),
        }
    }

    /// Sentinel: the failovers the subscriptions hear of, for discovery to hold off the old primary.
    pub fn switch(&self) -> Option<Rc<Switch>> {
        match self {
            Follow::Sentinel(switch) => Some(switch.clone()),
            _ => None,
        }
    }

    /// Cluster: the redirection state.
    pub fn cluster(&self) -> Option<&ClusterFollow> {
        match self {
            Follow::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// Whether `-MOVED`/`-ASK` are followed (a Cluster target).
    pub fn follows_redirects(&self) -> bool {
        matches!(self, Follow::Cluster(_))
    }

    /// A session with `node` (its host name) begins.
    pub fn connected(&self, node: &str) {
        if let Follow::Cluster(cluster) = self {
            cluster.moves.borrow_mut().connected(node);
        }
    }

    /// Whether a `-MOVED` came: write nothing more on this session.
    pub fn draining(&self) -> bool {
        self.cluster().is_some_and(|c| c.moves.borrow().draining())
    }

    /// Ends (returns the new primary, when known) once a sentinel announces a failover away from
    /// `at`; never, for other topologies.
    pub async fn switched(&self, at: &Address) -> Option<SocketAddr> {
        match self {
            Follow::Sentinel(switch) => switch.away_from(at).await,
            _ => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::redis_url::TlsFiles;

    #[test]
    fn each_topology_follows_what_applies_to_it() {
        let dialer = Dialer::new(TlsFiles::default());
        let cluster = RedisTarget::parse("redis+cluster://:pw@127.0.0.1:7000").unwrap();
        let follow = Follow::start(&cluster, &dialer, None);
        assert!(follow.follows_redirects() && follow.switch().is_none() && !follow.draining());
        follow.connected("10.0.0.1");
        follow.cluster().unwrap().moves.borrow_mut().redirected(b"MOVED 1 10.0.0.2:7001");
        assert!(follow.draining());
        let single = RedisTarget::parse("redis://127.0.0.1:6379/0").unwrap();
        let follow = Follow::start(&single, &dialer, None);
        assert!(matches!(follow, Follow::Direct) && !follow.follows_redirects() && !follow.draining());
    }
}
