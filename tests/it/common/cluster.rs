//! A Redis Cluster for the tests: primaries with replicas, joined by `redis-cli --cluster create`,
//! and the operator actions on it: moving the key's slot by hand (`-ASK`, then `-MOVED`) and
//! promoting a replica with `CLUSTER FAILOVER`.
//!
//! It builds on `topology`'s nodes and RESP client; every wait polls the real state with a deadline.

use std::process::{Command, Stdio};

use super::topology::{DATA_PASSWORD, FORM_DEADLINE, Node, TlsFiles, V, data_args, free_cluster_port, poll};

/// A Redis Cluster of `primaries` primaries with `replicas` replicas each.
pub struct Cluster {
    /// Every node, in the order given to `redis-cli --cluster create` (primaries first).
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every node
    /// says `cluster_state:ok`, knows every other node, and every replica's link is up.
    pub fn start(primaries: usize, replicas: usize) -> Cluster {
        Self::start_with(primaries, replicas, None)
    }

    /// As [`Cluster::start`]; with `tls`, every node also has a TLS port and the cluster bus,
    /// replication and MIGRATE use TLS (`tls-cluster yes`), so clients are redirected to TLS ports.
    pub fn start_with(primaries: usize, replicas: usize, tls: Option<&TlsFiles>) -> Cluster {
        let count = primaries * (1 + replicas);
        let nodes: Vec<Node> = (0..count)
            .map(|_| {
                let tls_port = tls.map(|_| super::free_port());
                let mut node = Node::start(
                    "cluster",
                    Some(DATA_PASSWORD),
                    free_cluster_port,
                    "Ready to accept connections",
                    |p, d| {
                        let mut a = data_args(p, d);
                        if let (Some(files), Some(t)) = (tls, tls_port) {
                            a.extend(files.args(t));
                            a.extend(["--tls-cluster".into(), "yes".into()]);
                        }
                        a.extend(
                            [
                                "--cluster-enabled",
                                "yes",
                                "--cluster-config-file",
                                &format!("nodes-{p}.conf"),
                                "--cluster-node-timeout",
                                "2000",
                            ]
                            .map(String::from),
                        );
                        a
                    },
                );
                node.tls_port = tls_port;
                node
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["-a", DATA_PASSWORD, "--no-auth-warning", "--cluster", "create"]);
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = create.stdin(Stdio::null()).output().expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        cluster.wait_formed();
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`, sees every live node connected, and
    /// every replica's link to its primary is up.
    pub fn wait_formed(&self) {
        let live = self.nodes.iter().filter(|n| !n.is_dead()).count();
        poll("the cluster forms", FORM_DEADLINE, || {
            for n in self.nodes.iter().filter(|n| !n.is_dead()) {
                let text = n.call(&["CLUSTER", "INFO"])?.text();
                if !text.contains("cluster_state:ok") {
                    return Err(format!("{}: {text}", n.port));
                }
                let table = n.call(&["CLUSTER", "NODES"])?.text();
                let connected = table.lines().filter(|l| l.contains(" connected") && !l.contains("fail")).count();
                if connected < live {
                    return Err(format!("{} sees {connected} of {live} nodes:\n{table}", n.port));
                }
                let r = n.info("replication")?;
                if r["role"] == "slave" && r.get("master_link_status").map(String::as_str) != Some("up") {
                    return Err(format!("replica {} link down", n.port));
                }
            }
            Ok(())
        });
    }

    /// `rediss+cluster://:DATA_PASSWORD@127.0.0.1:T` for the given seed nodes' TLS ports.
    pub fn tls_url(&self, seeds: &[usize]) -> String {
        let hosts: Vec<String> = seeds.iter().map(|&i| format!("127.0.0.1:{}", self.nodes[i].announced())).collect();
        format!("rediss+cluster://:{DATA_PASSWORD}@{}", hosts.join(","))
    }

    /// `redis+cluster://:DATA_PASSWORD@127.0.0.1:P` for the given seed nodes.
    pub fn url(&self, seeds: &[usize]) -> String {
        let hosts: Vec<String> = seeds.iter().map(|&i| format!("127.0.0.1:{}", self.nodes[i].port)).collect();
        format!("redis+cluster://:{DATA_PASSWORD}@{}", hosts.join(","))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        self.live()[0].must(&["CLUSTER", "KEYSLOT", key]).text().parse().unwrap()
    }

    fn live(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| !n.is_dead()).collect()
    }

    /// The node id of node `i` (`CLUSTER MYID`).
    pub fn id(&self, i: usize) -> String {
        self.nodes[i].must(&["CLUSTER", "MYID"]).text()
    }

    /// The index of the primary that node `asker` says owns `slot` (from its `CLUSTER NODES`);
    /// panics if it knows none (use [`Cluster::owner_seen`] where a transient state is possible).
    pub fn owner(&self, slot: u16, asker: usize) -> usize {
        self.owner_seen(slot, asker)
            .unwrap_or_else(|table| panic!("node {asker} knows no owner of slot {slot}:\n{table}"))
    }

    /// As [`Cluster::owner`], or `Err` with the node's table while it knows no owner (mid-failover
    /// a node may flag the old primary as failing before it learns of the new one).
    pub fn owner_seen(&self, slot: u16, asker: usize) -> Result<usize, String> {
        let table = self.nodes[asker].call(&["CLUSTER", "NODES"])?.text();
        for line in table.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let owns = f[8..].iter().filter(|r| !r.starts_with('[')).any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&slot)
            });
            if owns {
                let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return Ok(self.nodes.iter().position(|n| n.port == port || n.tls_port == Some(port)).unwrap());
            }
        }
        Err(table)
    }

    /// The indices of the primaries, per node 0's view... of a live node's view.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].is_dead())
            .filter(|&i| self.nodes[i].info("replication").is_ok_and(|r| r["role"] == "master"))
            .collect()
    }

    /// The replica of primary `i` (the first node replicating from it).
    pub fn replica_of(&self, i: usize) -> usize {
        let port = self.nodes[i].port.to_string();
        (0..self.nodes.len())
            .find(|&j| {
                !self.nodes[j].is_dead()
                    && self.nodes[j].info("replication").is_ok_and(|r| r.get("master_port") == Some(&port))
            })
            .unwrap_or_else(|| panic!("node {i} has no replica"))
    }

    /// The first half of moving `slot` from `from` to `to` by hand: `IMPORTING` on the target,
    /// `MIGRATING` on the source, then `MIGRATE` of every key in it. From here until
    /// [`Cluster::finish_migration`] the source answers `-ASK slot host:port` for the moved keys
    /// (the key is gone from it) and the target executes them only after `ASKING`.
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize) {
        let s = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.nodes[to].must(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        self.nodes[from].must(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        let keys = self.nodes[from].must(&["CLUSTER", "GETKEYSINSLOT", &s, "1000"]).items();
        if keys.is_empty() {
            return;
        }
        // With tls-cluster, MIGRATE connects over TLS: to the TLS port.
        let port = self.nodes[to].announced().to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "AUTH", DATA_PASSWORD, "KEYS"];
        let keys: Vec<String> = keys.iter().map(V::text).collect();
        args.extend(keys.iter().map(String::as_str));
        self.nodes[from].must(&args);
    }

    /// The second half: `CLUSTER SETSLOT slot NODE to` on every primary (a replica refuses
    /// SETSLOT and learns the change by gossip). From here on the source answers `-MOVED`.
    /// Waits until every live node names `to` as the owner.
    pub fn finish_migration(&self, slot: u16, to: usize) {
        let (s, to_id) = (slot.to_string(), self.id(to));
        // The target first, as the cluster spec advises, so it owns the slot before anyone redirects to it.
        self.nodes[to].must(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        for i in self.primaries() {
            if i != to {
                self.nodes[i].must(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            }
        }
        poll("every node names the slot's new owner", FORM_DEADLINE, || {
            for i in (0..self.nodes.len()).filter(|&i| !self.nodes[i].is_dead()) {
                let o = self.owner_seen(slot, i).map_err(|t| format!("node {i} knows no owner yet:\n{t}"))?;
                if o != to {
                    return Err(format!("node {i} says {o}"));
                }
            }
            Ok(())
        });
    }

    /// `CLUSTER FAILOVER` on the replica of `primary` (a coordinated promotion: the primary pauses
    /// its clients until the replica has caught up, so no acknowledged write is lost). Waits until
    /// the replica says it is a primary and every live node names it as the owner of `slot`.
    /// Returns the promoted node's index.
    pub fn failover(&self, primary: usize, slot: u16) -> usize {
        let replica = self.replica_of(primary);
        self.nodes[replica].must(&["CLUSTER", "FAILOVER"]);
        poll("the replica is promoted and everyone knows", FORM_DEADLINE, || {
            let role = self.nodes[replica].info("replication")?;
            if role["role"] != "master" {
                return Err(format!("node {replica} is still a {}", role["role"]));
            }
            for i in (0..self.nodes.len()).filter(|&i| !self.nodes[i].is_dead()) {
                if self.owner_seen(slot, i).map_err(|t| format!("node {i} knows no owner yet:\n{t}"))? != replica {
                    return Err(format!("node {i} does not name {replica} yet"));
                }
            }
            Ok(())
        });
        replica
    }
}
