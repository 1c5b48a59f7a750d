//! The counting API on a Redis Cluster: each key's commands go to the primary that owns the key's
//! slot, over one pipelined connection per primary in use on this shard.
//!
//! It owns the shard's map of slots to primaries (learnt through `discovery`, again whenever a
//! node answers `-MOVED` or a node's connection fails) and one connection task per
//! primary, each with its own [`Keyed`] queue: a batch's hits on one key are still one `INCRBY`
//! on the node that owns it. What a node redirects ran nowhere: it is sent once more to the node
//! named (after `ASKING` for `-ASK`; the map is learnt again after `-MOVED`), and answered 503 if
//! redirected again. The seed counter (`GET /`) keeps the shard's main connection (`client`). It
//! must not know HTTP.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::discovery::{ClusterDiscovery, open_logged_in};
use super::slots::{Redirect, key_slot};
use crate::config::redis_topology::HostPort;
use crate::config::redis_url::{Endpoint, RedisTarget};
use crate::redis::dial::Dialer;
use crate::redis::keyed::{Answered, Keyed, KeyedCompleted, KeyedTicket, Op};
use crate::redis::queue::Failure;
use crate::redis::resp;

/// The shard's router for the API's keys; cheap to clone.
#[derive(Debug, Clone)]
pub struct Router(Rc<State>);

#[derive(Debug)]
struct State {
    target: RedisTarget,
    dialer: Dialer,
    tls: bool,
    /// The slot map; taken out while it is being learnt (never borrowed across an await).
    discovery: RefCell<Option<ClusterDiscovery>>,
    /// The map must be learnt before the next request is routed.
    stale: Cell<bool>,
    /// Requests waiting for the map.
    unrouted: RefCell<Vec<(KeyedTicket, usize, Op)>>,
    /// One connection per primary in use.
    nodes: RefCell<HashMap<HostPort, Rc<Node>>>,
    max_pending: u64,
    timeout: Duration,
    /// `--wait-replicas`: each node connection's writes end with this `WAIT`.
    wait: Option<(u32, u64)>,
}

#[derive(Debug, Default)]
struct Node {
    keyed: RefCell<Keyed>,
    writer: RefCell<Option<Waker>>,
}

impl Router {
    /// A router for a `redis+cluster://` target, or `None` for any other.
    pub fn for_target(
        target: &RedisTarget,
        dialer: Dialer,
        max_pending: u64,
        timeout: Duration,
        wait: Option<(u32, u64)>,
    ) -> Option<Router> {
        let Endpoint::Cluster { seeds, tls } = &target.endpoint else { return None };
        Some(Router(Rc::new(State {
            target: target.clone(),
            dialer,
            tls: *tls,
            discovery: RefCell::new(Some(ClusterDiscovery::for_every_key(seeds.clone(), *tls))),
            stale: Cell::new(true),
            unrouted: RefCell::default(),
            nodes: RefCell::default(),
            max_pending,
            timeout,
            wait,
        })))
    }

    /// Whether a node's connection owes an `EXPIRE` (see [`Keyed::owes_expires`]), or one waits
    /// for the slot map.
    pub fn owes_expires(&self) -> bool {
        !self.0.unrouted.borrow().is_empty() || self.0.nodes.borrow().values().any(|n| n.keyed.borrow().owes_expires())
    }

    /// Sends `op` (answered through `ticket` at `index`) to the owner of its key's slot.
    pub fn register(&self, ticket: &KeyedTicket, index: usize, op: Op) {
        let state = &self.0;
        if state.stale.get() {
            let first = state.unrouted.borrow().is_empty();
            state.unrouted.borrow_mut().push((ticket.clone(), index, op));
            if first {
                glommio::spawn_local(learn(self.0.clone())).detach();
            }
            return;
        }
        route(state, ticket, index, op);
    }
}

/// Hands `op` to its owner's connection, opening one if none is open.
fn route(state: &Rc<State>, ticket: &KeyedTicket, index: usize, op: Op) {
    let slot = key_slot(op.key());
    let owner = state.discovery.borrow().as_ref().and_then(|d| d.owner(slot).cloned());
    let Some(owner) = owner else {
        ticket.set(index, Answered::Failed(Failure::Unavailable));
        state.stale.set(true);
        return;
    };
    route_to(state, &owner, ticket, index, op);
}

/// Ops `from` redirected: after `-MOVED` the map is learnt again (for the requests that follow)
/// and they go to the node named; after `-ASK` they go there after `ASKING`, the map unchanged.
fn redirect(state: &Rc<State>, from: &HostPort, message: &[u8], ops: Vec<(KeyedTicket, usize, Op)>) {
    let (to, asking) = match Redirect::parse(message, &from.host) {
        Some(Redirect::Moved { to, .. }) => {
            state.stale.set(true);
            (to, false)
        }
        Some(Redirect::Ask { to, .. }) => (to, true),
        None => {
            ops.into_iter().for_each(|(t, i, _)| t.set(i, Answered::Failed(Failure::NotPrimary)));
            return;
        }
    };
    for (ticket, index, op) in ops {
        route_to(state, &to, &ticket, index, Op::Redirected { op: Box::new(op), asking });
    }
}

