//! Production Redis topologies for the tests: a primary with two replicas watched by three
//! sentinels, and a Redis Cluster (three primaries, each with a replica), all real `redis-server`
//! processes on free loopback ports, each torn down by its guard. Plus the operator actions the
//! failover tests perform (`SENTINEL FAILOVER`, `kill -9`, moving a slot by hand, `CLUSTER
//! FAILOVER`). The cluster is in `cluster`, the load and the judgement of a run in `failover_load`.
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
use std::time::{Duration, Instant};

use super::{DEADLINE, Log, scratch_dir};

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
        if a.is_ok() && b.is_ok() && super::claim_port(port) && super::claim_port(port + 10000) {
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
    /// Its TLS port, when it has one (TLS topologies); the harness itself uses `port`.
    pub tls_port: Option<u16>,
}

impl Node {
    /// Starts `redis-server ARGS` (`args` given the chosen port and directory) and waits for
    /// `ready` in its log. A port taken between choosing and binding (another test's) makes the
    /// server exit at once; then another port is tried.
    pub(crate) fn start(
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
            let mut node =
                Node { child: Some(child), port, dir, log, password: password.map(str::to_string), tls_port: None };
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

    /// Runs one command on this node. A node that cannot be reached says whether its process is
    /// still there and what it last logged: a node gone in the middle of a test (CI once saw one
    /// refuse connections for a minute during a failover) must leave a trail, not just "refused".
    pub fn call(&self, args: &[&str]) -> Result<V, String> {
        call(self.port, self.password.as_deref(), args).map_err(|e| self.diagnose(e))
    }

    fn diagnose(&self, error: String) -> String {
        match error.starts_with("connect") {
            true => format!("{error} ({})", self.process_state()),
            false => error,
        }
    }

    /// What /proc says of this node's process (it is never reaped while `child` holds it, so its
    /// pid names no other process), with its last log lines once it has exited.
    pub fn process_state(&self) -> String {
        if self.is_dead() {
            return "killed by the test".into();
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name: the state is field 3, and `exit_code` (the
        // wait status, which says the killing signal) is field 52 (proc(5)).
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
        let lines = self.log.lines();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n  ");
        match fields.first() {
            Some(&"Z") => {
                let status: i32 = fields.get(49).and_then(|f| f.trim().parse().ok()).unwrap_or(-1);
                let how = match status & 0x7f {
                    0 => format!("exit status {}", status >> 8),
                    signal => format!("signal {signal}"),
                };
                format!("its redis-server has exited ({how}); its last log lines:\n  {tail}")
            }
            Some(state) => format!("its redis-server runs (state {state}); its last log lines:\n  {tail}"),
            None => format!("its process is gone from /proc; its last log lines:\n  {tail}"),
        }
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
        info(self.port, self.password.as_deref(), section).map_err(|e| self.diagnose(e))
    }

    /// The counter `key` on this node (0 when absent).
    pub fn counter(&self, key: &str) -> i64 {
        match self.must(&["GET", key]) {
            V::Bulk(None) => 0,
            v => v.text().parse().unwrap(),
        }
    }

    /// The port the topology knows it by: its TLS port in a TLS topology.
    pub fn announced(&self) -> u16 {
        self.tls_port.unwrap_or(self.port)
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
pub(crate) fn data_args(port: u16, dir: &Path) -> Vec<String> {
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

/// PEM files for a TLS topology: every node (data node and sentinel) serves `cert`, and trusts
/// `ca` for its own outgoing connections (replication, sentinel to node and to sentinel).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: String,
    /// The server certificate (it must carry IP 127.0.0.1).
    pub cert: String,
    /// Its key.
    pub key: String,
}

impl TlsFiles {
    /// `redis-server` arguments for a TLS port with these files; clients need no certificate,
    /// and replication (and a sentinel's connections) go over TLS too.
    pub(crate) fn args(&self, tls_port: u16) -> Vec<String> {
        let port = tls_port.to_string();
        [
            "--tls-port",
            &port,
            "--tls-cert-file",
            &self.cert,
            "--tls-key-file",
            &self.key,
            "--tls-ca-cert-file",
            &self.ca,
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Sentinels {
    /// One primary, `replicas` replicas and `sentinels` sentinels (quorum 2), formed: every
    /// replica's link is up and every sentinel knows every replica and every other sentinel.
    pub fn start(replicas: usize, sentinels: usize, sentinel_auth: bool) -> Sentinels {
        Self::start_with(replicas, sentinels, sentinel_auth, None)
    }

    /// As [`Sentinels::start`]; with `tls`, every node also has a TLS port, replication and the
    /// sentinels' own connections use TLS, and the sentinels name the TLS ports.
    pub fn start_with(replicas: usize, sentinels: usize, sentinel_auth: bool, tls: Option<&TlsFiles>) -> Sentinels {
        // A data node with a TLS port (when `tls`), chosen before it starts.
        let data_node = |tag: &str, replica_of: Option<u16>| {
            let tls_port = tls.map(|_| super::free_port());
            let mut node =
                Node::start(tag, Some(DATA_PASSWORD), super::free_port, "Ready to accept connections", |p, d| {
                    let mut a = data_args(p, d);
                    if let (Some(files), Some(t)) = (tls, tls_port) {
                        a.extend(files.args(t));
                    }
                    if let Some(primary) = replica_of {
                        a.extend(["--replicaof".into(), "127.0.0.1".into(), primary.to_string()]);
                    }
                    a
                });
            node.tls_port = tls_port;
            node
        };
        let primary = data_node("primary", None);
        let pport = primary.announced();
        let mut data = vec![primary];
        for _ in 0..replicas {
            data.push(data_node("replica", Some(pport)));
        }
        let sentinel_pw = sentinel_auth.then_some(SENTINEL_PASSWORD);
        let sentinels = (0..sentinels)
            .map(|_| {
                let tls_port = tls.map(|_| super::free_port());
                let mut node =
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
                        let mut args = vec![conf.to_str().unwrap().to_string()];
                        if let (Some(files), Some(t)) = (tls, tls_port) {
                            args.extend(files.args(t));
                        }
                        args.push("--sentinel".into());
                        args
                    });
                node.tls_port = tls_port;
                node
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
        let pport = self.data[primary].announced().to_string();
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
        self.data.iter().position(|n| n.announced() == port).expect("the primary is one of ours")
    }

    /// `redis+sentinel://:DATA_PASSWORD@127.0.0.1:S1,127.0.0.1:S2,.../SERVICE`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://:{DATA_PASSWORD}@{}/{SERVICE}", hosts.join(","))
    }

    /// `rediss+sentinel://...`: the sentinels' TLS ports.
    pub fn tls_url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.announced())).collect();
        format!("rediss+sentinel://:{DATA_PASSWORD}@{}/{SERVICE}", hosts.join(","))
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
        let old_port = self.data[old].announced().to_string();
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
            let i = self.data.iter().position(|n| n.announced() == port).ok_or("not one of ours")?;
            match self.data[i].call(&["ROLE"])?.items().first().map(V::text).as_deref() {
                Some("master") => Ok(i),
                role => Err(format!("{port} says it is {role:?}")),
            }
        })
    }
}
