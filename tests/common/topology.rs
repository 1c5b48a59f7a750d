//! Production Redis topologies for the tests: a primary with two replicas watched by three
//! sentinels, and a Redis Cluster (three primaries, each with a replica), all real `redis-server`
//! processes on free loopback ports, each torn down by its guard. Plus the operator actions the
//! failover tests perform (`SENTINEL FAILOVER`, `kill -9`, moving a slot by hand, `CLUSTER
//! FAILOVER`), a bounded load that records every answer, and the judgement of such a run.
//!
//! It owns nothing in hitcore: it talks raw RESP to Redis (any reply shape, unlike
//! [`super::TestRedis::cmd`]) and reuses the parent module's log watcher, scratch directories and
//! load client. Every wait polls the real state with a deadline; nothing sleeps in place of a wait.
//! The facts these helpers rely on (how long discovery takes, when a node answers `-ASK` rather
//! than `-MOVED`, why a cluster port must be at most 55535) are written next to the code using them.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{DEADLINE, Log, Outcome, one_request, scratch_dir};

/// The data nodes' password, in every topology here: the tests prove hitcore logs in to each node
/// it discovers with the URL's credentials, not only to the seed. Plain ASCII, so that it can go
/// into a sentinel's config file and onto `redis-cli`'s command line as it is.
pub const DATA_PASSWORD: &str = "topo-data-s3cret";
/// The sentinels' own password (`requirepass` in their config), for `--sentinel-password`.
pub const SENTINEL_PASSWORD: &str = "topo-sentinel-s3cret";
/// The name the sentinels monitor the primary under.
pub const SERVICE: &str = "hitsvc";
/// Topologies take longer than one server to form on a loaded 2-CPU machine: sentinels need a few
/// hello rounds (2 s each) to find each other, and a cluster needs gossip to converge.
pub const FORM_DEADLINE: Duration = Duration::from_secs(60);