/// Hands `op` to `owner`'s connection, opening one if none is open.
fn route_to(state: &Rc<State>, owner: &HostPort, ticket: &KeyedTicket, index: usize, op: Op) {
    let owner = owner.clone();
    let node = state.nodes.borrow().get(&owner).cloned();
    let node = node.unwrap_or_else(|| {
        let node = Rc::new(Node::default());
        {
            let mut keyed = node.keyed.borrow_mut();
            keyed.follow_redirects = true;
            keyed.wait = state.wait;
            keyed.hold = state.wait.is_some();
        }
        state.nodes.borrow_mut().insert(owner.clone(), node.clone());
        glommio::spawn_local(serve(state.clone(), owner.clone(), node.clone())).detach();
        node
    });
    match node.keyed.borrow_mut().register(ticket, index, op, state.max_pending) {
        Ok(()) => {
            if let Some(w) = node.writer.borrow_mut().take() {
                w.wake();
            }
        }
        Err(failure) => ticket.set(index, Answered::Failed(failure)),
    }
}

/// Learns the slot map, then routes what waited for it (or fails it, if no node gave a map).
async fn learn(state: Rc<State>) {
    let taken = state.discovery.borrow_mut().take();
    let Some(mut discovery) = taken else { return };
    let learnt = discovery.learn(&state.dialer, &state.target).await;
    *state.discovery.borrow_mut() = Some(discovery);
    let waiting = std::mem::take(&mut *state.unrouted.borrow_mut());
    match learnt {
        Ok(_) => {
            state.stale.set(false);
            for (ticket, index, op) in waiting {
                route(&state, &ticket, index, op);
            }
        }
        Err(e) => {
            warn!("The counting API cannot learn the cluster's slot map: {e}; answering 503");
            for (ticket, index, _) in waiting {
                ticket.set(index, Answered::Failed(Failure::Unavailable));
            }
        }
    }
}

/// One primary's connection: log in, then write what waits and hand out replies until it breaks
/// or a reply says the map is wrong; then fail what is pending and leave (the next request opens
/// a new one).
async fn serve(state: Rc<State>, owner: HostPort, node: Rc<Node>) {
    let end = match open_logged_in(&state.dialer, &state.target, &owner, state.tls).await {
        Ok((_, stream)) => {
            let (rd, wr) = futures_lite::io::split(stream);
            let progress = Cell::new(Instant::now());
            let session = futures_lite::future::or(read(&state, &owner, &node, rd, &progress), write(&node, wr));
            futures_lite::future::or(session, watch(&state, &node, &progress)).await
        }
        Err(e) => e.to_string(),
    };
    state.nodes.borrow_mut().remove(&owner);
    state.stale.set(true);
    let failed = node.keyed.borrow_mut().fail_all(Failure::Lost);
    // The EXPIREs this node still owed (keys a hit may have created) go to the keys' owners,
    // as commands nobody waits for.
    let follow_ups = node.keyed.borrow_mut().take_follow_ups();
    let router = Router(state.clone());
    for (key, ttl) in follow_ups {
        router.register(&KeyedTicket::default(), 0, Op::expire(&key, ttl));
    }
    if failed > 0 {
        warn!("Cluster node {owner}: {end}; {failed} counting API requests answered 503");
    } else {
        debug!("Cluster node {owner}: {end}");
    }
}

async fn write(node: &Node, mut wr: impl futures_lite::io::AsyncWrite + Unpin) -> String {
    let mut out = Vec::with_capacity(4096);
    loop {
        poll_fn(|cx| {
            if node.keyed.borrow().has_waiting() {
                Poll::Ready(())
            } else {
                *node.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        node.keyed.borrow_mut().encode_waiting(&mut out);
        if let Err(e) = wr.write_all(&out).await {
            return e.to_string();
        }
        if let Err(e) = wr.flush().await {
            return e.to_string();
        }
        out.clear();
    }
}

async fn read(
    state: &Rc<State>,
    owner: &HostPort,
    node: &Node,
    mut rd: impl futures_lite::io::AsyncRead + Unpin,
    progress: &Cell<Instant>,
) -> String {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) => return "the node closed the connection".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return e.to_string(),
        }
        let mut used_total = 0;
        loop {
            match resp::decode_reply(&buf[used_total..]) {
                Ok(Some((reply, used))) => {
                    used_total += used;
                    progress.set(Instant::now());
                    let completed = node.keyed.borrow_mut().complete(reply);
                    match completed {
                        Some(KeyedCompleted::Served) => {}
                        Some(KeyedCompleted::Redirected(message, ops)) => redirect(state, owner, message, ops),
                        // Too few replicas: the node may have been replaced; look again.
                        Some(KeyedCompleted::NotDurable) => {
                            return "fewer replicas than --wait-replicas acknowledged a write".into();
                        }
                        Some(KeyedCompleted::NotPrimary(_, m)) => {
                            return format!("it refused a write: {}", crate::logging::escape(m));
                        }
                        None => return "a reply arrived with no command waiting for it".into(),
                    }
                }
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        buf.drain(..used_total);
        // A reply may have left a command to write (the EXPIRE of a key a hit created).
        if node.keyed.borrow().has_waiting() {
            if let Some(w) = node.writer.borrow_mut().take() {
                w.wake();
            }
        }
        if buf.len() > 1 << 20 {
            return "a reply larger than any the API expects".into();
        }
    }
}

/// Ends the connection when requests have waited on it for longer than `--redis-timeout` without
/// a reply.
async fn watch(state: &State, node: &Node, progress: &Cell<Instant>) -> String {
    let period = (state.timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        glommio::timer::sleep(period).await;
        if node.keyed.borrow().has_sent() && progress.get().elapsed() > state.timeout {
            return format!("no reply within {:?} (--redis-timeout)", state.timeout);
        }
    }
}