/// One RESP2 value, of any shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    /// `+OK`
    Status(String),
    /// `-ERR ...`: the whole message, code included.
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n`; `None` for the null bulk string.
    Bulk(Option<String>),
    /// `*n`; `None` for the null array.
    Array(Option<Vec<V>>),
}

impl V {
    /// The text of a status, bulk or integer reply; panics on anything else.
    pub fn text(&self) -> String {
        match self {
            V::Status(s) | V::Bulk(Some(s)) => s.clone(),
            V::Int(i) => i.to_string(),
            other => panic!("expected a text reply, got {other:?}"),
        }
    }

    /// The elements of an array reply (empty for a null array); panics on anything else.
    pub fn items(&self) -> Vec<V> {
        match self {
            V::Array(a) => a.clone().unwrap_or_default(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// A flat `[k1, v1, k2, v2, ...]` array (what SENTINEL REPLICAS answers per replica) as a map.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let items = self.items();
        items.chunks(2).map(|kv| (kv[0].text(), kv.get(1).map(|v| v.text()).unwrap_or_default())).collect()
    }
}

fn read_value(r: &mut impl BufRead) -> std::io::Result<V> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1);
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad {what}: {line}"));
    Ok(match kind {
        "+" => V::Status(rest.to_string()),
        "-" => V::Error(rest.to_string()),
        ":" => V::Int(rest.parse().map_err(|_| bad("integer"))?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad("length"))?;
            if len < 0 {
                V::Bulk(None)
            } else {
                let mut body = vec![0; len as usize + 2];
                r.read_exact(&mut body)?;
                body.truncate(len as usize);
                V::Bulk(Some(String::from_utf8_lossy(&body).into_owned()))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad("length"))?;
            if len < 0 {
                V::Array(None)
            } else {
                V::Array(Some((0..len).map(|_| read_value(r)).collect::<Result<_, _>>()?))
            }
        }
        _ => return Err(bad("reply")),
    })
}

/// A short-lived RESP connection to one node, logged in.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects and AUTHs (when `password` is given); an error says why.
    pub fn open(port: u16, password: Option<&str>) -> Result<Conn, String> {
        let s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2))
            .map_err(|e| format!("connect to {port}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = Conn { reader: BufReader::new(s) };
        if let Some(p) = password {
            match conn.call(&["AUTH", p])? {
                V::Status(_) => {}
                other => return Err(format!("AUTH on {port}: {other:?}")),
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply (an error reply is `Ok(V::Error)`).
    pub fn call(&mut self, args: &[&str]) -> Result<V, String> {
        self.send(args)?;
        self.read()
    }

    /// Sends one command without reading its reply (for SUBSCRIBE).
    pub fn send(&mut self, args: &[&str]) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.reader.get_mut().write_all(&out).map_err(|e| format!("write: {e}"))
    }

    /// Reads the next reply.
    pub fn read(&mut self) -> Result<V, String> {
        read_value(&mut self.reader).map_err(|e| format!("read: {e}"))
    }
}

/// One command on a fresh connection.
pub fn call(port: u16, password: Option<&str>, args: &[&str]) -> Result<V, String> {
    Conn::open(port, password)?.call(args)
}

/// `INFO section` as a map of its `key:value` lines.
pub fn info(port: u16, password: Option<&str>, section: &str) -> Result<BTreeMap<String, String>, String> {
    let text = call(port, password, &["INFO", section])?;
    let V::Bulk(Some(text)) = text else { return Err(format!("INFO {section}: {text:?}")) };
    Ok(text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test at `within` with the last
/// reason it gave (so a topology that never forms says what was missing).
pub fn poll<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => panic!("timed out after {within:?} waiting until {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A port whose `port + 10000` is free too, both at most 65535: what a cluster node needs for its
/// bus. Ephemeral ports from the kernel are often above 55535, so this picks at random in
/// 20000..45535 (below the usual ephemeral range) and checks both by binding them.
pub fn free_cluster_port() -> u16 {
    loop {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20000 + (h.finish() % 25535) as u16;
        let a = TcpListener::bind(("127.0.0.1", port));
        let b = TcpListener::bind(("127.0.0.1", port + 10000));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
}

/// A redis-server (data node or sentinel) of a topology; killed (SIGKILL) when dropped.
pub struct Node {
    child: Option<Child>,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (configs, nodes.conf), removed on drop.
    pub dir: PathBuf,
    /// Its log (redis-server logs to stdout here).
    pub log: Log,
    /// The password clients give it.
    pub password: Option<String>,
}

impl Node {
    /// Starts `redis-server ARGS` (`args` given the chosen port and directory) and waits for
    /// `ready` in its log. A port taken between choosing and binding (another test's) makes the
    /// server exit at once; then another port is tried.
    fn start(
        tag: &str,
        password: Option<&str>,
        mut choose_port: impl FnMut() -> u16,
        ready: &str,
        args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Node {
        for _ in 0..5 {
            let port = choose_port();
            let dir = scratch_dir(tag);
            let mut child = Command::new("redis-server")
                .args(args(port, &dir))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            let log = Log::default();
            log.follow(child.stdout.take().unwrap(), "topology");
            let mut node = Node { child: Some(child), port, dir, log, password: password.map(str::to_string) };
            let deadline = Instant::now() + DEADLINE;
            loop {
                if node.log.count(ready) > 0 {
                    return node;
                }
                let exited = node.child.as_mut().unwrap().try_wait().unwrap().is_some();
                if exited || Instant::now() >= deadline {
                    let lines = node.log.lines().join("\n");
                    assert!(exited, "redis-server ({tag}) on {port} did not become ready:\n{lines}");
                    eprintln!("redis-server ({tag}) on {port} exited at start (port taken?), trying another:\n{lines}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("redis-server ({tag}) would not start on any of 5 ports");
    }

    /// Runs one command on this node.
    pub fn call(&self, args: &[&str]) -> Result<V, String> {
        call(self.port, self.password.as_deref(), args)
    }

    /// Runs one command that must not fail; panics with the reply otherwise.
    pub fn must(&self, args: &[&str]) -> V {
        match self.call(args) {
            Ok(V::Error(e)) => panic!("{args:?} on {}: -{e}", self.port),
            Ok(v) => v,
            Err(e) => panic!("{args:?} on {}: {e}", self.port),
        }
    }

    /// `INFO section` of this node.
    pub fn info(&self, section: &str) -> Result<BTreeMap<String, String>, String> {
        info(self.port, self.password.as_deref(), section)
    }

    /// The counter `key` on this node (0 when absent).
    pub fn counter(&self, key: &str) -> i64 {
        match self.must(&["GET", key]) {
            V::Bulk(None) => 0,
            v => v.text().parse().unwrap(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Kills it with SIGKILL, as a crashed host would; the port stays closed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the node has been killed.
    pub fn is_dead(&self) -> bool {
        self.child.is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Arguments every data node here shares: loopback only, no persistence (the tests compare live
/// counters, and fsyncs would slow the loaded machine), logging to stdout.
fn data_args(port: u16, dir: &Path) -> Vec<String> {
    let mut a: Vec<String> =
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir", dir.to_str().unwrap()].map(String::from).to_vec();
    a.extend(
        [
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            "",
            "--requirepass",
            DATA_PASSWORD,
            "--masterauth",
            DATA_PASSWORD,
        ]
        .map(String::from),
    );
    a
}

/// A primary with replicas, watched by sentinels under [`SERVICE`].
pub struct Sentinels {
    /// Data nodes: index 0 starts as the primary.
    pub data: Vec<Node>,
    /// The sentinels.
    pub sentinels: Vec<Node>,
    /// Whether the sentinels require [`SENTINEL_PASSWORD`].
    pub sentinel_auth: bool,
}

impl Sentinels {
    /// One primary, `replicas` replicas and `sentinels` sentinels (quorum 2), formed: every
    /// replica's link is up and every sentinel knows every replica and every other sentinel.
    pub fn start(replicas: usize, sentinels: usize, sentinel_auth: bool) -> Sentinels {
        let primary =
            Node::start("primary", Some(DATA_PASSWORD), super::free_port, "Ready to accept connections", data_args);
        let pport = primary.port;
        let mut data = vec![primary];
        for _ in 0..replicas {
            data.push(Node::start(
                "replica",
                Some(DATA_PASSWORD),
                super::free_port,
                "Ready to accept connections",
                |p, d| {
                    let mut a = data_args(p, d);
                    a.extend(["--replicaof".into(), "127.0.0.1".into(), pport.to_string()]);
                    a
                },
            ));
        }
        let sentinel_pw = sentinel_auth.then_some(SENTINEL_PASSWORD);
        let sentinels = (0..sentinels)
            .map(|_| {
                Node::start("sentinel", sentinel_pw, super::free_port, "+monitor master", |port, dir| {
                    // The sentinel rewrites its config file, so it lives in the node's own directory.
                    let conf = dir.join("sentinel.conf");
                    let mut text = format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\nlogfile \"\"\n\
                         sentinel monitor {SERVICE} 127.0.0.1 {pport} 2\n\
                         sentinel down-after-milliseconds {SERVICE} 1000\n\
                         sentinel failover-timeout {SERVICE} 4000\n\
                         sentinel auth-pass {SERVICE} {DATA_PASSWORD}\n",
                        dir.display()
                    );
                    if sentinel_auth {
                        // A sentinel with requirepass uses the same password towards the other sentinels.
                        text.push_str(&format!("requirepass {SENTINEL_PASSWORD}\n"));
                    }
                    std::fs::write(&conf, text).unwrap();
                    vec![conf.to_str().unwrap().to_string(), "--sentinel".into()]
                })
            })
            .collect();
        let topo = Sentinels { data, sentinels, sentinel_auth };
        topo.wait_formed(0);
        topo
    }

    /// Waits until `primary` (an index into `data`) is the primary every sentinel names, every
    /// other live data node replicates from it with its link up, and every sentinel sees all of
    /// them and all other sentinels. Before this a `SENTINEL FAILOVER` may find no replica to promote.
    pub fn wait_formed(&self, primary: usize) {
        let pport = self.data[primary].port.to_string();
        let live: Vec<&Node> = self.data.iter().filter(|n| !n.is_dead()).collect();
        let replicas = live.len() - 1;
        poll("the sentinel topology forms", FORM_DEADLINE, || {
            for n in &live {
                if n.port == self.data[primary].port {
                    continue;
                }
                let i = n.info("replication")?;
                if i.get("master_port") != Some(&pport) || i.get("master_link_status").map(String::as_str) != Some("up")
                {
                    return Err(format!("replica {} not linked to {pport}: {i:?}", n.port));
                }
            }
            for s in &self.sentinels {
                let addr = s.call(&["SENTINEL", "get-master-addr-by-name", SERVICE])?.items();
                if addr.get(1).map(V::text) != Some(pport.clone()) {
                    return Err(format!("sentinel {} names {addr:?}", s.port));
                }
                let seen = s.call(&["SENTINEL", "replicas", SERVICE])?.items();
                let ok = seen
                    .iter()
                    .map(V::fields)
                    .filter(|f| f["flags"] == "slave" && f.get("master-link-status").map(String::as_str) == Some("ok"))
                    .count();
                if ok < replicas {
                    return Err(format!("sentinel {} sees {ok} healthy replicas of {replicas}", s.port));
                }
                let peers = s.call(&["SENTINEL", "sentinels", SERVICE])?.items().len();
                if peers < self.sentinels.len() - 1 {
                    return Err(format!("sentinel {} sees {peers} other sentinels", s.port));
                }
            }
            Ok(())
        });
    }

    /// The index in `data` of the node the first live sentinel names as primary.
    pub fn primary(&self) -> usize {
        let addr = self.sentinels[0].must(&["SENTINEL", "get-master-addr-by-name", SERVICE]).items();
        let port: u16 = addr[1].text().parse().unwrap();
        self.data.iter().position(|n| n.port == port).expect("the primary is one of ours")
    }

    /// `redis+sentinel://:DATA_PASSWORD@127.0.0.1:S1,127.0.0.1:S2,.../SERVICE`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://:{DATA_PASSWORD}@{}/{SERVICE}", hosts.join(","))
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER`) and waits until every sentinel names
    /// a new primary and that node says it is one. Returns the new primary's index.
    pub fn failover(&self) -> usize {
        let old = self.primary();
        poll("SENTINEL FAILOVER is accepted", FORM_DEADLINE, || {
            match self.sentinels[0].call(&["SENTINEL", "FAILOVER", SERVICE])? {
                V::Status(_) => Ok(()),
                // NOGOODSLAVE while a sentinel's view of the replicas is refreshing; INPROG if one runs.
                V::Error(e) if e.starts_with("INPROG") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        self.wait_new_primary(old)
    }

    /// Kills the primary with SIGKILL; returns when the sentinels have promoted a replica (its
    /// index is returned). Detection takes down-after-milliseconds (1 s) plus an election.
    pub fn kill_primary(&mut self) -> usize {
        let old = self.primary();
        self.data[old].kill9();
        self.wait_new_primary(old)
    }

    fn wait_new_primary(&self, old: usize) -> usize {
        let old_port = self.data[old].port.to_string();
        poll("the sentinels name a new primary that says it is one", FORM_DEADLINE, || {
            let mut named = None;
            for s in &self.sentinels {
                let port = s.call(&["SENTINEL", "get-master-addr-by-name", SERVICE])?.items()[1].text();
                if port == old_port || named.as_ref().is_some_and(|p: &String| *p != port) {
                    return Err(format!("sentinel {} still names {port}", s.port));
                }
                named = Some(port);
            }
            let port: u16 = named.unwrap().parse().unwrap();
            let i = self.data.iter().position(|n| n.port == port).ok_or("not one of ours")?;
            match self.data[i].call(&["ROLE"])?.items().first().map(V::text).as_deref() {
                Some("master") => Ok(i),
                role => Err(format!("{port} says it is {role:?}")),
            }
        })
    }
}

/// A Redis Cluster of `primaries` primaries with `replicas` replicas each.
pub struct Cluster {
    /// Every node, in the order given to `redis-cli --cluster create` (primaries first).
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every node
    /// says `cluster_state:ok`, knows every other node, and every replica's link is up.
    pub fn start(primaries: usize, replicas: usize) -> Cluster {
        let count = primaries * (1 + replicas);
        let nodes: Vec<Node> = (0..count)
            .map(|_| {
                Node::start("cluster", Some(DATA_PASSWORD), free_cluster_port, "Ready to accept connections", |p, d| {
                    let mut a = data_args(p, d);
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
                })
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

    /// The index of the primary that node `asker` says owns `slot` (from its `CLUSTER NODES`).
    pub fn owner(&self, slot: u16, asker: usize) -> usize {
        let table = self.nodes[asker].must(&["CLUSTER", "NODES"]).text();
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
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("node {asker} knows no owner of slot {slot}:\n{table}");
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
        let port = self.nodes[to].port.to_string();
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
                let o = self.owner(slot, i);
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
                if self.owner(slot, i) != replica {
                    return Err(format!("node {i} does not name {replica} yet"));
                }
            }
            Ok(())
        });
        replica
    }
}

/// Load against hitcore that is bounded by itself: `threads` clients, each one request per fresh
/// connection, until [`TimedLoad::finish`], `max_time`, or a cap on requests, whichever comes
/// first. Every answer is kept with the moment it arrived. Dropping it (a failed assertion) stops
/// the clients too, so no thread outlives its test.
pub struct TimedLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    /// When the load started.
    pub started: Instant,
    handles: Vec<std::thread::JoinHandle<Vec<(Instant, Outcome)>>>,
}

/// At most this many requests per load thread.
const MAX_REQUESTS_PER_THREAD: usize = 100_000;

impl TimedLoad {
    /// Starts the clients.
    pub fn start(addr: SocketAddr, threads: usize, max_time: Duration) -> TimedLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let handles = (0..threads)
            .map(|_| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < max_time
                        && seen.len() < MAX_REQUESTS_PER_THREAD
                    {
                        let outcome = one_request(addr);
                        match outcome {
                            Outcome::Answered { status: 200, .. } => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            // Nothing listens or it is failing fast: do not spin on it.
                            Outcome::Refused | Outcome::Answered { .. } => std::thread::sleep(Duration::from_millis(2)),
                            Outcome::Failed(_) => {}
                        }
                        seen.push((Instant::now(), outcome));
                    }
                    seen
                })
            })
            .collect();
        TimedLoad { stop, ok, started, handles }
    }

    /// 200s so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more 200s than now have arrived (proof that service goes on), failing at `within`.
    pub fn wait_for_200s(&self, n: usize, within: Duration) {
        let from = self.ok();
        poll(&format!("{n} more answers 200"), within, || {
            let now = self.ok();
            if now >= from + n { Ok(()) } else { Err(format!("{} of {n}", now - from)) }
        });
    }

    /// Stops the clients and returns every outcome in time order.
    pub fn finish(mut self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<_> = std::mem::take(&mut self.handles).into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }
}

impl Drop for TimedLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// What a failover run came to.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Answers by status (0 for a connection that got no response at all).
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no complete response, with why.
    pub failed: Vec<String>,
    /// Values answered 200 more than once, each once.
    pub duplicates: Vec<i64>,
    /// Values answered 200 that are above the final counter: handed out by a node whose writes
    /// were then discarded (and the new primary will hand them out again).
    pub above_final: Vec<i64>,
    /// The longest time between two 200s (or between the start of the load and the first one).
    pub longest_without_200: Duration,
    /// The final counter the values were judged against.
    pub final_counter: i64,
}

impl Verdict {
    /// Judges a run's outcomes against the counter on the primary at the end.
    pub fn judge(started: Instant, outcomes: &[(Instant, Outcome)], final_counter: i64) -> Verdict {
        let mut v = Verdict { final_counter, ..Verdict::default() };
        let mut values = Vec::new();
        let mut last_200 = started;
        for (t, o) in outcomes {
            match o {
                Outcome::Answered { status, value } => {
                    *v.statuses.entry(*status).or_default() += 1;
                    if *status == 200 {
                        v.longest_without_200 = v.longest_without_200.max(t.saturating_duration_since(last_200));
                        last_200 = *t;
                        values.extend(*value);
                    }
                }
                Outcome::Refused => *v.statuses.entry(0).or_default() += 1,
                Outcome::Failed(why) => v.failed.push(why.clone()),
            }
        }
        if let Some((end, _)) = outcomes.last() {
            v.longest_without_200 = v.longest_without_200.max(end.saturating_duration_since(last_200));
        }
        values.sort_unstable();
        for w in values.windows(2) {
            if w[0] == w[1] && v.duplicates.last() != Some(&w[0]) {
                v.duplicates.push(w[0]);
            }
        }
        v.above_final = values.iter().copied().filter(|&x| x > final_counter).collect();
        v
    }

    /// Requests answered 200.
    pub fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// One line for the test output (and the failover table).
    pub fn summary(&self) -> String {
        let shown = |v: &[i64]| {
            let mut s: Vec<String> = v.iter().take(10).map(i64::to_string).collect();
            if v.len() > 10 {
                s.push(format!("... {} in all", v.len()));
            }
            s.join(" ")
        };
        format!(
            "statuses {:?}, {} failed, {} duplicate values [{}], {} values above the final counter {} [{}], \
             longest stretch without a 200: {:.2}s",
            self.statuses,
            self.failed.len(),
            self.duplicates.len(),
            shown(&self.duplicates),
            self.above_final.len(),
            self.final_counter,
            shown(&self.above_final),
            self.longest_without_200.as_secs_f64()
        )
    }
}
